//! The live side of delivery: which devices hold an open WebSocket on this node, and how
//! to wake them (new messages) or close them (revocation). The queue itself is in the
//! store; a wake-up only says "look again", so a lost one costs a poll interval, never a
//! message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cubby_core::DeviceId;
use tokio::sync::watch;

/// What a connection is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Look at the queue again.
    Wake(u64),
    /// The device was revoked: close the connection now.
    Revoked,
}

#[derive(Default)]
pub struct Hub {
    devices: Mutex<HashMap<DeviceId, watch::Sender<Signal>>>,
}

/// A connection's subscription; dropping the last one forgets the device.
pub struct Subscription {
    pub device: DeviceId,
    pub signals: watch::Receiver<Signal>,
    hub: Arc<Hub>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut devices) = self.hub.devices.lock() {
            // Only this receiver left (it is dropped just after): nobody listens any more.
            if devices.get(&self.device).is_some_and(|tx| tx.receiver_count() <= 1) {
                devices.remove(&self.device);
            }
        }
    }
}

impl Hub {
    pub fn subscribe(self: &Arc<Self>, device: DeviceId) -> Subscription {
        let signals = match self.devices.lock() {
            Ok(mut devices) => devices.entry(device).or_insert_with(|| watch::channel(Signal::Wake(0)).0).subscribe(),
            // A poisoned map only loses live wake-ups; the connection still polls.
            Err(_) => watch::channel(Signal::Wake(0)).1,
        };
        Subscription { device, signals, hub: self.clone() }
    }

    /// Wakes every connection of these devices on this node.
    pub fn wake(&self, devices: impl IntoIterator<Item = DeviceId>) {
        let Ok(map) = self.devices.lock() else { return };
        for device in devices {
            if let Some(tx) = map.get(&device) {
                tx.send_modify(|signal| {
                    if let Signal::Wake(n) = signal {
                        *n = n.wrapping_add(1);
                    }
                });
            }
        }
    }

    /// Closes every connection of a revoked device on this node.
    pub fn revoke(&self, device: DeviceId) {
        if let Ok(map) = self.devices.lock()
            && let Some(tx) = map.get(&device)
        {
            tx.send_replace(Signal::Revoked);
        }
    }
}
