//! Opening what every command works on, in the order that keeps keys safe: check the key
//! directory first, then lock the data directory, then open the database and the vault.

use std::sync::Arc;

use anyhow::Context;
use cubby_crypto::{Keyring, PasswordHasher};
use cubby_crypto::key_files::KeyDir;
use cubby_server::Vault;
use cubby_server::data_dir::DataDirLock;

use crate::settings::StorageSettings;

/// The password hasher, peppered from the key directory.
pub fn password_hasher(key_dir: &KeyDir) -> anyhow::Result<Arc<PasswordHasher>> {
    Ok(Arc::new(PasswordHasher::new(key_dir.password_pepper()?)))
}

pub struct Opened {
    /// Held until the command ends: no second process works on the same data.
    pub _lock: DataDirLock,
    pub key_dir: KeyDir,
    pub vault: Arc<Vault>,
}

pub async fn open(settings: &StorageSettings) -> anyhow::Result<Opened> {
    let key_dir = KeyDir::open(&settings.key_dir, &settings.data_dir)?;
    let keyring = key_dir.load_keyring(&settings.master_key)?;
    let lock = lock(settings)?;
    open_with(settings, lock, key_dir, keyring).await
}

/// Locks the data directory (creating it if needed).
pub fn lock(settings: &StorageSettings) -> anyhow::Result<DataDirLock> {
    DataDirLock::acquire(&settings.data_dir).map_err(anyhow::Error::msg)
}

/// Opens the database and vault once the data directory is locked and the keys loaded.
pub async fn open_with(
    settings: &StorageSettings,
    lock: DataDirLock,
    key_dir: KeyDir,
    keyring: Keyring,
) -> anyhow::Result<Opened> {
    let url = settings.database_url.clone().unwrap_or_else(|| lock.default_database_url());
    let store = cubby_store::connect(&url).await.context("cannot open the database")?;
    let vault = Vault::open(store, keyring).await?;
    Ok(Opened { _lock: lock, key_dir, vault: Arc::new(vault) })
}
