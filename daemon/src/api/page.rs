//! The reception page (受付画面): the counter's whole check workflow in the browser, served by
//! tsunagid from assets built into the binary (no CDN, no network), beside the token API.
//!
//! # Sign-in on a shared counter PC
//!
//! The API token must never reach the browser (anyone at the counter PC could read it from the
//! page). Instead `tsunagi open` — which holds the token and has checked the daemon's identity
//! proof — asks for a one-time code (`POST /v1/page/codes`) and opens
//! `/page/signin?code=…`; that request spends the code and sets a session cookie:
//!
//! - codes: 256 random bits, single use, valid [`CODE_TTL`], in memory only;
//! - sessions: 256 random bits, `HttpOnly; SameSite=Strict; Path=/`, in memory only (a
//!   restarted daemon signs everyone out), ended after [`SESSION_IDLE`] without a request;
//! - both are kept by their SHA-256, so a lookup's timing says nothing about the secret and a
//!   memory dump holds no usable cookie;
//! - the cookie's name carries the port: cookies are not scoped by port, so two daemons on one
//!   machine (a test run, a second clinic profile) never overwrite each other's session.
//!
//! # What every page request passes
//!
//! - a `Host` that names this daemon (`127.0.0.1`, `localhost` or the bound address, with its
//!   port), so a DNS-rebinding page cannot talk to it under another name;
//! - the session cookie (everything but the sign-in itself): refused with 401, a Japanese
//!   HTML page saying how to sign in for the page, a problem document for `/page/api/…`;
//! - on every state-changing request, an `Origin` equal to the page's own origin, else 403
//!   (SameSite=Strict already keeps the cookie off cross-site requests; the Origin check
//!   covers same-site ones and browsers that do not send SameSite);
//! - every answer carries `Content-Security-Policy: default-src 'self'` (the script is its
//!   own asset file, nothing inline), `X-Content-Type-Options: nosniff` and
//!   `Cache-Control: no-store` (results are personal data: not kept in the browser's cache).
//!
//! The page's JSON and its event stream call the same [`Daemon`] and [`crate::ops`]
//! functions as the token API (`routes::run_check`, `routes::changes`): there is no second
//! implementation of a check.
//!
//! Read-aloud (R21, [`crate::speech`]): a check's answer carries a `speech_id`; the page asks
//! `/page/api/speech/{id}` for the WAV of what it shows. The words are the daemon's, kept under
//! a random id for half an hour: the page never chooses what is synthesised.
//!
//! The 申立書 form, the month's history and the document helper are in `page_desk.rs`,
//! behind the same checks.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_stream::wrappers::WatchStream;
use tokio_stream::{Stream, StreamExt};
use utoipa::ToSchema;

use super::problem::Problem;
use super::routes::{self, Body, CheckStartRequest};
use crate::card::reader::ReaderInfo;
use crate::check::health::LineState;
use crate::check::now_jst;
use crate::service::Daemon;
use crate::speech::{ReadAloud, ReadAloudStatus, Scripts};
use crate::view::{CheckPhase, CheckReport, ListState};

/// How long a sign-in code can be used.
pub const CODE_TTL: Duration = Duration::from_secs(60);
/// A session unused this long is ended (a counter day with a long lunch break).
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 60 * 60);
/// Codes kept at most: a client asking in a loop pushes out its own oldest codes, never
/// grows the daemon's memory.
const MAX_CODES: usize = 32;
/// Sessions kept at most; the one idle longest goes first.
const MAX_SESSIONS: usize = 64;

/// The page's assets, built into the binary.
mod assets {
    pub const INDEX: &str = include_str!("../../assets/page/index.html");
    pub const SCRIPT: &str = include_str!("../../assets/page/app.js");
    pub const STYLE: &str = include_str!("../../assets/page/style.css");
}

type Secret = [u8; 32];
type Key = [u8; 32];

fn key_of(secret: &str) -> Key {
    Sha256::digest(secret.as_bytes()).into()
}

fn new_secret() -> String {
    let mut bytes: Secret = [0; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The page's sign-in state: outstanding codes and live sessions, in memory only.
pub struct Pages {
    /// Code key → when it stops being valid.
    codes: Mutex<HashMap<Key, Instant>>,
    /// Session key → last use.
    sessions: Mutex<HashMap<Key, Instant>>,
    cookie: String,
    /// `Host` values that name this daemon.
    hosts: Vec<String>,
    /// The origin `tsunagi open` sends the browser to.
    origin: String,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys only exist hashed, but their number is all a log needs.
        f.debug_struct("Pages")
            .field("codes", &lock(&self.codes).len())
            .field("sessions", &lock(&self.sessions).len())
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pages {
    /// Sign-in state for a daemon listening on `bound`.
    pub fn new(bound: SocketAddr) -> Self {
        let port = bound.port();
        let mut hosts = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ];
        // An unspecified address (allow_remote on 0.0.0.0) names no host: the page is then
        // reached through loopback only.
        if !bound.ip().is_unspecified() && !hosts.contains(&bound.to_string()) {
            hosts.push(bound.to_string());
        }
        let origin_host = match bound.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => format!("127.0.0.1:{port}"),
            IpAddr::V6(ip) if ip.is_unspecified() => format!("[::1]:{port}"),
            _ => bound.to_string(),
        };
        Self {
            codes: Mutex::default(),
            sessions: Mutex::default(),
            cookie: format!("tsunagi_page_{port}"),
            hosts,
            origin: format!("http://{origin_host}"),
        }
    }

    /// A new one-time code valid until `now + CODE_TTL`.
    pub fn issue_code(&self, now: Instant) -> String {
        let code = new_secret();
        let mut codes = lock(&self.codes);
        codes.retain(|_, until| *until > now);
        while codes.len() >= MAX_CODES {
            let Some(oldest) = codes.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k) else {
                break;
            };
            codes.remove(&oldest);
        }
        codes.insert(key_of(&code), now + CODE_TTL);
        code
    }

    /// Spends `code`: a new session's cookie value when the code was issued, unused and
    /// unexpired. A code is gone after its first use, whatever the outcome.
    pub fn redeem(&self, code: &str, now: Instant) -> Option<String> {
        let until = lock(&self.codes).remove(&key_of(code))?;
        if until <= now {
            return None;
        }
        let session = new_secret();
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, last| now.saturating_duration_since(*last) < SESSION_IDLE);
        while sessions.len() >= MAX_SESSIONS {
            let Some(idlest) = sessions.iter().min_by_key(|(_, l)| **l).map(|(k, _)| *k) else {
                break;
            };
            sessions.remove(&idlest);
        }
        sessions.insert(key_of(&session), now);
        Some(session)
    }

    /// Whether `session` is live at `now`; a live session's idle time starts again.
    pub fn touch(&self, session: &str, now: Instant) -> bool {
        let mut sessions = lock(&self.sessions);
        let key = key_of(session);
        match sessions.get_mut(&key) {
            Some(last) if now.saturating_duration_since(*last) < SESSION_IDLE => {
                *last = now;
                true
            }
            Some(_) => {
                sessions.remove(&key);
                false
            }
            None => false,
        }
    }

    /// The session cookie's value in a request's `Cookie` headers.
    fn session_in<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.cookie)
            .map(|(_, value)| value.trim())
    }

    fn set_cookie(&self, session: &str) -> String {
        format!(
            "{}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            self.cookie,
            SESSION_IDLE.as_secs()
        )
    }

    /// The request's `Host`, when it names this daemon.
    fn own_host<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        let host = headers.get(header::HOST)?.to_str().ok()?;
        self.hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
            .then_some(host)
    }
}

/// A one-time sign-in code for the reception page.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PageCode {
    /// The code: 64 hex digits, usable once.
    pub code: String,
    /// The page's sign-in address with the code, for a browser on this machine.
    pub url: String,
    /// Seconds the code stays usable.
    pub expires_in_secs: u64,
}

impl std::fmt::Debug for PageCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The code signs a browser in: never in a log.
        f.debug_struct("PageCode")
            .field("expires_in_secs", &self.expires_in_secs)
            .finish_non_exhaustive()
    }
}

/// Makes a one-time code that signs a browser in to the reception page (`tsunagi open` uses
/// it): single use, valid for 60 seconds, kept in memory only.
#[utoipa::path(post, path = "/v1/page/codes", tag = "page",
    responses(
        (status = 200, description = "A new code", body = PageCode),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(super) async fn make_code(State(pages): State<Arc<Pages>>) -> Json<PageCode> {
    let code = pages.issue_code(Instant::now());
    let url = format!("{}/page/signin?code={code}", pages.origin);
    Json(PageCode {
        code,
        url,
        expires_in_secs: CODE_TTL.as_secs(),
    })
}

#[derive(Debug, Clone)]
struct PageApp {
    daemon: Daemon,
    pages: Arc<Pages>,
    speech: Arc<ReadAloud>,
    scripts: Arc<Scripts>,
}

/// The desk routes (`page_desk.rs`) need the daemon only.
impl axum::extract::FromRef<PageApp> for Daemon {
    fn from_ref(app: &PageApp) -> Daemon {
        app.daemon.clone()
    }
}

/// The page's routes, their session and origin checks and their headers.
/// Reads are paced with the token API's `pacing`, after the session and origin checks: a
/// request that is refused spends nothing of the shared budget.
pub(super) fn router(
    daemon: Daemon,
    pages: Arc<Pages>,
    pacing: Arc<super::pace::Pacing>,
) -> Router {
    let speech = Arc::new(ReadAloud::new(daemon.config().read_aloud.clone()));
    let app = PageApp {
        daemon,
        pages,
        speech,
        scripts: Arc::default(),
    };
    let signed_in = Router::new()
        .route("/page/", get(index))
        .route("/page/app.js", get(script))
        .route("/page/style.css", get(style))
        .route("/page/api/status", get(status))
        .route("/page/api/pending", get(pending))
        .route("/page/api/checks", post(start_check))
        .route("/page/api/events", get(events))
        .route("/page/api/speech/{id}", get(speak))
        // The 申立書, the month's history and the document helper (page_desk.rs).
        .merge(super::page_desk::routes())
        .route_layer(middleware::from_fn_with_state(
            pacing,
            super::pace::pace_reads,
        ))
        // Added last, so it runs first: a cross-origin write is refused before anything else.
        .route_layer(middleware::from_fn_with_state(app.clone(), require_session))
        .route_layer(middleware::from_fn_with_state(app.clone(), same_origin));
    Router::new()
        .route("/page", get(|| async { see_other("/page/") }))
        .route("/page/signin", get(signin))
        .merge(signed_in)
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// The `Host` check and the headers every page answer carries.
async fn guard(State(app): State<PageApp>, request: Request, next: Next) -> Response {
    let mut response = if app.pages.own_host(request.headers()).is_some() {
        next.run(request).await
    } else {
        tracing::warn!(path = %request.uri().path(), "page request for another host refused");
        (
            StatusCode::MISDIRECTED_REQUEST,
            html_page(
                "この画面は開けません",
                "この受付画面は、この端末の tsunagi open で開いてください。",
            ),
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The sign-in address holds a code: never passed on to another site.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Refuses a request without a live session: 401 with a Japanese page for pages, a problem
/// document for the page's API.
async fn require_session(State(app): State<PageApp>, request: Request, next: Next) -> Response {
    let live = app
        .pages
        .session_in(request.headers())
        .is_some_and(|s| app.pages.touch(s, Instant::now()));
    if live {
        return next.run(request).await;
    }
    tracing::info!(path = %request.uri().path(), "page request without a session refused");
    if request.uri().path().starts_with("/page/api/") {
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "no-session",
            "Not signed in to the reception page",
            "受付画面にサインインしていません。この端末で tsunagi open を実行して開き直してください。",
        )
        .into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        html_page(
            "受付画面にサインインしてください",
            "この受付画面を使うには、この端末で「tsunagi open」を実行してください（トレイのメニューからも開けます）。ブラウザーが受付画面を開き、自動でサインインします。",
        ),
    )
        .into_response()
}

/// A state-changing request must come from the page itself: `Origin` equal to
/// `http://<Host>`.
async fn same_origin(State(app): State<PageApp>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let own = app
        .pages
        .own_host(headers)
        .map(|host| format!("http://{host}"));
    match (origin, own) {
        (Some(o), Some(own)) if o.eq_ignore_ascii_case(&own) => next.run(request).await,
        _ => {
            tracing::warn!(path = %request.uri().path(), "page write from another origin refused");
            Problem::new(
                StatusCode::FORBIDDEN,
                "cross-origin",
                "Request from another origin",
                "受付画面以外から送られた操作は受け付けません。受付画面から操作してください。",
            )
            .into_response()
        }
    }
}

fn see_other(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

/// A small Japanese page with no script and no style (the stylesheet needs a session).
fn html_page(title: &str, message: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} — つなぎ</title></head>\
         <body><main><h1>{title}</h1><p>{message}</p></main></body></html>\n"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// The sign-in link's query.
#[derive(Debug, Deserialize)]
struct SigninQuery {
    code: Option<String>,
}

async fn signin(
    State(app): State<PageApp>,
    query: Result<Query<SigninQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let code = query.ok().and_then(|Query(q)| q.code);
    let session = code
        .as_deref()
        .filter(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|c| app.pages.redeem(c, Instant::now()));
    match session {
        Some(session) => {
            tracing::info!("reception page signed in");
            let mut response = see_other("/page/");
            if let Ok(v) = HeaderValue::from_str(&app.pages.set_cookie(&session)) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        None => {
            tracing::info!("reception page sign-in with an unknown, used or expired code");
            (
                StatusCode::UNAUTHORIZED,
                html_page(
                    "サインインできませんでした",
                    "この入場用のリンクは使用済みか、期限（60秒）が切れています。この端末でもう一度「tsunagi open」を実行してください。",
                ),
            )
                .into_response()
        }
    }
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        assets::INDEX,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        assets::SCRIPT,
    )
        .into_response()
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        assets::STYLE,
    )
        .into_response()
}

/// What the page shows of the daemon's state.
#[derive(Debug, Serialize)]
struct PageStatus {
    line: LineState,
    line_label_ja: &'static str,
    queue: usize,
    overdue: usize,
    readers: Vec<ReaderInfo>,
    readers_problem: Option<String>,
    read_aloud: ReadAloudStatus,
}

async fn status(State(app): State<PageApp>) -> Json<PageStatus> {
    let s = app.daemon.status();
    Json(PageStatus {
        line: s.line,
        line_label_ja: s.line.label_ja(),
        queue: s.queue,
        overdue: s.overdue,
        readers: s.readers,
        readers_problem: s.readers_problem,
        read_aloud: app.speech.status(),
    })
}

/// One check waiting for 事後確認, as the page lists it: no numbers, no birth date — the
/// list is read at a counter where patients stand.
#[derive(Debug, Serialize)]
struct PendingItem {
    id: String,
    visit_date: chrono::NaiveDate,
    due: Option<chrono::NaiveDate>,
    overdue: bool,
    phase: CheckPhase,
    phase_label_ja: &'static str,
    captured_offline: bool,
    next_step_ja: Option<String>,
}

#[derive(Debug, Serialize)]
struct PendingList {
    checks: Vec<PendingItem>,
}

async fn pending(State(app): State<PageApp>) -> Result<Json<PendingList>, Problem> {
    let today = now_jst().date_naive();
    let checks = crate::ops::list(app.daemon.ledger(), ListState::Pending, None, today).await?;
    Ok(Json(PendingList {
        checks: checks
            .into_iter()
            .map(|c| PendingItem {
                phase_label_ja: c.phase.label_ja(),
                id: c.id,
                visit_date: c.visit_date,
                due: c.due,
                overdue: c.overdue,
                phase: c.phase,
                captured_offline: c.captured_offline,
                next_step_ja: c.next_step_ja,
            })
            .collect(),
    }))
}

/// A check's answer as the page gets it: the report, and the id its read-aloud is asked by.
#[derive(Debug, Serialize)]
struct PageReport {
    #[serde(flatten)]
    report: CheckReport,
    speech_id: String,
}

async fn start_check(
    State(app): State<PageApp>,
    Body(request): Body<CheckStartRequest>,
) -> Result<Json<PageReport>, Problem> {
    let report = routes::run_check(&app.daemon, request).await?;
    let speech_id = app
        .scripts
        .keep(crate::speech::script::sentences(&report), Instant::now());
    Ok(Json(PageReport { report, speech_id }))
}

/// The WAV of a shown result, read aloud (R21).
async fn speak(State(app): State<PageApp>, Path(id): Path<String>) -> Response {
    let Some(sentences) = app.scripts.get(&id, Instant::now()) else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "no-such-result",
            "No result to read aloud",
            "読み上げる結果が見つかりません（30分を過ぎた結果は読み上げられません）。もう一度確認してください。",
        )
        .into_response();
    };
    match app.speech.speak(&sentences).await {
        Ok(sound) => ([(header::CONTENT_TYPE, "audio/wav")], sound).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "read-aloud failed");
            let status = match e {
                crate::speech::SpeakError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Problem::new(status, "read-aloud", "Read-aloud failed", e.message_ja()).into_response()
        }
    }
}

/// What the page's stream carries: the daemon's changes, and the readers whenever a card is
/// placed or taken (pcscd is watched by the daemon; the page never polls).
enum PageEvent {
    Change(routes::StreamEvent),
    Readers(Vec<ReaderInfo>),
}

async fn events(State(app): State<PageApp>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Told when they change (the daemon watches pcscd); the first is what they are now.
    let readers =
        WatchStream::new(app.daemon.watch_readers()).map(|now| Some(PageEvent::Readers(now)));
    let stop = WatchStream::new(app.daemon.stopping()).filter_map(|s| s.then_some(None));
    let stream = routes::changes(&app.daemon)
        .map(|e| Some(PageEvent::Change(e)))
        .merge(readers)
        .merge(stop)
        .take_while(Option::is_some)
        .filter_map(|e| e)
        .map(|e| {
            Ok(match e {
                PageEvent::Change(e) => routes::sse_event(&e),
                PageEvent::Readers(readers) => Event::default()
                    .event("readers")
                    .json_data(serde_json::json!({ "readers": readers }))
                    .unwrap_or_else(|_| Event::default().event("resync")),
            })
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pages() -> Pages {
        Pages::new(SocketAddr::from(([127, 0, 0, 1], 8947)))
    }

    #[test]
    fn a_code_signs_in_once_and_only_within_its_minute() {
        let p = pages();
        let t0 = Instant::now();
        let code = p.issue_code(t0);
        assert_eq!(code.len(), 64, "256 bits, hex");
        let session = p.redeem(&code, t0 + Duration::from_secs(59)).unwrap();
        assert_eq!(session.len(), 64);
        assert_ne!(session, code);
        // It is spent by its first use.
        assert!(p.redeem(&code, t0 + Duration::from_secs(59)).is_none());
        // Expired, and spent by the failed try as well.
        let late = p.issue_code(t0);
        assert!(p.redeem(&late, t0 + CODE_TTL).is_none());
        assert!(p.redeem(&late, t0).is_none());
        // Made up.
        assert!(p.redeem(&"0".repeat(64), t0).is_none());
    }

    #[test]
    fn a_session_lives_while_used_and_ends_after_twelve_idle_hours() {
        let p = pages();
        let t0 = Instant::now();
        let s = p.redeem(&p.issue_code(t0), t0).unwrap();
        let hour = Duration::from_secs(3600);
        // Used every 11 hours, it lives on.
        assert!(p.touch(&s, t0 + 11 * hour));
        assert!(p.touch(&s, t0 + 22 * hour));
        // Left for 12 hours, it is gone for good.
        assert!(!p.touch(&s, t0 + 34 * hour));
        assert!(!p.touch(&s, t0 + 22 * hour));
        assert!(!p.touch(&"f".repeat(64), t0));
    }

    #[test]
    fn codes_and_sessions_are_bounded() {
        let p = pages();
        let t0 = Instant::now();
        let first = p.issue_code(t0);
        for i in 0..MAX_CODES {
            p.issue_code(t0 + Duration::from_millis(i as u64 + 1));
        }
        assert_eq!(lock(&p.codes).len(), MAX_CODES);
        // The oldest code was pushed out.
        assert!(p.redeem(&first, t0 + Duration::from_secs(1)).is_none());
        let first_session = p.redeem(&p.issue_code(t0), t0).unwrap();
        for i in 0..MAX_SESSIONS {
            let at = t0 + Duration::from_millis(i as u64 + 1);
            p.redeem(&p.issue_code(at), at).unwrap();
        }
        assert_eq!(lock(&p.sessions).len(), MAX_SESSIONS);
        assert!(!p.touch(&first_session, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn the_cookie_is_found_by_its_port_named_name_only() {
        let p = pages();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("tsunagi_page_9999=aa; tsunagi_page_8947=bb ; x=y"),
        );
        assert_eq!(p.session_in(&h), Some("bb"));
        let set = p.set_cookie("cc");
        for part in [
            "tsunagi_page_8947=cc",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
        ] {
            assert!(set.contains(part), "{set}");
        }
    }

    #[test]
    fn only_this_daemons_host_names_pass() {
        let p = pages();
        let with = |host: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static(host));
            p.own_host(&h).is_some()
        };
        assert!(with("127.0.0.1:8947"));
        assert!(with("localhost:8947"));
        assert!(with("LOCALHOST:8947"));
        assert!(!with("127.0.0.1:8948"));
        assert!(!with("evil.example:8947"));
        assert_eq!(p.origin, "http://127.0.0.1:8947");
        let any = Pages::new(SocketAddr::from(([0, 0, 0, 0], 8947)));
        assert_eq!(any.origin, "http://127.0.0.1:8947");
        assert!(!any.hosts.iter().any(|h| h.starts_with("0.0.0.0")));
    }
}
