//! Inclusion proofs through the real API and the real CLI: valid proofs verify offline, every
//! tampering fails with its reason, and non-final transactions get no proof.

mod common;

use common::{NodeProc, cli, free_port, http};
use serde_json::Value;

fn fetch_proof(node: &NodeProc, tx: &str) -> (u16, Value) {
    let r = http()
        .get(format!("{}/api/transactions/{tx}/proof", node.url))
        .send()
        .expect("request");
    let code = r.status().as_u16();
    (code, r.json().expect("json"))
}

fn flip_hex_char(s: &str, at: usize) -> String {
    let mut c: Vec<char> = s.chars().collect();
    let i = at % c.len();
    c[i] = if c[i] == '0' { '1' } else { '0' };
    c.into_iter().collect()
}

#[test]
fn a_proof_round_trips_through_the_api_and_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::dev(&dir.path().join("dev"), &[]);
    let doc = dir.path().join("lot.ttl");
    std::fs::write(
        &doc,
        "<http://ex/lot42> <http://ex/certifiedBy> <http://ex/lab9> .\n",
    )
    .expect("write");
    let v = cli(&[
        "submit",
        "--node",
        &node.url,
        "--wait",
        "--json",
        doc.to_str().expect("utf8"),
    ])
    .json();
    let tx = v["tx_id"].as_str().expect("tx_id").to_owned();

    let (code, proof) = fetch_proof(&node, &tx);
    assert_eq!(code, 200, "{proof}");
    let file = dir.path().join("proof.json");
    std::fs::write(&file, proof.to_string()).expect("write");
    let path = file.to_str().expect("utf8");

    let out = cli(&["verify", "--proof", path]);
    let text = out.ok();
    assert!(
        text.contains("proof is valid") && text.contains(&tx),
        "{text}"
    );
    assert!(
        text.contains("<http://ex/lot42>"),
        "the claim shows the document: {text}"
    );
    let status = node.get("/api/status");
    let claim = cli(&["verify", "--proof", path, "--json"]).json();
    assert_eq!(claim["tx_id"], tx.as_str());
    assert_eq!(claim["block_height"], v["block_height"]);
    assert_eq!(claim["proposer"], status["authorities"][0]);
    assert_eq!(claim["genesis_hash"], status["genesis_hash"]);
    let gh = status["genesis_hash"].as_str().expect("genesis");
    cli(&["verify", "--proof", path, "--genesis-hash", gh]).ok();
    let other = "00".repeat(32);
    let err = cli(&["verify", "--proof", path, "--genesis-hash", &other])
        .fails()
        .to_owned();
    assert!(err.contains("not the trusted genesis"), "{err}");

    // Tampering with any part is caught, with the reason.
    type Tamper = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "transaction",
            Box::new(|p| {
                p["transaction"] = flip_hex_char(p["transaction"].as_str().unwrap_or(""), 90).into()
            }),
        ),
        (
            "header",
            Box::new(|p| {
                p["header"] = flip_hex_char(p["header"].as_str().unwrap_or(""), 20).into()
            }),
        ),
        (
            "seal",
            Box::new(|p| p["seal"] = flip_hex_char(p["seal"].as_str().unwrap_or(""), 5).into()),
        ),
        (
            "tx_id",
            Box::new(|p| p["tx_id"] = flip_hex_char(p["tx_id"].as_str().unwrap_or(""), 3).into()),
        ),
        (
            "block_hash",
            Box::new(|p| {
                p["block_hash"] = flip_hex_char(p["block_hash"].as_str().unwrap_or(""), 3).into()
            }),
        ),
        (
            "genesis",
            Box::new(|p| p["genesis"]["network_id"] = "elsewhere".into()),
        ),
    ];
    for (what, tamper) in cases {
        let mut bad = proof.clone();
        tamper(&mut bad);
        std::fs::write(&file, bad.to_string()).expect("write");
        let err = cli(&["verify", "--proof", path]).fails().to_owned();
        assert!(err.contains("proof is invalid"), "tampered {what}: {err}");
    }
    std::fs::write(&file, "{\"not\": \"a proof\"}").expect("write");
    assert!(
        cli(&["verify", "--proof", path])
            .fails()
            .contains("not an inclusion proof")
    );

    let (code, _) = fetch_proof(&node, &"ab".repeat(32));
    assert_eq!(code, 404);
}

#[test]
fn a_transaction_that_is_not_final_gets_no_proof() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("slow");
    let http_port = free_port();
    // One-hour slots: the transaction stays in the pool for the whole test.
    let args: Vec<String> = [
        "--dev",
        "--data-dir",
        data.to_str().expect("utf8"),
        "--http-port",
        &http_port.to_string(),
        "--metrics-port",
        &free_port().to_string(),
        "--port",
        &free_port().to_string(),
        "--block-interval",
        "1h",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let node = NodeProc::spawn(&args, &[], &data, format!("http://127.0.0.1:{http_port}"));
    let doc = dir.path().join("a.nt");
    std::fs::write(&doc, "<http://ex/a> <http://ex/b> <http://ex/c> .\n").expect("write");
    let tx = cli(&["submit", "--node", &node.url, doc.to_str().expect("utf8")])
        .ok()
        .trim()
        .to_owned();
    let (code, body) = fetch_proof(&node, &tx);
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["status"], "pending");
    assert!(body["error"].as_str().unwrap_or("").contains("not final"));
}

#[test]
fn digest_finds_the_same_statements_however_they_were_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::dev(&dir.path().join("dev"), &[]);
    let ttl = dir.path().join("reading.ttl");
    std::fs::write(
        &ttl,
        "@prefix ex: <http://ex/> .\nex:sensor7 ex:reading [ ex:celsius 4.5 ; ex:at \"08:00\" ] .\n",
    )
    .expect("write");
    let nt = dir.path().join("reading.nt");
    std::fs::write(
        &nt,
        "_:r <http://ex/at> \"08:00\" .\n\
         _:r <http://ex/celsius> \"4.5\"^^<http://www.w3.org/2001/XMLSchema#decimal> .\n\
         <http://ex/sensor7> <http://ex/reading> _:r .\n",
    )
    .expect("write");
    let (ttl, nt) = (
        ttl.to_str().expect("test value"),
        nt.to_str().expect("test value"),
    );

    // Offline, before anything is submitted: both files have one digest.
    let offline = cli(&["digest", ttl]).ok().trim().to_owned();
    assert_eq!(offline.len(), 64, "{offline}");
    assert_eq!(cli(&["digest", nt]).ok().trim(), offline);
    let canonical = cli(&["digest", "--canonical", nt]).ok().to_owned();
    assert!(canonical.contains("_:c14n0"), "{canonical}");
    let none = cli(&["digest", "--find", "--node", &node.url, ttl])
        .ok()
        .to_owned();
    assert!(none.contains("no final transaction"), "{none}");

    let tx = cli(&["submit", "--node", &node.url, "--wait", "--json", ttl]).json()["tx_id"]
        .as_str()
        .expect("tx_id")
        .to_owned();
    let found = cli(&["digest", "--find", "--json", "--node", &node.url, nt]).json();
    assert_eq!(found["digest"], offline.as_str(), "{found}");
    assert_eq!(found["transactions"][0]["tx_id"], tx.as_str(), "{found}");
    let table = cli(&["digest", "--find", "--node", &node.url, nt])
        .ok()
        .to_owned();
    assert!(table.contains(&tx), "{table}");

    let bad = dir.path().join("bad.nt");
    std::fs::write(&bad, "<http://ex/a> <http://ex/b> \"x\"").expect("write");
    let err = cli(&["digest", bad.to_str().expect("test value")])
        .fails()
        .to_owned();
    assert!(err.contains("invalid n-triples"), "{err}");
}
