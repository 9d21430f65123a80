//! Three authorities (and observers) as real `provchaind` processes on loopback.

mod common;

use std::time::Duration;

use common::{NetNodeSpec, NodeProc, dev_peer_id, dev_public_keys, wait_for};
use tokio::sync::Mutex;

/// Network tests run one at a time: they are timing-sensitive (1 s slots) on a 2-core machine.
static SERIAL: Mutex<()> = Mutex::const_new(());

const LONG: Duration = Duration::from_secs(60);

/// Starts authorities 1..=3; nodes 2 and 3 know only node 1.
async fn three_authorities(dir: &std::path::Path, allowed: &[String]) -> Vec<NodeProc> {
    let spec = |key, peers| NetNodeSpec {
        key,
        authority: true,
        authorities: 3,
        peers,
        allowed,
        extra_toml: "",
    };
    let mut n1 = NodeProc::net(dir, &spec(1, &[]));
    n1.wait_healthy().await;
    let seed = vec![n1.p2p_addr()];
    let mut n2 = NodeProc::net(dir, &spec(2, &seed));
    let mut n3 = NodeProc::net(dir, &spec(3, &seed));
    n2.wait_healthy().await;
    n3.wait_healthy().await;
    vec![n1, n2, n3]
}

async fn wait_full_mesh(nodes: &[NodeProc]) {
    for (i, n) in nodes.iter().enumerate() {
        let others: Vec<String> = (1..=nodes.len() as u32)
            .filter(|k| *k != i as u32 + 1)
            .map(dev_peer_id)
            .collect();
        wait_for(
            &format!("node{} connected to {others:?}", i + 1),
            LONG,
            || async {
                let peers = n.peer_ids().await;
                others.iter().all(|o| peers.contains(o)).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_authorities_discover_each_other_and_agree() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = three_authorities(dir.path(), &[]).await;

    // Discovery: 2 and 3 were given only node 1's address, yet end up directly connected.
    wait_full_mesh(&nodes).await;
    let (_, peers) = nodes[0].get("/api/peers").await;
    let peers = peers.as_array().cloned().unwrap_or_default();
    assert_eq!(peers.len(), 2);
    assert!(
        peers
            .iter()
            .all(|p| p["is_authority"] == true && p["addresses"].is_array())
    );
    for n in &nodes {
        wait_for("ready", LONG, || async {
            (n.get("/ready").await.0 == 200).then_some(())
        })
        .await;
    }

    // Agreement: a transaction submitted to node 3 is final everywhere with identical answers.
    let tx = nodes[2]
        .submit("<http://ex/lot7> <http://ex/inspectedBy> <http://ex/lab2> .")
        .await;
    let mut where_final = Vec::new();
    for n in &nodes {
        let t = n.wait_final(&tx, LONG).await;
        where_final.push((t["block_height"].clone(), t["block_hash"].clone()));
    }
    assert!(
        where_final.windows(2).all(|w| w[0] == w[1]),
        "{where_final:?}"
    );
    let q = "SELECT ?s ?o WHERE { ?s <http://ex/inspectedBy> ?o }";
    let answers = [
        nodes[0].sparql(q).await,
        nodes[1].sparql(q).await,
        nodes[2].sparql(q).await,
    ];
    assert_eq!(
        answers[0]["results"]["bindings"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(answers.windows(2).all(|w| w[0] == w[1]));

    // After more blocks, the final chains are identical and sealed by all three in turn.
    let target = nodes[0].final_height().await + 6;
    for n in &nodes {
        n.wait_final_height(target, LONG).await;
    }
    let chains = [
        nodes[0].final_hashes(0, target + 1).await,
        nodes[1].final_hashes(0, target + 1).await,
        nodes[2].final_hashes(0, target + 1).await,
    ];
    assert_eq!(chains[0].len() as u64, target + 1);
    assert_eq!(chains[0], chains[1]);
    assert_eq!(chains[0], chains[2]);
    let keys = dev_public_keys(3);
    let mut proposers = std::collections::HashSet::new();
    for h in target - 5..=target {
        let b = nodes[0].block(h).await;
        proposers.insert(b["proposer"].as_str().unwrap_or("").to_owned());
        let slot = b["slot"].as_u64().expect("slot");
        assert_eq!(
            b["proposer"],
            keys[(slot % 3) as usize],
            "block {h} sealed out of turn"
        );
    }
    assert_eq!(proposers.len(), 3, "every authority seals in its slots");

    // Each node prepared its commits while the blocks waited for finality: a block is
    // imported a slot before the next proposer's block makes it final.
    for (i, n) in nodes.iter().enumerate() {
        let prepared = n
            .metric("provchain_commits_prepared_total")
            .await
            .unwrap_or(0.0);
        assert!(prepared >= 3.0, "node {i} prepared {prepared} commits");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_of_three_keep_finalizing_and_a_restarted_node_rejoins() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = three_authorities(dir.path(), &[]).await;
    wait_full_mesh(&nodes).await;
    let start = nodes[0].final_height().await;
    nodes[1].wait_final_height(start + 2, LONG).await;

    nodes[1].kill9();
    let stopped_at = nodes[0].final_height().await;
    // Blocks keep coming in the other two's slots and keep turning final.
    nodes[0].wait_final_height(stopped_at + 5, LONG).await;
    nodes[2].wait_final_height(stopped_at + 5, LONG).await;
    let node2_key = &dev_public_keys(3)[1];
    let tx = nodes[0]
        .submit("<http://ex/while> <http://ex/down> \"node2\" .")
        .await;
    nodes[2].wait_final(&tx, LONG).await;

    // Restart node 2: it syncs the blocks it missed and seals again in its own slots.
    nodes[1].restart();
    nodes[1].wait_healthy().await;
    let target = nodes[0].final_height().await;
    nodes[1].wait_final_height(target, LONG).await;
    assert_eq!(
        nodes[1].final_hashes(target, 1).await,
        nodes[0].final_hashes(target, 1).await
    );
    assert_eq!(nodes[1].wait_final(&tx, LONG).await["status"], "final");
    let from = nodes[1].final_height().await;
    wait_for(
        "a block sealed by node 2 after it rejoined",
        LONG,
        || async {
            let top = nodes[0].final_height().await;
            for h in from + 1..=top {
                if nodes[0].block(h).await["proposer"] == *node2_key {
                    return Some(h);
                }
            }
            None
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_observer_syncs_from_scratch_and_a_stranger_is_refused() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Dev key 9 is an allowed observer; dev key 8 is allowed nowhere.
    let allowed = vec![dev_peer_id(9)];
    let nodes = three_authorities(dir.path(), &allowed).await;
    wait_full_mesh(&nodes).await;
    let tx = nodes[0]
        .submit("<http://ex/a> <http://ex/b> \"before the observer\" .")
        .await;
    nodes[0].wait_final(&tx, LONG).await;
    nodes[0].wait_final_height(12, LONG).await;

    let seed = vec![nodes[0].p2p_addr()];
    let mut observer = NodeProc::net(
        dir.path(),
        &NetNodeSpec {
            key: 9,
            authority: false,
            authorities: 3,
            peers: &seed,
            allowed: &[],
            extra_toml: "",
        },
    );
    let mut stranger = NodeProc::net(
        dir.path(),
        &NetNodeSpec {
            key: 8,
            authority: false,
            authorities: 3,
            peers: &seed,
            allowed: &[],
            extra_toml: "",
        },
    );
    observer.wait_healthy().await;
    stranger.wait_healthy().await;

    // The observer catches up on the whole chain and follows the head.
    let target = nodes[0].final_height().await;
    observer.wait_final_height(target + 3, LONG).await;
    assert_eq!(
        observer.final_hashes(0, target + 1).await,
        nodes[0].final_hashes(0, target + 1).await
    );
    assert_eq!(observer.wait_final(&tx, LONG).await["status"], "final");
    let q = r#"ASK { <http://ex/a> <http://ex/b> "before the observer" }"#;
    assert_eq!(observer.sparql(q).await["boolean"], true);
    assert_eq!(observer.status().await["is_authority"], false);
    assert_eq!(
        observer.metric("provchain_blocks_produced_total").await,
        Some(0.0)
    );

    // The stranger never connects and never receives a block.
    wait_for("refusal counted", LONG, || async {
        let refused = nodes[0]
            .metric("provchain_peers_refused_total")
            .await
            .unwrap_or(0.0);
        (refused >= 1.0).then_some(())
    })
    .await;
    assert!(stranger.peer_ids().await.is_empty());
    assert_eq!(stranger.final_height().await, 0);
    assert!(!nodes[0].peer_ids().await.contains(&dev_peer_id(8)));
}
