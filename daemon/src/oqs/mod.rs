//! Client of the qualification-check system (オンライン資格確認等システム, "OQS").
//!
//! The daemon asks the system one question per check: "is this person insured on this date, and
//! with what?". It asks either with the My Number card's certificate (and, for the PIN method, a
//! challenge signed by the card) or with the data printed on an insurance card. The answer is an
//! [`Answer`] (confirmed, invalid, not found, several matches) or a [`QueryError`] that says
//! whether asking again later can help ([`QueryError::is_transient`]).
//!
//! Layout: `message` holds the serde types of the JSON envelope, `classify` turns a
//! response body into an answer without any I/O, [`codes`] says what the system's result codes
//! mean (a setting), `client` does HTTP, and [`challenge`] builds the bytes the card signs. The
//! wire contract is `/work/briefs/wire.md`; field names and code values follow the public
//! reference `oqs-messages.md` §1–§5.
//!
//! What is final and what is not. An answer that could not be read at all (not JSON, cut, wrong
//! types, over the size limit) may be whole next time: transient. An answer that was read and
//! is unusable — a code value outside its table ([`QueryError::UnknownCode`]) or facts that
//! contradict each other or the question ([`QueryError::Inconsistent`]) — will be the same next
//! time: final, reported once, never asked again in a loop. A message-level error
//! (SegmentOfResult 9) is transient: reception gets the offline guidance and the check is
//! confirmed later.

pub mod challenge;
pub mod classify;
mod client;
pub mod codes;
mod lane;
mod message;

use std::fmt;
use std::time::Duration;

use chrono::NaiveDate;
use serde::Serialize;

use crate::domain::{IdentityMethod, InsurerNumber};
use crate::rules::documents::{
    numbers_documents_ja, substitute_documents_ja, temporary_acceptance_note_ja,
};
use crate::rules::RuleSettings;

pub use client::{
    Observed, OqsClient, OqsConfig, DEFAULT_ANSWER_LIMIT, DEFAULT_BACKGROUND_LIMIT,
    DEFAULT_SESSION_RENEWAL,
};
pub use codes::{CodeMeaning, ResultCodes};

use crate::rules::copay::{
    copay_when_confirmed, ConfirmedFacts, CopayInstruction, CopayRatio, ElderlyCertificate,
};

/// A lookup keyed by the My Number card (マイナンバーカードによる資格確認).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardQuery {
    /// Day of the visit (資格確認日); the system answers as of this date.
    pub visit_date: NaiveDate,
    /// How the patient was identified at the reader.
    pub method: IdentityMethod,
    /// DER of the card's user-authentication certificate (利用者証明用電子証明書).
    pub certificate_der: Vec<u8>,
    /// The challenge bytes the card signed (PIN method only).
    pub challenge: Option<Vec<u8>>,
    /// RSASSA-PKCS1-v1_5 SHA-256 signature of the challenge (PIN method only).
    pub signature: Option<Vec<u8>>,
    /// Caller's correlation id (ArbitraryFileIdentifier), echoed back by the system.
    pub file_id: String,
}

/// A lookup keyed by insurance card data (被保険者証情報による資格確認).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsuranceQuery {
    /// Day of the visit (資格確認日).
    pub visit_date: NaiveDate,
    /// Insurer number (保険者番号).
    pub insurer: InsurerNumber,
    /// Card symbol (記号); none on 後期高齢者 cards.
    pub symbol: Option<String>,
    /// Card number (番号), leading zeros kept.
    pub number: String,
    /// Branch number (枝番), two digits; none on 後期高齢者 cards.
    pub branch: Option<String>,
    /// Birth date (生年月日).
    pub birth_date: NaiveDate,
    /// The patient agreed to share 限度額適用認定証 information (OQSCD001).
    pub limit_consent: bool,
    /// Caller's correlation id (ArbitraryFileIdentifier), echoed back by the system.
    pub file_id: String,
}

/// What the system said about the person (資格確認結果).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 有効: exactly one valid qualification on the visit date.
    Confirmed {
        /// The qualification found.
        qualification: Qualification,
        /// Warnings the system attached (e.g. the card certificate expires soon).
        notices: Vec<Notice>,
    },
    /// 無効: the person was found but the qualification is lost on the visit date.
    Invalid {
        /// The lost qualification (with its disqualification date and reason).
        qualification: Qualification,
        /// 無効（新しい資格あり）: the person holds a newer qualification.
        newer_exists: bool,
    },
    /// 該当資格なし: no matching qualification.
    NotFound {
        /// Warnings the system attached.
        notices: Vec<Notice>,
    },
    /// 複数該当: several records match; all candidates are listed.
    MultipleMatches(Vec<Qualification>),
}

impl Answer {
    /// What the operator should do now, in Japanese. Without the visit date it names only
    /// documents that count on any date; [`Answer::message_ja_on`] is the same message judged
    /// on the visit date.
    pub fn message_ja(&self) -> String {
        self.message_for(None, &RuleSettings::default())
    }

    /// What the operator should do now, in Japanese, on `visit`: a document is named only
    /// while it is valid that day (the old 健康保険証 until its last day, R11).
    pub fn message_ja_on(&self, visit: NaiveDate, settings: &RuleSettings) -> String {
        self.message_for(Some(visit), settings)
    }

    fn message_for(&self, visit: Option<NaiveDate>, settings: &RuleSettings) -> String {
        let numbers = numbers_documents_ja(visit, settings);
        match self {
            Answer::Confirmed { qualification, .. } => match qualification.ratio_percent {
                Some(r) => format!("資格は有効です（負担割合 {}）。通常どおり受け付けてください。", ratio_ja(r)),
                None => "資格は有効です。負担割合は資格確認の結果から決められないため、高齢受給者証・資格確認書などで確認してください（10割にはしません）。".to_string(),
            },
            Answer::Invalid {
                newer_exists: false,
                ..
            } => format!("資格が無効です。新しい保険の情報を患者さんに確認してください（新しい保険の{numbers}があれば、記載の番号で再確認してください）。"),
            Answer::Invalid {
                newer_exists: true,
                ..
            } => "この資格は無効ですが、新しい資格があります。新しい保険の情報を患者さんに確認し、再確認してください。".to_string(),
            Answer::NotFound { .. } => format!("該当する資格が見つかりません。加入している保険を患者さんに確認し、{numbers}の記号・番号と生年月日で再確認してください。"),
            Answer::MultipleMatches(all) => format!(
                "{}件の資格が該当しました。どの保険で受診するか患者さんに確認してください。",
                all.len()
            ),
        }
    }
}

/// A warning the system attached to a success (e.g. certificate expiring / in grace).
///
/// Carries the system's code (ProcessingResultCode) and its own text (ProcessingResultMessage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    code: String,
    message: String,
    meaning: Option<CodeMeaning>,
}

impl Notice {
    /// Builds a notice from the system's code and text, read with the reference's code table.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::with_codes(code, message, &ResultCodes::reference())
    }

    /// Builds a notice from the system's code and text, read with `codes`.
    pub fn with_codes(
        code: impl Into<String>,
        message: impl Into<String>,
        codes: &ResultCodes,
    ) -> Self {
        let code = code.into();
        Self {
            meaning: codes.meaning(&code),
            code,
            message: message.into(),
        }
    }

    /// The system's code, e.g. `SIM-W2001`.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The system's own text, verbatim.
    pub fn system_message(&self) -> &str {
        &self.message
    }

    /// What to tell the patient, in Japanese.
    pub fn message_ja(&self) -> String {
        match self.meaning {
            Some(CodeMeaning::CertificateExpiresSoon) => "マイナンバーカードの電子証明書の有効期限が3か月以内に切れます。お住まいの市区町村で更新するよう患者さんにお伝えください。".to_string(),
            Some(CodeMeaning::CertificateInGrace) => "マイナンバーカードの電子証明書の有効期限が切れています（猶予期間中のため今回は利用できます）。早めに市区町村で更新するよう患者さんにお伝えください。".to_string(),
            // The reference says clients show unknown codes' text verbatim.
            _ if self.message.is_empty() => format!("資格確認システムからのお知らせ（{}）", self.code),
            _ => format!("資格確認システムからのお知らせ（{}）:「{}」", self.code, self.message),
        }
    }
}

/// Sex (性別, OQSCD007).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sex {
    /// 1 男.
    Male,
    /// 2 女.
    Female,
    /// 3 未設定.
    Unset,
}

impl Sex {
    fn label_ja(self) -> &'static str {
        match self {
            Sex::Male => "男",
            Sex::Female => "女",
            Sex::Unset => "未設定",
        }
    }
}

/// Insured person or dependant (本人・家族の別, OQSCD009).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PersonalFamily {
    /// 1 本人.
    Insured,
    /// 2 家族.
    Dependant,
}

/// Reason the qualification was lost (資格喪失事由, OQSCD008).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReasonOfLoss {
    /// 01 死亡.
    Death,
    /// 02 生活保護受給開始.
    PublicAssistance,
    /// 03 医療保険等の資格取得.
    OtherInsurance,
    /// 99 その他.
    Other,
}

impl ReasonOfLoss {
    fn label_ja(self) -> &'static str {
        match self {
            ReasonOfLoss::Death => "死亡",
            ReasonOfLoss::PublicAssistance => "生活保護受給開始",
            ReasonOfLoss::OtherInsurance => "医療保険等の資格取得",
            ReasonOfLoss::Other => "その他",
        }
    }
}

/// 限度額適用認定証 information, present only when the patient consented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LimitCertificate {
    /// Kind of certificate, the OQSCD011 code (`01`..`03`).
    pub classification: Option<String>,
    /// Income bracket (適用区分), the OQSCD012 code (`A01`..`A06`, `B01`..`B10`).
    pub bracket: Option<String>,
    /// Issue date (交付年月日).
    pub issued: Option<NaiveDate>,
    /// First valid day.
    pub valid_from: Option<NaiveDate>,
    /// Last valid day.
    pub valid_until: Option<NaiveDate>,
    /// 長期入院該当年月日.
    pub long_term_date: Option<NaiveDate>,
}

/// The qualification data (資格情報). Personal data: `Debug` prints only the insurer number and
/// the dates that decide validity.
///
/// Serialized with snake_case names; `insurer_number` is the 8-character wire form (a 6-digit
/// 国保 number is padded with two leading spaces, `"  139917"`), dates are `YYYY-MM-DD`. Address
/// and post number are deliberately not kept: nothing in the daemon needs them.
#[derive(Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Qualification {
    /// 保険者番号, 8-character wire form.
    pub insurer_number: InsurerNumber,
    /// 保険者名称.
    pub insurer_name: Option<String>,
    /// 被保険者証記号 (none on 後期高齢者 cards).
    pub symbol: Option<String>,
    /// 被保険者証番号.
    pub number: String,
    /// 被保険者証枝番.
    pub branch: Option<String>,
    /// 氏名.
    pub name: Option<String>,
    /// 氏名カナ (half-width katakana, as sent).
    pub kana: Option<String>,
    /// 被保険者氏名 (世帯主氏名): the holder, for dependants and 国保 households.
    pub insured_name: Option<String>,
    /// 生年月日.
    pub birth_date: NaiveDate,
    /// 性別1 (the sex printed on the card).
    pub sex: Option<Sex>,
    /// 本人・家族の別.
    pub personal_family: Option<PersonalFamily>,
    /// 被保険者証区分, the OQSCD010 code (`01`..`07`, `A1`).
    pub card_classification: Option<String>,
    /// 負担割合 in percent on the visit date the answer speaks for (R13, see
    /// [`Qualification::copay_on`]): the card's ratio for 後期高齢者; for everyone else derived
    /// from age, 高齢受給者証 and 未就学 status. `None` when it cannot be decided (a 70–74 patient
    /// without a valid 高齢受給者証, or an answer without its date).
    pub ratio_percent: Option<u8>,
    /// 被保険者証一部負担金割合 (InsuredPartialContributionRatio) in percent, as sent (`"020"` →
    /// 20). The system sets it mainly for 後期高齢者, so it is not everyone's 負担割合.
    #[serde(default)]
    pub card_ratio_percent: Option<u8>,
    /// 未就学区分: the patient is below school age.
    pub preschool: bool,
    /// 高齢受給者証 一部負担金割合 in percent (ages 70–74).
    pub elderly_ratio_percent: Option<u8>,
    /// 高齢受給者証 first valid day.
    pub elderly_valid_from: Option<NaiveDate>,
    /// 高齢受給者証 last valid day.
    pub elderly_valid_until: Option<NaiveDate>,
    /// 資格取得年月日.
    pub qualification_date: Option<NaiveDate>,
    /// 資格喪失年月日.
    pub disqualification_date: Option<NaiveDate>,
    /// 資格喪失事由.
    pub reason_of_loss: Option<ReasonOfLoss>,
    /// 被保険者証有効開始年月日.
    pub card_valid_from: Option<NaiveDate>,
    /// 被保険者証有効終了年月日.
    pub card_valid_until: Option<NaiveDate>,
    /// 限度額適用認定証 information.
    pub limit: Option<LimitCertificate>,
}

impl fmt::Debug for Qualification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names, numbers and birth dates must never reach logs.
        f.debug_struct("Qualification")
            .field("insurer_number", &self.insurer_number)
            .field("qualification_date", &self.qualification_date)
            .field("disqualification_date", &self.disqualification_date)
            .field("card_valid_from", &self.card_valid_from)
            .field("card_valid_until", &self.card_valid_until)
            .finish_non_exhaustive()
    }
}

fn date_ja(d: NaiveDate) -> String {
    d.format("%Y年%-m月%-d日").to_string()
}

fn card_classification_label(code: &str) -> &'static str {
    match code {
        "01" => "被保険者証（一般）",
        "02" => "被保険者証（退職）",
        "03" => "短期被保険者証（一般）",
        "04" => "短期被保険者証（退職）",
        "05" => "被保険者資格証明書",
        "06" => "特例退職被保険者証",
        "07" => "自衛官診療証",
        "A1" => "医療扶助",
        _ => "不明",
    }
}

impl Qualification {
    /// R13: the co-payment on `visit`, from this qualification's facts (pure; see
    /// [`copay_when_confirmed`]). `None` when the birth date is after the visit.
    pub fn copay_on(&self, visit: NaiveDate) -> Option<CopayInstruction> {
        // A qualification serialized before `card_ratio_percent` existed kept the card's ratio
        // in `ratio_percent`; for 後期高齢者 that is the same value.
        let card_percent = self.card_ratio_percent.or(self.ratio_percent);
        let elderly = (self.elderly_ratio_percent.is_some()
            || self.elderly_valid_from.is_some()
            || self.elderly_valid_until.is_some())
        .then(|| ElderlyCertificate {
            ratio: self
                .elderly_ratio_percent
                .and_then(CopayRatio::from_percent),
            valid_from: self.elderly_valid_from,
            valid_until: self.elderly_valid_until,
        });
        let facts = ConfirmedFacts {
            birth: self.birth_date,
            late_elderly: self.insurer_number.is_late_elderly(),
            card_ratio: card_percent.and_then(CopayRatio::from_percent),
            preschool: self.preschool,
            elderly,
        };
        copay_when_confirmed(&facts, visit).ok()
    }

    /// The qualification as (label, value) lines for the operator, e.g.
    /// `("保険者番号", "06139917")`, `("負担割合", "3割")`. Absent items are left out.
    pub fn display_lines_ja(&self) -> Vec<(&'static str, String)> {
        let mut lines = vec![("保険者番号", self.insurer_number.digits().to_string())];
        if let Some(n) = &self.insurer_name {
            lines.push(("保険者名称", n.clone()));
        }
        let id = [
            self.symbol.as_deref(),
            Some(self.number.as_str()),
            self.branch.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("・");
        lines.push(("記号・番号・枝番", id));
        if let Some(n) = &self.name {
            lines.push(("氏名", n.clone()));
        }
        if let Some(k) = &self.kana {
            lines.push(("氏名カナ", k.clone()));
        }
        lines.push(("生年月日", date_ja(self.birth_date)));
        if let Some(s) = self.sex {
            lines.push(("性別", s.label_ja().to_string()));
        }
        if let Some(p) = self.personal_family {
            let label = match p {
                PersonalFamily::Insured => "本人",
                PersonalFamily::Dependant => "家族",
            };
            lines.push(("本人・家族", label.to_string()));
        }
        if let Some(c) = &self.card_classification {
            lines.push(("被保険者証区分", card_classification_label(c).to_string()));
        }
        if let Some(r) = self.ratio_percent {
            lines.push(("負担割合", ratio_ja(r)));
        }
        if self.preschool {
            lines.push(("未就学", "該当".to_string()));
        }
        if let Some(r) = self.elderly_ratio_percent {
            lines.push(("高齢受給者証 負担割合", ratio_ja(r)));
        }
        if let Some(d) = self.qualification_date {
            lines.push(("資格取得日", date_ja(d)));
        }
        if let Some(d) = self.disqualification_date {
            lines.push(("資格喪失日", date_ja(d)));
        }
        if let Some(r) = self.reason_of_loss {
            lines.push(("喪失事由", r.label_ja().to_string()));
        }
        if let Some(l) = &self.limit {
            let bracket = l.bracket.as_deref().unwrap_or("不明");
            let until = l
                .valid_until
                .map(|d| format!("（{}まで）", date_ja(d)))
                .unwrap_or_default();
            lines.push(("限度額適用区分", format!("{bracket}{until}")));
        }
        lines
    }
}

fn ratio_ja(percent: u8) -> String {
    if percent.is_multiple_of(10) {
        format!("{}割", percent / 10)
    } else {
        format!("{percent}%")
    }
}

/// Why a lookup gave no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The card's certificate expired beyond the grace period (SIM-E1104).
    #[error("card certificate expired")]
    CertificateExpired,
    /// The card's certificate is revoked: lost or suspended (SIM-E1103).
    #[error("card certificate revoked")]
    CertificateRevoked,
    /// The visual method is not allowed for this card; the PIN is needed (SIM-E1105).
    #[error("pin method required for this card")]
    PinRequired,
    /// The system did not accept the card's evidence (SIM-E1101, E1102, E1107).
    #[error("card not accepted: {code} {message}")]
    CardNotAccepted {
        /// The system's code.
        code: String,
        /// The system's text.
        message: String,
    },
    /// The system rejected the request itself (message-level error or invalid search key).
    #[error("request rejected: {code} {message}")]
    Rejected {
        /// The system's code.
        code: String,
        /// The system's text.
        message: String,
    },
    /// The system reported an internal error or is still processing.
    #[error("system error: {code} {message}")]
    SystemError {
        /// The system's code.
        code: String,
        /// The system's text.
        message: String,
    },
    /// No answer within the configured budget.
    #[error("timed out")]
    Timeout,
    /// The system could not be reached (refused, DNS, connection dropped).
    #[error("unreachable")]
    Unreachable,
    /// HTTP 5xx.
    #[error("server error: http {status}")]
    ServerError {
        /// The HTTP status.
        status: u16,
    },
    /// HTTP 429.
    #[error("rate limited")]
    RateLimited {
        /// The server's Retry-After, when given in seconds.
        retry_after: Option<Duration>,
    },
    /// Login refused, or the token refused again right after a fresh login.
    #[error("unauthorized")]
    Unauthorized,
    /// The answer could not be read: not JSON, cut, a non-string value, a required element
    /// missing or out of format, or larger than the answer size limit.
    #[error("malformed answer: {detail}")]
    Malformed {
        /// What was wrong.
        detail: String,
    },
    /// A message-level error (SegmentOfResult 9) that is not a system error: the system did
    /// not process the question. Reception captures the check and confirms it later.
    #[error("message-level error: {code} {message}")]
    MessageError {
        /// The system's ErrorCode.
        code: String,
        /// The system's ErrorMessage.
        message: String,
    },
    /// A coded element carries a value outside its code table (OQSCD…): the answer is
    /// malformed in a way asking again will not change.
    #[error("unknown code value {value:?} in {field}")]
    UnknownCode {
        /// The element, e.g. `Sex1`.
        field: String,
        /// The value sent.
        value: String,
    },
    /// A well-formed answer that contradicts itself or the question.
    #[error("inconsistent answer: {0}")]
    Inconsistent(Inconsistency),
}

/// How a well-formed answer contradicts itself or the question.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Inconsistency {
    /// The validity code needs a number of results the list does not have.
    #[error("validity {validity} with {got} result(s)")]
    ResultCount {
        /// QualificationValidity as sent.
        validity: String,
        /// Entries in ResultList.
        got: usize,
    },
    /// The answer is for another date than the one asked.
    #[error("answer for {answered}, asked for {asked}")]
    OtherDate {
        /// The visit date asked about.
        asked: NaiveDate,
        /// QualificationConfirmationDate of the answer.
        answered: NaiveDate,
    },
    /// A record is not the card asked about (insurer, 記号, 番号 or birth date differ).
    #[error("record does not match the card asked about ({field})")]
    OtherCard {
        /// The first element that differs.
        field: &'static str,
    },
    /// 有効, but the record's own dates say it does not cover the visit date.
    #[error("valid, but the record does not cover the visit date")]
    NotCovering,
}

impl Inconsistency {
    /// What contradicts what, in Japanese.
    pub fn message_ja(&self) -> String {
        match self {
            Inconsistency::ResultCount { validity, got } => format!(
                "資格有効性が「{}」なのに資格情報が{got}件あります",
                validity_label_ja(validity)
            ),
            Inconsistency::OtherDate { asked, answered } => format!(
                "{}の照会に{}の結果が返りました",
                date_ja(*asked),
                date_ja(*answered)
            ),
            Inconsistency::OtherCard { field } => format!(
                "照会したものと{}が異なる資格情報が返りました",
                wire_field_ja(field)
            ),
            Inconsistency::NotCovering => {
                "「有効」なのに資格の取得日・喪失日が受診日を含みません".to_string()
            }
        }
    }
}

/// The Japanese name of a field of the qualification system's message, for staff; a field
/// without one is shown as the system names it (support can look it up).
fn wire_field_ja(field: &str) -> &str {
    match field {
        "InsurerNumber" => "保険者番号",
        "InsuredIdentificationNumber" => "番号",
        "InsuredCardSymbol" => "記号",
        "InsuredBranchNumber" => "枝番",
        "Birthdate" => "生年月日",
        "QualificationValidity" => "資格有効性",
        "ProcessingResultStatus" => "処理結果区分",
        "SegmentOfResult" => "処理結果の種別",
        other => other,
    }
}

fn validity_label_ja(code: &str) -> &'static str {
    match code {
        "1" => "有効",
        "2" => "無効",
        "3" => "無効（新しい資格あり）",
        "4" => "該当資格なし",
        "5" => "複数該当",
        _ => "不明",
    }
}

/// Folds full-width ASCII (ＡＢ１２－３) and the ideographic space to their half-width forms and
/// trims the ends, so 記号 typed or sent in either width compare equal (`ＡＢ１２` = `AB12`).
/// Kanji and kana are left as they are.
pub fn fold_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFF01 + 0x21).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Reads an insurer number from the wire, accepting a 6-digit number padded with zeros
/// (`"00123456"`) as well as with spaces (`"  123456"`). No 8-digit insurer number starts with
/// `00` (there is no 法別番号 00), so the zeros can only be padding.
pub fn insurer_from_wire(wire: &str) -> Result<InsurerNumber, crate::domain::DomainError> {
    match wire.strip_prefix("00") {
        Some(six) if six.len() == 6 && six.bytes().all(|b| b.is_ascii_digit()) => {
            InsurerNumber::parse(six)
        }
        _ => InsurerNumber::parse(wire),
    }
}

/// Code of the [`QueryError::Rejected`] that [`OqsClient::new`] returns for an unusable
/// configuration (bad base URL, institution code or timeout). A dedicated variant would be
/// cleaner, but the CLI matches every variant and must compile unchanged.
pub const CONFIG_ERROR_CODE: &str = "TSUNAGI-CONFIG";

impl QueryError {
    /// Stable kebab-case name of the error: `--json` output and the ledger's records of
    /// failed attempts.
    pub fn kind(&self) -> &'static str {
        match self {
            QueryError::CertificateExpired => "certificate-expired",
            QueryError::CertificateRevoked => "certificate-revoked",
            QueryError::PinRequired => "pin-required",
            QueryError::CardNotAccepted { .. } => "card-not-accepted",
            QueryError::Rejected { .. } => "rejected",
            QueryError::SystemError { .. } => "system-error",
            QueryError::Timeout => "timeout",
            QueryError::Unreachable => "unreachable",
            QueryError::ServerError { .. } => "server-error",
            QueryError::RateLimited { .. } => "rate-limited",
            QueryError::Unauthorized => "unauthorized",
            QueryError::Malformed { .. } => "malformed",
            QueryError::MessageError { .. } => "message-error",
            QueryError::UnknownCode { .. } => "unknown-code",
            QueryError::Inconsistent(_) => "inconsistent",
        }
    }

    /// Worth retrying later (reception captures the check for 事後確認): Timeout, Unreachable,
    /// ServerError, RateLimited, SystemError, MessageError, Malformed. An unknown code value or
    /// an inconsistent answer is final: the same question gets the same answer.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            QueryError::Timeout
                | QueryError::Unreachable
                | QueryError::ServerError { .. }
                | QueryError::RateLimited { .. }
                | QueryError::SystemError { .. }
                | QueryError::MessageError { .. }
                | QueryError::Malformed { .. }
        )
    }

    /// Japanese for reception staff, saying what to do now. Without the visit date it names
    /// only documents that count on any date; [`QueryError::message_ja_on`] is the same
    /// message judged on the visit date.
    pub fn message_ja(&self) -> String {
        self.message_for(None, &RuleSettings::default())
    }

    /// Japanese for reception staff on `visit`: a document is named only while it is valid
    /// that day (the old 健康保険証 until its last day, the temporary acceptance of an expired
    /// one or a お知らせ alone within its dates, R11).
    pub fn message_ja_on(&self, visit: NaiveDate, settings: &RuleSettings) -> String {
        self.message_for(Some(visit), settings)
    }

    fn message_for(&self, visit: Option<NaiveDate>, settings: &RuleSettings) -> String {
        const LATER: &str = "通常の負担割合で受け付け、後で再確認します。";
        let documents = substitute_documents_ja(visit, settings);
        let temporary = temporary_acceptance_note_ja(visit, settings).unwrap_or_default();
        match self {
            QueryError::CertificateExpired => format!("マイナンバーカードの電子証明書の有効期限が切れています。{documents}で資格を確認してください。{temporary}患者さんには市区町村での更新をご案内ください。"),
            QueryError::CertificateRevoked => format!("マイナンバーカードの電子証明書が失効しています（紛失・一時停止など）。{documents}など別の方法で資格を確認してください。{temporary}"),
            QueryError::PinRequired => "顔写真のないカードのため、暗証番号による本人確認が必要です。患者さんに暗証番号を入力してもらってください。".to_string(),
            QueryError::CardNotAccepted { code, message } => format!(
                "マイナンバーカードによる確認ができませんでした（{code}: {message}）。もう一度カードを読み取るか、{documents}で確認してください。"
            ),
            QueryError::Rejected { code, message } if code == CONFIG_ERROR_CODE => format!(
                "資格確認システムの設定が正しくありません（{message}）。接続先URLと医療機関コード（10桁）を確認してください。"
            ),
            QueryError::Rejected { code, message } => format!(
                "資格確認システムが照会を受け付けませんでした（{code}: {message}）。入力内容と設定を確認してください。"
            ),
            QueryError::SystemError { code, message } => format!(
                "資格確認システムで障害が発生しています（{code}: {message}）。{LATER}"
            ),
            QueryError::Timeout => format!("資格確認システムから応答がありません。{LATER}"),
            QueryError::Unreachable => format!("資格確認システムに接続できません。{LATER}"),
            QueryError::ServerError { status } => format!(
                "資格確認システムに接続できません（サーバーエラー {status}）。{LATER}"
            ),
            QueryError::RateLimited { retry_after } => match retry_after {
                Some(d) => format!(
                    "資格確認システムが混み合っています（{}秒後に再試行可能）。{LATER}",
                    d.as_secs()
                ),
                None => format!("資格確認システムが混み合っています。{LATER}"),
            },
            QueryError::Unauthorized => "資格確認システムにログインできません。医療機関コードと端末の設定を確認してください。".to_string(),
            QueryError::Malformed { .. } => format!(
                "資格確認システムの応答を読み取れませんでした。{LATER}"
            ),
            QueryError::MessageError { code, message } => format!(
                "資格確認システムが照会を処理できませんでした（{code}: {message}）。{LATER}"
            ),
            QueryError::UnknownCode { field, value } => format!(
                "資格確認システムの応答に想定外のコード値（{}: {value}）があり、結果を確定できません。{documents}など別の方法で資格を確認してください。この照会は自動では再照会しません。",
                wire_field_ja(field)
            ),
            QueryError::Inconsistent(what) => format!(
                "資格確認システムの応答が矛盾しています（{}）。結果を確定できないため、{documents}など別の方法で資格を確認してください。この照会は自動では再照会しません。",
                what.message_ja()
            ),
        }
    }
}
