//! The tray as a client of tsunagid's local API (ローカルAPI): a proven connection, the status,
//! a reconcile pass, the event stream.
//!
//! # The token goes only where it was proven
//!
//! While tsunagid is down, any program could listen on its port. So the tray never sends the
//! token on a connection until the program at the other end has proven it holds the token:
//! [`Daemon::open`] makes one TCP connection, asks `GET /v1/identity?nonce=<64 hex>` on it
//! (without the token) and checks the answer, an HMAC-SHA-256 keyed by the token over
//! `tsunagid-identity\0` and the nonce's bytes, in constant time. Only then does it return a
//! [`Session`], and only a `Session` adds the `Authorization` header — to requests on that
//! same connection. A new connection (the daemon restarted) is proven again.
//!
//! That is why this module speaks HTTP/1.1 through hyper's connection API rather than a
//! pooling client: with a pool, the request after the proof may leave on a new connection to
//! whoever holds the port by then.
//!
//! Each `Session` is one connection and serves one request at a time; the tray keeps one for
//! status reads, one for the event stream ([`Session::events`]), and opens a short-lived one
//! for a reconcile pass, which can take minutes.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use crate::locate::Token;
use crate::sse;
use crate::view::{PassCounts, Summary};

/// How long a TCP connect may take (loopback: only a stuck machine takes long).
const CONNECT: Duration = Duration::from_secs(2);
/// How long the proof and a status read may take.
const QUICK: Duration = Duration::from_secs(10);
/// How long a reconcile pass may take (many answers, a slow line).
const PASS: Duration = Duration::from_secs(300);
/// The largest answer body read (the status is a few KiB).
const MAX_BODY: usize = 1024 * 1024;
/// The domain separation the daemon's proof starts with (daemon/src/api/token.rs).
const PROOF_CONTEXT: &[u8] = b"tsunagid-identity\0";

/// Where tsunagid is and the token it must prove it holds.
#[derive(Debug, Clone)]
pub struct Daemon {
    addr: SocketAddr,
    token: Token,
}

/// Opening a proven connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing accepts connections there (tsunagid is not running).
    #[error("cannot connect to {addr}: {source}")]
    Unreachable {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The connection or the proof took too long.
    #[error("{addr} did not answer in time")]
    TimedOut {
        /// The address.
        addr: SocketAddr,
    },
    /// Something answers there but could not prove it holds the token.
    #[error("the program on {addr} could not prove it is tsunagid: {why}")]
    NotTsunagid {
        /// The address.
        addr: SocketAddr,
        /// What was wrong with its answer.
        why: String,
    },
    /// The HTTP exchange broke down.
    #[error("HTTP with {addr} failed: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: hyper::Error,
    },
}

impl ConnectError {
    /// The message for staff.
    pub fn message_ja(&self) -> String {
        match self {
            ConnectError::Unreachable { addr, .. } => {
                format!("tsunagid が動いていません（{addr} に接続できません）。")
            }
            ConnectError::TimedOut { addr } => format!("tsunagid（{addr}）が応答しません。"),
            ConnectError::NotTsunagid { addr, .. } => format!(
                "{addr} で応答しているプログラムは tsunagid ではありません（トークンを持っていることを証明できませんでした）。安全のため、トークンは送っていません。"
            ),
            ConnectError::Http { addr, .. } => {
                format!("tsunagid（{addr}）との通信に失敗しました。")
            }
        }
    }
}

/// A request on a proven connection failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The connection broke (the daemon stopped).
    #[error("connection lost: {0}")]
    Lost(#[source] hyper::Error),
    /// No answer in time.
    #[error("timed out")]
    TimedOut,
    /// The daemon answered with an error.
    #[error("HTTP {code}")]
    Refused {
        /// The status code.
        code: u16,
        /// The problem's `detail` (Japanese, for staff), if it sent one.
        detail: Option<String>,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The event stream broke the SSE format.
    #[error(transparent)]
    Stream(#[from] sse::SseError),
}

impl RequestError {
    /// The message for staff.
    pub fn message_ja(&self) -> String {
        match self {
            RequestError::Lost(_) => "tsunagid との接続が切れました。".to_string(),
            RequestError::TimedOut => "tsunagid が時間内に応答しませんでした。".to_string(),
            RequestError::Refused {
                detail: Some(d), ..
            } => d.clone(),
            RequestError::Refused { code, .. } => {
                format!("tsunagid がエラーを返しました（HTTP {code}）。")
            }
            RequestError::Decode(_) | RequestError::Stream(_) => {
                "tsunagid の応答を読めませんでした。".to_string()
            }
        }
    }
}

/// The answer of `POST /v1/reconcile` (事後確認の実行結果).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ReconcileReport {
    /// Whether the qualification system was asked (false while the line is offline).
    pub ran: bool,
    /// The pass's counts.
    #[serde(default)]
    pub pass: PassCounts,
}

#[derive(Debug, Deserialize)]
struct Identity {
    service: String,
    proof: String,
}

#[derive(Debug, Deserialize)]
struct ProblemBody {
    detail: Option<String>,
}

/// A task aborted when its owner is dropped: a connection's driver lives as long as the
/// connection's handle.
#[derive(Debug)]
struct Driver(tokio::task::JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One HTTP/1.1 connection, not yet proven.
struct Conn {
    addr: SocketAddr,
    sender: http1::SendRequest<Full<Bytes>>,
    _driver: Driver,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("addr", &self.addr).finish()
    }
}

impl Conn {
    /// Sends `request`, waits for the answer's head. Cancel-safe in that dropping it drops
    /// the request; the connection may then be unusable (its owner drops it).
    async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<Incoming>, hyper::Error> {
        self.sender.ready().await?;
        self.sender.send_request(request).await
    }

    fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.addr.to_string())
    }
}

/// The body, whole, up to [`MAX_BODY`].
async fn body_bytes(response: hyper::Response<Incoming>) -> Result<Bytes, String> {
    Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| e.to_string())
}

/// The proof the daemon must give for `nonce`, checked in constant time.
fn proof_matches(token: &Token, nonce: &[u8], proof_hex: &str) -> bool {
    use hmac::{Hmac, Mac};
    let Ok(given) = hex::decode(proof_hex.trim()) else {
        return false;
    };
    // HMAC takes a key of any length: new_from_slice cannot fail.
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(token.expose().as_bytes()) else {
        return false;
    };
    mac.update(PROOF_CONTEXT);
    mac.update(nonce);
    // verify_slice compares in constant time and refuses a wrong length.
    mac.verify_slice(&given).is_ok()
}

impl Daemon {
    /// The daemon at `addr`, which must prove it holds `token`.
    pub fn new(addr: SocketAddr, token: Token) -> Self {
        Self { addr, token }
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens a connection and has the other end prove it holds the token; the token has not
    /// been sent when this fails. Cancel-safe (dropping it drops the connection).
    pub async fn open(&self) -> Result<Session, ConnectError> {
        let addr = self.addr;
        let stream = match tokio::time::timeout(CONNECT, tokio::net::TcpStream::connect(addr)).await
        {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(ConnectError::Unreachable { addr, source }),
            Err(_) => return Err(ConnectError::TimedOut { addr }),
        };
        let _ = stream.set_nodelay(true);
        let http = |source| ConnectError::Http { addr, source };
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
        let driver = Driver(tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "api connection ended");
            }
        }));
        let mut conn = Conn {
            addr,
            sender,
            _driver: driver,
        };
        match tokio::time::timeout(QUICK, self.prove(&mut conn)).await {
            Ok(Ok(())) => Ok(Session {
                conn,
                token: self.token.clone(),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnectError::TimedOut { addr }),
        }
    }

    async fn prove(&self, conn: &mut Conn) -> Result<(), ConnectError> {
        let addr = self.addr;
        let refuse = |why: String| ConnectError::NotTsunagid { addr, why };
        let mut nonce = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        let request = conn
            .request(
                Method::GET,
                &format!("/v1/identity?nonce={}", hex::encode(nonce)),
            )
            .body(Full::new(Bytes::new()))
            .map_err(|e| refuse(format!("request: {e}")))?;
        let response = conn
            .send(request)
            .await
            .map_err(|source| ConnectError::Http { addr, source })?;
        let status = response.status();
        let body = body_bytes(response).await.map_err(refuse)?;
        if status != StatusCode::OK {
            return Err(refuse(format!("answered HTTP {}", status.as_u16())));
        }
        let identity: Identity =
            serde_json::from_slice(&body).map_err(|e| refuse(format!("not an identity: {e}")))?;
        if identity.service != "tsunagid" {
            return Err(refuse(format!("calls itself {:?}", identity.service)));
        }
        if !proof_matches(&self.token, &nonce, &identity.proof) {
            return Err(refuse("wrong proof".to_string()));
        }
        Ok(())
    }
}

/// A connection whose other end proved it holds the token: the only place the token is sent.
#[derive(Debug)]
pub struct Session {
    conn: Conn,
    token: Token,
}

impl Session {
    fn authorized(
        &self,
        method: Method,
        path: &str,
    ) -> Result<hyper::http::request::Builder, RequestError> {
        let value = format!("Bearer {}", self.token.expose());
        Ok(self.conn.request(method, path).header(AUTHORIZATION, value))
    }

    async fn call<R: serde::de::DeserializeOwned>(
        &mut self,
        request: Request<Full<Bytes>>,
        limit: Duration,
    ) -> Result<R, RequestError> {
        let exchange = async {
            let response = self.conn.send(request).await.map_err(RequestError::Lost)?;
            let status = response.status();
            let body = body_bytes(response).await.map_err(RequestError::Decode)?;
            if !status.is_success() {
                let detail = serde_json::from_slice::<ProblemBody>(&body)
                    .ok()
                    .and_then(|p| p.detail);
                return Err(RequestError::Refused {
                    code: status.as_u16(),
                    detail,
                });
            }
            serde_json::from_slice(&body).map_err(|e| RequestError::Decode(e.to_string()))
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| RequestError::TimedOut)?
    }

    /// `GET /v1/status`. Cancel-safe only in that the session should be dropped after a
    /// cancelled call (an answer may still be in flight on it).
    pub async fn status(&mut self) -> Result<Summary, RequestError> {
        let request = self
            .authorized(Method::GET, "/v1/status")?
            .body(Full::new(Bytes::new()))
            .map_err(|e| RequestError::Decode(e.to_string()))?;
        self.call(request, QUICK).await
    }

    /// `POST /v1/reconcile` with `force` (ask about every open check now, ignoring retry
    /// delays). Waits for the whole pass. Not cancel-safe: a cancelled call leaves the pass
    /// running in the daemon (which is harmless; the daemon owns it).
    pub async fn reconcile(&mut self, force: bool) -> Result<ReconcileReport, RequestError> {
        let body = serde_json::to_vec(&serde_json::json!({ "force": force }))
            .map_err(|e| RequestError::Decode(e.to_string()))?;
        let request = self
            .authorized(Method::POST, "/v1/reconcile")?
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| RequestError::Decode(e.to_string()))?;
        self.call(request, PASS).await
    }

    /// `POST /v1/page/codes`: the reception page's sign-in address with a one-time code
    /// (valid for a minute, usable once), so the browser is signed in without the token.
    pub async fn page_signin(&mut self) -> Result<String, RequestError> {
        #[derive(serde::Deserialize)]
        struct Code {
            url: String,
        }
        let request = self
            .authorized(Method::POST, "/v1/page/codes")?
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .map_err(|e| RequestError::Decode(e.to_string()))?;
        let code: Code = self.call(request, QUICK).await?;
        Ok(code.url)
    }

    /// `GET /v1/events`: the session becomes the event stream.
    pub async fn events(mut self) -> Result<Events, RequestError> {
        let request = self
            .authorized(Method::GET, "/v1/events")?
            .header(ACCEPT, "text/event-stream")
            .body(Full::new(Bytes::new()))
            .map_err(|e| RequestError::Decode(e.to_string()))?;
        let response = tokio::time::timeout(QUICK, self.conn.send(request))
            .await
            .map_err(|_| RequestError::TimedOut)?
            .map_err(RequestError::Lost)?;
        let status = response.status();
        if !status.is_success() {
            let detail = body_bytes(response)
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<ProblemBody>(&b).ok())
                .and_then(|p| p.detail);
            return Err(RequestError::Refused {
                code: status.as_u16(),
                detail,
            });
        }
        Ok(Events {
            body: response.into_body(),
            parser: sse::Parser::default(),
            ready: std::collections::VecDeque::new(),
            _conn: self.conn,
        })
    }
}

/// The daemon's event stream (変更の通知).
#[derive(Debug)]
pub struct Events {
    body: Incoming,
    parser: sse::Parser,
    ready: std::collections::VecDeque<sse::Item>,
    _conn: Conn,
}

impl Events {
    /// The next event or keep-alive; `None` when the stream ended (the daemon stopped).
    /// Cancel-safe: items already read are kept for the next call.
    pub async fn next(&mut self) -> Result<Option<sse::Item>, RequestError> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Ok(Some(item));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(RequestError::Lost(e)),
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        self.ready.extend(self.parser.feed(data)?);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_proof_is_the_daemons_hmac() {
        // The value was computed apart (Python's hmac module) for this token and nonce:
        // HMAC-SHA-256(key = token's ASCII, msg = b"tsunagid-identity\0" + nonce bytes).
        let token = Token::parse(&"0123456789abcdef".repeat(4)).unwrap();
        let nonce = [7u8; 32];
        let expected = "49e396cb5123b56baed1494a25c006d05452b5422045578384671db65ec8a3b2";
        let real = {
            use hmac::{Hmac, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(token.expose().as_bytes()).unwrap();
            mac.update(PROOF_CONTEXT);
            mac.update(&nonce);
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(real, expected);
        assert!(proof_matches(&token, &nonce, expected));
        assert!(proof_matches(&token, &nonce, &expected.to_uppercase()));
        assert!(!proof_matches(&token, &[8u8; 32], expected));
        assert!(!proof_matches(&token, &nonce, &expected[2..]));
        assert!(!proof_matches(&token, &nonce, "not hex"));
        assert!(!proof_matches(&token, &nonce, ""));
        let other = Token::parse(&"f".repeat(64)).unwrap();
        assert!(!proof_matches(&other, &nonce, expected));
    }
}
