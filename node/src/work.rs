//! Thread priorities, and the pool that runs the node's bulk checks.
//!
//! A node's CPU goes to three kinds of work. The block path — the swarm task taking a block
//! off the wire, the chain task rebuilding, validating and importing it, the slot leader
//! sealing and publishing — is short and must not wait: every millisecond it waits is a
//! millisecond of propagation on every peer. Admission — signing and parsing each submission,
//! verifying and parsing each gossiped batch — is most of the CPU under load, and a few
//! milliseconds of delay there cost nothing. Storage (the writer's commits, segment merges,
//! sled's flushes) is background work.
//!
//! The network thread (`provchain-p2p`, its own runtime and reactor) and the async workers
//! carry the block path at the default priority. Admission runs on a
//! [`CheckPool`] of one thread per core at [`CHECK_NICENESS`], so that when a block arrives
//! on a machine busy with admissions, the scheduler hands a core to the block first. The
//! storage threads run lower still (`writer.rs`). Niceness on Linux is a per-thread
//! attribute, inherited by threads a thread creates; a process may lower its threads'
//! priority but, without privileges, never raise it back, so each kind of work has threads
//! of its own.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::oneshot;

/// Niceness of the check pool's threads. At nice 5 a thread weighs a third of a nice-0 one
/// when both want a core, and three times a storage writer's (nice 10).
pub const CHECK_NICENESS: i32 = 5;

/// Lowers the calling thread's priority to `niceness`, never raising it (a node started
/// under `nice` keeps its lower priority). On Linux the nice value is a per-thread
/// attribute; elsewhere, or where that fails, the thread keeps its priority.
pub fn lower_priority(niceness: i32) {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        let current = getpriority_process(me).unwrap_or(0);
        if let Err(e) = setpriority_process(me, niceness.max(current)) {
            tracing::debug!(error = %e, niceness, "cannot lower a thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = niceness;
}

/// Whose check a job is. Peers' batches go first: their transactions are in a peer's pool
/// already and will be in a block soon, and a compact block is rebuilt from the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Peers,
    Clients,
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queues {
    peers: VecDeque<Job>,
    clients: VecDeque<Job>,
    closed: bool,
}

impl Queues {
    fn pop(&mut self) -> Option<Job> {
        self.peers.pop_front().or_else(|| self.clients.pop_front())
    }
}

#[derive(Default)]
struct Shared {
    queues: Mutex<Queues>,
    ready: Condvar,
}

/// Closes the queues when the last [`CheckPool`] handle goes; the threads finish the jobs
/// queued and exit.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        lock(&self.0.queues).closed = true;
        self.0.ready.notify_all();
    }
}

/// A fixed set of low-priority threads running checks in two lanes, first in first out
/// within a lane. Cheap to clone.
#[derive(Clone)]
pub struct CheckPool {
    owner: Arc<Owner>,
}

/// A job that panicked (a bug: parsers contain their own panics) or a pool shut down.
#[derive(Debug, thiserror::Error)]
#[error("the check was not completed (the check pool stopped, or the check panicked)")]
pub struct CheckLost;

impl CheckPool {
    /// Starts `threads` (at least one) threads at [`CHECK_NICENESS`].
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        for i in 0..threads.max(1) {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("checks-{i}"))
                .spawn(move || {
                    lower_priority(CHECK_NICENESS);
                    work(&shared);
                })?;
        }
        Ok(CheckPool {
            owner: Arc::new(Owner(shared)),
        })
    }

    /// One thread per core the process may use.
    pub fn per_core() -> std::io::Result<Self> {
        Self::start(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// Queues `job` in `lane`; its result arrives on the returned future.
    pub fn run<T, F>(
        &self,
        lane: Lane,
        job: F,
    ) -> impl Future<Output = Result<T, CheckLost>> + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done, result) = oneshot::channel();
        self.spawn(lane, move || {
            let _ = done.send(job());
        });
        async move { result.await.map_err(|_| CheckLost) }
    }

    /// Queues `job` in `lane`, for a job that reports its result itself.
    pub fn spawn(&self, lane: Lane, job: impl FnOnce() + Send + 'static) {
        let shared = &self.owner.0;
        let mut q = lock(&shared.queues);
        match lane {
            Lane::Peers => q.peers.push_back(Box::new(job)),
            Lane::Clients => q.clients.push_back(Box::new(job)),
        }
        drop(q);
        shared.ready.notify_one();
    }
}

fn work(shared: &Shared) {
    loop {
        let job = {
            let mut q = lock(&shared.queues);
            loop {
                if let Some(job) = q.pop() {
                    break job;
                }
                if q.closed {
                    return;
                }
                q = shared.ready.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        // A panicking job loses its result (the caller sees `CheckLost`), not the thread.
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("a check panicked; its result is lost");
        }
    }
}

fn lock(m: &Mutex<Queues>) -> std::sync::MutexGuard<'_, Queues> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_a_panic() {
        let pool = CheckPool::start(1).expect("start the pool");
        assert_eq!(
            pool.run(Lane::Clients, || 2 + 2)
                .await
                .expect("the check runs"),
            4
        );
        let lost = pool.run(Lane::Clients, || -> u32 { panic!("a bug") }).await;
        assert!(lost.is_err());
        // The thread is still there.
        assert_eq!(
            pool.run(Lane::Peers, || 7).await.expect("the check runs"),
            7
        );
    }

    #[tokio::test]
    async fn peers_lane_goes_first() {
        let pool = CheckPool::start(1).expect("start the pool");
        // Hold the only thread until both lanes have a job queued.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let blocker = pool.run(Lane::Clients, move || held.recv().is_ok());
        let order = Arc::new(Mutex::new(Vec::new()));
        let (a, b) = (order.clone(), order.clone());
        let client = pool.run(Lane::Clients, move || {
            a.lock().expect("lock").push("client")
        });
        let peer = pool.run(Lane::Peers, move || b.lock().expect("lock").push("peer"));
        release.send(()).expect("release the thread");
        assert!(blocker.await.expect("the check runs"));
        client.await.expect("the check runs");
        peer.await.expect("the check runs");
        assert_eq!(*order.lock().expect("lock"), ["peer", "client"]);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn threads_run_at_the_check_niceness() {
        let pool = CheckPool::start(1).expect("start the pool");
        let nice = pool
            .run(Lane::Clients, || {
                rustix::process::getpriority_process(Some(rustix::thread::gettid()))
            })
            .await
            .expect("the check runs")
            .expect("read the thread's niceness");
        // Relative to the test's own niceness, which a CI runner may have raised.
        let ours = rustix::process::getpriority_process(None).expect("read our niceness");
        assert_eq!(nice, CHECK_NICENESS.max(ours));
    }
}
