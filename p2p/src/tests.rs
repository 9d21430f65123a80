//! Multi-node tests: real swarms on 127.0.0.1 with OS-assigned ports. Every wait has a deadline
//! and waits for an event or a condition, never for a fixed time.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

use provchain_consensus::{Block, Genesis, Keypair};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::handle::{Command, Topic};
use crate::wire::SyncQuery;
use crate::*;

/// Upper bound for anything a test waits for; generous for a loaded 2-core CI box.
const DEADLINE: Duration = Duration::from_secs(20);

fn key(i: u8) -> Keypair {
    Keypair::from_secret([i; 32])
}

fn genesis(n: u8) -> Genesis {
    Genesis {
        network_id: "p2p-test".into(),
        authorities: (1..=n).map(|i| key(i).public()).collect(),
        block_interval_ms: 1000,
        governance: Default::default(),
    }
}

fn config(i: u8, g: &Genesis, bootstrap: Vec<String>) -> P2pConfig {
    P2pConfig {
        keypair: key(i),
        genesis_hash: g.hash(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap,
        authorities: g.authorities.clone(),
        bootstrap_interval: Duration::from_secs(2),
        heartbeat_interval: Duration::from_millis(200),
        ..Default::default()
    }
}

struct Node {
    handle: P2pHandle,
    events: mpsc::Receiver<P2pEvent>,
    peer_id: PeerId,
    addr: Multiaddr,
}

impl Node {
    async fn start(cfg: P2pConfig) -> Node {
        let (handle, events) = spawn(cfg).await.expect("spawn");
        let addrs = timeout(DEADLINE, handle.listen_addrs())
            .await
            .expect("listen address");
        let peer_id = handle.local_peer_id();
        Node {
            handle,
            events,
            peer_id,
            addr: addrs[0].clone(),
        }
    }

    /// `PROVCHAIN_PEERS` entry with the peer id.
    fn full_addr(&self) -> String {
        format!("{}/p2p/{}", self.addr, self.peer_id)
    }

    /// `host:port` entry.
    fn host_port(&self) -> String {
        let port = self
            .addr
            .iter()
            .find_map(|p| match p {
                libp2p::multiaddr::Protocol::Tcp(p) => Some(p),
                _ => None,
            })
            .unwrap();
        format!("127.0.0.1:{port}")
    }

    /// Waits for the first event `f` maps to `Some`, skipping others.
    async fn wait<T>(&mut self, what: &str, mut f: impl FnMut(P2pEvent) -> Option<T>) -> T {
        let fut = async {
            loop {
                let ev = self.events.recv().await.expect("event channel closed");
                if let Some(t) = f(ev) {
                    return t;
                }
            }
        };
        timeout(DEADLINE, fut)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    async fn wait_connected(&mut self, peers: &[PeerId]) {
        let mut missing: HashSet<PeerId> = peers.iter().copied().collect();
        while !missing.is_empty() {
            let p = self
                .wait("PeerConnected", |ev| match ev {
                    P2pEvent::PeerConnected { peer, is_authority } => Some((peer, is_authority)),
                    _ => None,
                })
                .await;
            missing.remove(&p.0);
        }
    }

    /// Waits until this node's network counters satisfy `cond`.
    async fn wait_stats(&self, what: &str, cond: impl Fn(&NetworkStats) -> bool) {
        let (handle, cond) = (&self.handle, &cond);
        eventually(what, move || async move { cond(&handle.stats().await) }).await;
    }

    async fn next_block(&mut self) -> (PeerId, MessageId, Block) {
        self.wait("BlockReceived", |ev| match ev {
            P2pEvent::BlockReceived {
                from,
                message_id,
                block,
                ..
            } => Some((from, message_id, *block)),
            _ => None,
        })
        .await
    }
}

/// Polls `cond` until it holds, failing after [`DEADLINE`].
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let fut = async {
        while !cond().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

fn chain(g: &Genesis, n: u64) -> Vec<Block> {
    let mut parent = g.block().header;
    let mut out = Vec::new();
    for slot in 1..=n {
        let b = Block::seal(&parent, slot, slot * 1000, vec![], &key(1), &g.hash());
        parent = b.header.clone();
        out.push(b);
    }
    out
}

fn block_at_slot(g: &Genesis, slot: u64) -> Block {
    Block::seal(
        &g.block().header,
        slot,
        slot * 1000,
        vec![],
        &key(1),
        &g.hash(),
    )
}

#[tokio::test]
async fn discovery_nodes_seeded_with_one_address_connect_directly() {
    let g = genesis(3);
    let mut n1 = Node::start(config(1, &g, vec![])).await;
    let mut n2 = Node::start(config(2, &g, vec![n1.full_addr()])).await;
    let mut n3 = Node::start(config(3, &g, vec![n1.host_port()])).await;

    n2.wait_connected(&[n1.peer_id, n3.peer_id]).await;
    n3.wait_connected(&[n1.peer_id, n2.peer_id]).await;
    n1.wait_connected(&[n2.peer_id, n3.peer_id]).await;

    for (node, others) in [
        (&n1, [n2.peer_id, n3.peer_id]),
        (&n2, [n1.peer_id, n3.peer_id]),
        (&n3, [n1.peer_id, n2.peer_id]),
    ] {
        let peers = node.handle.peers().await;
        let ids: HashSet<PeerId> = peers.iter().map(|p| p.peer_id).collect();
        assert_eq!(
            ids,
            others.into_iter().collect(),
            "peers of {}",
            node.peer_id
        );
        assert!(
            peers
                .iter()
                .all(|p| p.is_authority && !p.addresses.is_empty() && p.connected_since_ms > 0)
        );
    }
    let p2 = n2.handle.peers().await;
    let to3 = p2.iter().find(|p| p.peer_id == n3.peer_id).unwrap();
    assert!(
        to3.addresses
            .iter()
            .all(|a| !a.to_string().contains("0.0.0.0"))
    );
    for n in [&n1, &n2, &n3] {
        n.handle.shutdown().await;
    }
}

#[tokio::test]
async fn gossip_accept_forwards_and_reject_does_not() {
    let g = genesis(3);
    // Line topology 1 - 2 - 3: node 1 only admits node 2, so whatever node 3 gets was
    // forwarded by node 2 after the test's verdict.
    let mut c1 = config(1, &g, vec![]);
    c1.authorities = vec![key(1).public(), key(2).public()];
    let n1 = Node::start(c1).await;
    let mut n2 = Node::start(config(2, &g, vec![n1.full_addr()])).await;
    let mut n3 = Node::start(config(3, &g, vec![n2.full_addr()])).await;
    n2.wait_connected(&[n1.peer_id, n3.peer_id]).await;
    n2.wait_stats("node 2 meshes with nodes 1 and 3", |s| {
        s.block_mesh_peers >= 2
    })
    .await;
    n1.wait_stats("node 1 sees node 2 subscribed", |s| {
        s.block_topic_peers >= 1
    })
    .await;
    assert!(
        !n1.handle
            .peers()
            .await
            .iter()
            .any(|p| p.peer_id == n3.peer_id)
    );

    // Accepted at node 2 -> forwarded to node 3.
    let b1 = block_at_slot(&g, 1);
    n1.handle.publish_block(&b1).await.unwrap();
    let (from, id, got) = n2.next_block().await;
    assert_eq!((from, &got), (n1.peer_id, &b1));
    n2.handle.report(id, Verdict::Accept).await;
    let (from, id3, got) = n3.next_block().await;
    assert_eq!((from, &got), (n2.peer_id, &b1));
    n3.handle.report(id3, Verdict::Accept).await;

    // Rejected at node 2 -> not forwarded. Block 3, accepted after it, is node 3's next block:
    // messages on one connection arrive in order, so block 2 would have come first.
    let b2 = block_at_slot(&g, 2);
    let b3 = block_at_slot(&g, 3);
    n1.handle.publish_block(&b2).await.unwrap();
    let (_, id, got) = n2.next_block().await;
    assert_eq!(got, b2);
    n2.handle.report(id, Verdict::Reject).await;
    n1.handle.publish_block(&b3).await.unwrap();
    let (_, id, got) = n2.next_block().await;
    assert_eq!(got, b3);
    n2.handle.report(id, Verdict::Accept).await;
    let (_, _, got) = n3.next_block().await;
    assert_eq!(got, b3, "the rejected block was forwarded");

    // Transactions travel on their own topic, one or many per message.
    let tx = |i: u64| {
        provchain_consensus::Transaction::sign(
            provchain_consensus::TxBody {
                format: provchain_consensus::RdfFormat::NTriples,
                data: format!("<http://a> <http://b> \"{i}\" .").into(),
                submitter: key(1).public(),
                client: None,
                timestamp_ms: i,
            },
            &key(1),
            &g.hash(),
        )
    };
    n1.handle.publish_tx(&tx(1)).await.unwrap();
    let txs = |ev| match ev {
        P2pEvent::TxsReceived { txs, .. } => Some(txs),
        _ => None,
    };
    assert_eq!(n2.wait("TxsReceived", txs).await, vec![tx(1)]);
    let batch: Vec<_> = (2..200).map(tx).collect();
    n1.handle.publish_txs(&batch).await.unwrap();
    assert_eq!(n2.wait("a batch", txs).await, batch);
}

/// Answers sync requests from `blocks` (ignoring `max`, so the p2p cap is exercised).
fn spawn_responder(mut events: mpsc::Receiver<P2pEvent>, status: ChainStatus, blocks: Vec<Block>) {
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match ev {
                P2pEvent::StatusRequest { reply, .. } => {
                    let _ = reply.send(status);
                }
                P2pEvent::BlocksRequest {
                    from_height, reply, ..
                } => {
                    let out = blocks
                        .iter()
                        .filter(|b| b.header.height >= from_height)
                        .cloned()
                        .collect();
                    let _ = reply.send(out);
                }
                _ => {}
            }
        }
    });
}

#[tokio::test]
async fn sync_status_and_blocks() {
    let g = genesis(2);
    let mut n1 = Node::start(config(1, &g, vec![])).await;
    let n2 = Node::start(config(2, &g, vec![n1.full_addr()])).await;
    n1.wait_connected(&[n2.peer_id]).await;
    let blocks = chain(&g, 5);
    let status = ChainStatus {
        genesis_hash: g.hash(),
        best_height: 5,
        best_hash: blocks[4].hash(),
        final_height: 3,
        final_hash: blocks[2].hash(),
    };
    spawn_responder(n2.events, status, blocks.clone());

    assert_eq!(n1.handle.request_status(n2.peer_id).await.unwrap(), status);
    assert_eq!(
        n1.handle.request_blocks(n2.peer_id, 1, 3).await.unwrap(),
        blocks[..3].to_vec()
    );
    assert_eq!(
        n1.handle.request_blocks(n2.peer_id, 4, 1000).await.unwrap(),
        blocks[3..].to_vec()
    );
    assert_eq!(
        n1.handle.request_blocks(n2.peer_id, 9, 10).await.unwrap(),
        Vec::<Block>::new()
    );
    assert_eq!(
        n1.handle.request_blocks(n2.peer_id, 1, 0).await.unwrap(),
        Vec::<Block>::new()
    );
    // Asking a peer we are not allowed to talk to fails without touching the network.
    let stranger = peer_id_of(&key(42).public());
    assert!(n1.handle.request_status(stranger).await.is_err());
}

#[test]
fn sync_responses_are_truncated_to_the_byte_budget() {
    let g = genesis(1);
    let blocks = chain(&g, 10);
    let one = 4 + blocks[0].encoded_len();
    assert_eq!(
        service::truncate_blocks(blocks.clone(), 128, one * 3).len(),
        3
    );
    assert_eq!(
        service::truncate_blocks(blocks.clone(), 2, usize::MAX).len(),
        2
    );
    assert_eq!(service::truncate_blocks(blocks, 128, one - 1).len(), 0);
}

#[tokio::test]
async fn non_allowed_peer_is_refused_and_gets_no_gossip() {
    let g = genesis(2);
    let mut n1 = Node::start(config(1, &g, vec![])).await;
    let mut n2 = Node::start(config(2, &g, vec![n1.full_addr()])).await;
    n1.wait_connected(&[n2.peer_id]).await;
    // Key 9 is no authority and nobody lists it, though it knows the network and dials node 1.
    let mut x = Node::start(config(9, &g, vec![n1.full_addr()])).await;
    let refused = n1
        .wait("PeerRefused", |ev| match ev {
            P2pEvent::PeerRefused { peer } => Some(peer),
            _ => None,
        })
        .await;
    assert_eq!(refused, x.peer_id);
    assert!(n1.handle.stats().await.refused_connections >= 1);
    n1.wait_stats("node 1 sees node 2 subscribed", |s| {
        s.block_topic_peers >= 1
    })
    .await;
    let b = block_at_slot(&g, 1);
    n1.handle.publish_block(&b).await.unwrap();
    assert_eq!(n2.next_block().await.2, b);

    let ids: Vec<PeerId> = n1.handle.peers().await.iter().map(|p| p.peer_id).collect();
    assert_eq!(ids, vec![n2.peer_id]);
    assert!(x.handle.peers().await.is_empty());
    while let Ok(ev) = x.events.try_recv() {
        assert!(
            !matches!(
                ev,
                P2pEvent::BlockReceived { .. } | P2pEvent::PeerConnected { .. }
            ),
            "refused peer got {ev:?}"
        );
    }
}

#[tokio::test]
async fn private_network_requires_the_same_psk() {
    let g = genesis(4);
    let psk = [7u8; 32];
    let with_psk = |i: u8, boot: Vec<String>, psk: Option<[u8; 32]>| P2pConfig {
        psk,
        ..config(i, &g, boot)
    };
    let mut p1 = Node::start(with_psk(1, vec![], Some(psk))).await;
    let mut p2 = Node::start(with_psk(2, vec![p1.full_addr()], Some(psk))).await;
    p2.wait_connected(&[p1.peer_id]).await;
    p1.wait_connected(&[p2.peer_id]).await;

    let started = Instant::now();
    let p3 = Node::start(with_psk(3, vec![p1.full_addr()], None)).await;
    let p4 = Node::start(with_psk(4, vec![p1.full_addr()], Some([8u8; 32]))).await;
    for n in [&p3, &p4] {
        n.wait_stats("a dial without the right key fails", |s| {
            s.dial_failures >= 1
        })
        .await;
    }
    assert!(
        started.elapsed() < HANDSHAKE_TIMEOUT * 2,
        "failing took {:?}",
        started.elapsed()
    );
    assert!(p3.handle.peers().await.is_empty());
    assert!(p4.handle.peers().await.is_empty());
    let ids: Vec<PeerId> = p1.handle.peers().await.iter().map(|p| p.peer_id).collect();
    assert_eq!(ids, vec![p2.peer_id]);
}

#[tokio::test]
async fn garbage_gossip_and_sync_bytes_are_rejected_without_panic() {
    let g = genesis(2);
    let mut n1 = Node::start(config(1, &g, vec![])).await;
    let mut n2 = Node::start(config(2, &g, vec![n1.full_addr()])).await;
    n1.wait_connected(&[n2.peer_id]).await;
    n2.wait_connected(&[n1.peer_id]).await;
    n1.wait_stats("node 1 sees node 2 subscribed", |s| {
        s.block_topic_peers >= 1
    })
    .await;
    let invalid = |want: &'static str| {
        move |ev| match ev {
            P2pEvent::InvalidMessage { from, kind, reason } if kind == want => Some((from, reason)),
            _ => None,
        }
    };

    // Gossip that does not decode.
    n1.handle
        .publish_raw(Topic::Blocks, vec![0xde, 0xad, 0xbe, 0xef])
        .await
        .unwrap();
    let (from, _) = n2.wait("invalid block", invalid("block")).await;
    assert_eq!(from, n1.peer_id);
    n1.handle
        .publish_raw(Topic::Txs, vec![GOSSIP_VERSION, 9, 9, 9])
        .await
        .unwrap();
    n2.wait("invalid transaction", invalid("transaction")).await;

    // A request that does not decode.
    let err = n1
        .handle
        .request(n2.peer_id, SyncQuery::Raw(vec![0xff; 40]))
        .await;
    assert!(err.is_err());
    let (from, _) = n2
        .wait("invalid sync request", invalid("sync request"))
        .await;
    assert_eq!(from, n1.peer_id);

    // A response that does not decode.
    n2.handle
        .send_test_command(Command::GarbageResponses(Some(vec![1, 0, 42])))
        .await;
    let err = n1.handle.request_status(n2.peer_id).await;
    assert!(
        matches!(err, Err(P2pError::InvalidResponse { .. })),
        "{err:?}"
    );
    let (from, _) = n1
        .wait("invalid sync response", invalid("sync response"))
        .await;
    assert_eq!(from, n2.peer_id);

    // Both nodes still serve: a well-formed exchange works.
    n2.handle
        .send_test_command(Command::GarbageResponses(None))
        .await;
    let status = ChainStatus {
        genesis_hash: g.hash(),
        best_height: 0,
        best_hash: g.block().hash(),
        final_height: 0,
        final_hash: g.block().hash(),
    };
    spawn_responder(n2.events, status, vec![]);
    assert_eq!(n1.handle.request_status(n2.peer_id).await.unwrap(), status);
    assert!(n2.handle.stats().await.invalid_messages >= 3);
}

#[tokio::test]
async fn a_peer_that_keeps_misbehaving_is_banned_then_let_back() {
    let g = genesis(2);
    let mut cfg1 = config(1, &g, vec![]);
    cfg1.max_strikes = 4;
    cfg1.ban_duration = Duration::from_secs(3);
    let mut n1 = Node::start(cfg1).await;
    // Node 2 redials node 1 (its bootstrap peer) while disconnected.
    let mut n2 = Node::start(config(2, &g, vec![n1.full_addr()])).await;
    n1.wait_connected(&[n2.peer_id]).await;
    n2.wait_connected(&[n1.peer_id]).await;
    // Node 2 publishes: a message published before it knows node 1's subscription reaches
    // no one.
    n2.wait_stats("node 2 sees node 1 subscribed", |s| {
        s.block_topic_peers >= 1
    })
    .await;

    // Two undecodable gossip messages and two lies the node reports: four strikes.
    for i in 0..2u8 {
        n2.handle
            .publish_raw(Topic::Blocks, vec![0xba, 0xad, i])
            .await
            .expect("publish");
        n1.wait("invalid block", |ev| match ev {
            P2pEvent::InvalidMessage { .. } => Some(()),
            _ => None,
        })
        .await;
    }
    n1.handle
        .penalise(n2.peer_id, "served a block it does not have")
        .await;
    assert_eq!(
        n1.handle.stats().await.peers_banned,
        0,
        "three strikes are not enough"
    );
    n1.handle
        .penalise(n2.peer_id, "served a block it does not have")
        .await;
    let (peer, reason) = n1
        .wait("PeerBanned", |ev| match ev {
            P2pEvent::PeerBanned { peer, reason, .. } => Some((peer, reason)),
            _ => None,
        })
        .await;
    assert_eq!(peer, n2.peer_id);
    assert!(!reason.is_empty());
    assert_eq!(n1.handle.stats().await.peers_banned, 1);
    let h1 = n1.handle.clone();
    let banned = n2.peer_id;
    eventually("node 2 is disconnected", || {
        let h = h1.clone();
        async move { !h.peers().await.iter().any(|p| p.peer_id == banned) }
    })
    .await;
    // While banned, node 2's redials are refused.
    n1.wait("a refused connection", |ev| match ev {
        P2pEvent::PeerRefused { peer } if peer == banned => Some(()),
        _ => None,
    })
    .await;
    assert!(!n1.handle.peers().await.iter().any(|p| p.peer_id == banned));
    // Once the ban ends, the allowed peer connects again.
    n1.wait_connected(&[n2.peer_id]).await;
}

/// Keys `ids` as an authority set.
fn keys(ids: &[u8]) -> Vec<provchain_consensus::PublicKey> {
    ids.iter().map(|i| key(*i).public()).collect()
}

#[tokio::test]
async fn authority_added_at_runtime_is_admitted_and_its_gossip_accepted() {
    let g = genesis(3);
    let mut ca = config(1, &g, vec![]);
    ca.authorities = keys(&[1, 2]);
    let mut a = Node::start(ca).await;
    // Node 3 follows genesis (all three are authorities) and keeps redialing node 1.
    let c = Node::start(config(3, &g, vec![a.full_addr()])).await;
    let refused = a
        .wait("PeerRefused", |ev| match ev {
            P2pEvent::PeerRefused { peer } => Some(peer),
            _ => None,
        })
        .await;
    assert_eq!(refused, c.peer_id);

    a.handle.set_authorities(keys(&[1, 2, 3])).await;
    a.handle.set_authorities(keys(&[1, 2, 3])).await;
    let is_authority = a
        .wait("PeerConnected from node 3", |ev| match ev {
            P2pEvent::PeerConnected { peer, is_authority } if peer == c.peer_id => {
                Some(is_authority)
            }
            _ => None,
        })
        .await;
    assert!(is_authority);
    let peers = a.handle.peers().await;
    let info = peers
        .iter()
        .find(|p| p.peer_id == c.peer_id)
        .expect("node 3 in node 1's peers");
    assert!(info.is_authority);

    c.wait_stats("node 3 sees node 1 subscribed", |s| {
        s.block_topic_peers >= 1
    })
    .await;
    let b = block_at_slot(&g, 1);
    c.handle.publish_block(&b).await.expect("publish");
    let (from, _, got) = a.next_block().await;
    assert_eq!((from, got), (c.peer_id, b));
}

#[tokio::test]
async fn authority_removed_at_runtime_is_dropped_unless_an_allowed_peer() {
    let g = genesis(4);
    // Node 3 is only an authority; node 4 is an authority and a configured observer.
    let mut ca = config(1, &g, vec![]);
    ca.authorities = keys(&[1, 2, 3, 4]);
    ca.allowed_peers = vec![peer_id_of(&key(4).public())];
    let mut a = Node::start(ca).await;
    let c = Node::start(config(3, &g, vec![a.full_addr()])).await;
    let d = Node::start(config(4, &g, vec![a.full_addr()])).await;
    a.wait_connected(&[c.peer_id, d.peer_id]).await;
    let before = a.handle.peers().await;
    assert!(before.iter().all(|p| p.is_authority), "{before:?}");
    let d_since = before
        .iter()
        .find(|p| p.peer_id == d.peer_id)
        .expect("node 4 connected")
        .connected_since_ms;

    a.handle.set_authorities(keys(&[1, 2])).await;
    a.handle.set_authorities(keys(&[1, 2])).await;
    // Node 3 is disconnected, then its redial is refused; node 4 is never disconnected.
    let (mut dropped, mut refused) = (false, false);
    while !(dropped && refused) {
        let ev = a.wait("node 3 dropped and refused", Some).await;
        match ev {
            P2pEvent::PeerDisconnected { peer } if peer == c.peer_id => dropped = true,
            P2pEvent::PeerRefused { peer } if peer == c.peer_id => refused = true,
            P2pEvent::PeerDisconnected { peer } | P2pEvent::PeerRefused { peer }
                if peer == d.peer_id =>
            {
                panic!("the observer lost its connection: {ev:?}")
            }
            _ => {}
        }
    }
    let after = a.handle.peers().await;
    assert!(!after.iter().any(|p| p.peer_id == c.peer_id), "{after:?}");
    let observer = after
        .iter()
        .find(|p| p.peer_id == d.peer_id)
        .expect("node 4 still connected");
    assert!(!observer.is_authority);
    assert_eq!(observer.connected_since_ms, d_since, "node 4 reconnected");

    // The observer's gossip is still accepted.
    d.wait_stats("node 4 sees node 1 subscribed", |s| {
        s.block_topic_peers >= 1
    })
    .await;
    let b = block_at_slot(&g, 1);
    d.handle.publish_block(&b).await.expect("publish");
    let (from, _, got) = a.next_block().await;
    assert_eq!((from, got), (d.peer_id, b));
}

/// Node 1 (authorities {1, 3}, banning at the first strike for `ban`) connected to node 3.
async fn banning_pair(ban: Duration) -> (Node, Node) {
    let g = genesis(3);
    let mut ca = config(1, &g, vec![]);
    ca.authorities = keys(&[1, 3]);
    ca.max_strikes = 1;
    ca.ban_duration = ban;
    let mut a = Node::start(ca).await;
    let c = Node::start(config(3, &g, vec![a.full_addr()])).await;
    a.wait_connected(&[c.peer_id]).await;
    a.handle.penalise(c.peer_id, "test offence").await;
    let banned = a
        .wait("PeerBanned", |ev| match ev {
            P2pEvent::PeerBanned { peer, .. } => Some(peer),
            _ => None,
        })
        .await;
    assert_eq!(banned, c.peer_id);
    (a, c)
}

#[tokio::test]
async fn an_authority_set_change_does_not_lift_a_ban() {
    let (mut a, c) = banning_pair(Duration::from_secs(3)).await;
    a.handle.set_authorities(keys(&[1])).await;
    a.handle.set_authorities(keys(&[1, 3])).await;
    // Node 3 redials within a second or two, well inside the ban.
    let readmitted = a
        .wait("node 3 refused or connected", |ev| match ev {
            P2pEvent::PeerRefused { peer } if peer == c.peer_id => Some(false),
            P2pEvent::PeerConnected { peer, .. } if peer == c.peer_id => Some(true),
            _ => None,
        })
        .await;
    assert!(
        !readmitted,
        "the banned peer was let back before its ban ended"
    );
    // Once the ban ends, the (again) authority connects.
    let is_authority = a
        .wait("node 3 connected after its ban", |ev| match ev {
            P2pEvent::PeerConnected { peer, is_authority } if peer == c.peer_id => {
                Some(is_authority)
            }
            _ => None,
        })
        .await;
    assert!(is_authority);
}

#[tokio::test]
async fn an_ended_ban_does_not_readmit_a_removed_authority() {
    let ban = Duration::from_secs(1);
    let (mut a, c) = banning_pair(ban).await;
    let banned_at = Instant::now();
    a.handle.set_authorities(keys(&[1])).await;
    // Bans are lifted on a 500 ms tick: a refusal this late comes after the ban ended.
    let ban_over = banned_at + ban + Duration::from_secs(1);
    a.wait("node 3 refused after its ban ended", |ev| match ev {
        P2pEvent::PeerConnected { peer, .. } if peer == c.peer_id => {
            panic!("a removed authority was readmitted when its ban ended")
        }
        P2pEvent::PeerRefused { peer } if peer == c.peer_id && Instant::now() > ban_over => {
            Some(())
        }
        _ => None,
    })
    .await;
    // Made an authority again, it is admitted (node 1 knows its address from before).
    a.handle.set_authorities(keys(&[1, 3])).await;
    let is_authority = a
        .wait("node 3 connected again", |ev| match ev {
            P2pEvent::PeerConnected { peer, is_authority } if peer == c.peer_id => {
                Some(is_authority)
            }
            _ => None,
        })
        .await;
    assert!(is_authority);
}

#[tokio::test]
async fn lost_bootstrap_peer_is_redialed() {
    let g = genesis(2);
    let n1 = Node::start(config(1, &g, vec![])).await;
    let mut n2 = Node::start(config(2, &g, vec![n1.full_addr()])).await;
    n2.wait_connected(&[n1.peer_id]).await;
    let addr = n1.addr.clone();
    n1.handle.shutdown().await;
    let gone = n2
        .wait("PeerDisconnected", |ev| match ev {
            P2pEvent::PeerDisconnected { peer } => Some(peer),
            _ => None,
        })
        .await;
    assert_eq!(gone, n1.peer_id);
    // Node 1 comes back on the same address; node 2 finds it again by itself.
    let restarted = Node::start(P2pConfig {
        listen: vec![addr],
        ..config(1, &g, vec![])
    })
    .await;
    n2.wait_connected(&[restarted.peer_id]).await;
}

#[tokio::test]
async fn busy_port_is_reported_with_the_fix() {
    let g = genesis(1);
    let n1 = Node::start(config(1, &g, vec![])).await;
    let cfg = P2pConfig {
        listen: vec![n1.addr.clone()],
        ..config(2, &g, vec![])
    };
    let Err(err) = spawn(cfg).await else {
        panic!("second bind must fail");
    };
    let msg = err.to_string();
    assert!(
        msg.contains("is in use") && msg.contains("PROVCHAIN_PORT"),
        "{msg}"
    );
}

#[test]
fn parse_peer_addr_accepts_every_documented_form() {
    let id = peer_id_of(&key(1).public());
    let cases = [
        (
            "/ip4/10.0.0.1/tcp/30333",
            "/ip4/10.0.0.1/tcp/30333".to_owned(),
        ),
        ("/dns4/node1/tcp/30333", "/dns4/node1/tcp/30333".to_owned()),
        (
            &*format!("/ip4/10.0.0.1/tcp/30333/p2p/{id}"),
            format!("/ip4/10.0.0.1/tcp/30333/p2p/{id}"),
        ),
        (
            &*format!("/dns4/node1/tcp/1/p2p/{id}"),
            format!("/dns4/node1/tcp/1/p2p/{id}"),
        ),
        ("node1:30333", "/dns4/node1/tcp/30333".to_owned()),
        (
            "provchain-node-2.example.org:30334",
            "/dns4/provchain-node-2.example.org/tcp/30334".to_owned(),
        ),
        (
            "192.168.1.20:30333",
            "/ip4/192.168.1.20/tcp/30333".to_owned(),
        ),
        ("  10.0.0.1:1 ", "/ip4/10.0.0.1/tcp/1".to_owned()),
        ("[::1]:30333", "/ip6/::1/tcp/30333".to_owned()),
    ];
    for (input, want) in cases {
        assert_eq!(parse_peer_addr(input).unwrap().to_string(), want, "{input}");
    }
    for junk in [
        "",
        "node1",
        "node1:",
        "node1:abc",
        "node1:70000",
        "node1:0",
        "/ip4/1.2.3.4",
        "/tcp/1",
        "/foo/bar",
        "bad host:1",
        "1.2.3:30333",
        "-x:1",
    ] {
        let err = parse_peer_addr(junk).unwrap_err().to_string();
        assert!(
            err.contains("invalid peer address") && err.contains("host:port"),
            "{junk}: {err}"
        );
    }
}

#[test]
fn parse_swarm_key_reads_the_go_ipfs_format() {
    let hex: String = (0..32).map(|i| format!("{i:02x}")).collect();
    let text = format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\n");
    let mut want = [0u8; 32];
    for (i, b) in want.iter_mut().enumerate() {
        *b = i as u8;
    }
    assert_eq!(parse_swarm_key(&text).unwrap(), want);
    assert_eq!(parse_swarm_key(&text.replace('\n', "\r\n")).unwrap(), want);
    for bad in [
        String::new(),
        format!("/key/swarm/psk/2.0.0/\n/base16/\n{hex}"),
        format!("/key/swarm/psk/1.0.0/\n/base64/\n{hex}"),
        format!("/key/swarm/psk/1.0.0/\n/base16/\n{}", &hex[..62]),
        format!("/key/swarm/psk/1.0.0/\n/base16/\n{}zz", &hex[..62]),
        format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\nextra"),
    ] {
        assert!(
            matches!(parse_swarm_key(&bad), Err(P2pError::InvalidSwarmKey(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn peer_id_of_matches_the_libp2p_identity() {
    let k = key(3);
    let id = libp2p::identity::Keypair::ed25519_from_bytes(k.secret())
        .unwrap()
        .public()
        .to_peer_id();
    assert_eq!(peer_id_of(&k.public()), id);
    // An invalid curve point still maps to a stable id.
    let bogus = provchain_consensus::PublicKey([0xff; 32]);
    assert_eq!(peer_id_of(&bogus), peer_id_of(&bogus));
}

/// The swarm runs on a network thread of its own: a block gossiped to a node arrives while
/// the runtime that started both nodes is not running at all (as when a node's workers are
/// all busy). With the swarm on the caller's runtime nothing would move.
#[test]
fn gossip_arrives_while_the_callers_runtime_is_stalled() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let g = genesis(2);
    let (n1, mut n2) = rt.block_on(async {
        let n1 = Node::start(config(1, &g, vec![])).await;
        let mut n2 = Node::start(config(2, &g, vec![n1.full_addr()])).await;
        n2.wait_connected(&[n1.peer_id]).await;
        n1.wait_stats("node 1 meshes with node 2", |s| s.block_mesh_peers >= 1)
            .await;
        (n1, n2)
    });

    // From here on this thread never runs `rt`: it queues a block and waits for it.
    let block = block_at_slot(&g, 1);
    n1.handle.queue_block(&block);
    let deadline = Instant::now() + DEADLINE;
    loop {
        match n2.events.try_recv() {
            Ok(P2pEvent::BlockReceived {
                from, block: got, ..
            }) => {
                assert_eq!((from, *got), (n1.peer_id, block));
                break;
            }
            Ok(_) => {}
            Err(mpsc::error::TryRecvError::Empty) => {
                assert!(
                    Instant::now() < deadline,
                    "the block did not arrive while the caller's runtime was stalled"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(mpsc::error::TryRecvError::Disconnected) => panic!("node 2 stopped"),
        }
    }
    rt.block_on(async {
        n1.handle.shutdown().await;
        n2.handle.shutdown().await;
    });
}
