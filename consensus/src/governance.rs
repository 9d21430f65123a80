//! Authority governance: the authority set changes at runtime by majority vote.
//!
//! An authority proposes one [`GovernanceAction`] — add one key, or remove one — in a
//! [`Proposal`] it signs; other authorities support it with signed [`Vote`]s. Both travel inside
//! blocks as [`GovernanceItem`]s. [`AuthorityHistory`] folds the items of the *final* blocks, in
//! height order, into the authority set in force at every height, starting from genesis. It is
//! what code asks for "the authorities at height h" ([`AuthoritySource`]).
//!
//! # Rules
//!
//! * **Membership.** Items of the block at height `h` are checked against
//!   [`AuthorityHistory::authorities_at`]`(h)`: only members of that set may propose or vote.
//!   Signatures bind the network's genesis hash, so an item cannot be replayed on another network.
//! * **Support.** A proposal's supporters are its proposer (the proposal counts as its vote) and
//!   every voter. A key supports a proposal at most once.
//! * **Majority.** A proposal is *decided* at the first height `d` at which the supporters that
//!   belong to the set in force at `d` are more than half of that set, i.e. at least
//!   [`finality_threshold`]`(n) = n / 2 + 1` of its `n` members. This is evaluated when the
//!   proposal or a vote for it is applied, and again at every switch height (the set changed, so
//!   the count may have: supporters that left stop counting, and a smaller set needs fewer).
//! * **Switch height.** A change decided at height `d` takes effect at
//!   `s = (d / epoch_length + 1) * epoch_length`, the next multiple of `epoch_length` strictly
//!   after `d`. Blocks at heights `>= s` are produced and validated with the new set, so every
//!   node switches at the same block.
//! * **Expiry.** A proposal included at height `p` is open for the heights `p ..
//!   p + proposal_ttl` (end exclusive): a vote counts if its block height is below
//!   `p + proposal_ttl`, the proposal's `expires_at`. A proposal not decided by then expires; the
//!   same action may then be proposed again with a new nonce (a proposal id is never reused).
//! * **Valid actions.** An action is checked against the *prospective* set: the set after every
//!   decided change, including those not yet in force. Adding a key that is in it (an authority,
//!   or scheduled to be added), removing a key that is not in it (not an authority, or scheduled
//!   to be removed), removing its only member, adding a weak or malformed key, and growing it past
//!   [`MAX_AUTHORITIES`] are refused. At most one proposal per action is open at a time, and one
//!   proposer has at most [`MAX_OPEN_PROPOSALS_PER_PROPOSER`] open proposals.
//! * **Cancellation.** When a change is decided, every open proposal whose action became invalid
//!   for the new prospective set is cancelled (for example the second of two removals that would
//!   together empty the set). Every decision therefore applies cleanly.
//! * **Order of the set.** At a switch height the decided changes apply in the order they were
//!   decided: an added key is appended at the end, a removal keeps the others' order. Changes
//!   decided at the same height (by a block's items, in item order, or at a switch height, in the
//!   order the proposals were opened) keep that order.
//! * **Order of events within a height.** Expiries first, then the switch (and the decisions it
//!   triggers), then the block's items in order.
//! * **Blocks are valid or invalid as a whole.** One invalid item makes the whole block invalid:
//!   [`AuthorityHistory::apply_final_block`] either applies every item or changes nothing, and
//!   [`AuthorityHistory::check_block`] runs the same checks without changing the history.
//! * **Heights.** Final blocks are applied in increasing height order, each at most once. A height
//!   that is never applied counts as a block without governance items, so a history can be rebuilt
//!   from the heights that carried items alone; the result is the same.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{Hash, Keypair, PublicKey, Signature, domain};
use crate::genesis::{AuthoritySource, Genesis, MAX_AUTHORITIES};
use crate::schedule::finality_threshold;

const PROPOSAL_VERSION: u8 = 1;
const VOTE_VERSION: u8 = 1;
const ITEM_PROPOSAL: u8 = 1;
const ITEM_VOTE: u8 = 2;
const ACTION_ADD: u8 = 1;
const ACTION_REMOVE: u8 = 2;

/// Governance items one block may carry: enough for a proposal and a vote from every other member of
/// the largest possible set, so no decision ever needs more than one block.
pub const MAX_ITEMS_PER_BLOCK: usize = MAX_AUTHORITIES;

/// Open proposals one proposer may have at a time. Bounds the state a single authority can make
/// every node keep; honest use needs one or two.
pub const MAX_OPEN_PROPOSALS_PER_PROPOSER: usize = 8;

/// Largest `epoch_length` and `proposal_ttl`: keeps every height computed from them far from
/// overflow (a larger value would make every height unusable for governance).
pub const MAX_GOVERNANCE_PARAM: u64 = 1 << 32;

/// Network-wide governance parameters. Every node must use the same values, as they decide the
/// authority set (and so the leader schedule) at every height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GovernanceParams {
    /// Set changes take effect only at multiples of this height. Default 10 blocks: a switch comes
    /// at most ten blocks after the decision, and a node's logs show switches at round heights.
    pub epoch_length: u64,
    /// Heights a proposal stays open, counted from the block that carries it. Default 1000 blocks
    /// (about 17 minutes with 1 s blocks): time for operators to review and vote.
    pub proposal_ttl: u64,
}

impl Default for GovernanceParams {
    fn default() -> Self {
        Self {
            epoch_length: 10,
            proposal_ttl: 1000,
        }
    }
}

impl GovernanceParams {
    pub fn validate(&self) -> Result<(), GovernanceError> {
        if self.epoch_length > MAX_GOVERNANCE_PARAM {
            return Err(GovernanceError::InvalidParams {
                what: "epoch_length",
            });
        }
        if self.proposal_ttl > MAX_GOVERNANCE_PARAM {
            return Err(GovernanceError::InvalidParams {
                what: "proposal_ttl",
            });
        }
        if self.epoch_length == 0 {
            return Err(GovernanceError::InvalidParams {
                what: "epoch_length",
            });
        }
        if self.proposal_ttl == 0 {
            return Err(GovernanceError::InvalidParams {
                what: "proposal_ttl",
            });
        }
        Ok(())
    }

    /// The height at which a change decided at `decided_at` takes effect: the next multiple of
    /// `epoch_length` strictly after it. Saturates at `u64::MAX` (never reached in practice:
    /// [`AuthorityHistory`] refuses heights that close to the limit).
    pub fn switch_height(&self, decided_at: u64) -> u64 {
        let epoch = self.epoch_length.max(1);
        (decided_at / epoch).saturating_add(1).saturating_mul(epoch)
    }
}

/// A change to the authority set: one key in or out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GovernanceAction {
    Add(PublicKey),
    Remove(PublicKey),
}

impl GovernanceAction {
    /// The key added or removed.
    pub fn key(&self) -> PublicKey {
        match self {
            Self::Add(k) | Self::Remove(k) => *k,
        }
    }

    fn encode_to(&self, w: &mut Writer) {
        let (tag, key) = match self {
            Self::Add(k) => (ACTION_ADD, k),
            Self::Remove(k) => (ACTION_REMOVE, k),
        };
        w.u8(tag);
        w.fixed(&key.0);
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let tag = r.u8()?;
        let key = match tag {
            ACTION_ADD | ACTION_REMOVE => PublicKey(r.fixed()?),
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "governance action",
                    tag,
                });
            }
        };
        Ok(if tag == ACTION_ADD {
            Self::Add(key)
        } else {
            Self::Remove(key)
        })
    }

    /// Applies the action to an ordered set: additions go to the end, removals keep the order of
    /// the others.
    fn apply_to(&self, set: &mut Vec<PublicKey>) {
        match self {
            Self::Add(k) => {
                if !set.contains(k) {
                    set.push(*k);
                }
            }
            Self::Remove(k) => set.retain(|a| a != k),
        }
    }
}

impl fmt::Display for GovernanceAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Add(k) => write!(f, "add authority {k}"),
            Self::Remove(k) => write!(f, "remove authority {k}"),
        }
    }
}

/// An authority's signed proposal to change the set. It counts as its proposer's vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub action: GovernanceAction,
    pub proposer: PublicKey,
    /// Distinguishes proposals of the same action by the same proposer, so an action can be
    /// proposed again after an earlier proposal expired.
    pub nonce: u64,
    pub signature: Signature,
}

impl Proposal {
    /// Signs `action` as `key` for the network `genesis_hash`.
    pub fn sign(action: GovernanceAction, nonce: u64, key: &Keypair, genesis_hash: &Hash) -> Self {
        let mut proposal = Self {
            action,
            proposer: key.public(),
            nonce,
            signature: Signature::default(),
        };
        proposal.signature = key.sign(&proposal.signing_message(genesis_hash).0);
        proposal
    }

    fn encode_body(&self, w: &mut Writer) {
        w.u8(PROPOSAL_VERSION);
        self.action.encode_to(w);
        w.fixed(&self.proposer.0);
        w.u64(self.nonce);
    }

    fn body_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(PROPOSAL_BODY_LEN);
        self.encode_body(&mut w);
        w.into_vec()
    }

    /// The proposal's identity, which votes sign: blake3 over the canonical encoding of what was
    /// proposed (version, action, proposer, nonce), in its own domain. The signature is left out
    /// so the id names the proposal, not one particular signature's bytes.
    pub fn id(&self) -> Hash {
        domain::GOVERNANCE_PROPOSAL_ID.hash(&[&self.body_bytes()])
    }

    /// The message the proposer signs, bound to the network.
    pub fn signing_message(&self, genesis_hash: &Hash) -> Hash {
        domain::GOVERNANCE_PROPOSAL_SIGNATURE.hash(&[&genesis_hash.0, &self.body_bytes()])
    }

    /// Whether the signature is the proposer's, for the network `genesis_hash`.
    pub fn verify(&self, genesis_hash: &Hash) -> bool {
        self.proposer
            .verify(&self.signing_message(genesis_hash).0, &self.signature)
    }
}

const PROPOSAL_BODY_LEN: usize = 1 + 1 + 32 + 32 + 8;

impl Encode for Proposal {
    fn encode_to(&self, w: &mut Writer) {
        self.encode_body(w);
        w.fixed(&self.signature.0);
    }
}

impl Decode for Proposal {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != PROPOSAL_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "governance proposal",
                version,
            });
        }
        Ok(Self {
            action: GovernanceAction::decode_from(r)?,
            proposer: PublicKey(r.fixed()?),
            nonce: r.u64()?,
            signature: Signature(r.fixed()?),
        })
    }
}

/// An authority's signed support for a proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    /// The proposal's [`Proposal::id`].
    pub proposal: Hash,
    pub voter: PublicKey,
    pub signature: Signature,
}

impl Vote {
    /// Signs support for `proposal` as `key` for the network `genesis_hash`.
    pub fn sign(proposal: Hash, key: &Keypair, genesis_hash: &Hash) -> Self {
        let mut vote = Self {
            proposal,
            voter: key.public(),
            signature: Signature::default(),
        };
        vote.signature = key.sign(&vote.signing_message(genesis_hash).0);
        vote
    }

    /// The message the voter signs, bound to the network.
    pub fn signing_message(&self, genesis_hash: &Hash) -> Hash {
        domain::GOVERNANCE_VOTE_SIGNATURE.hash(&[
            &genesis_hash.0,
            &[VOTE_VERSION],
            &self.proposal.0,
            &self.voter.0,
        ])
    }

    /// Whether the signature is the voter's, for the network `genesis_hash`.
    pub fn verify(&self, genesis_hash: &Hash) -> bool {
        self.voter
            .verify(&self.signing_message(genesis_hash).0, &self.signature)
    }
}

impl Encode for Vote {
    fn encode_to(&self, w: &mut Writer) {
        w.u8(VOTE_VERSION);
        w.fixed(&self.proposal.0);
        w.fixed(&self.voter.0);
        w.fixed(&self.signature.0);
    }
}

impl Decode for Vote {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != VOTE_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "governance vote",
                version,
            });
        }
        Ok(Self {
            proposal: Hash(r.fixed()?),
            voter: PublicKey(r.fixed()?),
            signature: Signature(r.fixed()?),
        })
    }
}

/// What a block carries for governance. Encoded as a kind tag followed by the proposal's or
/// vote's own versioned encoding; every item has a fixed size, so decoding allocates nothing
/// beyond it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GovernanceItem {
    Proposal(Proposal),
    Vote(Vote),
}

impl GovernanceItem {
    /// blake3 over the item's canonical encoding (signature included), in its own domain; for
    /// deduplicating items in pools and on the wire.
    pub fn id(&self) -> Hash {
        domain::GOVERNANCE_ITEM_ID.hash(&[&self.encode()])
    }

    /// The authority that signed the item.
    pub fn signer(&self) -> PublicKey {
        match self {
            Self::Proposal(p) => p.proposer,
            Self::Vote(v) => v.voter,
        }
    }

    /// Whether the item's signature is valid for the network `genesis_hash`.
    pub fn verify(&self, genesis_hash: &Hash) -> bool {
        match self {
            Self::Proposal(p) => p.verify(genesis_hash),
            Self::Vote(v) => v.verify(genesis_hash),
        }
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::Proposal(_) => 1 + PROPOSAL_BODY_LEN + 64,
            Self::Vote(_) => 1 + 1 + 32 + 32 + 64,
        }
    }
}

impl Encode for GovernanceItem {
    fn encode_to(&self, w: &mut Writer) {
        match self {
            Self::Proposal(p) => {
                w.u8(ITEM_PROPOSAL);
                p.encode_to(w);
            }
            Self::Vote(v) => {
                w.u8(ITEM_VOTE);
                v.encode_to(w);
            }
        }
    }
}

impl Decode for GovernanceItem {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            ITEM_PROPOSAL => Ok(Self::Proposal(Proposal::decode_from(r)?)),
            ITEM_VOTE => Ok(Self::Vote(Vote::decode_from(r)?)),
            tag => Err(DecodeError::InvalidTag {
                what: "governance item",
                tag,
            }),
        }
    }
}

impl From<Proposal> for GovernanceItem {
    fn from(p: Proposal) -> Self {
        Self::Proposal(p)
    }
}

impl From<Vote> for GovernanceItem {
    fn from(v: Vote) -> Self {
        Self::Vote(v)
    }
}

/// Why one governance item is invalid at the height of its block.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ItemError {
    #[error("proposer {0} is not an authority at this height")]
    ProposerNotAuthority(PublicKey),
    #[error("voter {0} is not an authority at this height")]
    VoterNotAuthority(PublicKey),
    #[error("proposal signature does not verify against proposer {0} on this network")]
    BadProposalSignature(PublicKey),
    #[error("vote signature does not verify against voter {0} on this network")]
    BadVoteSignature(PublicKey),
    #[error("proposal {0} is unknown")]
    UnknownProposal(Hash),
    #[error("proposal {proposal} expired at height {at}")]
    ProposalExpired { proposal: Hash, at: u64 },
    #[error("proposal {proposal} was already decided at height {at}")]
    ProposalDecided { proposal: Hash, at: u64 },
    #[error(
        "proposal {proposal} was cancelled at height {at}: a decided change made its action invalid"
    )]
    ProposalCancelled { proposal: Hash, at: u64 },
    #[error("{voter} already supports proposal {proposal}")]
    DuplicateVote { proposal: Hash, voter: PublicKey },
    #[error("proposal {0} was already included once; propose again with a new nonce")]
    DuplicateProposal(Hash),
    #[error("{action} is already proposed by open proposal {open}; vote for it instead")]
    ActionAlreadyProposed {
        action: GovernanceAction,
        open: Hash,
    },
    #[error("{proposer} already has {max} open proposals")]
    TooManyOpenProposals { proposer: PublicKey, max: usize },
    #[error("{0} is already an authority")]
    AlreadyAuthority(PublicKey),
    #[error("{key} is already scheduled to be added at height {switch_at}")]
    AdditionScheduled { key: PublicKey, switch_at: u64 },
    #[error("{0} is not an authority")]
    NotAnAuthority(PublicKey),
    #[error("{key} is already scheduled to be removed at height {switch_at}")]
    RemovalScheduled { key: PublicKey, switch_at: u64 },
    #[error("removing {0} would leave no authority")]
    LastAuthority(PublicKey),
    #[error("{0} is not a usable ed25519 public key")]
    InvalidKey(PublicKey),
    #[error("the authority set already has the maximum of {max} members")]
    SetFull { max: usize },
}

impl ItemError {
    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ProposerNotAuthority(_) => "proposer_not_authority",
            Self::VoterNotAuthority(_) => "voter_not_authority",
            Self::BadProposalSignature(_) | Self::BadVoteSignature(_) => "bad_signature",
            Self::UnknownProposal(_) => "unknown_proposal",
            Self::ProposalExpired { .. } => "proposal_expired",
            Self::ProposalDecided { .. } => "proposal_decided",
            Self::ProposalCancelled { .. } => "proposal_cancelled",
            Self::DuplicateVote { .. } => "duplicate_vote",
            Self::DuplicateProposal(_) => "duplicate_proposal",
            Self::ActionAlreadyProposed { .. } => "action_already_proposed",
            Self::TooManyOpenProposals { .. } => "too_many_open_proposals",
            Self::AlreadyAuthority(_) => "already_authority",
            Self::AdditionScheduled { .. } => "addition_scheduled",
            Self::NotAnAuthority(_) => "not_authority",
            Self::RemovalScheduled { .. } => "removal_scheduled",
            Self::LastAuthority(_) => "last_authority",
            Self::InvalidKey(_) => "invalid_key",
            Self::SetFull { .. } => "set_full",
        }
    }
}

/// Why a history cannot be built, or a block's governance items cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GovernanceError {
    #[error("governance parameter {what} must be between 1 and 2^32")]
    InvalidParams { what: &'static str },
    #[error("genesis lists no authorities")]
    NoAuthorities,
    #[error("genesis lists authority {0} more than once")]
    DuplicateAuthority(PublicKey),
    #[error(
        "height {height} is not after the last applied height {last}: final blocks are applied in increasing height order, each once"
    )]
    HeightNotAfter { height: u64, last: u64 },
    #[error("height {0} is too close to the largest height to schedule governance")]
    HeightOverflow(u64),
    #[error("block carries {count} governance items, the limit is {max}")]
    TooManyItems { count: usize, max: usize },
    #[error("governance item {index} is invalid: {source}")]
    InvalidItem { index: usize, source: ItemError },
}

impl GovernanceError {
    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidParams { .. } => "invalid_params",
            Self::NoAuthorities => "no_authorities",
            Self::DuplicateAuthority(_) => "duplicate_authority",
            Self::HeightNotAfter { .. } => "height_order",
            Self::HeightOverflow(_) => "height_overflow",
            Self::TooManyItems { .. } => "too_many_items",
            Self::InvalidItem { source, .. } => source.reason(),
        }
    }
}

/// The authority set from one height on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchPoint {
    /// First height at which `authorities` is in force.
    pub height: u64,
    pub authorities: Vec<PublicKey>,
}

/// A decided change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledChange {
    pub proposal: Hash,
    pub action: GovernanceAction,
    /// Height at which the majority was reached.
    pub decided_at: u64,
    /// First height at which the change is in force.
    pub switch_at: u64,
}

/// A proposal still collecting votes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenProposal {
    pub id: Hash,
    pub proposal: Proposal,
    /// Height of the block that carried the proposal.
    pub proposed_at: u64,
    /// First height at which the proposal no longer accepts votes:
    /// `proposed_at + proposal_ttl`.
    pub expires_at: u64,
    /// The proposer, then every voter in the order their votes were applied. Only those in the
    /// set in force at a height count towards the majority at that height.
    pub supporters: Vec<PublicKey>,
}

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalStatus {
    Open { expires_at: u64 },
    Decided { at: u64, switch_at: u64 },
    Expired { at: u64 },
    Cancelled { at: u64 },
}

/// What applying a height changed, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A proposal was opened, with its proposer's support.
    Proposed {
        id: Hash,
        action: GovernanceAction,
        proposer: PublicKey,
        expires_at: u64,
    },
    /// A vote was counted.
    Voted { proposal: Hash, voter: PublicKey },
    /// A proposal reached a majority; its change is in force from `switch_at`.
    Scheduled(ScheduledChange),
    /// A proposal reached `at` (its `expires_at`) without a majority.
    Expired {
        proposal: Hash,
        action: GovernanceAction,
        at: u64,
    },
    /// A decided change at `at` made an open proposal's action invalid.
    Cancelled {
        proposal: Hash,
        action: GovernanceAction,
        at: u64,
        reason: ItemError,
    },
    /// A new authority set is in force from `height`.
    Switched {
        height: u64,
        authorities: Vec<PublicKey>,
    },
}

/// The authority set at every height, from genesis plus the governance items of final blocks.
///
/// Keeps every switch point (including those decided but not yet reached), so
/// [`authorities_at`](Self::authorities_at) is a binary search for any height.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityHistory {
    genesis_hash: Hash,
    params: GovernanceParams,
    /// Last applied height; 0 before any block.
    height: u64,
    /// Ascending by height; the first is genesis at height 0.
    switches: Vec<SwitchPoint>,
    /// Every decided change, in decision order (so also in `switch_at` order).
    changes: Vec<ScheduledChange>,
    /// In the order they were opened.
    open: Vec<OpenProposal>,
    /// Every proposal that was open once and no longer is, so its id is never reused and a late
    /// vote gets a precise error.
    closed: HashMap<Hash, ProposalStatus>,
}

impl AuthorityHistory {
    /// A history at genesis: `authorities` in force from height 0, nothing applied yet.
    pub fn new(
        genesis_hash: Hash,
        authorities: Vec<PublicKey>,
        params: GovernanceParams,
    ) -> Result<Self, GovernanceError> {
        params.validate()?;
        if authorities.is_empty() {
            return Err(GovernanceError::NoAuthorities);
        }
        let mut seen = HashSet::with_capacity(authorities.len());
        for a in &authorities {
            if !seen.insert(*a) {
                return Err(GovernanceError::DuplicateAuthority(*a));
            }
        }
        Ok(Self {
            genesis_hash,
            params,
            height: 0,
            switches: vec![SwitchPoint {
                height: 0,
                authorities,
            }],
            changes: Vec::new(),
            open: Vec::new(),
            closed: HashMap::new(),
        })
    }

    /// A history at `genesis`, with its hash and authority list.
    pub fn from_genesis(
        genesis: &Genesis,
        params: GovernanceParams,
    ) -> Result<Self, GovernanceError> {
        Self::new(genesis.hash(), genesis.authorities.clone(), params)
    }

    pub fn genesis_hash(&self) -> &Hash {
        &self.genesis_hash
    }

    pub fn params(&self) -> &GovernanceParams {
        &self.params
    }

    /// The last applied height (0 when only genesis is known).
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The set in force for blocks at `height`, in slot order. Reflects every change decided in
    /// the applied blocks, including those in force only from a later height; see
    /// [`settled_below`](Self::settled_below) for how far that is definitive.
    pub fn authorities_at(&self, height: u64) -> &[PublicKey] {
        let i = self.switches.partition_point(|p| p.height <= height);
        self.switches
            .get(i.saturating_sub(1))
            .map_or(&[], |p| p.authorities.as_slice())
    }

    /// The set in force at the last applied height.
    pub fn current(&self) -> &[PublicKey] {
        self.authorities_at(self.height)
    }

    /// `authorities_at(h)` is definitive for every `h` below this height: blocks not yet applied
    /// can only schedule changes at the next multiple of `epoch_length` after the last applied
    /// height, or later.
    pub fn settled_below(&self) -> u64 {
        self.params.switch_height(self.height)
    }

    /// Every switch point, genesis first, including those not reached yet.
    pub fn switch_points(&self) -> &[SwitchPoint] {
        &self.switches
    }

    /// Every decided change, in decision order.
    pub fn changes(&self) -> &[ScheduledChange] {
        &self.changes
    }

    /// Decided changes not yet in force at the last applied height, in the order they apply.
    pub fn scheduled(&self) -> &[ScheduledChange] {
        let i = self.changes.partition_point(|c| c.switch_at <= self.height);
        &self.changes[i..]
    }

    /// Proposals still collecting votes, in the order they were opened.
    pub fn open_proposals(&self) -> &[OpenProposal] {
        &self.open
    }

    pub fn proposal_status(&self, id: &Hash) -> Option<ProposalStatus> {
        if let Some(p) = self.open.iter().find(|p| p.id == *id) {
            return Some(ProposalStatus::Open {
                expires_at: p.expires_at,
            });
        }
        self.closed.get(id).copied()
    }

    /// Applies the governance items of the final block at `height`, after processing the
    /// expiries and switches of every height since the last applied one. All or nothing: on an
    /// error the history is unchanged and the block is invalid.
    pub fn apply_final_block(
        &mut self,
        height: u64,
        items: &[GovernanceItem],
    ) -> Result<Vec<Applied>, GovernanceError> {
        self.check_height(height, items.len())?;
        let mut out = Vec::new();
        if items.is_empty() {
            // Advancing cannot fail, so no copy is needed.
            self.advance(height, &mut out);
            return Ok(out);
        }
        let mut next = self.clone();
        next.advance(height, &mut out);
        next.apply_items(height, items, &mut out)?;
        *self = next;
        Ok(out)
    }

    /// Whether a block at `height` with `items` is valid on top of this history, and what it would
    /// change. The history is not modified.
    ///
    /// For a non-final block, the history must include the governance items of the block's
    /// non-final ancestors (apply them to a copy first); otherwise a vote that duplicates one in an
    /// ancestor would pass here.
    pub fn check_block(
        &self,
        height: u64,
        items: &[GovernanceItem],
    ) -> Result<Vec<Applied>, GovernanceError> {
        self.check_height(height, items.len())?;
        let mut scratch = self.clone();
        let mut out = Vec::new();
        scratch.advance(height, &mut out);
        scratch.apply_items(height, items, &mut out)?;
        Ok(out)
    }

    /// For a block producer: the candidates that can go into a block at `height`, in order. Each
    /// is kept if it is valid after the ones kept before it, up to [`MAX_ITEMS_PER_BLOCK`];
    /// invalid ones (duplicates, votes for closed proposals, …) are dropped.
    pub fn select_items(
        &self,
        height: u64,
        candidates: &[GovernanceItem],
    ) -> Result<Vec<GovernanceItem>, GovernanceError> {
        self.check_height(height, 0)?;
        let mut scratch = self.clone();
        let mut out = Vec::new();
        scratch.advance(height, &mut out);
        let members: HashSet<PublicKey> = scratch.authorities_at(height).iter().copied().collect();
        let mut kept = Vec::new();
        for item in candidates {
            if kept.len() == MAX_ITEMS_PER_BLOCK {
                break;
            }
            if scratch.apply_item(height, &members, item, &mut out).is_ok() {
                kept.push(item.clone());
            }
        }
        Ok(kept)
    }

    fn check_height(&self, height: u64, items: usize) -> Result<(), GovernanceError> {
        if height <= self.height {
            return Err(GovernanceError::HeightNotAfter {
                height,
                last: self.height,
            });
        }
        // Expiry and switch heights are computed by adding to the height; refusing heights near
        // the limit keeps that arithmetic exact everywhere else.
        if height
            .checked_add(self.params.proposal_ttl)
            .and_then(|h| h.checked_add(self.params.epoch_length))
            .is_none()
        {
            return Err(GovernanceError::HeightOverflow(height));
        }
        if items > MAX_ITEMS_PER_BLOCK {
            return Err(GovernanceError::TooManyItems {
                count: items,
                max: MAX_ITEMS_PER_BLOCK,
            });
        }
        Ok(())
    }

    /// Processes the expiries and switches of every height in `(self.height, height]`, in height
    /// order, then records `height` as applied. Cannot fail.
    fn advance(&mut self, height: u64, out: &mut Vec<Applied>) {
        let mut cursor = self.height;
        loop {
            let next_switch = self
                .switches
                .get(self.switches.partition_point(|p| p.height <= cursor))
                .map(|p| p.height);
            // Every open proposal expires after the cursor: earlier ones were already expired.
            let next_expiry = self.open.iter().map(|p| p.expires_at).min();
            let next = match (next_switch, next_expiry) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(h) => h,
                    None => break,
                },
            };
            if next > height {
                break;
            }
            self.expire(next, out);
            if next_switch == Some(next) {
                out.push(Applied::Switched {
                    height: next,
                    authorities: self.authorities_at(next).to_vec(),
                });
                self.decide_all_ready(next, out);
            }
            cursor = next;
        }
        self.height = height;
    }

    fn expire(&mut self, at: u64, out: &mut Vec<Applied>) {
        let mut i = 0;
        while i < self.open.len() {
            if self.open[i].expires_at <= at {
                let p = self.open.remove(i);
                self.closed
                    .insert(p.id, ProposalStatus::Expired { at: p.expires_at });
                out.push(Applied::Expired {
                    proposal: p.id,
                    action: p.proposal.action,
                    at: p.expires_at,
                });
            } else {
                i += 1;
            }
        }
    }

    /// At a switch height the set changed: decides every open proposal that now has a majority,
    /// in the order they were opened.
    fn decide_all_ready(&mut self, at: u64, out: &mut Vec<Applied>) {
        let members: HashSet<PublicKey> = self.authorities_at(at).iter().copied().collect();
        while let Some(i) = self.open.iter().position(|p| has_majority(p, &members)) {
            self.decide(i, at, out);
        }
    }

    fn apply_items(
        &mut self,
        height: u64,
        items: &[GovernanceItem],
        out: &mut Vec<Applied>,
    ) -> Result<(), GovernanceError> {
        let members: HashSet<PublicKey> = self.authorities_at(height).iter().copied().collect();
        for (index, item) in items.iter().enumerate() {
            self.apply_item(height, &members, item, out)
                .map_err(|source| GovernanceError::InvalidItem { index, source })?;
        }
        Ok(())
    }

    /// Applies one item at `height` (already advanced to). Every check comes before any change,
    /// so on an error the history is unchanged.
    fn apply_item(
        &mut self,
        height: u64,
        members: &HashSet<PublicKey>,
        item: &GovernanceItem,
        out: &mut Vec<Applied>,
    ) -> Result<(), ItemError> {
        match item {
            GovernanceItem::Proposal(p) => {
                if !members.contains(&p.proposer) {
                    return Err(ItemError::ProposerNotAuthority(p.proposer));
                }
                if !p.verify(&self.genesis_hash) {
                    return Err(ItemError::BadProposalSignature(p.proposer));
                }
                let id = p.id();
                if self.closed.contains_key(&id) || self.open.iter().any(|o| o.id == id) {
                    return Err(ItemError::DuplicateProposal(id));
                }
                if let Some(o) = self.open.iter().find(|o| o.proposal.action == p.action) {
                    return Err(ItemError::ActionAlreadyProposed {
                        action: p.action,
                        open: o.id,
                    });
                }
                let by_proposer = self
                    .open
                    .iter()
                    .filter(|o| o.proposal.proposer == p.proposer)
                    .count();
                if by_proposer >= MAX_OPEN_PROPOSALS_PER_PROPOSER {
                    return Err(ItemError::TooManyOpenProposals {
                        proposer: p.proposer,
                        max: MAX_OPEN_PROPOSALS_PER_PROPOSER,
                    });
                }
                self.check_action(&p.action, height)?;
                let expires_at = height.saturating_add(self.params.proposal_ttl);
                self.open.push(OpenProposal {
                    id,
                    proposal: p.clone(),
                    proposed_at: height,
                    expires_at,
                    supporters: vec![p.proposer],
                });
                out.push(Applied::Proposed {
                    id,
                    action: p.action,
                    proposer: p.proposer,
                    expires_at,
                });
                self.decide_if_ready(self.open.len() - 1, height, members, out);
            }
            GovernanceItem::Vote(v) => {
                if !members.contains(&v.voter) {
                    return Err(ItemError::VoterNotAuthority(v.voter));
                }
                if !v.verify(&self.genesis_hash) {
                    return Err(ItemError::BadVoteSignature(v.voter));
                }
                let Some(i) = self.open.iter().position(|o| o.id == v.proposal) else {
                    return Err(self.closed_error(v.proposal));
                };
                if self.open[i].supporters.contains(&v.voter) {
                    return Err(ItemError::DuplicateVote {
                        proposal: v.proposal,
                        voter: v.voter,
                    });
                }
                self.open[i].supporters.push(v.voter);
                out.push(Applied::Voted {
                    proposal: v.proposal,
                    voter: v.voter,
                });
                self.decide_if_ready(i, height, members, out);
            }
        }
        Ok(())
    }

    fn closed_error(&self, proposal: Hash) -> ItemError {
        match self.closed.get(&proposal) {
            Some(ProposalStatus::Expired { at }) => {
                ItemError::ProposalExpired { proposal, at: *at }
            }
            Some(ProposalStatus::Decided { at, .. }) => {
                ItemError::ProposalDecided { proposal, at: *at }
            }
            Some(ProposalStatus::Cancelled { at }) => {
                ItemError::ProposalCancelled { proposal, at: *at }
            }
            Some(ProposalStatus::Open { .. }) | None => ItemError::UnknownProposal(proposal),
        }
    }

    fn decide_if_ready(
        &mut self,
        i: usize,
        at: u64,
        members: &HashSet<PublicKey>,
        out: &mut Vec<Applied>,
    ) {
        if self.open.get(i).is_some_and(|p| has_majority(p, members)) {
            self.decide(i, at, out);
        }
    }

    /// Schedules open proposal `i`, decided at `at`, and cancels the open proposals its change
    /// makes invalid.
    fn decide(&mut self, i: usize, at: u64, out: &mut Vec<Applied>) {
        let p = self.open.remove(i);
        let action = p.proposal.action;
        let switch_at = self.params.switch_height(at);
        // Decisions come in non-decreasing height order, so `switch_at` is never below the last
        // switch point: it either joins it or starts a new one.
        match self.switches.last_mut() {
            Some(last) if last.height == switch_at => action.apply_to(&mut last.authorities),
            last => {
                let mut authorities = last.map(|l| l.authorities.clone()).unwrap_or_default();
                action.apply_to(&mut authorities);
                self.switches.push(SwitchPoint {
                    height: switch_at,
                    authorities,
                });
            }
        }
        let change = ScheduledChange {
            proposal: p.id,
            action,
            decided_at: at,
            switch_at,
        };
        self.changes.push(change.clone());
        self.closed
            .insert(p.id, ProposalStatus::Decided { at, switch_at });
        out.push(Applied::Scheduled(change));

        let mut j = 0;
        while j < self.open.len() {
            match self.check_action(&self.open[j].proposal.action, at) {
                Ok(()) => j += 1,
                Err(reason) => {
                    let o = self.open.remove(j);
                    self.closed.insert(o.id, ProposalStatus::Cancelled { at });
                    out.push(Applied::Cancelled {
                        proposal: o.id,
                        action: o.proposal.action,
                        at,
                        reason,
                    });
                }
            }
        }
    }

    /// Whether `action` is valid against the prospective set (after every decided change), at
    /// height `at`.
    fn check_action(&self, action: &GovernanceAction, at: u64) -> Result<(), ItemError> {
        let prospective = self
            .switches
            .last()
            .map_or(&[][..], |p| p.authorities.as_slice());
        let key = action.key();
        let pending = self
            .changes
            .iter()
            .rev()
            .find(|c| c.switch_at > at && c.action.key() == key);
        match action {
            GovernanceAction::Add(k) => {
                if prospective.contains(k) {
                    return Err(match pending {
                        Some(c) if matches!(c.action, GovernanceAction::Add(_)) => {
                            ItemError::AdditionScheduled {
                                key: *k,
                                switch_at: c.switch_at,
                            }
                        }
                        _ => ItemError::AlreadyAuthority(*k),
                    });
                }
                if !usable_key(k) {
                    return Err(ItemError::InvalidKey(*k));
                }
                if prospective.len() >= MAX_AUTHORITIES {
                    return Err(ItemError::SetFull {
                        max: MAX_AUTHORITIES,
                    });
                }
            }
            GovernanceAction::Remove(k) => {
                if !prospective.contains(k) {
                    return Err(match pending {
                        Some(c) if matches!(c.action, GovernanceAction::Remove(_)) => {
                            ItemError::RemovalScheduled {
                                key: *k,
                                switch_at: c.switch_at,
                            }
                        }
                        _ => ItemError::NotAnAuthority(*k),
                    });
                }
                if prospective.len() <= 1 {
                    return Err(ItemError::LastAuthority(*k));
                }
            }
        }
        Ok(())
    }
}

impl AuthoritySource for AuthorityHistory {
    fn authorities_at(&self, height: u64) -> &[PublicKey] {
        AuthorityHistory::authorities_at(self, height)
    }
}

/// More than half of `members` support the proposal.
fn has_majority(p: &OpenProposal, members: &HashSet<PublicKey>) -> bool {
    let support = p.supporters.iter().filter(|k| members.contains(k)).count();
    !members.is_empty() && support >= finality_threshold(members.len())
}

/// A key that can sign: a valid curve point outside the small-order subgroup.
fn usable_key(key: &PublicKey) -> bool {
    ed25519_dalek::VerifyingKey::from_bytes(&key.0).is_ok_and(|k| !k.is_weak())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GENESIS: Hash = Hash([7; 32]);

    fn key(n: u8) -> Keypair {
        Keypair::from_secret([n; 32])
    }

    fn pk(n: u8) -> PublicKey {
        key(n).public()
    }

    fn params(epoch_length: u64, proposal_ttl: u64) -> GovernanceParams {
        GovernanceParams {
            epoch_length,
            proposal_ttl,
        }
    }

    /// Authorities 1..=n.
    fn history(n: u8, params: GovernanceParams) -> AuthorityHistory {
        AuthorityHistory::new(GENESIS, (1..=n).map(pk).collect(), params).expect("valid genesis")
    }

    fn propose(by: u8, action: GovernanceAction, nonce: u64) -> Proposal {
        Proposal::sign(action, nonce, &key(by), &GENESIS)
    }

    fn vote(by: u8, proposal: &Proposal) -> GovernanceItem {
        Vote::sign(proposal.id(), &key(by), &GENESIS).into()
    }

    fn item_error(err: GovernanceError) -> (usize, ItemError) {
        match err {
            GovernanceError::InvalidItem { index, source } => (index, source),
            other => panic!("expected an invalid item, got {other:?}"),
        }
    }

    fn keys(ns: &[u8]) -> Vec<PublicKey> {
        ns.iter().map(|&n| pk(n)).collect()
    }

    #[test]
    fn three_authorities_add_a_fourth() {
        let mut h = history(3, params(10, 1000));
        let add = propose(1, GovernanceAction::Add(pk(4)), 0);
        let applied = h
            .apply_final_block(3, &[add.clone().into(), vote(2, &add)])
            .expect("proposal and one vote");
        let expected = ScheduledChange {
            proposal: add.id(),
            action: GovernanceAction::Add(pk(4)),
            decided_at: 3,
            switch_at: 10,
        };
        assert!(applied.contains(&Applied::Scheduled(expected.clone())));
        assert_eq!(h.scheduled(), &[expected][..]);
        assert!(h.open_proposals().is_empty());
        assert_eq!(
            h.proposal_status(&add.id()),
            Some(ProposalStatus::Decided {
                at: 3,
                switch_at: 10
            })
        );

        assert_eq!(h.authorities_at(3), &keys(&[1, 2, 3])[..]);
        assert_eq!(h.authorities_at(9), &keys(&[1, 2, 3])[..]);
        assert_eq!(h.authorities_at(10), &keys(&[1, 2, 3, 4])[..]);
        assert_eq!(h.authorities_at(500), &keys(&[1, 2, 3, 4])[..]);
        assert_eq!(h.current(), &keys(&[1, 2, 3])[..]);

        // The new authority cannot act before the switch.
        let early = propose(4, GovernanceAction::Remove(pk(3)), 0);
        let err = h
            .check_block(9, &[early.into()])
            .expect_err("not yet an authority");
        assert_eq!(item_error(err).1, ItemError::ProposerNotAuthority(pk(4)));

        let applied = h.apply_final_block(10, &[]).expect("switch height");
        assert_eq!(
            applied,
            vec![Applied::Switched {
                height: 10,
                authorities: keys(&[1, 2, 3, 4])
            }]
        );
        assert_eq!(h.current(), &keys(&[1, 2, 3, 4])[..]);
        assert!(h.scheduled().is_empty());

        // With four authorities a change needs three supporters.
        let remove = propose(1, GovernanceAction::Remove(pk(3)), 0);
        h.apply_final_block(12, &[remove.clone().into(), vote(2, &remove)])
            .expect("two of four");
        assert_eq!(h.open_proposals().len(), 1);
        assert_eq!(h.open_proposals()[0].supporters, keys(&[1, 2]));
        assert!(h.scheduled().is_empty());
        // Decided exactly at an epoch multiple: the switch is the next one, strictly after.
        h.apply_final_block(20, &[vote(4, &remove)])
            .expect("third vote");
        assert_eq!(h.scheduled()[0].decided_at, 20);
        assert_eq!(h.scheduled()[0].switch_at, 30);
        assert_eq!(h.authorities_at(29), &keys(&[1, 2, 3, 4])[..]);
        assert_eq!(h.authorities_at(30), &keys(&[1, 2, 4])[..]);
    }

    #[test]
    fn removal_keeps_the_order_of_the_others() {
        let mut h = history(3, params(5, 100));
        let remove = propose(3, GovernanceAction::Remove(pk(2)), 0);
        h.apply_final_block(7, &[remove.clone().into()])
            .expect("proposal");
        h.apply_final_block(8, &[vote(1, &remove)]).expect("vote");
        assert_eq!(h.scheduled()[0].switch_at, 10);
        assert_eq!(h.authorities_at(9), &keys(&[1, 2, 3])[..]);
        assert_eq!(h.authorities_at(10), &keys(&[1, 3])[..]);

        // The removed authority still votes until the switch, and no longer from it.
        let add = propose(1, GovernanceAction::Add(pk(5)), 0);
        h.apply_final_block(9, &[add.clone().into()])
            .expect("proposal before the switch");
        let err = h
            .check_block(10, &[vote(2, &add)])
            .expect_err("removed at 10");
        assert_eq!(item_error(err).1, ItemError::VoterNotAuthority(pk(2)));
        // From the switch on, the key is simply not an authority.
        let again = propose(1, GovernanceAction::Remove(pk(2)), 1);
        let err = h.check_block(10, &[again.into()]).expect_err("gone");
        assert_eq!(item_error(err).1, ItemError::NotAnAuthority(pk(2)));
    }

    #[test]
    fn minority_expires_and_the_action_can_be_proposed_again() {
        let mut h = history(3, params(10, 5));
        let add = propose(1, GovernanceAction::Add(pk(4)), 0);
        h.apply_final_block(2, &[add.clone().into()])
            .expect("proposal");
        assert_eq!(h.open_proposals()[0].expires_at, 7);

        // A second proposal of the same action is refused while the first is open.
        let rival = propose(2, GovernanceAction::Add(pk(4)), 0);
        let err = h.check_block(3, &[rival.into()]).expect_err("already open");
        assert_eq!(
            item_error(err).1,
            ItemError::ActionAlreadyProposed {
                action: GovernanceAction::Add(pk(4)),
                open: add.id()
            }
        );
        // The last height at which a vote counts is expires_at - 1.
        h.check_block(6, &[vote(2, &add)]).expect("still open at 6");

        // Skipped heights count as empty blocks: expiry happens at 7 even when applying 8.
        let applied = h.apply_final_block(8, &[]).expect("empty block");
        assert_eq!(
            applied,
            vec![Applied::Expired {
                proposal: add.id(),
                action: GovernanceAction::Add(pk(4)),
                at: 7
            }]
        );
        assert!(h.open_proposals().is_empty());
        assert!(h.changes().is_empty());
        assert_eq!(h.authorities_at(1000), &keys(&[1, 2, 3])[..]);

        let err = h.check_block(9, &[vote(2, &add)]).expect_err("expired");
        assert_eq!(
            item_error(err).1,
            ItemError::ProposalExpired {
                proposal: add.id(),
                at: 7
            }
        );
        let err = h
            .check_block(9, &[add.clone().into()])
            .expect_err("same id again");
        assert_eq!(item_error(err).1, ItemError::DuplicateProposal(add.id()));

        let again = propose(1, GovernanceAction::Add(pk(4)), 1);
        assert_ne!(again.id(), add.id());
        h.apply_final_block(9, &[again.clone().into(), vote(3, &again)])
            .expect("new nonce");
        assert_eq!(h.scheduled()[0].switch_at, 10);
        assert_eq!(h.authorities_at(10), &keys(&[1, 2, 3, 4])[..]);
    }

    #[test]
    fn vote_from_a_non_authority_is_rejected() {
        let mut h = history(3, params(10, 100));
        let add = propose(1, GovernanceAction::Add(pk(4)), 0);
        h.apply_final_block(1, &[add.clone().into()])
            .expect("proposal");
        let err = h
            .apply_final_block(2, &[vote(9, &add)])
            .expect_err("outsider");
        assert_eq!(item_error(err), (0, ItemError::VoterNotAuthority(pk(9))));
        let outsider = propose(9, GovernanceAction::Add(pk(8)), 0);
        let err = h
            .apply_final_block(2, &[outsider.into()])
            .expect_err("outsider");
        assert_eq!(item_error(err).1, ItemError::ProposerNotAuthority(pk(9)));
    }

    #[test]
    fn signature_from_another_network_is_rejected() {
        let other = Hash([8; 32]);
        let mut h = history(3, params(10, 100));
        let foreign = Proposal::sign(GovernanceAction::Add(pk(4)), 0, &key(1), &other);
        assert!(!foreign.verify(&GENESIS));
        assert!(foreign.verify(&other));
        let err = h
            .check_block(1, &[foreign.into()])
            .expect_err("other network");
        assert_eq!(item_error(err).1, ItemError::BadProposalSignature(pk(1)));

        let add = propose(1, GovernanceAction::Add(pk(4)), 0);
        h.apply_final_block(1, &[add.clone().into()])
            .expect("proposal");
        let foreign_vote = Vote::sign(add.id(), &key(2), &other);
        let err = h
            .check_block(2, &[foreign_vote.into()])
            .expect_err("other network");
        assert_eq!(item_error(err).1, ItemError::BadVoteSignature(pk(2)));

        // A signature over a different action does not carry over.
        let mut forged = add.clone();
        forged.action = GovernanceAction::Add(pk(5));
        forged.nonce = 1;
        let err = h.check_block(2, &[forged.into()]).expect_err("forged");
        assert_eq!(item_error(err).1, ItemError::BadProposalSignature(pk(1)));
    }

    #[test]
    fn duplicate_votes_are_rejected() {
        let mut h = history(7, params(10, 100));
        let add = propose(1, GovernanceAction::Add(pk(8)), 0);
        h.apply_final_block(1, &[add.clone().into(), vote(2, &add)])
            .expect("two of seven");
        let err = h
            .check_block(2, &[vote(2, &add)])
            .expect_err("second vote of 2");
        assert_eq!(
            item_error(err).1,
            ItemError::DuplicateVote {
                proposal: add.id(),
                voter: pk(2)
            }
        );
        // The proposal already counts as its proposer's vote.
        let err = h
            .check_block(2, &[vote(1, &add)])
            .expect_err("proposer votes");
        assert_eq!(
            item_error(err).1,
            ItemError::DuplicateVote {
                proposal: add.id(),
                voter: pk(1)
            }
        );
        // Within one block too.
        let err = h
            .check_block(2, &[vote(3, &add), vote(3, &add)])
            .expect_err("twice in a block");
        assert_eq!(item_error(err).0, 1);
        // Once decided, further votes are invalid.
        h.apply_final_block(2, &[vote(3, &add), vote(4, &add)])
            .expect("four of seven");
        let err = h.check_block(3, &[vote(5, &add)]).expect_err("decided");
        assert_eq!(
            item_error(err).1,
            ItemError::ProposalDecided {
                proposal: add.id(),
                at: 2
            }
        );
        let unknown = Vote::sign(Hash([1; 32]), &key(5), &GENESIS);
        let err = h.check_block(3, &[unknown.into()]).expect_err("unknown");
        assert_eq!(item_error(err).1, ItemError::UnknownProposal(Hash([1; 32])));
    }

    #[test]
    fn the_last_authority_cannot_be_removed() {
        let mut solo = history(1, params(10, 100));
        let err = solo
            .check_block(1, &[propose(1, GovernanceAction::Remove(pk(1)), 0).into()])
            .expect_err("last authority");
        assert_eq!(item_error(err).1, ItemError::LastAuthority(pk(1)));

        // One authority is its own majority: a proposal alone decides.
        let add = propose(1, GovernanceAction::Add(pk(2)), 0);
        solo.apply_final_block(4, &[add.into()]).expect("add");
        assert_eq!(solo.authorities_at(10), &keys(&[1, 2])[..]);

        // Two removals that would together empty the set: deciding the first cancels the second.
        let mut h = history(2, params(10, 100));
        let r1 = propose(1, GovernanceAction::Remove(pk(1)), 0);
        let r2 = propose(2, GovernanceAction::Remove(pk(2)), 0);
        h.apply_final_block(1, &[r1.clone().into(), r2.clone().into()])
            .expect("both valid alone");
        let applied = h.apply_final_block(2, &[vote(2, &r1)]).expect("decide r1");
        assert!(applied.contains(&Applied::Cancelled {
            proposal: r2.id(),
            action: GovernanceAction::Remove(pk(2)),
            at: 2,
            reason: ItemError::LastAuthority(pk(2)),
        }));
        assert!(h.open_proposals().is_empty());
        assert_eq!(h.authorities_at(10), &keys(&[2])[..]);
        let err = h.check_block(3, &[vote(1, &r2)]).expect_err("cancelled");
        assert_eq!(
            item_error(err).1,
            ItemError::ProposalCancelled {
                proposal: r2.id(),
                at: 2
            }
        );
    }

    #[test]
    fn invalid_actions_are_refused() {
        let mut h = history(3, params(10, 100));
        let check = |h: &AuthorityHistory, action| {
            let err = h
                .check_block(h.height() + 1, &[propose(1, action, 99).into()])
                .expect_err("refused");
            item_error(err).1
        };
        assert_eq!(
            check(&h, GovernanceAction::Add(pk(2))),
            ItemError::AlreadyAuthority(pk(2))
        );
        assert_eq!(
            check(&h, GovernanceAction::Remove(pk(7))),
            ItemError::NotAnAuthority(pk(7))
        );
        // The identity point has small order: no one can sign for it.
        let weak =
            PublicKey::from_hex("0100000000000000000000000000000000000000000000000000000000000000")
                .expect("hex");
        assert_eq!(
            check(&h, GovernanceAction::Add(weak)),
            ItemError::InvalidKey(weak)
        );

        let add = propose(1, GovernanceAction::Add(pk(4)), 0);
        let remove = propose(2, GovernanceAction::Remove(pk(3)), 0);
        h.apply_final_block(
            5,
            &[
                add.clone().into(),
                vote(2, &add),
                remove.clone().into(),
                vote(3, &remove),
            ],
        )
        .expect("two changes");
        assert_eq!(
            check(&h, GovernanceAction::Add(pk(4))),
            ItemError::AdditionScheduled {
                key: pk(4),
                switch_at: 10
            }
        );
        assert_eq!(
            check(&h, GovernanceAction::Remove(pk(3))),
            ItemError::RemovalScheduled {
                key: pk(3),
                switch_at: 10
            }
        );
        // A key scheduled to leave may be proposed back; a scheduled newcomer may be removed.
        h.check_block(6, &[propose(1, GovernanceAction::Add(pk(3)), 0).into()])
            .expect("re-add a leaving key");
        h.check_block(6, &[propose(1, GovernanceAction::Remove(pk(4)), 0).into()])
            .expect("remove a newcomer");
        // Both changes switch at 10, in decision order.
        assert_eq!(h.authorities_at(10), &keys(&[1, 2, 4])[..]);
        assert_eq!(h.switch_points().len(), 2);
    }

    #[test]
    fn too_many_open_proposals_per_proposer() {
        let mut h = history(3, params(10, 100));
        let items: Vec<GovernanceItem> = (0..MAX_OPEN_PROPOSALS_PER_PROPOSER as u8)
            .map(|i| propose(1, GovernanceAction::Add(pk(10 + i)), 0).into())
            .collect();
        h.apply_final_block(1, &items).expect("up to the limit");
        let err = h
            .check_block(2, &[propose(1, GovernanceAction::Add(pk(50)), 0).into()])
            .expect_err("over the limit");
        assert_eq!(
            item_error(err).1,
            ItemError::TooManyOpenProposals {
                proposer: pk(1),
                max: MAX_OPEN_PROPOSALS_PER_PROPOSER
            }
        );
        h.check_block(2, &[propose(2, GovernanceAction::Add(pk(50)), 0).into()])
            .expect("another proposer");
    }

    #[test]
    fn an_invalid_item_invalidates_the_whole_block() {
        let mut h = history(3, params(10, 100));
        let add = propose(1, GovernanceAction::Add(pk(4)), 0);
        h.apply_final_block(1, &[add.clone().into()])
            .expect("proposal");
        let before = h.clone();
        let other = propose(2, GovernanceAction::Remove(pk(3)), 0);
        let err = h
            .apply_final_block(2, &[other.into(), vote(2, &add), vote(9, &add)])
            .expect_err("third item invalid");
        assert_eq!(item_error(err), (2, ItemError::VoterNotAuthority(pk(9))));
        assert_eq!(h, before);
        assert_eq!(h.height(), 1);
        assert!(h.scheduled().is_empty());
        // The same height can then be applied with valid items.
        h.apply_final_block(2, &[vote(2, &add)])
            .expect("valid block");
        assert_eq!(h.scheduled().len(), 1);
    }

    #[test]
    fn check_block_does_not_change_the_history() {
        let mut h = history(3, params(10, 100));
        let add = propose(1, GovernanceAction::Add(pk(4)), 0);
        let items = [add.clone().into(), vote(3, &add)];
        let before = h.clone();
        let checked = h.check_block(4, &items).expect("valid");
        assert_eq!(h, before);
        let applied = h.apply_final_block(4, &items).expect("valid");
        assert_eq!(checked, applied);
    }

    #[test]
    fn heights_apply_in_increasing_order_once() {
        let mut h = history(3, params(10, 100));
        let err = h.apply_final_block(0, &[]).expect_err("genesis height");
        assert_eq!(err, GovernanceError::HeightNotAfter { height: 0, last: 0 });
        h.apply_final_block(5, &[]).expect("first");
        for height in [5, 4] {
            let err = h.apply_final_block(height, &[]).expect_err("not after 5");
            assert_eq!(err, GovernanceError::HeightNotAfter { height, last: 5 });
            assert_eq!(err.reason(), "height_order");
        }
        let err = h.apply_final_block(u64::MAX, &[]).expect_err("overflow");
        assert_eq!(err, GovernanceError::HeightOverflow(u64::MAX));
        let many =
            vec![vote(1, &propose(1, GovernanceAction::Add(pk(4)), 0)); MAX_ITEMS_PER_BLOCK + 1];
        let err = h.check_block(6, &many).expect_err("too many");
        assert_eq!(
            err,
            GovernanceError::TooManyItems {
                count: MAX_ITEMS_PER_BLOCK + 1,
                max: MAX_ITEMS_PER_BLOCK
            }
        );
    }

    #[test]
    fn a_switch_recounts_open_proposals() {
        // Four authorities; Add(5) has 2 of 4 supporters. Removing 4 brings the set to three, in
        // which the same two supporters are a majority: decided at the switch height.
        let mut h = history(4, params(10, 100));
        let add = propose(1, GovernanceAction::Add(pk(5)), 0);
        let remove = propose(3, GovernanceAction::Remove(pk(4)), 0);
        h.apply_final_block(
            3,
            &[
                add.clone().into(),
                vote(2, &add),
                remove.clone().into(),
                vote(1, &remove),
            ],
        )
        .expect("both open");
        assert_eq!(h.open_proposals().len(), 2);
        h.apply_final_block(4, &[vote(2, &remove)])
            .expect("remove decided");
        assert_eq!(h.open_proposals().len(), 1);

        let applied = h.apply_final_block(15, &[]).expect("past the switch");
        assert_eq!(
            applied,
            vec![
                Applied::Switched {
                    height: 10,
                    authorities: keys(&[1, 2, 3])
                },
                Applied::Scheduled(ScheduledChange {
                    proposal: add.id(),
                    action: GovernanceAction::Add(pk(5)),
                    decided_at: 10,
                    switch_at: 20
                }),
            ]
        );
        assert_eq!(h.authorities_at(19), &keys(&[1, 2, 3])[..]);
        assert_eq!(h.authorities_at(20), &keys(&[1, 2, 3, 5])[..]);
        // Supporters that leave stop counting.
        let mut h = history(4, params(10, 100));
        let add = propose(4, GovernanceAction::Add(pk(5)), 0);
        let remove = propose(1, GovernanceAction::Remove(pk(4)), 0);
        h.apply_final_block(
            1,
            &[
                add.clone().into(),
                vote(3, &add),
                remove.clone().into(),
                vote(2, &remove),
                vote(3, &remove),
            ],
        )
        .expect("remove decided");
        h.apply_final_block(12, &[]).expect("past the switch");
        assert_eq!(h.open_proposals().len(), 1);
        assert_eq!(h.authorities_at(100), &keys(&[1, 2, 3])[..]);
        // Of the supporters 4 and 3, only 3 is still a member: one more vote decides.
        h.apply_final_block(13, &[vote(1, &add)]).expect("decided");
        assert_eq!(h.authorities_at(20), &keys(&[1, 2, 3, 5])[..]);
    }

    #[test]
    fn replaying_the_same_blocks_gives_the_same_history() {
        let p = params(4, 6);
        let add5 = propose(1, GovernanceAction::Add(pk(5)), 0);
        let rm2 = propose(3, GovernanceAction::Remove(pk(2)), 0);
        let add6 = propose(2, GovernanceAction::Add(pk(6)), 0);
        let add6b = propose(4, GovernanceAction::Add(pk(6)), 1);
        let rm4 = propose(5, GovernanceAction::Remove(pk(4)), 0);
        let blocks: Vec<(u64, Vec<GovernanceItem>)> = vec![
            (1, vec![add5.clone().into(), add6.clone().into()]),
            (3, vec![vote(2, &add5), rm2.clone().into()]),
            (4, vec![vote(3, &add5), vote(1, &rm2)]),
            (6, vec![vote(4, &rm2)]),
            (8, vec![rm4.clone().into()]),
            (11, vec![add6b.clone().into(), vote(1, &add6b)]),
            (13, vec![vote(3, &add6b), vote(1, &rm4)]),
        ];
        let replay = |dense: bool| {
            let mut h = history(4, p);
            let mut events = Vec::new();
            let mut next = 1;
            for (height, items) in &blocks {
                if dense {
                    while next < *height {
                        events.extend(h.apply_final_block(next, &[]).expect("empty"));
                        next += 1;
                    }
                }
                events.extend(h.apply_final_block(*height, items).expect("valid"));
                next = height + 1;
            }
            events.extend(h.apply_final_block(30, &[]).expect("tail"));
            (h, events)
        };
        let (a, events_a) = replay(false);
        let (b, events_b) = replay(false);
        let (c, events_c) = replay(true);
        assert_eq!(a, b);
        assert_eq!(events_a, events_b);
        assert_eq!(a, c);
        assert_eq!(events_a, events_c);
        for height in 0..40 {
            assert_eq!(a.authorities_at(height), c.authorities_at(height));
        }
        // add5 decided at 4 and rm2 at 6, both switching at 8 in that order; add6 expired at 7;
        // add6b decided at 13 (switch 16); rm4 expired at 14 with 2 of 4.
        assert_eq!(a.authorities_at(7), &keys(&[1, 2, 3, 4])[..]);
        assert_eq!(a.authorities_at(8), &keys(&[1, 3, 4, 5])[..]);
        assert_eq!(a.authorities_at(16), &keys(&[1, 3, 4, 5, 6])[..]);
        assert_eq!(
            a.proposal_status(&add6.id()),
            Some(ProposalStatus::Expired { at: 7 })
        );
        assert_eq!(
            a.proposal_status(&rm4.id()),
            Some(ProposalStatus::Expired { at: 14 })
        );
    }

    #[test]
    fn select_items_keeps_what_fits() {
        let mut h = history(3, params(10, 100));
        let add = propose(1, GovernanceAction::Add(pk(4)), 0);
        h.apply_final_block(1, &[add.clone().into()])
            .expect("proposal");
        let candidates = vec![
            vote(9, &add),
            vote(2, &add),
            vote(3, &add), // the proposal is decided by then
            propose(2, GovernanceAction::Remove(pk(3)), 0).into(),
        ];
        let kept = h.select_items(2, &candidates).expect("height");
        assert_eq!(kept, vec![candidates[1].clone(), candidates[3].clone()]);
        h.apply_final_block(2, &kept)
            .expect("selected items are valid");
    }

    #[test]
    fn construction_is_validated() {
        assert_eq!(
            AuthorityHistory::new(GENESIS, vec![], GovernanceParams::default()),
            Err(GovernanceError::NoAuthorities)
        );
        assert_eq!(
            AuthorityHistory::new(GENESIS, keys(&[1, 2, 1]), GovernanceParams::default()),
            Err(GovernanceError::DuplicateAuthority(pk(1)))
        );
        assert_eq!(
            AuthorityHistory::new(GENESIS, keys(&[1]), params(0, 5)),
            Err(GovernanceError::InvalidParams {
                what: "epoch_length"
            })
        );
        assert_eq!(
            AuthorityHistory::new(GENESIS, keys(&[1]), params(5, 0)),
            Err(GovernanceError::InvalidParams {
                what: "proposal_ttl"
            })
        );
        let genesis = Genesis {
            network_id: "test".into(),
            authorities: keys(&[1, 2]),
            block_interval_ms: 1000,
            governance: Default::default(),
        };
        let h = AuthorityHistory::from_genesis(&genesis, GovernanceParams::default())
            .expect("valid genesis");
        assert_eq!(h.genesis_hash(), &genesis.hash());
        assert_eq!(AuthoritySource::authorities_at(&h, 7), &keys(&[1, 2])[..]);
        assert_eq!(h.settled_below(), 10);
        let p = GovernanceParams::default();
        assert_eq!((p.switch_height(0), p.switch_height(9)), (10, 10));
        assert_eq!((p.switch_height(10), p.switch_height(11)), (20, 20));
    }

    #[test]
    fn items_round_trip() {
        let proposal = propose(1, GovernanceAction::Remove(pk(2)), 42);
        let items = [
            GovernanceItem::from(proposal.clone()),
            propose(3, GovernanceAction::Add(pk(4)), u64::MAX).into(),
            vote(2, &proposal),
        ];
        for item in &items {
            let bytes = item.encode();
            assert_eq!(bytes.len(), item.encoded_len());
            let back = GovernanceItem::decode(&bytes).expect("round trip");
            assert_eq!(&back, item);
            assert_eq!(back.id(), item.id());
            assert!(back.verify(&GENESIS));
        }
        assert_eq!(
            Proposal::decode(&proposal.encode()).expect("proposal"),
            proposal
        );
        // The id does not depend on the signature; the item id does.
        let mut unsigned = proposal.clone();
        unsigned.signature = Signature::default();
        assert_eq!(unsigned.id(), proposal.id());
        assert_ne!(
            GovernanceItem::from(unsigned).id(),
            GovernanceItem::from(proposal).id()
        );
    }

    #[test]
    fn hostile_bytes_are_decode_errors() {
        let item: GovernanceItem = propose(1, GovernanceAction::Add(pk(2)), 3).into();
        let bytes = item.encode();
        for len in 0..bytes.len() {
            assert!(matches!(
                GovernanceItem::decode(&bytes[..len]),
                Err(DecodeError::Truncated { .. })
            ));
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            GovernanceItem::decode(&trailing),
            Err(DecodeError::TrailingBytes(1))
        );
        let mut bad_kind = bytes.clone();
        bad_kind[0] = 9;
        assert_eq!(
            GovernanceItem::decode(&bad_kind),
            Err(DecodeError::InvalidTag {
                what: "governance item",
                tag: 9
            })
        );
        let mut bad_version = bytes.clone();
        bad_version[1] = 2;
        assert_eq!(
            GovernanceItem::decode(&bad_version),
            Err(DecodeError::UnsupportedVersion {
                what: "governance proposal",
                version: 2
            })
        );
        let mut bad_action = bytes;
        bad_action[2] = 0;
        assert_eq!(
            GovernanceItem::decode(&bad_action),
            Err(DecodeError::InvalidTag {
                what: "governance action",
                tag: 0
            })
        );
        let vote_bytes = vote(1, &propose(1, GovernanceAction::Add(pk(2)), 3)).encode();
        let mut bad_vote = vote_bytes;
        bad_vote[1] = 0;
        assert_eq!(
            GovernanceItem::decode(&bad_vote),
            Err(DecodeError::UnsupportedVersion {
                what: "governance vote",
                version: 0
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if let Ok(item) = GovernanceItem::decode(&bytes) {
                proptest::prop_assert_eq!(item.encode(), bytes);
            }
        }
    }
}
