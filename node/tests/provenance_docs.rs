//! The SPARQL examples of docs/PROVENANCE.md, run against a node holding the documented workload.

mod common;

use std::time::Duration;

use common::{NetNodeSpec, NodeProc};
use serde_json::Value;

fn fenced(doc: &str, lang: &str) -> Vec<String> {
    let open = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let end = body.find("```").expect("closed fence");
        out.push(body[..end].to_owned());
        rest = &body[end..];
    }
    out
}

fn rows(v: &Value) -> Vec<Value> {
    v["results"]["bindings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_documented_queries_return_the_documented_rows() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/PROVENANCE.md"
    ))
    .expect("doc");
    // The first Turtle block describes the vocabulary; the next three are the workload.
    let workload = &fenced(&doc, "turtle")[1..];
    let queries = fenced(&doc, "sparql");
    assert_eq!((workload.len(), queries.len()), (3, 3));

    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProc::net(dir.path(), &NetNodeSpec::sole_authority(&[]));
    node.wait_healthy().await;
    let mut txs = Vec::new();
    for d in workload {
        let (code, v) = node
            .post("/api/transactions", "text/turtle", d.clone())
            .await;
        assert_eq!(code, 202, "{v}");
        let id = v["tx_id"].as_str().expect("tx_id").to_owned();
        // Submit one at a time so acceptance times are ordered.
        node.wait_final(&id, Duration::from_secs(15)).await;
        txs.push(id);
    }
    let tx_iri = |i: usize| format!("urn:provchain:tx:{}", txs[i]);
    let key = node.status().await["authorities"][0]
        .as_str()
        .expect("key")
        .to_owned();

    // Who asserted a triple, and when.
    let r = rows(&node.sparql(&queries[0]).await);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["tx"]["value"], tx_iri(1));
    assert_eq!(
        r[0]["submitter"]["value"],
        format!("urn:provchain:node:{key}")
    );
    let second = node.get(&format!("/api/transactions/{}", txs[1])).await.1;
    assert_eq!(r[0]["height"]["value"], second["block_height"].to_string());
    assert!(
        r[0]["when"]["value"]
            .as_str()
            .is_some_and(|w| w.contains('T'))
    );

    // Everything the authority sealed today (the documented date replaced by today's).
    let today = {
        let now = std::time::SystemTime::now();
        humantime::format_rfc3339(now).to_string()[..10].to_owned()
    };
    let r = rows(&node.sparql(&queries[1].replace("2026-11-24", &today)).await);
    let sealed: Vec<String> = r
        .iter()
        .filter_map(|x| x["tx"]["value"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(sealed, vec![tx_iri(0), tx_iri(1), tx_iri(2)], "{r:?}");

    // The full history of the batch, oldest first.
    let r = rows(&node.sparql(&queries[2]).await);
    let facts: Vec<(String, String)> = r
        .iter()
        .map(|x| {
            (
                x["statement"]["value"]
                    .as_str()
                    .unwrap_or("")
                    .rsplit(['#', '/'])
                    .next()
                    .unwrap_or("")
                    .to_owned(),
                x["value"]["value"]
                    .as_str()
                    .unwrap_or("")
                    .rsplit(['#', '/'])
                    .next()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    for expected in [
        ("product", "Arabica green coffee"),
        ("wasGeneratedBy", "harvest-2026-11"),
        ("location", "roastery-lisbon"),
        ("used", "shipment-981"),
        ("used", "roast-77"),
        ("roastLevel", "medium"),
    ] {
        assert!(
            facts.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "missing {expected:?} in {facts:?}"
        );
    }
    let first_tx_rows = r
        .iter()
        .position(|x| x["tx"]["value"] == tx_iri(2))
        .expect("roast rows");
    let last_harvest_row = r
        .iter()
        .rposition(|x| x["tx"]["value"] == tx_iri(0))
        .expect("harvest rows");
    assert!(
        last_harvest_row < first_tx_rows,
        "history is not oldest first"
    );
}
