//! The vault sits between the handlers and the store: it seals personal data with the
//! owning family's key before it is stored, opens it after it is read, and keeps the
//! audit log. Nothing above it sees a wrapped key; nothing below it sees a plaintext.

mod accounts;
mod audit;
mod children;
mod devices;
mod key_rotation;
mod quiet_hours;
mod reports;

pub use reports::ReportContent;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cubby_core::{AccountId, FamilyId};
use cubby_crypto::{CryptoError, DataKey, FieldContext, Keyring, SystemKey};
use cubby_store::{FamilyRow, KeyOwner, Store, StoreError, WrappedKey};

pub use audit::{AuditLog, AuditProblem, AuditReport};
pub use children::ChildView;
pub use key_rotation::{RotationReport, rotate_keys};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(
        "the master key (id {loaded}) cannot open this database's keys (wrapped by {stored}): \
         is this the key directory that belongs to this database?"
    )]
    WrongMasterKey { loaded: String, stored: String },
}

pub struct Vault {
    store: Arc<dyn Store>,
    keyring: Keyring,
    system: SystemKey,
    audit: AuditLog,
}

const FAMILY_NAME: (&str, &str) = ("families", "name");

impl Vault {
    /// Opens the vault over a store: unwraps the system key, creating it on first start.
    /// Refuses a master key that does not belong to this database.
    pub async fn open(store: Arc<dyn Store>, keyring: Keyring) -> Result<Self, VaultError> {
        let stored = match store.system_key().await? {
            Some(key) => key,
            None => {
                let fresh = DataKey::random()?;
                let wrapped = keyring.current().wrap(&fresh, &KeyOwner::System.label())?;
                store
                    .insert_system_key(&WrappedKey {
                        owner: KeyOwner::System,
                        master_key_id: keyring.current().id().to_string(),
                        wrapped_key: wrapped,
                        created_at: now_millis(),
                    })
                    .await?
            }
        };
        let system_key = keyring
            .unwrap_key(&stored.master_key_id, &stored.wrapped_key, &KeyOwner::System.label())
            .map_err(|_| VaultError::WrongMasterKey {
                loaded: keyring.current().id().to_string(),
                stored: stored.master_key_id.clone(),
            })?;
        let system = SystemKey::new(system_key);
        let audit = AuditLog::new(store.clone(), system.audit_chain_key());
        Ok(Self { store, keyring, system, audit })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub fn system_key(&self) -> &SystemKey {
        &self.system
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Creates a family with a fresh data key; its name is stored sealed.
    pub async fn create_family(&self, name: &str) -> Result<FamilyId, VaultError> {
        self.create_family_for(name, None).await
    }

    /// Creates a family whose first guardian is `guardian`.
    pub async fn create_family_for(&self, name: &str, guardian: Option<AccountId>) -> Result<FamilyId, VaultError> {
        let id = FamilyId::random();
        let key = DataKey::random()?;
        let owner = KeyOwner::Family(id);
        let row_id = id.to_string();
        let family = FamilyRow {
            id,
            created_at: now_millis(),
            name_sealed: key.seal(place(FAMILY_NAME, &row_id), name.as_bytes())?,
        };
        let wrapped = self.wrap(&key, owner, family.created_at)?;
        self.store.create_family(&family, &wrapped, guardian).await?;
        Ok(id)
    }

    /// The family's name, or `None` if the family does not exist (or was shredded).
    pub async fn family_name(&self, id: FamilyId) -> Result<Option<String>, VaultError> {
        let (Some(family), Some(key)) = (self.store.family(id).await?, self.family_key(id).await?) else {
            return Ok(None);
        };
        let row_id = id.to_string();
        let name = key.open(place(FAMILY_NAME, &row_id), &family.name_sealed)?;
        String::from_utf8(name).map(Some).map_err(|_| CryptoError::Malformed.into())
    }

    async fn family_key(&self, id: FamilyId) -> Result<Option<DataKey>, VaultError> {
        self.data_key(KeyOwner::Family(id)).await
    }

    /// The unwrapped data key of an owner, or `None` if it was destroyed (or never existed).
    async fn data_key(&self, owner: KeyOwner) -> Result<Option<DataKey>, VaultError> {
        let Some(stored) = self.store.data_key(owner).await? else { return Ok(None) };
        let key = self.keyring.unwrap_key(&stored.master_key_id, &stored.wrapped_key, &stored.owner.label())?;
        Ok(Some(key))
    }

    /// Wraps a fresh data key for storing beside its owner.
    fn wrap(&self, key: &DataKey, owner: KeyOwner, created_at: i64) -> Result<WrappedKey, VaultError> {
        Ok(WrappedKey {
            owner,
            master_key_id: self.keyring.current().id().to_string(),
            wrapped_key: self.keyring.current().wrap(key, &owner.label())?,
            created_at,
        })
    }
}

fn place<'a>((table, column): (&'a str, &'a str), row: &'a str) -> FieldContext<'a> {
    FieldContext { table, column, row }
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
