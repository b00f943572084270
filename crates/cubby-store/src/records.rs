//! Rows as the store sees them: ids, times and opaque (sealed or wrapped) bytes.

use std::fmt;

use cubby_core::FamilyId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        })
    }
}

/// Whose data key a wrapped key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOwner {
    System,
    Family(FamilyId),
}

impl KeyOwner {
    /// The label bound into the wrapping, so a wrapped key cannot be moved to another owner.
    pub fn label(&self) -> String {
        match self {
            Self::System => "system".to_owned(),
            Self::Family(id) => format!("family:{id}"),
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyRow {
    pub id: FamilyId,
    pub created_at: i64,
    pub name_sealed: Vec<u8>,
}

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
