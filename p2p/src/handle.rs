//! The cloneable handle through which the node drives the swarm task.

use provchain_consensus::{Block, CompactBlock, PublicKey, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::wire::{SyncQuery, SyncResponse};
use crate::{
    ChainStatus, MAX_SYNC_BLOCKS, MessageId, Multiaddr, NetworkStats, P2pError, PeerId, PeerInfo,
    Verdict,
};

/// Resolves when the network thread has taken a queued publish up: gossipsub has signed the
/// message and queued it on every mesh peer's connection (the outcome of
/// [`P2pHandle::publish_block`]). Dropping it changes nothing.
pub type Queued = oneshot::Receiver<Result<(), P2pError>>;

/// Commands from handles to the swarm task.
#[derive(Debug)]
pub(crate) enum Command {
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Publish {
        topic: Topic,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), P2pError>>,
    },
    Report {
        msg: MessageId,
        verdict: Verdict,
    },
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Stats(oneshot::Sender<NetworkStats>),
    Request {
        peer: PeerId,
        query: SyncQuery,
        reply: oneshot::Sender<Result<SyncResponse, P2pError>>,
    },
    Shutdown(oneshot::Sender<()>),
    Penalise {
        peer: PeerId,
        reason: String,
    },
    SetAuthorities {
        authorities: Vec<PublicKey>,
        done: oneshot::Sender<()>,
    },
    /// Test hook: answer every sync request with these bytes instead of the node's answer.
    #[cfg(test)]
    GarbageResponses(Option<Vec<u8>>),
}

/// Which gossip topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topic {
    Blocks,
    Txs,
}

/// Talks to the swarm task. Cheap to clone; every clone drives the same swarm.
#[derive(Clone, Debug)]
pub struct P2pHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) local_peer_id: PeerId,
}

impl P2pHandle {
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, P2pError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| P2pError::Stopped)?;
        rx.await.map_err(|_| P2pError::Stopped)
    }

    /// The addresses the listeners are bound to (waits for the first one to be reported).
    /// Empty once the service stopped.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.ask(Command::ListenAddrs).await.unwrap_or_default()
    }

    /// Gossips a block. No subscribed peers yet is not an error (it is logged at debug level);
    /// the block reaches late joiners through sync.
    pub async fn publish_block(&self, block: &Block) -> Result<(), P2pError> {
        let data = crate::wire::encode_gossip(block);
        self.ask(|reply| Command::Publish {
            topic: Topic::Blocks,
            data,
            reply,
        })
        .await?
    }

    /// Queues a block for gossip without awaiting anything, for a caller that cannot await
    /// (the chain task: a publish it spawned would wait behind its own work — the import of
    /// that very block — before the swarm task saw it). When the command queue is full, a
    /// task waits for room instead. The swarm task logs the outcome of the publish.
    pub fn queue_block(&self, block: &Block) -> Queued {
        self.queue_publish(Topic::Blocks, crate::wire::encode_gossip(block))
    }

    /// Queues a block in compact form (transaction ids only) for gossip, like
    /// [`Self::queue_block`]. Receivers rebuild the block from the transactions gossiped
    /// before it; for a block of ~1,000 transactions that is ~32 KiB on the wire instead of
    /// ~1 MiB, each hop's signing, encryption and verification included.
    pub fn queue_compact_block(&self, block: &CompactBlock) -> Queued {
        self.queue_publish(Topic::Blocks, crate::wire::encode_compact_block(block))
    }

    /// [`Self::publish_txs`] without awaiting, like [`Self::queue_block`].
    pub fn queue_txs(&self, txs: &[Transaction]) {
        drop(self.queue_publish(Topic::Txs, crate::wire::encode_txs(txs)));
    }

    fn queue_publish(&self, topic: Topic, data: Vec<u8>) -> Queued {
        let (reply, queued) = oneshot::channel();
        let command = Command::Publish { topic, data, reply };
        if let Err(mpsc::error::TrySendError::Full(command)) = self.commands.try_send(command) {
            let commands = self.commands.clone();
            tokio::spawn(async move {
                let _ = commands.send(command).await;
            });
        }
        queued
    }

    /// Gossips a transaction; same semantics as [`Self::publish_block`].
    pub async fn publish_tx(&self, tx: &Transaction) -> Result<(), P2pError> {
        self.publish_txs(std::slice::from_ref(tx)).await
    }

    /// Gossips transactions as one message (at most [`crate::MAX_GOSSIP_BATCH`] and
    /// [`crate::P2pConfig::max_message_bytes`]; the caller splits larger sets). One message
    /// per batch instead of one per transaction saves a gossipsub signature, its verification
    /// on every receiving peer, and the framing, per transaction.
    pub async fn publish_txs(&self, txs: &[Transaction]) -> Result<(), P2pError> {
        let data = crate::wire::encode_txs(txs);
        self.ask(|reply| Command::Publish {
            topic: Topic::Txs,
            data,
            reply,
        })
        .await?
    }

    /// The node's verdict on a received gossip message: `Accept` forwards it, `Reject` drops it
    /// and penalises the sender, `Ignore` drops it.
    pub async fn report(&self, msg: MessageId, verdict: Verdict) {
        let _ = self.commands.send(Command::Report { msg, verdict }).await;
    }

    /// Connected, identified peers.
    pub async fn peers(&self) -> Vec<PeerInfo> {
        self.ask(Command::Peers).await.unwrap_or_default()
    }

    /// Counters for metrics.
    pub async fn stats(&self) -> NetworkStats {
        self.ask(Command::Stats).await.unwrap_or_default()
    }

    /// Asks `peer` for its chain status.
    pub async fn request_status(&self, peer: PeerId) -> Result<ChainStatus, P2pError> {
        match self.request(peer, SyncQuery::Status).await? {
            SyncResponse::Status(s) => Ok(s),
            other => Err(unexpected(peer, &other)),
        }
    }

    /// Asks `peer` for up to `max` blocks (capped at [`MAX_SYNC_BLOCKS`]) of its best chain from
    /// `from_height`. Fewer blocks (even none) is a valid answer: the peer's chain is shorter
    /// or the batch hit the size bound.
    pub async fn request_blocks(
        &self,
        peer: PeerId,
        from_height: u64,
        max: u32,
    ) -> Result<Vec<Block>, P2pError> {
        let max = max.min(MAX_SYNC_BLOCKS);
        match self
            .request(peer, SyncQuery::GetBlocks { from_height, max })
            .await?
        {
            SyncResponse::Blocks(blocks) if blocks.len() <= max as usize => Ok(blocks),
            SyncResponse::Blocks(blocks) => Err(P2pError::InvalidResponse {
                peer,
                reason: format!("{} blocks returned, {max} asked for", blocks.len()),
            }),
            other => Err(unexpected(peer, &other)),
        }
    }

    pub(crate) async fn request(
        &self,
        peer: PeerId,
        query: SyncQuery,
    ) -> Result<SyncResponse, P2pError> {
        let resp = self
            .ask(|reply| Command::Request { peer, query, reply })
            .await??;
        match resp {
            SyncResponse::Error(reason) => Err(P2pError::Refused { peer, reason }),
            other => Ok(other),
        }
    }

    /// Records a misbehaviour the node found (e.g. a sync answer that lies). Like a rejected
    /// message, it is a strike; at [`crate::P2pConfig::max_strikes`] the peer is banned.
    pub async fn penalise(&self, peer: PeerId, reason: impl Into<String>) {
        let _ = self
            .commands
            .send(Command::Penalise {
                peer,
                reason: reason.into(),
            })
            .await;
    }

    /// Replaces the authority set (after a governance decision changed it). From then on the
    /// new authorities and the configured [`crate::P2pConfig::allowed_peers`] may connect and
    /// gossip; a connected peer that is in neither is disconnected and refused, and a peer that
    /// stays allowed keeps its connection with its `is_authority` flag updated. Bans stay in
    /// force until they end. The same set again changes nothing. Returns once the swarm task
    /// applied it (at once if the service has stopped).
    pub async fn set_authorities(&self, authorities: Vec<PublicKey>) {
        let _ = self
            .ask(|done| Command::SetAuthorities { authorities, done })
            .await;
    }

    /// Stops the swarm task: listeners close and connections drop. Returns once it stopped.
    pub async fn shutdown(&self) {
        let _ = self.ask(Command::Shutdown).await;
    }

    #[cfg(test)]
    pub(crate) async fn send_test_command(&self, cmd: Command) {
        let _ = self.commands.send(cmd).await;
    }

    /// Test hook: gossips arbitrary bytes.
    #[cfg(test)]
    pub(crate) async fn publish_raw(&self, topic: Topic, data: Vec<u8>) -> Result<(), P2pError> {
        self.ask(|reply| Command::Publish { topic, data, reply })
            .await?
    }
}

fn unexpected(peer: PeerId, resp: &SyncResponse) -> P2pError {
    let kind = match resp {
        SyncResponse::Status(_) => "status",
        SyncResponse::Blocks(_) => "blocks",
        SyncResponse::Error(_) => "error",
        #[cfg(test)]
        SyncResponse::Raw(_) => "raw",
    };
    P2pError::InvalidResponse {
        peer,
        reason: format!("unexpected {kind} response"),
    }
}
