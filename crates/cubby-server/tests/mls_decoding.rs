//! The Delivery Service's MLS decoding (`delivery::mls_rules`) against hostile input:
//! arbitrary bytes, and real MLS messages (made here with openmls exactly as the Cubby
//! SDK makes them) truncated, extended, bit-flipped, with length prefixes rewritten, or
//! spliced. Nothing panics; what is not a valid message is refused; what is valid is
//! accepted and classified as what it is.
//!
//! Deterministic sweeps cover every truncation of each real message and single-bit flips
//! all along it; property tests (proptest, modest case counts, no regression files
//! written) cover random combinations of mutations.

use std::sync::OnceLock;

use cubby_core::DeviceId;
use cubby_server::delivery::mls_rules::{
    self, CIPHERSUITE, ExternalSender, Inbound, PublicState, Rejection, apply_commit, check_key_package, check_welcome,
    classify, register_group,
};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use tls_codec::{Deserialize as _, Serialize as _};

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
type TestResult = Fallible<()>;

// ---------------------------------------------------------------------------------------
// Real messages, made as the SDK makes them (cubby-client/src/messaging/mls.rs)
// ---------------------------------------------------------------------------------------

/// One set of real messages: a group created by Alice's device (naming the server as its
/// external sender), Bob's device added to it by a commit, and what that produced.
struct Real {
    server_key: Vec<u8>,
    alice: DeviceId,
    bob: DeviceId,
    bob_signature_key: Vec<u8>,
    group_id: Vec<u8>,
    /// Bob's KeyPackage (an MLS message), and a last-resort one.
    key_package: Vec<u8>,
    last_resort_key_package: Vec<u8>,
    /// A KeyPackage whose credential does not name a device.
    anonymous_key_package: Vec<u8>,
    /// Alice's new group at epoch 0: GroupInfo (an MLS message) and ratchet tree.
    group_info: Vec<u8>,
    ratchet_tree: Vec<u8>,
    /// The server's public state of the group at epoch 0, as registered.
    state: Vec<u8>,
    /// The commit adding Bob (a public message, epoch 0) and its Welcome.
    commit: Vec<u8>,
    welcome: Vec<u8>,
    /// An encrypted application message at epoch 1.
    application: Vec<u8>,
    /// A proposal sent on its own (a public message, epoch 1).
    proposal: Vec<u8>,
}

fn out(message: &MlsMessageOut) -> Fallible<Vec<u8>> {
    Ok(message.tls_serialize_detached()?)
}

fn device_credential(identity: &str, signer: &SignatureKeyPair) -> CredentialWithKey {
    CredentialWithKey {
        credential: BasicCredential::new(identity.as_bytes().to_vec()).into(),
        signature_key: signer.public().into(),
    }
}

fn capabilities() -> Capabilities {
    Capabilities::builder().extensions(vec![ExtensionType::LastResort]).build()
}

fn key_package(
    provider: &OpenMlsRustCrypto,
    signer: &SignatureKeyPair,
    identity: &str,
    last_resort: bool,
) -> Fallible<KeyPackage> {
    let builder = KeyPackage::builder().leaf_node_capabilities(capabilities());
    let builder = if last_resort { builder.mark_as_last_resort() } else { builder };
    let bundle = builder.build(CIPHERSUITE, provider, signer, device_credential(identity, signer))?;
    Ok(bundle.key_package().clone())
}

fn make_real() -> Fallible<Real> {
    let server_key = ExternalSender::from_seed([9; 32]).public_key().to_vec();
    let (alice, bob) = (DeviceId::random(), DeviceId::random());
    let alice_provider = OpenMlsRustCrypto::default();
    let bob_provider = OpenMlsRustCrypto::default();
    let alice_signer = SignatureKeyPair::new(SignatureScheme::ED25519)?;
    let bob_signer = SignatureKeyPair::new(SignatureScheme::ED25519)?;

    let bob_package = key_package(&bob_provider, &bob_signer, &bob.to_string(), false)?;
    let key_package_bytes = out(&MlsMessageOut::from(bob_package.clone()))?;
    let last_resort = out(&MlsMessageOut::from(key_package(&bob_provider, &bob_signer, &bob.to_string(), true)?))?;
    let anonymous = out(&MlsMessageOut::from(key_package(&bob_provider, &bob_signer, "not a device id", false)?))?;

    let server_name = BasicCredential::new(mls_rules::EXTERNAL_SENDER_NAME.to_vec());
    let server = openmls::prelude::ExternalSender::new(server_key.clone().into(), server_name.into());
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .padding_size(256)
        .max_past_epochs(5)
        .use_ratchet_tree_extension(true)
        .with_group_context_extensions(Extensions::single(Extension::ExternalSenders(vec![server]))?)
        .capabilities(capabilities())
        .build();
    let alice_credential = device_credential(&alice.to_string(), &alice_signer);
    let mut group = MlsGroup::new(&alice_provider, &alice_signer, &config, alice_credential)?;
    let group_info = out(&group.export_group_info(alice_provider.crypto(), &alice_signer, true)?)?;
    let ratchet_tree = group.export_ratchet_tree().tls_serialize_detached()?;
    let state = register_group(&group_info, &ratchet_tree, &server_key)?.state.encode()?;

    let (commit, welcome, _) = group.add_members(&alice_provider, &alice_signer, &[bob_package])?;
    group.merge_pending_commit(&alice_provider)?;
    let application = out(&group.create_message(&alice_provider, &alice_signer, b"{\"hello\":\"bob\"}")?)?;
    let carol_signer = SignatureKeyPair::new(SignatureScheme::ED25519)?;
    let carol = key_package(&OpenMlsRustCrypto::default(), &carol_signer, &DeviceId::random().to_string(), false)?;
    let (proposal, _) = group.propose_add_member(&alice_provider, &alice_signer, &carol)?;

    Ok(Real {
        server_key,
        alice,
        bob,
        bob_signature_key: bob_signer.public().to_vec(),
        group_id: group.group_id().as_slice().to_vec(),
        key_package: key_package_bytes,
        last_resort_key_package: last_resort,
        anonymous_key_package: anonymous,
        group_info,
        ratchet_tree,
        state,
        commit: out(&commit)?,
        welcome: out(&welcome)?,
        application,
        proposal: out(&proposal)?,
    })
}

/// The real messages, made once per test binary.
fn real() -> Fallible<&'static Real> {
    static REAL: OnceLock<Result<Real, String>> = OnceLock::new();
    REAL.get_or_init(|| make_real().map_err(|e| e.to_string())).as_ref().map_err(|e| e.clone().into())
}

// ---------------------------------------------------------------------------------------
// What the server does with each kind of input
// ---------------------------------------------------------------------------------------

/// The whole server path for a commit from Alice's device: classified as a commit, then
/// verified against (and applied to) the group's public state at epoch 0.
fn server_accepts_commit(real: &Real, bytes: &[u8]) -> Fallible<bool> {
    let Ok(Inbound::Commit { message, .. }) = classify(bytes) else { return Ok(false) };
    let state = PublicState::decode(&real.group_id, &real.state)?;
    Ok(apply_commit(state, *message, real.alice).is_ok())
}

/// The byte ranges of a public commit's confirmation tag and membership tag: the last two
/// fields, each a 32-byte MAC (SHA-256) after a one-byte length.
fn commit_tags(commit: &[u8]) -> [std::ops::Range<usize>; 2] {
    let end = commit.len();
    [end - 65..end - 33, end - 32..end]
}

/// Whether `bytes` is the real commit with nothing but its tags changed.
fn only_tags_differ(real: &Real, bytes: &[u8]) -> bool {
    let tags = commit_tags(&real.commit);
    bytes.len() == real.commit.len()
        && bytes.iter().zip(&real.commit).enumerate().all(|(at, (a, b))| a == b || tags.iter().any(|t| t.contains(&at)))
}

/// Runs every decoder on `bytes` (any panic fails the test) and returns whether each
/// accepted it: (classify, check_key_package, check_welcome, register_group as GroupInfo,
/// register_group as ratchet tree, PublicState::decode).
fn every_decoder(real: &Real, bytes: &[u8]) -> [bool; 6] {
    // Decoding is canonical: what decodes re-encodes to the very same bytes, so no
    // message has a second encoding (a non-minimal length, say) that the server accepts.
    if let Ok(message) = MlsMessageIn::tls_deserialize_exact(bytes) {
        let encoded = message.tls_serialize_detached();
        let canonical = encoded.as_deref().ok() == Some(bytes);
        assert!(canonical, "an MLS message decoded from a non-canonical encoding: {}", hex::encode(bytes));
    }
    if let Ok(tree) = RatchetTreeIn::tls_deserialize_exact(bytes) {
        let encoded = tree.tls_serialize_detached();
        let canonical = encoded.as_deref().ok() == Some(bytes);
        assert!(canonical, "a ratchet tree decoded from a non-canonical encoding: {}", hex::encode(bytes));
    }
    let state_decodes = match PublicState::decode(&real.group_id, bytes) {
        Ok(state) => {
            // Whatever decodes re-encodes, canonically, and is useless as a group state.
            let encoded = state.encode();
            let canonical = encoded.as_ref().ok().and_then(|e| PublicState::decode(&real.group_id, e).ok()?.encode().ok());
            assert!(encoded.is_ok() && canonical.as_ref() == encoded.as_ref().ok(), "state encoding is not a fixed point");
            let commit = classify(&real.commit);
            if let Ok(Inbound::Commit { message, .. }) = commit {
                assert!(apply_commit(state, *message, real.alice).is_err() || bytes == real.state.as_slice());
            }
            true
        }
        Err(_) => false,
    };
    [
        classify(bytes).is_ok(),
        check_key_package(bytes).is_ok(),
        check_welcome(bytes).is_ok(),
        register_group(bytes, &real.ratchet_tree, &real.server_key).is_ok(),
        register_group(&real.group_info, bytes, &real.server_key).is_ok(),
        state_decodes,
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    KeyPackage,
    GroupInfo,
    RatchetTree,
    Commit,
    Welcome,
    Application,
    Proposal,
}

const KINDS: [Kind; 7] =
    [Kind::KeyPackage, Kind::GroupInfo, Kind::RatchetTree, Kind::Commit, Kind::Welcome, Kind::Application, Kind::Proposal];

fn bytes_of(real: &Real, kind: Kind) -> &[u8] {
    match kind {
        Kind::KeyPackage => &real.key_package,
        Kind::GroupInfo => &real.group_info,
        Kind::RatchetTree => &real.ratchet_tree,
        Kind::Commit => &real.commit,
        Kind::Welcome => &real.welcome,
        Kind::Application => &real.application,
        Kind::Proposal => &real.proposal,
    }
}

/// Whether the server accepts `bytes` as a `kind`, by the checks it runs on that kind.
/// Welcomes and application messages are encrypted to their recipients: the server can
/// only check their framing, so a mutation inside their ciphertext passes by design.
fn accepted_as(real: &Real, kind: Kind, bytes: &[u8]) -> Fallible<bool> {
    Ok(match kind {
        Kind::KeyPackage => check_key_package(bytes).is_ok(),
        Kind::GroupInfo => register_group(bytes, &real.ratchet_tree, &real.server_key).is_ok(),
        Kind::RatchetTree => register_group(&real.group_info, bytes, &real.server_key).is_ok(),
        Kind::Commit => server_accepts_commit(real, bytes)?,
        Kind::Welcome => check_welcome(bytes).is_ok(),
        Kind::Application => matches!(classify(bytes), Ok(Inbound::Application { .. })),
        // A proposal on its own is never accepted; mutated into a commit, it does not verify.
        Kind::Proposal => server_accepts_commit(real, bytes)?,
    })
}

/// The property a mutated `kind` must have, given it differs from the original.
fn check_mutant(real: &Real, kind: Kind, bytes: &[u8]) -> Result<(), TestCaseError> {
    let accepted = every_decoder(real, bytes);
    let framing_only = matches!(kind, Kind::Welcome | Kind::Application);
    if kind == Kind::Commit && only_tags_differ(real, bytes) {
        // The server cannot check a commit's confirmation and membership tags (MACs under
        // the epoch's secrets, which only members hold): such a commit passes the server,
        // and its recipients refuse it.
        prop_assert!(server_accepts_commit(real, bytes).map_err(|e| TestCaseError::fail(e.to_string()))?);
    } else if !framing_only {
        let as_kind = accepted_as(real, kind, bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!as_kind, "a mutated {kind:?} was accepted: {}", hex::encode(bytes));
    }
    // Nothing turns into a KeyPackage, a group, or a commit the server accepts.
    prop_assert!(!accepted[1], "{kind:?} mutated into a valid KeyPackage");
    prop_assert!(!accepted[3] && !accepted[4], "{kind:?} mutated into a valid group");
    if kind != Kind::Commit {
        prop_assert!(!server_accepts_commit(real, bytes).map_err(|e| TestCaseError::fail(e.to_string()))?);
    }
    // An encrypted message stays an encrypted application message or is refused: a flip
    // of its content type makes it an encrypted handshake, which is refused.
    if kind == Kind::Application {
        prop_assert!(!matches!(classify(bytes), Ok(Inbound::Commit { .. })), "an application message became a commit");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Valid inputs are accepted
// ---------------------------------------------------------------------------------------

/// Property: real messages made by the SDK's openmls configuration are accepted by the
/// server's checks and classified as what they are.
#[test]
fn real_messages_are_accepted_and_classified() -> TestResult {
    let real = real()?;
    let package = check_key_package(&real.key_package)?;
    assert_eq!(package.owner.device, real.bob);
    assert_eq!(package.owner.signature_key, real.bob_signature_key);
    assert!(!package.last_resort);
    assert!(check_key_package(&real.last_resort_key_package)?.last_resort);
    assert!(matches!(check_key_package(&real.anonymous_key_package), Err(Rejection::Refused(_))));

    let registered = register_group(&real.group_info, &real.ratchet_tree, &real.server_key)?;
    assert_eq!(registered.group_id, real.group_id);
    assert_eq!(registered.epoch, 0);
    assert_eq!(registered.members.iter().map(|m| m.device).collect::<Vec<_>>(), [real.alice]);
    let other_server = ExternalSender::from_seed([8; 32]);
    let elsewhere = register_group(&real.group_info, &real.ratchet_tree, other_server.public_key());
    assert!(matches!(elsewhere, Err(Rejection::Refused(_))), "a group naming another server is refused");

    let Inbound::Commit { group_id, epoch, message } = classify(&real.commit)? else {
        return Err("the commit is not classified as a commit".into());
    };
    assert_eq!((group_id.as_slice(), epoch), (real.group_id.as_slice(), 0));
    let accepted = apply_commit(PublicState::decode(&real.group_id, &real.state)?, *message, real.alice)?;
    assert_eq!(accepted.new_epoch, 1);
    assert_eq!(accepted.added.iter().map(|m| m.device).collect::<Vec<_>>(), [real.bob]);
    assert_eq!(accepted.members_after.len(), 2);
    // The same commit under another device's name is refused.
    let Inbound::Commit { message, .. } = classify(&real.commit)? else { return Err("not a commit".into()) };
    assert!(apply_commit(PublicState::decode(&real.group_id, &real.state)?, *message, real.bob).is_err());
    check_welcome(&real.welcome)?;
    let [confirmation, membership] = commit_tags(&real.commit);
    let tag_lengths = (real.commit[confirmation.start - 1], real.commit[membership.start - 1]);
    assert_eq!(tag_lengths, (32, 32), "the commit ends with its two tags");

    let Inbound::Application { group_id, epoch } = classify(&real.application)? else {
        return Err("the application message is not classified as one".into());
    };
    assert_eq!((group_id.as_slice(), epoch), (real.group_id.as_slice(), 1));
    assert!(matches!(classify(&real.proposal), Err(Rejection::Refused(_))), "a lone proposal is refused");

    // The stored state round-trips.
    assert_eq!(PublicState::decode(&real.group_id, &real.state)?.encode()?, real.state);
    Ok(())
}

/// A commit whose tags are re-cut to other lengths still decodes (the tags are the last
/// two fields, each a length and bytes), but no member makes a MAC that is not 32 bytes:
/// the server refuses it, though it cannot check the tags' values. CI once met the first
/// case below by chance, as a single-bit flip of the confirmation tag's length.
#[test]
fn commit_tags_of_another_length_are_refused() -> TestResult {
    let real = real()?;
    let [confirmation, membership] = commit_tags(&real.commit);
    // A 34-byte confirmation tag, then a 30-byte membership tag, in the same bytes.
    let mut longer_confirmation = real.commit.clone();
    longer_confirmation[confirmation.start - 1] = 34;
    longer_confirmation[membership.start + 1] = 30;
    // A 31-byte membership tag.
    let mut shorter_membership = real.commit[..real.commit.len() - 1].to_vec();
    shorter_membership[membership.start - 1] = 31;
    for (case, bytes) in [("34/30", &longer_confirmation), ("32/31", &shorter_membership)] {
        assert!(MlsMessageIn::tls_deserialize_exact(bytes.as_slice()).is_ok(), "{case}: the re-cut commit should decode");
        assert!(matches!(classify(bytes), Err(Rejection::Malformed(_))), "{case}: tags of another length were accepted");
        assert!(!server_accepts_commit(real, bytes)?, "{case}: the server applied it");
    }
    Ok(())
}

/// Property: each decoder refuses every other kind of real message (no type confusion),
/// and every decoder refuses the empty input.
#[test]
fn each_decoder_refuses_the_other_kinds() -> TestResult {
    let real = real()?;
    for kind in KINDS {
        let bytes = bytes_of(real, kind);
        let [classified, key_package, welcome, group_info, tree, _] = every_decoder(real, bytes);
        assert_eq!(classified, matches!(kind, Kind::Commit | Kind::Application), "classify on a {kind:?}");
        assert_eq!(key_package, kind == Kind::KeyPackage, "check_key_package on a {kind:?}");
        assert_eq!(welcome, kind == Kind::Welcome, "check_welcome on a {kind:?}");
        assert_eq!(group_info, kind == Kind::GroupInfo, "register_group (GroupInfo) on a {kind:?}");
        assert_eq!(tree, kind == Kind::RatchetTree, "register_group (tree) on a {kind:?}");
    }
    assert_eq!(every_decoder(real, &[]), [false, false, false, false, false, false]);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Deterministic sweeps
// ---------------------------------------------------------------------------------------

fn sweep(result: Result<(), TestCaseError>) -> TestResult {
    result.map_err(|e| e.to_string().into())
}

/// Property: every strict prefix of every real message, and every real message with
/// bytes appended, is refused by every decoder (messages are parsed exactly).
#[test]
fn every_truncation_and_extension_is_refused() -> TestResult {
    let real = real()?;
    for kind in KINDS {
        let bytes = bytes_of(real, kind);
        for end in 0..bytes.len() {
            let accepted = every_decoder(real, &bytes[..end]);
            assert_eq!(accepted[..5], [false; 5], "{kind:?} truncated to {end} of {} bytes was accepted", bytes.len());
        }
        for tail in [&[0u8][..], &[0xff], &[0, 0, 0, 0], bytes] {
            let extended = [bytes, tail].concat();
            let accepted = every_decoder(real, &extended);
            assert_eq!(accepted[..5], [false; 5], "{kind:?} with {} bytes appended was accepted", tail.len());
        }
    }
    Ok(())
}

/// The bits the sweep flips: every bit of the first and last bytes (the framing: version,
/// wire format, group id, epoch, sender, content type; the signature and tags), one bit
/// of every byte in between (which bit turns with the position).
fn bits_to_flip(len: usize) -> impl Iterator<Item = usize> {
    const EDGE: usize = 72;
    (0..len).flat_map(move |at| {
        let all = at < EDGE || at + EDGE >= len;
        (0..8).filter(move |bit| all || *bit == at % 8).map(move |bit| at * 8 + bit)
    })
}

/// Property: no single-bit flip of a KeyPackage, GroupInfo, ratchet tree, commit or lone
/// proposal is accepted (each is signed, or bound by a signed hash), except in a commit's
/// two MAC tags, which only members can check; no flip of an application message turns
/// it into a commit; no flip makes any decoder panic or decode a non-canonical encoding.
#[test]
fn single_bit_flips_are_refused() -> TestResult {
    let real = real()?;
    for kind in KINDS {
        let original = bytes_of(real, kind);
        for bit in bits_to_flip(original.len()) {
            let mut bytes = original.to_vec();
            bytes[bit / 8] ^= 1 << (bit % 8);
            let checked = check_mutant(real, kind, &bytes);
            sweep(checked.map_err(|e| TestCaseError::fail(format!("{kind:?}, bit {bit}: {e}"))))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------

/// An MLS variable-length integer (RFC 9420, 2.1.2): 1, 2 or 4 bytes, the top two bits
/// of the first byte giving the length.
fn varint_at(bytes: &[u8], at: usize) -> Option<(u32, usize)> {
    let first = *bytes.get(at)?;
    let width = match first >> 6 {
        0 => 1,
        1 => 2,
        2 => 4,
        _ => return None,
    };
    let raw = bytes.get(at..at + width)?;
    let value = raw.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) & !(0xC0u32 << (8 * (width - 1)));
    Some((value, width))
}

fn encode_varint(value: u32, width: usize) -> Vec<u8> {
    match width {
        1 => vec![(value & 0x3f) as u8],
        2 => (0x4000 | (value & 0x3fff) as u16).to_be_bytes().to_vec(),
        _ => (0x8000_0000 | (value & 0x3fff_ffff)).to_be_bytes().to_vec(),
    }
}

fn minimal_width(value: u32) -> usize {
    match value {
        0..=0x3f => 1,
        0x40..=0x3fff => 2,
        _ => 4,
    }
}

/// Positions that may hold a vector's length prefix: a canonical varint whose vector
/// fits in the message. (Some are not length prefixes; mutating them is mutating too.)
fn length_prefixes(bytes: &[u8]) -> Vec<usize> {
    (0..bytes.len())
        .filter(|at| {
            varint_at(bytes, *at).is_some_and(|(value, width)| {
                width == minimal_width(value) && at + width + value as usize <= bytes.len()
            })
        })
        .collect()
}

#[derive(Clone, Debug)]
enum LengthEdit {
    /// The length grows or shrinks by this much.
    Delta(i16),
    /// Any length at all.
    Value(u32),
    /// The same length in a longer, non-minimal encoding (RFC 9420 forbids it).
    Widen,
}

#[derive(Clone, Debug)]
enum Mutation {
    Truncate(Index),
    FlipBits(Vec<(Index, u8)>),
    SetByte(Index, u8),
    Length(Index, LengthEdit),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    /// Replaces a range with the same range of another real message.
    Splice(Kind, Index, usize),
}

fn length_edit() -> impl Strategy<Value = LengthEdit> {
    prop_oneof![
        (-64i16..=64).prop_filter("a change", |d| *d != 0).prop_map(LengthEdit::Delta),
        any::<u32>().prop_map(|v| LengthEdit::Value(v & 0x3fff_ffff)),
        Just(LengthEdit::Widen),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    proptest::sample::select(KINDS.to_vec())
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        proptest::collection::vec((any::<Index>(), 0u8..8), 1..=8).prop_map(Mutation::FlipBits),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        (any::<Index>(), length_edit()).prop_map(|(i, e)| Mutation::Length(i, e)),
        (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
        (kind(), any::<Index>(), 1usize..64).prop_map(|(k, i, n)| Mutation::Splice(k, i, n)),
    ]
}

fn mutate(real: &Real, original: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for mutation in mutations {
        if bytes.is_empty() {
            break;
        }
        match mutation {
            Mutation::Truncate(at) => bytes.truncate(at.index(bytes.len())),
            Mutation::FlipBits(flips) => {
                for (at, bit) in flips {
                    let at = at.index(bytes.len());
                    bytes[at] ^= 1 << bit;
                }
            }
            Mutation::SetByte(at, byte) => {
                let at = at.index(bytes.len());
                bytes[at] = *byte;
            }
            Mutation::Length(which, edit) => {
                let prefixes = length_prefixes(&bytes);
                if prefixes.is_empty() {
                    continue;
                }
                let at = prefixes[which.index(prefixes.len())];
                let Some((value, width)) = varint_at(&bytes, at) else { continue };
                let encoded = match edit {
                    LengthEdit::Delta(delta) => {
                        let value = (i64::from(value) + i64::from(*delta)).clamp(0, 0x3fff_ffff) as u32;
                        encode_varint(value, minimal_width(value))
                    }
                    LengthEdit::Value(value) => encode_varint(*value, minimal_width(*value)),
                    LengthEdit::Widen => encode_varint(value, if width == 1 { 2 } else { 4 }),
                };
                bytes.splice(at..at + width, encoded);
            }
            Mutation::Insert(at, inserted) => {
                let at = at.index(bytes.len() + 1);
                bytes.splice(at..at, inserted.iter().copied());
            }
            Mutation::Remove(at, count) => {
                let at = at.index(bytes.len());
                let end = (at + count).min(bytes.len());
                bytes.drain(at..end);
            }
            Mutation::Splice(kind, at, count) => {
                let donor = bytes_of(real, *kind);
                let at = at.index(bytes.len());
                let end = (at + count).min(bytes.len()).min(donor.len());
                if at < end {
                    bytes[at..end].copy_from_slice(&donor[at..end]);
                }
            }
        }
    }
    bytes
}

fn config(cases: u32) -> Config {
    // No regression files next to the sources: a failure prints its minimal case.
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Bytes that begin like an MLS message (version 1, a known wire format) so that the
/// decoders get past the first fields.
fn mls_shaped() -> impl Strategy<Value = Vec<u8>> {
    (1u8..=5, proptest::collection::vec(any::<u8>(), 0..512))
        .prop_map(|(wire_format, tail)| [&[0, 1, 0, wire_format][..], &tail].concat())
}

proptest! {
    #![proptest_config(config(512))]

    /// Property: arbitrary bytes never make a decoder panic and are never a valid
    /// KeyPackage, group or Welcome (the chance that random bytes are one is nil).
    #[test]
    fn arbitrary_bytes_are_refused(bytes in prop_oneof![proptest::collection::vec(any::<u8>(), 0..1024), mls_shaped()]) {
        let real = real().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let accepted = every_decoder(real, &bytes);
        prop_assert_eq!(&accepted[1..5], &[false; 4][..]);
        prop_assert!(!server_accepts_commit(real, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?);
        // The real state read under another group id does not verify the real commit.
        if bytes != real.group_id {
            let state = PublicState::decode(&bytes, &real.state).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let Ok(Inbound::Commit { message, .. }) = classify(&real.commit) else {
                return Err(TestCaseError::fail("the real commit is not a commit"));
            };
            prop_assert!(apply_commit(state, *message, real.alice).is_err());
        }
    }
}

proptest! {
    #![proptest_config(config(1024))]

    /// Property: a real message under one to four random mutations (truncation, bit
    /// flips, byte changes, length-prefix changes including non-minimal encodings,
    /// insertions, removals, splices from other real messages) never makes a decoder
    /// panic, and is refused wherever the server can check it: never accepted as a
    /// KeyPackage, a group or a commit; an encrypted message never becomes a commit.
    #[test]
    fn mutated_real_messages_are_refused(kind in kind(), mutations in proptest::collection::vec(mutation(), 1..=4)) {
        let real = real().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let original = bytes_of(real, kind);
        let bytes = mutate(real, original, &mutations);
        prop_assume!(bytes != original);
        check_mutant(real, kind, &bytes)?;
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Property: a length prefix written in more bytes than needed (the same value,
    /// non-minimal, as RFC 9420 forbids) never yields an accepted message: where the
    /// mutated bytes decode at all, they decode to another message (see `every_decoder`:
    /// decoding is canonical), never to the original in another encoding.
    #[test]
    fn non_minimal_lengths_are_refused(kind in kind(), which in any::<Index>()) {
        let real = real().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let original = bytes_of(real, kind);
        let bytes = mutate(real, original, &[Mutation::Length(which, LengthEdit::Widen)]);
        prop_assume!(bytes != original);
        check_mutant(real, kind, &bytes)?;
    }
}
