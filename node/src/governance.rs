//! Authority governance on a running node.
//!
//! [`Governance`] keeps the [`AuthorityHistory`] folded from the final chain, the proposals and
//! votes this node signed that still wait for one of its blocks, and answers the chain task's
//! question "which authorities are in force at height h on this branch". A non-final branch may
//! carry governance items of its own, so its history is the final history plus those items
//! ([`Governance::branch`]); with no governance activity anywhere that is the final history
//! itself, without a copy.
//!
//! An authority's proposal or vote travels in that authority's own next block: nodes do not
//! gossip items on their own. (A block may carry items signed by others; each item's own
//! signature and its signer's membership are what count.)

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use provchain_consensus::{
    Applied, AuthorityHistory, Block, ForkTree, Genesis, GovernanceAction, GovernanceError,
    GovernanceItem, Hash, Keypair, Proposal, PublicKey, Vote,
};
use provchain_storage::{StorageError, Store};
use serde::Serialize;
use thiserror::Error;

/// A change an operator asks this node to sign.
#[derive(Debug, Clone)]
pub enum GovernanceRequest {
    Propose(GovernanceAction),
    Vote(Hash),
}

/// A signed item accepted for this node's next block.
#[derive(Debug, Clone, Serialize)]
pub struct GovernanceAccepted {
    /// `"proposal"` or `"vote"`.
    pub kind: &'static str,
    /// The proposal the item opens or supports.
    pub proposal: Hash,
    /// The item's own id.
    pub item: Hash,
}

#[derive(Debug, Error)]
pub enum GovernanceSubmitError {
    #[error(
        "this node is not an authority of the set in force (height {height}); only authorities propose and vote"
    )]
    NotAuthority { height: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error("the node is shutting down")]
    Closed,
}

/// `GET /api/authorities`.
#[derive(Debug, Clone, Serialize)]
pub struct AuthoritiesView {
    /// The best block the view is computed at (its governance items included, final or not).
    pub height: u64,
    pub final_height: u64,
    pub epoch_length: u64,
    pub proposal_ttl: u64,
    /// In force for the next block on the best chain, in slot order.
    pub authorities: Vec<PublicKey>,
    /// Blocks needed on top of a block, from distinct authorities, for it to be final.
    pub finality_threshold: usize,
    /// Decided changes not yet in force.
    pub scheduled: Vec<ScheduledView>,
    /// Proposals still collecting votes.
    pub proposals: Vec<ProposalView>,
    /// Items this node signed that no block on the best chain carries yet.
    pub pending: Vec<PendingView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduledView {
    pub proposal: Hash,
    pub action: &'static str,
    pub key: PublicKey,
    pub decided_at: u64,
    pub switch_at: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProposalView {
    pub id: Hash,
    pub action: &'static str,
    pub key: PublicKey,
    pub proposer: PublicKey,
    pub proposed_at: u64,
    pub expires_at: u64,
    /// The proposer, then every voter.
    pub supporters: Vec<PublicKey>,
    /// Supporters that belong to the set in force (`authorities`): what counts.
    pub support: usize,
    /// Supporters needed from the set in force (more than half of it).
    pub needed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct PendingView {
    pub item: Hash,
    pub kind: &'static str,
    pub proposal: Hash,
}

/// `("add" | "remove", key)`.
pub fn action_parts(a: &GovernanceAction) -> (&'static str, PublicKey) {
    match a {
        GovernanceAction::Add(k) => ("add", *k),
        GovernanceAction::Remove(k) => ("remove", *k),
    }
}

fn item_parts(item: &GovernanceItem) -> (&'static str, Hash) {
    match item {
        GovernanceItem::Proposal(p) => ("proposal", p.id()),
        GovernanceItem::Vote(v) => ("vote", v.proposal),
    }
}

/// The node's governance state; owned by the chain task.
pub struct Governance {
    history: AuthorityHistory,
    /// Items this node signed and the final height at the time, until a final block carries
    /// them or they can no longer apply.
    own: Vec<(GovernanceItem, u64)>,
}

impl Governance {
    /// Rebuilds the history from genesis and the final blocks that carried governance items.
    pub fn open(genesis: &Genesis, store: &Store) -> Result<Self, StorageError> {
        let corrupt = |e: GovernanceError| StorageError::corrupt("governance history", e);
        let mut history = AuthorityHistory::from_genesis(genesis, genesis.governance)
            .map_err(|e| StorageError::corrupt("genesis", e))?;
        for height in store.governance_heights()? {
            let block = store.block_by_height(height)?.ok_or_else(|| {
                StorageError::corrupt(
                    "governance index",
                    format!("no final block at height {height}"),
                )
            })?;
            history
                .apply_final_block(height, &block.governance)
                .map_err(corrupt)?;
        }
        let final_height = store.final_head()?.height;
        if final_height > history.height() {
            history
                .apply_final_block(final_height, &[])
                .map_err(corrupt)?;
        }
        Ok(Self {
            history,
            own: Vec::new(),
        })
    }

    /// The history of the final chain.
    pub fn final_history(&self) -> &AuthorityHistory {
        &self.history
    }

    /// The history on the branch ending at `tip` (a block in `tree`, or the final head): the
    /// final history plus the governance items of the non-final blocks up to `tip`, advanced to
    /// `tip`'s height. `authorities_at(tip height + 1)` of the result is the set a child of
    /// `tip` is checked against.
    pub fn branch<'a, 'b>(
        &'a self,
        tree: &ForkTree,
        body: impl Fn(&Hash) -> Option<&'b Block>,
        tip: &Hash,
    ) -> Result<Cow<'a, AuthorityHistory>, GovernanceError> {
        let tip_height = tree.header(tip).map_or(self.history.height(), |h| h.height);
        let carrying: Vec<&Block> = tree
            .chain_to(tip)
            .iter()
            .filter_map(body)
            .filter(|b| !b.governance.is_empty())
            .collect();
        let quiet = self.history.open_proposals().is_empty() && self.history.scheduled().is_empty();
        if carrying.is_empty() && (quiet || tip_height <= self.history.height()) {
            return Ok(Cow::Borrowed(&self.history));
        }
        let mut h = self.history.clone();
        for b in carrying {
            h.apply_final_block(b.header.height, &b.governance)?;
        }
        if tip_height > h.height() {
            h.apply_final_block(tip_height, &[])?;
        }
        Ok(Cow::Owned(h))
    }

    /// Folds newly final blocks into the history. The blocks were validated against the same
    /// rules on their branch, so an error here means the final chain breaks the rules.
    pub fn apply_final(&mut self, blocks: &[Arc<Block>]) -> Result<Vec<Applied>, GovernanceError> {
        let mut out = Vec::new();
        let mut carried = HashSet::new();
        for b in blocks.iter().filter(|b| !b.governance.is_empty()) {
            out.extend(
                self.history
                    .apply_final_block(b.header.height, &b.governance)?,
            );
            carried.extend(b.governance.iter().map(GovernanceItem::id));
        }
        if let Some(last) = blocks.last()
            && last.header.height > self.history.height()
        {
            out.extend(self.history.apply_final_block(last.header.height, &[])?);
        }
        let history = &self.history;
        let ttl = history.params().proposal_ttl;
        self.own.retain(|(item, signed_at)| {
            if carried.contains(&item.id()) || history.height() > signed_at.saturating_add(ttl) {
                return false;
            }
            match item {
                // Once a final block carried it, the history knows it.
                GovernanceItem::Proposal(p) => history.proposal_status(&p.id()).is_none(),
                // A vote for a proposal that is no longer open can never apply.
                GovernanceItem::Vote(v) => !matches!(
                    history.proposal_status(&v.proposal),
                    Some(s) if !matches!(s, provchain_consensus::ProposalStatus::Open { .. })
                ),
            }
        });
        Ok(out)
    }

    /// Signs `request` with `key` if it is valid for the next block on `branch` (at `next`).
    pub fn submit(
        &mut self,
        request: GovernanceRequest,
        key: &Keypair,
        branch: &AuthorityHistory,
        next: u64,
        nonce: u64,
    ) -> Result<GovernanceAccepted, GovernanceSubmitError> {
        if !branch.authorities_at(next).contains(&key.public()) {
            return Err(GovernanceSubmitError::NotAuthority { height: next });
        }
        let genesis_hash = *branch.genesis_hash();
        let item: GovernanceItem = match request {
            GovernanceRequest::Propose(action) => {
                Proposal::sign(action, nonce, key, &genesis_hash).into()
            }
            GovernanceRequest::Vote(proposal) => Vote::sign(proposal, key, &genesis_hash).into(),
        };
        let (kind, proposal) = item_parts(&item);
        let id = item.id();
        if self.own.iter().any(|(i, _)| i.id() == id) {
            return Ok(GovernanceAccepted {
                kind,
                proposal,
                item: id,
            });
        }
        branch
            .check_block(next, std::slice::from_ref(&item))
            .map_err(|e| match e {
                GovernanceError::InvalidItem { source, .. } => {
                    GovernanceSubmitError::Invalid(source.to_string())
                }
                e => GovernanceSubmitError::Invalid(e.to_string()),
            })?;
        let mut candidates = self.candidates();
        candidates.push(item.clone());
        let kept = branch
            .select_items(next, &candidates)
            .map_err(|e| GovernanceSubmitError::Invalid(e.to_string()))?;
        if !kept.contains(&item) {
            return Err(GovernanceSubmitError::Invalid(
                "conflicts with a proposal or vote this node signed that no block carries yet"
                    .into(),
            ));
        }
        self.own.push((item, self.history.height()));
        Ok(GovernanceAccepted {
            kind,
            proposal,
            item: id,
        })
    }

    /// This node's items not yet final, for its next block (the producer keeps the valid ones).
    pub fn candidates(&self) -> Vec<GovernanceItem> {
        self.own.iter().map(|(i, _)| i.clone()).collect()
    }

    /// The read model for `GET /api/authorities`, on the best branch.
    pub fn view(
        &self,
        branch: &AuthorityHistory,
        best_height: u64,
        final_height: u64,
        best_chain_items: &HashSet<Hash>,
    ) -> AuthoritiesView {
        let next = best_height + 1;
        let authorities = branch.authorities_at(next).to_vec();
        let scheduled = branch
            .changes()
            .iter()
            .filter(|c| c.switch_at > next)
            .map(|c| {
                let (action, key) = action_parts(&c.action);
                ScheduledView {
                    proposal: c.proposal,
                    action,
                    key,
                    decided_at: c.decided_at,
                    switch_at: c.switch_at,
                }
            })
            .collect();
        let proposals = branch
            .open_proposals()
            .iter()
            .map(|p| {
                let (action, key) = action_parts(&p.proposal.action);
                ProposalView {
                    id: p.id,
                    action,
                    key,
                    proposer: p.proposal.proposer,
                    proposed_at: p.proposed_at,
                    expires_at: p.expires_at,
                    support: p
                        .supporters
                        .iter()
                        .filter(|k| authorities.contains(k))
                        .count(),
                    supporters: p.supporters.clone(),
                    needed: provchain_consensus::finality_threshold(authorities.len()),
                }
            })
            .collect();
        let pending = self
            .own
            .iter()
            .filter(|(i, _)| !best_chain_items.contains(&i.id()))
            .map(|(i, _)| {
                let (kind, proposal) = item_parts(i);
                PendingView {
                    item: i.id(),
                    kind,
                    proposal,
                }
            })
            .collect();
        AuthoritiesView {
            height: best_height,
            final_height,
            epoch_length: branch.params().epoch_length,
            proposal_ttl: branch.params().proposal_ttl,
            finality_threshold: provchain_consensus::finality_threshold(authorities.len()),
            authorities,
            scheduled,
            proposals,
            pending,
        }
    }
}

/// A short log line for what applying final blocks changed.
pub fn describe(applied: &Applied) -> String {
    match applied {
        Applied::Proposed {
            id,
            action,
            proposer,
            expires_at,
        } => format!("proposal {id} ({action}) by {proposer}, open until height {expires_at}"),
        Applied::Voted { proposal, voter } => format!("{voter} voted for proposal {proposal}"),
        Applied::Scheduled(c) => format!(
            "proposal {} ({}) decided at height {}; in force from height {}",
            c.proposal, c.action, c.decided_at, c.switch_at
        ),
        Applied::Expired {
            proposal,
            action,
            at,
        } => format!("proposal {proposal} ({action}) expired at height {at}"),
        Applied::Cancelled {
            proposal,
            action,
            at,
            reason,
        } => format!("proposal {proposal} ({action}) cancelled at height {at}: {reason}"),
        Applied::Switched {
            height,
            authorities,
        } => format!(
            "authority set switched at height {height}: {} authorities",
            authorities.len()
        ),
    }
}
