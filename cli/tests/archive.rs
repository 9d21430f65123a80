//! Export a live node's chain, import it into an empty data dir, run that as an observer: same
//! final head and SPARQL answers, and it keeps syncing. Corrupted archives are refused.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{NodeProc, cli, free_port, http, wait_for};
use provchain_node::keys::dev_key;
use serde_json::Value;

fn config(
    dir: &Path,
    name: &str,
    key: u32,
    authority: bool,
    p2p: u16,
    peers: &[String],
    allowed: &[String],
) -> String {
    let q = |v: &[String]| {
        v.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        "node_id = \"{name}\"\n[network]\nnetwork_id = \"provchain-testnet\"\nbind_address = \"127.0.0.1\"\n\
         listen_port = {p2p}\nknown_peers = [{peers}]\nallowed_peers = [{allowed}]\n[consensus]\n\
         is_authority = {authority}\ndev_key = {key}\nauthority_keys = [\"{auth}\"]\nblock_interval = \"250ms\"\n",
        peers = q(peers),
        allowed = q(allowed),
        auth = dev_key(1).public().to_hex(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("config");
    path.display().to_string()
}

fn start(cfg: &str, data: &Path) -> NodeProc {
    let port = free_port();
    let args: Vec<String> = [
        "--config",
        cfg,
        "--data-dir",
        data.to_str().expect("utf8"),
        "--http-port",
        &port.to_string(),
        "--metrics-port",
        &free_port().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    NodeProc::spawn(&args, &[], data, format!("http://127.0.0.1:{port}"))
}

fn sparql(node: &NodeProc, q: &str) -> Value {
    http()
        .post(format!("{}/sparql", node.url))
        .header("Content-Type", "application/sparql-query")
        .body(q.to_owned())
        .send()
        .expect("sparql")
        .json()
        .expect("json")
}

fn hash_at(node: &NodeProc, h: u64) -> Value {
    node.get(&format!("/api/blocks/{h}"))["hash"].clone()
}

#[test]
fn an_exported_chain_imports_and_runs_as_an_observer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let observer_id = provchain_p2p::peer_id_of(&dev_key(9).public()).to_string();
    let p2p_a = free_port();
    let cfg_a = config(dir.path(), "authority", 1, true, p2p_a, &[], &[observer_id]);
    let a = start(&cfg_a, &dir.path().join("a"));
    for i in 0..3 {
        let doc = dir.path().join(format!("d{i}.ttl"));
        std::fs::write(
            &doc,
            format!("<http://ex/item{i}> <http://ex/weight> {i} .\n"),
        )
        .expect("write");
        cli(&[
            "submit",
            "--node",
            &a.url,
            "--wait",
            doc.to_str().expect("utf8"),
        ])
        .ok();
    }

    let archive = dir.path().join("chain.pca");
    let out = cli(&[
        "export",
        "--node",
        &a.url,
        "--out",
        archive.to_str().expect("utf8"),
        "--json",
    ])
    .json();
    let exported = out["blocks"].as_u64().expect("blocks");
    assert!(exported >= 3, "{out}");
    assert_eq!(out["transactions"], 3);

    // A corrupted copy is refused, naming the block.
    let mut bytes = std::fs::read(&archive).expect("read");
    let n = bytes.len();
    bytes[n - 10] ^= 0x40; // inside the last block's seal
    let bad = dir.path().join("bad.pca");
    std::fs::write(&bad, &bytes).expect("write");
    let err = cli(&[
        "import",
        "--file",
        bad.to_str().expect("utf8"),
        "--data-dir",
        dir.path().join("x").to_str().expect("utf8"),
    ])
    .fails()
    .to_owned();
    assert!(err.contains(&format!("block {exported}")), "{err}");

    let data_b = dir.path().join("b");
    let imported = cli(&[
        "import",
        "--file",
        archive.to_str().expect("utf8"),
        "--data-dir",
        data_b.to_str().expect("utf8"),
        "--json",
    ])
    .json();
    assert_eq!(imported["blocks"].as_u64(), Some(exported));
    // Importing twice into the same data dir is refused.
    let again = cli(&[
        "import",
        "--file",
        archive.to_str().expect("utf8"),
        "--data-dir",
        data_b.to_str().expect("utf8"),
    ]);
    assert!(again.fails().contains("already holds a database"));

    let cfg_b = config(
        dir.path(),
        "observer",
        9,
        false,
        free_port(),
        &[format!("127.0.0.1:{p2p_a}")],
        &[],
    );
    let b = start(&cfg_b, &data_b);
    // Right after start, before syncing anything: the imported head is the exported one.
    assert_eq!(hash_at(&b, exported), hash_at(&a, exported));
    let q = "SELECT ?s ?w WHERE { ?s <http://ex/weight> ?w } ORDER BY ?s";
    assert_eq!(sparql(&b, q)["results"], sparql(&a, q)["results"]);
    assert_eq!(
        sparql(&b, q)["results"]["bindings"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    // Then it keeps following the authority.
    let target = a.get("/api/status")["finalized_height"]
        .as_u64()
        .expect("height")
        + 4;
    wait_for(
        "observer follows the authority",
        Duration::from_secs(30),
        || (b.get("/api/status")["finalized_height"].as_u64()? >= target).then_some(()),
    );
    assert_eq!(hash_at(&b, target), hash_at(&a, target));
    drop(b);

    // Export from the (stopped) observer's data dir, with an N-Quads dump.
    let nq = dir.path().join("dataset.nq");
    let out = cli(&[
        "export",
        "--data-dir",
        data_b.to_str().expect("utf8"),
        "--out",
        dir.path().join("b.pca").to_str().expect("utf8"),
        "--nquads",
        nq.to_str().expect("utf8"),
        "--json",
    ])
    .json();
    assert!(out["blocks"].as_u64().is_some_and(|n| n >= target), "{out}");
    let dump = std::fs::read_to_string(&nq).expect("nquads");
    assert!(dump.lines().any(|l| l.starts_with("<http://ex/item2> <http://ex/weight> \"2\"^^<http://www.w3.org/2001/XMLSchema#integer> <urn:provchain:tx:")), "{}", &dump[..dump.len().min(600)]);
    assert!(dump.lines().all(|l| l.ends_with(" .")));
}
