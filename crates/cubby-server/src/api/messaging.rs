//! The MLS Delivery Service over HTTP: KeyPackages, groups and sending. Receiving is on
//! the WebSocket (`api::ws`). Every MLS structure travels as base64 of its TLS encoding.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cubby_core::{DeviceId, ErrorCode};
use cubby_store::GroupRow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::delivery::Outgoing;
use crate::http::device_auth::Device;
use crate::http::{ApiError, ApiJson, AppState, ErrorBody};

/// Most KeyPackages per upload.
const MAX_UPLOAD: usize = 100;

pub fn decode_field(value: &str, what: &str) -> Result<Vec<u8>, ApiError> {
    BASE64
        .decode(value.trim())
        .map_err(|_| ApiError::new(ErrorCode::InvalidBody, format!("{what} must be base64")))
}

#[derive(Serialize, ToSchema)]
pub struct ExternalSenderKey {
    /// The Ed25519 key (base64) every group must name as its one external sender, with
    /// the basic credential `cubby-delivery-service`: the server proposes removals with it.
    pub public_key: String,
}

/// The server's key as the groups' external sender.
#[utoipa::path(get, path = "/api/v1/mls/external-sender", tag = "messaging",
    responses((status = 200, body = ExternalSenderKey), (status = 401, description = "Not signed in as a device", body = ErrorBody)))]
pub async fn external_sender(State(state): State<AppState>, _device: Device) -> ApiJson<ExternalSenderKey> {
    ApiJson(ExternalSenderKey { public_key: BASE64.encode(state.delivery.external_sender_key()) })
}

#[derive(Deserialize, ToSchema)]
pub struct KeyPackageUpload {
    /// KeyPackages as MLS messages (base64), made with the device's paired Ed25519 key
    /// and its device id as basic credential. Mark one as last resort.
    pub key_packages: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyPackageCount {
    /// Single-use KeyPackages the device has on the server.
    pub available: i64,
    /// Below this, the device should upload more.
    pub top_up_below: i64,
}

/// Upload a batch of the calling device's KeyPackages.
#[utoipa::path(post, path = "/api/v1/key-packages", tag = "messaging", request_body = KeyPackageUpload,
    responses(
        (status = 201, body = KeyPackageCount),
        (status = 400, description = "Not a valid KeyPackage", body = ErrorBody),
        (status = 401, description = "Not signed in as a device", body = ErrorBody),
        (status = 403, description = "A KeyPackage of another device, or under another key", body = ErrorBody),
        (status = 422, description = "Too many KeyPackages", body = ErrorBody),
    ))]
pub async fn upload_key_packages(
    State(state): State<AppState>,
    Device(device): Device,
    ApiJson(body): ApiJson<KeyPackageUpload>,
) -> Result<(StatusCode, ApiJson<KeyPackageCount>), ApiError> {
    if body.key_packages.is_empty() || body.key_packages.len() > MAX_UPLOAD {
        return Err(ApiError::new(ErrorCode::InvalidBody, format!("upload between 1 and {MAX_UPLOAD} KeyPackages")));
    }
    let packages = body.key_packages.iter().map(|p| decode_field(p, "key_packages")).collect::<Result<Vec<_>, _>>()?;
    let available = state.delivery.upload_key_packages(&device, &packages).await?;
    Ok((StatusCode::CREATED, ApiJson(KeyPackageCount { available, top_up_below: crate::delivery::TOP_UP_BELOW })))
}

/// How many KeyPackages the calling device has left.
#[utoipa::path(get, path = "/api/v1/key-packages", tag = "messaging",
    responses((status = 200, body = KeyPackageCount), (status = 401, description = "Not signed in as a device", body = ErrorBody)))]
pub async fn count_key_packages(State(state): State<AppState>, Device(device): Device) -> Result<ApiJson<KeyPackageCount>, ApiError> {
    let available = state.delivery.key_packages_left(device.id).await?;
    Ok(ApiJson(KeyPackageCount { available, top_up_below: crate::delivery::TOP_UP_BELOW }))
}

#[derive(Serialize, ToSchema)]
pub struct ClaimedKeyPackage {
    pub key_package: String,
    /// Devices that must be added in the same commit: a supervised child's guardians'
    /// (those already in the conversation need not be added again).
    pub join_with: Vec<String>,
}

/// Claim one KeyPackage of a device of the family (or of an approved contact's), to add it to a conversation. Each is
/// handed out once; the last-resort one when the others are gone.
#[utoipa::path(post, path = "/api/v1/devices/{device_id}/key-package", tag = "messaging",
    params(("device_id" = String, Path)),
    responses(
        (status = 200, body = ClaimedKeyPackage),
        (status = 401, description = "Not signed in as a device", body = ErrorBody),
        (status = 404, description = "No such device in the family, or none left", body = ErrorBody),
    ))]
pub async fn claim_key_package(
    State(state): State<AppState>,
    Device(device): Device,
    Path(target): Path<String>,
) -> Result<ApiJson<ClaimedKeyPackage>, ApiError> {
    let target: DeviceId = target.parse().map_err(|_| ApiError::not_found())?;
    let (package, supervisors) = state.delivery.claim_key_package(&device, target).await?;
    Ok(ApiJson(ClaimedKeyPackage {
        key_package: BASE64.encode(package),
        join_with: supervisors.iter().map(ToString::to_string).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct NewGroup {
    /// The GroupInfo (MLS message, base64), signed by the creating device.
    pub group_info: String,
    /// The ratchet tree (base64 of its TLS encoding).
    pub ratchet_tree: String,
}

#[derive(Serialize, ToSchema)]
pub struct GroupView {
    /// The MLS group id, base64.
    pub group_id: String,
    pub epoch: i64,
    pub members: Vec<String>,
    /// A child in the conversation is supervised: its guardians' devices are members.
    pub supervised: bool,
}

async fn group_view(state: &AppState, group: GroupRow) -> Result<GroupView, ApiError> {
    let members = state.delivery.store().group_members(&group.id).await?;
    Ok(GroupView {
        group_id: BASE64.encode(&group.id),
        epoch: group.epoch,
        members: members.iter().map(ToString::to_string).collect(),
        supervised: state.delivery.is_supervised(&members).await?,
    })
}

/// Register a conversation the calling device has created.
#[utoipa::path(post, path = "/api/v1/groups", tag = "messaging", request_body = NewGroup,
    responses(
        (status = 201, body = GroupView),
        (status = 400, description = "Not a valid GroupInfo or ratchet tree", body = ErrorBody),
        (status = 401, description = "Not signed in as a device", body = ErrorBody),
        (status = 403, description = "A member outside the family, or no external sender", body = ErrorBody),
        (status = 409, description = "The group id is taken", body = ErrorBody),
    ))]
pub async fn create_group(
    State(state): State<AppState>,
    Device(device): Device,
    ApiJson(body): ApiJson<NewGroup>,
) -> Result<(StatusCode, ApiJson<GroupView>), ApiError> {
    let group_info = decode_field(&body.group_info, "group_info")?;
    let tree = decode_field(&body.ratchet_tree, "ratchet_tree")?;
    let group = state.delivery.create_group(&device, &group_info, &tree).await?;
    Ok((StatusCode::CREATED, ApiJson(group_view(&state, group).await?)))
}

/// The conversations the calling device is a member of.
#[utoipa::path(get, path = "/api/v1/groups", tag = "messaging",
    responses((status = 200, body = Vec<GroupView>), (status = 401, description = "Not signed in as a device", body = ErrorBody)))]
pub async fn list_groups(State(state): State<AppState>, Device(device): Device) -> Result<ApiJson<Vec<GroupView>>, ApiError> {
    let mut views = Vec::new();
    for group in state.delivery.groups_of(&device).await? {
        views.push(group_view(&state, group).await?);
    }
    Ok(ApiJson(views))
}

#[derive(Deserialize, ToSchema)]
pub struct SendMessage {
    /// An MLS message (base64): an encrypted application message, or a commit sent as a
    /// public message.
    pub message: String,
    /// For a commit that adds members: their Welcome (base64).
    #[serde(default)]
    pub welcome: Option<String>,
    /// A guardian's urgent message passes a child's quiet hours (ignored from toys).
    #[serde(default)]
    pub urgent: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Sent {
    /// The stored messages' ids: the send is durable once this answer arrives.
    pub ids: Vec<i64>,
}

pub fn outgoing(body: SendMessage) -> Result<Outgoing, ApiError> {
    Ok(Outgoing {
        message: decode_field(&body.message, "message")?,
        welcome: body.welcome.as_deref().map(|w| decode_field(w, "welcome")).transpose()?,
        urgent: body.urgent,
    })
}

/// Send an MLS message to a conversation. Answered once it is durably stored.
#[utoipa::path(post, path = "/api/v1/messages", tag = "messaging", request_body = SendMessage,
    responses(
        (status = 201, body = Sent),
        (status = 400, description = "malformed_message: not a valid MLS message, or a handshake sent encrypted", body = ErrorBody),
        (status = 401, description = "Not signed in as a device", body = ErrorBody),
        (status = 403, description = "membership_refused: the commit adds someone the family rules do not allow", body = ErrorBody),
        (status = 404, description = "No such conversation of this device", body = ErrorBody),
        (status = 409, description = "stale_epoch: another commit won; process it and retry", body = ErrorBody),
    ))]
pub async fn send(
    State(state): State<AppState>,
    Device(device): Device,
    ApiJson(body): ApiJson<SendMessage>,
) -> Result<(StatusCode, ApiJson<Sent>), ApiError> {
    let ids = state.delivery.send(&device, outgoing(body)?).await?;
    Ok((StatusCode::CREATED, ApiJson(Sent { ids })))
}
