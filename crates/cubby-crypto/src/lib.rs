//! Data-at-rest cryptography for the Cubby server.
//!
//! The key hierarchy, from the top:
//! - the **master key** lives only in the key directory (or a secrets manager), never in
//!   the database; by HKDF it yields the key-encryption key that wraps every data key;
//! - **data keys** are random, stored in the database only wrapped by the master key:
//!   one system key (from which, by HKDF, the blind-index and audit-chain keys come)
//!   and one per family. Deleting a family's wrapped key shreds all of its sealed data;
//! - **sealed fields** are XChaCha20-Poly1305 ciphertexts bound by associated data to their
//!   table, column and row, so a ciphertext moved to another row no longer opens;
//! - **blind indexes** are HMAC-SHA-256 of a normalised value, for equality lookups.
//! - **passwords** are Argon2id hashes, salted per hash and peppered with a key from the
//!   key directory that is not the master key (see [`key_files::KeyDir::password_pepper`]).
//!
//! Every primitive comes from RustCrypto; this crate only composes them.

mod aead_key;
pub mod audit_chain;
pub mod blind_index;
pub mod content_signature;
pub mod device_signature;
mod error;
pub mod key_files;
pub mod keyring;
pub mod password;
mod secret;
pub mod token;

pub use aead_key::{DataKey, FieldContext};
pub use audit_chain::{AuditChainKey, ChainMac};
pub use blind_index::BlindIndexKey;
pub use error::CryptoError;
pub use keyring::{Keyring, MasterKey, MasterKeyId, SystemKey};
pub use password::{PasswordHasher, Verification};
pub use secret::{SecretKey, random_bytes};
pub use token::{new_token, token_hash};
