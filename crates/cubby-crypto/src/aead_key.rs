//! Sealing with XChaCha20-Poly1305. A sealed value is `version || nonce || ciphertext+tag`;
//! its associated data names where it lives, so it only opens in that place.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};

use crate::{CryptoError, SecretKey, random_bytes};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Where a sealed value lives. Sealing binds the ciphertext to all three parts.
#[derive(Clone, Copy, Debug)]
pub struct FieldContext<'a> {
    pub table: &'a str,
    pub column: &'a str,
    /// The row's primary key, as text.
    pub row: &'a str,
}

impl FieldContext<'_> {
    /// Length-prefixed, so no two different contexts encode to the same bytes.
    fn associated_data(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(32 + self.table.len() + self.column.len() + self.row.len());
        aad.extend_from_slice(b"cubby/v1/sealed");
        for part in [self.table, self.column, self.row] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

/// A random data key: the system key or a family's key. Stored only wrapped.
#[derive(Clone, Debug)]
pub struct DataKey(pub(crate) SecretKey);

impl DataKey {
    /// A key the caller keeps elsewhere (a device's storage key, from its secure element
    /// or its keystore).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(SecretKey::from_bytes(bytes))
    }

    pub fn random() -> Result<Self, CryptoError> {
        SecretKey::random().map(Self)
    }

    pub fn seal(&self, place: FieldContext<'_>, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal_with(&self.0, place, plaintext)
    }

    pub fn open(&self, place: FieldContext<'_>, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.0, place, sealed)
    }
}

pub(crate) fn seal_with(
    key: &SecretKey,
    place: FieldContext<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let cipher = XChaCha20Poly1305::new(&(*key.bytes()).into());
    // 192-bit random nonces: collisions are negligible even for billions of values per key.
    let nonce_bytes: [u8; NONCE_LEN] = random_bytes()?;
    let aad = place.associated_data();
    let ciphertext = cipher
        .encrypt(&XNonce::from(nonce_bytes), Payload { msg: plaintext, aad: &aad })
        .map_err(|_| CryptoError::Malformed)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

pub(crate) fn open_with(
    key: &SecretKey,
    place: FieldContext<'_>,
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let (&version, rest) = sealed.split_first().ok_or(CryptoError::Malformed)?;
    if version != VERSION || rest.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed);
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Malformed)?;
    let cipher = XChaCha20Poly1305::new(&(*key.bytes()).into());
    let aad = place.associated_data();
    cipher
        .decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: &aad })
        .map_err(|_| CryptoError::OpenFailed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(row: &str) -> FieldContext<'_> {
        FieldContext { table: "families", column: "name", row }
    }

    #[test]
    fn sealed_values_open_only_in_their_own_place() -> Result<(), CryptoError> {
        let key = DataKey::random()?;
        let sealed = key.seal(place("row-1"), b"The Zebrafinches")?;
        assert_eq!(key.open(place("row-1"), &sealed)?, b"The Zebrafinches");
        // Moved to another row, column or table: refused.
        assert!(matches!(key.open(place("row-2"), &sealed), Err(CryptoError::OpenFailed)));
        let other_column = FieldContext { column: "motto", ..place("row-1") };
        assert!(key.open(other_column, &sealed).is_err());
        let other_table = FieldContext { table: "children", ..place("row-1") };
        assert!(key.open(other_table, &sealed).is_err());
        // Another key: refused.
        assert!(DataKey::random()?.open(place("row-1"), &sealed).is_err());
        Ok(())
    }

    #[test]
    fn tampered_or_truncated_values_are_refused() -> Result<(), CryptoError> {
        let key = DataKey::random()?;
        let sealed = key.seal(place("r"), b"secret")?;
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(key.open(place("r"), &bad).is_err(), "flipped byte {i} accepted");
        }
        for len in 0..sealed.len() {
            assert!(key.open(place("r"), &sealed[..len]).is_err());
        }
        Ok(())
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() -> Result<(), CryptoError> {
        let key = DataKey::random()?;
        assert_ne!(key.seal(place("r"), b"same")?, key.seal(place("r"), b"same")?);
        Ok(())
    }

    #[test]
    fn contexts_cannot_collide_by_shifting_separators() -> Result<(), CryptoError> {
        let key = DataKey::random()?;
        let a = FieldContext { table: "ab", column: "c", row: "d" };
        let b = FieldContext { table: "a", column: "bc", row: "d" };
        let sealed = key.seal(a, b"x")?;
        assert!(key.open(b, &sealed).is_err());
        Ok(())
    }
}
