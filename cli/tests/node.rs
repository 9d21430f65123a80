//! The CLI against real `provchaind --dev` processes: status, peers, submit, query, tokens and
//! the offline integrity check of a stopped node's database.

mod common;

use common::{NodeProc, cli, cli_env, cli_stdin, free_port};
use serde_json::Value;

const TTL: &str = "@prefix ex: <http://example.org/> .\n\
                   ex:shipment1 ex:origin \"Lyon\" ;\n    ex:weight 42 .\n";

fn is_tx_id(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

#[test]
fn status_and_peers_of_a_dev_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::dev(&dir.path().join("dev"), &[]);
    let url = node.url.as_str();

    let v = cli(&["status", "--node", url, "--json"]).json();
    assert_eq!(v["network_id"], "provchain-dev");
    assert_eq!(v["is_authority"], true);
    assert!(
        v["peer_id"]
            .as_str()
            .is_some_and(|p| p.starts_with("12D3KooW")),
        "{v}"
    );
    let table = cli(&["status", "--node", url]).ok().to_owned();
    for needle in [
        "node id",
        "provchain-dev",
        "finalized",
        "authority",
        v["peer_id"].as_str().unwrap_or("?"),
    ] {
        assert!(
            table.contains(needle),
            "status table lacks {needle}: {table}"
        );
    }

    // PROVCHAIN_NODE is the default node; a trailing slash is fine.
    let via_env = cli_env(
        &["status", "--json"],
        &[("PROVCHAIN_NODE", &format!("{url}/"))],
    )
    .json();
    assert_eq!(via_env["peer_id"], v["peer_id"]);

    assert_eq!(
        cli(&["peers", "--node", url, "--json"]).json(),
        Value::Array(vec![])
    );
    assert_eq!(cli(&["peers", "--node", url]).ok(), "no connected peers\n");
}

#[test]
fn unreachable_node_is_one_line_and_non_zero() {
    let url = format!("http://127.0.0.1:{}", free_port());
    for cmd in ["status", "peers"] {
        let out = cli(&[cmd, "--node", &url]);
        let line = out.fails();
        assert!(
            line.starts_with(&format!("provchain: cannot reach node at {url}: ")),
            "{line}"
        );
        assert!(out.stdout.is_empty());
    }
    let out = cli_stdin(&["submit", "--node", &url, "-"], TTL);
    assert!(out.fails().contains("cannot reach node"));
}

#[test]
fn submit_and_query_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::dev(&dir.path().join("dev"), &[]);
    let url = node.url.as_str();

    // A Turtle file, waiting for finality.
    let ttl = dir.path().join("shipment.ttl");
    std::fs::write(&ttl, TTL).expect("write");
    let out = cli(&[
        "submit",
        "--node",
        url,
        "--wait",
        "--timeout",
        "30s",
        ttl.to_str().expect("utf8"),
    ]);
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    let tx1 = lines[0];
    assert!(is_tx_id(tx1), "{out:?}");
    assert!(lines[1].starts_with("final in block "), "{out:?}");
    let tx = node.get(&format!("/api/transactions/{tx1}"));
    assert_eq!(tx["status"], "final");
    assert!(
        lines[1].contains(tx["block_hash"].as_str().expect("hash")),
        "{out:?}"
    );

    // N-Triples from stdin, JSON answer.
    let nt = "<http://example.org/shipment2> <http://example.org/origin> \"Gent\" .\n";
    let v = cli_stdin(
        &[
            "submit",
            "--node",
            url,
            "--format",
            "n-triples",
            "--wait",
            "--json",
            "-",
        ],
        nt,
    )
    .json();
    assert_eq!(v["status"], "final");
    assert!(v["block_height"].as_u64().is_some_and(|h| h >= 1), "{v}");
    assert_eq!(v["triples"], 1);

    // The format follows the extension; without --wait only the id is printed.
    let nq = dir.path().join("g.nq");
    std::fs::write(&nq, "<http://example.org/shipment3> <http://example.org/origin> \"Oslo\" <http://example.org/g> .\n")
        .expect("write");
    let tx3 = cli(&["submit", "--node", url, nq.to_str().expect("utf8")])
        .ok()
        .trim()
        .to_owned();
    assert!(is_tx_id(&tx3));
    let v = cli(&[
        "submit",
        "--node",
        url,
        "--json",
        "--wait",
        ttl.to_str().expect("utf8"),
    ])
    .json();
    assert_eq!(v["status"], "final");

    // Malformed Turtle: rejected with the parser's line number.
    let bad = dir.path().join("bad.ttl");
    std::fs::write(
        &bad,
        "@prefix ex: <http://example.org/> .\nex:a ex:b ex:c .\nex:a ex:b \"open .\n",
    )
    .expect("write");
    let out = cli(&["submit", "--node", url, bad.to_str().expect("utf8")]);
    let line = out.fails();
    assert!(line.contains("400") && line.contains("line 3"), "{line}");
    assert!(out.stdout.is_empty());

    // Query: table, JSON, CSV, ASK, --file.
    let select = "SELECT ?s ?o WHERE { ?s <http://example.org/origin> ?o } ORDER BY ?o";
    let table = cli(&["query", "--node", url, select]).ok().to_owned();
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(
        rows[0].split_whitespace().collect::<Vec<_>>(),
        ["s", "o"],
        "{table}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("<http://example.org/shipment2>") && r.contains("\"Gent\"")),
        "{table}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("<http://example.org/shipment1>") && r.contains("\"Lyon\"")),
        "{table}"
    );

    let json = cli(&["query", "--node", url, "--json", select]).json();
    assert_eq!(json["head"]["vars"], serde_json::json!(["s", "o"]));
    let bindings = json["results"]["bindings"].as_array().expect("bindings");
    assert!(bindings.iter().any(|b| b["o"]["value"] == "Gent"));

    let csv = cli(&["query", "--node", url, "--csv", select])
        .ok()
        .to_owned();
    assert!(csv.starts_with("s,o\r\n"), "{csv:?}");
    assert!(
        csv.contains("http://example.org/shipment2,Gent\r\n"),
        "{csv:?}"
    );

    let ask = "ASK { <http://example.org/shipment1> <http://example.org/origin> \"Lyon\" }";
    assert_eq!(cli(&["query", "--node", url, ask]).ok(), "true\n");
    assert_eq!(
        cli(&[
            "query",
            "--node",
            url,
            "ASK { <http://example.org/none> ?p ?o }"
        ])
        .ok(),
        "false\n"
    );

    let qfile = dir.path().join("q.rq");
    std::fs::write(
        &qfile,
        "SELECT ?w WHERE { ?s <http://example.org/weight> ?w }",
    )
    .expect("write");
    let table = cli(&[
        "query",
        "--node",
        url,
        "--file",
        qfile.to_str().expect("utf8"),
    ])
    .ok()
    .to_owned();
    assert!(table.contains("\"42\"^^xsd:integer"), "{table}");

    let line = cli(&["query", "--node", url, "SELEKT nothing"])
        .fails()
        .to_owned();
    assert!(line.contains("400") && line.contains("SPARQL"), "{line}");
}

#[test]
fn tokens_gate_writes_when_the_node_has_a_secret() {
    let secret = "cli-test-secret-0123456789";
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::dev(&dir.path().join("auth"), &[("JWT_SECRET", secret)]);
    let url = node.url.as_str();

    let line = cli_stdin(&["submit", "--node", url, "-"], TTL)
        .fails()
        .to_owned();
    assert!(line.contains("401") && line.contains("--token"), "{line}");

    let token = cli(&["token", "--secret", secret, "--sub", "alice"])
        .ok()
        .trim()
        .to_owned();
    let out = cli_stdin(
        &[
            "submit", "--node", url, "--token", &token, "--wait", "--json", "-",
        ],
        TTL,
    );
    let v = out.json();
    assert_eq!(v["status"], "final");
    assert_eq!(v["client"], "alice", "the token's subject is recorded: {v}");

    // From PROVCHAIN_TOKEN.
    let out = common::cli_env(
        &["submit", "--node", url, "--json", "-"],
        &[("PROVCHAIN_TOKEN", &token)],
    );
    // No stdin given to cli_env: an empty document is refused locally, before any request.
    assert!(out.fails().contains("empty"));
    let ttl = dir.path().join("doc.ttl");
    std::fs::write(&ttl, TTL).expect("write");
    let v = cli_env(
        &[
            "submit",
            "--node",
            url,
            "--json",
            ttl.to_str().expect("utf8"),
        ],
        &[("PROVCHAIN_TOKEN", &token)],
    )
    .json();
    assert!(v["tx_id"].as_str().is_some_and(is_tx_id), "{v}");

    // Expired and wrongly signed tokens are refused by the node.
    let expired = cli(&["token", "--secret", secret, "--sub", "alice", "--ttl", "0s"])
        .ok()
        .trim()
        .to_owned();
    let line = cli_stdin(&["submit", "--node", url, "--token", &expired, "-"], TTL)
        .fails()
        .to_owned();
    assert!(line.contains("401") && line.contains("expired"), "{line}");
    let forged = cli(&[
        "token",
        "--secret",
        "another-secret-0123456789",
        "--sub",
        "mallory",
    ])
    .ok()
    .trim()
    .to_owned();
    let line = cli_stdin(&["submit", "--node", url, "--token", &forged, "-"], TTL)
        .fails()
        .to_owned();
    assert!(line.contains("401") && line.contains("signature"), "{line}");

    // Reads need no token.
    cli(&["status", "--node", url]).ok();
}

#[test]
fn verify_passes_on_a_clean_db_and_names_a_corrupted_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("node");
    let data_s = data.to_str().expect("utf8").to_owned();
    let mut node = NodeProc::dev(&data, &[]);
    let url = node.url.clone();
    for doc in [TTL, "<http://example.org/x> <http://example.org/y> \"z\" ."] {
        cli_stdin(&["submit", "--node", &url, "--wait", "-"], doc).ok();
    }
    node.wait_final_height(4);

    // The database is locked while the node runs.
    let line = cli(&["verify", "--data-dir", &data_s]).fails().to_owned();
    assert!(line.contains("still running"), "{line}");

    node.terminate();
    let out = cli(&["verify", "--data-dir", &data_s]);
    let text = out.ok();
    assert!(
        text.contains("block_seals") && text.contains(": OK"),
        "{out:?}"
    );
    let report = cli(&["verify", "--data-dir", &data_s, "--json"]).json();
    assert_eq!(report["ok"], true);
    assert!(
        report["checked_blocks"].as_u64().is_some_and(|n| n >= 5),
        "{report}"
    );
    assert!(
        report["checked_transactions"]
            .as_u64()
            .is_some_and(|n| n >= 2),
        "{report}"
    );

    // Flip the last byte of block 2 (inside the proposer's signature).
    {
        let db = sled::open(data.join("db")).expect("open db");
        let blocks = db.open_tree("blocks").expect("blocks tree");
        let key = 2u64.to_be_bytes();
        let mut value = blocks
            .get(key)
            .expect("read")
            .expect("block 2 exists")
            .to_vec();
        let last = value.len() - 1;
        value[last] ^= 0x01;
        blocks.insert(key, value).expect("write");
        db.flush().expect("flush");
    }
    let out = cli(&["verify", "--data-dir", &data_s]);
    let line = out.fails();
    assert!(
        line.contains("block 2:") && line.contains("signature"),
        "{line}"
    );
    assert!(out.stdout.contains("FAILED"), "{out:?}");
    let out = cli(&["verify", "--data-dir", &data_s, "--json"]);
    assert_ne!(out.code, 0);
    let report: Value = serde_json::from_str(&out.stdout).expect("json report");
    assert_eq!(report["ok"], false);
    assert_eq!(report["first_error"]["height"], 2);

    let line = cli(&[
        "verify",
        "--data-dir",
        dir.path().join("nothing").to_str().expect("utf8"),
    ])
    .fails()
    .to_owned();
    assert!(line.contains("no database"), "{line}");
}

/// `provchain bench` against a real dev node whose pool is tiny: every accepted transaction
/// is seen final, the full pool answers 503, and closed-loop workers wait what the 503's
/// `Retry-After` says instead of re-sending at once (each worker meets at most one 503 per
/// second).
#[test]
fn bench_measures_a_dev_node_and_backs_off_on_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::dev(
        &dir.path().join("dev"),
        &[("PROVCHAIN_CONSENSUS__MAX_POOL_SIZE", "20")],
    );
    const WORKERS: u64 = 8;
    let v = cli(&[
        "bench",
        "--node",
        node.url.as_str(),
        "--concurrency",
        &WORKERS.to_string(),
        "--duration",
        "3s",
        "--drain",
        "20s",
        "--json",
    ])
    .json();
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"));
    assert!(n("accepted") > 0, "{v}");
    assert_eq!(
        n("final_txs"),
        n("accepted"),
        "every accepted tx seen final: {v}"
    );
    assert_eq!(n("not_final"), 0, "{v}");
    assert_eq!(n("errors") + n("rejected_other"), 0, "{v}");
    assert!(
        n("rejected_503") > 0,
        "a 20-transaction pool never filled: {v}"
    );
    let window = v["duration_s"].as_f64().expect("duration_s");
    let most = WORKERS * (window.ceil() as u64 + 1);
    assert!(
        n("rejected_503") <= most,
        "workers re-sent after 503 without waiting: {} refusals, at most {most} expected: {v}",
        n("rejected_503")
    );
    assert!(
        v["latency_s"]["p50"].as_f64().is_some_and(|p| p > 0.0),
        "{v}"
    );
}
