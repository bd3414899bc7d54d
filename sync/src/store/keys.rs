//! Month keys (月別鍵): the keys that seal a month's records, one file each, outside sled.
//!
//! `keys/YYYY-MM/<key id>.key` holds 32 bytes, mode 600. The key id is derived from the key
//! (a hash with the month), so the same key installed twice, or received from two peers, is
//! one file, and two different keys never share a name: a month started on two devices
//! while they were apart simply holds both keys, and every record names the key that sealed
//! it. A key file is never overwritten, so the copy held in memory is always the file's. A
//! damaged key file is not used (the month's other keys are) and is reported; the records
//! it sealed wait for a paired device to send the key again.
//!
//! New records are sealed with the month's smallest key id, so once devices have exchanged
//! keys they all seal with the same one.
//!
//! Keys are created under one lock, written to a uniquely named temporary file, fsynced,
//! renamed into place, and the directory fsynced before the key is used: a record is never
//! acknowledged under a key that a power cut could take away. A purged month's keys are
//! deleted and no key for it is accepted again ([`KeyRing::forget_month`]): deleting the key
//! is what makes the month's deletion real. A carry-over (`super::carry`) adds a new key to
//! a month (`KeyRing::create_carry_key`), seals the kept records again with it, and once
//! the old records are gone deletes every other key of the month
//! (`KeyRing::retire_all_but`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::event::Month;
use crate::vfs::{self, Vfs};

/// The id of a month key: 8 bytes derived from the month and the key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The id of `key` for `month`.
    pub fn of(month: Month, key: &[u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(b"tsunagi month key id\0");
        h.update(month.to_bytes());
        h.update(key);
        let mut id = [0u8; 8];
        id.copy_from_slice(&h.finalize()[..8]);
        Self(id)
    }

    /// From its 16 hex digits (as [`fmt::Display`] writes it).
    pub(crate) fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 16 {
            return None;
        }
        let mut id = [0u8; 8];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            id[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(Self(id))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

fn parse_key_file(name: &str) -> Option<KeyId> {
    KeyId::from_hex(name.strip_suffix(".key")?)
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key file could not be read or written.
    #[error("month key of {month}: {source}")]
    Io {
        /// The month.
        month: Month,
        /// The OS error.
        source: io::Error,
    },
    /// The month was purged: its keys are gone and none is accepted again.
    #[error("{0} was purged at the end of its retention; its keys are gone for good")]
    Purged(Month),
    /// A key file does not hold the key its name says.
    #[error("month key file {file} is damaged")]
    Damaged {
        /// The file.
        file: String,
    },
}

/// A month's keys, as read from its directory.
type MonthKeys = BTreeMap<KeyId, [u8; 32]>;

/// The month keys of this device.
pub(crate) struct KeyRing {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Months read from disk so far.
    months: HashMap<Month, MonthKeys>,
    /// Key files found damaged (not used; reported).
    damaged: Vec<String>,
    /// Months purged: no key is created or accepted for them.
    purged: BTreeSet<Month>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// The key ring kept in `dir` (`keys/`), refusing the `purged` months.
    pub(crate) fn new(vfs: Arc<dyn Vfs>, dir: &Path, purged: BTreeSet<Month>) -> Self {
        Self {
            vfs,
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                months: HashMap::new(),
                damaged: Vec::new(),
                purged,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section below leaves the state consistent before any I/O can fail.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn month_dir(&self, month: Month) -> PathBuf {
        self.dir.join(month.to_string())
    }

    /// Reads a month's keys from disk. A damaged key file is skipped (and reported through
    /// `damaged`): the month's other keys stay usable, and no record is sealed with it.
    fn load(&self, month: Month, damaged: &mut Vec<String>) -> Result<MonthKeys, KeyError> {
        let io = |source| KeyError::Io { month, source };
        let dir = self.month_dir(month);
        let names = match self.vfs.read_dir(&dir) {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(MonthKeys::new()),
            Err(e) => return Err(io(e)),
        };
        let mut keys = MonthKeys::new();
        for name in names {
            let Some(id) = parse_key_file(&name) else {
                continue; // temporary files of an interrupted write; removed at open
            };
            let path = dir.join(&name);
            let bytes = vfs::read_file(self.vfs.as_ref(), &path).map_err(io)?;
            match <[u8; 32]>::try_from(bytes.as_slice()) {
                Ok(key) if KeyId::of(month, &key) == id => {
                    keys.insert(id, key);
                }
                _ => {
                    tracing::error!(file = %path.display(), "month key file damaged; not used");
                    damaged.push(path.display().to_string());
                }
            }
        }
        Ok(keys)
    }

    /// Key files found damaged so far.
    pub(crate) fn damaged_files(&self) -> Vec<String> {
        self.state().damaged.clone()
    }

    fn with_month<T>(
        &self,
        month: Month,
        f: impl FnOnce(&mut State) -> Result<T, KeyError>,
    ) -> Result<T, KeyError> {
        let mut state = self.state();
        if state.purged.contains(&month) {
            return Err(KeyError::Purged(month));
        }
        if !state.months.contains_key(&month) {
            let mut damaged = Vec::new();
            let keys = self.load(month, &mut damaged)?;
            state.damaged.extend(damaged);
            state.months.insert(month, keys);
        }
        f(&mut state)
    }

    /// The key `id` of `month`, if this device holds it.
    pub(crate) fn get(&self, month: Month, id: KeyId) -> Result<Option<[u8; 32]>, KeyError> {
        self.with_month(month, |s| {
            Ok(s.months.get(&month).and_then(|k| k.get(&id)).copied())
        })
    }

    /// The key new records of `month` are sealed with, created (durably) if the month has
    /// none yet.
    pub(crate) fn sealing_key(&self, month: Month) -> Result<(KeyId, [u8; 32]), KeyError> {
        self.with_month(month, |s| {
            if let Some((id, key)) = s.months.get(&month).and_then(|k| k.first_key_value()) {
                return Ok((*id, *key));
            }
            let mut key = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut key);
            let id = self.write(month, &key)?;
            s.months.entry(month).or_default().insert(id, key);
            Ok((id, key))
        })
    }

    /// Installs a key received from a paired device. Refused for a purged month; the same
    /// key twice is one file.
    pub(crate) fn install(&self, month: Month, key: [u8; 32]) -> Result<KeyId, KeyError> {
        self.with_month(month, |s| {
            let id = KeyId::of(month, &key);
            if s.months.get(&month).is_some_and(|k| k.contains_key(&id)) {
                return Ok(id);
            }
            self.write(month, &key)?;
            s.months.entry(month).or_default().insert(id, key);
            Ok(id)
        })
    }

    /// Creates a new key for `month`, durably, beside its others: the carry-over key that
    /// the records kept past their month's retention are sealed with again
    /// ([`super::Store::purge_except`]).
    pub(crate) fn create_carry_key(&self, month: Month) -> Result<(KeyId, [u8; 32]), KeyError> {
        self.with_month(month, |s| {
            let mut key = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut key);
            let id = self.write(month, &key)?;
            s.months.entry(month).or_default().insert(id, key);
            Ok((id, key))
        })
    }

    /// Deletes every key file of `month` but `keep`'s (other keys, damaged ones, temporary
    /// files), durably: what makes a carry-over's deletion real. Refused, deleting nothing,
    /// if `keep` is not a key this device holds. Idempotent. Runs under the ring's lock, so
    /// no key is installed meanwhile.
    pub(crate) fn retire_all_but(&self, month: Month, keep: KeyId) -> Result<(), KeyError> {
        self.with_month(month, |s| {
            let io = |source| KeyError::Io { month, source };
            let Some(key) = s.months.get(&month).and_then(|k| k.get(&keep)).copied() else {
                return Err(KeyError::Io {
                    month,
                    source: io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("carry-over key {keep} is missing; no key was deleted"),
                    ),
                });
            };
            let dir = self.month_dir(month);
            let keep_name = format!("{keep}.key");
            for name in self.vfs.read_dir(&dir).map_err(io)? {
                if name == keep_name {
                    continue;
                }
                match self.vfs.remove_file(&dir.join(&name)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(e)),
                }
            }
            // Synced even when this call removed nothing: an earlier one may have removed
            // names and failed before its sync.
            self.vfs.sync_dir(&dir).map_err(io)?;
            s.months.insert(month, MonthKeys::from([(keep, key)]));
            Ok(())
        })
    }

    /// Every key of `month` (what a paired device receives).
    pub(crate) fn all(&self, month: Month) -> Result<Vec<(KeyId, [u8; 32])>, KeyError> {
        self.with_month(month, |s| {
            Ok(s.months
                .get(&month)
                .map(|k| k.iter().map(|(i, k)| (*i, *k)).collect())
                .unwrap_or_default())
        })
    }

    /// Writes a new key file durably; returns its id. Called with the state lock held, so
    /// two first events of a month never create two keys here.
    fn write(&self, month: Month, key: &[u8; 32]) -> Result<KeyId, KeyError> {
        let io = |source| KeyError::Io { month, source };
        let id = KeyId::of(month, key);
        let dir = self.month_dir(month);
        vfs::create_dir_all_durable(self.vfs.as_ref(), &dir).map_err(io)?;
        vfs::write_atomic(self.vfs.as_ref(), &dir.join(format!("{id}.key")), key).map_err(io)?;
        Ok(id)
    }

    /// Marks `month` purged (no key is created or accepted from now on) and deletes its
    /// keys, durably. Idempotent: an interrupted purge calls it again at the next open.
    pub(crate) fn forget_month(&self, month: Month) -> Result<(), KeyError> {
        let mut state = self.state();
        state.purged.insert(month);
        state.months.remove(&month);
        vfs::remove_dir_all_durable(self.vfs.as_ref(), &self.month_dir(month))
            .map_err(|source| KeyError::Io { month, source })
    }

    /// Whether any file (key or temporary) of `month` is left on disk.
    pub(crate) fn has_files(&self, month: Month) -> Result<bool, KeyError> {
        match self.vfs.is_dir(&self.month_dir(month)) {
            Ok(found) => Ok(found.is_some()),
            Err(source) => Err(KeyError::Io { month, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::vfs::sim::SimFs;
    use crate::vfs::OsFs;

    fn nov() -> Month {
        Month::new(2026, 11).unwrap()
    }

    #[test]
    fn a_month_gets_one_key_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::new(OsFs::shared(), dir.path(), BTreeSet::new());
        let (id, key) = ring.sealing_key(nov()).unwrap();
        assert_eq!(ring.sealing_key(nov()).unwrap(), (id, key));
        let again = KeyRing::new(OsFs::shared(), dir.path(), BTreeSet::new());
        assert_eq!(again.get(nov(), id).unwrap(), Some(key));
        assert_eq!(again.sealing_key(nov()).unwrap(), (id, key));
    }

    #[test]
    fn concurrent_first_events_share_one_key() {
        // It creates one key however many threads ask at once (issue 8, path 4).
        let dir = tempfile::tempdir().unwrap();
        let ring = Arc::new(KeyRing::new(OsFs::shared(), dir.path(), BTreeSet::new()));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let ring = ring.clone();
                std::thread::spawn(move || ring.sealing_key(nov()).unwrap())
            })
            .collect();
        let keys: BTreeSet<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(keys.len(), 1);
        assert_eq!(ring.all(nov()).unwrap().len(), 1);
    }

    #[test]
    fn a_second_key_is_kept_beside_the_first_and_sealing_converges() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::new(OsFs::shared(), dir.path(), BTreeSet::new());
        let (mine, _) = ring.sealing_key(nov()).unwrap();
        let theirs_key = [9u8; 32];
        let theirs = ring.install(nov(), theirs_key).unwrap();
        assert_ne!(mine, theirs);
        assert_eq!(ring.install(nov(), theirs_key).unwrap(), theirs);
        let all = ring.all(nov()).unwrap();
        assert_eq!(all.len(), 2);
        // Both devices now seal with the smaller id.
        assert_eq!(ring.sealing_key(nov()).unwrap().0, mine.min(theirs));
    }

    #[test]
    fn a_purged_month_refuses_keys_and_keeps_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::new(OsFs::shared(), dir.path(), BTreeSet::new());
        ring.sealing_key(nov()).unwrap();
        // A temporary file left by a crash goes with the month.
        std::fs::write(dir.path().join("2026-11/x.key.tmp-1-2"), b"k").unwrap();
        ring.forget_month(nov()).unwrap();
        assert!(!ring.has_files(nov()).unwrap());
        assert!(matches!(
            ring.install(nov(), [1; 32]),
            Err(KeyError::Purged(_))
        ));
        assert!(matches!(ring.sealing_key(nov()), Err(KeyError::Purged(_))));
    }

    #[test]
    fn a_key_survives_a_power_cut_once_returned() {
        // It makes the key durable (file and directories) before handing it out.
        for seed in 0..32 {
            let fs = SimFs::new();
            let vfs: Arc<dyn Vfs> = fs.clone();
            let dir = Path::new("/data/keys");
            let ring = KeyRing::new(vfs.clone(), dir, BTreeSet::new());
            let (id, key) = ring.sealing_key(nov()).unwrap();
            fs.crash(seed);
            fs.restart();
            let ring = KeyRing::new(vfs, dir, BTreeSet::new());
            assert_eq!(ring.get(nov(), id).unwrap(), Some(key), "seed {seed}");
        }
    }

    #[test]
    fn a_damaged_key_file_is_reported_and_the_others_stay_usable() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::new(OsFs::shared(), dir.path(), BTreeSet::new());
        let (mine, key) = ring.sealing_key(nov()).unwrap();
        let theirs = ring.install(nov(), [0u8; 32]).unwrap();
        // The other key's file now holds other bytes.
        std::fs::write(dir.path().join(format!("2026-11/{theirs}.key")), [1u8; 32]).unwrap();
        let again = KeyRing::new(OsFs::shared(), dir.path(), BTreeSet::new());
        assert_eq!(again.get(nov(), mine).unwrap(), Some(key));
        assert_eq!(again.get(nov(), theirs).unwrap(), None);
        assert_eq!(again.damaged_files().len(), 1);
        // New records are never sealed with the damaged one.
        assert_eq!(again.sealing_key(nov()).unwrap().0, mine);
    }
}
