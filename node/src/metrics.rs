//! Prometheus metrics, all prefixed `provchain_` and in base units (seconds, bytes).
//!
//! One [`Metrics`] value is created at startup and shared (`Arc`) with every task; each field is
//! an atomic metric, so recording never blocks.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        2.5, 5.0, 10.0,
    ]
    .into_iter()
}

/// How a gossiped compact block became a full one (`provchain_compact_blocks_total`).
const COMPACT_BLOCK_OUTCOMES: &[&str] = &["complete", "fetched"];

/// Reasons a block is rejected: `BlockError::reason()` plus the chain task's own.
const BLOCK_REJECT_REASONS: &[&str] = &[
    "version",
    "unknown_parent",
    "height",
    "slot_order",
    "timestamp",
    "wrong_leader",
    "bad_signature",
    "early",
    "future_slot",
    "too_large",
    "too_many_txs",
    "tx_root",
    "duplicate_tx",
    "invalid_tx",
    "orphan",
    "stale",
    "invalid_rdf",
    "replayed_tx",
    "storage",
    "gov_root",
    "governance_signature",
    "invalid_governance",
];
/// Reasons a submitted or gossiped transaction is refused. `node_busy`: gossiped transactions
/// left unchecked because the node was already checking as many batches as it allows and its
/// backlog of batches waiting for a check was full (they still reach it in their blocks).
const TX_REJECT_REASONS: &[&str] = &[
    "bad_request",
    "empty",
    "too_large",
    "invalid_rdf",
    "invalid_envelope",
    "too_many_statements",
    "node_busy",
];
/// Ways a peer's sync answers lie.
pub const SYNC_MISBEHAVIOUR_REASONS: &[&str] = &["unserved_head", "invalid_block", "bad_response"];

pub struct Metrics {
    registry: Registry,
    pub chain_height: Gauge,
    pub final_height: Gauge,
    pub peers_connected: Gauge,
    pub peers_refused: Counter,
    pub peers_banned: Counter,
    pub sync_misbehaviour: Family<ReasonLabel, Counter>,
    pub blocks_produced: Counter,
    pub blocks_imported: Counter,
    pub blocks_rejected: Family<ReasonLabel, Counter>,
    pub missed_slots: Counter,
    pub equivocations: Counter,
    pub reorgs: Counter,
    pub transactions_submitted: Counter,
    pub transactions_rejected: Family<ReasonLabel, Counter>,
    pub transactions_final: Counter,
    pub pool_size: Gauge,
    pub pool_full: Counter,
    pub triples_stored: Gauge,
    pub rdf_documents_parsed: Counter,
    pub invalid_messages: Family<KindLabel, Counter>,
    pub block_import_seconds: Histogram,
    pub block_commit_seconds: Histogram,
    pub block_propagation_seconds: Histogram,
    pub block_arrival_seconds: Histogram,
    pub block_handoff_seconds: Histogram,
    pub tx_gossip_batch_size: Histogram,
    pub compact_blocks: Family<OutcomeLabel, Counter>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_request_seconds: Family<RouteLabel, Histogram>,
    pub sync_blocks_fetched: Counter,
    pub commit_waits: Counter,
    pub commits_prepared: Counter,
    pub authority_set_size: Gauge,
    pub governance_open_proposals: Gauge,
    pub governance_scheduled_changes: Gauge,
    pub governance_items_final: Counter,
    pub clock_adjustment_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("provchain");
        let m = Self {
            chain_height: Gauge::default(),
            final_height: Gauge::default(),
            peers_connected: Gauge::default(),
            peers_refused: Counter::default(),
            peers_banned: Counter::default(),
            sync_misbehaviour: Family::default(),
            blocks_produced: Counter::default(),
            blocks_imported: Counter::default(),
            blocks_rejected: Family::default(),
            missed_slots: Counter::default(),
            equivocations: Counter::default(),
            reorgs: Counter::default(),
            transactions_submitted: Counter::default(),
            transactions_rejected: Family::default(),
            transactions_final: Counter::default(),
            pool_size: Gauge::default(),
            pool_full: Counter::default(),
            triples_stored: Gauge::default(),
            rdf_documents_parsed: Counter::default(),
            invalid_messages: Family::default(),
            block_import_seconds: Histogram::new(seconds_buckets()),
            block_commit_seconds: Histogram::new(seconds_buckets()),
            block_propagation_seconds: Histogram::new(seconds_buckets()),
            block_arrival_seconds: Histogram::new(seconds_buckets()),
            block_handoff_seconds: Histogram::new(seconds_buckets()),
            tx_gossip_batch_size: Histogram::new([
                1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 512.0,
            ]),
            compact_blocks: Family::default(),
            http_requests: Family::default(),
            http_request_seconds: Family::new_with_constructor(
                || Histogram::new(seconds_buckets()),
            ),
            sync_blocks_fetched: Counter::default(),
            commit_waits: Counter::default(),
            commits_prepared: Counter::default(),
            authority_set_size: Gauge::default(),
            governance_open_proposals: Gauge::default(),
            governance_scheduled_changes: Gauge::default(),
            governance_items_final: Counter::default(),
            clock_adjustment_seconds: Gauge::default(),
            registry: Registry::default(),
        };
        r.register(
            "chain_height",
            "Height of the best chain head",
            m.chain_height.clone(),
        );
        r.register(
            "final_height",
            "Height of the last final block",
            m.final_height.clone(),
        );
        r.register(
            "peers_connected",
            "Connected peers",
            m.peers_connected.clone(),
        );
        r.register(
            "peers_refused",
            "Connections refused because the peer is not allowed",
            m.peers_refused.clone(),
        );
        r.register(
            "peers_banned",
            "Peers disconnected and banned for repeated misbehaviour",
            m.peers_banned.clone(),
        );
        r.register(
            "sync_misbehaviour",
            "Sync answers that lied (a head the peer did not serve, invalid blocks), by reason",
            m.sync_misbehaviour.clone(),
        );
        r.register(
            "blocks_produced",
            "Blocks sealed by this node",
            m.blocks_produced.clone(),
        );
        r.register(
            "blocks_imported",
            "Valid blocks received from peers and imported",
            m.blocks_imported.clone(),
        );
        r.register(
            "blocks_rejected",
            "Blocks rejected, by reason",
            m.blocks_rejected.clone(),
        );
        r.register(
            "missed_slots",
            "Slots on the best chain in which no block was sealed",
            m.missed_slots.clone(),
        );
        r.register(
            "equivocations",
            "Two blocks by one authority for one slot",
            m.equivocations.clone(),
        );
        r.register(
            "reorgs",
            "Best-head changes that retracted non-final blocks",
            m.reorgs.clone(),
        );
        r.register(
            "transactions_submitted",
            "Transactions accepted into the pool",
            m.transactions_submitted.clone(),
        );
        r.register(
            "transactions_rejected",
            "Submitted or gossiped transactions refused, by reason",
            m.transactions_rejected.clone(),
        );
        r.register(
            "transactions_final",
            "Transactions in final blocks committed by this node",
            m.transactions_final.clone(),
        );
        r.register(
            "pool_size",
            "Transactions waiting in the pool",
            m.pool_size.clone(),
        );
        r.register(
            "pool_full",
            "Submissions refused because the pool was full",
            m.pool_full.clone(),
        );
        r.register(
            "triples_stored",
            "Quads in the committed RDF dataset",
            m.triples_stored.clone(),
        );
        r.register(
            "rdf_documents_parsed",
            "RDF documents parsed by this process",
            m.rdf_documents_parsed.clone(),
        );
        r.register(
            "invalid_messages",
            "Undecodable or invalid peer messages, by kind",
            m.invalid_messages.clone(),
        );
        r.register_with_unit(
            "block_import",
            "Time to validate and import a block",
            Unit::Seconds,
            m.block_import_seconds.clone(),
        );
        r.register_with_unit(
            "block_commit",
            "Time to commit final blocks to storage (on the storage writer thread)",
            Unit::Seconds,
            m.block_commit_seconds.clone(),
        );
        r.register(
            "commit_waits",
            "Times the chain task waited for the storage writer because too many final blocks \
             were not committed yet (storage slower than the chain)",
            m.commit_waits.clone(),
        );
        r.register(
            "commits_prepared",
            "Commits of final blocks whose writes the storage writer prepared while the block \
             waited for finality (the others plan and write everything at finality)",
            m.commits_prepared.clone(),
        );
        r.register_with_unit(
            "block_propagation",
            "Delay from a block's timestamp to its import here",
            Unit::Seconds,
            m.block_propagation_seconds.clone(),
        );
        r.register_with_unit(
            "block_arrival",
            "Delay from a gossiped block's timestamp to its arrival in this node's network \
             layer (the network part of block_propagation)",
            Unit::Seconds,
            m.block_arrival_seconds.clone(),
        );
        r.register_with_unit(
            "block_handoff",
            "Delay from a gossiped block's arrival in this node's network layer to the chain \
             task taking it up (the wait between the two)",
            Unit::Seconds,
            m.block_handoff_seconds.clone(),
        );
        r.register(
            "tx_gossip_batch_size",
            "Transactions per gossip message this node sent (own admissions, batched)",
            m.tx_gossip_batch_size.clone(),
        );
        r.register(
            "compact_blocks",
            "Gossiped compact blocks by outcome: rebuilt from the transactions this node holds \
             (complete) or fetched in full by sync (fetched); refused ones count as rejected \
             blocks",
            m.compact_blocks.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests by route, method and status",
            m.http_requests.clone(),
        );
        r.register_with_unit(
            "http_request",
            "HTTP request latency by route",
            Unit::Seconds,
            m.http_request_seconds.clone(),
        );
        r.register(
            "sync_blocks_fetched",
            "Blocks fetched from peers by sync",
            m.sync_blocks_fetched.clone(),
        );
        r.register(
            "authority_set_size",
            "Authorities in force for the next block on the final chain",
            m.authority_set_size.clone(),
        );
        r.register(
            "governance_open_proposals",
            "Authority-set change proposals still collecting votes (final chain)",
            m.governance_open_proposals.clone(),
        );
        r.register(
            "governance_scheduled_changes",
            "Decided authority-set changes not yet in force (final chain)",
            m.governance_scheduled_changes.clone(),
        );
        r.register(
            "governance_items_final",
            "Governance proposals and votes in final blocks",
            m.governance_items_final.clone(),
        );
        r.register_with_unit(
            "clock_adjustment",
            "Correction applied to this node's clock to follow the authorities' median clock",
            Unit::Seconds,
            m.clock_adjustment_seconds.clone(),
        );
        // Known label values start at 0, so dashboards and rate() alerts see the series before the
        // first event.
        for reason in BLOCK_REJECT_REASONS {
            let _ = m.blocks_rejected.get_or_create(&ReasonLabel {
                reason: (*reason).into(),
            });
        }
        for reason in SYNC_MISBEHAVIOUR_REASONS {
            let _ = m.sync_misbehaviour.get_or_create(&ReasonLabel {
                reason: (*reason).into(),
            });
        }
        for outcome in COMPACT_BLOCK_OUTCOMES {
            let _ = m.compact_blocks.get_or_create(&OutcomeLabel {
                outcome: (*outcome).into(),
            });
        }
        for reason in TX_REJECT_REASONS {
            let _ = m.transactions_rejected.get_or_create(&ReasonLabel {
                reason: (*reason).into(),
            });
        }
        Self { registry: r, ..m }
    }

    pub fn reject_block(&self, reason: &str) {
        self.blocks_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn reject_tx(&self, reason: &str) {
        self.reject_txs(reason, 1);
    }

    pub fn reject_txs(&self, reason: &str, count: u64) {
        self.transactions_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc_by(count);
    }

    pub fn sync_misbehaved(&self, reason: &str) {
        self.sync_misbehaviour
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn compact_block(&self, outcome: &str) {
        self.compact_blocks
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn invalid_message(&self, kind: &str) {
        self.invalid_messages
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
    }
}
