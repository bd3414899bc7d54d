//! The index (索引): where each record is and what each check is, in sled, rebuildable
//! from the segments at any time.
//!
//! One sled tree, keys prefixed by kind, so every update is one atomic `apply_batch`
//! (entries, counts and the watermark together, never half of them; a carry-over replaces
//! a whole month's entries in one, `Index::replace_month`):
//!
//! | key | value |
//! | --- | --- |
//! | `E` month id | where the record is: segment, offset, length |
//! | `C` month check | the check's class and where each of its records is |
//! | `O` month check | (empty): the check is open |
//! | `N` month | the month's counts |
//! | `W` month segment | the segment is indexed up to this offset |
//! | `D` month | how far the month document was last brought up to date (a hint for maintenance) |
//! | `U` month segment offset | a record that does not open yet (no key for it here): tried again when a key arrives and at open |
//! | `K` month lookup-key check | (empty): the check can be found by this key ([`Classifier::lookup_keys`]) |
//! | `V` | the index format and the classifier's version |
//!
//! Nothing here is the only copy of anything: sled 0.34 flushes with `sync_file_range` and
//! may lose its last writes at a power cut, so at open every segment is indexed again from
//! its watermark (idempotent: a record already in `E` is skipped), and an index that
//! contradicts the segments is rebuilt from them (see `recovery`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::event::{Event, EventId, Month};

/// The index's format; a different one on disk is rebuilt from the segments.
/// 2: checks carry lookup keys (`K` entries).
const FORMAT: u32 = 2;

/// A key a check can also be found by (検索キー), besides its id: opaque to the store (the
/// daemon's keyed hash of a patient's card or insurance numbers). Kept in the index only,
/// so it goes with the month's entries when the month is purged.
pub type LookupKey = [u8; 16];

/// At most this many lookup keys are kept per check (the rest are ignored).
pub const MAX_LOOKUP_KEYS: usize = 8;

/// A check's class (状態区分): whether it is open and which of the month's counters it
/// adds to. Decided by the daemon's [`Classifier`] from the check's events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckClass {
    /// Waiting for 事後確認 or staff.
    pub open: bool,
    /// Counters this check adds one to (bit `i` → [`MonthCounts::tags`]`[i]`).
    pub tags: u32,
}

/// What the store asks the daemon about a check: its class from its events, ordered by
/// (time, device). Must be a pure function of the events.
pub trait Classifier: Send + Sync + fmt::Debug {
    /// Changes whenever [`Classifier::classify`] would answer differently for the same
    /// events: the index then classifies every check again at open.
    fn version(&self) -> u32;
    /// The class of check `check_id`, given all its events.
    fn classify(&self, check_id: &str, events: &[Event]) -> CheckClass;
    /// The keys check `check_id` can also be found by ([`super::Store::checks_by_key`]),
    /// given all its events. Pure like [`Classifier::classify`], and covered by the same
    /// version. None by default.
    fn lookup_keys(&self, check_id: &str, events: &[Event]) -> Vec<LookupKey> {
        let _ = (check_id, events);
        Vec::new()
    }
    /// Both at once: what the index calls. A classifier whose two answers share work (the
    /// daemon folds the events for each) gives them together here.
    fn classify_with_keys(&self, check_id: &str, events: &[Event]) -> (CheckClass, Vec<LookupKey>) {
        (
            self.classify(check_id, events),
            self.lookup_keys(check_id, events),
        )
    }
}

/// A classifier for tools and tests that know no payloads: a check is open until an event
/// with `"kind": "resolved"`; no counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenUntilResolved;

impl Classifier for OpenUntilResolved {
    fn version(&self) -> u32 {
        1
    }

    fn classify(&self, _check_id: &str, events: &[Event]) -> CheckClass {
        CheckClass {
            open: !events.iter().any(|e| e.payload["kind"] == "resolved"),
            tags: 0,
        }
    }
}

/// A month's counts, kept in the index so statistics never read the month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonthCounts {
    /// Checks.
    pub checks: u64,
    /// Open checks.
    pub open: u64,
    /// Events.
    pub events: u64,
    /// Checks per counter of [`CheckClass::tags`].
    pub tags: [u64; 32],
}

impl MonthCounts {
    fn add(&mut self, class: CheckClass, sign: i64) {
        let step = |n: &mut u64| *n = n.saturating_add_signed(sign);
        step(&mut self.checks);
        if class.open {
            step(&mut self.open);
        }
        for (i, n) in self.tags.iter_mut().enumerate() {
            if class.tags & (1 << i) != 0 {
                step(n);
            }
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(35 * 8);
        for n in [self.checks, self.open, self.events]
            .iter()
            .chain(self.tags.iter())
        {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != 35 * 8 {
            return None;
        }
        let n = |i: usize| u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        let mut tags = [0u64; 32];
        for (i, t) in tags.iter_mut().enumerate() {
            *t = n(3 + i);
        }
        Some(Self {
            checks: n(0),
            open: n(1),
            events: n(2),
            tags,
        })
    }
}

/// Where a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Loc {
    /// The segment's number.
    pub seg: u32,
    /// The frame's offset.
    pub offset: u64,
    /// The frame's length.
    pub len: u32,
}

impl Loc {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seg.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
    }

    fn decode(b: &[u8]) -> Option<Self> {
        Some(Self {
            seg: u32::from_be_bytes(b.get(0..4)?.try_into().ok()?),
            offset: u64::from_be_bytes(b.get(4..12)?.try_into().ok()?),
            len: u32::from_be_bytes(b.get(12..16)?.try_into().ok()?),
        })
    }

    /// Where the frame ends (a damaged offset saturates rather than overflowing).
    pub(crate) fn end(&self) -> u64 {
        self.offset.saturating_add(u64::from(self.len))
    }
}

/// A check as the index holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CheckEntry {
    /// Its class.
    pub class: CheckClass,
    /// The keys it can be found by (each has a `K` entry).
    pub keys: Vec<LookupKey>,
    /// Its records, in the order they were indexed.
    pub locs: Vec<Loc>,
}

impl CheckEntry {
    fn encode(&self) -> Vec<u8> {
        let keys = &self.keys[..self.keys.len().min(MAX_LOOKUP_KEYS)];
        let mut out = Vec::with_capacity(6 + 16 * (keys.len() + self.locs.len()));
        out.extend_from_slice(&self.class.tags.to_be_bytes());
        out.push(u8::from(self.class.open));
        out.push(keys.len() as u8);
        for k in keys {
            out.extend_from_slice(k);
        }
        for loc in &self.locs {
            loc.encode(&mut out);
        }
        out
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let tags = u32::from_be_bytes(b.get(0..4)?.try_into().ok()?);
        let open = *b.get(4)? != 0;
        let nkeys = usize::from(*b.get(5)?);
        let keys_end = 6 + 16 * nkeys;
        let keys = b
            .get(6..keys_end)?
            .chunks(16)
            .map(|k| k.try_into().ok())
            .collect::<Option<Vec<LookupKey>>>()?;
        let rest = b.get(keys_end..)?;
        if rest.len() % 16 != 0 {
            return None;
        }
        let locs = rest.chunks(16).map(Loc::decode).collect::<Option<_>>()?;
        Some(Self {
            class: CheckClass { open, tags },
            keys,
            locs,
        })
    }
}

/// The index could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IndexOpenError {
    /// sled returned an I/O error (kind kept for classification).
    #[error("{0}")]
    Io(std::io::Error),
    /// sled found its files damaged, or panicked reading them.
    #[error("{0}")]
    Damaged(String),
}

/// The index could not be read or written, or contradicts itself.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// sled failed.
    #[error("index: {0}")]
    Db(#[from] sled::Error),
    /// An entry does not decode.
    #[error("index entry {0} is damaged")]
    Damaged(String),
    /// A record needed for the update could not be read now.
    #[error("index update postponed: {0}")]
    Read(String),
}

/// Every kind of entry a month has.
const MONTH_KINDS: [u8; 8] = [b'E', b'C', b'O', b'N', b'W', b'D', b'U', b'K'];

fn key(kind: u8, month: Month, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + rest.len());
    k.push(kind);
    k.extend_from_slice(&month.to_bytes());
    k.extend_from_slice(rest);
    k
}

/// A new record to index: where it is, and its event if it opened.
#[derive(Debug)]
pub(crate) struct NewRecord {
    /// Where it is.
    pub loc: Loc,
    /// Its id.
    pub id: EventId,
    /// The event.
    pub event: Event,
}

/// The class and lookup keys of a check from its events (in any order).
fn classify(
    classifier: &dyn Classifier,
    month: Month,
    check_id: &str,
    mut events: Vec<(EventId, Event)>,
) -> (CheckClass, Vec<LookupKey>) {
    super::sort_events(&mut events);
    let plain: Vec<Event> = events.into_iter().map(|(_, e)| e).collect();
    // The classifier is the daemon's code: if it panics, the check counts as open (staff
    // see it) rather than the records being stranded.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (class, mut keys) = classifier.classify_with_keys(check_id, &plain);
        keys.sort_unstable();
        keys.dedup();
        keys.truncate(MAX_LOOKUP_KEYS);
        (class, keys)
    }))
    .unwrap_or_else(|_| {
        tracing::error!(%month, check = %check_id, "the classifier panicked; counting the check as open");
        (
            CheckClass {
                open: true,
                tags: 0,
            },
            Vec::new(),
        )
    })
}

fn lookup_key(month: Month, k: &LookupKey, check_id: &str) -> Vec<u8> {
    let mut rest = Vec::with_capacity(16 + check_id.len());
    rest.extend_from_slice(k);
    rest.extend_from_slice(check_id.as_bytes());
    key(b'K', month, &rest)
}

fn unreadable_key(month: Month, loc: Loc) -> Vec<u8> {
    let mut k = Vec::with_capacity(12);
    k.extend_from_slice(&loc.seg.to_be_bytes());
    k.extend_from_slice(&loc.offset.to_be_bytes());
    key(b'U', month, &k)
}

/// The sled index.
pub(crate) struct Index {
    db: sled::Db,
    tree: sled::Tree,
    /// Tests: fail this many of the next updates, as a failing disk under sled would.
    #[cfg(test)]
    pub(crate) fail_adds: std::sync::atomic::AtomicU32,
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index").finish_non_exhaustive()
    }
}

impl Index {
    /// Opens (or creates) the index in `path`.
    pub(crate) fn open(path: &Path, cache_bytes: u64) -> Result<Self, IndexOpenError> {
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            // A backstop only: nothing acknowledged depends on sled's flushes.
            .flush_every_ms(Some(2000));
        // sled panics on some damaged files instead of returning an error.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            config.open().and_then(|db| {
                let tree = db.open_tree("index")?;
                Ok((db, tree))
            })
        }));
        match opened {
            Ok(Ok((db, tree))) => Ok(Self {
                db,
                tree,
                #[cfg(test)]
                fail_adds: Default::default(),
            }),
            Ok(Err(sled::Error::Io(e))) => Err(IndexOpenError::Io(e)),
            Ok(Err(e)) => Err(IndexOpenError::Damaged(e.to_string())),
            Err(_) => Err(IndexOpenError::Damaged(
                "the index panicked while opening".into(),
            )),
        }
    }

    /// The format and classifier version the index was built with.
    pub(crate) fn versions(&self) -> Result<Option<(u32, u32)>, IndexError> {
        Ok(self.tree.get(b"V")?.and_then(|v| {
            let f = u32::from_be_bytes(v.get(0..4)?.try_into().ok()?);
            let c = u32::from_be_bytes(v.get(4..8)?.try_into().ok()?);
            Some((f, c))
        }))
    }

    /// Whether the index was built in this format with classifier version `classifier`.
    pub(crate) fn is_current(&self, classifier: u32) -> Result<bool, IndexError> {
        Ok(self.versions()? == Some((FORMAT, classifier)))
    }

    /// Empties the index before a rebuild. The version stamp goes first, durably: an index
    /// that a crash left half-emptied (sled clears key by key) is then never taken for a
    /// whole one. [`Index::stamp`] marks it whole again.
    pub(crate) fn reset(&self) -> Result<(), IndexError> {
        self.tree.remove(b"V")?;
        self.db.flush()?;
        self.tree.clear()?;
        Ok(())
    }

    /// Stamps a rebuilt index with the current versions, durably.
    pub(crate) fn stamp(&self, classifier: u32) -> Result<(), IndexError> {
        let mut v = FORMAT.to_be_bytes().to_vec();
        v.extend_from_slice(&classifier.to_be_bytes());
        self.tree.insert(b"V", v)?;
        self.db.flush()?;
        Ok(())
    }

    /// Where record `id` of `month` is.
    pub(crate) fn event(&self, month: Month, id: EventId) -> Result<Option<Loc>, IndexError> {
        match self.tree.get(key(b'E', month, &id.0))? {
            None => Ok(None),
            Some(v) => Loc::decode(&v)
                .map(Some)
                .ok_or_else(|| IndexError::Damaged(format!("E {month} {id}"))),
        }
    }

    /// Check `check_id` of `month`.
    pub(crate) fn check(
        &self,
        month: Month,
        check_id: &str,
    ) -> Result<Option<CheckEntry>, IndexError> {
        match self.tree.get(key(b'C', month, check_id.as_bytes()))? {
            None => Ok(None),
            Some(v) => CheckEntry::decode(&v)
                .map(Some)
                .ok_or_else(|| IndexError::Damaged(format!("C {month}"))),
        }
    }

    fn ids_with(&self, kind: u8, month: Month) -> Result<Vec<String>, IndexError> {
        let prefix = key(kind, month, &[]);
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (k, _) = item?;
            let id = std::str::from_utf8(&k[prefix.len()..])
                .map_err(|_| IndexError::Damaged(format!("{} {month}", kind as char)))?;
            out.push(id.to_string());
        }
        Ok(out)
    }

    /// The checks of `month`, sorted by id.
    pub(crate) fn check_ids(&self, month: Month) -> Result<Vec<String>, IndexError> {
        self.ids_with(b'C', month)
    }

    /// The open checks of `month`, sorted by id.
    pub(crate) fn open_checks(&self, month: Month) -> Result<Vec<String>, IndexError> {
        self.ids_with(b'O', month)
    }

    /// The checks of `month` that can be found by `k`, sorted by id.
    pub(crate) fn checks_by_key(
        &self,
        month: Month,
        k: &LookupKey,
    ) -> Result<Vec<String>, IndexError> {
        let prefix = key(b'K', month, k);
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (found, _) = item?;
            let id = std::str::from_utf8(&found[prefix.len()..])
                .map_err(|_| IndexError::Damaged(format!("K {month}")))?;
            out.push(id.to_string());
        }
        Ok(out)
    }

    /// The counts of `month`.
    pub(crate) fn counts(&self, month: Month) -> Result<MonthCounts, IndexError> {
        match self.tree.get(key(b'N', month, &[]))? {
            None => Ok(MonthCounts::default()),
            Some(v) => {
                MonthCounts::decode(&v).ok_or_else(|| IndexError::Damaged(format!("N {month}")))
            }
        }
    }

    /// How far each segment of `month` is indexed.
    pub(crate) fn watermarks(&self, month: Month) -> Result<BTreeMap<u32, u64>, IndexError> {
        let prefix = key(b'W', month, &[]);
        let mut out = BTreeMap::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (k, v) = item?;
            let damaged = || IndexError::Damaged(format!("W {month}"));
            let seg = u32::from_be_bytes(k[prefix.len()..].try_into().map_err(|_| damaged())?);
            let end = u64::from_be_bytes(v.as_ref().try_into().map_err(|_| damaged())?);
            out.insert(seg, end);
        }
        Ok(out)
    }

    /// Indexes `new` records of `month` (in segment order) and moves the watermark of each
    /// segment in `ends` — one atomic batch. Records already indexed are skipped, so this
    /// is idempotent. `prior` reads an already indexed record's event (to classify a check
    /// that gets a new event).
    pub(crate) fn add(
        &self,
        month: Month,
        new: Vec<NewRecord>,
        ends: &BTreeMap<u32, u64>,
        classifier: &dyn Classifier,
        prior: &dyn Fn(Loc) -> Result<Option<(EventId, Event)>, String>,
    ) -> Result<(), IndexError> {
        #[cfg(test)]
        {
            use std::sync::atomic::Ordering;
            let left = self.fail_adds.load(Ordering::SeqCst);
            if left > 0 {
                self.fail_adds.store(left - 1, Ordering::SeqCst);
                return Err(IndexError::Read("injected index failure".into()));
            }
        }
        let mut batch = sled::Batch::default();
        let mut counts = self.counts(month)?;
        // Group by check, keeping segment order; skip what is indexed already.
        let mut by_check: BTreeMap<String, Vec<NewRecord>> = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for r in new {
            if !seen.insert(r.id) || self.event(month, r.id)?.is_some() {
                continue;
            }
            by_check
                .entry(r.event.check_id.clone())
                .or_default()
                .push(r);
        }
        for (check_id, records) in by_check {
            let ckey = key(b'C', month, check_id.as_bytes());
            let before = self.check(month, &check_id)?;
            let mut events: Vec<(EventId, Event)> = Vec::new();
            let mut entry = before.clone().unwrap_or_default();
            for loc in &entry.locs {
                // A record that does not open is classified without; one that cannot be
                // read now stops the update (it is tried again).
                if let Some(e) = prior(*loc).map_err(IndexError::Read)? {
                    events.push(e);
                }
            }
            for r in records {
                batch.insert(key(b'E', month, &r.id.0), {
                    let mut v = Vec::with_capacity(16);
                    r.loc.encode(&mut v);
                    v
                });
                entry.locs.push(r.loc);
                events.push((r.id, r.event));
                counts.events += 1;
            }
            let (class, keys) = classify(classifier, month, &check_id, events);
            if let Some(old) = &before {
                counts.add(old.class, -1);
                for k in old.keys.iter().filter(|k| !keys.contains(k)) {
                    batch.remove(lookup_key(month, k, &check_id));
                }
            }
            for k in &keys {
                batch.insert(lookup_key(month, k, &check_id), &[][..]);
            }
            counts.add(class, 1);
            entry.class = class;
            entry.keys = keys;
            batch.insert(ckey, entry.encode());
            let okey = key(b'O', month, check_id.as_bytes());
            if class.open {
                batch.insert(okey, &[][..]);
            } else {
                batch.remove(okey);
            }
        }
        batch.insert(key(b'N', month, &[]), counts.encode());
        // A watermark never moves back: work applied late (after a catch-up went further)
        // adds nothing new and must not make the next open index the same bytes again.
        let marks = self.watermarks(month)?;
        for (seg, end) in ends {
            let end = marks.get(seg).map_or(*end, |m| (*m).max(*end));
            batch.insert(key(b'W', month, &seg.to_be_bytes()), &end.to_be_bytes()[..]);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// How far the month document was last saved up to (segment → offset), if recorded.
    pub(crate) fn doc_marks(&self, month: Month) -> Result<Option<BTreeMap<u32, u64>>, IndexError> {
        let Some(v) = self.tree.get(key(b'D', month, &[]))? else {
            return Ok(None);
        };
        let damaged = || IndexError::Damaged(format!("D {month}"));
        if v.len() % 12 != 0 {
            return Err(damaged());
        }
        let mut out = BTreeMap::new();
        for c in v.chunks(12) {
            let seg = u32::from_be_bytes(c[..4].try_into().map_err(|_| damaged())?);
            let off = u64::from_be_bytes(c[4..].try_into().map_err(|_| damaged())?);
            out.insert(seg, off);
        }
        Ok(Some(out))
    }

    /// Records how far the month document was saved up to.
    pub(crate) fn set_doc_marks(
        &self,
        month: Month,
        marks: &BTreeMap<u32, u64>,
    ) -> Result<(), IndexError> {
        let mut v = Vec::with_capacity(marks.len() * 12);
        for (seg, off) in marks {
            v.extend_from_slice(&seg.to_be_bytes());
            v.extend_from_slice(&off.to_be_bytes());
        }
        self.tree.insert(key(b'D', month, &[]), v)?;
        Ok(())
    }

    /// Notes records of `month` that do not open yet.
    pub(crate) fn add_unreadable(&self, month: Month, locs: &[Loc]) -> Result<(), IndexError> {
        let mut batch = sled::Batch::default();
        for loc in locs {
            batch.insert(unreadable_key(month, *loc), &loc.len.to_be_bytes()[..]);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// The records of `month` that did not open.
    pub(crate) fn unreadable(&self, month: Month) -> Result<Vec<Loc>, IndexError> {
        let prefix = key(b'U', month, &[]);
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (k, v) = item?;
            let damaged = || IndexError::Damaged(format!("U {month}"));
            let rest = &k[prefix.len()..];
            out.push(Loc {
                seg: u32::from_be_bytes(
                    rest.get(..4)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(damaged)?,
                ),
                offset: u64::from_be_bytes(
                    rest.get(4..12)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(damaged)?,
                ),
                len: u32::from_be_bytes(v.as_ref().try_into().map_err(|_| damaged())?),
            });
        }
        Ok(out)
    }

    /// Forgets an unreadable record (it opened and is indexed now).
    pub(crate) fn readable_again(&self, month: Month, loc: Loc) -> Result<(), IndexError> {
        self.tree.remove(unreadable_key(month, loc))?;
        Ok(())
    }

    /// Removes every entry of `month` (a purge).
    pub(crate) fn remove_month(&self, month: Month) -> Result<(), IndexError> {
        let mut batch = sled::Batch::default();
        for kind in MONTH_KINDS {
            for item in self.tree.scan_prefix(key(kind, month, &[])) {
                batch.remove(item?.0);
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Replaces every entry of `month` with those of `records` (in segment order: all the
    /// month's records that open), `unreadable` (those that do not) and the watermarks
    /// `ends` — one atomic batch, so a reader sees the month before or after, never
    /// between. How a carry-over rebuilds the month's index from what remains
    /// ([`super::Store::purge_except`]).
    pub(crate) fn replace_month(
        &self,
        month: Month,
        records: Vec<NewRecord>,
        unreadable: &[Loc],
        ends: &BTreeMap<u32, u64>,
        classifier: &dyn Classifier,
    ) -> Result<(), IndexError> {
        let mut batch = sled::Batch::default();
        for kind in MONTH_KINDS {
            for item in self.tree.scan_prefix(key(kind, month, &[])) {
                batch.remove(item?.0);
            }
        }
        let mut counts = MonthCounts::default();
        let mut by_check: BTreeMap<String, Vec<NewRecord>> = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for r in records {
            if seen.insert(r.id) {
                by_check
                    .entry(r.event.check_id.clone())
                    .or_default()
                    .push(r);
            }
        }
        for (check_id, records) in by_check {
            let mut entry = CheckEntry::default();
            let mut events = Vec::with_capacity(records.len());
            for r in records {
                batch.insert(key(b'E', month, &r.id.0), {
                    let mut v = Vec::with_capacity(16);
                    r.loc.encode(&mut v);
                    v
                });
                entry.locs.push(r.loc);
                events.push((r.id, r.event));
                counts.events += 1;
            }
            (entry.class, entry.keys) = classify(classifier, month, &check_id, events);
            for k in &entry.keys {
                batch.insert(lookup_key(month, k, &check_id), &[][..]);
            }
            counts.add(entry.class, 1);
            batch.insert(key(b'C', month, check_id.as_bytes()), entry.encode());
            if entry.class.open {
                batch.insert(key(b'O', month, check_id.as_bytes()), &[][..]);
            }
        }
        for loc in unreadable {
            batch.insert(unreadable_key(month, *loc), &loc.len.to_be_bytes()[..]);
        }
        batch.insert(key(b'N', month, &[]), counts.encode());
        for (seg, end) in ends {
            batch.insert(key(b'W', month, &seg.to_be_bytes()), &end.to_be_bytes()[..]);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Whether any entry of `month` is left.
    pub(crate) fn has_month(&self, month: Month) -> Result<bool, IndexError> {
        for kind in MONTH_KINDS {
            if self
                .tree
                .scan_prefix(key(kind, month, &[]))
                .next()
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Asks sled to write what it holds (not a durability point: see the module doc).
    pub(crate) fn flush(&self) -> Result<(), IndexError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn entries_round_trip() {
        let e = CheckEntry {
            class: CheckClass {
                open: true,
                tags: 0b101,
            },
            keys: vec![[7; 16], [9; 16]],
            locs: vec![
                Loc {
                    seg: 1,
                    offset: 32,
                    len: 700,
                },
                Loc {
                    seg: 2,
                    offset: 9000,
                    len: 12,
                },
            ],
        };
        assert_eq!(CheckEntry::decode(&e.encode()), Some(e));
        let mut c = MonthCounts::default();
        c.add(
            CheckClass {
                open: true,
                tags: 1 << 31,
            },
            1,
        );
        c.events = 4;
        assert_eq!(MonthCounts::decode(&c.encode()), Some(c));
        assert_eq!(c.tags[31], 1);
        c.add(
            CheckClass {
                open: true,
                tags: 1 << 31,
            },
            -1,
        );
        assert_eq!((c.checks, c.open, c.tags[31]), (0, 0, 0));
    }
}
