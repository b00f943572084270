use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::CryptoError;

/// 256 bits of key material, wiped from memory when dropped and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub fn random() -> Result<Self, CryptoError> {
        random_bytes().map(Self)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hex digits (surrounding whitespace ignored), the key-file format.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).ok()?;
        Some(Self(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw bytes, for handing the key to a library that takes it so (a device's
    /// storage and signing keys, read from their key files by `cubby chat`).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Derives an independent key for one purpose (HKDF-SHA-256, `info` names the purpose).
    pub(crate) fn derive(&self, info: &str) -> Self {
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"cubby/v1"), &self.0);
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF-SHA-256's limit of 255 * 32, so expand cannot fail.
        let _ = hkdf.expand(info.as_bytes(), &mut out);
        Self(out)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

/// Fresh bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| CryptoError::Random)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_differ_by_purpose_and_are_stable() {
        let root = SecretKey::from_bytes([7; 32]);
        assert_eq!(root.derive("a").bytes(), root.derive("a").bytes());
        assert_ne!(root.derive("a").bytes(), root.derive("b").bytes());
        assert_ne!(root.derive("a").bytes(), root.bytes());
    }

    #[test]
    fn hex_round_trips_and_debug_hides_the_key() {
        let key = SecretKey::from_bytes([0xab; 32]);
        let parsed = SecretKey::from_hex(&format!("  {}\n", key.to_hex()));
        assert_eq!(parsed.map(|k| *k.bytes()), Some([0xab; 32]));
        assert!(SecretKey::from_hex("abcd").is_none());
        assert!(!format!("{key:?}").contains("ab"));
    }
}
