//! The audit log's rows. The chain MACs are computed above the store, which only keeps
//! appends in order.

use async_trait::async_trait;
use cubby_core::FamilyId;

use crate::StoreError;

/// The last entry of the audit log, which the next one chains to.
#[derive(Clone, Debug, Default)]
pub struct AuditTail {
    /// 0 when the log is empty.
    pub seq: i64,
    /// `None` when the log is empty.
    pub mac: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
pub struct NewAuditRow {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub family_id: Option<FamilyId>,
    pub detail: String,
    pub prev_mac: Vec<u8>,
    pub mac: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRow {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub family_id: Option<String>,
    pub detail: String,
    pub prev_mac: Vec<u8>,
    pub mac: Vec<u8>,
}

#[async_trait]
pub trait AuditStore {
    /// Appends one entry. `build` is given the current tail and returns the entry to
    /// insert (it computes the chain MAC); appends are serialised, so the chain never forks.
    async fn append_audit(
        &self,
        build: &(dyn for<'t> Fn(&'t AuditTail) -> NewAuditRow + Send + Sync),
    ) -> Result<AuditRow, StoreError>;

    /// Entries with `seq > after`, oldest first, at most `limit`.
    async fn audit_entries(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError>;

    /// The newest entries concerning one family, newest first.
    async fn family_audit_entries(&self, family: FamilyId, limit: i64) -> Result<Vec<AuditRow>, StoreError>;
}
