//! Families: create, read, delete (crypto-shredding), co-guardians by invitation,
//! leaving, the family's security events and its data export.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use cubby_core::audit::Actor;
use cubby_core::policy::{Action, authorize};
use cubby_core::validation::{check_family_name, normalize_email};
use cubby_core::{AccountId, ErrorCode, FamilyId};
use cubby_crypto::{new_token, token_hash};
use cubby_store::{GuardianRow, InviteRow, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::accounts::invalid_token;
use super::consent::{ConsentStatus, consent_status};
use super::support::{Accepted, HOUR_MS, accepted, audit, send_mail};
use crate::http::auth::Guardian;
use crate::http::{ApiError, ApiJson, AppState, ErrorBody};
use crate::vault::{ChildView, now_millis};

#[derive(Deserialize, ToSchema)]
pub struct NewFamily {
    #[schema(example = "The Robinsons")]
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct Family {
    #[schema(value_type = String)]
    pub id: FamilyId,
    pub name: String,
    pub created_at: i64,
    pub guardians: Vec<Guardianship>,
}

#[derive(Serialize, ToSchema)]
pub struct Guardianship {
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub joined_at: i64,
}

/// Parses a family id from the path; a malformed id is as unknown as a missing one.
pub fn family_id(raw: &str) -> Result<FamilyId, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found())
}

/// Checks the guardian may act on the family (404 otherwise).
pub fn allowed(guardian: &Guardian, raw_family: &str, action: Action) -> Result<FamilyId, ApiError> {
    let family = family_id(raw_family)?;
    authorize(&guardian.actor(), family, action)?;
    Ok(family)
}

async fn load_family(state: &AppState, id: FamilyId) -> Result<Family, ApiError> {
    let row = state.vault.store().family(id).await?.ok_or_else(ApiError::not_found)?;
    let name = state.vault.family_name(id).await?.ok_or_else(ApiError::not_found)?;
    let guardians = state
        .vault
        .store()
        .guardians(id)
        .await?
        .into_iter()
        .map(|g| Guardianship { account_id: g.account_id, joined_at: g.joined_at })
        .collect();
    Ok(Family { id, name, created_at: row.created_at, guardians })
}

/// Create a family; the caller becomes its first guardian.
#[utoipa::path(post, path = "/api/v1/families", tag = "families", request_body = NewFamily,
    responses(
        (status = 201, body = Family),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Invalid name", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    guardian: Guardian,
    ApiJson(body): ApiJson<NewFamily>,
) -> Result<(StatusCode, ApiJson<Family>), ApiError> {
    let name = check_family_name(&body.name)?;
    let id = state.vault.create_family_for(&name, Some(guardian.account)).await?;
    audit(&state, Actor::Account(guardian.account), "family.created", Some(id), "{}".to_owned()).await?;
    Ok((StatusCode::CREATED, ApiJson(load_family(&state, id).await?)))
}

/// The families I am a guardian of.
#[utoipa::path(get, path = "/api/v1/families", tag = "families",
    responses((status = 200, body = Vec<Family>), (status = 401, description = "Not signed in", body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, guardian: Guardian) -> Result<ApiJson<Vec<Family>>, ApiError> {
    let mut families = Vec::with_capacity(guardian.families.len());
    for id in &guardian.families {
        // A family whose key is gone cannot be shown; it must not hide the others.
        match load_family(&state, *id).await {
            Ok(family) => families.push(family),
            Err(error) if error.code() == ErrorCode::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    Ok(ApiJson(families))
}

/// One family.
#[utoipa::path(get, path = "/api/v1/families/{family_id}", tag = "families",
    params(("family_id" = String, Path)),
    responses(
        (status = 200, body = Family),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such family of mine", body = ErrorBody),
    ))]
pub async fn get(State(state): State<AppState>, guardian: Guardian, Path(family): Path<String>) -> Result<ApiJson<Family>, ApiError> {
    let family = allowed(&guardian, &family, Action::Read)?;
    Ok(ApiJson(load_family(&state, family).await?))
}

/// Delete the family: every child, membership, invite and consent record, and the data
/// keys, so that no backup copy of its rows can be opened afterwards.
#[utoipa::path(delete, path = "/api/v1/families/{family_id}", tag = "families",
    params(("family_id" = String, Path)),
    responses(
        (status = 204, description = "Deleted and shredded"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such family of mine", body = ErrorBody),
    ))]
pub async fn delete(State(state): State<AppState>, guardian: Guardian, Path(family): Path<String>) -> Result<StatusCode, ApiError> {
    let family = allowed(&guardian, &family, Action::Delete)?;
    state.vault.store().delete_family(family).await?;
    audit(&state, Actor::Account(guardian.account), "family.deleted", Some(family), "{}".to_owned()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct NewInvite {
    /// The co-guardian's email address; only an account with this address can accept.
    pub email: String,
}

/// Invite a co-guardian by email (valid 7 days).
#[utoipa::path(post, path = "/api/v1/families/{family_id}/invites", tag = "families", request_body = NewInvite,
    params(("family_id" = String, Path)),
    responses(
        (status = 202, description = "Invitation sent", body = Accepted),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such family of mine", body = ErrorBody),
        (status = 422, description = "Invalid email", body = ErrorBody),
    ))]
pub async fn invite(
    State(state): State<AppState>,
    guardian: Guardian,
    Path(family): Path<String>,
    ApiJson(body): ApiJson<NewInvite>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let family = allowed(&guardian, &family, Action::Change)?;
    let email = normalize_email(&body.email)?;
    let (token, hash) = new_token()?;
    let now = now_millis();
    state
        .vault
        .store()
        .create_invite(&InviteRow {
            token_hash: hash.to_vec(),
            family_id: family,
            email_index: state.vault.email_index(&email),
            invited_by: guardian.account,
            created_at: now,
            expires_at: now + 7 * 24 * HOUR_MS,
        })
        .await?;
    let link = format!("{}/accept-invite?token={token}", state.config.public_url);
    let body = format!(
        "You are invited to be a guardian of a family on Cubby.\n\nSign in (or create an account with this \
         address), then open this link within 7 days:\n{link}\n\n(or send the token {token} to \
         POST /api/v1/invites/accept)\n\nIf you do not know why you received this, ignore it.\n"
    );
    send_mail(&state, &email, "You are invited to a family on Cubby", body).await?;
    audit(&state, Actor::Account(guardian.account), "family.guardian_invited", Some(family), "{}".to_owned()).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(accepted("the invitation is on its way"))))
}

#[derive(Deserialize, ToSchema)]
pub struct AcceptInvite {
    pub token: String,
}

/// Accept an invitation: the signed-in account must have the invited address.
#[utoipa::path(post, path = "/api/v1/invites/accept", tag = "families", request_body = AcceptInvite,
    responses(
        (status = 200, body = Family),
        (status = 400, description = "Unknown, used or expired invitation, or for another address", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn accept_invite(
    State(state): State<AppState>,
    guardian: Guardian,
    ApiJson(body): ApiJson<AcceptInvite>,
) -> Result<ApiJson<Family>, ApiError> {
    let store = state.vault.store();
    let account = store.account(guardian.account).await?.ok_or_else(ApiError::not_found)?;
    // Taken only for the invited address: someone else's attempt neither uses it up nor
    // learns whether it exists.
    let invite = store
        .take_invite(&token_hash(&body.token), &account.email_index, now_millis())
        .await?
        .ok_or_else(invalid_token)?;
    let row = GuardianRow { family_id: invite.family_id, account_id: guardian.account, joined_at: now_millis() };
    match store.add_guardian(&row).await {
        Ok(()) | Err(StoreError::Conflict) => {}
        Err(error) => return Err(error.into()),
    }
    audit(&state, Actor::Account(guardian.account), "family.guardian_joined", Some(invite.family_id), "{}".to_owned())
        .await?;
    Ok(ApiJson(load_family(&state, invite.family_id).await?))
}

/// Leave a family. The last guardian cannot leave: delete the family instead.
#[utoipa::path(delete, path = "/api/v1/families/{family_id}/membership", tag = "families",
    params(("family_id" = String, Path)),
    responses(
        (status = 204, description = "Left the family"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such family of mine", body = ErrorBody),
        (status = 409, description = "The last guardian cannot leave", body = ErrorBody),
    ))]
pub async fn leave(State(state): State<AppState>, guardian: Guardian, Path(family): Path<String>) -> Result<StatusCode, ApiError> {
    let family = allowed(&guardian, &family, Action::Change)?;
    if !state.vault.store().remove_guardian(family, guardian.account).await? {
        return Err(ApiError::new(
            ErrorCode::LastGuardian,
            "you are the family's last guardian: delete the family instead, or invite another guardian first",
        ));
    }
    audit(&state, Actor::Account(guardian.account), "family.guardian_left", Some(family), "{}".to_owned()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct SecurityEvent {
    pub seq: i64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// `account:<id>`, `system`, `operator` or `anonymous`.
    pub actor: String,
    pub action: String,
    /// Non-personal facts as JSON text.
    pub detail: String,
}

/// The family's security events (newest first, at most 500).
#[utoipa::path(get, path = "/api/v1/families/{family_id}/security-events", tag = "families",
    params(("family_id" = String, Path)),
    responses(
        (status = 200, body = Vec<SecurityEvent>),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such family of mine", body = ErrorBody),
    ))]
pub async fn security_events(
    State(state): State<AppState>,
    guardian: Guardian,
    Path(family): Path<String>,
) -> Result<ApiJson<Vec<SecurityEvent>>, ApiError> {
    let family = allowed(&guardian, &family, Action::Read)?;
    Ok(ApiJson(family_events(&state, family).await?))
}

async fn family_events(state: &AppState, family: FamilyId) -> Result<Vec<SecurityEvent>, ApiError> {
    let rows = state.vault.store().family_audit_entries(family, 500).await?;
    Ok(rows
        .into_iter()
        .map(|r| SecurityEvent { seq: r.seq, at: r.at, actor: r.actor, action: r.action, detail: r.detail })
        .collect())
}

#[derive(Serialize, ToSchema)]
pub struct FamilyExport {
    /// When the export was made (milliseconds since the Unix epoch).
    pub exported_at: i64,
    pub family: Family,
    /// The requesting guardian's own email address (co-guardians' addresses are theirs).
    pub your_email: String,
    pub children: Vec<ChildView>,
    pub consent: ConsentStatus,
    pub security_events: Vec<SecurityEvent>,
    /// Each child's contacts outside the family, and whether it is supervised.
    pub contacts: Vec<super::contacts::ChildContacts>,
    /// The children's reports (until they expire).
    pub reports: Vec<super::reports::ReportView>,
    /// The family's toys and apps, revoked ones included.
    pub devices: Vec<super::devices::DeviceView>,
    /// Each child's quiet hours and daily limit (`null`: none).
    pub quiet_hours: Vec<ChildQuietHours>,
    pub message_retention: super::retention::MessageRetention,
    /// Each child's approved titles (with entitlements) and its toys' downloads.
    pub titles: Vec<super::content::ChildTitles>,
}

#[derive(Serialize, ToSchema)]
pub struct ChildQuietHours {
    #[schema(value_type = String)]
    pub child_id: cubby_core::ChildId,
    #[schema(value_type = Option<super::quiet_hours::QuietHoursDoc>)]
    pub quiet_hours: Option<cubby_core::quiet_hours::QuietHours>,
}

/// Everything Cubby holds about the family, as one JSON document.
#[utoipa::path(get, path = "/api/v1/families/{family_id}/export", tag = "families",
    params(("family_id" = String, Path)),
    responses(
        (status = 200, body = FamilyExport),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such family of mine", body = ErrorBody),
    ))]
pub async fn export(
    State(state): State<AppState>,
    guardian: Guardian,
    Path(family): Path<String>,
) -> Result<ApiJson<FamilyExport>, ApiError> {
    let ApiJson(devices) = super::devices::list(State(state.clone()), guardian.clone(), Path(family.clone())).await?;
    let ApiJson(message_retention) = super::retention::get(State(state.clone()), guardian.clone(), Path(family.clone())).await?;
    let family = allowed(&guardian, &family, Action::Read)?;
    let store = state.vault.store();
    let mut children = Vec::new();
    let mut contacts = Vec::new();
    let mut quiet_hours = Vec::new();
    for row in store.children(family).await? {
        // A child whose key is gone (deleted, its row restored from a backup) is not there.
        let Some(child) = state.vault.open_child(&row).await? else { continue };
        contacts.push(super::contacts::child_contacts(&state, family, row.id).await?);
        quiet_hours.push(ChildQuietHours { child_id: row.id, quiet_hours: state.vault.quiet_hours(family, row.id).await? });
        children.push(child);
    }
    let account = store.account(guardian.account).await?.ok_or_else(ApiError::not_found)?;
    let loaded = load_family(&state, family).await?;
    audit(&state, Actor::Account(guardian.account), "family.exported", Some(family), "{}".to_owned()).await?;
    Ok(ApiJson(FamilyExport {
        exported_at: now_millis(),
        family: loaded,
        your_email: state.vault.account_email(&account).await?.unwrap_or_default(),
        children,
        consent: consent_status(&state, family).await?,
        security_events: family_events(&state, family).await?,
        contacts,
        reports: super::reports::family_reports(&state, family).await?,
        devices,
        quiet_hours,
        message_retention,
        titles: super::content::family_titles(&state, family).await?,
    }))
}
