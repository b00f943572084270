//! A child's quiet hours and daily limit, set by guardians. During quiet hours the
//! child's toys receive only guardians' urgent messages; the rest waits in the queue.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use cubby_core::audit::Actor;
use cubby_core::policy::Action;
use cubby_core::quiet_hours::QuietHours;
use utoipa::ToSchema;

use super::children::child_id;
use super::families::allowed;
use super::support::audit;
use crate::http::auth::Guardian;
use crate::http::{ApiError, ApiJson, AppState, ErrorBody};
use crate::vault::now_millis;

/// The schema of [`QuietHours`] for the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct QuietHoursDoc {
    /// IANA time zone of the family, e.g. `Europe/Paris`.
    time_zone: String,
    /// Quiet windows: `{"start":"19:30","end":"07:00","days":["mon","tue"]}` (no days: every day).
    windows: Vec<WindowDoc>,
    /// Messages the child's toys may send per local day; absent: no limit.
    daily_limit: Option<u32>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct WindowDoc {
    start: String,
    end: String,
    days: Vec<String>,
}

async fn existing_child(state: &AppState, guardian: &Guardian, family: &str, child: &str, action: Action) -> Result<(cubby_core::FamilyId, cubby_core::ChildId), ApiError> {
    let family = allowed(guardian, family, action)?;
    let child = child_id(child)?;
    state.vault.store().child(family, child).await?.ok_or_else(ApiError::not_found)?;
    Ok((family, child))
}

/// A child's quiet hours (`null` when none are set).
#[utoipa::path(get, path = "/api/v1/families/{family_id}/children/{child_id}/quiet-hours", tag = "children",
    params(("family_id" = String, Path), ("child_id" = String, Path)),
    responses(
        (status = 200, body = Option<QuietHoursDoc>),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such child in a family of mine", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child)): Path<(String, String)>,
) -> Result<ApiJson<Option<QuietHours>>, ApiError> {
    let (family, child) = existing_child(&state, &guardian, &family, &child, Action::Read).await?;
    Ok(ApiJson(state.vault.quiet_hours(family, child).await?))
}

/// Set a child's quiet hours and daily limit (replaces what was set).
#[utoipa::path(put, path = "/api/v1/families/{family_id}/children/{child_id}/quiet-hours", tag = "children",
    request_body = QuietHoursDoc, params(("family_id" = String, Path), ("child_id" = String, Path)),
    responses(
        (status = 200, body = QuietHoursDoc),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such child in a family of mine", body = ErrorBody),
        (status = 422, description = "An unknown time zone, a malformed time or day, a limit out of range", body = ErrorBody),
    ))]
pub async fn set(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child)): Path<(String, String)>,
    ApiJson(schedule): ApiJson<QuietHours>,
) -> Result<ApiJson<QuietHours>, ApiError> {
    let (family, child) = existing_child(&state, &guardian, &family, &child, Action::Change).await?;
    schedule.validate()?;
    if !state.vault.set_quiet_hours(family, child, &schedule, now_millis()).await? {
        return Err(ApiError::not_found());
    }
    audit(&state, Actor::Account(guardian.account), "child.quiet_hours_set", Some(family), format!(r#"{{"child":"{child}"}}"#))
        .await?;
    Ok(ApiJson(schedule))
}

/// Remove a child's quiet hours and daily limit (done, whether or not any were set).
#[utoipa::path(delete, path = "/api/v1/families/{family_id}/children/{child_id}/quiet-hours", tag = "children",
    params(("family_id" = String, Path), ("child_id" = String, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such child in a family of mine", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (family, child) = existing_child(&state, &guardian, &family, &child, Action::Change).await?;
    if !state.vault.store().delete_quiet_hours(family, child).await? {
        return Ok(StatusCode::NO_CONTENT);
    }
    audit(&state, Actor::Account(guardian.account), "child.quiet_hours_removed", Some(family), format!(r#"{{"child":"{child}"}}"#))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
