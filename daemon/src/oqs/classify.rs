//! Turns a result body into an [`Answer`] or a [`QueryError`], without any I/O.
//!
//! Order (wire.md): not parseable or a non-string value anywhere → `Malformed`; message level
//! (`SegmentOfResult` 2 処理中, or 9 with a code the [`ResultCodes`] call a system error →
//! `SystemError`; any other 9 → `MessageError`, which reception treats as "offline"); person
//! level (`ProcessingResultStatus` 2: card codes → their variants by the code table, anything
//! else → `Rejected`); then `QualificationValidity` per OQSCD006. A lookup is confirmed only
//! when segment, status and validity are all 1 and there is exactly one result (reference §2.2).
//!
//! Three kinds of bad answer, told apart because they call for different things:
//! * **Unreadable** (`Malformed`, transient): not JSON, cut, a number where a string belongs, a
//!   required element missing or out of format. A proxy page or a cut connection looks like
//!   this; the next answer may be whole.
//! * **Unknown code value** (`UnknownCode`, final): a coded element — SegmentOfResult,
//!   ProcessingResultStatus, QualificationValidity, Sex1, ReasonOfLoss, … — carries a value
//!   outside the reference's table (validity 6, 医療扶助 有効（未登録）, included: it is outside
//!   health insurance). We would not be reading what we think; asking again returns the same.
//! * **Inconsistent** (`Inconsistent`, final): well-formed and every code known, but the facts
//!   contradict each other or the question — validity 1 with no result or with two, 2/3 with
//!   other than one, 5 with fewer than two, an answer for another date than the one asked, a
//!   record for another card than the one asked about, or 有効 with dates that do not cover the
//!   visit. Nothing in it may be shown as fact.
//!
//! Validity 4 with results present: the code wins and the results are dropped.
//!
//! The co-payment (`Qualification::ratio_percent`) is derived here, once, on the date the
//! answer speaks for (R13, `rules::copay::copay_when_confirmed`).

use chrono::NaiveDate;
use serde_json::Value;

use super::codes::{CodeMeaning, ResultCodes};
use super::message::{RawLimit, RawQualification, ResultBody, ResultEnvelope, ResultItem};
use super::{
    fold_width, insurer_from_wire, Answer, Inconsistency, InsuranceQuery, LimitCertificate, Notice,
    PersonalFamily, Qualification, QueryError, ReasonOfLoss, Sex,
};

/// What was asked, so that the answer can be checked against the question.
#[derive(Debug, Clone, Copy)]
pub enum Asked<'a> {
    /// A lookup by card as of this visit date.
    Card {
        /// The visit date asked about.
        visit_date: NaiveDate,
    },
    /// A lookup by insurance card data.
    Insurance(&'a InsuranceQuery),
}

impl Asked<'_> {
    fn visit_date(&self) -> NaiveDate {
        match self {
            Asked::Card { visit_date } => *visit_date,
            Asked::Insurance(q) => q.visit_date,
        }
    }
}

/// Classifies a result body (UTF-8 JSON) with the reference's code table, without knowing the
/// question: the co-payment is derived on the answer's own QualificationConfirmationDate.
pub fn classify(body: &[u8]) -> Result<Answer, QueryError> {
    classify_with(body, &ResultCodes::reference(), None)
}

/// Classifies a result body (UTF-8 JSON) with `codes`, checking it against `asked` when given.
pub fn classify_with(
    body: &[u8],
    codes: &ResultCodes,
    asked: Option<Asked<'_>>,
) -> Result<Answer, QueryError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| malformed(format!("not json: {e}")))?;
    check_all_strings(&value)?;
    let envelope: ResultEnvelope =
        serde_json::from_value(value).map_err(|e| malformed(format!("unexpected shape: {e}")))?;
    let msg = envelope.xml_msg;
    let header = msg.message_header;
    let error_code = header.error_code.unwrap_or_default();
    let error_message = header.error_message.unwrap_or_default();
    match header
        .segment_of_result
        .as_deref()
        .filter(|v| !v.is_empty())
    {
        Some("1") => {}
        Some("2") => {
            // 処理中: the system has not finished; asking again later is the only option.
            return Err(QueryError::SystemError {
                code: error_code,
                message: if error_message.is_empty() {
                    "処理中".to_string()
                } else {
                    error_message
                },
            });
        }
        Some("9") if codes.meaning(&error_code) == Some(CodeMeaning::SystemError) => {
            return Err(QueryError::SystemError {
                code: error_code,
                message: error_message,
            })
        }
        Some("9") => {
            return Err(QueryError::MessageError {
                code: error_code,
                message: error_message,
            })
        }
        Some(other) => return Err(unknown_code("SegmentOfResult", other)),
        None => return Err(malformed("SegmentOfResult missing")),
    }
    let answered = opt_date(
        header.qualification_confirmation_date,
        "QualificationConfirmationDate",
    )?;
    if let (Some(asked), Some(answered)) = (asked, answered) {
        if asked.visit_date() != answered {
            return Err(QueryError::Inconsistent(Inconsistency::OtherDate {
                asked: asked.visit_date(),
                answered,
            }));
        }
    }
    let as_of = asked.map(|a| a.visit_date()).or(answered);
    let body = msg
        .message_body
        .ok_or_else(|| malformed("MessageBody missing on a successful segment"))?;
    classify_body(body, codes, asked, as_of)
}

fn classify_body(
    body: ResultBody,
    codes: &ResultCodes,
    asked: Option<Asked<'_>>,
    as_of: Option<NaiveDate>,
) -> Result<Answer, QueryError> {
    let code = body.processing_result_code.filter(|c| !c.is_empty());
    let message = body.processing_result_message.unwrap_or_default();
    match body
        .processing_result_status
        .as_deref()
        .filter(|v| !v.is_empty())
    {
        Some("1") => {}
        Some("2") => return Err(person_error(code.unwrap_or_default(), message, codes)),
        Some(other) => return Err(unknown_code("ProcessingResultStatus", other)),
        None => return Err(malformed("ProcessingResultStatus missing")),
    }
    // A code on a success is a warning (reference §2.2, §4).
    let notices: Vec<Notice> = code
        .map(|c| Notice::with_codes(c, message, codes))
        .into_iter()
        .collect();
    let raws = body.result_list.unwrap_or_default();
    let validity = text(body.qualification_validity)
        .ok_or_else(|| malformed("QualificationValidity missing"))?;
    let got = raws.len();
    let count_wrong = || {
        QueryError::Inconsistent(Inconsistency::ResultCount {
            validity: validity.clone(),
            got,
        })
    };
    match validity.as_str() {
        "1" => {
            let qualification = exactly_one(raws, count_wrong, as_of)?;
            check_against(&qualification, asked)?;
            if let Some(date) = as_of {
                let started = qualification.qualification_date.is_none_or(|d| d <= date);
                let not_lost = qualification.disqualification_date.is_none_or(|d| date < d);
                if !(started && not_lost) {
                    return Err(QueryError::Inconsistent(Inconsistency::NotCovering));
                }
            }
            Ok(Answer::Confirmed {
                qualification,
                notices,
            })
        }
        "2" | "3" => {
            let qualification = exactly_one(raws, count_wrong, as_of)?;
            check_against(&qualification, asked)?;
            Ok(Answer::Invalid {
                qualification,
                newer_exists: validity == "3",
            })
        }
        "4" => Ok(Answer::NotFound { notices }),
        "5" => {
            if got < 2 {
                return Err(count_wrong());
            }
            let all = raws
                .into_iter()
                .map(|r| qualification(r.result_of_qualification_confirmation, as_of))
                .collect::<Result<Vec<_>, _>>()?;
            for q in &all {
                check_against(q, asked)?;
            }
            Ok(Answer::MultipleMatches(all))
        }
        other => Err(unknown_code("QualificationValidity", other)),
    }
}

fn exactly_one(
    raws: Vec<ResultItem>,
    count_wrong: impl Fn() -> QueryError,
    as_of: Option<NaiveDate>,
) -> Result<Qualification, QueryError> {
    let mut it = raws.into_iter();
    match (it.next(), it.next()) {
        (Some(item), None) => qualification(item.result_of_qualification_confirmation, as_of),
        _ => Err(count_wrong()),
    }
}

/// For a lookup by insurance data, every record must be the card asked about: same insurer
/// (space- or zero-padded alike), 番号, birth date, and 記号 after width normalisation when
/// both sides have one.
fn check_against(q: &Qualification, asked: Option<Asked<'_>>) -> Result<(), QueryError> {
    let Some(Asked::Insurance(asked)) = asked else {
        return Ok(());
    };
    let other = |field| Err(QueryError::Inconsistent(Inconsistency::OtherCard { field }));
    let asked_insurer = insurer_from_wire(asked.insurer.as_wire()).ok();
    if asked_insurer.as_ref().unwrap_or(&asked.insurer) != &q.insurer_number {
        return other("InsurerNumber");
    }
    if fold_width(&asked.number) != fold_width(&q.number) {
        return other("InsuredIdentificationNumber");
    }
    if let (Some(a), Some(b)) = (asked.symbol.as_deref(), q.symbol.as_deref()) {
        if fold_width(a) != fold_width(b) {
            return other("InsuredCardSymbol");
        }
    }
    if asked.birth_date != q.birth_date {
        return other("Birthdate");
    }
    Ok(())
}

/// Maps a person-level error (ProcessingResultStatus 2) to the error staff can act on.
fn person_error(code: String, message: String, codes: &ResultCodes) -> QueryError {
    match codes.meaning(&code) {
        Some(CodeMeaning::CertificateRevoked) => QueryError::CertificateRevoked,
        Some(CodeMeaning::CertificateExpired) => QueryError::CertificateExpired,
        Some(CodeMeaning::PinRequired) => QueryError::PinRequired,
        Some(CodeMeaning::CardNotAccepted) => QueryError::CardNotAccepted { code, message },
        _ => QueryError::Rejected { code, message },
    }
}

fn malformed(detail: impl Into<String>) -> QueryError {
    QueryError::Malformed {
        detail: detail.into(),
    }
}

fn unknown_code(field: &str, value: &str) -> QueryError {
    QueryError::UnknownCode {
        field: field.to_string(),
        value: value.to_string(),
    }
}

/// Every leaf of the envelope is a string (reference §1.4); a number, boolean or null anywhere,
/// even in a field we do not read, means the answer is not what the contract describes.
fn check_all_strings(root: &Value) -> Result<(), QueryError> {
    // Iterative so that a deeply nested body cannot exhaust the stack.
    let mut stack = vec![root];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(_) => {}
            Value::Array(items) => stack.extend(items.iter()),
            Value::Object(map) => stack.extend(map.values()),
            Value::Number(_) | Value::Bool(_) | Value::Null => {
                return Err(malformed(format!("non-string value {v}")))
            }
        }
    }
    Ok(())
}

fn required<'a>(value: &'a Option<String>, field: &str) -> Result<&'a str, QueryError> {
    value
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed(format!("{field} missing")))
}

/// Optional text: absent and empty are the same.
fn text(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.is_empty())
}

fn date(value: &str, field: &str) -> Result<NaiveDate, QueryError> {
    if value.len() != 8 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(format!("{field} is not yyyyMMdd: {value:?}")));
    }
    NaiveDate::parse_from_str(value, "%Y%m%d")
        .map_err(|_| malformed(format!("{field} is not a date: {value:?}")))
}

fn opt_date(value: Option<String>, field: &str) -> Result<Option<NaiveDate>, QueryError> {
    text(value).map(|v| date(&v, field)).transpose()
}

/// A 3-digit percentage (`"030"` → 30).
fn ratio(value: Option<String>, field: &str) -> Result<Option<u8>, QueryError> {
    let Some(v) = text(value) else {
        return Ok(None);
    };
    let percent = (v.len() == 3 && v.bytes().all(|b| b.is_ascii_digit()))
        .then(|| v.parse::<u8>().ok())
        .flatten()
        .filter(|p| *p <= 100)
        .ok_or_else(|| malformed(format!("{field} is not a 3-digit percentage: {v:?}")))?;
    Ok(Some(percent))
}

fn coded<T>(
    value: Option<String>,
    field: &str,
    map: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, QueryError> {
    text(value)
        .map(|v| map(&v).ok_or_else(|| unknown_code(field, &v)))
        .transpose()
}

/// Converts one `ResultOfQualificationConfirmation` into the daemon's type, deriving the
/// co-payment on `as_of` (the visit date) when it is known.
fn qualification(
    raw: RawQualification,
    as_of: Option<NaiveDate>,
) -> Result<Qualification, QueryError> {
    let insurer_raw = required(&raw.insurer_number, "InsurerNumber")?;
    let insurer_number =
        insurer_from_wire(insurer_raw).map_err(|e| malformed(format!("InsurerNumber: {e}")))?;
    let number = required(
        &raw.insured_identification_number,
        "InsuredIdentificationNumber",
    )?
    .to_string();
    let birth_date = date(required(&raw.birthdate, "Birthdate")?, "Birthdate")?;
    let sex = coded(raw.sex1, "Sex1", |c| match c {
        "1" => Some(Sex::Male),
        "2" => Some(Sex::Female),
        "3" => Some(Sex::Unset),
        _ => None,
    })?;
    let personal_family = coded(
        raw.personal_family_classification,
        "PersonalFamilyClassification",
        |c| match c {
            "1" => Some(PersonalFamily::Insured),
            "2" => Some(PersonalFamily::Dependant),
            _ => None,
        },
    )?;
    let reason_of_loss = coded(raw.reason_of_loss, "ReasonOfLoss", |c| match c {
        "01" => Some(ReasonOfLoss::Death),
        "02" => Some(ReasonOfLoss::PublicAssistance),
        "03" => Some(ReasonOfLoss::OtherInsurance),
        "99" => Some(ReasonOfLoss::Other),
        _ => None,
    })?;
    let card_classification = coded(
        raw.insured_card_classification,
        "InsuredCardClassification",
        |c| {
            matches!(c, "01" | "02" | "03" | "04" | "05" | "06" | "07" | "A1")
                .then(|| c.to_string())
        },
    )?;
    let preschool = coded(
        raw.preschool_classification,
        "PreschoolClassification",
        |c| (c == "1").then_some(true),
    )?
    .unwrap_or(false);
    let elderly = raw.elderly_recipient_certificate_info.unwrap_or_default();
    let card_ratio_percent = ratio(
        raw.insured_partial_contribution_ratio,
        "InsuredPartialContributionRatio",
    )?;
    let mut q = Qualification {
        insurer_number,
        insurer_name: text(raw.insurer_name),
        symbol: text(raw.insured_card_symbol),
        number,
        branch: text(raw.insured_branch_number),
        name: text(raw.name),
        kana: text(raw.name_kana),
        insured_name: text(raw.insured_name),
        birth_date,
        sex,
        personal_family,
        card_classification,
        ratio_percent: None,
        card_ratio_percent,
        preschool,
        elderly_ratio_percent: ratio(
            elderly.elderly_recipient_contribution_ratio,
            "ElderlyRecipientContributionRatio",
        )?,
        elderly_valid_from: opt_date(
            elderly.elderly_recipient_valid_start_date,
            "ElderlyRecipientValidStartDate",
        )?,
        elderly_valid_until: opt_date(
            elderly.elderly_recipient_valid_end_date,
            "ElderlyRecipientValidEndDate",
        )?,
        qualification_date: opt_date(raw.qualification_date, "QualificationDate")?,
        disqualification_date: opt_date(raw.disqualification_date, "DisqualificationDate")?,
        reason_of_loss,
        card_valid_from: opt_date(raw.insured_card_valid_date, "InsuredCardValidDate")?,
        card_valid_until: opt_date(
            raw.insured_card_expiration_date,
            "InsuredCardExpirationDate",
        )?,
        limit: raw
            .limit_application_certificate_related_info
            .map(limit)
            .transpose()?,
    };
    // R13 on the visit date. Without a date only a 後期高齢者' own card ratio can be trusted.
    q.ratio_percent = match as_of {
        Some(date) => q.copay_on(date).and_then(|c| c.ratio).map(|r| r.percent()),
        None => q
            .card_ratio_percent
            .filter(|_| q.insurer_number.is_late_elderly()),
    };
    Ok(q)
}

fn limit(raw: RawLimit) -> Result<LimitCertificate, QueryError> {
    Ok(LimitCertificate {
        classification: text(raw.limit_application_certificate_classification),
        bracket: text(raw.limit_application_certificate_classification_flag),
        issued: opt_date(
            raw.limit_application_certificate_date,
            "LimitApplicationCertificateDate",
        )?,
        valid_from: opt_date(
            raw.limit_application_certificate_valid_start_date,
            "LimitApplicationCertificateValidStartDate",
        )?,
        valid_until: opt_date(
            raw.limit_application_certificate_valid_end_date,
            "LimitApplicationCertificateValidEndDate",
        )?,
        long_term_date: opt_date(
            raw.limit_application_certificate_long_term_date,
            "LimitApplicationCertificateLongTermDate",
        )?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    /// Reference §5.2: valid, dependant with 限度額 info (retyped).
    const VALID_DEPENDANT: &str = r#"{
      "XmlMsg": {
        "MessageHeader": {
          "ProcessExecutionTime": "20250415093112",
          "QualificationConfirmationDate": "20250415",
          "MedicalInstitutionCode": "1319900017",
          "ArbitraryFileIdentifier": "rq-20250415-0007",
          "ReferenceClassification": "2",
          "SegmentOfResult": "1",
          "CharacterCodeIdentifier": "0"
        },
        "MessageBody": {
          "QualificationConfirmSearchInfo": {
            "InsurerNumber": "06139917",
            "InsuredCardSymbol": "練馬あ12",
            "InsuredIdentificationNumber": "0004471",
            "InsuredBranchNumber": "02",
            "Birthdate": "19880907",
            "LimitApplicationCertificateRelatedConsFlg": "1",
            "ArbitraryIdentifier": "pt-000812"
          },
          "ProcessingResultStatus": "1",
          "QualificationValidity": "1",
          "ResultList": [
            {
              "ResultOfQualificationConfirmation": {
                "InsuredCardClassification": "01",
                "InsurerNumber": "06139917",
                "InsuredCardSymbol": "練馬あ12",
                "InsuredIdentificationNumber": "0004471",
                "InsuredBranchNumber": "02",
                "PersonalFamilyClassification": "2",
                "InsuredName": "架空　一郎",
                "Name": "架空　花子",
                "NameKana": "ｶｸｳ ﾊﾅｺ",
                "Sex1": "2",
                "Birthdate": "19880907",
                "Address": "東京都練馬区架空町一丁目2番3号",
                "PostNumber": "176-0000",
                "QualificationDate": "20210401",
                "InsuredCertificateIssuanceDate": "20210405",
                "InsuredCardValidDate": "20210401",
                "InsurerName": "架空商事健康保険組合",
                "LimitApplicationCertificateRelatedConsFlg": "1",
                "LimitApplicationCertificateRelatedConsTime": "20250415093111",
                "LimitApplicationCertificateRelatedInfo": {
                  "LimitApplicationCertificateClassification": "01",
                  "LimitApplicationCertificateClassificationFlag": "A04",
                  "LimitApplicationCertificateDate": "20250301",
                  "LimitApplicationCertificateValidStartDate": "20250301",
                  "LimitApplicationCertificateValidEndDate": "20260228"
                }
              }
            }
          ]
        }
      }
    }"#;

    /// Reference §5.3: 後期高齢者 fragment (no 記号/枝番, 20%).
    const LATE_ELDERLY_ITEM: &str = r#"{ "ResultOfQualificationConfirmation": {
        "InsuredCardClassification": "01",
        "InsurerNumber": "39139912",
        "InsuredIdentificationNumber": "00720045",
        "PersonalFamilyClassification": "1",
        "Name": "見本　トメ", "NameKana": "ﾐﾎﾝ ﾄﾒ", "Sex1": "2",
        "Birthdate": "19420130",
        "InsuredPartialContributionRatio": "020",
        "InsurerName": "東京都後期高齢者医療広域連合",
        "InsuredCardValidDate": "20240801", "InsuredCardExpirationDate": "20250731"
    } }"#;

    /// Reference §5.4: qualification lost (無効).
    const LOST: &str = r#"{ "XmlMsg": {
      "MessageHeader": { "ProcessExecutionTime": "20250415101500", "QualificationConfirmationDate": "20250415",
        "MedicalInstitutionCode": "1319900017", "ReferenceClassification": "2", "SegmentOfResult": "1",
        "CharacterCodeIdentifier": "0" },
      "MessageBody": {
        "ProcessingResultStatus": "1", "QualificationValidity": "2",
        "ResultList": [ { "ResultOfQualificationConfirmation": {
          "InsuredCardClassification": "01", "InsurerNumber": "  139917", "InsuredIdentificationNumber": "55102",
          "InsuredCardSymbol": "1", "InsuredBranchNumber": "00", "PersonalFamilyClassification": "1",
          "Name": "仮名　次郎", "NameKana": "ｶﾒｲ ｼﾞﾛｳ", "Sex1": "1", "Birthdate": "19700202",
          "InsurerName": "架空市", "QualificationDate": "20100401", "DisqualificationDate": "20250331",
          "ReasonOfLoss": "03" } } ] } } }"#;

    /// Reference §5.5: no match.
    const NO_MATCH: &str = r#"{ "XmlMsg": { "MessageHeader": { "ProcessExecutionTime": "20250415101720", "QualificationConfirmationDate": "20250415",
      "MedicalInstitutionCode": "1319900017", "ReferenceClassification": "2", "SegmentOfResult": "1", "CharacterCodeIdentifier": "0" },
      "MessageBody": { "ProcessingResultStatus": "1", "QualificationValidity": "4" } } }"#;

    /// Reference §5.5: message-level error.
    const MESSAGE_ERROR: &str = r#"{ "XmlMsg": { "MessageHeader": { "ProcessExecutionTime": "20250415101801", "MedicalInstitutionCode": "1319900017",
      "SegmentOfResult": "9", "ErrorCode": "SIM-E0003", "ErrorMessage": "（模擬）保険者番号の桁数が不正です",
      "CharacterCodeIdentifier": "0" } } }"#;

    /// A success envelope around the given body fields.
    fn envelope(body: &str) -> String {
        format!(
            r#"{{"XmlMsg":{{"MessageHeader":{{"SegmentOfResult":"1","ReferenceClassification":"1"}},"MessageBody":{{{body}}}}}}}"#
        )
    }

    fn with_items(status: &str, validity: &str, items: &[&str]) -> String {
        envelope(&format!(
            r#""ProcessingResultStatus":"{status}","QualificationValidity":"{validity}","ResultList":[{}]"#,
            items.join(",")
        ))
    }

    fn person_error_body(code: &str) -> String {
        envelope(&format!(
            r#""ProcessingResultStatus":"2","ProcessingResultCode":"{code}","ProcessingResultMessage":"（模擬）エラー""#
        ))
    }

    fn is_malformed(r: &Result<Answer, QueryError>) -> bool {
        matches!(r, Err(QueryError::Malformed { .. }))
    }

    fn is_unknown_code(r: &Result<Answer, QueryError>) -> bool {
        matches!(r, Err(QueryError::UnknownCode { .. }))
    }

    fn is_inconsistent(e: &QueryError) -> bool {
        matches!(e, QueryError::Inconsistent(_))
    }

    #[test]
    fn sample_5_2_is_confirmed_with_all_fields() {
        let Ok(Answer::Confirmed {
            qualification: q,
            notices,
        }) = classify(VALID_DEPENDANT.as_bytes())
        else {
            panic!("not confirmed");
        };
        assert!(notices.is_empty());
        assert_eq!(q.insurer_number.as_wire(), "06139917");
        assert_eq!(q.symbol.as_deref(), Some("練馬あ12"));
        assert_eq!(q.number, "0004471");
        assert_eq!(q.branch.as_deref(), Some("02"));
        assert_eq!(q.name.as_deref(), Some("架空　花子"));
        assert_eq!(q.insured_name.as_deref(), Some("架空　一郎"));
        assert_eq!(q.kana.as_deref(), Some("ｶｸｳ ﾊﾅｺ"));
        assert_eq!(q.birth_date, NaiveDate::from_ymd_opt(1988, 9, 7).unwrap());
        assert_eq!(q.sex, Some(Sex::Female));
        assert_eq!(q.personal_family, Some(PersonalFamily::Dependant));
        assert_eq!(q.card_classification.as_deref(), Some("01"));
        // No card ratio is sent for a 36-year-old dependant; R13 gives 3割 all the same.
        assert_eq!((q.ratio_percent, q.card_ratio_percent), (Some(30), None));
        assert!(!q.preschool);
        assert_eq!(q.qualification_date, NaiveDate::from_ymd_opt(2021, 4, 1));
        assert_eq!(q.card_valid_from, NaiveDate::from_ymd_opt(2021, 4, 1));
        assert_eq!(q.insurer_name.as_deref(), Some("架空商事健康保険組合"));
        let l = q.limit.as_ref().unwrap();
        assert_eq!(l.bracket.as_deref(), Some("A04"));
        assert_eq!(l.classification.as_deref(), Some("01"));
        assert_eq!(l.valid_until, NaiveDate::from_ymd_opt(2026, 2, 28));
        // Serialized form: snake_case names, wire insurer number, ISO dates.
        let j = serde_json::to_value(&q).unwrap();
        assert_eq!(j["insurer_number"], "06139917");
        assert_eq!(j["birth_date"], "1988-09-07");
        assert_eq!(j["personal_family"], "dependant");
        assert_eq!(j["limit"]["valid_until"], "2026-02-28");
    }

    #[test]
    fn sample_5_3_late_elderly_has_ratio_and_no_symbol() {
        let body = with_items("1", "1", &[LATE_ELDERLY_ITEM]);
        let Ok(Answer::Confirmed {
            qualification: q, ..
        }) = classify(body.as_bytes())
        else {
            panic!("not confirmed");
        };
        assert!(q.insurer_number.is_late_elderly());
        assert_eq!(q.symbol, None);
        assert_eq!(q.branch, None);
        assert_eq!(q.ratio_percent, Some(20));
        assert_eq!(q.card_valid_until, NaiveDate::from_ymd_opt(2025, 7, 31));
        let lines = q.display_lines_ja();
        assert!(lines.contains(&("負担割合", "2割".to_string())));
        assert!(lines.contains(&("記号・番号・枝番", "00720045".to_string())));
        assert!(lines.contains(&("保険者番号", "39139912".to_string())));
    }

    #[test]
    fn sample_5_4_lost_is_invalid() {
        let Ok(Answer::Invalid {
            qualification: q,
            newer_exists,
        }) = classify(LOST.as_bytes())
        else {
            panic!("not invalid");
        };
        assert!(!newer_exists);
        assert_eq!(q.insurer_number.as_wire(), "  139917");
        assert_eq!(
            q.disqualification_date,
            NaiveDate::from_ymd_opt(2025, 3, 31)
        );
        assert_eq!(q.reason_of_loss, Some(ReasonOfLoss::OtherInsurance));
        let newer = LOST.replace(
            r#""QualificationValidity": "2""#,
            r#""QualificationValidity": "3""#,
        );
        assert!(matches!(
            classify(newer.as_bytes()),
            Ok(Answer::Invalid {
                newer_exists: true,
                ..
            })
        ));
    }

    #[test]
    fn sample_5_5_no_match_and_message_error() {
        assert_eq!(
            classify(NO_MATCH.as_bytes()).unwrap(),
            Answer::NotFound { notices: vec![] }
        );
        match classify(MESSAGE_ERROR.as_bytes()) {
            Err(QueryError::MessageError { code, message }) => {
                assert_eq!(code, "SIM-E0003");
                assert_eq!(message, "（模擬）保険者番号の桁数が不正です");
            }
            other => panic!("{other:?}"),
        }
        // Validity 4 with an empty list is the same answer.
        let empty = with_items("1", "4", &[]);
        assert!(matches!(
            classify(empty.as_bytes()),
            Ok(Answer::NotFound { .. })
        ));
    }

    #[test]
    fn multiple_matches_lists_all() {
        let body = with_items("1", "5", &[LATE_ELDERLY_ITEM, LATE_ELDERLY_ITEM]);
        let Ok(Answer::MultipleMatches(all)) = classify(body.as_bytes()) else {
            panic!("not multiple");
        };
        assert_eq!(all.len(), 2);
        // 複数該当 with fewer than two candidates contradicts itself.
        for items in [&[][..], &[LATE_ELDERLY_ITEM][..]] {
            let e = classify(with_items("1", "5", items).as_bytes()).unwrap_err();
            assert!(is_inconsistent(&e), "{e:?}");
        }
    }

    #[test]
    fn validity_one_needs_exactly_one_result() {
        // The system contradicts itself: nothing may be confirmed, and it is named as such.
        let no_list = envelope(r#""ProcessingResultStatus":"1","QualificationValidity":"1""#);
        let two = with_items("1", "1", &[LATE_ELDERLY_ITEM, LATE_ELDERLY_ITEM]);
        for body in [
            with_items("1", "1", &[]),
            no_list,
            two.clone(),
            with_items("1", "2", &[]),
            with_items("1", "3", &[LATE_ELDERLY_ITEM, LATE_ELDERLY_ITEM]),
        ] {
            let e = classify(body.as_bytes()).unwrap_err();
            assert!(is_inconsistent(&e), "{e:?}");
            assert!(!e.is_transient(), "an inconsistent answer is final: {e:?}");
        }
        let e = classify(two.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), "inconsistent");
        assert!(
            e.message_ja()
                .contains("矛盾しています（資格有効性が「有効」なのに資格情報が2件あります）"),
            "{}",
            e.message_ja()
        );
    }

    #[test]
    fn unknown_code_values_are_final_and_missing_ones_malformed() {
        // It names an unknown code value and does not ask again; a missing one is unreadable.
        for v in ["0", "6", "7"] {
            let b = with_items("1", v, &[LATE_ELDERLY_ITEM]);
            let e = classify(b.as_bytes()).unwrap_err();
            assert!(
                matches!(&e, QueryError::UnknownCode { field, value } if field == "QualificationValidity" && value == v),
                "validity {v:?}: {e:?}"
            );
            assert!(!e.is_transient());
            assert_eq!(e.kind(), "unknown-code");
            assert!(e.message_ja().contains("想定外のコード値（資格有効性: "));
        }
        let b = with_items("1", "", &[LATE_ELDERLY_ITEM]);
        assert!(is_malformed(&classify(b.as_bytes())));
        let no_validity = envelope(r#""ProcessingResultStatus":"1""#);
        assert!(is_malformed(&classify(no_validity.as_bytes())));
        let no_status = envelope(r#""QualificationValidity":"4""#);
        assert!(is_malformed(&classify(no_status.as_bytes())));
        let bad_status = envelope(r#""ProcessingResultStatus":"3","QualificationValidity":"4""#);
        assert!(is_unknown_code(&classify(bad_status.as_bytes())));
        let bad_segment =
            NO_MATCH.replace(r#""SegmentOfResult": "1""#, r#""SegmentOfResult": "5""#);
        assert!(is_unknown_code(&classify(bad_segment.as_bytes())));
        let no_segment = r#"{"XmlMsg":{"MessageHeader":{},"MessageBody":{}}}"#;
        assert!(is_malformed(&classify(no_segment.as_bytes())));
        let no_body = r#"{"XmlMsg":{"MessageHeader":{"SegmentOfResult":"1"}}}"#;
        assert!(is_malformed(&classify(no_body.as_bytes())));
        let bad_sex = LATE_ELDERLY_ITEM.replace(r#""Sex1": "2""#, r#""Sex1": "9""#);
        assert!(is_unknown_code(&classify(
            with_items("1", "1", &[&bad_sex]).as_bytes()
        )));
        let bad_ratio = LATE_ELDERLY_ITEM.replace(r#""020""#, r#""20""#);
        assert!(is_malformed(&classify(
            with_items("1", "1", &[&bad_ratio]).as_bytes()
        )));
        let bad_date = LATE_ELDERLY_ITEM.replace("19420130", "19420230");
        assert!(is_malformed(&classify(
            with_items("1", "1", &[&bad_date]).as_bytes()
        )));
        let bad_insurer = LATE_ELDERLY_ITEM.replace("39139912", "3913991");
        assert!(is_malformed(&classify(
            with_items("1", "1", &[&bad_insurer]).as_bytes()
        )));
        let no_number =
            LATE_ELDERLY_ITEM.replace(r#""InsuredIdentificationNumber": "00720045","#, "");
        assert!(is_malformed(&classify(
            with_items("1", "1", &[&no_number]).as_bytes()
        )));
    }

    #[test]
    fn message_level_errors() {
        let sys = r#"{"XmlMsg":{"MessageHeader":{"SegmentOfResult":"9","ErrorCode":"SIM-E0900","ErrorMessage":"（模擬）システムエラー"}}}"#;
        let e = classify(sys.as_bytes()).unwrap_err();
        assert!(matches!(&e, QueryError::SystemError { code, .. } if code == "SIM-E0900"));
        assert!(e.is_transient());
        let busy = r#"{"XmlMsg":{"MessageHeader":{"SegmentOfResult":"2"}}}"#;
        let e = classify(busy.as_bytes()).unwrap_err();
        assert!(matches!(e, QueryError::SystemError { .. }));
        // Every other SegmentOfResult 9 gives the offline guidance: captured, confirmed later.
        for code in ["SIM-E0001", "SIM-E0002", "SIM-E0003", "OQS-E9999", ""] {
            let b = format!(
                r#"{{"XmlMsg":{{"MessageHeader":{{"SegmentOfResult":"9","ErrorCode":"{code}","ErrorMessage":"m"}}}}}}"#
            );
            let e = classify(b.as_bytes()).unwrap_err();
            assert!(matches!(&e, QueryError::MessageError { code: c, .. } if c == code));
            assert!(e.is_transient());
            assert_eq!(e.kind(), "message-error");
            let m = e.message_ja();
            assert!(
                m.contains("通常の負担割合で受け付け、後で再確認します。"),
                "{m}"
            );
        }
        // Which code is a system error is a setting.
        let codes = ResultCodes::reference().with("OQS-E9999", CodeMeaning::SystemError);
        let b = r#"{"XmlMsg":{"MessageHeader":{"SegmentOfResult":"9","ErrorCode":"OQS-E9999"}}}"#;
        assert!(matches!(
            classify_with(b.as_bytes(), &codes, None),
            Err(QueryError::SystemError { .. })
        ));
    }

    #[test]
    fn person_level_errors() {
        let check = |code: &str| classify(person_error_body(code).as_bytes()).unwrap_err();
        assert!(matches!(check("SIM-E1103"), QueryError::CertificateRevoked));
        assert!(matches!(check("SIM-E1104"), QueryError::CertificateExpired));
        assert!(matches!(check("SIM-E1105"), QueryError::PinRequired));
        for code in ["SIM-E1101", "SIM-E1102", "SIM-E1107"] {
            let e = check(code);
            assert!(
                matches!(&e, QueryError::CardNotAccepted { code: c, message } if c == code && message == "（模擬）エラー")
            );
            assert!(!e.is_transient());
        }
        assert!(
            matches!(check("SIM-E1001"), QueryError::Rejected { code, .. } if code == "SIM-E1001")
        );
        assert!(matches!(check("SIM-E9999"), QueryError::Rejected { .. }));
        assert!(check("SIM-E1104").message_ja().contains("有効期限"));
        assert!(check("SIM-E1103").message_ja().contains("失効"));
        assert!(check("SIM-E1105").message_ja().contains("暗証番号"));
    }

    #[test]
    fn warnings_become_notices() {
        let item = LATE_ELDERLY_ITEM;
        let b = envelope(&format!(
            r#""ProcessingResultStatus":"1","ProcessingResultCode":"SIM-W2001","ProcessingResultMessage":"（模擬）証明書の有効期限が近づいています","QualificationValidity":"1","ResultList":[{item}]"#
        ));
        let Ok(Answer::Confirmed { notices, .. }) = classify(b.as_bytes()) else {
            panic!("not confirmed");
        };
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].code(), "SIM-W2001");
        assert!(notices[0].message_ja().contains("有効期限"));
        let b = envelope(
            r#""ProcessingResultStatus":"1","ProcessingResultCode":"SIM-W2002","ProcessingResultMessage":"m","QualificationValidity":"4""#,
        );
        let Ok(Answer::NotFound { notices }) = classify(b.as_bytes()) else {
            panic!("not not-found");
        };
        assert_eq!(notices[0].code(), "SIM-W2002");
        assert!(notices[0].message_ja().contains("猶予"));
        let unknown = Notice::new("SIM-W9999", "別の知らせ");
        assert!(unknown.message_ja().contains("別の知らせ"));
    }

    #[test]
    fn element_order_and_unknown_fields_do_not_matter() {
        let b = r#"{"Extra":"x","XmlMsg":{"MessageBody":{"ResultList":[{"ResultOfQualificationConfirmation":{"Birthdate":"19420130","Unknown":{"Deep":["a"]},"InsuredIdentificationNumber":"1","InsurerNumber":"39139912"}}],"QualificationValidity":"1","NewThing":"y","ProcessingResultStatus":"1"},"MessageHeader":{"SegmentOfResult":"1"}}}"#;
        assert!(matches!(
            classify(b.as_bytes()),
            Ok(Answer::Confirmed { .. })
        ));
    }

    #[test]
    fn broken_bodies_are_malformed() {
        let truncated = &VALID_DEPENDANT[..VALID_DEPENDANT.len() / 2];
        assert!(is_malformed(&classify(truncated.as_bytes())));
        assert!(is_malformed(&classify(b"<html><body>503</body></html>")));
        assert!(is_malformed(&classify(b"")));
        assert!(is_malformed(&classify(b"[]")));
        assert!(is_malformed(&classify(br#"{"NotXmlMsg":{}}"#)));
        // Numbers where strings belong, in a field we read and in one we do not.
        let wrong = NO_MATCH.replace(
            r#""QualificationValidity": "4""#,
            r#""QualificationValidity": 4"#,
        );
        assert!(is_malformed(&classify(wrong.as_bytes())));
        let wrong = NO_MATCH.replace(
            r#""ProcessExecutionTime": "20250415101720""#,
            r#""ProcessExecutionTime": 20250415101720"#,
        );
        assert!(is_malformed(&classify(wrong.as_bytes())));
        let wrong = VALID_DEPENDANT.replace(r#""Sex1": "2""#, r#""Sex1": true"#);
        assert!(is_malformed(&classify(wrong.as_bytes())));
        let wrong = VALID_DEPENDANT.replace(r#""Name": "架空　花子""#, r#""Name": null"#);
        assert!(is_malformed(&classify(wrong.as_bytes())));
        let list_as_object =
            envelope(r#""ProcessingResultStatus":"1","QualificationValidity":"1","ResultList":{}"#);
        assert!(is_malformed(&classify(list_as_object.as_bytes())));
        let e = classify(b"nope").unwrap_err();
        assert!(e.is_transient());
        assert!(e.message_ja().contains("後で"));
    }

    #[test]
    fn debug_of_qualification_redacts_personal_data() {
        let Ok(Answer::Confirmed {
            qualification: q, ..
        }) = classify(VALID_DEPENDANT.as_bytes())
        else {
            panic!("not confirmed");
        };
        let d = format!("{q:?}");
        for secret in ["花子", "一郎", "ﾊﾅｺ", "1988", "0004471", "練馬"] {
            assert!(!d.contains(secret), "{secret} in {d}");
        }
        assert!(d.contains("06139917"));
        let answer = format!("{:?}", classify(VALID_DEPENDANT.as_bytes()));
        assert!(!answer.contains("花子"));
    }

    #[test]
    fn display_lines_and_answer_messages() {
        let Ok(
            a @ Answer::Confirmed {
                qualification: q, ..
            },
        ) = &classify(VALID_DEPENDANT.as_bytes())
        else {
            panic!("not confirmed");
        };
        let lines = q.display_lines_ja();
        assert_eq!(lines[0], ("保険者番号", "06139917".to_string()));
        assert!(lines.contains(&("記号・番号・枝番", "練馬あ12・0004471・02".to_string())));
        assert!(lines.contains(&("氏名", "架空　花子".to_string())));
        assert!(lines.contains(&("生年月日", "1988年9月7日".to_string())));
        assert!(a.message_ja().contains("有効"));
        let lost = classify(LOST.as_bytes()).unwrap();
        assert!(lost.message_ja().contains("資格が無効です"));
        assert!(classify(NO_MATCH.as_bytes())
            .unwrap()
            .message_ja()
            .contains("見つかりません"));
    }

    #[test]
    fn error_messages_follow_the_contract() {
        for e in [
            QueryError::Timeout,
            QueryError::Unreachable,
            QueryError::ServerError { status: 503 },
            QueryError::RateLimited { retry_after: None },
            QueryError::SystemError {
                code: "SIM-E0900".into(),
                message: String::new(),
            },
            QueryError::Malformed {
                detail: String::new(),
            },
        ] {
            assert!(e.is_transient(), "{e:?}");
            let m = e.message_ja();
            assert!(m.contains("接続できません") || m.contains("後で"), "{m}");
        }
        for e in [
            QueryError::CertificateExpired,
            QueryError::CertificateRevoked,
            QueryError::PinRequired,
            QueryError::Unauthorized,
            QueryError::Rejected {
                code: String::new(),
                message: String::new(),
            },
            QueryError::Rejected {
                code: crate::oqs::CONFIG_ERROR_CODE.to_string(),
                message: String::new(),
            },
        ] {
            assert!(!e.is_transient(), "{e:?}");
        }
        let config = QueryError::Rejected {
            code: crate::oqs::CONFIG_ERROR_CODE.to_string(),
            message: "x".to_string(),
        };
        assert!(config.message_ja().contains("設定"));
    }

    #[test]
    fn card_codes_are_settings() {
        // It reads the card codes through the table, so another system's codes are a setting.
        let codes = ResultCodes::empty()
            .with("OQS-E2104", CodeMeaning::CertificateExpired)
            .with("OQS-W0001", CodeMeaning::CertificateExpiresSoon);
        let e = classify_with(person_error_body("OQS-E2104").as_bytes(), &codes, None);
        assert!(matches!(e, Err(QueryError::CertificateExpired)), "{e:?}");
        // A code the table does not know is shown verbatim, never guessed.
        let e = classify_with(person_error_body("SIM-E1104").as_bytes(), &codes, None);
        assert!(matches!(e, Err(QueryError::Rejected { .. })), "{e:?}");
        let b = envelope(
            r#""ProcessingResultStatus":"1","ProcessingResultCode":"OQS-W0001","ProcessingResultMessage":"m","QualificationValidity":"4""#,
        );
        let Ok(Answer::NotFound { notices }) = classify_with(b.as_bytes(), &codes, None) else {
            panic!("not not-found");
        };
        assert!(notices[0].message_ja().contains("3か月以内"));
    }

    fn asked_for(number: &str, symbol: Option<&str>) -> InsuranceQuery {
        InsuranceQuery {
            visit_date: NaiveDate::from_ymd_opt(2025, 4, 15).unwrap(),
            insurer: crate::domain::InsurerNumber::parse("06139917").unwrap(),
            symbol: symbol.map(str::to_string),
            number: number.to_string(),
            branch: Some("02".to_string()),
            birth_date: NaiveDate::from_ymd_opt(1988, 9, 7).unwrap(),
            limit_consent: true,
            file_id: String::new(),
        }
    }

    #[test]
    fn answers_are_checked_against_the_question() {
        let codes = ResultCodes::reference();
        // It accepts the card asked about, with 記号 compared after width normalisation.
        let asked = asked_for("0004471", Some("練馬あ１２"));
        let r = classify_with(
            VALID_DEPENDANT.as_bytes(),
            &codes,
            Some(Asked::Insurance(&asked)),
        );
        assert!(matches!(r, Ok(Answer::Confirmed { .. })), "{r:?}");
        // It names a record for another card, or another date, as inconsistent.
        let other = asked_for("0004472", Some("練馬あ12"));
        let e = classify_with(
            VALID_DEPENDANT.as_bytes(),
            &codes,
            Some(Asked::Insurance(&other)),
        )
        .unwrap_err();
        assert!(
            matches!(
                &e,
                QueryError::Inconsistent(Inconsistency::OtherCard {
                    field: "InsuredIdentificationNumber"
                })
            ),
            "{e:?}"
        );
        let other = asked_for("0004471", Some("練馬あ13"));
        let e = classify_with(
            VALID_DEPENDANT.as_bytes(),
            &codes,
            Some(Asked::Insurance(&other)),
        )
        .unwrap_err();
        assert!(
            e.message_ja()
                .contains("照会したものと記号が異なる資格情報が返りました"),
            "{e:?}"
        );
        let later = Asked::Card {
            visit_date: NaiveDate::from_ymd_opt(2025, 4, 16).unwrap(),
        };
        let e = classify_with(VALID_DEPENDANT.as_bytes(), &codes, Some(later)).unwrap_err();
        assert!(
            matches!(
                &e,
                QueryError::Inconsistent(Inconsistency::OtherDate { .. })
            ),
            "{e:?}"
        );
        assert!(
            e.message_ja()
                .contains("2025年4月16日の照会に2025年4月15日の結果"),
            "{}",
            e.message_ja()
        );
        // 有効, but lost before the visit.
        let lost_before = VALID_DEPENDANT.replace(
            r#""QualificationDate": "20210401","#,
            r#""QualificationDate": "20210401", "DisqualificationDate": "20250401","#,
        );
        let e = classify(lost_before.as_bytes()).unwrap_err();
        assert!(
            matches!(&e, QueryError::Inconsistent(Inconsistency::NotCovering)),
            "{e:?}"
        );
    }

    #[test]
    fn zero_padded_six_digit_insurer_is_the_six_digit_number() {
        // It reads "00139917" as the 国保 number 139917, the same as "  139917".
        let zero = LOST.replace(r#""  139917""#, r#""00139917""#);
        let Ok(Answer::Invalid {
            qualification: q, ..
        }) = classify(zero.as_bytes())
        else {
            panic!("not invalid");
        };
        assert_eq!(q.insurer_number.as_wire(), "  139917");
        assert!(q.insurer_number.is_six_digit());
        assert_eq!(
            insurer_from_wire("00139917").unwrap(),
            insurer_from_wire("  139917").unwrap()
        );
        // A real 8-digit number is kept as it is.
        assert_eq!(insurer_from_wire("06139917").unwrap().as_wire(), "06139917");
        assert_eq!(fold_width("　ＡＢ１２－３ "), "AB12-3");
        assert_eq!(fold_width("練馬あ１２"), "練馬あ12");
    }

    #[test]
    fn copay_is_derived_on_the_visit_date() {
        // It derives the ratio from the facts on the answer's date (R13), not from the card
        // ratio, which it keeps separately.
        let Ok(Answer::Confirmed {
            qualification: q, ..
        }) = classify(VALID_DEPENDANT.as_bytes())
        else {
            panic!("not confirmed");
        };
        assert_eq!((q.ratio_percent, q.card_ratio_percent), (Some(30), None));
        assert!(classify(VALID_DEPENDANT.as_bytes())
            .unwrap()
            .message_ja()
            .contains("負担割合 3割"));
        // A stray card ratio on a non-後期 record is ignored.
        let stray = VALID_DEPENDANT.replace(
            r#""InsurerName""#,
            r#""InsuredPartialContributionRatio": "010", "InsurerName""#,
        );
        let Ok(Answer::Confirmed {
            qualification: q, ..
        }) = classify(stray.as_bytes())
        else {
            panic!("not confirmed");
        };
        assert_eq!(
            (q.ratio_percent, q.card_ratio_percent),
            (Some(30), Some(10))
        );
        // A 70–74 patient with a valid 高齢受給者証 pays its ratio; without one, staff are told
        // to look at the certificate.
        let seventy = VALID_DEPENDANT
            .replace(r#""Birthdate": "19880907""#, r#""Birthdate": "19530907""#)
            .replace(
                r#""InsurerName""#,
                r#""ElderlyRecipientCertificateInfo": {"ElderlyRecipientValidStartDate": "20240801",
                   "ElderlyRecipientValidEndDate": "20250731", "ElderlyRecipientContributionRatio": "020"},
                   "InsurerName""#,
            );
        let a = classify(seventy.as_bytes()).unwrap();
        let Answer::Confirmed {
            qualification: q, ..
        } = &a
        else {
            panic!("not confirmed");
        };
        assert_eq!(q.ratio_percent, Some(20));
        assert!(a.message_ja().contains("負担割合 2割"));
        let expired = seventy.replace("20250731", "20250331");
        let a = classify(expired.as_bytes()).unwrap();
        let Answer::Confirmed {
            qualification: q, ..
        } = &a
        else {
            panic!("not confirmed");
        };
        assert_eq!(q.ratio_percent, None);
        assert!(
            a.message_ja().contains("高齢受給者証"),
            "{}",
            a.message_ja()
        );
        // A preschool child pays 2割 by birth date.
        let child =
            VALID_DEPENDANT.replace(r#""Birthdate": "19880907""#, r#""Birthdate": "20210907""#);
        let Ok(Answer::Confirmed {
            qualification: q, ..
        }) = classify(child.as_bytes())
        else {
            panic!("not confirmed");
        };
        assert_eq!(q.ratio_percent, Some(20));
        // The serialized shape keeps every old name and adds the card ratio.
        let j = serde_json::to_value(&q).unwrap();
        assert_eq!(j["ratio_percent"], 20);
        assert!(j.get("card_ratio_percent").is_some());
        let mut old = j.as_object().unwrap().clone();
        old.remove("card_ratio_percent");
        let back: Qualification = serde_json::from_value(Value::Object(old)).unwrap();
        assert_eq!(back.card_ratio_percent, None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = classify(&bytes);
        }

        #[test]
        fn mutated_samples_never_panic(cut in 0usize..4000, byte in any::<u8>()) {
            for sample in [VALID_DEPENDANT, LOST, NO_MATCH, MESSAGE_ERROR] {
                let mut b = sample.as_bytes().to_vec();
                let at = cut % b.len();
                b[at] = byte;
                let _ = classify(&b);
                let _ = classify(&b[..at]);
            }
        }
    }
}
