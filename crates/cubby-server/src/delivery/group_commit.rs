//! Group commit: sends arriving together are written in one transaction, so that the
//! cost of a durable commit (an fsync) is shared instead of capping throughput. A send
//! is acknowledged only after its transaction committed; then the writer hands each
//! message to its recipients' live connections on this node ([`Hub::push`]), in the order
//! of the ids, so that they need not read it back from the store.
//!
//! Devices' acknowledgements go into the same transactions. One writer for both means they
//! never wait for each other's database lock (SQLite's busy wait sleeps in steps of
//! milliseconds), and an acknowledgement frame costs no commit of its own. A connection
//! does not wait for its acknowledgement to be written: if the server stops first, the
//! messages are delivered again on the next connection (delivery is at least once, and the
//! SDK skips what it has processed).
//!
//! The writer is a thread of its own, not a task: it is the one serial stage of every
//! send. As a task it waited for a worker between batches, behind the connections' tasks,
//! and each SQLite batch went to a blocking thread and back. It writes SQLite's batches
//! itself, and drives PostgreSQL's asynchronous write with the runtime's `block_on`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use cubby_core::DeviceId;
use cubby_store::{Append, Appended, QueuedMessage, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

use super::hub::{Hub, Pushed};
use crate::http::metrics::CommitMetrics;

/// Most appends and acknowledgements per transaction. A commit's cost is mostly its fsync,
/// which grows far slower than the batch: at 256 the relay bench filled every batch and
/// stalled at ~10,000 msg/s; at 1024 it relays ~15,000. Batches are only this large when
/// sends queue up, so a lone send still commits alone.
const MAX_BATCH: usize = 1024;

type Reply = oneshot::Sender<Result<Appended, Arc<StoreError>>>;

enum Work {
    Append(Append, Reply),
    Acknowledge(DeviceId, Vec<i64>, oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Work>,
    membership_changes: Arc<AtomicU64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("the message store failed: {0}")]
    Store(Arc<StoreError>),
    #[error("the message writer stopped")]
    Stopped,
}

/// Resolves once an acknowledgement's batch was written (or failed): batches are written
/// in order, so every earlier acknowledgement of the connection is written by then too.
pub type AckWritten = oneshot::Receiver<()>;

impl GroupCommit {
    /// Starts the writer thread (it ends when every handle is dropped). Called from
    /// within the runtime, whose handle drives PostgreSQL's writes.
    pub fn start(store: Arc<dyn Store>, hub: Arc<Hub>, metrics: CommitMetrics) -> Self {
        let (queue, pending) = mpsc::channel(MAX_BATCH * 4);
        let membership_changes = Arc::new(AtomicU64::new(0));
        let runtime = tokio::runtime::Handle::current();
        let changes = membership_changes.clone();
        let spawned = std::thread::Builder::new()
            .name("cubby-writer".to_owned())
            .spawn(move || write_batches(&runtime, store, hub, pending, changes, metrics));
        if let Err(error) = spawned {
            tracing::error!(%error, "the message writer's thread could not start: sends will fail");
        }
        Self { queue, membership_changes }
    }

    /// Counts the group changes (commits, the server's proposals) this node has written:
    /// what was read about a group's members before the count moved may be out of date.
    pub fn membership_changes(&self) -> u64 {
        self.membership_changes.load(Ordering::Acquire)
    }

    /// Queues one append and waits until it is durably stored (or refused as stale).
    pub async fn append(&self, append: Append) -> Result<Appended, CommitError> {
        self.enqueue(append).await?.await
    }

    /// Queues one append without waiting for it: appends queued one after the other are
    /// written in that order, so a connection can pipeline its sends and keep their order.
    pub async fn enqueue(&self, append: Append) -> Result<Queued, CommitError> {
        let (reply, done) = oneshot::channel();
        self.queue.send(Work::Append(append, reply)).await.map_err(|_| CommitError::Stopped)?;
        Ok(Queued(done))
    }

    /// Queues a device's acknowledgement; waits only while the queue is full.
    pub async fn acknowledge(&self, device: DeviceId, ids: Vec<i64>) -> Result<AckWritten, CommitError> {
        let (written, done) = oneshot::channel();
        self.queue.send(Work::Acknowledge(device, ids, written)).await.map_err(|_| CommitError::Stopped)?;
        Ok(done)
    }
}

/// An append on its way to the database: resolves once it is durably stored (or refused
/// as stale). Polled by reference, it lets a connection watch its oldest send among others.
pub struct Queued(oneshot::Receiver<Result<Appended, Arc<StoreError>>>);

impl Future for Queued {
    type Output = Result<Appended, CommitError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|received| received.map_err(|_| CommitError::Stopped)?.map_err(CommitError::Store))
    }
}

fn write_batches(
    runtime: &tokio::runtime::Handle,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    mut pending: mpsc::Receiver<Work>,
    membership_changes: Arc<AtomicU64>,
    metrics: CommitMetrics,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(work) = pending.blocking_recv() {
        batch.push(work);
        while batch.len() < MAX_BATCH
            && let Ok(work) = pending.try_recv()
        {
            batch.push(work);
        }
        metrics.batch_size.observe(batch.len() as f64);
        let (mut appends, mut replies, mut acks, mut written) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for work in batch.drain(..) {
            match work {
                Work::Append(append, reply) => {
                    appends.push(append);
                    replies.push(reply);
                }
                Work::Acknowledge(device, ids, done) => {
                    acks.push((device, ids));
                    written.push(done);
                }
            }
        }
        let started = Instant::now();
        let (appending, acknowledging) = (appends.len(), acks.len());
        let written_batch = match store.blocking_batch_writer() {
            Some(writer) => writer.write_batch(appends, acks),
            None => runtime.block_on(store.write_batch(appends, acks)),
        };
        metrics.write_seconds.observe(started.elapsed().as_secs_f64());
        match written_batch {
            Ok(outcome) => {
                // Counted before anyone hears of the change, so no send routed after it
                // trusts what was read before it.
                let changed = outcome.batch.iter().zip(&outcome.appended).any(|(append, result)| {
                    append.epoch_change.is_some() && matches!(result, Appended::Stored(_))
                });
                if changed {
                    membership_changes.fetch_add(1, Ordering::AcqRel);
                }
                push(&hub, outcome.batch, &outcome.appended, &outcome.queued);
                for (reply, result) in replies.into_iter().zip(outcome.appended) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(error) => {
                // Acknowledgements lost here only mean the messages go out again.
                tracing::error!(%error, appends = appending, acks = acknowledging, "storing a batch of messages failed");
                let error = Arc::new(error);
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
        for done in written {
            let _ = done.send(());
        }
    }
}

/// Hands what was stored to the connections of the devices it was queued for (not to
/// every recipient named: one revoked meanwhile was skipped by the write), moving each
/// payload (no copy) into one shared message.
fn push(hub: &Hub, appends: Vec<Append>, outcomes: &[Appended], queued: &[(DeviceId, i64)]) {
    let mut recipients: HashMap<i64, Vec<DeviceId>> = HashMap::new();
    for (device, id) in queued {
        recipients.entry(*id).or_default().push(*device);
    }
    for (append, outcome) in appends.into_iter().zip(outcomes) {
        let Appended::Stored(ids) = outcome else { continue };
        for (message, id) in append.messages.into_iter().zip(ids) {
            let Some(devices) = recipients.get(id) else { continue };
            let pushed = Arc::new(Pushed::new(QueuedMessage {
                id: *id,
                group_id: message.group_id,
                sender: message.sender,
                kind: message.kind,
                payload: message.payload,
                urgent: message.urgent,
                created_at: message.created_at,
            }));
            hub.push(&pushed, devices);
        }
    }
}
