//! The master keys in use and the keys derived from them.

use std::fmt;

use crate::aead_key::{open_with, seal_with};
use crate::{AuditChainKey, BlindIndexKey, CryptoError, DataKey, FieldContext, SecretKey};

/// A master key's public fingerprint, stored beside each key it wraps so that a
/// rotation knows which rows are done. It reveals nothing about the key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MasterKeyId(String);

impl MasterKeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MasterKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The top of the hierarchy. It never encrypts data itself: it only wraps data keys,
/// with a key-encryption key derived from it.
#[derive(Clone, Debug)]
pub struct MasterKey {
    id: MasterKeyId,
    key_wrapping: SecretKey,
}

impl MasterKey {
    pub fn new(secret: &SecretKey) -> Self {
        let fingerprint = secret.derive("cubby/v1/master-key-id");
        let id = MasterKeyId(hex::encode(&fingerprint.bytes()[..8]));
        Self { id, key_wrapping: secret.derive("cubby/v1/key-wrapping") }
    }

    pub fn id(&self) -> &MasterKeyId {
        &self.id
    }

    /// Wraps a data key for one owner (`system`, or `family:<id>`): the wrapped key
    /// only unwraps for that owner, so wrapped keys cannot be swapped between families.
    pub fn wrap(&self, key: &DataKey, owner: &str) -> Result<Vec<u8>, CryptoError> {
        seal_with(&self.key_wrapping, wrapping_place(owner), key.0.bytes())
    }

    pub fn unwrap_key(&self, wrapped: &[u8], owner: &str) -> Result<DataKey, CryptoError> {
        let bytes = open_with(&self.key_wrapping, wrapping_place(owner), wrapped)?;
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| CryptoError::Malformed)?;
        Ok(DataKey(SecretKey::from_bytes(bytes)))
    }
}

fn wrapping_place(owner: &str) -> FieldContext<'_> {
    FieldContext { table: "data_keys", column: "wrapped_key", row: owner }
}

/// The master keys loaded at start: the current one, and during a key rotation the
/// next one. Data keys wrapped by either can be unwrapped; new ones are wrapped by
/// the current key until the rotation completes.
#[derive(Clone, Debug)]
pub struct Keyring {
    current: MasterKey,
    next: Option<MasterKey>,
}

impl Keyring {
    pub fn new(current: MasterKey, next: Option<MasterKey>) -> Self {
        Self { current, next }
    }

    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    pub fn next(&self) -> Option<&MasterKey> {
        self.next.as_ref()
    }

    pub fn by_id(&self, id: &str) -> Result<&MasterKey, CryptoError> {
        std::iter::once(&self.current)
            .chain(self.next.as_ref())
            .find(|key| key.id.as_str() == id)
            .ok_or_else(|| CryptoError::UnknownMasterKey(id.to_owned()))
    }

    /// Unwraps a data key stored with the id of the master key that wrapped it.
    pub fn unwrap_key(&self, master_key_id: &str, wrapped: &[u8], owner: &str) -> Result<DataKey, CryptoError> {
        self.by_id(master_key_id)?.unwrap_key(wrapped, owner)
    }
}

/// The system's data key, from which the server-wide purpose keys are derived.
/// It is wrapped by the master key like any data key, so a key rotation carries it
/// along and the derived keys (and so every blind index and the audit chain) stay valid.
#[derive(Clone, Debug)]
pub struct SystemKey(DataKey);

impl SystemKey {
    pub const OWNER: &'static str = "system";

    pub fn new(key: DataKey) -> Self {
        Self(key)
    }

    pub fn data_key(&self) -> &DataKey {
        &self.0
    }

    /// The blind-index key for one indexed column, e.g. `accounts.email`.
    pub fn blind_index_key(&self, column: &str) -> BlindIndexKey {
        BlindIndexKey(self.0.0.derive(&format!("cubby/v1/blind-index/{column}")))
    }

    pub fn audit_chain_key(&self) -> AuditChainKey {
        AuditChainKey(self.0.0.derive("cubby/v1/audit-chain"))
    }

    /// The seed of the server's Ed25519 key as the MLS groups' external sender (it proposes
    /// removing revoked devices). Derived, so every node of a cluster signs with the same key.
    pub fn external_sender_seed(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(*self.0.0.derive("cubby/v1/mls-external-sender").bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_keys_unwrap_only_for_their_owner_and_master() -> Result<(), CryptoError> {
        let master = MasterKey::new(&SecretKey::random()?);
        let other = MasterKey::new(&SecretKey::random()?);
        let data_key = DataKey::random()?;
        let wrapped = master.wrap(&data_key, "family:a")?;
        let unwrapped = master.unwrap_key(&wrapped, "family:a")?;
        assert_eq!(unwrapped.0.bytes(), data_key.0.bytes());
        assert!(master.unwrap_key(&wrapped, "family:b").is_err());
        assert!(other.unwrap_key(&wrapped, "family:a").is_err());
        Ok(())
    }

    #[test]
    fn keyring_finds_keys_by_id_during_rotation() -> Result<(), CryptoError> {
        let old = MasterKey::new(&SecretKey::random()?);
        let new = MasterKey::new(&SecretKey::random()?);
        let data_key = DataKey::random()?;
        let wrapped_old = old.wrap(&data_key, "system")?;
        let wrapped_new = new.wrap(&data_key, "system")?;
        let ring = Keyring::new(old.clone(), Some(new.clone()));
        assert!(ring.unwrap_key(old.id().as_str(), &wrapped_old, "system").is_ok());
        assert!(ring.unwrap_key(new.id().as_str(), &wrapped_new, "system").is_ok());
        let without_next = Keyring::new(old, None);
        assert!(matches!(
            without_next.unwrap_key(new.id().as_str(), &wrapped_new, "system"),
            Err(CryptoError::UnknownMasterKey(_))
        ));
        Ok(())
    }

    #[test]
    fn master_key_ids_are_stable_and_distinct() -> Result<(), CryptoError> {
        let secret = SecretKey::random()?;
        assert_eq!(MasterKey::new(&secret).id(), MasterKey::new(&secret).id());
        assert_ne!(MasterKey::new(&secret).id(), MasterKey::new(&SecretKey::random()?).id());
        Ok(())
    }
}
