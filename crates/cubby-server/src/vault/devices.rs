//! A device's name (which may well hold a child's name: "Sam's bear") is sealed with the
//! family's data key.

use cubby_core::{DeviceId, FamilyId};
use cubby_crypto::CryptoError;
use cubby_store::{DeviceRow, KeyOwner};

use super::{FieldContext, Vault, VaultError};

fn place(row: &str) -> FieldContext<'_> {
    FieldContext { table: "devices", column: "name", row }
}

impl Vault {
    pub async fn seal_device_name(&self, family: FamilyId, device: DeviceId, name: &str) -> Result<Option<Vec<u8>>, VaultError> {
        let Some(key) = self.data_key(KeyOwner::Family(family)).await? else { return Ok(None) };
        let row = device.to_string();
        Ok(Some(key.seal(place(&row), name.as_bytes())?))
    }

    pub async fn device_name(&self, device: &DeviceRow) -> Result<Option<String>, VaultError> {
        let Some(key) = self.data_key(KeyOwner::Family(device.family_id)).await? else { return Ok(None) };
        let row = device.id.to_string();
        let name = key.open(place(&row), &device.name_sealed)?;
        String::from_utf8(name).map(Some).map_err(|_| CryptoError::Malformed.into())
    }
}
