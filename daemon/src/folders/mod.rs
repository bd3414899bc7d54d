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
//! collected, and counted in the status. Results are written to a temporary name, synced, and
//! linked into place, so the receipt computer never reads half a file, nor one a power cut
//! can take back. The temporary file is a spare made ready ahead when there is one
//! (`spares.rs`), which makes the result's sync about half as long.
//!
//! `req` is watched (inotify) where its file system sends events, so a request is picked up
//! as it is renamed in, and looked into every `poll_ms` besides: the terminal's folders are
//! often a network share, where change notifications do not arrive.

mod disk;
pub mod files;
mod spares;
pub mod xml;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinSet;

use disk::{Candidate, Delivered, Digest, Done, JournalEntry, LookIn, Paths, Tracker};
use spares::Spares;

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
/// How often a capture that failed is tried again.
const RECORD_RETRY: Duration = Duration::from_secs(1);
/// How often a watch of `req` is tried again when there is none.
const WATCH_RETRY: Duration = Duration::from_secs(1);
/// How long one piece of disk work may take before the folders count as not answering.
const DISK_TIMEOUT: Duration = Duration::from_secs(10);
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

/// A captured request, as the loop keeps it.
#[derive(Debug)]
struct Pending {
    entry: JournalEntry,
    request: FolderRequest,
    digest: Digest,
    /// The capture is durable (until then its request file stays in `req`).
    recorded: bool,
    last_try: Option<Instant>,
}

/// What one job ended with.
#[derive(Debug)]
enum Outcome {
    /// A result was written.
    Answered { refused: bool },
    /// The request was captured for 事後確認 (durably, or not yet).
    Captured(Box<Pending>),
    /// The result of a captured request was written.
    PendingAnswered { refused: bool },
    /// A result is ready but could not be written: kept and written at a later look, never
    /// asked again.
    Unwritten(Box<Unwritten>),
    /// Nothing done (a result of this id is still there, the line did not answer, or the
    /// disk did not): tried again at a later look.
    Later,
}

/// A result waiting to be written.
#[derive(Debug)]
struct Unwritten {
    bytes: Vec<u8>,
    digest: Digest,
    refused: bool,
    /// For a captured request (its journal entry goes), else its request file goes.
    captured: bool,
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
    let mut watch: Option<Watch> = None;
    let mut next_watch = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => me.look().await,
            _ = tokio::time::sleep_until(next_watch.into()), if watch.is_none() => {
                next_watch = Instant::now() + WATCH_RETRY;
                watch = watch_requests(&me.paths).await;
                if watch.is_some() {
                    // Requests renamed in before the watch began.
                    me.look().await;
                }
            }
            event = next_event(&mut watch) => match event {
                Some(Ok(e)) if !e.mask.contains(inotify::EventMask::IGNORED) => me.look().await,
                // The folder went (an unmounted share) or the watch failed: the looks every
                // poll_ms go on, and the watch is made again when the folder is back.
                _ => watch = None,
            },
            o = observed.recv() => match o {
                Ok(o) => me.on_answer(&o),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "folder interface missed answers; captured requests are asked again, card checks missed get no face file");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            Some(done) = me.jobs.join_next_with_id(), if !me.jobs.is_empty() => me.finished(done),
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
    }
    // Requests being answered finish (their results are written) before the store goes.
    while let Some(done) = me.jobs.join_next_with_id().await {
        me.finished(done);
    }
    me.publish();
    let spares = me.spares.clone();
    blocking(move || spares.close()).await;
}

/// A face file's name and bytes.
type FaceFile = (String, Vec<u8>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Events of the `req` folder (inotify).
type Watch = inotify::EventStream<[u8; 4096]>;

/// Watches `req` for requests renamed in or written, when the folder is there and its file
/// system sends events (a local disk does; many network shares do not, and are looked into
/// every poll_ms either way).
async fn watch_requests(paths: &Arc<Paths>) -> Option<Watch> {
    let req = paths.dir("req");
    let made = blocking(move || {
        if !req.is_dir() {
            return None;
        }
        let inotify = inotify::Inotify::init().ok()?;
        inotify
            .watches()
            .add(
                &req,
                inotify::WatchMask::MOVED_TO
                    | inotify::WatchMask::CLOSE_WRITE
                    | inotify::WatchMask::ONLYDIR,
            )
            .ok()?;
        Some(inotify)
    })
    .await
    .flatten()?;
    made.into_event_stream([0u8; 4096]).ok()
}

async fn next_event(
    watch: &mut Option<Watch>,
) -> Option<std::io::Result<inotify::Event<std::ffi::OsString>>> {
    use tokio_stream::StreamExt as _;
    match watch {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// Runs blocking disk work off the async workers, bounded: a share that hangs costs a
/// blocking thread, never the daemon.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::time::timeout(DISK_TIMEOUT, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "folder disk task failed");
            None
        }
        Err(_) => None,
    }
}

/// Disk work of a request's job, off the async workers. It is waited for to the end, however
/// long a hung share makes it take (said in the log after [`DISK_TIMEOUT`]): the request stays
/// busy meanwhile, so no second write of its result starts beside the first. `None` if the
/// work panicked.
async fn in_job<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    in_job_warned_after(DISK_TIMEOUT, f).await
}

async fn in_job_warned_after<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let mut task = tokio::task::spawn_blocking(f);
    let done = match tokio::time::timeout(limit, &mut task).await {
        Ok(done) => done,
        Err(_) => {
            tracing::warn!("folder disk work outlives its time limit (a share that hangs?); its request waits for it");
            task.await
        }
    };
    done.map_err(|e| tracing::error!(error = %e, "folder disk task failed"))
        .ok()
}

struct Folders {
    daemon: Daemon,
    config: FoldersSection,
    paths: Arc<Paths>,
    poll: Duration,
    /// Captured requests by request id.
    pending: HashMap<String, Pending>,
    /// Results that could not be written yet, by request id.
    unwritten: HashMap<String, Unwritten>,
    jobs: JoinSet<(String, Outcome)>,
    /// Which job works on which request: the requests busy now (a job that panics frees
    /// its request).
    job_ids: HashMap<tokio::task::Id, String>,
    /// Face files to write, shared with the look on the blocking pool: one that outlives its
    /// time limit (a hung share) still puts back what it could not write.
    faces: Arc<Mutex<Vec<FaceFile>>>,
    status: FolderStatus,
    tracker: Arc<Mutex<Tracker>>,
    /// A look is running on the blocking pool (one that hangs is not stacked on).
    looking: Arc<AtomicBool>,
    /// The journal of captured requests was read (a share that hung at the start is read
    /// again at the next look).
    journal_read: bool,
    last_census: Option<Instant>,
    /// Result files made ready ahead in `res`.
    spares: Spares,
}

impl Folders {
    fn new(daemon: Daemon, config: FoldersSection, root: PathBuf) -> Self {
        let paths = Arc::new(Paths {
            root: root.clone(),
            state: daemon.config().data_dir.join("folders"),
        });
        Self {
            poll: Duration::from_millis(config.poll_ms.max(10)),
            status: FolderStatus {
                root,
                ..FolderStatus::default()
            },
            daemon,
            config,
            paths,
            pending: HashMap::new(),
            unwritten: HashMap::new(),
            jobs: JoinSet::new(),
            job_ids: HashMap::new(),
            faces: Arc::default(),
            tracker: Arc::default(),
            looking: Arc::default(),
            journal_read: false,
            last_census: None,
            spares: Spares::default(),
        }
    }

    /// Reads the journal of captured requests; their captures are made durable at the looks
    /// (a crash may have come between a journal entry and its capture).
    async fn load_pending(&mut self) {
        let paths = self.paths.clone();
        let Some(loaded) = blocking(move || disk::load_journal(&paths)).await else {
            tracing::error!(
                "folder journal unreadable; captured requests are not answered until it is"
            );
            return;
        };
        self.journal_read = true;
        for (entry, request, digest) in loaded {
            // One captured since (the journal was read late) is already known.
            self.pending.entry(entry.id.clone()).or_insert(Pending {
                entry,
                request,
                digest,
                recorded: false,
                last_try: None,
            });
        }
    }

    /// One look at the folders.
    async fn look(&mut self) {
        if !self.journal_read {
            self.load_pending().await;
        }
        if self.looking.swap(true, Ordering::AcqRel) {
            self.status.problem = Some(format!(
                "フォルダ {} が応答しません。共有フォルダの接続を確認してください。",
                self.paths.root.display()
            ));
            self.publish();
            return;
        }
        let census = self
            .last_census
            .is_none_or(|t| t.elapsed() >= CENSUS_EVERY)
            .then(|| Duration::from_secs(self.config.uncollected_secs));
        if census.is_some() {
            self.last_census = Some(Instant::now());
        }
        let busy = self
            .job_ids
            .values()
            .chain(self.unwritten.keys())
            .cloned()
            .collect();
        let input = LookIn {
            busy,
            pending: self
                .pending
                .iter()
                .map(|(id, p)| (id.clone(), (p.digest, p.recorded)))
                .collect(),
            slots: CONCURRENT.saturating_sub(self.jobs.len()),
            faces: std::mem::take(&mut *lock(&self.faces)),
            census,
        };
        let (paths, tracker, looking, faces) = (
            self.paths.clone(),
            self.tracker.clone(),
            self.looking.clone(),
            self.faces.clone(),
        );
        let out = tokio::time::timeout(
            DISK_TIMEOUT,
            tokio::task::spawn_blocking(move || {
                let mut out = {
                    let mut t = lock(&tracker);
                    disk::look(&paths, input, &mut t)
                };
                // Ahead of any queued meanwhile, in the order they were answered.
                let mut queue = lock(&faces);
                let left = std::mem::take(&mut out.faces_left);
                queue.splice(0..0, left);
                drop(queue);
                looking.store(false, Ordering::Release);
                out
            }),
        )
        .await;
        let out = match out {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "folder look failed");
                self.looking.store(false, Ordering::Release);
                return;
            }
            Err(_) => {
                // Still running (the share hangs): the next looks wait for it to come back.
                return;
            }
        };
        self.status.problem = out.problem;
        self.status.held = out.held;
        self.status.faces += out.faces_written;
        if let Some(n) = out.uncollected {
            self.status.uncollected = n;
        }
        // Spares are made when no request is being answered (below, or as a job ends): a
        // file system sync beside a result's would slow it.
        let idle = out.candidates.is_empty() && self.jobs.is_empty();
        for c in out.candidates {
            self.start(c);
        }
        self.retry_unwritten();
        self.retry_pending().await;
        self.publish();
        if idle {
            self.fill_spares();
        }
    }

    /// The writing of request `id`'s result, to run in a job.
    fn delivery(&self, id: &str, digest: Digest, captured: bool) -> Delivery {
        Delivery {
            paths: self.paths.clone(),
            spares: self.spares.clone(),
            id: id.to_string(),
            digest,
            captured,
        }
    }

    /// Makes spare result files when the folders are fine.
    fn fill_spares(&self) {
        if self.status.problem.is_none() {
            self.spares.fill(self.paths.dir("res"));
        }
    }

    /// Whether a job works on this request now.
    fn is_busy(&self, id: &str) -> bool {
        self.job_ids.values().any(|j| j == id)
    }

    fn publish(&mut self) {
        self.status.waiting = self.pending.len();
        self.daemon.set_folder_status(self.status.clone());
    }

    fn spawn(
        &mut self,
        id: String,
        job: impl std::future::Future<Output = Outcome> + Send + 'static,
    ) {
        let key = id.clone();
        let handle = self.jobs.spawn(async move { (key, job.await) });
        self.job_ids.insert(handle.id(), id);
    }

    /// Starts a job answering a request read whole (or answering why it cannot be).
    fn start(&mut self, c: Candidate) {
        let job = Job {
            daemon: self.daemon.clone(),
            paths: self.paths.clone(),
            spares: self.spares.clone(),
            encoding: self.config.encoding,
        };
        self.spawn(c.id.clone(), job.run(c));
    }

    fn finished(
        &mut self,
        done: Result<(tokio::task::Id, (String, Outcome)), tokio::task::JoinError>,
    ) {
        let (task, (id, outcome)) = match done {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "folder request job failed");
                self.job_ids.remove(&e.id());
                return;
            }
        };
        self.job_ids.remove(&task);
        if self.jobs.is_empty() {
            self.fill_spares();
        }
        match outcome {
            Outcome::Answered { refused } => self.count(refused),
            Outcome::PendingAnswered { refused } => {
                self.count(refused);
                self.pending.remove(&id);
                tracing::info!(request = %id, "captured folder request answered");
            }
            Outcome::Captured(p) => {
                self.pending.insert(id, *p);
            }
            Outcome::Unwritten(u) => {
                self.unwritten.insert(id, *u);
            }
            Outcome::Later => {}
        }
    }

    fn count(&mut self, refused: bool) {
        self.status.answered += 1;
        if refused {
            self.status.refused += 1;
        }
    }

    /// Results that could not be written are written now (never asked again).
    fn retry_unwritten(&mut self) {
        let ids: Vec<String> = self
            .unwritten
            .keys()
            .filter(|id| !self.is_busy(id))
            .cloned()
            .collect();
        for id in ids {
            let Some(u) = self.unwritten.remove(&id) else {
                continue;
            };
            let delivery = self.delivery(&id, u.digest, u.captured);
            self.spawn(id, async move {
                match delivery.run(u.bytes.clone()).await {
                    Some(Ok(Delivered::Written)) if u.captured => {
                        Outcome::PendingAnswered { refused: u.refused }
                    }
                    Some(Ok(Delivered::Written)) => Outcome::Answered { refused: u.refused },
                    _ => Outcome::Unwritten(Box::new(u)),
                }
            });
        }
    }

    /// An answer read by any part of the daemon: a card check's is queued for `face`; the
    /// answer 事後確認 got for a captured request is written to `res`.
    fn on_answer(&mut self, o: &Observed) {
        if o.by_card {
            if self.config.face {
                self.queue_face(o);
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
        // A result already made for it waits to be written: never a second one.
        if self.is_busy(&id) || self.unwritten.contains_key(&id) {
            return;
        }
        self.answer_pending(id, Ok(o.answer.clone()));
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
        let mut faces = lock(&self.faces);
        if faces.len() >= FACE_BACKLOG {
            tracing::error!("face folder unwritable for long; the oldest face file is dropped");
            faces.remove(0);
        }
        faces.push((name, bytes));
    }

    /// Writes the result of a captured request (an answer, or the system's refusal) in a job.
    fn answer_pending(&mut self, id: String, answer: Result<Answer, QueryError>) {
        let Some(p) = self.pending.get(&id) else {
            return;
        };
        let refused = answer.is_err();
        let bytes = result_bytes(
            &self.daemon,
            &p.request,
            self.config.encoding,
            answer.as_ref(),
        );
        let d = p.digest;
        let delivery = self.delivery(&id, d, true);
        self.spawn(id, async move {
            match delivery.run(bytes.clone()).await {
                Some(Ok(Delivered::Written)) => Outcome::PendingAnswered { refused },
                // A result of this id is still there (not collected): written once it goes.
                Some(Ok(Delivered::Occupied)) | Some(Err(_)) | None => {
                    Outcome::Unwritten(Box::new(Unwritten {
                        bytes,
                        digest: d,
                        refused,
                        captured: true,
                    }))
                }
            }
        });
    }

    /// Makes captures durable that are not yet (a failed capture, or a crash after the journal
    /// entry), and asks about captured requests whose check was answered or decided without
    /// this interface seeing the answer (it missed it, or the daemon restarted), once the
    /// line is up. Each runs as a job.
    async fn retry_pending(&mut self) {
        let ids: Vec<String> = self
            .pending
            .keys()
            .filter(|id| !self.is_busy(id) && !self.unwritten.contains_key(*id))
            .cloned()
            .collect();
        let online = self.daemon.line() != LineState::Offline;
        for id in ids {
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            if !p.recorded {
                // A capture that failed (a full disk) is tried again, at most once a second.
                if p.last_try.is_some_and(|t| t.elapsed() < RECORD_RETRY) {
                    continue;
                }
                let (daemon, paths) = (self.daemon.clone(), self.paths.clone());
                let (entry, request, digest) = (p.entry.clone(), p.request.clone(), p.digest);
                self.spawn(id, async move {
                    record(&daemon, &paths, entry, request, digest).await
                });
                continue;
            }
            if !online || p.last_try.is_some_and(|t| t.elapsed() < PENDING_RETRY) {
                continue;
            }
            p.last_try = Some(Instant::now());
            let ledger = self.daemon.ledger().clone();
            let check_id = p.entry.check_id.clone();
            let state = tokio::task::spawn_blocking(move || ledger.check(&check_id))
                .await
                .ok()
                .and_then(Result::ok);
            // 事後確認 asked (and this interface missed the answer), decided, or gave up on
            // an answer it cannot use: the interface asks for the result itself.
            let asked = state.as_ref().is_some_and(|c| {
                c.answers
                    .iter()
                    .any(|a| a.via == crate::ledger::event::Via::Insurance)
                    || c.resolution.is_some()
                    || c.gave_up()
            });
            if !asked {
                continue;
            }
            let client = self.daemon.client().background();
            let query = query_of(&p.request, &format!("tsunagi-folder-{id}"));
            let d = p.digest;
            let (daemon, encoding, request) =
                (self.daemon.clone(), self.config.encoding, p.request.clone());
            let delivery = self.delivery(&id, d, true);
            self.spawn(id, async move {
                let answer = match client.query_by_insurance(&query).await {
                    Ok(a) => Ok(a),
                    Err(e) if e.is_transient() => return Outcome::Later,
                    Err(e) => Err(e),
                };
                let refused = answer.is_err();
                let bytes = result_bytes(&daemon, &request, encoding, answer.as_ref());
                match delivery.run(bytes.clone()).await {
                    Some(Ok(Delivered::Written)) => Outcome::PendingAnswered { refused },
                    _ => Outcome::Unwritten(Box::new(Unwritten {
                        bytes,
                        digest: d,
                        refused,
                        captured: true,
                    })),
                }
            });
        }
    }
}

/// Makes a captured request's capture durable, then removes its file.
async fn record(
    daemon: &Daemon,
    paths: &Arc<Paths>,
    entry: JournalEntry,
    request: FolderRequest,
    digest: Digest,
) -> Outcome {
    let query = query_of(&request, "");
    let recorded = match daemon
        .capture_by_numbers(&entry.check_id, &query, &entry.reason)
        .await
    {
        Ok(()) => true,
        Err(e) => {
            // The journal names it: a later look records it under the same check id.
            tracing::error!(request = %entry.id, error = %e, "folder request not captured yet");
            false
        }
    };
    if recorded {
        let (paths, id) = (paths.clone(), entry.id.clone());
        match in_job(move || disk::remove_request_if(&paths, &id, &digest)).await {
            Some(Ok(())) => {}
            _ => tracing::warn!(request = %entry.id, "captured request's file not removed yet"),
        }
    }
    Outcome::Captured(Box::new(Pending {
        entry,
        request,
        digest,
        recorded,
        // A failed capture waits a moment before it is tried again.
        last_try: (!recorded).then(Instant::now),
    }))
}

/// A result to write into `res` ([`disk::deliver`]), into a spare when one is ready.
struct Delivery {
    paths: Arc<Paths>,
    spares: Spares,
    id: String,
    /// The request's digest.
    digest: Digest,
    /// For a captured request (its journal entry goes), else its request file goes.
    captured: bool,
}

impl Delivery {
    /// Writes `bytes` on the blocking pool; `None` if that work failed.
    async fn run(self, bytes: Vec<u8>) -> Option<std::io::Result<Delivered>> {
        in_job(move || {
            let done = if self.captured {
                Done::Journal(&self.digest)
            } else {
                Done::Request(&self.digest)
            };
            let paths = &self.paths;
            self.spares
                .with(|spare| disk::deliver(paths, &self.id, &bytes, done, spare))
        })
        .await
    }
}

/// One request's answer, in its own task.
struct Job {
    daemon: Daemon,
    paths: Arc<Paths>,
    spares: Spares,
    encoding: Encoding,
}

impl Job {
    async fn run(self, c: Candidate) -> Outcome {
        let institution = &self.daemon.config().institution_code;
        let request = match c.parsed {
            Ok(r) if r.institution_code != *institution => Err(RequestError::OtherInstitution),
            other => other,
        };
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                // The code only: a field's message may hold the patient's data.
                tracing::warn!(request = %c.id, code = e.code(), "unreadable folder request refused");
                let header = ResultHeader {
                    processed: now_jst().naive_local(),
                    visit_date: None,
                    institution_code: institution,
                    file_id: None,
                    reference: Reference::Insurance,
                    error: Some((e.code(), e.message_ja())),
                    encoding: self.encoding,
                };
                let bytes = xml::result_file(&header, None, None);
                return self.deliver(&c.id, bytes, c.digest, true).await;
            }
        };
        let file_id = request
            .file_id
            .clone()
            .unwrap_or_else(|| format!("tsunagi-folder-{}", c.id));
        let reason = match self
            .daemon
            .ask_by_numbers(&query_of(&request, &file_id))
            .await
        {
            Ok(answer) => {
                let bytes = result_bytes(&self.daemon, &request, self.encoding, Ok(&answer));
                return self.deliver(&c.id, bytes, c.digest, false).await;
            }
            Err(e) if e.is_transient() => {
                tracing::info!(request = %c.id, error = e.kind(), "qualification system unreachable; request captured");
                e.kind()
            }
            Err(e) => {
                // The system refused this request, or its answer is unusable: asking again
                // will not help; the receipt computer is told why.
                let bytes = result_bytes(&self.daemon, &request, self.encoding, Err(&e));
                return self.deliver(&c.id, bytes, c.digest, true).await;
            }
        };
        // Journal entry, then the capture, then the request file goes: a crash anywhere
        // leaves the request answerable.
        let entry = JournalEntry {
            id: c.id.clone(),
            check_id: crate::ledger::new_check_id(),
            request: base64::engine::general_purpose::STANDARD.encode(&c.raw),
            reason: reason.to_string(),
        };
        let (paths, e) = (self.paths.clone(), entry.clone());
        match in_job(move || disk::journal(&paths, &e)).await {
            Some(Ok(())) => {}
            _ => {
                tracing::error!(request = %c.id, "folder journal not written; the request is tried again");
                return Outcome::Later;
            }
        }
        record(&self.daemon, &self.paths, entry, request, c.digest).await
    }

    async fn deliver(&self, id: &str, bytes: Vec<u8>, digest: Digest, refused: bool) -> Outcome {
        let delivery = Delivery {
            paths: self.paths.clone(),
            spares: self.spares.clone(),
            id: id.to_string(),
            digest,
            captured: false,
        };
        match delivery.run(bytes.clone()).await {
            Some(Ok(Delivered::Written)) => Outcome::Answered { refused },
            // A result of this id appeared meanwhile: the request waits for it to be collected.
            Some(Ok(Delivered::Occupied)) => Outcome::Later,
            _ => {
                tracing::warn!(request = %id, "result file not written yet; kept and written later");
                Outcome::Unwritten(Box::new(Unwritten {
                    bytes,
                    digest,
                    refused,
                    captured: false,
                }))
            }
        }
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A job's disk work that outlives its limit is still waited for: its request stays busy,
    /// so no second write of its result starts beside it.
    #[tokio::test]
    async fn a_jobs_slow_disk_work_is_waited_for_to_the_end() {
        let slow = || {
            std::thread::sleep(Duration::from_millis(300));
            7
        };
        let limit = Duration::from_millis(20);
        assert_eq!(in_job_warned_after(limit, slow).await, Some(7));
    }

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
