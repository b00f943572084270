//! How Cubby uses MLS (RFC 9420, via openmls): one ciphersuite, the device's paired Ed25519
//! key as its MLS signature key and its device id as its credential (so every member can
//! check that a member is that device), handshakes as public messages (the server checks
//! them), padded application messages, and past epochs kept for devices that were offline.

use openmls::prelude::*;
use tls_codec::{Deserialize as _, Serialize as _};
use openmls_basic_credential::SignatureKeyPair;

use crate::{ClientError, DeviceKey};

pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
/// Application messages are padded to a multiple of this many bytes, so that their length
/// says little about their content ("ok" and "I'm at grandma's" look alike).
pub const PADDING: usize = 256;
/// Epochs whose secrets are kept: a toy offline while the group changed can still read
/// what was sent before those changes. Matches the server's acceptance window.
pub const MAX_PAST_EPOCHS: usize = 5;
/// Quiet hours deliver a guardian's urgent message before the ones held back, so a toy
/// must read messages older than the newest it has seen: this many per sender.
pub const OUT_OF_ORDER_TOLERANCE: u32 = 1000;
/// How far ahead of the last message a sender's next one may be (messages that expired
/// or were refused leave gaps).
pub const MAXIMUM_FORWARD_DISTANCE: u32 = 10_000;

fn sender_ratchet() -> SenderRatchetConfiguration {
    SenderRatchetConfiguration::new(OUT_OF_ORDER_TOLERANCE, MAXIMUM_FORWARD_DISTANCE)
}

/// The credential name of the server as the groups' external sender.
pub const EXTERNAL_SENDER_NAME: &[u8] = b"cubby-delivery-service";

pub fn mls_error(error: impl std::fmt::Display) -> ClientError {
    ClientError::Mls(error.to_string())
}

/// The device's MLS signer: the same Ed25519 key it paired with.
pub fn signer(key: &DeviceKey) -> SignatureKeyPair {
    let secret = zeroize::Zeroizing::new(key.secret_bytes());
    SignatureKeyPair::from_raw(SignatureScheme::ED25519, secret.to_vec(), key.public_key_bytes().to_vec())
}

pub fn credential(device_id: &str, signer: &SignatureKeyPair) -> CredentialWithKey {
    CredentialWithKey {
        credential: BasicCredential::new(device_id.as_bytes().to_vec()).into(),
        signature_key: signer.public().into(),
    }
}

/// What a Cubby device's leaf supports beyond the defaults: last-resort KeyPackages.
pub fn capabilities() -> Capabilities {
    Capabilities::builder().extensions(vec![ExtensionType::LastResort]).build()
}

pub fn create_config(external_sender: &[u8]) -> Result<MlsGroupCreateConfig, ClientError> {
    let server = ExternalSender::new(external_sender.to_vec().into(), BasicCredential::new(EXTERNAL_SENDER_NAME.to_vec()).into());
    let extensions = Extensions::single(Extension::ExternalSenders(vec![server])).map_err(mls_error)?;
    Ok(MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .padding_size(PADDING)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .use_ratchet_tree_extension(true)
        .sender_ratchet_configuration(sender_ratchet())
        .with_group_context_extensions(extensions)
        .capabilities(capabilities())
        .build())
}

pub fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .padding_size(PADDING)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .use_ratchet_tree_extension(true)
        .sender_ratchet_configuration(sender_ratchet())
        .build()
}

pub fn serialize(message: &MlsMessageOut) -> Result<Vec<u8>, ClientError> {
    message.tls_serialize_detached().map_err(mls_error)
}

pub fn deserialize(bytes: &[u8]) -> Result<MlsMessageBodyIn, ClientError> {
    Ok(MlsMessageIn::tls_deserialize_exact(bytes).map_err(mls_error)?.extract())
}
