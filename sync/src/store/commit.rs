//! Group commit (グループコミット): the one way anything is written to a segment.
//!
//! Writers hand in prepared records (signed and sealed on their own thread) and wait. The
//! first writer to find no leader becomes the leader: it takes every record waiting, has
//! them written and fsynced together, publishes each one's result, and leaves. Writers
//! that arrived meanwhile form the next group, led by the first of them. So a lone capture
//! pays one write and one fsync on its own thread (no hop to another thread), and N
//! concurrent captures share fsyncs instead of queueing for N of them — the scheme of
//! LevelDB's writer queue.
//!
//! Two refinements keep N captures that start together (several reception PCs finishing a
//! card read at once) close to the cost of one:
//! - **Gathering.** A writer announces itself ([`Committer::enter`]) before it signs and
//!   seals. A new leader first waits — at most [`GATHER_MAX`] — for the writers that were
//!   already preparing when it took the lead, so they share its fsync instead of queueing
//!   behind it for the next one. A lone writer finds nobody preparing and never waits.
//! - **Targeted wake-ups.** A finished leader wakes the writers of its group (their answers
//!   are ready) and the one writer that leads next, not every waiting thread: on two cores
//!   a herd of woken threads delays the next group's fsync.
//!
//! One group is processed at a time, so everything the leader does (the idempotency checks,
//! the append and fsync, the hand-off to the indexer) sees every earlier group finished.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::thread::Thread;
use std::time::{Duration, Instant};

/// The longest a new leader waits for writers that were still preparing when it took the
/// lead. Preparing is CPU work (a signature and a seal, tens of microseconds each); 16 of
/// them on two cores take a few hundred microseconds. The bound only matters when a writer
/// stalls while preparing (creating a month's key writes and fsyncs a file).
pub(crate) const GATHER_MAX: Duration = Duration::from_millis(1);

/// A queue of requests `R` processed in groups, each answered with an `O`.
pub(crate) struct Committer<R, O> {
    queue: Mutex<Queue<R, O>>,
    /// [`GATHER_MAX`], but for tests.
    gather_max: Duration,
}

struct Queue<R, O> {
    /// Submitted, not yet taken by a leader: ticket, request, the writer's thread.
    waiting: Vec<(u64, R, Thread)>,
    done: HashMap<u64, O>,
    leading: bool,
    next: u64,
    /// Writers that announced themselves ([`Committer::enter`]), and those of them that
    /// have since submitted or given up: the difference is what is still being prepared.
    entered: u64,
    left: u64,
    /// A leader waiting for writers still preparing.
    gatherer: Option<Thread>,
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
                entered: 0,
                left: 0,
                gatherer: None,
            }),
            gather_max: GATHER_MAX,
        }
    }
}

/// Resets the leader flag if the leader unwinds, answering its group with `lost()`, so the
/// other writers are not left waiting forever.
struct LeaderGuard<'a, R, O> {
    committer: &'a Committer<R, O>,
    group: Vec<(u64, Thread)>,
    lost: fn() -> O,
    finished: bool,
}

impl<R, O> Drop for LeaderGuard<'_, R, O> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut q = self.committer.lock();
        for (t, _) in &self.group {
            q.done.insert(*t, (self.lost)());
        }
        q.leading = false;
        let next = q.waiting.first().map(|(_, _, th)| th.clone());
        drop(q);
        for (_, th) in self.group.drain(..) {
            th.unpark();
        }
        if let Some(th) = next {
            th.unpark();
        }
    }
}

impl<R, O> Committer<R, O> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<R, O>> {
        // The queue is only ever changed by whole assignments; a panic elsewhere cannot
        // leave it half-changed.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Announces a writer that is about to prepare a request: a leader that takes the lead
    /// meanwhile waits (briefly) for it. Every `enter` is followed by exactly one
    /// [`Committer::submit`] or [`Committer::abandon`].
    pub(crate) fn enter(&self) {
        self.lock().entered += 1;
    }

    /// Whether a group is being committed, or writers are preparing or waiting: the
    /// indexer holds back its work meanwhile (see `super::indexer`).
    pub(crate) fn busy(&self) -> bool {
        let q = self.lock();
        q.leading || q.entered > q.left || !q.waiting.is_empty()
    }

    /// The writer announced by [`Committer::enter`] will not submit (its preparation failed).
    pub(crate) fn abandon(&self) {
        let mut q = self.lock();
        q.left += 1;
        let gatherer = q.gatherer.clone();
        drop(q);
        if let Some(th) = gatherer {
            th.unpark();
        }
    }

    /// Submits `request` and blocks until its group is processed; returns its answer.
    /// `entered` says whether this writer announced itself with [`Committer::enter`].
    /// `process` gets a whole group and returns one answer per request, in order; `lost`
    /// answers a group whose leader panicked.
    pub(crate) fn submit(
        &self,
        request: R,
        entered: bool,
        process: &dyn Fn(Vec<R>) -> Vec<O>,
        lost: fn() -> O,
    ) -> O {
        let mut q = self.lock();
        let ticket = q.next;
        q.next += 1;
        q.waiting.push((ticket, request, std::thread::current()));
        if entered {
            q.left += 1;
            if let Some(th) = &q.gatherer {
                th.unpark();
            }
        }
        loop {
            if let Some(answer) = q.done.remove(&ticket) {
                return answer;
            }
            if !q.leading {
                q.leading = true;
                q = self.gather(q);
                let group = std::mem::take(&mut q.waiting);
                drop(q);
                let mut requests = Vec::with_capacity(group.len());
                let mut members = Vec::with_capacity(group.len());
                for (t, r, th) in group {
                    requests.push(r);
                    members.push((t, th));
                }
                let mut guard = LeaderGuard {
                    committer: self,
                    group: members,
                    lost,
                    finished: false,
                };
                let answers = process(requests);
                q = self.lock();
                let mut answers = answers.into_iter();
                for (t, _) in &guard.group {
                    q.done.insert(*t, answers.next().unwrap_or_else(lost));
                }
                q.leading = false;
                // The first writer that came meanwhile leads the next group.
                let next = q.waiting.first().map(|(_, _, th)| th.clone());
                guard.finished = true;
                drop(q);
                let me = std::thread::current().id();
                for (_, th) in guard.group.drain(..) {
                    if th.id() != me {
                        th.unpark();
                    }
                }
                if let Some(th) = next {
                    th.unpark();
                }
                q = self.lock();
                continue;
            }
            drop(q);
            // Woken by the leader of this writer's group, or to lead the next one; a
            // spurious wake-up just looks again.
            std::thread::park();
            q = self.lock();
        }
    }

    /// The new leader's wait for the writers that were preparing when it took the lead:
    /// until as many have submitted (or given up) as had announced themselves, or
    /// [`GATHER_MAX`] has passed.
    fn gather<'a>(
        &'a self,
        mut q: std::sync::MutexGuard<'a, Queue<R, O>>,
    ) -> std::sync::MutexGuard<'a, Queue<R, O>> {
        let until = q.entered;
        if q.left >= until {
            return q;
        }
        let deadline = Instant::now() + self.gather_max;
        q.gatherer = Some(std::thread::current());
        while q.left < until {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            drop(q);
            std::thread::park_timeout(deadline - now);
            q = self.lock();
        }
        q.gatherer = None;
        q
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
                    (i, c.submit(i, false, &process, || u32::MAX))
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
    fn a_leader_waits_for_a_writer_still_preparing_and_commits_both_at_once() {
        // A bound no scheduler delay reaches: the test is about who waits for whom.
        let c: Arc<Committer<u32, u32>> = Arc::new(Committer {
            gather_max: Duration::from_secs(60),
            ..Committer::default()
        });
        let groups = Arc::new(Mutex::new(Vec::new()));
        // A second writer announces itself, and submits only once the leader is waiting.
        c.enter();
        let late = {
            let (c, groups) = (c.clone(), groups.clone());
            std::thread::spawn(move || {
                while c.lock().gatherer.is_none() {
                    std::thread::sleep(Duration::from_micros(100));
                }
                let process = |rs: Vec<u32>| {
                    groups.lock().unwrap().push(rs.clone());
                    rs
                };
                c.submit(2, true, &process, || 0)
            })
        };
        c.enter();
        let process = |rs: Vec<u32>| {
            groups.lock().unwrap().push(rs.clone());
            rs
        };
        assert_eq!(c.submit(1, true, &process, || 0), 1);
        assert_eq!(late.join().unwrap(), 2);
        assert_eq!(*groups.lock().unwrap(), vec![vec![1, 2]]);
    }

    #[test]
    fn a_writer_that_gives_up_does_not_hold_the_leader() {
        let c: Committer<u32, u32> = Committer::default();
        c.enter();
        c.abandon();
        // Nobody is preparing any more: a leader has nobody to wait for.
        let q = c.lock();
        assert_eq!(q.left, q.entered);
        drop(q);
        c.enter();
        assert_eq!(c.submit(5, true, &|rs: Vec<u32>| rs, || 0), 5);
        let q = c.lock();
        assert_eq!((q.entered, q.left), (2, 2));
    }

    #[test]
    fn a_writer_that_never_comes_delays_a_leader_by_the_bound_only() {
        let c: Committer<u32, u32> = Committer::default();
        c.enter(); // announced, never submits nor abandons
        let started = Instant::now();
        assert_eq!(c.submit(9, false, &|rs: Vec<u32>| rs, || 0), 9);
        assert!(started.elapsed() >= GATHER_MAX);
    }

    #[test]
    fn a_panicking_leader_answers_its_group_and_frees_the_queue() {
        let c: Committer<u32, u32> = Committer::default();
        let boom = |_: Vec<u32>| -> Vec<u32> { panic!("disk on fire") };
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.submit(1, false, &boom, || 0);
        }));
        assert!(caught.is_err());
        let ok = |rs: Vec<u32>| rs;
        assert_eq!(c.submit(7, false, &ok, || 0), 7);
    }
}
