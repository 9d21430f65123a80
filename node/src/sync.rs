//! The sync task: keeps this node caught up with its peers.
//!
//! Woken when a peer connects, when a block with an unknown parent arrives, when a compact
//! block could not be rebuilt (that one block is fetched from its proposer), and every
//! `SYNC_TICK`, it asks peers for their chain status and, when a peer is ahead, fetches the
//! peer's best chain from our final height in batches of [`SYNC_BATCH`] blocks, handing each
//! batch to the chain task (which validates every block). Network waits happen here, never in
//! the chain task.
//!
//! A peer whose answers lie — a head it does not serve, blocks that break the rules, answers
//! that do not fit the question — is penalised (a strike toward a ban, see
//! [`provchain_p2p::P2pConfig::max_strikes`]), counted in `provchain_sync_misbehaviour_total`,
//! and its claimed height stops counting for [`DISCREDIT_FOR`], so it cannot make this node
//! look behind (`/ready`) or keep it fetching.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use provchain_p2p::{P2pError, P2pHandle, PeerId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::chain::{ChainHandle, SYNC_BATCH};
use crate::metrics::Metrics;

/// How often peers are polled for their status when nothing else wakes the task.
const SYNC_TICK: Duration = Duration::from_secs(2);
/// Deadline for one status or blocks request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Wake-ups queued (peer connects, orphans); extra ones are dropped, the tick catches up.
pub const WAKEUP_QUEUE: usize = 64;
/// How long a peer caught lying is not synced from and its claimed height not counted.
pub const DISCREDIT_FOR: Duration = Duration::from_secs(300);

/// Why the sync task is woken.
#[derive(Debug, Clone, Copy)]
pub enum Wakeup {
    /// Compare chains with this peer and catch up if it is ahead.
    Peer(PeerId),
    /// Fetch one block the node knows of (a compact block it could not rebuild) from `peer`,
    /// whose best chain holds it at `height` (its proposer, which sealed it there). Forks are
    /// fetched too, where a comparison of best heights would fetch nothing.
    Block {
        peer: PeerId,
        height: u64,
        hash: provchain_consensus::Hash,
    },
}

struct Syncer {
    chain: ChainHandle,
    p2p: P2pHandle,
    metrics: Arc<Metrics>,
    discredited: HashMap<PeerId, Instant>,
}

pub async fn run(
    chain: ChainHandle,
    p2p: P2pHandle,
    metrics: Arc<Metrics>,
    mut wakeups: mpsc::Receiver<Wakeup>,
    shutdown: CancellationToken,
) {
    let mut s = Syncer {
        chain,
        p2p,
        metrics,
        discredited: HashMap::new(),
    };
    let mut tick = tokio::time::interval(SYNC_TICK);
    loop {
        let mut woken = Vec::new();
        let mut targets = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(w) = wakeups.recv() => { woken.push(w); Vec::new() }
            _ = tick.tick() => s.p2p.peers().await.into_iter().map(|p| p.peer_id).collect(),
        };
        while let Ok(w) = wakeups.try_recv() {
            woken.push(w);
        }
        for w in woken {
            match w {
                Wakeup::Peer(peer) => {
                    if !targets.contains(&peer) {
                        targets.push(peer);
                    }
                }
                Wakeup::Block { peer, height, hash } => {
                    if shutdown.is_cancelled() {
                        break;
                    }
                    if !s.fetch_block(peer, height, hash).await && !targets.contains(&peer) {
                        targets.push(peer);
                    }
                }
            }
        }
        for peer in targets {
            if shutdown.is_cancelled() {
                break;
            }
            s.sync_with(peer).await;
        }
        s.discredited.retain(|_, at| at.elapsed() < DISCREDIT_FOR);
    }
}

impl Syncer {
    /// Records that `peer` lied: strike, metric, and its claims stop counting for a while.
    async fn misbehaved(&mut self, peer: PeerId, reason: &'static str, detail: String) {
        warn!(%peer, reason, %detail, "peer sync answer lied");
        self.metrics.sync_misbehaved(reason);
        self.discredited.insert(peer, Instant::now());
        self.chain.discredit_peer(peer).await;
        self.p2p.penalise(peer, format!("sync: {detail}")).await;
    }

    /// Fetches the block `hash` at `height` of `peer`'s best chain and imports it; false if
    /// the peer did not serve it (then a full comparison with the peer follows).
    async fn fetch_block(
        &mut self,
        peer: PeerId,
        height: u64,
        hash: provchain_consensus::Hash,
    ) -> bool {
        if self.discredited.contains_key(&peer) {
            return false;
        }
        let blocks =
            match tokio::time::timeout(REQUEST_TIMEOUT, self.p2p.request_blocks(peer, height, 1))
                .await
            {
                Ok(Ok(b)) => b,
                _ => return false,
            };
        let Some(block) = blocks.into_iter().find(|b| b.hash() == hash) else {
            return false;
        };
        let outcome = self.chain.import_synced(vec![block], peer).await;
        if let Some(reason) = outcome.invalid {
            let detail = format!("served a block rejected as {reason}");
            self.misbehaved(peer, "invalid_block", detail).await;
            return true;
        }
        outcome.imported > 0 || outcome.known > 0
    }

    async fn sync_with(&mut self, peer: PeerId) {
        if self.discredited.contains_key(&peer) {
            return;
        }
        match sync_with(&self.chain, &self.p2p, peer).await {
            Ok(()) => {}
            Err((reason, detail)) => self.misbehaved(peer, reason, detail).await,
        }
    }
}

/// Syncs from `peer`; `Err` names how its answers lied.
async fn sync_with(
    chain: &ChainHandle,
    p2p: &P2pHandle,
    peer: PeerId,
) -> Result<(), (&'static str, String)> {
    let status = match tokio::time::timeout(REQUEST_TIMEOUT, p2p.request_status(peer)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "status request failed");
            return Ok(());
        }
        Err(_) => {
            debug!(%peer, "status request timed out");
            return Ok(());
        }
    };
    chain.peer_status(peer, status).await;
    let snap = chain.snapshot();
    let ahead = status.best_height > snap.best_height
        || (status.best_height == snap.best_height && status.best_hash < snap.best_hash);
    if !ahead {
        return Ok(());
    }
    let mut from = snap.final_height + 1;
    let behind = status.best_height.saturating_sub(snap.best_height);
    if behind > u64::from(SYNC_BATCH) {
        info!(%peer, from, target = status.best_height, "syncing");
    }
    loop {
        let blocks =
            match tokio::time::timeout(REQUEST_TIMEOUT, p2p.request_blocks(peer, from, SYNC_BATCH))
                .await
            {
                Ok(Ok(b)) => b,
                Ok(Err(e @ P2pError::InvalidResponse { .. })) => {
                    return Err(("bad_response", e.to_string()));
                }
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "blocks request failed");
                    return Ok(());
                }
                Err(_) => {
                    debug!(%peer, "blocks request timed out");
                    return Ok(());
                }
            };
        let n = blocks.len() as u64;
        if n == 0 {
            // Best heights never decrease under the longest-chain rule, so an honest peer
            // serves up to the head it just reported.
            if from <= status.best_height {
                return Err((
                    "unserved_head",
                    format!(
                        "reported head height {} but served nothing from height {from}",
                        status.best_height
                    ),
                ));
            }
            return Ok(());
        }
        let outcome = chain.import_synced(blocks, peer).await;
        if let Some(reason) = outcome.invalid {
            return Err((
                "invalid_block",
                format!("served a block rejected as {reason}"),
            ));
        }
        if outcome.failed {
            return Ok(());
        }
        from += n;
        if behind > u64::from(SYNC_BATCH) && outcome.imported > 0 {
            info!(%peer, height = from - 1, target = status.best_height, "sync progress");
        }
        if n < u64::from(SYNC_BATCH) || from > status.best_height {
            return Ok(());
        }
    }
}
