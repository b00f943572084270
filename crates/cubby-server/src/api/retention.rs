//! How long a family's undelivered messages, photos and voice clips wait on the server
//! before they are deleted (delivered ones go as soon as every recipient has them), and
//! whether the family's devices keep a history of what they have shown.

use axum::extract::{Path, State};
use cubby_core::ErrorCode;
use cubby_core::audit::Actor;
use cubby_core::policy::Action;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::families::allowed;
use super::support::audit;
use crate::http::auth::Guardian;
use crate::http::{ApiError, ApiJson, AppState, ErrorBody};

/// The longest retention a family may choose: the server is a relay, not an archive.
pub const MAX_DAYS: i64 = 30;

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct MessageRetention {
    /// Days an undelivered message, photo or voice clip is kept (1 to 30); `null` for the
    /// server's default.
    pub days: Option<i64>,
    /// Whether the family's devices keep the messages they have shown (default true);
    /// when false, a device deletes each message once its app has taken it.
    #[serde(default = "yes")]
    pub keep_history: bool,
    /// What applies now, in days (the family's choice, or the server's default).
    #[serde(default, skip_deserializing)]
    pub effective_days: i64,
}

fn server_default_days(state: &AppState) -> i64 {
    i64::try_from(state.config.message_retention.as_secs() / 86_400).unwrap_or(MAX_DAYS).max(1)
}

/// The family's message retention.
#[utoipa::path(get, path = "/api/v1/families/{family_id}/message-retention", tag = "families",
    params(("family_id" = String, Path)),
    responses(
        (status = 200, body = MessageRetention),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such family of mine", body = ErrorBody),
    ))]
pub async fn get(State(state): State<AppState>, guardian: Guardian, Path(family): Path<String>) -> Result<ApiJson<MessageRetention>, ApiError> {
    let family = allowed(&guardian, &family, Action::Read)?;
    let days = state.vault.store().message_retention_days(family).await?;
    let keep_history = state.vault.store().keep_history(family).await?;
    Ok(ApiJson(MessageRetention { days, keep_history, effective_days: days.unwrap_or_else(|| server_default_days(&state)) }))
}

/// Choose how long the family's undelivered messages are kept.
#[utoipa::path(put, path = "/api/v1/families/{family_id}/message-retention", tag = "families",
    request_body = MessageRetention, params(("family_id" = String, Path)),
    responses(
        (status = 200, body = MessageRetention),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such family of mine", body = ErrorBody),
        (status = 422, description = "Days out of range", body = ErrorBody),
    ))]
pub async fn set(
    State(state): State<AppState>,
    guardian: Guardian,
    Path(family): Path<String>,
    ApiJson(body): ApiJson<MessageRetention>,
) -> Result<ApiJson<MessageRetention>, ApiError> {
    let family = allowed(&guardian, &family, Action::Change)?;
    if body.days.is_some_and(|d| !(1..=MAX_DAYS).contains(&d)) {
        return Err(ApiError::new(ErrorCode::InvalidBody, format!("days must be between 1 and {MAX_DAYS}, or null")));
    }
    if !state.vault.store().set_message_retention_days(family, body.days).await?
        || !state.vault.store().set_keep_history(family, body.keep_history).await?
    {
        return Err(ApiError::not_found());
    }
    let days = body.days.map_or_else(|| "null".to_owned(), |d| d.to_string());
    let detail = format!(r#"{{"days":{days},"keep_history":{}}}"#, body.keep_history);
    audit(&state, Actor::Account(guardian.account), "family.message_retention_set", Some(family), detail).await?;
    Ok(ApiJson(MessageRetention {
        days: body.days,
        keep_history: body.keep_history,
        effective_days: body.days.unwrap_or_else(|| server_default_days(&state)),
    }))
}
