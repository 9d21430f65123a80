//! Authority governance across real `provchaind` processes on loopback: three authorities vote a
//! fourth in and later one out. Every node computes the same schedule; a restarted node and a
//! node syncing from scratch across the switches accept the same chain; a proposal with only a
//! minority expires without effect; nodes outside the set cannot propose or vote.

mod common;

use std::time::Duration;

use common::{NetNodeSpec, NodeProc, dev_peer_id, wait_for};
use provchain_node::keys::dev_key;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(90);
/// Switches at multiples of 4 blocks; proposals stay open for 20 blocks.
const GOVERNANCE: &str = "epoch_length = 4\nproposal_ttl = 20\n";

fn key(i: u32) -> String {
    dev_key(i).public().to_hex()
}

async fn view(n: &NodeProc) -> Value {
    let (code, v) = n.get("/api/authorities").await;
    assert_eq!(code, 200, "GET /api/authorities: {v}");
    v
}

fn keys_of(v: &Value) -> Vec<String> {
    v["authorities"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn post(n: &NodeProc, path: &str, body: Value) -> (u16, Value) {
    n.post(path, "application/json", body.to_string()).await
}

async fn propose(n: &NodeProc, action: &str, k: &str) -> String {
    let (code, v) = post(
        n,
        "/api/governance/proposals",
        json!({ "action": action, "key": k }),
    )
    .await;
    assert_eq!(code, 202, "proposal refused: {v}");
    v["proposal"].as_str().expect("proposal id").to_owned()
}

/// Waits until `n`'s best chain carries proposal `id`, then has `n` vote for it.
async fn vote_when_seen(n: &NodeProc, id: &str) {
    wait_for(&format!("proposal {id} on {}", n.http), LONG, || async {
        let v = view(n).await;
        let open = v["proposals"].as_array().cloned().unwrap_or_default();
        open.iter().any(|p| p["id"] == id).then_some(())
    })
    .await;
    let (code, v) = post(n, "/api/governance/votes", json!({ "proposal": id })).await;
    assert_eq!(code, 202, "vote refused: {v}");
}

/// Waits until `n`'s final chain carries proposal `id` and `votes` votes for it, and returns the
/// switch height that follows from the rules: the change is decided by the last of those items
/// (epoch length 4), and takes effect at the next multiple of 4.
async fn switch_height(n: &NodeProc, id: &str, votes: usize) -> u64 {
    let decided = wait_for(
        &format!("proposal {id} decided on {}", n.http),
        LONG,
        || async {
            let final_height = n.final_height().await;
            let mut heights = Vec::new();
            for h in 1..=final_height {
                let b = n.block(h).await;
                for item in b["governance"].as_array().cloned().unwrap_or_default() {
                    if item["proposal"] == id {
                        heights.push(h);
                    }
                }
            }
            (heights.len() == 1 + votes).then(|| heights.iter().copied().max().unwrap_or(0))
        },
    )
    .await;
    let switch = (decided / 4 + 1) * 4;
    // Every node reports the same: scheduled until the switch, then in force.
    let v = view(n).await;
    let scheduled = v["scheduled"].as_array().cloned().unwrap_or_default();
    if let Some(c) = scheduled.iter().find(|c| c["proposal"] == id) {
        assert_eq!(c["switch_at"], switch, "{v}");
        assert_eq!(c["decided_at"], decided, "{v}");
    }
    switch
}

/// Proposers of the final blocks `from..=to` on `n`.
async fn proposers(n: &NodeProc, from: u64, to: u64) -> Vec<String> {
    let mut out = Vec::new();
    for h in from..=to {
        let b = n.block(h).await;
        out.push(b["proposer"].as_str().unwrap_or_default().to_owned());
    }
    out
}

async fn agree(nodes: &[&NodeProc], upto: u64) {
    let reference = nodes[0].final_hashes(0, upto + 1).await;
    assert_eq!(reference.len() as u64, upto + 1);
    for n in &nodes[1..] {
        assert_eq!(
            n.final_hashes(0, upto + 1).await,
            reference,
            "{} disagrees",
            n.http
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn authorities_vote_a_member_in_and_another_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Node 5 is an observer every node allows, to sync from scratch later.
    let observer = vec![dev_peer_id(5)];
    let spec = |k, peers, authority, extra| NetNodeSpec {
        key: k,
        authority,
        authorities: 3,
        peers,
        allowed: &observer,
        extra_toml: extra,
    };
    let mut n1 = NodeProc::net(dir.path(), &spec(1, &[], true, GOVERNANCE));
    n1.wait_healthy().await;
    let seed = vec![n1.p2p_addr()];
    let mut n2 = NodeProc::net(dir.path(), &spec(2, &seed, true, GOVERNANCE));
    let mut n3 = NodeProc::net(dir.path(), &spec(3, &seed, true, GOVERNANCE));
    let joining = format!("{GOVERNANCE}join_by_vote = true\n");
    let mut n4 = NodeProc::net(dir.path(), &spec(4, &seed, true, &joining));
    for n in [&mut n2, &mut n3, &mut n4] {
        n.wait_healthy().await;
    }
    n1.wait_final_height(2, LONG).await;
    let genesis_set = vec![key(1), key(2), key(3)];
    assert_eq!(keys_of(&view(&n1).await), genesis_set);
    assert_eq!(view(&n1).await["finality_threshold"], 2);

    // Node 4 is not an authority yet: it can neither propose nor vote, and is not let in.
    let (code, v) = post(
        &n4,
        "/api/governance/proposals",
        json!({ "action": "remove", "key": key(1) }),
    )
    .await;
    assert_eq!(code, 403, "{v}");
    assert!(!n1.peer_ids().await.contains(&dev_peer_id(4)));

    // A proposal nobody else supports: it must expire without effect.
    let minority = propose(&n1, "add", &key(6)).await;

    // Node 1 proposes adding node 4; node 2's vote makes 2 of 3.
    let add = propose(&n1, "add", &key(4)).await;
    vote_when_seen(&n2, &add).await;
    let four = vec![key(1), key(2), key(3), key(4)];
    let switch = switch_height(&n1, &add, 1).await;

    // After the switch node 4 is let in, seals in its slots, and every node's schedule has it.
    let target = switch + 8;
    for n in [&n1, &n2, &n3, &n4] {
        n.wait_final_height(target, LONG).await;
    }
    let sealed = proposers(&n1, switch, target).await;
    assert!(
        sealed.contains(&key(4)),
        "node 4 sealed none of blocks {switch}..={target}: {sealed:?}"
    );
    assert!(
        proposers(&n1, 1, switch - 1)
            .await
            .iter()
            .all(|p| *p != key(4)),
        "node 4 sealed before the switch"
    );
    for n in [&n1, &n2, &n3, &n4] {
        let v = view(n).await;
        assert_eq!(keys_of(&v), four, "{}", n.http);
        assert_eq!(v["finality_threshold"], 3, "{}", n.http);
        assert_eq!(
            n.metric("provchain_authority_set_size").await,
            Some(4.0),
            "{}",
            n.http
        );
    }
    agree(&[&n1, &n2, &n3, &n4], target).await;

    // A restarted node rebuilds the same history; a fresh observer syncs across the switch.
    n3.kill9();
    n3.restart();
    n3.wait_healthy().await;
    let mut n5 = NodeProc::net(dir.path(), &spec(5, &seed, false, GOVERNANCE));
    n5.wait_healthy().await;
    let target = n1.final_height().await + 3;
    for n in [&n1, &n3, &n5] {
        n.wait_final_height(target, LONG).await;
    }
    agree(&[&n1, &n2, &n3, &n4, &n5], target).await;
    assert_eq!(keys_of(&view(&n3).await), four);
    assert_eq!(keys_of(&view(&n5).await), four);
    // An observer is not an authority: it cannot vote.
    let (code, v) = post(&n5, "/api/governance/votes", json!({ "proposal": add })).await;
    assert_eq!(code, 403, "{v}");

    // Removing node 3 needs 3 of the 4.
    let remove = propose(&n1, "remove", &key(3)).await;
    vote_when_seen(&n2, &remove).await;
    vote_when_seen(&n4, &remove).await;
    let rest = vec![key(1), key(2), key(4)];
    let switch = switch_height(&n1, &remove, 2).await;
    let target = switch + 8;
    for n in [&n1, &n2, &n4, &n5] {
        n.wait_final_height(target, LONG).await;
    }
    let sealed = proposers(&n1, switch, target).await;
    assert!(
        sealed.iter().all(|p| *p != key(3)),
        "a removed authority's block became final: {sealed:?}"
    );
    for n in [&n1, &n2, &n4, &n5] {
        let v = view(n).await;
        assert_eq!(keys_of(&v), rest, "{}", n.http);
        assert_eq!(v["finality_threshold"], 2, "{}", n.http);
    }
    agree(&[&n1, &n2, &n4, &n5], target).await;

    // The minority proposal expired: nothing scheduled, node 6 never added.
    wait_for("the minority proposal expires", LONG, || async {
        let v = view(&n1).await;
        let open = v["proposals"].as_array().cloned().unwrap_or_default();
        (!open.iter().any(|p| p["id"] == minority)).then_some(())
    })
    .await;
    let v = view(&n1).await;
    assert_eq!(keys_of(&v), rest);
    assert_eq!(v["scheduled"].as_array().map(Vec::len), Some(0));
    let (code, v) = post(
        &n2,
        "/api/governance/votes",
        json!({ "proposal": minority }),
    )
    .await;
    assert_eq!(code, 409, "a vote for an expired proposal: {v}");

    // The changes are in the chain metadata graph with PROV-O attribution.
    let q = format!(
        "PREFIX prov: <http://www.w3.org/ns/prov#> ASK {{ GRAPH <urn:provchain:chain> {{ \
         <urn:provchain:proposal:{add}> a prov:Activity ; \
         prov:wasAssociatedWith <urn:provchain:node:{k1}> }} }}",
        k1 = key(1)
    );
    assert_eq!(n5.sparql(&q).await["boolean"], true);
}

/// Blocks from an allowed peer holding the authorities' keys, correct in every respect but their
/// governance items: a proposal signed by a non-authority, a vote with a forged signature, and
/// items that do not match the header's `gov_root`. Each is rejected and counted, none is
/// forwarded, and the authority set is unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn forged_governance_items_are_rejected() {
    use std::time::{SystemTime, UNIX_EPOCH};

    use provchain_consensus::{
        Block, BlockHeader, GovernanceAction, GovernanceItem, Hash, Proposal, Vote,
    };
    use provchain_p2p::PeerId;

    const ADVERSARY: u32 = 7;
    let now_ms = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed = vec![dev_peer_id(ADVERSARY)];
    let spec = |k, peers, allowed| NetNodeSpec {
        key: k,
        authority: true,
        authorities: 3,
        peers,
        allowed,
        extra_toml: GOVERNANCE,
    };
    let mut n1 = NodeProc::net(dir.path(), &spec(1, &[], &allowed));
    n1.wait_healthy().await;
    let seed = vec![n1.p2p_addr()];
    let mut n2 = NodeProc::net(dir.path(), &spec(2, &seed, &[]));
    let mut n3 = NodeProc::net(dir.path(), &spec(3, &seed, &[]));
    n2.wait_healthy().await;
    n3.wait_healthy().await;
    n1.wait_final_height(2, LONG).await;

    let (p2p, _events, gh) = common::adversary(
        ADVERSARY,
        &n1,
        (1..=3).map(|i| dev_key(i).public()).collect(),
    )
    .await;
    let node1: PeerId = dev_peer_id(1).parse().expect("peer id");

    let head = || async {
        let status = p2p.request_status(node1).await.expect("status");
        let mut blocks = p2p
            .request_blocks(node1, status.best_height, 1)
            .await
            .expect("blocks");
        blocks.pop().expect("head block").header
    };
    let seal = |parent: &BlockHeader, items: Vec<GovernanceItem>| {
        let slot = (now_ms() / 1000).max(parent.slot + 1);
        let leader = dev_key((slot % 3) as u32 + 1);
        Block::seal_with_governance(parent, slot, slot * 1000 + 1, vec![], items, &leader, &gh)
    };
    let rejected = |reason| n1.counter("provchain_blocks_rejected_total", reason);

    // A proposal signed by a key outside the set.
    let outsider = Proposal::sign(
        GovernanceAction::Add(dev_key(ADVERSARY).public()),
        1,
        &dev_key(ADVERSARY),
        &gh,
    );
    let block = seal(&head().await, vec![outsider.into()]);
    p2p.publish_block(&block).await.expect("publish");
    wait_for("invalid_governance counted", LONG, || async {
        (rejected("invalid_governance").await >= 1.0).then_some(())
    })
    .await;

    // A vote by an authority whose signature was altered.
    let parent = head().await;
    let leader = dev_key(((now_ms() / 1000).max(parent.slot + 1) % 3) as u32 + 1);
    let mut forged = Vote::sign(Hash([3; 32]), &leader, &gh);
    forged.signature.0[0] ^= 0x40;
    p2p.publish_block(&seal(&parent, vec![forged.into()]))
        .await
        .expect("publish");
    wait_for("governance_signature counted", LONG, || async {
        (rejected("governance_signature").await >= 1.0).then_some(())
    })
    .await;

    // Valid items, but not the ones the header commits to.
    let parent = head().await;
    let proposal = Proposal::sign(
        GovernanceAction::Remove(dev_key(3).public()),
        2,
        &dev_key(1),
        &gh,
    );
    let mut swapped = seal(&parent, vec![proposal.into()]);
    swapped.governance = vec![Vote::sign(Hash([4; 32]), &dev_key(1), &gh).into()];
    p2p.publish_block(&swapped).await.expect("publish");
    wait_for("gov_root counted", LONG, || async {
        (rejected("gov_root").await >= 1.0).then_some(())
    })
    .await;

    // The set is unchanged, nothing is open, and the honest chain agrees everywhere.
    let target = n1.final_height().await + 3;
    for n in [&n1, &n2, &n3] {
        n.wait_final_height(target, LONG).await;
        let v = view(n).await;
        assert_eq!(keys_of(&v), vec![key(1), key(2), key(3)], "{}", n.http);
        assert_eq!(v["proposals"].as_array().map(Vec::len), Some(0));
        assert_eq!(v["scheduled"].as_array().map(Vec::len), Some(0));
    }
    agree(&[&n1, &n2, &n3], target).await;
    for n in [&n2, &n3] {
        for reason in ["invalid_governance", "governance_signature", "gov_root"] {
            let seen = n.counter("provchain_blocks_rejected_total", reason).await;
            assert_eq!(seen, 0.0, "a {reason} block was forwarded to {}", n.http);
        }
    }
}
