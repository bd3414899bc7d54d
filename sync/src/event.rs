//! A signed event (署名付きイベント): one thing that happened to a check, written by one device.
//!
//! The payload is the daemon's business (captured, queried, answered, …); here it is opaque
//! JSON. The event id is a hash of the signed bytes, so the same event received twice, from
//! any peer, lands on the same key and changes nothing.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::device::{DeviceId, DeviceKey};
use crate::hlc::Timestamp;

/// A calendar month of visits (診療月), the unit of documents, keys and retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Month {
    /// Gregorian year.
    pub year: i32,
    /// 1–12.
    pub month: u32,
}

/// A month that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid month {0:?}: expected YYYY-MM")]
pub struct MonthError(String);

impl Month {
    /// A month, if `month` is 1–12 and the year has four digits.
    pub fn new(year: i32, month: u32) -> Option<Self> {
        ((1000..=9999).contains(&year) && (1..=12).contains(&month)).then_some(Self { year, month })
    }

    /// The month of a date.
    pub fn of(date: chrono::NaiveDate) -> Self {
        use chrono::Datelike;
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    /// The month after this one.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The first moment of the month in Japan, as Unix milliseconds.
    pub fn start_ms(self) -> u64 {
        chrono::NaiveDate::from_ymd_opt(self.year, self.month, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| (t.and_utc().timestamp_millis() - 9 * 3_600_000).max(0) as u64)
            .unwrap_or(0)
    }

    /// The last day of the month.
    pub fn last_day(self) -> chrono::NaiveDate {
        let next = self.next();
        chrono::NaiveDate::from_ymd_opt(next.year, next.month, 1)
            .and_then(|d| d.pred_opt())
            .unwrap_or(chrono::NaiveDate::MAX)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = MonthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MonthError(s.to_string());
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year = y.parse().map_err(|_| bad())?;
        let month = m.parse().map_err(|_| bad())?;
        Month::new(year, month).ok_or_else(bad)
    }
}

/// The id of an event: the first 16 bytes of SHA-256 of its signed form, in hex.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId(pub String);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a device says happened to a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The check this event belongs to (a ULID).
    pub check_id: String,
    /// The month of the visit: which document holds it.
    pub month: Month,
    /// When, by the writer's hybrid logical clock.
    pub at: Timestamp,
    /// The writing device.
    pub device: DeviceId,
    /// The daemon's payload (JSON).
    pub payload: serde_json::Value,
}

/// An event with its writer's public key and signature, as stored and synced.
#[derive(Clone, Serialize, Deserialize)]
pub struct SignedEvent {
    /// The canonical bytes of the [`Event`] (JSON), exactly as signed.
    #[serde(with = "serde_bytes_b64")]
    pub body: Vec<u8>,
    /// The writer's ed25519 public key.
    pub public_key: [u8; 32],
    /// The signature over `body`.
    #[serde(with = "serde_bytes_b64")]
    pub signature: Vec<u8>,
}

impl fmt::Debug for SignedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body holds personal data: never print it.
        f.debug_struct("SignedEvent")
            .field("id", &self.id())
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Why an event was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The bytes are not a signed event.
    #[error("not a signed event: {0}")]
    Malformed(String),
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The event names a device other than the key that signed it.
    #[error("event claims device {claimed} but was signed by {signer}")]
    WrongDevice {
        /// The device in the body.
        claimed: String,
        /// The device of the key.
        signer: String,
    },
    /// The event is stored under an id that is not its own.
    #[error("event stored as {stored} has id {actual}")]
    WrongId {
        /// The key it was stored under.
        stored: String,
        /// Its real id.
        actual: String,
    },
    /// The event's time cannot be right for its month (a clock far in the past).
    #[error("event time {at_ms} ms is before its visit month {month}")]
    BeforeItsMonth {
        /// The event's wall time.
        at_ms: u64,
        /// The month.
        month: Month,
    },
    /// The event belongs to another month's document.
    #[error("event of {event} found in the document of {document}")]
    WrongMonth {
        /// The event's month.
        event: Month,
        /// The document's month.
        document: Month,
    },
}

impl SignedEvent {
    /// Signs `event` with this device's key. The event's device must be the key's.
    pub fn sign(event: &Event, key: &DeviceKey) -> Result<Self, EventError> {
        if &event.device != key.id() {
            return Err(EventError::WrongDevice {
                claimed: event.device.to_string(),
                signer: key.id().to_string(),
            });
        }
        let body = serde_json::to_vec(event).map_err(|e| EventError::Malformed(e.to_string()))?;
        let signature = key.sign(&body).to_vec();
        Ok(Self {
            body,
            public_key: key.verifying_key().to_bytes(),
            signature,
        })
    }

    /// The content id.
    pub fn id(&self) -> EventId {
        let mut hash = Sha256::new();
        hash.update(self.public_key);
        hash.update(&self.signature);
        hash.update(&self.body);
        EventId(hex_prefix(&hash.finalize()[..16]))
    }

    /// Checks the signature and that the body names the signing device; returns the event.
    pub fn verify(&self) -> Result<Event, EventError> {
        let key =
            VerifyingKey::from_bytes(&self.public_key).map_err(|_| EventError::BadSignature)?;
        let signature =
            Signature::from_slice(&self.signature).map_err(|_| EventError::BadSignature)?;
        key.verify(&self.body, &signature)
            .map_err(|_| EventError::BadSignature)?;
        let event: Event =
            serde_json::from_slice(&self.body).map_err(|e| EventError::Malformed(e.to_string()))?;
        let signer = DeviceId::of(&key);
        if event.device != signer {
            return Err(EventError::WrongDevice {
                claimed: event.device.to_string(),
                signer: signer.to_string(),
            });
        }
        Ok(event)
    }

    /// The stored form.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain bytes and arrays cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// From the stored form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EventError> {
        serde_json::from_slice(bytes).map_err(|e| EventError::Malformed(e.to_string()))
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

mod serde_bytes_b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(key: &DeviceKey) -> Event {
        Event {
            check_id: "01JD0000000000000000000000".into(),
            month: Month::new(2026, 11).unwrap(),
            at: Timestamp {
                wall_ms: 1,
                counter: 0,
            },
            device: key.id().clone(),
            payload: serde_json::json!({"kind": "captured"}),
        }
    }

    #[test]
    fn sign_verify_and_tamper() {
        let key = DeviceKey::generate();
        let signed = SignedEvent::sign(&event(&key), &key).unwrap();
        assert_eq!(signed.verify().unwrap(), event(&key));
        let again = SignedEvent::from_bytes(&signed.to_bytes()).unwrap();
        assert_eq!(again.id(), signed.id());

        let mut tampered = signed.clone();
        let last = tampered.body.len() - 2;
        tampered.body[last] ^= 1;
        assert_eq!(tampered.verify(), Err(EventError::BadSignature));

        // A valid signature by another device over a body that names the first device.
        let other = DeviceKey::generate();
        let mut forged = signed.clone();
        forged.signature = other.sign(&forged.body).to_vec();
        forged.public_key = other.verifying_key().to_bytes();
        assert!(matches!(
            forged.verify(),
            Err(EventError::WrongDevice { .. })
        ));
        assert!(SignedEvent::from_bytes(b"{\"body\":1}").is_err());
    }

    #[test]
    fn months() {
        let m: Month = "2026-12".parse().unwrap();
        assert_eq!(m.next().to_string(), "2027-01");
        assert_eq!(m.last_day().to_string(), "2026-12-31");
        assert_eq!(
            Month::new(2028, 2).unwrap().last_day().to_string(),
            "2028-02-29"
        );
        for bad in ["2026-13", "2026-00", "26-11", "2026/11", "", "2026-1x"] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
    }
}
