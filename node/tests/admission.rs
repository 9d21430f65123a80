//! Pool admission under overload: a node refuses client submissions once its client share of
//! `consensus.max_pool_size` is pooled, and still admits transactions its peers gossip up to
//! the bound itself, so every authority keeps holding every pending transaction.
//!
//! The network's only authority is an in-process libp2p peer that never seals, so nothing
//! leaves the pool while the test runs.

mod common;

use std::time::Duration;

use common::{NetNodeSpec, NodeProc, signed_tx, wait_for};
use provchain_node::keys::dev_key;

const LONG: Duration = Duration::from_secs(60);
/// The node's pool bound; clients get 3/10 of it.
const POOL: usize = 20;
const CLIENT_SHARE: usize = POOL * 3 / 10;

#[tokio::test(flavor = "multi_thread")]
async fn clients_get_a_share_of_the_pool_and_peers_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProc::net(
        dir.path(),
        &NetNodeSpec {
            extra_toml: &format!("max_pool_size = {POOL}\n"),
            ..NetNodeSpec::observer_of_one(&[])
        },
    );
    node.wait_healthy().await;
    let (p2p, _events, gh) =
        common::adversary(1, &node, vec![dev_key(1).public(), dev_key(2).public()]).await;

    // Clients fill their share; the next submission is refused before it is parsed.
    for i in 0..CLIENT_SHARE {
        node.submit(&format!("<http://client/{i}> <http://ex/p> \"{i}\" ."))
            .await;
    }
    let refused = reqwest::Client::new()
        .post(format!("{}/api/transactions", node.http))
        .header("Content-Type", "application/n-triples")
        .body("<http://client/late> <http://ex/p> \"late\" .")
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body = refused.text().await.unwrap_or_default();
    assert!(body.contains("pool is full"), "{body}");

    // The peer's transactions are still admitted, up to the pool bound and no further.
    let gossiped: Vec<_> = (0..POOL)
        .map(|i| signed_tx(1, &gh, format!("<http://peer/{i}> <http://ex/p> \"{i}\" .")))
        .collect();
    let room = POOL - CLIENT_SHARE;
    p2p.publish_txs(&gossiped[..room])
        .await
        .expect("publish txs");
    for tx in &gossiped[..room] {
        let path = format!("/api/transactions/{}", tx.id().to_hex());
        wait_for("the gossiped transaction is pooled", LONG, || async {
            let (code, v) = node.get(&path).await;
            (code == 200 && v["status"] == "pending").then_some(())
        })
        .await;
    }
    assert_eq!(
        node.metric("provchain_pool_size").await,
        Some(POOL as f64),
        "clients' share plus the peer's transactions"
    );
    let full_before = node
        .metric("provchain_pool_full_total")
        .await
        .unwrap_or(0.0);
    p2p.publish_txs(&gossiped[room..])
        .await
        .expect("publish txs");
    wait_for(
        "gossip beyond the pool bound is refused and counted",
        LONG,
        || async {
            let full = node
                .metric("provchain_pool_full_total")
                .await
                .unwrap_or(0.0);
            (full > full_before).then_some(())
        },
    )
    .await;
    assert_eq!(node.metric("provchain_pool_size").await, Some(POOL as f64));
    let (code, _) = node
        .get(&format!(
            "/api/transactions/{}",
            gossiped[POOL - 1].id().to_hex()
        ))
        .await;
    assert_eq!(code, 404, "a transaction beyond the bound was pooled");
    p2p.shutdown().await;
}
