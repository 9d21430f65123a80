//! Crash loop: real `provchaind` processes under continuous submissions, killed with SIGKILL at
//! random moments and restarted. After every restart the node comes up, every transaction the
//! API ever reported `final` is still final in the same block, the data is queryable, and
//! `/api/integrity/validate` is clean.
//!
//! Iterations: `PROVCHAIN_CRASH_ITERATIONS` (default 8: the CI run) for the dev node and
//! `PROVCHAIN_CRASH_NET_ITERATIONS` (default 3) for the three-authority network;
//! `PROVCHAIN_CRASH_SEED` replays a run's kill schedule. The full run documented in
//! docs/RELIABILITY.md:
//!
//! ```sh
//! PROVCHAIN_CRASH_ITERATIONS=60 PROVCHAIN_CRASH_NET_ITERATIONS=50 \
//!   cargo test -p provchain-node --test crash -- --nocapture
//! ```

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{NetNodeSpec, NodeProc, dev_peer_id, wait_for};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::sync::Mutex;

/// The dev and network loops run one at a time: each loads the machine on purpose.
static SERIAL: Mutex<()> = Mutex::const_new(());

const UP: Duration = Duration::from_secs(60);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rng() -> (u64, StdRng) {
    let seed = std::env::var("PROVCHAIN_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_nanos() as u64)
        });
    (seed, StdRng::seed_from_u64(seed))
}

/// What the load generator and the observer learned: every accepted transaction, and those the
/// API reported final with the block they were final in.
#[derive(Default)]
struct Ledger {
    /// tx id → (sequence number, since when the node says it does not know it), accepted
    /// (202) but not yet seen final.
    open: HashMap<String, (u64, Option<Instant>)>,
    /// tx id → (sequence number, block height, block hash) as first reported final.
    finals: BTreeMap<String, (u64, u64, String)>,
    accepted: u64,
    refused: u64,
    /// Accepted, never final, and unknown to the node for 10 s: the pool is memory, so a kill
    /// loses what was not yet sealed (the client saw only `pending`).
    lost: u64,
}

/// Submits `<http://crash/tx/N> <http://crash/seq> "N"` continuously to the node(s) at `urls`
/// (HTTP base URLs, read on every request so restarts are followed), and polls open
/// transactions until they are final. Errors while a node is down are expected and skipped.
fn spawn_load(
    urls: Arc<std::sync::Mutex<Vec<String>>>,
    ledger: Arc<std::sync::Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let pick = {
        let urls = urls.clone();
        move |n: u64| {
            let u = urls.lock().expect("urls");
            u[(n as usize) % u.len()].clone()
        }
    };
    let submitter = {
        let (client, ledger, stop, pick) =
            (client.clone(), ledger.clone(), stop.clone(), pick.clone());
        tokio::spawn(async move {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let body = format!("<http://crash/tx/{seq}> <http://crash/seq> \"{seq}\" .");
                let r = client
                    .post(format!("{}/api/transactions", pick(seq)))
                    .header("Content-Type", "text/turtle")
                    .body(body)
                    .send()
                    .await;
                let accepted = match r {
                    Ok(r) if r.status().as_u16() == 202 => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["tx_id"].as_str().map(str::to_owned)),
                    _ => None,
                };
                {
                    let mut l = ledger.lock().expect("ledger");
                    match accepted {
                        Some(id) => {
                            l.accepted += 1;
                            l.open.insert(id, (seq, None));
                        }
                        None => l.refused += 1,
                    }
                }
                // ~30 submissions per second: steady load, bounded work.
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    let observer = tokio::spawn(async move {
        let mut round = 0u64;
        while !stop.load(Ordering::Relaxed) {
            round += 1;
            let mut open: Vec<(String, u64)> = {
                let l = ledger.lock().expect("ledger");
                l.open.iter().map(|(k, v)| (k.clone(), v.0)).collect()
            };
            open.sort_by_key(|(_, seq)| *seq);
            for (id, seq) in open.into_iter().take(300) {
                let url = format!("{}/api/transactions/{id}", pick(round + seq));
                let Ok(r) = client.get(url).send().await else {
                    continue;
                };
                let code = r.status().as_u16();
                let Ok(v) = r.json::<Value>().await else {
                    continue;
                };
                let mut l = ledger.lock().expect("ledger");
                if v["status"] == "final" {
                    let hash = v["block_hash"].as_str().unwrap_or_default().to_owned();
                    l.open.remove(&id);
                    let height = v["block_height"].as_u64().unwrap_or_default();
                    l.finals.insert(id, (seq, height, hash));
                } else if code == 404 {
                    let since = l
                        .open
                        .get(&id)
                        .and_then(|e| e.1)
                        .unwrap_or_else(Instant::now);
                    if since.elapsed() > Duration::from_secs(10) {
                        l.open.remove(&id);
                        l.lost += 1;
                    } else if let Some(e) = l.open.get_mut(&id) {
                        e.1 = Some(since);
                    }
                } else if let Some(e) = l.open.get_mut(&id) {
                    e.1 = None;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    vec![submitter, observer]
}

/// Every transaction ever reported final (by any node) is final on `node`, in the same block,
/// once `node` has finalized that far; the triples are queryable; the integrity check passes.
/// Returns the number of finals checked.
async fn verify_finals(node: &NodeProc, ledger: &std::sync::Mutex<Ledger>, when: &str) -> usize {
    let finals: Vec<(String, (u64, u64, String))> = {
        let l = ledger.lock().expect("ledger");
        l.finals
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    // Another node may have finalized further; this one catches up (a lagging node is fine, a
    // stuck one fails here).
    let top = finals.iter().map(|(_, (_, h, _))| *h).max().unwrap_or(0);
    node.wait_final_height(top, UP).await;
    for (id, (seq, height, hash)) in &finals {
        let (code, v) = node.get(&format!("/api/transactions/{id}")).await;
        if (code, v["status"].as_str()) != (200, Some("final")) {
            // Tells a node that finalized another block at that height from one whose storage
            // lost track of the transaction.
            let (_, block) = node.get(&format!("/api/blocks/{height}")).await;
            panic!(
                "{when}: tx {id} (seq {seq}) was reported final in block {hash} at height \
                 {height}, now: {v}; this node's block at that height: {} (final: {}), status: {}",
                block["hash"],
                block["final"],
                node.status().await
            );
        }
        assert_eq!(
            v["block_hash"].as_str(),
            Some(hash.as_str()),
            "{when}: tx {id} moved: {v}"
        );
    }
    if let Some((_, (seq, _, _))) = finals.last() {
        let ask = node
            .sparql(&format!(
                "ASK {{ <http://crash/tx/{seq}> <http://crash/seq> \"{seq}\" }}"
            ))
            .await;
        assert_eq!(ask["boolean"], true, "{when}: final tx {seq} not queryable");
    }
    let (code, report) = node.get("/api/integrity/validate").await;
    assert_eq!(
        (code, &report["ok"]),
        (200, &Value::Bool(true)),
        "{when}: {report}"
    );
    finals.len()
}

/// For `period`, under the running load: whatever final head `/api/status` reports, storage
/// holds that block as final when asked right after. Commits run on a writer thread while the
/// chain moves on, so this fails if the API ever calls final a block still being committed.
async fn final_head_is_always_on_disk(node: &NodeProc, period: Duration) {
    let until = Instant::now() + period;
    // Documents of 1,000 statements: each block's commit takes a while, so the status is
    // often read while one runs.
    let heavy = {
        let (http, client) = (node.http.clone(), reqwest::Client::new());
        tokio::spawn(async move {
            for n in 0u64.. {
                if Instant::now() >= until {
                    break;
                }
                let doc: String = (0..1000)
                    .map(|i| format!("<http://crash/heavy/{n}/{i}> <http://crash/p> \"{i}\" .\n"))
                    .collect();
                let _ = client
                    .post(format!("{http}/api/transactions"))
                    .header("Content-Type", "application/n-triples")
                    .body(doc)
                    .send()
                    .await;
                // Paced: a few per block, not a backlog the rest of the test waits for.
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        })
    };
    let mut heights = std::collections::BTreeSet::new();
    while Instant::now() < until {
        let status = node.status().await;
        verify_final_head(node, &status, "under load").await;
        heights.insert(status["finalized_height"].as_u64().unwrap_or(0));
    }
    let _ = heavy.await;
    assert!(
        heights.len() > 2,
        "the final head hardly moved while it was watched: {heights:?}"
    );
}

/// The final head the API reported (`/api/status` before a kill) is a final block on disk.
async fn verify_final_head(node: &NodeProc, before: &Value, when: &str) {
    let height = before["finalized_height"]
        .as_u64()
        .expect("finalized_height");
    let (code, block) = node.get(&format!("/api/blocks/{height}")).await;
    assert_eq!(
        code, 200,
        "{when}: reported final height {height} is gone: {block}"
    );
    assert_eq!(
        (&block["hash"], &block["final"]),
        (&before["finalized_hash"], &Value::Bool(true)),
        "{when}: the block reported final at height {height} is not the final one on disk"
    );
}

async fn sleep_ms(rng: &mut StdRng, lo: u64, hi: u64) -> u64 {
    let d = rng.random_range(lo..=hi);
    tokio::time::sleep(Duration::from_millis(d)).await;
    d
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_node_survives_random_kill_9_under_load() {
    let _serial = SERIAL.lock().await;
    let iterations = env_usize("PROVCHAIN_CRASH_ITERATIONS", 8);
    let (seed, mut rng) = rng();
    eprintln!("dev crash loop: {iterations} iterations, PROVCHAIN_CRASH_SEED={seed}");
    let dir = tempfile::tempdir().expect("tempdir");
    // Quarter-second blocks: several commits between two kills.
    let mut node = NodeProc::spawn(
        &dir.path().join("dev"),
        &["--dev", "--block-interval", "250ms"],
        &[],
    );
    node.wait_healthy().await;

    let urls = Arc::new(std::sync::Mutex::new(vec![node.http.clone()]));
    let ledger = Arc::new(std::sync::Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = spawn_load(urls, ledger.clone(), stop.clone());
    final_head_is_always_on_disk(&node, Duration::from_secs(2)).await;
    let started = Instant::now();
    let (mut kills, mut startup_kills) = (0, 0);
    let mut checked = 0;
    for i in 0..iterations {
        // Every third round also kills during startup (database open, recovery).
        if i % 3 == 2 {
            node.kill9();
            node.restart();
            sleep_ms(&mut rng, 0, 300).await;
            node.kill9();
            kills += 1;
            startup_kills += 1;
        }
        // Under load for a random while, then SIGKILL right after asking for the final head.
        sleep_ms(&mut rng, 100, 1500).await;
        // (After a round's kill during startup the node is down already.)
        let before = if i % 3 == 2 {
            None
        } else {
            Some(node.status().await)
        };
        node.kill9();
        kills += 1;
        node.restart();
        node.wait_healthy().await;
        let when = format!("after kill {kills}");
        if let Some(before) = &before {
            verify_final_head(&node, before, &when).await;
        }
        checked = verify_finals(&node, &ledger, &when).await;
    }
    // The chain still moves: one more submission goes final.
    let id = node
        .submit("<http://crash/after> <http://crash/p> \"end\" .")
        .await;
    node.wait_final(&id, UP).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    checked = checked.max(verify_finals(&node, &ledger, "at the end").await);
    {
        let l = ledger.lock().expect("ledger");
        eprintln!(
            "dev crash loop: {kills} kills ({startup_kills} during startup) in {:?}; {} accepted, \
         {} refused while down, {checked} final and intact, {} lost from the pool by a kill \
         before sealing (never reported final: allowed), {} still open",
            started.elapsed(),
            l.accepted,
            l.refused,
            l.lost,
            l.open.len()
        );
    }
    assert!(
        checked > 0,
        "no transaction reached final: the loop proved nothing"
    );
    assert!(
        node.metric("provchain_final_height").await.unwrap_or(0.0) > 0.0,
        "final height"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn network_survives_random_kill_9_of_authorities() {
    let _serial = SERIAL.lock().await;
    let iterations = env_usize("PROVCHAIN_CRASH_NET_ITERATIONS", 3);
    let (seed, mut rng) = rng();
    eprintln!("network crash loop: {iterations} iterations, PROVCHAIN_CRASH_SEED={seed}");
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = |key, peers| NetNodeSpec {
        key,
        authority: true,
        authorities: 3,
        peers,
        allowed: &[],
        extra_toml: "",
    };
    let mut n1 = NodeProc::net(dir.path(), &spec(1, &[]));
    n1.wait_healthy().await;
    let seed_addr = vec![n1.p2p_addr()];
    let mut nodes = vec![
        n1,
        NodeProc::net(dir.path(), &spec(2, &seed_addr)),
        NodeProc::net(dir.path(), &spec(3, &seed_addr)),
    ];
    for n in &mut nodes {
        n.wait_healthy().await;
    }
    for (i, n) in nodes.iter().enumerate() {
        let others: Vec<String> = (1..=3u32)
            .filter(|k| *k != i as u32 + 1)
            .map(dev_peer_id)
            .collect();
        wait_for("full mesh", UP, || async {
            let peers = n.peer_ids().await;
            others.iter().all(|o| peers.contains(o)).then_some(())
        })
        .await;
    }
    nodes[0].wait_final_height(2, UP).await;

    let urls = Arc::new(std::sync::Mutex::new(
        nodes.iter().map(|n| n.http.clone()).collect(),
    ));
    let ledger = Arc::new(std::sync::Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = spawn_load(urls, ledger.clone(), stop.clone());
    let started = Instant::now();
    let mut kills = 0;
    let mut checked = 0;
    for _ in 0..iterations {
        sleep_ms(&mut rng, 100, 1500).await;
        let victim = rng.random_range(0..nodes.len());
        nodes[victim].kill9();
        kills += 1;
        // Down for a while: the other two keep finalizing (2 of 3 is a majority).
        sleep_ms(&mut rng, 100, 1500).await;
        nodes[victim].restart();
        nodes[victim].wait_healthy().await;
        // It rejoins: catches up past the height the others had when it came back.
        let target = nodes[(victim + 1) % 3].final_height().await;
        nodes[victim].wait_final_height(target, UP).await;
        let when = format!("after kill {kills} (node{})", victim + 1);
        checked = verify_finals(&nodes[victim], &ledger, &when).await;
    }
    // With all three back, the network finalizes again: a transaction accepted after the last
    // restart becomes final. (A kill schedule can leave too few live slots during the loop for
    // anything to finalize there.)
    let after = {
        let l = ledger.lock().expect("ledger");
        l.open.values().map(|(seq, _)| *seq).max().unwrap_or(0)
    };
    wait_for(
        "a transaction accepted after the last kill is final",
        UP,
        || {
            let l = ledger.lock().expect("ledger");
            let done = l.finals.values().any(|(seq, _, _)| *seq >= after);
            std::future::ready(done.then_some(()))
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // All three agree on the final chain and hold every final transaction.
    let h = {
        let mut h = u64::MAX;
        for n in &nodes {
            h = h.min(n.final_height().await);
        }
        h
    };
    let reference = nodes[0].final_hashes(0, h + 1).await;
    assert_eq!(reference.len() as u64, h + 1);
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(
            n.final_hashes(0, h + 1).await,
            reference,
            "node{} diverged",
            i + 1
        );
        checked = checked.max(verify_finals(n, &ledger, &format!("end, node{}", i + 1)).await);
    }
    let l = ledger.lock().expect("ledger");
    eprintln!(
        "network crash loop: {kills} kills in {:?}; {} accepted, {} refused, {checked} final \
         and intact on all three nodes, {} lost from a killed node's pool, common final height {h}",
        started.elapsed(),
        l.accepted,
        l.refused,
        l.lost
    );
    assert!(
        checked > 0,
        "no transaction reached final: the loop proved nothing"
    );
}
