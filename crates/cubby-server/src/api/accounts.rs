//! Guardian accounts: sign-up, email verification, password change and reset, the
//! account itself. Sign-up and reset answer the same whether or not the email has an
//! account, so nobody can learn who uses Cubby from these endpoints.

use axum::extract::State;
use axum::http::StatusCode;
use cubby_core::audit::Actor;
use cubby_core::password_rules::check_new_password;
use cubby_core::validation::normalize_email;
use cubby_core::{AccountId, ErrorCode, FamilyId};
use cubby_crypto::{Verification, token_hash};
use cubby_store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::support::{
    Accepted, HOUR_MS, MINUTE_MS, accepted, audit, email_token, hash_password, send_mail, throttle, verify_password,
};
use crate::http::auth::Guardian;
use crate::http::client::ClientAddr;
use crate::http::{ApiError, ApiJson, AppState, ErrorBody};
use crate::vault::{VaultError, now_millis};

const VERIFY_EMAIL: &str = "verify_email";
const RESET_PASSWORD: &str = "reset_password";

#[derive(Deserialize, ToSchema)]
pub struct SignUp {
    #[schema(example = "parent@example.com")]
    pub email: String,
    /// At least 12 characters, not a common password.
    pub password: String,
}

/// Create a guardian account. Always answers 202: a confirmation link goes to the address
/// (or, if it already has an account, a note saying so).
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", request_body = SignUp,
    responses(
        (status = 202, description = "Check your email", body = Accepted),
        (status = 422, description = "Invalid email or weak password", body = ErrorBody),
        (status = 429, description = "Too many attempts", body = ErrorBody),
    ))]
pub async fn sign_up(
    State(state): State<AppState>,
    client: ClientAddr,
    ApiJson(body): ApiJson<SignUp>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let email = normalize_email(&body.email)?;
    check_new_password(&body.password)?;
    let index_key = format!("signup:{}", hex::encode(state.vault.email_index(&email)));
    throttle(&state.throttles.requests, &[&client.throttle_key(), &index_key])?;
    // The rest happens after answering, so the answer's timing cannot tell a taken address
    // from a free one.
    tokio::spawn(async move {
        if let Err(error) = register(&state, &email, &body.password).await {
            tracing::error!(code = %error.code(), "sign-up could not be completed");
        }
    });
    Ok((StatusCode::ACCEPTED, ApiJson(accepted("if the address can be used, a confirmation link is on its way"))))
}

/// Creates the account and mails the confirmation link, or tells the owner of a taken
/// address that someone tried.
async fn register(state: &AppState, email: &str, password: &str) -> Result<(), ApiError> {
    let hash = hash_password(&state.passwords, password).await?;
    match state.vault.create_account(email, hash).await {
        Ok(account) => {
            let token = email_token(state, VERIFY_EMAIL, account, None, String::new(), 24 * HOUR_MS).await?;
            let link = format!("{}/verify-email?token={token}", state.config.public_url);
            let body = format!(
                "Welcome to Cubby.\n\nConfirm your email address by opening this link within 24 hours:\n{link}\n\n\
                 (or send the token {token} to POST /api/v1/accounts/verify-email)\n\n\
                 If you did not sign up, ignore this message.\n"
            );
            send_mail(state, email, "Confirm your email address", body).await?;
            audit(state, Actor::Account(account), "account.created", None, "{}".to_owned()).await
        }
        Err(VaultError::Store(StoreError::Conflict)) => {
            let body = "Someone (perhaps you) tried to create a Cubby account with this address, which already has \
                        one.\n\nIf it was you, sign in, or reset your password if you forgot it. If not, ignore this \
                        message: nothing was changed.\n"
                .to_owned();
            send_mail(state, email, "You already have a Cubby account", body).await
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct TokenBody {
    /// The token from the emailed link.
    pub token: String,
}

/// Confirm an email address with the single-use token from the confirmation link.
#[utoipa::path(post, path = "/api/v1/accounts/verify-email", tag = "accounts", request_body = TokenBody,
    responses(
        (status = 204, description = "Address confirmed"),
        (status = 400, description = "Unknown, used or expired token", body = ErrorBody),
    ))]
pub async fn verify_email(State(state): State<AppState>, ApiJson(body): ApiJson<TokenBody>) -> Result<StatusCode, ApiError> {
    let store = state.vault.store();
    let token = store
        .take_email_token(&token_hash(&body.token), VERIFY_EMAIL, now_millis())
        .await?
        .ok_or_else(invalid_token)?;
    store.mark_email_verified(token.account_id, now_millis()).await?;
    audit(&state, Actor::Account(token.account_id), "account.email_verified", None, "{}".to_owned()).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn invalid_token() -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, "this link is unknown, already used or expired; ask for a new one")
}

#[derive(Deserialize, ToSchema)]
pub struct ResetRequest {
    pub email: String,
}

/// Ask for a password-reset link. Always answers 202.
#[utoipa::path(post, path = "/api/v1/password-reset", tag = "accounts", request_body = ResetRequest,
    responses(
        (status = 202, description = "If the address has an account, a link is on its way", body = Accepted),
        (status = 429, description = "Too many attempts", body = ErrorBody),
    ))]
pub async fn request_reset(
    State(state): State<AppState>,
    client: ClientAddr,
    ApiJson(body): ApiJson<ResetRequest>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let answer = || (StatusCode::ACCEPTED, ApiJson(accepted("if the address has an account, a reset link is on its way")));
    let Ok(email) = normalize_email(&body.email) else { return Ok(answer()) };
    let index = state.vault.email_index(&email);
    let index_key = format!("reset:{}", hex::encode(&index));
    throttle(&state.throttles.requests, &[&client.throttle_key(), &index_key])?;
    // Looked up and mailed after answering: the answer's timing says nothing either.
    tokio::spawn(async move {
        if let Err(error) = send_reset_link(&state, &email, &index).await {
            tracing::error!(code = %error.code(), "reset link could not be sent");
        }
    });
    Ok(answer())
}

async fn send_reset_link(state: &AppState, email: &str, index: &[u8]) -> Result<(), ApiError> {
    let Some(account) = state.vault.store().account_by_email_index(index).await? else { return Ok(()) };
    let token = email_token(state, RESET_PASSWORD, account.id, None, String::new(), 30 * MINUTE_MS).await?;
    let link = format!("{}/reset-password?token={token}", state.config.public_url);
    let body = format!(
        "Someone asked to reset the password of your Cubby account.\n\nIf it was you, open this link within \
         30 minutes:\n{link}\n\n(or send the token {token} to POST /api/v1/password-reset/confirm)\n\n\
         If not, ignore this message: your password is unchanged.\n"
    );
    send_mail(state, email, "Reset your Cubby password", body).await?;
    audit(state, Actor::Account(account.id), "password.reset_requested", None, "{}".to_owned()).await
}

#[derive(Deserialize, ToSchema)]
pub struct ResetConfirm {
    pub token: String,
    pub new_password: String,
}

/// Set a new password with the single-use token from the reset link. Signs out every session.
#[utoipa::path(post, path = "/api/v1/password-reset/confirm", tag = "accounts", request_body = ResetConfirm,
    responses(
        (status = 204, description = "Password changed; every session signed out"),
        (status = 400, description = "Unknown, used or expired token", body = ErrorBody),
        (status = 422, description = "Weak password", body = ErrorBody),
    ))]
pub async fn confirm_reset(State(state): State<AppState>, ApiJson(body): ApiJson<ResetConfirm>) -> Result<StatusCode, ApiError> {
    check_new_password(&body.new_password)?;
    let store = state.vault.store();
    let token = store
        .take_email_token(&token_hash(&body.token), RESET_PASSWORD, now_millis())
        .await?
        .ok_or_else(invalid_token)?;
    let hash = hash_password(&state.passwords, &body.new_password).await?;
    store.set_password_hash(token.account_id, &hash).await?;
    // Following the link proves control of the address.
    store.mark_email_verified(token.account_id, now_millis()).await?;
    store.delete_sessions_except(token.account_id, None).await?;
    // Any other reset link sent earlier is void now.
    store.delete_email_tokens(token.account_id, RESET_PASSWORD).await?;
    audit(&state, Actor::Account(token.account_id), "password.reset", None, "{}".to_owned()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub email: String,
    pub email_verified: bool,
    #[schema(value_type = Vec<String>)]
    pub families: Vec<FamilyId>,
}

/// The signed-in guardian's account.
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts",
    responses(
        (status = 200, body = Me),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn me(State(state): State<AppState>, guardian: Guardian) -> Result<ApiJson<Me>, ApiError> {
    let account = state.vault.store().account(guardian.account).await?.ok_or_else(ApiError::not_found)?;
    let email = state.vault.account_email(&account).await?.unwrap_or_default();
    Ok(ApiJson(Me {
        account_id: account.id,
        email,
        email_verified: account.email_verified_at.is_some(),
        families: guardian.families,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct ChangePassword {
    pub current_password: String,
    pub new_password: String,
}

/// Change the password. Every other session is signed out.
#[utoipa::path(put, path = "/api/v1/me/password", tag = "accounts", request_body = ChangePassword,
    responses(
        (status = 204, description = "Changed; other sessions signed out"),
        (status = 401, description = "Not signed in, or the current password is wrong", body = ErrorBody),
        (status = 422, description = "Weak password", body = ErrorBody),
        (status = 429, description = "Too many attempts", body = ErrorBody),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    guardian: Guardian,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    check_new_password(&body.new_password)?;
    let key = format!("password:{}", guardian.account);
    throttle(&state.throttles.login, &[&key])?;
    let store = state.vault.store();
    let account = store.account(guardian.account).await?.ok_or_else(ApiError::not_found)?;
    match verify_password(&state.passwords, &body.current_password, Some(account.password_hash)).await? {
        Verification::Valid { .. } => state.throttles.login.record_success(&key),
        Verification::Invalid => {
            state.throttles.login.record_failure(&key);
            return Err(ApiError::new(ErrorCode::InvalidCredentials, "the current password is not right"));
        }
    }
    let hash = hash_password(&state.passwords, &body.new_password).await?;
    store.set_password_hash(guardian.account, &hash).await?;
    store.delete_sessions_except(guardian.account, Some(guardian.session)).await?;
    store.delete_email_tokens(guardian.account, RESET_PASSWORD).await?;
    audit(&state, Actor::Account(guardian.account), "password.changed", None, "{}".to_owned()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete the account. Refused while it is the last guardian of a family: delete the
/// family (or add a co-guardian) first.
#[utoipa::path(delete, path = "/api/v1/me", tag = "accounts",
    responses(
        (status = 204, description = "Account and its keys destroyed"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 409, description = "Last guardian of a family", body = ErrorBody),
    ))]
pub async fn delete_me(State(state): State<AppState>, guardian: Guardian) -> Result<StatusCode, ApiError> {
    let store = state.vault.store();
    // All memberships go, or none: a refusal must not leave the account half-removed.
    if !store.leave_all_families(guardian.account).await? {
        return Err(ApiError::new(
            ErrorCode::LastGuardian,
            "you are the last guardian of a family: delete the family, or invite another guardian, first",
        ));
    }
    for family in &guardian.families {
        audit(&state, Actor::Account(guardian.account), "family.guardian_left", Some(*family), "{}".to_owned()).await?;
    }
    store.delete_account(guardian.account).await?;
    audit(&state, Actor::Account(guardian.account), "account.deleted", None, "{}".to_owned()).await?;
    Ok(StatusCode::NO_CONTENT)
}
