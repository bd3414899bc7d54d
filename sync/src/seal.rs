//! Month keys (月別鍵) and sealing: every event is stored encrypted under its month's key.
//!
//! Keys live in small files outside sled (one per month, mode 600, written atomically),
//! because neither sled's free space nor automerge's history can be trusted to forget: at the
//! end of retention, deleting the key file is what makes the month's data unreadable.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::device::write_private_atomically;
use crate::event::Month;

const NONCE_LEN: usize = 24;

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// A key file could not be read or written.
    #[error("month key {month}: {source}")]
    Io {
        /// The month.
        month: Month,
        /// The OS error.
        source: std::io::Error,
    },
    /// The month's key is gone (purged) or was never here.
    #[error("no key for {0} (purged, or not yet received from a peer)")]
    NoKey(Month),
    /// The key file is not 32 bytes.
    #[error("month key file for {0} is damaged")]
    DamagedKey(Month),
    /// The sealed bytes do not open with the key (tampered, truncated, or another key).
    #[error("sealed value does not open (damaged or not ours)")]
    Open,
}

/// The month keys of this device.
pub struct KeyRing {
    dir: PathBuf,
    cache: Mutex<HashMap<Month, [u8; 32]>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// The key ring kept in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, month: Month) -> PathBuf {
        self.dir.join(format!("{month}.key"))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<Month, [u8; 32]>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The month's key, if this device has it.
    pub fn get(&self, month: Month) -> Result<[u8; 32], SealError> {
        if let Some(k) = self.cache().get(&month) {
            return Ok(*k);
        }
        match fs::read(self.path(month)) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| SealError::DamagedKey(month))?;
                self.cache().insert(month, key);
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SealError::NoKey(month)),
            Err(source) => Err(SealError::Io { month, source }),
        }
    }

    /// The month's key, created (durably) if this device has none.
    pub fn get_or_create(&self, month: Month) -> Result<[u8; 32], SealError> {
        match self.get(month) {
            Err(SealError::NoKey(_)) => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                self.install(month, key)?;
                Ok(key)
            }
            other => other,
        }
    }

    /// Stores a key received from a paired peer (or created here).
    pub fn install(&self, month: Month, key: [u8; 32]) -> Result<(), SealError> {
        write_private_atomically(&self.path(month), &key)
            .map_err(|source| SealError::Io { month, source })?;
        self.cache().insert(month, key);
        Ok(())
    }

    /// Deletes the month's key for good (the end of retention).
    pub fn destroy(&self, month: Month) -> Result<(), SealError> {
        self.cache().remove(&month);
        match fs::remove_file(self.path(month)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(SealError::Io { month, source }),
        }
        if let Ok(dir) = fs::File::open(&self.dir) {
            dir.sync_all()
                .map_err(|source| SealError::Io { month, source })?;
        }
        Ok(())
    }

    /// The months this device holds keys for.
    pub fn months(&self) -> Vec<Month> {
        let mut months: Vec<Month> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".key")?.parse().ok()
            })
            .collect();
        months.sort();
        months
    }
}

/// Seals `plain` under `key`; `aad` (the event id) binds the value to its place.
pub fn seal(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    // Encryption with a valid key and nonce length cannot fail.
    let sealed = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
        .unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Opens what [`seal`] produced.
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(SealError::Open);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
        .map_err(|_| SealError::Open)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn seal_open_and_refuse_tampering() {
        let key = [7u8; 32];
        let sealed = seal(&key, b"id", b"hello");
        assert_eq!(open(&key, b"id", &sealed).unwrap(), b"hello");
        assert!(open(&key, b"other-id", &sealed).is_err());
        assert!(open(&[8u8; 32], b"id", &sealed).is_err());
        assert!(open(&key, b"id", &sealed[..10]).is_err());
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(open(&key, b"id", &flipped).is_err());
    }

    #[test]
    fn keys_persist_and_are_destroyed() {
        let dir = tempfile::tempdir().unwrap();
        let m = Month::new(2026, 11).unwrap();
        let ring = KeyRing::new(dir.path());
        assert!(matches!(ring.get(m), Err(SealError::NoKey(_))));
        let k = ring.get_or_create(m).unwrap();
        assert_eq!(KeyRing::new(dir.path()).get(m).unwrap(), k);
        assert_eq!(ring.months(), vec![m]);
        ring.destroy(m).unwrap();
        assert!(matches!(
            KeyRing::new(dir.path()).get(m),
            Err(SealError::NoKey(_))
        ));
        assert!(ring.months().is_empty());
    }
}
