//! The chain task: the single writer of chain state.
//!
//! It owns the fork tree of non-final blocks (and their bodies), the transaction pool, the
//! equivocation registry and the write side of the store. Everything that changes the chain
//! arrives here as a message — API submissions ([`Command`]), peer events from `p2p`, the slot
//! timer — and is handled one at a time, so no lock guards chain state. Readers use the store
//! directly (sled reads are concurrent) and a [`watch`] snapshot of the heads.
//!
//! Data flow for a block: sealed here or received from a peer → validated by `consensus` (and
//! its RDF parsed by `storage::rdf`) → inserted into the fork tree and persisted as pending →
//! fork choice and the finality rule run → newly final blocks are handed to the storage writer
//! thread ([`crate::writer`]), which commits them in one atomic, flushed step while this task
//! goes on; once it reports the commit they are the final head the API shows, and their
//! transactions leave memory for good.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use provchain_consensus::{
    Applied, AuthorityHistory, Block, BlockError, BlockHeader, CheckedIds, CompactBlock, ForkError,
    ForkTree, Genesis, Hash, Keypair, Limits, PublicKey, SlotRegistry, Transaction,
    ValidationContext, finality_threshold, leader, slot_at, slot_start_ms, validate_block_with_ids,
    verify_tx_signatures,
};
use provchain_p2p::{ChainStatus, MessageId, P2pEvent, P2pHandle, PeerId, Verdict};
use provchain_storage::{ParsedTx, StorageError, Store, rdf};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::bodies::Bodies;
use crate::governance::{
    AuthoritiesView, Governance, GovernanceAccepted, GovernanceRequest, GovernanceSubmitError,
};
use crate::ids::{IdMap, IdSet};
use crate::metrics::Metrics;
use crate::pool::{Pool, PoolError};
use crate::recent::{RECENT_FINAL_BLOCKS, RecentFinal};
use crate::sync::Wakeup;
use crate::work::{CheckPool, Lane};
use crate::writer::{Committed, StoreWriter};

/// Commands queued to the chain task. Bounded so a flood of API calls pushes back on clients.
pub const COMMAND_QUEUE: usize = 1024;
/// Blocks with an unknown parent kept while their ancestors are fetched.
const MAX_ORPHANS: usize = 512;
/// Early blocks held until their slot starts.
const MAX_HELD: usize = 256;
/// Equivocation records kept in memory (the metric counts all of them).
const MAX_EVIDENCE: usize = 256;
/// Blocks served per sync request (also capped by the p2p message size).
pub const SYNC_BATCH: u32 = 128;
/// Transactions admitted through the API are gossiped in batches, one signed gossip message
/// per batch: a batch goes out this long after its first transaction was admitted...
const TX_GOSSIP_DELAY: Duration = Duration::from_millis(10);
/// ...or as soon as it holds this many transactions...
const TX_GOSSIP_BATCH: usize = 512;
/// ...or this many bytes (a larger single transaction travels alone).
const TX_GOSSIP_BATCH_BYTES: usize = 512 * 1024;
/// Gossiped transaction batches whose signatures and RDF are being checked off the chain task
/// at once; further batches wait in a backlog, checked in arrival order.
const MAX_TX_CHECKS: usize = 4;
/// Bounds of that backlog (batches, and bytes of their transactions). A batch arriving beyond
/// them is ignored (not forwarded, not penalised, counted as `node_busy`): the node is
/// saturated, and the transactions still reach it in their blocks, fetched in full.
const MAX_TX_CHECK_BACKLOG: usize = 256;
const MAX_TX_CHECK_BACKLOG_BYTES: usize = 16 * 1024 * 1024;

/// Final blocks handed to the storage writer and not yet committed. Normally one block or
/// two (a commit takes a fraction of a slot); beyond either bound the chain task waits for the
/// writer, so a disk slower than the chain holds the chain back instead of filling memory.
const MAX_UNCOMMITTED_BLOCKS: usize = 1024;
const MAX_UNCOMMITTED_BYTES: usize = 64 * 1024 * 1024;

/// Work on the chain task small enough to run in place rather than through
/// `block_in_place` (see [`Chain::import_one`]): a block with at most this many transactions
/// whose signatures this node has not verified (~20 µs each)...
const INLINE_UNVERIFIED_TXS: usize = 32;
/// ...and at most this many bytes of RDF to parse (~1 ms).
const INLINE_RDF_BYTES: usize = 256 * 1024;

/// The share of `consensus.max_pool_size` open to client submissions (numerator,
/// denominator); beyond it they get 503 and the rest of the pool takes only transactions
/// gossiped by peers. Every node thereby keeps admitting its peers' transactions under
/// overload, so whichever authority leads next can seal any of them: a transaction is final
/// a slot or two after its submission, in arrival order across the network. When pools
/// filled with client submissions to the bound, gossip was refused, each pool held mostly
/// its own node's submissions, and a transaction waited for its own node's turn (every
/// third slot) behind a full pool (docs/PERFORMANCE.md, overload).
const CLIENT_POOL_SHARE: (usize, usize) = (3, 10);

/// A slot leader sends in full, inside its compact block, the transactions it admitted this
/// recently: its peers may not have received the gossip batch that carried them yet.
const PREFILL_WINDOW: Duration = Duration::from_millis(30);

/// How long a slot leader waits for the network thread to take its block up before importing
/// it (normally well under a millisecond).
const PUBLISH_WAIT: Duration = Duration::from_millis(20);

/// How long a slot leader with peers waits after publishing before it imports its own block.
/// Its import, the finality and the commit that follow take milliseconds of CPU, and would
/// compete for the cores with its peers' import of the same block, which is what block
/// propagation is measured on; so they wait until the peers are done (a few ms on loopback).
/// Commands and network events queue meanwhile (docs/PERFORMANCE.md, item 12).
const OWN_IMPORT_DELAY: Duration = Duration::from_millis(8);

/// A final block handed to the storage writer, until its commit is reported.
struct Committing {
    hash: Hash,
    height: u64,
    /// Its encoded size.
    bytes: usize,
    /// When it was handed over (clock ms).
    since_ms: u64,
    /// Its transaction ids, for the commit's parses and for the cleanup after it.
    tx_ids: Arc<[Hash]>,
}

/// What committed blocks leave behind: bodies, transactions and parsed documents, freed on a
/// check thread rather than on the chain task.
#[derive(Default)]
struct Garbage {
    blocks: Vec<Arc<Block>>,
    txs: Vec<Transaction>,
    parsed: Vec<Arc<ParsedTx>>,
}

impl Garbage {
    fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.txs.is_empty() && self.parsed.is_empty()
    }
}

/// A gossiped batch after its checks, on its way back to the chain task for admission.
struct CheckedBatch {
    from: PeerId,
    message_id: MessageId,
    /// Every transaction id of the batch (valid or not), no longer in flight.
    ids: Vec<Hash>,
    checked: Checked,
}

/// A gossiped batch waiting for a check slot: its sender, message and new transactions.
type Unchecked = (PeerId, MessageId, Vec<(Hash, Transaction)>);

/// What the checks of a gossiped batch found.
struct Checked {
    /// The transactions that passed every check, with their RDF parsed.
    valid: Vec<(Hash, Transaction, Arc<ParsedTx>)>,
    /// Rejections by reason (`invalid_envelope`, `invalid_rdf`, `too_many_statements`).
    rejected: Vec<(&'static str, u64)>,
    /// RDF documents parsed.
    parsed: u64,
    /// The final height of the storage view the valid transactions were not found in
    /// (`None`: the lookup failed, the chain task looks again).
    stored_seen: Option<u64>,
}

/// Wall clock in unix milliseconds, with an offset for clock-skew tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    pub offset_ms: i64,
}

impl Clock {
    pub fn now_ms(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        (real + self.offset_ms).max(0) as u64
    }
}

/// Chain parameters fixed at startup.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    pub genesis: Genesis,
    pub keypair: Keypair,
    pub is_authority: bool,
    pub limits: Limits,
    pub empty_blocks: bool,
    pub max_pool_size: usize,
    pub max_drift_ms: u64,
    pub clock: Clock,
    /// Largest correction network-adjusted time may apply to this node's clock; 0 turns it off.
    pub max_clock_adjust_ms: u64,
}

/// Heads and counters published after every change, for cheap reads by the API.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub best_height: u64,
    pub best_hash: Hash,
    pub final_height: u64,
    pub final_hash: Hash,
    pub pool_size: usize,
    pub peers: usize,
    /// Highest best height any peer reported.
    pub peer_best_height: u64,
    /// This node is the whole authority set in force (at the final head): it needs no peers.
    pub sole_authority: bool,
    /// When the chain task last published (its clock, unix ms): it does so at least every
    /// 100 ms while it runs, so an old value means the task is stuck.
    pub updated_ms: u64,
    /// Why client submissions are refused right now (a full pool), if they are: the API
    /// answers 503 without parsing and signing the RDF.
    pub refusing: Option<SubmitError>,
    /// Since when (clock ms) the oldest final block not yet committed has waited for the
    /// storage writer, if one has: a commit normally takes a fraction of a slot, so a long
    /// wait means storage is stuck (a full disk, a flush that never returns).
    pub uncommitted_since_ms: Option<u64>,
}

/// Status of a transaction not yet final.
#[derive(Debug, Clone)]
pub enum PendingTx {
    InPool(Transaction),
    Included {
        tx: Transaction,
        block_hash: Hash,
        height: u64,
    },
}

#[derive(Debug, Clone, Error)]
pub enum SubmitError {
    #[error("the transaction pool is full ({0} transactions); retry later")]
    PoolFull(usize),
    #[error("the node is shutting down")]
    Closed,
}

/// Evidence of an authority sealing two different blocks for one slot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EquivocationRecord {
    pub slot: u64,
    pub proposer: provchain_consensus::PublicKey,
    /// The block kept.
    pub first: Hash,
    /// The conflicting block, refused and not forwarded.
    pub second: Hash,
    pub detected_at_ms: u64,
}

pub enum Command {
    Equivocations {
        reply: oneshot::Sender<Vec<EquivocationRecord>>,
    },
    Submit {
        id: Hash,
        tx: Transaction,
        parsed: Arc<ParsedTx>,
        /// The final height of the storage view it was not found in (`None`: not looked up).
        stored_seen: Option<u64>,
        reply: oneshot::Sender<Result<(), SubmitError>>,
    },
    PendingTx {
        id: Hash,
        reply: oneshot::Sender<Option<PendingTx>>,
    },
    /// Non-final blocks on the best chain, highest first.
    PendingBlocks {
        reply: oneshot::Sender<Vec<Block>>,
    },
    ImportSynced {
        blocks: Vec<Block>,
        from: PeerId,
        reply: oneshot::Sender<SyncOutcome>,
    },
    PeerStatus {
        peer: PeerId,
        status: ChainStatus,
    },
    /// The peer's last status claimed blocks it did not serve: forget its height.
    DiscreditPeer {
        peer: PeerId,
    },
    Authorities {
        reply: oneshot::Sender<AuthoritiesView>,
    },
    Governance {
        request: GovernanceRequest,
        reply: oneshot::Sender<Result<GovernanceAccepted, GovernanceSubmitError>>,
    },
}

/// Result of importing a batch fetched by sync.
#[derive(Debug, Default, Clone, Copy)]
pub struct SyncOutcome {
    pub imported: usize,
    pub known: usize,
    pub failed: bool,
    /// The peer served a block that breaks the rules (its reason), not one this node merely
    /// could not place yet.
    pub invalid: Option<&'static str>,
}

/// Cloneable access to the chain task.
#[derive(Clone)]
pub struct ChainHandle {
    tx: mpsc::Sender<Command>,
    snapshot: watch::Receiver<Snapshot>,
}

impl ChainHandle {
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.clone()
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Submits a transaction signed by this node, with its RDF parsed ([`ParsedTx::parse`]),
    /// that storage did not hold at final height `stored_seen` (`None`: not looked up; the
    /// chain task looks).
    pub async fn submit(
        &self,
        id: Hash,
        tx: Transaction,
        parsed: Arc<ParsedTx>,
        stored_seen: Option<u64>,
    ) -> Result<(), SubmitError> {
        self.ask(|reply| Command::Submit {
            id,
            tx,
            parsed,
            stored_seen,
            reply,
        })
        .await
        .unwrap_or(Err(SubmitError::Closed))
    }

    pub async fn pending_tx(&self, id: Hash) -> Option<PendingTx> {
        self.ask(|reply| Command::PendingTx { id, reply })
            .await
            .flatten()
    }

    pub async fn equivocations(&self) -> Vec<EquivocationRecord> {
        self.ask(|reply| Command::Equivocations { reply })
            .await
            .unwrap_or_default()
    }

    pub async fn pending_blocks(&self) -> Vec<Block> {
        self.ask(|reply| Command::PendingBlocks { reply })
            .await
            .unwrap_or_default()
    }

    pub async fn import_synced(&self, blocks: Vec<Block>, from: PeerId) -> SyncOutcome {
        self.ask(|reply| Command::ImportSynced {
            blocks,
            from,
            reply,
        })
        .await
        .unwrap_or(SyncOutcome {
            failed: true,
            ..Default::default()
        })
    }

    pub async fn peer_status(&self, peer: PeerId, status: ChainStatus) {
        let _ = self.tx.send(Command::PeerStatus { peer, status }).await;
    }

    /// The authority set on the best chain, scheduled changes and open proposals.
    pub async fn authorities(&self) -> Option<AuthoritiesView> {
        self.ask(|reply| Command::Authorities { reply }).await
    }

    /// Signs a proposal or vote with this node's key for its next block.
    pub async fn governance(
        &self,
        request: GovernanceRequest,
    ) -> Result<GovernanceAccepted, GovernanceSubmitError> {
        self.ask(|reply| Command::Governance { request, reply })
            .await
            .unwrap_or(Err(GovernanceSubmitError::Closed))
    }

    /// Stops counting the height `peer` claimed (it did not serve it), so a lying peer cannot
    /// make this node look behind.
    pub async fn discredit_peer(&self, peer: PeerId) {
        let _ = self.tx.send(Command::DiscreditPeer { peer }).await;
    }
}

/// Why a block was not imported.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error("block already known")]
    Known,
    #[error("parent {0} unknown")]
    Orphan(Hash),
    #[error("block builds on final block {0} that is not the final head")]
    Stale(Hash),
    #[error(transparent)]
    Invalid(#[from] BlockError),
    #[error("transaction {index} has invalid RDF: {message}")]
    Rdf { index: usize, message: String },
    #[error("transaction {0} is already on this chain")]
    Replayed(Hash),
    #[error("equivocation: {0}")]
    Equivocation(String),
    #[error("governance: {0}")]
    Governance(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

impl ImportError {
    /// Normal while blocks race (known, orphan, stale, early: held) or a local storage
    /// problem (reported where it happens): neither logged as a rejection nor the sender's
    /// fault.
    fn is_routine(&self) -> bool {
        matches!(
            self,
            Self::Known
                | Self::Orphan(_)
                | Self::Stale(_)
                | Self::Invalid(BlockError::Early { .. })
                | Self::Storage(_)
        )
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::Known => "known",
            Self::Orphan(_) => "orphan",
            Self::Stale(_) => "stale",
            Self::Invalid(e) => e.reason(),
            Self::Rdf { .. } => "invalid_rdf",
            Self::Replayed(_) => "replayed_tx",
            Self::Equivocation(_) => "equivocation",
            Self::Governance(_) => "invalid_governance",
            Self::Storage(_) => "storage",
        }
    }
}

/// Where a block came from; gossip imports feed the propagation histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Local,
    Gossip,
    Sync,
}

pub struct Chain {
    cfg: ChainConfig,
    genesis_hash: Hash,
    store: Store,
    tree: ForkTree,
    bodies: Bodies,
    /// Transactions in non-final blocks on the best chain → their block.
    included: IdMap<Hash>,
    /// Transactions of the blocks committed lately: with `included`, they settle whether a
    /// transaction a check thread did not find in storage is final (`recent.rs`).
    recent_final: RecentFinal,
    /// Transactions whose envelope signature verified and whose RDF parsed here (admitted to
    /// the pool), with the parse: neither is checked again when a block brings them, and the
    /// commit of their block stores the parse instead of parsing again. Held until the
    /// transaction is final (bounded with the pool).
    checked: IdMap<Arc<ParsedTx>>,
    /// Own admissions waiting to be gossiped as one batch, their encoded size, and when the
    /// first of them was admitted.
    gossip_out: Vec<Transaction>,
    gossip_out_bytes: usize,
    gossip_out_since: Option<Instant>,
    pool: Pool,
    governance: Governance,
    /// The authorities p2p lets in (in force at the final head, or scheduled), as last sent.
    permitted: Vec<PublicKey>,
    /// This node is the whole set in force at the final head.
    sole_authority: bool,
    /// Added to the clock for slot time ([`Chain::observe_clock`]).
    clock_adjust_ms: i64,
    /// Latest clock offset of each other authority and when it was measured (raw clock).
    clock_samples: HashMap<PublicKey, (i64, i64)>,
    /// Feeds `permitted` to p2p (see [`Chain::run`]).
    authority_updates: watch::Sender<Vec<PublicKey>>,
    /// Checked gossip batches come back here ([`Chain::on_gossip_txs`]); the receiver is
    /// taken by [`Chain::run`].
    tx_checks: mpsc::Sender<CheckedBatch>,
    tx_checked: Option<mpsc::Receiver<CheckedBatch>>,
    tx_checks_running: usize,
    /// Gossiped batches waiting for a check slot, and their transactions' encoded bytes.
    tx_check_backlog: VecDeque<Unchecked>,
    tx_check_backlog_bytes: usize,
    slots: SlotRegistry,
    orphans: HashMap<Hash, Vec<(Block, Option<PeerId>)>>,
    orphan_count: usize,
    held: BTreeMap<u64, Vec<(Block, Option<PeerId>)>>,
    /// The transaction ids of the block about to be imported, when it was rebuilt from a
    /// compact block (its pool transactions are keyed by them), checked against its header:
    /// validation need not hash every transaction, nor the Merkle tree and seal, again.
    rebuilt_ids: Option<CheckedIds>,
    /// Copies of the gossiped transactions being checked on a blocking thread: a compact
    /// block takes what it lacks from here (and from the backlog) instead of waiting for the
    /// check; its validation checks them like any transaction this node has not verified.
    /// Bounded by [`MAX_TX_CHECKS`] batches of at most a gossip message each.
    in_flight: IdMap<Transaction>,
    evidence: VecDeque<EquivocationRecord>,
    last_sealed_slot: u64,
    /// Applies storage writes in the background, in order: pending blocks and final commits.
    writer: StoreWriter,
    /// Final blocks handed to the writer and not reported committed yet, lowest first. Until
    /// then their bodies stay in `bodies` and their transactions in `included`: they are
    /// known, served to peers and listed, but not final to the API.
    committing: VecDeque<Committing>,
    committing_bytes: usize,
    /// Blocks imported in this turn of the run loop whose pending-store write is not queued
    /// yet: encoding a large block takes milliseconds, so it waits until the turn's verdicts
    /// and finality are done ([`Chain::queue_pending_writes`]), and a block final by then is
    /// never written as pending at all.
    unwritten: Vec<Hash>,
    /// The final head storage holds: what the API reports as final.
    committed: (Hash, BlockHeader),
    /// Set while a sync batch imports: finality runs once at the end of the batch.
    defer_finality: bool,
    /// Set when storage failed: the task stops and the node exits with an error.
    fatal: Option<String>,
    metrics: Arc<Metrics>,
    p2p: P2pHandle,
    snapshot: watch::Sender<Snapshot>,
    /// Connected peers and the best height each last reported (status or gossip).
    peers: HashMap<PeerId, u64>,
    sync_wakeup: mpsc::Sender<Wakeup>,
    /// Runs the checks of gossiped transaction batches.
    checks: CheckPool,
}

impl Chain {
    /// Restores chain state from the store (the final head and persisted pending blocks) and
    /// returns the task state and its handle.
    pub fn open(
        cfg: ChainConfig,
        store: Store,
        metrics: Arc<Metrics>,
        p2p: P2pHandle,
        sync_wakeup: mpsc::Sender<Wakeup>,
        checks: CheckPool,
    ) -> Result<(Self, ChainHandle, mpsc::Receiver<Command>), StorageError> {
        let final_head = store.final_head()?;
        let committed = (final_head.hash(), final_head.clone());
        let mut tree = ForkTree::new(final_head);
        if cfg.is_authority {
            // Before the pending blocks go in: the node's own among them hold it on fork-choice
            // ties as they did before the restart.
            tree.set_own_key(cfg.keypair.public());
        }
        let mut bodies = Bodies::default();
        let mut pending = store.pending_blocks()?;
        pending.sort_by_key(|b| b.header.height);
        for block in pending {
            let hash = block.hash();
            if tree.insert(block.header.clone()).is_ok() {
                bodies.insert_hashing(hash, block);
            } else {
                store.remove_pending(&hash)?;
            }
        }
        let governance = Governance::open(&cfg.genesis, &store)?;
        let (snap_tx, snap_rx) = watch::channel(Snapshot::default());
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let genesis_hash = cfg.genesis.hash();
        let (tx_checks, tx_checked) = mpsc::channel(MAX_TX_CHECKS);
        let writer = StoreWriter::spawn(store.clone())?;
        let mut chain = Self {
            tx_checks,
            tx_checked: Some(tx_checked),
            tx_checks_running: 0,
            tx_check_backlog: VecDeque::new(),
            tx_check_backlog_bytes: 0,
            pool: Pool::new(cfg.max_pool_size),
            permitted: cfg.genesis.authorities.clone(),
            authority_updates: watch::channel(cfg.genesis.authorities.clone()).0,
            sole_authority: false,
            clock_adjust_ms: 0,
            clock_samples: HashMap::new(),
            governance,
            cfg,
            genesis_hash,
            store,
            tree,
            bodies,
            included: IdMap::default(),
            recent_final: RecentFinal::new(committed.1.height, RECENT_FINAL_BLOCKS),
            checked: IdMap::default(),
            gossip_out: Vec::new(),
            gossip_out_bytes: 0,
            gossip_out_since: None,
            slots: SlotRegistry::default(),
            orphans: HashMap::new(),
            orphan_count: 0,
            held: BTreeMap::new(),
            rebuilt_ids: None,
            in_flight: IdMap::default(),
            evidence: VecDeque::new(),
            last_sealed_slot: 0,
            writer,
            committing: VecDeque::new(),
            committing_bytes: 0,
            unwritten: Vec::new(),
            committed,
            defer_finality: false,
            fatal: None,
            metrics,
            p2p,
            snapshot: snap_tx,
            peers: HashMap::new(),
            sync_wakeup,
            checks,
        };
        for hash in chain.tree.best_chain() {
            if let Some(ids) = chain.bodies.tx_ids(&hash) {
                for id in ids.iter() {
                    chain.included.insert(*id, hash);
                }
            }
        }
        chain.last_sealed_slot = chain.tree.best_head().1.slot;
        chain.publish_governance();
        chain
            .metrics
            .triples_stored
            .set(chain.store.triple_count() as i64);
        chain.publish_snapshot();
        Ok((
            chain,
            ChainHandle {
                tx: cmd_tx,
                snapshot: snap_rx,
            },
            cmd_rx,
        ))
    }

    /// Slot time: this node's clock plus the network adjustment ([`Chain::observe_clock`]).
    fn now_ms(&self) -> u64 {
        self.cfg
            .clock
            .now_ms()
            .saturating_add_signed(self.clock_adjust_ms)
    }

    /// Network-adjusted time. Each authority seals at the start of its slot by its own clock, so
    /// a gossiped block's timestamp, compared with when it arrived, tells how far the proposer's
    /// clock is from ours (plus a propagation delay of milliseconds). This node moves its slot
    /// clock by the median of those offsets (its own, zero, included) whenever the median leaves
    /// a dead band of a quarter slot, within `max_clock_adjust_ms`. Honest clocks thereby agree
    /// on the median clock: with one authority 2 s fast and one 2 s slow all three converge on
    /// the middle one, where otherwise all three sealed at the same instant on the same parent.
    /// A minority of authorities cannot move the median beyond the honest clocks.
    fn observe_clock(&mut self, block: &Block, received: Instant) {
        let max = self.cfg.max_clock_adjust_ms as i64;
        let h = &block.header;
        if max == 0 || h.proposer == self.cfg.keypair.public() {
            return;
        }
        let members = self.governance.final_history().authorities_at(h.height);
        if leader(members, h.slot) != Some(&h.proposer) || !block.verify_seal(&self.genesis_hash) {
            return;
        }
        let interval = self.interval_ms() as i64;
        let raw = self.cfg.clock.now_ms() as i64 - received.elapsed().as_millis() as i64;
        let offset = h.timestamp_ms as i64 - (raw + self.clock_adjust_ms);
        self.clock_samples.insert(h.proposer, (offset, raw));
        let horizon = raw - 30 * interval;
        self.clock_samples.retain(|_, (_, at)| *at >= horizon);
        let mut offsets: Vec<i64> = self.clock_samples.values().map(|(o, _)| *o).collect();
        offsets.push(0);
        offsets.sort_unstable();
        let n = offsets.len();
        let median = if n % 2 == 1 {
            offsets[n / 2]
        } else {
            (offsets[n / 2 - 1] + offsets[n / 2]) / 2
        };
        if median.abs() <= (interval / 4).max(100) {
            return;
        }
        let adjust = (self.clock_adjust_ms + median).clamp(-max, max);
        if adjust == self.clock_adjust_ms {
            return;
        }
        warn!(
            adjust_ms = adjust,
            "this node's clock differs from the authorities' median clock; slot time follows the \
             network (check NTP on this machine)"
        );
        self.clock_adjust_ms = adjust;
        self.metrics
            .clock_adjustment_seconds
            .set(adjust as f64 / 1000.0);
        // Offsets were measured against the old slot clock.
        self.clock_samples.clear();
    }

    fn interval_ms(&self) -> u64 {
        self.cfg.genesis.block_interval_ms
    }

    /// Runs until `shutdown` fires, then flushes storage.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::Receiver<P2pEvent>,
        shutdown: CancellationToken,
    ) {
        let mut housekeeping = tokio::time::interval(Duration::from_millis(100));
        let mut updates = self.authority_updates.subscribe();
        updates.mark_changed();
        let p2p = self.p2p.clone();
        let forwarder = tokio::spawn(async move {
            while updates.changed().await.is_ok() {
                let keys = updates.borrow_and_update().clone();
                p2p.set_authorities(keys).await;
            }
        });
        let mut slot_seen = slot_at(self.now_ms(), self.interval_ms());
        let mut tx_checked = self.tx_checked.take().expect("the chain task runs once");
        let commits_reported = self.writer.reports_ready();
        loop {
            // Level-triggered: every slot that began since the last turn is handled, even if
            // another event won the race against the sleep below (under a steady stream of
            // submissions that happened about every other slot, and each lost race skipped
            // a slot of ours).
            let slot = slot_at(self.now_ms(), self.interval_ms());
            if slot > slot_seen {
                slot_seen = slot;
                if let Some((block, tx_ids, queued)) = self.on_slot() {
                    // Imported once the network thread has taken the block up (signed it and
                    // queued it for every peer), so that its import and the commit that
                    // starts don't compete with the sending for a core. The wait is bounded:
                    // a network thread that is slow to answer does not hold the chain back.
                    let _ = tokio::time::timeout(PUBLISH_WAIT, queued).await;
                    if !self.peers.is_empty() {
                        tokio::time::sleep(OWN_IMPORT_DELAY).await;
                    }
                    self.import_own(block, tx_ids);
                }
            }
            let next_slot = slot + 1;
            let wait = slot_start_ms(next_slot, self.interval_ms()).saturating_sub(self.now_ms());
            let gossip_due = self.gossip_out_since.map(|t| t + TX_GOSSIP_DELAY);
            if gossip_due.is_some_and(|due| due <= Instant::now()) {
                self.flush_tx_gossip();
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(cmd) = commands.recv() => self.on_command(cmd),
                Some(ev) = events.recv() => self.on_p2p(ev),
                Some(batch) = tx_checked.recv() => self.on_checked_txs(batch),
                _ = commits_reported.notified() => self.drain_committed(),
                _ = tokio::time::sleep(Duration::from_millis(wait.max(1))) => {}
                _ = tokio::time::sleep_until(gossip_due.unwrap_or_else(Instant::now).into()),
                    if gossip_due.is_some() => self.flush_tx_gossip(),
                _ = housekeeping.tick() => self.release_held(),
            }
            self.publish_snapshot();
            self.queue_pending_writes();
            if let Some(reason) = &self.fatal {
                tracing::error!("{reason}; stopping the chain task");
                break;
            }
        }
        forwarder.abort();
        self.flush_tx_gossip();
        self.queue_pending_writes();
        // Queued commits complete: every block this node called final is on disk.
        tokio::task::block_in_place(|| self.writer.sync());
        self.drain_committed();
        if let Err(e) = self.store.flush() {
            warn!(error = %e, "final flush failed");
        }
        info!("chain task stopped");
    }

    fn publish_snapshot(&mut self) {
        let (best_hash, best) = self.tree.best_head();
        let (final_hash, fin) = &self.committed;
        let snap = Snapshot {
            best_height: best.height,
            best_hash,
            final_height: fin.height,
            final_hash: *final_hash,
            pool_size: self.pool.len(),
            peers: self.peers.len(),
            peer_best_height: self.peers.values().copied().max().unwrap_or(0),
            sole_authority: self.sole_authority,
            updated_ms: self.cfg.clock.now_ms(),
            refusing: self.refusal(),
            uncommitted_since_ms: self.committing.front().map(|c| c.since_ms),
        };
        self.metrics.chain_height.set(snap.best_height as i64);
        self.metrics.final_height.set(snap.final_height as i64);
        self.metrics.pool_size.set(snap.pool_size as i64);
        self.metrics.peers_connected.set(snap.peers as i64);
        self.snapshot.send_replace(snap);
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Submit {
                id,
                tx,
                parsed,
                stored_seen,
                reply,
            } => {
                let res = if self.refusing_clients() {
                    Err(PoolError::Full)
                } else {
                    self.admit(id, tx.clone(), parsed, stored_seen)
                };
                let out = match res {
                    Ok(()) | Err(PoolError::Duplicate) => {
                        if res.is_ok() {
                            self.metrics.transactions_submitted.inc();
                            self.queue_tx_gossip(tx);
                        }
                        Ok(())
                    }
                    Err(PoolError::Full) => {
                        self.metrics.pool_full.inc();
                        Err(SubmitError::PoolFull(self.cfg.max_pool_size))
                    }
                };
                let _ = reply.send(out);
            }
            Command::Equivocations { reply } => {
                let _ = reply.send(self.evidence.iter().cloned().collect());
            }
            Command::PendingTx { id, reply } => {
                let out = if let Some(block_hash) = self.included.get(&id) {
                    self.bodies.get_with_ids(block_hash).and_then(|(b, ids)| {
                        let index = ids.iter().position(|i| *i == id)?;
                        let tx = b.transactions.get(index)?.clone();
                        Some(PendingTx::Included {
                            tx,
                            block_hash: *block_hash,
                            height: b.header.height,
                        })
                    })
                } else {
                    self.pool.get(&id).cloned().map(PendingTx::InPool)
                };
                let _ = reply.send(out);
            }
            Command::PendingBlocks { reply } => {
                let mut out: Vec<Block> = self
                    .committing
                    .iter()
                    .map(|c| c.hash)
                    .chain(self.tree.best_chain())
                    .filter_map(|h| self.bodies.get(&h).cloned())
                    .collect();
                out.reverse();
                let _ = reply.send(out);
            }
            Command::ImportSynced {
                blocks,
                from,
                reply,
            } => {
                let mut outcome = SyncOutcome::default();
                // Finality runs once per batch, so a catching-up node commits many blocks in one
                // storage step instead of flushing after each.
                self.defer_finality = true;
                for block in blocks {
                    match self.import(block, Origin::Sync, Some(from)) {
                        Ok(()) => outcome.imported += 1,
                        Err(ImportError::Known) => outcome.known += 1,
                        Err(e) => {
                            self.count_rejection(&e, Some(from));
                            debug!(peer = %from, error = %e, "sync import stopped");
                            outcome.failed = true;
                            let fault =
                                matches!(&e, ImportError::Rdf { .. } | ImportError::Governance(_))
                                    || matches!(&e, ImportError::Invalid(b)
                                    if !matches!(b, BlockError::Early { .. }));
                            if fault {
                                outcome.invalid = Some(e.reason());
                            }
                            break;
                        }
                    }
                }
                self.defer_finality = false;
                if let Err(e) = self.finalize() {
                    warn!(error = %e, "committing synced blocks failed");
                    outcome.failed = true;
                }
                self.metrics
                    .sync_blocks_fetched
                    .inc_by(outcome.imported as u64);
                let _ = reply.send(outcome);
            }
            Command::PeerStatus { peer, status } => {
                if let Some(h) = self.peers.get_mut(&peer) {
                    *h = status.best_height;
                }
            }
            Command::DiscreditPeer { peer } => {
                if let Some(h) = self.peers.get_mut(&peer) {
                    *h = 0;
                }
            }
            Command::Authorities { reply } => {
                let _ = reply.send(self.authorities_view());
            }
            Command::Governance { request, reply } => {
                let _ = reply.send(self.submit_governance(request));
            }
        }
    }

    /// Transactions not final yet: pooled, or in non-final blocks (held in memory until
    /// finality too, so they count against the pool bound: a node whose finality stalls
    /// answers 503 instead of growing without limit).
    fn unfinalized(&self) -> usize {
        self.pool.len() + self.included.len()
    }

    /// The pool bound (`consensus.max_pool_size`): nothing more is admitted, not even from
    /// peers.
    fn pool_full(&self) -> bool {
        self.unfinalized() >= self.cfg.max_pool_size
    }

    /// Client submissions are refused once [`CLIENT_POOL_SHARE`] of the pool is taken.
    fn refusing_clients(&self) -> bool {
        self.pool_full()
            || self.pool.len() >= self.cfg.max_pool_size * CLIENT_POOL_SHARE.0 / CLIENT_POOL_SHARE.1
    }

    /// Why a client submission would be refused now (a full pool), published for the API.
    fn refusal(&self) -> Option<SubmitError> {
        self.refusing_clients()
            .then_some(SubmitError::PoolFull(self.cfg.max_pool_size))
    }

    /// Admits a transaction whose envelope signature verified and whose RDF parsed, and
    /// that a check thread did not find in storage at final height `stored_seen`
    /// ([`final_in_view`]).
    fn admit(
        &mut self,
        id: Hash,
        tx: Transaction,
        parsed: Arc<ParsedTx>,
        stored_seen: Option<u64>,
    ) -> Result<(), PoolError> {
        if self.included.contains_key(&id)
            || self.pool.contains(&id)
            || self.recent_final.contains(&id)
            // Only when blocks committed since that lookup are no longer remembered.
            || (!stored_seen.is_some_and(|h| self.recent_final.covers(h))
                && matches!(self.store.tx_location(&id), Ok(Some(_))))
        {
            return Err(PoolError::Duplicate);
        }
        if self.pool_full() {
            return Err(PoolError::Full);
        }
        self.pool.insert(id, tx)?;
        self.checked.insert(id, parsed);
        Ok(())
    }

    /// Queues an own admission for gossip; a full batch goes out at once, a partial one
    /// [`TX_GOSSIP_DELAY`] after its first transaction (from the run loop).
    fn queue_tx_gossip(&mut self, tx: Transaction) {
        let len = tx.encoded_len();
        if !self.gossip_out.is_empty() && self.gossip_out_bytes + len > TX_GOSSIP_BATCH_BYTES {
            self.flush_tx_gossip();
        }
        self.gossip_out_since.get_or_insert_with(Instant::now);
        self.gossip_out.push(tx);
        self.gossip_out_bytes += len;
        if self.gossip_out.len() >= TX_GOSSIP_BATCH {
            self.flush_tx_gossip();
        }
    }

    fn flush_tx_gossip(&mut self) {
        self.gossip_out_since = None;
        self.gossip_out_bytes = 0;
        if self.gossip_out.is_empty() {
            return;
        }
        let txs = std::mem::take(&mut self.gossip_out);
        self.metrics.tx_gossip_batch_size.observe(txs.len() as f64);
        self.p2p.queue_txs(&txs);
    }

    fn report(&self, id: MessageId, verdict: Verdict) {
        let p2p = self.p2p.clone();
        tokio::spawn(async move { p2p.report(id, verdict).await });
    }

    fn on_p2p(&mut self, ev: P2pEvent) {
        match ev {
            P2pEvent::PeerConnected { peer, is_authority } => {
                debug!(%peer, is_authority, "peer connected");
                self.peers.entry(peer).or_insert(0);
                let _ = self.sync_wakeup.try_send(Wakeup::Peer(peer));
            }
            P2pEvent::PeerDisconnected { peer } => {
                self.peers.remove(&peer);
            }
            P2pEvent::PeerRefused { peer } => {
                debug!(%peer, "refused connection from a peer that is not allowed");
                self.metrics.peers_refused.inc();
            }
            P2pEvent::PeerBanned {
                peer,
                reason,
                duration,
            } => {
                warn!(%peer, %reason, secs = duration.as_secs(), "peer banned for misbehaviour");
                self.metrics.peers_banned.inc();
                self.peers.remove(&peer);
            }
            P2pEvent::InvalidMessage { from, kind, reason } => {
                debug!(peer = %from, kind, reason, "invalid peer message");
                self.metrics.invalid_message(kind);
            }
            P2pEvent::BlockReceived {
                from,
                message_id,
                block,
                received,
            } => {
                self.observe_handoff(received);
                self.on_gossip_block(from, message_id, *block, received);
            }
            P2pEvent::CompactBlockReceived {
                from,
                message_id,
                block,
                received,
            } => {
                self.observe_handoff(received);
                self.on_compact_block(from, message_id, *block, received);
            }
            P2pEvent::TxsReceived {
                from,
                message_id,
                txs,
            } => {
                self.on_gossip_txs(from, message_id, txs);
            }
            P2pEvent::StatusRequest { reply, .. } => {
                let _ = reply.send(self.status());
            }
            P2pEvent::BlocksRequest {
                from_height,
                max,
                reply,
                ..
            } => {
                let _ = reply.send(self.serve_blocks(from_height, max.min(SYNC_BATCH)));
            }
        }
    }

    fn observe_handoff(&self, received: Instant) {
        self.metrics
            .block_handoff_seconds
            .observe(received.elapsed().as_secs_f64());
    }

    /// Imports a gossiped block (full, or rebuilt from a compact one) and reports the verdict.
    fn on_gossip_block(
        &mut self,
        from: PeerId,
        message_id: MessageId,
        block: Block,
        received: Instant,
    ) {
        self.observe_clock(&block, received);
        let arrived = self
            .now_ms()
            .saturating_sub(received.elapsed().as_millis() as u64);
        self.metrics
            .block_arrival_seconds
            .observe(arrived.saturating_sub(block.header.timestamp_ms) as f64 / 1000.0);
        let height = block.header.height;
        let verdict = match self.import(block, Origin::Gossip, Some(from)) {
            Ok(()) => {
                // Only a block that passed validation says how far the peer is.
                if let Some(h) = self.peers.get_mut(&from) {
                    *h = (*h).max(height);
                }
                Verdict::Accept
            }
            Err(e) => {
                // A slot ahead of our clock: either side's clock may be wrong, so
                // it is counted and reported (`future_slot`), not penalised.
                let future = matches!(e, ImportError::Invalid(BlockError::FutureSlot { .. }));
                let v = if e.is_routine() || future {
                    Verdict::Ignore
                } else {
                    Verdict::Reject
                };
                self.count_rejection(&e, Some(from));
                v
            }
        };
        self.report(message_id, verdict);
    }

    /// A compact block: rebuilt from the transactions it carries and those this node holds —
    /// its pool, and the gossiped transactions it is checking or has yet to check (which the
    /// block's validation then checks). The common case: they were gossiped before the block.
    /// A block that lacks any is fetched in full from its proposer ([`Self::fetch`]). Ids
    /// that do not match the header's Merkle root, a seal that does not verify and a carried
    /// transaction that is not the one its id names are refused before anything is looked up.
    fn on_compact_block(
        &mut self,
        from: PeerId,
        message_id: MessageId,
        mut compact: CompactBlock,
        received: Instant,
    ) {
        let hash = compact.hash();
        if self.is_known(&hash, compact.header.height) {
            self.report(message_id, Verdict::Ignore);
            return;
        }
        let checked = match compact.check(&self.genesis_hash) {
            Ok(checked) => checked,
            Err(e) => {
                self.count_rejection(&ImportError::Invalid(e), Some(from));
                self.report(message_id, Verdict::Reject);
                return;
            }
        };
        let mut txs: Vec<Option<Transaction>> = vec![None; compact.tx_ids.len()];
        for (i, tx) in std::mem::take(&mut compact.prefilled) {
            // Decoding guarantees the positions are in range.
            let i = i as usize;
            if tx.id() != compact.tx_ids[i] {
                self.count_rejection(
                    &ImportError::Invalid(BlockError::TxRootMismatch),
                    Some(from),
                );
                self.report(message_id, Verdict::Reject);
                return;
            }
            txs[i] = Some(tx);
        }
        for (slot, id) in txs.iter_mut().zip(&compact.tx_ids) {
            if slot.is_none() {
                *slot = self
                    .pool
                    .get(id)
                    .or_else(|| self.in_flight.get(id))
                    .cloned();
            }
        }
        if txs.iter().any(Option::is_none) && !self.tx_check_backlog.is_empty() {
            let backlog: HashMap<&Hash, &Transaction> = self
                .tx_check_backlog
                .iter()
                .flat_map(|(_, _, txs)| txs.iter().map(|(id, tx)| (id, tx)))
                .collect();
            for (slot, id) in txs.iter_mut().zip(&compact.tx_ids) {
                if slot.is_none() {
                    *slot = backlog.get(id).map(|tx| (*tx).clone());
                }
            }
        }
        let missing = txs.iter().filter(|t| t.is_none()).count();
        if missing > 0 {
            debug!(peer = %from, height = compact.header.height, missing,
                "compact block lacks transactions; fetching it");
            self.metrics.compact_block("fetched");
            self.fetch(&compact.header, from);
            self.report(message_id, Verdict::Ignore);
            return;
        }
        self.metrics.compact_block("complete");
        self.rebuilt_ids = Some(checked);
        let block = compact.into_block(txs.into_iter().flatten().collect());
        self.on_gossip_block(from, message_id, block, received);
    }

    /// Asks the sync task for the full block of `header`: from its proposer, which sealed it
    /// on its best chain, and a chain comparison with the peer that relayed it.
    fn fetch(&self, header: &BlockHeader, from: PeerId) {
        if self.tree.contains(&header.hash()) {
            return;
        }
        let _ = self.sync_wakeup.try_send(Wakeup::Block {
            peer: provchain_p2p::peer_id_of(&header.proposer),
            height: header.height,
            hash: header.hash(),
        });
        let _ = self.sync_wakeup.try_send(Wakeup::Peer(from));
    }

    fn status(&self) -> ChainStatus {
        let (best_hash, best) = self.tree.best_head();
        let (final_hash, fin) = self.tree.final_head();
        ChainStatus {
            genesis_hash: self.genesis_hash,
            best_height: best.height,
            best_hash,
            final_height: fin.height,
            final_hash,
        }
    }

    /// Blocks of our best chain from `from`: committed ones from storage, then those still
    /// being committed, then non-final ones.
    fn serve_blocks(&self, from: u64, max: u32) -> Vec<Block> {
        let max = max as usize;
        let mut out = Vec::new();
        if from <= self.committed.1.height {
            match self.store.blocks_range(from, max) {
                Ok(blocks) => out = blocks,
                Err(e) => warn!(error = %e, "cannot serve blocks"),
            }
        }
        // Storage may hold a commit this task has not heard of yet: go on after what it gave.
        let next = out.last().map_or(from, |b| b.header.height + 1);
        let later = self
            .committing
            .iter()
            .map(|c| c.hash)
            .chain(self.tree.best_chain());
        for hash in later {
            if out.len() >= max {
                break;
            }
            if let Some(b) = self.bodies.get(&hash).filter(|b| b.header.height >= next) {
                out.push(b.clone());
            }
        }
        out
    }

    /// Starts the checks of a gossiped batch (envelope signatures as one ed25519 batch, RDF
    /// well-formedness) on a blocking thread, so blocks and submissions are not kept waiting
    /// behind them; [`Self::on_checked_txs`] admits the result. Transactions already known
    /// are not checked again. While [`MAX_TX_CHECKS`] batches are being checked, the batch
    /// waits in a bounded backlog: its transactions are what the next compact block is
    /// rebuilt from, so dropping it would cost a full-block fetch.
    fn on_gossip_txs(&mut self, from: PeerId, message_id: MessageId, txs: Vec<Transaction>) {
        let fresh = self.unknown_txs(txs.into_iter().map(|tx| (tx.id(), tx)));
        if fresh.is_empty() {
            self.report(message_id, Verdict::Ignore);
            return;
        }
        if self.pool_full() {
            // They would be refused after the check: not checked at all. Blocks bring them
            // (a busy leader sends whole blocks, see `on_slot`).
            self.metrics.pool_full.inc();
            self.report(message_id, Verdict::Ignore);
            return;
        }
        if self.tx_checks_running < MAX_TX_CHECKS {
            self.start_tx_check(from, message_id, fresh);
            return;
        }
        let bytes: usize = fresh.iter().map(|(_, tx)| tx.encoded_len()).sum();
        if self.tx_check_backlog.len() >= MAX_TX_CHECK_BACKLOG
            || self.tx_check_backlog_bytes + bytes > MAX_TX_CHECK_BACKLOG_BYTES
        {
            self.metrics.reject_txs("node_busy", fresh.len() as u64);
            self.report(message_id, Verdict::Ignore);
            return;
        }
        self.tx_check_backlog_bytes += bytes;
        self.tx_check_backlog.push_back((from, message_id, fresh));
    }

    /// The transactions neither pooled nor in a non-final block of the best chain.
    fn unknown_txs(
        &self,
        txs: impl Iterator<Item = (Hash, Transaction)>,
    ) -> Vec<(Hash, Transaction)> {
        txs.filter(|(id, _)| !self.pool.contains(id) && !self.included.contains_key(id))
            .collect()
    }

    fn start_tx_check(
        &mut self,
        from: PeerId,
        message_id: MessageId,
        fresh: Vec<(Hash, Transaction)>,
    ) {
        self.tx_checks_running += 1;
        let ids: Vec<Hash> = fresh.iter().map(|(id, _)| *id).collect();
        self.in_flight
            .extend(fresh.iter().map(|(id, tx)| (*id, tx.clone())));
        let done = self.tx_checks.clone();
        let genesis_hash = self.genesis_hash;
        let max_tx_bytes = self.cfg.limits.max_tx_bytes;
        let store = self.store.clone();
        self.checks.spawn(Lane::Peers, move || {
            let checked = check_gossiped(fresh, &store, &genesis_hash, max_tx_bytes);
            let _ = done.blocking_send(CheckedBatch {
                from,
                message_id,
                ids,
                checked,
            });
        });
    }

    /// Starts the oldest backlogged batch, if any, in a freed check slot.
    fn next_tx_check(&mut self) {
        while let Some((from, message_id, txs)) = self.tx_check_backlog.pop_front() {
            self.tx_check_backlog_bytes = self
                .tx_check_backlog_bytes
                .saturating_sub(txs.iter().map(|(_, tx)| tx.encoded_len()).sum());
            // Some may have arrived meanwhile (another batch, a block).
            let fresh = self.unknown_txs(txs.into_iter());
            if fresh.is_empty() {
                self.report(message_id, Verdict::Ignore);
                continue;
            }
            self.start_tx_check(from, message_id, fresh);
            return;
        }
    }

    /// Admits the valid transactions of a checked batch, even from a batch that also held
    /// invalid ones; that message is rejected (its author is penalised and it is not
    /// forwarded). A batch that brought nothing new is ignored.
    fn on_checked_txs(&mut self, batch: CheckedBatch) {
        self.tx_checks_running = self.tx_checks_running.saturating_sub(1);
        for id in &batch.ids {
            self.in_flight.remove(id);
        }
        self.next_tx_check();
        let checked = batch.checked;
        let stored_seen = checked.stored_seen;
        self.metrics.rdf_documents_parsed.inc_by(checked.parsed);
        let mut invalid = 0;
        for (reason, n) in &checked.rejected {
            self.metrics.reject_txs(reason, *n);
            invalid += n;
        }
        let mut admitted = 0usize;
        for (id, tx, parsed) in checked.valid {
            match self.admit(id, tx, parsed, stored_seen) {
                Ok(()) => admitted += 1,
                Err(PoolError::Duplicate) => {}
                Err(PoolError::Full) => {
                    self.metrics.pool_full.inc();
                }
            }
        }
        let verdict = if invalid > 0 {
            debug!(peer = %batch.from, invalid, "rejected gossiped transactions");
            Verdict::Reject
        } else if admitted > 0 {
            Verdict::Accept
        } else {
            Verdict::Ignore
        };
        self.report(batch.message_id, verdict);
    }

    /// Counts a block this node refused (by reason) and logs it unless routine
    /// ([`ImportError::is_routine`]), whichever path it came by (gossip, a held block
    /// released, an orphan whose parent arrived, sync).
    fn count_rejection(&self, e: &ImportError, from: Option<PeerId>) {
        match e {
            ImportError::Known => {}
            ImportError::Equivocation(_) => {}
            e => self.metrics.reject_block(e.reason()),
        }
        if !e.is_routine() {
            match from {
                Some(peer) => warn!(%peer, error = %e, "rejected block"),
                None => warn!(error = %e, "rejected block"),
            }
        }
    }

    /// Seals and publishes a block if this node leads the slot that began; the caller
    /// imports it ([`Self::import_own`]) once the network thread has taken it up.
    fn on_slot(&mut self) -> Option<(Block, Arc<[Hash]>, provchain_p2p::Queued)> {
        let now = self.now_ms();
        let slot = slot_at(now, self.interval_ms());
        if !self.cfg.is_authority || slot <= self.last_sealed_slot {
            return None;
        }
        let (best_hash, best) = self.tree.best_head();
        let best = best.clone();
        let branch = match self
            .governance
            .branch(&self.tree, |h| self.bodies.get(h), &best_hash)
        {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "cannot compute the authority set of the best chain");
                return None;
            }
        };
        let next = best.height + 1;
        let authorities = branch.authorities_at(next);
        if leader(authorities, slot) != Some(&self.cfg.keypair.public()) || slot <= best.slot {
            return None;
        }
        let own = self.governance.candidates();
        let items = if own.is_empty() {
            Vec::new()
        } else {
            branch.select_items(next, &own).unwrap_or_default()
        };
        drop(branch);
        if !self.cfg.empty_blocks && self.pool.is_empty() && items.is_empty() {
            return None;
        }
        self.last_sealed_slot = slot;
        let limits = self.cfg.limits;
        // Headers, counts and the seal fit in 1 KiB; governance items take their own room.
        let governance_bytes = if items.is_empty() {
            0
        } else {
            provchain_consensus::block::governance_encoded_len(&items)
        };
        let txs = self.pool.select(
            limits.max_block_txs,
            limits
                .max_block_bytes
                .saturating_sub(1024 + governance_bytes),
        );
        let draft = Block::draft(&best, slot, txs, items);
        let tx_ids: Arc<[Hash]> = draft.tx_ids().into();
        // The timestamp is the moment of the seal, read once the body is assembled.
        let start = slot_start_ms(slot, self.interval_ms());
        let timestamp = self.now_ms().clamp(start, start + self.interval_ms() - 1);
        let block = draft.seal(timestamp, &self.cfg.keypair, &self.genesis_hash);
        // Queued straight to the network thread: a spawned publish would wait for this task to
        // finish importing the block before it ran.
        // Under heavy load (clients refused, gossip waiting to be checked) peers are likely to
        // have refused or dropped some of what this node pooled, and would have to fetch the
        // block anyway: they get the whole block.
        let busy = self.refusing_clients() || !self.tx_check_backlog.is_empty();
        let queued = if block.transactions.is_empty() || busy {
            self.p2p.queue_block(&block)
        } else {
            // What was admitted here just now may not have reached the peers, and what is
            // still waiting to be gossiped has not: it travels in full.
            let recent = Instant::now().checked_sub(PREFILL_WINDOW);
            let unsent: IdSet = self.gossip_out.iter().map(Transaction::id).collect();
            let prefill: Vec<usize> = tx_ids
                .iter()
                .enumerate()
                .filter(|(_, id)| {
                    unsent.contains(*id)
                        || match (self.pool.admitted_at(id), recent) {
                            (Some(at), Some(recent)) => at > recent,
                            _ => true,
                        }
                })
                .map(|(i, _)| i)
                .collect();
            self.p2p
                .queue_compact_block(&CompactBlock::of(&block, tx_ids.to_vec(), &prefill))
        };
        // Own admissions not yet gossiped follow the block, which carries those it holds: on
        // every connection the block goes first, and peers take it up before the batch.
        self.flush_tx_gossip();
        Some((block, tx_ids, queued))
    }

    fn import_own(&mut self, block: Block, tx_ids: Arc<[Hash]>) {
        let (height, slot, ntx) = (
            block.header.height,
            block.header.slot,
            block.transactions.len(),
        );
        match self.import_with_ids(block, Origin::Local, None, Some(tx_ids)) {
            Ok(()) => {
                self.metrics.blocks_produced.inc();
                debug!(height, slot, transactions = ntx, "sealed block");
            }
            Err(e) => warn!(error = %e, "own block failed to import"),
        }
    }

    fn release_held(&mut self) {
        let now = self.now_ms();
        let ready: Vec<u64> = self.held.range(..=now).map(|(k, _)| *k).collect();
        for k in ready {
            for (block, from) in self.held.remove(&k).unwrap_or_default() {
                if let Err(e) = self.import(block, Origin::Gossip, from) {
                    self.count_rejection(&e, from);
                }
            }
        }
    }

    /// Validates and imports one block, then any orphans waiting on it.
    fn import(
        &mut self,
        block: Block,
        origin: Origin,
        from: Option<PeerId>,
    ) -> Result<(), ImportError> {
        self.import_with_ids(block, origin, from, None)
    }

    /// [`Self::import`] of a block whose transaction ids are known (`tx_ids`, in block order):
    /// an own block, which is not validated, keeps those of its draft.
    fn import_with_ids(
        &mut self,
        block: Block,
        origin: Origin,
        from: Option<PeerId>,
        mut tx_ids: Option<Arc<[Hash]>>,
    ) -> Result<(), ImportError> {
        let hash = block.hash();
        let mut queue = vec![(block, origin, from)];
        let mut first = Some(hash);
        let mut result = Ok(());
        while let Some((block, origin, from)) = queue.pop() {
            let h = block.hash();
            let r = self.import_one(block, origin, from, tx_ids.take());
            if let Some(children) = r.is_ok().then(|| self.orphans.remove(&h)).flatten() {
                self.orphan_count -= children.len();
                queue.extend(children.into_iter().map(|(b, f)| (b, Origin::Sync, f)));
            }
            if first.take().is_some() {
                result = r;
            } else if let Err(e) = r {
                self.count_rejection(&e, from);
            }
        }
        result
    }

    fn import_one(
        &mut self,
        block: Block,
        origin: Origin,
        from: Option<PeerId>,
        known_ids: Option<Arc<[Hash]>>,
    ) -> Result<(), ImportError> {
        let started = Instant::now();
        let hash = block.hash();
        if self.is_known(&hash, block.header.height) {
            return Err(ImportError::Known);
        }
        let parent_hash = block.header.parent_hash;
        let Some(parent) = self.tree.header(&parent_hash).cloned() else {
            if self.is_known(&parent_hash, block.header.height.saturating_sub(1)) {
                // Known but not in the tree: a final block below the final head.
                return Err(ImportError::Stale(parent_hash));
            }
            self.keep_orphan(block, from);
            return Err(ImportError::Orphan(parent_hash));
        };
        let tx_ids: Arc<[Hash]> = if origin != Origin::Local {
            let branch = self
                .governance
                .branch(&self.tree, |h| self.bodies.get(h), &parent_hash)
                .map_err(|e| ImportError::Governance(e.to_string()))?;
            let authorities = branch.authorities_at(block.header.height).to_vec();
            // Reported after the stateless rules (seal, gov_root, item signatures), so a forged
            // item is counted as such.
            let governance = (!block.governance.is_empty())
                .then(|| branch.check_block(block.header.height, &block.governance))
                .and_then(Result::err);
            drop(branch);
            let ctx = ValidationContext {
                genesis_hash: self.genesis_hash,
                authorities: &authorities,
                interval_ms: self.interval_ms(),
                now_ms: self.now_ms(),
                max_drift_ms: self.cfg.max_drift_ms,
                limits: self.cfg.limits,
            };
            // Transactions this node admitted to its pool were verified then; their signatures
            // are not checked a second time.
            let verified = |id: &Hash| self.checked.contains_key(id);
            let known = self.rebuilt_ids.take().filter(|k| k.header() == hash);
            // A block rebuilt from the pool, its ids, Merkle root and seal checked already,
            // needs little more than a lookup per transaction: validated in place. Handing the
            // worker thread to the runtime and taking it back costs more than that on a
            // loaded machine (3–7 ms measured); full blocks hash every transaction and verify
            // the signatures this node has not seen, which is blocking work.
            let heavy = known.as_ref().is_none_or(|k| {
                k.ids().iter().filter(|id| !verified(id)).count() > INLINE_UNVERIFIED_TXS
            });
            let run = || validate_block_with_ids(&block, &parent, &ctx, verified, known);
            let validated = if heavy {
                tokio::task::block_in_place(run)
            } else {
                run()
            };
            let ids = match validated {
                Ok(ids) => ids,
                Err(BlockError::Early {
                    ready_at_ms,
                    slot,
                    early_ms,
                }) => {
                    if self.held.values().map(Vec::len).sum::<usize>() < MAX_HELD {
                        self.held
                            .entry(ready_at_ms)
                            .or_default()
                            .push((block, from));
                    }
                    return Err(BlockError::Early {
                        ready_at_ms,
                        slot,
                        early_ms,
                    }
                    .into());
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(e) = governance {
                return Err(ImportError::Governance(e.to_string()));
            }
            self.check_rdf(&block, &ids)?;
            self.check_not_replayed(&block, &ids)?;
            ids.into()
        } else {
            known_ids
                .filter(|ids| ids.len() == block.transactions.len())
                .unwrap_or_else(|| block.tx_ids().into())
        };
        if let Some(ev) = self.slots.observe(&block.header) {
            self.metrics.equivocations.inc();
            warn!(slot = ev.slot, proposer = %ev.proposer, first = %ev.first, second = %ev.second,
                "equivocation: two blocks by one authority for one slot; keeping the first");
            if self.evidence.len() >= MAX_EVIDENCE {
                self.evidence.pop_front();
            }
            self.evidence.push_back(EquivocationRecord {
                slot: ev.slot,
                proposer: ev.proposer,
                first: ev.first,
                second: ev.second,
                detected_at_ms: self.now_ms(),
            });
            return Err(ImportError::Equivocation(format!(
                "authority {} sealed {} and {} for slot {}",
                ev.proposer, ev.first, ev.second, ev.slot
            )));
        }
        let old_best = self.tree.best_head().0;
        match self.tree.insert(block.header.clone()) {
            Ok(_) => {}
            Err(ForkError::Known(_)) => return Err(ImportError::Known),
            Err(ForkError::UnknownParent(p)) => return Err(ImportError::Orphan(p)),
        }
        self.unwritten.push(hash);
        if origin == Origin::Gossip {
            let delay = self.now_ms().saturating_sub(block.header.timestamp_ms);
            self.metrics
                .block_propagation_seconds
                .observe(delay as f64 / 1000.0);
        }
        if origin != Origin::Local {
            self.metrics.blocks_imported.inc();
        }
        self.bodies.insert(hash, block, tx_ids);
        let new_best = self.tree.best_head().0;
        if new_best != old_best {
            self.move_head(old_best, new_best);
        }
        self.finalize()?;
        self.metrics
            .block_import_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// RDF of every transaction must parse; ones admitted to our pool were parsed already.
    fn check_rdf(&mut self, block: &Block, ids: &[Hash]) -> Result<(), ImportError> {
        let todo: Vec<(usize, &Transaction)> = block
            .transactions
            .iter()
            .zip(ids)
            .enumerate()
            .filter(|(_, (_, id))| !self.checked.contains_key(*id))
            .map(|(index, (t, _))| (index, t))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        self.metrics.rdf_documents_parsed.inc_by(todo.len() as u64);
        // A few small documents (those a compact block carried) are parsed in place, like
        // the validation of such a block; more is blocking work.
        let bytes: usize = todo.iter().map(|(_, tx)| tx.body.data.len()).sum();
        let parse = || {
            for (index, tx) in todo {
                if let Err(e) = rdf::parse(tx.body.format, &tx.body.data, "check") {
                    return Err(ImportError::Rdf {
                        index,
                        message: e.to_string(),
                    });
                }
            }
            Ok(())
        };
        if bytes > INLINE_RDF_BYTES {
            tokio::task::block_in_place(parse)
        } else {
            parse()
        }
    }

    /// A transaction may appear once per chain: not in the final chain, nor in the non-final
    /// ancestors of this block.
    fn check_not_replayed(&self, block: &Block, ids: &[Hash]) -> Result<(), ImportError> {
        if ids.is_empty() {
            return Ok(());
        }
        // On the best head (the common case, and every block of a sync batch) the non-final
        // ancestors are the best chain, whose transactions `included` already indexes.
        // Recomputing their ids per imported block made a sync batch quadratic (about 30% of
        // a 10,000-block sync went to hashing them; docs/PERFORMANCE.md).
        let on_best = block.header.parent_hash == self.tree.best_head().0;
        let mut ancestors = IdSet::default();
        if !on_best {
            for h in self.tree.chain_to(&block.header.parent_hash) {
                if let Some(ids) = self.bodies.tx_ids(&h) {
                    ancestors.extend(ids.iter().copied());
                }
            }
        }
        for id in ids.iter().copied() {
            let in_ancestor = if on_best {
                self.included.contains_key(&id)
            } else {
                // Final blocks being committed are ancestors of every block in the tree.
                ancestors.contains(&id)
                    || self
                        .included
                        .get(&id)
                        .is_some_and(|b| self.is_committing(b))
            };
            if in_ancestor {
                return Err(ImportError::Replayed(id));
            }
            // A pooled transaction is not final (finality takes it out of the pool in the
            // same step), so only the others need a storage lookup.
            if !self.pool.contains(&id) && matches!(self.store.tx_location(&id), Ok(Some(_))) {
                return Err(ImportError::Replayed(id));
            }
        }
        Ok(())
    }

    fn keep_orphan(&mut self, block: Block, from: Option<PeerId>) {
        if self.orphan_count >= MAX_ORPHANS {
            self.orphans.clear();
            self.orphan_count = 0;
        }
        self.orphan_count += 1;
        self.orphans
            .entry(block.header.parent_hash)
            .or_default()
            .push((block, from));
        if let Some(peer) = from {
            let _ = self.sync_wakeup.try_send(Wakeup::Peer(peer));
        }
    }

    /// Moves the best head: transactions of retracted blocks return to the pool, those of
    /// enacted blocks leave it.
    fn move_head(&mut self, old: Hash, new: Hash) {
        let route = self.tree.route(&old, &new);
        if !route.retracted.is_empty() {
            self.metrics.reorgs.inc();
            info!(
                retracted = route.retracted.len(),
                enacted = route.enacted.len(),
                "reorganisation"
            );
        }
        for h in &route.retracted {
            if let Some((b, ids)) = self.bodies.get_with_ids(h) {
                for (tx, id) in b.transactions.iter().zip(ids.iter()) {
                    self.included.remove(id);
                    self.pool.reinsert(*id, tx.clone());
                }
            }
        }
        for h in &route.enacted {
            if let Some((b, ids)) = self.bodies.get_with_ids(h) {
                if let Some(parent) = self.tree.header(&b.header.parent_hash) {
                    let gap = b.header.slot.saturating_sub(parent.slot + 1);
                    if parent.height > 0 {
                        self.metrics.missed_slots.inc_by(gap);
                    }
                }
                for id in ids.iter() {
                    self.pool.remove(id);
                    self.included.insert(*id, *h);
                }
            }
        }
    }

    /// Applies the finality rule and commits newly final blocks.
    fn finalize(&mut self) -> Result<(), ImportError> {
        if self.defer_finality {
            return Ok(());
        }
        // The set in force at each height of the best chain, as (first height, members) steps.
        let best = self.tree.best_head().0;
        let steps: Vec<(u64, HashSet<PublicKey>)> =
            match self
                .governance
                .branch(&self.tree, |h| self.bodies.get(h), &best)
            {
                Ok(b) => b
                    .switch_points()
                    .iter()
                    .map(|p| (p.height, p.authorities.iter().copied().collect()))
                    .collect(),
                Err(e) => {
                    warn!(error = %e, "cannot compute the authority set of the best chain");
                    return Ok(());
                }
            };
        // Only members of the set in force at a block's height count towards its finality, and
        // it needs a majority of that set.
        let finalized = self.tree.finalize_by(|h, proposers| {
            let i = steps.partition_point(|(from, _)| *from <= h);
            let Some((_, set)) = steps.get(i.saturating_sub(1)) else {
                return false;
            };
            let members = proposers.iter().filter(|p| set.contains(p)).count();
            members >= finality_threshold(set.len()).max(1)
        });
        if finalized.blocks.is_empty() {
            return Ok(());
        }
        // Bodies stay until the writer reports the commit ([`Self::on_committed`]).
        let (blocks, held): (Vec<Arc<Block>>, Vec<_>) = finalized
            .blocks
            .iter()
            .filter_map(|(h, _)| {
                let (b, ids) = self.bodies.get_with_ids(h)?;
                Some((b.clone(), (*h, ids.clone())))
            })
            .unzip();
        // Governance first: a final chain that breaks its rules must not reach storage, or the
        // node could not reopen it.
        let applied = match self.governance.apply_final(&blocks) {
            Ok(applied) => applied,
            Err(e) => {
                // Every block was checked against these rules on its branch.
                self.fatal = Some(format!("final blocks break the governance rules: {e}"));
                return Err(ImportError::Governance(e.to_string()));
            }
        };
        self.on_governance_final(&blocks, &applied);
        if let Some(last) = blocks.last() {
            self.slots.prune_below(last.header.slot.saturating_sub(64));
        }
        let now = self.cfg.clock.now_ms();
        let mut parsed = HashMap::new();
        for (b, (hash, tx_ids)) in blocks.iter().zip(held) {
            for id in tx_ids.iter() {
                if let Some(p) = self.checked.get(id) {
                    parsed.insert(*id, p.clone());
                }
            }
            let bytes = b.encoded_len();
            self.committing.push_back(Committing {
                hash,
                height: b.header.height,
                bytes,
                since_ms: now,
                tx_ids,
            });
            self.committing_bytes += bytes;
        }
        if !self.writer.commit(blocks, parsed) {
            self.fatal =
                Some("the storage writer stopped; final blocks cannot be committed".into());
            return Ok(());
        }
        for h in &finalized.pruned {
            self.writer.remove(*h);
            if let Some((b, ids)) = self.bodies.remove(h) {
                for (tx, id) in b.transactions.iter().zip(ids.iter().copied()) {
                    if !self.included.contains_key(&id)
                        && !matches!(self.store.tx_location(&id), Ok(Some(_)))
                    {
                        self.pool.reinsert(id, tx.clone());
                    }
                }
            }
        }
        if self.committing.len() > MAX_UNCOMMITTED_BLOCKS
            || self.committing_bytes > MAX_UNCOMMITTED_BYTES
        {
            // Storage is behind the chain: wait for it rather than hold more in memory.
            self.metrics.commit_waits.inc();
            tokio::task::block_in_place(|| self.writer.sync());
            self.drain_committed();
        }
        Ok(())
    }

    /// Hands the blocks imported this turn to the writer for the pending store, unless they
    /// became final (or were pruned) meanwhile. If one of them is the new best head on the
    /// final head (the block expected to be final next), the writer also prepares its commit
    /// while it waits for finality ([`StoreWriter::prepare`]).
    fn queue_pending_writes(&mut self) {
        let (best, best_header) = self.tree.best_head();
        let next_final = (best_header.parent_hash == self.tree.final_head().0).then_some(best);
        for hash in std::mem::take(&mut self.unwritten) {
            if let Some((b, ids)) = self.bodies.get_with_ids(&hash)
                && !self.is_committing(&hash)
            {
                // An authority's own block is flushed at once: restarted after a crash, the
                // node still knows it sealed it, and keeps to its branch on fork-choice ties
                // (otherwise it could seal on a competing branch too, and both could finalize).
                if self.cfg.is_authority && b.header.proposer == self.cfg.keypair.public() {
                    self.writer.put_durable(b.clone());
                } else {
                    self.writer.put(b.clone());
                }
                if next_final == Some(hash) {
                    let parsed = ids
                        .iter()
                        .filter_map(|id| self.checked.get(id).map(|p| (*id, p.clone())))
                        .collect();
                    self.writer.prepare(b.clone(), parsed);
                }
            }
        }
    }

    /// Handles every commit report the writer has ready.
    fn drain_committed(&mut self) {
        while let Some(c) = self.writer.try_committed() {
            self.on_committed(c);
        }
    }

    /// Final blocks are durable: they become the API's final head, and their bodies and
    /// transactions leave memory (freed off this task, see [`Garbage`]).
    fn on_committed(&mut self, c: Committed) {
        let stats = match c.result {
            Ok(s) => s,
            Err(e) => {
                // The in-memory chain is now ahead of storage; carrying on would fail every
                // later commit. Stop, so the supervisor shuts the node down with an error and a
                // restart resumes from what storage holds.
                if self.fatal.is_none() {
                    self.fatal = Some(format!("committing final blocks failed: {e}"));
                }
                return;
            }
        };
        self.metrics
            .block_commit_seconds
            .observe(c.elapsed.as_secs_f64());
        self.metrics.transactions_final.inc_by(stats.transactions);
        if stats.prepared {
            self.metrics.commits_prepared.inc();
        }
        self.metrics
            .triples_stored
            .set(self.store.triple_count() as i64);
        let mut garbage = Garbage::default();
        for _ in 0..c.blocks {
            let Some(done) = self.committing.pop_front() else {
                break;
            };
            self.committing_bytes -= done.bytes;
            // Committing removed it from the pending store; this removal catches a pending
            // write of it that was still queued behind the commit.
            self.writer.remove(done.hash);
            let body = self.bodies.remove(&done.hash).map(|(b, _)| b);
            if body.is_some() {
                for id in done.tx_ids.iter() {
                    self.included.remove(id);
                    garbage.parsed.extend(self.checked.remove(id));
                    garbage.txs.extend(self.pool.remove(id));
                }
            }
            self.recent_final.committed(done.height, done.tx_ids);
            if let Some(b) = body {
                self.committed = (done.hash, b.header.clone());
                garbage.blocks.push(b);
            }
        }
        // Freeing a committed block's parsed documents is tens of thousands of deallocations
        // (2–40 ms measured under load), and a block arriving meanwhile waited for them: they
        // are freed on a check thread, which yields its core to the block path.
        if !garbage.is_empty() {
            self.checks.spawn(Lane::Peers, move || drop(garbage));
        }
        debug!(
            height = self.committed.1.height,
            blocks = c.blocks,
            triples = stats.triples,
            "final"
        );
    }

    /// A block at `height` this node holds: in the tree, being committed, or in storage.
    /// Storage holds only final blocks, so a block above the final head is not looked up
    /// there: a storage read on the chain task can wait behind the writer (`recent.rs`).
    fn is_known(&self, hash: &Hash, height: u64) -> bool {
        self.tree.contains(hash)
            || self.bodies.contains_key(hash)
            || (height <= self.tree.final_head().1.height
                && matches!(self.store.height_of(hash), Ok(Some(_))))
    }

    /// Whether `hash` is a final block handed to the writer and not committed yet (its body
    /// is kept, at or below the final head).
    fn is_committing(&self, hash: &Hash) -> bool {
        self.bodies
            .get(hash)
            .is_some_and(|b| b.header.height <= self.tree.final_head().1.height)
    }

    /// Logs and counts what newly final governance items changed; when the set in force at the
    /// final head changed, p2p permissioning follows it.
    fn on_governance_final(&mut self, blocks: &[Arc<Block>], applied: &[Applied]) {
        let items: usize = blocks.iter().map(|b| b.governance.len()).sum();
        self.metrics.governance_items_final.inc_by(items as u64);
        for a in applied {
            info!("governance: {}", crate::governance::describe(a));
        }
        self.publish_governance();
    }

    /// Updates the governance gauges and p2p's authority set from the final history. Peers are
    /// let in as authorities as soon as a change adding them is final (not only from its switch
    /// height), so a new member can connect and sync before its first slot, and a key leaves
    /// only once no set in force or scheduled holds it.
    fn publish_governance(&mut self) {
        let history = self.governance.final_history();
        let next = history.height() + 1;
        let current = history.authorities_at(next).to_vec();
        self.metrics.authority_set_size.set(current.len() as i64);
        self.sole_authority = current == [self.cfg.keypair.public()];
        let mut permitted = current.clone();
        for point in history.switch_points().iter().filter(|p| p.height > next) {
            for key in &point.authorities {
                if !permitted.contains(key) {
                    permitted.push(*key);
                }
            }
        }
        self.metrics
            .governance_open_proposals
            .set(history.open_proposals().len() as i64);
        self.metrics
            .governance_scheduled_changes
            .set(history.scheduled().len() as i64);
        if permitted != self.permitted {
            info!(
                authorities = current.len(),
                permitted = permitted.len(),
                "authority set changed; updating peer permissions"
            );
            self.permitted = permitted.clone();
            // One forwarding task applies the latest set, in order.
            self.authority_updates.send_replace(permitted);
        }
    }

    fn best_branch(&self) -> Result<std::borrow::Cow<'_, AuthorityHistory>, String> {
        let best = self.tree.best_head().0;
        self.governance
            .branch(&self.tree, |h| self.bodies.get(h), &best)
            .map_err(|e| e.to_string())
    }

    fn authorities_view(&self) -> AuthoritiesView {
        let (_, best) = self.tree.best_head();
        let final_height = self.tree.final_head().1.height;
        let on_best: std::collections::HashSet<Hash> = self
            .tree
            .best_chain()
            .iter()
            .filter_map(|h| self.bodies.get(h))
            .flat_map(|b| b.governance.iter().map(|i| i.id()))
            .collect();
        match self.best_branch() {
            Ok(branch) => self
                .governance
                .view(&branch, best.height, final_height, &on_best),
            Err(e) => {
                warn!(error = %e, "cannot compute the authority set of the best chain");
                self.governance.view(
                    self.governance.final_history(),
                    final_height,
                    final_height,
                    &on_best,
                )
            }
        }
    }

    fn submit_governance(
        &mut self,
        request: GovernanceRequest,
    ) -> Result<GovernanceAccepted, GovernanceSubmitError> {
        if !self.cfg.is_authority {
            let height = self.tree.best_head().1.height + 1;
            return Err(GovernanceSubmitError::NotAuthority { height });
        }
        let next = self.tree.best_head().1.height + 1;
        let branch = self
            .best_branch()
            .map_err(GovernanceSubmitError::Invalid)?
            .into_owned();
        let nonce = self.now_ms();
        let accepted = self
            .governance
            .submit(request, &self.cfg.keypair, &branch, next, nonce)?;
        info!(kind = accepted.kind, proposal = %accepted.proposal, "governance item signed; it goes into this node's next block");
        Ok(accepted)
    }
}

/// The checks of a gossiped batch (run off the chain task): envelope shape, signatures as one
/// ed25519 batch (checked one by one only when the batch fails, to find the culprits), RDF.
fn check_gossiped(
    mut txs: Vec<(Hash, Transaction)>,
    store: &Store,
    genesis_hash: &Hash,
    max_tx_bytes: usize,
) -> Checked {
    // Final ones are neither invalid nor new: dropped uncounted, like any duplicate.
    let stored_seen = final_in_view(store, &mut txs);
    let before = txs.len();
    txs.retain(|(_, tx)| tx.validate_shape(max_tx_bytes).is_ok());
    let all: Vec<&Transaction> = txs.iter().map(|(_, tx)| tx).collect();
    if verify_tx_signatures(&all, genesis_hash).is_err() {
        txs.retain(|(_, tx)| tx.validate(genesis_hash, max_tx_bytes).is_ok());
    }
    let mut rejected = Vec::new();
    if txs.len() < before {
        rejected.push(("invalid_envelope", (before - txs.len()) as u64));
    }
    let parsed = txs.len() as u64;
    let (mut bad_rdf, mut too_many) = (0, 0);
    let valid = txs
        .into_iter()
        .filter_map(|(id, tx)| match ParsedTx::parse(&id, &tx) {
            Err(_) => {
                bad_rdf += 1;
                None
            }
            // The API refuses these; a peer that gossips one bypassed it.
            Ok(p) if p.statements() > crate::api::MAX_TX_STATEMENTS => {
                too_many += 1;
                None
            }
            Ok(p) => Some((id, tx, Arc::new(p))),
        })
        .collect();
    for (reason, n) in [("invalid_rdf", bad_rdf), ("too_many_statements", too_many)] {
        if n > 0 {
            rejected.push((reason, n));
        }
    }
    Checked {
        valid,
        rejected,
        parsed,
        stored_seen,
    }
}

/// Drops the transactions `store` holds as final; returns the final height of the view they
/// were looked up in, `None` (nothing dropped) if the lookup failed. Runs on a check thread:
/// storage reads can wait behind the writer (`recent.rs`).
fn final_in_view(store: &Store, txs: &mut Vec<(Hash, Transaction)>) -> Option<u64> {
    let ids: Vec<Hash> = txs.iter().map(|(id, _)| *id).collect();
    let (seen, found) = store.final_txs(&ids).ok()?;
    let mut found = found.into_iter();
    txs.retain(|_| !found.next().unwrap_or(false));
    Some(seen)
}
