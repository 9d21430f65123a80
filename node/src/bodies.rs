//! The blocks the chain task holds in memory — non-final blocks, and final ones until their
//! commit is reported — each with the ids of its transactions.
//!
//! A transaction's id is the hash of its encoding: about a microsecond for a 1 KiB document,
//! a millisecond for a full block. Every block arrives with its ids already computed (the
//! leader's draft computed them for the Merkle root, validation of a peer's block for the
//! same check), and the chain task needs them again when the block joins the best chain,
//! when it becomes final and when it is written. Recomputing them there cost a loaded
//! machine several milliseconds of CPU per block, at the moment every node takes the next
//! block up; so they are kept beside the block.
//!
//! Blocks are shared (`Arc`) with the storage writer, which writes a block to the pending
//! store, prepares its commit and commits it while the chain task still holds it: handing a
//! ~1 MiB block over is a reference count, not a copy or an encoding on the chain task.

use std::collections::HashMap;
use std::sync::Arc;

use provchain_consensus::{Block, Hash};

/// Blocks by hash, with their transaction ids in block order.
#[derive(Default)]
pub struct Bodies {
    held: HashMap<Hash, (Arc<Block>, Arc<[Hash]>)>,
}

impl Bodies {
    /// Holds `block` under `hash`; `tx_ids` are the ids of its transactions, in order.
    pub fn insert(&mut self, hash: Hash, block: Block, tx_ids: Arc<[Hash]>) {
        debug_assert_eq!(block.transactions.len(), tx_ids.len());
        self.held.insert(hash, (Arc::new(block), tx_ids));
    }

    /// Holds `block`, hashing its transactions (for blocks read back from storage).
    pub fn insert_hashing(&mut self, hash: Hash, block: Block) {
        let tx_ids = block.tx_ids().into();
        self.insert(hash, block, tx_ids);
    }

    pub fn get(&self, hash: &Hash) -> Option<&Block> {
        self.held.get(hash).map(|(b, _)| &**b)
    }

    /// The block and the ids of its transactions.
    pub fn get_with_ids(&self, hash: &Hash) -> Option<(&Arc<Block>, &Arc<[Hash]>)> {
        self.held.get(hash).map(|(b, ids)| (b, ids))
    }

    /// The ids of the block's transactions, in block order.
    pub fn tx_ids(&self, hash: &Hash) -> Option<&Arc<[Hash]>> {
        self.held.get(hash).map(|(_, ids)| ids)
    }

    pub fn contains_key(&self, hash: &Hash) -> bool {
        self.held.contains_key(hash)
    }

    /// Releases the block and its ids.
    pub fn remove(&mut self, hash: &Hash) -> Option<(Arc<Block>, Arc<[Hash]>)> {
        self.held.remove(hash)
    }
}

#[cfg(test)]
mod tests {
    use provchain_consensus::tx::{RdfFormat, Transaction, TxBody};
    use provchain_consensus::{Genesis, Keypair};

    use super::*;

    fn block_with_txs(n: usize) -> (Hash, Block) {
        let key = Keypair::from_secret([7; 32]);
        let g = Genesis {
            network_id: "bodies-test".into(),
            authorities: vec![key.public()],
            block_interval_ms: 1000,
            governance: Default::default(),
        };
        let txs = (0..n)
            .map(|i| {
                let body = TxBody {
                    format: RdfFormat::NTriples,
                    data: format!("<urn:s{i}> <urn:p> \"{i}\" .\n").into(),
                    submitter: key.public(),
                    client: None,
                    timestamp_ms: i as u64,
                };
                Transaction::sign(body, &key, &g.hash())
            })
            .collect();
        let b = Block::seal(&g.block().header, 1, 1000, txs, &key, &g.hash());
        (b.hash(), b)
    }

    #[test]
    fn ids_stay_with_their_block_until_it_is_removed() {
        let (hash, block) = block_with_txs(3);
        let expected = block.tx_ids();
        let mut bodies = Bodies::default();
        bodies.insert(hash, block.clone(), expected.clone().into());
        let (b, ids) = bodies.get_with_ids(&hash).expect("held");
        assert_eq!(**b, block);
        assert_eq!(&ids[..], &expected[..]);
        assert!(bodies.contains_key(&hash));

        let (b, ids) = bodies.remove(&hash).expect("removed");
        assert_eq!(*b, block);
        assert_eq!(&ids[..], &expected[..]);
        assert!(!bodies.contains_key(&hash));
        assert!(bodies.tx_ids(&hash).is_none());
        assert!(bodies.remove(&hash).is_none());
    }

    #[test]
    fn blocks_read_back_are_hashed_once_on_insertion() {
        let (hash, block) = block_with_txs(2);
        let mut bodies = Bodies::default();
        bodies.insert_hashing(hash, block.clone());
        assert_eq!(
            &bodies.tx_ids(&hash).expect("held")[..],
            &block.tx_ids()[..]
        );
    }
}
