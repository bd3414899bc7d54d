//! The reception page's desk work (受付の事務), beside the check itself in [`super::page`]:
//!
//! - the 被保険者資格申立書 form (R14): saved through [`ops::declare`], the same function
//!   `POST /v1/checks/{id}/declaration` calls, so the page has no second implementation;
//! - the month's history (R20): the checks this device captured (not its peers'), still
//!   viewable on the day, newest first, as the counter may see them (no insurance numbers, no
//!   birth dates);
//! - the document helper (R7–R11): whether a document the patient shows is acceptable on the
//!   visit date and why, from [`crate::rules::documents::document_validity`] (the route only
//!   calls it); an acceptable one can be recorded as the visit's check through
//!   [`ops::record_document`], as `POST /v1/documents` does.
//!
//! Every route here sits behind the page's session and origin checks (registered in
//! [`super::page::router`]); what they write goes through [`crate::ops`], what they decide
//! through [`crate::rules`].

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRef, Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use super::problem::Problem;
use super::routes::{self, Body};
use crate::check::now_jst;
use crate::ops::{self, DeclarationRequest, DocumentReport, DocumentRequest};
use crate::rules::claim::InsuranceType;
use crate::rules::deadlines::viewable_until;
use crate::rules::documents::{document_validity, DocumentError, DocumentKind, PresentedDocument};
use crate::service::Daemon;
use crate::view::{AnswerKind, CheckView};
use tsunagi_sync::Month;

/// The desk routes, for the page's signed-in router (any state a [`Daemon`] can be taken
/// from).
pub(super) fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Daemon: FromRef<S>,
{
    Router::new()
        .route("/page/api/checks/{id}/declaration", post(declare))
        .route("/page/api/history", get(history))
        .route("/page/api/documents/verdict", get(document_verdict))
        .route("/page/api/documents", post(record_document))
}

// ----- the 申立書 (R14) -----

/// What saving a 申立書 from the page did: the check and the items left blank, nothing of
/// what was written (the page already holds it).
#[derive(Debug, Serialize)]
struct DeclarationSaved {
    check_id: String,
    declared: bool,
    /// Items left blank (Japanese labels).
    missing_ja: Vec<String>,
    message_ja: String,
}

async fn declare(
    State(daemon): State<Daemon>,
    Path(id): Path<String>,
    Body(request): Body<DeclarationRequest>,
) -> Result<Json<DeclarationSaved>, Problem> {
    let report = routes::declaration(&daemon, &id, &request).await?;
    tracing::info!(check = %report.check.id, "declaration saved from the reception page");
    Ok(Json(DeclarationSaved {
        message_ja: format!(
            "被保険者資格申立書を保存しました（確認ID: {}）。",
            report.check.id
        ),
        check_id: report.check.id,
        declared: report.check.declared,
        missing_ja: report.missing_ja,
    }))
}

// ----- the month's history (R20) -----

/// One check as the history lists it at the counter: no numbers, no birth date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct HistoryItem {
    id: String,
    visit_date: NaiveDate,
    /// The last day it may be viewed (R20).
    viewable_until: NaiveDate,
    /// `confirmed`, `invalid`, `not_found`, `multiple`, `refused`, `captured`, `document` or
    /// `resolved`: the page's icon and colour.
    state: &'static str,
    state_label_ja: String,
    phase_label_ja: &'static str,
    /// 負担割合 in tenths, when the answer (or the clinic's earlier data) gives it.
    copay_tenths: Option<u8>,
}

#[derive(Debug, Serialize)]
struct HistoryList {
    today: NaiveDate,
    /// How many checks are viewable; `checks` holds the newest [`HISTORY_MAX`] of them.
    total: usize,
    checks: Vec<HistoryItem>,
}

/// Rows the page is sent at most: a busy month holds thousands of checks, more than a
/// counter reads and more than a page should redraw on every event.
const HISTORY_MAX: usize = 200;

/// R20: the checks of `views` still viewable on `today` (until the end of the month after
/// the visit month), newest first, as the counter may see them.
fn history_of(views: Vec<CheckView>, today: NaiveDate) -> Vec<HistoryItem> {
    let mut items: Vec<HistoryItem> = views
        .into_iter()
        .filter(|v| viewable_until(v.visit_date) >= today)
        .map(|v| {
            let (state, state_label_ja) = history_state(&v);
            HistoryItem {
                viewable_until: viewable_until(v.visit_date),
                state,
                state_label_ja,
                phase_label_ja: v.phase.label_ja(),
                copay_tenths: v
                    .answer
                    .as_ref()
                    .and_then(|a| a.ratio_percent)
                    .map(|p| p / 10)
                    .or_else(|| v.earlier.as_ref().and_then(|e| e.copay_tenths)),
                id: v.id,
                visit_date: v.visit_date,
            }
        })
        .collect();
    // ULIDs grow with time: on one visit date the later check comes first.
    items.sort_by(|a, b| (b.visit_date, &b.id).cmp(&(a.visit_date, &a.id)));
    items
}

fn history_state(v: &CheckView) -> (&'static str, String) {
    if let Some(a) = &v.answer {
        let state = match a.status {
            AnswerKind::Confirmed => "confirmed",
            AnswerKind::Invalid => "invalid",
            AnswerKind::NotFound => "not_found",
            AnswerKind::Multiple => "multiple",
            AnswerKind::CardRefused => "refused",
        };
        return (state, a.status.label_ja().to_string());
    }
    if let Some(kind) = v.document.as_deref() {
        let label = kind
            .parse::<DocumentKind>()
            .map(DocumentKind::label_ja)
            .unwrap_or("書類");
        return ("document", format!("書類で受付（{label}）"));
    }
    if v.is_open() {
        return ("captured", "オフライン受付（事後確認待ち）".to_string());
    }
    ("resolved", v.phase.label_ja().to_string())
}

async fn history(State(daemon): State<Daemon>) -> Result<Json<HistoryList>, Problem> {
    let today = now_jst().date_naive();
    // Only this month's and last month's visits can still be viewable (R20).
    let last_month = today
        .with_day(1)
        .and_then(|first| first.pred_opt())
        .unwrap_or(today);
    let device = daemon.ledger().store().device().id().clone();
    let mut views = Vec::new();
    for day in [last_month, today] {
        let Ok(month) = Month::of(day) else { continue };
        views.extend(ops::list_captured_by(daemon.ledger(), month, device.clone(), today).await?);
    }
    let mut checks = history_of(views, today);
    let total = checks.len();
    checks.truncate(HISTORY_MAX);
    Ok(Json(HistoryList {
        today,
        total,
        checks,
    }))
}

// ----- the document helper (R7–R11) -----

/// The document helper's question.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentQuery {
    /// `kakuninsho`, `hokensho`, `portal`, `oshirase`, `myna`.
    kind: String,
    /// The document's own expiry.
    expires: Option<NaiveDate>,
    /// The visit date; default today in Japan.
    visit_date: Option<NaiveDate>,
    /// A 資格情報のお知らせ shown with the card.
    #[serde(default)]
    with_card: bool,
}

/// The document helper's answer, for staff.
#[derive(Debug, Serialize)]
struct DocumentAnswer {
    acceptable: bool,
    kind_ja: &'static str,
    visit_date: NaiveDate,
    reason_ja: String,
    /// The rule that decided (`R11`).
    rule: String,
    /// Where the rule comes from, in words staff know.
    source_ja: &'static str,
    requirements_ja: Vec<&'static str>,
}

async fn document_verdict(
    State(daemon): State<Daemon>,
    query: Result<Query<DocumentQuery>, QueryRejection>,
) -> Result<Json<DocumentAnswer>, Problem> {
    let Query(q) = query.map_err(|_| {
        Problem::bad_request(
            "書類の種類・有効期限・受診日を確かめてください（日付は 2026-03-31 の形です）。",
        )
    })?;
    let kind: DocumentKind = q
        .kind
        .parse()
        .map_err(|e: DocumentError| Problem::bad_request(e.message_ja()).field("kind"))?;
    let visit = q.visit_date.unwrap_or_else(|| now_jst().date_naive());
    let doc = PresentedDocument {
        kind,
        expires: q.expires,
        with_card: q.with_card,
        // The helper asks for no numbers: the insurance type is unknown, and the rules then
        // claim no more than holds for every insurer.
        insurance: InsuranceType::Unknown,
    };
    let verdict = document_validity(&doc, visit, daemon.settings()).map_err(|e| match e {
        DocumentError::MissingExpiry(k) => Problem::bad_request(format!(
            "{}は有効期限で判断します。書類に書かれた有効期限を入力してください。",
            k.label_ja()
        ))
        .field("expires"),
        e => Problem::bad_request(e.message_ja()).field("kind"),
    })?;
    Ok(Json(DocumentAnswer {
        acceptable: verdict.acceptable,
        kind_ja: kind.label_ja(),
        visit_date: visit,
        reason_ja: verdict.reason_ja,
        rule: verdict.rule.to_string(),
        source_ja: verdict.rule.source_ja(),
        requirements_ja: verdict.requirements.iter().map(|r| r.label_ja()).collect(),
    }))
}

/// Records a document shown instead of the card as the visit's check, after the same rules
/// (R7–R11) on the visit date: the operation `POST /v1/documents` runs.
async fn record_document(
    State(daemon): State<Daemon>,
    Body(request): Body<DocumentRequest>,
) -> Result<Json<DocumentReport>, Problem> {
    let report = routes::document(&daemon, &request).await?;
    tracing::info!(status = %report.status, rule = %report.rule, "document from the reception page");
    Ok(Json(report))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::domain::FacilityType;
    use crate::view::{AnswerView, CheckPhase};

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn view(id: &str, visit: &str, answer: Option<AnswerKind>) -> CheckView {
        CheckView {
            id: id.into(),
            visit_date: d(visit),
            facility: FacilityType::Medical,
            first_visit: false,
            next_visit: None,
            method: None,
            certificate_serial: None,
            document: None,
            phase: if answer.is_some() {
                CheckPhase::Done
            } else {
                CheckPhase::Waiting
            },
            captured_offline: answer.is_none(),
            reason: answer.is_none().then(|| "unreachable".into()),
            due: None,
            overdue: false,
            attempts: 0,
            last_error: None,
            answer: answer.map(|status| AnswerView {
                status,
                via: "card".into(),
                numbers: None,
                newer_exists: false,
                birth_date: Some(d("1980-04-01")),
                ratio_percent: Some(30),
                answered_at: chrono::DateTime::parse_from_rfc3339("2026-11-02T09:00:00+09:00")
                    .unwrap(),
            }),
            declared: false,
            known_numbers: None,
            earlier: None,
            facility_output: None,
            plugin_notes: Vec::new(),
            resolution: None,
            history: Vec::new(),
            claimed_at: None,
            final_basis: false,
            notes: Vec::new(),
            next_step_ja: None,
        }
    }

    #[test]
    fn it_lists_until_the_end_of_the_month_after_the_visit_newest_first() {
        // R20: a result can be viewed until the end of the month after the treatment month.
        let views = vec![
            view("01A", "2026-10-31", Some(AnswerKind::Confirmed)),
            view("01B", "2026-11-01", Some(AnswerKind::Invalid)),
            view("01C", "2026-12-02", None),
            view("01D", "2026-12-02", Some(AnswerKind::NotFound)),
        ];
        let on_nov_30 = history_of(views.clone(), d("2026-11-30"));
        let ids: Vec<&str> = on_nov_30.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["01D", "01C", "01B", "01A"]);
        // From 1 December the October visit is gone; the November one stays all month.
        let on_dec_1 = history_of(views.clone(), d("2026-12-01"));
        let ids: Vec<&str> = on_dec_1.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["01D", "01C", "01B"]);
        assert_eq!(on_dec_1[2].viewable_until, d("2026-12-31"));
        let on_jan_1 = history_of(views, d("2027-01-01"));
        assert_eq!(on_jan_1.len(), 2);
    }

    #[tokio::test]
    async fn it_lists_the_checks_this_device_captured_not_its_peers() {
        use crate::ledger::event::{Captured, CheckEvent};
        use crate::ledger::{new_check_id, Ledger};
        let visit = now_jst().date_naive();
        let month = Month::of(visit).unwrap();
        let (here_dir, peer_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let here = Ledger::open(here_dir.path()).unwrap();
        let peer = Ledger::open(peer_dir.path()).unwrap();
        let capture = CheckEvent::Captured(Captured {
            visit_date: visit,
            facility: FacilityType::Medical,
            first_visit: false,
            next_visit: None,
            card: None,
            document: None,
            reason: Some("unreachable".into()),
            last_known: None,
            captured_at: now_jst(),
        });
        let (mine, theirs) = (new_check_id(), new_check_id());
        here.record(&mine, visit, &capture).await.unwrap();
        peer.record(&theirs, visit, &capture).await.unwrap();
        // The peer's records arrive as sync delivers them: sealed with its month key.
        let (_, key) = peer.store().month_keys(month).unwrap()[0];
        here.store().install_month_key(month, key).unwrap();
        let ids: Vec<_> = peer
            .store()
            .events(month)
            .unwrap()
            .events
            .iter()
            .map(|(id, _)| *id)
            .collect();
        for (_, body) in peer.store().record_bodies(month, &ids).unwrap() {
            here.store().receive(month, &body).unwrap();
        }
        assert_eq!(
            here.checks(month).unwrap().len(),
            2,
            "both are in the ledger"
        );
        let device = here.store().device().id().clone();
        let own = ops::list_captured_by(&here, month, device, visit)
            .await
            .unwrap();
        let ids: Vec<&str> = own.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, [mine.as_str()], "only this device's own capture");
    }

    #[test]
    fn it_tells_each_state_and_the_copay_without_numbers_or_birth_dates() {
        let items = history_of(
            vec![
                view("01A", "2026-12-01", Some(AnswerKind::Confirmed)),
                view("01B", "2026-12-01", None),
            ],
            d("2026-12-02"),
        );
        assert_eq!(items[0].state, "captured");
        assert_eq!(items[0].state_label_ja, "オフライン受付（事後確認待ち）");
        assert_eq!(items[0].copay_tenths, None);
        assert_eq!(items[1].state, "confirmed");
        assert_eq!(items[1].copay_tenths, Some(3));
        let json = serde_json::to_string(&items).unwrap();
        assert!(!json.contains("1980"), "no birth date: {json}");
        assert!(!json.contains("birth"), "{json}");
        assert!(!json.contains("number"), "{json}");
    }
}
