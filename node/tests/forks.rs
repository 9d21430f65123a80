//! Forks: a block that loses to a longer branch gives its transactions back to the pool, and
//! the next block on the winning branch can carry them to finality; an authority keeps to the
//! branch holding its own last block on a tie, across a restart too. An in-process libp2p peer
//! holds the three authority keys and seals the branches.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{NetNodeSpec, NodeProc, dev_peer_id, wait_for};
use provchain_consensus::{Block, Hash, Transaction};
use provchain_node::keys::dev_key;

const LONG: Duration = Duration::from_secs(60);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The first slot after `after` that has not begun yet, or the current one.
fn next_slot(after: u64) -> u64 {
    (now_ms() / 1000).max(after + 1)
}

/// The first such slot that `parent`'s proposer leads (`same`) or does not.
fn slot_led(after: u64, parent: &Block, same: bool) -> u64 {
    let mut slot = next_slot(after);
    while (slot % 3 == parent.header.slot % 3) != same {
        slot += 1;
    }
    slot
}

/// Waits for `slot` to begin and seals a child of `parent` in it, with the key of the slot's
/// leader among dev keys 1..=3.
async fn seal_in(slot: u64, parent: &Block, txs: Vec<Transaction>, gh: &Hash) -> Block {
    tokio::time::sleep(Duration::from_millis(
        (slot * 1000).saturating_sub(now_ms()),
    ))
    .await;
    let timestamp = now_ms().clamp(slot * 1000, slot * 1000 + 999);
    let leader = dev_key((slot % 3) as u32 + 1);
    Block::seal(&parent.header, slot, timestamp, txs, &leader, gh)
}

/// A child of `parent` sealed in `slot` (waited for) by the slot's leader, with a hash in the
/// upper half of the range (`high`) or the lower: its timestamp is varied within the part of
/// the slot that has passed. Two such blocks, one high and one low, compare the same way every
/// run.
async fn seal_half(slot: u64, parent: &Block, high: bool, gh: &Hash) -> Block {
    tokio::time::sleep(Duration::from_millis(
        (slot * 1000 + 200).saturating_sub(now_ms()),
    ))
    .await;
    let leader = dev_key((slot % 3) as u32 + 1);
    (0..200)
        .map(|i| Block::seal(&parent.header, slot, slot * 1000 + i, vec![], &leader, gh))
        .find(|b| (b.hash().0[0] >= 0x80) == high)
        .expect("one in two blocks falls in each half")
}

async fn wait_head(node: &NodeProc, block: &Block, what: &str) {
    let want = block.hash().to_hex();
    wait_for(what, LONG, || async {
        (node.status().await["head_hash"].as_str() == Some(want.as_str())).then_some(())
    })
    .await;
}

/// The transaction's status as the API reports it, with the block holding it, if any.
async fn wait_status(node: &NodeProc, tx: &Transaction, status: &str, block: Option<&Block>) {
    let path = format!("/api/transactions/{}", tx.id().to_hex());
    let want_block = block.map(|b| b.hash().to_hex());
    wait_for(
        &format!(
            "transaction {} {status}{}",
            &tx.id().to_hex()[..12],
            want_block
                .as_deref()
                .map(|b| format!(" in block {}", &b[..12]))
                .unwrap_or_default()
        ),
        LONG,
        || async {
            let (code, v) = node.get(&path).await;
            let in_block = v["block_hash"].as_str().map(str::to_owned);
            (code == 200 && v["status"] == status && in_block == want_block).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_losing_blocks_transactions_return_to_the_pool_and_are_sealed_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed = vec![dev_peer_id(1)];
    let mut node = NodeProc::net(
        dir.path(),
        &NetNodeSpec {
            key: 4,
            authority: false,
            authorities: 3,
            peers: &[],
            allowed: &allowed,
            extra_toml: "",
        },
    );
    node.wait_healthy().await;
    // The peer's own allow list: the authorities and the node.
    let known = [1, 2, 3, 4].map(|i| dev_key(i).public()).to_vec();
    let (p2p, _events, gh) = common::adversary(1, &node, known).await;
    let genesis = common::served_genesis(&p2p, 4).await;

    // With three authorities a block is final once two distinct authorities have sealed on
    // it (itself included). Each transaction below is in a block of a different branch.
    let data = |n: u32| format!("<http://example.org/lot/{n}> <http://example.org/mass> \"{n}\" .");
    let lost = common::signed_tx(1, &gh, data(1));
    let kept = common::signed_tx(1, &gh, data(2));
    let stray = common::signed_tx(1, &gh, data(3));
    let a1 = seal_in(next_slot(0), &genesis, vec![lost.clone()], &gh).await;
    p2p.queue_block(&a1);
    wait_status(&node, &lost, "included", Some(&a1)).await;

    // A competing branch from genesis, one block longer, without `lost`: the node moves to
    // it, and `lost` goes back to its pool. Both its blocks are sealed by one authority, so
    // nothing is final yet.
    let b1 = seal_in(next_slot(a1.header.slot), &genesis, vec![kept.clone()], &gh).await;
    p2p.queue_block(&b1);
    let b2 = seal_in(slot_led(b1.header.slot, &b1, true), &b1, vec![], &gh).await;
    p2p.queue_block(&b2);
    wait_status(&node, &lost, "pending", None).await;
    wait_status(&node, &kept, "included", Some(&b1)).await;
    assert_eq!(node.final_height().await, 0);
    assert!(
        node.metric("provchain_reorgs_total").await.unwrap_or(0.0) >= 1.0,
        "the switch of branches is counted"
    );

    // A block on genesis arriving now never leads: its transaction is nowhere the API looks
    // until finality prunes the block and the transaction returns to the pool.
    let c1 = seal_in(
        next_slot(b2.header.slot),
        &genesis,
        vec![stray.clone()],
        &gh,
    )
    .await;
    p2p.queue_block(&c1);
    wait_for("the side block is imported", LONG, || async {
        let n = node.metric("provchain_blocks_imported_total").await;
        (n.unwrap_or(0.0) >= 4.0).then_some(())
    })
    .await;
    let (code, _) = node
        .get(&format!("/api/transactions/{}", stray.id().to_hex()))
        .await;
    assert_eq!(
        code, 404,
        "a side block's transaction is not on the best chain"
    );

    // Another authority seals on the winning branch, with `lost`: b1 and b2 become final, a1
    // and c1 are pruned; `stray` goes back to the pool, `lost` stays in its new block.
    let b3 = seal_in(
        slot_led(c1.header.slot, &b2, false),
        &b2,
        vec![lost.clone()],
        &gh,
    )
    .await;
    p2p.queue_block(&b3);
    wait_status(&node, &stray, "pending", None).await;
    wait_status(&node, &lost, "included", Some(&b3)).await;
    wait_status(&node, &kept, "final", Some(&b1)).await;
    let b4 = seal_in(slot_led(b3.header.slot, &b3, false), &b3, vec![], &gh).await;
    p2p.queue_block(&b4);
    wait_status(&node, &lost, "final", Some(&b3)).await;
    let (_, block) = node.get("/api/blocks/1").await;
    assert_eq!(block["hash"], b1.hash().to_hex(), "{block}");
}

/// Two blocks at one height: the node's own (sealed with its key, here by the peer that holds
/// it) and a competing one with a lower hash, which wins ties elsewhere. Had the node sealed on
/// the competing block, its blocks would count towards finality on both branches (two final
/// blocks at one height were seen that way after an authority's restart).
#[tokio::test(flavor = "multi_thread")]
async fn an_authority_keeps_to_its_own_block_on_a_tie_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProc::net(
        dir.path(),
        &NetNodeSpec {
            key: 1,
            authority: true,
            authorities: 3,
            peers: &[],
            allowed: &[],
            // It seals nothing itself: the heads it takes are the test's.
            extra_toml: "empty_blocks = false",
        },
    );
    node.wait_healthy().await;
    let known = [1, 2, 3].map(|i| dev_key(i).public()).to_vec();
    let (p2p, _events, gh) = common::adversary(2, &node, known).await;
    let genesis = common::served_genesis(&p2p, 1).await;

    // Dev key 1 (the node's) leads the slots ≡ 0 (mod 3).
    let mut own_slot = next_slot(0);
    while !own_slot.is_multiple_of(3) {
        own_slot += 1;
    }
    let mine = seal_half(own_slot, &genesis, true, &gh).await;
    let theirs = seal_half(own_slot + 1, &genesis, false, &gh).await;
    assert!(theirs.hash() < mine.hash());
    // The competing block first: the node takes it (nothing of its own at that height yet),
    // then its own block arrives and takes the head back.
    p2p.queue_block(&theirs);
    wait_head(&node, &theirs, "the competing block is the head").await;
    p2p.queue_block(&mine);
    wait_head(&node, &mine, "the node's own block takes the head back").await;

    // Restarted, the node reads both blocks back from its pending store (the lower hash
    // first) and still keeps to its own.
    assert!(
        node.terminate(LONG).is_some_and(|s| s.success()),
        "clean shutdown"
    );
    node.restart();
    node.wait_healthy().await;
    assert_eq!(
        node.status().await["head_hash"].as_str(),
        Some(mine.hash().to_hex().as_str()),
        "after the restart the node left its own block for the lower hash"
    );
    // The competing block was restored too: a child makes its branch the longer one, which
    // the node follows (once the peer has redialled it).
    let target: provchain_p2p::PeerId = dev_peer_id(1).parse().expect("peer id");
    wait_for("the peer reconnected", LONG, || async {
        let connected = p2p.peers().await.iter().any(|p| p.peer_id == target);
        (connected && p2p.stats().await.block_topic_peers >= 1).then_some(())
    })
    .await;
    let mut slot = own_slot + 2;
    while slot <= now_ms() / 1000 {
        slot += 3;
    }
    let longer = seal_in(slot, &theirs, vec![], &gh).await;
    p2p.queue_block(&longer);
    wait_head(&node, &longer, "the longer branch is the head").await;
}
