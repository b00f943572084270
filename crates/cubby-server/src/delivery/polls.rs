//! What a node looks up for all its live connections at once, every [`POLL_EVERY`],
//! rather than each connection for itself (which cost 10,000 idle toys a sixth of a core,
//! and each of them a timer):
//!
//! - revocations made on another node: a guardian's request reached another node, which
//!   closed the connections it holds, but this node hears of it only through the database;
//! - quiet hours set or lifted, here or on another node: the toys of those children read
//!   their schedule again;
//! - the re-read of each connection's whole queue, in slices over the interval so that no
//!   more than a slice of the connections read at once.
//!
//! One query per 500 connected devices or children for the first two: an idle toy costs
//! the database nothing between polls.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use cubby_core::ChildId;
use cubby_store::Store;
use tokio::time::MissedTickBehavior;

use super::POLL_EVERY;
use super::hub::Hub;

/// The slices of connections told to read their queue again, one per tick.
const SLICES: u32 = 20;
/// Passes between two reads of a connection's whole queue where messages become visible in
/// id order (SQLite): a minute, at [`POLL_EVERY`]. The one writer hands whatever it stores
/// to the live connections, so this read is only a safety net there. On PostgreSQL, whose
/// ids commit out of order across nodes, a message can become visible below a connection's
/// cursor: the queue is read at every pass.
const RESCAN_IN_ORDER_EVERY: u64 = 12;

/// Starts the polls; they end with the hub (when the server stops).
pub fn start(hub: &Arc<Hub>, store: Arc<dyn Store>) {
    tokio::spawn(poll(Arc::downgrade(hub), store));
}

async fn poll(hub: Weak<Hub>, store: Arc<dyn Store>) {
    let mut tick = tokio::time::interval(POLL_EVERY / SLICES);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let rescan_every = if store.engine().messages_visible_in_id_order() { RESCAN_IN_ORDER_EVERY } else { 1 };
    // Each connected child's schedule as last seen: when it was set, or none.
    let mut schedules: HashMap<ChildId, Option<i64>> = HashMap::new();
    for ticks in 0u64.. {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        let (pass, slice) = (ticks / u64::from(SLICES), ticks % u64::from(SLICES));
        if pass.is_multiple_of(rescan_every) {
            hub.rescan(slice, u64::from(SLICES));
        }
        if slice == 0 {
            close_revoked_elsewhere(&hub, store.as_ref()).await;
            tell_changed_schedules(&hub, store.as_ref(), &mut schedules).await;
        }
    }
}

async fn close_revoked_elsewhere(hub: &Hub, store: &dyn Store) {
    let connected = hub.connected();
    if connected.is_empty() {
        return;
    }
    match store.active_devices_among(&connected).await {
        Ok(active) => {
            let active: HashSet<_> = active.into_iter().collect();
            for device in connected.into_iter().filter(|device| !active.contains(device)) {
                hub.revoke(device);
            }
        }
        // The database is briefly unreachable: keep the connections, look again later.
        Err(error) => tracing::warn!(%error, "looking for devices revoked on other nodes failed"),
    }
}

/// A child seen for the first time counts as changed: its toy read the schedule when it
/// connected, which may have been just before a change this pass would take as the start.
async fn tell_changed_schedules(hub: &Hub, store: &dyn Store, schedules: &mut HashMap<ChildId, Option<i64>>) {
    let children = hub.connected_children();
    let set_at: HashMap<ChildId, i64> = match store.quiet_hours_set_at(&children).await {
        Ok(set_at) => set_at.into_iter().collect(),
        Err(error) => {
            tracing::warn!(%error, "looking for changed quiet hours failed");
            return;
        }
    };
    let now: HashMap<ChildId, Option<i64>> = children.into_iter().map(|child| (child, set_at.get(&child).copied())).collect();
    let changed: HashSet<ChildId> =
        now.iter().filter(|(child, at)| schedules.get(child) != Some(at)).map(|(child, _)| *child).collect();
    if !changed.is_empty() {
        hub.schedules_changed(&changed);
    }
    *schedules = now;
}
