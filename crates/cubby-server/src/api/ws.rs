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

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::SinkExt as _;
use cubby_core::quiet_hours::QuietHours;
use cubby_store::{DeviceRow, QueuedMessage};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::messaging::{SendMessage, outgoing};
use crate::delivery::hub::Pushed;
use crate::delivery::quiet_hours::{Decision, decide, release_in};
use crate::delivery::sender_facts::SenderFacts;
use crate::delivery::{Delivery, IN_FLIGHT, POLL_EVERY, TOP_UP_BELOW};
use crate::http::device_auth::Device;
use crate::http::{ApiError, AppState, ErrorBody};
use crate::vault::now_millis;

const READ_BATCH: i64 = 128;
/// Sends accepted from one connection before the server stops reading its frames.
const PENDING_SENDS: usize = 256;
pub const CLOSE_REVOKED: u16 = 4001;
/// The socket's read buffer, which an idle toy keeps (filled with zeros, so resident) for
/// as long as it is connected: it grows to hold a larger frame. 4 KiB cost an idle toy
/// 8.7 KB in all, this 5.1 KB; relaying 318-byte messages was no slower (fewer frames per
/// read call).
const READ_BUFFER: usize = 512;
/// A wake-up may mean another device claimed one of this device's KeyPackages; the count
/// is looked at no more often than this (wake-ups come with every message).
const KEY_PACKAGE_CHECK_EVERY: Duration = Duration::from_secs(30);

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

/// Open the device's live connection (WebSocket).
#[utoipa::path(get, path = "/api/v1/ws", tag = "messaging",
    responses(
        (status = 101, description = "Switching to WebSocket"),
        (status = 401, description = "Not signed in as a device", body = ErrorBody),
    ))]
pub async fn connect(State(state): State<AppState>, Device(device): Device, upgrade: WebSocketUpgrade) -> Response {
    let limit = state.config.max_body_bytes;
    // Only what the connection uses is moved into its task, which lives as long as it does.
    let delivery = state.delivery.clone();
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        // A small read buffer that grows for large frames: the default (128 KiB allocated
        // per connection) would cost a server holding tens of thousands of idle toys gigabytes.
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| Connection::new(delivery, device).serve(socket))
}

struct Connection {
    delivery: Arc<Delivery>,
    device: DeviceRow,
    /// A child's toy: its quiet hours, re-read at every poll.
    schedule: Option<QuietHours>,
    /// When the quiet window holding messages back ends (ms), if one does.
    held_until: Option<i64>,
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
    key_packages_checked: Option<tokio::time::Instant>,
    /// Frames written to the socket's buffer but not yet to the network: see [`Self::emit`].
    unflushed: bool,
}

impl Connection {
    fn new(delivery: Arc<Delivery>, device: DeviceRow) -> Self {
        Self { delivery, device, schedule: None, held_until: None, cursor: 0, in_flight: BTreeSet::new(), last_ack: None, look_again: true, caught_up: false, key_packages_checked: None, unflushed: false }
    }

    /// The connection's task, which lives as long as the connection and holds its future:
    /// most of what an idle toy costs. It is an async block, not an async fn, because an
    /// async fn keeps a second copy of its arguments (here the connection and the socket,
    /// 744 bytes) for as long as it runs.
    #[allow(clippy::manual_async_fn)] // deliberately not an async fn: see above
    fn serve(mut self, mut socket: WebSocket) -> impl Future<Output = ()> + Send + 'static {
        async move {
            if let Err(error) = self.run(&mut socket).await {
                tracing::debug!(%error, "device connection ended");
            }
        }
    }

    /// A future is as large as its largest await, and this one waits mostly in the
    /// `select!` (768 bytes). Handling a frame would take 1,088, so it alone is boxed:
    /// it takes that memory only while it runs.
    async fn run(&mut self, socket: &mut WebSocket) -> Result<(), axum::Error> {
        let subscription = self.delivery.hub().subscribe(self.device.id);
        let mut sending: Option<SendPipeline> = None;

        if self.device.wipe_requested_at.is_some() {
            socket.send(frame(&ToDevice::Wipe)).await?;
        }
        self.report_key_packages(socket).await?;
        self.schedule = self.delivery.schedule_of(&self.device).await;
        // At a random phase: toys that connect together (all of them, after a restart)
        // would otherwise poll the database together, every interval, for good.
        let phase = POLL_EVERY.mul_f64(RandomState::new().hash_one(self.device.id) as f64 / u64::MAX as f64);
        let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + phase, POLL_EVERY);
        loop {
            // The queue is read when something may have changed, not after every frame.
            if std::mem::take(&mut self.look_again) {
                self.push_queue(socket).await?;
            }
            if std::mem::take(&mut self.unflushed) {
                socket.flush().await?;
            }
            let release = release_in(self.held_until, now_millis());
            tokio::select! {
                incoming = socket.recv() => {
                    let Some(incoming) = incoming else { return Ok(()) };
                    match incoming? {
                        Message::Text(text) => Box::pin(self.on_frame(socket, text.as_str(), &mut sending)).await?,
                        Message::Binary(_) => {
                            let error = ApiError::new(cubby_core::ErrorCode::MalformedJson, "");
                            socket.send(error_frame(None, &error, "frames are JSON text".to_owned())).await?;
                        }
                        Message::Close(_) => return Ok(()),
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
                delivered = subscription.mailbox.take() => {
                    if delivered.revoked {
                        return close_revoked(socket).await;
                    }
                    // Pushes were dropped for want of room: they are in the queue.
                    if delivered.overflowed {
                        self.fall_behind();
                    }
                    for pushed in &delivered.pushes {
                        self.on_pushed(socket, pushed).await?;
                    }
                    if delivered.woken {
                        self.look_again = true;
                        self.report_key_packages(socket).await?;
                    }
                }
                Some(reply) = next_answer(&mut sending) => {
                    self.emit(socket, reply).await?;
                    // Answers that are ready too go out in the same write.
                    while let Some(reply) = sending.as_mut().and_then(|pipeline| pipeline.answered.try_recv().ok()) {
                        self.emit(socket, reply).await?;
                    }
                }
                // The quiet window ended: what it held goes out now.
                _ = tokio::time::sleep(release) => {
                    self.cursor = 0;
                    self.look_again = true;
                }
                // Revocations made on another node come through the hub (delivery::revocations).
                _ = poll.tick() => {
                    self.schedule = self.delivery.schedule_of(&self.device).await;
                    // On PostgreSQL ids are not committed in id order across nodes: a
                    // message can become visible below the cursor. Rescan now and then.
                    self.cursor = 0;
                    self.look_again = true;
                }
            }
        }
    }

    async fn on_frame(&mut self, socket: &mut WebSocket, text: &str, sending: &mut Option<SendPipeline>) -> Result<(), axum::Error> {
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
                        socket.send(error_frame(None, &error, "the acknowledgement was not stored; send it again".to_owned())).await?;
                    }
                }
            }
            Ok(FromDevice::Send { reference, body }) => {
                let pipeline = sending.get_or_insert_with(|| SendPipeline::start(&self.delivery, &self.device));
                // Waits when too many sends are pending: back-pressure on the sender.
                let _ = pipeline.sends.send((reference, body)).await;
            }
            Err(error) => {
                let code = ApiError::new(cubby_core::ErrorCode::MalformedJson, "");
                socket.send(error_frame(None, &code, format!("not a frame this server understands: {error}"))).await?;
            }
        }
        Ok(())
    }

    /// A message the writer has just stored for this device: sent at once if nothing
    /// queued before it is still waiting, else left to the next read of the queue.
    async fn on_pushed(&mut self, socket: &mut WebSocket, pushed: &Pushed) -> Result<(), axum::Error> {
        let message = &pushed.message;
        if message.id <= self.cursor {
            return Ok(()); // read from the queue already
        }
        if !self.caught_up || self.look_again || self.in_flight.len() >= IN_FLIGHT {
            self.fall_behind();
            return Ok(());
        }
        self.cursor = message.id;
        if let Decision::HoldUntil(until) = decide(self.schedule.as_ref(), message, now_millis()) {
            self.held_until = Some(self.held_until.map_or(until, |held| held.min(until)));
            return Ok(());
        }
        if self.in_flight.insert(message.id) {
            self.emit(socket, Message::Text(pushed.frame(message_text))).await?;
        }
        Ok(())
    }

    /// Writes a frame to the socket's buffer; the loop sends what was buffered before it
    /// waits again. A burst of pushes or answers then costs one system call and a few TCP
    /// segments instead of one of each per frame, for the server and for the toy.
    async fn emit(&mut self, socket: &mut WebSocket, frame: Message) -> Result<(), axum::Error> {
        self.unflushed = true;
        socket.feed(frame).await
    }

    fn fall_behind(&mut self) {
        self.caught_up = false;
        self.look_again = true;
    }

    /// Pushes what is queued for the device, up to the in-flight budget. During a child's
    /// quiet hours only guardians' urgent messages (and the group changes that keep the
    /// toy's conversations consistent) go out; the rest stays queued.
    async fn push_queue(&mut self, socket: &mut WebSocket) -> Result<(), axum::Error> {
        if self.cursor == 0
            && let Some(written) = self.last_ack.take()
        {
            let _ = written.await;
        }
        let now = now_millis();
        self.held_until = None;
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
                if let Decision::HoldUntil(until) = decide(self.schedule.as_ref(), &message, now) {
                    self.held_until = Some(until);
                    continue;
                }
                if self.in_flight.insert(message.id) {
                    self.emit(socket, message_frame(&message)).await?;
                }
            }
            if !full {
                self.caught_up = self.in_flight.len() < IN_FLIGHT;
                break;
            }
        }
        Ok(())
    }

    async fn report_key_packages(&mut self, socket: &mut WebSocket) -> Result<(), axum::Error> {
        if self.key_packages_checked.is_some_and(|at| at.elapsed() < KEY_PACKAGE_CHECK_EVERY) {
            return Ok(());
        }
        self.key_packages_checked = Some(tokio::time::Instant::now());
        if let Ok(available) = self.delivery.key_packages_left(self.device.id).await
            && available < TOP_UP_BELOW
        {
            socket.send(frame(&ToDevice::KeyPackagesLow { available, top_up_below: TOP_UP_BELOW })).await?;
        }
        Ok(())
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

async fn close_revoked(socket: &mut WebSocket) -> Result<(), axum::Error> {
    socket
        .send(Message::Close(Some(CloseFrame { code: CLOSE_REVOKED, reason: "this device was revoked".into() })))
        .await
}

/// The tasks that store a connection's sends, started at its first send: most toys mostly
/// listen, and an idle connection should hold no channels or tasks for sending.
struct SendPipeline {
    sends: mpsc::Sender<(u64, SendMessage)>,
    answered: mpsc::Receiver<Message>,
    _stop: AbortOnDrop,
}

impl SendPipeline {
    fn start(delivery: &Arc<Delivery>, device: &DeviceRow) -> Self {
        let (sends, pending) = mpsc::channel(PENDING_SENDS);
        let (replies, answered) = mpsc::channel(PENDING_SENDS);
        let task = tokio::spawn(store_sends(delivery.clone(), device.clone(), pending, replies));
        Self { sends, answered, _stop: AbortOnDrop(task) }
    }
}

/// The next answer to a send, if the connection has sent anything (else never).
async fn next_answer(sending: &mut Option<SendPipeline>) -> Option<Message> {
    match sending {
        Some(pipeline) => pipeline.answered.recv().await,
        None => std::future::pending().await,
    }
}

/// Checks and stores a connection's sends in arrival order, pipelined: each is queued for
/// the group commit before the previous one is durable, and answered once it is.
async fn store_sends(
    delivery: Arc<Delivery>,
    device: DeviceRow,
    mut pending: mpsc::Receiver<(u64, SendMessage)>,
    replies: mpsc::Sender<Message>,
) {
    let (submitted, mut to_answer) = mpsc::channel(PENDING_SENDS);
    let answering = {
        let (delivery, replies) = (delivery.clone(), replies.clone());
        tokio::spawn(async move {
            while let Some((reference, result)) = to_answer.recv().await {
                let reply = match result {
                    Ok(submitted) => match crate::delivery::Submitted::stored(submitted, &delivery).await {
                        Ok(ids) => frame(&ToDevice::Sent { reference, ids }),
                        Err(error) => error_frame(Some(reference), &error, error.message().to_owned()),
                    },
                    Err(error) => error,
                };
                if replies.send(reply).await.is_err() {
                    return;
                }
            }
        })
    };
    let _stop_answering = AbortOnDrop(answering);
    let mut facts = SenderFacts::cached();
    while let Some((reference, body)) = pending.recv().await {
        let result = match outgoing(body) {
            Ok(outgoing) => delivery.submit(&device, outgoing, &mut facts).await,
            Err(error) => Err(error),
        };
        let result = result.map_err(|error| error_frame(Some(reference), &error, error.message().to_owned()));
        if submitted.send((reference, result)).await.is_err() {
            return;
        }
    }
    drop(submitted);
    // Let the answers of sends already accepted go out before the task ends.
    let _ = _stop_answering.wait().await;
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    async fn wait(mut self) -> Result<(), tokio::task::JoinError> {
        let handle = std::mem::replace(&mut self.0, tokio::spawn(async {}));
        handle.await
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
