//! The Delivery Service's rule for commits (`delivery::mls_rules::apply_commit`): a commit
//! may add and remove members, and the committer may update its own path; nothing else.
//! An Update proposal (a member rekeying outside a commit of its own), a PreSharedKey
//! proposal (a secret the server cannot see injected into the key schedule) and a
//! GroupContextExtensions proposal (which could replace the server as the groups' external
//! sender, so that it could no longer remove a revoked toy) are refused.
//!
//! Real groups, made with openmls exactly as the Cubby SDK makes them
//! (cubby-client/src/messaging/mls.rs), registered with and followed by the server's own
//! rules: Alice's device creates the group, adds Bob's device (the server applies that
//! commit), Bob joins from the Welcome. Each case then builds its commit on that state.

use cubby_core::DeviceId;
use cubby_server::delivery::mls_rules::{
    self, AcceptedCommit, CIPHERSUITE, ExternalSender, Inbound, PublicState, Rejection, apply_commit, classify,
    register_group,
};
use openmls::prelude::*;
use openmls::schedule::PreSharedKeyId;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::{MemoryStorage, OpenMlsRustCrypto, RustCrypto};
use tls_codec::{Deserialize as _, Serialize as _, VLBytes};

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
type TestResult = Fallible<()>;

/// The server's external-sender seed in these tests.
const SERVER_SEED: [u8; 32] = [9; 32];

/// What a commit that breaks the rule is refused with.
const RULE: &str = "only Add and Remove proposals are accepted";

/// A device with its own MLS state, as the SDK keeps one.
struct Device {
    id: DeviceId,
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
}

impl Device {
    fn new() -> Fallible<Self> {
        let signer = SignatureKeyPair::new(SignatureScheme::ED25519)?;
        Ok(Self { id: DeviceId::random(), provider: OpenMlsRustCrypto::default(), signer })
    }

    fn credential(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(self.id.to_string().into_bytes()).into(),
            signature_key: self.signer.public().into(),
        }
    }

    fn key_package(&self) -> Fallible<KeyPackage> {
        let bundle = KeyPackage::builder().leaf_node_capabilities(capabilities()).build(
            CIPHERSUITE,
            &self.provider,
            &self.signer,
            self.credential(),
        )?;
        Ok(bundle.key_package().clone())
    }
}

fn capabilities() -> Capabilities {
    Capabilities::builder().extensions(vec![ExtensionType::LastResort]).build()
}

/// The external-senders extension naming `key` under `name`, as a group context extension.
fn external_senders(key: &[u8], name: &[u8]) -> Fallible<Extensions<GroupContext>> {
    let sender = openmls::prelude::ExternalSender::new(key.to_vec().into(), BasicCredential::new(name.to_vec()).into());
    Ok(Extensions::single(Extension::ExternalSenders(vec![sender]))?)
}

/// The SDK's group configuration (mls::create_config), naming this server.
fn create_config(server_key: &[u8]) -> Fallible<MlsGroupCreateConfig> {
    Ok(MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .padding_size(256)
        .max_past_epochs(5)
        .use_ratchet_tree_extension(true)
        .with_group_context_extensions(external_senders(server_key, mls_rules::EXTERNAL_SENDER_NAME)?)
        .capabilities(capabilities())
        .build())
}

/// The SDK's join configuration (mls::join_config).
fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .padding_size(256)
        .max_past_epochs(5)
        .use_ratchet_tree_extension(true)
        .build()
}

fn bytes(message: &MlsMessageOut) -> Fallible<Vec<u8>> {
    Ok(message.tls_serialize_detached()?)
}

/// A group of Alice's and Bob's devices at epoch 1, and the server's public state of it.
struct Scene {
    server_key: Vec<u8>,
    alice: Device,
    alice_group: MlsGroup,
    bob: Device,
    bob_group: MlsGroup,
    group_id: Vec<u8>,
    /// The server's public state at epoch 1 (what it stored after applying Alice's Add).
    state: Vec<u8>,
}

fn scene() -> Fallible<Scene> {
    let server_key = ExternalSender::from_seed(SERVER_SEED).public_key().to_vec();
    let (alice, bob) = (Device::new()?, Device::new()?);
    let mut alice_group = MlsGroup::new(&alice.provider, &alice.signer, &create_config(&server_key)?, alice.credential())?;
    let group_info = bytes(&alice_group.export_group_info(alice.provider.crypto(), &alice.signer, true)?)?;
    let tree = alice_group.export_ratchet_tree().tls_serialize_detached()?;
    let registered = register_group(&group_info, &tree, &server_key)?;
    let group_id = registered.group_id.clone();

    let (commit, welcome, _) = alice_group.add_members(&alice.provider, &alice.signer, &[bob.key_package()?])?;
    let accepted = submit(&group_id, &registered.state.encode()?, &commit, alice.id)?;
    alice_group.merge_pending_commit(&alice.provider)?;
    let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::tls_deserialize_exact(bytes(&welcome)?)?.extract() else {
        return Err("the Add produced no Welcome".into());
    };
    let bob_group = StagedWelcome::new_from_welcome(&bob.provider, &join_config(), welcome, None)?.into_group(&bob.provider)?;
    assert_eq!(accepted.new_epoch, 1);
    assert_eq!(bob_group.epoch().as_u64(), 1);
    Ok(Scene { server_key, alice, alice_group, bob, bob_group, group_id, state: accepted.state.encode()? })
}

/// The server's path for a commit sent by `sender`: classified from its bytes, then checked
/// against (and applied to) the public state `state`.
fn submit(group_id: &[u8], state: &[u8], commit: &MlsMessageOut, sender: DeviceId) -> Result<AcceptedCommit, Rejection> {
    let encoded = commit.tls_serialize_detached().map_err(|e| Rejection::Malformed(e.to_string()))?;
    let Inbound::Commit { message, .. } = classify(&encoded)? else {
        return Err(Rejection::Malformed("not classified as a commit".into()));
    };
    apply_commit(PublicState::decode(group_id, state)?, *message, sender)
}

/// Refused, for the rule (not because openmls could not verify the commit: that would
/// leave the rule untested).
fn refused_by_the_rule(result: Result<AcceptedCommit, Rejection>, what: &str) -> TestResult {
    match result {
        Err(Rejection::Refused(reason)) if reason == RULE => Ok(()),
        Err(other) => Err(format!("{what}: refused, but not by the rule: {other:?}").into()),
        Ok(accepted) => Err(format!("{what}: accepted (epoch {})", accepted.new_epoch).into()),
    }
}

/// The server's state `state` with a member's proposal (a public message) recorded in it,
/// as the server records its own external proposals: so that a commit carrying the
/// proposal by reference verifies, and only the rule stands in its way. (The server never
/// records a member's proposal: it refuses lone proposals, so such a commit would not even
/// verify; this isolates the rule.) Same encoding as `PublicState::encode`.
fn with_recorded_proposal(group_id: &[u8], state: &[u8], proposal: &MlsMessageOut) -> Fallible<Vec<u8>> {
    let storage = MemoryStorage::default();
    {
        let mut values = storage.values.write().map_err(|_| "lock")?;
        for (key, value) in Vec::<(VLBytes, VLBytes)>::tls_deserialize_exact(state)? {
            values.insert(key.into(), value.into());
        }
    }
    let mut group = PublicGroup::load(&storage, &GroupId::from_slice(group_id))?.ok_or("no group in the state")?;
    let message = MlsMessageIn::tls_deserialize_exact(bytes(proposal)?)?.try_into_protocol_message()?;
    let ProcessedMessageContent::ProposalMessage(queued) = group.process_message(&RustCrypto::default(), message)?.into_content()
    else {
        return Err("not a proposal".into());
    };
    group.add_proposal(&storage, *queued)?;
    let values = storage.values.read().map_err(|_| "lock")?;
    let mut entries: Vec<(VLBytes, VLBytes)> =
        values.iter().map(|(k, v)| (VLBytes::new(k.clone()), VLBytes::new(v.clone()))).collect();
    entries.sort_by(|a, b| a.0.as_slice().cmp(b.0.as_slice()));
    Ok(entries.tls_serialize_detached()?)
}

/// Alice's commit adding a new device, leaving any pending proposal out.
fn add_commit(scene: &mut Scene) -> Fallible<(MlsMessageOut, DeviceId)> {
    let carol = Device::new()?;
    let (alice, group) = (&scene.alice, &mut scene.alice_group);
    let bundle = group
        .commit_builder()
        .consume_proposal_store(false)
        .propose_adds([carol.key_package()?])
        .load_psks(alice.provider.storage())?
        .build(alice.provider.rand(), alice.provider.crypto(), &alice.signer, |_| true)?
        .stage_commit(&alice.provider)?;
    Ok((bundle.into_commit(), carol.id))
}

fn assert_accepted_add(result: Result<AcceptedCommit, Rejection>, added: DeviceId) -> TestResult {
    let accepted = result.map_err(|e| format!("a plain Add was refused: {e:?}"))?;
    assert_eq!(accepted.new_epoch, 2);
    assert_eq!(accepted.added.iter().map(|m| m.device).collect::<Vec<_>>(), [added]);
    assert_eq!(accepted.members_after.len(), 3);
    Ok(())
}

/// The control: on the state every other case starts from, a plain Add is accepted.
#[test]
fn a_plain_add_commit_is_accepted() -> TestResult {
    let mut scene = scene()?;
    let (commit, carol) = add_commit(&mut scene)?;
    assert_accepted_add(submit(&scene.group_id, &scene.state, &commit, scene.alice.id), carol)
}

/// A commit with no proposal, only the committer's own update path (a self-update, the
/// way a device refreshes its keys), is what the rule allows besides Add and Remove.
#[test]
fn an_empty_commit_updating_the_committers_own_path_is_accepted() -> TestResult {
    let mut scene = scene()?;
    let (alice, group) = (&scene.alice, &mut scene.alice_group);
    let bundle = group.self_update(&alice.provider, &alice.signer, LeafNodeParameters::default())?;
    let accepted = submit(&scene.group_id, &scene.state, bundle.commit(), alice.id)
        .map_err(|e| format!("an empty commit with the committer's own path was refused: {e:?}"))?;
    assert_eq!(accepted.new_epoch, 2);
    assert!(accepted.added.is_empty());
    assert_eq!(accepted.members_after.len(), 2);
    // Under another member's name, the same commit is refused.
    assert!(matches!(submit(&scene.group_id, &scene.state, bundle.commit(), scene.bob.id), Err(Rejection::Refused(_))));
    Ok(())
}

/// Bob proposes to update his leaf; Alice commits his proposal (by reference: openmls
/// offers no way to put an Update in a commit by value, and a committer's own Update is
/// its update path).
#[test]
fn a_commit_with_an_update_proposal_is_refused() -> TestResult {
    let mut scene = scene()?;
    let (update, _) = scene.bob_group.propose_self_update(&scene.bob.provider, &scene.bob.signer, LeafNodeParameters::default())?;
    let inbound = MlsMessageIn::tls_deserialize_exact(bytes(&update)?)?.try_into_protocol_message()?;
    let processed = scene.alice_group.process_message(&scene.alice.provider, inbound)?;
    let ProcessedMessageContent::ProposalMessage(queued) = processed.into_content() else {
        return Err("Bob's update is not a proposal".into());
    };
    scene.alice_group.store_pending_proposal(scene.alice.provider.storage(), *queued)?;
    let (commit, _, _) = scene.alice_group.commit_to_pending_proposals(&scene.alice.provider, &scene.alice.signer)?;

    // Not vacuous: the commit carries Bob's Update, as Alice herself reads it.
    let staged = scene.alice_group.pending_commit().ok_or("no pending commit")?;
    assert_eq!(staged.update_proposals().count(), 1, "the commit carries no Update");

    // As the server is, it never saw Bob's proposal: the commit does not even verify.
    let as_is = submit(&scene.group_id, &scene.state, &commit, scene.alice.id);
    assert!(matches!(as_is, Err(Rejection::Refused(_))), "{:?}", as_is.map(|a| a.new_epoch));
    // Had it recorded the proposal, the rule refuses the commit…
    let recorded = with_recorded_proposal(&scene.group_id, &scene.state, &update)?;
    refused_by_the_rule(submit(&scene.group_id, &recorded, &commit, scene.alice.id), "a commit with an Update")?;
    // …while a plain Add on that same state is accepted.
    scene.alice_group.clear_pending_commit(scene.alice.provider.storage())?;
    let (add, carol) = add_commit(&mut scene)?;
    assert_accepted_add(submit(&scene.group_id, &recorded, &add, scene.alice.id), carol)
}

/// Alice tries to replace the server as the group's external sender with a key of her own
/// (the server could then no longer remove a revoked toy), and, separately, to slip the
/// same change in beside an Add; and a GroupContextExtensions proposal that changes
/// nothing at all is refused as well: the rule is about the kind of proposal.
#[test]
fn a_commit_with_a_group_context_extensions_proposal_is_refused() -> TestResult {
    let mut scene = scene()?;
    let own_key = scene.alice.signer.public().to_vec();
    let cases = [
        ("replacing the external sender", external_senders(&own_key, b"alice")?, false),
        ("replacing the external sender beside an Add", external_senders(&own_key, b"alice")?, true),
        (
            "the same extensions again",
            external_senders(&scene.server_key, mls_rules::EXTERNAL_SENDER_NAME)?,
            false,
        ),
    ];
    for (what, extensions, with_add) in cases {
        let (alice, group) = (&scene.alice, &mut scene.alice_group);
        let builder = group.commit_builder().propose_group_context_extensions(extensions)?;
        let builder = if with_add { builder.propose_adds([Device::new()?.key_package()?]) } else { builder };
        let bundle = builder
            .load_psks(alice.provider.storage())?
            .build(alice.provider.rand(), alice.provider.crypto(), &alice.signer, |_| true)?
            .stage_commit(&alice.provider)?;
        let staged = group.pending_commit().ok_or("no pending commit")?;
        let carried = staged.queued_proposals().filter(|p| matches!(p.proposal(), Proposal::GroupContextExtensions(_))).count();
        assert_eq!(carried, 1, "{what}: the commit carries no GroupContextExtensions proposal");
        refused_by_the_rule(submit(&scene.group_id, &scene.state, bundle.commit(), alice.id), what)?;
        group.clear_pending_commit(alice.provider.storage())?;
    }
    let (add, carol) = add_commit(&mut scene)?;
    assert_accepted_add(submit(&scene.group_id, &scene.state, &add, scene.alice.id), carol)
}

/// Alice injects an external pre-shared key (one she holds; the server cannot know it)
/// into the key schedule by a PreSharedKey proposal in her commit.
#[test]
fn a_commit_with_a_pre_shared_key_proposal_is_refused() -> TestResult {
    let mut scene = scene()?;
    let (alice, group) = (&scene.alice, &mut scene.alice_group);
    let psk = PreSharedKeyId::external(b"a key of Alice's".to_vec(), vec![7; CIPHERSUITE.hash_length()]);
    psk.store(&alice.provider, &[42; 32])?;
    let bundle = group
        .commit_builder()
        .add_proposal(Proposal::PreSharedKey(Box::new(PreSharedKeyProposal::new(psk))))
        .load_psks(alice.provider.storage())?
        .build(alice.provider.rand(), alice.provider.crypto(), &alice.signer, |_| true)?
        .stage_commit(&alice.provider)?;
    assert_eq!(group.pending_commit().ok_or("no pending commit")?.psk_proposals().count(), 1, "the commit carries no PSK");
    refused_by_the_rule(submit(&scene.group_id, &scene.state, bundle.commit(), alice.id), "a commit with a PSK")?;
    group.clear_pending_commit(alice.provider.storage())?;
    let (add, carol) = add_commit(&mut scene)?;
    assert_accepted_add(submit(&scene.group_id, &scene.state, &add, scene.alice.id), carol)
}
