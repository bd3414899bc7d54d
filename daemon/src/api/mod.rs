//! The local HTTP API (ローカルAPI): how the CLI, the receipt computer, the reception page and
//! the tray reach tsunagid.
//!
//! - Loopback only unless the configuration says otherwise (checked when the configuration
//!   is read, and again here at bind time).
//! - Every route but `/openapi.json` needs `Authorization: Bearer <token>`; the token is made
//!   on first start in a file only the service user can read ([`token`]).
//! - JSON with stable snake_case names; every error is an RFC 9457 problem document with a
//!   Japanese `detail` for the operator ([`problem`]).
//! - Bodies over the configured limit are refused with 413 before they are read whole.
//! - Reads are paced ([`pace`]); reception requests never are.
//! - `GET /openapi.json` describes all of it ([`openapi`]); the test suite runs schemathesis
//!   against it.
//! - The reception page (`/page/…`, [`page`]) is served beside it with its own sign-in: a
//!   one-time code (`POST /v1/page/codes`, with the token) becomes a session cookie, so the
//!   token never reaches the browser.

pub mod openapi;
pub mod pace;
pub mod page;
mod page_desk;
pub mod problem;
mod routes;
pub mod token;

pub use routes::{
    CheckList, CheckStartRequest, Identity, ListQuery, ReconcileReport, ReconcileRequest,
    StreamEvent,
};

use std::net::SocketAddr;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tokio::sync::watch;

use crate::service::Daemon;

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiStartError {
    /// The token file could not be made or read.
    #[error("token file {path}: {source}")]
    Token {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A non-loopback address without `allow_remote`.
    #[error("{0} is not a loopback address")]
    NotLoopback(SocketAddr),
}

impl ApiStartError {
    /// The message for whoever runs the service.
    pub fn message_ja(&self) -> String {
        match self {
            ApiStartError::Token { path, source } => {
                format!(
                    "APIのトークンファイル {path} を作成・読み込みできません: {}。",
                    crate::domain::io_error_ja(source)
                )
            }
            ApiStartError::Bind { addr, source } if source.kind() == std::io::ErrorKind::AddrInUse => format!(
                "API のアドレス {addr} は別のプログラムが使用中です。tsunagid が二重に起動していないか、設定の [api] listen を確認してください。"
            ),
            ApiStartError::Bind { addr, source }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                format!(
                    "API のアドレス {addr} で待ち受ける権限がありません（1024番未満のポートなど）。設定の [api] listen を確認してください。"
                )
            }
            ApiStartError::Bind { addr, source } => format!(
                "API のアドレス {addr} で待ち受けできません: {}。",
                crate::domain::io_error_ja(source)
            ),
            ApiStartError::NotLoopback(addr) => format!(
                "API のアドレス {addr} はこの機械の外から届きます。設定で allow_remote = true を明示しない限り使えません。"
            ),
        }
    }
}

/// A bound API, ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl Server {
    /// Makes (or reads) the token and binds the configured address.
    pub async fn bind(daemon: Daemon) -> Result<Self, ApiStartError> {
        let config = daemon.config().clone();
        let addr = config.api.listen;
        if !config.api.allow_remote && !addr.ip().is_loopback() {
            return Err(ApiStartError::NotLoopback(addr));
        }
        let path = config.token_file();
        let token = token::ensure(&path).map_err(|source| ApiStartError::Token {
            path: path.display().to_string(),
            source,
        })?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ApiStartError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| ApiStartError::Bind { addr, source })?;
        let router = routes::router(daemon, token, bound)
            .layer(DefaultBodyLimit::max(config.api.max_body_bytes));
        Ok(Self { listener, router })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves until `shutdown` turns true; open event streams end then too, so the
    /// shutdown waits only for requests in flight.
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>) {
        let stop = async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "API server failed");
        }
    }
}
