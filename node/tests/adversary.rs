//! An allowed but hostile peer (an in-process libp2p node holding authority keys it should not
//! use) sends node 1 blocks that break the rules. Each is rejected with its reason and counted,
//! never forwarded, and the honest chain carries on.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{NetNodeSpec, NodeProc, dev_peer_id, wait_for};
use provchain_consensus::{Block, BlockHeader, Hash, RdfFormat, Transaction, TxBody};
use provchain_node::keys::dev_key;
use provchain_p2p::{ChainStatus, P2pEvent, P2pHandle, PeerId};

const LONG: Duration = Duration::from_secs(60);
const ADVERSARY_KEY: u32 = 7;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The current best head of `peer`, fetched over the sync protocol.
async fn head_of(p2p: &P2pHandle, peer: PeerId) -> Block {
    let status = p2p.request_status(peer).await.expect("status");
    let mut blocks = p2p
        .request_blocks(peer, status.best_height, 1)
        .await
        .expect("blocks");
    blocks.pop().expect("head block")
}

fn leader_key(slot: u64) -> provchain_consensus::Keypair {
    dev_key((slot % 3) as u32 + 1)
}

fn not_leader_key(slot: u64) -> provchain_consensus::Keypair {
    dev_key(((slot + 1) % 3) as u32 + 1)
}

/// Node 1 as the network's only authority, allowing the adversary's peer id, and the
/// adversary connected to it (its handle, its event receiver, the genesis hash).
async fn lone_authority_and_adversary(
    dir: &std::path::Path,
    extra_toml: &str,
) -> (
    NodeProc,
    P2pHandle,
    tokio::sync::mpsc::Receiver<P2pEvent>,
    Hash,
) {
    let allowed = vec![dev_peer_id(ADVERSARY_KEY)];
    let mut n1 = NodeProc::net(
        dir,
        &NetNodeSpec {
            extra_toml,
            ..NetNodeSpec::sole_authority(&allowed)
        },
    );
    n1.wait_healthy().await;
    n1.wait_final_height(2, LONG).await;
    let (p2p, events, gh) = common::adversary(ADVERSARY_KEY, &n1, vec![dev_key(1).public()]).await;
    (n1, p2p, events, gh)
}

/// A valid N-Triples transaction signed by the adversary's key.
fn adversary_tx(genesis_hash: &Hash, data: String) -> Transaction {
    common::signed_tx(ADVERSARY_KEY, genesis_hash, data)
}

const BLOCKS_REJECTED: &str = "provchain_blocks_rejected_total";
const TXS_REJECTED: &str = "provchain_transactions_rejected_total";

async fn wait_rejected(node: &NodeProc, reason: &str) {
    wait_for(
        &format!("node1 counts a `{reason}` rejection"),
        LONG,
        || async { (node.counter(BLOCKS_REJECTED, reason).await >= 1.0).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rule_breaking_blocks_from_an_allowed_peer_are_rejected_counted_and_not_forwarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Only node 1 allows the adversary; nodes 2 and 3 refuse it, so anything they see of its
    // blocks would have been forwarded by node 1.
    let allowed = vec![dev_peer_id(ADVERSARY_KEY)];
    let spec = |key, peers, allowed| NetNodeSpec {
        key,
        authority: true,
        authorities: 3,
        peers,
        allowed,
        extra_toml: "",
    };
    let mut n1 = NodeProc::net(dir.path(), &spec(1, &[], &allowed));
    n1.wait_healthy().await;
    let seed = vec![n1.p2p_addr()];
    let mut n2 = NodeProc::net(dir.path(), &spec(2, &seed, &[]));
    let mut n3 = NodeProc::net(dir.path(), &spec(3, &seed, &[]));
    n2.wait_healthy().await;
    n3.wait_healthy().await;
    n1.wait_final_height(3, LONG).await;

    let (p2p, mut events, genesis_hash) = common::adversary(
        ADVERSARY_KEY,
        &n1,
        (1..=3).map(|i| dev_key(i).public()).collect(),
    )
    .await;
    // Sync requests go unanswered until `lie` is set; then the adversary claims a head a
    // million blocks ahead and serves nothing of it.
    let lie = Arc::new(AtomicBool::new(false));
    let lying = lie.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if !lying.load(Ordering::SeqCst) {
                continue;
            }
            match ev {
                P2pEvent::StatusRequest { reply, .. } => {
                    let _ = reply.send(ChainStatus {
                        genesis_hash,
                        best_height: 1_000_000,
                        best_hash: Hash([7; 32]),
                        final_height: 999_999,
                        final_hash: Hash([8; 32]),
                    });
                }
                P2pEvent::BlocksRequest { reply, .. } => {
                    let _ = reply.send(Vec::new());
                }
                _ => {}
            }
        }
    });
    let node1: PeerId = dev_peer_id(1).parse().expect("peer id");

    // Sync answers that lie: a far head it does not serve. Node 1 counts it and stops
    // believing the claim, so it neither looks behind (/ready) nor keeps fetching.
    lie.store(true, Ordering::SeqCst);
    wait_for("node1 counts the unserved head", LONG, || async {
        (n1.counter("provchain_sync_misbehaviour_total", "unserved_head")
            .await
            >= 1.0)
            .then_some(())
    })
    .await;
    wait_for(
        "node1 ignores the claimed height and is ready",
        LONG,
        || async {
            let (_, status) = n1.get("/api/status").await;
            let (ready, _) = n1.get("/ready").await;
            let believed = status["peer_best_height"].as_u64().unwrap_or(u64::MAX);
            (believed < 1_000_000 && ready == 200).then_some(())
        },
    )
    .await;

    let gh = genesis_hash;
    let seal = |parent: &BlockHeader, slot: u64, key: &provchain_consensus::Keypair, txs| {
        Block::seal(parent, slot, slot * 1000 + 1, txs, key, &gh)
    };
    let next_slot = |parent: &BlockHeader| (now_ms() / 1000).max(parent.slot + 1);

    // A block whose seal does not verify.
    let head = head_of(&p2p, node1).await.header;
    let slot = next_slot(&head);
    let mut forged = seal(&head, slot, &leader_key(slot), vec![]);
    forged.signature.0[0] ^= 0x55;
    p2p.publish_block(&forged).await.expect("publish");
    wait_rejected(&n1, "bad_signature").await;

    // A block sealed by an authority that is not the slot's leader.
    let head = head_of(&p2p, node1).await.header;
    let slot = next_slot(&head);
    p2p.publish_block(&seal(&head, slot, &not_leader_key(slot), vec![]))
        .await
        .expect("publish");
    wait_rejected(&n1, "wrong_leader").await;

    // A correctly sealed block for a slot far in the future.
    let head = head_of(&p2p, node1).await.header;
    let slot = now_ms() / 1000 + 100;
    p2p.publish_block(&seal(&head, slot, &leader_key(slot), vec![]))
        .await
        .expect("publish");
    wait_rejected(&n1, "future_slot").await;

    // Equivocation: a second, different block for a slot whose leader already sealed one.
    let head = head_of(&p2p, node1).await;
    let parent = {
        let status = p2p.request_status(node1).await.expect("status");
        let mut b = p2p
            .request_blocks(node1, status.best_height - 1, 1)
            .await
            .expect("parent");
        b.pop().expect("parent block").header
    };
    assert_eq!(head.header.parent_hash, parent.hash());
    let key = leader_key(head.header.slot);
    let body = TxBody {
        format: RdfFormat::NTriples,
        data: "<http://evil> <http://says> \"rewrite history\" .".into(),
        submitter: key.public(),
        client: None,
        timestamp_ms: now_ms(),
    };
    let tx = Transaction::sign(body, &key, &gh);
    let twin = seal(&parent, head.header.slot, &key, vec![tx]);
    assert_ne!(twin.hash(), head.hash());
    p2p.publish_block(&twin).await.expect("publish");
    wait_for("node1 records the equivocation", LONG, || async {
        (n1.metric("provchain_equivocations_total")
            .await
            .unwrap_or(0.0)
            >= 1.0)
            .then_some(())
    })
    .await;
    let (_, evidence) = n1.get("/api/equivocations").await;
    let record = evidence
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .expect("an equivocation record");
    assert_eq!(record["slot"], head.header.slot);
    assert_eq!(record["proposer"], key.public().to_hex());
    assert_eq!(record["first"], head.hash().to_hex());
    assert_eq!(record["second"], twin.hash().to_hex());

    // The honest chain carries on and agrees everywhere; nothing was forwarded to 2 and 3.
    let target = n1.final_height().await + 3;
    for n in [&n1, &n2, &n3] {
        n.wait_final_height(target, LONG).await;
    }
    assert_eq!(
        n1.final_hashes(0, target + 1).await,
        n2.final_hashes(0, target + 1).await
    );
    assert_eq!(
        n1.final_hashes(0, target + 1).await,
        n3.final_hashes(0, target + 1).await
    );
    assert_eq!(
        n1.sparql("ASK { <http://evil> ?p ?o }").await["boolean"],
        false
    );
    for n in [&n2, &n3] {
        for reason in ["bad_signature", "wrong_leader", "future_slot"] {
            assert_eq!(
                n.counter(BLOCKS_REJECTED, reason).await,
                0.0,
                "{reason} block reached {}",
                n.http
            );
        }
        assert_eq!(n.metric("provchain_equivocations_total").await, Some(0.0));
        assert!(!n.peer_ids().await.contains(&dev_peer_id(ADVERSARY_KEY)));
    }

    // A flood of forged transactions and blocks: every one is rejected and counted, and the
    // strikes add up to a ban that disconnects the adversary.
    let forged_txs_before = n1.counter(TXS_REJECTED, "invalid_envelope").await;
    let adversary = dev_peer_id(ADVERSARY_KEY);
    let rejected_txs = || n1.counter(TXS_REJECTED, "invalid_envelope");
    let banned = || async {
        n1.metric("provchain_peers_banned_total")
            .await
            .unwrap_or(0.0)
            >= 1.0
    };
    let key = dev_key(ADVERSARY_KEY);
    let flood_until = std::time::Instant::now() + LONG;
    let mut i = 0u64;
    while !banned().await && std::time::Instant::now() < flood_until {
        // One forged transaction at a time: each is rejected (a strike), or, while gossipsub
        // has graylisted the sender, dropped unseen (a strike per second of graylisting).
        let before = rejected_txs().await;
        let mut tx = Transaction::sign(
            TxBody {
                format: RdfFormat::NTriples,
                data: format!("<http://evil/{i}> <http://says> \"flood\" .").into(),
                submitter: key.public(),
                client: None,
                timestamp_ms: now_ms(),
            },
            &key,
            &gh,
        );
        i += 1;
        tx.signature.0[0] ^= 0x01;
        let _ = p2p.publish_tx(&tx).await;
        let counted = tokio::time::timeout(Duration::from_secs(2), async {
            while rejected_txs().await <= before && !banned().await {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let _ = counted;
    }
    assert!(
        rejected_txs().await > forged_txs_before,
        "forged transactions are rejected and counted"
    );
    wait_for("node1 bans the adversary", LONG, || async {
        (n1.metric("provchain_peers_banned_total")
            .await
            .unwrap_or(0.0)
            >= 1.0)
            .then_some(())
    })
    .await;
    wait_for("the adversary is disconnected", LONG, || async {
        (!n1.peer_ids().await.contains(&adversary)).then_some(())
    })
    .await;
    // Nothing of the flood is on the chain, and the network still finalizes.
    let target = n1.final_height().await + 2;
    for n in [&n1, &n2, &n3] {
        n.wait_final_height(target, LONG).await;
    }
    assert_eq!(
        n1.sparql("ASK { ?s <http://says> \"flood\" }").await["boolean"],
        false
    );
    p2p.shutdown().await;
}

/// An allowed peer floods valid, correctly signed transactions far faster than blocks carry
/// them. The pool bound holds (the excess is dropped and counted, not penalised: the
/// transactions are valid), the node keeps finalizing and serving, and a client's transaction
/// still becomes final.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_valid_transactions_is_bounded_by_the_pool() {
    const POOL: u64 = 300;
    const FLOOD: u64 = 4_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let (n1, p2p, _events, gh) =
        lone_authority_and_adversary(dir.path(), &format!("max_pool_size = {POOL}\n")).await;
    let sign = |i: u64| adversary_tx(&gh, format!("<http://flood/{i}> <http://ex/seq> \"{i}\" ."));
    let full_before = n1.metric("provchain_pool_full_total").await.unwrap_or(0.0);
    let mut max_pool = 0.0f64;
    for i in 0..FLOOD {
        let _ = p2p.publish_tx(&sign(i)).await;
        if i % 500 == 0 {
            max_pool = max_pool.max(n1.metric("provchain_pool_size").await.unwrap_or(0.0));
        }
    }
    let pool_peak = wait_for(
        "node1 counts transactions refused by the full pool",
        LONG,
        || async {
            let full = n1.metric("provchain_pool_full_total").await.unwrap_or(0.0);
            let size = n1.metric("provchain_pool_size").await.unwrap_or(0.0);
            (full > full_before).then_some(size)
        },
    )
    .await;
    max_pool = max_pool.max(pool_peak);
    assert!(
        max_pool <= POOL as f64,
        "the pool grew to {max_pool} beyond its bound {POOL}"
    );

    // The node still serves and finalizes, and a client's transaction becomes final (while the
    // pool is full it answers 503, and the client retries).
    let body = serde_json::json!({
        "data": "<http://ex/lot1> <http://ex/inspectedBy> <http://ex/lab9> ."
    })
    .to_string();
    let id = wait_for("a client submission is accepted", LONG, || async {
        let (code, v) = n1
            .post("/api/transactions", "application/json", body.clone())
            .await;
        assert!(code == 202 || code == 503, "unexpected answer {code}: {v}");
        (code == 202).then(|| v["tx_id"].as_str().expect("tx_id").to_owned())
    })
    .await;
    n1.wait_final(&id, LONG).await;
    let target = n1.final_height().await + 2;
    n1.wait_final_height(target, LONG).await;
    // Valid transactions are not misbehaviour: the peer stays connected and unbanned.
    assert_eq!(n1.metric("provchain_peers_banned_total").await, Some(0.0));
    assert!(n1.peer_ids().await.contains(&dev_peer_id(ADVERSARY_KEY)));
    // What was admitted is on the chain, each statement once.
    let stored = n1
        .sparql("SELECT (COUNT(?s) AS ?n) WHERE { ?s <http://ex/seq> ?o }")
        .await;
    let n: u64 = stored["results"]["bindings"][0]["n"]["value"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("count");
    assert!(
        n > 0 && n < FLOOD,
        "{n} of {FLOOD} flood transactions stored"
    );
    p2p.shutdown().await;
}

/// Transactions travel in batches, one gossip message for many. A batch that mixes valid
/// transactions with a forged signature and malformed RDF costs the honest ones nothing: they
/// are admitted and become final, the two bad ones are counted by reason, and the node keeps
/// finalizing.
#[tokio::test(flavor = "multi_thread")]
async fn a_gossiped_batch_with_bad_transactions_keeps_its_valid_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (n1, p2p, _events, gh) = lone_authority_and_adversary(dir.path(), "").await;
    let sign = |data: String| adversary_tx(&gh, data);
    let rejected = |reason| n1.counter(TXS_REJECTED, reason);
    let (forged_before, rdf_before) = (
        rejected("invalid_envelope").await,
        rejected("invalid_rdf").await,
    );
    let mut batch: Vec<Transaction> = (0..6)
        .map(|i| sign(format!("<http://batch/{i}> <http://ex/inBatch> \"{i}\" .")))
        .collect();
    batch[2].signature.0[0] ^= 0x01;
    batch[4] = sign("<http://batch/4> <http://ex/inBatch> \"unterminated .".into());
    p2p.publish_txs(&batch).await.expect("publish batch");

    wait_for("both bad transactions are counted", LONG, || async {
        (rejected("invalid_envelope").await > forged_before
            && rejected("invalid_rdf").await > rdf_before)
            .then_some(())
    })
    .await;
    for i in [0, 1, 3, 5] {
        n1.wait_final(&batch[i].id().to_hex(), LONG).await;
    }
    for i in [2, 4] {
        let (code, _) = n1
            .get(&format!("/api/transactions/{}", batch[i].id().to_hex()))
            .await;
        assert_eq!(code, 404, "bad transaction {i} was stored");
    }
    let stored = n1
        .sparql("SELECT (COUNT(?s) AS ?n) WHERE { ?s <http://ex/inBatch> ?o }")
        .await;
    assert_eq!(stored["results"]["bindings"][0]["n"]["value"], "4");
    let target = n1.final_height().await + 2;
    n1.wait_final_height(target, LONG).await;
    p2p.shutdown().await;
}

/// A peer that gossips final transactions again, alongside a new one, gets only the new one
/// onto the chain: the final ones stay in their blocks and no later block carries them.
#[tokio::test(flavor = "multi_thread")]
async fn final_transactions_gossiped_again_are_not_admitted_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (n1, p2p, _events, gh) = lone_authority_and_adversary(dir.path(), "").await;
    let sign = |data: String| adversary_tx(&gh, data);
    let first: Vec<Transaction> = (0..3)
        .map(|i| sign(format!("<http://again/{i}> <http://ex/round> \"1\" .")))
        .collect();
    p2p.publish_txs(&first).await.expect("publish first batch");
    let mut heights = Vec::new();
    for tx in &first {
        let v = n1.wait_final(&tx.id().to_hex(), LONG).await;
        heights.push(v["block_height"].as_u64().expect("block height"));
    }

    let fresh = sign("<http://again/new> <http://ex/round> \"2\" .".into());
    let mut again = first.clone();
    again.push(fresh.clone());
    p2p.publish_txs(&again).await.expect("publish again");
    let v = n1.wait_final(&fresh.id().to_hex(), LONG).await;
    let fresh_height = v["block_height"].as_u64().expect("block height");
    // A couple more blocks: a replay admitted late would be in one of them.
    let last = n1.wait_final_height(fresh_height + 2, LONG).await;

    let old: Vec<String> = first.iter().map(|t| t.id().to_hex()).collect();
    let first_max = *heights.iter().max().expect("heights");
    for h in first_max + 1..=last {
        let block = n1.block(h).await;
        let txs = block["transactions"].as_array().expect("transactions");
        for t in txs {
            assert!(
                !old.iter().any(|o| t == o),
                "block {h} carries final transaction {t} again"
            );
        }
    }
    for (tx, h) in first.iter().zip(&heights) {
        let (code, v) = n1
            .get(&format!("/api/transactions/{}", tx.id().to_hex()))
            .await;
        assert_eq!(code, 200);
        assert_eq!(
            v["block_height"].as_u64(),
            Some(*h),
            "final transaction moved"
        );
    }
    p2p.shutdown().await;
}
