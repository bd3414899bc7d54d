//! Serde types of the JSON envelope (oqs-messages.md §1.1, §1.4, §2; wire.md §2–§4).
//!
//! Every value is a string; optional fields are omitted when absent, and unknown fields are
//! ignored when reading. The request types are what a client sends; the simulator itself
//! reads requests leniently through `serde_json::Value` (see `server`) so that each defect
//! maps to its own synthetic error code instead of one generic parse failure.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::model::InsuranceKey;

/// `{"XmlMsg": ...}`, the root of every message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The message.
    #[serde(rename = "XmlMsg")]
    pub xml_msg: T,
}

/// A search request (by insurance data).
pub type SearchRequest = Envelope<SearchMessage>;
/// A card-search request (Tsunagi's own operation).
pub type CardSearchRequest = Envelope<CardSearchMessage>;
/// A result, of either operation.
pub type ResultEnvelope = Envelope<ResultMessage>;

/// Request header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestHeader {
    /// As-of date, `yyyyMMdd`.
    pub qualification_confirmation_date: String,
    /// 10-digit 医療機関コード.
    pub medical_institution_code: String,
    /// Caller's correlation id, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arbitrary_file_identifier: Option<String>,
}

/// Search-by-insurance-data message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SearchMessage {
    /// Header.
    pub message_header: RequestHeader,
    /// Body.
    pub message_body: SearchBody,
}

/// Search body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SearchBody {
    /// The search keys.
    pub qualification_confirm_search_info: SearchInfo,
}

/// `QualificationConfirmSearchInfo`: the search keys (echoed in the result).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SearchInfo {
    /// 8-character insurer number.
    pub insurer_number: String,
    /// 記号.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insured_card_symbol: Option<String>,
    /// 番号.
    pub insured_identification_number: String,
    /// 枝番.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insured_branch_number: Option<String>,
    /// `yyyyMMdd`.
    pub birthdate: String,
    /// Consent to 限度額 info, `0`/`1` (OQSCD001). Required by the reference: a request
    /// without it gets a message-level error.
    pub limit_application_certificate_related_cons_flg: String,
    /// Per-record id, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arbitrary_identifier: Option<String>,
}

impl SearchInfo {
    /// Search keys from card data, with consent to 限度額 info.
    pub fn from_key(key: &InsuranceKey) -> Self {
        Self {
            insurer_number: key.insurer.wire(),
            insured_card_symbol: key.symbol.clone(),
            insured_identification_number: key.number.clone(),
            insured_branch_number: key.branch.clone(),
            birthdate: yyyymmdd(key.birthdate),
            limit_application_certificate_related_cons_flg: "1".into(),
            arbitrary_identifier: None,
        }
    }
}

impl SearchRequest {
    /// A search for `key` as of `date` from `institution`.
    pub fn search(date: NaiveDate, institution: &str, key: &InsuranceKey) -> Self {
        Envelope {
            xml_msg: SearchMessage {
                message_header: RequestHeader {
                    qualification_confirmation_date: yyyymmdd(date),
                    medical_institution_code: institution.into(),
                    arbitrary_file_identifier: None,
                },
                message_body: SearchBody {
                    qualification_confirm_search_info: SearchInfo::from_key(key),
                },
            },
        }
    }
}

/// Card-search message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CardSearchMessage {
    /// Header.
    pub message_header: RequestHeader,
    /// Body.
    pub message_body: CardSearchBody,
}

/// Card-search body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CardSearchBody {
    /// The card operation.
    pub tsunagi_card_authentication: CardAuthentication,
}

/// `TsunagiCardAuthentication`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CardAuthentication {
    /// `1` PIN, `2` visual.
    pub identity_method: String,
    /// Base64 DER user-auth certificate.
    pub certificate: String,
    /// Base64 challenge bytes (PIN only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
    /// Base64 signature (PIN only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Consent to 限度額 info; absent counts as consent given at the reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_application_certificate_related_cons_flg: Option<String>,
}

impl CardSearchRequest {
    /// A card search as of `date` from `institution`.
    pub fn card(date: NaiveDate, institution: &str, auth: CardAuthentication) -> Self {
        Envelope {
            xml_msg: CardSearchMessage {
                message_header: RequestHeader {
                    qualification_confirmation_date: yyyymmdd(date),
                    medical_institution_code: institution.into(),
                    arbitrary_file_identifier: None,
                },
                message_body: CardSearchBody {
                    tsunagi_card_authentication: auth,
                },
            },
        }
    }
}

/// Result message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResultMessage {
    /// Header.
    pub message_header: ResultHeader,
    /// Body; absent for message-level errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_body: Option<ResultBody>,
}

/// Result header (§2.1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResultHeader {
    /// `yyyyMMddHHmmss` JST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_execution_time: Option<String>,
    /// Echo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualification_confirmation_date: Option<String>,
    /// Echo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medical_institution_code: Option<String>,
    /// Echo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arbitrary_file_identifier: Option<String>,
    /// OQSCD002: `1` card, `2` insurance data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_classification: Option<String>,
    /// OQSCD003: `1` normal, `2` processing, `9` error.
    #[serde(default)]
    pub segment_of_result: String,
    /// Message-level error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Message-level error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// OQSCD005: `0` UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub character_code_identifier: Option<String>,
}

/// Result body (§2.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResultBody {
    /// Echo of the search keys (search by insurance data only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualification_confirm_search_info: Option<SearchInfo>,
    /// OQSCD004: `1` normal, `2` error.
    #[serde(default)]
    pub processing_result_status: String,
    /// Error or warning code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_result_code: Option<String>,
    /// Text for the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_result_message: Option<String>,
    /// OQSCD006.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualification_validity: Option<String>,
    /// The records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_list: Option<Vec<ResultItem>>,
}

/// One `ResultList` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultItem {
    /// The record.
    #[serde(rename = "ResultOfQualificationConfirmation")]
    pub result: QualificationResult,
}

/// `ResultOfQualificationConfirmation` (§2.3), the fields the simulator produces.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QualificationResult {
    /// OQSCD010.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insured_card_classification: Option<String>,
    /// 8 characters, space-padded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insurer_number: Option<String>,
    /// 記号.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insured_card_symbol: Option<String>,
    /// 番号.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insured_identification_number: Option<String>,
    /// 枝番.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insured_branch_number: Option<String>,
    /// OQSCD009.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_family_classification: Option<String>,
    /// Holder's name (dependants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insured_name: Option<String>,
    /// 氏名.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// 氏名カナ (half-width).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_kana: Option<String>,
    /// OQSCD007.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex1: Option<String>,
    /// `yyyyMMdd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthdate: Option<String>,
    /// 住所.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// 郵便番号.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_number: Option<String>,
    /// 資格取得年月日.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualification_date: Option<String>,
    /// 資格喪失年月日.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disqualification_date: Option<String>,
    /// 被保険者証交付年月日.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insured_certificate_issuance_date: Option<String>,
    /// 被保険者証有効開始年月日.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insured_card_valid_date: Option<String>,
    /// 被保険者証有効終了年月日.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insured_card_expiration_date: Option<String>,
    /// `010`/`020`/`030`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insured_partial_contribution_ratio: Option<String>,
    /// OQSCD015 `1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preschool_classification: Option<String>,
    /// OQSCD008.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_of_loss: Option<String>,
    /// 保険者名称.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insurer_name: Option<String>,
    /// 高齢受給者証.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elderly_recipient_certificate_info: Option<ElderlyRecipientCertificateInfo>,
    /// OQSCD001 echo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_application_certificate_related_cons_flg: Option<String>,
    /// Consent time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_application_certificate_related_cons_time: Option<String>,
    /// 限度額適用認定証.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_application_certificate_related_info: Option<LimitApplicationCertificateRelatedInfo>,
}

/// `ElderlyRecipientCertificateInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ElderlyRecipientCertificateInfo {
    /// 交付年月日.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elderly_recipient_certificate_date: Option<String>,
    /// 有効開始年月日.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elderly_recipient_valid_start_date: Option<String>,
    /// 有効終了年月日.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elderly_recipient_valid_end_date: Option<String>,
    /// `020`/`030`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elderly_recipient_contribution_ratio: Option<String>,
}

/// `LimitApplicationCertificateRelatedInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LimitApplicationCertificateRelatedInfo {
    /// OQSCD011.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_application_certificate_classification: Option<String>,
    /// OQSCD012.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_application_certificate_classification_flag: Option<String>,
    /// 交付年月日.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_application_certificate_date: Option<String>,
    /// 有効開始年月日.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_application_certificate_valid_start_date: Option<String>,
    /// 有効終了年月日.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_application_certificate_valid_end_date: Option<String>,
}

/// Login request body (ours; the real one is unpublished).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoginRequest {
    /// 10-digit 医療機関コード.
    pub medical_institution_code: String,
}

/// Login answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    /// `0` success, `1` failure.
    pub status: String,
    /// Message (empty on success).
    pub msg: String,
    /// Tokens (absent on failure).
    #[serde(default)]
    pub result: Option<LoginTokens>,
}

/// Login tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginTokens {
    /// Unused by clients.
    pub access_token: String,
    /// Unused by clients.
    pub refresh_token: String,
    /// The token for `Authorization`, valid 30 minutes.
    pub id_token: String,
    /// Linked-system character code setting.
    pub link_sys_char_cd: String,
}

/// `yyyyMMdd`.
pub fn yyyymmdd(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

/// Parses `yyyyMMdd` strictly (8 digits, a real date).
pub fn parse_yyyymmdd(s: &str) -> Option<NaiveDate> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y%m%d").ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn reads_the_reference_sample_and_ignores_unknown_fields() {
        let text = r#"{ "XmlMsg": { "MessageHeader": { "ProcessExecutionTime": "20250415101500",
          "QualificationConfirmationDate": "20250415", "MedicalInstitutionCode": "1319900017",
          "ReferenceClassification": "2", "SegmentOfResult": "1", "CharacterCodeIdentifier": "0" },
          "MessageBody": { "ProcessingResultStatus": "1", "QualificationValidity": "2",
          "ResultList": [ { "ResultOfQualificationConfirmation": { "InsurerNumber": "  139917",
          "Unknown": "x", "DisqualificationDate": "20250331", "ReasonOfLoss": "03" } } ] } } }"#;
        let r: ResultEnvelope = serde_json::from_str(text).unwrap();
        let body = r.xml_msg.message_body.unwrap();
        assert_eq!(body.qualification_validity.as_deref(), Some("2"));
        let item = &body.result_list.unwrap()[0].result;
        assert_eq!(item.insurer_number.as_deref(), Some("  139917"));
        assert_eq!(item.reason_of_loss.as_deref(), Some("03"));
    }

    #[test]
    fn dates_are_strict() {
        assert!(parse_yyyymmdd("20261126").is_some());
        assert!(parse_yyyymmdd("20261131").is_none());
        assert!(parse_yyyymmdd("2026-11-26").is_none());
        assert!(parse_yyyymmdd("+2026112").is_none());
    }
}
