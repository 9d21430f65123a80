//! The sync task: keeps this node caught up with its peers.
//!
//! Woken when a peer connects, when a block with an unknown parent arrives, and every
//! [`SYNC_TICK`], it asks peers for their chain status and, when a peer is ahead, fetches the
//! peer's best chain from our final height in batches of [`SYNC_BATCH`] blocks, handing each
//! batch to the chain task (which validates every block). Network waits happen here, never in
//! the chain task.

use std::time::Duration;

use provchain_p2p::{P2pHandle, PeerId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::chain::{ChainHandle, SYNC_BATCH};

/// How often peers are polled for their status when nothing else wakes the task.
const SYNC_TICK: Duration = Duration::from_secs(2);
/// Deadline for one status or blocks request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Wake-ups queued (peer connects, orphans); extra ones are dropped, the tick catches up.
pub const WAKEUP_QUEUE: usize = 64;

pub async fn run(
    chain: ChainHandle,
    p2p: P2pHandle,
    mut wakeups: mpsc::Receiver<PeerId>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(SYNC_TICK);
    loop {
        let mut targets = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(peer) = wakeups.recv() => vec![peer],
            _ = tick.tick() => p2p.peers().await.into_iter().map(|p| p.peer_id).collect(),
        };
        while let Ok(peer) = wakeups.try_recv() {
            if !targets.contains(&peer) {
                targets.push(peer);
            }
        }
        for peer in targets {
            if shutdown.is_cancelled() {
                break;
            }
            sync_with(&chain, &p2p, peer).await;
        }
    }
}

async fn sync_with(chain: &ChainHandle, p2p: &P2pHandle, peer: PeerId) {
    let status = match tokio::time::timeout(REQUEST_TIMEOUT, p2p.request_status(peer)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return debug!(%peer, error = %e, "status request failed"),
        Err(_) => return debug!(%peer, "status request timed out"),
    };
    chain.peer_status(peer, status).await;
    let snap = chain.snapshot();
    let ahead = status.best_height > snap.best_height
        || (status.best_height == snap.best_height && status.best_hash < snap.best_hash);
    if !ahead {
        return;
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
                Ok(Err(e)) => return debug!(%peer, error = %e, "blocks request failed"),
                Err(_) => return debug!(%peer, "blocks request timed out"),
            };
        let n = blocks.len() as u64;
        if n == 0 {
            return;
        }
        let outcome = chain.import_synced(blocks, peer).await;
        if outcome.failed {
            return;
        }
        from += n;
        if behind > u64::from(SYNC_BATCH) && outcome.imported > 0 {
            info!(%peer, height = from - 1, target = status.best_height, "sync progress");
        }
        if n < u64::from(SYNC_BATCH) || from > status.best_height {
            return;
        }
    }
}
