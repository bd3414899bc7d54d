//! Opening a data directory (起動時の回復): take it for this process, check its format,
//! finish what a crash left half-done, and bring the index up to date with the segments.
//!
//! Open never destroys. Errors are classified ([`OpenError`]): the store is in use, the
//! directory is not ours to write, the disk is full, or it was written by another release.
//! Only verified damage sets something aside, and every such repair is recorded in
//! `recovery.json` ([`super::HealthNote`]) for `tsunagi status` — the note is made durable
//! before the repair starts:
//!
//! - an index sled cannot open (damaged files, a panic) is moved aside and rebuilt from the
//!   segments; an index that contradicts the segments (a watermark past a segment's end, a
//!   segment it points into that is gone) is emptied and rebuilt; a rebuild is stamped
//!   with the index's version only once whole;
//! - what follows the last committed group of the last segment (an unfinished write, never
//!   acknowledged) is cut; its bytes, if not all zero, are copied to `quarantine/` first;
//! - damage (bad bytes with committed groups after them, or anywhere in a segment that is
//!   not the last) keeps every record before it: the damaged bytes go to `quarantine/`, the
//!   records of the committed groups after them are saved again in a new segment whose
//!   header records the damaged segment's valid end — durably, before anything is cut or
//!   removed, so a failure or crash during the repair loses nothing;
//! - records that do not open (no key for them here) are kept and tried again;
//! - a purge that was interrupted is finished;
//! - a carry-over ([`super::carry`]) interrupted after its commit point is finished: the
//!   rest of its month deleted, its index entries dropped and the month indexed again from
//!   what remains.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use crate::device::{DeviceKey, DeviceKeyError};
use crate::event::Month;
use crate::hlc::Hlc;
use crate::vfs::{self, OpenMode, Vfs};

use super::documents::{MonthDocs, SmallDocs};
use super::index::{Index, IndexOpenError, NewRecord};
use super::indexer::Indexer;
use super::keys::KeyRing;
use super::retention::{CarriedCounts, Tombstones};
use super::segment::{self, End, Header, HEADER_LEN};
use super::segments::Segments;
use super::{
    lock, HealthKind, HealthNote, Inner, Store, StoreConfig, StoreError, Unopened, STORE_FORMAT,
};

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process (a running tsunagid, another command) has the store open.
    #[error("store at {path} is in use by another process")]
    InUse {
        /// The data directory.
        path: String,
    },
    /// The directory or a file in it may not be read or written by this user.
    #[error("no permission for {path}: {source}")]
    Permission {
        /// The path.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// The disk is full.
    #[error("disk full writing {path}: {source}")]
    DiskFull {
        /// The path.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// Another I/O error.
    #[error("cannot open {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// The directory holds a store in a format this release does not read.
    #[error("store at {path} is in format {found}; this release reads format {supported} only (no migration: move the directory away to start afresh)")]
    Format {
        /// The data directory.
        path: String,
        /// The format found (1: the layout before segments).
        found: u32,
        /// The format this release writes.
        supported: u32,
    },
    /// The device key could not be loaded.
    #[error(transparent)]
    DeviceKey(#[from] DeviceKeyError),
    /// The index could not be opened or rebuilt.
    #[error("index at {path}: {detail}")]
    Index {
        /// The index directory.
        path: String,
        /// What failed.
        detail: String,
    },
    /// Recovery failed part-way (nothing was lost: the next open tries again).
    #[error("recovery failed: {0}")]
    Recovery(Box<StoreError>),
}

impl OpenError {
    /// Classifies an I/O error on `path`.
    pub(crate) fn at(path: &Path, source: io::Error) -> Self {
        let path = path.display().to_string();
        if source.kind() == io::ErrorKind::PermissionDenied {
            OpenError::Permission { path, source }
        } else if vfs::is_disk_full(&source) {
            OpenError::DiskFull { path, source }
        } else {
            OpenError::Io { path, source }
        }
    }
}

impl From<StoreError> for OpenError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Write { path, source } | StoreError::Read { path, source } => {
                OpenError::at(Path::new(&path), source)
            }
            other => OpenError::Recovery(Box::new(other)),
        }
    }
}

const FORMAT_FILE: &str = "FORMAT";
const NOTES_FILE: &str = "recovery.json";
const NOTES_KEPT: usize = 50;

fn note(notes: &mut Vec<HealthNote>, kind: HealthKind, detail: String) {
    if kind.is_damage() {
        tracing::error!(?kind, %detail, "store recovery");
    } else {
        tracing::warn!(?kind, %detail, "store recovery");
    }
    notes.push(HealthNote {
        at: chrono::Utc::now().to_rfc3339(),
        kind,
        detail,
    });
}

/// Opens the store in `config.dir`.
pub(crate) fn open(config: &StoreConfig) -> Result<Store, OpenError> {
    let vfs = config.vfs.clone();
    let dir = config.dir.clone();
    vfs::create_dir_all_durable(vfs.as_ref(), &dir).map_err(|e| OpenError::at(&dir, e))?;
    // Refuse another format before writing anything, the lock file included.
    let fresh = check_format(vfs.as_ref(), &dir)?;
    let lock_path = dir.join("LOCK");
    let held = vfs.try_lock(&lock_path).map_err(|e| {
        if e.kind() == io::ErrorKind::WouldBlock {
            OpenError::InUse {
                path: dir.display().to_string(),
            }
        } else {
            OpenError::at(&lock_path, e)
        }
    })?;
    if fresh {
        let path = dir.join(FORMAT_FILE);
        vfs::write_atomic(
            vfs.as_ref(),
            &path,
            format!("tsunagi-store {STORE_FORMAT}\n").as_bytes(),
        )
        .map_err(|e| OpenError::at(&path, e))?;
    }
    remove_temporaries(vfs.as_ref(), &dir)?;
    let device = DeviceKey::load_or_create(vfs.as_ref(), &dir.join("device.key"))?;
    let tombstones = Tombstones::load(vfs.clone(), &dir.join("purged"))
        .map_err(|e| OpenError::at(&dir.join("purged"), e))?;
    let carried = CarriedCounts::load(vfs.clone(), &dir.join("carried"))
        .map_err(|e| OpenError::at(&dir.join("carried"), e))?;
    let keys = KeyRing::new(
        vfs.clone(),
        &dir.join("keys"),
        tombstones.months().into_iter().collect(),
    );
    let mut notes = load_notes(vfs.as_ref(), &dir);
    let first_new_note = notes.len();
    let opened = recover(
        config,
        held,
        device,
        (tombstones, carried),
        keys,
        &mut notes,
    );
    if notes.len() > first_new_note {
        // Also when recovery stopped part-way: what it repaired must not go untold.
        save_notes(vfs.as_ref(), &dir, &notes);
    }
    let store = opened?;
    *lock(&store.inner.health) = notes;
    Ok(store)
}

/// Everything of [`open`] after the directory is ours: the index, finishing purges,
/// indexing the segments. Repairs are noted in `notes`.
fn recover(
    config: &StoreConfig,
    held: Box<dyn crate::vfs::LockGuard>,
    device: DeviceKey,
    (tombstones, carried): (Tombstones, CarriedCounts),
    keys: KeyRing,
    notes: &mut Vec<HealthNote>,
) -> Result<Store, OpenError> {
    let vfs = config.vfs.clone();
    let dir = config.dir.clone();
    let index = open_index(config, notes)?;
    let current = index
        .is_current(config.classifier.version())
        .map_err(|e| index_error(config, e))?;
    if !current {
        // A new index, or one from another format or classifier: build it from the
        // segments. Its version is stamped only once it is whole.
        index.reset().map_err(|e| index_error(config, e))?;
    }
    let store = Store {
        inner: Arc::new_cyclic(|me| Inner {
            quarantine: dir.join("quarantine"),
            segments: Segments::new(vfs.clone(), &dir.join("months"), config.segment_bytes),
            docs: MonthDocs::new(vfs.clone(), &dir.join("months"), config.compact_bytes),
            small: SmallDocs::new(vfs.clone(), &dir.join("docs"), &dir.join("quarantine")),
            dir: dir.clone(),
            vfs: vfs.clone(),
            _lock: held,
            device,
            clock: Hlc::default(),
            keys,
            index,
            tombstones,
            carried,
            classifier: config.classifier.clone(),
            committer: Default::default(),
            gate: Mutex::new(()),
            purging: Default::default(),
            pending: Mutex::new(Default::default()),
            known: Default::default(),
            index_lock: Mutex::new(()),
            stale: AtomicBool::new(false),
            appended: AtomicU64::new(0),
            health: Mutex::new(Vec::new()),
            indexer: Indexer::start(me.clone()),
        }),
    };
    for month in store.inner.tombstones.months() {
        if has_leftovers(&store, month)? {
            erase_month(&store, month)?;
            note(
                notes,
                HealthKind::PurgeFinished,
                format!("finished the interrupted purge of {month}"),
            );
        }
    }
    for month in store.inner.carried.pending_months() {
        if store.inner.tombstones.contains(month) {
            continue; // erased with its month above
        }
        if super::carry::finish(&store, month)? {
            note(
                notes,
                HealthKind::CarryOverFinished,
                format!("finished the interrupted carry-over of {month}"),
            );
        }
    }
    {
        // Nothing else writes the index while it is built (the indexer has no work yet,
        // but a rescue could give it some).
        let _ix = lock(&store.inner.index_lock);
        let mut rebuilt = !current;
        match index_all(&store, notes) {
            Ok(()) => {}
            Err(Indexing::Contradiction(detail)) => {
                note(
                    notes,
                    HealthKind::IndexRebuilt,
                    format!("index contradicted the segments ({detail}); rebuilt from them"),
                );
                store
                    .inner
                    .index
                    .reset()
                    .map_err(|e| index_error(config, e))?;
                for month in store.inner.segments.month_list() {
                    store.inner.segments.forget(month);
                }
                rebuilt = true;
                index_all(&store, notes).map_err(|e| match e {
                    Indexing::Contradiction(detail) => OpenError::Index {
                        path: config.index_dir.display().to_string(),
                        detail,
                    },
                    Indexing::Failed(e) => e,
                })?;
            }
            Err(Indexing::Failed(e)) => return Err(e),
        }
        if rebuilt {
            store
                .inner
                .index
                .stamp(config.classifier.version())
                .map_err(|e| index_error(config, e))?;
        }
        for month in store.inner.segments.month_list() {
            let now = retry_unreadable(&store, month)?;
            if now > 0 {
                tracing::warn!(%month, records = now, "records that did not open do now");
            }
        }
    }
    for file in store.inner.keys.damaged_files() {
        note(
            notes,
            HealthKind::KeyDamaged,
            format!("month key file {file} is damaged; the records it sealed cannot be read until a paired device sends the key again"),
        );
    }
    store.register_self()?;
    Ok(store)
}

fn index_error(config: &StoreConfig, e: super::IndexError) -> OpenError {
    OpenError::Index {
        path: config.index_dir.display().to_string(),
        detail: e.to_string(),
    }
}

/// Checks the directory's format; `true` if it has none yet (a new store).
fn check_format(vfs: &dyn Vfs, dir: &Path) -> Result<bool, OpenError> {
    let path = dir.join(FORMAT_FILE);
    let wrong = |found| OpenError::Format {
        path: dir.display().to_string(),
        found,
        supported: STORE_FORMAT,
    };
    match vfs::read_file(vfs, &path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let found = text
                .trim()
                .strip_prefix("tsunagi-store ")
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0);
            if found == STORE_FORMAT {
                Ok(false)
            } else {
                Err(wrong(found))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // The layout before segments had a capture log and a sled database here.
            for old in ["wal.log", "db"] {
                if vfs
                    .is_dir(&dir.join(old))
                    .map_err(|e| OpenError::at(dir, e))?
                    .is_some()
                {
                    return Err(wrong(1));
                }
            }
            Ok(true)
        }
        Err(e) => Err(OpenError::at(&path, e)),
    }
}

/// Removes the temporary files a crash left in the store's directories.
fn remove_temporaries(vfs: &dyn Vfs, dir: &Path) -> Result<(), OpenError> {
    let mut dirs = vec![
        dir.to_path_buf(),
        dir.join("purged"),
        dir.join("carried"),
        dir.join("docs"),
        dir.join("quarantine"),
    ];
    for parent in [dir.join("keys"), dir.join("months")] {
        match vfs.read_dir(&parent) {
            Ok(names) => dirs.extend(names.into_iter().map(|n| parent.join(n))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(OpenError::at(&parent, e)),
        }
    }
    for d in dirs {
        let names = match vfs.read_dir(&d) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => continue,
            Err(e) => return Err(OpenError::at(&d, e)),
        };
        let mut removed = false;
        for name in names.iter().filter(|n| vfs::is_temporary(n)) {
            let path = d.join(name);
            match vfs.remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(OpenError::at(&path, e)),
            }
        }
        if removed {
            vfs.sync_dir(&d).map_err(|e| OpenError::at(&d, e))?;
        }
    }
    Ok(())
}

/// Notes a repair of damage and makes the note durable *before* the repair is made: a
/// repair is never done untold (if the note cannot be written, nothing is repaired and the
/// open fails; the next one tries again).
fn note_first(
    vfs: &dyn Vfs,
    dir: &Path,
    notes: &mut Vec<HealthNote>,
    kind: HealthKind,
    detail: String,
) -> Result<(), StoreError> {
    note(notes, kind, detail);
    let keep = &notes[notes.len().saturating_sub(NOTES_KEPT)..];
    let path = dir.join(NOTES_FILE);
    serde_json::to_vec_pretty(keep)
        .map_err(io::Error::other)
        .and_then(|b| vfs::write_atomic(vfs, &path, &b))
        .map_err(|source| StoreError::Write {
            path: path.display().to_string(),
            source,
        })
}

fn load_notes(vfs: &dyn Vfs, dir: &Path) -> Vec<HealthNote> {
    vfs::read_file(vfs, &dir.join(NOTES_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_notes(vfs: &dyn Vfs, dir: &Path, notes: &[HealthNote]) {
    let keep = &notes[notes.len().saturating_sub(NOTES_KEPT)..];
    let written = serde_json::to_vec_pretty(keep)
        .map_err(io::Error::other)
        .and_then(|b| vfs::write_atomic(vfs, &dir.join(NOTES_FILE), &b));
    if let Err(e) = written {
        tracing::error!(error = %e, "cannot record the store's recovery notes");
    }
}

/// Opens sled; a damaged index is moved aside (kept for inspection) and a new one started.
fn open_index(config: &StoreConfig, notes: &mut Vec<HealthNote>) -> Result<Index, OpenError> {
    let path = &config.index_dir;
    let classify = |e: io::Error| {
        if e.to_string().contains("could not acquire lock") {
            OpenError::InUse {
                path: path.display().to_string(),
            }
        } else {
            OpenError::at(path, e)
        }
    };
    match Index::open(path, config.cache_bytes) {
        Ok(index) => Ok(index),
        Err(IndexOpenError::Io(e))
            if !matches!(
                e.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ) =>
        {
            Err(classify(e))
        }
        Err(damage) => {
            let aside = path.with_file_name(format!(
                "index.damaged-{}",
                chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f")
            ));
            note_first(
                config.vfs.as_ref(),
                &config.dir,
                notes,
                HealthKind::IndexRebuilt,
                format!(
                    "index damaged ({damage}); moved to {} and rebuilt from the segments",
                    aside.display()
                ),
            )?;
            std::fs::rename(path, &aside).map_err(|e| OpenError::at(path, e))?;
            Index::open(path, config.cache_bytes).map_err(|e| match e {
                IndexOpenError::Io(e) => classify(e),
                IndexOpenError::Damaged(detail) => OpenError::Index {
                    path: path.display().to_string(),
                    detail,
                },
            })
        }
    }
}

fn has_leftovers(store: &Store, month: Month) -> Result<bool, OpenError> {
    let inner = &store.inner;
    let month_dir = inner.segments.month_dir(month);
    Ok(inner.keys.has_files(month).map_err(StoreError::from)?
        || inner
            .vfs
            .is_dir(&month_dir)
            .map_err(|e| OpenError::at(&month_dir, e))?
            .is_some()
        || inner.index.has_month(month).map_err(StoreError::from)?
        || !quarantined_files(store, month)?.is_empty()
        || inner
            .carried
            .has_file(month)
            .map_err(|e| OpenError::at(&inner.dir.join("carried"), e))?)
}

/// The quarantined files of `month`.
pub(crate) fn quarantined_files(store: &Store, month: Month) -> Result<Vec<PathBuf>, StoreError> {
    let q = &store.inner.quarantine;
    let names = match store.inner.vfs.read_dir(q) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StoreError::Read {
                path: q.display().to_string(),
                source,
            })
        }
    };
    let prefix = format!("{month}-");
    Ok(names
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .map(|n| q.join(n))
        .collect())
}

/// Deletes everything of a purged month: its keys first (so whatever is left is
/// unreadable), then its segments and documents, quarantined bytes, index entries and
/// carried counts (its tombstone holds them now). The caller has recorded the tombstone
/// and holds the gate (or is opening the store).
pub(crate) fn erase_month(store: &Store, month: Month) -> Result<(), StoreError> {
    let inner = &store.inner;
    inner.keys.forget_month(month)?;
    inner.docs.forget(month);
    let month_dir = inner.segments.month_dir(month);
    vfs::remove_dir_all_durable(inner.vfs.as_ref(), &month_dir).map_err(|source| {
        StoreError::Write {
            path: month_dir.display().to_string(),
            source,
        }
    })?;
    let quarantined = quarantined_files(store, month)?;
    for path in &quarantined {
        inner
            .vfs
            .remove_file(path)
            .map_err(|source| StoreError::Write {
                path: path.display().to_string(),
                source,
            })?;
    }
    if !quarantined.is_empty() {
        inner
            .vfs
            .sync_dir(&inner.quarantine)
            .map_err(|source| StoreError::Write {
                path: inner.quarantine.display().to_string(),
                source,
            })?;
    }
    {
        // No indexer or reader applies this month's pending records after this.
        let _ix = lock(&inner.index_lock);
        lock(&inner.pending).forget(month);
        inner.known.forget(month);
        inner.index.remove_month(month)?;
    }
    inner.segments.forget(month);
    inner
        .carried
        .remove(month)
        .map_err(|source| StoreError::Write {
            path: inner.dir.join("carried").display().to_string(),
            source,
        })?;
    Ok(())
}

enum Indexing {
    /// The index says something the segments cannot be: rebuild it.
    Contradiction(String),
    /// An error that stops the open.
    Failed(OpenError),
}

impl From<OpenError> for Indexing {
    fn from(e: OpenError) -> Self {
        Indexing::Failed(e)
    }
}

impl From<StoreError> for Indexing {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Index(super::IndexError::Damaged(what)) => Indexing::Contradiction(what),
            other => Indexing::Failed(other.into()),
        }
    }
}

/// Registers every month's segments and indexes what the index lacks.
fn index_all(store: &Store, notes: &mut Vec<HealthNote>) -> Result<(), Indexing> {
    let inner = &store.inner;
    let months_dir = inner.dir.join("months");
    let names = match inner.vfs.read_dir(&months_dir) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(OpenError::at(&months_dir, e).into()),
    };
    for name in names {
        let Ok(month) = name.parse::<Month>() else {
            tracing::warn!(entry = %name, "unknown entry in months/ ignored");
            continue;
        };
        if inner.tombstones.contains(month) {
            continue;
        }
        index_month(store, month, notes)?;
    }
    Ok(())
}

/// A segment file as found at open.
struct Found {
    number: u32,
    header: Header,
    len: u64,
}

/// Copies `bytes` to `quarantine/name`, durably, without the zeros that end them (the space
/// a segment fills ahead for appends holds nothing worth keeping); returns the path and how
/// many bytes were kept.
fn quarantine(store: &Store, name: &str, bytes: &[u8]) -> Result<(PathBuf, usize), StoreError> {
    let inner = &store.inner;
    let path = inner.quarantine.join(name);
    let kept = &bytes[..bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1)];
    vfs::create_dir_all_durable(inner.vfs.as_ref(), &inner.quarantine)
        .and_then(|()| vfs::write_atomic(inner.vfs.as_ref(), &path, kept))
        .map_err(|source| StoreError::Write {
            path: path.display().to_string(),
            source,
        })?;
    Ok((path, kept.len()))
}

/// Opens records found by a scan; returns those that open (as index entries in segment
/// `seg`) and where those that do not are. A key that cannot be read now stops it: a
/// record is never skipped for a passing error.
pub(crate) fn opened(
    store: &Store,
    month: Month,
    seg: u32,
    found: Vec<segment::Found>,
) -> Result<(Vec<NewRecord>, Vec<super::Loc>), StoreError> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for r in found {
        let loc = super::Loc {
            seg,
            offset: r.offset,
            len: r.len,
        };
        match store.open_record(month, &r.record) {
            Ok(event) => good.push(NewRecord {
                loc,
                id: r.record.id,
                event,
            }),
            Err(Unopened::Io(e)) => return Err(e),
            Err(Unopened::Unreadable(reason)) => {
                tracing::error!(%month, segment = seg, offset = r.offset, %reason, "a record does not open; kept, tried again when a key arrives");
                bad.push(loc);
            }
        }
    }
    Ok((good, bad))
}

/// Indexes `good` records of `month` and notes the `bad` ones, up to `end` of `seg`.
fn index_found(
    store: &Store,
    month: Month,
    seg: u32,
    end: u64,
    good: Vec<NewRecord>,
    bad: &[super::Loc],
) -> Result<(), StoreError> {
    if !bad.is_empty() {
        store.inner.index.add_unreadable(month, bad)?;
    }
    store.index_add(month, good, &BTreeMap::from([(seg, end)]))?;
    Ok(())
}

/// Tries again the records of `month` that did not open (a key arrived, or was repaired).
/// Returns how many open now.
pub(crate) fn retry_unreadable(store: &Store, month: Month) -> Result<usize, StoreError> {
    let inner = &store.inner;
    let mut opened_now = 0;
    for loc in inner.index.unreadable(month)? {
        let record = store.read_frame(month, loc)?;
        match store.open_record(month, &record) {
            Ok(event) => {
                let ends = BTreeMap::from([(loc.seg, loc.end())]);
                store.index_add(
                    month,
                    vec![NewRecord {
                        loc,
                        id: record.id,
                        event,
                    }],
                    &ends,
                )?;
                inner.index.readable_again(month, loc)?;
                opened_now += 1;
            }
            Err(Unopened::Io(e)) => return Err(e),
            Err(Unopened::Unreadable(_)) => {}
        }
    }
    Ok(opened_now)
}

/// Saves again, durably, the records found after damage in segment `n` (valid up to `at`),
/// in a new segment whose header records that end; then indexes them. Runs before the
/// damaged bytes are cut or removed, so a failure or a crash here loses nothing: the next
/// open finds the same damage and does it again.
fn rescue(
    store: &Store,
    month: Month,
    n: u32,
    at: u64,
    found: Vec<segment::Found>,
) -> Result<(), StoreError> {
    // Only records that open with a key of this month are trusted.
    let mut good = Vec::new();
    let mut frames = Vec::new();
    let mut spans = Vec::new();
    for r in found {
        if let Ok(event) = store.open_record(month, &r.record) {
            // (A record found in damaged bytes that does not open is not trusted: it stays
            // in quarantine.)
            let f = r.record.frame();
            spans.push((frames.len() as u64, f.len() as u32));
            frames.extend_from_slice(&f);
            good.push((r.record.id, event));
        }
    }
    let (seg, start, end) = store
        .inner
        .segments
        .create_with(month, (n, at), &frames)
        .map_err(|e| StoreError::Write {
            path: e.path.display().to_string(),
            source: e.source,
        })?;
    let records = good
        .into_iter()
        .zip(spans)
        .map(|((id, event), (off, len))| NewRecord {
            loc: super::Loc {
                seg,
                offset: start + off,
                len,
            },
            id,
            event,
        })
        .collect();
    store.index_add(month, records, &BTreeMap::from([(seg, end)]))?;
    Ok(())
}

fn index_month(store: &Store, month: Month, notes: &mut Vec<HealthNote>) -> Result<(), Indexing> {
    let inner = &store.inner;
    let segs = &inner.segments;
    let dir = segs.month_dir(month);
    let names = inner
        .vfs
        .read_dir(&dir)
        .map_err(|e| OpenError::at(&dir, e))?;
    let marks = inner.index.watermarks(month).map_err(StoreError::from)?;
    let numbers: Vec<u32> = names
        .iter()
        .filter_map(|n| segment::parse_file_name(n))
        .collect();
    for n in &numbers {
        segs.saw_number(month, *n);
    }
    let mut found = Vec::new();
    let mut removed_known = None;
    // Whether a segment was started to save records again: it is the newest, and appends
    // go on in it (not in an older one, whose unfinished write at a crash would then be
    // taken for damage).
    let mut rescued = false;
    for number in numbers {
        let path = segs.path(month, number);
        let file = inner
            .vfs
            .open(&path, OpenMode::Read)
            .map_err(|e| OpenError::at(&path, e))?;
        let len = file.size().map_err(|e| OpenError::at(&path, e))?;
        let mut head = vec![0u8; (HEADER_LEN.min(len)) as usize];
        vfs::read_exact_at(file.as_ref(), &mut head, 0).map_err(|e| OpenError::at(&path, e))?;
        match Header::decode(&head) {
            Some(header) if header.month == month && header.number == number => found.push(Found {
                number,
                header,
                len,
            }),
            _ if len <= HEADER_LEN && !marks.contains_key(&number) => {
                // A segment whose creation did not finish: it never held a record.
                tracing::warn!(segment = %path.display(), "removing a segment that was never finished");
                inner
                    .vfs
                    .remove_file(&path)
                    .map_err(|e| OpenError::at(&path, e))?;
            }
            _ => {
                let mut bytes = vec![0u8; len as usize];
                vfs::read_exact_at(file.as_ref(), &mut bytes, 0)
                    .map_err(|e| OpenError::at(&path, e))?;
                let (q, _) = quarantine(store, &format!("{month}-{number:08}-header.bin"), &bytes)?;
                let body = bytes.get(HEADER_LEN as usize..).unwrap_or_default();
                let scan = segment::scan(body, HEADER_LEN);
                let mut all = scan.records;
                all.extend(scan.recovered);
                note_first(
                    inner.vfs.as_ref(),
                    &inner.dir,
                    notes,
                    HealthKind::SegmentDamaged,
                    format!(
                        "segment {} had a damaged header: its {len} bytes are in {}; its whole records are saved again in a new segment",
                        path.display(),
                        q.display()
                    ),
                )?;
                rescue(store, month, number, HEADER_LEN, all)?;
                rescued = true;
                inner
                    .vfs
                    .remove_file(&path)
                    .map_err(|e| OpenError::at(&path, e))?;
                if marks.contains_key(&number) {
                    removed_known = Some(number);
                }
            }
        }
    }
    inner
        .vfs
        .sync_dir(&dir)
        .map_err(|e| OpenError::at(&dir, e))?;
    if let Some(n) = removed_known {
        // The index points into the segment just removed: rebuild it (the records are in
        // their new segment now).
        return Err(Indexing::Contradiction(format!(
            "{month} segment {n} was removed"
        )));
    }
    if let Some(gone) = marks
        .keys()
        .find(|n| !found.iter().any(|f| f.number == **n))
    {
        return Err(Indexing::Contradiction(format!(
            "{month} segment {gone} is indexed but missing"
        )));
    }
    // Where each segment's valid bytes end: its length, or less where a later header
    // says the segment was left there.
    let mut valid: BTreeMap<u32, u64> = found.iter().map(|f| (f.number, f.len)).collect();
    for f in &found {
        if let Some((left, left_len)) = f.header.left {
            if let Some(v) = valid.get_mut(&left) {
                *v = (*v).min(left_len.max(HEADER_LEN));
            }
        }
    }
    let last = found.last().map(|f| f.number);
    let mut active = last.filter(|_| !rescued);
    for f in &found {
        let n = f.number;
        let end = valid.get(&n).copied().unwrap_or(f.len);
        segs.register(month, n, end);
        let from = marks.get(&n).copied().unwrap_or(HEADER_LEN).max(HEADER_LEN);
        if from > end {
            return Err(Indexing::Contradiction(format!(
                "{month} segment {n} indexed to {from}, holds {end} bytes"
            )));
        }
        let bytes = segs
            .read_from(month, n, from)
            .map_err(|source| StoreError::Read {
                path: segs.path(month, n).display().to_string(),
                source,
            })?;
        let scan = segment::scan(&bytes, from);
        let path = segs.path(month, n);
        let (new, unopened) = opened(store, month, n, scan.records)?;
        if !unopened.is_empty() {
            note(
                notes,
                HealthKind::UnreadableRecords,
                format!(
                    "{} records of {month} segment {n} do not open (a missing or damaged month key); kept, and tried again when a key arrives",
                    unopened.len()
                ),
            );
        }
        match scan.end {
            End::Clean => index_found(store, month, n, end, new, &unopened)?,
            // Zeros after the last committed group: space filled ahead for appends.
            End::Torn { at, zeros: true } => {
                index_found(store, month, n, at, new, &unopened)?;
                segs.set_valid(month, n, at);
            }
            // An unfinished write at the end of the last segment: never acknowledged.
            End::Torn { at, .. } if Some(n) == last => {
                let tail = &bytes[(at - from) as usize..];
                quarantine(store, &format!("{month}-{n:08}-{at}-torn.bin"), tail)?;
                tracing::warn!(segment = %path.display(), at, "cutting an unfinished write (never acknowledged)");
                index_found(store, month, n, at, new, &unopened)?;
                segs.set_valid(month, n, at);
                if !cut(store, month, n, at) {
                    // The disk would not cut it: record its end in a new segment's header.
                    rescue(store, month, n, at, Vec::new())?;
                    active = None;
                }
            }
            // Bad bytes with committed groups after them, or bad bytes that end a segment
            // that is not the last (no write can be unfinished there): damage.
            End::Torn { at, .. } | End::Damaged { at } => {
                let tail = &bytes[(at - from) as usize..];
                let (q, kept) =
                    quarantine(store, &format!("{month}-{n:08}-{at}-damaged.bin"), tail)?;
                note_first(
                    inner.vfs.as_ref(),
                    &inner.dir,
                    notes,
                    HealthKind::SegmentDamaged,
                    format!(
                        "segment {} damaged at {at}: {} bytes quarantined in {}; the {} whole records found after the damage are saved again in a new segment",
                        path.display(),
                        kept,
                        q.display(),
                        scan.recovered.len()
                    ),
                )?;
                index_found(store, month, n, at, new, &unopened)?;
                segs.leave(month, n, at);
                rescue(store, month, n, at, scan.recovered)?;
                // Tidying only: the new segment's header already hides the damaged bytes.
                cut(store, month, n, at);
                active = None;
            }
        }
    }
    if active.is_some() {
        segs.set_active(month, active);
    }
    Ok(())
}

/// Cuts segment `n` at `at` and makes the cut durable; whether it could.
fn cut(store: &Store, month: Month, n: u32, at: u64) -> bool {
    let path = store.inner.segments.path(month, n);
    let done = store
        .inner
        .vfs
        .open(&path, OpenMode::ReadWrite)
        .and_then(|f| f.set_len(at).and_then(|()| f.sync_data()));
    if let Err(e) = &done {
        tracing::error!(segment = %path.display(), error = %e, "cannot cut a segment");
    }
    done.is_ok()
}

/// Indexes every segment from its watermark to its valid end (after an index update
/// failed at run time). The caller holds the index lock. Bytes below a segment's valid end
/// never change, so the commit leader may append meanwhile.
pub(crate) fn catch_up(store: &Store) -> Result<(), StoreError> {
    let inner = &store.inner;
    for month in inner.segments.month_list() {
        if inner.tombstones.contains(month) {
            continue;
        }
        let marks = inner.index.watermarks(month)?;
        for (n, end) in inner.segments.list(month) {
            let from = marks.get(&n).copied().unwrap_or(HEADER_LEN).max(HEADER_LEN);
            if from >= end {
                continue;
            }
            let found = store.records_in(month, n, from, end)?;
            let (good, bad) = opened(store, month, n, found)?;
            index_found(store, month, n, end, good, &bad)?;
        }
    }
    Ok(())
}
