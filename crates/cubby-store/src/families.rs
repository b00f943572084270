//! Families, their guardians, invites, consent records and children.

use async_trait::async_trait;
use cubby_core::{AccountId, ChildId, ConsentId, FamilyId};

use crate::{StoreError, WrappedKey};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyRow {
    pub id: FamilyId,
    pub created_at: i64,
    /// Sealed with the family's data key.
    pub name_sealed: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardianRow {
    pub family_id: FamilyId,
    pub account_id: AccountId,
    pub joined_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteRow {
    pub token_hash: Vec<u8>,
    pub family_id: FamilyId,
    /// Blind index of the invited email: only that address may accept.
    pub email_index: Vec<u8>,
    pub invited_by: AccountId,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRow {
    pub id: ConsentId,
    pub family_id: FamilyId,
    pub account_id: AccountId,
    /// `collection` or `third_party`.
    pub kind: String,
    pub notice_version: String,
    pub method: String,
    pub given_at: i64,
    pub withdrawn_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildRow {
    pub id: ChildId,
    pub family_id: FamilyId,
    pub created_at: i64,
    /// Both sealed with the child's own data key.
    pub nickname_sealed: Vec<u8>,
    pub age_band_sealed: Vec<u8>,
}

#[async_trait]
pub trait FamilyStore {
    /// Creates a family, its wrapped data key and (if given) its first guardian, or nothing.
    async fn create_family(
        &self,
        family: &FamilyRow,
        key: &WrappedKey,
        guardian: Option<AccountId>,
    ) -> Result<(), StoreError>;
    async fn family(&self, id: FamilyId) -> Result<Option<FamilyRow>, StoreError>;
    /// Days the family's undelivered messages are kept; None: the server's default.
    async fn message_retention_days(&self, id: FamilyId) -> Result<Option<i64>, StoreError>;
    /// Sets (or, with None, clears) it; false if there is no such family.
    async fn set_message_retention_days(&self, id: FamilyId, days: Option<i64>) -> Result<bool, StoreError>;
    /// Deletes a family with every row it owns and every data key (crypto-shredding).
    /// Whether the family's devices keep the messages they have shown (true by default).
    async fn keep_history(&self, id: FamilyId) -> Result<bool, StoreError>;
    async fn set_keep_history(&self, id: FamilyId, keep: bool) -> Result<bool, StoreError>;
    async fn delete_family(&self, id: FamilyId) -> Result<bool, StoreError>;

    async fn families_of(&self, account: AccountId) -> Result<Vec<FamilyId>, StoreError>;
    async fn guardians(&self, family: FamilyId) -> Result<Vec<GuardianRow>, StoreError>;
    /// Adds a guardian; `Conflict` if already one.
    async fn add_guardian(&self, guardian: &GuardianRow) -> Result<(), StoreError>;
    /// Removes a guardian unless they are the last one (`Ok(false)` then); checked and
    /// done in one transaction holding the family's lock, so two guardians leaving at once
    /// cannot orphan the family.
    async fn remove_guardian(&self, family: FamilyId, account: AccountId) -> Result<bool, StoreError>;
    /// Removes the account from every family it guards, all or nothing: `Ok(false)` and no
    /// change if it is the last guardian of any of them.
    async fn leave_all_families(&self, account: AccountId) -> Result<bool, StoreError>;

    async fn create_invite(&self, invite: &InviteRow) -> Result<(), StoreError>;
    /// Consumes an invite (single use) if it exists, has not expired and was made for the
    /// address with this blind index; an attempt from another address leaves it intact.
    async fn take_invite(&self, token_hash: &[u8], email_index: &[u8], now: i64) -> Result<Option<InviteRow>, StoreError>;

    async fn add_consent(&self, consent: &ConsentRow) -> Result<(), StoreError>;
    async fn consents(&self, family: FamilyId) -> Result<Vec<ConsentRow>, StoreError>;
    /// Marks the family's active consents of `kind` withdrawn; returns how many.
    async fn withdraw_consents(&self, family: FamilyId, kind: &str, at: i64) -> Result<u64, StoreError>;

    /// Creates a child and its wrapped data key together.
    async fn create_child(&self, child: &ChildRow, key: &WrappedKey) -> Result<(), StoreError>;
    async fn children(&self, family: FamilyId) -> Result<Vec<ChildRow>, StoreError>;
    async fn child(&self, family: FamilyId, id: ChildId) -> Result<Option<ChildRow>, StoreError>;
    async fn update_child(&self, child: &ChildRow) -> Result<bool, StoreError>;
    /// Deletes the child and its data key; false if the family has no such child.
    async fn delete_child(&self, family: FamilyId, id: ChildId) -> Result<bool, StoreError>;
}
