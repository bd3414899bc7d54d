//! The ministry terminal's folder interface (フォルダ連携): a receipt computer that reads and
//! writes files in `req`, `res` and `face` works with Tsunagi unchanged (`oqs-messages.md` §3).
//!
//! - Every answer to a card check (at reception, or later by 事後確認) is written to
//!   `face/OQSsiquc01res_face_<id>_<yyyyMMddHHmmss>.xml`.
//! - A request `req/OQSsiquc01req_<id>.xml` is asked at once and answered in
//!   `res/OQSsiquc01res_<id>.xml`. While the qualification system cannot be reached, the
//!   request is captured like any check (a journal entry first, then the capture, then the
//!   request file is removed) and answered when 事後確認 asks about it.
//! - A request that cannot be read gets a result with SegmentOfResult 9 saying why — once its
//!   file has not changed for [`SETTLE`]: until then it may be still being written, and is
//!   left alone.
//!
//! What holds across a crash: a request file is removed only after its result is written or
//! its capture is durable with a journal entry naming it (`<data_dir>/folders/pending`), so
//! every request is answered once it can be. A result file is never overwritten: a request
//! whose result of the same id still waits uncollected is left in `req` until that result is
//! collected, and counted in the status. Results are written to a temporary name and linked
//! into place, so the receipt computer never reads half a file.
//!
//! The folders are looked at every `poll_ms` rather than watched: the terminal's folders are
//! often a network share, where change notifications do not arrive.

pub mod files;
pub mod xml;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinSet;

use crate::check::health::LineState;
use crate::check::now_jst;
use crate::oqs::{Answer, InsuranceQuery, Observed, QueryError};
use crate::service::config::FoldersSection;
use crate::service::Daemon;
use xml::{Encoding, FolderRequest, Reference, RequestError, ResultHeader};

/// Request files (single 資格確認).
pub const REQUEST_PREFIX: &str = "OQSsiquc01req_";
/// Result files answering them.
pub const RESULT_PREFIX: &str = "OQSsiquc01res_";
/// Card-reader result files.
pub const FACE_PREFIX: &str = "OQSsiquc01res_face_";
/// A request that does not read whole is read again until its file has not changed for this
/// long; then it is answered with the error.
pub const SETTLE: Duration = Duration::from_secs(2);
/// How often the result folders are counted for files not collected.
const CENSUS_EVERY: Duration = Duration::from_secs(1);
/// Requests asked about at once.
const CONCURRENT: usize = 4;
/// Face files kept in memory while the folder cannot be written.
const FACE_BACKLOG: usize = 1000;
/// How often a captured request whose answer was not seen is asked about by the interface
/// itself.
const PENDING_RETRY: Duration = Duration::from_secs(30);

/// The interface's state for the status (フォルダ連携の状態).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderStatus {
    /// The configured root.
    pub root: PathBuf,
    /// What is wrong with the folders now, for staff.
    pub problem: Option<String>,
    /// Requests captured while offline, waiting for their answer.
    pub waiting: usize,
    /// Requests left in `req` because a result of the same id was not collected yet.
    pub held: usize,
    /// Result and face files not collected within `uncollected_secs`.
    pub uncollected: usize,
    /// Results written since start (answers and refusals).
    pub answered: u64,
    /// Of which refusals of unreadable requests.
    pub refused: u64,
    /// Face files written since start.
    pub faces: u64,
}

impl FolderStatus {
    /// The status for staff, a line each (`tsunagi status`).
    pub fn lines_ja(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "フォルダ連携（{}）: 結果ファイル {}件（読めない要求への応答 {}件を含む）、カード読取結果 {}件",
            self.root.display(),
            self.answered,
            self.refused,
            self.faces
        )];
        if self.waiting > 0 {
            lines.push(format!(
                "フォルダ連携: 回線の回復を待っている要求 {}件（事後確認で確認でき次第、結果ファイルを書きます）",
                self.waiting
            ));
        }
        if self.held > 0 {
            lines.push(format!(
                "フォルダ連携: 同じ番号の結果ファイルがまだ回収されていないため待たせている要求 {}件",
                self.held
            ));
        }
        if self.uncollected > 0 {
            lines.push(format!(
                "フォルダ連携: レセコンが回収していない結果ファイル {}件（res・face フォルダ。上書きはしません）",
                self.uncollected
            ));
        }
        if let Some(p) = &self.problem {
            lines.push(format!("フォルダ連携: {p}"));
        }
        lines
    }
}

/// A request captured while offline (`<data_dir>/folders/pending/<id>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingEntry {
    /// The request's id (from its file name).
    id: String,
    /// The check it was captured as.
    check_id: String,
    /// The request file's bytes, base64: re-read to write the result.
    request: String,
    /// Why it was captured (the query error's kind).
    reason: String,
}

#[derive(Debug)]
struct Pending {
    entry: PendingEntry,
    request: FolderRequest,
    digest: [u8; 32],
    last_try: Option<Instant>,
}

/// What one request's job ended with.
#[derive(Debug)]
enum Outcome {
    /// A result was written.
    Answered { refused: bool },
    /// Captured for 事後確認.
    Captured(Box<Pending>),
    /// Nothing done yet (a result of this id is still there, or writing failed): tried again.
    Later,
}

/// Runs the folder interface until `stop` turns true. Never fails: problems are logged and
/// shown in the status, and the next look tries again.
pub async fn run(daemon: Daemon, mut stop: tokio::sync::watch::Receiver<bool>) {
    let config = daemon.config().folders.clone();
    let Some(root) = config.root.clone() else {
        return;
    };
    let mut observed = daemon.client().observe();
    let mut me = Folders::new(daemon, config, root);
    me.load_pending().await;
    let mut tick = tokio::time::interval(me.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => me.look().await,
            o = observed.recv() => match o {
                Ok(o) => me.on_answer(&o).await,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "folder interface missed answers; captured requests are asked again");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            Some(done) = me.jobs.join_next(), if !me.jobs.is_empty() => me.finished(done),
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
    }
    // Requests being asked about finish (their results are written) before the store goes.
    while let Some(done) = me.jobs.join_next().await {
        me.finished(done);
    }
    me.publish();
}

struct Folders {
    daemon: Daemon,
    config: FoldersSection,
    root: PathBuf,
    poll: Duration,
    pending_dir: PathBuf,
    /// Captured requests by request id.
    pending: HashMap<String, Pending>,
    /// Request ids being handled by a job now.
    busy: HashSet<String>,
    jobs: JoinSet<(String, Outcome)>,
    faces: VecDeque<(String, Vec<u8>)>,
    status: FolderStatus,
    last_census: Option<Instant>,
    /// Request ids whose hold was already logged.
    held_logged: HashSet<String>,
}

impl Folders {
    fn new(daemon: Daemon, config: FoldersSection, root: PathBuf) -> Self {
        let pending_dir = daemon.config().data_dir.join("folders").join("pending");
        Self {
            poll: Duration::from_millis(config.poll_ms.max(10)),
            status: FolderStatus {
                root: root.clone(),
                ..FolderStatus::default()
            },
            daemon,
            config,
            root,
            pending_dir,
            pending: HashMap::new(),
            busy: HashSet::new(),
            jobs: JoinSet::new(),
            faces: VecDeque::new(),
            last_census: None,
            held_logged: HashSet::new(),
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Reads the journal of captured requests, and makes sure each one's capture is durable
    /// (a crash may have come between the journal entry and the capture).
    async fn load_pending(&mut self) {
        if let Err(e) = std::fs::create_dir_all(&self.pending_dir) {
            tracing::error!(dir = %self.pending_dir.display(), error = %e, "folder journal unusable");
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.pending_dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let loaded = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<PendingEntry>(&b).ok())
                .and_then(|entry| {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(&entry.request)
                        .ok()?;
                    let request = xml::parse_request(&bytes).ok()?;
                    Some(Pending {
                        digest: digest(&bytes),
                        entry,
                        request,
                        last_try: None,
                    })
                });
            match loaded {
                Some(p) => {
                    if let Err(e) = capture(&self.daemon, &p).await {
                        tracing::error!(error = %e, "captured request could not be recorded again; tried at the next look");
                    }
                    self.pending.insert(p.entry.id.clone(), p);
                }
                None => {
                    tracing::error!(file = %path.display(), "unreadable folder journal entry set aside");
                    let _ = std::fs::rename(&path, path.with_extension("unreadable"));
                }
            }
        }
    }

    /// One look at the folders.
    async fn look(&mut self) {
        let problem = self.check_folders();
        self.status.problem = problem.clone();
        if problem.is_none() {
            self.flush_faces();
            self.scan_requests();
            self.retry_pending().await;
            if self.last_census.is_none_or(|t| t.elapsed() >= CENSUS_EVERY) {
                self.last_census = Some(Instant::now());
                self.status.uncollected = self.uncollected();
            }
        }
        self.publish();
    }

    fn publish(&mut self) {
        self.status.waiting = self.pending.len();
        self.daemon.set_folder_status(self.status.clone());
    }

    /// Whether the three folders are there (made when the root is); the problem for staff if
    /// not.
    fn check_folders(&self) -> Option<String> {
        if !self.root.is_dir() {
            return Some(format!(
                "フォルダ {} が見つかりません。共有フォルダの接続と設定（[folders] root）を確認してください。",
                self.root.display()
            ));
        }
        for name in ["req", "res", "face"] {
            let d = self.dir(name);
            if let Err(e) = std::fs::create_dir_all(&d) {
                return Some(format!(
                    "フォルダ {} を作れません（{}）。",
                    d.display(),
                    crate::domain::io_error_ja(&e)
                ));
            }
        }
        None
    }

    fn flush_faces(&mut self) {
        let dir = self.dir("face");
        while let Some((name, bytes)) = self.faces.front() {
            match files::write_new(&dir, name, bytes) {
                Ok(written) => {
                    if written {
                        self.status.faces += 1;
                    } else {
                        tracing::warn!(file = %name, "a face file of this name exists; left as it is");
                    }
                    self.faces.pop_front();
                }
                Err(e) => {
                    self.status.problem = Some(format!(
                        "結果ファイルをフォルダ {} に書けません（{}）。書けるようになりしだい書きます。",
                        dir.display(),
                        crate::domain::io_error_ja(&e)
                    ));
                    return;
                }
            }
        }
    }

    /// Starts a job for each whole request file not being handled.
    fn scan_requests(&mut self) {
        let req = self.dir("req");
        let Ok(entries) = std::fs::read_dir(&req) else {
            return;
        };
        let mut held = 0;
        for e in entries.flatten() {
            if self.busy.len() >= CONCURRENT {
                break;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = request_id(&name) else {
                continue;
            };
            if self.busy.contains(&id) {
                continue;
            }
            let path = req.join(&name);
            let bytes = match files::read_limited(&path, xml::REQUEST_LIMIT) {
                Ok(Some(b)) => b,
                // Moved away by another program meanwhile.
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(file = %name, error = %e, "request file unreadable; tried again");
                    continue;
                }
            };
            let parsed = match &bytes {
                Ok(b) => xml::parse_request(b),
                Err(size) => Err(RequestError::TooLarge(*size)),
            };
            // Perhaps still being written (cut anywhere, even inside a tag or a character):
            // left alone until it reads whole, or until it stops changing.
            if parsed.is_err() && changed_within(&path, SETTLE) {
                continue;
            }
            // The same request captured before a crash removed its file: done, remove it.
            if let (Some(p), Ok(b)) = (self.pending.get(&id), &bytes) {
                if p.digest == digest(b) {
                    let _ = files::remove(&path);
                    continue;
                }
            }
            // Another request of this id still waits for its answer, or its result was not
            // collected: never overwritten, so this one waits.
            if self.pending.contains_key(&id) || self.dir("res").join(result_name(&id)).exists() {
                held += 1;
                if self.held_logged.insert(id.clone()) {
                    tracing::warn!(request = %id, "a result of this request id is not collected yet; the request waits");
                }
                continue;
            }
            self.held_logged.remove(&id);
            self.busy.insert(id.clone());
            let job = Job {
                daemon: self.daemon.clone(),
                res: self.dir("res"),
                pending_dir: self.pending_dir.clone(),
                encoding: self.config.encoding,
                path,
                id: id.clone(),
            };
            let raw = bytes.unwrap_or_default();
            self.jobs
                .spawn(async move { (id, job.run(raw, parsed).await) });
        }
        self.status.held = held;
    }

    fn finished(&mut self, done: Result<(String, Outcome), tokio::task::JoinError>) {
        let (id, outcome) = match done {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "folder request job failed");
                return;
            }
        };
        self.busy.remove(&id);
        match outcome {
            Outcome::Answered { refused } => {
                self.status.answered += 1;
                if refused {
                    self.status.refused += 1;
                }
            }
            Outcome::Captured(p) => {
                self.pending.insert(id, *p);
            }
            Outcome::Later => {}
        }
    }

    /// An answer read by any part of the daemon: a card check's is written to `face`; the
    /// answer 事後確認 got for a captured request is written to `res`.
    async fn on_answer(&mut self, o: &Observed) {
        if o.by_card {
            if self.config.face {
                self.queue_face(o);
                if self.check_folders().is_none() {
                    self.flush_faces();
                }
            }
            return;
        }
        let Some(check_id) = o
            .file_id
            .strip_prefix("tsunagi-")
            .and_then(|s| s.strip_suffix("-n"))
        else {
            return;
        };
        let Some(id) = self
            .pending
            .iter()
            .find(|(_, p)| p.entry.check_id == check_id)
            .map(|(id, _)| id.clone())
        else {
            return;
        };
        self.answer_pending(&id, &o.answer);
    }

    fn queue_face(&mut self, o: &Observed) {
        let now = now_jst().naive_local();
        let code = &self.daemon.config().institution_code;
        let header = ResultHeader {
            processed: now,
            visit_date: Some(o.visit_date),
            institution_code: code,
            file_id: Some(&o.file_id),
            reference: Reference::Card,
            error: None,
            encoding: self.config.encoding,
        };
        let bytes = xml::result_file(&header, None, Some(&o.answer));
        let name = format!(
            "{FACE_PREFIX}{code}{:016x}_{}.xml",
            rand::random::<u64>(),
            now.format("%Y%m%d%H%M%S")
        );
        if self.faces.len() >= FACE_BACKLOG {
            tracing::error!("face folder unwritable for long; the oldest face file is dropped");
            self.faces.pop_front();
        }
        self.faces.push_back((name, bytes));
    }

    /// Writes the result of a captured request and forgets it.
    fn answer_pending(&mut self, id: &str, answer: &Answer) {
        let Some(p) = self.pending.get(id) else {
            return;
        };
        let bytes = result_bytes(&self.daemon, &p.request, self.config.encoding, Ok(answer));
        match files::write_new(&self.dir("res"), &result_name(id), &bytes) {
            Ok(true) => {
                self.status.answered += 1;
                let _ = files::remove(&self.pending_dir.join(format!("{id}.json")));
                self.pending.remove(id);
                tracing::info!(request = %id, "captured folder request answered");
            }
            Ok(false) => {
                tracing::warn!(request = %id, "a result of this id is not collected yet; answered later");
            }
            Err(e) => {
                tracing::warn!(request = %id, error = %e, "result of a captured request not written; tried again");
            }
        }
    }

    /// Captured requests whose check was answered (or decided) without this interface seeing
    /// the answer — it missed it, or the daemon restarted — are asked about here, once the
    /// line is up.
    async fn retry_pending(&mut self) {
        if self.daemon.line() == LineState::Offline || self.pending.is_empty() {
            return;
        }
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.last_try.is_none_or(|t| t.elapsed() >= PENDING_RETRY))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            p.last_try = Some(Instant::now());
            let ledger = self.daemon.ledger().clone();
            let check_id = p.entry.check_id.clone();
            let state = tokio::task::spawn_blocking(move || ledger.check(&check_id))
                .await
                .ok()
                .and_then(Result::ok);
            let asked = state.as_ref().is_some_and(|c| {
                c.answers
                    .iter()
                    .any(|a| a.via == crate::ledger::event::Via::Insurance)
                    || c.resolution.is_some()
            });
            if !asked {
                // 事後確認 has not asked yet; it will, and its answer comes to `on_answer`.
                continue;
            }
            let query = query_of(&p.request, &format!("tsunagi-folder-{id}"));
            match self
                .daemon
                .client()
                .background()
                .query_by_insurance(&query)
                .await
            {
                Ok(answer) => self.answer_pending(&id, &answer),
                Err(e) => {
                    tracing::info!(request = %id, error = e.kind(), "captured request not answered yet")
                }
            }
        }
    }

    /// Result and face files older than `uncollected_secs`.
    fn uncollected(&self) -> usize {
        let mut n = 0;
        for (dir, prefix) in [("res", RESULT_PREFIX), ("face", FACE_PREFIX)] {
            let Ok(entries) = std::fs::read_dir(self.dir(dir)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                if !name.to_string_lossy().starts_with(prefix) {
                    continue;
                }
                if !changed_within(&e.path(), Duration::from_secs(self.config.uncollected_secs)) {
                    n += 1;
                }
            }
        }
        n
    }
}

/// One request's handling, in its own task.
struct Job {
    daemon: Daemon,
    res: PathBuf,
    pending_dir: PathBuf,
    encoding: Encoding,
    path: PathBuf,
    id: String,
}

impl Job {
    async fn run(self, raw: Vec<u8>, parsed: Result<FolderRequest, RequestError>) -> Outcome {
        let institution = &self.daemon.config().institution_code;
        let request = match parsed {
            Ok(r) if r.institution_code != *institution => Err(RequestError::OtherInstitution),
            other => other,
        };
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(request = %self.id, error = %e, "unreadable folder request refused");
                let header = ResultHeader {
                    processed: now_jst().naive_local(),
                    visit_date: None,
                    institution_code: institution,
                    file_id: None,
                    reference: Reference::Insurance,
                    error: Some((e.code(), e.message_ja())),
                    encoding: self.encoding,
                };
                return self.answer(&xml::result_file(&header, None, None), true);
            }
        };
        let file_id = request
            .file_id
            .clone()
            .unwrap_or_else(|| format!("tsunagi-folder-{}", self.id));
        let reason = match self
            .daemon
            .ask_by_numbers(&query_of(&request, &file_id))
            .await
        {
            Ok(answer) => {
                let bytes = result_bytes(&self.daemon, &request, self.encoding, Ok(&answer));
                return self.answer(&bytes, false);
            }
            Err(e) if e.is_transient() => {
                tracing::info!(request = %self.id, error = e.kind(), "qualification system unreachable; request captured");
                e.kind()
            }
            Err(e) => {
                // The system refused this request, or its answer is unusable: asking again
                // will not help; the receipt computer is told why.
                let bytes = result_bytes(&self.daemon, &request, self.encoding, Err(&e));
                return self.answer(&bytes, true);
            }
        };
        self.capture(raw, request, reason).await
    }

    fn answer(&self, bytes: &[u8], refused: bool) -> Outcome {
        match files::write_new(&self.res, &result_name(&self.id), bytes) {
            Ok(true) => {
                if let Err(e) = files::remove(&self.path) {
                    tracing::warn!(request = %self.id, error = %e, "answered request file could not be removed");
                }
                Outcome::Answered { refused }
            }
            Ok(false) => Outcome::Later,
            Err(e) => {
                tracing::warn!(request = %self.id, error = %e, "result file not written; tried again");
                Outcome::Later
            }
        }
    }

    /// Journal entry, then the capture, then the request file goes: a crash anywhere leaves
    /// the request answerable.
    async fn capture(self, raw: Vec<u8>, request: FolderRequest, reason: &str) -> Outcome {
        let entry = PendingEntry {
            id: self.id.clone(),
            check_id: crate::ledger::new_check_id(),
            request: base64::engine::general_purpose::STANDARD.encode(&raw),
            reason: reason.to_string(),
        };
        let journal = self.pending_dir.join(format!("{}.json", self.id));
        let written = serde_json::to_vec(&entry)
            .map_err(std::io::Error::other)
            .and_then(|b| files::replace(&journal, &b));
        if let Err(e) = written {
            tracing::error!(request = %self.id, error = %e, "folder journal not written; the request is tried again");
            return Outcome::Later;
        }
        let pending = Pending {
            digest: digest(&raw),
            entry,
            request,
            last_try: None,
        };
        if let Err(e) = capture(&self.daemon, &pending).await {
            // The journal names it: the next look finds the same request and records it
            // under the same check id.
            tracing::error!(request = %self.id, error = %e, "folder request not captured yet");
            return Outcome::Captured(Box::new(pending));
        }
        if let Err(e) = files::remove(&self.path) {
            tracing::warn!(request = %self.id, error = %e, "captured request file could not be removed");
        }
        Outcome::Captured(Box::new(pending))
    }
}

/// Records a captured request as a check to confirm by its numbers (idempotent: the same
/// check id records nothing twice).
async fn capture(daemon: &Daemon, p: &Pending) -> Result<(), crate::ledger::LedgerError> {
    let query = query_of(&p.request, "");
    daemon
        .capture_by_numbers(&p.entry.check_id, &query, &p.entry.reason)
        .await
}

fn query_of(r: &FolderRequest, file_id: &str) -> InsuranceQuery {
    InsuranceQuery {
        visit_date: r.visit_date,
        insurer: r.insurer.clone(),
        symbol: r.symbol.clone(),
        number: r.number.clone(),
        branch: r.branch.clone(),
        birth_date: r.birth_date,
        limit_consent: r.limit_consent,
        file_id: file_id.to_string(),
    }
}

/// The result file for a request: the answer, or the system's refusal as a message-level error.
fn result_bytes(
    daemon: &Daemon,
    r: &FolderRequest,
    encoding: Encoding,
    answer: Result<&Answer, &QueryError>,
) -> Vec<u8> {
    let refusal = answer.err().map(|e| match e {
        QueryError::Rejected { code, .. } => (code.clone(), e.message_ja()),
        other => (format!("TSUNAGI-{}", other.kind()), other.message_ja()),
    });
    let header = ResultHeader {
        processed: now_jst().naive_local(),
        visit_date: Some(r.visit_date),
        institution_code: &daemon.config().institution_code,
        file_id: r.file_id.as_deref(),
        reference: Reference::Insurance,
        error: refusal.as_ref().map(|(c, m)| (c.as_str(), m.clone())),
        encoding,
    };
    xml::result_file(&header, Some(&r.echo), answer.ok())
}

/// The id of a request file's name, if it is one: `OQSsiquc01req_<id>.xml` with an id of
/// letters, digits, `-` and `_` (never a path).
pub fn request_id(name: &str) -> Option<String> {
    let id = name.strip_prefix(REQUEST_PREFIX)?.strip_suffix(".xml")?;
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| id.to_string())
}

/// The result file's name for a request id.
pub fn result_name(id: &str) -> String {
    format!("{RESULT_PREFIX}{id}.xml")
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn changed_within(path: &Path, span: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(|t| {
            SystemTime::now()
                .duration_since(t)
                .map(|age| age < span)
                .unwrap_or(true)
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn only_request_names_with_a_plain_id_are_taken() {
        assert_eq!(
            request_id("OQSsiquc01req_202504150007.xml").as_deref(),
            Some("202504150007")
        );
        assert_eq!(
            request_id("OQSsiquc01req_a-b_c.xml").as_deref(),
            Some("a-b_c")
        );
        for name in [
            "OQSsiquc01req_.xml",
            "OQSsiquc01req_x.xml.tmp",
            ".OQSsiquc01req_x.xml",
            "OQSsiquc01req_../x.xml",
            "OQSsiquc01req_x y.xml",
            "OQSmuquc01req_x.xml",
        ] {
            assert_eq!(request_id(name), None, "{name}");
        }
    }
}
