//! The device identity (端末ID): an ed25519 key created on first start, kept in a file only
//! the service user can read, and shown as a readable id.
//!
//! The id follows Syncthing's device id: the base32 of a hash of the public key, cut into
//! groups with a check character per group, so a mistyped id is caught when a peer is paired.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::vfs::{self, Vfs};

/// Why the device key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceKeyError {
    /// The key file could not be read or written.
    #[error("device key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The key file is not 32 bytes.
    #[error("device key file {path} is damaged (expected 32 bytes, found {len})")]
    Damaged {
        /// The key file.
        path: String,
        /// Its length.
        len: usize,
    },
    /// Other users can read the key file.
    #[error("device key file {path} is readable by other users (mode {mode:o}); expected 600")]
    TooOpen {
        /// The key file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
}

/// This device's signing key.
pub struct DeviceKey {
    signing: SigningKey,
    id: DeviceId,
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl DeviceKey {
    /// A fresh random key (tests, and the first start).
    pub fn generate() -> Self {
        Self::from_signing(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    fn from_signing(signing: SigningKey) -> Self {
        let id = DeviceId::of(&signing.verifying_key());
        Self { signing, id }
    }

    /// Loads the key at `path`, creating it (mode 600, written atomically and made
    /// durable) if absent.
    pub fn load_or_create(vfs: &dyn Vfs, path: &Path) -> Result<Self, DeviceKeyError> {
        let shown = path.display().to_string();
        let io = |source| DeviceKeyError::Io {
            path: shown.clone(),
            source,
        };
        match vfs::read_file(vfs, path) {
            Ok(bytes) => {
                let mode = vfs.mode(path).map_err(io)?;
                if mode & 0o077 != 0 {
                    return Err(DeviceKeyError::TooOpen {
                        path: shown.clone(),
                        mode,
                    });
                }
                let secret: [u8; 32] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| DeviceKeyError::Damaged {
                            path: shown.clone(),
                            len: bytes.len(),
                        })?;
                Ok(Self::from_signing(SigningKey::from_bytes(&secret)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                vfs::write_atomic(vfs, path, &key.signing.to_bytes()).map_err(io)?;
                tracing::info!(device = %key.id, "created device key");
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// This device's id.
    pub fn id(&self) -> &DeviceId {
        &self.id
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The signing key itself, for the TLS signer of [`crate::net`]: it signs handshakes with
    /// this key directly, so the secret never leaves ed25519-dalek in another encoding.
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
}

/// A device id: 56 base32 characters of SHA-256(public key) with a Luhn mod-32 check
/// character after each 13, shown in groups of 7 (`XXXXXXX-XXXXXXX-…`, 8 groups).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId([u8; 32]);

/// A device id that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid device id: {0}")]
pub struct DeviceIdError(&'static str);

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

impl DeviceId {
    /// The id of a public key.
    pub fn of(key: &VerifyingKey) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From raw bytes (as stored in events).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

fn luhn32(chars: &[u8]) -> Option<u8> {
    // Luhn mod N over the base32 alphabet, factor alternating from 1 as Syncthing does.
    let mut factor = 1;
    let mut sum = 0u32;
    for &c in chars {
        let code = ALPHABET.iter().position(|&a| a == c)? as u32;
        let mut addend = factor * code;
        factor = if factor == 2 { 1 } else { 2 };
        addend = addend / 32 + addend % 32;
        sum += addend;
    }
    let remainder = sum % 32;
    Some(ALPHABET[((32 - remainder) % 32) as usize])
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b32 = data_encoding::BASE32_NOPAD.encode(&self.0); // 52 chars
        let mut body: Vec<u8> = b32.into_bytes();
        body.resize(52, b'A');
        let mut with_checks = Vec::with_capacity(56);
        for chunk in body.chunks(13) {
            with_checks.extend_from_slice(chunk);
            with_checks.push(luhn32(chunk).unwrap_or(b'A'));
        }
        for (i, group) in with_checks.chunks(7).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            f.write_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

impl serde::Serialize for DeviceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for DeviceId {
    type Err = DeviceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let chars: Vec<u8> = s
            .bytes()
            .filter(|c| *c != b'-' && *c != b' ')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if chars.len() != 56 {
            return Err(DeviceIdError("expected 56 characters"));
        }
        let mut body = Vec::with_capacity(52);
        for chunk in chars.chunks(14) {
            let (data, check) = chunk.split_at(13);
            match luhn32(data) {
                Some(c) if c == check[0] => body.extend_from_slice(data),
                Some(_) => return Err(DeviceIdError("check character mismatch (typo?)")),
                None => return Err(DeviceIdError("character outside A-Z, 2-7")),
            }
        }
        let bytes = data_encoding::BASE32_NOPAD
            .decode(&body)
            .map_err(|_| DeviceIdError("not base32"))?;
        let raw: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| DeviceIdError("wrong length"))?;
        Ok(Self(raw))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn id_round_trips_and_catches_typos() {
        let key = DeviceKey::generate();
        let shown = key.id().to_string();
        assert_eq!(shown.len(), 56 + 7);
        assert_eq!(shown.parse::<DeviceId>().unwrap(), *key.id());
        assert_eq!(shown.to_lowercase().parse::<DeviceId>().unwrap(), *key.id());
        // Change one data character: the group's check character no longer matches.
        let mut typo = shown.into_bytes();
        typo[0] = if typo[0] == b'A' { b'B' } else { b'A' };
        let typo = String::from_utf8(typo).unwrap();
        assert!(typo.parse::<DeviceId>().is_err());
        assert!("".parse::<DeviceId>().is_err());
        assert!("1".repeat(56).parse::<DeviceId>().is_err());
    }

    #[test]
    fn key_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        let a = DeviceKey::load_or_create(&crate::vfs::OsFs, &path).unwrap();
        let b = DeviceKey::load_or_create(&crate::vfs::OsFs, &path).unwrap();
        assert_eq!(a.id(), b.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                DeviceKey::load_or_create(&crate::vfs::OsFs, &path),
                Err(DeviceKeyError::TooOpen { .. })
            ));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            DeviceKey::load_or_create(&crate::vfs::OsFs, &path),
            Err(DeviceKeyError::Damaged { len: 5, .. })
        ));
    }
}
