//! Who is calling: a session token from the `cubby_session` cookie (the portal) or an
//! `Authorization: Bearer` header (apps). Cookie-authenticated changes must also carry
//! the session's CSRF token in `X-CSRF-Token`.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use cubby_core::policy::Actor;
use cubby_core::{AccountId, ErrorCode, FamilyId, SessionId};
use cubby_crypto::token_hash;
use cubby_store::SessionRow;

use super::{ApiError, AppState};
use crate::vault::now_millis;

pub const SESSION_COOKIE: &str = "cubby_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A signed-in guardian, with the families they belong to (read fresh per request).
#[derive(Clone, Debug)]
pub struct Guardian {
    pub account: AccountId,
    pub session: SessionId,
    pub families: Vec<FamilyId>,
}

impl Guardian {
    pub fn actor(&self) -> Actor {
        Actor::Guardian { account: self.account, families: self.families.clone() }
    }
}

/// Activity is written at most this often per session, not on every request.
const TOUCH_EVERY_MS: i64 = 60_000;

impl FromRequestParts<AppState> for Guardian {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let change = (!is_safe(&parts.method))
            .then(|| parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or(""));
        authenticate(state, &parts.headers, change).await
    }
}

/// The guardian whose session `headers` carry. `change` is `Some(csrf token sent)` when
/// the request changes something: a cookie session must then have sent its CSRF token
/// (the API takes it from `X-CSRF-Token`, the portal from its forms; the rule is this one).
pub async fn authenticate(state: &AppState, headers: &HeaderMap, change: Option<&str>) -> Result<Guardian, ApiError> {
    let (token, via_cookie) = session_token(headers).ok_or_else(unauthenticated)?;
    let store = state.vault.store();
    let session = store
        .session_by_token_hash(&token_hash(&token))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(unauthenticated)?;
    let now = now_millis();
    if !is_live(&session, now, state.config.session_idle) {
        let _ = store.delete_session(session.account_id, session.id).await;
        return Err(unauthenticated());
    }
    if let (true, Some(sent)) = (via_cookie, change) {
        // Compared as hashes, so the comparison's timing says nothing about the token.
        if token_hash(sent) != token_hash(&csrf_token(state, &token)) {
            return Err(ApiError::new(
                ErrorCode::CsrfRejected,
                "this change needs the X-CSRF-Token header from your session",
            ));
        }
    }
    // Touch often enough that a session in use never reaches its idle limit.
    let idle_ms = i64::try_from(state.config.session_idle.as_millis()).unwrap_or(i64::MAX);
    if now - session.last_seen_at > TOUCH_EVERY_MS.min(idle_ms / 4) {
        store.touch_session(session.id, now).await.map_err(|e| ApiError::internal(&e))?;
        store.touch_account(session.account_id, now).await.map_err(|e| ApiError::internal(&e))?;
    }
    let families = store.families_of(session.account_id).await.map_err(|e| ApiError::internal(&e))?;
    Ok(Guardian { account: session.account_id, session: session.id, families })
}

fn unauthenticated() -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, "sign in first (your session may have expired or been signed out)")
}

/// Not expired by age, and used recently enough.
pub fn is_live(session: &SessionRow, now: i64, idle: Duration) -> bool {
    let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
    now < session.expires_at && now.saturating_sub(session.last_seen_at) < idle_ms
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The bearer token, else the session cookie (and whether it came from the cookie).
pub fn session_token(headers: &HeaderMap) -> Option<(String, bool)> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let token = value.strip_prefix("Bearer ")?.trim();
        return (!token.is_empty()).then(|| (token.to_owned(), false));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
        .filter(|t| !t.is_empty())
        .map(|t| (t.to_owned(), true))
}

/// The CSRF token of a session: a MAC of its token, so nothing more needs storing.
pub fn csrf_token(state: &AppState, session_token: &str) -> String {
    hex::encode(state.vault.system_key().blind_index_key("sessions.csrf").index(session_token.as_bytes()))
}

/// The session cookie: HttpOnly, SameSite=Strict, and Secure when served over TLS.
pub fn session_cookie(token: &str, max_age: Duration, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age.as_secs()
    ))
    .ok()
}

/// A cookie that clears the session cookie.
pub fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static("cubby_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}
