//! Plugin signatures (プラグインの署名): ed25519 keys, their files, and `X.wasm.sig`.
//!
//! # Formats
//!
//! - **Public key** (one line, for `trusted_keys` and the operator):
//!   `tsunagi-plugin-key:<base64 of the 32-byte ed25519 public key>`.
//! - **Secret key file** (created `0600`, refused if group or others may read it):
//!   `tsunagi-plugin-secret-key:<base64 of the 32-byte ed25519 seed>` and a newline.
//! - **Signature file** `X.wasm.sig`, JSON:
//!   `{"format": "tsunagi-plugin-signature/1", "key": "<public key line>",
//!     "sha256": "<hex of the wasm file's sha256>", "signature": "<base64, 64 bytes>"}`.
//!   The signed message is the ASCII text `tsunagi-plugin-signature/1\n` followed by the 32
//!   raw bytes of the sha256: the prefix keeps a plugin signature from ever being mistaken for
//!   any other ed25519 signature made with the same key. `sha256` is there for people
//!   comparing files; verification recomputes it and never trusts it.
//!
//! Verification is strict (`verify_strict`: no small-order keys or malleable signatures).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The prefix of a public key line.
pub const PUBLIC_KEY_PREFIX: &str = "tsunagi-plugin-key:";
/// The prefix of a secret key file's content.
pub const SECRET_KEY_PREFIX: &str = "tsunagi-plugin-secret-key:";
/// The signature file's format tag, also the signed message's prefix (with a newline).
pub const SIGNATURE_FORMAT: &str = "tsunagi-plugin-signature/1";

/// A key plugins may be signed with (署名鍵の公開鍵): 32 bytes checked to be a valid
/// ed25519 point when parsed. Kept as bytes, not a `VerifyingKey`, so the errors that carry
/// one stay small.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Eight characters for logs.
    pub fn short(&self) -> String {
        STANDARD.encode(self.0).chars().take(8).collect()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_KEY_PREFIX}{}", STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    /// Tolerates surrounding whitespace (a key pasted from a terminal).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s
            .trim()
            .strip_prefix(PUBLIC_KEY_PREFIX)
            .ok_or(KeyError::NotAPublicKey)?;
        let bytes: [u8; 32] = STANDARD
            .decode(body.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(KeyError::NotAPublicKey)?;
        VerifyingKey::from_bytes(&bytes)
            .map(|k| PublicKey(k.to_bytes()))
            .map_err(|_| KeyError::NotAPublicKey)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "{s:?} は公開鍵ではありません（{PUBLIC_KEY_PREFIX}… の形です）"
            ))
        })
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A signing key. `Debug` shows only its public half.
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public().short())
    }
}

impl SecretKey {
    /// Its public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// A new key from the operating system's randomness.
    pub fn generate() -> Self {
        SecretKey(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// Writes the key to a new file readable only by its owner. Refuses to overwrite.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = options.open(path).map_err(io)?;
        let text = format!(
            "{SECRET_KEY_PREFIX}{}\n",
            STANDARD.encode(self.0.to_bytes())
        );
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Reads a key file, refusing one that group or others could read.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(KeyError::TooOpen {
                    path: path.to_path_buf(),
                    mode: mode & 0o777,
                });
            }
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let seed: [u8; 32] = text
            .trim()
            .strip_prefix(SECRET_KEY_PREFIX)
            .and_then(|b| STANDARD.decode(b.trim()).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| KeyError::NotASecretKey {
                path: path.to_path_buf(),
            })?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// Signs a plugin's bytes.
    pub fn sign(&self, wasm: &[u8]) -> SignatureFile {
        let digest = sha256(wasm);
        let signature = self.0.sign(&message(&digest));
        SignatureFile {
            format: SIGNATURE_FORMAT.to_string(),
            key: self.public(),
            sha256: hex::encode(digest),
            signature: STANDARD.encode(signature.to_bytes()),
        }
    }
}

/// The content of `X.wasm.sig`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// Always [`SIGNATURE_FORMAT`].
    pub format: String,
    /// Who signed.
    pub key: PublicKey,
    /// Hex sha256 of the signed file (informative).
    pub sha256: String,
    /// Base64 of the 64-byte signature.
    pub signature: String,
}

impl SignatureFile {
    /// The file's text.
    pub fn to_text(&self) -> String {
        // Serialising these four strings cannot fail; fall back to an empty object that
        // verification refuses rather than panic.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

/// Where a plugin's signature lives: the file name with `.sig` appended.
pub fn signature_path(wasm: &Path) -> PathBuf {
    let mut name = wasm.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// The sha256 of some bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn message(digest: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_FORMAT.len() + 1 + 32);
    m.extend_from_slice(SIGNATURE_FORMAT.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(digest);
    m
}

/// Checks `wasm` against the text of its signature file; returns the signer.
pub fn verify(
    wasm: &[u8],
    sig_text: &str,
    trusted: &[PublicKey],
) -> Result<PublicKey, VerifyError> {
    let file: SignatureFile =
        serde_json::from_str(sig_text).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if file.format != SIGNATURE_FORMAT {
        return Err(VerifyError::Malformed(format!(
            "unknown format {:?}",
            file.format
        )));
    }
    let bytes: [u8; 64] = STANDARD
        .decode(file.signature.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| VerifyError::Malformed("signature is not 64 bytes of base64".into()))?;
    if !trusted.contains(&file.key) {
        return Err(VerifyError::Untrusted { key: file.key });
    }
    let digest = sha256(wasm);
    VerifyingKey::from_bytes(&file.key.0)
        .and_then(|k| k.verify_strict(&message(&digest), &Signature::from_bytes(&bytes)))
        .map_err(|_| VerifyError::Mismatch {
            key: file.key.clone(),
        })?;
    Ok(file.key)
}

/// Reads `X.wasm.sig` and verifies `X.wasm`'s bytes against it.
pub fn verify_file(
    wasm_path: &Path,
    wasm: &[u8],
    trusted: &[PublicKey],
) -> Result<PublicKey, VerifyError> {
    let sig_path = signature_path(wasm_path);
    let text = match std::fs::read_to_string(&sig_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VerifyError::Missing { path: sig_path })
        }
        Err(e) => {
            return Err(VerifyError::Malformed(format!(
                "{}: {e}",
                sig_path.display()
            )))
        }
    };
    verify(wasm, &text, trusted)
}

/// A key could not be made, read or parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not a `tsunagi-plugin-key:` line.
    #[error("not a public key")]
    NotAPublicKey,
    /// The file is not a secret key file.
    #[error("{path}: not a secret key file")]
    NotASecretKey {
        /// The file.
        path: PathBuf,
    },
    /// The secret key file is readable by group or others.
    #[error("{path}: mode {mode:o} is readable by others")]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading or writing failed (or the file exists already).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl KeyError {
    /// The message for the operator.
    pub fn message_ja(&self) -> String {
        match self {
            KeyError::NotAPublicKey => format!(
                "公開鍵の形ではありません（{PUBLIC_KEY_PREFIX}<base64> の1行です）"
            ),
            KeyError::NotASecretKey { path } => format!(
                "{} は署名用の秘密鍵ファイルではありません",
                path.display()
            ),
            KeyError::TooOpen { path, mode } => format!(
                "秘密鍵ファイル {} は他の利用者も読める権限（{mode:o}）です。chmod 600 にしてから使ってください",
                path.display()
            ),
            KeyError::Io { path, source } if source.kind() == std::io::ErrorKind::AlreadyExists => format!(
                "{} はもうあります。鍵を上書きしないので、別の名前を指定してください",
                path.display()
            ),
            KeyError::Io { path, source } => {
                format!("鍵ファイル {} を読み書きできません: {source}", path.display())
            }
        }
    }
}

/// A signature was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// There is no `X.wasm.sig`.
    #[error("no signature file {path}")]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The signature file cannot be read as one.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// Signed by a key not in the trusted list.
    #[error("signed by untrusted key {key}")]
    Untrusted {
        /// The signer.
        key: PublicKey,
    },
    /// The signature does not match the file (altered after signing, or a forged signature).
    #[error("signature by {key} does not match the file")]
    Mismatch {
        /// The claimed signer.
        key: PublicKey,
    },
}

impl VerifyError {
    /// The message for staff.
    pub fn message_ja(&self) -> String {
        match self {
            VerifyError::Missing { path } => format!(
                "署名ファイル {} がありません（署名のないプラグインは読み込みません）",
                path.display()
            ),
            VerifyError::Malformed(d) => format!("署名ファイルの形が正しくありません（{d}）"),
            VerifyError::Untrusted { key } => {
                format!("信頼する鍵の一覧にない鍵 {key} で署名されています")
            }
            VerifyError::Mismatch { .. } => {
                "署名がファイルの中身と合いません（署名の後で書き換えられたか、署名が偽物です）"
                    .to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn it_accepts_its_own_signature_and_refuses_any_change() {
        let key = SecretKey::generate();
        let other = SecretKey::generate();
        let wasm = b"\0asm component bytes";
        let sig = key.sign(wasm).to_text();
        let trusted = [key.public()];
        assert_eq!(verify(wasm, &sig, &trusted).unwrap(), key.public());
        assert!(matches!(
            verify(b"\0asm component bytez", &sig, &trusted),
            Err(VerifyError::Mismatch { .. })
        ));
        assert!(matches!(
            verify(wasm, &sig, &[other.public()]),
            Err(VerifyError::Untrusted { .. })
        ));
        // A signature by another key, relabelled as the trusted key's, does not verify.
        let mut forged = other.sign(wasm);
        forged.key = key.public();
        assert!(matches!(
            verify(wasm, &forged.to_text(), &trusted),
            Err(VerifyError::Mismatch { .. })
        ));
        assert!(matches!(
            verify(wasm, "{}", &trusted),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn it_round_trips_public_keys_and_tolerates_whitespace() {
        let key = SecretKey::generate().public();
        let text = format!("  {key}\n");
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
        assert!("tsunagi-plugin-key:AAAA".parse::<PublicKey>().is_err());
        assert!("ssh-ed25519 AAAA".parse::<PublicKey>().is_err());
    }

    #[test]
    fn it_writes_secret_keys_private_and_refuses_open_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = SecretKey::generate();
        key.write_new(&path).unwrap();
        assert_eq!(SecretKey::read(&path).unwrap().public(), key.public());
        assert!(matches!(key.write_new(&path), Err(KeyError::Io { .. })));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                SecretKey::read(&path),
                Err(KeyError::TooOpen { .. })
            ));
        }
    }
}
