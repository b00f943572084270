//! Key rotation: re-wrap every data key under a new master key.
//!
//! Only the wrapped keys change (a few dozen bytes a family), never the sealed data.
//! Work goes in batches, each one transaction whose updates apply only to rows still
//! wrapped by the key they were read with, so the rotation can be interrupted at any
//! point (even by `kill -9`) and run again: it picks up the rows not yet done.

use std::time::Duration;

use cubby_crypto::{Keyring, MasterKey};
use cubby_store::Rewrap;

use super::{Vault, VaultError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationReport {
    /// Keys re-wrapped by this run.
    pub rewrapped: u64,
    /// Data keys in the database, all now wrapped by the new master key.
    pub total: u64,
}

/// Re-wraps every data key not yet wrapped by `target`. `keyring` must be able to unwrap
/// them (the current key, and `target` itself after an interruption). `on_progress` is
/// called after each batch with (keys wrapped by `target`, all keys).
pub async fn rotate_keys(
    vault: &Vault,
    keyring: &Keyring,
    target: &MasterKey,
    batch_size: i64,
    pause: Duration,
    mut on_progress: impl FnMut(u64, u64),
) -> Result<RotationReport, VaultError> {
    let store = vault.store();
    let target_id = target.id().to_string();
    let counts = store.count_keys_by_master().await?;
    let total: u64 = counts.iter().map(|(_, n)| u64::try_from(*n).unwrap_or(0)).sum();
    let mut done: u64 =
        counts.iter().filter(|(id, _)| *id == target_id).map(|(_, n)| u64::try_from(*n).unwrap_or(0)).sum();
    let mut rewrapped = 0;
    on_progress(done, total);
    loop {
        let pending = store.keys_not_wrapped_by(&target_id, batch_size.max(1)).await?;
        if pending.is_empty() {
            return Ok(RotationReport { rewrapped, total });
        }
        let mut batch = Vec::with_capacity(pending.len());
        for key in pending {
            let label = key.owner.label();
            let data_key = keyring.unwrap_key(&key.master_key_id, &key.wrapped_key, &label)?;
            batch.push(Rewrap {
                owner: key.owner,
                old_master_key_id: key.master_key_id,
                new_master_key_id: target_id.clone(),
                wrapped_key: target.wrap(&data_key, &label)?,
            });
        }
        let applied = store.rewrap_keys(&batch).await?;
        rewrapped += applied;
        done += applied;
        on_progress(done, total.max(done));
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}
