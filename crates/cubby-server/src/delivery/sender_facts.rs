//! What a send needs to know besides the message and its group: the sending child's quiet
//! hours and daily limit, and how long the conversation's family keeps messages. A live
//! connection keeps them for a few seconds instead of reading them for every message; a
//! guardian's change reaches it within that time, as it reaches the connection's pushes.

use std::collections::HashMap;
use std::time::Duration;

use cubby_core::FamilyId;
use cubby_core::quiet_hours::QuietHours;
use cubby_store::DeviceRow;
use tokio::time::Instant;

use super::Delivery;
use crate::http::ApiError;

/// How long a live connection trusts what it read (the same as its queue poll).
pub const FRESH_FOR: Duration = Duration::from_secs(5);

pub struct SenderFacts {
    fresh_for: Duration,
    schedule: Option<(Option<QuietHours>, Instant)>,
    retention: HashMap<FamilyId, (i64, Instant)>,
}

impl SenderFacts {
    /// Read afresh for every send (one-off HTTP sends).
    pub fn uncached() -> Self {
        Self { fresh_for: Duration::ZERO, schedule: None, retention: HashMap::new() }
    }

    /// Kept for [`FRESH_FOR`] (a device's live connection).
    pub fn cached() -> Self {
        Self { fresh_for: FRESH_FOR, ..Self::uncached() }
    }

    pub(super) async fn schedule(&mut self, delivery: &Delivery, device: &DeviceRow) -> Option<QuietHours> {
        match &self.schedule {
            Some((schedule, at)) if at.elapsed() < self.fresh_for => schedule.clone(),
            _ => {
                let schedule = delivery.schedule_of(device).await;
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
