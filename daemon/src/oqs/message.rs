//! Serde types of the JSON envelope (`XmlMsg` → `MessageHeader` + `MessageBody`).
//!
//! Results are read leniently: unknown fields are ignored and every field is optional here, so
//! that `classify` decides what is required and reports it precisely. Only the fields the daemon
//! uses are modelled. Requests are written with optional fields omitted, as the reference does.

use serde::{Deserialize, Serialize};

// ---- Results ----------------------------------------------------------------------------------

/// Root of a result.
#[derive(Debug, Deserialize)]
pub(crate) struct ResultEnvelope {
    #[serde(rename = "XmlMsg")]
    pub xml_msg: ResultMsg,
}

/// `XmlMsg` of a result.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ResultMsg {
    pub message_header: ResultHeader,
    #[serde(default)]
    pub message_body: Option<ResultBody>,
}

/// `MessageHeader` of a result (§2.1).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ResultHeader {
    /// Echo of the date asked about (the visit date).
    pub qualification_confirmation_date: Option<String>,
    pub segment_of_result: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// `MessageBody` of a single result (§2.2).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ResultBody {
    pub processing_result_status: Option<String>,
    pub processing_result_code: Option<String>,
    pub processing_result_message: Option<String>,
    pub qualification_validity: Option<String>,
    #[serde(default)]
    pub result_list: Option<Vec<ResultItem>>,
}

/// One item of `ResultList`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ResultItem {
    pub result_of_qualification_confirmation: RawQualification,
}

/// `ResultOfQualificationConfirmation` (§2.3), values still in wire form.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawQualification {
    pub insured_card_classification: Option<String>,
    pub insurer_number: Option<String>,
    pub insured_card_symbol: Option<String>,
    pub insured_identification_number: Option<String>,
    pub insured_branch_number: Option<String>,
    pub personal_family_classification: Option<String>,
    pub insured_name: Option<String>,
    pub name: Option<String>,
    pub name_kana: Option<String>,
    pub sex1: Option<String>,
    pub birthdate: Option<String>,
    pub qualification_date: Option<String>,
    pub disqualification_date: Option<String>,
    pub insured_card_valid_date: Option<String>,
    pub insured_card_expiration_date: Option<String>,
    pub insured_partial_contribution_ratio: Option<String>,
    pub preschool_classification: Option<String>,
    pub reason_of_loss: Option<String>,
    pub insurer_name: Option<String>,
    pub elderly_recipient_certificate_info: Option<RawElderly>,
    pub limit_application_certificate_related_info: Option<RawLimit>,
}

/// `ElderlyRecipientCertificateInfo` (高齢受給者証).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawElderly {
    pub elderly_recipient_valid_start_date: Option<String>,
    pub elderly_recipient_valid_end_date: Option<String>,
    pub elderly_recipient_contribution_ratio: Option<String>,
}

/// `LimitApplicationCertificateRelatedInfo` (限度額適用認定証).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawLimit {
    pub limit_application_certificate_classification: Option<String>,
    pub limit_application_certificate_classification_flag: Option<String>,
    pub limit_application_certificate_date: Option<String>,
    pub limit_application_certificate_valid_start_date: Option<String>,
    pub limit_application_certificate_valid_end_date: Option<String>,
    pub limit_application_certificate_long_term_date: Option<String>,
}

/// Answer of the login operation (no `Debug`: it holds the token).
#[derive(Deserialize)]
pub(crate) struct LoginAnswer {
    pub status: String,
    #[serde(default)]
    pub result: Option<LoginResult>,
}

/// `result` of the login answer; only the id token is used.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LoginResult {
    pub id_token: String,
}

// ---- Requests ---------------------------------------------------------------------------------

/// Body of the login request (our own shape; the real one is unpublished).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct LoginRequest<'a> {
    pub medical_institution_code: &'a str,
}

/// Root of a request.
#[derive(Debug, Serialize)]
pub(crate) struct RequestEnvelope<B> {
    #[serde(rename = "XmlMsg")]
    pub xml_msg: RequestMsg<B>,
}

/// `XmlMsg` of a request.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RequestMsg<B> {
    pub message_header: RequestHeader,
    pub message_body: B,
}

/// `MessageHeader` of a request.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RequestHeader {
    pub qualification_confirmation_date: String,
    pub medical_institution_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arbitrary_file_identifier: Option<String>,
}

/// `MessageBody` of a lookup by insurance data.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct InsuranceBody {
    pub qualification_confirm_search_info: SearchInfo,
}

/// `QualificationConfirmSearchInfo` (§1.4).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SearchInfo {
    pub insurer_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insured_card_symbol: Option<String>,
    pub insured_identification_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insured_branch_number: Option<String>,
    pub birthdate: String,
    pub limit_application_certificate_related_cons_flg: String,
}

/// `MessageBody` of a lookup by card (Tsunagi's own operation).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CardBody {
    pub tsunagi_card_authentication: CardAuthentication,
}

/// `TsunagiCardAuthentication`; binary values are base64 (standard alphabet, padded).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CardAuthentication {
    pub identity_method: String,
    pub certificate: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}
