//! The store (台帳): sealed events in per-month append-only segments, indexed by sled and
//! summarised for sync by automerge documents.
//!
//! [`Store`] is a small facade over parts with one job each:
//!
//! - [`segment`] / [`segments`]: the record format and the month's segment files — the only
//!   source of truth;
//! - [`commit`]: group commit, the one way anything is appended;
//! - [`index`]: sled, where each record is and what each check is (open, counts);
//!   rebuildable from the segments;
//! - [`indexer`]: applies what the leader made durable to the index, in batches, in the
//!   background; reads drain it first;
//! - [`documents`]: the automerge month documents (event ids and digests, for sync) and the
//!   small shared documents;
//! - [`keys`]: the month keys that seal every record;
//! - [`retention`]: tombstones of purged months, and the counts carried for months whose
//!   retention ended for all but some checks;
//! - [`carry`]: ending a month's retention for all but some checks (カルテ持ち越し): the kept
//!   records sealed again under a new key, the rest of the month deleted;
//! - [`recovery`]: opening a data directory — what was left half-done by a crash or a
//!   failed write is finished or set aside, never silently destroyed.
//!
//! # Durability contract
//!
//! [`Store::capture`] and [`Store::append`] return `Ok` only once the event's record is in
//! its segment and fdatasynced (concurrent writers share the fsync). From then on the
//! record survives SIGKILL and power loss; an error that happens after that point (in the
//! index update, which the indexer does later) is logged and repaired, never reported as a
//! failed write. An `Err` means
//! nothing was acknowledged, and the bytes of a failed append are never read back as a
//! record. A capture is idempotent by its check id: submitting it again returns the first.
//! Reads see every acknowledged write.
//!
//! # Retention
//!
//! A month whose retention is over is purged ([`Store::purge_if_unchanged`]): its tombstone
//! first, then its keys and everything else. When some of its checks must still be kept, it
//! is carried over instead ([`Store::purge_except`]): only the kept checks' records remain,
//! sealed again under a new key, and the rest of the month — its old keys included — is
//! deleted. Both keep the month's counts for statistics ([`Store::aggregates`]), both are
//! decided on counts compared under the commit gate, and both finish at the next open if a
//! crash interrupts them.
//!
//! All methods block (disk and CPU work) except the `async` writers, which run the blocking
//! part on tokio's blocking pool. See `sync/README.md` for the layout of a data directory
//! and the tests that hold each of these promises.

mod carry;
mod commit;
mod documents;
pub mod index;
mod indexer;
pub mod keys;
mod known;
mod recovery;
pub mod retention;
mod segment;
mod segments;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use automerge::transaction::Transactable;
use automerge::{ReadDoc, ScalarValue, Value, ROOT};
use serde::{Deserialize, Serialize};

use crate::device::{DeviceId, DeviceKey};
use crate::event::{Event, EventError, EventId, Month, SignedEvent};
use crate::hlc::{ClockSkew, Hlc};
use crate::seal;
use crate::vfs::{LockGuard, OsFs, Vfs};

pub use automerge::sync::State as SyncState;
pub use documents::DocError;
pub use index::{
    CheckClass, Classifier, IndexError, LookupKey, MonthCounts, OpenUntilResolved, MAX_LOOKUP_KEYS,
};
pub use keys::{KeyError, KeyId};
pub use recovery::OpenError;
pub use retention::Tombstone;

use commit::Committer;
use documents::{MonthDocs, SmallDocs};
use index::{Index, Loc, NewRecord};
use keys::KeyRing;
use retention::{CarriedCounts, Tombstones};
use segment::Record;
use segments::Segments;

/// The on-disk format this release writes (`FORMAT` in the data directory).
pub const STORE_FORMAT: u32 = 2;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The month was purged at the end of its retention.
    #[error("{0} was purged at the end of its retention")]
    Purged(Month),
    /// Some of the month's checks were removed here at the end of their retention
    /// (a carry-over); its document is not synced, so they cannot come back.
    #[error("{0} was carried over at the end of its retention; it is not synced")]
    Carried(Month),
    /// A record is sealed with a key this device does not hold.
    #[error("no key {key} for {month} (not yet received from a peer)")]
    NoKey {
        /// The month.
        month: Month,
        /// The key's id.
        key: KeyId,
    },
    /// A month key problem.
    #[error(transparent)]
    Key(KeyError),
    /// An event could not be signed or was refused.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A peer's clock is far ahead.
    #[error(transparent)]
    Clock(#[from] ClockSkew),
    /// A peer's record is not the one the month document names.
    #[error("{0}")]
    NotAsNamed(String),
    /// A peer's record is signed by a device that is not one of the clinic's.
    #[error("record signed by {0}, which is not a device of this clinic")]
    UnknownSigner(DeviceId),
    /// A check id the store will not hold.
    #[error("invalid check id {0:?}: 1 to 64 printable ASCII characters")]
    BadCheckId(String),
    /// Writing the record failed; nothing was acknowledged ([`StoreError::is_disk_full`]
    /// tells whether the disk was full).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// Reading failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A document failed.
    #[error(transparent)]
    Document(#[from] DocError),
    /// A record the index points to does not open: damage, reported in [`Store::health`].
    #[error("record {at} is damaged: {reason}")]
    Damaged {
        /// Where (month, segment, offset).
        at: String,
        /// Why it does not open.
        reason: String,
    },
    /// The event is larger than a record may be.
    #[error("event of {size} bytes is larger than the {limit} bytes a record may hold")]
    TooLarge {
        /// Its sealed size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The writer that held this write's group stopped (a bug: it panicked).
    #[error("the store's writer stopped before this write was made durable")]
    WriterLost,
    /// A blocking task could not run (the runtime is shutting down).
    #[error("store task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// The same failure, told to a request that repeated the one that failed.
    fn for_a_repeat(&self) -> Self {
        match self {
            StoreError::Write { path, source } => StoreError::Write {
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            StoreError::Purged(m) => StoreError::Purged(*m),
            other => StoreError::Task(other.to_string()),
        }
    }

    /// Whether the disk is full (the write can be retried once space is freed).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Write { source, .. } if crate::vfs::is_disk_full(source))
    }
}

impl From<KeyError> for StoreError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Purged(m) => StoreError::Purged(m),
            other => StoreError::Key(other),
        }
    }
}

/// Options of a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The data directory.
    pub dir: PathBuf,
    /// The file system the store's own files go through.
    pub vfs: Arc<dyn Vfs>,
    /// Where sled keeps the index (on the real file system): `dir/index` by default.
    pub index_dir: PathBuf,
    /// sled's page cache, bytes. Small: the store must fit in the daemon's memory budget.
    pub cache_bytes: u64,
    /// A segment is left for a new one once it would grow past this.
    pub segment_bytes: u64,
    /// A month document is compacted once its changes outweigh its snapshot and this.
    pub compact_bytes: u64,
    /// What a check's events mean for the index (open, counters).
    pub classifier: Arc<dyn Classifier>,
}

impl StoreConfig {
    /// Defaults for `dir`: the real file system, an 8 MiB cache, 16 MiB segments.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            vfs: OsFs::shared(),
            index_dir: dir.join("index"),
            cache_bytes: 8 * 1024 * 1024,
            segment_bytes: 16 * 1024 * 1024,
            compact_bytes: 64 * 1024,
            classifier: Arc::new(OpenUntilResolved),
        }
    }
}

/// The verified events of a check or a month, ordered by (time, device, id), and what did
/// not open.
#[derive(Debug, Clone, Default)]
pub struct MonthEvents {
    /// Events that opened.
    pub events: Vec<(EventId, Event)>,
    /// Records that did not open (damage or a missing key).
    pub rejected: Vec<Rejected>,
}

/// A record that was found but did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Where it is (month, segment, offset).
    pub at: String,
    /// Why.
    pub reason: String,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The event's id (for a capture already made: the id of the check's first record).
    pub id: EventId,
    /// Whether this call wrote it (false: it was there already).
    pub new: bool,
}

/// A check as the index holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckInfo {
    /// Its class.
    pub class: CheckClass,
    /// How many events it has: changes whenever a new event arrives, so a folded state
    /// cached with it is current while this is unchanged.
    pub events: usize,
}

/// Something recovery did or found, kept so staff can be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthNote {
    /// When (RFC 3339).
    pub at: String,
    /// What.
    pub kind: HealthKind,
    /// Details for the log and for support (English, no personal data).
    pub detail: String,
}

/// The kinds of [`HealthNote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum HealthKind {
    /// The index was damaged or out of date and was rebuilt from the segments.
    IndexRebuilt,
    /// A segment was damaged: the damaged bytes are quarantined, the records around them kept.
    SegmentDamaged,
    /// Records that do not open (no key for them here, or damaged): kept, and tried again
    /// when a key arrives.
    UnreadableRecords,
    /// A month key file is damaged: it is not used; a paired device can send the key again.
    KeyDamaged,
    /// A small document was damaged and started again.
    DocumentDamaged,
    /// An interrupted purge was finished.
    PurgeFinished,
    /// An interrupted carry-over (カルテ持ち越し, [`Store::purge_except`]) was finished: the
    /// rest of its month deleted.
    CarryOverFinished,
}

impl HealthKind {
    /// Whether this is damage (staff must be told) rather than routine repair.
    pub fn is_damage(self) -> bool {
        matches!(
            self,
            HealthKind::IndexRebuilt
                | HealthKind::SegmentDamaged
                | HealthKind::UnreadableRecords
                | HealthKind::KeyDamaged
                | HealthKind::DocumentDamaged
        )
    }
}

/// What [`Store::maintain`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Event ids added to month documents.
    pub documented: usize,
    /// Month documents compacted.
    pub compacted: usize,
}

/// A full check of every record ([`Store::verify`]).
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Records that opened.
    pub records: usize,
    /// Records (or bytes) that did not.
    pub problems: Vec<Rejected>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The first event of a check: idempotent by check id.
    Capture,
    /// A later event of this device.
    Append,
    /// A peer's event: idempotent by event id.
    Receive,
}

/// A record signed and sealed on the writer's thread, waiting for its group.
#[derive(Debug)]
struct Prepared {
    month: Month,
    kind: Kind,
    record: Record,
    event: Event,
    /// What `record` seals: sealed again by the leader if a carry-over retired the key
    /// meanwhile.
    signed: SignedEvent,
}

type Answer = Result<Appended, StoreError>;

/// A writer announced to the group commit before it prepares its record (see
/// [`commit::Committer::enter`]), so a leader already in charge waits for it briefly; if
/// it never submits (its preparation failed), dropping it says so.
struct Writer {
    store: Store,
    armed: bool,
}

impl Writer {
    fn new(store: &Store) -> Self {
        store.inner.committer.enter();
        Self {
            store: store.clone(),
            armed: true,
        }
    }

    /// The writer submits now (the committer counts it as it queues the request).
    fn submitting(mut self) -> bool {
        self.armed = false;
        true
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.armed {
            self.store.inner.committer.abandon();
        }
    }
}

/// Why a record did not open.
#[derive(Debug)]
pub(crate) enum Unopened {
    /// Reading its key failed: try again later, never skip it.
    Io(StoreError),
    /// It cannot open as things are (no key for it here, damaged): kept, reported, and
    /// tried again when a key arrives.
    Unreadable(String),
}

struct Inner {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    quarantine: PathBuf,
    _lock: Box<dyn LockGuard>,
    device: DeviceKey,
    clock: Hlc,
    keys: KeyRing,
    segments: Segments,
    index: Index,
    docs: MonthDocs,
    small: SmallDocs,
    tombstones: Tombstones,
    carried: CarriedCounts,
    classifier: Arc<dyn Classifier>,
    committer: Committer<Prepared, Answer>,
    /// Held by the commit leader for a group, and by a purge or a carry-over.
    gate: Mutex<()>,
    /// Shared by everything that writes a month's documents and by the reads that follow
    /// the index into segments; exclusive for a purge and while a carry-over replaces a
    /// month's index and deletes its old segments: a document is never saved into a month
    /// being deleted, and a read never meets a segment deleted under it.
    purging: RwLock<()>,
    /// What is durable but not yet indexed; see [`indexer`].
    pending: Mutex<indexer::Pending>,
    /// The check ids of months, so a new capture's idempotency check reads no index.
    known: known::Known,
    /// Serialises index writers: the indexer, a reader draining, a catch-up, a purge.
    index_lock: Mutex<()>,
    /// An index update failed: the next drain indexes the segments again from their
    /// watermarks.
    stale: AtomicBool,
    /// Records appended since the store was opened (captures, writes and peers'
    /// records): a reader that counted its own knows whether anyone else wrote.
    appended: AtomicU64,
    health: Mutex<Vec<HealthNote>>,
    /// Declared last: dropped (stopped and joined) before the parts it uses.
    indexer: indexer::Indexer,
}

/// What [`Store::receive_many`] checks besides what every received record must pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReceiveChecks<'a> {
    /// Event id → record digest, as the month document names them: a record not in it,
    /// or whose digest differs, is refused.
    pub expected: Option<&'a HashMap<EventId, [u8; 8]>>,
    /// The devices whose signatures are accepted.
    pub signers: Option<&'a std::collections::HashSet<DeviceId>>,
}

/// What a peer's sync message for a month document named (see
/// [`Store::receive_sync_message`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Named {
    /// The entries its changes put: event id → record digest, as the document now holds
    /// them.
    pub entries: Vec<(EventId, [u8; 8])>,
    /// Those whose record this device does not hold (to fetch).
    pub missing: Vec<EventId>,
}

/// The event id a record body names (as [`Store::record_bodies`] gives bodies), if the
/// body is a record at all.
pub(crate) fn record_id(body: &[u8]) -> Option<EventId> {
    Record::from_body(body).map(|r| r.id)
}

/// A document devices keep in common (共有文書) and sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SharedDoc {
    /// A month's set of event ids with their record digests.
    Month(Month),
    /// The clinic's devices.
    Devices,
    /// The shared settings.
    Settings,
}

impl SharedDoc {
    fn small_name(self) -> &'static str {
        match self {
            SharedDoc::Devices => "devices",
            SharedDoc::Settings | SharedDoc::Month(_) => "settings",
        }
    }
}

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("device", self.inner.device.id())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section in this module leaves its data consistent before anything
    // that can panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_guard(l: &RwLock<()>) -> RwLockReadGuard<'_, ()> {
    // Guards no data: poisoning means nothing here.
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// Refuses a record too large to be read back (it would look like damage).
fn check_size(record: &Record) -> Result<(), StoreError> {
    let size = record.body().len();
    if size > segment::MAX_BODY {
        return Err(StoreError::TooLarge {
            size,
            limit: segment::MAX_BODY,
        });
    }
    Ok(())
}

fn check_id_ok(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

impl Store {
    /// Opens (or creates) the store in `config.dir`. See [`OpenError`] for what can stop
    /// it; damage never does (it is repaired and reported in [`Store::health`]).
    pub fn open(config: &StoreConfig) -> Result<Self, OpenError> {
        recovery::open(config)
    }

    /// Opens the store, waiting up to `patience` while another process has it.
    pub fn open_waiting(
        config: &StoreConfig,
        patience: std::time::Duration,
    ) -> Result<Self, OpenError> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            match Self::open(config) {
                Err(OpenError::InUse { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// This device's key.
    pub fn device(&self) -> &DeviceKey {
        &self.inner.device
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    // ----- writing -----

    /// Captures the first event of check `check_id` and waits until it is durable: the
    /// acknowledgement of a check. Idempotent by check id: if the check exists, nothing is
    /// written and its first record's id is returned with `new: false`.
    ///
    /// Not cancel-safe: dropping the future does not stop the write; call again with the
    /// same check id to learn its outcome.
    pub async fn capture(
        &self,
        check_id: &str,
        month: Month,
        payload: serde_json::Value,
    ) -> Result<Appended, StoreError> {
        let check_id = check_id.to_string();
        // Announced before the hop to the blocking pool, so a leader already in charge
        // waits for this capture too (see `commit`).
        let writer = Writer::new(self);
        self.on_blocking_pool(move |s| s.write(writer, &check_id, month, payload, Kind::Capture))
            .await
    }

    /// Appends a later event of check `check_id` and waits until it is durable.
    ///
    /// Not cancel-safe: dropping the future does not stop the write.
    pub async fn append(
        &self,
        check_id: &str,
        month: Month,
        payload: serde_json::Value,
    ) -> Result<Appended, StoreError> {
        let check_id = check_id.to_string();
        let writer = Writer::new(self);
        self.on_blocking_pool(move |s| s.write(writer, &check_id, month, payload, Kind::Append))
            .await
    }

    /// Runs `f` off the reactor (disk and CPU work). On a multi-threaded runtime it runs
    /// on this task's own worker, which first hands its other tasks to another thread
    /// (`block_in_place`): a lone capture then pays no hop to a blocking-pool thread,
    /// whose wake-up was the largest part of its tail on a loaded two-core machine
    /// (capture bench: async p99 2.8x the fsync's against 1.2x on the calling thread).
    /// Everywhere else, on tokio's blocking pool.
    async fn on_blocking_pool<T: Send + 'static>(
        &self,
        f: impl FnOnce(Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            return tokio::task::block_in_place(move || f(store));
        }
        tokio::task::spawn_blocking(move || f(store))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// [`Store::capture`] on the calling thread.
    pub fn capture_blocking(
        &self,
        check_id: &str,
        month: Month,
        payload: serde_json::Value,
    ) -> Result<Appended, StoreError> {
        self.write(Writer::new(self), check_id, month, payload, Kind::Capture)
    }

    /// [`Store::append`] on the calling thread.
    pub fn append_blocking(
        &self,
        check_id: &str,
        month: Month,
        payload: serde_json::Value,
    ) -> Result<Appended, StoreError> {
        self.write(Writer::new(self), check_id, month, payload, Kind::Append)
    }

    /// Prepares and commits a new event of this device for `writer`.
    fn write(
        &self,
        writer: Writer,
        check_id: &str,
        month: Month,
        payload: serde_json::Value,
        kind: Kind,
    ) -> Result<Appended, StoreError> {
        let prepared = self.prepare(check_id, month, payload, kind)?;
        self.commit(prepared, Some(writer))
    }

    /// Signs and seals a new event of this device.
    fn prepare(
        &self,
        check_id: &str,
        month: Month,
        payload: serde_json::Value,
        kind: Kind,
    ) -> Result<Prepared, StoreError> {
        if !check_id_ok(check_id) {
            return Err(StoreError::BadCheckId(check_id.to_string()));
        }
        if self.inner.tombstones.contains(month) {
            return Err(StoreError::Purged(month));
        }
        let event = Event {
            check_id: check_id.to_string(),
            month,
            at: self.inner.clock.now(),
            device: self.inner.device.id().clone(),
            payload,
        };
        let signed = SignedEvent::sign(&event, &self.inner.device)?;
        let (key_id, key) = self.inner.keys.sealing_key(month)?;
        let record = seal_as_record(month, key_id, &key, &signed);
        check_size(&record)?;
        Ok(Prepared {
            month,
            kind,
            record,
            event,
            signed,
        })
    }

    /// Receives a peer's record (its body as [`Store::record_bodies`] gives it): it must
    /// open with a key of the month this device holds, carry its own id, verify (the one
    /// time its signature is checked), belong to `month`, and have a believable time. The
    /// same record twice changes nothing.
    pub fn receive(&self, month: Month, body: &[u8]) -> Result<Appended, StoreError> {
        let writer = Writer::new(self);
        let prepared = self.verify_received(month, body, &ReceiveChecks::default())?;
        self.commit(prepared, Some(writer))
    }

    /// Receives a batch of a peer's records of `month` (as [`Store::receive`] does each),
    /// written as one group with one fsync; one answer per body, in order. With `expected`
    /// (event id → digest, from the month document), a record whose id is not in it or
    /// whose digest differs is refused. Signatures are verified on every core, in batches
    /// ([`SignedEvent::verify_many`]).
    pub fn receive_many(
        &self,
        month: Month,
        bodies: &[Vec<u8>],
        checks: &ReceiveChecks<'_>,
    ) -> Vec<Result<Appended, StoreError>> {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8);
        let per = bodies.len().div_ceil(workers).max(1);
        let verified: Vec<Result<Prepared, StoreError>> = std::thread::scope(|s| {
            let handles: Vec<_> = bodies
                .chunks(per)
                .map(|chunk| {
                    s.spawn(move || {
                        let opened: Vec<Result<(Record, SignedEvent), StoreError>> = chunk
                            .iter()
                            .map(|b| self.open_received(month, b, checks))
                            .collect();
                        let signed: Vec<&SignedEvent> =
                            opened.iter().flatten().map(|(_, s)| s).collect();
                        let mut verified = SignedEvent::verify_many(&signed).into_iter();
                        opened
                            .into_iter()
                            .map(|o| {
                                let (record, signed) = o?;
                                let event = verified.next().ok_or_else(|| {
                                    StoreError::Task("a signature went unchecked".into())
                                })??;
                                self.accept_received(month, record, signed, event, checks)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join().unwrap_or_else(|_| {
                        vec![Err(StoreError::Task("a verifier panicked".into()))]
                    })
                })
                .collect()
        });
        let mut answers: Vec<Option<Answer>> = Vec::with_capacity(bodies.len());
        let mut group = Vec::new();
        let mut slots = Vec::new();
        for v in verified {
            match v {
                Ok(p) => {
                    slots.push(answers.len());
                    answers.push(None);
                    group.push(p);
                }
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        if !group.is_empty() {
            // The leader's own step, called directly: it takes the commit gate, so this
            // group is written between two of the committer's, never beside one.
            for (slot, answer) in slots.into_iter().zip(self.process(group)) {
                answers[slot] = Some(answer);
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or(Err(StoreError::WriterLost)))
            .collect()
    }

    /// Checks a peer's record (see [`Store::receive`]) and prepares it for the commit.
    fn verify_received(
        &self,
        month: Month,
        body: &[u8],
        checks: &ReceiveChecks<'_>,
    ) -> Result<Prepared, StoreError> {
        let (record, signed) = self.open_received(month, body, checks)?;
        let event = signed.verify()?;
        self.accept_received(month, record, signed, event, checks)
    }

    /// The first half of [`Store::verify_received`]: the record as the document names it,
    /// opened with its month key; its signature is not checked yet.
    fn open_received(
        &self,
        month: Month,
        body: &[u8],
        checks: &ReceiveChecks<'_>,
    ) -> Result<(Record, SignedEvent), StoreError> {
        if self.inner.tombstones.contains(month) {
            return Err(StoreError::Purged(month));
        }
        let record =
            Record::from_body(body).ok_or_else(|| EventError::Malformed("not a record".into()))?;
        check_size(&record)?;
        if let Some(expected) = checks.expected {
            match expected.get(&record.id) {
                Some(d) if *d == record.digest() => {}
                Some(_) => {
                    return Err(StoreError::NotAsNamed(format!(
                        "record {} differs from its digest in the month document",
                        record.id
                    )))
                }
                None => {
                    return Err(StoreError::NotAsNamed(format!(
                        "record {} is not in the month document",
                        record.id
                    )))
                }
            }
        }
        let key = self
            .inner
            .keys
            .get(month, record.key_id)?
            .ok_or(StoreError::NoKey {
                month,
                key: record.key_id,
            })?;
        let signed = unseal(month, &key, &record)?;
        Ok((record, signed))
    }

    /// The second half of [`Store::verify_received`], once `signed`'s signature is
    /// checked and its body is `event`: the signer, month, time and check id.
    fn accept_received(
        &self,
        month: Month,
        record: Record,
        signed: SignedEvent,
        event: Event,
        checks: &ReceiveChecks<'_>,
    ) -> Result<Prepared, StoreError> {
        if let Some(signers) = checks.signers {
            if !signers.contains(&event.device) {
                return Err(StoreError::UnknownSigner(event.device));
            }
        }
        if event.month != month {
            return Err(EventError::WrongMonth {
                event: event.month,
                document: month,
            }
            .into());
        }
        // Events are written at or after the visit; a day of slack covers a wrong time zone.
        if event.at.wall_ms + 86_400_000 < month.start_ms() {
            return Err(EventError::BeforeItsMonth {
                at_ms: event.at.wall_ms,
                month,
            }
            .into());
        }
        if !check_id_ok(&event.check_id) {
            return Err(StoreError::BadCheckId(event.check_id));
        }
        self.inner.clock.observe(event.at)?;
        Ok(Prepared {
            month,
            kind: Kind::Receive,
            record,
            event,
            signed,
        })
    }

    /// Hands `prepared` to the group commit and waits for its answer. `writer` is the
    /// announcement made before preparing it, if any.
    fn commit(&self, prepared: Prepared, writer: Option<Writer>) -> Result<Appended, StoreError> {
        let entered = writer.is_some_and(Writer::submitting);
        let process = |group: Vec<Prepared>| self.process(group);
        self.inner
            .committer
            .submit(prepared, entered, &process, || Err(StoreError::WriterLost))
    }

    /// The leader's work for one group: idempotency, one append and fsync per month, the
    /// hand-off to the indexer. Runs with the gate held, so groups never overlap.
    fn process(&self, mut group: Vec<Prepared>) -> Vec<Answer> {
        let _gate = lock(&self.inner.gate);
        let mut answers: Vec<Option<Answer>> = (0..group.len()).map(|_| None).collect();
        // A request that repeats an earlier one of this group (a retry that caught up with
        // its first try) shares that one's outcome, whatever it is.
        let mut first_capture: HashMap<(Month, String), usize> = HashMap::new();
        let mut first_id: HashMap<(Month, EventId), usize> = HashMap::new();
        let mut repeats: Vec<(usize, usize)> = Vec::new();
        let mut by_month: BTreeMap<Month, Vec<usize>> = BTreeMap::new();
        for (i, p) in group.iter_mut().enumerate() {
            if self.inner.tombstones.contains(p.month) {
                answers[i] = Some(Err(StoreError::Purged(p.month)));
                continue;
            }
            // A peer's record of a month carried over here: its check may be one the
            // carry-over removed (the record was checked before the carry-over took the
            // gate), and it must not be sealed again under the carry-over key.
            if p.kind == Kind::Receive && self.inner.carried.get(p.month).is_some() {
                answers[i] = Some(Err(StoreError::Carried(p.month)));
                continue;
            }
            if let Err(e) = self.still_sealed(p) {
                answers[i] = Some(Err(e));
                continue;
            }
            let capture_key = (p.month, p.event.check_id.clone());
            let earlier = match p.kind {
                Kind::Capture => first_capture.get(&capture_key),
                Kind::Receive => first_id.get(&(p.month, p.record.id)),
                Kind::Append => None,
            };
            if let Some(&first) = earlier {
                repeats.push((i, first));
                continue;
            }
            let existing = match p.kind {
                Kind::Capture => self.existing_capture(p.month, &p.event.check_id),
                Kind::Receive => {
                    if lock(&self.inner.pending)
                        .ids
                        .contains(&(p.month, p.record.id))
                    {
                        Ok(Some(p.record.id))
                    } else {
                        self.inner
                            .index
                            .event(p.month, p.record.id)
                            .map(|loc| loc.map(|_| p.record.id))
                            .map_err(StoreError::from)
                    }
                }
                Kind::Append => Ok(None),
            };
            match existing {
                Ok(Some(id)) => answers[i] = Some(Ok(Appended { id, new: false })),
                Ok(None) => {
                    if p.kind == Kind::Capture {
                        first_capture.insert(capture_key, i);
                    }
                    first_id.insert((p.month, p.record.id), i);
                    by_month.entry(p.month).or_default().push(i);
                }
                Err(e) => answers[i] = Some(Err(e)),
            }
        }
        for (month, members) in by_month {
            let mut frames = Vec::new();
            let mut spans = Vec::with_capacity(members.len());
            for &i in &members {
                let f = group[i].record.frame();
                spans.push((frames.len() as u64, f.len() as u32));
                frames.extend_from_slice(&f);
            }
            match self.inner.segments.append(month, &frames) {
                Err(e) => {
                    tracing::error!(%month, segment = %e.path.display(), error = %e.source, "append failed; nothing acknowledged");
                    for &i in &members {
                        answers[i] = Some(Err(StoreError::Write {
                            path: e.path.display().to_string(),
                            source: io::Error::new(e.source.kind(), e.source.to_string()),
                        }));
                    }
                }
                Ok((seg, start, end)) => {
                    // Durable from here: the indexer takes it on, and nothing that fails
                    // after this point turns the acknowledgement into a failure.
                    // The events move to the indexer; only their payloads are large, and
                    // nothing here reads those again (this runs while every later group
                    // waits).
                    let records: Vec<NewRecord> = members
                        .iter()
                        .zip(&spans)
                        .map(|(&i, (off, len))| {
                            let id = group[i].record.id;
                            let e = &mut group[i].event;
                            NewRecord {
                                loc: Loc {
                                    seg,
                                    offset: start + off,
                                    len: *len,
                                },
                                id,
                                event: Event {
                                    check_id: e.check_id.clone(),
                                    month: e.month,
                                    at: e.at,
                                    device: e.device.clone(),
                                    payload: std::mem::take(&mut e.payload),
                                },
                            }
                        })
                        .collect();
                    for &i in &members {
                        self.inner.known.add(month, &group[i].event.check_id);
                    }
                    let captures = members
                        .iter()
                        .filter(|&&i| group[i].kind == Kind::Capture)
                        .map(|&i| (group[i].event.check_id.clone(), group[i].record.id))
                        .collect();
                    let waiting = {
                        let mut pending = lock(&self.inner.pending);
                        pending.push(indexer::Work {
                            month,
                            records,
                            ends: BTreeMap::from([(seg, end)]),
                            captures,
                        });
                        pending.ids.len()
                    };
                    // Counted once they are pending: a session that sees the count has
                    // risen finds them in a read (which drains what is pending).
                    self.inner
                        .appended
                        .fetch_add(members.len() as u64, Ordering::SeqCst);
                    self.inner.indexer.wake(waiting);
                    for &i in &members {
                        answers[i] = Some(Ok(Appended {
                            id: group[i].record.id,
                            new: true,
                        }));
                    }
                }
            }
        }
        for (i, first) in repeats {
            answers[i] = Some(match &answers[first] {
                Some(Ok(a)) => Ok(Appended {
                    id: a.id,
                    new: false,
                }),
                Some(Err(e)) => Err(e.for_a_repeat()),
                None => Err(StoreError::WriterLost),
            });
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or(Err(StoreError::WriterLost)))
            .collect()
    }

    /// Makes sure `p` is sealed with a key of its month this device still holds: a
    /// carry-over ([`Store::purge_except`]) may have retired the key it was sealed with
    /// between its preparation (outside the gate) and now; then it is sealed again with the
    /// month's current key (same signed event, same id). The leader calls this under the
    /// gate, so no carry-over comes between it and the append.
    fn still_sealed(&self, p: &mut Prepared) -> Result<(), StoreError> {
        if self.inner.keys.get(p.month, p.record.key_id)?.is_some() {
            return Ok(());
        }
        let (key_id, key) = self.inner.keys.sealing_key(p.month)?;
        p.record = seal_as_record(p.month, key_id, &key, &p.signed);
        Ok(())
    }

    /// The first record's id of check `check_id`, if the check exists (indexed, or
    /// durable and waiting for the indexer).
    fn existing_capture(
        &self,
        month: Month,
        check_id: &str,
    ) -> Result<Option<EventId>, StoreError> {
        let key = (month, check_id.to_string());
        let received = {
            let p = lock(&self.inner.pending);
            if let Some(id) = p.checks.get(&key) {
                return Ok(Some(*id));
            }
            p.held.contains_key(&key)
        };
        if received {
            // A peer's record of this check is durable but not indexed yet: index it, so
            // the check's first record is known.
            self.drain_index()?;
            return self.indexed_capture(month, check_id);
        }
        let known = match self.inner.known.may_hold(month, check_id) {
            None if !self.inner.stale.load(Ordering::SeqCst) => {
                // Pending first, then the index: a record leaves pending only once it is
                // in the index, and only the leader (who is here) adds to pending.
                let pending: Vec<String> = lock(&self.inner.pending)
                    .held
                    .keys()
                    .filter(|(m, _)| *m == month)
                    .map(|(_, c)| c.clone())
                    .collect();
                let indexed = self.inner.index.check_ids(month)?;
                self.inner
                    .known
                    .load(month, indexed.iter().chain(&pending).map(String::as_str));
                self.inner.known.may_hold(month, check_id)
            }
            known => known,
        };
        if known == Some(false) {
            return Ok(None);
        }
        self.indexed_capture(month, check_id)
    }

    /// The first record of check `check_id` as the index knows it.
    fn indexed_capture(&self, month: Month, check_id: &str) -> Result<Option<EventId>, StoreError> {
        let Some(entry) = self.inner.index.check(month, check_id)? else {
            return Ok(None);
        };
        let Some(first) = entry.locs.first() else {
            return Ok(None);
        };
        let frame = self.read_frame(month, *first)?;
        Ok(Some(frame.id))
    }

    fn index_add(
        &self,
        month: Month,
        new: Vec<NewRecord>,
        ends: &BTreeMap<u32, u64>,
    ) -> Result<(), StoreError> {
        let prior = |loc: Loc| match self.read_event(month, loc) {
            Ok(e) => Ok(Some(e)),
            Err(StoreError::Damaged { reason, .. }) => {
                tracing::warn!(%month, %reason, "an indexed record does not open; classifying without it");
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
        };
        Ok(self
            .inner
            .index
            .add(month, new, ends, self.inner.classifier.as_ref(), &prior)?)
    }

    /// Applies what is pending to the index (one sled batch per month); after a failure,
    /// first indexes the segments again from their watermarks. Serialised with every other
    /// index writer.
    fn drain_index(&self) -> Result<(), StoreError> {
        self.drain_index_up_to(usize::MAX).map(|_| ())
    }

    /// Indexes the oldest pending groups, about `limit` records of them (whole groups, at
    /// least one); returns whether any are left.
    fn drain_index_up_to(&self, limit: usize) -> Result<bool, StoreError> {
        let _ix = lock(&self.inner.index_lock);
        let (work, left) = {
            let mut p = lock(&self.inner.pending);
            let mut records = 0;
            let take = p
                .work
                .iter()
                .take_while(|w| {
                    let first = records == 0;
                    records += w.records.len();
                    first || records <= limit
                })
                .count();
            let work: Vec<indexer::Work> = p.work.drain(..take).collect();
            (work, !p.work.is_empty())
        };
        let mut result = Ok(());
        if self.inner.stale.load(Ordering::SeqCst) {
            match recovery::catch_up(self) {
                Ok(()) => self.inner.stale.store(false, Ordering::SeqCst),
                Err(e) => result = Err(e),
            }
        }
        let mut by_month: BTreeMap<Month, Vec<indexer::Work>> = BTreeMap::new();
        for w in work {
            by_month.entry(w.month).or_default().push(w);
        }
        for (month, works) in by_month {
            let mut records = Vec::new();
            let mut ends = BTreeMap::new();
            let mut captures = Vec::new();
            for w in &works {
                captures.extend(w.captures.iter().cloned());
                for (seg, end) in &w.ends {
                    let e = ends.entry(*seg).or_insert(0);
                    *e = (*e).max(*end);
                }
            }
            for w in &works {
                records.extend(w.records.iter().map(|r| NewRecord {
                    loc: r.loc,
                    id: r.id,
                    event: r.event.clone(),
                }));
            }
            match self.index_add(month, records, &ends) {
                Ok(_) => lock(&self.inner.pending).indexed(
                    month,
                    works.iter().flat_map(|w| &w.records),
                    &captures,
                ),
                Err(e) => {
                    // Put it back, ahead of anything newer, and index from the watermarks
                    // next time.
                    self.inner.stale.store(true, Ordering::SeqCst);
                    let mut p = lock(&self.inner.pending);
                    let newer = std::mem::take(&mut p.work);
                    p.work = works;
                    p.work.extend(newer);
                    result = Err(e);
                }
            }
        }
        result.map(|()| left)
    }

    /// Before a read: whatever is durable is indexed.
    fn fresh(&self) -> Result<(), StoreError> {
        // `ids` stay until their records are in the index, also while a drain that took
        // them is still applying: then the drain below waits for it (index lock).
        let behind =
            self.inner.stale.load(Ordering::SeqCst) || !lock(&self.inner.pending).ids.is_empty();
        if behind {
            self.drain_index()?;
        }
        Ok(())
    }

    // ----- reading -----

    fn read_frame(&self, month: Month, loc: Loc) -> Result<Record, StoreError> {
        let at = || format!("{month}/{}@{}", loc.seg, loc.offset);
        // A read that fails is not damage (it is tried again); a location the segment
        // cannot hold is.
        let bytes = self
            .inner
            .segments
            .read(month, loc)
            .map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData
                | io::ErrorKind::UnexpectedEof
                | io::ErrorKind::NotFound => StoreError::Damaged {
                    at: at(),
                    reason: e.to_string(),
                },
                _ => StoreError::Read {
                    path: self
                        .inner
                        .segments
                        .path(month, loc.seg)
                        .display()
                        .to_string(),
                    source: e,
                },
            })?;
        match segment::decode_frame(&bytes) {
            segment::Frame::Good(body, len) if len == bytes.len() => Record::from_body(body)
                .ok_or_else(|| StoreError::Damaged {
                    at: at(),
                    reason: "unknown record version".into(),
                }),
            _ => Err(StoreError::Damaged {
                at: at(),
                reason: "checksum mismatch".into(),
            }),
        }
    }

    /// Opens a record: the AEAD proves it is the one written (the signature was checked
    /// when it was written or received, and is not checked again).
    fn open_record(&self, month: Month, record: &Record) -> Result<Event, Unopened> {
        let key = self
            .inner
            .keys
            .get(month, record.key_id)
            .map_err(|e| Unopened::Io(e.into()))?
            .ok_or_else(|| Unopened::Unreadable(format!("no key {} for {month}", record.key_id)))?;
        let bad = |why: String| Unopened::Unreadable(why);
        let signed = unseal(month, &key, record).map_err(|e| bad(e.to_string()))?;
        let event: Event =
            serde_json::from_slice(&signed.body).map_err(|e| bad(format!("event body: {e}")))?;
        if event.month != month {
            return Err(bad(format!("event of {} in {month}", event.month)));
        }
        Ok(event)
    }

    fn read_event(&self, month: Month, loc: Loc) -> Result<(EventId, Event), StoreError> {
        let record = self.read_frame(month, loc)?;
        match self.open_record(month, &record) {
            Ok(event) => Ok((record.id, event)),
            Err(Unopened::Io(e)) => Err(e),
            Err(Unopened::Unreadable(reason)) => Err(StoreError::Damaged {
                at: format!("{month}/{}@{}", loc.seg, loc.offset),
                reason,
            }),
        }
    }

    /// Months that hold data, oldest first.
    pub fn months(&self) -> Result<Vec<Month>, StoreError> {
        Ok(self
            .inner
            .segments
            .month_list()
            .into_iter()
            .filter(|m| !self.inner.tombstones.contains(*m))
            .collect())
    }

    /// The checks of a month, sorted by id.
    pub fn check_ids(&self, month: Month) -> Result<Vec<String>, StoreError> {
        self.fresh()?;
        Ok(self.inner.index.check_ids(month)?)
    }

    /// The open checks of a month, sorted by id (read from the index: the month is not
    /// opened).
    pub fn open_checks(&self, month: Month) -> Result<Vec<String>, StoreError> {
        self.fresh()?;
        Ok(self.inner.index.open_checks(month)?)
    }

    /// The checks that can be found by lookup key `k` ([`Classifier::lookup_keys`]), newest
    /// month first, each month's sorted by id (read from the index: no month is opened).
    pub fn checks_by_key(&self, k: &LookupKey) -> Result<Vec<(Month, String)>, StoreError> {
        self.fresh()?;
        let mut out = Vec::new();
        for month in self.months()?.into_iter().rev() {
            for id in self.inner.index.checks_by_key(month, k)? {
                out.push((month, id));
            }
        }
        Ok(out)
    }

    /// The counts of a month.
    pub fn counts(&self, month: Month) -> Result<MonthCounts, StoreError> {
        self.fresh()?;
        Ok(self.inner.index.counts(month)?)
    }

    /// A check's class and event count, from the index.
    pub fn check_info(
        &self,
        month: Month,
        check_id: &str,
    ) -> Result<Option<CheckInfo>, StoreError> {
        self.fresh()?;
        Ok(self.inner.index.check(month, check_id)?.map(|e| CheckInfo {
            class: e.class,
            events: e.locs.len(),
        }))
    }

    /// The events of one check, ordered by (time, device, id). Opens only its records.
    pub fn check_events(&self, month: Month, check_id: &str) -> Result<MonthEvents, StoreError> {
        let _segments = read_guard(&self.inner.purging);
        self.fresh()?;
        let mut out = MonthEvents::default();
        if self.inner.tombstones.contains(month) {
            return Err(StoreError::Purged(month));
        }
        if let Some(entry) = self.inner.index.check(month, check_id)? {
            for loc in entry.locs {
                let at = || format!("{month}/{}@{}", loc.seg, loc.offset);
                match self.read_event(month, loc) {
                    Ok(e) if e.1.check_id == check_id => out.events.push(e),
                    Ok(_) => {
                        tracing::error!(%month, at = %at(), "the index points to another check's record");
                        out.rejected.push(Rejected {
                            at: at(),
                            reason: "the index points to another check's record".into(),
                        });
                    }
                    Err(e @ StoreError::Read { .. }) => return Err(e),
                    Err(e) => out.rejected.push(Rejected {
                        at: at(),
                        reason: e.to_string(),
                    }),
                }
            }
        }
        sort_events(&mut out.events);
        Ok(out)
    }

    /// The month holding check `check_id`, if any.
    pub fn month_of_check(&self, check_id: &str) -> Result<Option<Month>, StoreError> {
        self.fresh()?;
        for month in self.months()?.into_iter().rev() {
            if self.inner.index.check(month, check_id)?.is_some() {
                return Ok(Some(month));
            }
        }
        Ok(None)
    }

    /// Every event of a month, in order (reports and tests: this reads the whole month).
    pub fn events(&self, month: Month) -> Result<MonthEvents, StoreError> {
        let _segments = read_guard(&self.inner.purging);
        self.fresh()?;
        if self.inner.tombstones.contains(month) {
            return Err(StoreError::Purged(month));
        }
        let mut out = MonthEvents::default();
        let mut seen = std::collections::HashSet::new();
        let marks = self.inner.index.watermarks(month)?;
        for (seg, end) in marks {
            let found = self.records_in(month, seg, segment::HEADER_LEN, end)?;
            for f in found {
                if !seen.insert(f.record.id) {
                    continue;
                }
                match self.open_record(month, &f.record) {
                    Ok(e) => out.events.push((f.record.id, e)),
                    Err(Unopened::Io(e)) => return Err(e),
                    Err(Unopened::Unreadable(reason)) => out.rejected.push(Rejected {
                        at: format!("{month}/{seg}@{}", f.offset),
                        reason,
                    }),
                }
            }
        }
        sort_events(&mut out.events);
        Ok(out)
    }

    /// The whole records of segment `seg` between `from` and `to`.
    fn records_in(
        &self,
        month: Month,
        seg: u32,
        from: u64,
        to: u64,
    ) -> Result<Vec<segment::Found>, StoreError> {
        let bytes = self
            .inner
            .segments
            .read_from(month, seg, from)
            .map_err(|source| StoreError::Read {
                path: self.inner.segments.path(month, seg).display().to_string(),
                source,
            })?;
        let scan = segment::scan(&bytes, from);
        Ok(scan
            .records
            .into_iter()
            .filter(|f| f.offset + u64::from(f.len) <= to)
            .collect())
    }

    /// Reads and opens every record of every month, reporting what does not open.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let _segments = read_guard(&self.inner.purging);
        self.fresh()?;
        let mut report = VerifyReport::default();
        for month in self.months()? {
            for (seg, valid) in self.inner.segments.list(month) {
                let bytes = self
                    .inner
                    .segments
                    .read_from(month, seg, segment::HEADER_LEN)
                    .map_err(|source| StoreError::Read {
                        path: self.inner.segments.path(month, seg).display().to_string(),
                        source,
                    })?;
                let scan = segment::scan(&bytes, segment::HEADER_LEN);
                for f in &scan.records {
                    match self.open_record(month, &f.record) {
                        Ok(_) => report.records += 1,
                        Err(Unopened::Io(e)) => return Err(e),
                        Err(Unopened::Unreadable(reason)) => report.problems.push(Rejected {
                            at: format!("{month}/{seg}@{}", f.offset),
                            reason,
                        }),
                    }
                }
                if scan.end != segment::End::Clean {
                    report.problems.push(Rejected {
                        at: format!("{month}/{seg}"),
                        reason: format!("{:?} (valid length {valid})", scan.end),
                    });
                }
            }
        }
        Ok(report)
    }

    // ----- sync -----

    /// The month's document, brought up to date (what a new peer receives).
    pub fn month_document(&self, month: Month) -> Result<Vec<u8>, StoreError> {
        let _docs = read_guard(&self.inner.purging);
        self.document_caught_up(month)?;
        Ok(self.inner.docs.save_whole(month)?)
    }

    /// The month's event ids and record digests, as its document holds them.
    pub fn month_entries(&self, month: Month) -> Result<Vec<(EventId, [u8; 8])>, StoreError> {
        let _docs = read_guard(&self.inner.purging);
        self.document_caught_up(month)?;
        Ok(self
            .inner
            .docs
            .entries(month)?
            .into_iter()
            .map(|e| (e.id, e.digest))
            .collect())
    }

    /// Merges a peer's month document; returns the ids it names that this device has no
    /// record of (to fetch). Refused for a purged month.
    pub fn merge_month_document(
        &self,
        month: Month,
        bytes: &[u8],
    ) -> Result<Vec<EventId>, StoreError> {
        self.fresh()?;
        let _docs = read_guard(&self.inner.purging);
        if self.inner.tombstones.contains(month) {
            return Err(StoreError::Purged(month));
        }
        self.inner.docs.merge(month, bytes)?;
        let mut missing = Vec::new();
        for e in self.inner.docs.entries(month)? {
            if self.inner.index.event(month, e.id)?.is_none() {
                missing.push(e.id);
            }
        }
        Ok(missing)
    }

    /// The bodies of the records `ids` of `month` that this device holds (for a peer's
    /// [`Store::receive`]).
    pub fn record_bodies(
        &self,
        month: Month,
        ids: &[EventId],
    ) -> Result<Vec<(EventId, Vec<u8>)>, StoreError> {
        let _segments = read_guard(&self.inner.purging);
        self.fresh()?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(loc) = self.inner.index.event(month, *id)? {
                let record = self.read_frame(month, loc)?;
                if record.id == *id {
                    out.push((*id, record.body()));
                } else {
                    tracing::error!(%month, event = %id, "the index points to another record");
                }
            }
        }
        Ok(out)
    }

    /// Every key of `month` (sent to paired devices only, inside the authenticated channel).
    pub fn month_keys(&self, month: Month) -> Result<Vec<(KeyId, [u8; 32])>, StoreError> {
        Ok(self.inner.keys.all(month)?)
    }

    /// Installs a month key received from a paired device (refused for a purged month), and
    /// indexes the month's records that were waiting for it.
    pub fn install_month_key(&self, month: Month, key: [u8; 32]) -> Result<KeyId, StoreError> {
        if self.is_carried(month) {
            return Err(StoreError::Carried(month));
        }
        let id = self.inner.keys.install(month, key)?;
        self.fresh()?;
        let _ix = lock(&self.inner.index_lock);
        recovery::retry_unreadable(self, month)?;
        Ok(id)
    }

    /// Brings the month document up to date. The caller holds `purging` (shared).
    fn document_caught_up(&self, month: Month) -> Result<usize, StoreError> {
        self.fresh()?;
        if self.inner.tombstones.contains(month) {
            return Err(StoreError::Purged(month));
        }
        let ends = self.inner.index.watermarks(month)?;
        let records = |seg: u32, from: u64| -> io::Result<Vec<segment::Found>> {
            let bytes = self.inner.segments.read_from(month, seg, from)?;
            Ok(segment::scan(&bytes, from).records)
        };
        let added = self.inner.docs.catch_up(month, &ends, &records)?;
        // Only a hint for `maintain` (the document keeps its own watermarks), written when
        // it changes: a read of the document writes nothing to sled.
        if self.inner.index.doc_marks(month)?.as_ref() != Some(&ends) {
            self.inner.index.set_doc_marks(month, &ends)?;
        }
        Ok(added)
    }

    /// The next automerge sync message of `doc` for a peer whose progress is `state`
    /// (`None`: nothing to send now), and the document's heads. A month document is
    /// brought up to date first.
    pub fn sync_message(
        &self,
        doc: SharedDoc,
        state: &mut automerge::sync::State,
    ) -> Result<(Option<Vec<u8>>, Vec<automerge::ChangeHash>), StoreError> {
        match doc {
            SharedDoc::Month(month) => {
                let _docs = read_guard(&self.inner.purging);
                if self.is_carried(month) {
                    return Err(StoreError::Carried(month));
                }
                self.document_caught_up(month)?;
                Ok(self.inner.docs.sync_message(month, state)?)
            }
            SharedDoc::Devices | SharedDoc::Settings => {
                Ok(self.inner.small.sync_message(doc.small_name(), state)?)
            }
        }
    }

    /// Applies a peer's sync message for `doc`. For a month document, returns what its
    /// changes named, and which of those records this device has none of (to fetch); ids
    /// the document named before are not looked at again ([`Store::missing_records`] does).
    /// Refused for a purged month and for a month carried over here (its removed records
    /// must not come back).
    pub fn receive_sync_message(
        &self,
        doc: SharedDoc,
        state: &mut automerge::sync::State,
        message: &[u8],
    ) -> Result<Named, StoreError> {
        match doc {
            SharedDoc::Month(month) => {
                self.fresh()?;
                let _docs = read_guard(&self.inner.purging);
                if self.inner.tombstones.contains(month) {
                    return Err(StoreError::Purged(month));
                }
                if self.is_carried(month) {
                    return Err(StoreError::Carried(month));
                }
                let entries = self.inner.docs.receive_sync(month, state, message)?;
                let mut missing = Vec::new();
                for e in &entries {
                    if self.inner.index.event(month, e.id)?.is_none() {
                        missing.push(e.id);
                    }
                }
                Ok(Named {
                    entries: entries.into_iter().map(|e| (e.id, e.digest)).collect(),
                    missing,
                })
            }
            SharedDoc::Devices | SharedDoc::Settings => {
                self.inner
                    .small
                    .receive_sync(doc.small_name(), state, message)?;
                Ok(Named::default())
            }
        }
    }

    /// How many records this store appended since it was opened (each new record once,
    /// whoever wrote it); it only grows. A session that counts the records it wrote
    /// itself learns from it whether anything else arrived.
    pub fn appended(&self) -> u64 {
        self.inner.appended.load(Ordering::SeqCst)
    }

    /// The ids `month`'s document names that this device holds no record of.
    pub fn missing_records(&self, month: Month) -> Result<Vec<EventId>, StoreError> {
        self.fresh()?;
        let _docs = read_guard(&self.inner.purging);
        if self.inner.tombstones.contains(month) {
            return Err(StoreError::Purged(month));
        }
        self.missing_gated(month)
    }

    /// [`Store::missing_records`]; the caller holds `purging` (shared).
    fn missing_gated(&self, month: Month) -> Result<Vec<EventId>, StoreError> {
        let mut missing = Vec::new();
        for e in self.inner.docs.entries(month)? {
            if self.inner.index.event(month, e.id)?.is_none() {
                missing.push(e.id);
            }
        }
        Ok(missing)
    }

    /// The months whose retention ended here (their tombstones).
    pub fn purged_months(&self) -> Vec<Month> {
        self.inner.tombstones.months()
    }

    /// Whether some of `month`'s checks were removed by a carry-over
    /// ([`Store::purge_except`]) while the month is still held.
    pub fn is_carried(&self, month: Month) -> bool {
        self.inner.carried.get(month).is_some()
    }

    // ----- small documents -----

    fn small_map(&self, name: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let doc = self.inner.small.get(name)?;
        let mut out = BTreeMap::new();
        for k in doc.keys(ROOT) {
            if let Ok(Some((Value::Scalar(v), _))) = doc.get(ROOT, k.as_str()) {
                if let ScalarValue::Str(text) = v.as_ref() {
                    out.insert(k.clone(), text.to_string());
                }
            }
        }
        Ok(out)
    }

    fn register_self(&self) -> Result<(), StoreError> {
        let id = self.inner.device.id().to_string();
        if self.small_map("devices")?.contains_key(&id) {
            return Ok(());
        }
        let key: String = self
            .inner
            .device
            .verifying_key()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let record = serde_json::json!({
            "public_key": key,
            "added_at": chrono::Utc::now().to_rfc3339(),
        })
        .to_string();
        Ok(self
            .inner
            .small
            .change("devices", |doc| doc.put(ROOT, id.as_str(), record.as_str()))?)
    }

    /// The devices of this clinic (device id → JSON with its public key), this one included.
    pub fn devices(&self) -> Result<BTreeMap<String, String>, StoreError> {
        self.small_map("devices")
    }

    /// The shared settings.
    pub fn settings(&self) -> Result<BTreeMap<String, String>, StoreError> {
        self.small_map("settings")
    }

    /// Sets a shared setting.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        Ok(self
            .inner
            .small
            .change("settings", |doc| doc.put(ROOT, key, value))?)
    }

    /// A small document (`devices`, `settings`) as a peer receives it.
    pub fn export_small(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        Ok(self.inner.small.get(name)?.save())
    }

    /// Merges a peer's small document (checked strictly first).
    pub fn merge_small(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        Ok(self.inner.small.merge(name, bytes)?)
    }

    // ----- maintenance and retention -----

    /// Brings every month document up to date, compacts those that need it, and lets go of
    /// them in memory. A month with nothing new since its document was last saved is not
    /// loaded. (Sync runs this; tsunagid's pass does not, to keep documents out of its
    /// memory.)
    pub fn maintain(&self) -> Result<Maintenance, StoreError> {
        self.fresh()?;
        let _docs = read_guard(&self.inner.purging);
        let mut done = Maintenance::default();
        for month in self.months()? {
            let current =
                self.inner.index.doc_marks(month)? == Some(self.inner.index.watermarks(month)?);
            if current && !self.inner.docs.needs_compaction_on_disk(month)? {
                continue;
            }
            done.documented += self.document_caught_up(month)?;
            if self.inner.docs.needs_compaction(month)? {
                self.inner.docs.compact(month)?;
                done.compacted += 1;
            }
        }
        self.inner.docs.unload();
        self.inner.index.flush()?;
        Ok(done)
    }

    /// Compacts one month document now (tests and tools).
    pub fn compact_document(&self, month: Month) -> Result<u64, StoreError> {
        let _docs = read_guard(&self.inner.purging);
        self.document_caught_up(month)?;
        Ok(self.inner.docs.compact(month)?)
    }

    /// Ends a month at the end of its retention: records its tombstone with `aggregate`
    /// (counts, no personal data; the counts carried by earlier carry-overs of the month,
    /// [`Store::purge_except`], are added to it field-wise), then deletes its keys,
    /// segments, documents and index entries. Resumes by itself at the next open if
    /// interrupted.
    pub fn purge(&self, month: Month, aggregate: &serde_json::Value) -> Result<(), StoreError> {
        let _gate = lock(&self.inner.gate);
        self.purge_gated(month, aggregate)
    }

    /// Purges `month` only if its counts are still `seen` — what the caller decided on. A
    /// capture or event written since (another task of the same process: a back-dated
    /// reception check, a peer's record) changes them, and then nothing is purged and
    /// `Ok(false)` says so. The comparison and the purge run under the commit gate, so no
    /// append can come between them.
    pub fn purge_if_unchanged(
        &self,
        month: Month,
        seen: &MonthCounts,
        aggregate: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let _gate = lock(&self.inner.gate);
        self.purge_if_unchanged_gated(month, seen, aggregate)
    }

    /// [`Store::purge_if_unchanged`]; the caller holds the commit gate.
    fn purge_if_unchanged_gated(
        &self,
        month: Month,
        seen: &MonthCounts,
        aggregate: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        if self.counts(month)? != *seen {
            return Ok(false);
        }
        self.purge_gated(month, aggregate)?;
        Ok(true)
    }

    /// Ends `month`'s retention for every check but `keep` (カルテ持ち越し): the kept
    /// checks' records are sealed again under a new carry-over month key in a new segment;
    /// every other segment, quarantined file, document and key of the month is deleted, and
    /// the index of the month rebuilt from what remains. `removed` (an object of numeric
    /// counts) is added to the month's kept counts so statistics survive. Only if the
    /// month's counts are still `seen` (compared under the commit gate, as
    /// purge_if_unchanged does); `Ok(false)` otherwise. With `keep` empty this is
    /// purge_if_unchanged.
    ///
    /// Ids in `keep` that are not checks of the month are ignored: if none is, the whole
    /// month is purged (as with `keep` empty). If every check of the month is kept, nothing
    /// changes and `removed` is not added (`Ok(true)`).
    ///
    /// Afterwards the kept checks read as before (same events, same ids), the month's
    /// counts and open checks are theirs, [`Store::month_keys`] gives only the carry-over
    /// key, and new records of the month are sealed with it. The removed counts (added
    /// field-wise to those of earlier carry-overs: [`retention::add_counts`]) are in
    /// [`Store::aggregates`] until the month is purged, then in its tombstone. Records that
    /// do not open on this device (no key for them yet) are kept as they are: they cannot
    /// be told apart.
    ///
    /// Crash-safe at every step (the order is in `store/carry.rs`): nothing kept is ever
    /// lost or doubled, and the removed counts are counted once. An error after the commit
    /// point leaves the deletion to the next call (which finishes it first, and then
    /// answers `Ok(false)`: the counts changed) or the next open.
    pub fn purge_except(
        &self,
        month: Month,
        seen: &MonthCounts,
        keep: &[String],
        removed: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let _gate = lock(&self.inner.gate);
        if keep.is_empty() {
            return self.purge_if_unchanged_gated(month, seen, removed);
        }
        if self.inner.tombstones.contains(month) {
            return Err(StoreError::Purged(month));
        }
        // A carry-over of the month left unfinished by an error is finished first (its
        // counts are in already).
        carry::finish(self, month)?;
        if self.counts(month)? != *seen {
            return Ok(false);
        }
        let checks = self.check_ids(month)?;
        let kept: Vec<String> = checks
            .iter()
            .filter(|c| keep.contains(c))
            .cloned()
            .collect();
        if kept.is_empty() {
            self.purge_gated(month, removed)?;
        } else if kept.len() < checks.len() {
            carry::carry_over(self, month, &kept, removed)?;
        }
        Ok(true)
    }

    /// The purge itself; the caller holds the commit gate.
    fn purge_gated(&self, month: Month, aggregate: &serde_json::Value) -> Result<(), StoreError> {
        let _no_documents = self
            .inner
            .purging
            .write()
            .unwrap_or_else(|p| p.into_inner());
        // The counts of checks whose retention ended earlier (carry-overs) join the rest.
        let aggregate = match self.inner.carried.get(month) {
            Some(carried) => retention::add_counts(&carried.counts, aggregate),
            None => aggregate.clone(),
        };
        self.inner
            .tombstones
            .add(month, aggregate)
            .map_err(|source| StoreError::Write {
                path: format!("purged/{month}.json"),
                source,
            })?;
        recovery::erase_month(self, month)
    }

    /// Whether `month` was purged.
    pub fn is_purged(&self, month: Month) -> bool {
        self.inner.tombstones.contains(month)
    }

    /// The kept counts of months whose retention ended: a purged month's tombstone
    /// aggregate (with its carried counts added), and for a month still held after a
    /// carry-over ([`Store::purge_except`]) the counts of the checks it removed — the
    /// month's live counts ([`Store::counts`]) hold only the kept checks.
    pub fn aggregates(&self) -> BTreeMap<Month, serde_json::Value> {
        let mut out = self.inner.carried.all();
        out.extend(
            self.inner
                .tombstones
                .all()
                .into_iter()
                .map(|(m, t)| (m, t.aggregate)),
        );
        out
    }

    /// What recovery did or found, this open and before (newest last).
    pub fn health(&self) -> Vec<HealthNote> {
        lock(&self.inner.health).clone()
    }
}

/// Seals a signed event into a record body of `month` under month key `key`: the form
/// [`Store::record_bodies`] gives and [`Store::receive`] takes.
pub fn seal_record(month: Month, key: &[u8; 32], signed: &SignedEvent) -> Vec<u8> {
    seal_as_record(month, KeyId::of(month, key), key, signed).body()
}

/// The record of `signed` in `month`, sealed under `key` (whose id is `key_id`).
fn seal_as_record(month: Month, key_id: KeyId, key: &[u8; 32], signed: &SignedEvent) -> Record {
    let id = signed.id();
    Record {
        key_id,
        id,
        sealed: seal::seal(key, &Record::aad(month, key_id, id), &signed.to_bytes()),
    }
}

/// Opens a record with `key`: the signed event inside, which must carry the record's id.
/// (Its signature is not checked here.)
fn unseal(month: Month, key: &[u8; 32], record: &Record) -> Result<SignedEvent, EventError> {
    let plain = seal::open(
        key,
        &Record::aad(month, record.key_id, record.id),
        &record.sealed,
    )
    .map_err(|e| EventError::Malformed(e.to_string()))?;
    let signed = SignedEvent::from_bytes(&plain)?;
    if signed.id() != record.id {
        return Err(EventError::WrongId {
            stored: record.id.to_string(),
            actual: signed.id().to_string(),
        });
    }
    Ok(signed)
}

/// Orders events as every device does: by (time, device, id).
fn sort_events(events: &mut [(EventId, Event)]) {
    events.sort_by(|a, b| (a.1.at, &a.1.device, a.0).cmp(&(b.1.at, &b.1.device, b.0)));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn nov() -> Month {
        Month::new(2026, 11).unwrap()
    }

    #[test]
    fn an_index_failure_after_the_acknowledgement_is_repaired_not_reported() {
        // Contract 3: the capture is durable; the index update fails (twice); the writer
        // is told Ok, a retry is still recognised, and reads see the capture once the
        // index can be written again.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        store.capture_blocking("c0", nov(), json!({})).unwrap();
        store.check_ids(nov()).unwrap();
        store
            .inner
            .index
            .fail_adds
            .store(2, std::sync::atomic::Ordering::SeqCst);
        let first = store.capture_blocking("c1", nov(), json!({})).unwrap();
        assert!(first.new);
        let again = store.capture_blocking("c1", nov(), json!({})).unwrap();
        assert_eq!((again.new, again.id), (false, first.id));
        // The first reads may meet the failure (and say so); then the index catches up.
        let mut seen = None;
        for _ in 0..5 {
            if let Ok(ids) = store.check_ids(nov()) {
                seen = Some(ids);
                break;
            }
        }
        assert_eq!(seen.unwrap(), vec!["c0", "c1"]);
        assert_eq!(store.check_events(nov(), "c1").unwrap().events.len(), 1);
        assert!(!store.inner.stale.load(Ordering::SeqCst));
        drop(store);
        let store = Store::open_waiting(
            &StoreConfig::new(dir.path()),
            std::time::Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(store.check_events(nov(), "c1").unwrap().events.len(), 1);
    }

    #[test]
    fn a_write_sealed_before_a_carry_over_is_sealed_again_not_lost() {
        // A capture is signed and sealed outside the gate; a carry-over that retires the
        // month's key may come before its group is written. It is then sealed again with
        // the carry-over key, never written under a key that is gone.
        let oct = Month::new(2026, 10).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        for check in ["kept", "gone"] {
            store.capture_blocking(check, oct, json!({})).unwrap();
        }
        let prepared = store
            .prepare("late", oct, json!({"n": 1}), Kind::Capture)
            .unwrap();
        let sealed_with = prepared.record.key_id;
        let seen = store.counts(oct).unwrap();
        assert!(store
            .purge_except(oct, &seen, &["kept".to_string()], &json!({"checks": 1}))
            .unwrap());
        let keys = store.month_keys(oct).unwrap();
        assert!(keys.iter().all(|(id, _)| *id != sealed_with));
        let late = store.commit(prepared, None).unwrap();
        assert!(late.new);
        let events = store.check_events(oct, "late").unwrap();
        assert!(events.rejected.is_empty(), "{:?}", events.rejected);
        assert_eq!(events.events.len(), 1);
        assert_eq!(events.events[0].0, late.id, "same event, same id");
        drop(store);
        let store = Store::open_waiting(
            &StoreConfig::new(dir.path()),
            std::time::Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(store.check_ids(oct).unwrap(), vec!["kept", "late"]);
        assert!(store.verify().unwrap().problems.is_empty());
    }
}
