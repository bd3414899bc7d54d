//! `tsunagid`, the daemon (常駐サービス): the one owner of the data directory. It holds the
//! store for its whole life, serves the local API (reception checks, reads, records, status,
//! the event stream), keeps the line's health and the qualification system's session, drains
//! captured checks when the system answers, and ends months whose retention is over. It also
//! writes its state to `status.json` for whoever reads files.

pub mod config;
pub mod daemon;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::check::health::LineState;
use crate::check::now_jst;
use crate::ledger::fold::CheckState;
use crate::ledger::{tags, CheckClassifier, Ledger, LedgerError};
use crate::oqs::OqsClient;
use crate::reconcile::{PassReport, Reconciler};
use crate::rules::deadlines::retention_until;
use config::ServiceConfig;
pub use daemon::Daemon;
use tsunagi_sync::store::MonthCounts;
use tsunagi_sync::Month;

/// The daemon's status (状態): what `GET /v1/status` answers and `status.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Status {
    /// The line: `online`, `degraded` or `offline`.
    #[schema(value_type = String, example = "online")]
    pub line: LineState,
    /// Checks waiting for 事後確認 or staff.
    pub queue: usize,
    /// Of which past their deadline.
    pub overdue: usize,
    /// The last reconcile pass's counts.
    #[schema(value_type = Option<Object>)]
    pub last_pass: Option<PassReport>,
    /// The card readers and whether a card is on each (empty when none or pcscd is down).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub readers: Vec<crate::card::reader::ReaderInfo>,
    /// Why the readers cannot be seen, for staff (pcscd not running, no reader).
    #[serde(default)]
    pub readers_problem: Option<String>,
    /// Repairs of damage the store made (set aside, rebuilt), newest last.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub store_repairs: Vec<tsunagi_sync::store::HealthNote>,
    /// When written (RFC 3339, JST).
    pub updated_at: String,
    /// The daemon's process id.
    pub pid: u32,
    /// The facility plugins: loaded, disabled or refused, and why.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub plugins: Vec<crate::plugin::PluginStatus>,
    /// Sync with the clinic's other devices, when it runs.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub sync: Option<crate::peer::SyncStatus>,
    /// The folder interface for the receipt computer, when configured.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub folders: Option<crate::folders::FolderStatus>,
}

/// The status file in a data directory.
pub fn status_path(data_dir: &Path) -> PathBuf {
    data_dir.join("status.json")
}

/// Reads the daemon's status if it was written within `fresh`.
pub fn read_status(data_dir: &Path, fresh: Duration) -> Option<Status> {
    let path = status_path(data_dir);
    let age = std::fs::metadata(&path)
        .ok()?
        .modified()
        .ok()?
        .elapsed()
        .ok()?;
    if age > fresh {
        return None;
    }
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn write_status(data_dir: &Path, status: &Status) {
    let path = status_path(data_dir);
    let tmp = path.with_extension("json.tmp");
    let result = serde_json::to_vec_pretty(status)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot write status.json");
    }
}

/// What a pass keeps of one month: counts, never the checks themselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MonthSummary {
    /// Checks.
    pub checks: usize,
    /// Checked with a card.
    pub by_card: usize,
    /// Of which with the PIN.
    pub pin: usize,
    /// Captured while offline.
    pub captured_offline: usize,
    /// Claimed as 不詳.
    pub fushou: usize,
    /// Claimed with the old qualification.
    pub old: usize,
    /// Still open.
    pub open: usize,
    /// Open and past the deadline.
    pub overdue: usize,
}

impl MonthSummary {
    /// Counts one check.
    pub fn add(&mut self, c: &CheckState, today: NaiveDate) {
        self.checks += 1;
        let class = CheckClassifier::class_of(c);
        self.add_tags(class.tags, 1);
        if class.open {
            self.open += 1;
            if c.is_overdue(today) {
                self.overdue += 1;
            }
        }
    }

    fn add_tags(&mut self, t: u32, n: usize) {
        if t & tags::BY_CARD != 0 {
            self.by_card += n;
        }
        if t & tags::PIN != 0 {
            self.pin += n;
        }
        if t & tags::CAPTURED_OFFLINE != 0 {
            self.captured_offline += n;
        }
        if t & tags::FUSHOU != 0 {
            self.fushou += n;
        }
        if t & tags::OLD != 0 {
            self.old += n;
        }
    }

    /// These counts less `kept`'s (what leaves when `kept` is carried over).
    pub fn minus(self, kept: &Self) -> Self {
        Self {
            checks: self.checks.saturating_sub(kept.checks),
            by_card: self.by_card.saturating_sub(kept.by_card),
            pin: self.pin.saturating_sub(kept.pin),
            captured_offline: self.captured_offline.saturating_sub(kept.captured_offline),
            fushou: self.fushou.saturating_sub(kept.fushou),
            old: self.old.saturating_sub(kept.old),
            open: self.open.saturating_sub(kept.open),
            overdue: self.overdue.saturating_sub(kept.overdue),
        }
    }

    /// A month's summary from the index's counts and its open checks (the only checks a
    /// pass reads): the same numbers as folding every check with [`MonthSummary::add`].
    pub fn from_counts(counts: &MonthCounts, open: &[CheckState], today: NaiveDate) -> Self {
        let n = |bit: u32| counts.tags[bit.trailing_zeros() as usize] as usize;
        let mut s = Self {
            checks: counts.checks as usize,
            open: counts.open as usize,
            ..Self::default()
        };
        for bit in [
            tags::BY_CARD,
            tags::PIN,
            tags::CAPTURED_OFFLINE,
            tags::FUSHOU,
            tags::OLD,
        ] {
            s.add_tags(bit, n(bit));
        }
        s.overdue = open.iter().filter(|c| c.is_overdue(today)).count();
        s
    }
}

/// Months whose retention is over on `today` (R20): the end of the month after the visit
/// month plus `extra_months`. Their still-open checks are carried over (kept until they are
/// decided); the rest of the month goes.
pub fn months_to_purge(
    months: &[(Month, MonthSummary)],
    today: NaiveDate,
    extra_months: u32,
) -> Vec<Month> {
    months
        .iter()
        .filter(|(month, _)| retention_over(*month, today, extra_months))
        .map(|(m, _)| *m)
        .collect()
}

/// Whether `month`'s retention is over on `today` (R20).
pub fn retention_over(month: Month, today: NaiveDate, extra_months: u32) -> bool {
    retention_until(month.last_day(), false, extra_months).is_some_and(|end| today > end)
}

/// Ends `month` at the end of its retention: its still-open checks are carried over (R20:
/// kept until decided), the rest of the month goes, its counts kept for statistics.
/// Decided on `counts`, read with the open checks `open`: if the month changed since (a
/// back-dated reception check, a peer's record), nothing is done and `Ok(false)` says so.
/// Blocking.
pub fn end_month_as_read(
    ledger: &Ledger,
    month: Month,
    counts: &MonthCounts,
    open: &[CheckState],
    today: NaiveDate,
) -> Result<bool, LedgerError> {
    let summary = MonthSummary::from_counts(counts, open, today);
    let mut kept = MonthSummary::default();
    for c in open {
        kept.add(c, today);
    }
    let keep: Vec<String> = open.iter().map(|c| c.id.clone()).collect();
    // What leaves the month is counted now; the carried checks are counted when the month
    // finally goes (the store adds the two).
    let removed = serde_json::to_value(summary.minus(&kept))
        .map_err(|e| LedgerError::Encode(e.to_string()))?;
    let ended = ledger
        .store()
        .purge_except(month, counts, &keep, &removed)?;
    if ended {
        tracing::info!(%month, carried = keep.len(), "retention over: month purged");
    } else {
        tracing::info!(%month, "month changed while its end was decided; decided again later");
    }
    Ok(ended)
}

/// [`end_month_as_read`] on the month as it is now. Blocking.
pub fn end_month(ledger: &Ledger, month: Month, today: NaiveDate) -> Result<bool, LedgerError> {
    let counts = ledger.counts(month)?;
    let open = ledger.open_checks_of(month)?;
    end_month_as_read(ledger, month, &counts, &open, today)
}

/// One maintenance pass over the ledger: each month's counts come from the index and only
/// its open checks are read; then reconciliation (when a reconciler is given: the line is
/// up) and retention. (The month documents are sync's: brought up to date when a peer needs
/// them, not here — loading a 50,000-check month's document would double the pass's
/// memory.) Returns the pass report, the queue and the overdue count.
pub(crate) async fn pass(
    ledger: &Ledger,
    reconciler: Option<&Reconciler>,
    config: &ServiceConfig,
    force: bool,
) -> Result<(Option<PassReport>, usize, usize), LedgerError> {
    let now = now_jst();
    let today = now.date_naive();
    let reader = ledger.clone();
    let (months, open) = tokio::task::spawn_blocking(move || {
        let mut months = Vec::new();
        let mut open = Vec::new();
        for month in reader.store().months()? {
            let counts = reader.counts(month)?;
            let month_open = reader.open_checks_of(month)?;
            months.push((
                month,
                counts,
                MonthSummary::from_counts(&counts, &month_open, today),
                month_open.clone(),
            ));
            open.extend(month_open);
        }
        Ok::<_, LedgerError>((months, open))
    })
    .await
    .map_err(|e| LedgerError::Encode(e.to_string()))??;
    let report = match reconciler {
        Some(r) => Some(r.run_pass_over(open, now, force).await?),
        None => None,
    };
    let ledger = ledger.clone();
    let extra = config.retention.extra_months;
    tokio::task::spawn_blocking(move || {
        let summaries: Vec<(Month, MonthSummary)> =
            months.iter().map(|(m, _, s, _)| (*m, *s)).collect();
        for month in months_to_purge(&summaries, today, extra) {
            let Some((_, counts, _, month_open)) = months.iter().find(|(m, ..)| *m == month) else {
                continue;
            };
            // Decided on the counts read above: a check recorded in the month since keeps
            // the month until the next pass decides again. Checks open when the pass began
            // are carried over (R20: kept until decided).
            end_month_as_read(&ledger, month, counts, month_open, today)?;
        }
        // Counts read before reconciling: what this pass decided leaves the queue.
        let open: usize = summaries.iter().map(|(_, s)| s.open).sum();
        let overdue = summaries.iter().map(|(_, s)| s.overdue).sum();
        let resolved = report.map_or(0, |r| r.resolved);
        Ok::<_, LedgerError>((report, open.saturating_sub(resolved), overdue))
    })
    .await
    .map_err(|e| LedgerError::Encode(e.to_string()))?
}

/// Card watch: the readers and the cards on them, as pcscd sees them now.
async fn watch_readers(daemon: &Daemon) {
    let (readers, problem) = tokio::task::spawn_blocking(crate::card::reader::snapshot)
        .await
        .unwrap_or_else(|e| {
            (
                Vec::new(),
                Some(format!("カードリーダーの確認に失敗しました: {e}")),
            )
        });
    daemon.set_readers(readers, problem);
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The data directory's store.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The API's token or listener.
    #[error(transparent)]
    Api(#[from] crate::api::ApiStartError),
}

impl StartupError {
    /// The message for whoever runs the service.
    pub fn message_ja(&self) -> String {
        match self {
            StartupError::Ledger(LedgerError::Open(tsunagi_sync::store::OpenError::InUse {
                ..
            })) => "このデータディレクトリは別の tsunagid（または tsunagi コマンド）が使用中です。tsunagid を二重に起動していないか確認してください。".into(),
            StartupError::Ledger(e) => e.message_ja(),
            StartupError::Api(e) => e.message_ja(),
        }
    }
}

/// Opens the store (it stays open for the daemon's life), starts the API, and runs until
/// `shutdown` turns true. Every task it starts ends before it returns.
pub async fn run(
    config: ServiceConfig,
    client: OqsClient,
    shutdown: watch::Receiver<bool>,
) -> Result<(), StartupError> {
    let dir = config.data_dir.clone();
    let ledger =
        tokio::task::spawn_blocking(move || Ledger::open_waiting(&dir, Duration::from_secs(2)))
            .await
            .map_err(|e| LedgerError::Encode(e.to_string()))??;
    let plugins = load_plugins(&config).await;
    let daemon = Daemon::new(config, ledger, client, shutdown.clone(), plugins);
    let api = crate::api::Server::bind(daemon.clone()).await?;
    tracing::info!(addr = %api.local_addr(), "local API listening");
    let session = {
        let client = daemon.client().clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { client.keep_session(stop).await })
    };
    let serving = tokio::spawn(api.serve(shutdown.clone()));
    // Compiling plugins takes seconds on a cold cache: the API answers meanwhile, and a
    // check made before its plugin is loaded shows no facility output.
    daemon.load_plugins_in_background();
    let sync = start_sync(&daemon, shutdown.clone());
    let folders = tokio::spawn(crate::folders::run(daemon.clone(), shutdown.clone()));
    maintain(&daemon, shutdown).await;
    if let Err(e) = serving.await {
        tracing::error!(error = %e, "API task failed");
    }
    if let Some(sync) = sync {
        sync.stop().await;
    }
    if let Err(e) = folders.await {
        tracing::error!(error = %e, "folder interface task failed");
    }
    // Checks on cards and passes started by requests finish before the store is let go.
    daemon.finish_tasks().await;
    if let Err(e) = session.await {
        tracing::error!(error = %e, "session task failed");
    }
    tracing::info!("tsunagid stopped");
    Ok(())
}

/// Starts sync with the clinic's other devices when it is configured (`[sync] listen`) or a
/// device is paired. A sync that cannot start is logged; reception never depends on it.
fn start_sync(
    daemon: &Daemon,
    shutdown: watch::Receiver<bool>,
) -> Option<crate::peer::SyncService> {
    let config = daemon.config();
    let paired = crate::peer::book::load(&config.data_dir)
        .map(|p| !p.is_empty())
        .unwrap_or(true);
    if config.sync.listen.is_none() && config.sync.peers.is_empty() && !paired {
        return None;
    }
    let listen = config
        .sync
        .listen
        .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let host = std::sync::Arc::new(crate::peer::RetentionHost {
        ledger: daemon.ledger().clone(),
        extra_months: config.retention.extra_months,
    });
    let notify = daemon.clone();
    let started = crate::peer::SyncService::start(
        daemon.ledger().store().clone(),
        &config.data_dir,
        listen,
        config.sync.peers.clone(),
        host,
        std::sync::Arc::new(move || notify.records_arrived()),
        shutdown.clone(),
    );
    let sync = match started {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "sync with other devices could not start");
            daemon.set_sync_problem(e.message_ja());
            return None;
        }
    };
    if let Some(addr) = sync.local_addr() {
        tracing::info!(%addr, device = %daemon.ledger().store().device().id(), "sync listening");
    }
    daemon.set_sync(sync.clone());
    if config.sync.discovery {
        sync.start_discovery(
            config
                .sync
                .discovery_addr
                .unwrap_or_else(|| std::net::SocketAddr::from(([255, 255, 255, 255], 22801))),
        );
    }
    // Every local write is pushed to the peers as it happens.
    let mut events = daemon.subscribe();
    let pusher = sync.clone();
    let mut stop = shutdown;
    sync.track(async move {
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(daemon::DaemonEvent::Check(_)) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => pusher.local_change(),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = stop.changed() => return,
            }
        }
    });
    Some(sync)
}

/// The facility plugins of the configured directory (compiled, or taken from the compile
/// cache). A host that cannot be made is logged and the daemon runs without plugins: checks
/// never depend on them.
async fn load_plugins(config: &ServiceConfig) -> Option<std::sync::Arc<crate::plugin::PluginHost>> {
    let settings = config.plugins.host_settings(&config.data_dir);
    let made = tokio::task::spawn_blocking(move || crate::plugin::PluginHost::new(settings)).await;
    match made {
        Ok(Ok(host)) => Some(std::sync::Arc::new(host)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the plugin host could not be made; running without plugins");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "loading plugins failed; running without plugins");
            None
        }
    }
}

/// The maintenance loop: probes, passes, readers, the status file.
async fn maintain(daemon: &Daemon, mut shutdown: watch::Receiver<bool>) {
    let config = daemon.config().clone();
    let mut next_pass = Instant::now();
    loop {
        daemon.probe_if_due().await;
        if Instant::now() >= next_pass {
            next_pass = Instant::now() + config.reconcile_interval();
            if let Err(e) = daemon.pass(false).await {
                tracing::error!(error = %e, "maintenance pass failed");
            }
        }
        if !config.no_reader {
            watch_readers(daemon).await;
        }
        daemon.reload_plugins().await;
        let mut status = daemon.status();
        status.updated_at = now_jst().to_rfc3339();
        write_status(&config.data_dir, &status);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            tracing::info!("tsunagid stopping");
            break;
        }
    }
}
