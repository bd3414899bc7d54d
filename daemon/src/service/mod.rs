//! `tsunagid`, the daemon (常駐サービス): keeps the line's health, drains captured checks when
//! the qualification system answers, and ends months whose retention is over. It opens the store only for each pass, so `tsunagi` commands can use
//! it in between, and writes its state to `status.json` for `tsunagi status` and the tray.

pub mod config;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::check::health::{Health, LineState};
use crate::check::now_jst;
use crate::ledger::fold::CheckState;
use crate::ledger::{tags, CheckClassifier, Ledger, LedgerError};
use crate::oqs::OqsClient;
use crate::reconcile::{PassReport, Reconciler};
use crate::rules::deadlines::retention_until;
use config::ServiceConfig;
use tsunagi_sync::store::MonthCounts;
use tsunagi_sync::Month;

/// What `status.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// The line.
    pub line: LineState,
    /// Checks waiting for 事後確認 or staff.
    pub queue: usize,
    /// Of which past their deadline.
    pub overdue: usize,
    /// The last pass.
    pub last_pass: Option<PassReport>,
    /// The card readers and whether a card is on each (empty when none or pcscd is down).
    #[serde(default)]
    pub readers: Vec<crate::card::reader::ReaderInfo>,
    /// Why the readers cannot be seen, for staff (pcscd not running, no reader).
    #[serde(default)]
    pub readers_problem: Option<String>,
    /// Repairs of damage the store made (set aside, rebuilt), newest last.
    #[serde(default)]
    pub store_repairs: Vec<tsunagi_sync::store::HealthNote>,
    /// When written (RFC 3339, JST).
    pub updated_at: String,
    /// The daemon's process id.
    pub pid: u32,
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
/// month plus `extra_months`, and no check of the month still open.
pub fn months_to_purge(
    months: &[(Month, MonthSummary)],
    today: NaiveDate,
    extra_months: u32,
) -> Vec<Month> {
    months
        .iter()
        .filter(|(month, summary)| {
            retention_until(month.last_day(), summary.open > 0, extra_months)
                .is_some_and(|end| today > end)
        })
        .map(|(m, _)| *m)
        .collect()
}

/// One maintenance pass over an open ledger: each month's counts come from the index and
/// only its open checks are read; then reconciliation (when the line is up) and retention.
/// (The month documents are sync's: brought up to date when a peer needs them, not here —
/// loading a 50,000-check month's document would double the pass's memory.) Returns the
/// pass report, the queue and the overdue count.
async fn pass(
    ledger: &Ledger,
    reconciler: Option<&Reconciler>,
    config: &ServiceConfig,
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
                MonthSummary::from_counts(&counts, &month_open, today),
            ));
            open.extend(month_open);
        }
        Ok::<_, LedgerError>((months, open))
    })
    .await
    .map_err(|e| LedgerError::Encode(e.to_string()))??;
    let report = match reconciler {
        Some(r) => Some(r.run_pass_over(open, now, false).await?),
        None => None,
    };
    let ledger = ledger.clone();
    let extra = config.retention.extra_months;
    tokio::task::spawn_blocking(move || {
        // Counts read before reconciling can only keep a month longer: one with a check
        // decided in this pass goes at the next. (No capture can come in meanwhile: the store
        // belongs to this process for the whole pass.)
        for month in months_to_purge(&months, today, extra) {
            let summary = months
                .iter()
                .find(|(m, _)| *m == month)
                .map(|(_, s)| *s)
                .unwrap_or_default();
            tracing::info!(%month, "retention over: purging the month");
            let aggregate =
                serde_json::to_value(summary).map_err(|e| LedgerError::Encode(e.to_string()))?;
            ledger.store().purge(month, &aggregate)?;
        }
        // Counts read before reconciling: what this pass decided leaves the queue.
        let open: usize = months.iter().map(|(_, s)| s.open).sum();
        let overdue = months.iter().map(|(_, s)| s.overdue).sum();
        let resolved = report.map_or(0, |r| r.resolved);
        Ok::<_, LedgerError>((report, open.saturating_sub(resolved), overdue))
    })
    .await
    .map_err(|e| LedgerError::Encode(e.to_string()))?
}

/// Card watch: the readers and the cards on them, as pcscd sees them now; insertions and
/// removals are logged (without any card data).
async fn watch_readers(status: &mut Status) {
    let seen = tokio::task::spawn_blocking(|| {
        crate::card::reader::Readers::connect().and_then(|r| r.list())
    })
    .await;
    let (readers, problem) = match seen {
        Ok(Ok(list)) if list.is_empty() => (
            Vec::new(),
            Some(crate::card::CardError::NoReaders.message_ja()),
        ),
        Ok(Ok(list)) => (list, None),
        Ok(Err(e)) => (Vec::new(), Some(e.message_ja())),
        Err(e) => (
            Vec::new(),
            Some(format!("カードリーダーの確認に失敗しました: {e}")),
        ),
    };
    for r in &readers {
        let before = status.readers.iter().find(|b| b.name == r.name);
        match (before.map(|b| b.card_present), r.card_present) {
            (Some(false) | None, true) => tracing::info!(reader = %r.name, "card placed"),
            (Some(true), false) => tracing::info!(reader = %r.name, "card removed"),
            _ => {}
        }
    }
    status.readers = readers;
    status.readers_problem = problem;
}

/// Runs the daemon until `shutdown` turns true. Every task it starts ends before it returns.
pub async fn run(config: ServiceConfig, client: OqsClient, mut shutdown: watch::Receiver<bool>) {
    let mut health = Health::new(config.health());
    let mut next_pass = Instant::now();
    let mut last = Status {
        line: LineState::Online,
        queue: 0,
        overdue: 0,
        last_pass: None,
        readers: Vec::new(),
        readers_problem: None,
        store_repairs: Vec::new(),
        updated_at: now_jst().to_rfc3339(),
        pid: std::process::id(),
    };
    loop {
        let now = Instant::now();
        if health.probe_due(now) {
            health.probed(now);
            match client.probe().await {
                Ok(()) => health.on_success(),
                Err(e) if e.is_transient() => health.on_failure(Instant::now()),
                Err(e) => {
                    tracing::error!(error = %e, "the qualification system refuses this facility; check the settings");
                    health.on_failure(Instant::now());
                }
            }
        }
        if Instant::now() >= next_pass {
            next_pass = Instant::now() + config.reconcile_interval();
            match Ledger::open_waiting(&config.data_dir, Duration::from_secs(2)) {
                Ok(ledger) => {
                    last.store_repairs = ledger
                        .store()
                        .health()
                        .into_iter()
                        .filter(|n| n.kind.is_damage())
                        .collect();
                    let reconciler = health.should_ask().then(|| {
                        Reconciler::new(ledger.clone(), client.clone(), config.reconcile_config())
                    });
                    match pass(&ledger, reconciler.as_ref(), &config).await {
                        Ok((report, queue, overdue)) => {
                            if report.is_some_and(|r| r.failed > 0 && r.resolved == 0) {
                                health.on_failure(Instant::now());
                            }
                            last.queue = queue;
                            last.overdue = overdue;
                            last.last_pass = report.or(last.last_pass);
                        }
                        Err(e) => tracing::error!(error = %e, "maintenance pass failed"),
                    }
                    // The store is let go here, so commands can use it until the next pass.
                }
                Err(e) => tracing::info!(error = %e, "store busy; next pass later"),
            }
        }
        watch_readers(&mut last).await;
        last.line = health.state();
        last.updated_at = now_jst().to_rfc3339();
        write_status(&config.data_dir, &last);
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
