//! The live side of delivery: which devices hold an open WebSocket on this node, and how
//! to reach them: the messages this node has just stored for them, a wake-up (look at the
//! queue and the KeyPackages again) or a close (revocation), all through one mailbox per
//! connection. The queue itself is in the store; what a connection cannot take live (it is
//! behind, or its mailbox overflowed) it reads from the queue, so a lost push or wake-up
//! costs a read or a poll interval, never a message.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio_tungstenite::tungstenite::Utf8Bytes;
use cubby_core::{ChildId, DeviceId};
use cubby_store::QueuedMessage;
use smallvec::SmallVec;

/// Pushes a connection's mailbox holds before it overflows (and the connection reads its
/// queue instead): as many as the connection may have in flight. The writer hands over a
/// whole batch at once, so a busy pair's burst is this large; an idle mailbox holds no
/// buffer at all.
const PUSHES_HELD: usize = super::IN_FLIGHT;

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

/// What one connection has been handed and not yet taken: the writer and the other
/// requests put things in without waiting, the connection takes them all at once. One
/// mutex per idle toy, which also holds the waker of its waiting connection: no `Notify`
/// (its waiter lives in the connection's future while it waits) and no watch channel (360
/// bytes more each). With its `Arc`, 96 bytes, one of mimalloc's sizes (it took 112 when
/// the pushes were a `VecDeque`).
pub struct Mailbox {
    held: Mutex<Held>,
    /// A toy's child, whose quiet hours apply to it.
    child: Option<ChildId>,
}

#[derive(Default)]
struct Held {
    /// Taken whole, in the order put: a `Vec` does, in 8 bytes less than a `VecDeque`.
    pushes: Vec<Arc<Pushed>>,
    overflowed: bool,
    woken: bool,
    revoked: bool,
    schedule_changed: bool,
    rescan: bool,
    /// The connection's task, waiting for something to be put in.
    waiting: Option<Waker>,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.pushes.is_empty() && !self.overflowed && !self.woken && !self.revoked && !self.schedule_changed && !self.rescan
    }
}

/// What a connection found in its mailbox.
pub struct Delivered {
    pub pushes: Vec<Arc<Pushed>>,
    /// Pushes were dropped for want of room: they are in the queue.
    pub overflowed: bool,
    /// Look at the queue and the KeyPackages again.
    pub woken: bool,
    /// The device was revoked: close the connection now.
    pub revoked: bool,
    /// The child's quiet hours may have changed: read them again.
    pub schedule_changed: bool,
    /// Read the whole queue again (see `delivery::polls`).
    pub rescan: bool,
}

impl Mailbox {
    fn put(&self, pushed: &Arc<Pushed>) {
        self.change(|held| {
            if held.pushes.len() >= PUSHES_HELD {
                held.pushes.clear();
                held.overflowed = true;
            } else if !held.overflowed {
                held.pushes.push(pushed.clone());
            }
        });
    }

    fn change(&self, change: impl FnOnce(&mut Held)) {
        let waiting = {
            let mut held = self.lock();
            change(&mut held);
            held.waiting.take()
        };
        // Woken outside the lock: the connection takes it as soon as it runs.
        if let Some(waker) = waiting {
            waker.wake();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes all there is, or, if there is nothing, has the task woken when something is
    /// put in (the check and the waker are under the one lock: nothing put is overlooked).
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Delivered> {
        let mut held = self.lock();
        if held.is_empty() {
            if !held.waiting.as_ref().is_some_and(|waiting| waiting.will_wake(cx.waker())) {
                held.waiting = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        Poll::Ready(Delivered {
            pushes: std::mem::take(&mut held.pushes),
            overflowed: std::mem::take(&mut held.overflowed),
            woken: std::mem::take(&mut held.woken),
            // Stays set: a revoked device's connection is told so at every take.
            revoked: held.revoked,
            schedule_changed: std::mem::take(&mut held.schedule_changed),
            rescan: std::mem::take(&mut held.rescan),
        })
    }

    /// Waits for something to be put in, then takes all there is.
    #[cfg(test)]
    async fn take(&self) -> Delivered {
        std::future::poll_fn(|cx| self.poll_take(cx)).await
    }
}

#[derive(Default)]
pub struct Hub {
    /// Each device with a connection on this node, and its connections' mailboxes: nearly
    /// always one, kept in the map's entry rather than in an allocation of its own. An
    /// entry is 48 bytes (72 with the child, a slice hash and a `Vec` in it).
    devices: Mutex<HashMap<DeviceId, SmallVec<[Arc<Mailbox>; 1]>>>,
}

/// Which slice of [`Hub::rescan`] a device falls in: its id is random, so its bits spread
/// the devices evenly with no hashing (under the map's lock, at every slice).
fn slice_of(device: &DeviceId, slices: u64) -> u64 {
    (device.as_u128() as u64) % slices
}

impl Hub {
    /// A new connection's mailbox. The connection hands it back with [`Self::unsubscribe`]
    /// when it ends (its `Drop`); a guard here would keep the device id and the hub a second
    /// time in every connection's task.
    pub fn subscribe(&self, device: DeviceId, child: Option<ChildId>) -> Arc<Mailbox> {
        let mailbox = Arc::new(Mailbox { held: Mutex::default(), child });
        // A poisoned map only loses live wake-ups and pushes; the connection still polls.
        if let Ok(mut devices) = self.devices.lock() {
            devices.entry(device).or_default().push(mailbox.clone());
        }
        mailbox
    }

    /// Takes a connection's mailbox out of the hub; the device's last one forgets the device.
    pub fn unsubscribe(&self, device: DeviceId, mailbox: &Arc<Mailbox>) {
        if let Ok(mut devices) = self.devices.lock()
            && let Some(mailboxes) = devices.get_mut(&device)
        {
            mailboxes.retain(|held| !Arc::ptr_eq(held, mailbox));
            if mailboxes.is_empty() {
                devices.remove(&device);
            }
        }
    }

    /// The devices with a connection on this node.
    pub fn connected(&self) -> Vec<DeviceId> {
        self.devices.lock().map(|devices| devices.keys().copied().collect()).unwrap_or_default()
    }

    /// The children whose toys have a connection on this node.
    pub fn connected_children(&self) -> Vec<ChildId> {
        let Ok(devices) = self.devices.lock() else { return Vec::new() };
        let children: HashSet<ChildId> = devices.values().flatten().filter_map(|mailbox| mailbox.child).collect();
        children.into_iter().collect()
    }

    /// Calls `change` on the mailbox of every connection of `device` on this node.
    fn tell(&self, device: &DeviceId, change: impl Fn(&mut Held)) {
        let Ok(map) = self.devices.lock() else { return };
        for mailbox in map.get(device).into_iter().flatten() {
            mailbox.change(&change);
        }
    }

    /// Calls `change` on the mailbox of every connection on this node that `matches`.
    fn tell_all(&self, matches: impl Fn(&DeviceId, &Mailbox) -> bool, change: impl Fn(&mut Held)) {
        let Ok(map) = self.devices.lock() else { return };
        for (device, mailboxes) in map.iter() {
            for mailbox in mailboxes.iter().filter(|mailbox| matches(device, mailbox)) {
                mailbox.change(&change);
            }
        }
    }

    /// Tells the connections of these children's toys to read their quiet hours again.
    pub fn schedules_changed(&self, children: &HashSet<ChildId>) {
        self.tell_all(
            |_, mailbox| mailbox.child.is_some_and(|child| children.contains(&child)),
            |held| held.schedule_changed = true,
        );
    }

    /// Tells one slice of this node's connections, `slice` of `slices`, to read their whole
    /// queue again: a pass over every slice reaches each connection once, and no more of
    /// them read at once than one slice.
    pub fn rescan(&self, slice: u64, slices: u64) {
        self.tell_all(|device, _| slice_of(device, slices) == slice, |held| held.rescan = true);
    }

    /// Wakes every connection of these devices on this node.
    pub fn wake(&self, devices: impl IntoIterator<Item = DeviceId>) {
        for device in devices {
            self.tell(&device, |held| held.woken = true);
        }
    }

    /// Hands a message just stored to every connection of these devices on this node.
    /// Never waits: a connection whose mailbox is full is told it overflowed.
    pub fn push(&self, message: &Arc<Pushed>, devices: &[DeviceId]) {
        let Ok(map) = self.devices.lock() else { return };
        for device in devices {
            for mailbox in map.get(device).into_iter().flatten() {
                mailbox.put(message);
            }
        }
    }

    /// Closes every connection of a revoked device on this node.
    pub fn revoke(&self, device: DeviceId) {
        self.tell(&device, |held| held.revoked = true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cubby_store::MessageKind;

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

    fn ids(delivered: &Delivered) -> Vec<i64> {
        delivered.pushes.iter().map(|p| p.message.id).collect()
    }

    #[tokio::test]
    async fn pushes_reach_only_their_recipients_and_a_full_mailbox_overflows() {
        let hub = Hub::default();
        let (to, other) = (DeviceId::random(), DeviceId::random());
        let recipient = hub.subscribe(to, None);
        let second_connection = hub.subscribe(to, None);
        let bystander = hub.subscribe(other, None);
        let first = pushed(1);
        hub.push(&first, &[to]);
        hub.push(&pushed(2), &[to]);
        // Each of the device's connections gets both, in order, taken at once.
        for connection in [&recipient, &second_connection] {
            let delivered = connection.take().await;
            assert_eq!((ids(&delivered), delivered.overflowed), (vec![1, 2], false));
        }
        let nothing = tokio::time::timeout(std::time::Duration::from_millis(20), bystander.take()).await;
        assert!(nothing.is_err(), "the bystander's mailbox stays empty");
        // One encoding for every connection that sends it.
        let a = first.frame(|m| format!("frame {}", m.id).into());
        let b = first.frame(|_| "encoded again".into());
        assert_eq!((a.as_str(), b.as_str()), ("frame 1", "frame 1"));
        // More than it holds: the connection hears it overflowed (and reads its queue);
        // what comes after the overflow is left to that read too.
        for id in 0..=(PUSHES_HELD as i64) {
            hub.push(&pushed(100 + id), &[to]);
        }
        let delivered = recipient.take().await;
        assert!(delivered.overflowed && delivered.pushes.is_empty());
        hub.push(&pushed(9_999), &[to]);
        let delivered = recipient.take().await;
        assert_eq!((ids(&delivered), delivered.overflowed), (vec![9_999], false), "after the overflow was taken, pushes resume");
        // A device with no connection here is skipped, and forgetting works.
        hub.unsubscribe(other, &bystander);
        hub.push(&pushed(99), &[other]);
        assert!(hub.devices.lock().is_ok_and(|d| !d.contains_key(&other)));
        hub.unsubscribe(to, &recipient);
        assert!(hub.devices.lock().is_ok_and(|d| d.get(&to).is_some_and(|mailboxes| mailboxes.len() == 1)));
    }

    /// What a connection would take now, without waiting.
    fn ready(mailbox: &Mailbox) -> Option<Delivered> {
        match mailbox.poll_take(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(delivered) => Some(delivered),
            Poll::Pending => None,
        }
    }

    #[test]
    fn schedule_changes_and_rescans_reach_the_right_connections() {
        let hub = Hub::default();
        let (child, other_child) = (ChildId::random(), ChildId::random());
        let toys = [hub.subscribe(DeviceId::random(), Some(child)), hub.subscribe(DeviceId::random(), Some(child))];
        let other_toy = hub.subscribe(DeviceId::random(), Some(other_child));
        let phone = hub.subscribe(DeviceId::random(), None);
        let mut children = hub.connected_children();
        children.sort();
        let mut expected = vec![child, other_child];
        expected.sort();
        assert_eq!(children, expected);

        hub.schedules_changed(&HashSet::from([child]));
        for toy in &toys {
            assert!(ready(toy).is_some_and(|d| d.schedule_changed && !d.rescan), "the child's toys read their schedule again");
        }
        assert!(ready(&other_toy).is_none() && ready(&phone).is_none(), "no one else is told");

        // A pass over the slices tells each connection once, whatever its slice.
        let everyone = [&toys[0], &toys[1], &other_toy, &phone];
        let mut told = [0; 4];
        for slice in 0..7 {
            hub.rescan(slice, 7);
            for (count, connection) in told.iter_mut().zip(everyone) {
                if let Some(delivered) = ready(connection) {
                    assert!(delivered.rescan && !delivered.schedule_changed);
                    *count += 1;
                }
            }
        }
        assert_eq!(told, [1; 4]);
    }

    #[tokio::test]
    async fn wake_ups_and_revocations_reach_every_connection_of_their_device_only() {
        let hub = Hub::default();
        let (device, other) = (DeviceId::random(), DeviceId::random());
        let (first, second, bystander) = (hub.subscribe(device, None), hub.subscribe(device, None), hub.subscribe(other, None));
        let mut connected = hub.connected();
        connected.sort();
        let mut expected = vec![device, other];
        expected.sort();
        assert_eq!(connected, expected, "each device once, however many connections it has");
        hub.wake([device]);
        hub.push(&pushed(7), &[device]);
        for connection in [&first, &second] {
            let delivered = connection.take().await;
            assert!(delivered.woken && !delivered.revoked);
            assert_eq!(ids(&delivered), vec![7], "a wake-up and a push are taken together");
        }
        hub.push(&pushed(8), &[device]);
        let delivered = first.take().await;
        assert!(!delivered.woken, "a wake-up is taken once");
        hub.revoke(device);
        let delivered = first.take().await;
        assert!(delivered.revoked);
        let delivered = second.take().await;
        assert!(delivered.revoked && delivered.pushes.len() == 1, "the second connection is told too");
        let nothing = tokio::time::timeout(std::time::Duration::from_millis(20), bystander.take()).await;
        assert!(nothing.is_err(), "another device hears nothing");
    }
}
