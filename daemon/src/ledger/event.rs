//! What can happen to a check (確認イベント): the payloads the daemon writes into the store.
//!
//! Events are facts, never edits: an answer that arrives twice is two equal facts, and the
//! fold decides what they mean together. Field names are stable: stored events outlive
//! releases.

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::domain::{FacilityType, IdentityMethod, InsurerNumber};
use crate::rules::claim::Moushitatesho;
use crate::rules::documents::DocumentKind;

/// One event of a check.
// A capture is the big one; events live one at a time on their way to or from the store, so
// boxing it would only add an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CheckEvent {
    /// The check was taken while the qualification system did not answer (オフライン受付).
    Captured(Captured),
    /// The qualification system answered (at reception, or when reconciling).
    Answered(Answered),
    /// A 被保険者資格申立書 was taken.
    Declared {
        /// Its fields.
        moushitatesho: Moushitatesho,
    },
    /// A reconciliation attempt failed; it will be retried.
    AttemptFailed {
        /// The kind of failure (kebab-case).
        error: String,
        /// When.
        at: DateTime<FixedOffset>,
    },
    /// The claim basis was decided (事後確認 done, or 不詳 claim). A later decision replaces
    /// it until the claim is made.
    Resolved(Resolved),
    /// The claim was made (請求済): the claim basis is final.
    Claimed {
        /// When.
        at: DateTime<FixedOffset>,
    },
    /// The patient reported insurance numbers after the visit (後日申告): the reconciler asks
    /// by them, and the claim can use them.
    NumbersReported(Reported),
    /// A staff note.
    Annotated {
        /// The note.
        note: String,
    },
    /// What the facility's plugin added when the check was captured or resolved.
    PluginNoted(PluginNote),
}

/// A facility plugin's warnings and next step at a moment of a check (プラグインの注意).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginNote {
    /// The plugin.
    pub plugin: String,
    /// `captured` or `resolved`.
    pub moment: String,
    /// Its warnings.
    pub warnings: Vec<crate::view::FacilityWarning>,
    /// Its next step.
    pub next_action: Option<crate::view::NextAction>,
    /// When.
    pub at: DateTime<FixedOffset>,
}

impl CheckEvent {
    /// The event's kind, as stored (`kind` field).
    pub fn kind(&self) -> &'static str {
        match self {
            CheckEvent::Captured(_) => "captured",
            CheckEvent::Answered(_) => "answered",
            CheckEvent::Declared { .. } => "declared",
            CheckEvent::AttemptFailed { .. } => "attempt-failed",
            CheckEvent::Resolved(_) => "resolved",
            CheckEvent::Claimed { .. } => "claimed",
            CheckEvent::NumbersReported(_) => "numbers-reported",
            CheckEvent::Annotated { .. } => "annotated",
            CheckEvent::PluginNoted(_) => "plugin-noted",
        }
    }
}

/// A captured check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Captured {
    /// 受診日 / 施術日.
    pub visit_date: NaiveDate,
    /// The facility type.
    pub facility: FacilityType,
    /// First treatment (初診・初検) or a later one.
    pub first_visit: bool,
    /// The next booked visit, if known (柔整・あはき confirm then).
    pub next_visit: Option<NaiveDate>,
    /// What the card proved, if a card was read.
    pub card: Option<CardRecord>,
    /// A document shown instead of (or with) the card.
    pub document: Option<DocumentRecord>,
    /// Why it was captured offline (the query error, kebab-case); `None` when the
    /// qualification system answered at reception.
    pub reason: Option<String>,
    /// The patient's data from an earlier confirmed check, if the clinic holds any.
    pub last_known: Option<KnownInsurance>,
    /// When.
    pub captured_at: DateTime<FixedOffset>,
}

/// The card's part of a check, kept to query later as of the visit date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardRecord {
    /// How identity was confirmed.
    pub method: IdentityMethod,
    /// The user-authentication certificate, base64 DER.
    pub certificate: String,
    /// The signed challenge, base64 (PIN method).
    pub challenge: Option<String>,
    /// The card's signature over it, base64 (PIN method).
    pub signature: Option<String>,
    /// Certificate serial (hex), for display.
    pub serial: String,
}

/// A document the patient presented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentRecord {
    /// Which.
    pub kind: DocumentKind,
    /// Its own expiry, if printed.
    pub expires: Option<NaiveDate>,
    /// The numbers on it.
    pub numbers: Option<NumbersRecord>,
    /// Birth date on it.
    pub birth_date: Option<NaiveDate>,
}

/// Insurance numbers as written on a card or answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumbersRecord {
    /// 保険者番号.
    pub insurer: InsurerNumber,
    /// 記号.
    pub symbol: Option<String>,
    /// 番号.
    pub number: String,
    /// 枝番.
    pub branch: Option<String>,
}

/// Earlier confirmed data of the patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownInsurance {
    /// The numbers.
    pub numbers: NumbersRecord,
    /// 生年月日.
    pub birth_date: NaiveDate,
    /// The co-payment in tenths (1–3), if confirmed.
    pub copay_tenths: Option<u8>,
    /// 保険者名称, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insurer_name: Option<String>,
    /// The 高齢受給者証 data last confirmed (ages 70–74).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elderly: Option<ElderlyRecord>,
    /// The 限度額適用認定証's 適用区分 code last confirmed (OQSCD012).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_bracket: Option<String>,
    /// The visit date it was confirmed for, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_on: Option<NaiveDate>,
    /// Where it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<KnownSource>,
}

impl KnownInsurance {
    /// Numbers, birth date and ratio, with nothing else known.
    pub fn new(numbers: NumbersRecord, birth_date: NaiveDate, copay_tenths: Option<u8>) -> Self {
        Self {
            numbers,
            birth_date,
            copay_tenths,
            insurer_name: None,
            elderly: None,
            limit_bracket: None,
            confirmed_on: None,
            source: None,
        }
    }
}

/// Where reception's earlier data of a patient came from (前回情報の出所).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "kebab-case")]
pub enum KnownSource {
    /// This clinic's own confirmed check.
    History {
        /// That check's id.
        check_id: String,
    },
    /// The receipt computer (or another API client) sent it with the request.
    Request,
}

/// 高齢受給者証 data as confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElderlyRecord {
    /// 一部負担金割合 in percent.
    pub ratio_percent: Option<u8>,
    /// First valid day.
    pub valid_from: Option<NaiveDate>,
    /// Last valid day.
    pub valid_until: Option<NaiveDate>,
}

/// Insurance numbers the patient reported after the visit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    /// The numbers.
    pub numbers: NumbersRecord,
    /// 生年月日, needed to ask by numbers.
    pub birth_date: Option<NaiveDate>,
    /// When they were recorded.
    pub at: DateTime<FixedOffset>,
}

/// How the answer was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// With the captured certificate (and signature).
    Card,
    /// By the insurance numbers (Web API search).
    Insurance,
}

/// What the qualification system said, as of the visit date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnswerStatus {
    /// 有効.
    Confirmed,
    /// 資格（無効）.
    Invalid,
    /// 資格情報なし.
    NotFound,
    /// 複数該当.
    Multiple,
    /// The card was refused (expired beyond grace, revoked, bad signature): no answer can come
    /// by card; the numbers must be asked for.
    CardRefused,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answered {
    /// By card or by numbers.
    pub via: Via,
    /// The outcome.
    pub status: AnswerStatus,
    /// The qualification's numbers (confirmed or invalid).
    pub numbers: Option<NumbersRecord>,
    /// A newer qualification exists (資格（無効）・新しい資格あり).
    pub newer_exists: bool,
    /// Birth date from the answer.
    pub birth_date: Option<NaiveDate>,
    /// The co-payment in percent, if the answer gave one.
    pub ratio_percent: Option<u8>,
    /// 保険者名称 from the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insurer_name: Option<String>,
    /// The 高齢受給者証 data from the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elderly: Option<ElderlyRecord>,
    /// The 限度額適用認定証's 適用区分 code from the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_bracket: Option<String>,
    /// When.
    pub answered_at: DateTime<FixedOffset>,
}

/// The decided claim basis (R15, R17), as text fields for the claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    /// `current`, `old`, `fushou`.
    pub basis: String,
    /// The insurer number field of the claim.
    pub insurer_number: String,
    /// 記号 field.
    pub symbol: Option<String>,
    /// 番号 field.
    pub number: String,
    /// 枝番 field.
    pub branch: Option<String>,
    /// 摘要欄 text (不詳).
    pub tekiyo: Option<String>,
    /// Where a 不詳 claim goes.
    pub payer: Option<String>,
    /// Staff summary.
    pub summary_ja: String,
    /// When.
    pub at: DateTime<FixedOffset>,
    /// Why this decision replaces the one before, for staff (absent on a first decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces_because: Option<String>,
}
