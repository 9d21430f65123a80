//! Blocks travel as compact blocks (transaction ids instead of transactions). An in-process
//! libp2p peer holding the only authority key seals blocks for an observer node and shows each
//! way the node turns one into a full block: from its pool, from transactions it is still
//! checking, from transactions the block carries, or by sync when it lacks some. Compact
//! blocks whose ids or seal do not match their header are refused and counted. The other way
//! round, with the node as slot leader, the peer checks that each compact block it receives
//! carries in full whatever the node has not gossiped to it yet.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{NetNodeSpec, NodeProc, dev_peer_id, wait_for};
use provchain_consensus::{Block, CompactBlock, Hash, Transaction};
use provchain_node::keys::dev_key;
use provchain_p2p::{ChainStatus, P2pEvent};

const LONG: Duration = Duration::from_secs(60);
const COMPACT: &str = "provchain_compact_blocks_total";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn tx(genesis_hash: &Hash, n: u32) -> Transaction {
    common::signed_tx(
        1,
        genesis_hash,
        format!("<http://example.org/batch/{n}> <http://example.org/weight> \"{n}\" ."),
    )
}

async fn compact_count(node: &NodeProc, outcome: &str) -> f64 {
    node.metric(&format!("{COMPACT}{{outcome=\"{outcome}\"}}"))
        .await
        .unwrap_or(0.0)
}

/// Seals the next block on `parent` with the only authority's key, in the current slot (or
/// the next one, waiting for it to begin).
async fn seal_next(parent: &Block, txs: Vec<Transaction>, genesis_hash: &Hash) -> Block {
    let mut slot = now_ms() / 1000;
    if slot <= parent.header.slot {
        slot = parent.header.slot + 1;
        tokio::time::sleep(Duration::from_millis(
            (slot * 1000).saturating_sub(now_ms()),
        ))
        .await;
    }
    let timestamp = now_ms().clamp(slot * 1000, slot * 1000 + 999);
    Block::seal(
        &parent.header,
        slot,
        timestamp,
        txs,
        &dev_key(1),
        genesis_hash,
    )
}

fn compact(block: &Block) -> CompactBlock {
    CompactBlock::of(block, block.tx_ids(), &[])
}

async fn wait_pending(node: &NodeProc, id: &Hash) {
    let path = format!("/api/transactions/{}", id.to_hex());
    wait_for(
        "the gossiped transaction is in the node's pool",
        LONG,
        || async {
            let (code, v) = node.get(&path).await;
            (code == 200 && v["status"] == "pending").then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn compact_blocks_are_rebuilt_from_held_transactions_or_fetched_by_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The network's only authority is dev key 1, held by the in-process peer; the node is an
    // observer (dev key 2) that follows it.
    // A second in-process peer (dev key 3, allowed) sends one of the hostile messages: an
    // allowed peer that sent two invalid messages is graylisted, and its third would not be
    // processed at all.
    let allowed = vec![dev_peer_id(3)];
    let mut node = NodeProc::net(dir.path(), &NetNodeSpec::observer_of_one(&allowed));
    node.wait_healthy().await;
    let (p2p, mut events, gh) =
        common::adversary(1, &node, vec![dev_key(1).public(), dev_key(2).public()]).await;
    let genesis = common::served_genesis(&p2p, 2).await;
    assert_eq!(genesis.header.height, 0);

    // The peer serves its chain by sync, as an authority does.
    let served = Arc::new(Mutex::new(vec![genesis.clone()]));
    let chain = served.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match ev {
                P2pEvent::StatusRequest { reply, .. } => {
                    let head = chain.lock().expect("chain").last().cloned().expect("head");
                    let _ = reply.send(ChainStatus {
                        genesis_hash: gh,
                        best_height: head.header.height,
                        best_hash: head.hash(),
                        final_height: head.header.height,
                        final_hash: head.hash(),
                    });
                }
                P2pEvent::BlocksRequest {
                    from_height,
                    max,
                    reply,
                    ..
                } => {
                    let blocks = chain
                        .lock()
                        .expect("chain")
                        .iter()
                        .filter(|b| b.header.height >= from_height)
                        .take(max as usize)
                        .cloned()
                        .collect();
                    let _ = reply.send(blocks);
                }
                _ => {}
            }
        }
    });
    let serve = |block: &Block| served.lock().expect("chain").push(block.clone());

    // 1. The transactions were gossiped first: the node rebuilds the block from its pool.
    let t1 = tx(&gh, 1);
    p2p.publish_txs(std::slice::from_ref(&t1))
        .await
        .expect("publish txs");
    wait_pending(&node, &t1.id()).await;
    let b1 = seal_next(&genesis, vec![t1.clone()], &gh).await;
    p2p.queue_compact_block(&compact(&b1));
    node.wait_final(&t1.id().to_hex(), LONG).await;
    assert_eq!(compact_count(&node, "complete").await, 1.0);
    // Its hops were timed: into the network layer, and on to the chain task.
    for hop in ["arrival", "handoff"] {
        let name = format!("provchain_block_{hop}_seconds_count");
        assert_eq!(node.metric(&name).await, Some(1.0), "{name}");
    }
    // Served by sync only from now on, so that sync cannot bring the block instead.
    serve(&b1);

    // 2. The block comes right behind a large gossip batch of its transactions, while the
    //    node is still checking it (800 signatures and documents): the node rebuilds it from
    //    the transactions being checked, and its validation checks them. (Nothing serves the
    //    block by sync yet: a node that could not rebuild it would not get it.)
    let batch: Vec<Transaction> = (1000..1800).map(|n| tx(&gh, n)).collect();
    let b2 = seal_next(&b1, batch.clone(), &gh).await;
    p2p.publish_txs(&batch).await.expect("publish txs");
    p2p.queue_compact_block(&compact(&b2));
    node.wait_final(&batch[799].id().to_hex(), LONG).await;
    assert_eq!(compact_count(&node, "complete").await, 2.0);
    serve(&b2);

    // 3. The transaction never reaches the node by gossip: it fetches the full block from
    //    the block's proposer.
    let t3 = tx(&gh, 3);
    let b3 = seal_next(&b2, vec![t3.clone()], &gh).await;
    serve(&b3);
    p2p.queue_compact_block(&compact(&b3));
    let v = node.wait_final(&t3.id().to_hex(), LONG).await;
    assert_eq!(v["block_hash"], b3.hash().to_hex(), "{v}");
    assert_eq!(compact_count(&node, "fetched").await, 1.0);

    // 4. One transaction gossiped first, one never gossiped but carried in full (as a leader
    //    does with what it admitted just before sealing): rebuilt at once.
    let (t4, t5) = (tx(&gh, 4), tx(&gh, 5));
    p2p.publish_txs(std::slice::from_ref(&t4))
        .await
        .expect("publish txs");
    wait_pending(&node, &t4.id()).await;
    let b4 = seal_next(&b3, vec![t4.clone(), t5.clone()], &gh).await;
    p2p.queue_compact_block(&CompactBlock::of(&b4, b4.tx_ids(), &[1]));
    node.wait_final(&t5.id().to_hex(), LONG).await;
    assert_eq!(compact_count(&node, "complete").await, 3.0);
    serve(&b4);
    let (_, block) = node.get("/api/blocks/4").await;
    assert_eq!(block["hash"], b4.hash().to_hex(), "{block}");

    // 5. Hostile compact blocks: ids that are not the ones the header commits to and a seal
    //    that does not verify, and a transaction carried in full that is not the one its id
    //    names, are refused before anything is looked up or kept.
    let (t6, t7) = (tx(&gh, 6), tx(&gh, 7));
    p2p.publish_txs(&[t6.clone(), t7.clone()])
        .await
        .expect("publish txs");
    wait_pending(&node, &t7.id()).await;
    let b5 = seal_next(&b4, vec![t6.clone(), t7], &gh).await;
    let mut swapped = compact(&b5);
    swapped.tx_ids.reverse();
    p2p.queue_compact_block(&swapped);
    let mut forged = compact(&b5);
    forged.signature.0[0] ^= 0x55;
    p2p.queue_compact_block(&forged);
    let rejected = |reason: &'static str, n: f64| {
        let node = &node;
        async move {
            wait_for(
                &format!("{n} `{reason}` rejections counted"),
                LONG,
                || async {
                    (node
                        .counter("provchain_blocks_rejected_total", reason)
                        .await
                        >= n)
                        .then_some(())
                },
            )
            .await
        }
    };
    rejected("tx_root", 1.0).await;
    rejected("bad_signature", 1.0).await;
    let (other, _other_events, _) =
        common::adversary(3, &node, vec![dev_key(1).public(), dev_key(2).public()]).await;
    let mut substituted = compact(&b5);
    substituted.prefilled = vec![(0, tx(&gh, 99))];
    other.queue_compact_block(&substituted);
    rejected("tx_root", 2.0).await;
    let status = node.status().await;
    assert_eq!(status["height"], 4, "{status}");
    assert!(
        node.get(&format!("/api/transactions/{}", t6.id().to_hex()))
            .await
            .1["status"]
            == "pending",
        "the genuine transaction stays in the pool"
    );
    assert_eq!(compact_count(&node, "complete").await, 3.0);
    assert_eq!(compact_count(&node, "fetched").await, 1.0);
}

/// The node as slot leader, under a steady stream of submissions: every compact block it
/// gossips can be rebuilt from the transaction batches it gossiped before it and the
/// transactions the block carries — including those admitted just before the seal, whose
/// batch follows the block.
#[tokio::test(flavor = "multi_thread")]
async fn a_leaders_compact_blocks_carry_what_its_peers_have_not_received() {
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed = vec![dev_peer_id(2)];
    let mut node = NodeProc::net(dir.path(), &NetNodeSpec::sole_authority(&allowed));
    node.wait_healthy().await;
    let (_p2p, mut events, _gh) = common::adversary(2, &node, vec![dev_key(1).public()]).await;

    // The peer keeps what arrived, in order, and checks each compact block against it.
    let (report, mut reports) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut received = std::collections::HashSet::new();
        while let Some(ev) = events.recv().await {
            match ev {
                P2pEvent::TxsReceived { txs, .. } => {
                    received.extend(txs.iter().map(Transaction::id));
                }
                P2pEvent::CompactBlockReceived { block, .. } => {
                    let carried: std::collections::HashSet<usize> =
                        block.prefilled.iter().map(|(i, _)| *i as usize).collect();
                    let missing = block
                        .tx_ids
                        .iter()
                        .enumerate()
                        .filter(|(i, id)| !carried.contains(i) && !received.contains(*id))
                        .count();
                    let _ = report.send((block.tx_ids.clone(), carried.len(), missing));
                }
                _ => {}
            }
        }
    });

    // Submissions for three slots, each one as soon as the last is answered.
    let started = std::time::Instant::now();
    let mut last = String::new();
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(3) {
        last = node
            .submit(&format!(
                "<http://example.org/reading/{n}> <http://example.org/value> \"{n}\" ."
            ))
            .await;
        n += 1;
    }
    let last = Hash::from_hex(&last).expect("tx id");
    let (mut blocks, mut carried) = (0, 0);
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let (ids, prefilled, missing) = tokio::time::timeout_at(deadline, reports.recv())
            .await
            .expect("the block with the last submission reaches the peer")
            .expect("the peer's event loop runs");
        assert_eq!(
            missing,
            0,
            "a compact block of {} transactions lacks {missing} the peer never received",
            ids.len()
        );
        blocks += usize::from(!ids.is_empty());
        carried += prefilled;
        if ids.contains(&last) {
            break;
        }
    }
    assert!(blocks >= 2, "{blocks} compact blocks with transactions");
    eprintln!("{blocks} compact blocks carried {carried} transactions in full");
}
