//! Signing in and out. A session is a random 256-bit token, stored only as its hash,
//! with an idle and an absolute expiry; the portal gets it as a cookie, apps as a bearer.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cubby_core::audit::Actor;
use cubby_core::validation::normalize_email;
use cubby_core::{ErrorCode, SessionId};
use cubby_crypto::{Verification, new_token};
use cubby_store::SessionRow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::support::{audit, hash_password, throttle, verify_password};
use crate::config::TlsSettings;
use crate::http::auth::{Guardian, cleared_cookie, csrf_token, is_live, session_cookie};
use crate::http::client::ClientAddr;
use crate::http::{ApiError, ApiJson, AppState, ErrorBody};
use crate::vault::now_millis;

#[derive(Deserialize, ToSchema)]
pub struct Login {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct NewSession {
    #[schema(value_type = String)]
    pub session_id: SessionId,
    /// Send as `Authorization: Bearer <token>` (apps); the portal gets it as a cookie.
    pub token: String,
    /// Send as `X-CSRF-Token` with cookie-authenticated changes.
    pub csrf_token: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
}

fn invalid_credentials() -> ApiError {
    ApiError::new(ErrorCode::InvalidCredentials, "the email address or the password is not right")
}

/// Sign in. Wrong password and unknown address answer alike; failures are throttled per
/// account and per client address.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions", request_body = Login,
    responses(
        (status = 201, description = "Signed in (also sets the session cookie)", body = NewSession),
        (status = 401, description = "Wrong email or password", body = ErrorBody),
        (status = 403, description = "Email address not confirmed yet", body = ErrorBody),
        (status = 429, description = "Too many failed attempts", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientAddr,
    ApiJson(body): ApiJson<Login>,
) -> Result<Response, ApiError> {
    let email = normalize_email(&body.email).unwrap_or_default();
    let index = state.vault.email_index(&email);
    let account_key = format!("login:{}", hex::encode(&index));
    let address_key = client.throttle_key();
    throttle(&state.throttles.login, &[&account_key, &address_key])?;

    let store = state.vault.store();
    let account = store.account_by_email_index(&index).await?;
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let verification = verify_password(&state.passwords, &body.password, stored).await?;
    let (account, needs_rehash) = match (account, verification) {
        (Some(account), Verification::Valid { needs_rehash }) => (account, needs_rehash),
        (account, _) => {
            state.throttles.login.record_failure(&account_key);
            state.throttles.login.record_failure(&address_key);
            let actor = account.map_or(Actor::Anonymous, |a| Actor::Account(a.id));
            audit(&state, actor, "login.failed", None, "{}".to_owned()).await?;
            return Err(invalid_credentials());
        }
    };
    state.throttles.login.record_success(&account_key);
    // The address keeps its count: one's own successful login must not wipe guesses at others.
    state.throttles.login.release(&address_key);
    if needs_rehash {
        let hash = hash_password(&state.passwords, &body.password).await?;
        store.set_password_hash(account.id, &hash).await?;
    }
    if account.email_verified_at.is_none() {
        return Err(ApiError::new(
            ErrorCode::EmailNotVerified,
            "confirm your email address first: open the link we sent you",
        ));
    }

    let (token, hash) = new_token()?;
    let now = now_millis();
    let max_age = state.config.session_max_age;
    let session = SessionRow {
        id: SessionId::random(),
        token_hash: hash.to_vec(),
        account_id: account.id,
        created_at: now,
        last_seen_at: now,
        expires_at: now + i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX / 2),
    };
    store.create_session(&session).await?;
    store.touch_account(account.id, now).await?;
    audit(&state, Actor::Account(account.id), "login.succeeded", None, format!(r#"{{"session":"{}"}}"#, session.id))
        .await?;
    let secure = state.config.tls != TlsSettings::None;
    let body = NewSession {
        session_id: session.id,
        csrf_token: csrf_token(&state, &token),
        expires_at: session.expires_at,
        token: token.clone(),
    };
    let mut response = (StatusCode::CREATED, ApiJson(body)).into_response();
    if let Some(cookie) = session_cookie(&token, max_age, secure) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    #[schema(value_type = String)]
    pub id: SessionId,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    /// The session this request came with.
    pub current: bool,
}

/// My sessions (all signed-in browsers and apps).
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions",
    responses((status = 200, body = Vec<SessionInfo>), (status = 401, description = "Not signed in", body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, guardian: Guardian) -> Result<ApiJson<Vec<SessionInfo>>, ApiError> {
    let sessions = state.vault.store().sessions_of(guardian.account).await?;
    let now = now_millis();
    Ok(ApiJson(
        sessions
            .into_iter()
            .filter(|s| is_live(s, now, state.config.session_idle))
            .map(|s| SessionInfo {
                id: s.id,
                created_at: s.created_at,
                last_seen_at: s.last_seen_at,
                expires_at: s.expires_at,
                current: s.id == guardian.session,
            })
            .collect(),
    ))
}

/// Sign out one of my sessions.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such session of mine", body = ErrorBody),
    ))]
pub async fn sign_out_one(
    State(state): State<AppState>,
    guardian: Guardian,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: SessionId = id.parse().map_err(|_| ApiError::not_found())?;
    if !state.vault.store().delete_session(guardian.account, id).await? {
        return Err(ApiError::not_found());
    }
    audit(&state, Actor::Account(guardian.account), "session.signed_out", None, format!(r#"{{"session":"{id}"}}"#))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sign out everywhere, this session included.
#[utoipa::path(delete, path = "/api/v1/sessions", tag = "sessions",
    responses((status = 204, description = "Every session signed out"), (status = 401, description = "Not signed in", body = ErrorBody)))]
pub async fn sign_out_all(State(state): State<AppState>, guardian: Guardian) -> Result<Response, ApiError> {
    state.vault.store().delete_sessions_except(guardian.account, None).await?;
    audit(&state, Actor::Account(guardian.account), "session.signed_out_everywhere", None, "{}".to_owned()).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cleared_cookie())]).into_response())
}

/// Sign out this session.
#[utoipa::path(delete, path = "/api/v1/session", tag = "sessions",
    responses((status = 204, description = "Signed out"), (status = 401, description = "Not signed in", body = ErrorBody)))]
pub async fn sign_out(State(state): State<AppState>, guardian: Guardian) -> Result<Response, ApiError> {
    state.vault.store().delete_session(guardian.account, guardian.session).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cleared_cookie())]).into_response())
}
