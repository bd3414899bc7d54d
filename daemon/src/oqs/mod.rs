//! Client of the qualification-check system (オンライン資格確認等システム, "OQS").
//!
//! The daemon asks the system one question per check: "is this person insured on this date, and
//! with what?". It asks either with the My Number card's certificate (and, for the PIN method, a
//! challenge signed by the card) or with the data printed on an insurance card. The answer is an
//! [`Answer`] (confirmed, invalid, not found, several matches) or a [`QueryError`] that says
//! whether asking again later can help ([`QueryError::is_transient`]).
//!
//! Layout: `message` holds the serde types of the JSON envelope, `classify` turns a
//! response body into an answer without any I/O, `client` does HTTP, and [`challenge`] builds the
//! bytes the card signs. The wire contract is `/work/briefs/wire.md`; field names and code
//! values follow the public reference `oqs-messages.md` §1–§5.

pub mod challenge;
pub mod classify;
mod client;
mod lane;
mod message;

use std::fmt;
use std::time::Duration;

use chrono::NaiveDate;
use serde::Serialize;

use crate::domain::{IdentityMethod, InsurerNumber};

pub use client::{OqsClient, OqsConfig, DEFAULT_BACKGROUND_LIMIT, DEFAULT_SESSION_RENEWAL};

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
    /// What the operator should do now, in Japanese.
    pub fn message_ja(&self) -> String {
        match self {
            Answer::Confirmed { qualification, .. } => match qualification.ratio_percent {
                Some(r) => format!("資格は有効です（負担割合 {}割）。通常どおり受け付けてください。", r / 10),
                None => "資格は有効です。通常どおり受け付けてください。".to_string(),
            },
            Answer::Invalid {
                newer_exists: false,
                ..
            } => "資格が無効です。新しい保険の情報を患者さんに確認してください（新しい保険証・資格確認書があれば、その情報で再確認してください）。".to_string(),
            Answer::Invalid {
                newer_exists: true,
                ..
            } => "この資格は無効ですが、新しい資格があります。新しい保険の情報を患者さんに確認し、再確認してください。".to_string(),
            Answer::NotFound { .. } => "該当する資格が見つかりません。加入している保険を患者さんに確認し、保険証・資格確認書の記号・番号・生年月日で再確認してください。".to_string(),
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
}

impl Notice {
    /// Builds a notice from the system's code and text.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
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
        match self.code.as_str() {
            "SIM-W2001" => "マイナンバーカードの電子証明書の有効期限が3か月以内に切れます。お住まいの市区町村で更新するよう患者さんにお伝えください。".to_string(),
            "SIM-W2002" => "マイナンバーカードの電子証明書の有効期限が切れています（猶予期間中のため今回は利用できます）。早めに市区町村で更新するよう患者さんにお伝えください。".to_string(),
            // The reference says clients show unknown codes' text verbatim.
            _ if self.message.is_empty() => format!("資格確認システムからのお知らせ（{}）", self.code),
            _ => format!("資格確認システムからのお知らせ（{}）: {}", self.code, self.message),
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
    /// 一部負担金割合 in percent (`"020"` → 20), set mainly for 後期高齢者.
    pub ratio_percent: Option<u8>,
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
    /// The answer could not be understood.
    #[error("malformed answer: {detail}")]
    Malformed {
        /// What was wrong.
        detail: String,
    },
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
        }
    }

    /// Worth retrying later (the reconciler will): Timeout, Unreachable, ServerError,
    /// RateLimited, SystemError, Malformed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            QueryError::Timeout
                | QueryError::Unreachable
                | QueryError::ServerError { .. }
                | QueryError::RateLimited { .. }
                | QueryError::SystemError { .. }
                | QueryError::Malformed { .. }
        )
    }

    /// Japanese for reception staff, saying what to do now.
    pub fn message_ja(&self) -> String {
        const LATER: &str = "通常の負担割合で受け付け、後で再確認します。";
        match self {
            QueryError::CertificateExpired => "マイナンバーカードの電子証明書の有効期限が切れています。保険証・資格確認書で確認するか、資格情報のお知らせ等で受け付けてください。患者さんには市区町村での更新をご案内ください。".to_string(),
            QueryError::CertificateRevoked => "マイナンバーカードの電子証明書が失効しています（紛失・一時停止など）。保険証・資格確認書など別の方法で資格を確認してください。".to_string(),
            QueryError::PinRequired => "顔写真のないカードのため、暗証番号による本人確認が必要です。患者さんに暗証番号を入力してもらってください。".to_string(),
            QueryError::CardNotAccepted { code, message } => format!(
                "マイナンバーカードによる確認ができませんでした（{code}: {message}）。もう一度カードを読み取るか、保険証・資格確認書で確認してください。"
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
        }
    }
}
