//! A stand-in for J-LIS: a self-signed test CA that issues user-authentication certificates,
//! and a disk-cached pool of RSA-2048 keys (generating keys is the slow part of every test).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime, TimeDelta};
use der::asn1::{BitString, GeneralizedTime, OctetString, UtcTime};
use der::{Decode, Encode};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use spki::{DynSignatureAlgorithmIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::{AsExtension, Extension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

/// Errors of the test PKI: building certificates and managing the key pool.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A date was outside what X.509 time encodings can hold.
    #[error("date out of range for a certificate: {0}")]
    Date(NaiveDate),
    /// DER encoding or decoding failed.
    #[error("DER: {0}")]
    Der(#[from] der::Error),
    /// Building an SPKI or an algorithm identifier failed.
    #[error("SPKI: {0}")]
    Spki(#[from] spki::Error),
    /// A PKCS#8 key could not be encoded or decoded.
    #[error("PKCS#8: {0}")]
    Pkcs8(#[from] rsa::pkcs8::Error),
    /// RSA key generation or signing failed.
    #[error("RSA: {0}")]
    Rsa(#[from] rsa::Error),
    /// Reading or writing the key cache failed.
    #[error("key cache {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The test CA (stands in for J-LIS): RSA-2048, self-signed, SHA256withRSA.
#[derive(Clone, Debug)]
pub struct TestCa {
    key: RsaPrivateKey,
    name: Name,
    certificate_der: Vec<u8>,
    key_id: Vec<u8>,
}

/// JST is UTC+9; J-LIS validity boundaries are Japanese calendar days.
const JST_OFFSET_HOURS: i64 = 9;

/// The CA's distinguished name (RFC 4514 order, i.e. most specific first). It mirrors the
/// shape of the real J-LIS user-auth CA but says plainly that it is a test CA.
const CA_NAME: &str = "OU=Tsunagi Test CA (not J-LIS),OU=JPKI for user authentication,O=JPKI,C=JP";

impl TestCa {
    /// Creates a self-signed CA valid from `not_before` 00:00 JST to `not_after` 23:59:59 JST.
    pub fn generate(
        key: RsaPrivateKey,
        not_before: NaiveDate,
        not_after: NaiveDate,
    ) -> Result<Self, PkiError> {
        let name = Name::from_str(CA_NAME)?;
        let public = key.to_public_key();
        let spki = SubjectPublicKeyInfoOwned::from_key(public)?;
        let key_id = key_identifier(&spki)?;
        let extensions = vec![
            extension(
                &BasicConstraints {
                    ca: true,
                    path_len_constraint: Some(0),
                },
                true,
            )?,
            extension(&KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign), true)?,
            extension(
                &SubjectKeyIdentifier(OctetString::new(key_id.clone())?),
                false,
            )?,
        ];
        let certificate_der = sign_certificate(
            &key,
            SerialNumber::from(1u64),
            validity(not_before, not_after)?,
            name.clone(),
            name.clone(),
            spki,
            extensions,
        )?;
        Ok(Self {
            key,
            name,
            certificate_der,
            key_id,
        })
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// The CA's public key, to verify what it issued.
    pub fn public_key(&self) -> RsaPublicKey {
        self.key.to_public_key()
    }

    /// A user-authentication certificate (利用者証明用電子証明書) as J-LIS issues it: no name or
    /// address in the subject (see jpki-card.md 3.1), keyUsage digitalSignature, serial as given,
    /// validity from not_before 00:00 JST to not_after 23:59:59 JST.
    pub fn issue_user_auth(
        &self,
        subject: &RsaPublicKey,
        serial: u64,
        not_before: NaiveDate,
        not_after: NaiveDate,
    ) -> Result<Vec<u8>, PkiError> {
        let spki = SubjectPublicKeyInfoOwned::from_key(subject.clone())?;
        let subject_key_id = key_identifier(&spki)?;
        // The real subject CN is an opaque identifier with no personal data; derive one from
        // the key so that it is stable for a given card.
        let opaque: String = subject_key_id
            .iter()
            .take(8)
            .map(|b| format!("{b:02X}"))
            .collect();
        let subject_name = Name::from_str(&format!("CN={opaque},C=JP"))?;
        let extensions = vec![
            extension(&KeyUsage(KeyUsages::DigitalSignature.into()), true)?,
            extension(
                &SubjectKeyIdentifier(OctetString::new(subject_key_id)?),
                false,
            )?,
            extension(
                &AuthorityKeyIdentifier {
                    key_identifier: Some(OctetString::new(self.key_id.clone())?),
                    authority_cert_issuer: None,
                    authority_cert_serial_number: None,
                },
                false,
            )?,
        ];
        sign_certificate(
            &self.key,
            SerialNumber::from(serial),
            validity(not_before, not_after)?,
            self.name.clone(),
            subject_name,
            spki,
            extensions,
        )
    }
}

/// Parses the subject public key out of a DER certificate (handy for tests and the card).
pub fn certificate_public_key(certificate_der: &[u8]) -> Result<RsaPublicKey, PkiError> {
    let cert = Certificate::from_der(certificate_der)?;
    let spki_der = cert.tbs_certificate.subject_public_key_info.to_der()?;
    Ok(RsaPublicKey::from_public_key_der(&spki_der).map_err(spki_to_pkcs8)?)
}

fn spki_to_pkcs8(e: spki::Error) -> rsa::pkcs8::Error {
    rsa::pkcs8::Error::PublicKey(e)
}

/// Key identifier: the first 20 bytes of SHA-256 over the subjectPublicKey bits (RFC 7093
/// method 1; any stable method will do for a test CA).
fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Result<Vec<u8>, PkiError> {
    let digest = Sha256::digest(spki.subject_public_key.raw_bytes());
    Ok(digest[..20].to_vec())
}

fn extension<E: AsExtension>(ext: &E, critical: bool) -> Result<Extension, PkiError> {
    Ok(Extension {
        extn_id: E::OID,
        critical,
        extn_value: OctetString::new(ext.to_der()?)?,
    })
}

/// `not_before` 00:00:00 JST to `not_after` 23:59:59 JST, as RFC 5280 times.
fn validity(not_before: NaiveDate, not_after: NaiveDate) -> Result<Validity, PkiError> {
    let start = not_before.and_time(NaiveTime::MIN) - TimeDelta::hours(JST_OFFSET_HOURS);
    let end_time = NaiveTime::from_hms_opt(23, 59, 59).ok_or(PkiError::Date(not_after))?;
    let end = not_after.and_time(end_time) - TimeDelta::hours(JST_OFFSET_HOURS);
    Ok(Validity {
        not_before: x509_time(start.and_utc().timestamp(), not_before)?,
        not_after: x509_time(end.and_utc().timestamp(), not_after)?,
    })
}

/// RFC 5280: UTCTime through 2049, GeneralizedTime from 2050.
fn x509_time(unix_seconds: i64, date: NaiveDate) -> Result<Time, PkiError> {
    let secs = u64::try_from(unix_seconds).map_err(|_| PkiError::Date(date))?;
    let dt = der::DateTime::from_unix_duration(Duration::from_secs(secs))?;
    if dt.year() < 2050 {
        Ok(Time::UtcTime(UtcTime::from_date_time(dt)?))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(dt)))
    }
}

fn sign_certificate(
    issuer_key: &RsaPrivateKey,
    serial_number: SerialNumber,
    validity: Validity,
    issuer: Name,
    subject: Name,
    subject_public_key_info: SubjectPublicKeyInfoOwned,
    extensions: Vec<Extension>,
) -> Result<Vec<u8>, PkiError> {
    let signer = SigningKey::<Sha256>::new(issuer_key.clone());
    let signature_alg = signer.signature_algorithm_identifier()?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number,
        signature: signature_alg.clone(),
        issuer,
        validity,
        subject,
        subject_public_key_info,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let tbs_der = tbs.to_der()?;
    let signature = signer
        .try_sign(&tbs_der)
        .map_err(|_| rsa::Error::Internal)?;
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: signature_alg,
        signature: BitString::from_bytes(&signature.to_bytes())?,
    };
    Ok(cert.to_der()?)
}

/// Name of the cache directory; bump the suffix if the file format ever changes.
const KEY_CACHE_DIR: &str = "tsunagi-vcard-keys-v1";

/// Serialises generation inside one process so parallel tests do not all generate key 7.
static POOL_LOCK: Mutex<()> = Mutex::new(());

/// `n` RSA-2048 keys, generated once and cached on disk (PKCS#8 DER files in
/// `std::env::temp_dir()/tsunagi-vcard-keys-v1/key-<i>.der`). Deterministic order: key `i` is
/// the same in every call and every process sharing the cache.
pub fn key_pool(n: usize) -> Result<Vec<RsaPrivateKey>, PkiError> {
    let dir = std::env::temp_dir().join(KEY_CACHE_DIR);
    fs::create_dir_all(&dir).map_err(|source| PkiError::Io {
        path: dir.clone(),
        source,
    })?;
    // A poisoned lock only means another test panicked; the files are still consistent.
    let _guard = POOL_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    (0..n).map(|i| cached_key(&dir, i)).collect()
}

fn cached_key(dir: &Path, index: usize) -> Result<RsaPrivateKey, PkiError> {
    let path = dir.join(format!("key-{index}.der"));
    loop {
        match fs::read(&path) {
            Ok(bytes) => match RsaPrivateKey::from_pkcs8_der(&bytes) {
                Ok(key) => return Ok(key),
                Err(e) => {
                    // Files are published by hard link only when complete, so a bad file was
                    // damaged from outside: drop it and generate anew.
                    tracing::warn!(path = %path.display(), error = %e, "discarding corrupt cached key");
                    let _ = fs::remove_file(&path);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(PkiError::Io { path, source }),
        }
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048)?;
        let der = key.to_pkcs8_der()?;
        let tmp = dir.join(format!(
            "key-{index}.der.tmp-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let io = |source| PkiError::Io {
            path: tmp.clone(),
            source,
        };
        {
            let mut f = fs::File::create(&tmp).map_err(io)?;
            f.write_all(der.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        // hard_link fails if the target exists, so when two processes race the first one wins
        // and the loser reads the winner's key: every caller sees the same key for `index`.
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(PkiError::Io {
                    path: path.clone(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use der::oid::AssociatedOid;
    use rsa::pkcs1v15::VerifyingKey;
    use rsa::signature::Verifier;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn key_pool_is_stable() {
        let a = key_pool(2).unwrap();
        let b = key_pool(2).unwrap();
        assert_eq!(a, b);
        assert_ne!(a[0], a[1]);
    }

    #[test]
    fn issued_certificate_parses_and_verifies() {
        let keys = key_pool(2).unwrap();
        let ca = TestCa::generate(keys[0].clone(), date(2023, 7, 16), date(2033, 7, 15)).unwrap();
        let der = ca
            .issue_user_auth(
                &keys[1].to_public_key(),
                4242,
                date(2024, 4, 1),
                date(2029, 3, 31),
            )
            .unwrap();
        let cert = Certificate::from_der(&der).unwrap();
        let tbs = &cert.tbs_certificate;
        assert_eq!(tbs.serial_number, SerialNumber::from(4242u64));
        assert_eq!(tbs.issuer.to_string(), CA_NAME);
        assert!(tbs.subject.to_string().starts_with("CN="));
        // 2024-04-01 00:00 JST is 2024-03-31 15:00 UTC.
        assert_eq!(
            tbs.validity.not_before.to_unix_duration().as_secs(),
            date(2024, 3, 31)
                .and_hms_opt(15, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp() as u64
        );
        assert_eq!(
            tbs.validity.not_after.to_unix_duration().as_secs(),
            date(2029, 3, 31)
                .and_hms_opt(14, 59, 59)
                .unwrap()
                .and_utc()
                .timestamp() as u64
        );
        let exts = tbs.extensions.as_ref().unwrap();
        let ku = exts.iter().find(|e| e.extn_id == KeyUsage::OID).unwrap();
        let ku = KeyUsage::from_der(ku.extn_value.as_bytes()).unwrap();
        assert!(ku.digital_signature());
        assert!(!ku.non_repudiation());

        let verifier = VerifyingKey::<Sha256>::new(ca.public_key());
        let sig = rsa::pkcs1v15::Signature::try_from(cert.signature.raw_bytes()).unwrap();
        verifier
            .verify(&tbs.to_der().unwrap(), &sig)
            .expect("leaf signature");
        assert_eq!(
            certificate_public_key(&der).unwrap(),
            keys[1].to_public_key()
        );

        // The CA is self-signed and verifies under its own key.
        let ca_cert = Certificate::from_der(ca.certificate_der()).unwrap();
        let sig = rsa::pkcs1v15::Signature::try_from(ca_cert.signature.raw_bytes()).unwrap();
        verifier
            .verify(&ca_cert.tbs_certificate.to_der().unwrap(), &sig)
            .expect("CA signature");
    }

    #[test]
    fn dates_from_2050_use_generalized_time() {
        let keys = key_pool(1).unwrap();
        let ca = TestCa::generate(keys[0].clone(), date(2049, 1, 1), date(2060, 1, 1)).unwrap();
        let cert = Certificate::from_der(ca.certificate_der()).unwrap();
        assert!(matches!(
            cert.tbs_certificate.validity.not_after,
            Time::GeneralTime(_)
        ));
        assert!(matches!(
            cert.tbs_certificate.validity.not_before,
            Time::UtcTime(_)
        ));
    }
}
