//! The card path (カード読取): PC/SC readers and the My Number card's JPKI application.
//!
//! A check reads the user-authentication certificate (visual method), or also verifies the
//! 4-digit PIN and has the card sign a fresh challenge (PIN method). The remaining PIN tries
//! are read before every attempt and the last try is never spent without the operator's
//! explicit confirmation, so Tsunagi never locks a patient's card. The individual number
//! (個人番号) is never read: the card-info application is not even selected.
//!
//! - [`apdu`]: command/response encoding and status words;
//! - [`jpki`]: the JPKI application over any [`Transport`];
//! - [`reader`]: pcscd through the `pcsc` crate (reader list, card insertion, transmit);
//! - [`cert`]: what the daemon needs from the certificate (serial, validity, public key).

pub mod apdu;
pub mod cert;
pub mod jpki;
pub mod reader;

use std::fmt;

pub use jpki::{CardStats, JpkiSession, Transport};

use crate::domain::IdentityMethod;
use apdu::StatusWord;

/// Failure while talking to the card or the reader.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    /// The smart-card service (pcscd) is not running or stopped.
    #[error("smart-card service is not running")]
    ServiceNotRunning,
    /// No card reader is connected.
    #[error("no card reader is connected")]
    NoReaders,
    /// The named reader does not exist.
    #[error("reader {name:?} not found")]
    ReaderNotFound {
        /// The name asked for.
        name: String,
        /// The readers that do exist.
        available: Vec<String>,
    },
    /// No card was placed within the wait time.
    #[error("no card was presented in time")]
    NoCardInTime,
    /// The card was removed during the exchange.
    #[error("card removed")]
    Removed,
    /// The card has no JPKI application: not a My Number card.
    #[error("not a My Number card (no JPKI application)")]
    NotMyNumberCard,
    /// The certificate on the card is not a usable DER certificate.
    #[error("bad certificate on card: {detail}")]
    BadCertificate {
        /// What was wrong.
        detail: &'static str,
    },
    /// The card's answer was shorter than a status word.
    #[error("truncated response from card")]
    TruncatedResponse,
    /// The PIN was wrong; the card counted one try.
    #[error("wrong PIN, {tries_left} tries left")]
    WrongPin {
        /// Tries left on the card.
        tries_left: u8,
    },
    /// The PIN is blocked (63C0, 6983 or 6984).
    #[error("PIN is blocked")]
    PinBlocked,
    /// Only one try was left and the operator did not confirm spending it.
    #[error("last PIN try not confirmed")]
    LastTryNotConfirmed,
    /// The operator cancelled PIN entry.
    #[error("PIN entry cancelled")]
    Cancelled,
    /// The card refused to sign because the PIN was not verified.
    #[error("card refused to sign: PIN not verified")]
    PinNotVerified,
    /// The card's signature does not verify with its own certificate.
    #[error("card signature does not verify with its certificate")]
    SignatureMismatch,
    /// The card answered a status word the flow does not expect.
    #[error("unexpected status {sw} at {step}")]
    Unexpected {
        /// Which step of the flow.
        step: &'static str,
        /// What the card answered.
        sw: StatusWord,
    },
    /// Another PC/SC failure.
    #[error("pc/sc: {0}")]
    Pcsc(#[from] pcsc::Error),
}

impl CardError {
    /// Whether the card left the reader.
    pub fn is_removed(&self) -> bool {
        matches!(self, CardError::Removed)
    }

    /// The message for reception staff: what happened and what to do now.
    pub fn message_ja(&self) -> String {
        match self {
            CardError::ServiceNotRunning => "カードリーダーのサービス（pcscd）が動いていません。サービスを起動するか、端末を再起動してください。".into(),
            CardError::NoReaders => "カードリーダーが接続されていません。リーダーのケーブルを確認してください。".into(),
            CardError::ReaderNotFound { name, available } => {
                if available.is_empty() {
                    format!("カードリーダー「{name}」が見つかりません。接続されているリーダーはありません。")
                } else {
                    format!(
                        "カードリーダー「{name}」が見つかりません。接続されているリーダー: {}",
                        available.join("、")
                    )
                }
            }
            CardError::NoCardInTime => "カードが置かれませんでした。マイナンバーカードをリーダーに置いてから、もう一度確認してください。".into(),
            CardError::Removed => "読み取り中にカードが離れました。カードをリーダーに置いたまま、もう一度確認してください。".into(),
            CardError::NotMyNumberCard => "マイナンバーカードではないカードです。マイナ保険証（マイナンバーカード）を置いてください。".into(),
            CardError::BadCertificate { .. } | CardError::TruncatedResponse | CardError::Unexpected { .. } => {
                "カードを正しく読み取れませんでした。カードを置き直して、もう一度確認してください。続く場合はICチップの不良が考えられます（資格確認書やマイナポータルの画面で確認してください）。".into()
            }
            CardError::WrongPin { tries_left } => {
                let warn = if *tries_left == 1 {
                    "次に間違えるとカードがロックされます。"
                } else {
                    ""
                };
                format!("暗証番号が違います。残り{tries_left}回です。{warn}不安な場合は目視での本人確認に切り替えてください。")
            }
            CardError::PinBlocked => "暗証番号がロックされています。目視で本人確認してください。ロックの解除は市区町村の窓口で行えます。".into(),
            CardError::LastTryNotConfirmed => "暗証番号の残り回数が1回です。確認が得られなかったため入力しませんでした。目視での本人確認に切り替えるか、患者さんに確認のうえ再度お試しください。".into(),
            CardError::Cancelled => "暗証番号の入力が取り消されました。".into(),
            CardError::PinNotVerified => "カードが署名を拒否しました（暗証番号未確認）。もう一度確認してください。".into(),
            CardError::SignatureMismatch => "カードの署名が証明書と一致しません。カードの異常が考えられます。資格確認書等で確認してください。".into(),
            CardError::Pcsc(_) => "カードリーダーとの通信でエラーが起きました。カードを置き直して、もう一度確認してください。".into(),
        }
    }
}

/// A 4-digit PIN (暗証番号) of the user-authentication certificate.
///
/// `Debug` never shows the digits, and nothing logs them.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);

impl Pin {
    /// Accepts exactly four ASCII digits (surrounding whitespace, e.g. a newline, is trimmed).
    pub fn parse(input: &str) -> Option<Self> {
        let t = input.trim();
        (t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit())).then(|| Self(t.to_string()))
    }

    pub(crate) fn digits(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// The state of the user-authentication PIN as read before an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinState {
    /// This many tries are left.
    TriesLeft(u8),
    /// Already verified in this card session.
    Verified,
    /// Blocked: no tries left.
    Blocked,
}

/// Where the PIN comes from and who confirms the last try: the operator's side of a PIN check.
pub trait PinEntry {
    /// Asks for the PIN, saying how many tries are left. `None` means the operator cancelled
    /// (or there is no more input).
    fn pin(&mut self, tries_left: u8) -> Option<Pin>;
    /// Asks whether to spend the last remaining try. Only `true` lets the daemon send it.
    fn confirm_last_try(&mut self) -> bool;
    /// Tells the operator the PIN was wrong before asking again.
    fn wrong_pin(&mut self, tries_left: u8);
}

/// What the card proved in one check.
#[derive(Clone)]
pub struct CardEvidence {
    /// How identity was confirmed.
    pub method: IdentityMethod,
    /// The user-authentication certificate (DER).
    pub certificate_der: Vec<u8>,
    /// The card's signature over the challenge (PIN method only).
    pub signature: Option<Vec<u8>>,
    /// APDUs and card time.
    pub stats: CardStats,
}

impl fmt::Debug for CardEvidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardEvidence")
            .field("method", &self.method)
            .field("certificate_len", &self.certificate_der.len())
            .field("signed", &self.signature.is_some())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Reads what a check needs from the card.
///
/// Visual: the certificate only. PIN: the certificate, then the tries left, the PIN (asking
/// for confirmation before the last try), and the card's signature over `digest_info` (the
/// DER DigestInfo of the challenge), which is checked against the certificate before it is
/// sent anywhere.
pub fn read_for_check<T: Transport>(
    transport: T,
    method: IdentityMethod,
    digest_info: &[u8],
    pin_entry: &mut dyn PinEntry,
) -> Result<CardEvidence, CardError> {
    let mut session = JpkiSession::open(transport)?;
    let certificate_der = session.read_auth_certificate()?;
    let signature = match method {
        IdentityMethod::Visual => None,
        IdentityMethod::Pin => {
            verify_with_confirmation(&mut session, pin_entry)?;
            let signature = session.sign(digest_info)?;
            let info = cert::CertificateInfo::parse(&certificate_der)?;
            if !info.verifies_digest_info(digest_info, &signature) {
                return Err(CardError::SignatureMismatch);
            }
            Some(signature)
        }
    };
    let mut stats = session.stats();
    // Letting go of the card resets it (the PIN's verified state must not outlive the
    // check); that is the card's time, not ours.
    let released = std::time::Instant::now();
    drop(session.into_transport());
    stats.card_time += released.elapsed();
    Ok(CardEvidence {
        method,
        certificate_der,
        signature,
        stats,
    })
}

fn verify_with_confirmation<T: Transport>(
    session: &mut JpkiSession<T>,
    pin_entry: &mut dyn PinEntry,
) -> Result<(), CardError> {
    loop {
        let tries_left = match session.pin_state()? {
            PinState::Verified => return Ok(()),
            PinState::Blocked | PinState::TriesLeft(0) => return Err(CardError::PinBlocked),
            PinState::TriesLeft(n) => n,
        };
        if tries_left == 1 && !pin_entry.confirm_last_try() {
            return Err(CardError::LastTryNotConfirmed);
        }
        let Some(pin) = pin_entry.pin(tries_left) else {
            return Err(CardError::Cancelled);
        };
        match session.verify_pin(&pin) {
            Ok(()) => return Ok(()),
            Err(CardError::WrongPin { tries_left: 0 }) => return Err(CardError::PinBlocked),
            Err(CardError::WrongPin { tries_left }) => pin_entry.wrong_pin(tries_left),
            Err(other) => return Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_four_digits_and_never_printed() {
        assert!(Pin::parse("1234").is_some());
        assert!(Pin::parse("1234\n").is_some());
        assert!(Pin::parse("123").is_none());
        assert!(Pin::parse("12345").is_none());
        assert!(Pin::parse("12a4").is_none());
        assert!(Pin::parse("１２３４").is_none());
        let pin = Pin::parse("9876")
            .map(|p| format!("{p:?}"))
            .unwrap_or_default();
        assert!(!pin.contains("9876"));
    }

    #[test]
    fn every_error_has_a_japanese_message() {
        let errors = [
            CardError::ServiceNotRunning,
            CardError::NoReaders,
            CardError::NoCardInTime,
            CardError::Removed,
            CardError::PinBlocked,
            CardError::WrongPin { tries_left: 2 },
            CardError::LastTryNotConfirmed,
        ];
        for e in errors {
            let m = e.message_ja();
            assert!(
                m.chars().any(|c| ('\u{3040}'..='\u{30FF}').contains(&c)),
                "{m}"
            );
        }
        assert!(CardError::WrongPin { tries_left: 2 }
            .message_ja()
            .contains("残り2回"));
    }
}
