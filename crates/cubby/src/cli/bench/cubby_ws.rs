//! Cubby's side of the relay and fan-out scenarios: toys in real MLS groups, talking over
//! the device WebSocket (`/api/v1/ws`) as the SDK does.
//!
//! Each stream's group is made by the SDK (a sender's `Messenger` creates it and invites
//! its receivers); the sender then encrypts one real text, and the harness sends those
//! ciphertext bytes again and again. Encrypting per message would make the harness, not the
//! server, the bottleneck; the server cannot tell (it relays ciphertext it cannot read) and
//! does all of its per-message work: membership and epoch checks, a durable write, the
//! push, the acknowledgement.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cubby_client::{CubbyClient, DeviceKey, Messenger};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::load::{Probe, Publisher};
use super::provision::{Toy, http_from};

pub type Socket = WebSocketStream<TcpStream>;

/// Acknowledgements are sent in batches of this many, or after this long: as the SDK
/// would, and so that acknowledging is not one database write per message.
const ACK_BATCH: usize = 64;
const ACK_DELAY: Duration = Duration::from_millis(2);

/// Opens a toy's live connection from its own loopback address.
pub async fn connect(server: SocketAddr, toy: &Toy) -> anyhow::Result<Socket> {
    let socket = match toy.source {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(toy.source, 0))?;
    let stream = socket.connect(server).await.with_context(|| format!("connecting to {server}"))?;
    stream.set_nodelay(true)?;
    let mut request = format!("ws://{server}/api/v1/ws").into_client_request()?;
    request.headers_mut().insert("authorization", format!("Bearer {}", toy.token).parse()?);
    let (socket, _) = tokio_tungstenite::client_async(request, stream).await.context("opening the WebSocket")?;
    Ok(socket)
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    id: i64,
    #[serde(default, rename = "kind")]
    message_kind: &'a str,
    #[serde(default)]
    data: Option<&'a str>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// One stream ready to run: the sender's connection and the ciphertext it repeats.
pub struct CubbyPublisher {
    sink: SplitSink<Socket, Message>,
    /// `{"type":"send","ref":` … `,"message":"<base64>"}` around the sequence number.
    frame_tail: String,
}

impl Publisher for CubbyPublisher {
    async fn publish(&mut self, seq: u64) -> anyhow::Result<()> {
        let mut text = String::with_capacity(self.frame_tail.len() + 40);
        text.push_str("{\"type\":\"send\",\"ref\":");
        text.push_str(&seq.to_string());
        text.push_str(&self.frame_tail);
        self.sink.send(Message::text(text)).await.context("sending on the WebSocket")
    }
}

/// Keeps the streams' reading tasks alive; dropping it closes every connection.
#[derive(Default)]
pub struct Connections {
    tasks: tokio::task::JoinSet<()>,
}

/// A group made for a stream: its members (the sender first), its MLS group id, and the
/// ciphertext of one text the sender encrypted for it.
pub struct Group {
    pub members: Vec<Toy>,
    pub group_id: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Makes one group per `group_size` toys of `toys` (in order), several at once.
pub async fn make_groups(base_url: &str, toys: &[Toy], group_size: usize, text_bytes: usize, state_dir: &std::path::Path) -> anyhow::Result<Vec<Group>> {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, members) in toys.chunks_exact(group_size).enumerate() {
        let members = members.to_vec();
        let (base_url, dir) = (base_url.to_owned(), state_dir.join(format!("group-{index}")));
        tasks.spawn(async move { make_group(&base_url, members, text_bytes, &dir).await.map(|g| (index, g)) });
    }
    let mut groups = Vec::new();
    while let Some(group) = tasks.join_next().await {
        groups.push(group??);
    }
    groups.sort_by_key(|(index, _)| *index);
    Ok(groups.into_iter().map(|(_, group)| group).collect())
}

/// Connects every group's members for one run: the receivers first (each reads and
/// acknowledges whatever an earlier run left queued), then the sender.
pub async fn open_streams(server: SocketAddr, groups: &[Group], in_flight: usize) -> anyhow::Result<(Vec<(CubbyPublisher, Arc<Probe>)>, Connections)> {
    let mut connections = Connections::default();
    let mut streams = Vec::with_capacity(groups.len());
    for group in groups {
        let probe = Probe::new(in_flight, group.members.len() - 1);
        for receiver in &group.members[1..] {
            let mut socket = connect(server, receiver).await?;
            drain_until_quiet(&mut socket).await?;
            connections.tasks.spawn(receive(socket, probe.clone()));
        }
        let (sink, stream) = connect(server, &group.members[0]).await?.split();
        connections.tasks.spawn(read_receipts(stream, probe.clone()));
        let frame_tail = format!(",\"message\":\"{}\"}}", BASE64.encode(&group.ciphertext));
        streams.push((CubbyPublisher { sink, frame_tail }, probe));
    }
    Ok((streams, connections))
}

/// The sender makes the group with the SDK, invites the others, and sends one text; the
/// first receiver's connection hands back that text's ciphertext as the server relays it.
async fn make_group(base_url: &str, members: Vec<Toy>, text_bytes: usize, dir: &std::path::Path) -> anyhow::Result<Group> {
    std::fs::create_dir_all(dir)?;
    let mut messengers = Vec::with_capacity(members.len());
    for (n, toy) in members.iter().enumerate() {
        let api = CubbyClient::with_http_client(base_url, http_from(toy.source)?);
        let key = DeviceKey::from_secret_bytes(toy.key_secret);
        let messenger = Messenger::open(&dir.join(format!("{n}.db")), [7; 32], api, key, &toy.device_id).await?;
        if n > 0 {
            messenger.publish_key_packages().await?;
        }
        messengers.push(messenger);
    }
    let sender = &messengers[0];
    let conversation = sender.create_conversation().await?;
    for toy in &members[1..] {
        sender.invite(&conversation, &toy.device_id).await?;
    }
    sender.send_text(&conversation, &text_for(text_bytes)).await?;
    for messenger in &messengers {
        messenger.close().await;
    }
    let server = server_of(base_url)?;
    let mut socket = connect(server, &members[1]).await?;
    let ciphertext = drain_until_application(&mut socket).await?;
    let _ = socket.close(None).await;
    Ok(Group { members, group_id: conversation.0, ciphertext })
}

/// MLS pads what it encrypts (the envelope, its signature and framing) to a multiple of
/// 256 bytes, so lengths do not leak. A text fits `block` bytes of that with room for the
/// rest: with the default of 256, one padding block, the smallest message a toy sends.
fn text_for(block: usize) -> String {
    /// The signature (64 bytes), the sender's generation and key id, and MLS framing
    /// inside the padded content (measured: 150 leaves a text that fits one block).
    const SIGNATURE_AND_FRAMING: usize = 150;
    let envelope = cubby_client::Envelope::text("").encode().len();
    "x".repeat(block.saturating_sub(envelope + SIGNATURE_AND_FRAMING).max(1))
}

fn server_of(base_url: &str) -> anyhow::Result<SocketAddr> {
    let authority = base_url.split("://").nth(1).context("a base URL without a scheme")?;
    Ok(authority.trim_end_matches('/').parse()?)
}

/// Reads and acknowledges what is queued for a receiver (its Welcome, later commits) up to
/// and including the application message the sender sent last; returns its bytes.
async fn drain_until_application(socket: &mut Socket) -> anyhow::Result<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let frame = tokio::time::timeout_at(deadline.into(), socket.next()).await.context("no application message within 30 s")?;
        let Some(frame) = frame else { bail!("the server closed the connection while the group was set up") };
        let Message::Text(text) = frame? else { continue };
        let frame: Frame<'_> = serde_json::from_str(text.as_str())?;
        if frame.kind != "message" {
            continue;
        }
        socket.send(ack_frame(&[frame.id])).await?;
        if frame.message_kind == "application" {
            let data = frame.data.context("a message without data")?;
            return Ok(BASE64.decode(data)?);
        }
    }
}

/// Reads and acknowledges whatever is queued until nothing comes for a moment.
async fn drain_until_quiet(socket: &mut Socket) -> anyhow::Result<()> {
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_millis(150), socket.next()).await {
        let Message::Text(text) = frame? else { continue };
        let frame: Frame<'_> = serde_json::from_str(text.as_str())?;
        if frame.kind == "message" {
            socket.send(ack_frame(&[frame.id])).await?;
        }
    }
    Ok(())
}

/// A receiver: counts each message's arrival and acknowledges in batches.
async fn receive(mut socket: Socket, probe: Arc<Probe>) {
    let mut pending: Vec<i64> = Vec::with_capacity(ACK_BATCH);
    let mut seq = 0u64;
    loop {
        let next = if pending.is_empty() {
            socket.next().await
        } else {
            match tokio::time::timeout(ACK_DELAY, socket.next()).await {
                Ok(next) => next,
                Err(_) => {
                    if acknowledge(&mut socket, &mut pending).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
        };
        let Some(Ok(Message::Text(text))) = next else { return };
        let at = Instant::now();
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(text.as_str()) else { continue };
        if frame.kind == "message" {
            probe.arrived(seq, at);
            seq += 1;
            pending.push(frame.id);
            if pending.len() >= ACK_BATCH && acknowledge(&mut socket, &mut pending).await.is_err() {
                return;
            }
        }
    }
}

async fn acknowledge(socket: &mut Socket, pending: &mut Vec<i64>) -> anyhow::Result<()> {
    socket.send(ack_frame(pending)).await?;
    pending.clear();
    Ok(())
}

/// `{"type":"ack","ids":[…]}`.
fn ack_frame(ids: &[i64]) -> Message {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    Message::text(format!("{{\"type\":\"ack\",\"ids\":[{}]}}", ids.join(",")))
}

/// A sender's side: each `sent` receipt means one message durably stored.
async fn read_receipts(mut stream: SplitStream<Socket>, probe: Arc<Probe>) {
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else { continue };
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(text.as_str()) else { continue };
        match frame.kind {
            "sent" => probe.acknowledged(),
            "error" => {
                tracing::warn!(code = ?frame.code, message = ?frame.message, "the server refused a send");
                return;
            }
            _ => {}
        }
    }
}
