//! Children's reports, sealed with the child's data key: the only message content the
//! server ever holds, because the child chose to send it to its guardians.

use cubby_core::{ChildId, FamilyId, ReportId};
use cubby_crypto::CryptoError;
use cubby_store::{KeyOwner, ReportRow};
use serde::{Deserialize, Serialize};

use super::{FieldContext, Vault, VaultError};

/// What a report says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportContent {
    /// The device that sent the reported message.
    pub sender_device: String,
    /// The message's end-to-end id (from its envelope).
    pub message_id: String,
    /// The message as the reporting device decrypted it.
    pub content: String,
    /// What the child added, if anything.
    pub note: String,
}

fn place(row: &str) -> FieldContext<'_> {
    FieldContext { table: "reports", column: "content", row }
}

impl Vault {
    /// Stores a report; false if the child is not in the family (or its key is gone).
    pub async fn add_report(
        &self,
        family: FamilyId,
        child: ChildId,
        group_id: Option<Vec<u8>>,
        content: &ReportContent,
        now: i64,
        expires_at: i64,
    ) -> Result<Option<ReportId>, VaultError> {
        let Some(key) = self.data_key(KeyOwner::Child(child)).await? else { return Ok(None) };
        let id = ReportId::random();
        let json = serde_json::to_vec(content).map_err(|_| CryptoError::Malformed)?;
        let row = ReportRow {
            id,
            family_id: family,
            child_id: child,
            group_id,
            content_sealed: key.seal(place(&id.to_string()), &json)?,
            created_at: now,
            expires_at,
            escalated_at: None,
        };
        Ok(self.store.add_report(&row).await?.then_some(id))
    }

    /// Opens a report; None if the child's key is gone (the child was deleted).
    pub async fn open_report(&self, row: &ReportRow) -> Result<Option<ReportContent>, VaultError> {
        let Some(key) = self.data_key(KeyOwner::Child(row.child_id)).await? else { return Ok(None) };
        let json = key.open(place(&row.id.to_string()), &row.content_sealed)?;
        serde_json::from_slice(&json).map(Some).map_err(|_| CryptoError::Malformed.into())
    }
}
