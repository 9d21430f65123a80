//! Clock skew: three authorities with 1 s slots, one clock 2 s fast and one 2 s slow
//! (`consensus.clock_offset_ms`). With network-adjusted time (the default) the fast and slow
//! nodes move their slot clocks to the median one, which the metric
//! `provchain_clock_adjustment_seconds` and a warning report, and the network keeps finalizing at
//! full speed with every node agreeing. With the adjustment off and the default drift allowance
//! (500 ms) the fast node's blocks are refused as `future_slot` by the slow node, which is logged
//! and counted, and the final chain still never forks.

mod common;

use std::time::{Duration, Instant};

use common::{NetNodeSpec, NodeProc, dev_peer_id, wait_for};
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

const LONG: Duration = Duration::from_secs(90);

/// Starts authorities 1 (+2 s), 2 (on time) and 3 (−2 s), all with `drift_ms` allowance and at
/// most `adjust_ms` of network time adjustment.
async fn skewed_network(dir: &std::path::Path, drift_ms: u64, adjust_ms: u64) -> Vec<NodeProc> {
    let offsets = [2000i64, 0, -2000];
    let extra: Vec<String> = offsets
        .iter()
        .map(|o| {
            format!(
                "clock_offset_ms = {o}\nmax_clock_drift_ms = {drift_ms}\n\
                 max_clock_adjust_ms = {adjust_ms}"
            )
        })
        .collect();
    let spec = |key: u32, peers| NetNodeSpec {
        key,
        authority: true,
        authorities: 3,
        peers,
        allowed: &[],
        extra_toml: &extra[key as usize - 1],
    };
    let mut n1 = NodeProc::net(dir, &spec(1, &[]));
    n1.wait_healthy().await;
    let seed = vec![n1.p2p_addr()];
    let mut nodes = vec![
        n1,
        NodeProc::net(dir, &spec(2, &seed)),
        NodeProc::net(dir, &spec(3, &seed)),
    ];
    for n in &mut nodes {
        n.wait_healthy().await;
    }
    for (i, n) in nodes.iter().enumerate() {
        let others: Vec<String> = (1..=3u32)
            .filter(|k| *k != i as u32 + 1)
            .map(dev_peer_id)
            .collect();
        wait_for("full mesh", LONG, || async {
            let peers = n.peer_ids().await;
            others.iter().all(|o| peers.contains(o)).then_some(())
        })
        .await;
    }
    nodes
}

async fn rejected(n: &NodeProc, reason: &str) -> f64 {
    let text = n.get_text("/metrics").await;
    text.lines()
        .filter(|l| {
            l.starts_with("provchain_blocks_rejected_total{")
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Final heights on all nodes after `secs` seconds, and whether they agree on the final chain.
async fn progress(nodes: &[NodeProc], secs: u64) -> (Vec<u64>, Vec<u64>, bool) {
    let mut before = Vec::new();
    for n in nodes {
        before.push(n.final_height().await);
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let mut after = Vec::new();
    for n in nodes {
        after.push(n.final_height().await);
    }
    let common = after.iter().copied().min().unwrap_or(0);
    let reference = nodes[0].final_hashes(0, common + 1).await;
    let mut agree = reference.len() as u64 == common + 1;
    for n in &nodes[1..] {
        agree &= n.final_hashes(0, common + 1).await == reference;
    }
    (before, after, agree)
}

/// Final blocks sealed by authorities 1, 2 and 3 (dev keys), from `nodes[1]`'s final chain.
async fn sealed_by(nodes: &[NodeProc]) -> [usize; 3] {
    let keys = common::dev_public_keys(3);
    let (_, dump) = nodes[1].get("/api/blockchain/dump?from=1").await;
    let mut out = [0; 3];
    for b in dump.as_array().cloned().unwrap_or_default() {
        if let Some(i) = keys.iter().position(|k| b["proposer"] == k.as_str()) {
            out[i] += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn two_second_skew_is_corrected_and_the_network_keeps_finalizing() {
    let _serial = SERIAL.lock().await;
    let drift: u64 = std::env::var("PROVCHAIN_SKEW_DRIFT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = skewed_network(dir.path(), drift, 10_000).await;
    nodes[1].wait_final_height(3, LONG).await;

    // Transactions submitted to each node go final on every node.
    let started = Instant::now();
    let mut ids = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        ids.push(
            n.submit(&format!(
                "<http://ex/skew> <http://ex/from> \"node{}\" .",
                i + 1
            ))
            .await,
        );
    }
    for id in &ids {
        for n in &nodes {
            n.wait_final(id, LONG).await;
        }
    }
    let took = started.elapsed();
    let (before, after, agree) = progress(&nodes, 30).await;
    let mut early = Vec::new();
    let mut future = Vec::new();
    for n in &nodes {
        early.push(rejected(n, "early").await);
        future.push(rejected(n, "future_slot").await);
    }
    let by = sealed_by(&nodes).await;
    let missed = nodes[1].metric("provchain_missed_slots_total").await;
    let mut adjust = Vec::new();
    for n in &nodes {
        adjust.push(
            n.metric("provchain_clock_adjustment_seconds")
                .await
                .unwrap_or(f64::NAN),
        );
    }
    eprintln!(
        "skew ±2000 ms, drift {drift} ms: 3 txs final everywhere in {took:?}; final heights \
         {before:?} -> {after:?} over 30 s; agree: {agree}; clock adjustment per node \
         {adjust:?} s; early (held) per node {early:?}; future_slot per node {future:?}; final \
         blocks sealed by node1/2/3 {by:?}; missed slots seen by node2 {missed:?}"
    );
    assert!(agree, "final chains differ");
    for (b, a) in before.iter().zip(&after) {
        // At least a block every three slots (a stalled or crawling network fails).
        assert!(a >= &(b + 10), "finality too slow: {before:?} -> {after:?}");
    }
    // The skew is corrected and reported: the fast node moved back and the slow one forward,
    // until the three slot clocks (clock offset + adjustment) agree within the dead band.
    // The network may settle on any common frame (a run had all three moved by -1 s), so the
    // corrections are read against the middle node's.
    assert!(
        adjust[0] - adjust[1] < -1.0 && adjust[2] - adjust[1] > 1.0,
        "not corrected: {adjust:?}"
    );
    let slot_clocks = [2.0 + adjust[0], adjust[1], -2.0 + adjust[2]];
    let spread = slot_clocks.iter().copied().fold(f64::MIN, f64::max)
        - slot_clocks.iter().copied().fold(f64::MAX, f64::min);
    assert!(spread < 0.6, "slot clocks still {slot_clocks:?} s apart");
    assert!(
        nodes[0]
            .log_text()
            .contains("differs from the authorities' median clock")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn uncorrected_skew_beyond_the_allowance_is_counted_and_never_forks_the_final_chain() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = skewed_network(dir.path(), 500, 0).await;
    // Give it time to meet the skew: blocks from 4 s ahead (the fast node, seen by the slow one)
    // are beyond the hold window (drift + 2 slots = 2.5 s).
    let slow = &nodes[2];
    wait_for("future_slot rejections on the slow node", LONG, || async {
        (rejected(slow, "future_slot").await > 0.0).then_some(())
    })
    .await;
    let (before, after, agree) = progress(&nodes, 10).await;
    let future: f64 = rejected(slow, "future_slot").await;
    let logged = slow.log_text().contains("rejected block");
    let by = sealed_by(&nodes).await;
    eprintln!(
        "skew ±2000 ms, drift 500 ms: final heights {before:?} -> {after:?} over 10 s; agree: \
         {agree}; slow node future_slot rejections {future}; logged: {logged}; final blocks \
         sealed by node1/2/3 {by:?}"
    );
    assert!(agree, "final chains differ");
    assert!(logged, "future-slot rejections are not logged");
}
