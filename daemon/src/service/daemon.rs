//! The daemon's shared state (常駐サービスの状態): the one ledger, the qualification
//! system's client, the line's health, the status, the change stream. The API's handlers and
//! the maintenance loop hold a [`Daemon`]; every operation goes through it.
//!
//! What is serialised and what is not:
//! - the store serialises its own writes (one group commit) and is safe to read from any
//!   task, so reception checks, API reads and a reconcile pass run side by side;
//! - one check per card reader at a time (a reader is a physical slot);
//! - one reconcile pass at a time (`pass_lock`), whether the timer or "reconcile now" asked;
//! - no lock is held across a query to the qualification system: a pass holds only
//!   `pass_lock`, which reception never takes, and the client puts reception queries ahead
//!   of the pass's (its background lane).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::broadcast;

use super::config::ServiceConfig;
use super::{pass, Status};
use crate::card::reader::Readers;
use crate::card::{CardError, Pin, PinEntry};
use crate::check::capture::VisitContext;
use crate::check::health::{Health, LineState};
use crate::check::now_jst;
use crate::check::workflow::{self, CheckRequest, Reception};
use crate::check::CheckError;
use crate::domain::{FacilityType, IdentityMethod};
use crate::ledger::fold::CheckState;
use crate::ledger::{Change, Ledger, LedgerError};
use crate::oqs::{Answer, InsuranceQuery, OqsClient, QueryError};
use crate::plugin::PluginHost;
use crate::reconcile::{PassReport, Reconciler};
use crate::rules::settings::RuleSettings;
use crate::view::{CheckReport, CheckView, FacilityView, ReportStatus};

/// A change clients follow (the API's event stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonEvent {
    /// An event of a check was made durable.
    Check(Change),
    /// The line changed state.
    Line(LineState),
    /// Changes were missed: clients read their lists again.
    Resync,
}

/// A reception check as a client asks for it.
#[derive(Debug, Clone)]
pub struct StartCheck {
    /// The reader; `None` for the first reader with a card.
    pub reader: Option<String>,
    /// 目視 or 暗証番号.
    pub method: IdentityMethod,
    /// The PIN (暗証番号 method), typed by the patient.
    pub pin: Option<Pin>,
    /// The patient agreed to spend the last PIN try.
    pub confirm_last_try: bool,
    /// The visit date; default today in Japan.
    pub visit_date: Option<chrono::NaiveDate>,
    /// The facility type; default the configured one.
    pub facility: Option<FacilityType>,
    /// 初診・初検.
    pub first_visit: bool,
    /// The next booked visit.
    pub next_visit: Option<chrono::NaiveDate>,
    /// How long to wait for a card to be placed.
    pub card_wait: std::time::Duration,
    /// The caller's id for the check (idempotency key), when it chose one.
    pub check_id: Option<String>,
    /// The operator says the card has no photo (R2): PIN only.
    pub photo_less: bool,
    /// What the receipt computer knows of the patient, sent with the request; otherwise the
    /// clinic's own history is looked up when the check is captured.
    pub known: Option<crate::ledger::event::KnownInsurance>,
}

/// Why a reception check could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Another check is using the reader.
    #[error("reader {0} is busy")]
    ReaderBusy(String),
    /// The capture could not be written: the check is not saved.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A check with this id is being made by another request.
    #[error("check {0} is in progress")]
    InProgress(String),
    /// The daemon is stopping, or the check's task failed.
    #[error("check task: {0}")]
    Task(String),
    /// This tsunagid runs without card readers (`--no-reader`: a hub).
    #[error("this tsunagid runs without card readers")]
    NoReader,
}

impl StartError {
    /// The message for staff.
    pub fn message_ja(&self) -> String {
        match self {
            StartError::ReaderBusy(r) => format!(
                "カードリーダー「{r}」は別の確認に使用中です。終わってからもう一度確認してください。"
            ),
            StartError::Ledger(e) => e.message_ja(),
            StartError::InProgress(id) => format!(
                "確認 {id} はいま処理中です。終わってから結果を確認してください（tsunagi show {id}）。"
            ),
            StartError::Task(_) => {
                "tsunagid が停止中のため、確認できませんでした。再起動後にもう一度確認してください。".into()
            }
            StartError::NoReader => "この端末はカードリーダーを使わない設定（tsunagid --no-reader、同期の中継用）で動いています。受付の端末で確認してください。".into(),
        }
    }
}

/// Cheap to clone; every clone is the same daemon.
#[derive(Debug, Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ServiceConfig,
    ledger: Ledger,
    client: OqsClient,
    reconciler: Reconciler,
    health: Mutex<Health>,
    status: Mutex<Status>,
    events: broadcast::Sender<DaemonEvent>,
    readers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The readers and their cards, for clients that follow them (the page's stream): sent
    /// only when they change.
    seen_readers: tokio::sync::watch::Sender<Vec<crate::card::reader::ReaderInfo>>,
    pass_lock: tokio::sync::Mutex<()>,
    /// Work that must finish even when its requester goes away (a check on a card, a pass);
    /// waited for at shutdown.
    tasks: tokio_util::task::TaskTracker,
    /// Client-made check ids whose check is being made now.
    in_flight: Mutex<std::collections::HashSet<String>>,
    settings: RuleSettings,
    stopping: tokio::sync::watch::Receiver<bool>,
    /// The facility plugins, when the host could be made.
    plugins: Option<Arc<PluginHost>>,
    /// The plugin directory's first load finished (until then the API answers without
    /// facility output).
    plugins_loaded: std::sync::atomic::AtomicBool,
    /// Sync with the other devices, once started.
    sync: std::sync::OnceLock<crate::peer::SyncService>,
    /// Why sync could not start (for status), if it could not.
    sync_problem: Mutex<Option<String>>,
}

/// How many changes a slow client may fall behind before it is told to re-read.
const EVENT_BACKLOG: usize = 256;

impl Daemon {
    /// The daemon over an open ledger. The ledger's changes feed the event stream;
    /// `stopping` turns true when the daemon shuts down.
    pub fn new(
        config: ServiceConfig,
        ledger: Ledger,
        client: OqsClient,
        stopping: tokio::sync::watch::Receiver<bool>,
        plugins: Option<Arc<PluginHost>>,
    ) -> Self {
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let (changes, mut changes_rx) = broadcast::channel::<Change>(EVENT_BACKLOG);
        let moments = changes.subscribe();
        let ledger = ledger.with_changes(changes);
        let forward = events.clone();
        // Owned by the runtime; ends when the ledger (every clone of the sender) is gone.
        tokio::spawn(async move {
            loop {
                match changes_rx.recv().await {
                    Ok(c) => {
                        let _ = forward.send(DaemonEvent::Check(c));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        // Clients must read their lists again.
                        tracing::warn!(missed = n, "change stream lagged");
                        let _ = forward.send(DaemonEvent::Resync);
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let reconciler = Reconciler::new(
            ledger.clone(),
            client.background(),
            config.reconcile_config(),
        )
        .with_stop(stopping.clone());
        let health = Health::new(config.health());
        let status = Status {
            line: LineState::Online,
            queue: 0,
            overdue: 0,
            last_pass: None,
            readers: Vec::new(),
            readers_problem: None,
            store_repairs: ledger
                .store()
                .health()
                .into_iter()
                .filter(|n| n.kind.is_damage())
                .collect(),
            updated_at: now_jst().to_rfc3339(),
            pid: std::process::id(),
            plugins: plugins.as_ref().map(|p| p.statuses()).unwrap_or_default(),
            sync: None,
            folders: None,
        };
        let this = Self {
            inner: Arc::new(Inner {
                settings: config.rules(),
                config,
                ledger,
                client,
                reconciler,
                health: Mutex::new(health),
                status: Mutex::new(status),
                events,
                readers: Mutex::default(),
                seen_readers: tokio::sync::watch::Sender::new(Vec::new()),
                pass_lock: tokio::sync::Mutex::new(()),
                tasks: tokio_util::task::TaskTracker::new(),
                in_flight: Mutex::default(),
                stopping,
                plugins,
                plugins_loaded: std::sync::atomic::AtomicBool::new(false),
                sync: std::sync::OnceLock::new(),
                sync_problem: Mutex::new(None),
            }),
        };
        if this.inner.plugins.is_some() {
            let hooks = this.clone();
            this.inner
                .tasks
                .spawn(async move { hooks.plugin_moments(moments).await });
        }
        this
    }

    /// Gives the facility's plugin each check captured for 事後確認 or resolved, and records
    /// what it adds (warnings, a next step) with the check. Runs beside the checks, never in
    /// their way: a slow or failing plugin delays no capture. Ends when the daemon stops.
    async fn plugin_moments(&self, mut changes: broadcast::Receiver<Change>) {
        use crate::plugin::api::Moment;
        let mut stopping = self.inner.stopping.clone();
        loop {
            let change = tokio::select! {
                c = changes.recv() => c,
                _ = stopping.changed() => return,
            };
            let change = match change {
                Ok(c) => c,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "plugin moments lagged; some checks get no plugin note"
                    );
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let moment = match change.kind {
                "captured" if change.offline => Moment::Captured,
                "resolved" => Moment::Resolved,
                _ => continue,
            };
            self.plugin_moment(&change.check_id, moment).await;
        }
    }

    async fn plugin_moment(&self, id: &str, moment: crate::plugin::api::Moment) {
        use crate::ledger::event::{CheckEvent, PluginNote};
        let Some(host) = self.inner.plugins.clone() else {
            return;
        };
        let ledger = self.inner.ledger.clone();
        let wanted = id.to_string();
        let today = now_jst().date_naive();
        let added = tokio::task::spawn_blocking(move || {
            let state = ledger.check(&wanted).ok()?;
            let view = CheckView::of(&state, today);
            let plugin = host.plugin_for(crate::facility::facility_of(view.facility))?;
            let check = crate::facility::check_of(&state, &view);
            match host.on_moment(&plugin, moment, &check) {
                Ok(a) => Some((plugin, view.visit_date, a)),
                Err(e) => {
                    tracing::warn!(%plugin, error = %e, "the facility plugin added nothing");
                    None
                }
            }
        })
        .await
        .ok()
        .flatten();
        let Some((plugin, visit, addition)) = added else {
            return;
        };
        let (warnings, next_action) = crate::facility::addition_of(addition);
        if warnings.is_empty() && next_action.is_none() {
            return;
        }
        let note = PluginNote {
            plugin,
            moment: match moment {
                crate::plugin::api::Moment::Captured => "captured",
                crate::plugin::api::Moment::Resolved => "resolved",
            }
            .into(),
            warnings,
            next_action,
            at: now_jst(),
        };
        if let Err(e) = self
            .inner
            .ledger
            .record(id, visit, &CheckEvent::PluginNoted(note))
            .await
        {
            tracing::warn!(check = %id, error = %e, "the plugin's note could not be recorded");
        }
    }

    /// Sync with the other devices, when it runs.
    pub fn sync(&self) -> Option<&crate::peer::SyncService> {
        self.inner.sync.get()
    }

    pub(crate) fn set_sync(&self, sync: crate::peer::SyncService) {
        let _ = self.inner.sync.set(sync);
    }

    pub(crate) fn set_sync_problem(&self, problem: String) {
        *lock(&self.inner.sync_problem) = Some(problem);
    }

    /// Records arrived from a peer: clients re-read their lists (the checks that changed
    /// are not named one by one).
    pub(crate) fn records_arrived(&self) {
        let _ = self.inner.events.send(DaemonEvent::Resync);
    }

    /// The configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    /// The qualification system's client (reception lane).
    pub fn client(&self) -> &OqsClient {
        &self.inner.client
    }

    /// The rule settings.
    pub fn settings(&self) -> &RuleSettings {
        &self.inner.settings
    }

    /// The facility plugins.
    pub fn plugins(&self) -> Option<&PluginHost> {
        self.inner.plugins.as_deref()
    }

    /// What the configured facility's plugin makes of a check (its fold `state`, viewed as
    /// `view`), or why nothing; `None` when no plugin serves its facility type. Plugin calls
    /// block (bounded by the host's deadline), so they run off the async threads.
    pub async fn facility_output(
        &self,
        state: CheckState,
        view: &CheckView,
    ) -> Option<FacilityView> {
        let host = self.inner.plugins.clone()?;
        let view = view.clone();
        tokio::task::spawn_blocking(move || crate::facility::view(&host, &state, &view))
            .await
            .ok()
            .flatten()
    }

    /// Picks up plugin files replaced, added or removed on disk, and notes every plugin's
    /// state in the status.
    pub async fn reload_plugins(&self) {
        let Some(host) = self.inner.plugins.clone() else {
            return;
        };
        if !self
            .inner
            .plugins_loaded
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        let dir = self.inner.config.plugins.dir(&self.inner.config.data_dir);
        let statuses = tokio::task::spawn_blocking(move || {
            host.reload_changed(&dir);
            host.statuses()
        })
        .await
        .unwrap_or_default();
        lock(&self.inner.status).plugins = statuses;
    }

    /// Loads the plugin directory (compiled, or taken from the compile cache) in a task the
    /// daemon owns; [`Daemon::reload_plugins`] follows the directory once it is done.
    pub fn load_plugins_in_background(&self) {
        let Some(host) = self.inner.plugins.clone() else {
            return;
        };
        let this = self.clone();
        let dir = self.inner.config.plugins.dir(&self.inner.config.data_dir);
        self.inner.tasks.spawn(async move {
            let statuses = tokio::task::spawn_blocking(move || {
                for status in host.load_dir(&dir) {
                    tracing::info!(plugin = %status.name, state = ?status.state, "facility plugin");
                }
                host.statuses()
            })
            .await
            .unwrap_or_default();
            lock(&this.inner.status).plugins = statuses;
            this.inner
                .plugins_loaded
                .store(true, std::sync::atomic::Ordering::Release);
        });
    }

    /// Follows the daemon's changes.
    pub fn subscribe(&self) -> broadcast::Receiver<DaemonEvent> {
        self.inner.events.subscribe()
    }

    /// Turns true when the daemon shuts down.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.stopping.clone()
    }

    /// The status now.
    pub fn status(&self) -> Status {
        let mut s = lock(&self.inner.status).clone();
        s.line = self.line();
        s.readers = self.inner.seen_readers.borrow().clone();
        s.sync = match self.sync() {
            Some(sync) => Some(sync.status()),
            None => lock(&self.inner.sync_problem)
                .clone()
                .map(|problem| crate::peer::SyncStatus {
                    device_id: self.inner.ledger.store().device().id().to_string(),
                    problem: Some(problem),
                    ..Default::default()
                }),
        };
        s
    }

    /// The line's state now.
    pub fn line(&self) -> LineState {
        lock(&self.inner.health).state()
    }

    fn reader_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.inner.readers)
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Stops taking tracked work and waits for what runs (checks on cards, passes).
    pub async fn finish_tasks(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// One reception check: waits for the card, reads it, asks the qualification system (or
    /// captures at once when the line is known to be down), records, and reports.
    ///
    /// The work runs in a task the daemon owns: a requester that goes away (a closed
    /// connection) does not cut a check in half — the card session, the capture and the
    /// answer are finished, and the reader stays held until they are. A request repeated with
    /// the same `check_id` is answered from the recorded check; the card is not read again.
    pub async fn check(&self, start: StartCheck) -> Result<CheckReport, StartError> {
        if self.inner.config.no_reader {
            return Err(StartError::NoReader);
        }
        if let Some(id) = start.check_id.clone() {
            // Take the id first, then look for its record: a request that finished meanwhile
            // is seen, and none other with this id can start until this one ends.
            if !lock(&self.inner.in_flight).insert(id.clone()) {
                return Err(StartError::InProgress(id));
            }
            let answered = match self.recorded_report(&id).await {
                Ok(None) => None,
                Ok(Some(report)) => Some(Ok(report)),
                Err(e) => Some(Err(e)),
            };
            if let Some(answer) = answered {
                lock(&self.inner.in_flight).remove(&id);
                return answer;
            }
        }
        let this = self.clone();
        let handle = self.inner.tasks.spawn(async move {
            let id = start.check_id.clone();
            let report = this.check_here(start).await;
            if let Some(id) = id {
                lock(&this.inner.in_flight).remove(&id);
            }
            report
        });
        handle.await.map_err(|e| StartError::Task(e.to_string()))?
    }

    /// The report of a check already recorded under `id`, if there is one.
    async fn recorded_report(&self, id: &str) -> Result<Option<CheckReport>, StartError> {
        let ledger = self.inner.ledger.clone();
        let wanted = id.to_string();
        let found = tokio::task::spawn_blocking(move || match ledger.check(&wanted) {
            Ok(c) => Ok(Some(c)),
            Err(LedgerError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| StartError::Task(e.to_string()))??;
        Ok(found.map(|c| workflow::recorded_report(&c)))
    }

    async fn check_here(&self, start: StartCheck) -> Result<CheckReport, StartError> {
        let now = now_jst();
        let request = CheckRequest {
            method: start.method,
            visit: VisitContext {
                visit_date: start.visit_date.unwrap_or_else(|| now.date_naive()),
                facility: start.facility.unwrap_or(self.inner.config.facility),
                first_visit: start.first_visit,
                next_visit: start.next_visit,
                last_known: start.known.clone(),
            },
            check_id: start.check_id.clone(),
        };
        // Find and open the reader on a blocking thread: pcscd calls block.
        let wanted = start.reader.clone();
        let wait = start.card_wait;
        let opened = tokio::task::spawn_blocking(move || {
            let readers = Readers::connect()?;
            let name = readers.wait_for_card(wanted.as_deref(), wait)?;
            Ok::<_, CardError>((readers, name))
        })
        .await;
        let (readers, name) = match opened {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => return Ok(workflow::card_failure(&request, &CheckError::Card(e))),
            Err(e) => {
                return Ok(workflow::card_failure(
                    &request,
                    &CheckError::Task(e.to_string()),
                ))
            }
        };
        let reader = self.reader_lock(&name);
        let Ok(_held) = reader.try_lock() else {
            return Err(StartError::ReaderBusy(name));
        };
        let transport = match tokio::task::spawn_blocking(move || readers.open(&name)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Ok(workflow::card_failure(&request, &CheckError::Card(e))),
            Err(e) => {
                return Ok(workflow::card_failure(
                    &request,
                    &CheckError::Task(e.to_string()),
                ))
            }
        };
        let known_offline = self.line() == LineState::Offline;
        let mut entry = GivenPin::new(start.pin, start.confirm_last_try);
        entry.photo_less = start.photo_less;
        let wrong = entry.wrong.clone();
        let started = Instant::now();
        let mut report = workflow::perform(
            Reception {
                ledger: Some(&self.inner.ledger),
                client: (!known_offline).then_some(&self.inner.client),
                institution_code: &self.inner.config.institution_code,
                settings: &self.inner.settings,
            },
            transport,
            &request,
            Box::new(entry),
            now,
        )
        .await?;
        // One PIN per request: a wrong one ends the check; say how many tries are left
        // rather than "cancelled" — or, when it left the last try, rather than "the last try
        // was not confirmed": the PIN given was wrong, and a client that answered the
        // confirmation by sending the same PIN again would lock the card.
        if matches!(
            report.error.as_deref(),
            Some("cancelled" | "last-try-not-confirmed")
        ) {
            if let Some(tries_left) = *lock(&wrong) {
                report = workflow::card_failure(
                    &request,
                    &CheckError::Card(CardError::WrongPin { tries_left }),
                );
            }
        }
        // The line's health learns from reception's own queries too.
        match (report.status, report.transient) {
            (ReportStatus::Error, true) if !known_offline => {
                self.on_line_failure();
            }
            (ReportStatus::Confirmed | ReportStatus::Invalid | ReportStatus::NotFound, _) => {
                self.on_line_success();
            }
            _ => {}
        }
        tracing::info!(status = ?report.status, ms = started.elapsed().as_millis() as u64, "reception check done");
        Ok(report)
    }

    fn on_line_failure(&self) {
        self.update_health(|h| h.on_failure(Instant::now()));
    }

    fn on_line_success(&self) {
        self.update_health(Health::on_success);
    }

    /// Asks the qualification system by insurance data on reception's lane (被保険者番号等に
    /// よる照会), as a receipt computer's request; at once an `Unreachable` error while the line
    /// is known to be down. The line's health learns from the outcome as from reception's own.
    pub async fn ask_by_numbers(&self, query: &InsuranceQuery) -> Result<Answer, QueryError> {
        if self.line() == LineState::Offline {
            return Err(QueryError::Unreachable);
        }
        let result = self.inner.client.query_by_insurance(query).await;
        match &result {
            Ok(_) => self.on_line_success(),
            Err(e) if e.is_transient() => self.on_line_failure(),
            Err(_) => {}
        }
        result
    }

    /// Records a check by insurance data that got no answer, under `check_id`, for 事後確認
    /// to ask by its numbers (the same id records nothing twice).
    pub async fn capture_by_numbers(
        &self,
        check_id: &str,
        query: &InsuranceQuery,
        reason: &str,
    ) -> Result<(), LedgerError> {
        use crate::ledger::event::{
            Captured, CheckEvent, KnownInsurance, KnownSource, NumbersRecord,
        };
        let mut known = KnownInsurance::new(
            NumbersRecord {
                insurer: query.insurer.clone(),
                symbol: query.symbol.clone(),
                number: query.number.clone(),
                branch: query.branch.clone(),
            },
            query.birth_date,
            None,
        );
        known.source = Some(KnownSource::Request);
        let captured = Captured {
            visit_date: query.visit_date,
            facility: self.inner.config.facility,
            first_visit: false,
            next_visit: None,
            card: None,
            document: None,
            reason: Some(reason.to_string()),
            last_known: Some(known),
            captured_at: now_jst(),
        };
        self.inner
            .ledger
            .record(check_id, query.visit_date, &CheckEvent::Captured(captured))
            .await
    }

    /// A check by insurance data (the API's `POST /v1/insurance-checks`): asked at once,
    /// captured for 事後確認 when the system cannot be reached.
    pub async fn check_by_numbers(
        &self,
        query: &InsuranceQuery,
    ) -> Result<crate::ops::NumbersCheckReport, LedgerError> {
        let visit = query.visit_date;
        let mut report = crate::ops::NumbersCheckReport {
            status: ReportStatus::Error,
            check_id: None,
            visit_date: visit,
            qualification: None,
            candidates: Vec::new(),
            newer_exists: false,
            notices: Vec::new(),
            copay_tenths: None,
            error: None,
            message_ja: String::new(),
        };
        match self.ask_by_numbers(query).await {
            Ok(answer) => {
                let parts = workflow::AnswerParts::of(&answer);
                report.status = parts.status;
                report.qualification = parts.qualification;
                report.candidates = parts.candidates;
                report.newer_exists = parts.newer_exists;
                report.notices = parts.notices;
                report.copay_tenths = parts.copay_tenths;
                report.message_ja = answer.message_ja_on(visit, &self.inner.settings);
            }
            Err(e) if e.is_transient() => {
                let id = crate::ledger::new_check_id();
                self.capture_by_numbers(&id, query, e.kind()).await?;
                report.status = ReportStatus::Captured;
                report.check_id = Some(id);
                report.error = Some(e.kind().to_string());
                report.message_ja = "資格確認システムにつながらないため、この確認を記録しました。つながりしだい、記載の番号で確認します（事後確認）。".into();
            }
            Err(e) => {
                report.status = workflow::query_error_status(&e);
                report.error = Some(e.kind().to_string());
                report.message_ja = e.message_ja_on(visit, &self.inner.settings);
            }
        }
        Ok(report)
    }

    /// What the folder interface says of itself, for the status.
    pub(crate) fn set_folder_status(&self, folders: crate::folders::FolderStatus) {
        lock(&self.inner.status).folders = Some(folders);
    }

    /// Applies `f` to the breaker and tells followers when the line's state changed.
    fn update_health(&self, f: impl FnOnce(&mut Health)) {
        let changed = {
            let mut h = lock(&self.inner.health);
            let before = h.state();
            f(&mut h);
            (before != h.state()).then(|| h.state())
        };
        if let Some(state) = changed {
            let _ = self.inner.events.send(DaemonEvent::Line(state));
        }
    }

    /// Probes the line when due (the breaker's schedule).
    pub async fn probe_if_due(&self) {
        let due = {
            let mut h = lock(&self.inner.health);
            let now = Instant::now();
            let due = h.probe_due(now);
            if due {
                h.probed(now);
            }
            due
        };
        if !due {
            return;
        }
        match self.inner.client.probe().await {
            Ok(()) => self.on_line_success(),
            Err(e) if e.is_transient() => self.on_line_failure(),
            Err(e) => {
                tracing::error!(error = %e, "the qualification system refuses this facility; check the settings");
                self.on_line_failure();
            }
        }
    }

    /// One maintenance pass (counts, reconcile when the line is up, retention); one at a
    /// time. `force` asks every open check now, ignoring retry delays.
    pub async fn pass(&self, force: bool) -> Result<Option<PassReport>, LedgerError> {
        let _one = self.inner.pass_lock.lock().await;
        let ask = lock(&self.inner.health).should_ask();
        let reconciler = ask.then_some(&self.inner.reconciler);
        let (report, queue, overdue) =
            pass(&self.inner.ledger, reconciler, &self.inner.config, force).await?;
        if report.is_some_and(|r| r.failed > 0 && r.resolved == 0) {
            self.on_line_failure();
        }
        let mut s = lock(&self.inner.status);
        s.queue = queue;
        s.overdue = overdue;
        s.last_pass = report.or(s.last_pass);
        Ok(report)
    }

    /// A pass run as the daemon's own task, so a requester that goes away does not cut it
    /// short (and leave the one-pass-at-a-time lock released while its work still runs).
    pub async fn pass_owned(&self, force: bool) -> Result<Option<PassReport>, LedgerError> {
        let this = self.clone();
        self.inner
            .tasks
            .spawn(async move { this.pass(force).await })
            .await
            .map_err(|e| LedgerError::Encode(format!("pass task: {e}")))?
    }

    /// Updates what the status says about the readers.
    pub fn set_readers(
        &self,
        readers: Vec<crate::card::reader::ReaderInfo>,
        problem: Option<String>,
    ) {
        lock(&self.inner.status).readers_problem = problem;
        // The one copy of the readers: the status reads it, the page's stream follows it.
        self.inner.seen_readers.send_if_modified(|seen| {
            for r in &readers {
                let before = seen.iter().find(|b| b.name == r.name);
                match (before.map(|b| b.card_present), r.card_present) {
                    (Some(false) | None, true) => tracing::info!(reader = %r.name, "card placed"),
                    (Some(true), false) => tracing::info!(reader = %r.name, "card removed"),
                    _ => {}
                }
            }
            let changed = *seen != readers;
            if changed {
                *seen = readers;
            }
            changed
        });
    }

    /// The readers and their cards, told again whenever a card is placed or taken or a
    /// reader comes or goes.
    pub fn watch_readers(
        &self,
    ) -> tokio::sync::watch::Receiver<Vec<crate::card::reader::ReaderInfo>> {
        self.inner.seen_readers.subscribe()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The PIN a request carried: given once; a wrong PIN ends the check (the patient types
/// again in a new request), and the tries left are kept to say so.
#[derive(Debug)]
struct GivenPin {
    pin: Option<Pin>,
    confirm_last_try: bool,
    photo_less: bool,
    wrong: Arc<Mutex<Option<u8>>>,
}

impl GivenPin {
    fn new(pin: Option<Pin>, confirm_last_try: bool) -> Self {
        Self {
            pin,
            confirm_last_try,
            photo_less: false,
            wrong: Arc::default(),
        }
    }
}

impl PinEntry for GivenPin {
    fn pin(&mut self, _tries_left: u8) -> Option<Pin> {
        self.pin.take()
    }

    fn confirm_last_try(&mut self) -> bool {
        self.confirm_last_try
    }

    fn wrong_pin(&mut self, tries_left: u8) {
        *lock(&self.wrong) = Some(tries_left);
    }

    fn card_kind(&self) -> crate::rules::identity::CardKind {
        if self.photo_less {
            crate::rules::identity::CardKind::InfantNoPhoto
        } else {
            crate::rules::identity::CardKind::Standard
        }
    }
}
