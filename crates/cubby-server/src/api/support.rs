//! Small pieces the API handlers share.

use cubby_core::audit::{Actor, AuditEvent};
use cubby_core::{AccountId, FamilyId};
use cubby_crypto::{PasswordHasher, Verification, new_token};
use cubby_store::EmailTokenRow;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::throttle::Throttle;
use crate::http::{ApiError, AppState};
use crate::mail::Email;
use crate::vault::now_millis;

/// The answer to requests that must not reveal whether an account exists.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    #[schema(example = "accepted")]
    pub status: &'static str,
    pub message: &'static str,
}

pub fn accepted(message: &'static str) -> Accepted {
    Accepted { status: "accepted", message }
}

/// Refuses with 429 if any key is blocked (counting none of them then).
pub fn throttle(throttle: &Throttle, keys: &[&str]) -> Result<(), ApiError> {
    throttle.check_all(keys).map_err(|wait| ApiError::rate_limited(wait.as_secs_f64().ceil() as u64))
}

/// Argon2id off the async workers: it is deliberately slow.
pub async fn hash_password(passwords: &std::sync::Arc<PasswordHasher>, password: &str) -> Result<String, ApiError> {
    let (passwords, password) = (passwords.clone(), password.to_owned());
    tokio::task::spawn_blocking(move || passwords.hash(&password))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(ApiError::from)
}

/// Verifies against `stored`, or spends the same work when there is no account.
pub async fn verify_password(
    passwords: &std::sync::Arc<PasswordHasher>,
    password: &str,
    stored: Option<String>,
) -> Result<Verification, ApiError> {
    let (passwords, password) = (passwords.clone(), password.to_owned());
    tokio::task::spawn_blocking(move || match stored {
        Some(stored) => passwords.verify(&password, &stored),
        None => {
            passwords.verify_dummy(&password);
            Ok(Verification::Invalid)
        }
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
    .map_err(ApiError::from)
}

/// Creates a single-use email token and returns the text to put in the link.
pub async fn email_token(
    state: &AppState,
    purpose: &str,
    account: AccountId,
    family: Option<FamilyId>,
    detail: String,
    valid_for_ms: i64,
) -> Result<String, ApiError> {
    let (token, hash) = new_token()?;
    let now = now_millis();
    state
        .vault
        .store()
        .create_email_token(&EmailTokenRow {
            token_hash: hash.to_vec(),
            purpose: purpose.to_owned(),
            account_id: account,
            family_id: family,
            detail,
            created_at: now,
            expires_at: now + valid_for_ms,
        })
        .await?;
    Ok(token)
}

pub async fn send_mail(state: &AppState, to: &str, subject: &str, body: String) -> Result<(), ApiError> {
    let email = Email { to: to.to_owned(), subject: subject.to_owned(), body };
    state.mailer.send(&email).await.map_err(|e| ApiError::unavailable(&e))
}

pub async fn audit(
    state: &AppState,
    actor: Actor,
    action: &'static str,
    family: Option<FamilyId>,
    detail: String,
) -> Result<(), ApiError> {
    state.vault.audit().append(&AuditEvent::new(actor, action, family, detail)).await?;
    Ok(())
}

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
