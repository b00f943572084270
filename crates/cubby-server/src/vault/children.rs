//! Child profiles: a nickname and an age band, each sealed with the child's own data key
//! (so deleting one child shreds that child alone, backups included).

use cubby_core::validation::AgeBand;
use cubby_core::{ChildId, FamilyId};
use cubby_crypto::{CryptoError, DataKey};
use cubby_store::{ChildRow, KeyOwner};
use serde::Serialize;

use super::{FieldContext, Vault, VaultError, now_millis};

/// A child profile as a guardian sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChildView {
    #[schema(value_type = String)]
    pub id: ChildId,
    #[schema(value_type = String)]
    pub family_id: FamilyId,
    pub nickname: String,
    #[schema(value_type = String, example = "6_8")]
    pub age_band: AgeBand,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

fn place<'a>(column: &'a str, row: &'a str) -> FieldContext<'a> {
    FieldContext { table: "children", column, row }
}

impl Vault {
    pub async fn create_child(&self, family: FamilyId, nickname: &str, age_band: AgeBand) -> Result<ChildView, VaultError> {
        let id = ChildId::random();
        let key = DataKey::random()?;
        let row_id = id.to_string();
        let now = now_millis();
        let row = ChildRow {
            id,
            family_id: family,
            created_at: now,
            nickname_sealed: key.seal(place("nickname", &row_id), nickname.as_bytes())?,
            age_band_sealed: key.seal(place("age_band", &row_id), age_band.as_str().as_bytes())?,
        };
        self.store.create_child(&row, &self.wrap(&key, KeyOwner::Child(id), now)?).await?;
        Ok(ChildView { id, family_id: family, nickname: nickname.to_owned(), age_band, created_at: now })
    }

    /// Opens a child's row; `None` if the child's key is gone.
    pub async fn open_child(&self, row: &ChildRow) -> Result<Option<ChildView>, VaultError> {
        let Some(key) = self.data_key(KeyOwner::Child(row.id)).await? else { return Ok(None) };
        let row_id = row.id.to_string();
        let nickname = String::from_utf8(key.open(place("nickname", &row_id), &row.nickname_sealed)?)
            .map_err(|_| CryptoError::Malformed)?;
        let band = String::from_utf8(key.open(place("age_band", &row_id), &row.age_band_sealed)?)
            .map_err(|_| CryptoError::Malformed)?;
        let age_band = AgeBand::parse(&band).ok_or(CryptoError::Malformed)?;
        Ok(Some(ChildView { id: row.id, family_id: row.family_id, nickname, age_band, created_at: row.created_at }))
    }

    /// Replaces a child's nickname and age band; false if the family has no such child.
    pub async fn update_child(&self, child: &ChildView) -> Result<bool, VaultError> {
        let Some(key) = self.data_key(KeyOwner::Child(child.id)).await? else { return Ok(false) };
        let row_id = child.id.to_string();
        let row = ChildRow {
            id: child.id,
            family_id: child.family_id,
            created_at: child.created_at,
            nickname_sealed: key.seal(place("nickname", &row_id), child.nickname.as_bytes())?,
            age_band_sealed: key.seal(place("age_band", &row_id), child.age_band.as_str().as_bytes())?,
        };
        Ok(self.store.update_child(&row).await?)
    }
}
