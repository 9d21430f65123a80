//! The storage writer: one thread that applies the chain task's writes, in order.
//!
//! Committing a final block interns its RDF, writes a segment and flushes twice: 5 ms for a
//! small block, 0.1–0.4 s for one of a few thousand transactions. Writing a pending (non-final)
//! block is a few hundred sled pieces for 1 MiB. The chain task hands each write to this
//! thread and carries on with the next block, slot and submission instead of waiting; it
//! learns that a commit is durable from a [`Committed`] report, and only then does the node
//! call those blocks final (the API's final head is what storage holds, so a block reported
//! final survives `kill -9`).
//!
//! Most of a commit can be done before finality: a block waits a slot, until the next
//! proposer's block makes it final. When the chain task imports the block expected to be
//! final next, it asks this thread to prepare its commit ([`StoreWriter::prepare`]: plan,
//! intern, write the segment, term chunks and digest rows, unreferenced), right behind the
//! commit of its parent; at finality the commit writes only its commit point (the blocks, the
//! pending removals, the head and manifest), a small part of the work. A block that loses a
//! fork costs its preparation and nothing else.
//!
//! One thread and one queue keep the writes in the order they were asked for: final blocks are
//! committed height after height, and a block's pending removal never overtakes its
//! insertion. Segment merges run on a second thread at the lowest priority, started after
//! each commit. After a failed commit nothing further is committed (each later commit reports
//! [`CommitError::AfterFailure`]); the chain task stops the node.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use provchain_consensus::{Block, Hash};
use provchain_storage::{CommitStats, ParsedTx, StorageError, Store};
use tokio::sync::Notify;
use tracing::warn;

use crate::work::lower_priority;

/// Why final blocks were not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("an earlier commit failed, so nothing after it was written")]
    AfterFailure,
    #[error("the storage writer panicked while committing: {0}")]
    Panicked(String),
}

/// The outcome of one [`StoreWriter::commit`], reported in the order commits were queued.
#[derive(Debug)]
pub struct Committed {
    /// Number of blocks of the commit.
    pub blocks: usize,
    pub result: Result<CommitStats, CommitError>,
    /// Time the commit itself took (not its wait in the queue).
    pub elapsed: Duration,
}

/// Blocks travel to the writer shared with the chain task, which keeps them until their commit
/// is reported: handing one over copies nothing, and encoding it is the writer's work.
enum Op {
    /// A pending block; flushed at once if `durable`.
    Put(Arc<Block>, bool),
    Remove(Hash),
    Commit(Vec<Arc<Block>>, HashMap<Hash, Arc<ParsedTx>>),
    /// Prepare the commit of a block expected to be final next ([`StoreWriter::prepare`]).
    Prepare(Arc<Block>, HashMap<Hash, Arc<ParsedTx>>),
    /// Answered once every earlier operation is applied.
    Barrier(mpsc::Sender<()>),
}

pub struct StoreWriter {
    queue: Option<mpsc::Sender<Op>>,
    thread: Option<JoinHandle<()>>,
    reports: mpsc::Receiver<Committed>,
    /// Notified after each report, so an async task can wait for them.
    wake: Arc<Notify>,
}

impl StoreWriter {
    pub fn spawn(store: Store) -> std::io::Result<Self> {
        let (queue, ops) = mpsc::channel::<Op>();
        let (report, reports) = mpsc::channel::<Committed>();
        let wake = Arc::new(Notify::new());
        let notify = wake.clone();
        // Merges of small segments, after commits. Pure background work: the lowest priority,
        // and never in the way of a commit (one merge at a time; a request while one runs
        // is folded into it, since a merge goes on while merges are due).
        let (merge_due, merge_requests) = mpsc::sync_channel::<()>(1);
        let merge_store = store.clone();
        std::thread::Builder::new()
            .name("store-merger".into())
            .spawn(move || {
                lower_priority(MERGER_NICENESS);
                for () in merge_requests {
                    if let Err(e) = merge_store.merge_segments() {
                        // The commits are durable; a failed merge leaves more segments.
                        warn!(error = %e, "storage segment merge failed");
                    }
                }
            })?;
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                lower_priority(WRITER_NICENESS);
                let mut failed = false;
                for op in ops {
                    let r = match op {
                        Op::Put(block, durable) => store
                            .put_pending(&block)
                            .and_then(|()| if durable { store.flush() } else { Ok(()) }),
                        Op::Remove(hash) => store.remove_pending(&hash),
                        Op::Prepare(block, parsed) => {
                            if !failed {
                                prepare(&store, &block, &parsed);
                            }
                            Ok(())
                        }
                        Op::Commit(blocks, parsed) => {
                            let started = Instant::now();
                            let result = if failed {
                                Err(CommitError::AfterFailure)
                            } else {
                                commit(&store, &blocks, &parsed)
                            };
                            failed |= result.is_err();
                            if result.is_ok() {
                                let _ = merge_due.try_send(());
                            }
                            // The chain task holds the receiver for as long as it runs.
                            let _ = report.send(Committed {
                                blocks: blocks.len(),
                                result,
                                elapsed: started.elapsed(),
                            });
                            notify.notify_one();
                            Ok(())
                        }
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
            reports,
            wake,
        })
    }

    /// Queues `block` for the pending store.
    pub fn put(&self, block: Arc<Block>) {
        self.send(Op::Put(block, false));
    }

    /// [`Self::put`], then a flush: the block survives a crash from then on, not only from
    /// sled's next periodic flush.
    pub fn put_durable(&self, block: Arc<Block>) {
        self.send(Op::Put(block, true));
    }

    /// Queues the removal of a block that became final or was pruned.
    pub fn remove(&self, hash: Hash) {
        self.send(Op::Remove(hash));
    }

    /// Queues final blocks for commit: they must extend what storage holds once every
    /// earlier commit is applied. `parsed` holds the RDF of transactions parsed already
    /// ([`Store::commit_final_parsed`]). Reported through [`Self::try_committed`]; false if
    /// the writer thread is gone (nothing will be committed any more).
    #[must_use]
    pub fn commit(&self, blocks: Vec<Arc<Block>>, parsed: HashMap<Hash, Arc<ParsedTx>>) -> bool {
        self.send(Op::Commit(blocks, parsed))
    }

    /// Queues the preparation of `block`'s commit ([`Store::prepare_commit`]): planning it and
    /// writing its segment, term chunks and digest rows, unreferenced, while it waits a slot
    /// for finality, so that its
    /// commit then only writes the commit point. For the block expected to be final next: its
    /// parent must be committed, or queued for commit, by the time the writer gets to it, or
    /// nothing is prepared. A commit of other blocks deletes what was prepared.
    pub fn prepare(&self, block: Arc<Block>, parsed: HashMap<Hash, Arc<ParsedTx>>) {
        self.send(Op::Prepare(block, parsed));
    }

    /// The next commit report, if one is ready.
    pub fn try_committed(&self) -> Option<Committed> {
        self.reports.try_recv().ok()
    }

    /// Notified whenever a report becomes ready (a permit is kept if nobody waits).
    pub fn reports_ready(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Waits until every queued write is applied (and every queued commit reported).
    pub fn sync(&self) {
        let (done, wait) = mpsc::channel();
        if self.send(Op::Barrier(done)) {
            let _ = wait.recv();
        }
    }

    fn send(&self, op: Op) -> bool {
        self.queue.as_ref().is_some_and(|q| q.send(op).is_ok())
    }
}

/// Niceness of the writer thread. Its work is background work: a commit may finish tens of
/// milliseconds later without harm, while the chain task and the network task must take a new
/// block up at once. When a commit and a block arrival meet on a busy machine (every node
/// starts a commit the moment a block makes its parent final), the block goes first. On
/// three nodes sharing two cores the measured effect is within the run-to-run spread, and
/// commits at nice 0 were no faster under overload (docs/PERFORMANCE.md, "Background storage
/// work yields to blocks"). A nice-10 thread still gets a tenth of a contended core, and all
/// it asks for on an idle one; should commits fall behind, the chain task waits for them
/// ([`StoreWriter::sync`]).
pub(crate) const WRITER_NICENESS: i32 = 10;
/// Niceness of the segment merger: the lowest, it only keeps lookups fast.
const MERGER_NICENESS: i32 = 19;

/// Commits `blocks`, containing a panic (a bug, never a peer's input: RDF parsing contains
/// its own) as an error so that the node stops cleanly instead of losing its writer silently.
fn commit(
    store: &Store,
    blocks: &[Arc<Block>],
    parsed: &HashMap<Hash, Arc<ParsedTx>>,
) -> Result<CommitStats, CommitError> {
    match catch_unwind(AssertUnwindSafe(|| match blocks {
        // A node commits one block a slot; a sync batch, several.
        [one] => store.commit_final_parsed(std::slice::from_ref(&**one), parsed),
        _ => {
            let owned: Vec<Block> = blocks.iter().map(|b| Block::clone(b)).collect();
            store.commit_final_parsed(&owned, parsed)
        }
    })) {
        Ok(r) => r.map_err(CommitError::from),
        Err(panic) => Err(CommitError::Panicked(panic_message(panic.as_ref()))),
    }
}

/// Prepares `block`'s commit. An error only costs the commit its head start: the commit plans
/// again and reports any error itself. A panic (a bug) leaves the store refusing to write, so
/// the next commit fails and the node stops; a restart cleans up (`Store::open`).
fn prepare(store: &Store, block: &Block, parsed: &HashMap<Hash, Arc<ParsedTx>>) {
    let height = block.header.height;
    match catch_unwind(AssertUnwindSafe(|| {
        store.prepare_commit(std::slice::from_ref(block), parsed)
    })) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, height, "commit not prepared ahead"),
        Err(panic) => warn!(
            height,
            panic = panic_message(panic.as_ref()),
            "preparing a commit panicked; the store refuses further commits until a restart"
        ),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl Drop for StoreWriter {
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

    fn shared(blocks: &[Block]) -> Vec<Arc<Block>> {
        blocks.iter().cloned().map(Arc::new).collect()
    }

    /// A store and a chain of 50 empty blocks on its genesis.
    fn setup(dir: &std::path::Path) -> (Store, Vec<Block>) {
        let key = Keypair::from_secret([1; 32]);
        let g = Genesis {
            network_id: "writer-test".into(),
            authorities: vec![key.public()],
            block_interval_ms: 1000,
            governance: Default::default(),
        };
        let store = Store::open(dir, &g).expect("open");
        let mut parent = g.block();
        let mut blocks = Vec::new();
        for slot in 1..=50 {
            let b = Block::seal(&parent.header, slot, slot * 1000, vec![], &key, &g.hash());
            parent = b.clone();
            blocks.push(b);
        }
        (store, blocks)
    }

    #[test]
    fn writes_land_in_order_and_drop_applies_the_queue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, blocks) = setup(dir.path());
        let writer = StoreWriter::spawn(store.clone()).expect("writer");
        for (i, b) in blocks.iter().enumerate() {
            if i % 10 == 9 {
                writer.put_durable(Arc::new(b.clone()));
            } else {
                writer.put(Arc::new(b.clone()));
            }
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

    #[test]
    fn commits_apply_in_order_and_nothing_follows_a_failed_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, blocks) = setup(dir.path());
        let writer = StoreWriter::spawn(store.clone()).expect("writer");
        assert!(writer.commit(shared(&blocks[..10]), HashMap::new()));
        assert!(writer.commit(shared(&blocks[10..20]), HashMap::new()));
        // Skips heights 21..=30: refused, and so is the next commit, which would fit.
        assert!(writer.commit(shared(&blocks[30..40]), HashMap::new()));
        assert!(writer.commit(shared(&blocks[20..30]), HashMap::new()));
        writer.sync();
        let reports: Vec<Committed> = std::iter::from_fn(|| writer.try_committed()).collect();
        assert_eq!(reports.len(), 4);
        for r in &reports[..2] {
            assert_eq!(r.blocks, 10);
            assert_eq!(r.result.as_ref().map(|s| s.blocks).ok(), Some(10), "{r:?}");
        }
        assert!(
            matches!(
                reports[2].result,
                Err(CommitError::Storage(StorageError::NotNextBlock { .. }))
            ),
            "{:?}",
            reports[2]
        );
        assert!(matches!(reports[3].result, Err(CommitError::AfterFailure)));
        assert_eq!(store.final_head().expect("head"), blocks[19].header);
    }

    #[test]
    fn a_commit_uses_the_preparation_of_its_block_and_only_that() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, blocks) = setup(dir.path());
        let writer = StoreWriter::spawn(store.clone()).expect("writer");
        let prepared = |r: &Committed| r.result.as_ref().map(|s| s.prepared).ok();
        // Prepared after its parent's commit, in queue order: used.
        assert!(writer.commit(shared(&blocks[..1]), HashMap::new()));
        writer.prepare(Arc::new(blocks[1].clone()), HashMap::new());
        assert!(writer.commit(shared(&blocks[1..2]), HashMap::new()));
        // Prepared before its parent is committed: nothing to prepare against.
        writer.prepare(Arc::new(blocks[3].clone()), HashMap::new());
        assert!(writer.commit(shared(&blocks[2..3]), HashMap::new()));
        assert!(writer.commit(shared(&blocks[3..4]), HashMap::new()));
        // Prepared for a single block, committed together with the next one: planned again.
        writer.prepare(Arc::new(blocks[4].clone()), HashMap::new());
        assert!(writer.commit(shared(&blocks[4..6]), HashMap::new()));
        writer.sync();
        let reports: Vec<Committed> = std::iter::from_fn(|| writer.try_committed()).collect();
        let used: Vec<Option<bool>> = reports.iter().map(prepared).collect();
        assert_eq!(
            used,
            [
                Some(false),
                Some(true),
                Some(false),
                Some(false),
                Some(false)
            ]
        );
        assert_eq!(store.final_head().expect("head"), blocks[5].header);
    }
}
