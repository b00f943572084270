//! Keyed blind indexes: equality lookups (e.g. "is this email registered?") without
//! storing the value. Without the key, an index cannot be checked against a guess,
//! so a stolen database does not allow a dictionary attack on emails.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::SecretKey;

/// One blind-index key per indexed column (derived from the system key by purpose).
#[derive(Clone, Debug)]
pub struct BlindIndexKey(pub(crate) SecretKey);

impl BlindIndexKey {
    /// HMAC-SHA-256 of the value. Normalise first (e.g. lower-case an email):
    /// the index matches only byte-identical input.
    pub fn index(&self, normalised_value: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(normalised_value);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_value_same_index_other_key_other_index() {
        let a = BlindIndexKey(SecretKey::from_bytes([1; 32]));
        let b = BlindIndexKey(SecretKey::from_bytes([2; 32]));
        assert_eq!(a.index(b"alice@example.com"), a.index(b"alice@example.com"));
        assert_ne!(a.index(b"alice@example.com"), a.index(b"bob@example.com"));
        assert_ne!(a.index(b"alice@example.com"), b.index(b"alice@example.com"));
    }
}
