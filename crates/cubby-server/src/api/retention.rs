//! How long a family's undelivered messages wait on the server before they are deleted.
//! Delivered messages go as soon as every recipient acknowledged them, whatever this says.

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

/// The longest retention a family may choose: a year.
pub const MAX_DAYS: i64 = 365;

#[derive(Serialize, Deserialize, ToSchema)]
pub struct MessageRetention {
    /// Days an undelivered message is kept (1 to 365); `null` for the server's default.
    pub days: Option<i64>,
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
    Ok(ApiJson(MessageRetention { days, effective_days: days.unwrap_or_else(|| server_default_days(&state)) }))
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
    if !state.vault.store().set_message_retention_days(family, body.days).await? {
        return Err(ApiError::not_found());
    }
    let detail = match body.days {
        Some(days) => format!(r#"{{"days":{days}}}"#),
        None => r#"{"days":null}"#.to_owned(),
    };
    audit(&state, Actor::Account(guardian.account), "family.message_retention_set", Some(family), detail).await?;
    Ok(ApiJson(MessageRetention { days: body.days, effective_days: body.days.unwrap_or_else(|| server_default_days(&state)) }))
}
