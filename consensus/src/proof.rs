//! Inclusion proofs: everything a third party needs to check, offline and without trusting the
//! node that produced it, that a transaction was sealed by an authority of a given network.
//!
//! A proof carries the transaction and the block header in their canonical encodings (hex), the
//! Merkle path from the transaction id to the header's `tx_root`, the proposer's seal, and the
//! genesis parameters. [`InclusionProof::verify`] recomputes every hash and checks every
//! signature; it returns the [`Claim`] the proof establishes.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::block::{Block, BlockHeader};
use crate::codec::{Decode, Encode};
use crate::crypto::{Hash, PublicKey, Signature};
use crate::genesis::{AuthoritySource, Genesis};
use crate::merkle::{ProofStep, merkle_proof, verify_merkle_proof};
use crate::schedule::leader;
use crate::tx::{RdfFormat, Transaction};

pub const PROOF_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub version: u32,
    pub genesis: Genesis,
    pub genesis_hash: Hash,
    pub tx_id: Hash,
    /// The transaction's canonical encoding, hex.
    pub transaction: String,
    /// Position of the transaction in the block.
    pub index: u32,
    pub merkle_path: Vec<ProofStep>,
    pub block_hash: Hash,
    /// The block header's canonical encoding, hex.
    pub header: String,
    pub seal: Signature,
}

/// What a valid proof establishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub network_id: String,
    pub genesis_hash: Hash,
    pub tx_id: Hash,
    pub format: RdfFormat,
    /// The RDF document as submitted.
    pub data: String,
    /// The node that accepted and signed the transaction.
    pub submitter: PublicKey,
    /// The authenticated API client, when auth was on.
    pub client: Option<String>,
    pub submitted_at_ms: u64,
    pub block_height: u64,
    pub block_hash: Hash,
    pub slot: u64,
    pub sealed_at_ms: u64,
    /// The authority that sealed the block.
    pub proposer: PublicKey,
}

/// Why a proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    #[error("unsupported proof version {0}")]
    Version(u32),
    #[error("genesis parameters do not hash to the stated genesis hash")]
    GenesisHash,
    #[error("{what} is not a valid encoding: {detail}")]
    Encoding { what: &'static str, detail: String },
    #[error("the transaction does not hash to the stated tx_id")]
    TxId,
    #[error("the transaction's submitter signature is invalid")]
    TxSignature,
    #[error("the Merkle path does not lead from the transaction to the header's tx_root")]
    MerklePath,
    #[error("the header does not hash to the stated block hash")]
    BlockHash,
    #[error("proposer {0} is not an authority of this network")]
    NotAuthority(PublicKey),
    #[error("proposer {proposer} was not the leader of slot {slot}")]
    WrongLeader { slot: u64, proposer: PublicKey },
    #[error("the block seal signature is invalid")]
    Seal,
}

fn decode_hex<T: Decode>(what: &'static str, hex_text: &str) -> Result<T, ProofError> {
    let bytes = hex::decode(hex_text.trim()).map_err(|e| ProofError::Encoding {
        what,
        detail: e.to_string(),
    })?;
    T::decode(&bytes).map_err(|e| ProofError::Encoding {
        what,
        detail: e.to_string(),
    })
}

impl InclusionProof {
    /// Builds the proof for the transaction at `index` of a final `block`.
    pub fn build(genesis: &Genesis, block: &Block, index: usize) -> Option<Self> {
        let tx = block.transactions.get(index)?;
        let ids = block.tx_ids();
        Some(Self {
            version: PROOF_VERSION,
            genesis: genesis.clone(),
            genesis_hash: genesis.hash(),
            tx_id: ids[index],
            transaction: hex::encode(tx.encode()),
            index: index as u32,
            merkle_path: merkle_proof(&ids, index)?,
            block_hash: block.hash(),
            header: hex::encode(block.header.encode()),
            seal: block.signature,
        })
    }

    /// Checks every hash and signature; returns the claim the proof establishes.
    pub fn verify(&self) -> Result<Claim, ProofError> {
        if self.version != PROOF_VERSION {
            return Err(ProofError::Version(self.version));
        }
        let genesis_hash = self.genesis.hash();
        if genesis_hash != self.genesis_hash {
            return Err(ProofError::GenesisHash);
        }
        let tx: Transaction = decode_hex("transaction", &self.transaction)?;
        if tx.id() != self.tx_id {
            return Err(ProofError::TxId);
        }
        if !tx
            .body
            .submitter
            .verify(&tx.signing_message(&genesis_hash).0, &tx.signature)
        {
            return Err(ProofError::TxSignature);
        }
        let header: BlockHeader = decode_hex("header", &self.header)?;
        if header.hash() != self.block_hash {
            return Err(ProofError::BlockHash);
        }
        if !verify_merkle_proof(&self.tx_id, &self.merkle_path, &header.tx_root) {
            return Err(ProofError::MerklePath);
        }
        let authorities = self.genesis.authorities_at(header.height);
        if !authorities.contains(&header.proposer) {
            return Err(ProofError::NotAuthority(header.proposer));
        }
        if leader(authorities, header.slot) != Some(&header.proposer) {
            return Err(ProofError::WrongLeader {
                slot: header.slot,
                proposer: header.proposer,
            });
        }
        if !header
            .proposer
            .verify(&header.seal_message(&genesis_hash).0, &self.seal)
        {
            return Err(ProofError::Seal);
        }
        Ok(Claim {
            network_id: self.genesis.network_id.clone(),
            genesis_hash,
            tx_id: self.tx_id,
            format: tx.body.format,
            data: tx.body.data.to_string(),
            submitter: tx.body.submitter,
            client: tx.body.client,
            submitted_at_ms: tx.body.timestamp_ms,
            block_height: header.height,
            block_hash: self.block_hash,
            slot: header.slot,
            sealed_at_ms: header.timestamp_ms,
            proposer: header.proposer,
        })
    }
}
