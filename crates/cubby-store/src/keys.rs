//! Wrapped data keys: the system key and one per family, account and child.

use async_trait::async_trait;
use cubby_core::{AccountId, ChildId, FamilyId};

use crate::StoreError;

/// Whose data key a wrapped key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOwner {
    System,
    Family(FamilyId),
    Account(AccountId),
    Child(ChildId),
}

impl KeyOwner {
    /// The label bound into the wrapping, so a wrapped key cannot be moved to another owner.
    pub fn label(&self) -> String {
        match self {
            Self::System => "system".to_owned(),
            Self::Family(id) => format!("family:{id}"),
            Self::Account(id) => format!("account:{id}"),
            Self::Child(id) => format!("child:{id}"),
        }
    }
}

/// A data key as stored: wrapped by the master key with the given id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    pub owner: KeyOwner,
    pub master_key_id: String,
    pub wrapped_key: Vec<u8>,
    pub created_at: i64,
}

/// One step of a key rotation.
#[derive(Clone, Debug)]
pub struct Rewrap {
    pub owner: KeyOwner,
    pub old_master_key_id: String,
    pub new_master_key_id: String,
    pub wrapped_key: Vec<u8>,
}

#[async_trait]
pub trait KeyStore {
    async fn system_key(&self) -> Result<Option<WrappedKey>, StoreError>;

    /// Stores the system key unless one exists (two nodes may start at once);
    /// returns the one that is stored afterwards.
    async fn insert_system_key(&self, key: &WrappedKey) -> Result<WrappedKey, StoreError>;

    /// The wrapped key of a family, account or child.
    async fn data_key(&self, owner: KeyOwner) -> Result<Option<WrappedKey>, StoreError>;

    /// Up to `limit` data keys of any owner not wrapped by `master_key_id`.
    async fn keys_not_wrapped_by(&self, master_key_id: &str, limit: i64) -> Result<Vec<WrappedKey>, StoreError>;

    /// Replaces wrapped keys in one transaction. Each update applies only if the row is
    /// still wrapped by the key it was read with; returns how many were applied.
    async fn rewrap_keys(&self, updates: &[Rewrap]) -> Result<u64, StoreError>;

    /// How many data keys each master key wraps.
    async fn count_keys_by_master(&self) -> Result<Vec<(String, i64)>, StoreError>;
}
