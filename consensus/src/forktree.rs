//! Fork choice and finality over the non-final part of the chain.
//!
//! The tree is rooted at the final head. Every non-final block known to the node hangs below it.
//! The best head is the highest block, ties broken by the lowest hash — except that, between
//! equally long branches, an authority takes the one holding the last block it sealed (sealing on
//! both would let its blocks count towards finality on both). A block becomes final once
//! the blocks from it up to the best head (itself included) were sealed by at least
//! `finality_threshold(n)` distinct authorities; it and its ancestors then leave the tree, and
//! every branch that does not descend from the new final head is pruned. Nothing below the root
//! can ever be inserted, so a final block is never reverted.

use std::collections::{HashMap, HashSet};

use thiserror::Error;

use crate::block::BlockHeader;
use crate::crypto::{Hash, PublicKey};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ForkError {
    #[error("block {0} is already known")]
    Known(Hash),
    #[error("parent {0} is not a known non-final block or the final head")]
    UnknownParent(Hash),
}

#[derive(Debug, Clone)]
struct Entry {
    header: BlockHeader,
    children: Vec<Hash>,
}

/// Non-final blocks rooted at the final head.
#[derive(Debug, Clone)]
pub struct ForkTree {
    root_hash: Hash,
    root: BlockHeader,
    nodes: HashMap<Hash, Entry>,
    root_children: Vec<Hash>,
    best: Hash,
    /// This node's sealing key, if it is an authority.
    own_key: Option<PublicKey>,
    /// The tree's block with this node's seal and the highest slot, with that slot: the last
    /// block it sealed, whether it sealed it in this run or learned it again (from its pending
    /// store or a peer) after a restart.
    own_last: Option<(Hash, u64)>,
}

/// What became final in one [`ForkTree::finalize`] call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finalized {
    /// Newly final blocks, lowest height first.
    pub blocks: Vec<(Hash, BlockHeader)>,
    /// Non-final blocks dropped because they conflict with the new final head.
    pub pruned: Vec<Hash>,
}

/// Blocks leaving and joining the best chain when the head moves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    /// No longer on the best chain, highest first.
    pub retracted: Vec<Hash>,
    /// Newly on the best chain, lowest first.
    pub enacted: Vec<Hash>,
}

impl ForkTree {
    pub fn new(final_head: BlockHeader) -> Self {
        let root_hash = final_head.hash();
        Self {
            root_hash,
            root: final_head,
            nodes: HashMap::new(),
            root_children: Vec::new(),
            best: root_hash,
            own_key: None,
            own_last: None,
        }
    }

    pub fn final_head(&self) -> (Hash, &BlockHeader) {
        (self.root_hash, &self.root)
    }

    pub fn best_head(&self) -> (Hash, &BlockHeader) {
        (self.best, self.header(&self.best).unwrap_or(&self.root))
    }

    pub fn header(&self, hash: &Hash) -> Option<&BlockHeader> {
        if *hash == self.root_hash {
            return Some(&self.root);
        }
        self.nodes.get(hash).map(|e| &e.header)
    }

    /// Whether `hash` is the final head or a non-final block in the tree.
    pub fn contains(&self, hash: &Hash) -> bool {
        *hash == self.root_hash || self.nodes.contains_key(hash)
    }

    /// Number of non-final blocks.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Adds a block whose parent is in the tree. Returns whether the best head changed.
    /// Validation is the caller's job; this only tracks structure.
    pub fn insert(&mut self, header: BlockHeader) -> Result<bool, ForkError> {
        let hash = header.hash();
        if self.contains(&hash) {
            return Err(ForkError::Known(hash));
        }
        let parent = header.parent_hash;
        if parent == self.root_hash {
            self.root_children.push(hash);
        } else if let Some(p) = self.nodes.get_mut(&parent) {
            p.children.push(hash);
        } else {
            return Err(ForkError::UnknownParent(parent));
        }
        if self.own_key == Some(header.proposer)
            && self.own_last.is_none_or(|(_, slot)| header.slot > slot)
        {
            self.own_last = Some((hash, header.slot));
        }
        let better = {
            let (best_hash, best) = self.best_head();
            // Ties go to the lowest hash, except that an authority takes the branch holding the
            // last block it sealed: switching on a tie let it seal on two competing branches, its
            // blocks then counted towards finality on both, and two nodes could finalize
            // different blocks at one height. That block is known by its seal, so a restarted
            // authority keeps to it too.
            header.height > best.height
                || (header.height == best.height && {
                    match self.own_last.map(|(own, _)| {
                        (
                            hash == own || self.descends_from(&parent, &own),
                            self.descends_from(&best_hash, &own),
                        )
                    }) {
                        Some((true, false)) => true,
                        Some((false, true)) => false,
                        _ => hash < best_hash,
                    }
                })
        };
        self.nodes.insert(
            hash,
            Entry {
                header,
                children: Vec::new(),
            },
        );
        if better {
            self.best = hash;
        }
        Ok(better)
    }

    /// The key this node seals with: blocks inserted with it are its own, for the tie rule.
    /// Set before the node's pending blocks are inserted at startup.
    pub fn set_own_key(&mut self, key: PublicKey) {
        self.own_key = Some(key);
    }

    /// Whether `ancestor` is `tip` or one of its ancestors in the tree.
    fn descends_from(&self, tip: &Hash, ancestor: &Hash) -> bool {
        let mut cur = *tip;
        loop {
            if cur == *ancestor {
                return true;
            }
            match self.nodes.get(&cur) {
                Some(e) => cur = e.header.parent_hash,
                None => return false,
            }
        }
    }

    /// Hashes from just above the final head up to `hash`, lowest first.
    pub fn chain_to(&self, hash: &Hash) -> Vec<Hash> {
        let mut out = Vec::new();
        let mut cur = *hash;
        while let Some(e) = self.nodes.get(&cur) {
            out.push(cur);
            cur = e.header.parent_hash;
        }
        out.reverse();
        out
    }

    /// The best chain above the final head, lowest first.
    pub fn best_chain(&self) -> Vec<Hash> {
        self.chain_to(&self.best)
    }

    /// Whether `hash` lies on the best chain (the final head counts).
    pub fn is_on_best_chain(&self, hash: &Hash) -> bool {
        let Some(h) = self.header(hash) else {
            return false;
        };
        let mut cur = self.best;
        while let Some(e) = self.nodes.get(&cur) {
            if cur == *hash {
                return true;
            }
            if e.header.height <= h.height {
                return false;
            }
            cur = e.header.parent_hash;
        }
        cur == *hash
    }

    /// The blocks to undo and apply to move from `from` to `to` (both in the tree).
    pub fn route(&self, from: &Hash, to: &Hash) -> Route {
        let mut route = Route::default();
        let (mut a, mut b) = (*from, *to);
        let height = |h: &Hash| self.header(h).map_or(0, |x| x.height);
        let parent = |h: &Hash| self.nodes.get(h).map(|e| e.header.parent_hash);
        while a != b {
            let (ha, hb) = (height(&a), height(&b));
            if ha >= hb {
                route.retracted.push(a);
                match parent(&a) {
                    Some(p) => a = p,
                    None => break,
                }
            } else {
                route.enacted.push(b);
                match parent(&b) {
                    Some(p) => b = p,
                    None => break,
                }
            }
        }
        route.enacted.reverse();
        route
    }

    /// Applies the finality rule to the best chain with a fixed authority set: `threshold` gives
    /// the number of distinct proposers required at a height.
    pub fn finalize(&mut self, threshold: impl Fn(u64) -> usize) -> Finalized {
        self.finalize_by(|height, proposers| proposers.len() >= threshold(height).max(1))
    }

    /// Applies the finality rule to the best chain: the highest block for which
    /// `quorum(height, proposers)` holds, given the distinct proposers of the blocks from it up to
    /// the best head, becomes final with its ancestors. With a changing authority set, `quorum`
    /// counts only the proposers that belong to the set in force at `height` (members added
    /// later do not vouch for blocks sealed before they joined).
    pub fn finalize_by(&mut self, quorum: impl Fn(u64, &HashSet<PublicKey>) -> bool) -> Finalized {
        let chain = self.best_chain();
        let mut proposers: HashSet<PublicKey> = HashSet::new();
        let mut new_root = None;
        for (i, hash) in chain.iter().enumerate().rev() {
            let h = &self.nodes[hash].header;
            proposers.insert(h.proposer);
            if quorum(h.height, &proposers) {
                new_root = Some(i);
                break;
            }
        }
        let Some(idx) = new_root else {
            return Finalized::default();
        };
        let mut out = Finalized::default();
        for hash in &chain[..=idx] {
            out.blocks.push((*hash, self.nodes[hash].header.clone()));
        }
        let new_root_hash = chain[idx];
        // Keep only descendants of the new final head.
        let mut keep = HashSet::new();
        let mut stack = self.nodes[&new_root_hash].children.clone();
        while let Some(h) = stack.pop() {
            keep.insert(h);
            stack.extend(self.nodes[&h].children.iter().copied());
        }
        let finalized: HashSet<Hash> = chain[..=idx].iter().copied().collect();
        let dropped: Vec<Hash> = self
            .nodes
            .keys()
            .filter(|h| !keep.contains(*h) && !finalized.contains(*h))
            .copied()
            .collect();
        for h in &dropped {
            self.nodes.remove(h);
        }
        out.pruned = dropped;
        let root_entry = self
            .nodes
            .remove(&new_root_hash)
            .expect("new root is in the tree");
        for h in &chain[..idx] {
            self.nodes.remove(h);
        }
        self.root = root_entry.header;
        self.root_hash = new_root_hash;
        self.root_children = root_entry.children;
        out
    }
}

/// Remembers which block each authority sealed for each recent slot, to detect equivocation.
#[derive(Debug, Default, Clone)]
pub struct SlotRegistry {
    seen: std::collections::BTreeMap<u64, HashMap<PublicKey, Hash>>,
}

/// Two different blocks sealed by one authority for one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Equivocation {
    pub slot: u64,
    pub proposer: PublicKey,
    pub first: Hash,
    pub second: Hash,
}

impl SlotRegistry {
    /// Records a block; returns the evidence when it conflicts with an earlier one.
    pub fn observe(&mut self, header: &BlockHeader) -> Option<Equivocation> {
        let hash = header.hash();
        let slot = self.seen.entry(header.slot).or_default();
        match slot.get(&header.proposer) {
            Some(first) if *first != hash => Some(Equivocation {
                slot: header.slot,
                proposer: header.proposer,
                first: *first,
                second: hash,
            }),
            Some(_) => None,
            None => {
                slot.insert(header.proposer, hash);
                None
            }
        }
    }

    /// Forgets slots below `slot` (they are final; conflicts there are rejected anyway).
    pub fn prune_below(&mut self, slot: u64) {
        self.seen = self.seen.split_off(&slot);
    }
}
