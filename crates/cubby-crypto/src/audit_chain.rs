//! The audit log's chain: each entry's MAC covers the previous entry's MAC and the
//! entry's own bytes. The key is not in the database, so someone who can write to the
//! database can delete or edit entries but cannot forge a chain that verifies.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::SecretKey;

pub type ChainMac = [u8; 32];

/// The MAC of the (virtual) entry before the first one.
pub const GENESIS: ChainMac = [0u8; 32];

#[derive(Clone, Debug)]
pub struct AuditChainKey(pub(crate) SecretKey);

impl AuditChainKey {
    fn mac(&self, previous: &ChainMac, entry: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(previous);
        mac.update(entry);
        mac
    }

    /// The MAC of `entry` chained after `previous`.
    pub fn link(&self, previous: &ChainMac, entry: &[u8]) -> ChainMac {
        self.mac(previous, entry).finalize().into_bytes().into()
    }

    /// Constant-time check of a stored MAC.
    pub fn verify(&self, previous: &ChainMac, entry: &[u8], stored: &[u8]) -> bool {
        self.mac(previous, entry).verify_slice(stored).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_verifies_and_any_change_breaks_it() {
        let key = AuditChainKey(SecretKey::from_bytes([9; 32]));
        let first = key.link(&GENESIS, b"server.started");
        let second = key.link(&first, b"keys.rotated");
        assert!(key.verify(&GENESIS, b"server.started", &first));
        assert!(key.verify(&first, b"keys.rotated", &second));
        assert!(!key.verify(&first, b"keys.rotateD", &second));
        assert!(!key.verify(&GENESIS, b"keys.rotated", &second));
        let forger = AuditChainKey(SecretKey::from_bytes([8; 32]));
        assert!(!forger.verify(&GENESIS, b"server.started", &first));
    }
}
