//! The store (台帳): one automerge document per month of visits, persisted in sled.
//!
//! Layout of a data directory:
//! - `device.key`: this device's signing key (mode 600);
//! - `keys/YYYY-MM.key`: the month keys that seal every event (mode 600);
//! - `db/`: sled, with trees `chunks` (per month: one compacted snapshot and the incremental
//!   changes appended since, keyed `YYYY-MM` + kind + big-endian sequence), `meta` (the store
//!   version), `aggregates` (counts kept after a month is purged) and `quarantine` (chunks that
//!   failed to load, kept for inspection, never loaded again).
//!
//! Each event is one opaque value — its sealed bytes — under its id in the document's root
//! map, so automerge merges sets of events (few ops, little memory) and decoding,
//! verification and the fold happen above it.
//!
//! Durability: [`Store::append`] writes the change; [`Store::flush`] makes everything written
//! so far survive a crash. A capture is acknowledged only after both ([`Store::append_durable`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ReadDoc, ScalarValue, Value, ROOT};

use crate::device::{DeviceKey, DeviceKeyError};
use crate::event::{Event, EventError, EventId, Month, SignedEvent};
use crate::hlc::{ClockSkew, Hlc};
use crate::seal::{self, KeyRing, SealError};

/// The on-disk format this release writes.
pub const STORE_VERSION: u32 = 1;

const KIND_SNAPSHOT: u8 = 0;
/// The capture log is emptied (after a durable sled flush) once it grows past this.
const WAL_CHECKPOINT_BYTES: u64 = 1 << 20;
const KIND_INCREMENTAL: u8 = 1;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The device key could not be loaded.
    #[error(transparent)]
    DeviceKey(#[from] DeviceKeyError),
    /// The database could not be opened: damaged files.
    #[error("store at {path} is damaged: {detail}")]
    Corrupt {
        /// The database directory.
        path: String,
        /// What sled said.
        detail: String,
    },
    /// Another process (a running tsunagid, another command) has the store open.
    #[error("store at {path} is in use by another process")]
    InUse {
        /// The database directory.
        path: String,
    },
    /// The database failed during an operation.
    #[error("store I/O failed: {0}")]
    Db(#[from] sled::Error),
    /// The data was written by a newer release.
    #[error("store version {found} is newer than this release understands ({supported})")]
    TooNew {
        /// The version on disk.
        found: u32,
        /// The newest this release knows.
        supported: u32,
    },
    /// A month key problem.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// An event could not be signed or was refused.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A peer's clock is far ahead.
    #[error(transparent)]
    Clock(#[from] ClockSkew),
    /// The month was purged at the end of its retention.
    #[error("{0} was purged at the end of its retention")]
    Purged(Month),
    /// The automerge document refused a change.
    #[error("document error: {0}")]
    Document(String),
    /// Creating a directory failed.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Options of a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The data directory.
    pub dir: PathBuf,
    /// sled's page cache, bytes. Small: the store must fit in the daemon's memory budget.
    pub cache_bytes: u64,
}

impl StoreConfig {
    /// Defaults for `dir`: a 16 MiB cache.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            cache_bytes: 16 * 1024 * 1024,
        }
    }
}

/// An event that was found in a document but not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The key it was stored under.
    pub stored_as: String,
    /// Why.
    pub reason: String,
}

/// The verified events of one month, ordered by (time, device), and what was refused.
#[derive(Debug, Clone, Default)]
pub struct MonthEvents {
    /// Accepted events.
    pub events: Vec<(EventId, Event)>,
    /// Refused ones (bad signature, damaged, wrong place).
    pub rejected: Vec<Rejected>,
}

/// What [`Store::compact`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// Incremental chunks folded into the snapshot.
    pub chunks: usize,
    /// Bytes of the new snapshot.
    pub snapshot_bytes: usize,
}

struct MonthDoc {
    doc: AutoCommit,
    /// Heads as of the last write to sled: the next incremental chunk starts here.
    saved_heads: Vec<ChangeHash>,
    next_seq: u64,
    incremental_bytes: u64,
    snapshot_bytes: u64,
    events: usize,
    /// check id → ids of its events, so one check is read without opening the whole month.
    /// `None` until the month is first read in full, and again after a peer's merge.
    index: Option<HashMap<String, Vec<String>>>,
}

type SharedDoc = Arc<Mutex<MonthDoc>>;

impl Drop for Inner {
    fn drop(&mut self) {
        // A clean close leaves an empty capture log (best effort: on failure the log is
        // replayed at the next open). Captures not yet in their documents stay in the log.
        if !lock(&self.pending).is_empty() {
            return;
        }
        let (db, file) = (&self.db, &self.db_file);
        if let Err(e) = self.wal.checkpoint(|| {
            db.flush().map_err(std::io::Error::other)?;
            file.sync_data()
        }) {
            tracing::warn!(error = %e, "capture log not emptied at close; it will be replayed");
        }
    }
}

struct Inner {
    db: sled::Db,
    /// sled's log file, fsynced after each flush: sled itself only uses sync_file_range on
    /// Linux, which does not reach the disk's cache nor the file's size.
    db_file: std::fs::File,
    /// Appends so far, and appends known to be on disk: flushes are shared (group commit).
    written: std::sync::atomic::AtomicU64,
    synced: std::sync::atomic::AtomicU64,
    sync_lock: tokio::sync::Mutex<()>,
    wal: crate::wal::Wal,
    chunks: sled::Tree,
    snapshots: sled::Tree,
    /// Sealed event bodies, keyed `YYYY-MM` + event id. The documents hold only each
    /// event's id and a digest of its body: sealed bytes do not compress, and keeping them
    /// inside automerge cost several times their size in memory.
    bodies: sled::Tree,
    /// Small documents, saved whole on each change: `devices` (this clinic's devices and
    /// their public keys) and `settings` (shared settings).
    small: sled::Tree,
    small_lock: Mutex<()>,
    /// Captures acknowledged from the capture log, waiting to enter their documents.
    pending: Mutex<Vec<(crate::wal::Record, String)>>,
    meta: sled::Tree,
    aggregates: sled::Tree,
    quarantine: sled::Tree,
    keys: KeyRing,
    device: DeviceKey,
    clock: Hlc,
    months: Mutex<HashMap<Month, Arc<Mutex<MonthDoc>>>>,
    dir: PathBuf,
}

/// The store. Cheap to clone; blocking methods do disk and CPU work (call them from a
/// blocking thread in async code), the flush is async.
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

fn chunk_key(month: Month, kind: u8, seq: u64) -> Vec<u8> {
    let mut key = month.to_string().into_bytes();
    key.push(kind);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Every chunk in sled is framed with a checksum: automerge skips a torn chunk silently on
/// load, and a torn write must be seen (and quarantined), not quietly forgotten.
fn frame(payload: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let sum = sha2::Sha256::digest(payload);
    let mut out = Vec::with_capacity(9 + payload.len());
    out.push(1);
    out.extend_from_slice(&sum[..8]);
    out.extend_from_slice(payload);
    out
}

fn unframe(value: &[u8]) -> Result<&[u8], &'static str> {
    use sha2::Digest;
    match value {
        [1, rest @ ..] if rest.len() >= 8 => {
            let (sum, payload) = rest.split_at(8);
            if sha2::Sha256::digest(payload)[..8] == *sum {
                Ok(payload)
            } else {
                Err("checksum mismatch (torn or damaged write)")
            }
        }
        _ => Err("unknown chunk framing"),
    }
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn body_key(month: Month, id: &str) -> Vec<u8> {
    let mut key = month.to_string().into_bytes();
    key.extend_from_slice(id.as_bytes());
    key
}

fn digest(sealed: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(sealed)[..8].to_vec()
}

/// A month as a peer receives it: the document and the sealed bodies of its events.
#[derive(Debug, Clone, Default)]
pub struct MonthExport {
    /// The automerge document (ids and digests).
    pub document: Vec<u8>,
    /// `(event id, sealed body)`.
    pub bodies: Vec<(String, Vec<u8>)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves its data consistent before anything that can panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// Opens (or creates) the store in `config.dir`.
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let dir = &config.dir;
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let device = DeviceKey::load_or_create(&dir.join("device.key"))?;
        let db_path = dir.join("db");
        let sled_config = sled::Config::new()
            .path(&db_path)
            .cache_capacity(config.cache_bytes)
            .flush_every_ms(Some(1000));
        // sled panics on some damaged files instead of returning an error.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sled_config.open()));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(sled::Error::Io(e))) if e.to_string().contains("could not acquire lock") => {
                return Err(StoreError::InUse {
                    path: db_path.display().to_string(),
                })
            }
            Ok(Err(e)) => {
                return Err(StoreError::Corrupt {
                    path: db_path.display().to_string(),
                    detail: e.to_string(),
                })
            }
            Err(_) => {
                return Err(StoreError::Corrupt {
                    path: db_path.display().to_string(),
                    detail: "the database panicked while opening".into(),
                })
            }
        };
        let (wal, pending) =
            crate::wal::Wal::open(&dir.join("wal.log")).map_err(|source| StoreError::Dir {
                path: dir.join("wal.log").display().to_string(),
                source,
            })?;
        let meta = db.open_tree("meta")?;
        match meta.get("version")? {
            None => {
                meta.insert("version", &STORE_VERSION.to_be_bytes())?;
            }
            Some(v) => {
                let found = v
                    .as_ref()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .unwrap_or(u32::MAX);
                if found > STORE_VERSION {
                    return Err(StoreError::TooNew {
                        found,
                        supported: STORE_VERSION,
                    });
                }
                migrate(&db, found)?;
                meta.insert("version", &STORE_VERSION.to_be_bytes())?;
            }
        }
        let store = Self {
            inner: Arc::new(Inner {
                chunks: db.open_tree("chunks")?,
                snapshots: db.open_tree("snapshots")?,
                bodies: db.open_tree("bodies")?,
                small: db.open_tree("small_docs")?,
                small_lock: Mutex::new(()),
                pending: Mutex::new(Vec::new()),
                db_file: std::fs::File::open(db_path.join("db")).map_err(|source| {
                    StoreError::Dir {
                        path: db_path.join("db").display().to_string(),
                        source,
                    }
                })?,
                written: std::sync::atomic::AtomicU64::new(0),
                synced: std::sync::atomic::AtomicU64::new(0),
                sync_lock: tokio::sync::Mutex::new(()),
                wal,
                aggregates: db.open_tree("aggregates")?,
                quarantine: db.open_tree("quarantine")?,
                meta,
                db,
                keys: KeyRing::new(&dir.join("keys")),
                device,
                clock: Hlc::default(),
                months: Mutex::new(HashMap::new()),
                dir: dir.clone(),
            }),
        };
        store.finish_interrupted_purges()?;
        store.register_self()?;
        // Captures acknowledged from the log but not yet in their documents.
        if !pending.is_empty() {
            tracing::info!(records = pending.len(), "replaying the capture log");
            for record in &pending {
                if store.is_purged(record.month)? {
                    continue;
                }
                store.insert_sealed(record.month, &record.id, record.sealed.clone(), None)?;
            }
            store.checkpoint()?;
        }
        store.inner.db.flush()?;
        Ok(store)
    }

    /// Opens the store, waiting up to `patience` while another process has it open.
    pub fn open_waiting(
        config: &StoreConfig,
        patience: std::time::Duration,
    ) -> Result<Self, StoreError> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            match Self::open(config) {
                Err(StoreError::InUse { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// Opens the store; if the database is damaged, moves it aside (kept for inspection) and
    /// starts an empty one, so reception can go on while peers send the data back. Returns
    /// where the damaged database went, if it was moved.
    pub fn open_or_recover(config: &StoreConfig) -> Result<(Self, Option<PathBuf>), StoreError> {
        match Self::open(config) {
            Ok(s) => Ok((s, None)),
            Err(StoreError::Corrupt { path, detail }) => {
                let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
                let aside = config.dir.join(format!("db.damaged-{stamp}"));
                tracing::error!(%path, %detail, aside = %aside.display(), "store damaged; moving it aside");
                std::fs::rename(&path, &aside).map_err(|source| StoreError::Dir {
                    path: aside.display().to_string(),
                    source,
                })?;
                Ok((Self::open(config)?, Some(aside)))
            }
            Err(e) => Err(e),
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

    /// The month keys.
    pub fn keys(&self) -> &KeyRing {
        &self.inner.keys
    }

    fn is_purged(&self, month: Month) -> Result<bool, StoreError> {
        Ok(self.inner.aggregates.contains_key(month.to_string())?)
    }

    /// The month's document, with every acknowledged capture in it.
    fn month_doc(&self, month: Month) -> Result<Arc<Mutex<MonthDoc>>, StoreError> {
        self.apply_pending()?;
        self.month_doc_raw(month)
    }

    /// Puts acknowledged captures (already in the capture log) into their documents. Holds
    /// the queue while doing so, so a reader that finds it empty sees them all.
    fn apply_pending(&self) -> Result<(), StoreError> {
        let mut pending = lock(&self.inner.pending);
        for (record, check_id) in pending.drain(..) {
            self.insert_sealed(record.month, &record.id, record.sealed, Some(&check_id))?;
        }
        Ok(())
    }

    fn month_doc_raw(&self, month: Month) -> Result<Arc<Mutex<MonthDoc>>, StoreError> {
        if let Some(doc) = lock(&self.inner.months).get(&month) {
            return Ok(doc.clone());
        }
        let loaded = Arc::new(Mutex::new(self.load_month(month)?));
        Ok(lock(&self.inner.months)
            .entry(month)
            .or_insert(loaded)
            .clone())
    }

    fn quarantine(&self, key: &[u8], value: &[u8], why: &str) -> Result<(), StoreError> {
        tracing::error!(chunk = %String::from_utf8_lossy(key), %why, "quarantined a damaged chunk");
        let mut qkey = key.to_vec();
        qkey.extend_from_slice(&chrono::Utc::now().timestamp_micros().to_be_bytes());
        self.inner.quarantine.insert(qkey, value)?;
        self.inner.chunks.remove(key)?;
        Ok(())
    }

    fn load_month(&self, month: Month) -> Result<MonthDoc, StoreError> {
        let mut doc = AutoCommit::new();
        let mut next_seq = 0;
        let mut incremental_bytes = 0;
        let mut snapshot_bytes = 0;
        let prefix = month.to_string().into_bytes();
        let snapshot_key = chunk_key(month, KIND_SNAPSHOT, 0);
        if let Some(value) = self.inner.snapshots.get(&snapshot_key)? {
            match unframe(&value)
                .map_err(str::to_string)
                .and_then(|p| AutoCommit::load(p).map_err(|e| e.to_string()))
            {
                Ok(d) => {
                    doc = d;
                    snapshot_bytes = value.len() as u64;
                }
                Err(e) => {
                    self.quarantine(&snapshot_key, &value, &e)?;
                    self.inner.snapshots.remove(&snapshot_key)?;
                }
            }
        }
        for item in self.inner.chunks.scan_prefix(&prefix) {
            let (key, value) = item?;
            let kind = key.get(prefix.len()).copied();
            let seq = key
                .get(prefix.len() + 1..)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_be_bytes);
            match (kind, seq) {
                (Some(KIND_SNAPSHOT), Some(_)) => match unframe(&value)
                    .map_err(str::to_string)
                    .and_then(|p| AutoCommit::load(p).map_err(|e| e.to_string()))
                {
                    Ok(d) => {
                        doc = d;
                        snapshot_bytes = value.len() as u64;
                    }
                    Err(e) => self.quarantine(&key, &value, &e)?,
                },
                (Some(KIND_INCREMENTAL), Some(seq)) => {
                    next_seq = next_seq.max(seq + 1);
                    match unframe(&value)
                        .map_err(str::to_string)
                        .and_then(|p| doc.load_incremental(p).map_err(|e| e.to_string()))
                    {
                        Ok(_) => incremental_bytes += value.len() as u64,
                        Err(e) => self.quarantine(&key, &value, &e)?,
                    }
                }
                _ => self.quarantine(&key, &value, "unknown chunk key")?,
            }
        }
        let saved_heads = doc.get_heads();
        let events = doc.keys(ROOT).count();
        Ok(MonthDoc {
            doc,
            saved_heads,
            next_seq,
            incremental_bytes,
            snapshot_bytes,
            events,
            index: None,
        })
    }

    /// Signs and writes a new event of this device. Not yet durable: see [`Store::flush`].
    pub fn append(
        &self,
        check_id: &str,
        month: Month,
        payload: serde_json::Value,
    ) -> Result<EventId, StoreError> {
        let signed = self.sign_new(check_id, month, payload)?;
        self.insert_verified(month, &signed, true, check_id)
    }

    /// A new event of this device, stamped by its clock and signed with its key.
    fn sign_new(
        &self,
        check_id: &str,
        month: Month,
        payload: serde_json::Value,
    ) -> Result<SignedEvent, StoreError> {
        let event = Event {
            check_id: check_id.to_string(),
            month,
            at: self.inner.clock.now(),
            device: self.inner.device.id().clone(),
            payload,
        };
        Ok(SignedEvent::sign(&event, &self.inner.device)?)
    }

    /// Writes an event from a peer (or a replay), after checking its signature and clock.
    /// The same event twice changes nothing.
    pub fn insert_signed(&self, signed: &SignedEvent) -> Result<EventId, StoreError> {
        let event = signed.verify()?;
        // Events are written at or after the visit; a day of slack covers a wrong time zone.
        if event.at.wall_ms + 86_400_000 < event.month.start_ms() {
            return Err(EventError::BeforeItsMonth {
                at_ms: event.at.wall_ms,
                month: event.month,
            }
            .into());
        }
        self.inner.clock.observe(event.at)?;
        self.insert_verified(event.month, signed, false, &event.check_id)
    }

    fn insert_verified(
        &self,
        month: Month,
        signed: &SignedEvent,
        create_key: bool,
        check_id: &str,
    ) -> Result<EventId, StoreError> {
        if self.is_purged(month)? {
            return Err(StoreError::Purged(month));
        }
        let key = if create_key {
            self.inner.keys.get_or_create(month)?
        } else {
            self.inner.keys.get(month)?
        };
        let id = signed.id();
        let sealed = seal::seal(&key, id.0.as_bytes(), &signed.to_bytes());
        self.insert_sealed(month, &id.0, sealed, Some(check_id))?;
        Ok(id)
    }

    /// Puts a sealed event into its month document and appends the change to sled (not
    /// flushed). `check_id` keeps the index current; `None` (a replay) drops the index.
    fn insert_sealed(
        &self,
        month: Month,
        id: &str,
        sealed: Vec<u8>,
        check_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let doc = self.month_doc_raw(month)?;
        let mut m = lock(&doc);
        if m.doc.get(ROOT, id).ok().flatten().is_some() {
            return Ok(());
        }
        let sum = digest(&sealed);
        self.inner.bodies.insert(body_key(month, id), sealed)?;
        m.doc
            .put(ROOT, id, ScalarValue::Bytes(sum))
            .map_err(|e| StoreError::Document(e.to_string()))?;
        m.doc.commit();
        let heads = m.saved_heads.clone();
        let chunk = m.doc.save_after(&heads);
        let seq = m.next_seq;
        self.inner
            .chunks
            .insert(chunk_key(month, KIND_INCREMENTAL, seq), frame(&chunk))?;
        m.saved_heads = m.doc.get_heads();
        m.next_seq += 1;
        m.incremental_bytes += chunk.len() as u64;
        m.events += 1;
        self.inner
            .written
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match (check_id, m.index.as_mut()) {
            (Some(check_id), Some(index)) => index
                .entry(check_id.to_string())
                .or_default()
                .push(id.to_string()),
            (None, _) => m.index = None,
            (Some(_), None) => {}
        }
        Ok(())
    }

    /// Empties the capture log after making sled durable (appends wait meanwhile).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.apply_pending()?;
        self.inner
            .wal
            .checkpoint(|| {
                self.inner.db.flush().map_err(std::io::Error::other)?;
                self.inner.db_file.sync_data()
            })
            .map_err(|source| StoreError::Dir {
                path: "wal.log".into(),
                source,
            })
    }

    /// Merges a month's whole document from a peer ([`Store::export_month`]) and persists
    /// what is new. The document is checked strictly first (automerge skips damaged parts
    /// silently otherwise); events inside are verified when read: a bad one is reported,
    /// never folded.
    pub fn merge_changes(&self, month: Month, export: &MonthExport) -> Result<(), StoreError> {
        // Bodies first, never replacing one already here: a hostile peer cannot swap a good
        // event for garbage; a body that does not match its entry is refused when read.
        for (id, body) in &export.bodies {
            let _ = self.inner.bodies.compare_and_swap(
                body_key(month, id),
                None as Option<&[u8]>,
                Some(body.as_slice()),
            )?;
        }
        let changes = export.document.as_slice();
        if self.is_purged(month)? {
            return Err(StoreError::Purged(month));
        }
        automerge::Automerge::load_with_options(
            changes,
            automerge::LoadOptions::new().on_partial_load(automerge::OnPartialLoad::Error),
        )
        .map_err(|e| StoreError::Document(format!("peer document refused: {e}")))?;
        let doc = self.month_doc(month)?;
        let mut m = lock(&doc);
        m.doc
            .load_incremental(changes)
            .map_err(|e| StoreError::Document(e.to_string()))?;
        let heads = m.saved_heads.clone();
        let chunk = m.doc.save_after(&heads);
        if chunk.is_empty() {
            return Ok(());
        }
        let seq = m.next_seq;
        self.inner
            .chunks
            .insert(chunk_key(month, KIND_INCREMENTAL, seq), frame(&chunk))?;
        m.saved_heads = m.doc.get_heads();
        m.next_seq += 1;
        m.incremental_bytes += chunk.len() as u64;
        m.events = m.doc.keys(ROOT).count();
        m.index = None;
        self.inner
            .written
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// The month's whole document and event bodies (what a new peer receives).
    pub fn export_month(&self, month: Month) -> Result<MonthExport, StoreError> {
        let doc = self.month_doc(month)?;
        let document = lock(&doc).doc.save();
        let prefix = month.to_string().into_bytes();
        let mut bodies = Vec::new();
        for item in self.inner.bodies.scan_prefix(&prefix) {
            let (k, v) = item?;
            if let Ok(id) = std::str::from_utf8(&k[prefix.len()..]) {
                bodies.push((id.to_string(), v.to_vec()));
            }
        }
        Ok(MonthExport { document, bodies })
    }

    /// Makes every write so far durable. Concurrent callers share one flush (group commit):
    /// a caller whose writes a flush already covered returns without another.
    pub async fn flush(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let mine = self.inner.written.load(Ordering::SeqCst);
        let _turn = self.inner.sync_lock.lock().await;
        if self.inner.synced.load(Ordering::SeqCst) >= mine && mine > 0 {
            return Ok(());
        }
        let target = self.inner.written.load(Ordering::SeqCst);
        // sled's flush_async can hang when several run at once (spacejam/sled#1308, seen
        // here under 8 concurrent reconcilers): flush blocking, one at a time.
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.flush_blocking())
            .await
            .map_err(|e| StoreError::Document(format!("flush task failed: {e}")))??;
        self.inner.synced.fetch_max(target, Ordering::SeqCst);
        Ok(())
    }

    /// Makes every write so far durable, blocking.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        self.inner
            .db_file
            .sync_data()
            .map_err(|source| StoreError::Dir {
                path: "db".into(),
                source,
            })?;
        Ok(())
    }

    /// Appends and waits until the event is on disk: the acknowledgement of a capture.
    pub async fn append_durable(
        &self,
        check_id: &str,
        month: Month,
        payload: serde_json::Value,
    ) -> Result<EventId, StoreError> {
        let store = self.clone();
        let check_id = check_id.to_string();
        // The capture is acknowledged once its record is in the fsynced capture log (one
        // fsync shared with concurrent captures, on the same blocking thread); it enters its
        // document right after, off the acknowledgement's path. Every read first puts
        // acknowledged captures into their documents, so nothing reads around them.
        let (ack, acked) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let logged =
                store
                    .log_new(&check_id, month, payload)
                    .and_then(|(id, ticket, record)| {
                        store.inner.wal.sync_blocking(ticket).map_err(|source| {
                            StoreError::Dir {
                                path: "wal.log".into(),
                                source,
                            }
                        })?;
                        lock(&store.inner.pending).push((record, check_id));
                        Ok(id)
                    });
            let ok = logged.is_ok();
            let _ = ack.send(logged);
            if ok {
                if let Err(e) = store.apply_pending() {
                    // The capture is safe in the log; the next read or open retries.
                    tracing::error!(error = %e, "a logged capture did not enter its document yet");
                }
            }
        });
        let id = acked
            .await
            .map_err(|e| StoreError::Document(format!("append task failed: {e}")))??;
        if self.inner.wal.len() > WAL_CHECKPOINT_BYTES {
            let store = self.clone();
            tokio::task::spawn_blocking(move || store.checkpoint())
                .await
                .map_err(|e| StoreError::Document(format!("checkpoint task failed: {e}")))??;
        }
        Ok(id)
    }

    /// Signs, seals and logs a new event (not yet fsynced); returns its id, its ticket for
    /// the log's fsync, and the record to put in its document.
    fn log_new(
        &self,
        check_id: &str,
        month: Month,
        payload: serde_json::Value,
    ) -> Result<(EventId, u64, crate::wal::Record), StoreError> {
        if self.is_purged(month)? {
            return Err(StoreError::Purged(month));
        }
        let signed = self.sign_new(check_id, month, payload)?;
        let key = self.inner.keys.get_or_create(month)?;
        let id = signed.id();
        let record = crate::wal::Record {
            month,
            id: id.0.clone(),
            sealed: seal::seal(&key, id.0.as_bytes(), &signed.to_bytes()),
        };
        let ticket = self
            .inner
            .wal
            .append(&record)
            .map_err(|source| StoreError::Dir {
                path: "wal.log".into(),
                source,
            })?;
        Ok((id, ticket, record))
    }

    /// The verified events of `month`, ordered by (time, device).
    pub fn events(&self, month: Month) -> Result<MonthEvents, StoreError> {
        let (doc, key) = self.readable(month)?;
        let mut m = lock(&doc);
        let keys: Vec<String> = m.doc.keys(ROOT).collect();
        let out = decode_all(&m.doc, &self.inner.bodies, month, key.as_ref(), &keys);
        let mut index: HashMap<String, Vec<String>> = HashMap::new();
        for (id, e) in &out.events {
            index
                .entry(e.check_id.clone())
                .or_default()
                .push(id.0.clone());
        }
        m.index = Some(index);
        Ok(out)
    }

    /// Builds the month's check index if it is missing, decoding one event at a time (never
    /// holding the whole month's events).
    fn ensure_index(&self, month: Month) -> Result<(), StoreError> {
        let (doc, key) = self.readable(month)?;
        let mut m = lock(&doc);
        if m.index.is_some() {
            return Ok(());
        }
        let keys: Vec<String> = m.doc.keys(ROOT).collect();
        let mut index: HashMap<String, Vec<String>> = HashMap::new();
        for stored in keys {
            match decode_one(&m.doc, &self.inner.bodies, month, key.as_ref(), &stored) {
                Ok((id, event)) => index.entry(event.check_id).or_default().push(id.0),
                Err(reason) => {
                    tracing::warn!(event = %stored, %reason, "rejected a stored event")
                }
            }
        }
        m.index = Some(index);
        Ok(())
    }

    /// The checks of a month, by id (sorted).
    pub fn check_ids(&self, month: Month) -> Result<Vec<String>, StoreError> {
        self.ensure_index(month)?;
        let doc = self.month_doc(month)?;
        let m = lock(&doc);
        let mut ids: Vec<String> = m
            .index
            .as_ref()
            .map(|i| i.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        Ok(ids)
    }

    /// The verified events of one check, ordered like [`Store::events`]. Reads only that
    /// check's events.
    pub fn check_events(&self, month: Month, check_id: &str) -> Result<MonthEvents, StoreError> {
        self.ensure_index(month)?;
        let (doc, key) = self.readable(month)?;
        let m = lock(&doc);
        let keys = m
            .index
            .as_ref()
            .and_then(|i| i.get(check_id))
            .cloned()
            .unwrap_or_default();
        Ok(decode_all(
            &m.doc,
            &self.inner.bodies,
            month,
            key.as_ref(),
            &keys,
        ))
    }

    /// The month holding a check; `None` if no such check is known.
    pub fn month_of_check(&self, check_id: &str) -> Result<Option<Month>, StoreError> {
        for month in self.months()? {
            self.ensure_index(month)?;
            let doc = self.month_doc(month)?;
            if lock(&doc)
                .index
                .as_ref()
                .is_some_and(|i| i.contains_key(check_id))
            {
                return Ok(Some(month));
            }
        }
        Ok(None)
    }

    fn readable(&self, month: Month) -> Result<(SharedDoc, Option<[u8; 32]>), StoreError> {
        if self.is_purged(month)? {
            return Err(StoreError::Purged(month));
        }
        let doc = self.month_doc(month)?;
        let key = match self.inner.keys.get(month) {
            Ok(k) => Some(k),
            Err(SealError::NoKey(_)) => None,
            Err(e) => return Err(e.into()),
        };
        Ok((doc, key))
    }

    fn small_doc(&self, name: &str) -> Result<AutoCommit, StoreError> {
        match self.inner.small.get(name)? {
            Some(v) => match unframe(&v)
                .map_err(str::to_string)
                .and_then(|p| AutoCommit::load(p).map_err(|e| e.to_string()))
            {
                Ok(doc) => Ok(doc),
                Err(e) => {
                    // A damaged small document is set aside and rebuilt (from peers, or by
                    // this device registering itself again).
                    self.quarantine(name.as_bytes(), &v, &e)?;
                    self.inner.small.remove(name)?;
                    Ok(AutoCommit::new())
                }
            },
            None => Ok(AutoCommit::new()),
        }
    }

    fn change_small(
        &self,
        name: &str,
        change: impl FnOnce(&mut AutoCommit) -> Result<(), automerge::AutomergeError>,
    ) -> Result<(), StoreError> {
        let _one_writer = lock(&self.inner.small_lock);
        let mut doc = self.small_doc(name)?;
        change(&mut doc).map_err(|e| StoreError::Document(e.to_string()))?;
        doc.commit();
        self.inner.small.insert(name, frame(&doc.save()))?;
        self.flush_blocking()
    }

    fn small_map(&self, name: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let doc = self.small_doc(name)?;
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
        let record = serde_json::json!({
            "public_key": hex_bytes(self.inner.device.verifying_key().as_bytes()),
            "added_at": chrono::Utc::now().to_rfc3339(),
        })
        .to_string();
        self.change_small("devices", |doc| doc.put(ROOT, id.as_str(), record.as_str()))
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
        self.change_small("settings", |doc| doc.put(ROOT, key, value))
    }

    /// A small document (`devices`, `settings`) as a peer receives it.
    pub fn export_small(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        Ok(self.small_doc(name)?.save())
    }

    /// Merges a peer's small document (checked strictly first).
    pub fn merge_small(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        automerge::Automerge::load_with_options(
            bytes,
            automerge::LoadOptions::new().on_partial_load(automerge::OnPartialLoad::Error),
        )
        .map_err(|e| StoreError::Document(format!("peer document refused: {e}")))?;
        self.change_small(name, |doc| doc.load_incremental(bytes).map(|_| ()))
    }

    /// Months that hold data (loaded or on disk), oldest first.
    pub fn months(&self) -> Result<Vec<Month>, StoreError> {
        let mut months: Vec<Month> = self.inner.keys.months();
        for m in lock(&self.inner.months).keys() {
            months.push(*m);
        }
        months.sort();
        months.dedup();
        let mut live = Vec::new();
        for m in months {
            if !self.is_purged(m)? {
                live.push(m);
            }
        }
        Ok(live)
    }

    /// Whether the month's incremental chunks outweigh its snapshot (automerge-repo's rule).
    pub fn needs_compaction(&self, month: Month) -> Result<bool, StoreError> {
        let doc = self.month_doc(month)?;
        let m = lock(&doc);
        Ok(m.incremental_bytes > m.snapshot_bytes.max(64 * 1024))
    }

    /// Folds the month's incremental chunks into one snapshot, atomically, and flushes.
    pub fn compact(&self, month: Month) -> Result<Compaction, StoreError> {
        let doc = self.month_doc(month)?;
        let mut m = lock(&doc);
        let snapshot = m.doc.save();
        let prefix = month.to_string().into_bytes();
        // The snapshot lives in its own tree, so appends never rewrite its node. It is made
        // durable before the chunks it covers go: a crash in between leaves both, and loading
        // a change twice is a no-op.
        self.inner
            .snapshots
            .insert(chunk_key(month, KIND_SNAPSHOT, 0), frame(&snapshot))?;
        self.flush_blocking()?;
        let mut batch = sled::Batch::default();
        let mut chunks = 0;
        for item in self.inner.chunks.scan_prefix(&prefix) {
            let (key, _) = item?;
            batch.remove(key);
            chunks += 1;
        }
        self.inner.chunks.apply_batch(batch)?;
        self.flush_blocking()?;
        drop(m);
        self.checkpoint()?;
        let mut m = lock(&doc);
        m.saved_heads = m.doc.get_heads();
        m.snapshot_bytes = snapshot.len() as u64;
        m.incremental_bytes = 0;
        Ok(Compaction {
            chunks,
            snapshot_bytes: snapshot.len(),
        })
    }

    /// Ends a month at the end of its retention: keeps `aggregate` (counts, no personal data),
    /// deletes the month's document and destroys its key. Resumes by itself if interrupted.
    pub fn purge(&self, month: Month, aggregate: &serde_json::Value) -> Result<(), StoreError> {
        let bytes =
            serde_json::to_vec(aggregate).map_err(|e| StoreError::Document(e.to_string()))?;
        // The log may hold the month's sealed events: empty it into sled first.
        self.checkpoint()?;
        self.inner.aggregates.insert(month.to_string(), bytes)?;
        self.inner.db.flush()?;
        self.erase_month(month)
    }

    fn erase_month(&self, month: Month) -> Result<(), StoreError> {
        lock(&self.inner.months).remove(&month);
        let prefix = month.to_string().into_bytes();
        let mut batch = sled::Batch::default();
        for item in self.inner.chunks.scan_prefix(&prefix) {
            batch.remove(item?.0);
        }
        for item in self.inner.quarantine.scan_prefix(&prefix) {
            self.inner.quarantine.remove(item?.0)?;
        }
        self.inner.chunks.apply_batch(batch)?;
        let mut bodies = sled::Batch::default();
        for item in self.inner.bodies.scan_prefix(&prefix) {
            bodies.remove(item?.0);
        }
        self.inner.bodies.apply_batch(bodies)?;
        self.inner
            .snapshots
            .remove(chunk_key(month, KIND_SNAPSHOT, 0))?;
        self.flush_blocking()?;
        self.inner.keys.destroy(month)?;
        Ok(())
    }

    fn finish_interrupted_purges(&self) -> Result<(), StoreError> {
        for month in self.purged_months()? {
            let prefix = month.to_string().into_bytes();
            let leftover = self.inner.chunks.scan_prefix(&prefix).next().is_some()
                || self
                    .inner
                    .snapshots
                    .contains_key(chunk_key(month, KIND_SNAPSHOT, 0))?
                || self.inner.keys.get(month).is_ok();
            if leftover {
                tracing::warn!(%month, "finishing an interrupted purge");
                self.erase_month(month)?;
            }
        }
        Ok(())
    }

    fn purged_months(&self) -> Result<Vec<Month>, StoreError> {
        let mut out = Vec::new();
        for item in self.inner.aggregates.iter() {
            let (k, _) = item?;
            if let Some(m) = std::str::from_utf8(&k).ok().and_then(|s| s.parse().ok()) {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// The aggregates of purged months.
    pub fn aggregates(&self) -> Result<BTreeMap<Month, serde_json::Value>, StoreError> {
        let mut out = BTreeMap::new();
        for item in self.inner.aggregates.iter() {
            let (k, v) = item?;
            let month = std::str::from_utf8(&k).ok().and_then(|s| s.parse().ok());
            let value = serde_json::from_slice(&v).ok();
            if let (Some(m), Some(v)) = (month, value) {
                out.insert(m, v);
            }
        }
        Ok(out)
    }

    /// Chunks that failed to load and were set aside.
    pub fn quarantined(&self) -> Result<usize, StoreError> {
        Ok(self.inner.quarantine.iter().count())
    }

    /// The number of events stored for a month (kept as a counter, not counted on disk).
    pub fn event_count(&self, month: Month) -> Result<usize, StoreError> {
        let doc = self.month_doc(month)?;
        let n = lock(&doc).events;
        Ok(n)
    }

    /// The version recorded on disk.
    pub fn version(&self) -> Result<u32, StoreError> {
        Ok(self
            .inner
            .meta
            .get("version")?
            .and_then(|v| v.as_ref().try_into().ok().map(u32::from_be_bytes))
            .unwrap_or(0))
    }
}

/// Opens, checks and orders the events stored under `keys`; what fails is reported.
fn decode_all(
    doc: &AutoCommit,
    bodies: &sled::Tree,
    month: Month,
    key: Option<&[u8; 32]>,
    keys: &[String],
) -> MonthEvents {
    let mut out = MonthEvents::default();
    for stored in keys {
        match decode_one(doc, bodies, month, key, stored) {
            Ok(e) => out.events.push(e),
            Err(reason) => {
                tracing::warn!(event = %stored, %reason, "rejected a stored event");
                out.rejected.push(Rejected {
                    stored_as: stored.clone(),
                    reason,
                });
            }
        }
    }
    out.events
        .sort_by(|a, b| (a.1.at, &a.1.device, &a.0).cmp(&(b.1.at, &b.1.device, &b.0)));
    out
}

/// Opens and checks one stored event: its body must match the document's digest, open
/// with the month key, carry its own id, verify, and belong to this month.
fn decode_one(
    doc: &AutoCommit,
    bodies: &sled::Tree,
    month: Month,
    key: Option<&[u8; 32]>,
    stored: &str,
) -> Result<(EventId, Event), String> {
    let sum = match doc.get(ROOT, stored) {
        Ok(Some((Value::Scalar(v), _))) => match v.as_ref() {
            ScalarValue::Bytes(b) => b.clone(),
            _ => return Err("not an event entry".into()),
        },
        _ => return Err("not an event entry".into()),
    };
    let value = bodies
        .get(body_key(month, stored))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "event body missing (not yet received)".to_string())?;
    if digest(&value) != sum {
        return Err("event body does not match its document entry".into());
    }
    let key = key.ok_or_else(|| SealError::NoKey(month).to_string())?;
    let plain = seal::open(key, stored.as_bytes(), &value).map_err(|e| e.to_string())?;
    let signed = SignedEvent::from_bytes(&plain).map_err(|e| e.to_string())?;
    let id = signed.id();
    if id.0 != stored {
        return Err(EventError::WrongId {
            stored: stored.to_string(),
            actual: id.0,
        }
        .to_string());
    }
    let event = signed.verify().map_err(|e| e.to_string())?;
    if event.month != month {
        return Err(EventError::WrongMonth {
            event: event.month,
            document: month,
        }
        .to_string());
    }
    Ok((id, event))
}

/// Brings a store written by an older release up to [`STORE_VERSION`], one step at a time.
/// Each step must be idempotent: a crash mid-migration reruns it.
fn migrate(_db: &sled::Db, from: u32) -> Result<(), StoreError> {
    for version in from..STORE_VERSION {
        // No older format exists yet; the first format change adds its step here.
        tracing::info!(from = version, to = version + 1, "migrating store");
    }
    Ok(())
}
