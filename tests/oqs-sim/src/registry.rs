//! The certificate registry (stands in for J-LIS's records) and the card-operation check.
//!
//! [`CertRegistry`] trusts one CA certificate, maps certificate serials to people, and knows
//! revoked serials. [`CertRegistry::verify`] applies wire.md §3 in its order: chain,
//! challenge, signature, revocation, expiry with grace, photo-less card with the visual method.
//! The clock is an argument (JST wall time), so the rules are testable without waiting.
//!
//! The expiry and its grace (R3: usable to the end of the 3rd month after the month of
//! expiry) are judged on the visit date asked about, not on the day the question arrives: a
//! check captured offline and confirmed weeks later is about the day the patient was there.
//! Only the challenge's freshness depends on the clock.
//!
//! The codes below are the defaults; the server answers with [`crate::SimCodes`].

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, TimeDelta};
use der::{Decode, Encode};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use sha2::Sha256;
use x509_cert::name::Name;
use x509_cert::Certificate;

/// Prefix of the challenge bytes the card signs.
pub const CHALLENGE_PREFIX: &str = "TSUNAGI-CHALLENGE/1";

/// How far a challenge's time may be from the simulator's clock.
pub const CHALLENGE_TOLERANCE_MINUTES: i64 = 10;

/// Building a registry failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The CA certificate is not a DER X.509 certificate with an RSA key.
    #[error("CA certificate unusable: {0}")]
    CaCertificate(String),
}

/// How the patient proved identity at the reader (本人確認方法).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityMethod {
    /// `1`: PIN; the card signed the challenge.
    Pin,
    /// `2`: visual check of the photo (目視).
    Visual,
}

/// A card operation as the card-search request carries it, decoded.
#[derive(Clone, Debug)]
pub struct CardOperation {
    /// PIN or visual.
    pub method: IdentityMethod,
    /// The user-authentication certificate, DER.
    pub certificate_der: Vec<u8>,
    /// The challenge bytes (PIN only).
    pub challenge: Option<Vec<u8>>,
    /// The RSASSA-PKCS1-v1_5 SHA-256 signature over the challenge (PIN only).
    pub signature: Option<Vec<u8>>,
}

/// A supplementary warning on an accepted card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertWarning {
    /// SIM-W2001: the certificate expires within 3 months.
    ExpiresSoon,
    /// SIM-W2002: the certificate has expired and is in its grace period.
    InGrace,
}

impl CertWarning {
    /// Synthetic processing result code.
    pub fn code(self) -> &'static str {
        match self {
            CertWarning::ExpiresSoon => "SIM-W2001",
            CertWarning::InGrace => "SIM-W2002",
        }
    }

    /// Staff-facing message.
    pub fn message_ja(self) -> &'static str {
        match self {
            CertWarning::ExpiresSoon => {
                "（模擬）利用者証明用電子証明書の有効期限が3か月以内に到来します。更新をご案内ください。"
            }
            CertWarning::InGrace => {
                "（模擬）利用者証明用電子証明書の有効期限が切れています（猶予期間中）。更新をご案内ください。"
            }
        }
    }
}

/// An accepted card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCard {
    /// Certificate serial.
    pub serial: u64,
    /// The person behind it, if the serial is registered.
    pub person_id: Option<String>,
    /// Warning to return with the result.
    pub warning: Option<CertWarning>,
}

/// Why a card operation is refused (person-level errors of the card route).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    /// SIM-E1101: not a certificate issued by the trusted CA.
    #[error("certificate not issued by the trusted CA")]
    NotFromCa,
    /// SIM-E1102: the signature over the challenge does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// SIM-E1103: the certificate is revoked (紛失・一時停止).
    #[error("certificate revoked")]
    Revoked,
    /// SIM-E1104: expired beyond the grace period.
    #[error("certificate expired beyond grace")]
    ExpiredBeyondGrace,
    /// SIM-E1105: photo-less card checked visually.
    #[error("photo-less card needs the PIN")]
    PinRequired,
    /// SIM-E1107: the challenge is stale, malformed or for another institution.
    #[error("challenge stale or for another institution")]
    StaleChallenge,
}

impl CardError {
    /// Synthetic processing result code.
    pub fn code(self) -> &'static str {
        match self {
            CardError::NotFromCa => "SIM-E1101",
            CardError::BadSignature => "SIM-E1102",
            CardError::Revoked => "SIM-E1103",
            CardError::ExpiredBeyondGrace => "SIM-E1104",
            CardError::PinRequired => "SIM-E1105",
            CardError::StaleChallenge => "SIM-E1107",
        }
    }

    /// Staff-facing message (ProcessingResultMessage).
    pub fn message_ja(self) -> &'static str {
        match self {
            CardError::NotFromCa => "（模擬）電子証明書の発行元を確認できません。",
            CardError::BadSignature => "（模擬）電子署名の検証に失敗しました。",
            CardError::Revoked => {
                "（模擬）電子証明書が失効しています（紛失・一時停止）。保険証等で確認してください。"
            }
            CardError::ExpiredBeyondGrace => {
                "（模擬）電子証明書の有効期限が切れています。保険証等で確認してください。"
            }
            CardError::PinRequired => {
                "顔写真のないカードのため、暗証番号による本人確認が必要です"
            }
            CardError::StaleChallenge => {
                "（模擬）認証要求の有効期限切れ、または他の医療機関向けです。もう一度読み取ってください。"
            }
        }
    }
}

/// A registered card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardRecord {
    /// The person's id in the population.
    pub person_id: String,
    /// A card issued without a photo (under-15 infant card).
    pub photo_less: bool,
}

/// Trusted CA, serial → person, revoked serials.
#[derive(Clone, Debug)]
pub struct CertRegistry {
    ca_der: Vec<u8>,
    ca_subject: Name,
    ca_key: RsaPublicKey,
    cards: HashMap<u64, CardRecord>,
    revoked: HashSet<u64>,
}

impl CertRegistry {
    /// A registry trusting `ca_cert_der`.
    pub fn new(ca_cert_der: &[u8]) -> Result<Self, RegistryError> {
        let cert = Certificate::from_der(ca_cert_der)
            .map_err(|e| RegistryError::CaCertificate(e.to_string()))?;
        let ca_key = public_key(&cert)
            .ok_or_else(|| RegistryError::CaCertificate("subject key is not an RSA key".into()))?;
        Ok(Self {
            ca_der: ca_cert_der.to_vec(),
            ca_subject: cert.tbs_certificate.subject,
            ca_key,
            cards: HashMap::new(),
            revoked: HashSet::new(),
        })
    }

    /// The trusted CA certificate, DER.
    pub fn ca_certificate_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// Links a certificate serial to a person.
    pub fn register(&mut self, serial: u64, person_id: impl Into<String>, photo_less: bool) {
        self.cards.insert(
            serial,
            CardRecord {
                person_id: person_id.into(),
                photo_less,
            },
        );
    }

    /// Marks a serial revoked.
    pub fn revoke(&mut self, serial: u64) {
        self.revoked.insert(serial);
    }

    /// The record of a serial.
    pub fn card(&self, serial: u64) -> Option<&CardRecord> {
        self.cards.get(&serial)
    }

    /// Checks a card operation for `institution` at JST wall time `now`, asked as of
    /// `visit_date`.
    pub fn verify(
        &self,
        op: &CardOperation,
        institution: &str,
        now: NaiveDateTime,
        visit_date: NaiveDate,
    ) -> Result<VerifiedCard, CardError> {
        let cert = Certificate::from_der(&op.certificate_der).map_err(|_| CardError::NotFromCa)?;
        self.check_chain(&cert)?;
        if op.method == IdentityMethod::Pin {
            let challenge = op.challenge.as_deref().ok_or(CardError::StaleChallenge)?;
            check_challenge(challenge, institution, now, visit_date)?;
            let key = public_key(&cert).ok_or(CardError::NotFromCa)?;
            let sig = op
                .signature
                .as_deref()
                .and_then(|s| Signature::try_from(s).ok())
                .ok_or(CardError::BadSignature)?;
            VerifyingKey::<Sha256>::new(key)
                .verify(challenge, &sig)
                .map_err(|_| CardError::BadSignature)?;
        }
        let serial = serial_u64(&cert).ok_or(CardError::NotFromCa)?;
        if self.revoked.contains(&serial) {
            return Err(CardError::Revoked);
        }
        let not_after = jst_date(&cert.tbs_certificate.validity.not_after);
        let warning = expiry_status(not_after, visit_date)?;
        let record = self.cards.get(&serial);
        if op.method == IdentityMethod::Visual && record.is_some_and(|r| r.photo_less) {
            return Err(CardError::PinRequired);
        }
        Ok(VerifiedCard {
            serial,
            person_id: record.map(|r| r.person_id.clone()),
            warning,
        })
    }

    fn check_chain(&self, cert: &Certificate) -> Result<(), CardError> {
        if cert.tbs_certificate.issuer != self.ca_subject {
            return Err(CardError::NotFromCa);
        }
        let tbs = cert
            .tbs_certificate
            .to_der()
            .map_err(|_| CardError::NotFromCa)?;
        let sig_bytes = cert.signature.as_bytes().ok_or(CardError::NotFromCa)?;
        let sig = Signature::try_from(sig_bytes).map_err(|_| CardError::NotFromCa)?;
        VerifyingKey::<Sha256>::new(self.ca_key.clone())
            .verify(&tbs, &sig)
            .map_err(|_| CardError::NotFromCa)
    }
}

fn public_key(cert: &Certificate) -> Option<RsaPublicKey> {
    let spki = cert.tbs_certificate.subject_public_key_info.to_der().ok()?;
    RsaPublicKey::from_public_key_der(&spki).ok()
}

fn serial_u64(cert: &Certificate) -> Option<u64> {
    let bytes = cert.tbs_certificate.serial_number.as_bytes();
    let bytes = match bytes {
        [0, rest @ ..] => rest,
        b => b,
    };
    if bytes.len() > 8 {
        return None;
    }
    Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// The JST calendar day of an X.509 time.
fn jst_date(t: &x509_cert::time::Time) -> NaiveDate {
    let secs = i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
    let utc = DateTime::from_timestamp(secs, 0).unwrap_or_default();
    (utc.naive_utc() + TimeDelta::hours(9)).date()
}

/// The last day a certificate expiring on `not_after` may still be used: the end of the 3rd
/// month after the month of expiry (2026-08-10 → 2026-11-30).
pub fn grace_end(not_after: NaiveDate) -> NaiveDate {
    let first = not_after.with_day(1).unwrap_or(not_after);
    first
        .checked_add_months(Months::new(4))
        .and_then(|d| d.pred_opt())
        .unwrap_or(NaiveDate::MAX)
}

/// The expiry rule on `today` (the visit date): error beyond grace, warning in grace or within
/// 3 months of expiry.
pub fn expiry_status(
    not_after: NaiveDate,
    today: NaiveDate,
) -> Result<Option<CertWarning>, CardError> {
    if today > not_after {
        if today > grace_end(not_after) {
            return Err(CardError::ExpiredBeyondGrace);
        }
        return Ok(Some(CertWarning::InGrace));
    }
    let soon = today
        .checked_add_months(Months::new(3))
        .unwrap_or(NaiveDate::MAX);
    Ok((not_after <= soon).then_some(CertWarning::ExpiresSoon))
}

/// Checks `TSUNAGI-CHALLENGE/1 <institution> <yyyyMMddHHmmss JST> <32 lowercase hex>`.
///
/// A challenge is fresh when it was made within the tolerance of `now` (a check at the
/// counter), or when it was made on the visit date asked about and the question comes within
/// the after-the-fact window (事後確認: up to the end of the month after the visit, R20) — a
/// proof the card made at an offline visit, presented once the line is back.
pub fn check_challenge(
    challenge: &[u8],
    institution: &str,
    now: NaiveDateTime,
    visit_date: NaiveDate,
) -> Result<(), CardError> {
    let text = std::str::from_utf8(challenge).map_err(|_| CardError::StaleChallenge)?;
    let parts: Vec<&str> = text.split(' ').collect();
    let [prefix, inst, time, nonce] = parts.as_slice() else {
        return Err(CardError::StaleChallenge);
    };
    let nonce_ok = nonce.len() == 32
        && nonce
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if *prefix != CHALLENGE_PREFIX || *inst != institution || !nonce_ok {
        return Err(CardError::StaleChallenge);
    }
    let at = NaiveDateTime::parse_from_str(time, "%Y%m%d%H%M%S")
        .map_err(|_| CardError::StaleChallenge)?;
    let tolerance = TimeDelta::minutes(CHALLENGE_TOLERANCE_MINUTES);
    if (at - now).abs() <= tolerance {
        return Ok(());
    }
    let made_at_the_visit = at.date() == visit_date && at <= now + tolerance;
    if made_at_the_visit && now.date() <= end_of_next_month(visit_date) {
        return Ok(());
    }
    Err(CardError::StaleChallenge)
}

fn end_of_next_month(date: NaiveDate) -> NaiveDate {
    use chrono::Datelike;
    let (y, m) = if date.month() >= 11 {
        (date.year() + 1, date.month() - 10)
    } else {
        (date.year(), date.month() + 2)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .unwrap_or(NaiveDate::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn grace_runs_to_the_end_of_the_third_month() {
        assert_eq!(grace_end(d("2026-08-10")), d("2026-11-30"));
        assert_eq!(grace_end(d("2026-11-30")), d("2027-02-28"));
        assert_eq!(grace_end(d("2026-12-01")), d("2027-03-31"));
    }

    #[test]
    fn expiry_boundaries() {
        let na = d("2026-08-10");
        assert_eq!(
            expiry_status(na, d("2026-11-30")),
            Ok(Some(CertWarning::InGrace))
        );
        assert_eq!(
            expiry_status(na, d("2026-12-01")),
            Err(CardError::ExpiredBeyondGrace)
        );
        assert_eq!(
            expiry_status(na, d("2026-08-11")),
            Ok(Some(CertWarning::InGrace))
        );
        assert_eq!(
            expiry_status(na, d("2026-08-10")),
            Ok(Some(CertWarning::ExpiresSoon))
        );
        assert_eq!(
            expiry_status(na, d("2026-05-10")),
            Ok(Some(CertWarning::ExpiresSoon))
        );
        assert_eq!(expiry_status(na, d("2026-05-09")), Ok(None));
    }

    #[test]
    fn challenge_rules() {
        let now = NaiveDateTime::parse_from_str("20261126101500", "%Y%m%d%H%M%S").unwrap();
        let nonce = "0123456789abcdef0123456789abcdef";
        let ok = format!("{CHALLENGE_PREFIX} 1319900017 20261126102400 {nonce}");
        let today = now.date();
        assert_eq!(
            check_challenge(ok.as_bytes(), "1319900017", now, today),
            Ok(())
        );
        // A proof made at an offline visit, asked about later within the window.
        let visit = d("2026-11-02");
        let offline = format!("{CHALLENGE_PREFIX} 1319900017 20261102093000 {nonce}");
        assert_eq!(
            check_challenge(offline.as_bytes(), "1319900017", now, visit),
            Ok(())
        );
        // …but not for another visit date, and not after the end of the next month.
        assert!(check_challenge(offline.as_bytes(), "1319900017", now, today).is_err());
        let late = NaiveDateTime::parse_from_str("20270101000000", "%Y%m%d%H%M%S").unwrap();
        assert!(check_challenge(offline.as_bytes(), "1319900017", late, visit).is_err());
        let other = format!("{CHALLENGE_PREFIX} 1319900025 20261126101500 {nonce}");
        let stale = format!("{CHALLENGE_PREFIX} 1319900017 20261125235500 {nonce}");
        let upper = format!(
            "{CHALLENGE_PREFIX} 1319900017 20261126101500 {}",
            nonce.to_uppercase()
        );
        for bad in [other, stale, upper, "garbage".to_owned()] {
            assert_eq!(
                check_challenge(bad.as_bytes(), "1319900017", now, today),
                Err(CardError::StaleChallenge),
                "{bad}"
            );
        }
    }
}
