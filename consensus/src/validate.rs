//! Block validation: one typed error per rule, so callers can count rejections by reason.

use std::collections::HashSet;

use thiserror::Error;

use crate::block::{
    Block, BlockHeader, CheckedIds, GOVERNANCE_HEADER_VERSION, HEADER_VERSION, gov_root,
};
use crate::crypto::{Hash, PublicKey, verify_batch};
use crate::merkle::merkle_root;
use crate::schedule::{leader, slot_at, slot_start_ms};
use crate::tx::{Transaction, TxError};

/// Size limits a block must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Encoded block size. Default 4 MiB: ~6,000 ten-triple transactions, enough for 2,000 tx/s
    /// with 1 s blocks, small enough to gossip in milliseconds on a LAN.
    pub max_block_bytes: usize,
    /// Transactions per block.
    pub max_block_txs: usize,
    /// RDF bytes per transaction. Default 1 MiB.
    pub max_tx_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_block_bytes: 4 * 1024 * 1024,
            max_block_txs: 20_000,
            max_tx_bytes: 1024 * 1024,
        }
    }
}

/// What a block is checked against.
#[derive(Debug, Clone)]
pub struct ValidationContext<'a> {
    pub genesis_hash: Hash,
    /// The authority set in force at the block's height.
    pub authorities: &'a [PublicKey],
    pub interval_ms: u64,
    /// The validator's clock.
    pub now_ms: u64,
    /// How far a slot may start ahead of our clock and still be accepted (clock drift).
    pub max_drift_ms: u64,
    pub limits: Limits,
}

/// Why a block is invalid, one variant per rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlockError {
    #[error("unsupported block version {0}")]
    UnsupportedVersion(u8),
    #[error("parent {0} is unknown")]
    UnknownParent(Hash),
    #[error("height {got} does not follow parent height (expected {expected})")]
    BadHeight { expected: u64, got: u64 },
    #[error("slot {slot} is not after the parent's slot {parent_slot}")]
    SlotNotAfterParent { slot: u64, parent_slot: u64 },
    #[error("timestamp {timestamp_ms} ms lies outside slot {slot}")]
    TimestampOutsideSlot { slot: u64, timestamp_ms: u64 },
    #[error("proposer {got} is not the leader of slot {slot} (expected {expected})")]
    WrongProposer {
        slot: u64,
        expected: PublicKey,
        got: PublicKey,
    },
    #[error("block seal signature is invalid")]
    BadSignature,
    /// Starts soon (within the hold window): keep it and retry at `ready_at_ms`.
    #[error("slot {slot} starts in {early_ms} ms; held until then")]
    Early {
        slot: u64,
        early_ms: u64,
        ready_at_ms: u64,
    },
    #[error("slot {slot} is {ahead_ms} ms in the future")]
    FutureSlot { slot: u64, ahead_ms: u64 },
    #[error("block is {size} bytes, the limit is {max}")]
    TooLarge { size: usize, max: usize },
    #[error("block has {count} transactions, the limit is {max}")]
    TooManyTransactions { count: usize, max: usize },
    #[error("tx_root does not match the transactions")]
    TxRootMismatch,
    #[error("transaction {0} appears twice")]
    DuplicateTransaction(Hash),
    #[error("transaction {index} is invalid: {source}")]
    InvalidTransaction { index: usize, source: TxError },
    #[error("gov_root does not match the governance items")]
    GovRootMismatch,
    #[error("governance item {index} has an invalid signature")]
    BadGovernanceSignature { index: usize },
    #[error("governance item {index} is invalid: {reason}")]
    InvalidGovernance { index: usize, reason: String },
}

impl BlockError {
    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnsupportedVersion(_) => "version",
            Self::UnknownParent(_) => "unknown_parent",
            Self::BadHeight { .. } => "height",
            Self::SlotNotAfterParent { .. } => "slot_order",
            Self::TimestampOutsideSlot { .. } => "timestamp",
            Self::WrongProposer { .. } => "wrong_leader",
            Self::BadSignature => "bad_signature",
            Self::Early { .. } => "early",
            Self::FutureSlot { .. } => "future_slot",
            Self::TooLarge { .. } => "too_large",
            Self::TooManyTransactions { .. } => "too_many_txs",
            Self::TxRootMismatch => "tx_root",
            Self::DuplicateTransaction(_) => "duplicate_tx",
            Self::InvalidTransaction { .. } => "invalid_tx",
            Self::GovRootMismatch => "gov_root",
            Self::BadGovernanceSignature { .. } => "governance_signature",
            Self::InvalidGovernance { .. } => "invalid_governance",
        }
    }
}

/// Checks only the header against its parent and the schedule: cheap, done before a block is
/// forwarded or its body examined.
pub fn validate_header(
    header: &BlockHeader,
    parent: &BlockHeader,
    ctx: &ValidationContext<'_>,
) -> Result<(), BlockError> {
    // Version 1 has no gov_root; version 2 always has one.
    let consistent = match header.version {
        HEADER_VERSION => header.gov_root.is_none(),
        GOVERNANCE_HEADER_VERSION => header.gov_root.is_some(),
        _ => false,
    };
    if !consistent {
        return Err(BlockError::UnsupportedVersion(header.version));
    }
    if header.parent_hash != parent.hash() {
        return Err(BlockError::UnknownParent(header.parent_hash));
    }
    if header.height != parent.height + 1 {
        return Err(BlockError::BadHeight {
            expected: parent.height + 1,
            got: header.height,
        });
    }
    if header.slot <= parent.slot && parent.height > 0 {
        return Err(BlockError::SlotNotAfterParent {
            slot: header.slot,
            parent_slot: parent.slot,
        });
    }
    if slot_at(header.timestamp_ms, ctx.interval_ms) != header.slot {
        return Err(BlockError::TimestampOutsideSlot {
            slot: header.slot,
            timestamp_ms: header.timestamp_ms,
        });
    }
    let expected = leader(ctx.authorities, header.slot)
        .copied()
        .unwrap_or_default();
    if header.proposer != expected {
        return Err(BlockError::WrongProposer {
            slot: header.slot,
            expected,
            got: header.proposer,
        });
    }
    let start = slot_start_ms(header.slot, ctx.interval_ms);
    let horizon = ctx.now_ms + ctx.max_drift_ms;
    if start > horizon {
        let early_ms = start - ctx.now_ms;
        // Hold blocks up to two slots early; anything further out is a broken clock or an attack.
        if start <= horizon + 2 * ctx.interval_ms {
            return Err(BlockError::Early {
                slot: header.slot,
                early_ms,
                ready_at_ms: start - ctx.max_drift_ms,
            });
        }
        return Err(BlockError::FutureSlot {
            slot: header.slot,
            ahead_ms: early_ms,
        });
    }
    Ok(())
}

/// Full validation of a block on `parent`: header rules, seal, limits, `tx_root`, and every
/// transaction's envelope (signatures verified in one batch).
pub fn validate_block(
    block: &Block,
    parent: &BlockHeader,
    ctx: &ValidationContext<'_>,
) -> Result<(), BlockError> {
    validate_block_with(block, parent, ctx, |_| false).map(drop)
}

/// [`validate_block`] for a validator that has already verified some of the block's
/// transactions (a node's pool): the envelope signature of a transaction for which
/// `verified(id)` holds is not checked again. Sound because a transaction id hashes the whole
/// encoding, signature included: the same id is the same signed envelope. Every other rule
/// still applies to every transaction. Returns the block's transaction ids, which validation
/// computes anyway, so the caller need not hash every transaction again.
pub fn validate_block_with(
    block: &Block,
    parent: &BlockHeader,
    ctx: &ValidationContext<'_>,
    verified: impl Fn(&Hash) -> bool,
) -> Result<Vec<Hash>, BlockError> {
    validate_block_with_ids(block, parent, ctx, verified, None)
}

/// [`validate_block_with`] for a block rebuilt from a compact block and the transactions a
/// node holds (its pool, whose keys are the ids): `known`, the compact block's
/// [`CheckedIds`], must be the ids of `block.transactions`, in order — the caller vouches for
/// that. When they were checked against this block's header, its seal and `tx_root` are not
/// checked a second time; every other rule still is (duplicates, limits, signatures). Ids
/// checked against another header are ignored: the block is validated in full.
pub fn validate_block_with_ids(
    block: &Block,
    parent: &BlockHeader,
    ctx: &ValidationContext<'_>,
    verified: impl Fn(&Hash) -> bool,
    known: Option<CheckedIds>,
) -> Result<Vec<Hash>, BlockError> {
    validate_header(&block.header, parent, ctx)?;
    let known =
        known.filter(|k| k.header() == block.hash() && k.ids().len() == block.transactions.len());
    if known.is_none() && !block.verify_seal(&ctx.genesis_hash) {
        return Err(BlockError::BadSignature);
    }
    validate_body_inner(block, ctx, verified, known)
}

/// Limits, `tx_root`, duplicates and transaction envelopes.
pub fn validate_body(block: &Block, ctx: &ValidationContext<'_>) -> Result<(), BlockError> {
    validate_body_with(block, ctx, |_| false).map(drop)
}

/// [`validate_body`], skipping the signatures of transactions `verified` vouches for, and
/// returning the transaction ids (see [`validate_block_with`]).
pub fn validate_body_with(
    block: &Block,
    ctx: &ValidationContext<'_>,
    verified: impl Fn(&Hash) -> bool,
) -> Result<Vec<Hash>, BlockError> {
    validate_body_inner(block, ctx, verified, None)
}

fn validate_body_inner(
    block: &Block,
    ctx: &ValidationContext<'_>,
    verified: impl Fn(&Hash) -> bool,
    known: Option<CheckedIds>,
) -> Result<Vec<Hash>, BlockError> {
    let count = block.transactions.len();
    if count > ctx.limits.max_block_txs {
        return Err(BlockError::TooManyTransactions {
            count,
            max: ctx.limits.max_block_txs,
        });
    }
    let size = block.encoded_len();
    if size > ctx.limits.max_block_bytes {
        return Err(BlockError::TooLarge {
            size,
            max: ctx.limits.max_block_bytes,
        });
    }
    let ids = match known {
        Some(known) => known.into_ids(),
        None => {
            let ids = block.tx_ids();
            if merkle_root(&ids) != block.header.tx_root {
                return Err(BlockError::TxRootMismatch);
            }
            ids
        }
    };
    let mut seen = HashSet::with_capacity(ids.len());
    for id in &ids {
        if !seen.insert(*id) {
            return Err(BlockError::DuplicateTransaction(*id));
        }
    }
    match block.header.gov_root {
        // A version-2 header commits to at least one item: one encoding per content.
        Some(root) if block.governance.is_empty() || gov_root(&block.governance) != root => {
            return Err(BlockError::GovRootMismatch);
        }
        None if !block.governance.is_empty() => return Err(BlockError::GovRootMismatch),
        _ => {}
    }
    for (index, item) in block.governance.iter().enumerate() {
        if !item.verify(&ctx.genesis_hash) {
            return Err(BlockError::BadGovernanceSignature { index });
        }
    }
    for (index, tx) in block.transactions.iter().enumerate() {
        tx.validate_shape(ctx.limits.max_tx_bytes)
            .map_err(|source| BlockError::InvalidTransaction { index, source })?;
    }
    let (indexes, todo): (Vec<usize>, Vec<&Transaction>) = block
        .transactions
        .iter()
        .zip(&ids)
        .enumerate()
        .filter(|(_, (_, id))| !verified(id))
        .map(|(index, (tx, _))| (index, tx))
        .unzip();
    verify_tx_signatures(&todo, &ctx.genesis_hash).map_err(|(i, source)| {
        BlockError::InvalidTransaction {
            index: indexes[i],
            source,
        }
    })?;
    Ok(ids)
}

/// Verifies all envelope signatures in one batch; on failure finds the first bad one.
pub fn verify_tx_signatures(
    txs: &[&Transaction],
    genesis_hash: &Hash,
) -> Result<(), (usize, TxError)> {
    if txs.is_empty() {
        return Ok(());
    }
    let msgs: Vec<Hash> = txs
        .iter()
        .map(|t| t.signing_message(genesis_hash))
        .collect();
    let items: Vec<_> = txs
        .iter()
        .zip(&msgs)
        .map(|(t, m)| (&m.0[..], t.signature, t.body.submitter))
        .collect();
    if verify_batch(&items) {
        return Ok(());
    }
    for (index, (tx, msg)) in txs.iter().zip(&msgs).enumerate() {
        if !tx.body.submitter.verify(&msg.0, &tx.signature) {
            return Err((index, TxError::BadSignature(tx.body.submitter)));
        }
    }
    Ok(())
}
