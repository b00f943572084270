//! Toys and apps: pairing in the style of RFC 8628 (the toy shows a short code, a
//! guardian enters it and chooses the child, the toy polls for its credential), sign-in by
//! a signed single-use challenge, and the guardian's management of the family's devices.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use cubby_core::audit::Actor;
use cubby_core::devices::{DeviceKind, display_user_code, normalize_user_code, user_code_from};
use cubby_core::policy::Action;
use cubby_core::validation::check_nickname;
use cubby_core::{ChildId, DeviceId, ErrorCode, FamilyId};
use cubby_crypto::device_signature::{is_valid_public_key, verify_challenge};
use cubby_crypto::{new_token, random_bytes, token_hash};
use cubby_store::{Approval, DeviceRow, PairingRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::families::allowed;
use super::support::{MINUTE_MS, audit, send_mail, throttle};
use crate::http::auth::Guardian;
use crate::http::client::ClientAddr;
use crate::http::device_auth::Device;
use crate::http::{ApiError, ApiJson, AppState, ErrorBody};
use crate::vault::now_millis;

const PAIRING_LIFETIME_MS: i64 = 10 * MINUTE_MS;
const POLL_INTERVAL_S: i64 = 5;
const CHALLENGE_LIFETIME_MS: i64 = MINUTE_MS;
const ACCESS_TOKEN_LIFETIME_MS: i64 = 15 * MINUTE_MS;

fn user_code_index(state: &AppState, code: &str) -> Vec<u8> {
    state.vault.system_key().blind_index_key("pairing.user_code").index(code.as_bytes()).to_vec()
}

fn hex_field(value: &str, bytes: usize, what: &str) -> Result<Vec<u8>, ApiError> {
    hex::decode(value.trim())
        .ok()
        .filter(|b| b.len() == bytes)
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidBody, format!("{what} must be {} hex digits", bytes * 2)))
}

#[derive(Deserialize, ToSchema)]
pub struct StartPairing {
    /// The device's Ed25519 public key, 64 hex digits. Its private key never leaves it.
    pub public_key: String,
    #[schema(value_type = String, example = "toy")]
    pub kind: DeviceKind,
    pub software_version: String,
}

#[derive(Serialize, ToSchema)]
pub struct PairingStarted {
    /// Secret: only the device knows it; it polls with it.
    pub device_code: String,
    /// Shown on the device's screen, entered by a guardian.
    #[schema(example = "BCDF-GHJK")]
    pub user_code: String,
    pub verification_uri: String,
    pub expires_in: i64,
    /// Seconds between polls.
    pub interval: i64,
}

/// A device asks to be paired (no authentication: it has no credential yet).
#[utoipa::path(post, path = "/api/v1/pairing", tag = "devices", request_body = StartPairing,
    responses(
        (status = 201, body = PairingStarted),
        (status = 422, description = "Invalid public key or body", body = ErrorBody),
        (status = 429, description = "Too many pairing requests from this address", body = ErrorBody),
    ))]
pub async fn start_pairing(
    State(state): State<AppState>,
    client: ClientAddr,
    ApiJson(body): ApiJson<StartPairing>,
) -> Result<(StatusCode, ApiJson<PairingStarted>), ApiError> {
    let public_key = hex_field(&body.public_key, 32, "public_key")?;
    if !is_valid_public_key(&public_key) {
        return Err(ApiError::new(ErrorCode::InvalidBody, "public_key is not a usable Ed25519 key"));
    }
    let version = body.software_version.trim();
    if version.is_empty() || version.len() > 64 || version.chars().any(char::is_control) {
        return Err(ApiError::new(ErrorCode::InvalidBody, "software_version must be 1 to 64 printable characters"));
    }
    throttle(&state.throttles.requests, &[&format!("pairing:{}", client.throttle_key())])?;
    let user_code = loop {
        if let Some(code) = user_code_from(&random_bytes::<32>()?) {
            break code;
        }
    };
    let (device_code, device_code_hash) = new_token()?;
    let now = now_millis();
    state
        .vault
        .store()
        .create_pairing(&PairingRow {
            device_code_hash: device_code_hash.to_vec(),
            user_code_index: user_code_index(&state, &user_code),
            public_key,
            kind: body.kind.as_str().to_owned(),
            software_version: version.to_owned(),
            created_at: now,
            expires_at: now + PAIRING_LIFETIME_MS,
            last_poll_at: 0,
            status: "pending".to_owned(),
            approval: None,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(PairingStarted {
            device_code,
            user_code: display_user_code(&user_code),
            verification_uri: format!("{}/pair", state.config.public_url),
            expires_in: PAIRING_LIFETIME_MS / 1000,
            interval: POLL_INTERVAL_S,
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct ApprovePairing {
    /// The code shown on the device (case, dashes and spaces do not matter).
    pub user_code: String,
    #[schema(value_type = String)]
    pub family_id: FamilyId,
    /// The child the toy is for; omit for a guardian's own app.
    #[schema(value_type = Option<String>)]
    pub child_id: Option<ChildId>,
    /// What the family calls the device.
    pub name: String,
    /// False to refuse the request.
    #[serde(default = "yes")]
    pub approve: bool,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, ToSchema)]
pub struct PairingDecision {
    #[schema(value_type = Option<String>)]
    pub device_id: Option<DeviceId>,
    pub approved: bool,
}

/// A guardian enters the code a device shows and chooses whom it is for.
#[utoipa::path(post, path = "/api/v1/pairing/approve", tag = "devices", request_body = ApprovePairing,
    responses(
        (status = 200, body = PairingDecision),
        (status = 400, description = "Unknown or expired code", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such family or child of mine", body = ErrorBody),
        (status = 422, description = "Invalid name, or a toy without a child", body = ErrorBody),
        (status = 429, description = "Too many wrong codes", body = ErrorBody),
    ))]
pub async fn approve_pairing(
    State(state): State<AppState>,
    guardian: Guardian,
    client: ClientAddr,
    ApiJson(body): ApiJson<ApprovePairing>,
) -> Result<ApiJson<PairingDecision>, ApiError> {
    let family = allowed(&guardian, &body.family_id.to_string(), Action::Change)?;
    let name = check_nickname(&body.name)?;
    let store = state.vault.store();
    if let Some(child) = body.child_id {
        store.child(family, child).await?.ok_or_else(ApiError::not_found)?;
    }
    // Wrong codes are throttled per guardian and per address (arithmetic in cubby_core::devices).
    let keys = [format!("pairing-code:{}", guardian.account), format!("pairing-code:{}", client.throttle_key())];
    throttle(&state.throttles.login, &[&keys[0], &keys[1]])?;
    let now = now_millis();
    let wrong_code = || ApiError::new(ErrorCode::InvalidToken, "this code is unknown or expired: check the device's screen");
    let Some(code) = normalize_user_code(&body.user_code) else {
        keys.iter().for_each(|k| state.throttles.login.record_failure(k));
        return Err(wrong_code());
    };
    let index = user_code_index(&state, &code);
    let Some(pending) = store.pending_pairing_by_user_code(&index, now).await? else {
        keys.iter().for_each(|k| state.throttles.login.record_failure(k));
        return Err(wrong_code());
    };
    keys.iter().for_each(|k| state.throttles.login.release(k));
    if !body.approve {
        store.decide_pairing(&index, None, now).await?;
        audit(&state, Actor::Account(guardian.account), "device.pairing_denied", Some(family), "{}".to_owned()).await?;
        return Ok(ApiJson(PairingDecision { device_id: None, approved: false }));
    }
    let kind = DeviceKind::parse(&pending.kind).unwrap_or(DeviceKind::Toy);
    if kind == DeviceKind::Toy && body.child_id.is_none() {
        return Err(ApiError::new(ErrorCode::InvalidBody, "choose the child this toy is for (child_id)"));
    }
    let device_id = DeviceId::random();
    let name_sealed = state.vault.seal_device_name(family, device_id, &name).await?.ok_or_else(ApiError::not_found)?;
    let approval = Approval {
        device_id,
        family_id: family,
        child_id: body.child_id,
        account_id: (kind == DeviceKind::App).then_some(guardian.account),
        name_sealed,
    };
    if !store.decide_pairing(&index, Some(&approval), now).await? {
        return Err(wrong_code());
    }
    audit(
        &state,
        Actor::Account(guardian.account),
        "device.paired",
        Some(family),
        format!(r#"{{"device":"{device_id}","kind":"{}"}}"#, kind.as_str()),
    )
    .await?;
    if kind == DeviceKind::Toy {
        notify_guardians(&state, family).await?;
    }
    Ok(ApiJson(PairingDecision { device_id: Some(device_id), approved: true }))
}

/// Every guardian hears of a new toy on a child's profile.
async fn notify_guardians(state: &AppState, family: FamilyId) -> Result<(), ApiError> {
    let store = state.vault.store();
    for guardian in store.guardians(family).await? {
        let Some(account) = store.account(guardian.account_id).await? else { continue };
        let Some(email) = state.vault.account_email(&account).await? else { continue };
        let body = format!(
            "A new toy was paired with a child's profile in your family on Cubby.\n\nIf you did not expect this, \
             revoke it at once in the portal (or DELETE /api/v1/families/{family}/devices/<id>).\n"
        );
        send_mail(state, &email, "A new toy was paired in your family", body).await?;
    }
    Ok(())
}

#[derive(Deserialize, ToSchema)]
pub struct PollPairing {
    pub device_code: String,
}

#[derive(Serialize, ToSchema)]
pub struct Paired {
    #[schema(value_type = String)]
    pub device_id: DeviceId,
    #[schema(value_type = String)]
    pub family_id: FamilyId,
}

/// The device polls for the guardian's decision (RFC 8628 §3.4–3.5).
#[utoipa::path(post, path = "/api/v1/pairing/token", tag = "devices", request_body = PollPairing,
    responses(
        (status = 200, description = "Paired: now sign in with the device key", body = Paired),
        (status = 400, description = "authorization_pending, slow_down, expired_token, access_denied or invalid_token", body = ErrorBody),
    ))]
pub async fn poll_pairing(State(state): State<AppState>, ApiJson(body): ApiJson<PollPairing>) -> Result<ApiJson<Paired>, ApiError> {
    let hash = token_hash(body.device_code.trim());
    let now = now_millis();
    let store = state.vault.store();
    let unknown = || ApiError::new(ErrorCode::InvalidToken, "unknown or already used device code");
    let request = store.poll_pairing(&hash, now).await?.ok_or_else(unknown)?;
    if request.expires_at <= now {
        return Err(ApiError::new(ErrorCode::ExpiredToken, "the code expired: start pairing again"));
    }
    if now - request.last_poll_at < POLL_INTERVAL_S * 1000 {
        return Err(ApiError::new(ErrorCode::SlowDown, "polling too fast: wait 5 seconds longer between polls"));
    }
    match (request.status.as_str(), &request.approval) {
        ("denied", _) => Err(ApiError::new(ErrorCode::AccessDenied, "the guardian refused this device")),
        ("approved", Some(approval)) => {
            let device = DeviceRow {
                id: approval.device_id,
                family_id: approval.family_id,
                child_id: approval.child_id,
                account_id: approval.account_id,
                kind: request.kind.clone(),
                public_key: request.public_key.clone(),
                name_sealed: approval.name_sealed.clone(),
                software_version: request.software_version.clone(),
                paired_at: now,
                last_seen_at: None,
                revoked_at: None,
                wipe_requested_at: None,
            };
            if !store.complete_pairing(&hash, &device).await? {
                return Err(unknown());
            }
            Ok(ApiJson(Paired { device_id: device.id, family_id: device.family_id }))
        }
        _ => Err(ApiError::new(ErrorCode::AuthorizationPending, "waiting for a guardian to enter the code")),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct ChallengeRequest {
    #[schema(value_type = String)]
    pub device_id: DeviceId,
}

#[derive(Serialize, ToSchema)]
pub struct Challenge {
    pub challenge: String,
    pub expires_in: i64,
}

/// A fresh single-use challenge for the device to sign.
#[utoipa::path(post, path = "/api/v1/devices/challenge", tag = "devices", request_body = ChallengeRequest,
    responses(
        (status = 200, body = Challenge),
        (status = 401, description = "Unknown or revoked device", body = ErrorBody),
    ))]
pub async fn challenge(State(state): State<AppState>, ApiJson(body): ApiJson<ChallengeRequest>) -> Result<ApiJson<Challenge>, ApiError> {
    let refused = || ApiError::new(ErrorCode::Unauthenticated, "unknown or revoked device");
    let device = state.vault.store().device(body.device_id).await?.filter(|d| d.revoked_at.is_none()).ok_or_else(refused)?;
    let (challenge, hash) = new_token()?;
    state.vault.store().create_challenge(&hash, &device, now_millis() + CHALLENGE_LIFETIME_MS).await?;
    Ok(ApiJson(Challenge { challenge, expires_in: CHALLENGE_LIFETIME_MS / 1000 }))
}

#[derive(Deserialize, ToSchema)]
pub struct SignedChallenge {
    #[schema(value_type = String)]
    pub device_id: DeviceId,
    pub challenge: String,
    /// Ed25519 signature (128 hex digits) of the challenge message.
    pub signature: String,
}

#[derive(Serialize, ToSchema)]
pub struct DeviceSession {
    pub access_token: String,
    pub expires_in: i64,
}

/// Sign in as a device: the signed challenge buys a short-lived access token.
#[utoipa::path(post, path = "/api/v1/devices/session", tag = "devices", request_body = SignedChallenge,
    responses(
        (status = 200, body = DeviceSession),
        (status = 401, description = "Bad signature, used or expired challenge, or revoked device", body = ErrorBody),
    ))]
pub async fn session(State(state): State<AppState>, ApiJson(body): ApiJson<SignedChallenge>) -> Result<ApiJson<DeviceSession>, ApiError> {
    let refused = || ApiError::new(ErrorCode::Unauthenticated, "the device could not be signed in");
    let store = state.vault.store();
    let device = store.device(body.device_id).await?.filter(|d| d.revoked_at.is_none()).ok_or_else(refused)?;
    let signature = hex::decode(body.signature.trim()).map_err(|_| refused())?;
    let challenge = body.challenge.trim();
    if !verify_challenge(&device.public_key, &device.id.to_string(), challenge, &signature) {
        return Err(refused());
    }
    // Single use: a replayed signature finds its challenge gone.
    if !store.take_challenge(&token_hash(challenge), device.id, now_millis()).await? {
        return Err(refused());
    }
    let (token, hash) = new_token()?;
    store.create_device_token(&hash, &device, now_millis() + ACCESS_TOKEN_LIFETIME_MS).await?;
    Ok(ApiJson(DeviceSession { access_token: token, expires_in: ACCESS_TOKEN_LIFETIME_MS / 1000 }))
}

#[derive(Serialize, ToSchema)]
pub struct DeviceView {
    #[schema(value_type = String)]
    pub device_id: DeviceId,
    #[schema(value_type = String)]
    pub family_id: FamilyId,
    #[schema(value_type = Option<String>)]
    pub child_id: Option<ChildId>,
    pub kind: String,
    pub name: String,
    pub software_version: String,
    pub paired_at: i64,
    pub last_seen_at: Option<i64>,
    pub revoked: bool,
    /// The device must erase its keys.
    pub wipe: bool,
    /// Whether the family wants its devices to keep the messages they have shown.
    pub keep_history: bool,
}

async fn view(state: &AppState, device: DeviceRow) -> Result<DeviceView, ApiError> {
    let name = state.vault.device_name(&device).await?.unwrap_or_default();
    let keep_history = state.vault.store().keep_history(device.family_id).await?;
    Ok(DeviceView {
        device_id: device.id,
        family_id: device.family_id,
        child_id: device.child_id,
        kind: device.kind,
        name,
        software_version: device.software_version,
        paired_at: device.paired_at,
        last_seen_at: device.last_seen_at,
        revoked: device.revoked_at.is_some(),
        wipe: device.wipe_requested_at.is_some(),
        keep_history,
    })
}

/// The calling device itself (a lost device flagged for wiping learns it here).
#[utoipa::path(get, path = "/api/v1/device", tag = "devices",
    responses((status = 200, body = DeviceView), (status = 401, description = "Not signed in as a device", body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, Device(device): Device) -> Result<ApiJson<DeviceView>, ApiError> {
    Ok(ApiJson(view(&state, device).await?))
}

/// The family's devices.
#[utoipa::path(get, path = "/api/v1/families/{family_id}/devices", tag = "devices",
    params(("family_id" = String, Path)),
    responses(
        (status = 200, body = Vec<DeviceView>),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such family of mine", body = ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>, guardian: Guardian, Path(family): Path<String>) -> Result<ApiJson<Vec<DeviceView>>, ApiError> {
    let family = allowed(&guardian, &family, Action::Read)?;
    let mut devices = Vec::new();
    for device in state.vault.store().family_devices(family).await? {
        devices.push(view(&state, device).await?);
    }
    Ok(ApiJson(devices))
}

fn device_id(raw: &str) -> Result<DeviceId, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found())
}

#[derive(Deserialize, ToSchema)]
pub struct RenameDevice {
    pub name: String,
}

/// Rename a device.
#[utoipa::path(patch, path = "/api/v1/families/{family_id}/devices/{device_id}", tag = "devices",
    request_body = RenameDevice, params(("family_id" = String, Path), ("device_id" = String, Path)),
    responses(
        (status = 204, description = "Renamed"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such device in a family of mine", body = ErrorBody),
        (status = 422, description = "Invalid name", body = ErrorBody),
    ))]
pub async fn rename(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, device)): Path<(String, String)>,
    ApiJson(body): ApiJson<RenameDevice>,
) -> Result<StatusCode, ApiError> {
    let family = allowed(&guardian, &family, Action::Change)?;
    let device = device_id(&device)?;
    let name = check_nickname(&body.name)?;
    let sealed = state.vault.seal_device_name(family, device, &name).await?.ok_or_else(ApiError::not_found)?;
    if !state.vault.store().rename_device(family, device, &sealed).await? {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke a device: its tokens die at once and it can never sign in again.
#[utoipa::path(delete, path = "/api/v1/families/{family_id}/devices/{device_id}", tag = "devices",
    params(("family_id" = String, Path), ("device_id" = String, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such device in a family of mine", body = ErrorBody),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, device)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let family = allowed(&guardian, &family, Action::Delete)?;
    let device = device_id(&device)?;
    if !state.vault.store().revoke_device(family, device, now_millis()).await? {
        return Err(ApiError::not_found());
    }
    audit(&state, Actor::Account(guardian.account), "device.revoked", Some(family), format!(r#"{{"device":"{device}"}}"#))
        .await?;
    state.delivery.device_revoked(device).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Flag a lost device: the next time it connects it is told to erase its keys.
#[utoipa::path(post, path = "/api/v1/families/{family_id}/devices/{device_id}/wipe", tag = "devices",
    params(("family_id" = String, Path), ("device_id" = String, Path)),
    responses(
        (status = 204, description = "Flagged for wiping"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such device in a family of mine", body = ErrorBody),
    ))]
pub async fn wipe(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, device)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let family = allowed(&guardian, &family, Action::Change)?;
    let device = device_id(&device)?;
    if !state.vault.store().request_wipe(family, device, now_millis()).await? {
        return Err(ApiError::not_found());
    }
    audit(&state, Actor::Account(guardian.account), "device.wipe_requested", Some(family), format!(r#"{{"device":"{device}"}}"#))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
