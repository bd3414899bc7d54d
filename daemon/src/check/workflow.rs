//! The reception check workflow (受付の資格確認): card, query, capture, record — one function
//! that the local API and the CLI's direct mode both call, so a check is decided and recorded
//! the same way whoever started it.
//!
//! The decision in one place:
//! - the qualification system answered: the answer is recorded (a capture with no reason and
//!   the answer), and shown;
//! - it did not answer (transient error, or known offline): the check is captured for
//!   事後確認 — durably, before the operator is told — with what to do now;
//! - it refused the request or the card: shown, and recorded as a capture without answer
//!   only when there is something to confirm later (never: the refusal is final);
//! - the card failed: shown; nothing is recorded.

use chrono::{DateTime, FixedOffset};

use super::capture::{captured, copay_of, instructions_ja, VisitContext};
use super::{CheckError, CheckOutcome};
use crate::card::{CardError, PinEntry, Transport};
use crate::domain::IdentityMethod;
use crate::ledger::event::{CheckEvent, KnownInsurance, Via};
use crate::ledger::{Ledger, LedgerError};
use crate::oqs::{Answer, OqsClient, QueryError};
use crate::rules::copay::CopayRatio;
use crate::rules::settings::RuleSettings;
use crate::view::{CertificateView, CheckReport, EarlierView, NoticeView, ReportStatus};

/// What the workflow works with.
#[derive(Debug, Clone, Copy)]
pub struct Reception<'a> {
    /// Where checks are recorded; `None` only for the CLI run without a data directory (the
    /// check is then shown, never captured).
    pub ledger: Option<&'a Ledger>,
    /// The qualification system, or `None` when the line is known to be down (capture at
    /// once instead of holding the patient for the whole time budget).
    pub client: Option<&'a OqsClient>,
    /// This facility's 医療機関コード.
    pub institution_code: &'a str,
    /// The clinic's rule settings (the dates the card and the documents are judged by).
    pub settings: &'a RuleSettings,
}

/// One check as reception asks for it.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    /// 目視 or 暗証番号.
    pub method: IdentityMethod,
    /// The visit.
    pub visit: VisitContext,
    /// The check's id when the caller chose it (an idempotency key: the same request made
    /// again records nothing twice); `None` for a new one.
    pub check_id: Option<String>,
}

/// Runs one check end to end and returns what reception is shown. `Err` only when a check
/// that must be captured could not be written: the operator must then be told it was *not*
/// saved.
pub async fn perform<T: Transport + 'static>(
    reception: Reception<'_>,
    transport: T,
    request: &CheckRequest,
    pin_entry: Box<dyn PinEntry + Send>,
    now: DateTime<FixedOffset>,
) -> Result<CheckReport, LedgerError> {
    let visit_date = request.visit.visit_date;
    let outcome = super::run_with_settings(
        transport,
        request.method,
        visit_date,
        now,
        reception.client,
        reception.institution_code,
        pin_entry,
        reception.settings.clone(),
    )
    .await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return Ok(card_failure(request, &e)),
    };
    let mut report = report_of(&outcome, request, reception.settings);
    let Some(ledger) = reception.ledger else {
        return Ok(report);
    };
    let captures = matches!(&outcome.answer, Err(e) if e.is_transient());
    if outcome.answer.is_err() && !captures {
        // A final refusal: nothing to confirm later.
        return Ok(report);
    }
    let id = request
        .check_id
        .clone()
        .unwrap_or_else(crate::ledger::new_check_id);
    let reason = match &outcome.answer {
        Err(e) => Some(e.kind()),
        Ok(_) => None,
    };
    let mut visit = request.visit.clone();
    if captures && visit.last_known.is_none() {
        visit.last_known = earlier_data(ledger, &outcome, &visit, &id).await;
        report.earlier = visit.last_known.as_ref().map(EarlierView::of);
    }
    let capture = captured(&outcome, &visit, reason, now);
    if let Err(e) = ledger
        .record(&id, visit_date, &CheckEvent::Captured(capture.clone()))
        .await
    {
        if outcome.answer.is_err() {
            // A capture that is not saved must not be acknowledged.
            return Err(e);
        }
        // Answered online: the answer stands on screen; only the record is missing.
        tracing::error!(error = %e, "an answered check could not be recorded");
        report.instructions_ja.push(format!(
            "この確認は記録できませんでした（{}）。",
            e.message_ja()
        ));
        return Ok(report);
    }
    if let Ok(answer) = &outcome.answer {
        let event = crate::reconcile::answered(Via::Card, answer, now);
        if let Err(e) = ledger
            .record(&id, visit_date, &CheckEvent::Answered(event))
            .await
        {
            // The answer is on screen and the check is recorded; the reconciler will ask
            // again for the missing answer. Not a failure of this check.
            tracing::warn!(check = %id, error = %e, "answer not recorded; it will be asked again");
        }
    } else {
        report.status = ReportStatus::Captured;
        report.copay_tenths = copay_of(&capture).and_then(|i| i.ratio).map(|r| r.tenths());
        report.instructions_ja = instructions_ja(&capture);
        report
            .instructions_ja
            .extend(report.notices.iter().map(|n| n.message_ja.clone()));
        report.message_ja = format!("オフライン受付（確認ID: {id}）");
    }
    report.check_id = Some(id);
    Ok(report)
}

/// What the clinic last confirmed of the card's holder (前回確認情報), for a check about to
/// be captured. A failed lookup is logged and costs only the history: the capture goes on.
async fn earlier_data(
    ledger: &Ledger,
    outcome: &CheckOutcome,
    visit: &VisitContext,
    id: &str,
) -> Option<KnownInsurance> {
    let key = ledger
        .history_key()
        .card(&outcome.evidence.certificate_der)?;
    let ledger = ledger.clone();
    let (date, id) = (visit.visit_date, id.to_string());
    match tokio::task::spawn_blocking(move || ledger.known_patient(&[key], date, Some(&id))).await {
        Ok(Ok(known)) => known,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "patient history could not be read; captured without it");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "patient history lookup failed; captured without it");
            None
        }
    }
}

/// The report of a check already recorded: what a request repeated with the same check id
/// is answered with (the card is not read again). The qualification's details are not kept
/// in the ledger, only its numbers; `tsunagi show` gives the rest.
pub fn recorded_report(c: &crate::ledger::fold::CheckState) -> CheckReport {
    use crate::ledger::event::AnswerStatus;
    let status = match c.best_answer().map(|a| a.status) {
        Some(AnswerStatus::Confirmed) => ReportStatus::Confirmed,
        Some(AnswerStatus::Invalid) => ReportStatus::Invalid,
        Some(AnswerStatus::NotFound) => ReportStatus::NotFound,
        Some(AnswerStatus::Multiple) => ReportStatus::Multiple,
        Some(AnswerStatus::CardRefused) => ReportStatus::Refused,
        None if c.was_captured_offline() => ReportStatus::Captured,
        None => ReportStatus::Error,
    };
    CheckReport {
        status,
        check_id: Some(c.id.clone()),
        method: c
            .captured
            .card
            .as_ref()
            .map_or(crate::domain::IdentityMethod::Visual, |card| card.method),
        visit_date: c.visit_date(),
        certificate: None,
        apdus: 0,
        qualification: None,
        candidates: Vec::new(),
        newer_exists: c.best_answer().is_some_and(|a| a.newer_exists),
        notices: Vec::new(),
        error: None,
        transient: false,
        pin_tries_left: None,
        message_ja: format!(
            "この確認は記録済みです（確認ID: {}、{}）。",
            c.id,
            crate::view::CheckPhase::from(c.phase()).label_ja()
        ),
        instructions_ja: if status == ReportStatus::Captured {
            instructions_ja(&c.captured)
        } else {
            Vec::new()
        },
        copay_tenths: match status {
            ReportStatus::Captured => copay_of(&c.captured)
                .and_then(|i| i.ratio)
                .map(|r| r.tenths()),
            _ => c
                .best_answer()
                .filter(|a| a.status == AnswerStatus::Confirmed)
                .and_then(|a| a.ratio_percent)
                .and_then(CopayRatio::from_percent)
                .map(|r| r.tenths()),
        },
        earlier: c.captured.last_known.as_ref().map(EarlierView::of),
        facility_output: None,
    }
}

/// The report of a check that got as far as the qualification system.
fn report_of(
    outcome: &CheckOutcome,
    request: &CheckRequest,
    settings: &RuleSettings,
) -> CheckReport {
    let visit = request.visit.visit_date;
    let mut r = CheckReport {
        status: ReportStatus::Error,
        check_id: None,
        method: outcome.evidence.method,
        visit_date: request.visit.visit_date,
        certificate: Some(CertificateView {
            serial: outcome.certificate.serial_hex.clone(),
            not_after: outcome.certificate.not_after,
        }),
        apdus: outcome.timings.apdus,
        qualification: None,
        candidates: Vec::new(),
        newer_exists: false,
        notices: Vec::new(),
        error: None,
        transient: false,
        pin_tries_left: None,
        message_ja: String::new(),
        instructions_ja: Vec::new(),
        copay_tenths: None,
        earlier: request.visit.last_known.as_ref().map(EarlierView::of),
        facility_output: None,
    };
    match &outcome.answer {
        Ok(answer) => {
            r.message_ja = answer.message_ja_on(visit, settings);
            let parts = AnswerParts::of(answer);
            r.status = parts.status;
            r.copay_tenths = parts.copay_tenths;
            r.qualification = parts.qualification;
            r.candidates = parts.candidates;
            r.newer_exists = parts.newer_exists;
            r.notices = parts.notices;
        }
        Err(e) => {
            r.status = query_error_status(e);
            r.error = Some(e.kind().to_string());
            r.transient = e.is_transient();
            r.message_ja = e.message_ja_on(visit, settings);
        }
    }
    // The daemon's own judgement of the certificate on the visit date (R3): in its grace
    // period, the patient is told to renew.
    if let Some((code, message_ja)) = outcome.certificate_notice_ja() {
        if !r.notices.iter().any(|n| n.code == code) {
            r.notices.push(NoticeView {
                code: code.to_string(),
                message_ja,
            });
        }
    }
    r
}

/// What an answer puts in a report (the parts every report of an answer shares).
#[derive(Debug)]
pub(crate) struct AnswerParts {
    pub status: ReportStatus,
    pub qualification: Option<crate::oqs::Qualification>,
    pub candidates: Vec<crate::oqs::Qualification>,
    pub newer_exists: bool,
    pub notices: Vec<NoticeView>,
    pub copay_tenths: Option<u8>,
}

impl AnswerParts {
    pub(crate) fn of(answer: &Answer) -> Self {
        let notices = |n: &[crate::oqs::Notice]| -> Vec<NoticeView> {
            n.iter()
                .map(|n| NoticeView {
                    code: n.code().to_string(),
                    message_ja: n.message_ja(),
                })
                .collect()
        };
        let mut parts = Self {
            status: ReportStatus::Error,
            qualification: None,
            candidates: Vec::new(),
            newer_exists: false,
            notices: Vec::new(),
            copay_tenths: None,
        };
        match answer {
            Answer::Confirmed {
                qualification,
                notices: n,
            } => {
                parts.status = ReportStatus::Confirmed;
                parts.copay_tenths = qualification
                    .ratio_percent
                    .and_then(CopayRatio::from_percent)
                    .map(|r| r.tenths());
                parts.qualification = Some(qualification.clone());
                parts.notices = notices(n);
            }
            Answer::Invalid {
                qualification,
                newer_exists,
            } => {
                parts.status = ReportStatus::Invalid;
                parts.qualification = Some(qualification.clone());
                parts.newer_exists = *newer_exists;
            }
            Answer::NotFound { notices: n } => {
                parts.status = ReportStatus::NotFound;
                parts.notices = notices(n);
            }
            Answer::MultipleMatches(all) => {
                parts.status = ReportStatus::Multiple;
                parts.candidates = all.clone();
            }
        }
        parts
    }
}

/// A query error that the card or the patient caused is a refusal (not confirmed); the rest
/// are failures of the check itself.
pub(crate) fn query_error_status(e: &QueryError) -> ReportStatus {
    match e {
        QueryError::CertificateExpired
        | QueryError::CertificateRevoked
        | QueryError::PinRequired
        | QueryError::CardNotAccepted { .. } => ReportStatus::Refused,
        _ => ReportStatus::Error,
    }
}

/// The report of a check that ended at the card.
pub fn card_failure(request: &CheckRequest, error: &CheckError) -> CheckReport {
    let (name, refused) = match error {
        CheckError::Card(e) => (card_error_name(e), card_refused(e)),
        CheckError::Task(_) => ("internal", false),
    };
    CheckReport {
        status: if refused {
            ReportStatus::Refused
        } else {
            ReportStatus::Error
        },
        check_id: None,
        method: request.method,
        visit_date: request.visit.visit_date,
        certificate: None,
        apdus: 0,
        qualification: None,
        candidates: Vec::new(),
        newer_exists: false,
        notices: Vec::new(),
        error: Some(name.to_string()),
        transient: false,
        pin_tries_left: match error {
            CheckError::Card(CardError::WrongPin { tries_left }) => Some(*tries_left),
            _ => None,
        },
        message_ja: error.message_ja(),
        instructions_ja: Vec::new(),
        copay_tenths: None,
        earlier: None,
        facility_output: None,
    }
}

/// Card errors that end the check as "not confirmed" rather than as a failure to retry.
fn card_refused(e: &CardError) -> bool {
    matches!(
        e,
        CardError::WrongPin { .. }
            | CardError::PinBlocked
            | CardError::LastTryNotConfirmed
            | CardError::Cancelled
            | CardError::NotMyNumberCard
            | CardError::Refused { .. }
    )
}

/// Stable kebab-case name of a card error.
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
        CardError::Refused { reason } => reason.name(),
    }
}
