//! Patient history (前回確認情報): what this clinic last confirmed of a patient — insurer,
//! numbers, 負担割合, 高齢受給者証 and 限度額 data, birth date — so that a check captured while
//! the qualification system is down tells staff the right co-payment (R13) and asks for a
//! 申立書 only when the clinic knows nothing of the patient (R14).
//!
//! The history is not a store of its own: it is read from the checks themselves (their
//! confirmed answers), found through the index's lookup keys. A check is found by keyed
//! hashes (HMAC-SHA-256 under this device's history key, cut to 16 bytes) of its card
//! certificate's public key and of the insurance numbers it holds — never by the individual
//! number, which is never read. So the history is sealed, replicated and retained exactly as
//! the checks it came from: when a month's retention ends, what it taught is gone with it.
//!
//! The history key never leaves the device: each device hashes every check it holds (its own
//! and its peers') with its own key, so devices need not share it.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use chrono::NaiveDate;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tsunagi_sync::store::LookupKey;

use super::event::{AnswerStatus, KnownInsurance, KnownSource, NumbersRecord};
use super::fold::CheckState;
use crate::domain::InsurerNumber;

/// The history key's file in the data directory.
const KEY_FILE: &str = "history.key";

/// The device's secret for patient lookup keys (前回情報の鍵). `Debug` never prints it.
#[derive(Clone)]
pub struct HistoryKey([u8; 32]);

impl std::fmt::Debug for HistoryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HistoryKey(…)")
    }
}

impl HistoryKey {
    /// The key of the data directory `dir`, made on first use (0600, written whole and
    /// fsynced before it is linked into place, so two openers agree on one key). A damaged
    /// key is set aside and replaced: the patient history restarts (the checks stay; the
    /// index is rebuilt under the new key), which is said in the log.
    pub fn load_or_create(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(KEY_FILE);
        for _ in 0..3 {
            match std::fs::read(&path) {
                Ok(bytes) => match <[u8; 32]>::try_from(bytes.as_slice()) {
                    Ok(k) => return Ok(Self(k)),
                    Err(_) => {
                        let aside = path.with_extension(format!(
                            "damaged-{}",
                            chrono::Utc::now().format("%Y%m%dT%H%M%S")
                        ));
                        tracing::error!(aside = %aside.display(), "the patient history key is damaged; setting it aside and starting the history again");
                        std::fs::rename(&path, &aside)?;
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let mut key = [0u8; 32];
            rand::Rng::fill(&mut rand::thread_rng(), &mut key[..]);
            if create_exclusive(dir, &path, &key)? {
                return Ok(Self(key));
            }
            // Another opener linked its key first: read that one.
        }
        Err(io::Error::other(
            "the patient history key could not be made",
        ))
    }

    /// A key made up for tests and tools that keep no history.
    pub fn ephemeral() -> Self {
        let mut key = [0u8; 32];
        rand::Rng::fill(&mut rand::thread_rng(), &mut key[..]);
        Self(key)
    }

    /// A short fingerprint, part of the index's classifier version: a new key makes the
    /// index hash every check again.
    pub fn fingerprint(&self) -> u16 {
        let tag = self.mac(b"fingerprint", &[]);
        u16::from_be_bytes([tag[0], tag[1]])
    }

    fn mac(&self, domain: &[u8], data: &[u8]) -> LookupKey {
        // HMAC takes a key of any length: new_from_slice cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return [0; 16];
        };
        mac.update(domain);
        mac.update(&[0]);
        mac.update(data);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// The lookup key of a card: its user-authentication certificate's public key. `None`
    /// when the certificate does not parse.
    pub fn card(&self, certificate_der: &[u8]) -> Option<LookupKey> {
        use der::{Decode, Encode};
        let cert = x509_cert::Certificate::from_der(certificate_der).ok()?;
        let spki = cert.tbs_certificate.subject_public_key_info.to_der().ok()?;
        Some(self.mac(b"card-public-key", &spki))
    }

    /// The lookup key of a set of insurance numbers (保険者番号・記号・番号・枝番), compared as
    /// the qualification system compares them: a 6-digit insurer number padded with spaces or
    /// zeros alike, 記号 and 番号 after width normalisation. The 枝番 is part of it: without
    /// it a family shares numbers, and one member's birth date must never be told for
    /// another's.
    pub fn numbers(&self, n: &NumbersRecord) -> LookupKey {
        let fold = |s: &str| crate::oqs::fold_width(s);
        let text = format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}",
            insurer_digits(&n.insurer),
            n.symbol.as_deref().map(fold).unwrap_or_default(),
            fold(&n.number),
            n.branch.as_deref().map(fold).unwrap_or_default(),
        );
        self.mac(b"insurance-numbers", text.as_bytes())
    }

    /// Every key check `c` can be found by: its card, the numbers on its document, the
    /// numbers reported later, and the numbers of its answers.
    pub fn keys_of(&self, c: &CheckState) -> Vec<LookupKey> {
        let mut keys = Vec::new();
        if let Some(card) = &c.captured.card {
            let der = base64::engine::general_purpose::STANDARD
                .decode(&card.certificate)
                .ok();
            keys.extend(der.and_then(|d| self.card(&d)));
        }
        let numbers = c
            .captured
            .document
            .as_ref()
            .and_then(|d| d.numbers.as_ref())
            .into_iter()
            .chain(c.reported.as_ref().map(|r| &r.numbers))
            .chain(c.answers.iter().filter_map(|a| a.numbers.as_ref()));
        keys.extend(numbers.map(|n| self.numbers(n)));
        keys
    }
}

/// The insurer number as the qualification system reads it: a 6-digit 国保 number however
/// it was padded ([`crate::oqs::insurer_from_wire`]), without the padding.
fn insurer_digits(i: &InsurerNumber) -> String {
    crate::oqs::insurer_from_wire(i.as_wire())
        .unwrap_or_else(|_| i.clone())
        .as_wire()
        .trim()
        .to_string()
}

/// What check `c` confirmed of its patient: its latest confirmed answer with numbers and a
/// birth date, as of its visit date.
pub fn confirmed_by(c: &CheckState) -> Option<KnownInsurance> {
    let a = c
        .answers
        .iter()
        .rev()
        .find(|a| a.status == AnswerStatus::Confirmed && a.numbers.is_some())?;
    let birth_date = a.birth_date?;
    Some(KnownInsurance {
        numbers: a.numbers.clone()?,
        birth_date,
        copay_tenths: a.ratio_percent.filter(|p| p % 10 == 0).map(|p| p / 10),
        insurer_name: a.insurer_name.clone(),
        elderly: a.elderly,
        limit_bracket: a.limit_bracket.clone(),
        confirmed_on: Some(c.visit_date()),
        source: Some(KnownSource::History {
            check_id: c.id.clone(),
        }),
    })
}

/// The latest of `found` confirmed on or before `visit`, other than check `except`: what
/// reception knows of the patient for a visit on `visit`.
pub fn latest_before<'a>(
    found: impl IntoIterator<Item = &'a CheckState>,
    visit: NaiveDate,
    except: Option<&str>,
) -> Option<KnownInsurance> {
    found
        .into_iter()
        .filter(|c| Some(c.id.as_str()) != except && c.visit_date() <= visit)
        .filter_map(|c| Some((c.visit_date(), c.captured.captured_at, confirmed_by(c)?)))
        .max_by_key(|(d, at, _)| (*d, *at))
        .map(|(_, _, k)| k)
}

/// Writes `key` to `path` only if no file is there yet: written whole and fsynced under a
/// temporary name, then hard-linked into place (which fails if another opener got there
/// first), and the directory fsynced. `false` when a key was already there.
fn create_exclusive(dir: &Path, path: &Path, key: &[u8; 32]) -> io::Result<bool> {
    let tmp: PathBuf = dir.join(format!("{KEY_FILE}.tmp-{}", std::process::id()));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(key)?;
        f.sync_all()?;
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            std::fs::File::open(dir)?.sync_all()?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn numbers(insurer: &str, symbol: Option<&str>, number: &str) -> NumbersRecord {
        NumbersRecord {
            insurer: InsurerNumber::parse(insurer).unwrap(),
            symbol: symbol.map(str::to_string),
            number: number.into(),
            branch: Some("01".into()),
        }
    }

    #[test]
    fn numbers_match_as_the_qualification_system_compares_them() {
        let k = HistoryKey::ephemeral();
        let a = k.numbers(&numbers("139917", Some("ＡＢ１２"), "１２３"));
        assert_eq!(a, k.numbers(&numbers("00139917", Some("AB12"), "123")));
        assert_eq!(a, k.numbers(&numbers("  139917", Some("AB12 "), "123")));
        // Another branch is another person; another key is another device's hash.
        let mut other = numbers("139917", Some("AB12"), "123");
        other.branch = Some("02".into());
        assert_ne!(a, k.numbers(&other));
        assert_ne!(a, HistoryKey::ephemeral().numbers(&other));
    }

    #[test]
    fn the_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = HistoryKey::load_or_create(dir.path()).unwrap();
        let b = HistoryKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.0, b.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Damaged: set aside (kept), and a new one made.
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        let c = HistoryKey::load_or_create(dir.path()).unwrap();
        assert_ne!(a.0, c.0);
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("damaged"))
            .count();
        assert_eq!(aside, 1);
    }
}
