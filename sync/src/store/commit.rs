//! Group commit (グループコミット): the one way anything is written to a segment.
//!
//! Writers hand in prepared records (signed and sealed on their own thread) and wait. The
//! first writer to find no leader becomes the leader: it takes every record waiting, has
//! them written and fsynced together, publishes each one's result, and leaves. Writers
//! that arrived meanwhile form the next group, led by whichever of them wakes first. So a
//! lone capture pays one write and one fsync on its own thread (no hop to another thread),
//! and N concurrent captures share fsyncs instead of queueing for N of them — the scheme of
//! LevelDB's writer queue.
//!
//! One group is processed at a time, so everything the leader does (the idempotency checks,
//! the append and fsync, the hand-off to the indexer) sees every earlier group finished.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Condvar, Mutex};

/// A queue of requests `R` processed in groups, each answered with an `O`.
pub(crate) struct Committer<R, O> {
    queue: Mutex<Queue<R, O>>,
    wake: Condvar,
}

struct Queue<R, O> {
    waiting: Vec<(u64, R)>,
    done: HashMap<u64, O>,
    leading: bool,
    next: u64,
}

impl<R, O> fmt::Debug for Committer<R, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl<R, O> Default for Committer<R, O> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                done: HashMap::new(),
                leading: false,
                next: 0,
            }),
            wake: Condvar::new(),
        }
    }
}

/// Resets the leader flag if the leader unwinds, answering its group with `lost()`, so the
/// other writers are not left waiting forever.
struct LeaderGuard<'a, R, O> {
    committer: &'a Committer<R, O>,
    tickets: Vec<u64>,
    lost: fn() -> O,
    finished: bool,
}

impl<R, O> Drop for LeaderGuard<'_, R, O> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut q = self.committer.lock();
        for t in self.tickets.drain(..) {
            q.done.insert(t, (self.lost)());
        }
        q.leading = false;
        drop(q);
        self.committer.wake.notify_all();
    }
}

impl<R, O> Committer<R, O> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<R, O>> {
        // The queue is only ever changed by whole assignments; a panic elsewhere cannot
        // leave it half-changed.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Submits `request` and blocks until its group is processed; returns its answer.
    /// `process` gets a whole group and returns one answer per request, in order; `lost`
    /// answers a group whose leader panicked.
    pub(crate) fn submit(
        &self,
        request: R,
        process: &dyn Fn(Vec<R>) -> Vec<O>,
        lost: fn() -> O,
    ) -> O {
        let mut q = self.lock();
        let ticket = q.next;
        q.next += 1;
        q.waiting.push((ticket, request));
        loop {
            if let Some(answer) = q.done.remove(&ticket) {
                return answer;
            }
            if !q.leading {
                q.leading = true;
                let group = std::mem::take(&mut q.waiting);
                drop(q);
                let (tickets, requests): (Vec<u64>, Vec<R>) = group.into_iter().unzip();
                let mut guard = LeaderGuard {
                    committer: self,
                    tickets,
                    lost,
                    finished: false,
                };
                let answers = process(requests);
                q = self.lock();
                let mut answers = answers.into_iter();
                for t in guard.tickets.drain(..) {
                    q.done.insert(t, answers.next().unwrap_or_else(lost));
                }
                q.leading = false;
                guard.finished = true;
                self.wake.notify_all();
                continue;
            }
            q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn concurrent_writers_share_groups_and_each_gets_its_answer() {
        let c: Arc<Committer<u32, u32>> = Arc::new(Committer::default());
        let groups = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..16u32)
            .map(|i| {
                let c = c.clone();
                let groups = groups.clone();
                std::thread::spawn(move || {
                    let process = |rs: Vec<u32>| {
                        groups.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        rs.into_iter().map(|r| r * 10).collect()
                    };
                    (i, c.submit(i, &process, || u32::MAX))
                })
            })
            .collect();
        for h in handles {
            let (i, answer) = h.join().unwrap();
            assert_eq!(answer, i * 10);
        }
        // It groups: 16 writers needed fewer than 16 rounds of I/O.
        assert!(groups.load(Ordering::SeqCst) < 16);
    }

    #[test]
    fn a_panicking_leader_answers_its_group_and_frees_the_queue() {
        let c: Committer<u32, u32> = Committer::default();
        let boom = |_: Vec<u32>| -> Vec<u32> { panic!("disk on fire") };
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.submit(1, &boom, || 0);
        }));
        assert!(caught.is_err());
        let ok = |rs: Vec<u32>| rs;
        assert_eq!(c.submit(7, &ok, || 0), 7);
    }
}
