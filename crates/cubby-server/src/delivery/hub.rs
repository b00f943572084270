//! The live side of delivery: which devices hold an open WebSocket on this node, and how
//! to reach them: the messages this node has just stored for them, a wake-up (look at the
//! queue again) or a close (revocation). The queue itself is in the store; what a
//! connection cannot take live (it is behind, or its channel overflowed) it reads from the
//! queue, so a lost push or wake-up costs a read or a poll interval, never a message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::ws::Utf8Bytes;
use cubby_core::DeviceId;
use cubby_store::QueuedMessage;
use tokio::sync::{broadcast, watch};

/// Messages held for one device's connections before the slowest is told it lagged (and
/// reads its queue instead). Small: it is allocated for every connected device.
const PUSHES_HELD: usize = 16;

/// What a connection is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Look at the queue again.
    Wake(u64),
    /// The device was revoked: close the connection now.
    Revoked,
}

/// A message just stored, as its recipients' connections send it: one copy, and one
/// encoded frame, for all of them.
pub struct Pushed {
    pub message: QueuedMessage,
    frame: OnceLock<Utf8Bytes>,
}

impl Pushed {
    pub fn new(message: QueuedMessage) -> Self {
        Self { message, frame: OnceLock::new() }
    }

    /// The frame, encoded by the first connection that sends it.
    pub fn frame(&self, encode: impl FnOnce(&QueuedMessage) -> Utf8Bytes) -> Utf8Bytes {
        self.frame.get_or_init(|| encode(&self.message)).clone()
    }
}

struct Listeners {
    signals: watch::Sender<Signal>,
    pushes: broadcast::Sender<Arc<Pushed>>,
}

#[derive(Default)]
pub struct Hub {
    devices: Mutex<HashMap<DeviceId, Listeners>>,
}

/// A connection's subscription; dropping the last one forgets the device.
pub struct Subscription {
    pub device: DeviceId,
    pub signals: watch::Receiver<Signal>,
    pub pushes: broadcast::Receiver<Arc<Pushed>>,
    hub: Arc<Hub>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut devices) = self.hub.devices.lock() {
            // Only this receiver left (it is dropped just after): nobody listens any more.
            if devices.get(&self.device).is_some_and(|l| l.signals.receiver_count() <= 1) {
                devices.remove(&self.device);
            }
        }
    }
}

impl Hub {
    pub fn subscribe(self: &Arc<Self>, device: DeviceId) -> Subscription {
        let (signals, pushes) = match self.devices.lock() {
            Ok(mut devices) => {
                let listeners = devices.entry(device).or_insert_with(|| Listeners {
                    signals: watch::channel(Signal::Wake(0)).0,
                    pushes: broadcast::channel(PUSHES_HELD).0,
                });
                (listeners.signals.subscribe(), listeners.pushes.subscribe())
            }
            // A poisoned map only loses live wake-ups and pushes; the connection still polls.
            Err(_) => (watch::channel(Signal::Wake(0)).1, broadcast::channel(1).1),
        };
        Subscription { device, signals, pushes, hub: self.clone() }
    }

    /// Wakes every connection of these devices on this node.
    pub fn wake(&self, devices: impl IntoIterator<Item = DeviceId>) {
        let Ok(map) = self.devices.lock() else { return };
        for device in devices {
            if let Some(listeners) = map.get(&device) {
                listeners.signals.send_modify(|signal| {
                    if let Signal::Wake(n) = signal {
                        *n = n.wrapping_add(1);
                    }
                });
            }
        }
    }

    /// Hands a message just stored to every connection of these devices on this node.
    /// Never waits: a connection that falls behind is told it lagged.
    pub fn push(&self, message: &Arc<Pushed>, devices: &[DeviceId]) {
        let Ok(map) = self.devices.lock() else { return };
        for device in devices {
            if let Some(listeners) = map.get(device) {
                let _ = listeners.pushes.send(message.clone());
            }
        }
    }

    /// Closes every connection of a revoked device on this node.
    pub fn revoke(&self, device: DeviceId) {
        if let Ok(map) = self.devices.lock()
            && let Some(listeners) = map.get(&device)
        {
            listeners.signals.send_replace(Signal::Revoked);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cubby_store::MessageKind;
    use tokio::sync::broadcast::error::TryRecvError;

    fn pushed(id: i64) -> Arc<Pushed> {
        Arc::new(Pushed::new(QueuedMessage {
            id,
            group_id: vec![1],
            sender: None,
            kind: MessageKind::Application,
            payload: vec![0; 8],
            urgent: false,
            created_at: 0,
        }))
    }

    #[test]
    fn pushes_reach_only_their_recipients_and_a_slow_one_is_told_it_lagged() {
        let hub = Arc::new(Hub::default());
        let (to, other) = (DeviceId::random(), DeviceId::random());
        let mut recipient = hub.subscribe(to);
        let mut bystander = hub.subscribe(other);
        let first = pushed(1);
        hub.push(&first, &[to]);
        let got = recipient.pushes.try_recv().ok().map(|p| p.message.id);
        assert_eq!(got, Some(1));
        assert!(matches!(bystander.pushes.try_recv(), Err(TryRecvError::Empty)));
        // One encoding for every connection that sends it.
        let a = first.frame(|m| format!("frame {}", m.id).into());
        let b = first.frame(|_| "encoded again".into());
        assert_eq!((a.as_str(), b.as_str()), ("frame 1", "frame 1"));
        // More than it holds: the connection hears it lagged (and reads its queue).
        for id in 2..=(PUSHES_HELD as i64 + 5) {
            hub.push(&pushed(id), &[to]);
        }
        assert!(matches!(recipient.pushes.try_recv(), Err(TryRecvError::Lagged(_))));
        // A device with no connection here is skipped, and forgetting works.
        drop(bystander);
        hub.push(&pushed(99), &[other]);
        assert!(hub.devices.lock().is_ok_and(|d| !d.contains_key(&other)));
    }
}
