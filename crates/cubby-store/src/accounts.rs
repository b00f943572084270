//! Guardians' accounts, their sessions and single-use email tokens.

use async_trait::async_trait;
use cubby_core::{AccountId, FamilyId, SessionId};

use crate::{StoreError, WrappedKey};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRow {
    pub id: AccountId,
    /// Blind index (HMAC) of the normalised email: for lookups, reveals nothing.
    pub email_index: Vec<u8>,
    /// Sealed with the account's data key.
    pub email_sealed: Vec<u8>,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub email_verified_at: Option<i64>,
    pub created_at: i64,
    pub last_active_at: i64,
    pub idle_warned_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub id: SessionId,
    /// SHA-256 of the session token; the token itself is never stored.
    pub token_hash: Vec<u8>,
    pub account_id: AccountId,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

/// A single-use token sent by email; only its hash is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailTokenRow {
    pub token_hash: Vec<u8>,
    pub purpose: String,
    pub account_id: AccountId,
    pub family_id: Option<FamilyId>,
    /// Small non-personal facts the confirmation needs (e.g. a notice version).
    pub detail: String,
    pub created_at: i64,
    pub expires_at: i64,
}

#[async_trait]
pub trait AccountStore {
    /// Creates an account and its wrapped data key together; `Conflict` if the email is taken.
    async fn create_account(&self, account: &AccountRow, key: &WrappedKey) -> Result<(), StoreError>;
    async fn account(&self, id: AccountId) -> Result<Option<AccountRow>, StoreError>;
    async fn account_by_email_index(&self, email_index: &[u8]) -> Result<Option<AccountRow>, StoreError>;
    async fn set_password_hash(&self, id: AccountId, password_hash: &str) -> Result<(), StoreError>;
    async fn mark_email_verified(&self, id: AccountId, at: i64) -> Result<(), StoreError>;
    /// Records activity (and clears an idle warning).
    async fn touch_account(&self, id: AccountId, at: i64) -> Result<(), StoreError>;
    /// Accounts last active before `before`, oldest first.
    async fn idle_accounts(&self, before: i64, limit: i64) -> Result<Vec<AccountRow>, StoreError>;
    /// Marks the account warned, only if it is still idle since before `idle_before` and
    /// not warned yet (a sign-in between the sweep's read and this write wins).
    async fn mark_idle_warned(&self, id: AccountId, at: i64, idle_before: i64) -> Result<bool, StoreError>;
    /// Deletes the account, its key, sessions, tokens and memberships.
    async fn delete_account(&self, id: AccountId) -> Result<bool, StoreError>;

    async fn create_session(&self, session: &SessionRow) -> Result<(), StoreError>;
    async fn session_by_token_hash(&self, token_hash: &[u8]) -> Result<Option<SessionRow>, StoreError>;
    async fn touch_session(&self, id: SessionId, at: i64) -> Result<(), StoreError>;
    async fn sessions_of(&self, account: AccountId) -> Result<Vec<SessionRow>, StoreError>;
    /// Ends one of the account's sessions; false if it has no such session.
    async fn delete_session(&self, account: AccountId, id: SessionId) -> Result<bool, StoreError>;
    /// Ends every session of the account except `keep`.
    async fn delete_sessions_except(&self, account: AccountId, keep: Option<SessionId>) -> Result<u64, StoreError>;

    async fn create_email_token(&self, token: &EmailTokenRow) -> Result<(), StoreError>;
    /// Voids every outstanding token of one purpose for the account (e.g. older reset links
    /// once the password has changed).
    async fn delete_email_tokens(&self, account: AccountId, purpose: &str) -> Result<u64, StoreError>;
    /// Consumes a token of the given purpose (single use), if it exists and has not expired.
    async fn take_email_token(&self, token_hash: &[u8], purpose: &str, now: i64)
    -> Result<Option<EmailTokenRow>, StoreError>;
}
