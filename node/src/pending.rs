//! Writes of the pending (non-final) block store, off the chain task.
//!
//! The pending store lets a restarted node resume with the non-final blocks it had; nothing
//! is lost without it that peers cannot send again. A 1 MiB block is a few hundred sled pieces
//! (milliseconds), so the chain task hands each write to one background thread instead of
//! holding up the import, the next slot and every other event. One thread and one queue keep
//! the writes in the order they were asked for: a block's removal after finality never
//! overtakes its insertion.

use std::sync::mpsc;
use std::thread::JoinHandle;

use provchain_consensus::{Block, Encode, Hash};
use provchain_storage::Store;
use tracing::warn;

enum Op {
    Put(Hash, Vec<u8>),
    Remove(Hash),
    /// Answered once every earlier operation is applied.
    Barrier(mpsc::Sender<()>),
}

pub struct PendingWriter {
    queue: Option<mpsc::Sender<Op>>,
    thread: Option<JoinHandle<()>>,
}

impl PendingWriter {
    pub fn spawn(store: Store) -> std::io::Result<Self> {
        let (queue, ops) = mpsc::channel::<Op>();
        let thread = std::thread::Builder::new()
            .name("pending-writer".into())
            .spawn(move || {
                for op in ops {
                    let r = match op {
                        Op::Put(hash, encoded) => store.put_pending_encoded(&hash, &encoded),
                        Op::Remove(hash) => store.remove_pending(&hash),
                        Op::Barrier(done) => {
                            let _ = done.send(());
                            Ok(())
                        }
                    };
                    if let Err(e) = r {
                        // A block missing from the pending store is fetched from peers again
                        // after a restart; a failing disk shows in the final commit, which
                        // stops the node.
                        warn!(error = %e, "pending block store write failed");
                    }
                }
            })?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Queues `block` for the pending store.
    pub fn put(&self, block: &Block) {
        self.send(Op::Put(block.hash(), block.encode()));
    }

    /// Queues the removal of a block that became final or was pruned.
    pub fn remove(&self, hash: Hash) {
        self.send(Op::Remove(hash));
    }

    /// Waits until every queued write is applied.
    pub fn sync(&self) {
        let (done, wait) = mpsc::channel();
        self.send(Op::Barrier(done));
        let _ = wait.recv();
    }

    fn send(&self, op: Op) {
        if let Some(q) = &self.queue {
            // The thread only ends when the queue closes (on drop), so this cannot fail.
            let _ = q.send(op);
        }
    }
}

impl Drop for PendingWriter {
    /// Applies what is still queued before the store is flushed and closed.
    fn drop(&mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use provchain_consensus::{Genesis, Keypair};

    use super::*;

    #[test]
    fn writes_land_in_order_and_drop_applies_the_queue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = Keypair::from_secret([1; 32]);
        let g = Genesis {
            network_id: "pending-test".into(),
            authorities: vec![key.public()],
            block_interval_ms: 1000,
            governance: Default::default(),
        };
        let store = Store::open(dir.path(), &g).expect("open");
        let mut parent = g.block();
        let mut blocks = Vec::new();
        for slot in 1..=50 {
            let b = Block::seal(&parent.header, slot, slot * 1000, vec![], &key, &g.hash());
            parent = b.clone();
            blocks.push(b);
        }
        let writer = PendingWriter::spawn(store.clone()).expect("writer");
        for b in &blocks {
            writer.put(b);
        }
        // A removal queued right after its insertion never runs first.
        for b in &blocks[..40] {
            writer.remove(b.hash());
        }
        writer.sync();
        let mut held = store.pending_blocks().expect("pending");
        held.sort_by_key(|b| b.header.height);
        assert_eq!(held, blocks[40..]);
        // Dropping the writer applies what is still queued.
        for b in &blocks[40..45] {
            writer.remove(b.hash());
        }
        drop(writer);
        let mut held = store.pending_blocks().expect("pending");
        held.sort_by_key(|b| b.header.height);
        assert_eq!(held, blocks[45..]);
    }
}
