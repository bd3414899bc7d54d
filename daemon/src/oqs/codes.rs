//! What the system's processing-result codes mean to the daemon: a setting, not a constant.
//!
//! The real codes (別紙6-1 処理結果コード) are not public; the reference (oqs-messages.md §4)
//! gives a small synthetic catalogue and says a simulator should keep its codes configurable.
//! So the classifier does not match code strings: it asks a [`ResultCodes`] table what a code
//! means. [`ResultCodes::reference`] holds the reference's catalogue (SIM-E0900, SIM-W2001) plus
//! the codes of Tsunagi's own card search (SIM-E1101…E1107, SIM-W2002), which are outside the
//! reference's catalogue; a deployment against another system replaces or extends the table
//! with [`OqsClient::with_result_codes`](super::OqsClient::with_result_codes).
//!
//! A code that is not in the table is still shown: as its own text (person-level errors and
//! warnings) or as a message-level error with the offline guidance (SegmentOfResult 9).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a code means to the daemon. Stable kebab-case names, for settings files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CodeMeaning {
    /// Message level: the system itself failed; asking again later can help.
    SystemError,
    /// Person level: the card's certificate expired beyond the grace period.
    CertificateExpired,
    /// Person level: the card's certificate is revoked (lost or suspended).
    CertificateRevoked,
    /// Person level: the visual method is not allowed for this card; the PIN is needed.
    PinRequired,
    /// Person level: the system did not accept the card's evidence.
    CardNotAccepted,
    /// Warning: the card's certificate expires within 3 months.
    CertificateExpiresSoon,
    /// Warning: the card's certificate has expired and is in its grace period.
    CertificateInGrace,
}

/// The table from code to meaning. `Default` is [`ResultCodes::reference`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResultCodes {
    codes: BTreeMap<String, CodeMeaning>,
}

impl Default for ResultCodes {
    fn default() -> Self {
        Self::reference()
    }
}

impl ResultCodes {
    /// The reference's synthetic catalogue and the simulator's card-search codes.
    pub fn reference() -> Self {
        use CodeMeaning::*;
        [
            ("SIM-E0900", SystemError),
            ("SIM-W2001", CertificateExpiresSoon),
            ("SIM-E1101", CardNotAccepted),
            ("SIM-E1102", CardNotAccepted),
            ("SIM-E1103", CertificateRevoked),
            ("SIM-E1104", CertificateExpired),
            ("SIM-E1105", PinRequired),
            ("SIM-E1107", CardNotAccepted),
            ("SIM-W2002", CertificateInGrace),
        ]
        .into_iter()
        .fold(Self::empty(), |t, (code, meaning)| t.with(code, meaning))
    }

    /// A table that knows no code.
    pub fn empty() -> Self {
        Self {
            codes: BTreeMap::new(),
        }
    }

    /// The table with `code` meaning `meaning` (replacing what it meant before).
    pub fn with(mut self, code: impl Into<String>, meaning: CodeMeaning) -> Self {
        self.codes.insert(code.into(), meaning);
        self
    }

    /// The table without `code`.
    pub fn without(mut self, code: &str) -> Self {
        self.codes.remove(code);
        self
    }

    /// What `code` means, if the table knows it.
    pub fn meaning(&self, code: &str) -> Option<CodeMeaning> {
        self.codes.get(code).copied()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn reference_table_and_settings() {
        // It knows the reference's catalogue and the card-search codes by default.
        let t = ResultCodes::default();
        assert_eq!(t.meaning("SIM-E0900"), Some(CodeMeaning::SystemError));
        assert_eq!(
            t.meaning("SIM-E1104"),
            Some(CodeMeaning::CertificateExpired)
        );
        assert_eq!(t.meaning("SIM-E1001"), None);
        // It takes other codes as settings, and reads them from a settings file.
        let t: ResultCodes =
            serde_json::from_str(r#"{"OQS-E2104":"certificate-expired"}"#).unwrap();
        assert_eq!(
            t.meaning("OQS-E2104"),
            Some(CodeMeaning::CertificateExpired)
        );
        assert_eq!(t.meaning("SIM-E1104"), None);
        let t = ResultCodes::reference().without("SIM-E1104");
        assert_eq!(t.meaning("SIM-E1104"), None);
    }
}
