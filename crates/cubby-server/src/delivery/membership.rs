//! The family rules applied to a group's devices: who each device belongs to, whether the
//! conversation they form is one every child's guardians approved, which devices must go
//! when it no longer is, and which guardians must be in it when a child is supervised.

use std::collections::HashSet;

use cubby_core::contacts::{self, ContactBook, Participant, Person};
use cubby_core::{ChildId, DeviceId, ErrorCode, FamilyId};
use cubby_store::{DeviceRow, Store};

use crate::http::ApiError;

/// The approved contacts around the children of one group.
#[derive(Default)]
struct Approvals(HashSet<(ChildId, Person)>);

impl ContactBook for Approvals {
    fn approved(&self, child: ChildId, other: Person) -> bool {
        match other {
            Person::Adult(_) => self.0.contains(&(child, other)),
            // A guardian of each child: both families' sides must be approved.
            Person::Child(friend) => self.0.contains(&(child, other)) && self.0.contains(&(friend, Person::Child(child))),
        }
    }
}

pub fn person_of(device: &DeviceRow) -> Option<Person> {
    match (device.child_id, device.account_id) {
        (Some(child), _) => Some(Person::Child(child)),
        (None, Some(account)) => Some(Person::Adult(account)),
        (None, None) => None,
    }
}

pub fn participant_of(device: &DeviceRow) -> Option<Participant> {
    Some(Participant { family: device.family_id, person: person_of(device)? })
}

/// A group's devices with the people behind them and the contacts that concern them.
pub struct Roster {
    /// Active devices and who they are.
    members: Vec<(DeviceId, Participant)>,
    /// Devices that are revoked, gone, or belong to nobody: they must leave.
    gone: Vec<DeviceId>,
    approvals: Approvals,
}

impl Roster {
    pub async fn load(store: &dyn Store, devices: &[DeviceId]) -> Result<Self, ApiError> {
        let mut members = Vec::with_capacity(devices.len());
        let mut gone = Vec::new();
        let mut children = HashSet::new();
        for id in devices {
            match store.device(*id).await?.filter(|d| d.revoked_at.is_none()).as_ref().and_then(participant_of) {
                Some(participant) => {
                    if let Person::Child(child) = participant.person {
                        children.insert(child);
                    }
                    members.push((*id, participant));
                }
                None => gone.push(*id),
            }
        }
        let mut approvals = Approvals::default();
        for child in children {
            approvals.0.extend(store.approvals_around(child).await?);
        }
        Ok(Self { members, gone, approvals })
    }

    /// Devices revoked or gone: nothing more is queued for them.
    pub fn gone(&self) -> &[DeviceId] {
        &self.gone
    }

    fn participants(&self) -> Vec<Participant> {
        let mut all: Vec<Participant> = Vec::with_capacity(self.members.len());
        for (_, p) in &self.members {
            if !all.contains(p) {
                all.push(*p);
            }
        }
        all
    }

    fn devices_of(&self, participant: &Participant) -> impl Iterator<Item = DeviceId> + '_ {
        let participant = *participant;
        self.members.iter().filter(move |(_, p)| *p == participant).map(|(d, _)| *d)
    }

    /// Refuses the change unless every pair it creates between a child and another member
    /// is approved: the new members for every child already there, and every child already
    /// there for the new members.
    pub fn check_added(&self, added: &[DeviceId], owner: FamilyId) -> Result<(), ApiError> {
        if let Some(device) = added.iter().find(|d| self.gone.contains(d)) {
            return Err(refused(format!("device {device} may not join: it is not an active paired device")));
        }
        let newcomers: Vec<Participant> =
            self.members.iter().filter(|(d, _)| added.contains(d)).map(|(_, p)| *p).collect();
        let participants = self.participants();
        for (child, other) in contacts::violations(&participants, &self.approvals) {
            // Only pairs the change creates refuse it; older ones are the repair's to fix.
            let child = newcomers.iter().find(|p| p.person == Person::Child(child));
            let Some(newcomer) = newcomers.iter().find(|p| **p == other).or(child) else { continue };
            let device = self.devices_of(newcomer).find(|d| added.contains(d));
            let named = device.map_or_else(|| "a new member".to_owned(), |d| format!("device {d}"));
            return Err(refused(format!(
                "{named} may not join: a guardian of every child in the conversation must approve everyone in it"
            )));
        }
        for stranger in contacts::strangers(&participants, owner, &self.approvals) {
            if let Some(device) = self.devices_of(&stranger).find(|d| added.contains(d)) {
                return Err(refused(format!(
                    "device {device} may not join: it is another family's, and no child in the conversation has it as a contact"
                )));
            }
        }
        Ok(())
    }

    /// The devices that must leave for the group to keep the rules: the gone ones, and
    /// those of each person a child's guardians did not approve (or no longer do). Of two
    /// children who may not meet, the one outside the group's owning family goes.
    pub fn to_remove(&self, owner: FamilyId) -> Vec<DeviceId> {
        let mut leaving: Vec<Participant> = Vec::new();
        let mut remaining = self.participants();
        loop {
            let found = contacts::violations(&remaining, &self.approvals);
            let Some((child, other)) = found.first() else { break };
            let child_participant = remaining.iter().find(|p| p.person == Person::Child(*child)).copied();
            let goes = match child_participant {
                Some(c) if other.family == owner && c.family != owner => c,
                _ => *other,
            };
            remaining.retain(|p| *p != goes);
            leaving.push(goes);
        }
        for stranger in contacts::strangers(&remaining, owner, &self.approvals) {
            leaving.push(stranger);
        }
        let mut devices = self.gone.clone();
        for participant in &leaving {
            devices.extend(self.devices_of(participant));
        }
        devices
    }

    /// Children in the group whose guardians supervise them (of those with a device in
    /// `among`, when given).
    pub async fn supervised_children(&self, store: &dyn Store, among: Option<&[DeviceId]>) -> Result<Vec<(FamilyId, ChildId)>, ApiError> {
        let mut found = Vec::new();
        for (device, p) in &self.members {
            if let Person::Child(child) = p.person
                && among.is_none_or(|devices| devices.contains(device))
                && !found.contains(&(p.family, child))
                && store.supervised(child).await?
            {
                found.push((p.family, child));
            }
        }
        Ok(found)
    }

    /// Guardians' devices that must be members because a child in the group (one of those
    /// with a device in `among`, when given) is supervised, and are not.
    pub async fn missing_supervisors(&self, store: &dyn Store, among: Option<&[DeviceId]>) -> Result<Vec<DeviceId>, ApiError> {
        let mut missing = Vec::new();
        for (family, _) in self.supervised_children(store, among).await? {
            for device in supervisor_devices(store, family).await? {
                if !self.members.iter().any(|(d, _)| *d == device) && !missing.contains(&device) {
                    missing.push(device);
                }
            }
        }
        Ok(missing)
    }
}

/// The active app devices of a family's guardians.
pub async fn supervisor_devices(store: &dyn Store, family: FamilyId) -> Result<Vec<DeviceId>, ApiError> {
    Ok(store
        .family_devices(family)
        .await?
        .into_iter()
        .filter(|d| d.account_id.is_some() && d.child_id.is_none() && d.revoked_at.is_none())
        .map(|d| d.id)
        .collect())
}

fn refused(message: String) -> ApiError {
    ApiError::new(ErrorCode::MembershipRefused, message)
}

pub fn supervision_required(missing: &[DeviceId]) -> ApiError {
    let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
    ApiError::new(
        ErrorCode::SupervisionRequired,
        format!(
            "a child in this conversation is supervised: add its guardians' devices in the same commit ({})",
            list.join(", ")
        ),
    )
}
