//! Retention (保存期間): tombstones of purged months and the counts they keep.
//!
//! `purged/YYYY-MM.json` records that a month was purged, when, and the counts the daemon
//! kept for statistics (no personal data). It is written, durably, *before* anything of the
//! month is deleted, and it outlives the month: from then on the store refuses the month's
//! records, keys and documents from any peer, and an interrupted purge is finished at the
//! next open. The purge itself (keys first, then segments, documents and index entries)
//! is run by the facade, which holds the locks it needs.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::event::Month;
use crate::vfs::{self, Vfs};

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
        let names = match vfs.read_dir(dir) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        for name in names {
            let Some(month) = name
                .strip_suffix(".json")
                .and_then(|m| m.parse::<Month>().ok())
            else {
                continue;
            };
            let bytes = vfs::read_file(vfs.as_ref(), &dir.join(&name))?;
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
