//! Revocations made on another node: a guardian's request reached another node, which
//! closed the connections it holds, but this node's connections of the device hear of it
//! only through the database. One query per 500 connected devices at each poll finds the
//! revoked and the deleted among them, instead of one query per connection: an idle toy
//! costs the database nothing between polls.

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use cubby_store::Store;
use tokio::time::MissedTickBehavior;

use super::POLL_EVERY;
use super::hub::Hub;

/// Starts the watch; it ends with the hub (when the server stops).
pub fn watch(hub: &Arc<Hub>, store: Arc<dyn Store>) {
    tokio::spawn(close_revoked_elsewhere(Arc::downgrade(hub), store));
}

async fn close_revoked_elsewhere(hub: Weak<Hub>, store: Arc<dyn Store>) {
    let mut poll = tokio::time::interval(POLL_EVERY);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        poll.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        let connected = hub.connected();
        if connected.is_empty() {
            continue;
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
}
