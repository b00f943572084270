//! Device credentials: a device proves it is itself by signing a fresh, single-use
//! challenge with its Ed25519 key. The server keeps only public keys, so nothing it
//! stores lets anyone act as a device.

use ed25519_dalek::{Signature, VerifyingKey};

/// The bytes a device signs. The domain tag and the device id keep a signature from
/// being usable for any other purpose or any other device.
pub fn challenge_message(device_id: &str, challenge: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(22 + device_id.len() + 1 + challenge.len());
    message.extend_from_slice(b"cubby-device-auth-v1\n");
    message.extend_from_slice(device_id.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(challenge.as_bytes());
    message
}

/// Is `public_key` (32 bytes) a valid Ed25519 key? Checked at pairing, before it is stored.
pub fn is_valid_public_key(public_key: &[u8]) -> bool {
    <[u8; 32]>::try_from(public_key).ok().and_then(|b| VerifyingKey::from_bytes(&b).ok()).is_some_and(|k| !k.is_weak())
}

/// Strict verification (no malleable or small-order signatures accepted).
pub fn verify_challenge(public_key: &[u8], device_id: &str, challenge: &str, signature: &[u8]) -> bool {
    // A newline inside either part would make the message ambiguous (the same bytes for
    // another device id and challenge); real ids and challenges never contain one.
    if device_id.contains('\n') || challenge.contains('\n') {
        return false;
    }
    let Some(key) = <[u8; 32]>::try_from(public_key).ok().and_then(|b| VerifyingKey::from_bytes(&b).ok()) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(signature) else { return false };
    key.verify_strict(&challenge_message(device_id, challenge), &signature).is_ok()
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_device_challenge_and_key() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key().to_bytes();
        let signature = key.sign(&challenge_message("dev-1", "abc")).to_bytes();
        assert!(verify_challenge(&public, "dev-1", "abc", &signature));
        assert!(!verify_challenge(&public, "dev-2", "abc", &signature));
        assert!(!verify_challenge(&public, "dev-1", "abd", &signature));
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes();
        assert!(!verify_challenge(&other, "dev-1", "abc", &signature));
        assert!(!verify_challenge(&public, "dev-1", "abc", &signature[..63]));
        assert!(is_valid_public_key(&public));
        assert!(!is_valid_public_key(&[0; 31]));
    }
}
