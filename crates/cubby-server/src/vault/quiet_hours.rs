//! A child's quiet hours, sealed with the family's data key: a schedule says when the
//! child is at school and asleep.

use cubby_core::quiet_hours::QuietHours;
use cubby_core::{ChildId, FamilyId};
use cubby_crypto::CryptoError;
use cubby_store::KeyOwner;

use super::{FieldContext, Vault, VaultError};

fn place(row: &str) -> FieldContext<'_> {
    FieldContext { table: "quiet_hours", column: "schedule", row }
}

impl Vault {
    /// Stores a child's schedule; false if the child is not in the family.
    pub async fn set_quiet_hours(&self, family: FamilyId, child: ChildId, schedule: &QuietHours, at: i64) -> Result<bool, VaultError> {
        let Some(key) = self.data_key(KeyOwner::Family(family)).await? else { return Ok(false) };
        let json = serde_json::to_vec(schedule).map_err(|_| CryptoError::Malformed)?;
        let sealed = key.seal(place(&child.to_string()), &json)?;
        Ok(self.store.set_quiet_hours(family, child, &sealed, at).await?)
    }

    pub async fn quiet_hours(&self, family: FamilyId, child: ChildId) -> Result<Option<QuietHours>, VaultError> {
        let Some(sealed) = self.store.quiet_hours(child).await? else { return Ok(None) };
        let Some(key) = self.data_key(KeyOwner::Family(family)).await? else { return Ok(None) };
        let json = key.open(place(&child.to_string()), &sealed)?;
        serde_json::from_slice(&json).map(Some).map_err(|_| CryptoError::Malformed.into())
    }
}
