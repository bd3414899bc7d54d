//! Documents (文書): the automerge documents devices sync, kept as files.
//!
//! - The **month document** (`months/YYYY-MM/doc.snapshot` + `doc.changes`) maps each event
//!   id of the month to the digest of its record. It is an index: what it says about this
//!   device's records is derived from the segments and brought up to date on demand
//!   ([`MonthDocs::catch_up`]) from a watermark it keeps per segment; what it says about a
//!   peer's records tells sync which records to fetch. Captures never wait for it and it is
//!   not held in memory unless something asks for it.
//! - The **small documents** (`docs/devices`, `docs/settings`): whole automerge documents,
//!   rewritten atomically on each change.
//!
//! A peer's changes are applied only if they keep the document's shape ([`Shape`]):
//! automerge takes any well-formed change, and a paired device that is compromised or
//! broken could otherwise delete entries, name non-events or change a record's digest, and
//! every honest device would relay that on.
//!
//! Files are framed with a checksum. A damaged month document is rebuilt from the segments
//! (a document is never the only copy of a record); a damaged small document is set aside
//! in `quarantine/` and started again (this device registers itself again; peers send the
//! rest).
//!
//! Compaction writes the whole document as a new snapshot (temporary file, fsync, rename,
//! directory fsync) before removing the changes it replaces: a power cut in between leaves
//! both, and loading a change twice is harmless.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{
    legacy, AutoCommit, ChangeHash, ReadDoc, ScalarValue, ScalarValueRef, Value, ValueRef, ROOT,
};

use crate::device::DeviceId;
use crate::event::{EventId, Month};
use crate::vfs::{self, OpenMode, Vfs};

use super::segment;

/// Why a document could not be read, written or merged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocError {
    /// A document file could not be read or written.
    #[error("document {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// A peer's document (or a change to one) was refused.
    #[error("document refused: {0}")]
    Refused(String),
}

/// Watermarks: segment → offset the document covers.
type Marks = BTreeMap<u32, u64>;

fn encode_marks(marks: &Marks, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + marks.len() * 12 + payload.len());
    body.extend_from_slice(&(marks.len() as u32).to_be_bytes());
    for (seg, off) in marks {
        body.extend_from_slice(&seg.to_be_bytes());
        body.extend_from_slice(&off.to_be_bytes());
    }
    body.extend_from_slice(payload);
    segment::frame(&body)
}

fn decode_marks(body: &[u8]) -> Option<(Marks, &[u8])> {
    let n = u32::from_be_bytes(body.get(0..4)?.try_into().ok()?) as usize;
    let mut marks = Marks::new();
    let mut pos = 4;
    for _ in 0..n {
        let seg = u32::from_be_bytes(body.get(pos..pos + 4)?.try_into().ok()?);
        let off = u64::from_be_bytes(body.get(pos + 4..pos + 12)?.try_into().ok()?);
        marks.insert(seg, off);
        pos += 12;
    }
    Some((marks, body.get(pos..)?))
}

/// Frames of a document file; stops at the first that does not decode (a torn tail: the
/// document is an index, and what is lost is caught up again).
fn frames(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let segment::Frame::Good(body, len) =
        segment::decode_frame_within(&bytes[pos..], 0..=u32::MAX as usize)
    {
        out.push(body);
        pos += len;
    }
    out
}

/// A month document in memory.
struct MonthDoc {
    doc: AutoCommit,
    /// What `doc` names (event id → digest), kept beside it and changed with it:
    /// automerge reads a key at a time, and 50,000 reads took half a second where a
    /// first sync needs them after every batch of records.
    named: HashMap<EventId, [u8; 8]>,
    /// Heads as of the last save: the next change chunk starts here.
    saved: Vec<ChangeHash>,
    marks: Marks,
    changes_bytes: u64,
    snapshot_bytes: u64,
    /// A peer's refused changes are in `doc` and the saved document could not be read
    /// again to undo them: never used again (a save would keep them). The month is read
    /// afresh at its next use.
    defunct: bool,
}

/// The month documents.
pub(crate) struct MonthDocs {
    vfs: Arc<dyn Vfs>,
    root: PathBuf,
    compact_bytes: u64,
    loaded: Mutex<HashMap<Month, Arc<Mutex<MonthDoc>>>>,
}

impl fmt::Debug for MonthDocs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonthDocs")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Document state is replaced whole after each step; a panic cannot leave half of it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the month document says of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The event.
    pub id: EventId,
    /// The digest of its record.
    pub digest: [u8; 8],
}

/// Every entry `doc` holds, read in one pass.
fn entries_of(doc: &AutoCommit) -> HashMap<EventId, [u8; 8]> {
    doc.map_range(ROOT, ..)
        .filter_map(|item| {
            // Read where it lies: a copy of each digest would be 50,000 allocations.
            let ValueRef::Scalar(ScalarValueRef::Bytes(b)) = &item.value else {
                return None;
            };
            let id = canonical_id(&item.key)?;
            Some((id, <[u8; 8]>::try_from(b.as_ref()).ok()?))
        })
        .collect()
}

/// The event `key` names, if it is spelled as this device spells event ids.
fn canonical_id(key: &str) -> Option<EventId> {
    // Lowercase hex digits only: `EventId`'s parser also takes capitals and a sign.
    let spelled = key
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    spelled.then(|| key.parse::<EventId>().ok()).flatten()
}

/// The entry `key` holding `value` makes, if `key` names an event (in this device's
/// spelling) and `value` is a digest.
fn entry_in(key: &str, value: &Value<'_>) -> Option<Entry> {
    let id = canonical_id(key)?;
    match value {
        Value::Scalar(v) => match v.as_ref() {
            ScalarValue::Bytes(b) => Some(Entry {
                id,
                digest: <[u8; 8]>::try_from(b.as_slice()).ok()?,
            }),
            _ => None,
        },
        Value::Object(_) => None,
    }
}

/// What a shared document may hold (形): the rule every peer's change to it must keep.
/// Every document is a map at its root from a key to a scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Event id → the 8-byte digest of its record; an entry never changes or goes.
    Month,
    /// Device id → JSON naming that device's public key; an entry never goes (there is no
    /// revocation yet) and never names another key.
    Devices,
    /// Setting name → text; settings change and go.
    Settings,
}

/// The longest setting name and value a peer may write.
const SETTING_NAME_MAX: usize = 64;
const SETTING_VALUE_MAX: usize = 4096;

impl Shape {
    fn of_small(name: &str) -> Self {
        if name == "devices" {
            Shape::Devices
        } else {
            Shape::Settings
        }
    }

    /// Whether `value` may be put under `key`.
    fn allows(self, key: &str, value: &ScalarValue) -> Result<(), String> {
        match (self, value) {
            (Shape::Month, ScalarValue::Bytes(b)) => {
                // In the one spelling this device writes: another ("ABC…", "+a…") would
                // name the same event a second time, with a digest of its own.
                if canonical_id(key).is_none() {
                    return Err(format!("key {key:?} is not an event id"));
                }
                if b.len() != 8 {
                    return Err(format!("the digest of {key} is {} bytes, not 8", b.len()));
                }
                Ok(())
            }
            (Shape::Devices, ScalarValue::Str(text)) => {
                let id = key
                    .parse::<DeviceId>()
                    .map_err(|_| format!("key {key:?} is not a device id"))?;
                let named = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| {
                        let hex = v.get("public_key")?.as_str()?.as_bytes().to_vec();
                        data_encoding::HEXLOWER_PERMISSIVE.decode(&hex).ok()
                    })
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                    .and_then(|bytes| ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok());
                if named.map(|key| DeviceId::of(&key)) != Some(id) {
                    return Err(format!(
                        "the entry of device {key} does not name its own key"
                    ));
                }
                Ok(())
            }
            (Shape::Settings, ScalarValue::Str(text)) => {
                let name_ok = !key.is_empty()
                    && key.len() <= SETTING_NAME_MAX
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if !name_ok {
                    return Err(format!("setting name {key:?} is not allowed"));
                }
                if text.len() > SETTING_VALUE_MAX {
                    return Err(format!("setting {key} is {} bytes long", text.len()));
                }
                Ok(())
            }
            (_, other) => Err(format!(
                "{key} holds a {other:?}, not what the document keeps"
            )),
        }
    }
}

/// Checks what `doc` gained since `before` (a peer's changes, applied, not yet saved):
/// every operation puts a scalar at the root that `shape` allows, or deletes a setting;
/// none creates an object. Returns the root keys the changes touched (a month document's
/// are checked further by [`month_gained`]).
fn check_gained(
    doc: &mut AutoCommit,
    before: &[ChangeHash],
    shape: Shape,
) -> Result<BTreeSet<String>, String> {
    let mut touched = BTreeSet::new();
    for change in doc.get_changes(before) {
        for op in change.decode().operations {
            let legacy::Key::Map(key) = op.key else {
                return Err("a list operation".into());
            };
            if op.obj != legacy::ObjectId::Root {
                return Err(format!("an entry {key:?} inside an object"));
            }
            match op.action {
                legacy::OpType::Put(value) => shape.allows(&key, &value)?,
                legacy::OpType::Delete if shape == Shape::Settings => {}
                legacy::OpType::Delete => return Err(format!("the entry {key} deleted")),
                legacy::OpType::Make(_) => return Err(format!("an object made at {key}")),
                _ => return Err(format!("an operation on {key} the document never uses")),
            }
            touched.insert(key.to_string());
        }
    }
    Ok(touched)
}

/// [`check_gained`] for a month document, and no entry now holds anything but what it
/// held before (if it existed) — also not as one side of a conflict. Returns the
/// entries the changes touched, as the document now holds them.
fn month_gained(doc: &mut AutoCommit, before: &[ChangeHash]) -> Result<Vec<Entry>, String> {
    let touched = check_gained(doc, before, Shape::Month)?;
    let mut entries = Vec::with_capacity(touched.len());
    for (key, now) in current(doc, &touched)? {
        // A document that held nothing held no entry (a new device's first sync puts
        // every key of the month).
        let was = if before.is_empty() {
            None
        } else {
            doc.get_at(ROOT, key, before)
                .map_err(|e| e.to_string())?
                .map(|(v, _)| v.into_owned())
        };
        let first = now.first().cloned();
        let agree = now.iter().all(|v| Some(v) == first.as_ref());
        if !agree || (was.is_some() && was != first) {
            return Err(format!("the digest of {key} changed"));
        }
        entries.extend(first.as_ref().and_then(|v| entry_in(key, v)));
    }
    Ok(entries)
}

/// Keys past which [`current`] reads the map in one pass rather than a key at a time.
const ONE_PASS_KEYS: usize = 64;

/// The values each of `keys` holds at the root now (more than one where peers' puts
/// conflict). Many keys are read in one pass over the map: a seek costs about 10 µs in
/// a month of 50,000 entries, and a new device's first sync touches every key.
fn current<'k>(
    doc: &AutoCommit,
    keys: &'k BTreeSet<String>,
) -> Result<Vec<(&'k str, Vec<Value<'static>>)>, String> {
    let all = |key: &str| -> Result<Vec<Value<'static>>, String> {
        Ok(doc
            .get_all(ROOT, key)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(v, _)| v.into_owned())
            .collect())
    };
    let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
        return Ok(Vec::new());
    };
    if keys.len() <= ONE_PASS_KEYS {
        return keys.iter().map(|k| Ok((k.as_str(), all(k)?))).collect();
    }
    let mut found: HashMap<&str, Vec<Value<'static>>> = HashMap::with_capacity(keys.len());
    for item in doc.map_range(ROOT, first.clone()..=last.clone()) {
        let Some(key) = keys.get(item.key.as_ref()) else {
            continue;
        };
        let values = if item.conflict {
            all(key)?
        } else {
            vec![item.value.into_value()]
        };
        found.insert(key.as_str(), values);
    }
    // A key the pass did not meet is read by itself (the answer never rests on the
    // order the map is walked in).
    keys.iter()
        .map(|k| match found.remove(k.as_str()) {
            Some(values) => Ok((k.as_str(), values)),
            None => Ok((k.as_str(), all(k)?)),
        })
        .collect()
}

/// Loads `bytes` as a whole document, strictly: automerge skips damaged parts of a
/// document silently otherwise. Checked before a peer's document is merged.
fn load_strictly(bytes: &[u8]) -> Result<(), DocError> {
    automerge::Automerge::load_with_options(
        bytes,
        automerge::LoadOptions::new().on_partial_load(automerge::OnPartialLoad::Error),
    )
    .map(|_| ())
    .map_err(|e| DocError::Refused(e.to_string()))
}

impl MonthDocs {
    pub(crate) fn new(vfs: Arc<dyn Vfs>, root: &std::path::Path, compact_bytes: u64) -> Self {
        Self {
            vfs,
            root: root.to_path_buf(),
            compact_bytes,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    fn snapshot_path(&self, month: Month) -> PathBuf {
        self.root.join(month.to_string()).join("doc.snapshot")
    }

    fn changes_path(&self, month: Month) -> PathBuf {
        self.root.join(month.to_string()).join("doc.changes")
    }

    fn io(path: &std::path::Path) -> impl Fn(io::Error) -> DocError + '_ {
        move |source| DocError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    fn read_optional(&self, path: &std::path::Path) -> Result<Vec<u8>, DocError> {
        match vfs::read_file(self.vfs.as_ref(), path) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Self::io(path)(e)),
        }
    }

    fn load(&self, month: Month) -> Result<MonthDoc, DocError> {
        let mut doc = AutoCommit::new();
        let mut marks = Marks::new();
        let snapshot = self.read_optional(&self.snapshot_path(month))?;
        let mut snapshot_bytes = 0;
        if let Some(body) = frames(&snapshot).first() {
            match decode_marks(body).map(|(m, p)| (m, AutoCommit::load(p))) {
                Some((m, Ok(d))) => {
                    doc = d;
                    marks = m;
                    snapshot_bytes = snapshot.len() as u64;
                }
                _ => {
                    tracing::warn!(%month, "month document snapshot damaged; rebuilding it from the segments")
                }
            }
        } else if !snapshot.is_empty() {
            tracing::warn!(%month, "month document snapshot damaged; rebuilding it from the segments");
        }
        let changes = self.read_optional(&self.changes_path(month))?;
        for body in frames(&changes) {
            let Some((m, chunk)) = decode_marks(body) else {
                break;
            };
            if doc.load_incremental(chunk).is_err() {
                break;
            }
            for (seg, off) in m {
                let e = marks.entry(seg).or_insert(0);
                *e = (*e).max(off);
            }
        }
        let saved = doc.get_heads();
        Ok(MonthDoc {
            named: entries_of(&doc),
            doc,
            saved,
            marks,
            changes_bytes: changes.len() as u64,
            snapshot_bytes,
            defunct: false,
        })
    }

    fn get(&self, month: Month) -> Result<Arc<Mutex<MonthDoc>>, DocError> {
        if let Some(d) = lock(&self.loaded).get(&month) {
            return Ok(d.clone());
        }
        let loaded = Arc::new(Mutex::new(self.load(month)?));
        Ok(lock(&self.loaded).entry(month).or_insert(loaded).clone())
    }

    /// The document locked, unless it is defunct (see [`MonthDoc::defunct`]).
    fn live<'a>(
        &self,
        month: Month,
        doc: &'a Mutex<MonthDoc>,
    ) -> Result<std::sync::MutexGuard<'a, MonthDoc>, DocError> {
        let d = lock(doc);
        if d.defunct {
            return Err(DocError::Io {
                path: self.root.join(month.to_string()).display().to_string(),
                source: io::Error::other("the month document is being read again"),
            });
        }
        Ok(d)
    }

    /// Undoes a peer's refused changes: `d` (held from `doc`) becomes the saved document
    /// again. If that cannot be read now, `d` is made defunct and forgotten, so nothing
    /// saves the refused changes and the next use reads the month afresh.
    fn undo(
        &self,
        month: Month,
        doc: &Arc<Mutex<MonthDoc>>,
        d: &mut MonthDoc,
    ) -> Result<(), DocError> {
        match self.load(month) {
            Ok(saved) => {
                *d = saved;
                Ok(())
            }
            Err(e) => {
                d.defunct = true;
                let mut loaded = lock(&self.loaded);
                if loaded
                    .get(&month)
                    .is_some_and(|held| Arc::ptr_eq(held, doc))
                {
                    loaded.remove(&month);
                }
                Err(e)
            }
        }
    }

    /// Drops the loaded documents no one is using from memory (they load again on demand;
    /// one in use stays, so a month is never held twice).
    pub(crate) fn unload(&self) {
        lock(&self.loaded).retain(|_, d| Arc::strong_count(d) > 1);
    }

    /// Forgets `month` (a purge removes its files with the month directory).
    pub(crate) fn forget(&self, month: Month) {
        lock(&self.loaded).remove(&month);
    }

    /// Brings the month document up to date: `records(seg, from)` yields the records of
    /// each indexed segment from the document's watermark to `ends[seg]`.
    pub(crate) fn catch_up(
        &self,
        month: Month,
        ends: &BTreeMap<u32, u64>,
        records: &dyn Fn(u32, u64) -> io::Result<Vec<segment::Found>>,
    ) -> Result<usize, DocError> {
        let doc = self.get(month)?;
        let mut d = self.live(month, &doc)?;
        let mut added = 0;
        let mut moved = false;
        for (seg, end) in ends {
            let from = d.marks.get(seg).copied().unwrap_or(segment::HEADER_LEN);
            if from >= *end {
                continue;
            }
            let found =
                records(*seg, from).map_err(Self::io(&self.root.join(month.to_string())))?;
            for f in found.iter().filter(|f| f.offset + u64::from(f.len) <= *end) {
                let digest = f.record.digest();
                if d.named.get(&f.record.id) != Some(&digest) {
                    let key = f.record.id.to_string();
                    d.doc
                        .put(ROOT, key.as_str(), ScalarValue::Bytes(digest.to_vec()))
                        .map_err(|e| DocError::Refused(e.to_string()))?;
                    d.named.insert(f.record.id, digest);
                    added += 1;
                }
            }
            d.marks.insert(*seg, *end);
            moved = true;
        }
        if moved {
            self.save(month, &mut d)?;
        }
        Ok(added)
    }

    /// Appends what changed since the last save to `doc.changes` (with the watermarks).
    fn save(&self, month: Month, d: &mut MonthDoc) -> Result<(), DocError> {
        d.doc.commit();
        let chunk = d.doc.save_after(&d.saved);
        let framed = encode_marks(&d.marks, &chunk);
        let path = self.changes_path(month);
        vfs::create_dir_all_durable(self.vfs.as_ref(), &self.root.join(month.to_string()))
            .map_err(Self::io(&path))?;
        let file = self
            .vfs
            .open(&path, OpenMode::Create)
            .map_err(Self::io(&path))?;
        let end = file.size().map_err(Self::io(&path))?;
        let dir = self.root.join(month.to_string());
        vfs::write_all_at(file.as_ref(), &framed, end)
            .and_then(|()| file.sync_data())
            // A new changes file is durable only with its directory entry.
            .and_then(|()| {
                if end == 0 {
                    self.vfs.sync_dir(&dir)
                } else {
                    Ok(())
                }
            })
            .map_err(|e| {
                // A torn frame at the end is skipped when loading; cut it now if we can.
                let _ = file.set_len(end);
                Self::io(&path)(e)
            })?;
        d.saved = d.doc.get_heads();
        d.changes_bytes = end + framed.len() as u64;
        Ok(())
    }

    /// The month's entries (event id → digest).
    pub(crate) fn entries(&self, month: Month) -> Result<Vec<Entry>, DocError> {
        let doc = self.get(month)?;
        let d = self.live(month, &doc)?;
        let mut entries: Vec<Entry> = d
            .named
            .iter()
            .map(|(&id, &digest)| Entry { id, digest })
            .collect();
        // In the document's order (its keys are the ids in lowercase hex).
        entries.sort_unstable_by_key(|e| e.id);
        Ok(entries)
    }

    /// The whole month document (what a new peer receives).
    pub(crate) fn save_whole(&self, month: Month) -> Result<Vec<u8>, DocError> {
        let doc = self.get(month)?;
        let mut d = self.live(month, &doc)?;
        Ok(d.doc.save())
    }

    /// Merges a peer's month document (checked strictly first: automerge skips damaged
    /// parts silently otherwise).
    pub(crate) fn merge(&self, month: Month, bytes: &[u8]) -> Result<(), DocError> {
        load_strictly(bytes)?;
        let doc = self.get(month)?;
        let mut d = self.live(month, &doc)?;
        let before = d.doc.get_heads();
        let merged = match d.doc.load_incremental(bytes) {
            Ok(_) => month_gained(&mut d.doc, &before),
            Err(e) => Err(e.to_string()),
        };
        match merged {
            Ok(entries) => d.named.extend(entries.iter().map(|e| (e.id, e.digest))),
            Err(why) => {
                self.undo(month, &doc, &mut d)?;
                return Err(DocError::Refused(why));
            }
        }
        self.save(month, &mut d)
    }

    /// The next automerge sync message for a peer whose progress is `state`, or `None`
    /// when the peer has everything (or a message is still in flight).
    pub(crate) fn sync_message(
        &self,
        month: Month,
        state: &mut sync::State,
    ) -> Result<(Option<Vec<u8>>, Vec<ChangeHash>), DocError> {
        let doc = self.get(month)?;
        let mut d = self.live(month, &doc)?;
        let message = d.doc.sync().generate_sync_message(state);
        Ok((message.map(|m| m.encode()), d.doc.get_heads()))
    }

    /// Applies a peer's sync message and saves what it brought (with this device's
    /// watermarks unchanged: a peer's entries say nothing of this device's segments).
    /// Returns the entries its changes put, as the document now holds them: what is new
    /// costs what the message brought, not what the month holds.
    pub(crate) fn receive_sync(
        &self,
        month: Month,
        state: &mut sync::State,
        message: &[u8],
    ) -> Result<Vec<Entry>, DocError> {
        let message =
            sync::Message::decode(message).map_err(|e| DocError::Refused(e.to_string()))?;
        let doc = self.get(month)?;
        let mut d = self.live(month, &doc)?;
        let before = d.doc.get_heads();
        let received = d.doc.sync().receive_sync_message(state, message);
        let applied = match received {
            Ok(()) => month_gained(&mut d.doc, &before),
            Err(e) => Err(e.to_string()),
        };
        let entries = match applied {
            Ok(entries) => entries,
            Err(why) => {
                // What the message brought is only in memory: go back to what is saved.
                self.undo(month, &doc, &mut d)?;
                return Err(DocError::Refused(why));
            }
        };
        d.named.extend(entries.iter().map(|e| (e.id, e.digest)));
        if d.doc.get_heads() != d.saved {
            self.save(month, &mut d)?;
        }
        Ok(entries)
    }

    /// Whether the month document's files say it needs compaction, without loading it.
    pub(crate) fn needs_compaction_on_disk(&self, month: Month) -> Result<bool, DocError> {
        let size = |path: PathBuf| match self.vfs.open(&path, OpenMode::Read) {
            Ok(f) => f.size().map_err(Self::io(&path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Self::io(&path)(e)),
        };
        let changes = size(self.changes_path(month))?;
        let snapshot = size(self.snapshot_path(month))?;
        Ok(changes > snapshot.max(self.compact_bytes))
    }

    /// Whether the month document's changes outweigh its snapshot (automerge-repo's rule).
    pub(crate) fn needs_compaction(&self, month: Month) -> Result<bool, DocError> {
        let doc = self.get(month)?;
        let d = self.live(month, &doc)?;
        Ok(d.changes_bytes > d.snapshot_bytes.max(self.compact_bytes))
    }

    /// Writes the month document as one snapshot, durably, then removes the changes it
    /// covers. Returns the snapshot's size.
    pub(crate) fn compact(&self, month: Month) -> Result<u64, DocError> {
        let doc = self.get(month)?;
        let mut d = self.live(month, &doc)?;
        d.doc.commit();
        let whole = d.doc.save();
        let framed = encode_marks(&d.marks, &whole);
        let snapshot = self.snapshot_path(month);
        vfs::write_atomic(self.vfs.as_ref(), &snapshot, &framed).map_err(Self::io(&snapshot))?;
        let changes = self.changes_path(month);
        match self.vfs.remove_file(&changes) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Self::io(&changes)(e)),
        }
        // Not strictly needed for safety (old changes are harmless), but keeps the
        // directory as small as it claims to be.
        self.vfs
            .sync_dir(&self.root.join(month.to_string()))
            .map_err(Self::io(&changes))?;
        d.saved = d.doc.get_heads();
        d.snapshot_bytes = framed.len() as u64;
        d.changes_bytes = 0;
        Ok(framed.len() as u64)
    }
}

/// The small shared documents (`devices`, `settings`), one file each in `docs/`, held in
/// memory once read: sync asks for them on every local change of every connection, and a
/// document read again from its file would lose automerge's queue of changes still waiting
/// for the changes they depend on.
pub(crate) struct SmallDocs {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    quarantine: PathBuf,
    /// The documents read so far, as their files hold them (a change replaces one only
    /// once its file is written). One lock: a reader never sees a writer's half.
    held: Mutex<HashMap<String, AutoCommit>>,
}

impl fmt::Debug for SmallDocs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmallDocs")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

type Held = HashMap<String, AutoCommit>;

impl SmallDocs {
    pub(crate) fn new(
        vfs: Arc<dyn Vfs>,
        dir: &std::path::Path,
        quarantine: &std::path::Path,
    ) -> Self {
        Self {
            vfs,
            dir: dir.to_path_buf(),
            quarantine: quarantine.to_path_buf(),
            held: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The document `name` (empty if none; a damaged one is set aside and started again).
    pub(crate) fn get(&self, name: &str) -> Result<AutoCommit, DocError> {
        let mut held = lock(&self.held);
        Ok(self.held_doc(&mut held, name)?.clone())
    }

    /// Document `name` as held, read from its file the first time.
    fn held_doc<'a>(&self, held: &'a mut Held, name: &str) -> Result<&'a mut AutoCommit, DocError> {
        Ok(match held.entry(name.to_string()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(self.read(name)?),
        })
    }

    /// Reads document `name` from its file; called with the lock held, so setting a
    /// damaged document aside never races a writer replacing it.
    fn read(&self, name: &str) -> Result<AutoCommit, DocError> {
        let path = self.path(name);
        let bytes = match vfs::read_file(self.vfs.as_ref(), &path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(AutoCommit::new()),
            Err(e) => return Err(MonthDocs::io(&path)(e)),
        };
        match frames(&bytes).first().map(|b| AutoCommit::load(b)) {
            Some(Ok(doc)) => Ok(doc),
            _ => {
                tracing::error!(
                    document = name,
                    "small document damaged; set aside and started again"
                );
                let aside = self.quarantine.join(format!(
                    "{name}-{}",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f")
                ));
                vfs::create_dir_all_durable(self.vfs.as_ref(), &self.quarantine)
                    .and_then(|()| vfs::write_atomic(self.vfs.as_ref(), &aside, &bytes))
                    .and_then(|()| self.vfs.remove_file(&path))
                    .map_err(MonthDocs::io(&path))?;
                Ok(AutoCommit::new())
            }
        }
    }

    /// The next automerge sync message of document `name` for a peer at `state`.
    pub(crate) fn sync_message(
        &self,
        name: &str,
        state: &mut sync::State,
    ) -> Result<(Option<Vec<u8>>, Vec<ChangeHash>), DocError> {
        let mut held = lock(&self.held);
        let doc = self.held_doc(&mut held, name)?;
        let message = doc.sync().generate_sync_message(state);
        Ok((message.map(|m| m.encode()), doc.get_heads()))
    }

    /// Applies a peer's sync message to document `name` and writes it if it changed.
    pub(crate) fn receive_sync(
        &self,
        name: &str,
        state: &mut sync::State,
        message: &[u8],
    ) -> Result<(), DocError> {
        let message =
            sync::Message::decode(message).map_err(|e| DocError::Refused(e.to_string()))?;
        self.update(name, |doc| {
            let received = doc.sync().receive_sync_message(state, message);
            received.map_err(|e| e.to_string())
        })
    }

    /// Merges a peer's whole document `name` (checked strictly first: automerge skips
    /// damaged parts silently otherwise) if its changes keep the document's shape.
    pub(crate) fn merge(&self, name: &str, bytes: &[u8]) -> Result<(), DocError> {
        load_strictly(bytes)?;
        self.update(name, |doc| {
            doc.load_incremental(bytes)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    /// Applies a peer's `apply` to a copy of document `name`; if its changes keep the
    /// document's shape, writes the copy (when its heads moved) and holds it. Refused or
    /// not written, the document stays as it was, in memory and on disk.
    fn update(
        &self,
        name: &str,
        apply: impl FnOnce(&mut AutoCommit) -> Result<(), String>,
    ) -> Result<(), DocError> {
        let mut held = lock(&self.held);
        let doc = self.held_doc(&mut held, name)?;
        let mut copy = doc.clone();
        let before = copy.get_heads();
        apply(&mut copy)
            .and_then(|()| check_gained(&mut copy, &before, Shape::of_small(name)).map(|_| ()))
            .map_err(DocError::Refused)?;
        if copy.get_heads() != before {
            self.write(name, &mut copy)?;
        }
        // Also when nothing moved: the copy may hold changes queued for their
        // dependencies.
        *doc = copy;
        Ok(())
    }

    fn write(&self, name: &str, doc: &mut AutoCommit) -> Result<(), DocError> {
        doc.commit();
        let path = self.path(name);
        vfs::create_dir_all_durable(self.vfs.as_ref(), &self.dir)
            .and_then(|()| {
                vfs::write_atomic(self.vfs.as_ref(), &path, &segment::frame(&doc.save()))
            })
            .map_err(MonthDocs::io(&path))
    }

    /// Changes document `name` and writes it whole, durably.
    pub(crate) fn change(
        &self,
        name: &str,
        change: impl FnOnce(&mut AutoCommit) -> Result<(), automerge::AutomergeError>,
    ) -> Result<(), DocError> {
        let mut held = lock(&self.held);
        let doc = self.held_doc(&mut held, name)?;
        let mut copy = doc.clone();
        change(&mut copy).map_err(|e| DocError::Refused(e.to_string()))?;
        self.write(name, &mut copy)?;
        *doc = copy;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::vfs::sim::SimFs;
    use crate::vfs::{LockGuard, VFile};

    /// A simulated disk whose reads of existing files fail while `failing` is set.
    #[derive(Debug)]
    struct FailingReads {
        fs: Arc<SimFs>,
        failing: AtomicBool,
    }

    impl Vfs for FailingReads {
        fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>> {
            if self.failing.load(Ordering::SeqCst) && matches!(mode, OpenMode::Read) {
                return Err(io::Error::other("injected read failure"));
            }
            self.fs.open(path, mode)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.fs.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            self.fs.remove_file(path)
        }
        fn create_dir(&self, path: &Path) -> io::Result<()> {
            self.fs.create_dir(path)
        }
        fn remove_dir(&self, path: &Path) -> io::Result<()> {
            self.fs.remove_dir(path)
        }
        fn sync_dir(&self, path: &Path) -> io::Result<()> {
            self.fs.sync_dir(path)
        }
        fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
            self.fs.read_dir(path)
        }
        fn is_dir(&self, path: &Path) -> io::Result<Option<bool>> {
            self.fs.is_dir(path)
        }
        fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
            self.fs.try_lock(path)
        }
    }

    fn entry_doc(entries: &[(EventId, [u8; 8])]) -> AutoCommit {
        let mut doc = AutoCommit::new();
        for (id, digest) in entries {
            doc.put(ROOT, id.to_string(), ScalarValue::Bytes(digest.to_vec()))
                .unwrap();
        }
        doc
    }

    /// A peer's change is refused, and the saved document cannot be read to undo it: the
    /// refused change is never saved or shown, and once the disk reads again the month is
    /// what was saved before it.
    #[test]
    fn a_refused_change_that_cannot_be_undone_is_never_kept() {
        let vfs = Arc::new(FailingReads {
            fs: SimFs::new(),
            failing: AtomicBool::new(false),
        });
        let docs = MonthDocs::new(vfs.clone(), Path::new("/months"), 1 << 20);
        let month = Month::new(2026, 11).unwrap();
        let good = (EventId([1; 16]), [7u8; 8]);
        let mut peer = entry_doc(&[good]);
        docs.merge(month, &peer.save()).unwrap();

        // The same event with another digest, and a new one beside it.
        let mut bad = peer.fork();
        bad.put(ROOT, good.0.to_string(), ScalarValue::Bytes(vec![9; 8]))
            .unwrap();
        bad.put(
            ROOT,
            EventId([2; 16]).to_string(),
            ScalarValue::Bytes(vec![3; 8]),
        )
        .unwrap();
        vfs.failing.store(true, Ordering::SeqCst);
        let refused = docs.merge(month, &bad.save());
        assert!(matches!(refused, Err(DocError::Io { .. })), "{refused:?}");
        vfs.failing.store(false, Ordering::SeqCst);

        let expected = vec![Entry {
            id: good.0,
            digest: good.1,
        }];
        assert_eq!(docs.entries(month).unwrap(), expected);
        // A good change is taken and saved; the refused one never reaches the disk.
        let third = (EventId([3; 16]), [4u8; 8]);
        peer.put(
            ROOT,
            third.0.to_string(),
            ScalarValue::Bytes(third.1.to_vec()),
        )
        .unwrap();
        docs.merge(month, &peer.save()).unwrap();
        let again = MonthDocs::new(vfs, Path::new("/months"), 1 << 20);
        let mut want = vec![
            Entry {
                id: good.0,
                digest: good.1,
            },
            Entry {
                id: third.0,
                digest: third.1,
            },
        ];
        want.sort_unstable_by_key(|e| e.id);
        assert_eq!(again.entries(month).unwrap(), want);
        assert_eq!(docs.entries(month).unwrap(), want);
    }
}
