//! What a send needs to know besides the message: its group's family, epoch and members,
//! the sending child's quiet hours and daily limit, and how long the conversation's family
//! keeps messages. A live connection keeps them for a while instead of reading them for
//! every message; a guardian's change reaches it within that time, as it reaches the
//! connection's pushes.
//!
//! A group's members are trusted for [`ROUTING_FRESH_FOR`] at most, and only until this
//! node writes a change to any group, and only for messages of an epoch the read had seen:
//! a message of a later epoch means a commit this read predates. A change written on
//! another node reaches the connection within that second.

use std::collections::HashMap;
use std::time::Duration;

use cubby_core::FamilyId;
use cubby_core::quiet_hours::QuietHours;
use cubby_store::{DeviceRow, GroupRouting};
use tokio::time::Instant;

use super::Delivery;
use crate::http::ApiError;

/// How long a live connection trusts what it read (the same as its queue poll).
pub const FRESH_FOR: Duration = Duration::from_secs(5);
/// How long a live connection trusts a group's members, at most.
pub const ROUTING_FRESH_FOR: Duration = Duration::from_secs(1);
/// Groups a connection remembers at once (a toy talks in a handful).
const ROUTING_KEPT: usize = 64;

pub struct SenderFacts {
    fresh_for: Duration,
    routing_fresh_for: Duration,
    schedule: Option<(Option<QuietHours>, Instant)>,
    retention: HashMap<FamilyId, (i64, Instant)>,
    routing: HashMap<Vec<u8>, Routed>,
}

struct Routed {
    group: GroupRouting,
    /// [`super::group_commit::GroupCommit::membership_changes`] when it was read.
    changes: u64,
    at: Instant,
}

impl SenderFacts {
    /// Read afresh for every send (one-off HTTP sends).
    pub fn uncached() -> Self {
        Self {
            fresh_for: Duration::ZERO,
            routing_fresh_for: Duration::ZERO,
            schedule: None,
            retention: HashMap::new(),
            routing: HashMap::new(),
        }
    }

    /// Kept for [`FRESH_FOR`], members for [`ROUTING_FRESH_FOR`] (a device's live connection).
    pub fn cached() -> Self {
        Self { fresh_for: FRESH_FOR, routing_fresh_for: ROUTING_FRESH_FOR, ..Self::uncached() }
    }

    /// The group's family, epoch and members, for a message of `epoch`; `None` if there
    /// is no such group.
    pub(super) async fn routing(&mut self, delivery: &Delivery, group_id: &[u8], epoch: u64) -> Result<Option<GroupRouting>, ApiError> {
        let changes = delivery.writer.membership_changes();
        if let Some(routed) = self.routing.get(group_id)
            && routed.changes == changes
            && routed.at.elapsed() < self.routing_fresh_for
            && u64::try_from(routed.group.epoch).is_ok_and(|known| epoch <= known)
        {
            return Ok(Some(routed.group.clone()));
        }
        let Some(group) = delivery.store.group_routing(group_id).await? else {
            self.routing.remove(group_id);
            return Ok(None);
        };
        if !self.routing_fresh_for.is_zero() {
            if self.routing.len() >= ROUTING_KEPT {
                self.routing.clear();
            }
            self.routing.insert(group_id.to_vec(), Routed { group: group.clone(), changes, at: Instant::now() });
        }
        Ok(Some(group))
    }

    pub(super) async fn schedule(&mut self, delivery: &Delivery, device: &DeviceRow) -> Option<QuietHours> {
        match &self.schedule {
            Some((schedule, at)) if at.elapsed() < self.fresh_for => schedule.clone(),
            _ => {
                let schedule = delivery.schedule_of(device.family_id, device.child_id).await;
                self.schedule = Some((schedule.clone(), Instant::now()));
                schedule
            }
        }
    }

    pub(super) async fn retention(&mut self, delivery: &Delivery, family: FamilyId) -> Result<i64, ApiError> {
        match self.retention.get(&family) {
            Some((retention, at)) if at.elapsed() < self.fresh_for => Ok(*retention),
            _ => {
                let retention = delivery.retention_of(family).await?;
                self.retention.insert(family, (retention, Instant::now()));
                Ok(retention)
            }
        }
    }
}
