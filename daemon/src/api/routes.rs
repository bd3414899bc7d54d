//! The routes: authentication, request parsing into problem documents, and one handler per
//! operation. Handlers only translate: the work is in [`Daemon`] and [`crate::ops`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::{BroadcastStream, WatchStream};
use tokio_stream::{Stream, StreamExt};
use utoipa::{IntoParams, ToSchema};

use super::problem::Problem;
use crate::card::Pin;
use crate::check::now_jst;
use crate::domain::{FacilityType, IdentityMethod};
use crate::ops::{
    self, DeclarationReport, DeclarationRequest, DocumentReport, DocumentRequest,
    NumbersCheckReport, NumbersCheckRequest, NumbersRequest, ResolveRequest,
};
use crate::reconcile::PassReport;
use crate::service::daemon::{DaemonEvent, StartCheck, StartError};
use crate::service::{Daemon, Status};
use crate::view::{CheckReport, CheckView, ListState};
use tsunagi_sync::Month;

#[derive(Debug, Clone)]
struct App {
    daemon: Daemon,
    token: Arc<str>,
    pacing: Arc<super::pace::Pacing>,
}

/// The router, with authentication on every route but the OpenAPI document; the reception
/// page's routes (`/page/…`, their own sign-in) beside it. `bound` is the address actually
/// listened on: the page's origin checks need its port.
pub(super) fn router(daemon: Daemon, token: String, bound: std::net::SocketAddr) -> Router {
    let pages = Arc::new(super::page::Pages::new(bound));
    let pacing = Arc::new(super::pace::Pacing::new(
        daemon.config().api.reads_per_second,
    ));
    // The page's reads share the API's buckets, and its checks narrow them like any
    // reception request: a page script gone wrong cannot take the counter PC's CPU either.
    let page_router = super::page::router(daemon.clone(), pages.clone(), pacing.clone());
    let app = App {
        daemon,
        token: token.into(),
        pacing,
    };
    let guarded = Router::new()
        .route("/v1/checks", post(start_check).get(list_checks))
        .route("/v1/checks/{id}", get(read_check))
        .route("/v1/checks/{id}/declaration", post(declare))
        .route("/v1/checks/{id}/numbers", post(report_numbers))
        .route("/v1/checks/{id}/resolution", post(resolve))
        .route("/v1/checks/{id}/claimed", post(claimed))
        .route("/v1/documents", post(record_document))
        .route("/v1/insurance-checks", post(check_by_numbers))
        .route("/v1/reconcile", post(reconcile))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(list_peers).post(add_peer))
        .route("/v1/peers/{id}", delete(remove_peer))
        .route("/v1/events", get(events))
        .route(
            "/v1/page/codes",
            post(super::page::make_code).with_state(pages),
        )
        .route_layer(middleware::from_fn_with_state(
            app.pacing.clone(),
            super::pace::pace_reads,
        ))
        .route_layer(middleware::from_fn_with_state(app.clone(), authenticate));
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/v1/identity", get(identity))
        .merge(guarded)
        .fallback(|| async { Problem::not_found("そのAPIはありません。") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "このAPIはその方法（HTTPメソッド）では使えません。",
            )
        })
        .with_state(app)
        .merge(page_router)
}

/// Bearer token check. A refused request is logged with its path, never with what it sent.
async fn authenticate(State(app): State<App>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme name is case-insensitive (RFC 9110 §11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match presented {
        Some(t) if super::token::matches(t, &app.token) => next.run(request).await,
        _ => {
            tracing::warn!(path = %request.uri().path(), "API request without a valid token refused");
            Problem::unauthorized().into_response()
        }
    }
}

/// A JSON body whose rejection is a problem document naming the field.
pub(super) struct Body<T>(pub(super) T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // serde reads a struct from a JSON array of its fields as well as from an object;
        // a request body is an object, so anything else is refused before it is parsed.
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| {
                let t = t.trim();
                t.eq_ignore_ascii_case("application/json")
                    || (t.starts_with("application/") && t.ends_with("+json"))
            });
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(too_large())
            }
            Err(rejection) => {
                return Err(Problem::bad_request(format!(
                    "リクエストを読み取れませんでした（{}）。",
                    rejection.body_text()
                )))
            }
        };
        if !json_type {
            return Err(not_json());
        }
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(Problem::bad_request(
                "リクエストの内容は JSON のオブジェクト（{ … }）で送ってください。",
            ));
        }
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(json_problem(&rejection)),
        }
    }
}

fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        "Request body too large",
        "リクエストが大きすぎます。",
    )
}

fn not_json() -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "not-json",
        "Body must be application/json",
        "リクエストは JSON（Content-Type: application/json）で送ってください。",
    )
}

fn json_problem(rejection: &JsonRejection) -> Problem {
    let text = rejection.body_text();
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => not_json(),
        _ => {
            // serde_path_to_error's text: "...target type: <path>: <what>".
            let detail = text
                .split_once("target type: ")
                .map(|(_, rest)| rest)
                .unwrap_or(&text);
            let field = detail
                .split_once(": ")
                .map(|(path, _)| path)
                .filter(|p| !p.contains(' ') && *p != ".");
            // serde quotes the value it refused: never echo a PIN.
            if field == Some("pin") {
                return Problem::bad_request("暗証番号は数字4桁の文字列で送ってください。")
                    .field("pin");
            }
            let mut p =
                Problem::bad_request(format!("リクエストの内容が正しくありません（{detail}）。"));
            if let Some(f) = field {
                p = p.field(f);
            }
            p
        }
    }
}

fn query_problem(rejection: &QueryRejection) -> Problem {
    Problem::bad_request(format!(
        "問い合わせの条件が正しくありません（{}）。",
        rejection.body_text()
    ))
}

// ----- reception checks -----

/// A reception check to start (資格確認の開始).
#[derive(Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckStartRequest {
    /// The reader; absent for the first reader with a card.
    pub reader: Option<String>,
    /// Identity method: `visual` (目視) or `pin` (暗証番号).
    #[schema(value_type = MethodName)]
    pub method: String,
    /// The 4-digit PIN the patient typed (暗証番号 method only). Never logged or stored.
    pub pin: Option<String>,
    /// The patient agreed to spend the last PIN try.
    #[serde(default)]
    pub confirm_last_try: bool,
    /// The visit date (default today in Japan).
    pub visit_date: Option<chrono::NaiveDate>,
    /// Facility type (default the configured one): `medical`, `dental`, `pharmacy`, `judo`,
    /// `ahaki`, `home-nursing`.
    #[schema(value_type = Option<FacilityName>)]
    pub facility: Option<String>,
    /// 初診・初検.
    #[serde(default)]
    pub first_visit: bool,
    /// The next booked visit.
    pub next_visit: Option<chrono::NaiveDate>,
    /// Seconds to wait for a card to be placed (default 30).
    #[schema(maximum = 120)]
    pub card_wait_secs: Option<u64>,
    /// An id the client made for this check (a ULID): sending the same request again
    /// (after a lost answer) never records a second check.
    pub check_id: Option<String>,
    /// The card has no photo (applied for before the first birthday): PIN only (R2).
    #[serde(default)]
    pub photo_less: bool,
    /// What the receipt computer already knows of the patient (前回情報): used if the check
    /// is captured offline, for the co-payment and instead of a 申立書. Without it, the
    /// clinic's own history of the card is used.
    pub known_insurance: Option<ops::KnownInsuranceRequest>,
}

/// Identity method (本人確認の方法).
#[derive(Debug, Clone, Copy, ToSchema)]
#[schema(rename_all = "kebab-case")]
#[allow(dead_code)] // Only its schema is used; the request holds the text and parses it.
pub enum MethodName {
    /// 目視: staff compare the card's photo with the patient.
    Visual,
    /// 暗証番号: the patient types the card's 4-digit PIN.
    Pin,
}

/// Facility type (施設の種類).
#[derive(Debug, Clone, Copy, ToSchema)]
#[schema(rename_all = "kebab-case")]
#[allow(dead_code)] // Only its schema is used.
pub enum FacilityName {
    /// 医科.
    Medical,
    /// 歯科.
    Dental,
    /// 薬局.
    Pharmacy,
    /// 柔道整復.
    Judo,
    /// あん摩マッサージ指圧・はり・きゅう.
    Ahaki,
    /// 訪問看護.
    HomeNursing,
}

impl std::fmt::Debug for CheckStartRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The PIN never reaches a log.
        f.debug_struct("CheckStartRequest")
            .field("reader", &self.reader)
            .field("method", &self.method)
            .field("pin_given", &self.pin.is_some())
            .finish_non_exhaustive()
    }
}

/// A client-made check id: a ULID, in its canonical form.
fn ulid_id(id: &str) -> Result<String, Problem> {
    ulid::Ulid::from_string(id)
        .map(|u| u.to_string())
        .map_err(|_| {
            Problem::bad_request("check_id は ULID（26文字）で指定してください。").field("check_id")
        })
}

/// Longest card wait a request may ask for.
const CARD_WAIT_MAX: u64 = 120;

impl CheckStartRequest {
    fn parse(&self) -> Result<StartCheck, Problem> {
        let method: IdentityMethod =
            self.method
                .parse()
                .map_err(|e: crate::domain::DomainError| {
                    Problem::bad_request(e.message_ja()).field("method")
                })?;
        let pin = match &self.pin {
            None => None,
            Some(p) => Some(
                Pin::parse(p)
                    .ok_or_else(|| Problem::bad_request("暗証番号は数字4桁です。").field("pin"))?,
            ),
        };
        if method == IdentityMethod::Pin && pin.is_none() {
            return Err(Problem::bad_request(
                "暗証番号による確認には暗証番号（数字4桁）が必要です。",
            )
            .field("pin"));
        }
        let facility = match &self.facility {
            None => None,
            Some(f) => Some(
                f.parse::<FacilityType>()
                    .map_err(|e| Problem::bad_request(e.message_ja()).field("facility"))?,
            ),
        };
        for (field, date) in [
            ("visit_date", self.visit_date),
            ("next_visit", self.next_visit),
        ] {
            if date.is_some_and(|d| Month::of(d).is_err()) {
                return Err(
                    Problem::bad_request(crate::ledger::visit_date_message_ja()).field(field)
                );
            }
        }
        let wait = self.card_wait_secs.unwrap_or(30);
        if wait > CARD_WAIT_MAX {
            return Err(Problem::bad_request(format!(
                "カードを待つ時間は {CARD_WAIT_MAX} 秒までです。"
            ))
            .field("card_wait_secs"));
        }
        let check_id = self.check_id.as_deref().map(ulid_id).transpose()?;
        let known = match &self.known_insurance {
            None => None,
            Some(k) => Some(k.parse(self.visit_date.unwrap_or_else(|| now_jst().date_naive()))?),
        };
        Ok(StartCheck {
            known,
            photo_less: self.photo_less,
            check_id,
            reader: self.reader.clone().filter(|r| !r.is_empty()),
            method,
            pin,
            confirm_last_try: self.confirm_last_try,
            visit_date: self.visit_date,
            facility,
            first_visit: self.first_visit,
            next_visit: self.next_visit,
            card_wait: Duration::from_secs(wait),
        })
    }
}

/// Starts a check on a reader and waits for its result: the answer, or the capture for
/// 事後確認 and what to do now.
#[utoipa::path(post, path = "/v1/checks", tag = "checks",
    request_body = CheckStartRequest,
    responses(
        (status = 200, description = "The check ran (see `status`)", body = CheckReport),
        (status = 400, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The reader is busy, or a check with this id is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The daemon is stopping", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "The capture could not be saved", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn start_check(
    State(app): State<App>,
    Body(request): Body<CheckStartRequest>,
) -> Result<Json<CheckReport>, Problem> {
    run_check(&app.daemon, request).await.map(Json)
}

/// One reception check as both the token API and the reception page run it.
pub(super) async fn run_check(
    daemon: &Daemon,
    request: CheckStartRequest,
) -> Result<CheckReport, Problem> {
    let start = request.parse()?;
    match daemon.check(start).await {
        Ok(mut report) => {
            // The facility's plugin on the recorded check, beside the report.
            if let Some(id) = &report.check_id {
                let today = now_jst().date_naive();
                if let Ok((view, state)) = ops::view_and_fold(daemon.ledger(), id, today).await {
                    report.facility_output = daemon.facility_output(state, &view).await;
                }
            }
            Ok(report)
        }
        Err(e @ StartError::ReaderBusy(_)) => Err(Problem::new(
            StatusCode::CONFLICT,
            "reader-busy",
            "Reader busy",
            e.message_ja(),
        )),
        Err(e @ StartError::InProgress(_)) => Err(Problem::new(
            StatusCode::CONFLICT,
            "in-progress",
            "Check in progress",
            e.message_ja(),
        )),
        Err(e @ StartError::NoReader) => Err(Problem::new(
            StatusCode::CONFLICT,
            "no-reader",
            "No card reader on this device",
            e.message_ja(),
        )),
        Err(e @ StartError::Task(_)) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "Daemon stopping",
            e.message_ja(),
        )),
        Err(e @ StartError::Ledger(_)) => Err(not_saved(&e, e.message_ja())),
    }
}

// ----- reading checks -----

/// Which checks to list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `pending` (default), `overdue`, `resolved` or `all`.
    #[param(value_type = Option<String>)]
    pub state: Option<ListState>,
    /// Only this visit month (`YYYY-MM`).
    pub month: Option<String>,
}

/// A list of checks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckList {
    /// The checks, by deadline then id.
    pub checks: Vec<CheckView>,
}

/// Lists checks by state and month.
#[utoipa::path(get, path = "/v1/checks", tag = "checks", params(ListQuery),
    responses(
        (status = 200, description = "The checks", body = CheckList),
        (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many reads; retry after the given seconds", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn list_checks(
    State(app): State<App>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<CheckList>, Problem> {
    let Query(q) = query.map_err(|e| query_problem(&e))?;
    let month = match q.month.as_deref() {
        None | Some("") => None,
        Some(m) => Some(m.parse::<Month>().map_err(|_| {
            Problem::bad_request("月は YYYY-MM（2000-01〜2999-12）で指定してください。")
                .field("month")
        })?),
    };
    let today = now_jst().date_naive();
    let checks = ops::list(
        app.daemon.ledger(),
        q.state.unwrap_or_default(),
        month,
        today,
    )
    .await?;
    Ok(Json(CheckList { checks }))
}

/// Whether `id` can name a check at all (a ULID, or an id from an older device): anything
/// else is "not found" without asking the store.
fn plausible_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_not_found(id: &str) -> Problem {
    Problem::not_found(format!("確認 {} は見つかりません。", id.escape_default()))
}

/// Reads one check.
#[utoipa::path(get, path = "/v1/checks/{id}", tag = "checks",
    params(("id" = String, Path, description = "The check id")),
    responses(
        (status = 200, description = "The check", body = CheckView),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such check", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many reads; retry after the given seconds", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn read_check(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<CheckView>, Problem> {
    if !plausible_id(&id) {
        return Err(check_not_found(&id));
    }
    let today = now_jst().date_naive();
    let (mut view, state) = ops::view_and_fold(app.daemon.ledger(), &id, today).await?;
    view.facility_output = app.daemon.facility_output(state, &view).await;
    Ok(Json(view))
}

// ----- recording -----

/// Records a 被保険者資格申立書 for a check.
#[utoipa::path(post, path = "/v1/checks/{id}/declaration", tag = "records",
    params(("id" = String, Path, description = "The check id")),
    request_body = DeclarationRequest,
    responses(
        (status = 200, description = "Recorded", body = DeclarationReport),
        (status = 400, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such check", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn declare(
    State(app): State<App>,
    Path(id): Path<String>,
    Body(request): Body<DeclarationRequest>,
) -> Result<Json<DeclarationReport>, Problem> {
    declaration(&app.daemon, &id, &request).await.map(Json)
}

/// Records a 申立書 for check `id`, for the token API and the reception page alike.
pub(super) async fn declaration(
    daemon: &Daemon,
    id: &str,
    request: &DeclarationRequest,
) -> Result<DeclarationReport, Problem> {
    if !plausible_id(id) {
        return Err(check_not_found(id));
    }
    let today = now_jst().date_naive();
    Ok(ops::declare(daemon.ledger(), id, request, today).await?)
}

/// Records insurance numbers the patient reported after the visit.
#[utoipa::path(post, path = "/v1/checks/{id}/numbers", tag = "records",
    params(("id" = String, Path, description = "The check id")),
    request_body = NumbersRequest,
    responses(
        (status = 200, description = "Recorded", body = CheckView),
        (status = 400, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such check", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The claim basis is final", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn report_numbers(
    State(app): State<App>,
    Path(id): Path<String>,
    Body(request): Body<NumbersRequest>,
) -> Result<Json<CheckView>, Problem> {
    if !plausible_id(&id) {
        return Err(check_not_found(&id));
    }
    Ok(Json(
        ops::report_numbers(app.daemon.ledger(), &id, &request, now_jst()).await?,
    ))
}

/// Resolves an open check by hand, with a reason.
#[utoipa::path(post, path = "/v1/checks/{id}/resolution", tag = "records",
    params(("id" = String, Path, description = "The check id")),
    request_body = ResolveRequest,
    responses(
        (status = 200, description = "Resolved", body = CheckView),
        (status = 400, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such check", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already decided", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn resolve(
    State(app): State<App>,
    Path(id): Path<String>,
    Body(request): Body<ResolveRequest>,
) -> Result<Json<CheckView>, Problem> {
    if !plausible_id(&id) {
        return Err(check_not_found(&id));
    }
    Ok(Json(
        ops::resolve_by_hand(app.daemon.ledger(), &id, &request, now_jst()).await?,
    ))
}

/// Marks a decided check as claimed (請求済): its claim basis is final from now on.
#[utoipa::path(post, path = "/v1/checks/{id}/claimed", tag = "records",
    params(("id" = String, Path, description = "The check id")),
    responses(
        (status = 200, description = "Claimed", body = CheckView),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such check", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing decided yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn claimed(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<CheckView>, Problem> {
    if !plausible_id(&id) {
        return Err(check_not_found(&id));
    }
    Ok(Json(
        ops::mark_claimed(app.daemon.ledger(), &id, now_jst()).await?,
    ))
}

/// Records a document shown instead of a card (資格確認書, 保険証, マイナポータル, お知らせ)
/// after applying the document rules on the visit date.
#[utoipa::path(post, path = "/v1/documents", tag = "records",
    request_body = DocumentRequest,
    responses(
        (status = 200, description = "Recorded or refused (see `status`)", body = DocumentReport),
        (status = 400, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn record_document(
    State(app): State<App>,
    Body(request): Body<DocumentRequest>,
) -> Result<Json<DocumentReport>, Problem> {
    document(&app.daemon, &request).await.map(Json)
}

/// Records a document shown instead of the card (R7–R11), for the token API and the
/// reception page alike.
pub(super) async fn document(
    daemon: &Daemon,
    request: &DocumentRequest,
) -> Result<DocumentReport, Problem> {
    if let Some(id) = &request.check_id {
        ulid_id(id)?;
    }
    Ok(ops::record_document(
        daemon.ledger(),
        request,
        daemon.config().facility,
        daemon.settings(),
        now_jst(),
    )
    .await?)
}

/// 507: a check's capture could not be written (logged here, told to staff in `detail_ja`).
fn not_saved(e: &dyn std::fmt::Display, detail_ja: String) -> Problem {
    tracing::error!(error = %e, "capture not saved");
    Problem::new(
        StatusCode::INSUFFICIENT_STORAGE,
        "not-saved",
        "The check could not be saved",
        detail_ja,
    )
}

/// Checks a patient's qualification by the numbers on their insurance document, at once (the
/// receipt computer's way). When the qualification system cannot be reached the check is
/// recorded for 事後確認 (`status` `captured`) and its answer comes through the event stream.
#[utoipa::path(post, path = "/v1/insurance-checks", tag = "checks",
    request_body = NumbersCheckRequest,
    responses(
        (status = 200, description = "Answered, captured or refused (see `status`)", body = NumbersCheckReport),
        (status = 400, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "The capture could not be saved", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn check_by_numbers(
    State(app): State<App>,
    Body(request): Body<NumbersCheckRequest>,
) -> Result<Json<NumbersCheckReport>, Problem> {
    let query = request.query(
        now_jst(),
        format!("tsunagi-api-{}", crate::ledger::new_check_id()),
    )?;
    match app.daemon.check_by_numbers(&query).await {
        Ok(report) => Ok(Json(report)),
        Err(e) => Err(not_saved(&e, e.message_ja())),
    }
}

/// Asking for a reconcile pass now.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    /// Ask for every open check now, ignoring retry delays.
    #[serde(default)]
    pub force: bool,
}

/// What a reconcile pass did; `ran` is false when the line is down (nothing was asked).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReconcileReport {
    /// Whether the qualification system was asked.
    pub ran: bool,
    /// The pass's counts.
    pub pass: PassReport,
}

/// Runs a reconcile pass now (事後確認).
#[utoipa::path(post, path = "/v1/reconcile", tag = "checks",
    request_body = ReconcileRequest,
    responses(
        (status = 200, description = "The pass ran", body = ReconcileReport),
        (status = 400, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn reconcile(
    State(app): State<App>,
    Body(request): Body<ReconcileRequest>,
) -> Result<Json<ReconcileReport>, Problem> {
    match app.daemon.pass_owned(request.force).await {
        Ok(report) => Ok(Json(ReconcileReport {
            ran: report.is_some(),
            pass: report.unwrap_or_default(),
        })),
        Err(e) => {
            tracing::error!(error = %e, "reconcile pass failed");
            Err(Problem::internal(e.message_ja()))
        }
    }
}

/// The daemon's status: line, queue, overdue, store health, readers.
#[utoipa::path(get, path = "/v1/status", tag = "status",
    responses(
        (status = 200, description = "The status", body = Status),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many reads; retry after the given seconds", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn status(State(app): State<App>) -> Json<Status> {
    let mut s = app.daemon.status();
    s.updated_at = now_jst().to_rfc3339();
    Json(s)
}

/// This device's id and the paired devices, with how sync with each stands.
#[utoipa::path(get, path = "/v1/peers", tag = "sync",
    responses(
        (status = 200, description = "This device and its peers", body = crate::peer::SyncStatus),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn list_peers(State(app): State<App>) -> Json<crate::peer::SyncStatus> {
    Json(sync_status(&app))
}

fn sync_status(app: &App) -> crate::peer::SyncStatus {
    app.daemon.status().sync.unwrap_or_else(|| {
        let peers = crate::peer::book::load(&app.daemon.config().data_dir).unwrap_or_default();
        crate::peer::SyncStatus {
            device_id: app.daemon.ledger().store().device().id().to_string(),
            listening: None,
            peers: peers
                .iter()
                .map(crate::peer::PeerStatus::not_connected)
                .collect(),
            problem: Some(
                "端末間同期は動いていません（設定の [sync] を確認し、tsunagid を再起動してください）。"
                    .into(),
            ),
        }
    })
}

/// Pairs a device (or updates its name and address). The other device must pair this one
/// too before they sync.
#[utoipa::path(post, path = "/v1/peers", tag = "sync",
    request_body = crate::cli::peer::AddPeerRequest,
    responses(
        (status = 200, description = "Paired", body = crate::peer::SyncStatus),
        (status = 400, description = "Invalid id or address", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn add_peer(
    State(app): State<App>,
    Body(request): Body<crate::cli::peer::AddPeerRequest>,
) -> Result<Json<crate::peer::SyncStatus>, Problem> {
    let id =
        crate::cli::peer::parse_id(&request.id).map_err(|e| Problem::bad_request(e.message))?;
    let peer = crate::peer::book::Peer {
        id,
        name: request.name,
        addr: request.addr,
    };
    let result = match app.daemon.sync() {
        Some(sync) => sync.add_peer(peer).map(|_| ()),
        // Sync not running: saved for the next start.
        None => crate::peer::book::add(
            &app.daemon.config().data_dir,
            app.daemon.ledger().store().device().id(),
            peer,
        )
        .map(|_| ()),
    };
    match result {
        Ok(()) => Ok(Json(sync_status(&app))),
        Err(
            e @ (crate::peer::book::BookError::Itself | crate::peer::book::BookError::BadAddr(_)),
        ) => Err(Problem::bad_request(e.message_ja())),
        Err(e) => Err(Problem::internal(e.message_ja())),
    }
}

/// Unpairs a device: refused from its next connection, its connection closed now.
#[utoipa::path(delete, path = "/v1/peers/{id}", tag = "sync",
    params(("id" = String, Path, description = "The device id")),
    responses(
        (status = 200, description = "Whether it was paired", body = crate::cli::peer::RemovePeerAnswer),
        (status = 400, description = "Invalid id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn remove_peer(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<crate::cli::peer::RemovePeerAnswer>, Problem> {
    let id = crate::cli::peer::parse_id(&id).map_err(|e| Problem::bad_request(e.message))?;
    let result = match app.daemon.sync() {
        Some(sync) => sync.remove_peer(&id),
        None => crate::peer::book::remove(&app.daemon.config().data_dir, &id),
    };
    result
        .map(|removed| Json(crate::cli::peer::RemovePeerAnswer { removed }))
        .map_err(|e| Problem::internal(e.message_ja()))
}

/// One entry of the event stream.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamEvent {
    /// `check_captured`, `check_answered`, `check_resolved`, `check_updated`, `line` or
    /// `resync` (events were missed: read the lists again).
    pub kind: String,
    /// The check, for check events.
    pub check_id: Option<String>,
    /// The line's state, for `line` events.
    pub line: Option<String>,
}

impl StreamEvent {
    fn of(e: &DaemonEvent) -> Self {
        match e {
            DaemonEvent::Check(c) => StreamEvent {
                kind: match c.kind {
                    "captured" if c.offline => "check_captured",
                    "answered" => "check_answered",
                    "resolved" => "check_resolved",
                    _ => "check_updated",
                }
                .into(),
                check_id: Some(c.check_id.clone()),
                line: None,
            },
            DaemonEvent::Resync => StreamEvent {
                kind: "resync".into(),
                check_id: None,
                line: None,
            },
            DaemonEvent::Line(state) => StreamEvent {
                kind: "line".into(),
                check_id: None,
                line: serde_json::to_value(state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string)),
            },
        }
    }
}

/// Server-sent events of changes: each `data` is one [`StreamEvent`] as JSON, the SSE event
/// name is its `kind`.
#[utoipa::path(get, path = "/v1/events", tag = "status",
    responses(
        (status = 200, description = "The event stream", body = StreamEvent, content_type = "text/event-stream"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many reads; retry after the given seconds", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn events(State(app): State<App>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = changes(&app.daemon).map(|e| Ok(sse_event(&e)));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// The daemon's changes as stream entries (a missed stretch becomes `resync`), ending when
/// the daemon stops so a graceful shutdown is not held open by a listener. The token API's
/// stream and the reception page's are both made of it.
pub(super) fn changes(daemon: &Daemon) -> impl Stream<Item = StreamEvent> + Send + 'static {
    let changes = BroadcastStream::new(daemon.subscribe()).map(|item| {
        let e = match item {
            Ok(e) => StreamEvent::of(&e),
            Err(_) => StreamEvent {
                kind: "resync".into(),
                check_id: None,
                line: None,
            },
        };
        Some(e)
    });
    let stop = WatchStream::new(daemon.stopping()).filter_map(|s| s.then_some(None));
    changes
        .merge(stop)
        .take_while(Option::is_some)
        .filter_map(|e| e)
}

/// One entry as an SSE event named by its kind.
pub(super) fn sse_event(e: &StreamEvent) -> Event {
    Event::default()
        .event(e.kind.clone())
        .json_data(e)
        .unwrap_or_else(|_| Event::default().event("resync"))
}

/// A client's challenge to the daemon (本人確認): a random nonce, hex.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IdentityQuery {
    /// 32 to 128 hex digits the client chose at random.
    pub nonce: String,
}

/// The daemon's answer to a client's challenge.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Identity {
    /// Always `tsunagid`.
    pub service: String,
    /// HMAC-SHA-256, keyed by the API token, of `tsunagid-identity\0` and the nonce's bytes,
    /// hex: proves the daemon holds the token without revealing it.
    pub proof: String,
}

/// Proves this is the tsunagid that holds the API token, before a client sends the token or a
/// PIN (a program squatting on the port while tsunagid is down cannot answer). No token.
#[utoipa::path(get, path = "/v1/identity", tag = "status",
    params(IdentityQuery),
    responses(
        (status = 200, description = "The proof", body = Identity),
        (status = 400, description = "The nonce is not 32 to 128 hex digits", body = Problem, content_type = "application/problem+json"),
    ))]
async fn identity(
    State(app): State<App>,
    query: Result<Query<IdentityQuery>, QueryRejection>,
) -> Result<Json<Identity>, Problem> {
    let Query(q) = query.map_err(|r| query_problem(&r))?;
    let nonce = hex::decode(&q.nonce)
        .ok()
        .filter(|n| (16..=64).contains(&n.len()))
        .ok_or_else(|| {
            Problem::bad_request("nonce は16進数32〜128桁で指定してください。").field("nonce")
        })?;
    Ok(Json(Identity {
        service: "tsunagid".into(),
        proof: super::token::proof(&app.token, &nonce),
    }))
}

async fn openapi() -> impl IntoResponse {
    Json(super::openapi::document())
}
