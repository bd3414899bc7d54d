//! 事後確認 (after-the-fact confirmation): drains captured checks once the qualification
//! system answers again, asks as of each visit date, and decides the claim basis in the
//! ministry's order (R15; R17 for 柔整・あはき).
//!
//! Idempotent by construction: answers and decisions are events, the fold keeps the latest
//! decision in store order until the claim is made, and a check is re-read from the ledger
//! just before it is decided (holding [`crate::ledger::Ledger::deciding`], so a staff
//! decision in this process is never interleaved), so two reconcilers (or two devices)
//! converge on one result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, FixedOffset};
use rand::Rng;
use tokio::sync::Semaphore;

use crate::ledger::event::{
    AnswerStatus, Answered, CheckEvent, ElderlyRecord, NumbersRecord, Resolved, Via,
};
use crate::ledger::fold::{CheckState, FINAL_ERRORS};
use crate::ledger::{Ledger, LedgerError};
use crate::oqs::{Answer, CardQuery, InsuranceQuery, OqsClient, QueryError};
use crate::rules::claim::{claim_basis, ClaimBasis, ClaimFacts, InsuranceNumbers, NumbersSource};
use crate::rules::settings::ClaimFieldLengths;

/// How the reconciler behaves.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// Checks asked about at the same time.
    pub concurrency: usize,
    /// First retry delay after a failure; doubles per failure, with jitter.
    pub base_backoff: Duration,
    /// The longest retry delay.
    pub max_backoff: Duration,
    /// Field lengths of the claim (7-fill).
    pub field_lengths: ClaimFieldLengths,
    /// The receipt software validates the insurer number's check digit (`77777779`).
    pub software_checks_digit: bool,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            concurrency: 8,
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
            field_lengths: ClaimFieldLengths::default(),
            software_checks_digit: false,
        }
    }
}

/// Days before the claim deadline at which a 資格（無効）・新しい資格あり check with no newer
/// numbers is claimed with the old qualification after all.
pub const NEW_QUALIFICATION_WAIT_END: u64 = 3;

/// What one pass did.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
pub struct PassReport {
    /// Open checks looked at.
    pub examined: usize,
    /// Checks whose claim basis was decided in this pass.
    pub resolved: usize,
    /// Checks that got an answer but still need staff (several matches, no 申立書, 柔整・あはき).
    pub needs_staff: usize,
    /// Checks whose query failed (retried later).
    pub failed: usize,
    /// Checks skipped because their retry time has not come.
    pub backing_off: usize,
    /// Checks not asked about because the daemon was stopping.
    pub left_for_later: usize,
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    next: Instant,
}

/// The reconciler.
#[derive(Debug, Clone)]
pub struct Reconciler {
    ledger: Ledger,
    client: OqsClient,
    config: ReconcileConfig,
    backoff: Arc<Mutex<HashMap<String, Backoff>>>,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
}

enum One {
    Resolved,
    NeedsStaff,
    Failed,
    Skipped,
    /// Not asked about: the daemon is stopping.
    Stopped,
}

fn numbers_of(q: &crate::oqs::Qualification) -> NumbersRecord {
    NumbersRecord {
        insurer: q.insurer_number.clone(),
        symbol: q.symbol.clone(),
        number: q.number.clone(),
        branch: q.branch.clone(),
    }
}

/// The answer as a ledger event.
pub fn answered(via: Via, answer: &Answer, now: DateTime<FixedOffset>) -> Answered {
    let (status, q, newer_exists) = match answer {
        Answer::Confirmed { qualification, .. } => {
            (AnswerStatus::Confirmed, Some(qualification), false)
        }
        Answer::Invalid {
            qualification,
            newer_exists,
        } => (AnswerStatus::Invalid, Some(qualification), *newer_exists),
        Answer::NotFound { .. } => (AnswerStatus::NotFound, None, false),
        Answer::MultipleMatches(_) => (AnswerStatus::Multiple, None, false),
    };
    Answered {
        via,
        status,
        numbers: q.map(numbers_of),
        newer_exists,
        birth_date: q.map(|q| q.birth_date),
        ratio_percent: q.and_then(|q| q.ratio_percent),
        insurer_name: q.and_then(|q| q.insurer_name.clone()),
        elderly: q
            .filter(|q| q.elderly_ratio_percent.is_some() || q.elderly_valid_until.is_some())
            .map(|q| ElderlyRecord {
                ratio_percent: q.elderly_ratio_percent,
                valid_from: q.elderly_valid_from,
                valid_until: q.elderly_valid_until,
            }),
        limit_bracket: q
            .and_then(|q| q.limit.as_ref())
            .and_then(|l| l.bracket.clone()),
        answered_at: now,
    }
}

/// Whether a query error means the card itself will never be accepted (so ask by numbers).
fn card_refused(e: &QueryError) -> bool {
    matches!(
        e,
        QueryError::CertificateExpired
            | QueryError::CertificateRevoked
            | QueryError::PinRequired
            | QueryError::CardNotAccepted { .. }
    )
}

fn to_numbers(n: &NumbersRecord) -> Option<InsuranceNumbers> {
    InsuranceNumbers::new(
        n.insurer.as_wire(),
        n.symbol.as_deref(),
        &n.number,
        n.branch.as_deref(),
    )
    .ok()
}

/// The claim basis from what the check knows (pure).
pub fn decide(
    check: &CheckState,
    config: &ReconcileConfig,
) -> Option<Result<ClaimBasis, crate::rules::claim::ClaimError>> {
    let best = check.best_answer();
    if best.is_some_and(|a| a.status == AnswerStatus::Multiple) {
        return None;
    }
    // R15.1: the current numbers — confirmed by the system, else reported by the patient
    // after the visit (a later report is a source of current numbers in its own right).
    let current = best
        .filter(|a| a.status == AnswerStatus::Confirmed)
        .and_then(|a| a.numbers.as_ref())
        .and_then(to_numbers)
        .map(|n| (n, NumbersSource::LaterReport))
        .or_else(|| {
            let r = check.reported.as_ref()?;
            to_numbers(&r.numbers).map(|n| (n, NumbersSource::Patient))
        });
    // Past numbers: the 資格（無効） answer, else the clinic's own records of the patient.
    let past = best
        .filter(|a| a.status == AnswerStatus::Invalid)
        .and_then(|a| a.numbers.as_ref())
        .or(check.captured.last_known.as_ref().map(|k| &k.numbers))
        .or(check
            .captured
            .document
            .as_ref()
            .and_then(|d| d.numbers.as_ref()))
        .and_then(to_numbers);
    let facts = ClaimFacts {
        current,
        past,
        moushitatesho: check.declaration.clone(),
        software_checks_digit: config.software_checks_digit,
    };
    Some(claim_basis(
        &facts,
        check.captured.facility,
        &config.field_lengths,
    ))
}

/// The decision as a ledger event.
pub fn resolved(basis: &ClaimBasis, now: DateTime<FixedOffset>) -> Option<Resolved> {
    let from_numbers = |kind: &str, n: &InsuranceNumbers| Resolved {
        basis: kind.into(),
        insurer_number: n.insurer().digits().to_string(),
        symbol: n.kigo().map(str::to_string),
        number: n.bango().to_string(),
        branch: n.edaban().map(str::to_string),
        tekiyo: None,
        payer: None,
        summary_ja: basis.summary_ja(),
        at: now,
        replaces_because: None,
    };
    match basis {
        ClaimBasis::Current(n, _) => Some(from_numbers("current", n)),
        ClaimBasis::Old(n) => Some(from_numbers("old", n)),
        ClaimBasis::Fushou(f) => Some(Resolved {
            basis: "fushou".into(),
            insurer_number: f.insurer_number.clone(),
            symbol: Some(f.kigo.clone()),
            number: f.bango.clone(),
            branch: None,
            tekiyo: Some(f.tekiyo.clone()),
            payer: Some(f.payer.label_ja().into()),
            summary_ja: basis.summary_ja(),
            at: now,
            replaces_because: None,
        }),
        ClaimBasis::PendingConfirmation => None,
    }
}

impl Reconciler {
    /// A reconciler over `ledger`, asking through `client`.
    pub fn new(ledger: Ledger, client: OqsClient, config: ReconcileConfig) -> Self {
        Self {
            ledger,
            client,
            config,
            backoff: Arc::default(),
            stop: None,
        }
    }

    /// Ends passes early when `stop` turns true (the daemon shutting down): checks already
    /// being asked about are finished and recorded; the rest wait for the next start.
    pub fn with_stop(mut self, stop: tokio::sync::watch::Receiver<bool>) -> Self {
        self.stop = Some(stop);
        self
    }

    fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| *s.borrow())
    }

    /// One pass over every open check. `force` ignores retry delays (`tsunagi reconcile --now`).
    pub async fn run_pass(
        &self,
        now: DateTime<FixedOffset>,
        force: bool,
    ) -> Result<PassReport, LedgerError> {
        let ledger = self.ledger.clone();
        let open = tokio::task::spawn_blocking(move || ledger.open_checks())
            .await
            .map_err(|e| LedgerError::Encode(e.to_string()))??;
        self.run_pass_over(open, now, force).await
    }

    /// One pass over `open`, checks the caller already read from the ledger (tsunagid reads
    /// every month once per pass for its counts and hands the open ones here).
    pub async fn run_pass_over(
        &self,
        open: Vec<CheckState>,
        now: DateTime<FixedOffset>,
        force: bool,
    ) -> Result<PassReport, LedgerError> {
        let mut report = PassReport {
            examined: open.len(),
            ..PassReport::default()
        };
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for check in open {
            if !force && self.waiting(&check.id) {
                report.backing_off += 1;
                continue;
            }
            let this = self.clone();
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                if this.stopping() {
                    return Ok(One::Stopped);
                }
                this.one(check, now).await
            });
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(One::Resolved)) => report.resolved += 1,
                Ok(Ok(One::NeedsStaff)) => report.needs_staff += 1,
                Ok(Ok(One::Failed)) => report.failed += 1,
                Ok(Ok(One::Skipped)) => {}
                Ok(Ok(One::Stopped)) => report.left_for_later += 1,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "reconciling a check failed");
                    report.failed += 1;
                }
                Err(e) => {
                    tracing::error!(error = %e, "reconcile task died");
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }

    fn waiting(&self, id: &str) -> bool {
        let map = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).is_some_and(|b| b.next > Instant::now())
    }

    fn failed(&self, id: &str) {
        let mut map = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(id.to_string()).or_insert(Backoff {
            failures: 0,
            next: Instant::now(),
        });
        entry.failures += 1;
        let exp = self
            .config
            .base_backoff
            .saturating_mul(1 << entry.failures.min(16))
            .min(self.config.max_backoff);
        // Full jitter: spread retries so a returning system is not hit by every check at once.
        let delay = exp.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
        entry.next = Instant::now() + delay;
    }

    async fn record(&self, check: &CheckState, event: CheckEvent) -> Result<(), LedgerError> {
        self.ledger
            .record(&check.id, check.visit_date(), &event)
            .await
    }

    /// Records a failed attempt. A transient error is retried after a back-off; a final one
    /// ([`FINAL_ERRORS`]) is not asked again, and the check waits for staff.
    async fn fail(
        &self,
        check: &CheckState,
        e: &QueryError,
        now: DateTime<FixedOffset>,
    ) -> Result<One, LedgerError> {
        let final_error = FINAL_ERRORS.contains(&e.kind());
        if final_error {
            tracing::warn!(check = %check.id, error = e.kind(), "final query error; left to staff");
        } else {
            tracing::info!(check = %check.id, error = e.kind(), "query failed; will retry");
            self.failed(&check.id);
        }
        self.record(
            check,
            CheckEvent::AttemptFailed {
                error: e.kind().into(),
                at: now,
            },
        )
        .await?;
        Ok(if final_error {
            One::NeedsStaff
        } else {
            One::Failed
        })
    }

    async fn one(
        &self,
        mut check: CheckState,
        now: DateTime<FixedOffset>,
    ) -> Result<One, LedgerError> {
        let has = |c: &CheckState, via: Via| c.answers.iter().any(|a| a.via == via);
        // An answer the client cannot trust (unknown code value, inconsistent) is not asked
        // for again: staff confirm another way, or report numbers, which re-opens it.
        if check.gave_up() {
            return Ok(One::NeedsStaff);
        }
        // 1. By card, as of the visit date.
        if let Some(card) = check.captured.card.clone() {
            if !has(&check, Via::Card) {
                let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).ok();
                let query = CardQuery {
                    visit_date: check.visit_date(),
                    method: card.method,
                    certificate_der: b64(&card.certificate).unwrap_or_default(),
                    challenge: card.challenge.as_deref().and_then(b64),
                    signature: card.signature.as_deref().and_then(b64),
                    file_id: format!("tsunagi-{}", check.id),
                };
                let event = match self.client.query_by_card(&query).await {
                    Ok(answer) => answered(Via::Card, &answer, now),
                    Err(e) if card_refused(&e) => Answered {
                        via: Via::Card,
                        status: AnswerStatus::CardRefused,
                        numbers: None,
                        newer_exists: false,
                        birth_date: None,
                        ratio_percent: None,
                        insurer_name: None,
                        elderly: None,
                        limit_bracket: None,
                        answered_at: now,
                    },
                    Err(e) => return self.fail(&check, &e, now).await,
                };
                self.record(&check, CheckEvent::Answered(event.clone()))
                    .await?;
                check.answers.push(event);
            }
        }
        // 2. By the numbers the clinic knows, when the card did not confirm (R16, R19).
        let confirmed = check
            .best_answer()
            .is_some_and(|a| matches!(a.status, AnswerStatus::Confirmed | AnswerStatus::Invalid));
        let known = check
            .known_numbers()
            .map(|(numbers, birth)| (numbers.clone(), birth));
        // Numbers reported after the last answer by numbers are asked about again.
        let asked_since_report = match &check.reported {
            Some(r) => check
                .answers
                .iter()
                .any(|a| a.via == Via::Insurance && a.answered_at >= r.at),
            None => has(&check, Via::Insurance),
        };
        if !confirmed && !asked_since_report {
            if let Some((numbers, Some(birth_date))) = known {
                let query = InsuranceQuery {
                    visit_date: check.visit_date(),
                    insurer: numbers.insurer.clone(),
                    symbol: numbers.symbol.clone(),
                    number: numbers.number.clone(),
                    branch: numbers.branch.clone(),
                    birth_date,
                    limit_consent: false,
                    file_id: format!("tsunagi-{}-n", check.id),
                };
                match self.client.query_by_insurance(&query).await {
                    Ok(answer) => {
                        let event = answered(Via::Insurance, &answer, now);
                        self.record(&check, CheckEvent::Answered(event.clone()))
                            .await?;
                        check.answers.push(event);
                    }
                    Err(e) => return self.fail(&check, &e, now).await,
                }
            }
        }
        // 3. Decide, on the freshest state (another device may have decided meanwhile),
        // with no staff decision about this check interleaved (no query from here on).
        let _deciding = self.ledger.deciding(&check.id).await;
        let ledger = self.ledger.clone();
        let id = check.id.clone();
        let fresh = tokio::task::spawn_blocking(move || ledger.check(&id))
            .await
            .map_err(|e| LedgerError::Encode(e.to_string()))??;
        // Decided meanwhile (here or on another device), or final: nothing to do.
        if !fresh.is_open() || (fresh.resolution.is_some() && fresh.is_final(now.date_naive())) {
            return Ok(One::Skipped);
        }
        // 資格（無効）・新しい資格あり: the new qualification is looked for first (staff ask the
        // patient for its numbers); only when the claim is near is the old one claimed.
        if fresh.awaits_new_qualification()
            && fresh.due().is_some_and(|due| {
                now.date_naive() + chrono::Days::new(NEW_QUALIFICATION_WAIT_END) < due
            })
        {
            return Ok(One::NeedsStaff);
        }
        let decided = decide(&fresh, &self.config).and_then(Result::ok);
        match decided.as_ref().and_then(|b| resolved(b, now)) {
            Some(mut r) => {
                if fresh.resolution.is_some() {
                    r.replaces_because =
                        Some("後日申告された保険の番号で確認し直しました。".to_string());
                }
                self.record(&fresh, CheckEvent::Resolved(r)).await?;
                self.backoff
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&fresh.id);
                Ok(One::Resolved)
            }
            None => Ok(One::NeedsStaff),
        }
    }
}
