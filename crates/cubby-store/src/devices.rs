//! Pairing requests, paired devices, sign-in challenges and device access tokens.

use async_trait::async_trait;
use cubby_core::{AccountId, ChildId, DeviceId, FamilyId};

use crate::StoreError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairingRow {
    pub device_code_hash: Vec<u8>,
    pub user_code_index: Vec<u8>,
    pub public_key: Vec<u8>,
    pub kind: String,
    pub software_version: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_poll_at: i64,
    /// `pending`, `approved` or `denied`.
    pub status: String,
    pub approval: Option<Approval>,
}

/// What a guardian decided for a pairing request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    pub device_id: DeviceId,
    pub family_id: FamilyId,
    pub child_id: Option<ChildId>,
    pub account_id: Option<AccountId>,
    pub name_sealed: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRow {
    pub id: DeviceId,
    pub family_id: FamilyId,
    pub child_id: Option<ChildId>,
    pub account_id: Option<AccountId>,
    pub kind: String,
    pub public_key: Vec<u8>,
    pub name_sealed: Vec<u8>,
    pub software_version: String,
    pub paired_at: i64,
    pub last_seen_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub wipe_requested_at: Option<i64>,
}

#[async_trait]
pub trait DeviceStore {
    async fn create_pairing(&self, pairing: &PairingRow) -> Result<(), StoreError>;
    /// A pending, unexpired request by the blind index of its user code.
    async fn pending_pairing_by_user_code(&self, user_code_index: &[u8], now: i64) -> Result<Option<PairingRow>, StoreError>;
    /// Approves (or, with `approval` None, denies) a pending, unexpired request.
    async fn decide_pairing(&self, user_code_index: &[u8], approval: Option<&Approval>, now: i64) -> Result<bool, StoreError>;
    /// Records a poll; returns the request as it was before (its previous `last_poll_at`).
    async fn poll_pairing(&self, device_code_hash: &[u8], now: i64) -> Result<Option<PairingRow>, StoreError>;
    /// Turns an approved request into a device, once (the request is consumed).
    async fn complete_pairing(&self, device_code_hash: &[u8], device: &DeviceRow) -> Result<bool, StoreError>;

    async fn device(&self, id: DeviceId) -> Result<Option<DeviceRow>, StoreError>;
    /// Those of `ids` that are paired and not revoked (any number of ids, in any order).
    async fn active_devices_among(&self, ids: &[DeviceId]) -> Result<Vec<DeviceId>, StoreError>;
    async fn family_devices(&self, family: FamilyId) -> Result<Vec<DeviceRow>, StoreError>;
    async fn rename_device(&self, family: FamilyId, id: DeviceId, name_sealed: &[u8]) -> Result<bool, StoreError>;
    /// Revokes at once: the device's tokens and challenges go with it.
    async fn revoke_device(&self, family: FamilyId, id: DeviceId, at: i64) -> Result<bool, StoreError>;
    async fn request_wipe(&self, family: FamilyId, id: DeviceId, at: i64) -> Result<bool, StoreError>;
    async fn touch_device(&self, id: DeviceId, at: i64) -> Result<(), StoreError>;

    async fn create_challenge(&self, challenge_hash: &[u8], device: &DeviceRow, expires_at: i64) -> Result<(), StoreError>;
    /// Consumes a challenge issued to this device (single use); false if unknown or expired.
    async fn take_challenge(&self, challenge_hash: &[u8], device: DeviceId, now: i64) -> Result<bool, StoreError>;
    async fn create_device_token(&self, token_hash: &[u8], device: &DeviceRow, expires_at: i64) -> Result<(), StoreError>;
    /// The live, unrevoked device an access token belongs to.
    async fn device_by_token(&self, token_hash: &[u8], now: i64) -> Result<Option<DeviceRow>, StoreError>;
}
