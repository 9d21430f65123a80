//! The transactions of the blocks committed lately, so that admitting a transaction does not
//! read storage on the chain task.
//!
//! A storage read on the chain task can wait far longer than a block's import takes: sled
//! 0.34 serialises every read against the application of a write batch or transaction with
//! one process-wide lock, and the storage writer and segment merger that hold it run at a
//! lower priority than the chain task (`writer.rs`, `work.rs`). So the "already final?"
//! check of admission runs on a check thread, with the transaction's other checks: it looks
//! the transaction up in one view of storage and learns that view's final height
//! ([`provchain_storage::Store::final_txs`]). Back on the chain task, a block committed after
//! that view is either still among the chain's non-final blocks (its transactions are in
//! the `included` map until its commit is reported) or remembered here. Only a check that
//! saw storage before the oldest remembered block needs to look again.

use std::collections::VecDeque;
use std::sync::Arc;

use provchain_consensus::Hash;

use crate::ids::IdSet;

/// Blocks remembered after their commit: at 1 s blocks, half a minute, far longer than a
/// check waits for its thread; a check older than that looks again.
pub const RECENT_FINAL_BLOCKS: usize = 32;

/// The transaction ids of the last few committed blocks.
pub struct RecentFinal {
    blocks: VecDeque<(u64, Arc<[Hash]>)>,
    ids: IdSet,
    /// Every block committed at or above this height is remembered.
    from: u64,
    keep: usize,
}

impl RecentFinal {
    /// Nothing remembered yet: storage's final height is `final_height`.
    pub fn new(final_height: u64, keep: usize) -> Self {
        Self {
            blocks: VecDeque::new(),
            ids: IdSet::default(),
            from: final_height + 1,
            keep,
        }
    }

    /// The block at `height` was committed (heights arrive in order), holding `ids`.
    pub fn committed(&mut self, height: u64, ids: Arc<[Hash]>) {
        self.ids.extend(ids.iter().copied());
        self.blocks.push_back((height, ids));
        while self.blocks.len() > self.keep
            && let Some((h, ids)) = self.blocks.pop_front()
        {
            for id in ids.iter() {
                self.ids.remove(id);
            }
            self.from = h + 1;
        }
    }

    /// Whether `id` is in a remembered block.
    pub fn contains(&self, id: &Hash) -> bool {
        self.ids.contains(id)
    }

    /// Whether every block committed after a storage view at final height `seen` is
    /// remembered: a transaction that view did not find, and that is not remembered here,
    /// is not final.
    pub fn covers(&self, seen: u64) -> bool {
        seen + 1 >= self.from
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Hash {
        Hash([n; 32])
    }

    #[test]
    fn covers_views_since_the_oldest_remembered_block() {
        // Storage was at height 10 at start: every view since then is covered.
        let mut r = RecentFinal::new(10, 2);
        assert!(r.covers(10));
        assert!(!r.covers(9), "blocks at or below 10 committed before start");
        r.committed(11, vec![id(1)].into());
        r.committed(12, vec![id(2)].into());
        assert!(r.covers(10) && r.contains(&id(1)) && r.contains(&id(2)));
        // A third block pushes out height 11: a view at 10 may have missed id(1).
        r.committed(13, vec![id(3)].into());
        assert!(!r.contains(&id(1)));
        assert!(r.contains(&id(3)));
        assert!(!r.covers(10));
        assert!(r.covers(11));
        assert_eq!(r.ids.len(), 2);
    }

    #[test]
    fn remembering_nothing_covers_only_the_latest_view() {
        let mut r = RecentFinal::new(0, 0);
        r.committed(1, vec![id(1)].into());
        assert!(r.ids.is_empty());
        assert!(!r.covers(0));
        assert!(r.covers(1));
    }
}
