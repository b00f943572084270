//! The one error type of the HTTP API, rendered as
//! `{"error":{"code":"…","message":"…"}}` with the status that fits the code.

use std::borrow::Cow;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cubby_core::ErrorCode;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: Cow<'static, str>,
    /// Seconds, for `rate_limited`: sent as the Retry-After header.
    retry_after: Option<u64>,
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: match on this.
    #[schema(example = "malformed_json")]
    pub code: String,
    /// For people: what went wrong and, where possible, how to fix it.
    #[schema(example = "the body is not valid JSON")]
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self { code, message: message.into(), retry_after: None }
    }

    /// 429 with Retry-After: the caller may try again after `seconds`.
    pub fn rate_limited(seconds: u64) -> Self {
        Self {
            retry_after: Some(seconds.max(1)),
            ..Self::new(ErrorCode::RateLimited, "too many attempts; wait before trying again")
        }
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "there is nothing at this address")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(ErrorCode::MethodNotAllowed, "this address does not accept this method")
    }

    pub fn timeout() -> Self {
        Self::new(ErrorCode::Timeout, "the request took too long and was abandoned; nothing was changed")
    }

    /// A failure that is ours, not the caller's. The cause goes to the log (it never holds
    /// request data), the caller gets a generic message.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "something went wrong on the server; it has been logged")
    }

    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "dependency unavailable");
        Self::new(ErrorCode::Unavailable, "the service is temporarily unavailable; try again shortly")
    }
}

pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::MalformedJson | ErrorCode::InvalidParameter | ErrorCode::InvalidId => StatusCode::BAD_REQUEST,
        ErrorCode::InvalidBody => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Timeout => StatusCode::REQUEST_TIMEOUT,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::WeakPassword => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::InvalidCredentials => StatusCode::UNAUTHORIZED,
        ErrorCode::EmailNotVerified => StatusCode::FORBIDDEN,
        ErrorCode::InvalidToken => StatusCode::BAD_REQUEST,
        ErrorCode::ConsentRequired => StatusCode::FORBIDDEN,
        ErrorCode::LastGuardian => StatusCode::CONFLICT,
        ErrorCode::CsrfRejected => StatusCode::FORBIDDEN,
        ErrorCode::MethodUnavailable => StatusCode::NOT_IMPLEMENTED,
        // RFC 8628 §3.5 answers these with 400.
        ErrorCode::AuthorizationPending | ErrorCode::SlowDown | ErrorCode::ExpiredToken | ErrorCode::AccessDenied => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::MalformedMessage => StatusCode::BAD_REQUEST,
        // The client processes the commit that won, then retries.
        ErrorCode::StaleEpoch => StatusCode::CONFLICT,
        ErrorCode::MembershipRefused => StatusCode::FORBIDDEN,
        ErrorCode::DailyLimitReached => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::SupervisionRequired => StatusCode::CONFLICT,
        ErrorCode::SignatureInvalid => StatusCode::FORBIDDEN,
        ErrorCode::VersionNotNewer => StatusCode::CONFLICT,
        ErrorCode::HashMismatch => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::NotSuitableForAge => StatusCode::FORBIDDEN,
        ErrorCode::PaymentRequired => StatusCode::PAYMENT_REQUIRED,
        ErrorCode::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<cubby_core::Error> for ApiError {
    fn from(error: cubby_core::Error) -> Self {
        Self::new(error.code, error.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail { code: self.code.as_str().to_owned(), message: self.message.into_owned() },
        };
        let mut response = (status_for(self.code), Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        // The metrics layer reads the code from here.
        response.extensions_mut().insert(self.code);
        response
    }
}

/// Answers every route that does not exist.
pub async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// Answers a known route called with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

impl From<crate::vault::VaultError> for ApiError {
    fn from(error: crate::vault::VaultError) -> Self {
        Self::internal(&error)
    }
}

impl From<cubby_store::StoreError> for ApiError {
    fn from(error: cubby_store::StoreError) -> Self {
        Self::internal(&error)
    }
}

impl From<cubby_crypto::CryptoError> for ApiError {
    fn from(error: cubby_crypto::CryptoError) -> Self {
        Self::internal(&error)
    }
}
