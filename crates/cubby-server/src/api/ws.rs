//! `GET /api/v1/ws`: a device's live connection. The server pushes the device's queue in
//! order (then each new message as it is stored); the device acknowledges by id, and what
//! it has not acknowledged is sent again on its next connection (at least once). Devices
//! may also send over the socket: sends are checked and stored in the order they arrive,
//! pipelined, and each is answered once durably stored.
//!
//! Frames are JSON text. From the device:
//! `{"type":"ack","ids":[…]}`, `{"type":"send","ref":N,"message":"…","welcome":"…","urgent":false}`.
//! From the server: `{"type":"message",…}`, `{"type":"sent","ref":N,"ids":[…]}`,
//! `{"type":"error","ref":N,"code":"…","message":"…"}`, `{"type":"key_packages_low",…}`,
//! `{"type":"wipe"}`; a revoked device's connection is closed with code 4001.

use std::collections::{BTreeSet, VecDeque};
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use axum::extract::State;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt as _, StreamExt as _};
use cubby_core::quiet_hours::QuietHours;
use cubby_core::{ChildId, DeviceId, FamilyId};
use cubby_store::{DeviceRow, QueuedMessage};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as SocketError, Message, Utf8Bytes};
use serde::{Deserialize, Serialize};

use super::messaging::{SendMessage, outgoing};
use crate::delivery::hub::{Delivered, Mailbox, Pushed};
use crate::delivery::quiet_hours::{Decision, decide, release_in};
use crate::delivery::sender_facts::SenderFacts;
use crate::delivery::{Delivery, IN_FLIGHT, Submitted, TOP_UP_BELOW};
use crate::http::device_auth::Device;
use crate::http::websocket::{Upgrade, WebSocket};
use crate::http::{ApiError, AppState, ErrorBody};
use crate::vault::now_millis;

const READ_BATCH: i64 = 128;
/// Sends of one connection awaiting their answer before the server stops reading its frames.
const PENDING_SENDS: usize = 256;
pub const CLOSE_REVOKED: u16 = 4001;
/// tungstenite's read buffer, which an idle toy keeps (filled with zeros, so resident) for
/// as long as it is connected; it grows to hold a larger frame. A read takes at most this
/// much, but from what the thread's buffer took from the socket at once, not from the
/// socket itself (see `http::websocket`): a 430-byte send costs seven copies, not seven
/// system calls. It was 512 bytes when tungstenite read the socket itself.
const READ_BUFFER: usize = 64;
/// A wake-up means another device claimed one of this device's KeyPackages and left few;
/// the count is looked at no more often than this, so that a run of claims brings the
/// device one report (and one top-up), not one each.
const KEY_PACKAGE_CHECK_EVERY_SECS: u32 = 30;

/// Seconds on tokio's clock since the first call: what a connection keeps of a moment.
fn clock_secs() -> u32 {
    static START: OnceLock<Instant> = OnceLock::new();
    u32::try_from(START.get_or_init(Instant::now).elapsed().as_secs()).unwrap_or(u32::MAX)
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum FromDevice {
    Ack { ids: Vec<i64> },
    Send {
        #[serde(rename = "ref")]
        reference: u64,
        #[serde(flatten)]
        body: SendMessage,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToDevice<'a> {
    Message {
        id: i64,
        group_id: String,
        kind: &'static str,
        sender: Option<String>,
        urgent: bool,
        sent_at: i64,
        data: String,
    },
    Sent {
        #[serde(rename = "ref")]
        reference: u64,
        ids: Vec<i64>,
    },
    Error {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
        code: &'a str,
        message: String,
    },
    KeyPackagesLow {
        available: i64,
        top_up_below: i64,
    },
    Wipe,
}

fn frame(message: &ToDevice<'_>) -> Message {
    Message::Text(serde_json::to_string(message).unwrap_or_default().into())
}

fn error_frame(reference: Option<u64>, error: &ApiError, text: String) -> Message {
    frame(&ToDevice::Error { reference, code: error.code().as_str(), message: text })
}

/// Why send `reference` was refused.
fn refusal(reference: u64, error: &ApiError) -> Message {
    error_frame(Some(reference), error, error.message().to_owned())
}

/// Open the device's live connection (WebSocket).
#[utoipa::path(get, path = "/api/v1/ws", tag = "messaging",
    responses(
        (status = 101, description = "Switching to WebSocket"),
        (status = 401, description = "Not signed in as a device", body = ErrorBody),
        (status = 426, description = "upgrade_required: not a WebSocket request (HTTP/1.1)", body = ErrorBody),
    ))]
pub async fn connect(State(state): State<AppState>, Device(device): Device, upgrade: Upgrade) -> Response {
    let limit = state.config.max_body_bytes;
    let config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit)).read_buffer_size(READ_BUFFER);
    // Only what the connection uses is moved into its task, which lives as long as it does.
    let delivery = state.delivery.clone();
    // The connection gets a task of its own rather than running inside the upgrade's task,
    // whose state (the callback, the socket's configuration) an idle toy would otherwise
    // keep for as long as it is connected: 344 bytes each.
    upgrade.on_upgrade(config, move |socket| {
        let wipe_requested = device.wipe_requested_at.is_some();
        tokio::spawn(Connection::new(delivery, &device, socket).serve(wipe_requested));
        std::future::ready(())
    })
}

/// A device's live connection. Its task's future holds this (the socket too) for as long as
/// the toy is connected, and tokio rounds a task up to 128 bytes: at 536 bytes of future or
/// less (512 now), the task takes 640 bytes, not 768. So what most toys never use is boxed,
/// and times are kept in four bytes.
struct Connection {
    delivery: Arc<Delivery>,
    device: Served,
    socket: WebSocket,
    /// Where this node's writer and requests reach the connection; it leaves the hub when
    /// the connection is dropped.
    mailbox: Arc<Mailbox>,
    /// A child's toy with quiet hours: read again when the node's polls say they changed.
    quiet: Option<Box<Quiet>>,
    /// Highest message id pushed on this connection.
    cursor: i64,
    in_flight: BTreeSet<i64>,
    /// The latest acknowledgement on its way to the database: a rescan of the queue waits
    /// for it, or it would push again what the device has just acknowledged.
    last_ack: Option<crate::delivery::group_commit::AckWritten>,
    /// Whether the queue may hold something not yet pushed (a wake-up, a poll, room freed).
    look_again: bool,
    /// The last read of the queue reached its end with room to spare: a message the writer
    /// hands over live with a higher id can go straight out. Otherwise it is read.
    caught_up: bool,
    /// No KeyPackage count before this second of [`clock_secs`].
    key_packages_next_check: u32,
    /// Frames written to the socket's buffer but not yet to the network: see [`Self::emit`].
    unflushed: bool,
    /// Boxed, and made at the first send: most toys mostly listen.
    sending: Option<Box<Sending>>,
}

/// A child's quiet hours as a connection applies them.
struct Quiet {
    schedule: QuietHours,
    /// When the quiet window holding messages back ends (ms), if one does.
    held_until: Option<i64>,
    /// The timer for that moment, and the moment it was set for: only while a window holds.
    release: Option<(i64, Pin<Box<Sleep>>)>,
}

impl Quiet {
    fn boxed(schedule: Option<QuietHours>) -> Option<Box<Self>> {
        schedule.map(|schedule| Box::new(Self { schedule, held_until: None, release: None }))
    }

    /// Whether the window holds `message` back now; if so, its end is noted.
    fn holds(&mut self, message: &QueuedMessage, now: i64) -> bool {
        let Decision::HoldUntil(until) = decide(Some(&self.schedule), message, now) else { return false };
        self.held_until = Some(self.held_until.map_or(until, |held| held.min(until)));
        true
    }

    /// Sets the timer for the end of the window holding messages back, if one does.
    fn arm_release(&mut self) {
        match self.held_until {
            None => self.release = None,
            Some(until) if self.release.as_ref().is_none_or(|(set_for, _)| *set_for != until) => {
                let sleep = tokio::time::sleep(release_in(until, now_millis()));
                self.release = Some((until, Box::pin(sleep)));
            }
            Some(_) => {}
        }
    }
}

/// The device a connection serves: all it keeps of the device's row while it listens. The
/// row (its key, its sealed name, …) would cost each connected toy about 300 bytes more.
struct Served {
    id: DeviceId,
    family: FamilyId,
    child: Option<ChildId>,
}

/// A connection's sends: the device's row and what a send needs to know besides the message
/// (kept for a while), and the sends checked and queued for storage, oldest first, each
/// answered once stored. The writer answers this connection's task directly: no task or
/// channel in between.
struct Sending {
    /// Read again at the connection's first send, so a device revoked since is refused.
    device: DeviceRow,
    facts: SenderFacts,
    /// Answered in the order sent; a send refused by the checks waits its turn too.
    awaiting: VecDeque<(u64, Result<Submitted, Message>)>,
}

impl Sending {
    /// A connection's sends, begun at its first with the device's row read again: `None`
    /// for a device revoked since it connected.
    async fn begin(delivery: &Delivery, device: DeviceId) -> Result<Option<Box<Self>>, ApiError> {
        let row = delivery.store().device(device).await?.filter(|row| row.revoked_at.is_none());
        Ok(row.map(|device| Box::new(Self { device, facts: SenderFacts::cached(), awaiting: VecDeque::new() })))
    }

    /// The oldest send, once the writer has stored or refused it (at once, for one the
    /// checks refused).
    fn poll_written(&mut self, cx: &mut Context<'_>) -> Poll<(u64, Result<Submitted, Message>)> {
        let Some((_, oldest)) = self.awaiting.front_mut() else { return Poll::Pending };
        if let Ok(submitted) = oldest {
            std::task::ready!(submitted.poll_written(cx));
        }
        self.awaiting.pop_front().map_or(Poll::Pending, Poll::Ready)
    }
}

/// What woke the connection.
enum Event {
    Frame(Option<Result<Message, SocketError>>),
    Delivered(Delivered),
    Written(u64, Result<Submitted, Message>),
    /// The quiet window ended: what it held goes out now.
    Released,
}

impl Connection {
    fn new(delivery: Arc<Delivery>, device: &DeviceRow, socket: WebSocket) -> Self {
        let device = Served { id: device.id, family: device.family_id, child: device.child_id };
        let mailbox = delivery.hub().subscribe(device.id, device.child);
        Self { delivery, device, socket, mailbox, quiet: None, cursor: 0, in_flight: BTreeSet::new(), last_ack: None, look_again: true, caught_up: false, key_packages_next_check: 0, unflushed: false, sending: None }
    }

    /// The connection's task, which lives as long as the connection and holds its future:
    /// most of what an idle toy costs. It is an async block, not an async fn, because an
    /// async fn keeps a second copy of its arguments (here the connection with its socket,
    /// 472 bytes) for as long as it runs.
    #[allow(clippy::manual_async_fn)] // deliberately not an async fn: see above
    fn serve(mut self, wipe_requested: bool) -> impl Future<Output = ()> + Send + 'static {
        async move {
            if let Err(error) = self.run(wipe_requested).await {
                tracing::debug!(%error, "device connection ended");
            }
        }
    }

    /// A future is as large as its largest await, and this one lives as long as the
    /// connection. So it only waits here, in place (see [`Self::poll_event`]), and all it
    /// does between waits is boxed: reading the queue, handling an event. Those take their
    /// room (up to 1.8 KB, for a send) only while they run.
    async fn run(&mut self, wipe_requested: bool) -> Result<(), SocketError> {
        Box::pin(self.start(wipe_requested)).await?;
        loop {
            // The queue is read when something may have changed, not after every frame.
            if std::mem::take(&mut self.look_again) {
                Box::pin(self.push_queue()).await?;
            }
            if std::mem::take(&mut self.unflushed) {
                self.socket.flush().await?;
            }
            if let Some(quiet) = self.quiet.as_mut() {
                quiet.arm_release();
            }
            let event = std::future::poll_fn(|cx| self.poll_event(cx)).await;
            if Box::pin(self.on_event(event)).await?.is_break() {
                return Ok(());
            }
        }
    }

    async fn start(&mut self, wipe_requested: bool) -> Result<(), SocketError> {
        if wipe_requested {
            self.socket.send(frame(&ToDevice::Wipe)).await?;
        }
        self.report_key_packages().await?;
        self.quiet = Quiet::boxed(self.delivery.schedule_of(self.device.family, self.device.child).await);
        Ok(())
    }

    /// Handles what woke the connection; `Break` when the connection is over.
    async fn on_event(&mut self, event: Event) -> Result<ControlFlow<()>, SocketError> {
        match event {
            Event::Frame(None) => return Ok(ControlFlow::Break(())),
            Event::Frame(Some(incoming)) => match incoming? {
                Message::Text(text) => return self.on_frame(text.as_str()).await,
                Message::Binary(_) => {
                    let error = ApiError::new(cubby_core::ErrorCode::MalformedJson, "");
                    self.socket.send(error_frame(None, &error, "frames are JSON text".to_owned())).await?;
                }
                Message::Close(_) => return Ok(ControlFlow::Break(())),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            },
            Event::Delivered(delivered) => {
                if delivered.revoked {
                    close_revoked(&mut self.socket).await?;
                    return Ok(ControlFlow::Break(()));
                }
                // Pushes were dropped for want of room: they are in the queue.
                if delivered.overflowed {
                    self.fall_behind();
                }
                for pushed in &delivered.pushes {
                    self.on_pushed(pushed).await?;
                }
                if delivered.woken {
                    self.look_again = true;
                    self.report_key_packages().await?;
                }
                // The node's polls (delivery::polls): revocations made on another node come
                // as `revoked`, quiet hours set or lifted anywhere as `schedule_changed`.
                if delivered.schedule_changed {
                    let schedule = self.delivery.schedule_of(self.device.family, self.device.child).await;
                    // The queue is read again under the new schedule: what the old one
                    // held back may go now; what the new one holds stays queued.
                    if schedule.as_ref() != self.quiet.as_ref().map(|quiet| &quiet.schedule) {
                        self.quiet = Quiet::boxed(schedule);
                        self.rescan();
                    }
                }
                if delivered.rescan {
                    self.rescan();
                }
            }
            Event::Written(reference, send) => {
                self.answer(reference, send).await?;
                // Answers that are ready too go out in the same write.
                while let Some((reference, send)) = self.ready_written() {
                    self.answer(reference, send).await?;
                }
            }
            Event::Released => self.rescan(),
        }
        Ok(ControlFlow::Continue(()))
    }

    /// What the connection waits for, polled in place: the wait holds only references, so
    /// an idle toy's task is little more than the connection and its socket (a `select!`
    /// over these futures took 792 bytes of it). The writer's work comes first: the mailbox
    /// is taken whole and ready answers are drained together, so neither starves the socket.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        if let Poll::Ready(delivered) = self.mailbox.poll_take(cx) {
            return Poll::Ready(Event::Delivered(delivered));
        }
        if let Some(sending) = self.sending.as_mut() {
            if let Poll::Ready((reference, send)) = sending.poll_written(cx) {
                return Poll::Ready(Event::Written(reference, send));
            }
            // Too many sends awaiting their answer: their answers first (back-pressure).
            if sending.awaiting.len() >= PENDING_SENDS {
                return self.poll_release(cx);
            }
        }
        if let Poll::Ready(frame) = self.socket.poll_next_unpin(cx) {
            return Poll::Ready(Event::Frame(frame));
        }
        self.poll_release(cx)
    }

    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        let Some(quiet) = self.quiet.as_mut() else { return Poll::Pending };
        let Some((_, release)) = quiet.release.as_mut() else { return Poll::Pending };
        std::task::ready!(release.as_mut().poll(cx));
        quiet.release = None;
        Poll::Ready(Event::Released)
    }

    /// The next answer, if the writer has already stored or refused its send.
    fn ready_written(&mut self) -> Option<(u64, Result<Submitted, Message>)> {
        let sending = self.sending.as_mut()?;
        match sending.poll_written(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(written) => Some(written),
            Poll::Pending => None,
        }
    }

    /// Handles a frame from the device; `Break` when the connection is over.
    async fn on_frame(&mut self, text: &str) -> Result<ControlFlow<()>, SocketError> {
        match serde_json::from_str::<FromDevice>(text) {
            Ok(FromDevice::Ack { ids }) => {
                // Room in a full budget: what waited behind it can go out.
                self.look_again |= self.in_flight.len() >= IN_FLIGHT;
                for id in &ids {
                    self.in_flight.remove(id);
                }
                match self.delivery.acknowledge(self.device.id, ids).await {
                    Ok(written) => self.last_ack = Some(written),
                    Err(error) => {
                        self.socket.send(error_frame(None, &error, "the acknowledgement was not stored; send it again".to_owned())).await?;
                    }
                }
            }
            Ok(FromDevice::Send { reference, body }) => {
                let mut sending = match self.sending.take() {
                    Some(sending) => sending,
                    None => match Sending::begin(&self.delivery, self.device.id).await {
                        Ok(Some(sending)) => sending,
                        Ok(None) => {
                            close_revoked(&mut self.socket).await?;
                            return Ok(ControlFlow::Break(()));
                        }
                        // The connection's first send: it has no earlier answer to wait behind.
                        Err(error) => {
                            self.emit(refusal(reference, &error)).await?;
                            return Ok(ControlFlow::Continue(()));
                        }
                    },
                };
                // Checked and queued for the group commit before the previous send is
                // durable (pipelined), in the order sent; answered once stored.
                let submitted = match outgoing(body) {
                    Ok(outgoing) => self.delivery.submit(&sending.device, outgoing, &mut sending.facts).await,
                    Err(error) => Err(error),
                };
                sending.awaiting.push_back((reference, submitted.map_err(|error| refusal(reference, &error))));
                self.sending = Some(sending);
            }
            Err(error) => {
                let code = ApiError::new(cubby_core::ErrorCode::MalformedJson, "");
                self.socket.send(error_frame(None, &code, format!("not a frame this server understands: {error}"))).await?;
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// A message the writer has just stored for this device: sent at once if nothing
    /// queued before it is still waiting, else left to the next read of the queue.
    async fn on_pushed(&mut self, pushed: &Pushed) -> Result<(), SocketError> {
        let message = &pushed.message;
        if message.id <= self.cursor {
            return Ok(()); // read from the queue already
        }
        if !self.caught_up || self.look_again || self.in_flight.len() >= IN_FLIGHT {
            self.fall_behind();
            return Ok(());
        }
        self.cursor = message.id;
        if self.quiet.as_mut().is_some_and(|quiet| quiet.holds(message, now_millis())) {
            return Ok(());
        }
        if self.in_flight.insert(message.id) {
            self.emit(Message::Text(pushed.frame(message_text))).await?;
        }
        Ok(())
    }

    /// Answers a send the writer has stored or refused (or one the checks refused).
    async fn answer(&mut self, reference: u64, send: Result<Submitted, Message>) -> Result<(), SocketError> {
        let reply = match send {
            Ok(submitted) => match submitted.settle(&self.delivery).await {
                Ok(ids) => frame(&ToDevice::Sent { reference, ids }),
                Err(error) => refusal(reference, &error),
            },
            Err(refused) => refused,
        };
        self.emit(reply).await
    }

    /// Writes a frame to the socket's buffer; the loop sends what was buffered before it
    /// waits again. A burst of pushes or answers then costs one system call and a few TCP
    /// segments instead of one of each per frame, for the server and for the toy.
    async fn emit(&mut self, frame: Message) -> Result<(), SocketError> {
        self.unflushed = true;
        self.socket.feed(frame).await
    }

    /// Reads the whole queue again, from the start, before the next wait.
    fn rescan(&mut self) {
        self.cursor = 0;
        self.look_again = true;
    }

    fn fall_behind(&mut self) {
        self.caught_up = false;
        self.look_again = true;
    }

    /// Pushes what is queued for the device, up to the in-flight budget. During a child's
    /// quiet hours only guardians' urgent messages (and the group changes that keep the
    /// toy's conversations consistent) go out; the rest stays queued.
    async fn push_queue(&mut self) -> Result<(), SocketError> {
        if self.cursor == 0
            && let Some(written) = self.last_ack.take()
        {
            let _ = written.await;
        }
        let now = now_millis();
        if let Some(quiet) = self.quiet.as_mut() {
            quiet.held_until = None;
        }
        self.caught_up = false;
        while self.in_flight.len() < IN_FLIGHT {
            let room = i64::try_from(IN_FLIGHT - self.in_flight.len()).unwrap_or(READ_BATCH).min(READ_BATCH);
            let batch = match self.delivery.queued(self.device.id, self.cursor, room).await {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(error = ?error, "reading a device queue failed; retrying at the next poll");
                    return Ok(());
                }
            };
            let full = batch.len() as i64 == room;
            for message in batch {
                self.cursor = self.cursor.max(message.id);
                if self.quiet.as_mut().is_some_and(|quiet| quiet.holds(&message, now)) {
                    continue;
                }
                if self.in_flight.insert(message.id) {
                    self.emit(message_frame(&message)).await?;
                }
            }
            if !full {
                self.caught_up = self.in_flight.len() < IN_FLIGHT;
                break;
            }
        }
        Ok(())
    }

    async fn report_key_packages(&mut self) -> Result<(), SocketError> {
        let now = clock_secs();
        if now < self.key_packages_next_check {
            return Ok(());
        }
        self.key_packages_next_check = now.saturating_add(KEY_PACKAGE_CHECK_EVERY_SECS);
        if let Ok(available) = self.delivery.key_packages_left(self.device.id).await
            && available < TOP_UP_BELOW
        {
            self.socket.send(frame(&ToDevice::KeyPackagesLow { available, top_up_below: TOP_UP_BELOW })).await?;
        }
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.delivery.hub().unsubscribe(self.device.id, &self.mailbox);
    }
}

fn message_frame(message: &QueuedMessage) -> Message {
    Message::Text(message_text(message))
}

fn message_text(message: &QueuedMessage) -> Utf8Bytes {
    let frame = ToDevice::Message {
        id: message.id,
        group_id: BASE64.encode(&message.group_id),
        kind: message.kind.as_str(),
        sender: message.sender.map(|s| s.to_string()),
        urgent: message.urgent,
        sent_at: message.created_at,
        data: BASE64.encode(&message.payload),
    };
    serde_json::to_string(&frame).unwrap_or_default().into()
}

async fn close_revoked(socket: &mut WebSocket) -> Result<(), SocketError> {
    socket
        .send(Message::Close(Some(CloseFrame { code: CLOSE_REVOKED.into(), reason: "this device was revoked".into() })))
        .await
}


#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `serve` returns, without calling it.
    fn returned_size<R>(_: impl FnOnce(Connection, bool) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// An idle toy's task is its connection's future with tokio's header and trailer,
    /// rounded up to 128 bytes: a future of 536 bytes takes a task of 640 (heaptrack), one
    /// of 640 took 768 (see `Connection`).
    #[test]
    fn a_connection_s_future_fits_a_task_of_640_bytes() {
        let size = returned_size(|connection, wipe_requested| connection.serve(wipe_requested));
        assert!(size <= 536, "a connection's future is {size} bytes");
    }
}
