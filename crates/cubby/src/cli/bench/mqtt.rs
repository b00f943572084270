//! The MQTT side of the relay and fan-out scenarios: per stream one publishing client and
//! its subscribing clients on a topic of their own, each with its own connection, all at
//! QoS 1 with clean sessions (MQTT 3.1.1, through rumqttc).
//!
//! A PUBACK is the broker's confirmation that it took a message, the counterpart of Cubby's
//! "stored"; a subscriber's incoming PUBLISH is a delivery. Both go to the stream's
//! [`Probe`], which the load engine reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Packet, QoS, SubscribeReasonCode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::load::{Probe, Publisher};

/// Bytes of the payload that carry the message's sequence number (big-endian).
const SEQ_BYTES: usize = 8;

/// Long enough that no ping interleaves with a short run, short enough to notice a dead broker.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// Seconds rumqttc gives a TCP connect or a flush; hundreds of clients connect at once.
const NETWORK_TIMEOUT_SECONDS: u64 = 10;

/// Clients connecting at once: enough to set up ~400 quickly without a burst of
/// simultaneous handshakes that would overflow the broker's accept backlog.
const CONNECT_BATCH: usize = 32;

/// How long one client may take to be connected (and subscribed).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Room in a packet for the fixed header, topic and packet id besides the payload.
const HEADER_ROOM: usize = 1024;

/// Distinguishes the client ids and topics of successive calls in one process.
static NEXT_RUN: AtomicU64 = AtomicU64::new(0);

/// Publishes one stream's messages over its own connection.
pub struct MqttPublisher {
    client: AsyncClient,
    topic: String,
    /// The message as sent, but for the sequence number written into its first bytes.
    payload: Vec<u8>,
}

impl Publisher for MqttPublisher {
    async fn publish(&mut self, seq: u64) -> anyhow::Result<()> {
        let mut payload = self.payload.clone();
        payload[..SEQ_BYTES].copy_from_slice(&seq.to_be_bytes());
        self.client
            .publish(self.topic.as_str(), QoS::AtLeastOnce, false, payload)
            .await
            .context("handing a message to the MQTT client")
    }
}

/// Keeps every client's connection task running; dropping it closes them all.
pub struct Connections {
    tasks: Vec<JoinHandle<()>>,
    /// rumqttc ends a connection once all handles to it are gone, so the subscribers' (which
    /// nobody else holds) and the publishers' (dropped when the engine stops sending, while
    /// PUBACKs may still be on their way) are kept here.
    clients: Vec<AsyncClient>,
}

impl Drop for Connections {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.clients.clear();
    }
}

/// Connects, for each of `streams` streams, one publisher and `receivers` subscribers on a
/// topic of its own; returns the publishers with their probes, and a guard that keeps the
/// connections' tasks alive (dropping it closes them).
///
/// Returns only once every subscription is acknowledged, so no message of the run can be
/// published before its subscribers are there.
pub async fn connect_streams(
    broker: SocketAddr,
    streams: usize,
    receivers: usize,
    payload_bytes: usize,
    in_flight: usize,
) -> anyhow::Result<(Vec<(MqttPublisher, Arc<Probe>)>, Connections)> {
    let run = format!("bench-{}-{}", std::process::id(), NEXT_RUN.fetch_add(1, Ordering::Relaxed));
    let settings = ClientSettings { broker, payload_bytes: payload_bytes.max(SEQ_BYTES), in_flight: in_flight.max(1) };
    let probes: Vec<Arc<Probe>> = (0..streams).map(|_| Probe::new(settings.in_flight, receivers)).collect();
    let mut connections = Connections { tasks: Vec::new(), clients: Vec::new() };

    let subscribers = (0..streams).flat_map(|stream| {
        (0..receivers).map(move |receiver| (stream, format!("-s{stream}-{receiver}"), Role::Subscriber))
    });
    let publishers = (0..streams).map(|stream| (stream, format!("-p{stream}"), Role::Publisher));
    let specs: Vec<ClientSpec> = subscribers
        .chain(publishers)
        .map(|(stream, suffix, role)| ClientSpec {
            id: format!("{run}{suffix}"),
            topic: format!("{run}/{stream}"),
            probe: probes[stream].clone(),
            role,
        })
        .collect();

    let mut publishers = Vec::with_capacity(streams);
    for batch in specs.chunks(CONNECT_BATCH) {
        let mut waiting = Vec::with_capacity(batch.len());
        for spec in batch {
            let (client, task, ready) = settings.start_client(spec).await?;
            connections.tasks.push(task);
            connections.clients.push(client.clone());
            if spec.role == Role::Publisher {
                let payload = vec![0; settings.payload_bytes];
                let publisher = MqttPublisher { client, topic: spec.topic.clone(), payload };
                publishers.push((publisher, spec.probe.clone()));
            }
            waiting.push((spec.id.as_str(), ready));
        }
        // The batch's clients connect concurrently; waiting in turn takes as long as the slowest.
        for (id, ready) in waiting {
            match tokio::time::timeout(READY_TIMEOUT, ready).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => anyhow::bail!("MQTT client {id} could not connect or subscribe (see the warning above)"),
                Err(_) => anyhow::bail!("MQTT client {id} was not ready within {READY_TIMEOUT:?}"),
            }
        }
    }
    Ok((publishers, connections))
}

/// What a client does with its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Publishes; its PUBACKs are the stream's acknowledgements. Ready once connected.
    Publisher,
    /// Subscribes to the stream's topic; its PUBLISHes are deliveries. Ready once subscribed.
    Subscriber,
}

/// One client to set up.
struct ClientSpec {
    id: String,
    topic: String,
    probe: Arc<Probe>,
    role: Role,
}

/// What every client of one call shares.
struct ClientSettings {
    broker: SocketAddr,
    payload_bytes: usize,
    in_flight: usize,
}

impl ClientSettings {
    /// Creates the client, queues its subscription if it has one, and spawns the task that
    /// runs its connection. The receiver fires once the client is ready; it fails if the
    /// connection ends first.
    async fn start_client(&self, spec: &ClientSpec) -> anyhow::Result<(AsyncClient, JoinHandle<()>, oneshot::Receiver<()>)> {
        let (client, mut events) = AsyncClient::new(self.options(&spec.id), self.request_capacity());
        let mut network = NetworkOptions::new();
        // rumqttc leaves Nagle's algorithm on; with it a small PUBLISH or PUBACK can wait for
        // the previous segment's ACK, adding delayed-ACK pauses to the latencies measured.
        network.set_tcp_nodelay(true);
        network.set_connection_timeout(NETWORK_TIMEOUT_SECONDS);
        events.set_network_options(network);
        if spec.role == Role::Subscriber {
            // Queued now, sent by the event loop right after the CONNACK.
            client
                .subscribe(spec.topic.as_str(), QoS::AtLeastOnce)
                .await
                .with_context(|| format!("subscribing MQTT client {}", spec.id))?;
        }
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(run_connection(events, spec.role, spec.probe.clone(), spec.id.clone(), ready_tx));
        Ok((client, task, ready_rx))
    }

    fn options(&self, id: &str) -> MqttOptions {
        let mut options = MqttOptions::new(id, self.broker.ip().to_string(), self.broker.port());
        let max_packet = self.payload_bytes + HEADER_ROOM;
        options
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(true)
            .set_max_packet_size(max_packet, max_packet)
            .set_request_channel_capacity(self.request_capacity())
            // rumqttc's own window of unacknowledged publishes: as wide as the engine's, so the
            // engine's is the one that limits.
            .set_inflight(u16::try_from(self.in_flight).unwrap_or(u16::MAX).max(1));
        options
    }

    /// The engine never has more than `in_flight` messages outstanding, so twice that means
    /// handing a message to the client never waits on the channel.
    fn request_capacity(&self) -> usize {
        (self.in_flight * 2).max(16)
    }
}

/// Polls one client's event loop until the connection fails or the task is aborted,
/// reporting acknowledgements and deliveries to the stream's probe.
async fn run_connection(mut events: EventLoop, role: Role, probe: Arc<Probe>, id: String, ready: oneshot::Sender<()>) {
    let mut ready = Some(ready);
    loop {
        let event = events.poll().await;
        let at = Instant::now();
        match event {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if let Some(seq) = seq_of(&publish.payload) {
                    probe.arrived(seq, at);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => probe.acknowledged(),
            Ok(Event::Incoming(Packet::ConnAck(_))) if role == Role::Publisher => signal(&mut ready),
            Ok(Event::Incoming(Packet::SubAck(suback))) => {
                if suback.return_codes.contains(&SubscribeReasonCode::Failure) {
                    tracing::warn!(client = %id, "MQTT broker refused the subscription");
                    return;
                }
                signal(&mut ready);
            }
            Ok(_) => {}
            Err(error) => {
                // Polling again would reconnect with a clean session, losing messages
                // silently; stopping lets the engine count them as dropped instead.
                tracing::warn!(client = %id, %error, "MQTT connection ended");
                return;
            }
        }
    }
}

fn signal(ready: &mut Option<oneshot::Sender<()>>) {
    if let Some(ready) = ready.take() {
        // The caller may have given up waiting already; nothing to do then.
        let _ = ready.send(());
    }
}

/// The sequence number a payload starts with.
fn seq_of(payload: &[u8]) -> Option<u64> {
    let bytes: [u8; SEQ_BYTES] = payload.get(..SEQ_BYTES)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::super::load::{Load, drive};
    use super::super::mosquitto::Mosquitto;
    use super::*;

    #[test]
    fn reads_the_sequence_number() {
        let mut payload = vec![0; 32];
        payload[..8].copy_from_slice(&42_u64.to_be_bytes());
        assert_eq!(seq_of(&payload), Some(42));
        assert_eq!(seq_of(&[1, 2, 3]), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relays_through_mosquitto_without_loss() -> anyhow::Result<()> {
        // No skip without Mosquitto: scripts/test installs it, and this test must fail without it.
        let broker = Mosquitto::start()?;
        let (streams, _connections) = connect_streams(broker.address, 2, 3, 256, 16).await?;
        let load = Load {
            offered_rate: None,
            warmup: Duration::from_millis(200),
            duration: Duration::from_secs(1),
            drain: Duration::from_secs(5),
            server_pid: Some(broker.pid),
        };
        let figures = drive(streams, load).await?;
        eprintln!("{figures:?}");
        assert!(figures.acknowledged > 0);
        // The drain waits for every PUBACK, then every acknowledged message has reached all
        // three subscribers, once each.
        assert_eq!(figures.delivered, figures.acknowledged * 3);
        assert_eq!(figures.dropped, 0);
        assert!(figures.latency.samples > 0);
        Ok(())
    }
}
