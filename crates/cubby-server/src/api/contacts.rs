//! Contacts between families: who a child may talk with outside its own family.
//!
//! A guardian invites an adult by email (the invitation is the guardian's approval; the
//! adult accepts with their own account), or shares a one-time contact code with another
//! family's guardian, who redeems it for one of their children (their approval); the first
//! family's guardian then approves the request. Removing or blocking a contact takes the
//! people concerned out of every conversation that now breaks the rule.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use cubby_core::audit::Actor;
use cubby_core::contacts::Person;
use cubby_core::policy::Action;
use cubby_core::validation::normalize_email;
use cubby_core::{ChildId, ContactId, ErrorCode, FamilyId};
use cubby_crypto::{new_token, token_hash};
use cubby_store::{ContactRow, ContactStatus, Redeemed};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::accounts::invalid_token;
use super::children::child_id;
use super::families::allowed;
use super::support::{Accepted, HOUR_MS, accepted, audit, send_mail};
use crate::http::auth::Guardian;
use crate::http::device_auth::Device;
use crate::http::{ApiError, ApiJson, AppState, ErrorBody};
use crate::vault::now_millis;

/// How long a contact code or an adult's invitation can be used.
const CODE_VALID_MS: i64 = 72 * HOUR_MS;
const INVITE_VALID_MS: i64 = 7 * 24 * HOUR_MS;

async fn existing_child(state: &AppState, guardian: &Guardian, family: &str, child: &str, action: Action) -> Result<(FamilyId, ChildId), ApiError> {
    let family = allowed(guardian, family, action)?;
    let child = child_id(child)?;
    state.vault.store().child(family, child).await?.ok_or_else(ApiError::not_found)?;
    Ok((family, child))
}

fn contact_id(raw: &str) -> Result<ContactId, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found())
}

/// A contact as the child's guardians see it.
#[derive(Serialize, ToSchema)]
pub struct ContactView {
    pub id: String,
    /// `adult` or `child`.
    pub kind: &'static str,
    /// The adult's email address, or the other child's nickname.
    pub name: String,
    /// `needs_your_approval`, `waiting_for_them` (the other family's guardian has not
    /// approved yet), `approved` or `blocked`.
    pub status: &'static str,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

async fn view(state: &AppState, row: &ContactRow) -> Result<ContactView, ApiError> {
    let store = state.vault.store();
    let (kind, name, theirs) = match row.other {
        Person::Adult(account) => {
            let email = match store.account(account).await? {
                Some(account) => state.vault.account_email(&account).await?,
                None => None,
            };
            ("adult", email.unwrap_or_else(|| "an adult".to_owned()), None)
        }
        Person::Child(other) => {
            let mirror = store.mirror_contact(row).await?;
            let nickname = match &mirror {
                Some(m) => match store.child(m.family_id, other).await? {
                    Some(child) => state.vault.open_child(&child).await?.map(|c| c.nickname),
                    None => None,
                },
                None => None,
            };
            ("child", nickname.unwrap_or_else(|| "a child".to_owned()), Some(mirror.map(|m| m.status)))
        }
    };
    let status = match (row.status, theirs) {
        (ContactStatus::Blocked, _) | (_, Some(Some(ContactStatus::Blocked))) => "blocked",
        (ContactStatus::Requested, _) => "needs_your_approval",
        (ContactStatus::Approved, None | Some(Some(ContactStatus::Approved))) => "approved",
        (ContactStatus::Approved, Some(_)) => "waiting_for_them",
    };
    Ok(ContactView { id: row.id.to_string(), kind, name, status, created_at: row.created_at })
}

#[derive(Serialize, ToSchema)]
pub struct ContactCode {
    /// Share it with the other family's guardian; it works once.
    pub code: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
}

/// Make a one-time contact code for a child, to share with another family's guardian
/// (valid 72 hours).
#[utoipa::path(post, path = "/api/v1/families/{family_id}/children/{child_id}/contact-codes", tag = "contacts",
    params(("family_id" = String, Path), ("child_id" = String, Path)),
    responses(
        (status = 201, body = ContactCode),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such child in a family of mine", body = ErrorBody),
    ))]
pub async fn create_code(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child)): Path<(String, String)>,
) -> Result<(StatusCode, ApiJson<ContactCode>), ApiError> {
    let (family, child) = existing_child(&state, &guardian, &family, &child, Action::Change).await?;
    let (code, hash) = new_token()?;
    let now = now_millis();
    let expires_at = now + CODE_VALID_MS;
    if !state.vault.store().add_contact_code(&hash, family, child, now, expires_at).await? {
        return Err(ApiError::not_found());
    }
    audit(&state, Actor::Account(guardian.account), "contact.code_created", Some(family), format!(r#"{{"child":"{child}"}}"#)).await?;
    Ok((StatusCode::CREATED, ApiJson(ContactCode { code, expires_at })))
}

#[derive(Deserialize, ToSchema)]
pub struct RedeemCode {
    pub code: String,
}

/// Redeem another family's contact code for one of my children: my approval; the other
/// family's guardian approves next.
#[utoipa::path(post, path = "/api/v1/families/{family_id}/children/{child_id}/contacts/redeem", tag = "contacts",
    request_body = RedeemCode, params(("family_id" = String, Path), ("child_id" = String, Path)),
    responses(
        (status = 201, body = ContactView),
        (status = 400, description = "invalid_token: unknown, used or expired code, or one of my own family's", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such child in a family of mine", body = ErrorBody),
    ))]
pub async fn redeem_code(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child)): Path<(String, String)>,
    ApiJson(body): ApiJson<RedeemCode>,
) -> Result<(StatusCode, ApiJson<ContactView>), ApiError> {
    let (family, child) = existing_child(&state, &guardian, &family, &child, Action::Change).await?;
    let redeemed = state.vault.store().redeem_contact_code(&token_hash(body.code.trim()), family, child, now_millis()).await?;
    let (ours, theirs) = match redeemed {
        Redeemed::Contact { ours, theirs } => (ours, theirs),
        Redeemed::UnknownCode => return Err(invalid_token()),
        Redeemed::SameFamily => {
            return Err(ApiError::new(ErrorCode::InvalidToken, "that code is your own family's: children of one family need no contact"));
        }
    };
    let actor = Actor::Account(guardian.account);
    audit(&state, actor.clone(), "contact.requested", Some(family), format!(r#"{{"contact":"{}"}}"#, ours.id)).await?;
    audit(&state, actor, "contact.request_received", Some(theirs.family_id), format!(r#"{{"contact":"{}"}}"#, theirs.id)).await?;
    Ok((StatusCode::CREATED, ApiJson(view(&state, &ours).await?)))
}

#[derive(Deserialize, ToSchema)]
pub struct InviteAdult {
    /// The adult's email address; only an account with this address can accept.
    pub email: String,
}

/// Invite an adult (a grandparent, a teacher) to be a contact of a child: the invitation is
/// this guardian's approval; the adult accepts with their own account (valid 7 days).
#[utoipa::path(post, path = "/api/v1/families/{family_id}/children/{child_id}/contacts/invite", tag = "contacts",
    request_body = InviteAdult, params(("family_id" = String, Path), ("child_id" = String, Path)),
    responses(
        (status = 202, description = "Invitation sent", body = Accepted),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such child in a family of mine", body = ErrorBody),
        (status = 422, description = "Invalid email", body = ErrorBody),
    ))]
pub async fn invite_adult(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child)): Path<(String, String)>,
    ApiJson(body): ApiJson<InviteAdult>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let (family, child) = existing_child(&state, &guardian, &family, &child, Action::Change).await?;
    let email = normalize_email(&body.email)?;
    let (token, hash) = new_token()?;
    let now = now_millis();
    let index = state.vault.email_index(&email);
    if !state.vault.store().add_contact_invite(&hash, family, child, &index, now, now + INVITE_VALID_MS).await? {
        return Err(ApiError::not_found());
    }
    let link = format!("{}/accept-contact?token={token}", state.config.public_url);
    let text = format!(
        "A family on Cubby invites you to exchange messages with their child.\n\nSign in (or create an \
         account with this address), then open this link within 7 days:\n{link}\n\n(or send the token \
         {token} to POST /api/v1/contact-invites/accept)\n\nIf you do not know why you received this, ignore it.\n"
    );
    send_mail(&state, &email, "A family on Cubby invites you", text).await?;
    audit(&state, Actor::Account(guardian.account), "contact.adult_invited", Some(family), format!(r#"{{"child":"{child}"}}"#))
        .await?;
    Ok((StatusCode::ACCEPTED, ApiJson(accepted("the invitation is on its way"))))
}

#[derive(Deserialize, ToSchema)]
pub struct AcceptContactInvite {
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct AcceptedContact {
    /// The child's nickname, as its family calls it.
    pub child: String,
    /// The child's toys: add them to a conversation from one of your devices.
    pub devices: Vec<String>,
}

/// Accept an invitation to be a child's contact: the signed-in account must have the
/// invited address.
#[utoipa::path(post, path = "/api/v1/contact-invites/accept", tag = "contacts", request_body = AcceptContactInvite,
    responses(
        (status = 200, body = AcceptedContact),
        (status = 400, description = "Unknown, used or expired invitation, or for another address", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn accept_invite(
    State(state): State<AppState>,
    guardian: Guardian,
    ApiJson(body): ApiJson<AcceptContactInvite>,
) -> Result<ApiJson<AcceptedContact>, ApiError> {
    let store = state.vault.store();
    let account = store.account(guardian.account).await?.ok_or_else(ApiError::not_found)?;
    let row = store
        .accept_contact_invite(&token_hash(body.token.trim()), &account.email_index, guardian.account, now_millis())
        .await?
        .ok_or_else(invalid_token)?;
    audit(&state, Actor::Account(guardian.account), "contact.adult_accepted", Some(row.family_id), format!(r#"{{"contact":"{}"}}"#, row.id))
        .await?;
    let child = match store.child(row.family_id, row.child_id).await? {
        Some(child) => state.vault.open_child(&child).await?.map(|c| c.nickname).unwrap_or_default(),
        None => String::new(),
    };
    let devices = store.person_devices(Person::Child(row.child_id)).await?;
    Ok(ApiJson(AcceptedContact { child, devices: devices.iter().map(|d| d.id.to_string()).collect() }))
}

/// A child's contacts.
#[utoipa::path(get, path = "/api/v1/families/{family_id}/children/{child_id}/contacts", tag = "contacts",
    params(("family_id" = String, Path), ("child_id" = String, Path)),
    responses(
        (status = 200, body = Vec<ContactView>),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such child in a family of mine", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child)): Path<(String, String)>,
) -> Result<ApiJson<Vec<ContactView>>, ApiError> {
    let (family, child) = existing_child(&state, &guardian, &family, &child, Action::Read).await?;
    let mut views = Vec::new();
    for row in state.vault.store().child_contacts(family, child).await? {
        views.push(view(&state, &row).await?);
    }
    Ok(ApiJson(views))
}

/// A child's contacts and supervision, for the family's export.
#[derive(Serialize, ToSchema)]
pub struct ChildContacts {
    pub child_id: String,
    pub supervised: bool,
    pub contacts: Vec<ContactView>,
}

pub async fn child_contacts(state: &AppState, family: FamilyId, child: ChildId) -> Result<ChildContacts, ApiError> {
    let store = state.vault.store();
    let mut contacts = Vec::new();
    for row in store.child_contacts(family, child).await? {
        contacts.push(view(state, &row).await?);
    }
    Ok(ChildContacts { child_id: child.to_string(), supervised: store.supervised(child).await?, contacts })
}

async fn child_contact(state: &AppState, family: FamilyId, child: ChildId, raw: &str) -> Result<ContactRow, ApiError> {
    let id = contact_id(raw)?;
    state.vault.store().contact(family, id).await?.filter(|c| c.child_id == child).ok_or_else(ApiError::not_found)
}

/// Approve a contact request for a child.
#[utoipa::path(post, path = "/api/v1/families/{family_id}/children/{child_id}/contacts/{contact_id}/approve", tag = "contacts",
    params(("family_id" = String, Path), ("child_id" = String, Path), ("contact_id" = String, Path)),
    responses(
        (status = 200, body = ContactView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such contact of a child of mine", body = ErrorBody),
        (status = 409, description = "The child blocked this contact: remove it first", body = ErrorBody),
    ))]
pub async fn approve(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child, contact)): Path<(String, String, String)>,
) -> Result<ApiJson<ContactView>, ApiError> {
    let (family, child) = existing_child(&state, &guardian, &family, &child, Action::Change).await?;
    let row = child_contact(&state, family, child, &contact).await?;
    if row.status == ContactStatus::Blocked {
        return Err(ApiError::new(ErrorCode::Conflict, "the child blocked this contact; remove it, then start again"));
    }
    state.vault.store().set_contact_status(family, row.id, ContactStatus::Approved, now_millis()).await?;
    audit(&state, Actor::Account(guardian.account), "contact.approved", Some(family), format!(r#"{{"contact":"{}"}}"#, row.id))
        .await?;
    let row = child_contact(&state, family, child, &contact).await?;
    Ok(ApiJson(view(&state, &row).await?))
}

/// Decline a request or remove a contact (both families' sides go). Whoever may no
/// longer talk with the child is removed from its conversations.
#[utoipa::path(delete, path = "/api/v1/families/{family_id}/children/{child_id}/contacts/{contact_id}", tag = "contacts",
    params(("family_id" = String, Path), ("child_id" = String, Path), ("contact_id" = String, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such contact of a child of mine", body = ErrorBody),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child, contact)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let (family, child) = existing_child(&state, &guardian, &family, &child, Action::Change).await?;
    let row = child_contact(&state, family, child, &contact).await?;
    state.vault.store().delete_contact(family, row.id).await?.ok_or_else(ApiError::not_found)?;
    audit(&state, Actor::Account(guardian.account), "contact.removed", Some(family), format!(r#"{{"contact":"{}"}}"#, row.id))
        .await?;
    state.delivery.child_rules_changed(child).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Supervision {
    /// Whether the family's guardians' devices join every conversation of the child.
    pub supervised: bool,
}

/// Whether a child's conversations are supervised.
#[utoipa::path(get, path = "/api/v1/families/{family_id}/children/{child_id}/supervision", tag = "contacts",
    params(("family_id" = String, Path), ("child_id" = String, Path)),
    responses(
        (status = 200, body = Supervision),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such child in a family of mine", body = ErrorBody),
    ))]
pub async fn get_supervision(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child)): Path<(String, String)>,
) -> Result<ApiJson<Supervision>, ApiError> {
    let (_, child) = existing_child(&state, &guardian, &family, &child, Action::Read).await?;
    Ok(ApiJson(Supervision { supervised: state.vault.store().supervised(child).await? }))
}

/// Choose whether the family's guardians' devices join every conversation of the child
/// as members (they read along through MLS; everyone in it is shown it is supervised).
#[utoipa::path(put, path = "/api/v1/families/{family_id}/children/{child_id}/supervision", tag = "contacts",
    request_body = Supervision, params(("family_id" = String, Path), ("child_id" = String, Path)),
    responses(
        (status = 200, body = Supervision),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such child in a family of mine", body = ErrorBody),
    ))]
pub async fn set_supervision(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child)): Path<(String, String)>,
    ApiJson(body): ApiJson<Supervision>,
) -> Result<ApiJson<Supervision>, ApiError> {
    let (family, child) = existing_child(&state, &guardian, &family, &child, Action::Change).await?;
    if !state.vault.store().set_supervised(family, child, body.supervised).await? {
        return Err(ApiError::not_found());
    }
    let detail = format!(r#"{{"child":"{child}","supervised":{}}}"#, body.supervised);
    audit(&state, Actor::Account(guardian.account), "child.supervision_set", Some(family), detail).await?;
    if body.supervised {
        // Their devices are proposed into the child's existing conversations.
        state.delivery.child_rules_changed(child).await;
    }
    Ok(ApiJson(body))
}

/// Someone a device may talk with, and the devices to add to reach them.
#[derive(Serialize, ToSchema)]
pub struct Reachable {
    /// For a toy: the id of its side of the contact (to block it).
    pub contact_id: Option<String>,
    /// `adult` or `child`.
    pub kind: &'static str,
    pub name: String,
    pub devices: Vec<String>,
}

/// The approved contacts of the calling device's person: for a toy, its child's contacts;
/// for an adult's app, the children who have them as a contact.
#[utoipa::path(get, path = "/api/v1/contacts", tag = "contacts",
    responses((status = 200, body = Vec<Reachable>), (status = 401, description = "Not signed in as a device", body = ErrorBody)))]
pub async fn reachable(State(state): State<AppState>, Device(device): Device) -> Result<ApiJson<Vec<Reachable>>, ApiError> {
    let store = state.vault.store();
    let mut found = Vec::new();
    if let Some(child) = device.child_id {
        for row in store.child_contacts(device.family_id, child).await? {
            let contact = view(&state, &row).await?;
            if contact.status != "approved" {
                continue;
            }
            let devices = store.person_devices(row.other).await?;
            found.push(Reachable {
                contact_id: Some(contact.id),
                kind: contact.kind,
                name: contact.name,
                devices: devices.iter().map(|d| d.id.to_string()).collect(),
            });
        }
    } else if let Some(account) = device.account_id {
        for row in store.contacts_of_adult(account).await? {
            if row.status != ContactStatus::Approved {
                continue;
            }
            let name = match store.child(row.family_id, row.child_id).await? {
                Some(child) => state.vault.open_child(&child).await?.map(|c| c.nickname).unwrap_or_default(),
                None => continue,
            };
            let devices = store.person_devices(Person::Child(row.child_id)).await?;
            found.push(Reachable {
                contact_id: None,
                kind: "child",
                name,
                devices: devices.iter().map(|d| d.id.to_string()).collect(),
            });
        }
    }
    Ok(ApiJson(found))
}

/// A child blocks one of its contacts from its toy: they leave every conversation with
/// the child and cannot be added again until a guardian removes the block.
#[utoipa::path(post, path = "/api/v1/contacts/{contact_id}/block", tag = "contacts",
    params(("contact_id" = String, Path)),
    responses(
        (status = 200, body = Accepted),
        (status = 401, description = "Not signed in as a device", body = ErrorBody),
        (status = 404, description = "No such contact of this toy's child", body = ErrorBody),
    ))]
pub async fn block(
    State(state): State<AppState>,
    Device(device): Device,
    Path(contact): Path<String>,
) -> Result<ApiJson<Accepted>, ApiError> {
    let Some(child) = device.child_id else { return Err(ApiError::not_found()) };
    let row = child_contact(&state, device.family_id, child, &contact).await?;
    state.vault.store().set_contact_status(device.family_id, row.id, ContactStatus::Blocked, now_millis()).await?;
    audit(&state, Actor::Device(device.id), "contact.blocked", Some(device.family_id), format!(r#"{{"contact":"{}"}}"#, row.id))
        .await?;
    state.delivery.child_rules_changed(child).await;
    Ok(ApiJson(accepted("blocked: they are leaving every conversation with this child")))
}
