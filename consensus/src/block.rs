//! Blocks: a header, the transactions, and the proposer's seal.

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{Hash, Keypair, PublicKey, Signature, domain, hash_with};
use crate::merkle::merkle_root;
use crate::tx::Transaction;

pub const HEADER_VERSION: u8 = 1;
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
}

impl BlockHeader {
    /// The block hash: blake3 over the header's canonical encoding, in its own domain.
    pub fn hash(&self) -> Hash {
        hash_with(domain::BLOCK_HEADER, &[&self.encode()])
    }

    /// The message a proposer signs: the header hash bound to the network's genesis, so a seal
    /// cannot be replayed on another network.
    pub fn seal_message(&self, genesis_hash: &Hash) -> Hash {
        hash_with(domain::BLOCK_SEAL, &[&genesis_hash.0, &self.hash().0])
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
    }
}

impl Decode for BlockHeader {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != HEADER_VERSION {
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
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub header: BlockHeader,
    pub transactions: Vec<Transaction>,
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
        let ids: Vec<Hash> = transactions.iter().map(Transaction::id).collect();
        let header = BlockHeader {
            version: HEADER_VERSION,
            height: parent.height + 1,
            parent_hash: parent.hash(),
            slot,
            timestamp_ms,
            proposer: key.public(),
            tx_root: merkle_root(&ids),
        };
        let signature = key.sign(&header.seal_message(genesis_hash).0);
        Self {
            header,
            transactions,
            signature,
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
        HEADER_LEN
            + 4
            + self
                .transactions
                .iter()
                .map(|t| 4 + t.encoded_len())
                .sum::<usize>()
            + 64
    }
}

const HEADER_LEN: usize = 1 + 8 + 32 + 8 + 8 + 32 + 32;

impl Encode for Block {
    fn encode_to(&self, w: &mut Writer) {
        self.header.encode_to(w);
        w.u32(self.transactions.len() as u32);
        for tx in &self.transactions {
            // Length-prefixed so a reader can skip or bound each transaction.
            w.bytes(&tx.encode());
        }
        w.fixed(&self.signature.0);
    }
}

impl Decode for Block {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let header = BlockHeader::decode_from(r)?;
        let n = r.count("block transactions", MAX_BLOCK_TXS)?;
        // Every transaction needs at least its fixed fields; refuse counts the input cannot hold
        // before allocating for them.
        if n.saturating_mul(4 + 100) > r.remaining() {
            return Err(DecodeError::Truncated {
                offset: 0,
                needed: n * 104 - r.remaining(),
            });
        }
        let mut transactions = Vec::with_capacity(n);
        for _ in 0..n {
            let bytes = r.bytes("transaction", crate::tx::MAX_TX_DATA + 1024)?;
            transactions.push(Transaction::decode(bytes)?);
        }
        let signature = Signature(r.fixed()?);
        Ok(Self {
            header,
            transactions,
            signature,
        })
    }
}
