//! The transaction pool: admitted transactions waiting for a block, in arrival order.
//!
//! Bounded by count (`consensus.max_pool_size`, with the transactions of non-final blocks); a
//! full pool refuses new transactions rather than growing, and client submissions (HTTP 503)
//! already at the chain task's client share. Only the chain task touches it.

use std::collections::VecDeque;
use std::time::Instant;

use provchain_consensus::{Hash, Transaction};

use crate::ids::{IdMap, IdSet};

#[derive(Debug, PartialEq, Eq)]
pub enum PoolError {
    Full,
    Duplicate,
}

#[derive(Debug)]
pub struct Pool {
    /// Arrival order; may hold ids already removed (skipped lazily, compacted when sparse).
    order: VecDeque<Hash>,
    /// Each transaction and when it was admitted.
    txs: IdMap<(Transaction, Instant)>,
    max: usize,
}

impl Pool {
    pub fn new(max: usize) -> Self {
        Self {
            order: VecDeque::new(),
            txs: IdMap::default(),
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    pub fn contains(&self, id: &Hash) -> bool {
        self.txs.contains_key(id)
    }

    pub fn get(&self, id: &Hash) -> Option<&Transaction> {
        self.txs.get(id).map(|(tx, _)| tx)
    }

    /// When the transaction was admitted (or returned from a retracted block).
    pub fn admitted_at(&self, id: &Hash) -> Option<Instant> {
        self.txs.get(id).map(|(_, at)| *at)
    }

    pub fn insert(&mut self, id: Hash, tx: Transaction) -> Result<(), PoolError> {
        if self.txs.contains_key(&id) {
            return Err(PoolError::Duplicate);
        }
        if self.txs.len() >= self.max {
            return Err(PoolError::Full);
        }
        self.txs.insert(id, (tx, Instant::now()));
        self.order.push_back(id);
        Ok(())
    }

    /// Returns a transaction (from a retracted block) to the front of the queue. May exceed the
    /// bound briefly: dropping it would lose an accepted transaction.
    pub fn reinsert(&mut self, id: Hash, tx: Transaction) {
        if self.txs.insert(id, (tx, Instant::now())).is_none() {
            self.order.push_front(id);
        }
    }

    pub fn remove(&mut self, id: &Hash) -> Option<Transaction> {
        let tx = self.txs.remove(id).map(|(tx, _)| tx);
        if self.order.len() > 1024 && self.order.len() > 2 * self.txs.len() {
            let txs = &self.txs;
            self.order.retain(|h| txs.contains_key(h));
        }
        tx
    }

    /// The oldest transactions fitting `max_count` and `max_bytes` (encoded size), in order.
    pub fn select(&self, max_count: usize, max_bytes: usize) -> Vec<Transaction> {
        let mut out = Vec::new();
        let mut bytes = 0;
        // `order` can hold an id twice: removed lazily, then reinserted from a retracted
        // block. Selecting it twice made an invalid block ("transaction appears twice")
        // that every peer rejected, under load with reorgs.
        let mut taken = IdSet::default();
        for id in &self.order {
            if out.len() >= max_count {
                break;
            }
            let Some((tx, _)) = self.txs.get(id) else {
                continue;
            };
            if !taken.insert(*id) {
                continue;
            }
            let size = tx.encoded_len() + 4;
            if bytes + size > max_bytes {
                break;
            }
            bytes += size;
            out.push(tx.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use provchain_consensus::{Keypair, RdfFormat, TxBody};

    use super::*;

    #[test]
    fn a_reinserted_transaction_is_selected_once() {
        let key = Keypair::from_secret([3; 32]);
        let tx = Transaction::sign(
            TxBody {
                format: RdfFormat::NTriples,
                data: "<http://a> <http://b> <http://c> .".into(),
                submitter: key.public(),
                client: None,
                timestamp_ms: 1,
            },
            &key,
            &Hash::default(),
        );
        let id = tx.id();
        let mut pool = Pool::new(10);
        pool.insert(id, tx.clone()).expect("insert");
        // Included in a block (removed), then the block is retracted (reinserted).
        pool.remove(&id);
        pool.reinsert(id, tx);
        assert_eq!(pool.select(10, usize::MAX).len(), 1);
    }
}
