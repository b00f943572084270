//! Package signatures: a publisher signs the exact bytes of a manifest with Ed25519. The
//! server checks the signature before it stores anything, and every toy checks it again
//! itself, so a compromised server cannot hand a toy a package its publisher never signed.

pub use ed25519_dalek::SigningKey;
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use sha2::{Digest, Sha256};

/// The domain tag keeps a manifest signature from being valid for any other purpose (and
/// any other Cubby signature from being valid as a manifest signature).
const DOMAIN: &[u8] = b"cubby-package-manifest-v1\0";

fn signed_message(manifest: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(DOMAIN.len() + manifest.len());
    message.extend_from_slice(DOMAIN);
    message.extend_from_slice(manifest);
    message
}

/// Signs the manifest bytes exactly as they will be uploaded.
pub fn sign_manifest(signing_key: &SigningKey, manifest: &[u8]) -> [u8; 64] {
    signing_key.sign(&signed_message(manifest)).to_bytes()
}

/// Strict verification (no malleable or small-order signatures, no weak keys).
pub fn verify_manifest(public_key: &[u8; 32], manifest: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public_key) else { return false };
    if key.is_weak() {
        return false;
    }
    let Ok(signature) = Signature::from_slice(signature) else { return false };
    key.verify_strict(&signed_message(manifest), &signature).is_ok()
}

/// Parses a publisher's public key from 64 hex digits, refusing anything that is not a
/// usable Ed25519 key (checked when the operator registers the publisher).
pub fn parse_public_key_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text.trim()).ok()?;
    let key = <[u8; 32]>::try_from(bytes.as_slice()).ok()?;
    let verifying = VerifyingKey::from_bytes(&key).ok()?;
    (!verifying.is_weak()).then_some(key)
}

/// A file's SHA-256 as a manifest lists it: 64 lower-case hex digits.
pub fn file_sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_covers_exactly_the_manifest_bytes() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let public = key.verifying_key().to_bytes();
        let manifest = br#"{"id":"org.example.counting"}"#;
        let signature = sign_manifest(&key, manifest);
        assert!(verify_manifest(&public, manifest, &signature));
        assert!(!verify_manifest(&public, br#"{"id":"org.example.countinG"}"#, &signature));
        assert!(!verify_manifest(&public, br#"{"id": "org.example.counting"}"#, &signature));
        let other = SigningKey::from_bytes(&[10; 32]).verifying_key().to_bytes();
        assert!(!verify_manifest(&other, manifest, &signature));
        assert!(!verify_manifest(&public, manifest, &signature[..63]));
    }

    #[test]
    fn signatures_are_domain_separated() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let public = key.verifying_key().to_bytes();
        let manifest = b"{}";
        // A plain signature over the same bytes (as another protocol might make) is refused.
        let plain = key.sign(manifest).to_bytes();
        assert!(!verify_manifest(&public, manifest, &plain));
        // And a manifest signature is exactly a signature over the tag and the bytes.
        let tagged = key.sign(b"cubby-package-manifest-v1\0{}").to_bytes();
        assert!(verify_manifest(&public, manifest, &tagged));
    }

    #[test]
    fn public_keys_are_parsed_from_hex() {
        let public = SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes();
        assert_eq!(parse_public_key_hex(&hex::encode(public)), Some(public));
        assert_eq!(parse_public_key_hex("abcd"), None);
        assert_eq!(file_sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(parse_public_key_hex(&"zz".repeat(32)), None);
        // The identity point is a weak (small-order) key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(parse_public_key_hex(&hex::encode(identity)), None);
    }
}
