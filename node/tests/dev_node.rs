//! The dev node as a user meets it: the real `provchaind --dev` binary over HTTP.

mod common;

use std::time::Duration;

use common::{NodeProc, wait_for};
use serde_json::Value;

const SMOKE_BODY: &str = r#"{"data":"<http://test> <http://p> \"v\" ."}"#;

#[tokio::test(flavor = "multi_thread")]
async fn deployment_guide_smoke_commands_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProc::dev(&dir.path().join("dev"));
    node.wait_healthy().await;

    let before = node.status().await;
    assert_eq!(before["is_authority"], true);
    assert_eq!(before["authorities"].as_array().map(Vec::len), Some(1));
    let h0 = before["height"].as_u64().expect("height");

    // curl -X POST .../api/transactions -H "Content-Type: application/json" -d '{"data":...}'
    let (code, v) = node
        .post("/api/transactions", "application/json", SMOKE_BODY)
        .await;
    assert_eq!(code, 202, "{v}");
    let tx_id = v["tx_id"].as_str().expect("tx_id").to_owned();
    assert_eq!(tx_id.len(), 64);

    let tx = node.wait_final(&tx_id, Duration::from_secs(15)).await;
    // Final within two block intervals: sealed in one of the next two blocks.
    let included = tx["block_height"].as_u64().expect("block_height");
    assert!(
        included <= h0 + 2,
        "tx sealed at {included}, submitted at height {h0}"
    );
    assert_eq!(tx["triples"], 1);
    assert_eq!(tx["submitter"], before["authorities"][0]);

    // curl .../api/peers | jq '.'  — a JSON array (a dev node has no peers).
    let (code, peers) = node.get("/api/peers").await;
    assert_eq!(code, 200);
    assert!(peers.is_array());

    // curl .../api/blockchain/dump | jq 'length' grows by one per block interval.
    let (_, dump) = node.get("/api/blockchain/dump").await;
    let len1 = dump.as_array().map(Vec::len).expect("dump is an array");
    assert_eq!(dump[0]["height"], 0, "genesis first");
    let later = wait_for("two more blocks", Duration::from_secs(10), || async {
        let (_, d) = node.get("/api/blockchain/dump").await;
        let d = d.as_array().cloned().unwrap_or_default();
        (d.len() >= len1 + 2).then_some(d)
    })
    .await;
    for (i, b) in later.iter().enumerate() {
        assert_eq!(b["height"], i as u64, "dump is the contiguous final chain");
        if i > 0 {
            assert_eq!(b["parent_hash"], later[i - 1]["hash"]);
            let gap = b["slot"].as_u64().unwrap_or(0) - later[i - 1]["slot"].as_u64().unwrap_or(0);
            assert!(i == 1 || gap >= 1);
        }
    }

    let ask = node.sparql(r#"ASK { <http://test> <http://p> "v" }"#).await;
    assert_eq!(ask["boolean"], true);
    let no = node
        .sparql(r#"ASK { <http://test> <http://p> "nope" }"#)
        .await;
    assert_eq!(no["boolean"], false);

    // The transaction and its block are visible through the block endpoints.
    let (code, block) = node.get(&format!("/api/blocks/{included}")).await;
    assert_eq!(code, 200);
    assert!(
        block["transactions"]
            .as_array()
            .is_some_and(|t| t.contains(&Value::String(tx_id.clone())))
    );
    let (code, by_hash) = node
        .get(&format!(
            "/api/blocks/{}",
            block["hash"].as_str().unwrap_or("")
        ))
        .await;
    assert_eq!((code, &by_hash["height"]), (200, &block["height"]));
    let (_, recent) = node.get("/api/blocks?limit=3").await;
    let recent = recent.as_array().cloned().unwrap_or_default();
    assert_eq!(recent.len(), 3);
    assert!(
        recent[0]["height"].as_u64() > recent[2]["height"].as_u64(),
        "newest first"
    );

    // Metrics are exported with real values.
    assert!(node.metric("provchain_final_height").await.unwrap_or(0.0) >= included as f64);
    assert!(
        node.metric("provchain_transactions_final_total")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    let on_metrics_port = reqwest::get(format!("http://127.0.0.1:{}/metrics", node.metrics_port))
        .await
        .expect("metrics port")
        .text()
        .await
        .unwrap_or_default();
    assert!(on_metrics_port.contains("provchain_chain_height"));
    let (code, report) = node.get("/api/integrity/validate").await;
    assert_eq!(code, 200);
    assert_eq!(report["ok"], true, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn final_data_survives_kill_9_without_reparsing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProc::dev(&dir.path().join("dev"));
    node.wait_healthy().await;
    let tx_id = node
        .submit("<http://ex/batch1> <http://ex/origin> \"farm A\" .")
        .await;
    let tx = node.wait_final(&tx_id, Duration::from_secs(15)).await;
    node.kill9();

    node.restart();
    node.wait_healthy().await;
    // Startup opened the database without parsing any stored RDF.
    assert_eq!(
        node.metric("provchain_rdf_documents_parsed_total").await,
        Some(0.0)
    );
    let again = node.get(&format!("/api/transactions/{tx_id}")).await.1;
    assert_eq!(again["status"], "final");
    assert_eq!(again["block_hash"], tx["block_hash"]);
    let ask = node
        .sparql(r#"ASK { <http://ex/batch1> <http://ex/origin> "farm A" }"#)
        .await;
    assert_eq!(ask["boolean"], true);

    // The chain continues on top of the block that was final before the kill.
    let h = tx["block_height"].as_u64().expect("height");
    let (_, b) = node.get(&format!("/api/blocks/{h}")).await;
    assert_eq!(b["hash"], tx["block_hash"]);
    let next = wait_for(
        "a new block after restart",
        Duration::from_secs(10),
        || async {
            let (code, b) = node.get(&format!("/api/blocks/{}", h + 1)).await;
            (code == 200 && b["final"] == true).then_some(b)
        },
    )
    .await;
    assert_eq!(next["parent_hash"], tx["block_hash"]);
    let (_, report) = node.get("/api/integrity/validate").await;
    assert_eq!(report["ok"], true, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_clear_errors_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProc::spawn(
        &dir.path().join("dev"),
        &["--dev"],
        &[("PROVCHAIN_WEB__MAX_BODY_SIZE", "65536")],
    );
    node.wait_healthy().await;

    let (code, v) = node
        .post("/api/transactions", "application/json", "{not json")
        .await;
    assert_eq!(code, 400);
    assert!(
        v["error"].as_str().unwrap_or("").contains("invalid JSON"),
        "{v}"
    );

    let (code, v) = node
        .post(
            "/api/transactions",
            "application/json",
            r#"{"data":"<a> <b> <c> .","format":"rdfxml"}"#,
        )
        .await;
    assert_eq!(code, 400);
    assert!(
        v["error"].as_str().unwrap_or("").contains("unknown format"),
        "{v}"
    );

    let (code, v) = node
        .post(
            "/api/transactions",
            "text/turtle",
            "@prefix ex: <http://ex/> .\nex:a ex:b ex:c .\nex:d ex:e ;; .\n",
        )
        .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["line"], 3, "{v}");
    assert!(v["column"].is_number(), "{v}");

    for (ct, body) in [
        ("application/n-triples", r#"<a> <b> "x""#),
        ("application/n-quads", r#"<a> <b> "x" <g"#),
        ("text/turtle", r#"<a> <b> ""#),
        ("application/n-triples", "<http://a> <http://b>"),
    ] {
        let (code, v) = node.post("/api/transactions", ct, body).await;
        assert_eq!(code, 400, "{ct} {body}: {v}");
        assert!(v["error"].is_string());
    }

    let big = format!("{{\"data\":\"{}\"}}", "x".repeat(70_000));
    let (code, v) = node
        .post("/api/transactions", "application/json", big)
        .await;
    assert_eq!(code, 413, "{v}");

    let (code, _) = node
        .post("/api/transactions", "application/xml", "<x/>")
        .await;
    assert_eq!(code, 415);

    let (code, v) = node.get("/sparql?query=SELEKT%20nonsense").await;
    assert_eq!(code, 400, "{v}");

    // Still alive and still accepting good data.
    assert_eq!(node.get("/health").await.0, 200);
    let id = node.submit("<http://ok> <http://p> \"fine\" .").await;
    node.wait_final(&id, Duration::from_secs(15)).await;
    assert!(
        node.metric("provchain_transactions_rejected_total")
            .await
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_statements_submitted_twice_share_a_canonical_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProc::dev(&dir.path().join("dev"));
    node.wait_healthy().await;
    let turtle = "@prefix ex: <http://ex/> .\n\
                  ex:batch1 ex:madeFrom [ ex:lot \"L7\" ] ; ex:site ex:plant2 .";
    let ntriples = "<http://ex/batch1> <http://ex/site> <http://ex/plant2> .\n\
                    _:other <http://ex/lot> \"L7\" .\n\
                    <http://ex/batch1> <http://ex/madeFrom> _:other .\n";
    let (code, first) = node
        .post("/api/transactions", "text/turtle", turtle.to_owned())
        .await;
    assert_eq!(code, 202, "{first}");
    let (code, second) = node
        .post(
            "/api/transactions",
            "application/n-triples",
            ntriples.to_owned(),
        )
        .await;
    assert_eq!(code, 202, "{second}");
    let unrelated = node.submit("<http://ex/a> <http://ex/p> \"v\" .").await;
    let digest = first["digest"]
        .as_str()
        .expect("submit returns the digest")
        .to_owned();
    assert_eq!(second["digest"], first["digest"]);
    let (a, b) = (
        first["tx_id"].as_str().expect("test value"),
        second["tx_id"].as_str().expect("test value"),
    );
    assert_ne!(a, b, "two submissions are two transactions");
    let fa = node.wait_final(a, Duration::from_secs(15)).await;
    node.wait_final(b, Duration::from_secs(15)).await;
    let fu = node.wait_final(&unrelated, Duration::from_secs(15)).await;
    assert_eq!(
        fa["digest"],
        digest.as_str(),
        "the stored digest is the one reported at submit"
    );
    // Without blank nodes the canonical form is the sorted N-Quads, so anyone can check it.
    use sha2::{Digest, Sha256};
    let expected = hex::encode(Sha256::digest(b"<http://ex/a> <http://ex/p> \"v\" .\n"));
    assert_eq!(fu["digest"], expected.as_str());

    let (code, found) = node
        .get(&format!("/api/transactions?digest={digest}"))
        .await;
    assert_eq!(code, 200, "{found}");
    let ids: Vec<&str> = found["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .map(|t| t["tx_id"].as_str().expect("test value"))
        .collect();
    assert_eq!(ids.len(), 2, "{found}");
    assert!(ids.contains(&a) && ids.contains(&b), "{found}");
    assert!(found["transactions"][0]["block_height"].as_u64().is_some());

    let (code, none) = node
        .get(&format!("/api/transactions?digest={}", "0".repeat(64)))
        .await;
    assert_eq!(
        (code, none["transactions"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    for bad in ["/api/transactions?digest=xyz", "/api/transactions"] {
        let (code, err) = node.get(bad).await;
        assert_eq!(code, 400, "{bad}: {err}");
        assert!(
            err["error"].as_str().unwrap_or("").contains("digest"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn blank_nodes_stay_scoped_to_their_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProc::dev(&dir.path().join("dev"));
    node.wait_healthy().await;
    let a = node.submit("_:b <http://ex/reading> \"1\" .").await;
    let b = node.submit("_:b <http://ex/reading> \"1\" .").await;
    node.wait_final(&a, Duration::from_secs(15)).await;
    node.wait_final(&b, Duration::from_secs(15)).await;
    let r = node
        .sparql("SELECT DISTINCT ?s WHERE { ?s <http://ex/reading> \"1\" }")
        .await;
    let rows = r["results"]["bindings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rows.len(), 2, "two transactions' _:b merged: {r}");
    assert!(rows.iter().all(|row| row["s"]["type"] == "bnode"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProc::dev(&dir.path().join("dev"));
    node.wait_healthy().await;
    let id = node.submit("<http://s> <http://p> <http://o> .").await;
    node.wait_final(&id, Duration::from_secs(15)).await;
    let status = node
        .terminate(Duration::from_secs(10))
        .expect("exited within 10 s");
    assert!(
        status.success(),
        "exit status {status}: {}",
        node.log_text()
    );
    node.restart();
    node.wait_healthy().await;
    assert_eq!(
        node.get(&format!("/api/transactions/{id}")).await.1["status"],
        "final"
    );
}
