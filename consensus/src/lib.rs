//! ProvChain's chain model and consensus rules, as pure functions over data.
//!
//! This crate owns the types every other crate exchanges — [`Genesis`], [`Block`],
//! [`Transaction`] — and their one canonical binary encoding ([`codec`]), the blake3 hashing and
//! ed25519 signing with domain separation ([`crypto`]), the transaction Merkle tree
//! ([`merkle`]), the Aura-style slot schedule ([`schedule`]), block validation with one error per
//! rule ([`validate`]), fork choice plus finality ([`forktree`]), and the authority set at every
//! height as changed by majority vote ([`governance`]).
//!
//! Nothing here performs I/O, spawns tasks or reads the clock: time is an argument. That keeps
//! every rule deterministic and testable on hand-built block trees.

pub mod block;
pub mod codec;
pub mod crypto;
pub mod forktree;
pub mod genesis;
pub mod governance;
pub mod merkle;
pub mod proof;
pub mod schedule;
pub mod tx;
pub mod validate;

pub use block::{Block, BlockDraft, BlockHeader, CheckedIds, CompactBlock};
pub use codec::{Decode, DecodeError, Encode};
pub use crypto::{Hash, Keypair, PublicKey, Signature};
pub use forktree::{Equivocation, Finalized, ForkError, ForkTree, Route, SlotRegistry};
pub use genesis::{AuthoritySource, Genesis};
pub use governance::{
    Applied, AuthorityHistory, GovernanceAction, GovernanceError, GovernanceItem, GovernanceParams,
    ItemError, OpenProposal, Proposal, ProposalStatus, ScheduledChange, SwitchPoint, Vote,
};
pub use merkle::{ProofStep, merkle_proof, merkle_root, verify_merkle_proof};
pub use proof::{Claim, InclusionProof, ProofError};
pub use schedule::{finality_threshold, leader, slot_at, slot_start_ms};
pub use tx::{RdfFormat, Transaction, TxBody, TxError};
pub use validate::{
    BlockError, Limits, ValidationContext, validate_block, validate_block_with,
    validate_block_with_ids, validate_body, validate_body_with, validate_header,
    verify_tx_signatures,
};
