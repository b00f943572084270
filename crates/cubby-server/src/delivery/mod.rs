//! The MLS Delivery Service: KeyPackages, groups and the per-device queues.
//!
//! It checks every handshake message against the family rules before it is stored, routes
//! encrypted application messages without reading them, acknowledges a send only once it
//! is durably stored, and removes revoked devices from their groups by external proposal.

pub mod group_commit;
pub mod hub;
pub mod membership;
pub mod mls_rules;
pub mod quiet_hours;
pub mod polls;
pub mod sender_facts;

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use cubby_core::quiet_hours::QuietHours;
use cubby_core::contacts::Person;
use cubby_core::{ChildId, DeviceId, ErrorCode, FamilyId};
use cubby_store::{
    Append, Appended, DeviceRow, EpochChange, GroupRow, MessageKind, NewKeyPackage, NewMessage, QueuedMessage, Store,
};

use crate::http::ApiError;
use crate::http::metrics::CommitMetrics;
use crate::vault::now_millis;
use group_commit::{CommitError, GroupCommit};
use hub::Hub;
use membership::Roster;
use mls_rules::{ExternalSender, Inbound, LeafDevice, PublicState, Rejection};
use sender_facts::SenderFacts;

/// Most KeyPackages a device may hold at once, and the level under which it is asked to
/// top up.
pub const MAX_KEY_PACKAGES: i64 = 100;
pub const TOP_UP_BELOW: i64 = 10;
/// Messages pushed to a live connection but not yet acknowledged, at most: a slow
/// reader's backlog stays in the store, not in memory.
pub const IN_FLIGHT: usize = 512;
/// Epochs an application message may lag behind its group (members that have not yet
/// processed the latest commits); matches the SDK's `max_past_epochs`.
pub const MAX_PAST_EPOCHS: u64 = 5;
/// How often what another node changed is looked for: a device revoked there, a child's
/// quiet hours, and (on PostgreSQL) messages stored there. A wake-up lost costs at most
/// this on PostgreSQL; on SQLite, whose one writer pushes all it stores, the queue is
/// read again only every twelfth poll (`delivery::polls`).
pub const POLL_EVERY: Duration = Duration::from_secs(5);

pub struct Delivery {
    store: Arc<dyn Store>,
    vault: Arc<crate::Vault>,
    writer: GroupCommit,
    hub: Arc<Hub>,
    external_sender: ExternalSender,
    retention: Duration,
}

/// A device's send: an MLS message, and for a commit that adds members, their Welcome.
pub struct Outgoing {
    pub message: Vec<u8>,
    pub welcome: Option<Vec<u8>>,
    /// Honoured only from a guardian's device: lets the message through quiet hours.
    pub urgent: bool,
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::Malformed(_) => ApiError::new(ErrorCode::MalformedMessage, rejection.to_string()),
            Rejection::Refused(_) => ApiError::new(ErrorCode::MembershipRefused, rejection.to_string()),
            Rejection::StaleEpoch { .. } => ApiError::new(
                ErrorCode::StaleEpoch,
                format!("{rejection}: process the messages waiting for you, then try again"),
            ),
        }
    }
}

impl From<CommitError> for ApiError {
    fn from(error: CommitError) -> Self {
        ApiError::unavailable(&error)
    }
}

fn unknown_group() -> ApiError {
    // Another family's group is answered exactly like one that does not exist.
    ApiError::new(ErrorCode::NotFound, "there is no such conversation")
}

fn stale(current: i64) -> ApiError {
    ApiError::new(
        ErrorCode::StaleEpoch,
        format!("another commit moved the group to epoch {current} first: process it, then try again"),
    )
}

impl Delivery {
    pub fn start(vault: Arc<crate::Vault>, retention: Duration, metrics: CommitMetrics) -> Self {
        let store = vault.store().clone();
        let external_sender_seed = *vault.system_key().external_sender_seed();
        let hub = Arc::new(Hub::default());
        polls::start(&hub, store.clone());
        Self {
            vault,
            writer: GroupCommit::start(store.clone(), hub.clone(), metrics),
            store,
            hub,
            external_sender: ExternalSender::from_seed(external_sender_seed),
            retention,
        }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// A child's quiet hours and daily limit, if set; `None` for a guardian's device.
    pub async fn schedule_of(&self, family: FamilyId, child: Option<ChildId>) -> Option<QuietHours> {
        match self.vault.quiet_hours(family, child?).await {
            Ok(schedule) => schedule,
            Err(error) => {
                tracing::warn!(%error, "a child's quiet hours could not be read; none applied");
                None
            }
        }
    }

    /// Counts a send of a child's toy against the child's daily limit.
    async fn within_daily_limit(&self, device: &DeviceRow, facts: &mut SenderFacts) -> Result<(), ApiError> {
        let Some(child) = device.child_id else { return Ok(()) };
        let Some(schedule) = facts.schedule(self, device).await else { return Ok(()) };
        let (Some(limit), Some(day_start)) = (schedule.daily_limit, schedule.day_start(now_millis())) else { return Ok(()) };
        if self.store.count_send(child, day_start, i64::from(limit)).await? {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::DailyLimitReached,
                format!("this child's toys may send {limit} messages a day; more tomorrow"),
            ))
        }
    }

    /// The key groups must name as their external sender.
    pub fn external_sender_key(&self) -> &[u8] {
        self.external_sender.public_key()
    }

    /// Stores a batch of the device's own KeyPackages; returns how many it now holds.
    pub async fn upload_key_packages(&self, device: &DeviceRow, packages: &[Vec<u8>]) -> Result<i64, ApiError> {
        let mut checked = Vec::with_capacity(packages.len());
        for bytes in packages {
            let package = mls_rules::check_key_package(bytes)?;
            if !is_this_device(&package.owner, device) {
                return Err(ApiError::new(
                    ErrorCode::MembershipRefused,
                    "a KeyPackage must carry the uploading device's own id and paired key",
                ));
            }
            checked.push(NewKeyPackage { package: bytes.clone(), last_resort: package.last_resort });
        }
        let ordinary = checked.iter().filter(|p| !p.last_resort).count() as i64;
        let left = self.store.key_packages_left(device.id).await?;
        if left + ordinary > MAX_KEY_PACKAGES {
            return Err(ApiError::new(
                ErrorCode::InvalidBody,
                format!("a device holds at most {MAX_KEY_PACKAGES} KeyPackages; it has {left}"),
            ));
        }
        self.store.add_key_packages(device.id, &checked).await?;
        if left == 0 && device.account_id.is_some() {
            // A guardian's device that could not be added before (new, or out of
            // KeyPackages) joins its supervised children's conversations now.
            self.supervisor_ready(device.family_id).await;
        }
        Ok(left + ordinary)
    }

    async fn supervisor_ready(&self, family: FamilyId) {
        let children = match self.store.children(family).await {
            Ok(children) => children,
            Err(error) => return tracing::warn!(%error, "listing a family's children failed"),
        };
        for child in children {
            if self.store.supervised(child.id).await.unwrap_or(false) {
                self.child_rules_changed(child.id).await;
            }
        }
    }

    /// Claims one KeyPackage of a device of the same family, or of a family linked to it
    /// by an approved contact, to add it to a group (the group rule still decides whether
    /// it may join). Also names the devices that must join with it: a supervised child's
    /// guardians.
    pub async fn claim_key_package(&self, claimer: &DeviceRow, target: DeviceId) -> Result<(Vec<u8>, Vec<DeviceId>), ApiError> {
        let no_package = || ApiError::new(ErrorCode::NotFound, "that device has no KeyPackage to hand out");
        let Some(device) = self.store.device(target).await?.filter(|d| d.revoked_at.is_none()) else { return Err(no_package()) };
        if device.family_id != claimer.family_id && !self.store.families_linked(claimer.family_id, device.family_id).await? {
            return Err(no_package());
        }
        let package = self.store.claim_key_package(device.id).await?.ok_or_else(no_package)?;
        if self.store.key_packages_left(device.id).await? < TOP_UP_BELOW {
            self.hub.wake([device.id]);
        }
        let supervisors = match device.child_id {
            Some(child) if self.store.supervised(child).await? => {
                membership::supervisor_devices(self.store.as_ref(), device.family_id).await?
            }
            _ => Vec::new(),
        };
        Ok((package, supervisors))
    }

    pub async fn key_packages_left(&self, device: DeviceId) -> Result<i64, ApiError> {
        Ok(self.store.key_packages_left(device).await?)
    }

    /// Registers a group its creator has just made (epoch 0 or later, creator inside).
    pub async fn create_group(&self, creator: &DeviceRow, group_info: &[u8], tree: &[u8]) -> Result<GroupRow, ApiError> {
        let registered = mls_rules::register_group(group_info, tree, self.external_sender.public_key())?;
        if !registered.members.iter().any(|m| is_this_device(m, creator)) {
            return Err(ApiError::new(ErrorCode::MembershipRefused, "the creating device must be a member of the group"));
        }
        let members = self.check_devices(&registered.members).await?;
        let roster = Roster::load(self.store.as_ref(), &members).await?;
        roster.check_added(&members, creator.family_id)?;
        let missing = roster.missing_supervisors(self.store.as_ref(), None).await?;
        if !missing.is_empty() {
            return Err(membership::supervision_required(&missing));
        }
        let group = GroupRow {
            id: registered.group_id,
            family_id: creator.family_id,
            epoch: epoch_i64(registered.epoch)?,
            public_state: registered.state.encode()?,
            created_at: now_millis(),
        };
        if !self.store.create_group(&group, &members).await? {
            return Err(ApiError::new(ErrorCode::Conflict, "a group with this id exists already"));
        }
        Ok(group)
    }

    /// Whether a child among these members is supervised by its guardians.
    pub async fn is_supervised(&self, members: &[DeviceId]) -> Result<bool, ApiError> {
        let roster = Roster::load(self.store.as_ref(), members).await?;
        Ok(!roster.supervised_children(self.store.as_ref(), None).await?.is_empty())
    }

    /// The groups a device belongs to.
    pub async fn groups_of(&self, device: &DeviceRow) -> Result<Vec<GroupRow>, ApiError> {
        Ok(self.store.device_groups(device.id).await?)
    }

    /// Accepts a device's message once it is durably stored; returns the stored ids.
    pub async fn send(&self, device: &DeviceRow, outgoing: Outgoing) -> Result<Vec<i64>, ApiError> {
        self.submit(device, outgoing, &mut SenderFacts::uncached()).await?.stored(self).await
    }

    /// Checks a device's message and queues it for storage, without waiting for the
    /// write: sends submitted one after the other are stored in that order.
    pub async fn submit(&self, device: &DeviceRow, outgoing: Outgoing, facts: &mut SenderFacts) -> Result<Submitted, ApiError> {
        match mls_rules::classify(&outgoing.message)? {
            Inbound::Application { group_id, epoch } => self.send_application(device, group_id, epoch, outgoing, facts).await,
            Inbound::Commit { group_id, message, .. } => {
                self.send_commit(device, group_id, *message, outgoing.message, outgoing.welcome, facts).await
            }
        }
    }

    async fn member_group(&self, device: &DeviceRow, group_id: &[u8]) -> Result<(GroupRow, Vec<DeviceId>), ApiError> {
        // Membership is what grants access: a conversation may span families.
        let Some(group) = self.store.group(group_id).await? else { return Err(unknown_group()) };
        let members = self.store.group_members(group_id).await?;
        if !members.contains(&device.id) {
            return Err(unknown_group());
        }
        Ok((group, members))
    }

    async fn send_application(
        &self,
        device: &DeviceRow,
        group_id: Vec<u8>,
        epoch: u64,
        outgoing: Outgoing,
        facts: &mut SenderFacts,
    ) -> Result<Submitted, ApiError> {
        if outgoing.welcome.is_some() {
            return Err(ApiError::new(ErrorCode::MalformedMessage, "only a commit comes with a Welcome"));
        }
        // Without the group's public state, and on a live connection not for every message.
        let Some(group) = facts.routing(self, &group_id, epoch).await? else { return Err(unknown_group()) };
        if !group.members.contains(&device.id) {
            return Err(unknown_group());
        }
        let members = group.members;
        let current = u64::try_from(group.epoch).unwrap_or(0);
        if epoch > current {
            return Err(ApiError::new(ErrorCode::MalformedMessage, "the message is for an epoch the group has not reached"));
        }
        if epoch + MAX_PAST_EPOCHS < current {
            return Err(stale(group.epoch));
        }
        self.within_daily_limit(device, facts).await?;
        let recipients: Vec<DeviceId> = members.into_iter().filter(|m| *m != device.id).collect();
        let retention = facts.retention(self, group.family_id).await?;
        let message =
            self.new_message(&group_id, Some(device.id), MessageKind::Application, outgoing.message, recipients, retention);
        let message = NewMessage { urgent: outgoing.urgent && device.account_id.is_some(), ..message };
        let queued = self.writer.enqueue(Append { epoch_change: None, messages: vec![message] }).await?;
        Ok(Submitted::new(queued, group.epoch, None))
    }

    async fn send_commit(
        &self,
        device: &DeviceRow,
        group_id: Vec<u8>,
        message: openmls::prelude::ProtocolMessage,
        commit_bytes: Vec<u8>,
        welcome: Option<Vec<u8>>,
        facts: &mut SenderFacts,
    ) -> Result<Submitted, ApiError> {
        let (group, _) = self.member_group(device, &group_id).await?;
        let state = PublicState::decode(&group_id, &group.public_state)?;
        let accepted = mls_rules::apply_commit(state, message, device.id)?;
        let added = self.check_devices(&accepted.added).await?;
        let members_after: Vec<DeviceId> = accepted.members_after.iter().map(|m| m.device).collect();
        let roster = Roster::load(self.store.as_ref(), &members_after).await?;
        roster.check_added(&added, group.family_id)?;
        // A supervised child joins only together with its guardians' devices.
        let missing = roster.missing_supervisors(self.store.as_ref(), Some(&added)).await?;
        if !missing.is_empty() {
            return Err(membership::supervision_required(&missing));
        }
        // Those who must leave get nothing more from now on; their removal is proposed
        // once the commit is stored.
        let leaving = roster.to_remove(group.family_id);
        let mut messages = Vec::with_capacity(2);
        let others: Vec<DeviceId> =
            accepted.members_before.iter().map(|m| m.device).filter(|d| *d != device.id).collect();
        let retention = facts.retention(self, group.family_id).await?;
        messages.push(self.new_message(&group_id, Some(device.id), MessageKind::Commit, commit_bytes, others, retention));
        match (welcome, added.is_empty()) {
            (Some(welcome), false) => {
                mls_rules::check_welcome(&welcome)?;
                messages.push(self.new_message(&group_id, Some(device.id), MessageKind::Welcome, welcome, added.clone(), retention));
            }
            (None, true) => {}
            (Some(_), true) => return Err(ApiError::new(ErrorCode::MalformedMessage, "a Welcome needs a commit that adds someone")),
            (None, false) => return Err(ApiError::new(ErrorCode::MalformedMessage, "a commit that adds members needs their Welcome")),
        }
        let change = EpochChange {
            group_id: group_id.clone(),
            from_epoch: group.epoch,
            to_epoch: epoch_i64(accepted.new_epoch)?,
            public_state: accepted.state.encode()?,
            members: members_after.into_iter().filter(|d| !leaving.contains(d)).collect(),
        };
        let queued = self.writer.enqueue(Append { epoch_change: Some(change), messages }).await?;
        Ok(Submitted::new(queued, group.epoch, Some(group_id)))
    }

    /// How long the family's undelivered messages are kept, in milliseconds.
    pub async fn retention_of(&self, family: FamilyId) -> Result<i64, ApiError> {
        Ok(match self.store.message_retention_days(family).await? {
            Some(days) => days.saturating_mul(86_400_000),
            None => i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX),
        })
    }

    fn new_message(
        &self,
        group_id: &[u8],
        sender: Option<DeviceId>,
        kind: MessageKind,
        payload: Vec<u8>,
        recipients: Vec<DeviceId>,
        retention: i64,
    ) -> NewMessage {
        let now = now_millis();
        NewMessage {
            group_id: group_id.to_vec(),
            sender,
            kind,
            payload,
            urgent: false,
            created_at: now,
            expires_at: now.saturating_add(retention),
            recipients,
        }
    }

    /// Every device named must be an active paired device, under the key it paired with.
    /// Whether it may be in the conversation is the group rule's to say ([`Roster`]).
    async fn check_devices(&self, members: &[LeafDevice]) -> Result<Vec<DeviceId>, ApiError> {
        let mut ids = Vec::with_capacity(members.len());
        for member in members {
            let device = self.store.device(member.device).await?;
            let allowed = device.as_ref().is_some_and(|d| d.revoked_at.is_none() && is_this_device(member, d));
            if !allowed {
                return Err(ApiError::new(
                    ErrorCode::MembershipRefused,
                    format!("device {} may not join this conversation: it is not an active paired device", member.device),
                ));
            }
            ids.push(member.device);
        }
        Ok(ids)
    }

    /// A queue read for the WebSocket.
    pub async fn queued(&self, device: DeviceId, after: i64, limit: i64) -> Result<Vec<QueuedMessage>, ApiError> {
        Ok(self.store.queued_for(device, after, limit).await?)
    }

    /// Queues a device's acknowledgement for the next batch write; see [`group_commit`].
    pub async fn acknowledge(&self, device: DeviceId, ids: Vec<i64>) -> Result<group_commit::AckWritten, ApiError> {
        Ok(self.writer.acknowledge(device, ids).await?)
    }

    /// A device was revoked: close its connections, drop its queue, and propose its
    /// removal from every group it is in.
    pub async fn device_revoked(&self, device: DeviceId) {
        self.hub.revoke(device);
        if let Err(error) = self.store.drop_queue(device).await {
            tracing::warn!(%error, "dropping a revoked device's queue failed; its messages expire instead");
        }
        self.repair_groups_of(&[device]).await;
    }

    /// What decides a child's conversations changed (a contact removed or blocked,
    /// supervision turned on, a guardian's device ready to join): every group of the
    /// child's devices is checked again; whoever may no longer be there is proposed for
    /// removal, and missing supervisors for addition.
    pub async fn child_rules_changed(&self, child: ChildId) {
        match self.store.person_devices(Person::Child(child)).await {
            Ok(devices) => {
                let ids: Vec<DeviceId> = devices.iter().map(|d| d.id).collect();
                self.repair_groups_of(&ids).await;
            }
            Err(error) => tracing::warn!(%error, "listing a child's devices failed; its groups are repaired at their next commit"),
        }
    }

    async fn repair_groups_of(&self, devices: &[DeviceId]) {
        let mut seen = BTreeSet::new();
        for device in devices {
            match self.store.device_groups(*device).await {
                Ok(groups) => {
                    for group in groups {
                        if seen.insert(group.id.clone()) {
                            self.repair_group(&group.id).await;
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "listing a device's groups failed"),
            }
        }
    }

    /// Brings the group back within the rules at its current epoch: proposes removing
    /// every device it may no longer hold (revoked, or no longer approved by a child's
    /// guardians), and stops routing to them; proposes adding a supervised child's
    /// guardians' devices. Best effort: it runs again after every accepted commit.
    async fn repair_group(&self, group_id: &[u8]) {
        if let Err(error) = self.try_repair_group(group_id).await {
            tracing::warn!(error = ?error, "proposing membership changes failed");
        }
    }

    async fn try_repair_group(&self, group_id: &[u8]) -> Result<(), ApiError> {
        let Some(group) = self.store.group(group_id).await? else { return Ok(()) };
        let state = PublicState::decode(group_id, &group.public_state)?;
        let members = state.member_devices()?;
        let roster = Roster::load(self.store.as_ref(), &members).await?;
        let leaving = roster.to_remove(group.family_id);
        let missing = roster.missing_supervisors(self.store.as_ref(), None).await?;
        if leaving.is_empty() && missing.is_empty() {
            return Ok(());
        }
        let staying: Vec<DeviceId> = members.iter().copied().filter(|d| !leaving.contains(d)).collect();
        // Those leaving need the proposals too, to follow the commit that removes them
        // (only the revoked ones get nothing more).
        let told: Vec<DeviceId> = members.iter().copied().filter(|d| !roster.gone().contains(d)).collect();
        let retention = self.retention_of(group.family_id).await?;
        let mut proposals = Vec::new();
        for device in &leaving {
            if let Some(proposal) = self.external_sender.propose_removal(&state, *device)? {
                proposals.push(self.new_message(group_id, None, MessageKind::Proposal, proposal, told.clone(), retention));
            }
        }
        for supervisor in missing {
            let Some(package) = self.store.claim_key_package(supervisor).await? else {
                tracing::warn!(%supervisor, "a guardian's device has no KeyPackage; it joins at the next repair");
                continue;
            };
            let proposal = self.external_sender.propose_addition(&state, &package)?;
            proposals.push(self.new_message(group_id, None, MessageKind::Proposal, proposal, told.clone(), retention));
        }
        if proposals.is_empty() {
            return Ok(());
        }
        let change = EpochChange {
            group_id: group_id.to_vec(),
            from_epoch: group.epoch,
            to_epoch: group.epoch,
            public_state: state.encode()?,
            members: staying.clone(),
        };
        // Stale means a commit got in first; that commit's own pass proposes again. The
        // writer hands the proposals to the members' connections.
        self.writer.append(Append { epoch_change: Some(change), messages: proposals }).await?;
        Ok(())
    }
}

/// A send checked and queued for storage.
pub struct Submitted {
    queued: group_commit::Queued,
    /// What the writer did with it, once known.
    written: Option<Result<Appended, CommitError>>,
    epoch: i64,
    /// For a commit, its group: members it left in place that must go are proposed again.
    commit_of: Option<Vec<u8>>,
}

impl Submitted {
    fn new(queued: group_commit::Queued, epoch: i64, commit_of: Option<Vec<u8>>) -> Self {
        Self { queued, written: None, epoch, commit_of }
    }

    /// Ready once the writer has stored the send, or refused it.
    pub fn poll_written(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.written.is_none() {
            self.written = Some(std::task::ready!(Pin::new(&mut self.queued).poll(cx)));
        }
        Poll::Ready(())
    }

    /// Waits until the writer has stored the send, or refused it.
    pub async fn written(&mut self) {
        std::future::poll_fn(|cx| self.poll_written(cx)).await
    }

    /// Waits until the send is durably stored (the writer has handed it to its recipients).
    pub async fn stored(mut self, delivery: &Delivery) -> Result<Vec<i64>, ApiError> {
        self.written().await;
        self.settle(delivery).await
    }

    /// Once [`Self::written`]: the stored ids, or why the send was refused. A commit's group
    /// is repaired first: members it left in place that must go are proposed for removal
    /// again. The send is settled before the future is made, so that a connection awaiting
    /// its answers does not carry the send in its task (nor the repair, boxed: rare, large).
    pub fn settle(self, delivery: &Delivery) -> impl Future<Output = Result<Vec<i64>, ApiError>> + '_ {
        let (ids, commit_of) = match self.written.unwrap_or(Err(CommitError::Stopped)) {
            Ok(Appended::Stored(ids)) => (Ok(ids), self.commit_of),
            Ok(Appended::StaleEpoch) => (Err(stale(self.epoch + 1)), None),
            Ok(Appended::GroupGone) => (Err(unknown_group()), None),
            Err(error) => (Err(error.into()), None),
        };
        async move {
            if let Some(group_id) = commit_of {
                Box::pin(delivery.repair_group(&group_id)).await;
            }
            ids
        }
    }
}

fn is_this_device(leaf: &LeafDevice, device: &DeviceRow) -> bool {
    leaf.device == device.id && leaf.signature_key == device.public_key
}

fn epoch_i64(epoch: u64) -> Result<i64, ApiError> {
    i64::try_from(epoch).map_err(|_| ApiError::new(ErrorCode::MalformedMessage, "epoch out of range"))
}
