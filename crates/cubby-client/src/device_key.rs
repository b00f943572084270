//! The device credential: an Ed25519 key pair made on the device.
//!
//! Toys have no passwords (children must not need one, and a password typed on a toy is a
//! password anyone in the room can read). Instead each device makes its own key pair when it
//! is first paired; the server keeps only the public key, so a stolen database holds nothing
//! that lets anyone act as a toy. To sign in, the device signs a fresh server challenge
//! ([`challenge_message`]); the server checks it with [`verify_challenge`]. Both sides call
//! the same function for the signed bytes, so they cannot drift apart.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::ClientError;

/// The bytes a device signs, defined once in cubby-crypto for the server and the SDK alike.
/// Its first line is a domain tag: a signature made for device authentication can never be
/// replayed as a signature over anything else, and a protocol change bumps the version.
pub use cubby_crypto::device_signature::challenge_message;

/// A device's Ed25519 signing key. It is made on the device from the operating system's
/// random number generator and never leaves it: only [`DeviceKey::public_key_hex`] is sent
/// to the server. The secret is wiped from memory when the key is dropped, and neither
/// `Debug` nor any error ever shows it.
pub struct DeviceKey {
    signing: SigningKey,
}

impl DeviceKey {
    /// A new key from 32 bytes of the operating system's CSPRNG (an Ed25519 secret key is
    /// any 32 uniformly random bytes, so nothing more than `getrandom` is needed).
    pub fn generate() -> Result<Self, ClientError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut_slice()).map_err(|_| ClientError::Random)?;
        Ok(Self { signing: SigningKey::from_bytes(&seed) })
    }

    /// The key a device stored earlier with [`DeviceKey::secret_bytes`].
    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        let bytes = Zeroizing::new(bytes);
        Self { signing: SigningKey::from_bytes(&bytes) }
    }

    /// The secret key, for the device to store in its own protected storage so it keeps its
    /// identity across restarts. Never send it anywhere: a device that loses it is paired
    /// again. Callers should wipe the copy once stored (e.g. with `zeroize`).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public key's 32 bytes.
    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The public key as 64 lowercase hex characters, as `POST /api/v1/pairing` expects.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().as_bytes())
    }

    /// Signs [`challenge_message`]`(device_id, challenge)`; the 64-byte Ed25519 signature as
    /// 128 lowercase hex characters, as `POST /api/v1/devices/session` expects.
    pub fn sign_challenge(&self, device_id: &str, challenge: &str) -> String {
        let signature = self.signing.sign(&challenge_message(device_id, challenge));
        hex::encode(signature.to_bytes())
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey").field("public_key", &self.public_key_hex()).finish_non_exhaustive()
    }
}

/// For the server: whether `signature_hex` is `public_key_hex`'s signature over
/// [`challenge_message`]`(device_id, challenge)`.
///
/// Strict, as a credential check must be: malformed hex, a wrong length, a public key that
/// is not a valid point or is of small order (a "weak" key that many messages verify
/// against), non-canonical signatures (`verify_strict`), and a device id or challenge with a
/// newline in it are all rejected. Answers only yes or no, so a caller cannot leak why.
pub fn verify_challenge(public_key_hex: &str, device_id: &str, challenge: &str, signature_hex: &str) -> bool {
    let (Ok(public_key), Ok(signature)) = (hex::decode(public_key_hex), hex::decode(signature_hex)) else {
        return false;
    };
    cubby_crypto::device_signature::verify_challenge(&public_key, device_id, challenge, &signature)
}

/// For the server, at `POST /api/v1/pairing`: whether `public_key_hex` is a usable device
/// public key (64 hex characters, a valid Ed25519 point, not of small order). Rejecting a
/// bad key there gives the device a clear error at once instead of a pairing that can never
/// authenticate.
pub fn is_valid_public_key(public_key_hex: &str) -> bool {
    parse_public_key(public_key_hex).is_some()
}

fn parse_public_key(public_key_hex: &str) -> Option<VerifyingKey> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(public_key_hex, &mut bytes).ok()?;
    let key = VerifyingKey::from_bytes(&bytes).ok()?;
    (!key.is_weak()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICE: &str = "3f2b8c1e-5d4a-4b6e-9c7f-0a1b2c3d4e5f";
    const OTHER_DEVICE: &str = "3f2b8c1e-5d4a-4b6e-9c7f-0a1b2c3d4e60";
    const CHALLENGE: &str = "9b1de6f2a04c47d18e3f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f809";
    const OTHER_CHALLENGE: &str = "9b1de6f2a04c47d18e3f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f80a";

    #[test]
    fn the_challenge_message_is_exactly_the_documented_bytes() {
        let expected = format!("cubby-device-auth-v1\n{DEVICE}\n{CHALLENGE}");
        assert_eq!(challenge_message(DEVICE, CHALLENGE), expected.as_bytes());
        assert_eq!(challenge_message("a", "b"), b"cubby-device-auth-v1\na\nb");
    }

    #[test]
    fn a_signed_challenge_verifies() -> Result<(), ClientError> {
        let key = DeviceKey::generate()?;
        let signature = key.sign_challenge(DEVICE, CHALLENGE);
        assert_eq!(signature.len(), 128);
        assert!(signature.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        let public = key.public_key_hex();
        assert_eq!(public.len(), 64);
        assert!(is_valid_public_key(&public));
        assert!(verify_challenge(&public, DEVICE, CHALLENGE, &signature));
        // Hex is hex: the server need not care about case.
        assert!(verify_challenge(&public.to_uppercase(), DEVICE, CHALLENGE, &signature.to_uppercase()));
        Ok(())
    }

    #[test]
    fn a_signature_for_another_device_challenge_or_key_fails() -> Result<(), ClientError> {
        let key = DeviceKey::generate()?;
        let other_key = DeviceKey::generate()?;
        let signature = key.sign_challenge(DEVICE, CHALLENGE);
        let public = key.public_key_hex();
        assert!(!verify_challenge(&public, OTHER_DEVICE, CHALLENGE, &signature));
        assert!(!verify_challenge(&public, DEVICE, OTHER_CHALLENGE, &signature));
        assert!(!verify_challenge(&other_key.public_key_hex(), DEVICE, CHALLENGE, &signature));
        assert!(!verify_challenge(&public, DEVICE, CHALLENGE, &other_key.sign_challenge(DEVICE, CHALLENGE)));
        // The same bytes with the separator moved: refused, as parts never hold a newline.
        assert!(!verify_challenge(&public, &format!("{DEVICE}\n9b"), &CHALLENGE[2..], &signature));
        Ok(())
    }

    #[test]
    fn malformed_keys_and_signatures_fail() -> Result<(), ClientError> {
        let key = DeviceKey::generate()?;
        let public = key.public_key_hex();
        let signature = key.sign_challenge(DEVICE, CHALLENGE);
        for bad_key in ["", "zz", &public[..62], &format!("{public}00"), &format!("{}zz", &public[..62])] {
            assert!(!verify_challenge(bad_key, DEVICE, CHALLENGE, &signature), "{bad_key}");
            assert!(!is_valid_public_key(bad_key), "{bad_key}");
        }
        let (short, long, not_hex) =
            (&signature[..126], format!("{signature}00"), format!("{}g0", &signature[..126]));
        for bad_signature in ["", "zz", short, &long, &not_hex] {
            assert!(!verify_challenge(&public, DEVICE, CHALLENGE, bad_signature), "{bad_signature}");
        }
        // A flipped bit anywhere in the signature fails.
        let mut bytes = hex::decode(&signature).map_err(|_| ClientError::Malformed("test".into()))?;
        for i in [0, 31, 32, 63] {
            bytes[i] ^= 1;
            assert!(!verify_challenge(&public, DEVICE, CHALLENGE, &hex::encode(&bytes)));
            bytes[i] ^= 1;
        }
        // The identity point is of small order (a weak key): refused outright.
        let identity = format!("01{}", "00".repeat(31));
        assert!(!is_valid_public_key(&identity));
        assert!(!verify_challenge(&identity, DEVICE, CHALLENGE, &signature));
        Ok(())
    }

    #[test]
    fn a_stored_key_comes_back_the_same() -> Result<(), ClientError> {
        let key = DeviceKey::generate()?;
        let restored = DeviceKey::from_secret_bytes(key.secret_bytes());
        assert_eq!(restored.public_key_hex(), key.public_key_hex());
        // Ed25519 signatures are deterministic.
        assert_eq!(restored.sign_challenge(DEVICE, CHALLENGE), key.sign_challenge(DEVICE, CHALLENGE));
        assert_ne!(DeviceKey::generate()?.public_key_hex(), key.public_key_hex());
        Ok(())
    }

    #[test]
    fn keys_are_standard_ed25519() {
        // RFC 8032 section 7.1, test 1: the server and any other implementation agree.
        let mut secret = [0u8; 32];
        assert!(
            hex::decode_to_slice("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", &mut secret)
                .is_ok()
        );
        let key = DeviceKey::from_secret_bytes(secret);
        assert_eq!(key.public_key_hex(), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    }

    #[test]
    fn debug_shows_the_public_key_only() -> Result<(), ClientError> {
        let key = DeviceKey::from_secret_bytes([7; 32]);
        let shown = format!("{key:?} {key:#?}");
        assert!(shown.contains(&key.public_key_hex()));
        assert!(!shown.contains(&hex::encode([7u8; 32])));
        assert!(!shown.contains("7, 7"));

        let key = DeviceKey::generate()?;
        let shown = format!("{key:?} {key:#?}");
        assert!(!shown.contains(&hex::encode(key.secret_bytes())));
        assert!(!shown.to_lowercase().contains(&hex::encode(key.secret_bytes())[..16]));
        Ok(())
    }
}
