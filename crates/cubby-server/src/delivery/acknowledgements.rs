//! Acknowledgements are written in batches, like sends (see `group_commit`): one
//! transaction for whatever arrived together, from every connection, instead of a synced
//! commit per acknowledgement frame.
//!
//! A connection does not wait for its acknowledgement to be written. If the server stops
//! before the write, the messages are delivered again on the next connection: delivery is
//! at least once already, and the SDK skips messages it has processed.

use std::sync::Arc;

use cubby_core::DeviceId;
use cubby_store::Store;
use tokio::sync::{mpsc, oneshot};

/// Most acknowledgement frames per transaction.
const MAX_BATCH: usize = 512;

type Pending = (DeviceId, Vec<i64>, oneshot::Sender<()>);

#[derive(Clone)]
pub struct Acknowledgements {
    queue: mpsc::Sender<Pending>,
}

/// Resolves once the acknowledgement's batch was written (or failed): writes happen in
/// order, so every earlier acknowledgement is written by then too.
pub type Written = oneshot::Receiver<()>;

impl Acknowledgements {
    /// Starts the writer task (it ends when every handle is dropped).
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (queue, pending) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(write_batches(store, pending));
        Self { queue }
    }

    /// Queues a device's acknowledgement; waits only while the queue is full (back-pressure).
    /// `None` if the writer stopped.
    pub async fn record(&self, device: DeviceId, ids: Vec<i64>) -> Option<Written> {
        let (written, done) = oneshot::channel();
        self.queue.send((device, ids, written)).await.ok()?;
        Some(done)
    }
}

async fn write_batches(store: Arc<dyn Store>, mut pending: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut acks = Vec::with_capacity(batch.len());
        let mut written = Vec::with_capacity(batch.len());
        for (device, ids, done) in batch.drain(..) {
            acks.push((device, ids));
            written.push(done);
        }
        if let Err(error) = store.acknowledge_batch(&acks).await {
            // The messages stay queued and go out again on the devices' next connections.
            tracing::warn!(%error, frames = acks.len(), "storing acknowledgements failed");
        }
        for written in written {
            let _ = written.send(());
        }
    }
}
