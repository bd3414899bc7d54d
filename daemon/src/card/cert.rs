//! What the daemon needs from the user-authentication certificate: serial, validity and the
//! public key that checks the card's signature. The subject carries no personal data.

use chrono::NaiveDate;
use der::Decode;
use rsa::pkcs8::DecodePublicKey;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use x509_cert::Certificate;

use super::CardError;

/// Parsed facts about a user-authentication certificate (利用者証明用電子証明書).
#[derive(Debug, Clone)]
pub struct CertificateInfo {
    /// Serial number, hex.
    pub serial_hex: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// First day of validity (Japan date).
    pub not_before: NaiveDate,
    /// Last day of validity (Japan date): the day the grace period (R3) is counted from.
    pub not_after: NaiveDate,
    public_key: RsaPublicKey,
}

impl CertificateInfo {
    /// Parses a DER certificate. Anything unparseable is a bad certificate, never a panic.
    pub fn parse(der: &[u8]) -> Result<Self, CardError> {
        let cert = Certificate::from_der(der).map_err(|_| CardError::BadCertificate {
            detail: "certificate is not valid DER X.509",
        })?;
        let tbs = &cert.tbs_certificate;
        let spki = der::Encode::to_der(&tbs.subject_public_key_info).map_err(|_| {
            CardError::BadCertificate {
                detail: "certificate public key cannot be encoded",
            }
        })?;
        let public_key =
            RsaPublicKey::from_public_key_der(&spki).map_err(|_| CardError::BadCertificate {
                detail: "certificate key is not RSA",
            })?;
        // Validity is an instant; the rules count in Japan dates. J-LIS certificates end at
        // 23:59:59 JST, which is still the same day in UTC, but a start at 00:00 JST is the
        // previous day in UTC — so convert rather than take the UTC date.
        let date = |t: x509_cert::time::Time| {
            chrono::DateTime::from_timestamp(t.to_unix_duration().as_secs() as i64, 0)
                .map(|d| d.with_timezone(&crate::check::jst()).date_naive())
                .ok_or(CardError::BadCertificate {
                    detail: "certificate validity out of range",
                })
        };
        Ok(Self {
            serial_hex: hex::encode(tbs.serial_number.as_bytes()),
            issuer: tbs.issuer.to_string(),
            not_before: date(tbs.validity.not_before)?,
            not_after: date(tbs.validity.not_after)?,
            public_key,
        })
    }

    /// Whether `signature` is the PKCS#1 v1.5 signature of this DER DigestInfo.
    pub fn verifies_digest_info(&self, digest_info: &[u8], signature: &[u8]) -> bool {
        self.public_key
            .verify(Pkcs1v15Sign::new_unprefixed(), digest_info, signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_rejects_garbage_without_panicking() {
        for bytes in [&b""[..], &[0x30, 0x82, 0x00, 0x01, 0x00], &[0xFF; 64]] {
            assert!(matches!(
                CertificateInfo::parse(bytes),
                Err(CardError::BadCertificate { .. })
            ));
        }
    }
}
