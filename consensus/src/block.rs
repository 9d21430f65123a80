//! Blocks: a header, the transactions, the governance items (if any), and the proposer's seal.
//!
//! A block without governance items has a version-1 header and encoding. A block that carries
//! governance items has a version-2 header, which adds `gov_root` (the Merkle root of the item
//! ids), and its encoding lists the items after the transactions. Chains without governance
//! activity therefore keep the exact encoding and hashes they always had.

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{Hash, Keypair, PublicKey, Signature, domain};
use crate::governance::{GovernanceItem, MAX_ITEMS_PER_BLOCK};
use crate::merkle::merkle_root;
use crate::tx::Transaction;
use crate::validate::BlockError;

/// Header version of blocks without governance items.
pub const HEADER_VERSION: u8 = 1;
/// Header version of blocks carrying governance items (adds `gov_root`).
pub const GOVERNANCE_HEADER_VERSION: u8 = 2;
/// Upper bound on transactions per block when decoding; the configured limit may be lower.
pub const MAX_BLOCK_TXS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHeader {
    pub version: u8,
    pub height: u64,
    pub parent_hash: Hash,
    pub slot: u64,
    pub timestamp_ms: u64,
    pub proposer: PublicKey,
    pub tx_root: Hash,
    /// Merkle root of the governance item ids; present exactly in version-2 headers.
    pub gov_root: Option<Hash>,
}

impl BlockHeader {
    /// The block hash: blake3 over the header's canonical encoding, in its own domain.
    pub fn hash(&self) -> Hash {
        domain::BLOCK_HEADER.hash(&[&self.encode()])
    }

    /// The message a proposer signs: the header hash bound to the network's genesis, so a seal
    /// cannot be replayed on another network.
    pub fn seal_message(&self, genesis_hash: &Hash) -> Hash {
        domain::BLOCK_SEAL.hash(&[&genesis_hash.0, &self.hash().0])
    }
}

impl Encode for BlockHeader {
    fn encode_to(&self, w: &mut Writer) {
        w.u8(self.version);
        w.u64(self.height);
        w.fixed(&self.parent_hash.0);
        w.u64(self.slot);
        w.u64(self.timestamp_ms);
        w.fixed(&self.proposer.0);
        w.fixed(&self.tx_root.0);
        if self.version >= GOVERNANCE_HEADER_VERSION {
            w.fixed(&self.gov_root.unwrap_or_default().0);
        }
    }
}

impl Decode for BlockHeader {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != HEADER_VERSION && version != GOVERNANCE_HEADER_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "block header",
                version,
            });
        }
        Ok(Self {
            version,
            height: r.u64()?,
            parent_hash: Hash(r.fixed()?),
            slot: r.u64()?,
            timestamp_ms: r.u64()?,
            proposer: PublicKey(r.fixed()?),
            tx_root: Hash(r.fixed()?),
            gov_root: if version == GOVERNANCE_HEADER_VERSION {
                Some(Hash(r.fixed()?))
            } else {
                None
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub header: BlockHeader,
    pub transactions: Vec<Transaction>,
    /// Governance proposals and votes; non-empty only with a version-2 header.
    pub governance: Vec<GovernanceItem>,
    pub signature: Signature,
}

impl Block {
    /// Builds and seals a block on `parent` for `slot`.
    pub fn seal(
        parent: &BlockHeader,
        slot: u64,
        timestamp_ms: u64,
        transactions: Vec<Transaction>,
        key: &Keypair,
        genesis_hash: &Hash,
    ) -> Self {
        Self::seal_with_governance(
            parent,
            slot,
            timestamp_ms,
            transactions,
            Vec::new(),
            key,
            genesis_hash,
        )
    }

    /// Builds and seals a block that may carry governance items.
    pub fn seal_with_governance(
        parent: &BlockHeader,
        slot: u64,
        timestamp_ms: u64,
        transactions: Vec<Transaction>,
        governance: Vec<GovernanceItem>,
        key: &Keypair,
        genesis_hash: &Hash,
    ) -> Self {
        Self::draft(parent, slot, transactions, governance).seal(timestamp_ms, key, genesis_hash)
    }

    /// Assembles a block's body and Merkle roots without sealing it: a proposer reads the
    /// clock for the header timestamp once the body is ready, so the timestamp is the moment
    /// of the seal however long a large body took to assemble.
    pub fn draft(
        parent: &BlockHeader,
        slot: u64,
        transactions: Vec<Transaction>,
        governance: Vec<GovernanceItem>,
    ) -> BlockDraft {
        let tx_ids: Vec<Hash> = transactions.iter().map(Transaction::id).collect();
        BlockDraft {
            height: parent.height + 1,
            parent_hash: parent.hash(),
            slot,
            tx_root: merkle_root(&tx_ids),
            gov_root: (!governance.is_empty()).then(|| gov_root(&governance)),
            tx_ids,
            transactions,
            governance,
        }
    }

    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    pub fn tx_ids(&self) -> Vec<Hash> {
        self.transactions.iter().map(Transaction::id).collect()
    }

    pub fn verify_seal(&self, genesis_hash: &Hash) -> bool {
        self.header
            .proposer
            .verify(&self.header.seal_message(genesis_hash).0, &self.signature)
    }

    /// Encoded size in bytes, without encoding.
    pub fn encoded_len(&self) -> usize {
        let governance = if self.header.version >= GOVERNANCE_HEADER_VERSION {
            governance_encoded_len(&self.governance)
        } else {
            0
        };
        HEADER_LEN
            + 4
            + self
                .transactions
                .iter()
                .map(|t| 4 + t.encoded_len())
                .sum::<usize>()
            + governance
            + 64
    }
}

/// A block assembled but not yet sealed ([`Block::draft`]).
#[derive(Debug, Clone)]
pub struct BlockDraft {
    height: u64,
    parent_hash: Hash,
    slot: u64,
    tx_root: Hash,
    gov_root: Option<Hash>,
    tx_ids: Vec<Hash>,
    transactions: Vec<Transaction>,
    governance: Vec<GovernanceItem>,
}

impl BlockDraft {
    /// The ids of the draft's transactions, in block order (computed for the Merkle root).
    pub fn tx_ids(&self) -> &[Hash] {
        &self.tx_ids
    }

    /// Completes the header with `timestamp_ms` and signs it.
    pub fn seal(self, timestamp_ms: u64, key: &Keypair, genesis_hash: &Hash) -> Block {
        let header = BlockHeader {
            version: if self.gov_root.is_some() {
                GOVERNANCE_HEADER_VERSION
            } else {
                HEADER_VERSION
            },
            height: self.height,
            parent_hash: self.parent_hash,
            slot: self.slot,
            timestamp_ms,
            proposer: key.public(),
            tx_root: self.tx_root,
            gov_root: self.gov_root,
        };
        let signature = key.sign(&header.seal_message(genesis_hash).0);
        Block {
            header,
            transactions: self.transactions,
            governance: self.governance,
            signature,
        }
    }
}

/// A block with its transactions replaced by their ids: what a slot leader gossips, since its
/// peers already hold nearly every transaction of the block in their pools (they were gossiped
/// when admitted). The transactions the leader admitted just before sealing, which its peers
/// may not have received yet, travel in full (`prefilled`). A receiver rebuilds the block from
/// those and the transactions it holds ([`CompactBlock::into_block`]) and validates it like
/// any other; one that lacks transactions fetches the full block by sync. The ids commit to the
/// header's `tx_root`, so a compact block whose ids do not match its header is refused before
/// anything is looked up; a prefilled transaction that is not the one its id names makes the
/// rebuilt block fail the same check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactBlock {
    pub header: BlockHeader,
    pub tx_ids: Vec<Hash>,
    /// Transactions carried in full, by position in the block (strictly increasing).
    pub prefilled: Vec<(u32, Transaction)>,
    pub governance: Vec<GovernanceItem>,
    pub signature: Signature,
}

/// The transaction ids of a compact block that passed [`CompactBlock::check`]: the ones its
/// header's `tx_root` commits to, under a seal that verifies. Only that check makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedIds {
    header: Hash,
    ids: Vec<Hash>,
}

impl CheckedIds {
    /// The hash of the header the ids were checked against.
    pub fn header(&self) -> Hash {
        self.header
    }

    pub fn ids(&self) -> &[Hash] {
        &self.ids
    }

    pub fn into_ids(self) -> Vec<Hash> {
        self.ids
    }
}

impl CompactBlock {
    /// `block` in compact form, carrying the transactions at positions `prefill` (ascending)
    /// in full; `tx_ids` must be the ids of its transactions, in order
    /// ([`BlockDraft::tx_ids`]).
    pub fn of(block: &Block, tx_ids: Vec<Hash>, prefill: &[usize]) -> Self {
        debug_assert_eq!(tx_ids.len(), block.transactions.len());
        Self {
            header: block.header.clone(),
            tx_ids,
            prefilled: prefill
                .iter()
                .filter_map(|&i| Some((i as u32, block.transactions.get(i)?.clone())))
                .collect(),
            governance: block.governance.clone(),
            signature: block.signature,
        }
    }

    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// Whether the ids are the ones the header's `tx_root` commits to.
    pub fn ids_match_header(&self) -> bool {
        merkle_root(&self.tx_ids) == self.header.tx_root
    }

    pub fn verify_seal(&self, genesis_hash: &Hash) -> bool {
        self.header
            .proposer
            .verify(&self.header.seal_message(genesis_hash).0, &self.signature)
    }

    /// Checks that the ids are the ones the header commits to and that the seal verifies,
    /// what a receiver establishes before looking any transaction up. The result lets the
    /// rebuilt block's validation skip both ([`crate::validate_block_with_ids`]).
    pub fn check(&self, genesis_hash: &Hash) -> Result<CheckedIds, BlockError> {
        if !self.ids_match_header() {
            return Err(BlockError::TxRootMismatch);
        }
        if !self.verify_seal(genesis_hash) {
            return Err(BlockError::BadSignature);
        }
        Ok(CheckedIds {
            header: self.hash(),
            ids: self.tx_ids.clone(),
        })
    }

    /// The full block, given its transactions in the order of [`Self::tx_ids`].
    pub fn into_block(self, transactions: Vec<Transaction>) -> Block {
        Block {
            header: self.header,
            transactions,
            governance: self.governance,
            signature: self.signature,
        }
    }
}

impl Encode for CompactBlock {
    fn encode_to(&self, w: &mut Writer) {
        self.header.encode_to(w);
        w.u32(self.tx_ids.len() as u32);
        for id in &self.tx_ids {
            w.fixed(&id.0);
        }
        w.u32(self.prefilled.len() as u32);
        for (index, tx) in &self.prefilled {
            w.u32(*index);
            tx.encode_prefixed(w);
        }
        encode_governance(&self.header, &self.governance, w);
        w.fixed(&self.signature.0);
    }
}

impl Decode for CompactBlock {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let header = BlockHeader::decode_from(r)?;
        let n = r.count_fitting("block transaction ids", MAX_BLOCK_TXS, 32)?;
        let mut tx_ids = Vec::with_capacity(n);
        for _ in 0..n {
            tx_ids.push(Hash(r.fixed()?));
        }
        let what = "prefilled transactions";
        // A position, a length prefix and a transaction's fixed fields each.
        let m = r.count_fitting(what, n, 8 + 100)?;
        let mut prefilled = Vec::with_capacity(m);
        for _ in 0..m {
            let index = r.u32()?;
            // Positions strictly increase and stay inside the block: one encoding per value.
            let after_last = prefilled.last().is_none_or(|(last, _)| index > *last);
            if index as usize >= n || !after_last {
                return Err(DecodeError::OutOfOrder {
                    what: "prefilled transaction position",
                    index: u64::from(index),
                });
            }
            let bytes = r.bytes("transaction", crate::tx::MAX_TX_DATA + 1024)?;
            prefilled.push((index, Transaction::decode(bytes)?));
        }
        let governance = decode_governance(&header, r)?;
        let signature = Signature(r.fixed()?);
        Ok(Self {
            header,
            tx_ids,
            prefilled,
            governance,
            signature,
        })
    }
}

fn encode_governance(header: &BlockHeader, items: &[GovernanceItem], w: &mut Writer) {
    if header.version >= GOVERNANCE_HEADER_VERSION {
        w.u32(items.len() as u32);
        for item in items {
            item.encode_to(w);
        }
    }
}

fn decode_governance(
    header: &BlockHeader,
    r: &mut Reader<'_>,
) -> Result<Vec<GovernanceItem>, DecodeError> {
    let mut governance = Vec::new();
    if header.version >= GOVERNANCE_HEADER_VERSION {
        // Every item is at least a vote's size.
        let n = r.count_fitting("governance items", MAX_ITEMS_PER_BLOCK, MIN_ITEM_LEN)?;
        governance.reserve(n);
        for _ in 0..n {
            governance.push(GovernanceItem::decode_from(r)?);
        }
    }
    Ok(governance)
}

/// The bytes governance items add to a block: the header's `gov_root`, the item count and the
/// items (a block without items has a version-1 header and adds none; see
/// [`Block::seal_with_governance`]).
pub fn governance_encoded_len(items: &[GovernanceItem]) -> usize {
    32 + 4 + items.iter().map(GovernanceItem::encoded_len).sum::<usize>()
}

/// The Merkle root committing to a block's governance items, in order.
pub fn gov_root(items: &[GovernanceItem]) -> Hash {
    let ids: Vec<Hash> = items.iter().map(GovernanceItem::id).collect();
    merkle_root(&ids)
}

/// Encoded size of the smallest governance item (a vote).
const MIN_ITEM_LEN: usize = 1 + 1 + 32 + 32 + 64;
const HEADER_LEN: usize = 1 + 8 + 32 + 8 + 8 + 32 + 32;

impl Encode for Block {
    fn encode_to(&self, w: &mut Writer) {
        self.header.encode_to(w);
        w.u32(self.transactions.len() as u32);
        for tx in &self.transactions {
            // Length-prefixed so a reader can skip or bound each transaction.
            tx.encode_prefixed(w);
        }
        encode_governance(&self.header, &self.governance, w);
        w.fixed(&self.signature.0);
    }
    /// One buffer of the exact size: a block is up to megabytes of transactions.
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.encoded_len());
        self.encode_to(&mut w);
        w.into_vec()
    }
}

impl Decode for Block {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let header = BlockHeader::decode_from(r)?;
        // Every transaction needs its length prefix and at least its fixed fields.
        let n = r.count_fitting("block transactions", MAX_BLOCK_TXS, 4 + 100)?;
        let mut transactions = Vec::with_capacity(n);
        for _ in 0..n {
            let bytes = r.bytes("transaction", crate::tx::MAX_TX_DATA + 1024)?;
            transactions.push(Transaction::decode(bytes)?);
        }
        let governance = decode_governance(&header, r)?;
        let signature = Signature(r.fixed()?);
        Ok(Self {
            header,
            transactions,
            governance,
            signature,
        })
    }
}
