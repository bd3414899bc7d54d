//! Turns a result body into an [`Answer`] or a [`QueryError`], without any I/O.
//!
//! Order (wire.md): not parseable or a non-string value anywhere → `Malformed`; message level
//! (`SegmentOfResult` 9 with SIM-E0900, or 2 処理中 → `SystemError`; other 9 → `Rejected`); person
//! level (`ProcessingResultStatus` 2: card codes → their variants, anything else → `Rejected`);
//! then `QualificationValidity` per OQSCD006. A lookup is confirmed only when segment, status and
//! validity are all 1 and there is exactly one result (reference §2.2).
//!
//! Reasoned calls where the reference is silent:
//! * validity 1 with no result, or with several: the system contradicts itself, so nothing can
//!   be confirmed and nothing should be shown as fact → `Malformed` (transient: asked again later).
//! * validity 2/3 need exactly one result for the same reason; 5 needs at least one.
//! * validity 4 with results present: the code wins and the results are dropped.
//! * validity 6 (医療扶助 有効（未登録）) is outside health insurance → `Malformed`.
//! * unknown code values in coded fields (sex, reason of loss, ...) → `Malformed`: the reference
//!   lists them all, and a value we do not know means we are not reading what we think.

use chrono::NaiveDate;
use serde_json::Value;

use super::message::{RawLimit, RawQualification, ResultBody, ResultEnvelope};
use super::{
    Answer, LimitCertificate, Notice, PersonalFamily, Qualification, QueryError, ReasonOfLoss, Sex,
};
use crate::domain::InsurerNumber;

/// The synthetic code of an injected system error (reference §4).
const SYSTEM_ERROR_CODE: &str = "SIM-E0900";

/// Classifies a result body (UTF-8 JSON).
pub fn classify(body: &[u8]) -> Result<Answer, QueryError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| malformed(format!("not json: {e}")))?;
    check_all_strings(&value)?;
    let envelope: ResultEnvelope =
        serde_json::from_value(value).map_err(|e| malformed(format!("unexpected shape: {e}")))?;
    let msg = envelope.xml_msg;
    let header = msg.message_header;
    let error_code = header.error_code.unwrap_or_default();
    let error_message = header.error_message.unwrap_or_default();
    match header.segment_of_result.as_deref() {
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
        Some("9") if error_code == SYSTEM_ERROR_CODE => {
            return Err(QueryError::SystemError {
                code: error_code,
                message: error_message,
            })
        }
        Some("9") => {
            return Err(QueryError::Rejected {
                code: error_code,
                message: error_message,
            })
        }
        Some(other) => return Err(malformed(format!("unknown SegmentOfResult {other:?}"))),
        None => return Err(malformed("SegmentOfResult missing")),
    }
    let body = msg
        .message_body
        .ok_or_else(|| malformed("MessageBody missing on a successful segment"))?;
    classify_body(body)
}

fn classify_body(body: ResultBody) -> Result<Answer, QueryError> {
    let code = body.processing_result_code.filter(|c| !c.is_empty());
    let message = body.processing_result_message.unwrap_or_default();
    match body.processing_result_status.as_deref() {
        Some("1") => {}
        Some("2") => return Err(person_error(code.unwrap_or_default(), message)),
        Some(other) => {
            return Err(malformed(format!(
                "unknown ProcessingResultStatus {other:?}"
            )))
        }
        None => return Err(malformed("ProcessingResultStatus missing")),
    }
    // A code on a success is a warning (reference §2.2, §4).
    let notices: Vec<Notice> = code.map(|c| Notice::new(c, message)).into_iter().collect();
    let raws = body.result_list.unwrap_or_default();
    let validity = body
        .qualification_validity
        .ok_or_else(|| malformed("QualificationValidity missing"))?;
    match validity.as_str() {
        "1" => {
            let qualification = exactly_one(raws, "1")?;
            Ok(Answer::Confirmed {
                qualification,
                notices,
            })
        }
        "2" | "3" => {
            let qualification = exactly_one(raws, &validity)?;
            Ok(Answer::Invalid {
                qualification,
                newer_exists: validity == "3",
            })
        }
        "4" => Ok(Answer::NotFound { notices }),
        "5" => {
            if raws.is_empty() {
                return Err(malformed("validity 5 (複数該当) without candidates"));
            }
            let all = raws
                .into_iter()
                .map(|r| qualification(r.result_of_qualification_confirmation))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Answer::MultipleMatches(all))
        }
        other => Err(malformed(format!(
            "unsupported QualificationValidity {other:?}"
        ))),
    }
}

fn exactly_one(
    raws: Vec<super::message::ResultItem>,
    validity: &str,
) -> Result<Qualification, QueryError> {
    let count = raws.len();
    let mut it = raws.into_iter();
    match (it.next(), count) {
        (Some(item), 1) => qualification(item.result_of_qualification_confirmation),
        _ => Err(malformed(format!(
            "validity {validity} needs exactly one result, got {count}"
        ))),
    }
}

/// Maps a person-level error (ProcessingResultStatus 2) to the error staff can act on.
fn person_error(code: String, message: String) -> QueryError {
    match code.as_str() {
        "SIM-E1103" => QueryError::CertificateRevoked,
        "SIM-E1104" => QueryError::CertificateExpired,
        "SIM-E1105" => QueryError::PinRequired,
        "SIM-E1101" | "SIM-E1102" | "SIM-E1107" => QueryError::CardNotAccepted { code, message },
        _ => QueryError::Rejected { code, message },
    }
}

fn malformed(detail: impl Into<String>) -> QueryError {
    QueryError::Malformed {
        detail: detail.into(),
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
        .map(|v| map(&v).ok_or_else(|| malformed(format!("unknown {field} code {v:?}"))))
        .transpose()
}

/// Converts one `ResultOfQualificationConfirmation` into the daemon's type.
fn qualification(raw: RawQualification) -> Result<Qualification, QueryError> {
    let insurer_raw = required(&raw.insurer_number, "InsurerNumber")?;
    let insurer_number =
        InsurerNumber::parse(insurer_raw).map_err(|e| malformed(format!("InsurerNumber: {e}")))?;
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
    Ok(Qualification {
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
        ratio_percent: ratio(
            raw.insured_partial_contribution_ratio,
            "InsuredPartialContributionRatio",
        )?,
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
    })
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
        assert_eq!(q.ratio_percent, None);
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
            Err(QueryError::Rejected { code, message }) => {
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
        assert!(is_malformed(&classify(
            with_items("1", "5", &[]).as_bytes()
        )));
    }

    #[test]
    fn validity_one_needs_exactly_one_result() {
        // The system contradicts itself: nothing may be confirmed.
        assert!(is_malformed(&classify(
            with_items("1", "1", &[]).as_bytes()
        )));
        let no_list = envelope(r#""ProcessingResultStatus":"1","QualificationValidity":"1""#);
        assert!(is_malformed(&classify(no_list.as_bytes())));
        let two = with_items("1", "1", &[LATE_ELDERLY_ITEM, LATE_ELDERLY_ITEM]);
        assert!(is_malformed(&classify(two.as_bytes())));
        assert!(is_malformed(&classify(
            with_items("1", "2", &[]).as_bytes()
        )));
    }

    #[test]
    fn unknown_or_missing_codes_are_malformed() {
        for v in ["0", "6", "7", ""] {
            let b = with_items("1", v, &[LATE_ELDERLY_ITEM]);
            assert!(is_malformed(&classify(b.as_bytes())), "validity {v:?}");
        }
        let no_validity = envelope(r#""ProcessingResultStatus":"1""#);
        assert!(is_malformed(&classify(no_validity.as_bytes())));
        let no_status = envelope(r#""QualificationValidity":"4""#);
        assert!(is_malformed(&classify(no_status.as_bytes())));
        let bad_status = envelope(r#""ProcessingResultStatus":"3","QualificationValidity":"4""#);
        assert!(is_malformed(&classify(bad_status.as_bytes())));
        let bad_segment =
            NO_MATCH.replace(r#""SegmentOfResult": "1""#, r#""SegmentOfResult": "5""#);
        assert!(is_malformed(&classify(bad_segment.as_bytes())));
        let no_segment = r#"{"XmlMsg":{"MessageHeader":{},"MessageBody":{}}}"#;
        assert!(is_malformed(&classify(no_segment.as_bytes())));
        let no_body = r#"{"XmlMsg":{"MessageHeader":{"SegmentOfResult":"1"}}}"#;
        assert!(is_malformed(&classify(no_body.as_bytes())));
        let bad_sex = LATE_ELDERLY_ITEM.replace(r#""Sex1": "2""#, r#""Sex1": "9""#);
        assert!(is_malformed(&classify(
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
        for code in ["SIM-E0001", "SIM-E0002", "SIM-E0003"] {
            let b = format!(
                r#"{{"XmlMsg":{{"MessageHeader":{{"SegmentOfResult":"9","ErrorCode":"{code}","ErrorMessage":"m"}}}}}}"#
            );
            let e = classify(b.as_bytes()).unwrap_err();
            assert!(matches!(&e, QueryError::Rejected { code: c, .. } if c == code));
            assert!(!e.is_transient());
        }
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
