//! The challenge the card signs for the PIN method (Tsunagi's own format, wire.md §3).
//!
//! ASCII `TSUNAGI-CHALLENGE/1 <institution> <yyyyMMddHHmmss JST> <32 lowercase hex nonce>`. The
//! institution and the time bind a signature to one clinic and a ±10 minute window, and the
//! random nonce makes every signature unique, so a captured signature cannot be replayed.

use chrono::{DateTime, FixedOffset, NaiveDateTime};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The fixed first word, carrying the format version.
const TAG: &str = "TSUNAGI-CHALLENGE/1";
/// Offset of Japan Standard Time, in seconds.
const JST_SECONDS: i32 = 9 * 3600;
/// DER of `DigestInfo { AlgorithmIdentifier { sha256, NULL }, OCTET STRING (32) }` up to the hash.
const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// Why bytes are not a challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// Not the four space-separated words of the format.
    #[error("challenge does not have the form `{TAG} <institution> <time> <nonce>`")]
    Shape,
    /// The institution code is not 10 digits.
    #[error("challenge institution code is not 10 digits")]
    Institution,
    /// The time is not a valid `yyyyMMddHHmmss`.
    #[error("challenge time is not yyyyMMddHHmmss")]
    Time,
    /// The nonce is not 32 lowercase hex digits.
    #[error("challenge nonce is not 32 lowercase hex digits")]
    Nonce,
}

/// ASCII `TSUNAGI-CHALLENGE/1 <institution> <yyyyMMddHHmmss JST> <32 lowercase hex nonce>`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge(Vec<u8>);

impl Challenge {
    /// A new challenge for this institution at `now` (converted to JST), with a random nonce.
    ///
    /// The institution code is not checked here; the client validates it once at start-up.
    pub fn fresh(institution_code: &str, now: DateTime<FixedOffset>) -> Self {
        let jst = FixedOffset::east_opt(JST_SECONDS).unwrap_or_else(|| *now.offset());
        let time = now.with_timezone(&jst).format("%Y%m%d%H%M%S");
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        let text = format!("{TAG} {institution_code} {time} {}", hex::encode(nonce));
        Self(text.into_bytes())
    }

    /// Parses and validates challenge bytes.
    pub fn from_bytes(b: Vec<u8>) -> Result<Self, ChallengeError> {
        let text = std::str::from_utf8(&b).map_err(|_| ChallengeError::Shape)?;
        let words: Vec<&str> = text.split(' ').collect();
        let [tag, institution, time, nonce] = words.as_slice() else {
            return Err(ChallengeError::Shape);
        };
        if *tag != TAG {
            return Err(ChallengeError::Shape);
        }
        if institution.len() != 10 || !institution.bytes().all(|c| c.is_ascii_digit()) {
            return Err(ChallengeError::Institution);
        }
        parse_time(time)?;
        if nonce.len() != 32
            || !nonce
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            return Err(ChallengeError::Nonce);
        }
        Ok(Self(b))
    }

    /// The bytes the card signs.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The institution code the challenge names.
    pub fn institution_code(&self) -> &str {
        self.word(1)
    }

    /// When the challenge was issued, in JST.
    pub fn issued_at(&self) -> NaiveDateTime {
        // Both constructors guarantee the third word is a valid time; the fallback is unreachable.
        parse_time(self.word(2)).unwrap_or_default()
    }

    /// DER DigestInfo(SHA-256, sha256(bytes)) — what the card signs (19-byte prefix + 32).
    pub fn sha256_digest_info(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SHA256_DIGEST_INFO_PREFIX.len() + 32);
        out.extend_from_slice(&SHA256_DIGEST_INFO_PREFIX);
        out.extend_from_slice(&Sha256::digest(&self.0));
        out
    }

    fn word(&self, n: usize) -> &str {
        std::str::from_utf8(&self.0)
            .ok()
            .and_then(|t| t.split(' ').nth(n))
            .unwrap_or("")
    }
}

fn parse_time(s: &str) -> Result<NaiveDateTime, ChallengeError> {
    if s.len() != 14 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(ChallengeError::Time);
    }
    NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S").map_err(|_| ChallengeError::Time)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    fn jst(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<FixedOffset> {
        FixedOffset::east_opt(JST_SECONDS)
            .unwrap()
            .with_ymd_and_hms(y, mo, d, h, mi, s)
            .unwrap()
    }

    #[test]
    fn fresh_round_trips_and_names_institution_and_jst_time() {
        let c = Challenge::fresh("1319900017", jst(2026, 11, 26, 10, 15, 0));
        let text = std::str::from_utf8(c.as_bytes()).unwrap();
        assert!(text.starts_with("TSUNAGI-CHALLENGE/1 1319900017 20261126101500 "));
        assert_eq!(text.len(), TAG.len() + 1 + 10 + 1 + 14 + 1 + 32);
        let back = Challenge::from_bytes(c.as_bytes().to_vec()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.institution_code(), "1319900017");
        assert_eq!(
            back.issued_at(),
            NaiveDate::from_ymd_opt(2026, 11, 26)
                .unwrap()
                .and_hms_opt(10, 15, 0)
                .unwrap()
        );
    }

    #[test]
    fn fresh_converts_other_offsets_to_jst() {
        let utc = FixedOffset::east_opt(0)
            .unwrap()
            .with_ymd_and_hms(2026, 11, 26, 1, 15, 0)
            .unwrap();
        let c = Challenge::fresh("1319900017", utc);
        assert_eq!(
            c.issued_at().format("%Y%m%d%H%M%S").to_string(),
            "20261126101500"
        );
    }

    #[test]
    fn nonces_differ() {
        let now = jst(2026, 11, 26, 10, 15, 0);
        assert_ne!(
            Challenge::fresh("1319900017", now),
            Challenge::fresh("1319900017", now)
        );
    }

    #[test]
    fn from_bytes_rejects_bad_forms() {
        let nonce = "0123456789abcdef0123456789abcdef";
        let ok = format!("{TAG} 1319900017 20261126101500 {nonce}");
        assert!(Challenge::from_bytes(ok.into_bytes()).is_ok());
        let cases = [
            (
                format!("TSUNAGI-CHALLENGE/2 1319900017 20261126101500 {nonce}"),
                ChallengeError::Shape,
            ),
            (
                format!("{TAG} 1319900017 20261126101500"),
                ChallengeError::Shape,
            ),
            (
                format!("{TAG}  1319900017 20261126101500 {nonce}"),
                ChallengeError::Shape,
            ),
            (
                format!("{TAG} 131990001 20261126101500 {nonce}"),
                ChallengeError::Institution,
            ),
            (
                format!("{TAG} 131990001x 20261126101500 {nonce}"),
                ChallengeError::Institution,
            ),
            (
                format!("{TAG} 1319900017 20261332101500 {nonce}"),
                ChallengeError::Time,
            ),
            (
                format!("{TAG} 1319900017 2026112610150 {nonce}"),
                ChallengeError::Time,
            ),
            (
                format!("{TAG} 1319900017 20261126101500 {}", nonce.to_uppercase()),
                ChallengeError::Nonce,
            ),
            (
                format!("{TAG} 1319900017 20261126101500 {}", &nonce[1..]),
                ChallengeError::Nonce,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                Challenge::from_bytes(text.clone().into_bytes()),
                Err(want),
                "{text}"
            );
        }
        assert_eq!(
            Challenge::from_bytes(vec![0xff, 0xfe]),
            Err(ChallengeError::Shape)
        );
    }

    #[test]
    fn digest_info_is_prefix_and_sha256() {
        let c = Challenge::fresh("1319900017", jst(2026, 11, 26, 10, 15, 0));
        let di = c.sha256_digest_info();
        assert_eq!(di.len(), 51);
        assert_eq!(
            hex::encode(&di[..19]),
            "3031300d060960864801650304020105000420"
        );
        assert_eq!(&di[19..], Sha256::digest(c.as_bytes()).as_slice());
    }
}
