//! One qualification check (資格確認), from the card to the answer.
//!
//! The card part blocks (pcscd, the operator typing a PIN), so it runs on a blocking thread;
//! the query is async with the client's time budget. The challenge the card signs names the
//! institution and the time of the check, so the qualification system can tell a fresh proof
//! from a replay of another clinic's.
//!
//! The card's own rules (R2 infant cards, R3 grace judged on the visit date, R6 no grace
//! for a smartphone, no-PIN 顔認証 cards) are applied while the card is read, before the
//! query: a card that cannot be used ends here as [`CardError::Refused`], which the workflow
//! reports as refused and never captures — the patient is told at the counter, not after
//! they left. A certificate in its grace period goes on, and the outcome carries the
//! notice to renew ([`CheckOutcome::certificate_notice_ja`]).

pub mod capture;
pub mod health;
pub mod workflow;

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, NaiveDate};

use crate::card::cert::CertificateInfo;
use crate::card::{self, CardError, CardEvidence, CheckPlan, PinEntry, Transport};
use crate::domain::IdentityMethod;
use crate::oqs::challenge::Challenge;
use crate::oqs::{Answer, CardQuery, OqsClient, QueryError};
use crate::rules::RuleSettings;

/// Japan Standard Time (UTC+9, no daylight saving): the clock of visit dates.
pub fn jst() -> FixedOffset {
    #[allow(clippy::expect_used)]
    FixedOffset::east_opt(9 * 3600).expect("UTC+9 is inside FixedOffset's ±24 h range")
}

/// The current time in Japan.
pub fn now_jst() -> DateTime<FixedOffset> {
    chrono::Utc::now().with_timezone(&jst())
}

/// Why a check ended without an answer from the qualification system.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The card or the reader failed.
    #[error(transparent)]
    Card(#[from] CardError),
    /// The blocking card task died.
    #[error("card task failed: {0}")]
    Task(String),
}

impl CheckError {
    /// The message for reception staff.
    pub fn message_ja(&self) -> String {
        match self {
            CheckError::Card(e) => e.message_ja(),
            CheckError::Task(_) => {
                "内部エラーでカードを読み取れませんでした。もう一度確認してください。".into()
            }
        }
    }
}

/// Where the time of one check went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckTimings {
    /// From start to answer.
    pub total: Duration,
    /// Waiting on the card (inside `transmit`).
    pub card: Duration,
    /// Waiting on the qualification system (the HTTP exchanges).
    pub oqs: Duration,
    /// Command APDUs sent to the card.
    pub apdus: u32,
}

impl CheckTimings {
    /// The daemon's own share: total minus the card's and the qualification system's.
    pub fn own(&self) -> Duration {
        self.total
            .saturating_sub(self.card)
            .saturating_sub(self.oqs)
    }
}

/// A finished check: what the card proved and what the qualification system said.
#[derive(Debug)]
pub struct CheckOutcome {
    /// The card's part.
    pub evidence: CardEvidence,
    /// Facts from the certificate.
    pub certificate: CertificateInfo,
    /// The classified answer, or why there is none.
    pub answer: Result<Answer, QueryError>,
    /// The challenge that was signed (PIN method).
    pub challenge: Option<Challenge>,
    /// Where the time went.
    pub timings: CheckTimings,
}

impl CheckOutcome {
    /// The daemon's own notice about the card for staff, as (stable code, message): today
    /// only "expired, in its grace period — tell the patient to renew" (R3). It stands
    /// whatever the qualification system answers, and when it cannot answer at all.
    pub fn certificate_notice_ja(&self) -> Option<(&'static str, String)> {
        self.evidence.standing.notice_ja()
    }
}

/// Runs one check: reads the card (on a blocking thread), applying the card's own rules on
/// the visit date, and asks the qualification system as of `visit_date` — unless `client`
/// is `None` (known offline), when the answer is `Unreachable` at once. The rule dates are
/// the documented defaults; [`run_with_settings`] takes the clinic's.
///
/// Cancel safety: not cancel-safe once the card task started; dropping the future leaves the
/// card task to finish on its own thread.
pub async fn run<T: Transport + 'static>(
    transport: T,
    method: IdentityMethod,
    visit_date: NaiveDate,
    now: DateTime<FixedOffset>,
    client: Option<&OqsClient>,
    institution_code: &str,
    pin_entry: Box<dyn PinEntry + Send>,
) -> Result<CheckOutcome, CheckError> {
    run_with_settings(
        transport,
        method,
        visit_date,
        now,
        client,
        institution_code,
        pin_entry,
        RuleSettings::default(),
    )
    .await
}

/// [`run`] with the clinic's rule settings (the smartphone start date, R6).
///
/// Cancel safety: as [`run`].
#[allow(clippy::too_many_arguments)] // `run`'s arguments plus the settings; a struct would only rename them.
pub async fn run_with_settings<T: Transport + 'static>(
    transport: T,
    method: IdentityMethod,
    visit_date: NaiveDate,
    now: DateTime<FixedOffset>,
    client: Option<&OqsClient>,
    institution_code: &str,
    mut pin_entry: Box<dyn PinEntry + Send>,
    settings: RuleSettings,
) -> Result<CheckOutcome, CheckError> {
    let started = Instant::now();
    let challenge =
        (method == IdentityMethod::Pin).then(|| Challenge::fresh(institution_code, now));
    let digest_info = challenge
        .as_ref()
        .map(Challenge::sha256_digest_info)
        .unwrap_or_default();
    let evidence = tokio::task::spawn_blocking(move || {
        let plan = CheckPlan {
            method,
            kind: pin_entry.card_kind(),
            visit_date,
            settings: &settings,
        };
        card::read_for_check(transport, &plan, &digest_info, pin_entry.as_mut())
    })
    .await
    .map_err(|e| CheckError::Task(e.to_string()))?;
    let evidence = match evidence {
        Ok(e) => e,
        Err(e) => {
            if let CardError::Refused { reason } = &e {
                tracing::info!(
                    method = method.as_str(),
                    reason = reason.name(),
                    "card refused at the counter"
                );
            }
            return Err(e.into());
        }
    };
    let certificate = evidence.certificate.clone();
    let query = CardQuery {
        visit_date,
        method,
        certificate_der: evidence.certificate_der.clone(),
        challenge: challenge.as_ref().map(|c| c.as_bytes().to_vec()),
        signature: evidence.signature.clone(),
        file_id: format!("tsunagi-{}", now.format("%Y%m%d%H%M%S")),
    };
    let asked = Instant::now();
    // No client: the line is known to be down (the breaker is open); capture at once
    // instead of holding reception for the whole time budget.
    let answer = match client {
        Some(client) => client.query_by_card(&query).await,
        None => Err(QueryError::Unreachable),
    };
    let oqs = asked.elapsed();
    let timings = CheckTimings {
        total: started.elapsed(),
        card: evidence.stats.card_time,
        oqs,
        apdus: evidence.stats.apdus,
    };
    tracing::info!(
        method = method.as_str(),
        apdus = timings.apdus,
        outcome = match &answer {
            Ok(Answer::Confirmed { .. }) => "confirmed",
            Ok(Answer::Invalid { .. }) => "invalid",
            Ok(Answer::NotFound { .. }) => "not-found",
            Ok(Answer::MultipleMatches(_)) => "multiple",
            Err(_) => "error",
        },
        "check finished"
    );
    Ok(CheckOutcome {
        evidence,
        certificate,
        answer,
        challenge,
        timings,
    })
}
