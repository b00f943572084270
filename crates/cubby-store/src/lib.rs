//! Storage for Cubby: one [`Store`] trait, one implementation over SQLite (the embedded
//! default) and PostgreSQL.
//!
//! Every query is a constant SQL text with `$n` placeholders (which both engines accept),
//! bound with parameters: no SQL is ever built from values. The store holds only what the
//! layers above give it, which for anything personal is already sealed.

mod error;
mod records;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

use async_trait::async_trait;
use cubby_core::FamilyId;

pub use error::StoreError;
pub use records::{AuditRow, AuditTail, Engine, FamilyRow, KeyOwner, NewAuditRow, Rewrap, WrappedKey};
pub use sql::SqlStore;

/// Everything Cubby keeps in its database.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn engine(&self) -> Engine;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Closes every connection cleanly (SQLite checkpoints its WAL on the last one).
    async fn close(&self);

    // ---- data keys -------------------------------------------------------------------

    async fn system_key(&self) -> Result<Option<WrappedKey>, StoreError>;

    /// Stores the system key unless one exists (two nodes may start at once);
    /// returns the one that is stored afterwards.
    async fn insert_system_key(&self, key: &WrappedKey) -> Result<WrappedKey, StoreError>;

    /// Up to `limit` data keys (system and family) not wrapped by `master_key_id`.
    async fn keys_not_wrapped_by(&self, master_key_id: &str, limit: i64) -> Result<Vec<WrappedKey>, StoreError>;

    /// Replaces wrapped keys in one transaction. Each update applies only if the row is
    /// still wrapped by the key it was read with; returns how many were applied.
    async fn rewrap_keys(&self, updates: &[Rewrap]) -> Result<u64, StoreError>;

    /// How many data keys each master key wraps.
    async fn count_keys_by_master(&self) -> Result<Vec<(String, i64)>, StoreError>;

    // ---- families --------------------------------------------------------------------

    /// Creates a family and its wrapped data key together, or neither.
    async fn create_family(&self, family: &FamilyRow, key: &WrappedKey) -> Result<(), StoreError>;

    async fn family(&self, id: FamilyId) -> Result<Option<FamilyRow>, StoreError>;

    async fn family_key(&self, id: FamilyId) -> Result<Option<WrappedKey>, StoreError>;

    /// Deletes a family with its data key (crypto-shredding). Returns whether it existed.
    async fn delete_family(&self, id: FamilyId) -> Result<bool, StoreError>;

    // ---- audit log -------------------------------------------------------------------

    /// Appends one entry. `build` is given the current tail and returns the entry to
    /// insert (it computes the chain MAC); appends are serialised, so the chain never forks.
    async fn append_audit(
        &self,
        build: &(dyn for<'t> Fn(&'t AuditTail) -> NewAuditRow + Send + Sync),
    ) -> Result<AuditRow, StoreError>;

    /// Entries with `seq > after`, oldest first, at most `limit`.
    async fn audit_entries(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError>;
}

/// Opens the database at `url` (`sqlite://…` or `postgres://…`) and applies migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqlStore::connect(url).await?))
}
