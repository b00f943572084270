//! The one error vocabulary. Every failure a client can see has a stable,
//! machine-readable code and a human message; the HTTP layer maps codes to statuses.

use std::fmt;

use serde::Serialize;

/// Stable error codes. Clients match on these strings, so never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON.
    MalformedJson,
    /// The JSON is well-formed but does not have the expected fields or types.
    InvalidBody,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// The body is larger than the server accepts.
    BodyTooLarge,
    /// A path or query parameter is not valid.
    InvalidParameter,
    /// An id is not of the expected form.
    InvalidId,
    /// No such route, or no such object visible to the caller.
    NotFound,
    /// The route exists but not for this HTTP method.
    MethodNotAllowed,
    /// The request took longer than the server allows.
    Timeout,
    /// The caller is not authenticated.
    Unauthenticated,
    /// The caller is authenticated but not allowed to do this.
    Forbidden,
    /// The request conflicts with the current state.
    Conflict,
    /// Too many requests; retry later (see the Retry-After header).
    RateLimited,
    /// The password is too short or too common.
    WeakPassword,
    /// The email and password do not match an account (or the account does not exist).
    InvalidCredentials,
    /// The account's email address has not been verified yet.
    EmailNotVerified,
    /// A token (email verification, password reset, invite, consent) is unknown, used or expired.
    InvalidToken,
    /// Parental consent to the current privacy notice is needed first.
    ConsentRequired,
    /// The last guardian cannot leave a family; delete the family instead.
    LastGuardian,
    /// A cookie-authenticated change came without the CSRF token.
    CsrfRejected,
    /// This consent method is not available on this server.
    MethodUnavailable,
    /// Pairing (RFC 8628): the guardian has not approved yet; keep polling.
    AuthorizationPending,
    /// Pairing: polling faster than the interval; wait 5 s longer between polls.
    SlowDown,
    /// Pairing: the code expired; start again.
    ExpiredToken,
    /// Pairing: the guardian refused.
    AccessDenied,
    /// Not a valid MLS message, or one of a kind this endpoint does not take.
    MalformedMessage,
    /// A commit for an epoch the group has left: process the winning commit, then retry.
    StaleEpoch,
    /// The change would let a device into a conversation the family rules keep it out of.
    MembershipRefused,
    /// A child's daily limit of messages is reached.
    DailyLimitReached,
    /// A supervised child's guardians must be members of every conversation it is in.
    SupervisionRequired,
    /// A package's signature does not verify under its publisher's key, or the publisher is unknown.
    SignatureInvalid,
    /// A package version must be newer than every published or pending version of its id.
    VersionNotNewer,
    /// An uploaded file's SHA-256 is not the one its manifest lists.
    HashMismatch,
    /// The title is for older children than this child.
    NotSuitableForAge,
    /// The title is paid, and paying is not possible here.
    PaymentRequired,
    /// The endpoint is a WebSocket, and the request did not ask for one.
    UpgradeRequired,
    /// The server is shutting down or a dependency is unavailable.
    Unavailable,
    /// Something went wrong on the server; details are in its log, not here.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::InvalidBody => "invalid_body",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::BodyTooLarge => "body_too_large",
            Self::InvalidParameter => "invalid_parameter",
            Self::InvalidId => "invalid_id",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Timeout => "timeout",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::Conflict => "conflict",
            Self::RateLimited => "rate_limited",
            Self::WeakPassword => "weak_password",
            Self::InvalidCredentials => "invalid_credentials",
            Self::EmailNotVerified => "email_not_verified",
            Self::InvalidToken => "invalid_token",
            Self::ConsentRequired => "consent_required",
            Self::LastGuardian => "last_guardian",
            Self::CsrfRejected => "csrf_rejected",
            Self::MethodUnavailable => "method_unavailable",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
            Self::AccessDenied => "access_denied",
            Self::MalformedMessage => "malformed_message",
            Self::StaleEpoch => "stale_epoch",
            Self::MembershipRefused => "membership_refused",
            Self::DailyLimitReached => "daily_limit_reached",
            Self::SupervisionRequired => "supervision_required",
            Self::SignatureInvalid => "signature_invalid",
            Self::VersionNotNewer => "version_not_newer",
            Self::HashMismatch => "hash_mismatch",
            Self::NotSuitableForAge => "not_suitable_for_age",
            Self::PaymentRequired => "payment_required",
            Self::UpgradeRequired => "upgrade_required",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A domain error: a code and a message safe to show to the caller.
/// The message must never contain a secret or personal data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_and_match_their_serde_names() {
        let code = ErrorCode::BodyTooLarge;
        assert_eq!(serde_json::to_string(&code).ok().as_deref(), Some("\"body_too_large\""));
        assert_eq!(code.as_str(), "body_too_large");
    }
}
