//! The check ledger (確認台帳): checks as events in the store, and their folded state.
//!
//! - [`event`]: what the daemon writes (captured, answered, declared, resolved, …);
//! - [`fold`]: the pure fold of a check's events into its state, phase and deadline;
//! - [`Ledger`]: the adapter to `tsunagi-sync`'s store (one document per visit month).

pub mod event;
pub mod fold;

use std::path::Path;

use chrono::NaiveDate;
use tsunagi_sync::store::StoreConfig;
use tsunagi_sync::{Month, Store, StoreError};

use event::CheckEvent;
use fold::CheckState;

/// Why the ledger failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event could not be encoded.
    #[error("event encoding: {0}")]
    Encode(String),
    /// No check has this id.
    #[error("no check {0}")]
    NotFound(String),
}

impl LedgerError {
    /// The message for staff.
    pub fn message_ja(&self) -> String {
        match self {
            LedgerError::Store(StoreError::InUse { .. }) => {
                "記録データを別の tsunagi（tsunagid など）が使用中です。少し待ってからもう一度実行してください。".into()
            }
            LedgerError::Store(StoreError::Corrupt { path, .. }) => format!(
                "保存データが破損しています（{path}）。`tsunagid` を起動すると破損部分を退避して復旧します。"
            ),
            LedgerError::Store(e) => format!("保存データの読み書きに失敗しました: {e}"),
            LedgerError::Encode(e) => format!("記録を作れませんでした: {e}"),
            LedgerError::NotFound(id) => format!("確認 {id} は見つかりません。"),
        }
    }
}

/// The checks of this device (and of its peers, once synced).
#[derive(Debug, Clone)]
pub struct Ledger {
    store: Store,
}

/// A new check id (ULID: sortable by creation time, unique across devices).
pub fn new_check_id() -> String {
    ulid::Ulid::new().to_string()
}

impl Ledger {
    /// Opens the ledger in `dir`, waiting a few seconds if another process has it open; a
    /// damaged database is set aside and a fresh one started.
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        Self::open_waiting(dir, std::time::Duration::from_secs(5))
    }

    /// Like [`Ledger::open`], waiting up to `patience` for another process to let go.
    pub fn open_waiting(dir: &Path, patience: std::time::Duration) -> Result<Self, LedgerError> {
        let config = StoreConfig::new(dir);
        let store = match Store::open_waiting(&config, patience) {
            Ok(store) => store,
            Err(StoreError::Corrupt { .. }) => {
                let (store, aside) = Store::open_or_recover(&config)?;
                if let Some(aside) = aside {
                    tracing::error!(aside = %aside.display(), "the store was damaged and set aside");
                }
                store
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Self { store })
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Records `event` of check `id` (visit in `visit_date`'s month) and waits until it is on
    /// disk.
    pub async fn record(
        &self,
        id: &str,
        visit_date: NaiveDate,
        event: &CheckEvent,
    ) -> Result<(), LedgerError> {
        let payload =
            serde_json::to_value(event).map_err(|e| LedgerError::Encode(e.to_string()))?;
        self.store
            .append_durable(id, Month::of(visit_date), payload)
            .await?;
        Ok(())
    }

    /// Folds every check of a month in turn and hands it to `f`, holding one check at a
    /// time (a month can hold tens of thousands).
    pub fn for_each_check(
        &self,
        month: Month,
        mut f: impl FnMut(CheckState),
    ) -> Result<(), LedgerError> {
        for id in self.store.check_ids(month)? {
            let events: Vec<CheckEvent> = self
                .store
                .check_events(month, &id)?
                .events
                .into_iter()
                .filter_map(|(event_id, e)| match serde_json::from_value(e.payload) {
                    Ok(ev) => Some(ev),
                    Err(err) => {
                        tracing::warn!(event = %event_id, error = %err, "event of an unknown kind kept but not folded");
                        None
                    }
                })
                .collect();
            if let Some(state) = fold::fold(&id, &events) {
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

    /// Every check of every month still held.
    pub fn all_checks(&self) -> Result<Vec<CheckState>, LedgerError> {
        let mut out = Vec::new();
        for month in self.store.months()? {
            self.for_each_check(month, |c| out.push(c))?;
        }
        Ok(out)
    }

    /// Checks waiting for 事後確認 (or for staff).
    pub fn open_checks(&self) -> Result<Vec<CheckState>, LedgerError> {
        let mut out = Vec::new();
        for month in self.store.months()? {
            self.for_each_check(month, |c| {
                if c.is_open() {
                    out.push(c);
                }
            })?;
        }
        Ok(out)
    }

    /// One check by id. Reads only that check's events once its month has been read.
    pub fn check(&self, id: &str) -> Result<CheckState, LedgerError> {
        let not_found = || LedgerError::NotFound(id.to_string());
        let month = self.store.month_of_check(id)?.ok_or_else(not_found)?;
        let events: Vec<CheckEvent> = self
            .store
            .check_events(month, id)?
            .events
            .into_iter()
            .filter_map(|(_, e)| serde_json::from_value(e.payload).ok())
            .collect();
        fold::fold(id, &events).ok_or_else(not_found)
    }
}
