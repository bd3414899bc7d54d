//! How a check's outcome is shown: Japanese text for the operator, JSON for programs.
//!
//! The personal data printed here is the point of a check (the operator compares it with the
//! patient); it is printed to the operator's own output only, never logged.

use std::io::{self, Write};

use chrono::NaiveDate;
use serde_json::{json, Value};

use crate::card::CardError;
use crate::check::{CheckError, CheckOutcome};
use crate::oqs::{Answer, Qualification, QueryError};

/// Exit code of a finished check: 0 confirmed, 1 not confirmed, 2 error (the answer could not
/// be had and the check must be repeated or captured).
pub fn exit_code(outcome: &CheckOutcome) -> i32 {
    match &outcome.answer {
        Ok(Answer::Confirmed { .. }) => 0,
        Ok(_) => 1,
        Err(e) if e.is_transient() => 2,
        Err(QueryError::Rejected { .. } | QueryError::Unauthorized) => 2,
        Err(_) => 1,
    }
}

/// Exit code of a check that ended at the card.
pub fn error_exit_code(error: &CheckError) -> i32 {
    match error {
        CheckError::Card(
            CardError::WrongPin { .. }
            | CardError::PinBlocked
            | CardError::LastTryNotConfirmed
            | CardError::Cancelled
            | CardError::NotMyNumberCard,
        ) => 1,
        _ => 2,
    }
}

/// Stable kebab-case name of a card error, for `--json`.
pub fn card_error_name(error: &CardError) -> &'static str {
    match error {
        CardError::ServiceNotRunning => "service-not-running",
        CardError::NoReaders => "no-readers",
        CardError::ReaderNotFound { .. } => "reader-not-found",
        CardError::NoCardInTime => "no-card",
        CardError::Removed => "card-removed",
        CardError::NotMyNumberCard => "not-my-number-card",
        CardError::BadCertificate { .. } => "bad-certificate",
        CardError::TruncatedResponse => "truncated-response",
        CardError::WrongPin { .. } => "wrong-pin",
        CardError::PinBlocked => "pin-blocked",
        CardError::LastTryNotConfirmed => "last-try-not-confirmed",
        CardError::Cancelled => "cancelled",
        CardError::PinNotVerified => "pin-not-verified",
        CardError::SignatureMismatch => "signature-mismatch",
        CardError::Unexpected { .. } => "unexpected-status",
        CardError::Pcsc(_) => "pcsc",
    }
}

/// The outcome as one JSON document.
pub fn outcome_json(outcome: &CheckOutcome, visit_date: NaiveDate) -> Value {
    let mut v = json!({
        "method": outcome.evidence.method.as_str(),
        "visit_date": visit_date.to_string(),
        "certificate": {
            "serial": outcome.certificate.serial_hex,
            "not_after": outcome.certificate.not_after.to_string(),
        },
        "apdus": outcome.timings.apdus,
    });
    let fields = match &outcome.answer {
        Ok(answer) => {
            let mut f = json!({
                "status": answer_status(answer),
                "message_ja": answer.message_ja(),
            });
            match answer {
                Answer::Confirmed {
                    qualification,
                    notices,
                } => {
                    f["qualification"] = json!(qualification);
                    f["notices"] = notices_json(notices);
                }
                Answer::Invalid {
                    qualification,
                    newer_exists,
                } => {
                    f["qualification"] = json!(qualification);
                    f["newer_exists"] = json!(newer_exists);
                }
                Answer::NotFound { notices } => f["notices"] = notices_json(notices),
                Answer::MultipleMatches(all) => f["candidates"] = json!(all),
            }
            f
        }
        Err(e) => json!({
            "status": "error",
            "error": e.kind(),
            "transient": e.is_transient(),
            "message_ja": e.message_ja(),
        }),
    };
    if let (Value::Object(v), Value::Object(f)) = (&mut v, fields) {
        v.extend(f);
    }
    v
}

/// A check that ended at the card, as JSON.
pub fn error_json(error: &CheckError) -> Value {
    let name = match error {
        CheckError::Card(e) => card_error_name(e),
        CheckError::Task(_) => "internal",
    };
    let mut v = json!({
        "status": "error",
        "error": name,
        "transient": false,
        "message_ja": error.message_ja(),
    });
    if let CheckError::Card(CardError::WrongPin { tries_left }) = error {
        v["pin_tries_left"] = json!(tries_left);
    }
    v
}

fn answer_status(answer: &Answer) -> &'static str {
    match answer {
        Answer::Confirmed { .. } => "confirmed",
        Answer::Invalid { .. } => "invalid",
        Answer::NotFound { .. } => "not-found",
        Answer::MultipleMatches(_) => "multiple",
    }
}

fn notices_json(notices: &[crate::oqs::Notice]) -> Value {
    Value::Array(
        notices
            .iter()
            .map(|n| json!({ "code": n.code(), "message_ja": n.message_ja() }))
            .collect(),
    )
}

/// The outcome as Japanese text for the operator.
pub fn outcome_text(
    outcome: &CheckOutcome,
    visit_date: NaiveDate,
    out: &mut dyn Write,
) -> io::Result<()> {
    let headline = match &outcome.answer {
        Ok(Answer::Confirmed { .. }) => "資格確認結果: 有効",
        Ok(Answer::Invalid {
            newer_exists: true, ..
        }) => "資格確認結果: 資格（無効）・新しい資格あり",
        Ok(Answer::Invalid { .. }) => "資格確認結果: 資格（無効）",
        Ok(Answer::NotFound { .. }) => "資格確認結果: 資格情報なし",
        Ok(Answer::MultipleMatches(_)) => "資格確認結果: 複数の資格が該当",
        Err(e) if e.is_transient() => "資格確認結果: 照会できませんでした",
        Err(_) => "資格確認結果: 確認できません",
    };
    writeln!(out, "{headline}")?;
    writeln!(
        out,
        "  受診日: {}　本人確認: {}",
        visit_date.format("%Y年%-m月%-d日"),
        outcome.evidence.method.label_ja()
    )?;
    match &outcome.answer {
        Ok(answer) => {
            match answer {
                Answer::Confirmed { qualification, .. } | Answer::Invalid { qualification, .. } => {
                    qualification_text(qualification, out)?
                }
                Answer::MultipleMatches(all) => {
                    for (i, q) in all.iter().enumerate() {
                        writeln!(out, "  ― 候補{} ―", i + 1)?;
                        qualification_text(q, out)?;
                    }
                }
                Answer::NotFound { .. } => {}
            }
            writeln!(out, "{}", answer.message_ja())?;
            if let Answer::Confirmed { notices, .. } | Answer::NotFound { notices } = answer {
                for n in notices {
                    writeln!(out, "※ {}", n.message_ja())?;
                }
            }
        }
        Err(e) => writeln!(out, "{}", e.message_ja())?,
    }
    Ok(())
}

fn qualification_text(q: &Qualification, out: &mut dyn Write) -> io::Result<()> {
    for (label, value) in q.display_lines_ja() {
        writeln!(out, "  {label}: {value}")?;
    }
    Ok(())
}
