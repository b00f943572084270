//! The MLS Delivery Service's storage: KeyPackages, groups (public state and members),
//! and the per-device message queue. Everything here is either public MLS data or
//! ciphertext the server cannot read.

use async_trait::async_trait;
use cubby_core::{DeviceId, FamilyId};

use crate::StoreError;

/// A KeyPackage uploaded by a device (TLS-serialised `MlsMessage`), to be claimed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewKeyPackage {
    pub package: Vec<u8>,
    /// Handed out when the device has no other package left, and never consumed.
    pub last_resort: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRow {
    /// The MLS group id (random, chosen by the creating device).
    pub id: Vec<u8>,
    pub family_id: FamilyId,
    pub epoch: i64,
    /// The group's public state as the server tracks it (ratchet tree, context): no secrets.
    pub public_state: Vec<u8>,
    pub created_at: i64,
}

/// A group as the relay of an application message sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRouting {
    pub family_id: FamilyId,
    pub epoch: i64,
    pub members: Vec<DeviceId>,
}

/// `application`, `commit`, `proposal` or `welcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Application,
    Commit,
    Proposal,
    Welcome,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Application => "application",
            Self::Commit => "commit",
            Self::Proposal => "proposal",
            Self::Welcome => "welcome",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "application" => Self::Application,
            "commit" => Self::Commit,
            "proposal" => Self::Proposal,
            "welcome" => Self::Welcome,
            _ => return None,
        })
    }
}

/// A message to queue for each of its recipients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    pub group_id: Vec<u8>,
    /// None for messages the server itself sends (external Remove proposals).
    pub sender: Option<DeviceId>,
    pub kind: MessageKind,
    pub payload: Vec<u8>,
    /// Set only for a guardian's message marked urgent: it passes quiet hours.
    pub urgent: bool,
    pub created_at: i64,
    pub expires_at: i64,
    pub recipients: Vec<DeviceId>,
}

/// A change of a group's public state, conditional on its epoch (first wins): a commit
/// moves it from `from_epoch` to `from_epoch + 1`; a proposal of the server's keeps the
/// epoch (`to_epoch == from_epoch`) but must still be recorded in the state it was made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochChange {
    pub group_id: Vec<u8>,
    pub from_epoch: i64,
    pub to_epoch: i64,
    pub public_state: Vec<u8>,
    /// The member devices after the commit.
    pub members: Vec<DeviceId>,
}

/// One atomic write: an optional epoch change and the messages it queues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Append {
    pub epoch_change: Option<EpochChange>,
    pub messages: Vec<NewMessage>,
}

/// What became of one [`Append`] of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Stored durably; the ids of its messages, in order.
    Stored(Vec<i64>),
    /// Another commit moved the group on first; nothing of this append was written.
    StaleEpoch,
    /// A message's group was deleted meanwhile (its family or conversation went); nothing
    /// of this append was written.
    GroupGone,
}

/// A message waiting in one device's queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    pub id: i64,
    pub group_id: Vec<u8>,
    pub sender: Option<DeviceId>,
    pub kind: MessageKind,
    pub payload: Vec<u8>,
    pub urgent: bool,
    pub created_at: i64,
}

/// What one [`MessagingStore::write_batch`] did.
#[derive(Debug)]
pub struct BatchWritten {
    /// One outcome per append, in order.
    pub appended: Vec<Appended>,
    /// Queue entries the acknowledgements removed.
    pub acknowledged: u64,
    /// The queue entries written, (device, message id), in no particular order: exactly who
    /// may be handed each message live (a recipient revoked meanwhile is not among them).
    pub queued: Vec<(DeviceId, i64)>,
    /// The appends, handed back: their payloads go on to live connections without a copy.
    pub batch: Vec<Append>,
}

/// [`MessagingStore::write_batch`], on the calling thread, which it blocks.
pub trait BlockingBatchWriter: Send + Sync {
    fn write_batch(&self, batch: Vec<Append>, acks: Vec<(DeviceId, Vec<i64>)>) -> Result<BatchWritten, StoreError>;
}

#[async_trait]
pub trait MessagingStore {
    /// Adds packages for a device; a new last-resort package replaces the previous one.
    async fn add_key_packages(&self, device: DeviceId, packages: &[NewKeyPackage]) -> Result<(), StoreError>;
    /// Claims one package of a device: the oldest ordinary one (deleted, so used once),
    /// else its last-resort package (kept). None if it has neither.
    async fn claim_key_package(&self, device: DeviceId) -> Result<Option<Vec<u8>>, StoreError>;
    /// How many ordinary (single-use) packages a device has left.
    async fn key_packages_left(&self, device: DeviceId) -> Result<i64, StoreError>;

    /// Registers a new group with its first members; false if the id is taken.
    async fn create_group(&self, group: &GroupRow, members: &[DeviceId]) -> Result<bool, StoreError>;
    async fn group(&self, id: &[u8]) -> Result<Option<GroupRow>, StoreError>;
    async fn group_members(&self, id: &[u8]) -> Result<Vec<DeviceId>, StoreError>;
    /// What routing an application message needs, in one read: the group's family, epoch
    /// and members (not its public state, which can be kilobytes). `None` if no such group.
    async fn group_routing(&self, id: &[u8]) -> Result<Option<GroupRouting>, StoreError>;
    /// The groups a device is a member of.
    async fn device_groups(&self, device: DeviceId) -> Result<Vec<GroupRow>, StoreError>;

    /// Writes a batch of appends in one transaction (group commit). Each append is all or
    /// nothing: a stale epoch change skips it and writes none of its messages.
    async fn append(&self, batch: &[Append]) -> Result<Vec<Appended>, StoreError> {
        Ok(self.write_batch(batch.to_vec(), Vec::new()).await?.appended)
    }
    /// Appends, then acknowledgements (as [`Self::acknowledge`]), in one transaction: the
    /// delivery service's one writer, so that its writes never wait for each other's lock.
    async fn write_batch(&self, batch: Vec<Append>, acks: Vec<(DeviceId, Vec<i64>)>) -> Result<BatchWritten, StoreError>;
    /// The engine's own batch writer where it writes from a thread (SQLite), for a caller
    /// that is a thread of its own: it saves a hop to another thread and back per batch.
    /// `None` where writes are asynchronous (PostgreSQL): use [`Self::write_batch`].
    fn blocking_batch_writer(&self) -> Option<&dyn BlockingBatchWriter> {
        None
    }
    /// A device's queue in order (by message id, so in order per group), after `after_id`.
    async fn queued_for(&self, device: DeviceId, after_id: i64, limit: i64) -> Result<Vec<QueuedMessage>, StoreError>;
    /// Removes acknowledged messages from a device's queue, and each message that no
    /// device waits for any longer. Returns how many queue entries went.
    async fn acknowledge(&self, device: DeviceId, ids: &[i64]) -> Result<u64, StoreError> {
        Ok(self.write_batch(Vec::new(), vec![(device, ids.to_vec())]).await?.acknowledged)
    }
    /// Empties a device's queue (a revoked device receives nothing more).
    async fn drop_queue(&self, device: DeviceId) -> Result<u64, StoreError>;
    /// Deletes messages past their expiry, with their queue entries.
    async fn expire_messages(&self, now: i64) -> Result<u64, StoreError>;
}
