//! The folder interface's disk work, all of it blocking: run on the blocking pool, never on
//! the async workers, because the folders are often a network share that can hang.
//!
//! Two small records in the data directory keep the promises across a crash:
//! - `folders/pending/<id>.json`: a request captured while offline (its bytes, its check id,
//!   whether the capture is durable). Written before the capture; the request file is removed
//!   only once the capture is durable.
//! - `folders/answered/<id>.json`: the digest of a request whose result was just linked into
//!   `res`, kept until the request file (or the journal entry) is gone. A request file found
//!   with that digest is removed, never asked again, so a failed removal or a crash of the
//!   process after the result never makes a second result (a power cut in the moment between
//!   the two can: the note is not synced).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::files;
use super::xml::{self, FolderRequest, RequestError};
use super::{request_id, result_name, FACE_PREFIX, RESULT_PREFIX, SETTLE};

/// Where everything is.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The configured root.
    pub root: PathBuf,
    /// `<data_dir>/folders`.
    pub state: PathBuf,
}

impl Paths {
    /// `<root>/<name>`.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn journal(&self) -> PathBuf {
        self.state.join("pending")
    }

    fn markers(&self) -> PathBuf {
        self.state.join("answered")
    }

    /// Set once the three folders were made: from then on a missing folder is a problem to
    /// report (an unmounted share), never something to make again on the local disk.
    fn made(&self) -> PathBuf {
        self.state.join("folders-made")
    }

    fn journal_entry(&self, id: &str) -> PathBuf {
        self.journal().join(format!("{id}.json"))
    }

    fn marker(&self, id: &str) -> PathBuf {
        self.markers().join(format!("{id}.json"))
    }

    fn request(&self, id: &str) -> PathBuf {
        self.dir("req")
            .join(format!("{}{id}.xml", super::REQUEST_PREFIX))
    }
}

/// A request captured while offline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The request's id (from its file name).
    pub id: String,
    /// The check it was captured as.
    pub check_id: String,
    /// The request file's bytes, base64: read again to write the result.
    pub request: String,
    /// Why it was captured (the query error's kind).
    pub reason: String,
}

/// The SHA-256 of a request file's bytes.
pub type Digest = [u8; 32];

/// A request's digest.
pub fn digest(bytes: &[u8]) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    digest: String,
}

/// What a look needs from the async side.
#[derive(Debug)]
pub struct LookIn {
    /// Requests handled by a job now, or whose result waits to be written.
    pub busy: HashSet<String>,
    /// Captured requests: their digest, and whether the capture is durable.
    pub pending: HashMap<String, (Digest, bool)>,
    /// Requests that may be started now.
    pub slots: usize,
    /// Face files to write.
    pub faces: Vec<(String, Vec<u8>)>,
    /// Count result files not collected, older than this.
    pub census: Option<Duration>,
}

/// A request file read whole (or given up on).
#[derive(Debug)]
pub struct Candidate {
    /// Its id.
    pub id: String,
    /// Its bytes.
    pub raw: Vec<u8>,
    /// Its digest.
    pub digest: Digest,
    /// What it says, or why it cannot be answered.
    pub parsed: Result<FolderRequest, RequestError>,
}

/// What a look found.
#[derive(Debug, Default)]
pub struct LookOut {
    /// What is wrong with the folders now, for staff.
    pub problem: Option<String>,
    /// Requests to start.
    pub candidates: Vec<Candidate>,
    /// Requests left in `req` because their id's result or capture is still there.
    pub held: usize,
    /// Face files not written (the folder failed); written at the next look.
    pub faces_left: Vec<(String, Vec<u8>)>,
    /// Face files written.
    pub faces_written: u64,
    /// Result and face files not collected, when counted.
    pub uncollected: Option<usize>,
}

/// What the look remembers between looks: requests that do not read whole, by id, with their
/// size and time as last seen and since when (this process's clock, never the file server's),
/// names it ignores (logged once), and when temporary files left by a crash were last swept.
#[derive(Debug, Default)]
pub struct Tracker {
    unsettled: HashMap<String, (u64, Option<SystemTime>, Instant)>,
    ignored: HashSet<String>,
    swept: Option<Instant>,
}

/// One look at the folders.
pub fn look(paths: &Paths, mut input: LookIn, tracker: &mut Tracker) -> LookOut {
    let mut out = LookOut::default();
    if let Some(problem) = folders_ready(paths) {
        out.problem = Some(problem);
        out.faces_left = input.faces;
        return out;
    }
    // Face files first: they are answers already given.
    let face = paths.dir("face");
    let mut faces = std::mem::take(&mut input.faces).into_iter();
    for (name, bytes) in faces.by_ref() {
        match files::write_new(&face, &name, &bytes) {
            Ok(true) => out.faces_written += 1,
            Ok(false) => {
                tracing::warn!(file = %name, "a face file of this name exists; left as it is")
            }
            Err(e) => {
                out.problem = Some(format!(
                    "カード読取結果をフォルダ {} に書けません（{}）。書けるようになりしだい書きます。",
                    face.display(),
                    crate::domain::io_error_ja(&e)
                ));
                out.faces_left.push((name, bytes));
                break;
            }
        }
    }
    out.faces_left.extend(faces);
    scan(paths, &input, tracker, &mut out);
    if let Some(age) = input.census {
        out.uncollected = Some(uncollected(paths, age));
    }
    // At the first look, and then as often as a leftover can turn old enough: a daemon
    // restarted at once after a crash finds its predecessor's files still young.
    if tracker.swept.is_none_or(|t| t.elapsed() >= LEFTOVER_AGE) {
        tracker.swept = Some(Instant::now());
        sweep_leftovers(paths);
    }
    out
}

/// The problem with the folders, if any; makes them once, the first time the root is there.
fn folders_ready(paths: &Paths) -> Option<String> {
    if !paths.root.is_dir() {
        return Some(format!(
            "フォルダ {} が見つかりません。共有フォルダの接続と設定（[folders] root）を確認してください。",
            paths.root.display()
        ));
    }
    let made = paths.made().exists();
    for name in ["req", "res", "face"] {
        let d = paths.dir(name);
        if d.is_dir() {
            continue;
        }
        if made {
            // Made once already: gone now means an unmounted share or a folder removed by
            // hand. Making it again here would put the receipt computer's files on the local
            // disk, where it never looks.
            return Some(format!(
                "フォルダ {} がありません。共有フォルダが外れていないか確認してください。",
                d.display()
            ));
        }
        if let Err(e) = std::fs::create_dir_all(&d) {
            return Some(format!(
                "フォルダ {} を作れません（{}）。",
                d.display(),
                crate::domain::io_error_ja(&e)
            ));
        }
    }
    if !made {
        let _ = std::fs::create_dir_all(&paths.state)
            .and_then(|()| files::replace(&paths.made(), paths.root.to_string_lossy().as_bytes()));
    }
    None
}

fn scan(paths: &Paths, input: &LookIn, tracker: &mut Tracker, out: &mut LookOut) {
    let req = paths.dir("req");
    let entries = match std::fs::read_dir(&req) {
        Ok(e) => e,
        Err(e) => {
            out.problem = Some(format!(
                "フォルダ {} を読めません（{}）。",
                req.display(),
                crate::domain::io_error_ja(&e)
            ));
            return;
        }
    };
    let mut seen = HashSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = request_id(&name) else {
            continue;
        };
        seen.insert(id.clone());
        if input.busy.contains(&id) {
            continue;
        }
        let path = req.join(&name);
        // Only regular files: a directory, a FIFO or a link named like a request is ignored.
        let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
        if !regular {
            if tracker.ignored.insert(id.clone()) {
                tracing::warn!(file = %name, "not a regular file; ignored");
            }
            continue;
        }
        let bytes = match files::read_request(&path, xml::REQUEST_LIMIT) {
            Ok(Some(b)) => b,
            // Moved away by another program meanwhile.
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(file = %name, error = %e, "request file unreadable; tried again");
                continue;
            }
        };
        let (raw, parsed) = match bytes {
            Ok(b) => {
                let parsed = xml::parse_request(&b);
                (b, parsed)
            }
            Err(size) => (Vec::new(), Err(RequestError::TooLarge(size))),
        };
        let d = digest(&raw);
        // Answered before (its removal failed, or a crash came first): removed, not asked
        // again.
        if answered_digest(paths, &id) == Some(d) {
            if files::remove(&path).is_ok() {
                let _ = files::remove(&paths.marker(&id));
            }
            continue;
        }
        if let Some((pending, recorded)) = input.pending.get(&id) {
            if *pending == d {
                // Captured already; its file goes once the capture is durable.
                if *recorded {
                    let _ = files::remove(&path);
                }
                continue;
            }
        }
        // Another request of this id waits for its answer, or its result was not collected:
        // never overwritten, so this one waits.
        if input.pending.contains_key(&id) || paths.dir("res").join(result_name(&id)).exists() {
            out.held += 1;
            continue;
        }
        // Perhaps still being written (cut anywhere): left alone until it reads whole, or
        // until its size and time have not changed for SETTLE by this process's clock.
        if parsed.is_err() {
            let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            let now = Instant::now();
            let size = raw.len() as u64;
            let since = match tracker.unsettled.get(&id) {
                Some((s, t, since)) if *s == size && *t == mtime => *since,
                _ => {
                    tracker.unsettled.insert(id.clone(), (size, mtime, now));
                    now
                }
            };
            if now.duration_since(since) < SETTLE {
                continue;
            }
        }
        tracker.unsettled.remove(&id);
        if out.candidates.len() < input.slots {
            out.candidates.push(Candidate {
                id,
                raw,
                digest: d,
                parsed,
            });
        }
    }
    tracker.unsettled.retain(|id, _| seen.contains(id));
    tracker.ignored.retain(|id| seen.contains(id));
}

fn answered_digest(paths: &Paths, id: &str) -> Option<Digest> {
    let bytes = std::fs::read(paths.marker(id)).ok()?;
    let m: Marker = serde_json::from_slice(&bytes).ok()?;
    hex::decode(m.digest).ok()?.try_into().ok()
}

fn uncollected(paths: &Paths, age: Duration) -> usize {
    let mut n = 0;
    for (dir, prefix) in [("res", RESULT_PREFIX), ("face", FACE_PREFIX)] {
        let Ok(entries) = std::fs::read_dir(paths.dir(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().starts_with(prefix) {
                continue;
            }
            // The file server's clock, but only against itself: its own age on its own
            // clock as we see it now is good enough for a count.
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|a| a >= age);
            if old {
                n += 1;
            }
        }
    }
    n
}

/// What a result's delivery did.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Linked into `res`, and the request (or its journal entry) is gone.
    Written,
    /// A result of this id is still there: nothing written.
    Occupied,
}

/// What to remove once a result is in place.
#[derive(Debug, Clone, Copy)]
pub enum Done<'a> {
    /// The request file, if it still holds these bytes.
    Request(&'a Digest),
    /// The journal entry of a captured request.
    Journal(&'a Digest),
}

/// Writes a result into `res` (whole, never over another), then notes it answered, then removes
/// what it answered, then the note. A crash or failed removal after the note leaves it, so the
/// request is removed at a later look, never asked again; a crash in the moment between the
/// result and the note can cost a second result, never a lost one.
pub fn deliver(
    paths: &Paths,
    id: &str,
    bytes: &[u8],
    done: Done<'_>,
    spare: &mut Option<files::Prepared>,
) -> std::io::Result<Delivered> {
    if !files::write_new_into(&paths.dir("res"), &result_name(id), bytes, spare)? {
        return Ok(Delivered::Occupied);
    }
    let d = match done {
        Done::Request(d) | Done::Journal(d) => d,
    };
    let marker = serde_json::to_vec(&Marker {
        digest: hex::encode(d),
    })
    .map_err(std::io::Error::other)?;
    std::fs::create_dir_all(paths.markers())?;
    // Not synced: the note must outlive a crash of this process (the page cache does), and
    // covers only the moment between the result and the request's removal; a power cut in
    // that moment can cost a second result, never a lost one, and syncing it would double the
    // time a receipt computer waits.
    std::fs::write(paths.marker(id), &marker)?;
    match done {
        Done::Request(d) => remove_request_if(paths, id, d)?,
        Done::Journal(_) => files::remove(&paths.journal_entry(id))?,
    }
    files::remove(&paths.marker(id))?;
    Ok(Delivered::Written)
}

/// Removes the request file of `id` if it still holds the bytes of `digest`: one renamed in
/// over it since is a new request, left for the next look.
pub fn remove_request_if(paths: &Paths, id: &str, d: &Digest) -> std::io::Result<()> {
    let path = paths.request(id);
    match files::read_request(&path, xml::REQUEST_LIMIT)? {
        None => Ok(()),
        Some(Ok(now)) if digest(&now) != *d => Ok(()),
        Some(Err(_)) if digest(&[]) != *d => Ok(()),
        Some(_) => files::remove(&path),
    }
}

/// How old another process's temporary file in `res` or `face` must be to be taken for a
/// leftover of a crash (a younger one may be written now).
const LEFTOVER_AGE: Duration = Duration::from_secs(60);

/// Removes temporary files a crash left in `res` and `face`.
fn sweep_leftovers(paths: &Paths) {
    for dir in ["res", "face"] {
        let removed = files::sweep_leftovers(&paths.dir(dir), LEFTOVER_AGE);
        if removed > 0 {
            tracing::info!(
                folder = dir,
                removed,
                "temporary files left by an earlier run removed"
            );
        }
    }
}

/// Writes a journal entry (durable before the capture it names).
pub fn journal(paths: &Paths, entry: &JournalEntry) -> std::io::Result<()> {
    std::fs::create_dir_all(paths.journal())?;
    let bytes = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    files::replace(&paths.journal_entry(&entry.id), &bytes)
}

/// The journal's entries, with their requests read again; an entry whose result was already
/// delivered (a crash came before its removal) is removed; an unreadable one is set aside.
pub fn load_journal(paths: &Paths) -> Vec<(JournalEntry, FolderRequest, Digest)> {
    use base64::Engine as _;
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(paths.journal()) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let loaded = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<JournalEntry>(&b).ok())
            .and_then(|entry| {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(&entry.request)
                    .ok()?;
                let request = xml::parse_request(&raw).ok()?;
                Some((entry, request, digest(&raw)))
            });
        match loaded {
            Some((entry, request, d)) => {
                if answered_digest(paths, &entry.id) == Some(d) {
                    let _ = files::remove(&path);
                    let _ = files::remove(&paths.marker(&entry.id));
                    continue;
                }
                out.push((entry, request, d));
            }
            None => {
                tracing::error!(file = %path.display(), "unreadable folder journal entry set aside");
                let _ = std::fs::rename(&path, path.with_extension("unreadable"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn setup() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("oqs");
        std::fs::create_dir(&root).unwrap();
        let paths = Paths {
            root,
            state: dir.path().join("state"),
        };
        (dir, paths)
    }

    fn input() -> LookIn {
        LookIn {
            busy: HashSet::new(),
            pending: HashMap::new(),
            slots: 4,
            faces: Vec::new(),
            census: None,
        }
    }

    #[test]
    fn a_result_delivered_is_never_asked_again_even_when_its_request_could_not_be_removed() {
        let (_dir, paths) = setup();
        let mut tracker = Tracker::default();
        assert!(look(&paths, input(), &mut tracker).problem.is_none());
        let body = b"<XmlMsg></XmlMsg>".to_vec();
        let d = digest(&body);
        std::fs::write(paths.request("x"), &body).unwrap();
        let delivered = deliver(&paths, "x", b"result", Done::Request(&d), &mut None).unwrap();
        assert_eq!(delivered, Delivered::Written);
        assert!(!paths.request("x").exists(), "the request goes");
        assert!(!paths.marker("x").exists(), "and the note with it");
        // As if the removal had failed (or a crash came) after the result: the note is
        // there with the request. The request is removed, not asked again.
        std::fs::write(paths.request("x"), &body).unwrap();
        std::fs::write(
            paths.marker("x"),
            serde_json::to_vec(&Marker {
                digest: hex::encode(d),
            })
            .unwrap(),
        )
        .unwrap();
        std::fs::remove_file(paths.dir("res").join(result_name("x"))).unwrap();
        let out = look(&paths, input(), &mut tracker);
        assert!(out.candidates.is_empty(), "{:?}", out.candidates);
        assert!(!paths.request("x").exists());
        assert!(!paths.marker("x").exists());
        // A second result is never written over the first.
        assert_eq!(
            deliver(&paths, "y", b"one", Done::Request(&d), &mut None).unwrap(),
            Delivered::Written
        );
        assert_eq!(
            deliver(&paths, "y", b"two", Done::Request(&d), &mut None).unwrap(),
            Delivered::Occupied
        );
        assert_eq!(
            std::fs::read(paths.dir("res").join(result_name("y"))).unwrap(),
            b"one"
        );
    }

    #[test]
    fn a_request_renamed_in_over_the_one_answered_is_kept() {
        let (_dir, paths) = setup();
        let mut tracker = Tracker::default();
        look(&paths, input(), &mut tracker);
        let first = b"first".to_vec();
        std::fs::write(paths.request("z"), b"second").unwrap();
        deliver(
            &paths,
            "z",
            b"result",
            Done::Request(&digest(&first)),
            &mut None,
        )
        .unwrap();
        assert_eq!(std::fs::read(paths.request("z")).unwrap(), b"second");
    }

    #[test]
    fn folders_are_made_once_and_a_missing_one_is_reported_not_made_again() {
        let (_dir, paths) = setup();
        let mut tracker = Tracker::default();
        assert!(look(&paths, input(), &mut tracker).problem.is_none());
        assert!(paths.dir("req").is_dir());
        // An unmounted share: the mount point is there, empty.
        for name in ["req", "res", "face"] {
            std::fs::remove_dir(paths.dir(name)).unwrap();
        }
        let out = look(&paths, input(), &mut tracker);
        assert!(out.problem.is_some_and(|p| p.contains("共有フォルダ")));
        assert!(
            !paths.dir("req").exists(),
            "never made again on the local disk"
        );
    }

    #[test]
    fn what_is_not_a_plain_file_and_what_is_still_being_written_is_left_alone() {
        let (_dir, paths) = setup();
        let mut tracker = Tracker::default();
        look(&paths, input(), &mut tracker);
        std::fs::create_dir(paths.request("dir")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(paths.request("fifo"))
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::write(paths.request("half"), b"<XmlMsg><MessageHeader>").unwrap();
        let out = look(&paths, input(), &mut tracker);
        assert!(out.candidates.is_empty(), "{:?}", out.candidates);
        assert!(out.problem.is_none());
        // Unchanged for the settling time (this process's clock): then answered as cut.
        let back = Instant::now() - SETTLE - Duration::from_millis(1);
        for (_, (_, _, since)) in tracker.unsettled.iter_mut() {
            *since = back;
        }
        let out = look(&paths, input(), &mut tracker);
        assert_eq!(out.candidates.len(), 1);
        assert_eq!(out.candidates[0].id, "half");
        assert_eq!(out.candidates[0].parsed, Err(RequestError::Incomplete));
    }
}
