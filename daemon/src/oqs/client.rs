//! HTTP side of the client: login, token cache, the two lookups, status handling.
//!
//! Two things keep a reception check at one round trip even while 事後確認 runs:
//!
//! * **The session is kept warm.** [`OqsClient::keep_session`] logs in before the cached id
//!   token gets old, so a query finds a token and sends only its search. Without it, the first
//!   query after the token's 25 minutes pays for a login too.
//! * **Reception goes first.** A handle from [`OqsClient::background`] shares the token cache and
//!   the connection pool but waits, before it sends, while any reception query is in flight,
//!   and only a bounded number of background queries go at once (see `lane`).
//!
//! Every answer is read as a stream under a size limit ([`DEFAULT_ANSWER_LIMIT`], 1 MiB): a
//! qualification answer is a few kilobytes, and reading whatever arrives into memory let one
//! 200 MB answer take the CLI to 417 MB. An answer over the limit is refused as malformed as
//! soon as its `Content-Length`, or its running length, passes the limit; the connection is
//! dropped rather than drained.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use tokio::sync::{watch, Notify};

use super::classify::Asked;
use super::codes::ResultCodes;
use super::lane::{Lane, Lanes};
use super::message::{
    CardAuthentication, CardBody, InsuranceBody, LoginAnswer, LoginRequest, RequestEnvelope,
    RequestHeader, RequestMsg, SearchInfo,
};
use super::{
    classify, insurer_from_wire, Answer, CardQuery, InsuranceQuery, QueryError, CONFIG_ERROR_CODE,
};
use crate::domain::IdentityMethod;

const LOGIN_PATH: &str = "/oqs-api-pro/MSA12020/ILI12020SV01/auth";
const SEARCH_PATH: &str = "/oqs-api-pro/MSA01030/ILI01030SV01/search";
const CARD_SEARCH_PATH: &str = "/tsunagi-ext/v1/card-search";
const PROCESSING_HEADER: &str = "x-sim-processing-micros";
const JSON: &str = "application/json;charset=UTF-8";
/// The id token lives 30 minutes; renewing a little early avoids a 401 round trip at the edge.
const TOKEN_LIFETIME: Duration = Duration::from_secs(25 * 60);
/// Default age at which [`OqsClient::keep_session`] logs in again: 20 of the token's 25 minutes,
/// leaving five minutes (several retries) for a login that fails.
pub const DEFAULT_SESSION_RENEWAL: Duration = Duration::from_secs(20 * 60);
/// Default number of background-lane queries in flight at once (the reconciler's concurrency).
pub const DEFAULT_BACKGROUND_LIMIT: usize = 8;
/// Shortest renewal age accepted: anything shorter would log in back to back.
const MIN_SESSION_RENEWAL: Duration = Duration::from_millis(100);
/// Longest renewal age accepted: the keeper renews at least this long before the token's end.
const RENEWAL_MARGIN: Duration = Duration::from_secs(30);
/// First wait after a failed renewal; doubled on each failure up to [`RENEW_RETRY_MAX`].
const RENEW_RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between renewal attempts while the system refuses or is unreachable.
const RENEW_RETRY_MAX: Duration = Duration::from_secs(60);
/// Sentinel for "no processing time recorded" in the atomic.
const NO_MICROS: u64 = u64::MAX;
/// Default limit on the size of one answer body: 1 MiB, some hundred times a real answer (a
/// 複数該当 answer with a dozen records is still far below it).
pub const DEFAULT_ANSWER_LIMIT: usize = 1024 * 1024;

/// Where and as whom to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OqsConfig {
    /// Base URL, e.g. `http://127.0.0.1:8931` (paths are appended).
    pub base_url: String,
    /// 医療機関コード, 10 digits.
    pub institution_code: String,
    /// Budget of one whole exchange (login if needed + search).
    pub timeout: Duration,
}

/// Client of the qualification system. Cheap to clone: clones share the token cache, the
/// connection pool and the lanes.
///
/// A client from [`OqsClient::new`] (and its clones) is a *reception* handle: its queries never
/// wait for anything but the line. [`OqsClient::background`] gives a handle of the same client
/// whose queries let reception go first.
#[derive(Debug, Clone)]
pub struct OqsClient {
    inner: Arc<Inner>,
    lanes: Arc<Lanes>,
    lane: Lane,
    renew_after: Duration,
    codes: Arc<ResultCodes>,
    answer_limit: usize,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    institution_code: String,
    timeout: Duration,
    token: Mutex<Option<CachedToken>>,
    /// Signalled when a token is found stale by the server and forgotten, so the keeper logs in
    /// at once instead of at its next planned renewal.
    token_lost: Notify,
    last_micros: AtomicU64,
    /// Every answer read, for whoever follows them (the folder interface's result files).
    observed: tokio::sync::broadcast::Sender<Arc<Observed>>,
}

/// An answer the system gave (照会結果), as followers of [`OqsClient::observe`] see it. Holds
/// personal data: kept in memory only, never logged (`Debug` names no person).
#[derive(Clone)]
pub struct Observed {
    /// The caller's correlation id the query carried (`ArbitraryFileIdentifier`).
    pub file_id: String,
    /// Asked with the My Number card (else with insurance data).
    pub by_card: bool,
    /// The visit date asked about.
    pub visit_date: chrono::NaiveDate,
    /// The answer.
    pub answer: Answer,
}

impl fmt::Debug for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observed")
            .field("file_id", &self.file_id)
            .field("by_card", &self.by_card)
            .finish_non_exhaustive()
    }
}

/// Answers a slow follower may fall behind by before it misses some (it is told how many).
const OBSERVED_BACKLOG: usize = 1024;

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a credential: never printed.
        f.debug_struct("OqsClient")
            .field("base", &self.base)
            .field("institution_code", &self.institution_code)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct CachedToken {
    id_token: String,
    obtained: Instant,
}

/// One HTTP answer, read completely.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl OqsClient {
    /// Checks the configuration and builds the client (no network traffic).
    pub fn new(config: OqsConfig) -> Result<Self, QueryError> {
        let invalid = |detail: String| QueryError::Rejected {
            code: CONFIG_ERROR_CODE.to_string(),
            message: detail,
        };
        let url = reqwest::Url::parse(&config.base_url)
            .map_err(|e| invalid(format!("base URL {:?}: {e}", config.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(format!(
                "base URL {:?} is not an http(s) URL",
                config.base_url
            )));
        }
        let code = &config.institution_code;
        if code.len() != 10 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(format!(
                "institution code {code:?} is not 10 digits"
            )));
        }
        if config.timeout.is_zero() {
            return Err(invalid("timeout is zero".to_string()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .build()
            .map_err(|e| invalid(format!("http client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base: config.base_url.trim_end_matches('/').to_string(),
                institution_code: config.institution_code,
                timeout: config.timeout,
                token: Mutex::new(None),
                token_lost: Notify::new(),
                last_micros: AtomicU64::new(NO_MICROS),
                observed: tokio::sync::broadcast::channel(OBSERVED_BACKLOG).0,
            }),
            lanes: Arc::new(Lanes::new(DEFAULT_BACKGROUND_LIMIT)),
            lane: Lane::Reception,
            renew_after: DEFAULT_SESSION_RENEWAL,
            codes: Arc::new(ResultCodes::reference()),
            answer_limit: DEFAULT_ANSWER_LIMIT,
        })
    }

    /// Sets what the system's result codes mean (default [`ResultCodes::reference`]): codes
    /// outside the reference's catalogue are settings, not constants of the classifier.
    pub fn with_result_codes(mut self, codes: ResultCodes) -> Self {
        self.codes = Arc::new(codes);
        self
    }

    /// Sets the largest answer body accepted, in bytes (default [`DEFAULT_ANSWER_LIMIT`], at
    /// least 4 KiB). A larger answer is refused as [`QueryError::Malformed`].
    pub fn with_answer_limit(mut self, bytes: usize) -> Self {
        self.answer_limit = bytes.max(4096);
        self
    }

    /// Sets the age at which [`OqsClient::keep_session`] logs in again (default
    /// [`DEFAULT_SESSION_RENEWAL`]). Clamped to between 100 ms and 30 s before the token's
    /// 25 minutes are up. Only the keeper reads it; queries use a token until its 25 minutes.
    pub fn with_session_renewal(mut self, after: Duration) -> Self {
        self.renew_after = after.clamp(MIN_SESSION_RENEWAL, TOKEN_LIFETIME - RENEWAL_MARGIN);
        self
    }

    /// Sets how many background-lane queries may be in flight at once (default
    /// [`DEFAULT_BACKGROUND_LIMIT`], at least 1).
    ///
    /// Call it right after [`OqsClient::new`], before cloning or taking a background handle:
    /// it gives this handle new lanes, and handles made earlier keep the old ones (their
    /// reception queries would no longer hold this handle's background queries back).
    pub fn with_background_limit(mut self, limit: usize) -> Self {
        self.lanes = Arc::new(Lanes::new(limit));
        self
    }

    /// A background-lane handle of the same client, for 事後確認 and anything else no patient
    /// waits for. It shares the token cache, the connection pool and the lanes.
    ///
    /// Its [`query_by_card`](Self::query_by_card) and
    /// [`query_by_insurance`](Self::query_by_insurance) first take one of the background slots
    /// (see [`with_background_limit`](Self::with_background_limit)), then wait until no
    /// reception query of this client is in flight, and only then start; the timeout covers the
    /// exchange, not that wait. A reception query that starts later does not stop a background
    /// query already sent. [`probe`](Self::probe) and the session keeper are never held back.
    pub fn background(&self) -> OqsClient {
        OqsClient {
            lane: Lane::Background,
            ..self.clone()
        }
    }

    /// Whether this is a background-lane handle.
    pub fn is_background(&self) -> bool {
        self.lane == Lane::Background
    }

    /// Reception queries of this client in flight now.
    pub fn reception_in_flight(&self) -> usize {
        self.lanes.reception_in_flight()
    }

    /// Background slots of this client taken now: queries in flight plus those holding a slot
    /// while they wait for reception to be idle.
    pub fn background_in_flight(&self) -> usize {
        self.lanes.background_in_flight()
    }

    /// How old the cached session (id token) is, or `None` when there is none usable: never
    /// logged in, forgotten after the server refused it, or past its 25 minutes.
    pub fn session_age(&self) -> Option<Duration> {
        let slot = self.inner.token.lock().ok()?;
        slot.as_ref()
            .map(|t| t.obtained.elapsed())
            .filter(|age| *age < TOKEN_LIFETIME)
    }

    /// Keeps the session warm until `shutdown` turns true (or its sender is dropped): logs in
    /// whenever there is no usable token or the token is older than the renewal age (see
    /// [`with_session_renewal`](Self::with_session_renewal)), so queries find a token and cost
    /// one round trip. A failed login is logged (never the token) and retried after 1 s,
    /// doubling up to 60 s, or after the server's `Retry-After` if longer; the old token, while
    /// it lasts, keeps serving queries meanwhile.
    ///
    /// Run one per client, on its own task, e.g.
    /// `tokio::spawn({ let c = client.clone(); async move { c.keep_session(rx).await } })`.
    ///
    /// Cancel safe: dropping the future abandons a login in flight; the token cache is written
    /// only with a complete answer.
    pub async fn keep_session(&self, mut shutdown: watch::Receiver<bool>) {
        let mut retry = RENEW_RETRY_FIRST;
        let mut failing = false;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let due_in = self
                .session_age()
                .map_or(Duration::ZERO, |age| self.renew_after.saturating_sub(age));
            if !due_in.is_zero() {
                let lost = self.inner.token_lost.notified();
                tokio::select! {
                    _ = stopped(&mut shutdown) => return,
                    _ = tokio::time::sleep(due_in) => {}
                    _ = lost => {}
                }
                continue;
            }
            let result = tokio::select! {
                _ = stopped(&mut shutdown) => return,
                r = self.probe() => r,
            };
            let wait = match result {
                Ok(()) => {
                    if failing {
                        tracing::info!("qualification system session restored");
                    } else {
                        tracing::debug!("qualification system session renewed");
                    }
                    failing = false;
                    retry = RENEW_RETRY_FIRST;
                    continue;
                }
                Err(e) => {
                    let wait = match &e {
                        QueryError::RateLimited {
                            retry_after: Some(after),
                        } => retry.max(*after),
                        _ => retry,
                    };
                    tracing::warn!(error = %e, retry_in = ?wait, "session renewal failed");
                    failing = true;
                    retry = (retry * 2).min(RENEW_RETRY_MAX);
                    wait
                }
            };
            tokio::select! {
                _ = stopped(&mut shutdown) => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Looks the person up with the My Number card's evidence.
    ///
    /// Cancel safe: dropping the future abandons the request; the token cache stays consistent.
    pub async fn query_by_card(&self, q: &CardQuery) -> Result<Answer, QueryError> {
        let (identity_method, challenge, signature) = match q.method {
            IdentityMethod::Pin => (
                "1",
                q.challenge.as_ref().map(|c| B64.encode(c)),
                q.signature.as_ref().map(|s| B64.encode(s)),
            ),
            // The visual method proves nothing cryptographically; nothing else is sent.
            IdentityMethod::Visual => ("2", None, None),
        };
        let body = RequestEnvelope {
            xml_msg: RequestMsg {
                message_header: self.header(q.visit_date, &q.file_id),
                message_body: CardBody {
                    tsunagi_card_authentication: CardAuthentication {
                        identity_method: identity_method.to_string(),
                        certificate: B64.encode(&q.certificate_der),
                        challenge,
                        signature,
                    },
                },
            },
        };
        let asked = Asked::Card {
            visit_date: q.visit_date,
        };
        let answer = self.search(CARD_SEARCH_PATH, encode(&body)?, asked).await?;
        self.tell(&q.file_id, true, q.visit_date, &answer);
        Ok(answer)
    }

    /// Looks the person up with insurance card data.
    ///
    /// Cancel safe: dropping the future abandons the request; the token cache stays consistent.
    pub async fn query_by_insurance(&self, q: &InsuranceQuery) -> Result<Answer, QueryError> {
        let body = RequestEnvelope {
            xml_msg: RequestMsg {
                message_header: self.header(q.visit_date, &q.file_id),
                message_body: InsuranceBody {
                    qualification_confirm_search_info: SearchInfo {
                        // A 6-digit number typed with zero padding goes out space-padded, as
                        // the reference requires.
                        insurer_number: insurer_from_wire(q.insurer.as_wire())
                            .unwrap_or_else(|_| q.insurer.clone())
                            .as_wire()
                            .to_string(),
                        insured_card_symbol: q.symbol.clone().filter(|s| !s.is_empty()),
                        insured_identification_number: q.number.clone(),
                        insured_branch_number: q.branch.clone().filter(|s| !s.is_empty()),
                        birthdate: q.birth_date.format("%Y%m%d").to_string(),
                        limit_application_certificate_related_cons_flg: if q.limit_consent {
                            "1"
                        } else {
                            "0"
                        }
                        .to_string(),
                    },
                },
            },
        };
        let answer = self
            .search(SEARCH_PATH, encode(&body)?, Asked::Insurance(q))
            .await?;
        self.tell(&q.file_id, false, q.visit_date, &answer);
        Ok(answer)
    }

    /// Follows every answer this client (and each of its clones and lanes) reads from now on.
    pub fn observe(&self) -> tokio::sync::broadcast::Receiver<Arc<Observed>> {
        self.inner.observed.subscribe()
    }

    fn tell(&self, file_id: &str, by_card: bool, visit_date: chrono::NaiveDate, answer: &Answer) {
        // Cloning a person's answer costs only when someone follows.
        if self.inner.observed.receiver_count() > 0 {
            let _ = self.inner.observed.send(Arc::new(Observed {
                file_id: file_id.to_string(),
                by_card,
                visit_date,
                answer: answer.clone(),
            }));
        }
    }

    /// Cheap health check: a fresh login within the budget (also refreshes the token cache).
    ///
    /// Cancel safe.
    pub async fn probe(&self) -> Result<(), QueryError> {
        tokio::time::timeout(self.inner.timeout, self.login())
            .await
            .map_err(|_| QueryError::Timeout)?
            .map(|_| ())
    }

    /// The server's `X-Sim-Processing-Micros` of the last search answer, if it sent one.
    pub fn last_processing_micros(&self) -> Option<u64> {
        match self.inner.last_micros.load(Ordering::Relaxed) {
            NO_MICROS => None,
            m => Some(m),
        }
    }

    fn header(&self, visit_date: chrono::NaiveDate, file_id: &str) -> RequestHeader {
        RequestHeader {
            qualification_confirmation_date: visit_date.format("%Y%m%d").to_string(),
            medical_institution_code: self.inner.institution_code.clone(),
            arbitrary_file_identifier: (!file_id.is_empty()).then(|| file_id.to_string()),
        }
    }

    /// The lane's turn, then the whole exchange under one deadline.
    async fn search(
        &self,
        path: &str,
        body: Vec<u8>,
        asked: Asked<'_>,
    ) -> Result<Answer, QueryError> {
        // Held until the answer is read (or the future dropped), so the background lane waits
        // for the whole reception exchange, login included.
        let _pass = self.lanes.enter(self.lane).await;
        let result =
            tokio::time::timeout(self.inner.timeout, self.search_unbounded(path, body, asked))
                .await
                .map_err(|_| QueryError::Timeout)?;
        if let Err(e @ (QueryError::UnknownCode { .. } | QueryError::Inconsistent(_))) = &result {
            // Reported once here and to the operator; final, so nothing asks again in a loop.
            tracing::warn!(error = %e, kind = e.kind(), "unusable answer from the qualification system");
        }
        result
    }

    async fn search_unbounded(
        &self,
        path: &str,
        body: Vec<u8>,
        asked: Asked<'_>,
    ) -> Result<Answer, QueryError> {
        let token = match self.cached_token() {
            Some(t) => t,
            None => self.login().await?,
        };
        let mut reply = self.post(path, Some(&token), body.clone()).await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            // The token may have expired server-side before our estimate: log in once more.
            self.forget_token();
            let token = self.login().await?;
            reply = self.post(path, Some(&token), body).await?;
            if reply.status == StatusCode::UNAUTHORIZED {
                self.forget_token();
                return Err(QueryError::Unauthorized);
            }
        }
        let micros = reply
            .headers
            .get(PROCESSING_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|m| *m != NO_MICROS)
            .unwrap_or(NO_MICROS);
        self.inner.last_micros.store(micros, Ordering::Relaxed);
        answer_of(reply, &self.codes, Some(asked))
    }

    /// Logs in and caches the id token.
    async fn login(&self) -> Result<String, QueryError> {
        let body = encode(&LoginRequest {
            medical_institution_code: &self.inner.institution_code,
        })?;
        let reply = self.post(LOGIN_PATH, None, body).await?;
        transport_status(&reply)?;
        if reply.status == StatusCode::UNAUTHORIZED {
            return Err(QueryError::Unauthorized);
        }
        if !reply.status.is_success() {
            return Err(QueryError::Rejected {
                code: format!("HTTP-{}", reply.status.as_u16()),
                message: "login refused".to_string(),
            });
        }
        let answer: LoginAnswer =
            serde_json::from_slice(&reply.body).map_err(|e| QueryError::Malformed {
                detail: format!("login answer: {e}"),
            })?;
        let token = match (answer.status.as_str(), answer.result) {
            ("0", Some(r)) if !r.id_token.is_empty() => r.id_token,
            ("0", _) => {
                return Err(QueryError::Malformed {
                    detail: "login answer without idToken".to_string(),
                })
            }
            _ => return Err(QueryError::Unauthorized),
        };
        if let Ok(mut slot) = self.inner.token.lock() {
            *slot = Some(CachedToken {
                id_token: token.clone(),
                obtained: Instant::now(),
            });
        }
        Ok(token)
    }

    fn cached_token(&self) -> Option<String> {
        let slot = self.inner.token.lock().ok()?;
        slot.as_ref()
            .filter(|t| t.obtained.elapsed() < TOKEN_LIFETIME)
            .map(|t| t.id_token.clone())
    }

    fn forget_token(&self) {
        if let Ok(mut slot) = self.inner.token.lock() {
            *slot = None;
        }
        // A stored permit if the keeper is busy: it then looks again at once, which is harmless.
        self.inner.token_lost.notify_one();
    }

    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Reply, QueryError> {
        let mut req = self
            .inner
            .http
            .post(format!("{}{path}", self.inner.base))
            .header(CONTENT_TYPE, JSON)
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        if let Some(t) = token {
            // The system wants the raw token, without "Bearer ".
            req = req.header(reqwest::header::AUTHORIZATION, t);
        }
        let resp = req.send().await.map_err(transport_error)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = match read_capped(resp, self.answer_limit).await? {
            Ok(body) => body,
            // A 5xx or 429 says what it has to say in its status; its page is not needed.
            Err(_) if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
                Vec::new()
            }
            Err(over) => {
                return Err(QueryError::Malformed {
                    detail: format!(
                        "answer of {over} bytes or more is over the limit of {} bytes",
                        self.answer_limit
                    ),
                })
            }
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

/// Reads a body of at most `limit` bytes: `Ok(Err(n))` as soon as the declared or received
/// length `n` passes the limit (the rest is never read; dropping the response drops the
/// connection).
async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Result<Vec<u8>, u64>, QueryError> {
    let declared = resp.content_length();
    if let Some(len) = declared.filter(|l| *l > limit as u64) {
        return Ok(Err(len));
    }
    // Declared and within the limit, or undeclared: grow as it comes, never past the limit.
    let mut body = Vec::with_capacity(declared.map_or(0, |l| l as usize));
    while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > limit {
            return Ok(Err((body.len() + chunk.len()) as u64));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Ok(body))
}

/// Resolves when `shutdown` is true or its sender is gone (nobody can stop us any more, so stop).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, QueryError> {
    // Serializing our own plain structs cannot fail; mapped anyway rather than unwrapped.
    serde_json::to_vec(value).map_err(|e| QueryError::Malformed {
        detail: format!("request encoding: {e}"),
    })
}

fn transport_error(e: reqwest::Error) -> QueryError {
    if e.is_timeout() {
        QueryError::Timeout
    } else {
        tracing::debug!(error = %e, "qualification system unreachable");
        // Refused, DNS, reset or a connection dropped mid-answer: all mean "not reachable now".
        QueryError::Unreachable
    }
}

/// HTTP statuses that say nothing about the request itself (429, 5xx).
fn transport_status(reply: &Reply) -> Result<(), QueryError> {
    let status = reply.status;
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = reply
            .headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Err(QueryError::RateLimited { retry_after });
    }
    if status.is_server_error() {
        return Err(QueryError::ServerError {
            status: status.as_u16(),
        });
    }
    Ok(())
}

/// Status handling of a search answer, then the body.
fn answer_of(
    reply: Reply,
    codes: &ResultCodes,
    asked: Option<Asked<'_>>,
) -> Result<Answer, QueryError> {
    transport_status(&reply)?;
    if reply.status.is_success() {
        return classify::classify_with(&reply.body, codes, asked);
    }
    // Another 4xx: the body may still be an envelope with a message-level error (e.g. the
    // simulator answers 400 + SIM-E0001); prefer its code when it has one.
    match classify::classify_with(&reply.body, codes, asked) {
        Err(
            e @ (QueryError::Rejected { .. }
            | QueryError::SystemError { .. }
            | QueryError::MessageError { .. }),
        ) => Err(e),
        _ => Err(QueryError::Rejected {
            code: format!("HTTP-{}", reply.status.as_u16()),
            message: String::from_utf8_lossy(&reply.body)
                .chars()
                .take(200)
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use chrono::NaiveDate;

    fn client(base_url: String, timeout: Duration) -> OqsClient {
        OqsClient::new(OqsConfig {
            base_url,
            institution_code: "1319900017".to_string(),
            timeout,
        })
        .unwrap()
    }

    fn insurance_query() -> InsuranceQuery {
        InsuranceQuery {
            visit_date: NaiveDate::from_ymd_opt(2026, 11, 26).unwrap(),
            insurer: crate::domain::InsurerNumber::parse("06139917").unwrap(),
            symbol: Some("練馬あ12".to_string()),
            number: "0004471".to_string(),
            branch: Some("02".to_string()),
            birth_date: NaiveDate::from_ymd_opt(1988, 9, 7).unwrap(),
            limit_consent: true,
            file_id: "t-1".to_string(),
        }
    }

    #[test]
    fn new_rejects_bad_config() {
        let bad = |base: &str, code: &str, t: u64| {
            OqsClient::new(OqsConfig {
                base_url: base.to_string(),
                institution_code: code.to_string(),
                timeout: Duration::from_millis(t),
            })
        };
        assert!(matches!(
            bad("not a url", "1319900017", 100),
            Err(QueryError::Rejected { code, .. }) if code == CONFIG_ERROR_CODE
        ));
        assert!(matches!(
            bad("ftp://x", "1319900017", 100),
            Err(QueryError::Rejected { code, .. }) if code == CONFIG_ERROR_CODE
        ));
        assert!(matches!(
            bad("http://127.0.0.1:1", "131990001", 100),
            Err(QueryError::Rejected { code, .. }) if code == CONFIG_ERROR_CODE
        ));
        assert!(matches!(
            bad("http://127.0.0.1:1", "1319900017", 0),
            Err(QueryError::Rejected { code, .. }) if code == CONFIG_ERROR_CODE
        ));
        let ok = bad("http://127.0.0.1:1/", "1319900017", 100).unwrap();
        assert_eq!(ok.last_processing_micros(), None);
        // Debug must not leak anything secret; it names the base at most.
        assert!(format!("{ok:?}").contains("127.0.0.1"));
    }

    #[tokio::test]
    async fn silent_server_times_out_within_budget() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accept and hold connections open without ever answering.
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let c = client(format!("http://{addr}"), Duration::from_millis(300));
        let started = Instant::now();
        let r = c.query_by_insurance(&insurance_query()).await;
        let took = started.elapsed();
        holder.abort();
        assert!(matches!(r, Err(QueryError::Timeout)), "{r:?}");
        assert!(took < Duration::from_millis(1500), "took {took:?}");
        assert!(r.unwrap_err().is_transient());
    }

    #[tokio::test]
    async fn closed_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let c = client(format!("http://{addr}"), Duration::from_secs(2));
        let r = c.query_by_insurance(&insurance_query()).await;
        assert!(matches!(r, Err(QueryError::Unreachable)), "{r:?}");
        let p = c.probe().await;
        assert!(matches!(p, Err(QueryError::Unreachable)), "{p:?}");
        let e = r.unwrap_err();
        assert!(e.is_transient());
        assert!(e.message_ja().contains("接続できません"));
    }

    fn reply(status: u16, headers: &[(&'static str, &str)], body: &str) -> Reply {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: h,
            body: body.as_bytes().to_vec(),
        }
    }

    /// The standard scenario's simulator and a query it answers 有効.
    async fn simulator() -> (oqs_sim::SimHandle, InsuranceQuery) {
        let today = chrono::Utc::now().date_naive();
        let s = oqs_sim::scenario::standard(today).unwrap();
        let sim = oqs_sim::Simulator::start(s.sim_config()).await.unwrap();
        let key = s.insurance_of("valid-employee").unwrap();
        let q = InsuranceQuery {
            visit_date: today,
            insurer: crate::domain::InsurerNumber::parse(&key.insurer.wire()).unwrap(),
            symbol: key.symbol.clone(),
            number: key.number.clone(),
            branch: key.branch.clone(),
            birth_date: key.birthdate,
            limit_consent: false,
            file_id: "warm-1".to_string(),
        };
        (sim, q)
    }

    /// Polls until `cond` holds, for at most 5 s.
    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "never happened: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn warm_session_costs_one_round_trip() {
        // It sends only the search when the keeper holds a session, from either lane; a client
        // without one pays for a login as well (which shows the counters can tell).
        let (sim, q) = simulator().await;
        let cold = client(sim.base_url(), Duration::from_secs(5));
        assert!(cold.session_age().is_none());
        let answer = cold.query_by_insurance(&q).await.unwrap();
        assert!(matches!(answer, Answer::Confirmed { .. }), "{answer:?}");
        assert_eq!((sim.login_count(), sim.request_count()), (1, 1));

        let warm = client(sim.base_url(), Duration::from_secs(5));
        let (stop, stopped) = watch::channel(false);
        let keeper = tokio::spawn({
            let c = warm.clone();
            async move { c.keep_session(stopped).await }
        });
        eventually("keeper logged in", || warm.session_age().is_some()).await;
        assert_eq!(sim.login_count(), 2);
        for (i, handle) in [warm.clone(), warm.background()].iter().enumerate() {
            let (logins, searches) = (sim.login_count(), sim.request_count());
            let answer = handle.query_by_insurance(&q).await.unwrap();
            assert!(matches!(answer, Answer::Confirmed { .. }), "{answer:?}");
            assert_eq!(
                (sim.login_count() - logins, sim.request_count() - searches),
                (0, 1),
                "query {i} made a login or more than one search"
            );
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), keeper)
            .await
            .expect("keeper stops on shutdown")
            .unwrap();
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn keeper_renews_after_the_threshold() {
        // It logs in again once the token reaches the renewal age, and not before.
        let (sim, _) = simulator().await;
        let renewal = Duration::from_millis(600);
        let c = client(sim.base_url(), Duration::from_secs(5)).with_session_renewal(renewal);
        let (stop, stopped) = watch::channel(false);
        let keeper = tokio::spawn({
            let c = c.clone();
            async move { c.keep_session(stopped).await }
        });
        // When the current token was obtained, from its age (exact up to the microseconds
        // between two clock reads, unlike the instant the poll happens to notice it).
        let obtained = || c.session_age().map(|age| Instant::now() - age);
        eventually("first login", || obtained().is_some()).await;
        let first = obtained().unwrap();
        assert_eq!(sim.login_count(), 1);
        let renewed = || obtained().is_some_and(|t| t > first + Duration::from_millis(50));
        eventually("renewal", renewed).await;
        let second = obtained().unwrap();
        let gap = second - first;
        assert!(
            gap + Duration::from_millis(5) >= renewal,
            "renewed after {gap:?}, before the threshold {renewal:?}"
        );
        assert!(sim.login_count() >= 2);
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), keeper)
            .await
            .expect("keeper stops on shutdown")
            .unwrap();
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn keeper_retries_until_the_line_returns() {
        // It keeps trying while the system is unreachable, logs in once it answers, and stops
        // when the shutdown sender is dropped.
        let (sim, _) = simulator().await;
        sim.faults().set_mode(oqs_sim::FaultMode::Refuse);
        let c = client(sim.base_url(), Duration::from_secs(2));
        let (stop, stopped) = watch::channel(false);
        let keeper = tokio::spawn({
            let c = c.clone();
            async move { c.keep_session(stopped).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            c.session_age().is_none(),
            "a session through a refused line"
        );
        sim.faults().clear();
        eventually("login after the line returned", || {
            c.session_age().is_some()
        })
        .await;
        drop(stop);
        tokio::time::timeout(Duration::from_secs(2), keeper)
            .await
            .expect("keeper stops when the sender is gone")
            .unwrap();
        sim.shutdown().await;
    }

    /// A bare HTTP server: login succeeds; every search gets `status` with a declared length
    /// of `declared` bytes (or chunked when `None`), of which only the first 64 KiB are sent
    /// before the connection is held open. Returns the base URL.
    async fn oversize_server(status: u16, declared: Option<u64>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    if head.contains(LOGIN_PATH) {
                        let body = r#"{"status":"0","msg":"","result":{"accessToken":"a","refreshToken":"r","idToken":"t","linkSysCharCd":"1"}}"#;
                        let resp = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                        let _ = s.write_all(resp.as_bytes()).await;
                        return;
                    }
                    let length = match declared {
                        Some(n) => format!("Content-Length: {n}"),
                        None => "Transfer-Encoding: chunked".to_string(),
                    };
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{length}\r\n\r\n"
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    let chunk = vec![b'x'; 16 * 1024];
                    for _ in 0..4 {
                        let framed = match declared {
                            Some(_) => chunk.clone(),
                            None => [
                                format!("{:x}\r\n", chunk.len()).into_bytes(),
                                chunk.clone(),
                                b"\r\n".to_vec(),
                            ]
                            .concat(),
                        };
                        if s.write_all(&framed).await.is_err() {
                            return;
                        }
                    }
                    // Hold the rest back: a client that waits for it times out instead.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                });
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn answers_over_the_limit_are_refused_without_reading_them() {
        // It refuses a declared length over the limit at once, and an undeclared one as soon as
        // the running length passes it, long before the server would finish.
        let limit = 32 * 1024;
        for declared in [Some(200 * 1024 * 1024), None] {
            let base = oversize_server(200, declared).await;
            let c = client(base, Duration::from_secs(10)).with_answer_limit(limit);
            let started = Instant::now();
            let r = c.query_by_insurance(&insurance_query()).await;
            assert!(
                matches!(&r, Err(QueryError::Malformed { detail }) if detail.contains("over the limit")),
                "{declared:?}: {r:?}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{declared:?} waited for the rest"
            );
        }
        // A 503 with a huge page is still a server error.
        let base = oversize_server(503, Some(200 * 1024 * 1024)).await;
        let c = client(base, Duration::from_secs(10)).with_answer_limit(limit);
        let r = c.query_by_insurance(&insurance_query()).await;
        assert!(
            matches!(r, Err(QueryError::ServerError { status: 503 })),
            "{r:?}"
        );
    }

    #[test]
    fn handles_share_state_and_clamp_settings() {
        let c = client("http://127.0.0.1:1".to_string(), Duration::from_secs(1))
            .with_session_renewal(Duration::ZERO)
            .with_background_limit(0);
        assert_eq!(c.renew_after, MIN_SESSION_RENEWAL);
        let long = c.clone().with_session_renewal(Duration::from_secs(3600));
        assert!(long.renew_after < TOKEN_LIFETIME);
        let b = c.background();
        assert!(b.is_background() && !c.is_background());
        assert!(Arc::ptr_eq(&b.inner, &c.inner) && Arc::ptr_eq(&b.lanes, &c.lanes));
        assert!(b.background().is_background());
    }

    fn answer_of_default(r: Reply) -> Result<Answer, QueryError> {
        answer_of(r, &ResultCodes::reference(), None)
    }

    #[test]
    fn status_handling() {
        let r = answer_of_default(reply(429, &[("retry-after", "7")], ""));
        assert!(
            matches!(r, Err(QueryError::RateLimited { retry_after: Some(d) }) if d == Duration::from_secs(7))
        );
        let r = answer_of_default(reply(
            429,
            &[("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT")],
            "",
        ));
        assert!(matches!(
            r,
            Err(QueryError::RateLimited { retry_after: None })
        ));
        let r = answer_of_default(reply(503, &[], "<html>down</html>"));
        assert!(matches!(r, Err(QueryError::ServerError { status: 503 })));
        let r = answer_of_default(reply(200, &[], "<html>"));
        assert!(matches!(r, Err(QueryError::Malformed { .. })));
        let e0001 = r#"{"XmlMsg":{"MessageHeader":{"SegmentOfResult":"9","ErrorCode":"SIM-E0001","ErrorMessage":"x"}}}"#;
        let r = answer_of_default(reply(400, &[], e0001));
        assert!(matches!(r, Err(QueryError::MessageError { code, .. }) if code == "SIM-E0001"));
        let r = answer_of_default(reply(404, &[], "nope"));
        assert!(matches!(r, Err(QueryError::Rejected { code, .. }) if code == "HTTP-404"));
    }
}
