//! The indexer (索引係): brings the index up to date with what the commit leader made
//! durable, in the background and in batches.
//!
//! The leader acknowledges a group once its records are fsynced in their segment; it hands
//! the records to the indexer ([`Pending`]) instead of writing sled itself, so a capture's
//! acknowledgement costs an append and an fsync, not a sled batch, and sled sees one batch
//! per few dozen milliseconds instead of one per capture (sled 0.34 writes and
//! `sync_file_range`s its log on every batch, and its memory grew with their number).
//!
//! It gives way to captures: while one is being prepared or committed it holds back (up to
//! a bound) before it starts a batch, so its CPU work does not land in the middle of a
//! burst of captures.
//!
//! Nothing is lost or missed meanwhile:
//! - every read first drains what is pending ([`super::Store::fresh`]), so a read after an
//!   acknowledgement sees it;
//! - the leader's idempotency checks consult what is pending as well as the index;
//! - if the process dies, the records are durable and the next open indexes the segments
//!   from their watermarks;
//! - if applying fails, the work is put back and the segments are indexed again from their
//!   watermarks at the next drain (indexing is idempotent).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use crate::event::{EventId, Month};

use super::index::NewRecord;
use super::{lock, Inner, Store};

/// How long the indexer waits for more work before applying what it has.
const COALESCE: Duration = Duration::from_millis(200);
/// Pending records past which it applies at once (what is pending is held in memory).
const URGENT: usize = 1024;
/// How long it holds back while captures are being prepared or committed, at most: a batch
/// is tens of milliseconds of CPU (sled, classification), and on a machine with two cores
/// a batch that starts in the middle of a burst of captures takes one of the two cores
/// from them. Bounded, so a store that is never idle is still indexed.
const YIELD_MAX: Duration = Duration::from_millis(20);
/// Records per index batch. sled 0.34 holds a global lock against every read for the
/// whole of a batch and writes its log synchronously after it; batches of this size take
/// about a millisecond, and the indexer gives way to captures between them.
const CHUNK: usize = 128;
/// How often it looks again while holding back.
const YIELD_POLL: Duration = Duration::from_micros(500);

/// Records made durable by one group, not yet in the index.
#[derive(Debug)]
pub(crate) struct Work {
    pub month: Month,
    pub records: Vec<NewRecord>,
    /// Segment → where the group's records end.
    pub ends: BTreeMap<u32, u64>,
    /// The captures among them: check id and event id.
    pub captures: Vec<(String, EventId)>,
}

/// What is durable but not yet indexed.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// In the order the groups were made durable.
    pub work: Vec<Work>,
    /// Captures among them: check → the capture's event id.
    pub checks: HashMap<(Month, String), EventId>,
    /// Every event id among them.
    pub ids: HashSet<(Month, EventId)>,
    /// The checks of every record among them (this device's and peers'), with how many
    /// records of each: a check here exists even if the index does not know it yet.
    pub held: HashMap<(Month, String), usize>,
}

impl Pending {
    /// Adds a durable group's records.
    pub(crate) fn push(&mut self, work: Work) {
        for r in &work.records {
            self.ids.insert((work.month, r.id));
            *self
                .held
                .entry((work.month, r.event.check_id.clone()))
                .or_default() += 1;
        }
        for (check, id) in &work.captures {
            self.checks.insert((work.month, check.clone()), *id);
        }
        self.work.push(work);
    }

    /// Forgets what is indexed now.
    pub(crate) fn indexed<'a>(
        &mut self,
        month: Month,
        records: impl IntoIterator<Item = &'a NewRecord>,
        captures: &[(String, EventId)],
    ) {
        for r in records {
            self.ids.remove(&(month, r.id));
            let key = (month, r.event.check_id.clone());
            if let Some(n) = self.held.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.held.remove(&key);
                }
            }
        }
        for (check, _) in captures {
            self.checks.remove(&(month, check.clone()));
        }
    }

    /// Forgets a purged month.
    pub(crate) fn forget(&mut self, month: Month) {
        self.work.retain(|w| w.month != month);
        self.checks.retain(|(m, _), _| *m != month);
        self.ids.retain(|(m, _)| *m != month);
        self.held.retain(|(m, _), _| *m != month);
    }
}

#[derive(Debug, Default)]
struct Signal {
    state: Mutex<SignalState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct SignalState {
    /// There is work.
    wake: bool,
    /// There is a lot of work: apply it now.
    urgent: bool,
    /// The store is gone.
    stop: bool,
}

/// The indexer thread; stopped (and joined) when the store is dropped.
#[derive(Debug)]
pub(crate) struct Indexer {
    signal: Arc<Signal>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Indexer {
    /// Starts the thread. It holds only a weak reference, so it never keeps a store alive.
    pub(crate) fn start(store: Weak<Inner>) -> Self {
        let signal = Arc::new(Signal::default());
        let theirs = signal.clone();
        let thread = std::thread::Builder::new()
            .name("tsunagi-indexer".into())
            .spawn(move || run(&store, &theirs))
            .map_err(|e| tracing::error!(error = %e, "cannot start the indexer; reads will index"))
            .ok();
        Self {
            signal,
            thread: Mutex::new(thread),
        }
    }

    /// Tells the thread there is work (`pending` records in all).
    pub(crate) fn wake(&self, pending: usize) {
        let mut s = lock(&self.signal.state);
        s.wake = true;
        s.urgent |= pending >= URGENT;
        drop(s);
        self.signal.cv.notify_one();
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        lock(&self.signal.state).stop = true;
        self.signal.cv.notify_one();
        if let Some(handle) = lock(&self.thread).take() {
            // The last handle of a store may be the indexer's own (it upgrades for a drain):
            // it is ending then, and cannot wait for itself.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

fn run(store: &Weak<Inner>, signal: &Signal) {
    loop {
        {
            let mut s = lock(&signal.state);
            while !s.wake && !s.stop {
                s = signal.cv.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.stop {
                return;
            }
            let (mut s, _) = signal
                .cv
                .wait_timeout_while(s, COALESCE, |s| !s.stop && !s.urgent)
                .unwrap_or_else(|p| p.into_inner());
            if s.stop {
                return;
            }
            s.wake = false;
            s.urgent = false;
        }
        let Some(inner) = store.upgrade() else {
            return;
        };
        let store = Store { inner };
        loop {
            // Giving way is bounded per batch; with a backlog it is skipped, so a store
            // that is never idle does not pile up pending records in memory.
            let backlog = lock(&store.inner.pending).ids.len() >= URGENT;
            let held = std::time::Instant::now();
            while !backlog && store.inner.committer.busy() && held.elapsed() < YIELD_MAX {
                std::thread::sleep(YIELD_POLL);
            }
            match store.drain_index_up_to(CHUNK) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::error!(error = %e, "index update failed; the segments will be indexed again");
                    break;
                }
            }
        }
    }
}
