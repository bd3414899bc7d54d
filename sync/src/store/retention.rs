//! Retention (保存期間): tombstones of purged months, the counts they keep, and the counts
//! carried for months whose retention ended for all but some checks.
//!
//! `purged/YYYY-MM.json` records that a month was purged, when, and the counts the daemon
//! kept for statistics (no personal data). It is written, durably, *before* anything of the
//! month is deleted, and it outlives the month: from then on the store refuses the month's
//! records, keys and documents from any peer, and an interrupted purge is finished at the
//! next open. The purge itself (keys first, then segments, documents and index entries)
//! is run by the facade, which holds the locks it needs.
//!
//! `carried/YYYY-MM.json` (`Carried`) is the same for a month whose retention ended for
//! every check but a few kept ones (カルテ持ち越し, [`super::Store::purge_except`]): the
//! counts of the checks removed so far, added field-wise ([`add_counts`]), and — while a
//! carry-over's deletion is not finished — which segment and key hold the kept records
//! (`PendingCarry`). Writing that note, after the kept records are durable in their new
//! segment and before anything is deleted, is the carry-over's commit point: once it is
//! durable the deletion is finished (by the same call, a later one, or the next open) and
//! the removed counts are counted once. A later purge of the month adds the carried counts
//! into its tombstone and deletes this file with the month.
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::event::Month;
use crate::vfs::{self, Vfs};

use super::keys::KeyId;

/// A purged month's tombstone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The month.
    pub month: Month,
    /// When it was purged (RFC 3339).
    pub purged_at: String,
    /// The counts kept (no personal data).
    pub aggregate: serde_json::Value,
}

/// The `YYYY-MM.json` files of `dir` (none when it does not exist yet), with their months.
fn month_files(vfs: &dyn Vfs, dir: &Path) -> io::Result<Vec<(Month, Vec<u8>)>> {
    let names = match vfs.read_dir(dir) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        let Some(month) = name
            .strip_suffix(".json")
            .and_then(|m| m.parse::<Month>().ok())
        else {
            continue;
        };
        out.push((month, vfs::read_file(vfs, &dir.join(&name))?));
    }
    Ok(out)
}

/// The tombstones of this device.
pub(crate) struct Tombstones {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    known: Mutex<BTreeMap<Month, Tombstone>>,
}

impl fmt::Debug for Tombstones {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tombstones")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Tombstones {
    /// Reads the tombstones in `dir`. One that does not parse still counts as a tombstone
    /// for the month its name gives: a damaged file must never bring a month back.
    pub(crate) fn load(vfs: Arc<dyn Vfs>, dir: &Path) -> io::Result<Self> {
        let mut known = BTreeMap::new();
        for (month, bytes) in month_files(vfs.as_ref(), dir)? {
            let stone = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::error!(%month, error = %e, "tombstone damaged; the month stays purged");
                Tombstone {
                    month,
                    purged_at: String::new(),
                    aggregate: serde_json::Value::Null,
                }
            });
            known.insert(month, stone);
        }
        Ok(Self {
            vfs,
            dir: dir.to_path_buf(),
            known: Mutex::new(known),
        })
    }

    fn known(&self) -> std::sync::MutexGuard<'_, BTreeMap<Month, Tombstone>> {
        // Replaced by whole inserts only.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `month` was purged.
    pub(crate) fn contains(&self, month: Month) -> bool {
        self.known().contains_key(&month)
    }

    /// The purged months.
    pub(crate) fn months(&self) -> Vec<Month> {
        self.known().keys().copied().collect()
    }

    /// Every tombstone.
    pub(crate) fn all(&self) -> BTreeMap<Month, Tombstone> {
        self.known().clone()
    }

    /// Records, durably, that `month` is purged. The month counts as purged from the first
    /// attempt on, even if writing the tombstone fails: the file may have reached the disk
    /// anyway (a failed directory fsync), and then the next open would delete whatever the
    /// month received meanwhile. Call again until it succeeds.
    pub(crate) fn add(&self, month: Month, aggregate: serde_json::Value) -> io::Result<()> {
        let stone = {
            let mut known = self.known();
            known
                .entry(month)
                .or_insert_with(|| Tombstone {
                    month,
                    purged_at: chrono::Utc::now().to_rfc3339(),
                    aggregate,
                })
                .clone()
        };
        let bytes = serde_json::to_vec_pretty(&stone).map_err(io::Error::other)?;
        vfs::create_dir_all_durable(self.vfs.as_ref(), &self.dir)?;
        vfs::write_atomic(
            self.vfs.as_ref(),
            &self.dir.join(format!("{month}.json")),
            &bytes,
        )
    }
}

/// `earlier` and `later` counts added field-wise: numbers are added, objects are merged field
/// by field (recursively), and anything else is taken from `later` (a field only in
/// `earlier` is kept). So a month's statistics stay whole however many times its
/// retention ended for some of its checks.
pub fn add_counts(earlier: &serde_json::Value, later: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match (earlier, later) {
        (Value::Object(a), Value::Object(b)) => {
            let mut out = a.clone();
            for (k, v) in b {
                let merged = match a.get(k) {
                    Some(old) => add_counts(old, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Number(a), Value::Number(b)) => {
            let sum = if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
                x.checked_add(y).map(serde_json::Number::from)
            } else if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
                x.checked_add(y).map(serde_json::Number::from)
            } else {
                None
            };
            match sum {
                Some(n) => Value::Number(n),
                // Floats, or an integer sum past 64 bits.
                None => serde_json::Number::from_f64(
                    a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0),
                )
                .map_or_else(|| later.clone(), Value::Number),
            }
        }
        _ => later.clone(),
    }
}

/// A carry-over whose deletion is not finished: the segments of the month numbered below
/// `segment`, and every key of the month but `key`, are to be deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PendingCarry {
    /// The carry-over key (hex key id): the one key the month keeps.
    pub key: String,
    /// The carry-over segment: it and the later ones are kept.
    pub segment: u32,
}

impl PendingCarry {
    /// The carry-over key's id.
    pub(crate) fn key_id(&self) -> Option<KeyId> {
        KeyId::from_hex(&self.key)
    }
}

/// The counts carried for a month whose retention ended for some of its checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Carried {
    /// The month.
    pub month: Month,
    /// When the last carry-over was committed (RFC 3339).
    pub carried_at: String,
    /// The counts of every check removed so far (no personal data).
    pub counts: serde_json::Value,
    /// The carry-over whose deletion is still to be finished.
    pub pending: Option<PendingCarry>,
}

/// The carried counts of this device (`carried/`).
pub(crate) struct CarriedCounts {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    /// Each month's entry, and whether the file says the same (a write that failed may or
    /// may not have reached the disk: it is written again before anything is deleted).
    known: Mutex<BTreeMap<Month, (Carried, bool)>>,
}

impl fmt::Debug for CarriedCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CarriedCounts")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl CarriedCounts {
    /// Reads the carried counts in `dir`. One that does not parse is logged and counts as
    /// none (its counts are lost; the month's records are not touched).
    pub(crate) fn load(vfs: Arc<dyn Vfs>, dir: &Path) -> io::Result<Self> {
        let mut known = BTreeMap::new();
        for (month, bytes) in month_files(vfs.as_ref(), dir)? {
            match serde_json::from_slice::<Carried>(&bytes) {
                Ok(c) if c.month == month => {
                    known.insert(month, (c, true));
                }
                Ok(_) => tracing::error!(%month, "carried counts name another month; ignored"),
                Err(e) => {
                    tracing::error!(%month, error = %e, "carried counts damaged; ignored")
                }
            }
        }
        Ok(Self {
            vfs,
            dir: dir.to_path_buf(),
            known: Mutex::new(known),
        })
    }

    fn known(&self) -> std::sync::MutexGuard<'_, BTreeMap<Month, (Carried, bool)>> {
        // Replaced by whole inserts only.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, month: Month) -> PathBuf {
        self.dir.join(format!("{month}.json"))
    }

    /// The month's carried counts, if any.
    pub(crate) fn get(&self, month: Month) -> Option<Carried> {
        self.known().get(&month).map(|(c, _)| c.clone())
    }

    /// Every month's carried counts.
    pub(crate) fn all(&self) -> BTreeMap<Month, serde_json::Value> {
        self.known()
            .iter()
            .map(|(m, (c, _))| (*m, c.counts.clone()))
            .collect()
    }

    /// The months with a carry-over to finish.
    pub(crate) fn pending_months(&self) -> Vec<Month> {
        self.known()
            .iter()
            .filter(|(_, (c, _))| c.pending.is_some())
            .map(|(m, _)| *m)
            .collect()
    }

    /// Commits a carry-over of `month`: adds `removed` to its counts and notes `pending`,
    /// durably. The month counts as committed from the first attempt on, even if the write
    /// fails (the file may have reached the disk anyway): [`CarriedCounts::make_durable`]
    /// writes it again before anything is deleted, and the counts are never added twice.
    pub(crate) fn commit(
        &self,
        month: Month,
        removed: &serde_json::Value,
        pending: PendingCarry,
    ) -> io::Result<()> {
        {
            let mut known = self.known();
            let counts = match known.get(&month) {
                Some((c, _)) => add_counts(&c.counts, removed),
                None => removed.clone(),
            };
            known.insert(
                month,
                (
                    Carried {
                        month,
                        carried_at: chrono::Utc::now().to_rfc3339(),
                        counts,
                        pending: Some(pending),
                    },
                    false,
                ),
            );
        }
        self.make_durable(month)
    }

    /// Writes the month's entry if the file may not say the same.
    pub(crate) fn make_durable(&self, month: Month) -> io::Result<()> {
        let Some((entry, false)) = self.known().get(&month).cloned() else {
            return Ok(());
        };
        self.write(&entry)?;
        if let Some((now, durable)) = self.known().get_mut(&month) {
            // Unless it changed meanwhile (the caller holds the commit gate: it did not).
            *durable |= *now == entry;
        }
        Ok(())
    }

    /// Notes, durably, that the month's carry-over is finished.
    pub(crate) fn finished(&self, month: Month) -> io::Result<()> {
        let entry = {
            let mut known = self.known();
            let Some((c, durable)) = known.get_mut(&month) else {
                return Ok(());
            };
            if c.pending.is_none() && *durable {
                return Ok(());
            }
            c.pending = None;
            *durable = false;
            c.clone()
        };
        self.write(&entry)?;
        if let Some((now, durable)) = self.known().get_mut(&month) {
            *durable |= *now == entry;
        }
        Ok(())
    }

    fn write(&self, entry: &Carried) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(entry).map_err(io::Error::other)?;
        vfs::create_dir_all_durable(self.vfs.as_ref(), &self.dir)?;
        vfs::write_atomic(self.vfs.as_ref(), &self.path(entry.month), &bytes)
    }

    /// Whether a file of `month` is left on disk.
    pub(crate) fn has_file(&self, month: Month) -> io::Result<bool> {
        Ok(self.vfs.is_dir(&self.path(month))?.is_some())
    }

    /// Forgets `month` and deletes its file, durably (a purge: its tombstone holds the
    /// counts now).
    pub(crate) fn remove(&self, month: Month) -> io::Result<()> {
        self.known().remove(&month);
        match self.vfs.remove_file(&self.path(month)) {
            Ok(()) => self.vfs.sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_add_field_wise() {
        // It adds numbers, merges objects, takes other fields from the later counts and
        // keeps a field only the earlier ones have.
        let earlier =
            json!({"checks": 3, "by_card": 2, "nested": {"a": 1}, "note": "old", "only_before": 4});
        let later = json!({"checks": 2, "by_card": 0, "nested": {"a": 2, "b": 1}, "note": "new", "open": 1});
        assert_eq!(
            add_counts(&earlier, &later),
            json!({"checks": 5, "by_card": 2, "nested": {"a": 3, "b": 1}, "note": "new", "only_before": 4, "open": 1})
        );
        assert_eq!(add_counts(&json!(-2), &json!(1)), json!(-1));
        assert_eq!(add_counts(&json!(0.5), &json!(1)), json!(1.5));
        assert_eq!(
            add_counts(&serde_json::Value::Null, &json!({"checks": 1})),
            json!({"checks": 1})
        );
    }
}
