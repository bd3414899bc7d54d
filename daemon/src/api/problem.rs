//! Errors as RFC 9457 problem documents (問題の詳細): `application/problem+json` with a
//! stable `type`, an English `title`, the HTTP `status`, a Japanese `detail` for the operator,
//! and the request field it is about when there is one.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A stable URI naming the kind of problem (`urn:tsunagi:problem:<name>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short English summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened and what to do, in Japanese, for the operator.
    pub detail: String,
    /// The request field the problem is about.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
}

impl Problem {
    /// A problem of kind `name` (kebab-case).
    pub fn new(status: StatusCode, name: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:tsunagi:problem:{name}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    /// Names the field.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400: the request is not acceptable.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
            detail,
        )
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or wrong bearer token",
            "APIのトークンがないか、正しくありません。tsunagid の api.token を確認してください。",
        )
    }

    /// 500: the daemon failed; what was asked may not have been done.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            detail,
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<crate::ops::OpError> for Problem {
    fn from(e: crate::ops::OpError) -> Self {
        use crate::ops::OpError;
        match &e {
            OpError::Invalid { field, .. } => Problem::bad_request(e.message_ja()).field(*field),
            OpError::NotFound(_) => Problem::not_found(e.message_ja()),
            OpError::Final(_) => Problem::new(
                StatusCode::CONFLICT,
                "final",
                "Claim basis is final",
                e.message_ja(),
            ),
            OpError::NotDecided(_) => Problem::new(
                StatusCode::CONFLICT,
                "not-decided",
                "No claim basis yet",
                e.message_ja(),
            ),
            OpError::AlreadyDecided(_) => Problem::new(
                StatusCode::CONFLICT,
                "already-decided",
                "Check already decided",
                e.message_ja(),
            ),
            OpError::Ledger(inner) => {
                tracing::error!(error = %inner, "ledger operation failed");
                Problem::internal(e.message_ja())
            }
        }
    }
}
