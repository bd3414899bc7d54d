//! Known checks (既知の受付): which check ids each month holds, in memory, so the commit
//! leader's idempotency check ("does this check exist already?") reads no index for a
//! new check.
//!
//! sled 0.34 takes a global lock for every read that a batch holds exclusively; the
//! indexer's batches (hundreds of records) then stalled the leader's index read, and with
//! it every capture of a group, for milliseconds. A new check is the common case: this set
//! answers "certainly not" without the index; "maybe" (a retry, or two ids whose hashes
//! collide) still asks the index.
//!
//! The set of a month is filled from the index and what is pending the first time a
//! capture of the month needs it, and then grows with every check the leader writes. It
//! only ever holds too much (a carry-over or a purge removes checks), never too little:
//! every check written in this process passes through the leader (under the gate), and it
//! is never filled while the index is behind its segments (then the index answers).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Mutex;

use crate::event::Month;

/// The check ids of months, as 64-bit hashes.
#[derive(Debug, Default)]
pub(crate) struct Known {
    months: Mutex<HashMap<Month, HashSet<u64>>>,
    hasher: RandomState,
}

impl Known {
    fn hash(&self, check_id: &str) -> u64 {
        self.hasher.hash_one(check_id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Month, HashSet<u64>>> {
        // Each change is one insert or remove; a panic leaves nothing half-done.
        self.months.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Some(false)` if `check_id` is certainly not a check of `month`; `Some(true)` if it
    /// may be; `None` if the month's checks are not loaded.
    pub(crate) fn may_hold(&self, month: Month, check_id: &str) -> Option<bool> {
        let h = self.hash(check_id);
        self.lock().get(&month).map(|set| set.contains(&h))
    }

    /// Loads the checks of `month` (every check it holds, indexed or pending).
    pub(crate) fn load<'a>(&self, month: Month, ids: impl IntoIterator<Item = &'a str>) {
        let set = ids.into_iter().map(|id| self.hash(id)).collect();
        self.lock().insert(month, set);
    }

    /// A check of `month` was written (nothing to do if the month is not loaded: it is
    /// loaded from the index and pending records, which hold it).
    pub(crate) fn add(&self, month: Month, check_id: &str) {
        let h = self.hash(check_id);
        if let Some(set) = self.lock().get_mut(&month) {
            set.insert(h);
        }
    }

    /// Lets go of `month` (purged).
    pub(crate) fn forget(&self, month: Month) {
        self.lock().remove(&month);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_month_not_loaded_is_unknown_and_adds_wait_for_the_load() {
        let k = Known::default();
        let m: Month = "2026-11".parse().unwrap();
        assert_eq!(k.may_hold(m, "a"), None);
        k.add(m, "a");
        assert_eq!(k.may_hold(m, "a"), None);
        k.load(m, ["b"]);
        assert_eq!(k.may_hold(m, "a"), Some(false));
        assert_eq!(k.may_hold(m, "b"), Some(true));
        k.add(m, "a");
        assert_eq!(k.may_hold(m, "a"), Some(true));
        k.forget(m);
        assert_eq!(k.may_hold(m, "a"), None);
    }
}
