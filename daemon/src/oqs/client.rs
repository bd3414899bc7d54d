//! HTTP side of the client: login, token cache, the two lookups, status handling.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use super::message::{
    CardAuthentication, CardBody, InsuranceBody, LoginAnswer, LoginRequest, RequestEnvelope,
    RequestHeader, RequestMsg, SearchInfo,
};
use super::{classify, Answer, CardQuery, InsuranceQuery, QueryError, CONFIG_ERROR_CODE};
use crate::domain::IdentityMethod;

const LOGIN_PATH: &str = "/oqs-api-pro/MSA12020/ILI12020SV01/auth";
const SEARCH_PATH: &str = "/oqs-api-pro/MSA01030/ILI01030SV01/search";
const CARD_SEARCH_PATH: &str = "/tsunagi-ext/v1/card-search";
const PROCESSING_HEADER: &str = "x-sim-processing-micros";
const JSON: &str = "application/json;charset=UTF-8";
/// The id token lives 30 minutes; renewing a little early avoids a 401 round trip at the edge.
const TOKEN_LIFETIME: Duration = Duration::from_secs(25 * 60);
/// Sentinel for "no processing time recorded" in the atomic.
const NO_MICROS: u64 = u64::MAX;

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

/// Client of the qualification system. Cheap to clone: clones share the token cache.
#[derive(Debug, Clone)]
pub struct OqsClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    institution_code: String,
    timeout: Duration,
    token: Mutex<Option<CachedToken>>,
    last_micros: AtomicU64,
}

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
                last_micros: AtomicU64::new(NO_MICROS),
            }),
        })
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
        self.search(CARD_SEARCH_PATH, encode(&body)?).await
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
                        insurer_number: q.insurer.as_wire().to_string(),
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
        self.search(SEARCH_PATH, encode(&body)?).await
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

    /// The whole exchange under one deadline.
    async fn search(&self, path: &str, body: Vec<u8>) -> Result<Answer, QueryError> {
        tokio::time::timeout(self.inner.timeout, self.search_unbounded(path, body))
            .await
            .map_err(|_| QueryError::Timeout)?
    }

    async fn search_unbounded(&self, path: &str, body: Vec<u8>) -> Result<Answer, QueryError> {
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
        answer_of(reply)
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
        let body = resp.bytes().await.map_err(transport_error)?.to_vec();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
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
fn answer_of(reply: Reply) -> Result<Answer, QueryError> {
    transport_status(&reply)?;
    if reply.status.is_success() {
        return classify::classify(&reply.body);
    }
    // Another 4xx: the body may still be an envelope with a message-level error (e.g. the
    // simulator answers 400 + SIM-E0001); prefer its code when it has one.
    match classify::classify(&reply.body) {
        Err(e @ (QueryError::Rejected { .. } | QueryError::SystemError { .. })) => Err(e),
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

    #[test]
    fn status_handling() {
        let r = answer_of(reply(429, &[("retry-after", "7")], ""));
        assert!(
            matches!(r, Err(QueryError::RateLimited { retry_after: Some(d) }) if d == Duration::from_secs(7))
        );
        let r = answer_of(reply(
            429,
            &[("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT")],
            "",
        ));
        assert!(matches!(
            r,
            Err(QueryError::RateLimited { retry_after: None })
        ));
        let r = answer_of(reply(503, &[], "<html>down</html>"));
        assert!(matches!(r, Err(QueryError::ServerError { status: 503 })));
        let r = answer_of(reply(200, &[], "<html>"));
        assert!(matches!(r, Err(QueryError::Malformed { .. })));
        let e0001 = r#"{"XmlMsg":{"MessageHeader":{"SegmentOfResult":"9","ErrorCode":"SIM-E0001","ErrorMessage":"x"}}}"#;
        let r = answer_of(reply(400, &[], e0001));
        assert!(matches!(r, Err(QueryError::Rejected { code, .. }) if code == "SIM-E0001"));
        let r = answer_of(reply(404, &[], "nope"));
        assert!(matches!(r, Err(QueryError::Rejected { code, .. }) if code == "HTTP-404"));
    }
}
