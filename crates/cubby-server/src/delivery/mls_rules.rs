//! What the Delivery Service knows of MLS, and no more: it decodes messages, follows each
//! group's public state (ratchet tree, group context) with openmls' `PublicGroup`, checks
//! every handshake message against it, and signs external Remove proposals as the groups'
//! external sender. It never holds a group secret; application messages are only routed.

use cubby_core::DeviceId;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::{MemoryStorage, OpenMlsRustCrypto, RustCrypto};
use tls_codec::{Deserialize as _, Serialize as _, VLBytes};

/// The one ciphersuite Cubby speaks (X25519, AES-128-GCM, SHA-256, Ed25519: the device keys).
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Why a message was refused. Each maps to one API error code.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("not a valid MLS message: {0}")]
    Malformed(String),
    #[error("{0}")]
    Refused(String),
    #[error("the message is for epoch {sent}, but the group is at epoch {current}")]
    StaleEpoch { sent: u64, current: u64 },
}

fn malformed(what: impl std::fmt::Display) -> Rejection {
    Rejection::Malformed(what.to_string())
}

fn refused(what: impl Into<String>) -> Rejection {
    Rejection::Refused(what.into())
}

/// A member as its MLS credential names it: the device id, and the Ed25519 key that must be
/// the one the device paired with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafDevice {
    pub device: DeviceId,
    pub signature_key: Vec<u8>,
}

fn leaf_device(credential: &Credential, signature_key: &[u8]) -> Result<LeafDevice, Rejection> {
    let basic = BasicCredential::try_from(credential.clone()).map_err(|_| refused("only basic credentials are accepted"))?;
    let device = std::str::from_utf8(basic.identity())
        .ok()
        .and_then(|text| text.parse::<DeviceId>().ok())
        .ok_or_else(|| refused("a credential's identity must be a device id"))?;
    Ok(LeafDevice { device, signature_key: signature_key.to_vec() })
}

/// A KeyPackage a device uploaded, verified (signature, ciphersuite, lifetime).
pub struct CheckedKeyPackage {
    pub owner: LeafDevice,
    pub last_resort: bool,
}

pub fn check_key_package(bytes: &[u8]) -> Result<CheckedKeyPackage, Rejection> {
    let message = MlsMessageIn::tls_deserialize_exact(bytes).map_err(malformed)?;
    let package = match message.extract() {
        MlsMessageBodyIn::KeyPackage(package) => package,
        _ => return Err(malformed("expected a KeyPackage")),
    };
    let package = package.validate(&RustCrypto::default(), ProtocolVersion::Mls10).map_err(malformed)?;
    if package.ciphersuite() != CIPHERSUITE {
        return Err(refused("the KeyPackage uses another ciphersuite"));
    }
    let leaf = package.leaf_node();
    Ok(CheckedKeyPackage {
        owner: leaf_device(leaf.credential(), leaf.signature_key().as_slice())?,
        last_resort: package.last_resort(),
    })
}

/// The public state of one group: what `PublicGroup` keeps in its storage provider,
/// serialised for the database.
pub struct PublicState {
    storage: MemoryStorage,
    group_id: GroupId,
}

impl PublicState {
    pub fn decode(group_id: &[u8], bytes: &[u8]) -> Result<Self, Rejection> {
        let entries = Vec::<(VLBytes, VLBytes)>::tls_deserialize_exact(bytes).map_err(malformed)?;
        let storage = MemoryStorage::default();
        {
            let mut values = storage.values.write().map_err(|_| refused("state lock poisoned"))?;
            for (key, value) in entries {
                values.insert(key.into(), value.into());
            }
        }
        Ok(Self { storage, group_id: GroupId::from_slice(group_id) })
    }

    pub fn encode(&self) -> Result<Vec<u8>, Rejection> {
        let values = self.storage.values.read().map_err(|_| refused("state lock poisoned"))?;
        let mut entries: Vec<(VLBytes, VLBytes)> =
            values.iter().map(|(k, v)| (VLBytes::new(k.clone()), VLBytes::new(v.clone()))).collect();
        entries.sort_by(|a, b| a.0.as_slice().cmp(b.0.as_slice()));
        entries.tls_serialize_detached().map_err(malformed)
    }

    /// The devices the group's ratchet tree holds.
    pub fn member_devices(&self) -> Result<Vec<DeviceId>, Rejection> {
        Ok(members(&self.load()?)?.into_iter().map(|(_, m)| m.device).collect())
    }

    fn load(&self) -> Result<PublicGroup, Rejection> {
        PublicGroup::load(&self.storage, &self.group_id)
            .map_err(|_| refused("the group's stored state is unreadable"))?
            .ok_or_else(|| refused("the group's stored state is missing"))
    }
}

fn members(group: &PublicGroup) -> Result<Vec<(LeafNodeIndex, LeafDevice)>, Rejection> {
    group.members().map(|m| Ok((m.index, leaf_device(&m.credential, &m.signature_key)?))).collect()
}

/// A group as its creator registered it.
pub struct RegisteredGroup {
    pub group_id: Vec<u8>,
    pub epoch: u64,
    pub members: Vec<LeafDevice>,
    pub state: PublicState,
}

/// Checks a new group's GroupInfo and ratchet tree (signed by the creator) and starts
/// following it. The group must name this server as its external sender, so that the
/// server can propose removals of revoked devices.
pub fn register_group(group_info: &[u8], ratchet_tree: &[u8], external_sender: &[u8]) -> Result<RegisteredGroup, Rejection> {
    let MlsMessageBodyIn::GroupInfo(group_info) = MlsMessageIn::tls_deserialize_exact(group_info).map_err(malformed)?.extract()
    else {
        return Err(malformed("expected a GroupInfo"));
    };
    let tree = RatchetTreeIn::tls_deserialize_exact(ratchet_tree).map_err(malformed)?;
    let storage = MemoryStorage::default();
    let (group, _) =
        PublicGroup::from_external(&RustCrypto::default(), &storage, tree, group_info, ProposalStore::new())
            .map_err(|e| refused(format!("the group does not verify: {e}")))?;
    if group.ciphersuite() != CIPHERSUITE {
        return Err(refused("the group uses another ciphersuite"));
    }
    let expected = server_as_external_sender(external_sender);
    let names_server = group
        .group_context()
        .extensions()
        .external_senders()
        .is_some_and(|senders| senders.first() == Some(&expected));
    if !names_server {
        return Err(refused("the group must name this server as its external sender (GET /api/v1/mls/external-sender)"));
    }
    let members = members(&group)?.into_iter().map(|(_, m)| m).collect();
    let group_id = group.group_id().as_slice().to_vec();
    Ok(RegisteredGroup {
        epoch: group.group_context().epoch().as_u64(),
        members,
        state: PublicState { storage, group_id: GroupId::from_slice(&group_id) },
        group_id,
    })
}

/// The credential name under which the server proposes: Cubby groups name exactly one
/// external sender, first in the extension, and it is this server.
pub const EXTERNAL_SENDER_NAME: &[u8] = b"cubby-delivery-service";

fn server_as_external_sender(public_key: &[u8]) -> openmls::prelude::ExternalSender {
    openmls::prelude::ExternalSender::new(
        public_key.to_vec().into(),
        BasicCredential::new(EXTERNAL_SENDER_NAME.to_vec()).into(),
    )
}

/// What a device sent, read from the message's public framing.
pub enum Inbound {
    /// Encrypted content: routed as is.
    Application { group_id: Vec<u8>, epoch: u64 },
    /// A commit sent as a public message, to be checked before it is accepted.
    Commit { group_id: Vec<u8>, epoch: u64, message: Box<ProtocolMessage> },
}

pub fn classify(bytes: &[u8]) -> Result<Inbound, Rejection> {
    let message = MlsMessageIn::tls_deserialize_exact(bytes).map_err(malformed)?;
    let message = message.try_into_protocol_message().map_err(|_| malformed("expected a public or private message"))?;
    let group_id = message.group_id().as_slice().to_vec();
    let epoch = message.epoch().as_u64();
    match (&message, message.content_type()) {
        (ProtocolMessage::PrivateMessage(_), ContentType::Application) => Ok(Inbound::Application { group_id, epoch }),
        (ProtocolMessage::PublicMessage(public), ContentType::Commit) => {
            if !tags_are_mac_sized(public) {
                return Err(malformed("a commit's confirmation and membership tags must be MACs of the ciphersuite's size"));
            }
            Ok(Inbound::Commit { group_id, epoch, message: Box::new(message) })
        }
        (ProtocolMessage::PrivateMessage(_), _) => {
            Err(refused("handshake messages must be public so that the server can check them"))
        }
        (ProtocolMessage::PublicMessage(_), ContentType::Proposal) => {
            Err(refused("send proposals inside a commit, not on their own"))
        }
        (ProtocolMessage::PublicMessage(_), _) => Err(refused("application messages must be encrypted")),
    }
}

/// Whether each tag a public message carries is a MAC of the ciphersuite's size (KDF.Nh,
/// RFC 9420, 6.1 and 6.2). The server cannot check the tags themselves (they are keyed
/// with the epoch's secrets, which only members hold), but no member makes a tag of another
/// length, so such a commit is refused here rather than passed on for its recipients to drop.
///
/// openmls keeps both tags' bytes private; its serde form, which it uses for its own
/// storage, shows their lengths. Were that form to change, the tags would read as absent
/// and every commit would be refused: the decoding tests would say so at once.
fn tags_are_mac_sized(public: &PublicMessageIn) -> bool {
    let Ok(fields) = serde_json::to_value(public) else { return false };
    let mac_length = |tag: &serde_json::Value| tag["mac_value"]["vec"].as_array().map(Vec::len);
    let expected = Some(CIPHERSUITE.hash_length());
    // Only a member's message carries a membership tag; whether the sender may commit at
    // all is `apply_commit`'s question.
    let membership = &fields["membership_tag"];
    mac_length(&fields["auth"]["confirmation_tag"]) == expected && (membership.is_null() || mac_length(membership) == expected)
}

/// Checks that a Welcome is one (it is encrypted to the new members; nothing more to see).
pub fn check_welcome(bytes: &[u8]) -> Result<(), Rejection> {
    match MlsMessageIn::tls_deserialize_exact(bytes).map_err(malformed)?.extract() {
        MlsMessageBodyIn::Welcome(_) => Ok(()),
        _ => Err(malformed("expected a Welcome")),
    }
}

/// A commit that verified against the group's public state.
pub struct AcceptedCommit {
    pub new_epoch: u64,
    /// Members before the commit (they all need it, the removed ones included).
    pub members_before: Vec<LeafDevice>,
    pub members_after: Vec<LeafDevice>,
    /// Devices the commit adds (they need the Welcome).
    pub added: Vec<LeafDevice>,
    pub state: PublicState,
}

/// Verifies a commit sent by `sender` (signature, epoch, proposals, path) and applies it
/// to the public state. Only Add and Remove proposals (and the committer's own path) are
/// allowed: nothing may change the group's extensions, and so its external sender.
pub fn apply_commit(state: PublicState, message: ProtocolMessage, sender: DeviceId) -> Result<AcceptedCommit, Rejection> {
    let mut group = state.load()?;
    let current = group.group_context().epoch().as_u64();
    if message.epoch().as_u64() != current {
        return Err(Rejection::StaleEpoch { sent: message.epoch().as_u64(), current });
    }
    let members_before = members(&group)?;
    let processed =
        group.process_message(&RustCrypto::default(), message).map_err(|e| refused(format!("the commit does not verify: {e}")))?;
    let Sender::Member(committer) = processed.sender() else {
        return Err(refused("only members may commit"));
    };
    let committer_device = members_before.iter().find(|(index, _)| index == committer).map(|(_, m)| m.device);
    if committer_device != Some(sender) {
        return Err(refused("a device may only commit under its own credential"));
    }
    let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
        return Err(malformed("expected a commit"));
    };
    let only_membership = staged
        .queued_proposals()
        .all(|p| matches!(p.proposal(), Proposal::Add(_) | Proposal::Remove(_)));
    if !only_membership {
        return Err(refused("only Add and Remove proposals are accepted"));
    }
    if let Some(leaf) = staged.update_path_leaf_node() {
        let own = leaf_device(leaf.credential(), leaf.signature_key().as_slice())?;
        if own.device != sender {
            return Err(refused("a device may only update its own leaf"));
        }
    }
    let added = staged
        .add_proposals()
        .map(|p| {
            let leaf = p.add_proposal().key_package().leaf_node();
            leaf_device(leaf.credential(), leaf.signature_key().as_slice())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let new_epoch = staged.group_context().epoch().as_u64();
    group.merge_commit(&state.storage, *staged).map_err(|e| refused(format!("the commit cannot be applied: {e}")))?;
    let members_after = members(&group)?.into_iter().map(|(_, m)| m).collect();
    Ok(AcceptedCommit {
        new_epoch,
        members_before: members_before.into_iter().map(|(_, m)| m).collect(),
        members_after,
        added,
        state,
    })
}

/// The server's identity as the groups' external sender (Ed25519, derived from its system
/// key so that every node of a cluster signs alike).
pub struct ExternalSender {
    keys: SignatureKeyPair,
}

impl ExternalSender {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes().to_vec();
        Self { keys: SignatureKeyPair::from_raw(SignatureScheme::ED25519, seed.to_vec(), public) }
    }

    pub fn public_key(&self) -> &[u8] {
        self.keys.public()
    }

    /// Proposes removing `device` from the group and records the proposal in the public
    /// state (so that the commit which carries it out verifies). None if the device is not
    /// a member any more.
    pub fn propose_removal(&self, state: &PublicState, device: DeviceId) -> Result<Option<Vec<u8>>, Rejection> {
        let group = state.load()?;
        let Some((leaf, _)) = members(&group)?.into_iter().find(|(_, m)| m.device == device) else {
            return Ok(None);
        };
        let proposal = ExternalProposal::new_remove::<OpenMlsRustCrypto>(
            leaf,
            group.group_id().clone(),
            group.group_context().epoch(),
            &self.keys,
            SenderExtensionIndex::new(0),
        )
        .map_err(|e| refused(format!("cannot propose the removal: {e}")))?;
        self.record(state, group, proposal).map(Some)
    }

    /// Proposes adding the device whose KeyPackage (an MLS message) is given: a supervised
    /// child's guardian, brought into the child's conversations.
    pub fn propose_addition(&self, state: &PublicState, key_package: &[u8]) -> Result<Vec<u8>, Rejection> {
        let group = state.load()?;
        let MlsMessageBodyIn::KeyPackage(package) = MlsMessageIn::tls_deserialize_exact(key_package).map_err(malformed)?.extract()
        else {
            return Err(malformed("expected a KeyPackage"));
        };
        let package = package.validate(&RustCrypto::default(), ProtocolVersion::Mls10).map_err(malformed)?;
        let proposal = ExternalProposal::new_add::<OpenMlsRustCrypto>(
            package,
            group.group_id().clone(),
            group.group_context().epoch(),
            &self.keys,
            SenderExtensionIndex::new(0),
        )
        .map_err(|e| refused(format!("cannot propose the addition: {e}")))?;
        self.record(state, group, proposal)
    }

    /// Processes the server's own proposal into the public state, so that the commit which
    /// carries it out verifies, and returns it serialised.
    fn record(&self, state: &PublicState, mut group: PublicGroup, proposal: MlsMessageOut) -> Result<Vec<u8>, Rejection> {
        let bytes = proposal.tls_serialize_detached().map_err(malformed)?;
        let inbound = MlsMessageIn::tls_deserialize_exact(&bytes)
            .map_err(malformed)?
            .try_into_protocol_message()
            .map_err(|_| malformed("own proposal"))?;
        let processed = group.process_message(&RustCrypto::default(), inbound).map_err(|e| refused(e.to_string()))?;
        let ProcessedMessageContent::ProposalMessage(queued) = processed.into_content() else {
            return Err(malformed("own proposal"));
        };
        group.add_proposal(&state.storage, *queued).map_err(|e| refused(format!("cannot store the proposal: {e}")))?;
        Ok(bytes)
    }
}
