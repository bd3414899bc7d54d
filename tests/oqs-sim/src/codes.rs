//! The simulator's processing-result codes, as settings.
//!
//! The real codes (別紙6-1) are not public. The reference (oqs-messages.md §4) suggests a
//! synthetic catalogue (SIM-E0001…E0003, E0900, E1001, W2001) and says a simulator should keep
//! its codes configurable; the card search, Tsunagi's own operation, adds its own
//! (SIM-E1101…E1107, SIM-W2002), which are in no catalogue at all. [`SimCodes`] holds every code
//! the simulator answers with; `Default` is the catalogue above, and a test (or `oqs-sim serve
//! --codes FILE`) can change any of them to see that a client reads codes from its settings
//! rather than from constants.

use serde::{Deserialize, Serialize};

use crate::registry::{CardError, CertWarning};

/// Every code the simulator answers with. JSON names are the field names; a missing field
/// keeps its default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimCodes {
    /// Message level: the request is not JSON or its root is not `XmlMsg` (SIM-E0001).
    pub unparseable: String,
    /// Message level: the institution code is missing, malformed or not registered (SIM-E0002).
    pub institution: String,
    /// Message level: a required field is missing or malformed (SIM-E0003).
    pub request_field: String,
    /// Message level: injected system error (SIM-E0900).
    pub system_error: String,
    /// Person level: the search key is invalid, e.g. a birth date in the future (SIM-E1001).
    pub search_key: String,
    /// Warning: the card certificate expires within 3 months (SIM-W2001).
    pub expires_soon: String,
    /// Warning: the card certificate has expired and is in its grace period (SIM-W2002).
    pub in_grace: String,
    /// Card: not a certificate of the trusted CA (SIM-E1101).
    pub not_from_ca: String,
    /// Card: the signature does not verify (SIM-E1102).
    pub bad_signature: String,
    /// Card: the certificate is revoked (SIM-E1103).
    pub revoked: String,
    /// Card: expired beyond the grace period (SIM-E1104).
    pub expired_beyond_grace: String,
    /// Card: a photo-less card checked visually (SIM-E1105).
    pub pin_required: String,
    /// Card: the challenge is stale or for another institution (SIM-E1107).
    pub stale_challenge: String,
}

impl Default for SimCodes {
    fn default() -> Self {
        let s = |c: &str| c.to_owned();
        Self {
            unparseable: s("SIM-E0001"),
            institution: s("SIM-E0002"),
            request_field: s("SIM-E0003"),
            system_error: s("SIM-E0900"),
            search_key: s("SIM-E1001"),
            expires_soon: s(CertWarning::ExpiresSoon.code()),
            in_grace: s(CertWarning::InGrace.code()),
            not_from_ca: s(CardError::NotFromCa.code()),
            bad_signature: s(CardError::BadSignature.code()),
            revoked: s(CardError::Revoked.code()),
            expired_beyond_grace: s(CardError::ExpiredBeyondGrace.code()),
            pin_required: s(CardError::PinRequired.code()),
            stale_challenge: s(CardError::StaleChallenge.code()),
        }
    }
}

impl SimCodes {
    /// The code answered for a refused card.
    pub fn card_error(&self, e: CardError) -> &str {
        match e {
            CardError::NotFromCa => &self.not_from_ca,
            CardError::BadSignature => &self.bad_signature,
            CardError::Revoked => &self.revoked,
            CardError::ExpiredBeyondGrace => &self.expired_beyond_grace,
            CardError::PinRequired => &self.pin_required,
            CardError::StaleChallenge => &self.stale_challenge,
        }
    }

    /// The code answered with an accepted card's warning.
    pub fn warning(&self, w: CertWarning) -> &str {
        match w {
            CertWarning::ExpiresSoon => &self.expires_soon,
            CertWarning::InGrace => &self.in_grace,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn defaults_are_the_catalogue_and_files_override_them() {
        let c = SimCodes::default();
        assert_eq!(c.card_error(CardError::ExpiredBeyondGrace), "SIM-E1104");
        assert_eq!(c.warning(CertWarning::InGrace), "SIM-W2002");
        assert_eq!(c.system_error, "SIM-E0900");
        let c: SimCodes = serde_json::from_str(r#"{"expired_beyond_grace":"OQS-E2104"}"#).unwrap();
        assert_eq!(c.card_error(CardError::ExpiredBeyondGrace), "OQS-E2104");
        assert_eq!(c.card_error(CardError::Revoked), "SIM-E1103");
    }
}
