//! A paired device calling with its short-lived access token (`Authorization: Bearer`).
//! A revoked device's tokens are deleted at revocation and refused by the lookup, so its
//! next request fails at once.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use cubby_core::ErrorCode;
use cubby_crypto::token_hash;
use cubby_store::DeviceRow;

use super::{ApiError, AppState};
use crate::vault::now_millis;

pub struct Device(pub DeviceRow);

const TOUCH_EVERY_MS: i64 = 60_000;

impl FromRequestParts<AppState> for Device {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let refused = || ApiError::new(ErrorCode::Unauthenticated, "this device must sign in again");
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(refused)?;
        let now = now_millis();
        let device = state.vault.store().device_by_token(&token_hash(token), now).await?.ok_or_else(refused)?;
        // "Last seen" is for guardians' eyes: minute precision, not a write per request.
        if device.last_seen_at.is_none_or(|seen| now - seen > TOUCH_EVERY_MS) {
            state.vault.store().touch_device(device.id, now).await?;
        }
        Ok(Self(device))
    }
}
