//! Bearer secrets: session tokens and the single-use tokens sent by email. 256 random
//! bits, shown once as hex; the database keeps only their SHA-256, so a stolen database
//! holds no usable token (a preimage of a 256-bit random value cannot be searched for).

use sha2::{Digest, Sha256};

use crate::{CryptoError, random_bytes};

/// Makes a fresh token: the text to hand out, and the hash to store.
pub fn new_token() -> Result<(String, [u8; 32]), CryptoError> {
    let token = hex::encode(random_bytes::<32>()?);
    let hash = token_hash(&token);
    Ok((token, hash))
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_stably() -> Result<(), CryptoError> {
        let (a, hash_a) = new_token()?;
        let (b, _) = new_token()?;
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(token_hash(&a), hash_a);
        assert_ne!(token_hash(&b), hash_a);
        Ok(())
    }
}
