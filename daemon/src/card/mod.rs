//! The card path (カード読取): PC/SC readers and the My Number card's JPKI application.
//!
//! A check reads the user-authentication certificate (visual method), or also verifies the
//! 4-digit PIN and has the card sign a fresh challenge (PIN method). The remaining PIN tries
//! are read before every attempt and the last try is never spent without the operator's
//! explicit confirmation, so Tsunagi never locks a patient's card. The individual number
//! (個人番号) is never read: the card-info application is not even selected.
//!
//! The card's own rules are applied here, at the counter, before anything is asked of the
//! qualification system — so a card that cannot be used is told while the patient is still
//! there, and never captured for a later confirmation that could only fail:
//! - a photo-less infant card (R2) is PIN-only: the visual method is refused before the card
//!   is even read, and a blocked PIN on it points past the visual check it cannot use;
//! - the certificate's expiry is judged on the visit date (R3: usable to the end of the 3rd
//!   month after expiry, with a notice to renew), and a smartphone (token EF `0006`) gets no
//!   grace at all (R6) — before the PIN is asked, so no try is spent on a card that fails;
//! - a 顔認証マイナンバーカード has no PIN: asked for one, it is sent to the visual check with
//!   its own message, not reported as a chip fault.
//!
//! The whole card sequence runs inside one PC/SC transaction ([`Transport::exclusive`]), and
//! PIN bytes are wiped from memory when dropped ([`Pin`], [`apdu::Command`]).
//!
//! - [`apdu`]: command/response encoding and status words (`61xx`, `6Cxx` included);
//! - [`jpki`]: the JPKI application over any [`Transport`];
//! - [`reader`]: pcscd through the `pcsc` crate (reader list, card insertion, transactions);
//! - [`cert`]: what the daemon needs from the certificate (serial, validity, public key).

pub mod apdu;
pub mod cert;
pub mod jpki;
pub mod reader;

use std::fmt;

use chrono::NaiveDate;
use der::zeroize::Zeroize;

pub use jpki::{CardStats, JpkiSession, Transport};

use crate::domain::IdentityMethod;
use crate::rules::calendar::date_ja;
use crate::rules::certificate::{certificate_usability, DataScope, ReadVia};
use crate::rules::identity::{identity_method_allowed, CardKind};
use crate::rules::RuleSettings;
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
    /// The card's own rules refuse this check at the counter (expired beyond grace, a
    /// photo-less card checked visually, no PIN set, …): not confirmed, and nothing to
    /// confirm later.
    #[error("card refused at the counter: {reason}")]
    Refused {
        /// Which rule refused, and the facts staff need.
        reason: CardRefusal,
    },
}

/// Why the card cannot be used for this check, decided by the daemon before any query.
///
/// Each one is final for this card on this visit date: the check ends as refused (not
/// confirmed) and is never captured offline, because a later query could only fail too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CardRefusal {
    /// The certificate expired, and the grace period (R3: to the end of the 3rd month after
    /// the month of expiry) is over on the visit date.
    #[error("certificate expired on {expiry}, grace ended on {grace_end}")]
    CertificateExpired {
        /// The certificate's last valid day (Japan time).
        expiry: NaiveDate,
        /// The last day of the grace period.
        grace_end: NaiveDate,
    },
    /// A smartphone's certificate expired: the phone has no grace period (R6).
    #[error("smartphone certificate expired on {expiry}, no grace period")]
    SmartphoneExpired {
        /// The certificate's last valid day (Japan time).
        expiry: NaiveDate,
    },
    /// The smartphone マイナ保険証 is not usable yet on the visit date (R6).
    #[error("smartphone use starts on {from}")]
    SmartphoneNotYet {
        /// The first day it can be used.
        from: NaiveDate,
    },
    /// A photo-less infant card checked visually: it needs the PIN (R2).
    #[error("photo-less card needs the PIN")]
    PhotoLessNeedsPin,
    /// A photo-less infant card whose PIN is blocked: the visual fall-back does not exist
    /// for it (R2), so the card cannot be used until the PIN is reset.
    #[error("photo-less card with a blocked PIN")]
    PhotoLessPinBlocked,
    /// A 顔認証マイナンバーカード (no PIN set) asked for a PIN: use the visual check.
    #[error("no PIN is set on this card (face-authentication card)")]
    NoPinSet,
}

impl CardRefusal {
    /// Stable kebab-case name, the same in the API, the CLI's JSON and logs.
    pub fn name(&self) -> &'static str {
        match self {
            // The same name the qualification system's own refusal gets (`QueryError`), so a
            // report reads the same whoever refused first.
            CardRefusal::CertificateExpired { .. } => "certificate-expired",
            CardRefusal::SmartphoneExpired { .. } => "smartphone-certificate-expired",
            CardRefusal::SmartphoneNotYet { .. } => "smartphone-not-yet",
            CardRefusal::PhotoLessNeedsPin => "photo-less-needs-pin",
            CardRefusal::PhotoLessPinBlocked => "photo-less-pin-blocked",
            CardRefusal::NoPinSet => "no-pin-set",
        }
    }

    /// The message for reception staff: what happened and what to do now, in the order the
    /// fall-backs are tried at the counter.
    pub fn message_ja(&self) -> String {
        match self {
            CardRefusal::CertificateExpired { expiry, grace_end } => format!(
                "マイナンバーカードの電子証明書は有効期限（{}）から3か月の猶予（{}まで）を過ぎているため、受診日の資格確認には使えません。資格確認書をお持ちか確認してください（期限切れから3か月を過ぎた方には保険者から交付されます）。なければマイナポータルの資格情報画面（PDF）を見せてもらい、どちらもなければ被保険者資格申立書を記入してもらってください。電子証明書の更新は市区町村の窓口でできることをお伝えください。",
                date_ja(*expiry),
                date_ja(*grace_end)
            ),
            CardRefusal::SmartphoneExpired { expiry } => format!(
                "スマートフォンのマイナ保険証は、電子証明書の有効期限（{}）が切れているため使えません（スマートフォンには猶予期間がありません）。マイナンバーカード本体で確認してください。カードがなければ資格確認書かマイナポータルの資格情報画面（PDF）で確認し、どちらもなければ被保険者資格申立書を記入してもらってください。",
                date_ja(*expiry)
            ),
            CardRefusal::SmartphoneNotYet { from } => format!(
                "スマートフォンのマイナ保険証は{}から利用できます。マイナンバーカード本体で確認してください。",
                date_ja(*from)
            ),
            CardRefusal::PhotoLessNeedsPin => "顔写真のないカード（乳児のカード）は目視では本人確認できません。暗証番号で確認し直してください（保護者の方に4桁の暗証番号を入力してもらいます）。".into(),
            CardRefusal::PhotoLessPinBlocked => "暗証番号がロックされています。顔写真のないカード（乳児のカード）は目視で確認できないため、このカードでは資格確認できません。マイナポータルの資格情報画面（PDF）か資格確認書で確認し、どちらもなければ被保険者資格申立書を記入してもらってください。暗証番号のロック解除は市区町村の窓口でできることを保護者の方にお伝えください。".into(),
            CardRefusal::NoPinSet => "このカードは暗証番号が設定されていない顔認証マイナンバーカードです（券面に「顔認証」と記載）。暗証番号は使えないため、目視（顔写真との照合）で確認し直してください。".into(),
        }
    }
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
                        "カードリーダー「{name}」が見つかりません。接続されているリーダーは「{}」です。設定のリーダー名を確認してください。",
                        available.join("」「")
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
                format!("暗証番号が違います。残り{tries_left}回です。{warn}不安な場合、顔写真付きのカードなら目視での本人確認に切り替えてください。")
            }
            // Nothing on the chip tells a photo-less infant card (R2), so unless the operator
            // said so (then `CardRefusal::PhotoLessPinBlocked`), the message must be right
            // for both kinds of card.
            CardError::PinBlocked => "暗証番号がロックされています。顔写真付きのカードなら目視で本人確認してください。顔写真のないカード（乳児のカード）は目視で確認できないため、マイナポータルの資格情報画面（PDF）か資格確認書で確認してください。ロックの解除は市区町村の窓口で行えます。".into(),
            CardError::LastTryNotConfirmed => "暗証番号の残り回数が1回です。確認が得られなかったため入力しませんでした。顔写真付きのカードなら目視での本人確認に切り替えられます。患者さんに確認のうえ、再度お試しください。".into(),
            CardError::Cancelled => "暗証番号の入力が取り消されました。".into(),
            CardError::PinNotVerified => "カードが署名を拒否しました（暗証番号未確認）。もう一度確認してください。".into(),
            CardError::SignatureMismatch => "カードの署名が証明書と一致しません。カードの異常が考えられます。資格確認書等で確認してください。".into(),
            CardError::Pcsc(_) => "カードリーダーとの通信でエラーが起きました。カードを置き直して、もう一度確認してください。".into(),
            CardError::Refused { reason } => reason.message_ja(),
        }
    }
}

/// A 4-digit PIN (暗証番号) of the user-authentication certificate.
///
/// `Debug` never shows the digits, nothing logs them, and drop wipes them from memory.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);

impl Drop for Pin {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

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
    /// No PIN is set at all: a 顔認証マイナンバーカード.
    NotSet,
}

/// The operator's side of a check: where the PIN comes from, who confirms the last try, and
/// what the operator knows about the card that the chip cannot tell.
pub trait PinEntry {
    /// Asks for the PIN, saying how many tries are left. `None` means the operator cancelled
    /// (or there is no more input).
    fn pin(&mut self, tries_left: u8) -> Option<Pin>;
    /// Asks whether to spend the last remaining try. Only `true` lets the daemon send it.
    fn confirm_last_try(&mut self) -> bool;
    /// Tells the operator the PIN was wrong before asking again.
    fn wrong_pin(&mut self, tries_left: u8);
    /// What kind of card the operator says this is. Nothing on the chip marks a photo-less
    /// infant card (R2; jpki-card.md §3.3), so only the operator (who sees the card) can say
    /// so; until then it is [`CardKind::Standard`] and the qualification system has the
    /// last word.
    fn card_kind(&self) -> CardKind {
        CardKind::Standard
    }
}

/// How the certificate stands on the visit date, as judged at the counter (R3, R6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateStanding {
    /// Within its validity.
    Valid {
        /// The certificate's last valid day.
        expiry: NaiveDate,
    },
    /// Expired but within the grace period: usable until `usable_until`, with insurance data
    /// only (no drug or diagnosis information); the patient should renew it.
    InGrace {
        /// The certificate's last valid day.
        expiry: NaiveDate,
        /// The last day of the grace period.
        usable_until: NaiveDate,
    },
}

impl CertificateStanding {
    /// Stable name of the notice staff are shown, if any.
    pub const GRACE_NOTICE: &'static str = "certificate-in-grace";

    /// The notice for staff (code, message), if the patient must be told something.
    pub fn notice_ja(&self) -> Option<(&'static str, String)> {
        match self {
            CertificateStanding::Valid { .. } => None,
            CertificateStanding::InGrace {
                expiry,
                usable_until,
            } => Some((
                Self::GRACE_NOTICE,
                format!(
                    "マイナンバーカードの電子証明書の有効期限（{}）が切れています。{}までは資格確認に使えます（薬剤・診療情報は表示されません）。市区町村の窓口で早めに更新するよう患者さんにお伝えください。",
                    date_ja(*expiry),
                    date_ja(*usable_until)
                ),
            )),
        }
    }
}

/// R3, R6: judges a certificate whose last valid day is `expiry` on the visit date. `Err` is
/// the refusal staff are shown.
pub fn judge_certificate(
    expiry: NaiveDate,
    visit_date: NaiveDate,
    via: ReadVia,
    settings: &RuleSettings,
) -> Result<CertificateStanding, CardRefusal> {
    let answer = certificate_usability(expiry, visit_date, via, settings);
    match (answer.usable, answer.scope, via) {
        (true, DataScope::InsuranceOnly, _) => Ok(CertificateStanding::InGrace {
            expiry,
            usable_until: answer.usable_until.unwrap_or(expiry),
        }),
        (true, _, _) => Ok(CertificateStanding::Valid { expiry }),
        (false, _, ReadVia::Smartphone) if visit_date < settings.smartphone_from => {
            Err(CardRefusal::SmartphoneNotYet {
                from: settings.smartphone_from,
            })
        }
        (false, _, ReadVia::Smartphone) => Err(CardRefusal::SmartphoneExpired { expiry }),
        (false, _, ReadVia::Card) => Err(CardRefusal::CertificateExpired {
            expiry,
            grace_end: crate::rules::certificate::grace_end(expiry),
        }),
    }
}

/// What a check asks of the card, and what the card's rules are judged against.
#[derive(Debug, Clone)]
pub struct CheckPlan<'a> {
    /// 目視 or 暗証番号.
    pub method: IdentityMethod,
    /// What the operator says the card is (R2).
    pub kind: CardKind,
    /// The visit date the certificate is judged on.
    pub visit_date: NaiveDate,
    /// The rule dates (the smartphone start, R6).
    pub settings: &'a RuleSettings,
}

/// What the card proved in one check.
#[derive(Clone)]
pub struct CardEvidence {
    /// How identity was confirmed.
    pub method: IdentityMethod,
    /// A physical card or a smartphone (token EF).
    pub via: ReadVia,
    /// The certificate's standing on the visit date.
    pub standing: CertificateStanding,
    /// The user-authentication certificate (DER).
    pub certificate_der: Vec<u8>,
    /// What was read from the certificate.
    pub certificate: cert::CertificateInfo,
    /// The card's signature over the challenge (PIN method only).
    pub signature: Option<Vec<u8>>,
    /// APDUs and card time.
    pub stats: CardStats,
}

impl fmt::Debug for CardEvidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardEvidence")
            .field("method", &self.method)
            .field("via", &self.via)
            .field("standing", &self.standing)
            .field("certificate_len", &self.certificate_der.len())
            .field("signed", &self.signature.is_some())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Reads what a check needs from the card, applying the card's own rules on the way.
///
/// In order, all inside one [`Transport::exclusive`] section:
/// 1. a photo-less card (the operator said so) with the visual method is refused before the
///    card is touched (R2);
/// 2. the JPKI application is selected, the token EF tells a card from a smartphone, and
///    the certificate is read and judged on the visit date (R3, R6) — a refusal here comes
///    before the PIN, so no try is spent on a card that cannot be used;
/// 3. PIN method only: the tries left, the PIN (asking for confirmation before the last
///    try), and the card's signature over `digest_info` (the DER DigestInfo of the
///    challenge), which is checked against the certificate before it is sent anywhere.
pub fn read_for_check<T: Transport>(
    mut transport: T,
    plan: &CheckPlan<'_>,
    digest_info: &[u8],
    pin_entry: &mut dyn PinEntry,
) -> Result<CardEvidence, CardError> {
    let (allowed, _) = identity_method_allowed(plan.kind, plan.method);
    if !allowed {
        return Err(CardError::Refused {
            reason: CardRefusal::PhotoLessNeedsPin,
        });
    }
    let mut read = None;
    transport.exclusive(&mut |card| {
        read = Some(card_sequence(card, plan, digest_info, pin_entry)?);
        Ok(())
    })?;
    let Some(mut evidence) = read else {
        // `exclusive` returns Ok only after running the body to success.
        return Err(CardError::Unexpected {
            step: "transaction",
            sw: StatusWord(0),
        });
    };
    // Letting go of the card resets it (the PIN's verified state must not outlive the
    // check); that is the card's time, not ours.
    let released = std::time::Instant::now();
    drop(transport);
    evidence.stats.card_time += released.elapsed();
    Ok(evidence)
}

/// The card part of a check, on a card held exclusively.
fn card_sequence(
    card: &mut dyn Transport,
    plan: &CheckPlan<'_>,
    digest_info: &[u8],
    pin_entry: &mut dyn PinEntry,
) -> Result<CardEvidence, CardError> {
    let mut session = JpkiSession::open(card)?;
    let via = session.read_via()?;
    let certificate_der = session.read_auth_certificate()?;
    let certificate = cert::CertificateInfo::parse(&certificate_der)?;
    let standing = judge_certificate(certificate.not_after, plan.visit_date, via, plan.settings)
        .map_err(|reason| CardError::Refused { reason })?;
    let signature = match plan.method {
        IdentityMethod::Visual => None,
        IdentityMethod::Pin => {
            verify_with_confirmation(&mut session, pin_entry).map_err(|e| {
                match (e, plan.kind) {
                    (CardError::PinBlocked, CardKind::InfantNoPhoto) => CardError::Refused {
                        reason: CardRefusal::PhotoLessPinBlocked,
                    },
                    (e, _) => e,
                }
            })?;
            let signature = session.sign(digest_info)?;
            if !certificate.verifies_digest_info(digest_info, &signature) {
                return Err(CardError::SignatureMismatch);
            }
            Some(signature)
        }
    };
    Ok(CardEvidence {
        method: plan.method,
        via,
        standing,
        certificate_der,
        certificate,
        signature,
        stats: session.stats(),
    })
}

fn verify_with_confirmation<T: Transport>(
    session: &mut JpkiSession<T>,
    pin_entry: &mut dyn PinEntry,
) -> Result<(), CardError> {
    loop {
        let tries_left = match session.pin_state()? {
            PinState::Verified => return Ok(()),
            PinState::NotSet => {
                return Err(CardError::Refused {
                    reason: CardRefusal::NoPinSet,
                })
            }
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
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::rules::parse_date;
    use tsunagi_vcard::card::{BlockedStatus, CardProfile, PinSetup, Token, VirtualCard};
    use tsunagi_vcard::pki::{key_pool, TestCa};

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

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
        let refusals = [
            CardRefusal::CertificateExpired {
                expiry: d("2025-02-14"),
                grace_end: d("2025-05-31"),
            },
            CardRefusal::SmartphoneExpired {
                expiry: d("2025-10-01"),
            },
            CardRefusal::SmartphoneNotYet {
                from: d("2025-09-19"),
            },
            CardRefusal::PhotoLessNeedsPin,
            CardRefusal::PhotoLessPinBlocked,
            CardRefusal::NoPinSet,
        ];
        let all = errors.into_iter().chain(
            refusals
                .into_iter()
                .map(|reason| CardError::Refused { reason }),
        );
        for e in all {
            let m = e.message_ja();
            assert!(
                m.chars().any(|c| ('\u{3040}'..='\u{30FF}').contains(&c)),
                "{m}"
            );
            // Staff text never names internal rule ids.
            assert!(
                !m.contains("R2") && !m.contains("R3") && !m.contains("R6"),
                "{m}"
            );
        }
        assert!(CardError::WrongPin { tries_left: 2 }
            .message_ja()
            .contains("残り2回"));
    }

    #[test]
    fn refusal_names_are_stable_and_distinct() {
        let names = [
            CardRefusal::CertificateExpired {
                expiry: d("2025-02-14"),
                grace_end: d("2025-05-31"),
            }
            .name(),
            CardRefusal::SmartphoneExpired {
                expiry: d("2025-10-01"),
            }
            .name(),
            CardRefusal::SmartphoneNotYet {
                from: d("2025-09-19"),
            }
            .name(),
            CardRefusal::PhotoLessNeedsPin.name(),
            CardRefusal::PhotoLessPinBlocked.name(),
            CardRefusal::NoPinSet.name(),
        ];
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '-')));
    }

    #[test]
    fn certificate_judged_on_the_visit_date() {
        let s = RuleSettings::default();
        use ReadVia::*;
        // (rule, case, expiry, visit date, via, Ok(in grace?) or Err(refusal name))
        type Row = (
            &'static str,
            &'static str,
            &'static str,
            &'static str,
            ReadVia,
            Result<bool, &'static str>,
        );
        let rows: [Row; 8] = [
            (
                "R3",
                "valid on the visit date",
                "2025-02-14",
                "2025-02-14",
                Card,
                Ok(false),
            ),
            (
                "R3",
                "2 months after expiry: grace",
                "2025-02-14",
                "2025-04-14",
                Card,
                Ok(true),
            ),
            (
                "R3",
                "last day of the grace",
                "2025-02-14",
                "2025-05-31",
                Card,
                Ok(true),
            ),
            (
                "R3",
                "day after the grace",
                "2025-02-14",
                "2025-06-01",
                Card,
                Err("certificate-expired"),
            ),
            (
                "R3",
                "4 months after expiry",
                "2025-02-14",
                "2025-06-14",
                Card,
                Err("certificate-expired"),
            ),
            (
                "R6",
                "phone the day after expiry",
                "2025-10-01",
                "2025-10-02",
                Smartphone,
                Err("smartphone-certificate-expired"),
            ),
            (
                "R6",
                "phone before its start",
                "2030-01-01",
                "2025-09-18",
                Smartphone,
                Err("smartphone-not-yet"),
            ),
            (
                "R6",
                "phone valid",
                "2030-01-01",
                "2025-09-19",
                Smartphone,
                Ok(false),
            ),
        ];
        for (rule, case, expiry, visit, via, want) in rows {
            let got = judge_certificate(d(expiry), d(visit), via, &s);
            match (got, want) {
                (Ok(st), Ok(grace)) => {
                    assert_eq!(
                        matches!(st, CertificateStanding::InGrace { .. }),
                        grace,
                        "{rule} {case}"
                    );
                    assert_eq!(st.notice_ja().is_some(), grace, "{rule} {case}");
                }
                (Err(r), Err(name)) => assert_eq!(r.name(), name, "{rule} {case}"),
                (got, want) => panic!("{rule} {case}: got {got:?}, want {want:?}"),
            }
        }
        // It names the grace end in the refusal (February expiry: to the end of May).
        let r = judge_certificate(d("2025-02-14"), d("2025-06-14"), Card, &s).unwrap_err();
        assert_eq!(
            r,
            CardRefusal::CertificateExpired {
                expiry: d("2025-02-14"),
                grace_end: d("2025-05-31")
            }
        );
        assert!(
            r.message_ja().contains("2025年5月31日"),
            "{}",
            r.message_ja()
        );
    }

    // --- The card sequence, over the virtual card ---------------------------------------

    /// A virtual card on a transport that checks every APDU goes inside one transaction.
    struct Held {
        card: VirtualCard,
        began: u32,
        ended: u32,
        inside: bool,
        outside_apdus: u32,
    }

    impl Held {
        fn new(profile: CardProfile) -> Self {
            Self {
                card: VirtualCard::new(profile),
                began: 0,
                ended: 0,
                inside: false,
                outside_apdus: 0,
            }
        }
    }

    impl Transport for &mut Held {
        fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardError> {
            if !self.inside {
                self.outside_apdus += 1;
            }
            Ok(self.card.transmit(command))
        }

        fn exclusive(
            &mut self,
            body: &mut dyn FnMut(&mut dyn Transport) -> Result<(), CardError>,
        ) -> Result<(), CardError> {
            self.began += 1;
            self.inside = true;
            let mut me: &mut Held = self;
            let result = body(&mut me);
            self.inside = false;
            self.ended += 1;
            self.card.reset();
            result
        }
    }

    /// The operator: PINs to type, the card kind they say, and what they were asked.
    #[derive(Default)]
    struct Operator {
        pins: Vec<&'static str>,
        kind: Option<CardKind>,
        confirm: bool,
        asked: u32,
    }

    impl PinEntry for Operator {
        fn pin(&mut self, _tries_left: u8) -> Option<Pin> {
            self.asked += 1;
            if self.pins.is_empty() {
                None
            } else {
                Pin::parse(self.pins.remove(0))
            }
        }
        fn confirm_last_try(&mut self) -> bool {
            self.confirm
        }
        fn wrong_pin(&mut self, _tries_left: u8) {}
        fn card_kind(&self) -> CardKind {
            self.kind.unwrap_or(CardKind::Standard)
        }
    }

    fn card_expiring(expiry: NaiveDate) -> CardProfile {
        let keys = key_pool(2).unwrap();
        let ca = TestCa::generate(keys[0].clone(), d("2015-01-01"), d("2040-01-01")).unwrap();
        let not_before = expiry.checked_sub_months(chrono::Months::new(60)).unwrap();
        let cert = ca
            .issue_user_auth(&keys[1].to_public_key(), 4242, not_before, expiry)
            .unwrap();
        CardProfile::new("unit", &keys[1], cert, ca.certificate_der().to_vec()).unwrap()
    }

    fn run(
        profile: CardProfile,
        method: IdentityMethod,
        visit: &str,
        operator: &mut Operator,
    ) -> (Result<CardEvidence, CardError>, Held) {
        let mut held = Held::new(profile);
        let settings = RuleSettings::default();
        let plan = CheckPlan {
            method,
            kind: operator.card_kind(),
            visit_date: d(visit),
            settings: &settings,
        };
        let digest_info = [0x30u8; 51];
        let result = read_for_check(&mut held, &plan, &digest_info, operator);
        (result, held)
    }

    fn verifies_sent(held: &Held) -> usize {
        held.card
            .log()
            .entries()
            .iter()
            .filter(|e| e.command.get(1) == Some(&0x20) && e.command.len() > 4)
            .count()
    }

    fn refusal(result: &Result<CardEvidence, CardError>) -> Option<&CardRefusal> {
        match result {
            Err(CardError::Refused { reason }) => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn it_refuses_a_photo_less_card_checked_visually_before_touching_it() {
        let mut op = Operator {
            kind: Some(CardKind::InfantNoPhoto),
            ..Default::default()
        };
        let (r, held) = run(
            card_expiring(d("2029-01-01")),
            IdentityMethod::Visual,
            "2025-06-01",
            &mut op,
        );
        assert_eq!(refusal(&r), Some(&CardRefusal::PhotoLessNeedsPin));
        assert!(held.card.log().entries().is_empty(), "no APDU was sent");
        assert!(r.unwrap_err().message_ja().contains("暗証番号で確認"));
        // With the PIN the same card goes through.
        let mut op = Operator {
            kind: Some(CardKind::InfantNoPhoto),
            pins: vec!["1234"],
            ..Default::default()
        };
        let (r, _) = run(
            card_expiring(d("2029-01-01")),
            IdentityMethod::Pin,
            "2025-06-01",
            &mut op,
        );
        assert!(r.is_ok(), "{r:?}");
    }

    #[test]
    fn it_refuses_beyond_grace_on_the_visit_date_before_asking_the_pin() {
        // Expired 2025-02-14: 4 months later is past the grace (end of May).
        let mut op = Operator {
            pins: vec!["1234"],
            ..Default::default()
        };
        let (r, held) = run(
            card_expiring(d("2025-02-14")),
            IdentityMethod::Pin,
            "2025-06-14",
            &mut op,
        );
        assert_eq!(
            refusal(&r).map(CardRefusal::name),
            Some("certificate-expired")
        );
        assert_eq!(op.asked, 0, "the PIN was never asked");
        assert_eq!(verifies_sent(&held), 0);
        assert_eq!(held.card.pin_tries_left(), 3);
        // Two months after expiry the same card is usable, with the notice to renew.
        let mut op = Operator {
            pins: vec!["1234"],
            ..Default::default()
        };
        let (r, _) = run(
            card_expiring(d("2025-02-14")),
            IdentityMethod::Pin,
            "2025-04-14",
            &mut op,
        );
        let e = r.unwrap();
        assert_eq!(
            e.standing,
            CertificateStanding::InGrace {
                expiry: d("2025-02-14"),
                usable_until: d("2025-05-31")
            }
        );
        let (code, text) = e.standing.notice_ja().unwrap();
        assert_eq!(code, "certificate-in-grace");
        assert!(text.contains("更新"), "{text}");
        assert!(e.signature.is_some());
    }

    #[test]
    fn a_smartphone_gets_no_grace() {
        let phone = card_expiring(d("2025-10-01")).with_token(Token::Smartphone);
        let mut op = Operator::default();
        let (r, _) = run(phone.clone(), IdentityMethod::Visual, "2025-10-02", &mut op);
        assert_eq!(
            refusal(&r),
            Some(&CardRefusal::SmartphoneExpired {
                expiry: d("2025-10-01")
            })
        );
        let (r, _) = run(phone, IdentityMethod::Visual, "2025-10-01", &mut op);
        assert_eq!(r.unwrap().via, ReadVia::Smartphone);
        // The same expiry on a card is in its grace; and a card without a token EF is a card.
        for token in [Token::Card, Token::OlderCard, Token::Absent] {
            let card = card_expiring(d("2025-10-01")).with_token(token);
            let (r, _) = run(card, IdentityMethod::Visual, "2025-10-02", &mut op);
            let e = r.unwrap();
            assert_eq!(e.via, ReadVia::Card, "{token:?}");
            assert!(matches!(e.standing, CertificateStanding::InGrace { .. }));
        }
    }

    #[test]
    fn a_face_authentication_card_asked_for_a_pin_is_sent_to_the_visual_check() {
        for setup in [PinSetup::NotSet, PinSetup::NotSetNoEf] {
            let card = card_expiring(d("2029-01-01")).without_pin(setup);
            let mut op = Operator {
                pins: vec!["1234"],
                ..Default::default()
            };
            let (r, held) = run(card.clone(), IdentityMethod::Pin, "2025-06-01", &mut op);
            assert_eq!(refusal(&r), Some(&CardRefusal::NoPinSet), "{setup:?}");
            assert_eq!(op.asked, 0, "{setup:?}: no PIN asked");
            assert_eq!(verifies_sent(&held), 0);
            let m = r.unwrap_err().message_ja();
            assert!(m.contains("顔認証") && m.contains("目視"), "{m}");
            assert!(!m.contains("ICチップ"), "{m}");
            // The visual check works.
            let (r, _) = run(card, IdentityMethod::Visual, "2025-06-01", &mut op);
            assert!(r.is_ok(), "{setup:?}: {r:?}");
        }
    }

    #[test]
    fn a_blocked_pin_on_a_photo_less_card_points_past_the_visual_check() {
        for blocked in [
            BlockedStatus::Sw63C0,
            BlockedStatus::Sw6983,
            BlockedStatus::Sw6984,
        ] {
            let card = card_expiring(d("2029-01-01"))
                .with_pin_tries_left(0)
                .with_blocked_sw(blocked);
            let mut op = Operator {
                kind: Some(CardKind::InfantNoPhoto),
                pins: vec!["1234"],
                ..Default::default()
            };
            let (r, _) = run(card.clone(), IdentityMethod::Pin, "2025-06-01", &mut op);
            assert_eq!(
                refusal(&r),
                Some(&CardRefusal::PhotoLessPinBlocked),
                "{blocked:?}"
            );
            let m = r.unwrap_err().message_ja();
            assert!(
                !m.contains("目視で本人確認して") && !m.contains("切り替え"),
                "{m}"
            );
            assert!(m.contains("資格確認書") && m.contains("市区町村"), "{m}");
            // Without the operator's word it is the plain blocked PIN, whose message is right
            // for both kinds of card.
            let mut op = Operator {
                pins: vec!["1234"],
                ..Default::default()
            };
            let (r, _) = run(card, IdentityMethod::Pin, "2025-06-01", &mut op);
            let e = r.unwrap_err();
            assert!(matches!(e, CardError::PinBlocked), "{e:?}");
            assert!(e.message_ja().contains("顔写真のないカード"));
        }
        // The last wrong try on a photo-less card blocks it, and says so the same way.
        let card = card_expiring(d("2029-01-01")).with_pin_tries_left(1);
        let mut op = Operator {
            kind: Some(CardKind::InfantNoPhoto),
            pins: vec!["0000"],
            confirm: true,
            ..Default::default()
        };
        let (r, _) = run(card, IdentityMethod::Pin, "2025-06-01", &mut op);
        assert_eq!(refusal(&r), Some(&CardRefusal::PhotoLessPinBlocked));
    }

    #[test]
    fn every_apdu_goes_inside_one_transaction_released_on_every_path() {
        let good = card_expiring(d("2029-01-01"));
        let cases: Vec<(&str, CardProfile, IdentityMethod, &str, Vec<&'static str>)> = vec![
            (
                "visual",
                good.clone(),
                IdentityMethod::Visual,
                "2025-06-01",
                vec![],
            ),
            (
                "pin",
                good.clone(),
                IdentityMethod::Pin,
                "2025-06-01",
                vec!["1234"],
            ),
            (
                "cancelled",
                good.clone(),
                IdentityMethod::Pin,
                "2025-06-01",
                vec![],
            ),
            (
                "wrong then cancelled",
                good.clone(),
                IdentityMethod::Pin,
                "2025-06-01",
                vec!["0000"],
            ),
            (
                "beyond grace",
                card_expiring(d("2025-02-14")),
                IdentityMethod::Pin,
                "2025-06-14",
                vec!["1234"],
            ),
            (
                "no pin",
                good.clone().without_pin(PinSetup::NotSet),
                IdentityMethod::Pin,
                "2025-06-01",
                vec!["1234"],
            ),
            (
                "blocked",
                good.clone().with_pin_tries_left(0),
                IdentityMethod::Pin,
                "2025-06-01",
                vec!["1234"],
            ),
            (
                "chained",
                good.clone().with_chain_after(100),
                IdentityMethod::Pin,
                "2025-06-01",
                vec!["1234"],
            ),
        ];
        for (case, profile, method, visit, pins) in cases {
            let mut op = Operator {
                pins,
                ..Default::default()
            };
            let (_, held) = run(profile, method, visit, &mut op);
            assert_eq!((held.began, held.ended), (1, 1), "{case}");
            assert_eq!(held.outside_apdus, 0, "{case}");
            assert!(!held.card.log().entries().is_empty(), "{case}");
        }
    }

    #[test]
    fn a_card_that_chains_its_answers_is_read_and_signs() {
        let card = card_expiring(d("2029-01-01")).with_chain_after(100);
        let mut op = Operator {
            pins: vec!["1234"],
            ..Default::default()
        };
        let (r, held) = run(card.clone(), IdentityMethod::Pin, "2025-06-01", &mut op);
        let e = r.unwrap();
        assert_eq!(e.certificate_der, card.auth_certificate_der);
        assert_eq!(e.signature.as_ref().map(Vec::len), Some(256));
        assert!(held
            .card
            .log()
            .entries()
            .iter()
            .any(|e| e.command.get(1) == Some(&0xC0)));
    }
}
