//! The load engine both protocols share: streams (one publisher, its receivers), a window
//! of unacknowledged messages per publisher, an optional offered rate, and the clock.
//!
//! A protocol supplies a [`Publisher`] per stream and calls [`Probe::acknowledged`] when the
//! server confirms a message and [`Probe::arrived`] when a receiver gets one. Latency is
//! measured from when a message was due (not when the window let it go), so a saturated
//! server's queueing shows in the figures instead of being hidden by the harness.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};

use super::report::{Latency, RunFigures};

/// One publisher's bookkeeping, shared with the tasks that read its connections.
pub struct Probe {
    window: Semaphore,
    due: Mutex<Vec<Instant>>,
    receivers: u64,
    acknowledged: AtomicU64,
    delivered: AtomicU64,
    /// Microseconds, for messages that arrived inside the measured interval.
    latencies: Mutex<Vec<u32>>,
    measured_acks: AtomicU64,
    measured_deliveries: AtomicU64,
    measuring: AtomicBool,
}

impl Probe {
    pub fn new(in_flight: usize, receivers: usize) -> Arc<Self> {
        Arc::new(Self {
            window: Semaphore::new(in_flight),
            due: Mutex::new(Vec::with_capacity(1 << 16)),
            receivers: receivers as u64,
            acknowledged: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            latencies: Mutex::new(Vec::with_capacity(1 << 16)),
            measured_acks: AtomicU64::new(0),
            measured_deliveries: AtomicU64::new(0),
            measuring: AtomicBool::new(false),
        })
    }

    /// The server confirmed (stored, for Cubby; PUBACK, for MQTT) one more message.
    pub fn acknowledged(&self) {
        self.acknowledged.fetch_add(1, Ordering::Relaxed);
        if self.measuring.load(Ordering::Relaxed) {
            self.measured_acks.fetch_add(1, Ordering::Relaxed);
        }
        self.window.add_permits(1);
    }

    /// A receiver got message number `seq` of this stream at `at`.
    pub fn arrived(&self, seq: u64, at: Instant) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        self.measured_deliveries.fetch_add(1, Ordering::Relaxed);
        // Every arrival inside the measured interval counts, however late it was due.
        let due = self.due.lock().ok().and_then(|due| due.get(usize::try_from(seq).ok()?).copied());
        if let Some(due) = due
            && let Ok(mut latencies) = self.latencies.lock()
        {
            let micros = at.saturating_duration_since(due).as_micros();
            latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
        }
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    fn sent(&self) -> u64 {
        self.due.lock().map_or(0, |due| due.len() as u64)
    }

    fn expected_deliveries(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed) * self.receivers
    }

    fn record_due(&self, at: Instant) -> u64 {
        match self.due.lock() {
            Ok(mut due) => {
                due.push(at);
                due.len() as u64 - 1
            }
            Err(_) => 0,
        }
    }
}

/// Hands messages to one publishing connection.
pub trait Publisher: Send + 'static {
    /// Queues message `seq` on the connection; returns once it is on its way.
    fn publish(&mut self, seq: u64) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Tells each paced stream when its next message is due, from a thread of its own: one
/// receiver of due times per stream, each closed when the time is up.
///
/// Tokio's timers have millisecond granularity: a stream sleeping until its next message
/// woke up to a millisecond late, and that lateness, the harness's own, was counted as the
/// server's latency. A thread's sleep is accurate to tens of microseconds. The streams take
/// turns (which spreads their messages evenly), so the thread wakes once per message.
fn pace(streams: usize, rate: f64, start: Instant, stop_at: Instant) -> Vec<mpsc::UnboundedReceiver<Instant>> {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..streams).map(|_| mpsc::unbounded_channel()).unzip();
    let step = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    std::thread::spawn(move || {
        let mut due = start;
        for stream in (0..senders.len()).cycle() {
            if due >= stop_at {
                return;
            }
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            // A stream whose task has ended (its connection failed) is skipped.
            let _ = senders[stream].send(due);
            due += step;
        }
    });
    receivers
}

/// How hard to push.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Messages per second over all publishers; `None` is as fast as acknowledgements allow.
    pub offered_rate: Option<f64>,
    pub warmup: Duration,
    pub duration: Duration,
    /// How long to wait, after sending stops, for the last deliveries.
    pub drain: Duration,
    /// The server's process, when the harness can see it: its CPU use is reported too.
    pub server_pid: Option<u32>,
}

/// Runs the load over the streams and returns what was measured. Every publisher stops
/// when the time is up (or at its first error, which is returned).
pub async fn drive<P: Publisher>(streams: Vec<(P, Arc<Probe>)>, load: Load) -> anyhow::Result<RunFigures> {
    let probes: Vec<Arc<Probe>> = streams.iter().map(|(_, probe)| probe.clone()).collect();
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let stop_at = measure_from + load.duration;
    let count = streams.len().max(1);
    let ticks: Vec<Option<_>> = match load.offered_rate {
        Some(rate) => pace(count, rate, start, stop_at).into_iter().map(Some).collect(),
        None => (0..count).map(|_| None).collect(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for ((mut publisher, probe), mut ticks) in streams.into_iter().zip(ticks) {
        tasks.spawn(async move {
            loop {
                // Paced, a message is due when its tick says (however long the window then
                // holds it back); saturating, as soon as the window lets it go.
                let due = match &mut ticks {
                    Some(ticks) => match ticks.recv().await {
                        Some(due) => Some(due),
                        None => return Ok::<_, anyhow::Error>(()),
                    },
                    None if Instant::now() >= stop_at => return Ok(()),
                    None => None,
                };
                let permit = tokio::time::timeout_at(stop_at.into(), probe.window.acquire()).await;
                let Ok(Ok(permit)) = permit else { return Ok(()) };
                permit.forget();
                let seq = probe.record_due(due.unwrap_or_else(Instant::now));
                publisher.publish(seq).await?;
            }
        });
    }
    tokio::time::sleep_until(measure_from.into()).await;
    for probe in &probes {
        probe.measuring.store(true, Ordering::Relaxed);
    }
    let cpu_before = super::process::cpu_time_of_self();
    let server_cpu_before = load.server_pid.and_then(super::process::cpu_time_of);
    tokio::time::sleep_until(stop_at.into()).await;
    let server_cpu = load.server_pid.and_then(super::process::cpu_time_of).zip(server_cpu_before).map(|(a, b)| a.saturating_sub(b));
    for probe in &probes {
        probe.measuring.store(false, Ordering::Relaxed);
    }
    let harness_cpu = super::process::cpu_time_of_self().saturating_sub(cpu_before);
    let seconds = load.duration.as_secs_f64();
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    // Whatever was sent must be acknowledged, and whatever was acknowledged must reach every
    // receiver (a broker may deliver before its acknowledgement arrives): wait for both,
    // then count what never arrived as dropped.
    let drain_until = Instant::now() + load.drain;
    let missing = |probes: &[Arc<Probe>]| -> u64 {
        probes.iter().map(|p| p.expected_deliveries().saturating_sub(p.delivered())).sum()
    };
    let unacknowledged =
        |probes: &[Arc<Probe>]| -> u64 { probes.iter().map(|p| p.sent().saturating_sub(p.acknowledged.load(Ordering::Relaxed))).sum() };
    while (missing(&probes) > 0 || unacknowledged(&probes) > 0) && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acknowledged = probes.iter().map(|p| p.acknowledged.load(Ordering::Relaxed)).sum();
    let delivered = probes.iter().map(|p| p.delivered()).sum();
    let measured_acks: u64 = probes.iter().map(|p| p.measured_acks.load(Ordering::Relaxed)).sum();
    let measured_deliveries: u64 = probes.iter().map(|p| p.measured_deliveries.load(Ordering::Relaxed)).sum();
    let mut latencies: Vec<u32> = Vec::new();
    for probe in &probes {
        if let Ok(mut own) = probe.latencies.lock() {
            latencies.append(&mut own);
        }
    }
    Ok(RunFigures {
        acknowledged_per_second: measured_acks as f64 / seconds,
        deliveries_per_second: measured_deliveries as f64 / seconds,
        acknowledged,
        delivered,
        dropped: missing(&probes),
        latency: Latency::of(&mut latencies),
        harness_cpu_percent: 100.0 * harness_cpu.as_secs_f64() / seconds,
        server_cpu_percent: server_cpu.map(|cpu| 100.0 * cpu.as_secs_f64() / seconds),
    })
}
