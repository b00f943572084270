//! Group commit: sends arriving together are written in one transaction, so that the
//! cost of a durable commit (an fsync) is shared instead of capping throughput. A send
//! is acknowledged only after its transaction committed.

use std::sync::Arc;

use cubby_store::{Append, Appended, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

/// Most appends per transaction: enough to amortise the fsync, small enough to keep the
/// latency of the first one low.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Appended, Arc<StoreError>>>;

#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<(Append, Reply)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("the message store failed: {0}")]
    Store(Arc<StoreError>),
    #[error("the message writer stopped")]
    Stopped,
}

impl GroupCommit {
    /// Starts the writer task (it ends when every handle is dropped).
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (queue, pending) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(write_batches(store, pending));
        Self { queue }
    }

    /// Queues one append and waits until it is durably stored (or refused as stale).
    pub async fn append(&self, append: Append) -> Result<Appended, CommitError> {
        self.enqueue(append).await?.stored().await
    }

    /// Queues one append without waiting for it: appends queued one after the other are
    /// written in that order, so a connection can pipeline its sends and keep their order.
    pub async fn enqueue(&self, append: Append) -> Result<Queued, CommitError> {
        let (reply, done) = oneshot::channel();
        self.queue.send((append, reply)).await.map_err(|_| CommitError::Stopped)?;
        Ok(Queued(done))
    }
}

/// An append on its way to the database.
pub struct Queued(oneshot::Receiver<Result<Appended, Arc<StoreError>>>);

impl Queued {
    /// Waits until the append is durably stored (or refused as stale).
    pub async fn stored(self) -> Result<Appended, CommitError> {
        self.0.await.map_err(|_| CommitError::Stopped)?.map_err(CommitError::Store)
    }
}

async fn write_batches(store: Arc<dyn Store>, mut pending: mpsc::Receiver<(Append, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (appends, replies): (Vec<Append>, Vec<Reply>) = batch.drain(..).unzip();
        match store.append(&appends).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(error) => {
                tracing::error!(%error, appends = appends.len(), "storing a batch of messages failed");
                let error = Arc::new(error);
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}
