//! The check ledger (確認台帳): checks as events in the store, and their folded state.
//!
//! - [`event`]: what the daemon writes (captured, answered, declared, resolved, …);
//! - [`fold`]: the pure fold of a check's events into its state, phase and deadline;
//! - [`Ledger`]: the adapter to `tsunagi-sync`'s store (segments per visit month): records
//!   events, reads a check's events where the index says they are, and keeps folded
//!   states cached by event count;
//! - [`CheckClassifier`]: the fold as the store's index sees it (open, and the counters a
//!   month keeps), so listing open checks and counting a month never read the month.

pub mod event;
pub mod fold;
pub mod history;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use tsunagi_sync::event::MonthError;
use tsunagi_sync::store::{
    CheckClass, Classifier, HealthKind, HealthNote, LookupKey, MonthCounts, OpenError, StoreConfig,
};
use tsunagi_sync::{Month, Store, StoreError};

use event::CheckEvent;
use fold::CheckState;
use history::HistoryKey;

/// Why the ledger failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The store could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event could not be encoded.
    #[error("event encoding: {0}")]
    Encode(String),
    /// No check has this id.
    #[error("no check {0}")]
    NotFound(String),
    /// The visit date lies outside the years the store holds.
    #[error(transparent)]
    Month(#[from] MonthError),
    /// The patient history key could not be read or made.
    #[error("patient history key: {0}")]
    HistoryKey(std::io::Error),
}

impl LedgerError {
    /// The message for staff.
    pub fn message_ja(&self) -> String {
        match self {
            LedgerError::HistoryKey(e) => format!(
                "記録データの前回情報用の鍵（history.key）を読み書きできません: {}。",
                crate::domain::io_error_ja(e)
            ),
            LedgerError::Open(OpenError::InUse { .. }) => {
                "記録データを別の tsunagi（tsunagid など）が使用中です。少し待ってからもう一度実行してください。".into()
            }
            LedgerError::Open(OpenError::Permission { path, .. }) => format!(
                "記録データ（{path}）を読み書きする権限がありません。tsunagi を実行しているユーザーと、フォルダーの権限を確認してください。"
            ),
            LedgerError::Open(OpenError::DiskFull { path, .. }) => format!(
                "ディスクがいっぱいのため記録データ（{path}）を開けません。空き容量を確保してから、もう一度実行してください。"
            ),
            LedgerError::Open(OpenError::Format { path, found, supported, .. }) => format!(
                "記録データ（{path}）は別の版の形式（形式 {found}）で保存されています。この版は形式 {supported} だけを読みます。フォルダーを別の場所へ移してから起動すると、新しく記録を始めます。"
            ),
            LedgerError::Open(_) => "記録データを開けません。ディスクとデータフォルダーの状態を確認してください。".into(),
            LedgerError::Store(e) if e.is_disk_full() => {
                "ディスクがいっぱいのため、この確認は保存されていません。空き容量を確保してから、もう一度確認してください。".into()
            }
            LedgerError::Store(StoreError::Write { .. }) => {
                "記録データに書き込めなかったため、この確認は保存されていません。もう一度確認してください。続く場合はディスクの状態を確認してください。".into()
            }
            LedgerError::Store(StoreError::Purged(month)) => format!(
                "{}年{}月の記録は保存期間が終わり、削除されています。",
                month.year(),
                month.month()
            ),
            LedgerError::Store(StoreError::BadCheckId(_)) => {
                "確認IDの形式が正しくありません（半角英数字64文字まで）。何も記録していません。".into()
            }
            LedgerError::Store(_) => "記録データの読み書きに失敗しました。もう一度実行し、続く場合はディスクの状態を確認してください。".into(),
            LedgerError::Encode(_) => "記録を作れませんでした。何も記録していません。開発元に連絡してください。".into(),
            LedgerError::NotFound(id) => format!("確認 {id} は見つかりません。"),
            LedgerError::Month(_) => visit_date_message_ja(),
        }
    }
}

/// What staff are told when a visit date lies outside the years the store holds.
pub fn visit_date_message_ja() -> String {
    "受診日は 2000年から2999年までの日付で入力してください（例: 2026-11-05）。何も記録していません。"
        .into()
}

/// What staff are told of a repair the store made (a [`HealthNote`] of damage).
pub fn health_note_ja(note: &HealthNote) -> String {
    let when = chrono::DateTime::parse_from_rfc3339(&note.at)
        .map(|t| {
            t.with_timezone(&crate::check::jst())
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|_| note.at.clone());
    let what = match note.kind {
        HealthKind::IndexRebuilt => {
            "索引が壊れていたため、記録ファイルから作り直しました。確認の記録は失われていません。"
        }
        HealthKind::SegmentDamaged => {
            "記録ファイルの一部が壊れていました。壊れた部分は quarantine フォルダーに退避し、その前後の確認は保存し直しました。"
        }
        HealthKind::UnreadableRecords => {
            "開けない記録があります（月の鍵の破損、または他の端末からの鍵が未着）。記録は消さずに残してあります。"
        }
        HealthKind::DocumentDamaged => "共有設定の文書が壊れていたため、退避して作り直しました。",
        HealthKind::KeyDamaged => {
            "月の鍵のファイルが壊れています。その鍵で保存した記録は、ペアリングした端末から鍵が届くまで読めません（記録は残してあります）。"
        }
        _ => "保存データを修復しました。",
    };
    format!("{when} {what}（詳細: {}）", note.detail)
}

/// The month counters the index keeps for each check (bits of [`CheckClass::tags`]).
pub mod tags {
    /// Checked with a card.
    pub const BY_CARD: u32 = 1 << 0;
    /// Of which with the PIN.
    pub const PIN: u32 = 1 << 1;
    /// Captured while offline.
    pub const CAPTURED_OFFLINE: u32 = 1 << 2;
    /// Claimed as 不詳.
    pub const FUSHOU: u32 = 1 << 3;
    /// Claimed with the old qualification.
    pub const OLD: u32 = 1 << 4;
}

/// How the store classifies a check (状態区分): the daemon's fold, seen by the index, and
/// the keys the patient's history is found by ([`history`]).
#[derive(Debug, Clone)]
pub struct CheckClassifier {
    history: HistoryKey,
}

impl CheckClassifier {
    /// The class of a folded check.
    pub fn class_of(c: &CheckState) -> CheckClass {
        let mut t = 0;
        if let Some(card) = &c.captured.card {
            t |= tags::BY_CARD;
            if card.method == crate::domain::IdentityMethod::Pin {
                t |= tags::PIN;
            }
        }
        if c.was_captured_offline() {
            t |= tags::CAPTURED_OFFLINE;
        }
        match c.resolution.as_ref().map(|r| r.basis.as_str()) {
            Some("fushou") => t |= tags::FUSHOU,
            Some("old") => t |= tags::OLD,
            _ => {}
        }
        CheckClass {
            open: c.is_open(),
            tags: t,
        }
    }
}

impl Classifier for CheckClassifier {
    fn version(&self) -> u32 {
        // Raise the high half whenever `class_of`, the fold or the lookup keys would answer
        // differently. The low half is the history key's: another key, other lookup keys.
        // 2: decisions replaceable until claimed; reports re-open; code-3 waits for staff.
        // 3: lookup keys for the patient history.
        (3 << 16) | u32::from(self.history.fingerprint())
    }

    fn classify(&self, check_id: &str, events: &[tsunagi_sync::Event]) -> CheckClass {
        fold_events(check_id, events)
            .map(|c| Self::class_of(&c))
            .unwrap_or_default()
    }

    fn lookup_keys(&self, check_id: &str, events: &[tsunagi_sync::Event]) -> Vec<LookupKey> {
        fold_events(check_id, events)
            .map(|c| self.history.keys_of(&c))
            .unwrap_or_default()
    }

    fn classify_with_keys(
        &self,
        check_id: &str,
        events: &[tsunagi_sync::Event],
    ) -> (CheckClass, Vec<LookupKey>) {
        // One fold for both: the index asks on every update and for every check at a rebuild.
        match fold_events(check_id, events) {
            Some(c) => (Self::class_of(&c), self.history.keys_of(&c)),
            None => (CheckClass::default(), Vec::new()),
        }
    }
}

/// The fold of a check's stored events (those of an unknown kind left out).
fn fold_events(check_id: &str, events: &[tsunagi_sync::Event]) -> Option<CheckState> {
    let events: Vec<CheckEvent> = events
        .iter()
        .filter_map(|e| serde_json::from_value(e.payload.clone()).ok())
        .collect();
    fold::fold(check_id, &events)
}

/// Folded checks kept between reads, keyed by id with the event count they were folded
/// from: a new event changes the count, so a stale entry is never served.
#[derive(Debug, Default)]
struct FoldCache {
    entries: HashMap<String, (usize, CheckState)>,
}

/// How many folded checks are kept (a few hundred bytes each).
const FOLD_CACHE: usize = 4096;

/// The checks of this device (and of its peers, once synced).
#[derive(Debug, Clone)]
pub struct Ledger {
    store: Store,
    history: HistoryKey,
    cache: Arc<Mutex<FoldCache>>,
    changes: Option<tokio::sync::broadcast::Sender<Change>>,
    decisions: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Held while one task reads a check, decides, and writes what it decided; see
/// [`Ledger::deciding`].
#[derive(Debug)]
pub struct Deciding {
    id: String,
    entry: Arc<tokio::sync::Mutex<()>>,
    map: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    _held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Deciding {
    fn drop(&mut self) {
        // Let go first, then drop the entry if nobody else holds or waits for it.
        self._held = None;
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&self.entry) == 2 {
            map.remove(&self.id);
        }
    }
}

/// An event just made durable (変更通知), for whoever follows the ledger (the API's event
/// stream). Carries ids and kinds only, never personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The check.
    pub check_id: String,
    /// The event's kind (`captured`, `answered`, `declared`, `resolved`, …).
    pub kind: &'static str,
    /// For a capture: taken while the qualification system did not answer.
    pub offline: bool,
}

/// A new check id (ULID: sortable by creation time, unique across devices).
pub fn new_check_id() -> String {
    ulid::Ulid::new().to_string()
}

impl Ledger {
    /// Opens the ledger in `dir`, waiting a few seconds if another process has it open.
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        Self::open_waiting(dir, std::time::Duration::from_secs(5))
    }

    /// Like [`Ledger::open`], waiting up to `patience` for another process to let go.
    pub fn open_waiting(dir: &Path, patience: std::time::Duration) -> Result<Self, LedgerError> {
        let history = HistoryKey::load_or_create(dir).map_err(LedgerError::HistoryKey)?;
        let mut config = StoreConfig::new(dir);
        config.classifier = Arc::new(CheckClassifier {
            history: history.clone(),
        });
        let store = Store::open_waiting(&config, patience)?;
        for note in store.health().iter().filter(|n| n.kind.is_damage()) {
            tracing::error!(kind = ?note.kind, detail = %note.detail, at = %note.at, "the store was repaired");
        }
        Ok(Self {
            store,
            history,
            cache: Arc::default(),
            changes: None,
            decisions: Arc::default(),
        })
    }

    /// Sends a [`Change`] on `changes` after each event this ledger (and its clones) make
    /// durable.
    pub fn with_changes(mut self, changes: tokio::sync::broadcast::Sender<Change>) -> Self {
        self.changes = Some(changes);
        self
    }

    /// Serialises, within this process, what reads check `id`, decides and writes (a staff
    /// resolution, a claim, numbers reported later, the reconciler's decision): without it
    /// two of them could each read the check open and each write a decision, the later one
    /// silently replacing the other. Hold the guard from the read to the write; never across
    /// a query to the qualification system. (Between devices the fold's order decides.)
    pub async fn deciding(&self, id: &str) -> Deciding {
        let entry = self
            .decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone();
        let held = entry.clone().lock_owned().await;
        Deciding {
            id: id.to_string(),
            entry,
            map: self.decisions.clone(),
            _held: Some(held),
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Records `event` of check `id` (visit in `visit_date`'s month) and waits until it is on
    /// disk. A capture is recorded once: recording it again with the same id changes nothing.
    pub async fn record(
        &self,
        id: &str,
        visit_date: NaiveDate,
        event: &CheckEvent,
    ) -> Result<(), LedgerError> {
        let month = Month::of(visit_date)?;
        let payload =
            serde_json::to_value(event).map_err(|e| LedgerError::Encode(e.to_string()))?;
        match event {
            CheckEvent::Captured(_) => self.store.capture(id, month, payload).await?,
            _ => self.store.append(id, month, payload).await?,
        };
        if let Some(changes) = &self.changes {
            // Nobody listening is fine.
            let _ = changes.send(Change {
                check_id: id.to_string(),
                kind: event.kind(),
                offline: matches!(event, CheckEvent::Captured(c) if c.reason.is_some()),
            });
        }
        Ok(())
    }

    /// Folds check `id` of `month`, from the cache while it has no new event.
    fn fold_check(&self, month: Month, id: &str) -> Result<Option<CheckState>, LedgerError> {
        let Some(info) = self.store.check_info(month, id)? else {
            return Ok(None);
        };
        let lock = || self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // Keyed by month too: one id in two months (a retry across a month's end) is two
        // checks, never one served for the other.
        let key = format!("{month}/{id}");
        if let Some((n, state)) = lock().entries.get(&key) {
            if *n == info.events {
                return Ok(Some(state.clone()));
            }
        }
        let read = self.store.check_events(month, id)?;
        // The fold keeps the first capture in store order; its writer is the check's device.
        let mut captured_by = None;
        let events: Vec<CheckEvent> = read
            .events
            .into_iter()
            .filter_map(|(event_id, e)| match serde_json::from_value(e.payload) {
                Ok(ev) => {
                    if captured_by.is_none() && matches!(ev, CheckEvent::Captured(_)) {
                        captured_by = Some(e.device);
                    }
                    Some(ev)
                }
                Err(err) => {
                    tracing::warn!(event = %event_id, error = %err, "event of an unknown kind kept but not folded");
                    None
                }
            })
            .collect();
        let mut state = fold::fold(id, &events);
        if let Some(state) = &mut state {
            state.captured_by = captured_by;
        }
        if let Some(state) = &state {
            let mut cache = lock();
            if cache.entries.len() >= FOLD_CACHE {
                cache.entries.clear();
            }
            cache.entries.insert(
                key,
                (read_count(&read.rejected, info.events), state.clone()),
            );
        }
        Ok(state)
    }

    /// Folds every check of a month in turn and hands it to `f`, holding one check at a
    /// time (a month can hold tens of thousands). This reads the whole month: reports only.
    pub fn for_each_check(
        &self,
        month: Month,
        mut f: impl FnMut(CheckState),
    ) -> Result<(), LedgerError> {
        for id in self.store.check_ids(month)? {
            if let Some(state) = self.fold_check(month, &id)? {
                f(state);
            }
        }
        Ok(())
    }

    /// Every check of a month, in order of creation.
    pub fn checks(&self, month: Month) -> Result<Vec<CheckState>, LedgerError> {
        let mut out = Vec::new();
        self.for_each_check(month, |c| out.push(c))?;
        Ok(out)
    }

    /// The open checks of one month (from the index: the rest of the month is not read).
    pub fn open_checks_of(&self, month: Month) -> Result<Vec<CheckState>, LedgerError> {
        let mut out = Vec::new();
        for id in self.store.open_checks(month)? {
            if let Some(state) = self.fold_check(month, &id)? {
                out.push(state);
            }
        }
        Ok(out)
    }

    /// Checks waiting for 事後確認 (or for staff), every month.
    pub fn open_checks(&self) -> Result<Vec<CheckState>, LedgerError> {
        let mut out = Vec::new();
        for month in self.store.months()? {
            out.extend(self.open_checks_of(month)?);
        }
        Ok(out)
    }

    /// The counts of a month, from the index.
    pub fn counts(&self, month: Month) -> Result<MonthCounts, LedgerError> {
        Ok(self.store.counts(month)?)
    }

    /// What the clinic last confirmed of the patient of a visit on `visit` (前回確認情報):
    /// the latest confirmed check found by any of `keys` ([`Ledger::history_key`]), on or
    /// before `visit`, other than check `except`. Read from the index and the checks found;
    /// gone with their months.
    pub fn known_patient(
        &self,
        keys: &[LookupKey],
        visit: NaiveDate,
        except: Option<&str>,
    ) -> Result<Option<event::KnownInsurance>, LedgerError> {
        let mut found = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for k in keys {
            for (month, id) in self.store.checks_by_key(k)? {
                if seen.insert((month, id.clone())) {
                    found.extend(self.fold_check(month, &id)?);
                }
            }
        }
        Ok(history::latest_before(&found, visit, except))
    }

    /// The key patient lookups are hashed with.
    pub fn history_key(&self) -> &HistoryKey {
        &self.history
    }

    /// One check by id.
    pub fn check(&self, id: &str) -> Result<CheckState, LedgerError> {
        let not_found = || LedgerError::NotFound(id.to_string());
        let month = self.store.month_of_check(id)?.ok_or_else(not_found)?;
        self.fold_check(month, id)?.ok_or_else(not_found)
    }
}

/// The event count a fold is cached under: a check with a record that did not open is never
/// cached as complete (the count can never match), so it is read again each time.
fn read_count(rejected: &[tsunagi_sync::store::Rejected], events: usize) -> usize {
    if rejected.is_empty() {
        events
    } else {
        usize::MAX
    }
}
