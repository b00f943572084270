//! Reports: a child reports a message from its toy; the report goes to the child's
//! guardians, and to the operator only if they escalate it. A report holds the reported
//! message's text as the child's device read it (the only way the server ever sees
//! content), sealed with the child's key; it expires with the family's retention and goes
//! with the child or the family.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cubby_core::audit::Actor;
use cubby_core::policy::Action;
use cubby_core::{ErrorCode, ReportId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::families::allowed;
use super::support::audit;
use crate::http::auth::Guardian;
use crate::http::device_auth::Device;
use crate::http::{ApiError, ApiJson, AppState, ErrorBody};
use crate::vault::{ReportContent, now_millis};

const MAX_CONTENT: usize = 8_000;
const MAX_NOTE: usize = 1_000;

#[derive(Deserialize, ToSchema)]
pub struct NewReport {
    /// The conversation (MLS group id, base64).
    pub group_id: String,
    /// The device that sent the reported message.
    pub sender_device: String,
    /// The message's id from its envelope.
    pub message_id: String,
    /// The message as this device decrypted it.
    pub content: String,
    #[serde(default)]
    pub note: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedReport {
    pub id: String,
}

fn invalid(message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidBody, message.to_owned())
}

/// Report a message to the child's guardians (from a child's toy, about a conversation it is in).
#[utoipa::path(post, path = "/api/v1/reports", tag = "contacts", request_body = NewReport,
    responses(
        (status = 201, body = CreatedReport),
        (status = 401, description = "Not signed in as a device", body = ErrorBody),
        (status = 404, description = "Not a child's toy, or not a conversation it is in", body = ErrorBody),
        (status = 422, description = "Content or note too long, or fields malformed", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Device(device): Device,
    ApiJson(body): ApiJson<NewReport>,
) -> Result<(StatusCode, ApiJson<CreatedReport>), ApiError> {
    let Some(child) = device.child_id else { return Err(ApiError::not_found()) };
    if body.content.len() > MAX_CONTENT || body.note.len() > MAX_NOTE || body.message_id.len() > 100 || body.sender_device.len() > 100 {
        return Err(invalid("a report holds at most 8,000 bytes of content and a 1,000-byte note"));
    }
    let group_id = BASE64.decode(&body.group_id).map_err(|_| ApiError::not_found())?;
    let members = state.vault.store().group_members(&group_id).await?;
    if !members.contains(&device.id) {
        return Err(ApiError::not_found());
    }
    let group = state.vault.store().group(&group_id).await?.ok_or_else(ApiError::not_found)?;
    let now = now_millis();
    let expires_at = now.saturating_add(state.delivery.retention_of(group.family_id).await?);
    let content = ReportContent { sender_device: body.sender_device, message_id: body.message_id, content: body.content, note: body.note };
    let id = state
        .vault
        .add_report(device.family_id, child, Some(group_id), &content, now, expires_at)
        .await?
        .ok_or_else(ApiError::not_found)?;
    audit(&state, Actor::Device(device.id), "report.received", Some(device.family_id), format!(r#"{{"report":"{id}"}}"#)).await?;
    Ok((StatusCode::CREATED, ApiJson(CreatedReport { id: id.to_string() })))
}

#[derive(Serialize, ToSchema)]
pub struct ReportView {
    pub id: String,
    pub child_id: String,
    /// The conversation, base64.
    pub group_id: Option<String>,
    pub sender_device: String,
    pub message_id: String,
    pub content: String,
    pub note: String,
    pub created_at: i64,
    /// When the report expires with the family's retention.
    pub expires_at: i64,
    /// When the guardians sent it on to the operator, if they did.
    pub escalated_at: Option<i64>,
}

/// The family's reports from its children.
#[utoipa::path(get, path = "/api/v1/families/{family_id}/reports", tag = "contacts",
    params(("family_id" = String, Path)),
    responses(
        (status = 200, body = Vec<ReportView>),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such family of mine", body = ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>, guardian: Guardian, Path(family): Path<String>) -> Result<ApiJson<Vec<ReportView>>, ApiError> {
    let family = allowed(&guardian, &family, Action::Read)?;
    Ok(ApiJson(family_reports(&state, family).await?))
}

/// The family's reports, opened (those whose child's key is gone are skipped).
pub async fn family_reports(state: &AppState, family: cubby_core::FamilyId) -> Result<Vec<ReportView>, ApiError> {
    let mut views = Vec::new();
    for row in state.vault.store().reports(family).await? {
        let Some(content) = state.vault.open_report(&row).await? else { continue };
        views.push(ReportView {
            id: row.id.to_string(),
            child_id: row.child_id.to_string(),
            group_id: row.group_id.as_ref().map(|g| BASE64.encode(g)),
            sender_device: content.sender_device,
            message_id: content.message_id,
            content: content.content,
            note: content.note,
            created_at: row.created_at,
            expires_at: row.expires_at,
            escalated_at: row.escalated_at,
        });
    }
    Ok(views)
}

fn report_id(raw: &str) -> Result<ReportId, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found())
}

/// Send a report on to the server's operator (who otherwise never sees it).
#[utoipa::path(post, path = "/api/v1/families/{family_id}/reports/{report_id}/escalate", tag = "contacts",
    params(("family_id" = String, Path), ("report_id" = String, Path)),
    responses(
        (status = 204, description = "Escalated"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such report in a family of mine", body = ErrorBody),
    ))]
pub async fn escalate(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, report)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let family = allowed(&guardian, &family, Action::Change)?;
    let report = report_id(&report)?;
    if !state.vault.store().escalate_report(family, report, now_millis()).await? {
        return Err(ApiError::not_found());
    }
    audit(&state, Actor::Account(guardian.account), "report.escalated", Some(family), format!(r#"{{"report":"{report}"}}"#)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a report.
#[utoipa::path(delete, path = "/api/v1/families/{family_id}/reports/{report_id}", tag = "contacts",
    params(("family_id" = String, Path), ("report_id" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such report in a family of mine", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, report)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let family = allowed(&guardian, &family, Action::Change)?;
    let report = report_id(&report)?;
    if !state.vault.store().delete_report(family, report).await? {
        return Err(ApiError::not_found());
    }
    audit(&state, Actor::Account(guardian.account), "report.deleted", Some(family), format!(r#"{{"report":"{report}"}}"#)).await?;
    Ok(StatusCode::NO_CONTENT)
}
