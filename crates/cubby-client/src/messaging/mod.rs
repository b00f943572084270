//! End-to-end-encrypted family messaging, the device side (MLS via openmls).
//!
//! A [`Messenger`] is one paired device's messaging: its MLS state in a local SQLite file
//! sealed with the device's storage key, conversations (MLS groups) it creates or is
//! invited to, text it sends (encrypted here, queued locally until the server has stored
//! it), and the events it receives over the live connection, each processed once even
//! when the server sends it again.

mod contacts;
mod envelope;
mod live;
mod local_store;
mod media;
mod mls;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use openmls::prelude::*;
use tls_codec::{Deserialize as _, Serialize as _};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

pub use contacts::Contact;
pub use envelope::{Body, Envelope, MediaKey, MediaRef};
pub use media::{MediaKind, MediaUpload, ciphertext_len};
use local_store::LocalStore;
use mls::{deserialize, mls_error, serialize};

use crate::{ClientError, CubbyClient, DeviceKey, DeviceSession};

/// KeyPackages a device keeps on the server; it tops up when told it runs low.
const KEY_PACKAGE_BATCH: usize = 20;

/// A conversation's id: its MLS group id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConversationId(pub Vec<u8>);

impl ConversationId {
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.0)
    }

    pub fn from_base64(text: &str) -> Option<Self> {
        BASE64.decode(text).ok().map(Self)
    }
}

/// What the device learns from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A message from another member, decrypted.
    Message { conversation: ConversationId, sender: String, envelope: Envelope },
    /// This device was added to a conversation.
    Joined { conversation: ConversationId },
    /// A conversation's members changed (devices in it, after the change).
    MembersChanged { conversation: ConversationId, members: Vec<String> },
    /// This device was removed from a conversation.
    Removed { conversation: ConversationId },
    /// A message this device cannot read (sent before it joined, or after it left, or a
    /// copy of one it already read).
    Unreadable { conversation: ConversationId, reason: String },
    /// The family asked this device to erase its data (a lost toy).
    WipeRequested,
}

/// A conversation as this device sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    pub id: ConversationId,
    pub epoch: u64,
    /// Device ids of the members.
    pub members: Vec<String>,
}

struct State {
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    local: LocalStore,
}

/// One device's end-to-end-encrypted messaging.
pub struct Messenger {
    api: CubbyClient,
    key: DeviceKey,
    device_id: String,
    session: Mutex<DeviceSession>,
    state: Mutex<State>,
}

#[derive(Serialize)]
struct SendBody {
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    welcome: Option<String>,
    urgent: bool,
}

#[derive(Deserialize)]
struct Sent {
    #[allow(dead_code)]
    ids: Vec<i64>,
}

/// Processed message ids are remembered longer than the server keeps any message.
const FORGET_PROCESSED_AFTER_MS: i64 = 60 * 24 * 3600 * 1000;
const CONVERSATIONS: &str = "conversations";
const KEEP_HISTORY: &str = "keep_history";

impl Messenger {
    /// Opens (or creates) the device's messaging state in the file at `path`, sealed with
    /// `storage_key` (keep it in the platform's keystore), and signs in.
    pub async fn open(
        path: &Path,
        storage_key: [u8; 32],
        api: CubbyClient,
        key: DeviceKey,
        device_id: &str,
    ) -> Result<Self, ClientError> {
        let local = LocalStore::open(path, storage_key).await?;
        let provider = OpenMlsRustCrypto::default();
        {
            let mut values = provider.storage().values.write().map_err(|_| ClientError::Local("lock".into()))?;
            values.extend(local.mls_state().iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let session = api.authenticate(&key, device_id).await?;
        let signer = mls::signer(&key);
        Ok(Self {
            api,
            device_id: device_id.to_owned(),
            key,
            session: Mutex::new(session),
            state: Mutex::new(State { provider, signer, local }),
        })
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// An authenticated call; signs in again once if the access token expired.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(dyn crate::pairing::erased::Json + Sync)>,
        what: &str,
    ) -> Result<T, ClientError> {
        let mut session = self.session.lock().await;
        match self.api.call(method.clone(), path, &session, body, what).await {
            Err(error) if error.is_unauthenticated() => {
                *session = self.api.authenticate(&self.key, &self.device_id).await?;
                self.api.call(method, path, &session, body, what).await
            }
            other => other,
        }
    }

    pub(crate) async fn session(&self) -> Result<DeviceSession, ClientError> {
        let mut session = self.session.lock().await;
        // A fresh token for a long-lived connection.
        *session = self.api.authenticate(&self.key, &self.device_id).await?;
        Ok(session.clone())
    }

    pub(crate) fn api(&self) -> &CubbyClient {
        &self.api
    }

    /// Uploads KeyPackages so that others can add this device to conversations: a batch of
    /// single-use ones, plus a last-resort one the first time. Returns how many the server holds.
    pub async fn publish_key_packages(&self) -> Result<i64, ClientError> {
        #[derive(Serialize)]
        struct Upload {
            key_packages: Vec<String>,
        }
        #[derive(Deserialize)]
        struct Count {
            available: i64,
        }
        let mut state = self.state.lock().await;
        let first = state.local.setting("last_resort_published").await?.is_none();
        let credential = mls::credential(&self.device_id, &state.signer);
        let mut packages = Vec::with_capacity(KEY_PACKAGE_BATCH + 1);
        for n in 0..KEY_PACKAGE_BATCH + usize::from(first) {
            let builder = KeyPackage::builder().leaf_node_capabilities(mls::capabilities());
            let builder = if n == KEY_PACKAGE_BATCH { builder.mark_as_last_resort() } else { builder };
            let bundle = builder.build(mls::CIPHERSUITE, &state.provider, &state.signer, credential.clone()).map_err(mls_error)?;
            packages.push(BASE64.encode(serialize(&MlsMessageOut::from(bundle.key_package().clone()))?));
        }
        // The private halves are stored before the public ones are published.
        let mut tx = state.local.begin().await?;
        let current = snapshot(&state.provider)?;
        state.local.write_mls_state(&mut tx, &current).await?;
        state.local.set_setting(&mut tx, "last_resort_published", b"1").await?;
        tx.commit().await.map_err(|e| ClientError::Local(e.to_string()))?;
        state.local.written(current);
        drop(state);
        let count: Count = self
            .call(Method::POST, "/api/v1/key-packages", Some(&Upload { key_packages: packages }), "the KeyPackage count")
            .await?;
        Ok(count.available)
    }

    /// Starts a conversation with this device as its only member; invite others next.
    pub async fn create_conversation(&self) -> Result<ConversationId, ClientError> {
        #[derive(Deserialize)]
        struct Key {
            public_key: String,
        }
        #[derive(Serialize)]
        struct NewGroup {
            group_info: String,
            ratchet_tree: String,
        }
        #[derive(Deserialize)]
        struct Created {
            #[allow(dead_code)]
            group_id: String,
        }
        let Key { public_key } = self.call(Method::GET, "/api/v1/mls/external-sender", None, "the server key").await?;
        let server_key = BASE64.decode(public_key).map_err(|_| ClientError::Malformed("the server key".into()))?;
        let mut state = self.state.lock().await;
        let credential = mls::credential(&self.device_id, &state.signer);
        let group = MlsGroup::new(&state.provider, &state.signer, &mls::create_config(&server_key)?, credential)
            .map_err(mls_error)?;
        let group_info = group.export_group_info(state.provider.crypto(), &state.signer, true).map_err(mls_error)?;
        let body = NewGroup {
            group_info: BASE64.encode(serialize(&group_info)?),
            ratchet_tree: BASE64.encode(group.export_ratchet_tree().tls_serialize_detached().map_err(mls_error)?),
        };
        let id = ConversationId(group.group_id().as_slice().to_vec());
        self.persist(&mut state, Some(&id)).await?;
        drop(state);
        let _: Created = self.call(Method::POST, "/api/v1/groups", Some(&body), "the new conversation").await?;
        Ok(id)
    }

    /// Adds another device (of the family, or of an approved contact) to a conversation,
    /// with the devices that must come along: a supervised child's guardians' devices. The
    /// server decides whether they may join. On a conflict (another member changed the
    /// group first) it catches up and tries again.
    pub async fn invite(&self, conversation: &ConversationId, device_id: &str) -> Result<(), ClientError> {
        #[derive(Deserialize)]
        struct Claimed {
            key_package: String,
            #[serde(default)]
            join_with: Vec<String>,
        }
        let claim = |device: String| async move {
            let Claimed { key_package, join_with } =
                self.call(Method::POST, &format!("/api/v1/devices/{device}/key-package"), None, "a KeyPackage").await?;
            let bytes = BASE64.decode(key_package).map_err(|_| ClientError::Malformed("a KeyPackage".into()))?;
            Ok::<_, ClientError>((device, bytes, join_with))
        };
        for _attempt in 0..3 {
            let (device, package, join_with) = claim(device_id.to_owned()).await?;
            let members = self.conversations().await?.into_iter().find(|c| &c.id == conversation).map(|c| c.members).unwrap_or_default();
            let mut packages = vec![(device, package)];
            for companion in join_with {
                if !members.contains(&companion) && companion != self.device_id {
                    let (device, package, _) = claim(companion).await?;
                    packages.push((device, package));
                }
            }
            match self.add_key_packages(conversation, &packages).await {
                Err(error) if error.code() == Some("stale_epoch") => {
                    self.sync(Duration::from_millis(500)).await?;
                }
                other => return other,
            }
        }
        Err(ClientError::Mls("the conversation kept changing; try again".into()))
    }

    /// Adds the device whose KeyPackage (an MLS message) is given, obtained some other way
    /// than from this server. The server still decides whether that device may join.
    /// `expected_device`, when given, must be the device the KeyPackage names.
    pub async fn add_with_key_package(
        &self,
        conversation: &ConversationId,
        key_package: &[u8],
        expected_device: Option<&str>,
    ) -> Result<(), ClientError> {
        let named = match expected_device {
            Some(device) => device.to_owned(),
            None => String::new(),
        };
        self.add_key_packages(conversation, &[(named, key_package.to_vec())]).await
    }

    /// Adds several devices in one commit: `(expected device id or "", KeyPackage)`.
    async fn add_key_packages(&self, conversation: &ConversationId, packages: &[(String, Vec<u8>)]) -> Result<(), ClientError> {
        let mut state = self.state.lock().await;
        let mut checked = Vec::with_capacity(packages.len());
        for (expected, bytes) in packages {
            let MlsMessageBodyIn::KeyPackage(package) = deserialize(bytes)? else {
                return Err(ClientError::Malformed("a KeyPackage".into()));
            };
            let package = package.validate(state.provider.crypto(), ProtocolVersion::Mls10).map_err(mls_error)?;
            if !expected.is_empty() {
                let named = BasicCredential::try_from(package.leaf_node().credential().clone()).map(|c| c.identity().to_vec());
                if named.ok().as_deref() != Some(expected.as_bytes()) {
                    return Err(ClientError::Mls("the KeyPackage is not that device's".into()));
                }
            }
            checked.push(package);
        }
        let mut group = load_group(&state.provider, conversation)?;
        let (commit, welcome, _) = group.add_members(&state.provider, &state.signer, &checked).map_err(mls_error)?;
        let body = SendBody {
            message: BASE64.encode(serialize(&commit)?),
            welcome: Some(BASE64.encode(serialize(&welcome)?)),
            urgent: false
        };
        let sent = self.call::<Sent>(Method::POST, "/api/v1/messages", Some(&body), "the send receipt").await;
        match &sent {
            Ok(_) => group.merge_pending_commit(&state.provider).map_err(mls_error)?,
            Err(_) => group.clear_pending_commit(state.provider.storage()).map_err(mls_error)?,
        }
        self.persist(&mut state, None).await?;
        sent.map(|_| ())
    }

    /// Sends a text. It is encrypted and queued on the device in one step (a toy that
    /// loses power afterwards sends it when it is back), then handed to the server.
    pub async fn send_text(&self, conversation: &ConversationId, text: &str) -> Result<Envelope, ClientError> {
        self.send_envelope(conversation, Envelope::text(text), false).await
    }

    /// A guardian's urgent message passes a child's quiet hours (the server ignores the
    /// flag from a child's toy).
    pub async fn send_urgent_text(&self, conversation: &ConversationId, text: &str) -> Result<Envelope, ClientError> {
        self.send_envelope(conversation, Envelope::text(text), true).await
    }

    async fn send_envelope(&self, conversation: &ConversationId, envelope: Envelope, urgent: bool) -> Result<Envelope, ClientError> {
        self.commit_pending_proposals(conversation).await?;
        let mut state = self.state.lock().await;
        let mut group = load_group(&state.provider, conversation)?;
        let message = group.create_message(&state.provider, &state.signer, &envelope.encode()).map_err(mls_error)?;
        let mut bytes = serialize(&message)?;
        // The outbox row says whether the message is urgent in its first byte.
        bytes.insert(0, u8::from(urgent));
        let mut tx = state.local.begin().await?;
        state.local.add_to_outbox(&mut tx, &bytes).await?;
        let current = snapshot(&state.provider)?;
        state.local.write_mls_state(&mut tx, &current).await?;
        tx.commit().await.map_err(|e| ClientError::Local(e.to_string()))?;
        state.local.written(current);
        drop(state);
        self.flush_outbox().await?;
        Ok(envelope)
    }

    /// Sends what is waiting in the local outbox, oldest first; returns how many went.
    /// Each is removed only once the server has stored it.
    pub async fn flush_outbox(&self) -> Result<usize, ClientError> {
        let pending = self.state.lock().await.local.outbox().await?;
        let mut sent = 0;
        for (seq, bytes) in pending {
            let Some((urgent, message)) = bytes.split_first() else { continue };
            let body = SendBody { message: BASE64.encode(message), welcome: None, urgent: *urgent == 1 };
            match self.call::<Sent>(Method::POST, "/api/v1/messages", Some(&body), "the send receipt").await {
                Ok(_) => {}
                // Refused for good (e.g. the epoch is too old now): keeping it would block the rest.
                Err(ClientError::Api { status, .. }) if (400..500).contains(&status) && status != 401 && status != 429 => {}
                Err(error) => return Err(error),
            }
            self.state.lock().await.local.remove_from_outbox(seq).await?;
            sent += 1;
        }
        Ok(sent)
    }

    /// Commits proposals the server made (removing a revoked device) before anything else
    /// is sent: MLS does not let a member send while proposals are pending.
    async fn commit_pending_proposals(&self, conversation: &ConversationId) -> Result<(), ClientError> {
        let mut state = self.state.lock().await;
        let mut group = load_group(&state.provider, conversation)?;
        if group.pending_proposals().next().is_none() {
            return Ok(());
        }
        let (commit, welcome, _) =
            group.commit_to_pending_proposals(&state.provider, &state.signer).map_err(mls_error)?;
        let body = SendBody {
            message: BASE64.encode(serialize(&commit)?),
            welcome: welcome.as_ref().map(serialize).transpose()?.map(|w| BASE64.encode(w)),
            urgent: false
        };
        match self.call::<Sent>(Method::POST, "/api/v1/messages", Some(&body), "the send receipt").await {
            Ok(_) => group.merge_pending_commit(&state.provider).map_err(mls_error)?,
            // Someone else committed first; their commit is on its way to this device.
            Err(error) if error.code() == Some("stale_epoch") => {
                group.clear_pending_commit(state.provider.storage()).map_err(mls_error)?
            }
            Err(error) => {
                group.clear_pending_commit(state.provider.storage()).map_err(mls_error)?;
                self.persist(&mut state, None).await?;
                return Err(error);
            }
        }
        self.persist(&mut state, None).await
    }

    /// The conversations this device is in.
    pub async fn conversations(&self) -> Result<Vec<Conversation>, ClientError> {
        let state = self.state.lock().await;
        let mut conversations = Vec::new();
        for id in conversation_ids(&state).await? {
            if let Ok(group) = load_group(&state.provider, &id) {
                conversations.push(Conversation { epoch: group.epoch().as_u64(), members: member_ids(&group), id });
            }
        }
        Ok(conversations)
    }

    /// Messages received so far, in order, after sequence number `after` (0: from the
    /// start): `(sequence, conversation, sender device, envelope)`. When the family keeps
    /// no history on its devices, the messages returned are deleted from the device.
    pub async fn received(&self, after: i64, limit: i64) -> Result<Vec<(i64, ConversationId, String, Envelope)>, ClientError> {
        let state = self.state.lock().await;
        let rows = state.local.inbox(after, limit).await?;
        let keeps_history = state.local.setting(KEEP_HISTORY).await?.is_none_or(|v| v != b"0");
        if let (false, Some((last, ..))) = (keeps_history, rows.last()) {
            state.local.forget_inbox(*last).await?;
        }
        Ok(rows
            .into_iter()
            .filter_map(|(seq, group, sender, body)| {
                let group = BASE64.decode(group).ok()?;
                Some((seq, ConversationId(group), sender, Envelope::decode(&body)?))
            })
            .collect())
    }

    /// Asks the server whether the family wants its devices to keep what they have shown,
    /// and remembers the answer for [`Messenger::received`].
    pub async fn refresh_history_setting(&self) -> Result<bool, ClientError> {
        let session = self.session.lock().await.clone();
        let info = match self.api.device_info(&session).await {
            Err(error) if error.is_unauthenticated() => self.api.device_info(&self.session().await?).await?,
            other => other?,
        };
        let state = self.state.lock().await;
        let mut tx = state.local.begin().await?;
        state.local.set_setting(&mut tx, KEEP_HISTORY, if info.keep_history { b"1" } else { b"0" }).await?;
        tx.commit().await.map_err(|e| ClientError::Local(e.to_string()))?;
        Ok(info.keep_history)
    }

    /// Connects, processes everything queued for this device until nothing more arrives
    /// for `idle`, and returns what happened. For a live stream, see [`Messenger::listen`].
    pub async fn sync(&self, idle: Duration) -> Result<Vec<Event>, ClientError> {
        self.refresh_history_setting().await?;
        live::sync(self, idle).await
    }

    /// Tries to decrypt a message captured off the wire (for audits and tests): what a
    /// device can read of it, if anything.
    pub async fn read_captured(&self, conversation: &ConversationId, message: &[u8]) -> Result<Envelope, ClientError> {
        let state = self.state.lock().await;
        let mut group = load_group(&state.provider, conversation)?;
        let MlsMessageBodyIn::PrivateMessage(private) = deserialize(message)? else {
            return Err(ClientError::Mls("not an encrypted message".into()));
        };
        let processed = group.process_message(&state.provider, private).map_err(mls_error)?;
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => {
                Envelope::decode(&app.into_bytes()).ok_or_else(|| ClientError::Mls("not an envelope".into()))
            }
            _ => Err(ClientError::Mls("not an application message".into())),
        }
    }

    /// Processes one message from the server (see `live`), persisting its effects and the
    /// fact that it was processed in one transaction.
    pub(crate) async fn process(&self, frame: &live::MessageFrame) -> Result<Vec<Event>, ClientError> {
        let mut state = self.state.lock().await;
        if state.local.was_processed(frame.id).await? {
            return Ok(Vec::new());
        }
        let conversation = ConversationId(BASE64.decode(&frame.group_id).map_err(|_| ClientError::Malformed("a group id".into()))?);
        let data = BASE64.decode(&frame.data).map_err(|_| ClientError::Malformed("a message".into()))?;
        let mut events = Vec::new();
        let mut inbox = None;
        let unreadable = |reason: String| Event::Unreadable { conversation: conversation.clone(), reason };
        match frame.kind.as_str() {
            "welcome" => match self.join(&state, &data) {
                Ok(id) => {
                    events.push(Event::Joined { conversation: id.clone() });
                    self.persist(&mut state, Some(&id)).await?;
                }
                Err(error) => events.push(unreadable(error.to_string())),
            },
            "commit" | "proposal" | "application" => {
                match self.process_group_message(&state, &conversation, &data) {
                    Ok(Processed::Message(sender, envelope)) => {
                        inbox = Some((sender.clone(), envelope.clone()));
                        events.push(Event::Message { conversation: conversation.clone(), sender, envelope });
                    }
                    Ok(Processed::Members(members)) => {
                        events.push(Event::MembersChanged { conversation: conversation.clone(), members })
                    }
                    Ok(Processed::Removed) => events.push(Event::Removed { conversation: conversation.clone() }),
                    Ok(Processed::Nothing) => {}
                    Err(error) => events.push(unreadable(error.to_string())),
                }
            }
            _ => events.push(unreadable(format!("unknown kind {}", frame.kind))),
        }
        let id = frame.id;
        let group_b64 = frame.group_id.clone();
        let mut duplicate = false;
        let mut tx = state.local.begin().await?;
        if let Some((sender, envelope)) = &inbox {
            duplicate = !state
                .local
                .add_to_inbox(&mut tx, &envelope.id, &group_b64, sender, &envelope.encode(), envelope::now_millis())
                .await?;
        }
        let current = snapshot(&state.provider)?;
        state.local.write_mls_state(&mut tx, &current).await?;
        let now = envelope::now_millis();
        state.local.mark_processed(&mut tx, id, now, now - FORGET_PROCESSED_AFTER_MS).await?;
        tx.commit().await.map_err(|e| ClientError::Local(e.to_string()))?;
        state.local.written(current);
        if duplicate {
            events.retain(|e| !matches!(e, Event::Message { .. }));
        }
        Ok(events)
    }

    fn join(&self, state: &State, data: &[u8]) -> Result<ConversationId, ClientError> {
        let MlsMessageBodyIn::Welcome(welcome) = deserialize(data)? else {
            return Err(ClientError::Mls("not a Welcome".into()));
        };
        let group = StagedWelcome::new_from_welcome(&state.provider, &mls::join_config(), welcome, None)
            .map_err(mls_error)?
            .into_group(&state.provider)
            .map_err(mls_error)?;
        Ok(ConversationId(group.group_id().as_slice().to_vec()))
    }

    fn process_group_message(&self, state: &State, conversation: &ConversationId, data: &[u8]) -> Result<Processed, ClientError> {
        let message = MlsMessageIn::tls_deserialize_exact(data)
            .map_err(mls_error)?
            .try_into_protocol_message()
            .map_err(|_| ClientError::Mls("not a group message".into()))?;
        let mut group = load_group(&state.provider, conversation)?;
        let processed = group.process_message(&state.provider, message).map_err(mls_error)?;
        let sender = match processed.sender() {
            Sender::Member(index) => group.member(*index).and_then(|c| BasicCredential::try_from(c.clone()).ok()).map(|c| String::from_utf8_lossy(c.identity()).into_owned()),
            _ => None,
        };
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => {
                let envelope = Envelope::decode(&app.into_bytes()).ok_or_else(|| ClientError::Mls("not an envelope".into()))?;
                Ok(Processed::Message(sender.unwrap_or_default(), envelope))
            }
            ProcessedMessageContent::ProposalMessage(proposal) => {
                group.store_pending_proposal(state.provider.storage(), *proposal).map_err(mls_error)?;
                Ok(Processed::Nothing)
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let removed = staged.self_removed();
                group.merge_staged_commit(&state.provider, *staged).map_err(mls_error)?;
                if removed {
                    Ok(Processed::Removed)
                } else {
                    Ok(Processed::Members(member_ids(&group)))
                }
            }
            _ => Ok(Processed::Nothing),
        }
    }

    /// Writes the MLS state (and, for a new conversation, its id) to the local file.
    async fn persist(
        &self,
        state: &mut State,
        new_conversation: Option<&ConversationId>,
    ) -> Result<(), ClientError> {
        // Read before the transaction: the local store has one connection.
        let mut ids = conversation_ids(state).await?;
        let mut tx = state.local.begin().await?;
        if let Some(id) = new_conversation
            && !ids.contains(id)
        {
            ids.push(id.clone());
            let list: Vec<String> = ids.iter().map(ConversationId::to_base64).collect();
            state.local.set_setting(&mut tx, CONVERSATIONS, list.join(",").as_bytes()).await?;
        }
        let current = snapshot(&state.provider)?;
        state.local.write_mls_state(&mut tx, &current).await?;
        tx.commit().await.map_err(|e| ClientError::Local(e.to_string()))?;
        state.local.written(current);
        Ok(())
    }

    /// After a batch of messages: commit what the server proposed (in every conversation
    /// with pending proposals), and top up KeyPackages when asked.
    pub(crate) async fn after_batch(&self) -> Result<(), ClientError> {
        let ids = conversation_ids(&*self.state.lock().await).await?;
        for id in ids {
            let pending = {
                let state = self.state.lock().await;
                load_group(&state.provider, &id).map(|g| g.pending_proposals().next().is_some()).unwrap_or(false)
            };
            if pending {
                self.commit_pending_proposals(&id).await?;
            }
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.state.lock().await.local.close().await;
    }
}

enum Processed {
    Message(String, Envelope),
    Members(Vec<String>),
    Removed,
    Nothing,
}

fn snapshot(provider: &OpenMlsRustCrypto) -> Result<HashMap<Vec<u8>, Vec<u8>>, ClientError> {
    provider.storage().values.read().map(|v| v.clone()).map_err(|_| ClientError::Local("lock".into()))
}

fn load_group(provider: &OpenMlsRustCrypto, id: &ConversationId) -> Result<MlsGroup, ClientError> {
    MlsGroup::load(provider.storage(), &GroupId::from_slice(&id.0))
        .map_err(mls_error)?
        .filter(MlsGroup::is_active)
        .ok_or(ClientError::UnknownConversation)
}

fn member_ids(group: &MlsGroup) -> Vec<String> {
    group
        .members()
        .filter_map(|m| BasicCredential::try_from(m.credential).ok())
        .map(|c| String::from_utf8_lossy(c.identity()).into_owned())
        .collect()
}

async fn conversation_ids(state: &State) -> Result<Vec<ConversationId>, ClientError> {
    let list = state.local.setting(CONVERSATIONS).await?.unwrap_or_default();
    Ok(String::from_utf8_lossy(&list).split(',').filter(|s| !s.is_empty()).filter_map(ConversationId::from_base64).collect())
}
