//! SQLite's side of the group commit, on a connection of its own. Through sqlx every
//! statement is a hop to a worker thread and every row a message back, and multi-row
//! statements of each batch size are parsed anew; under load those hops, not SQLite,
//! took most of a batch's time. Here a whole batch runs on one thread (the group commit's
//! writer thread, or a blocking one for a caller that is a task), one row per statement
//! with the statements prepared once: SQLite's own speed. Same SQLite
//! library as sqlx (one libsqlite3-sys), same database file, same settings.
//! PostgreSQL's side is [`super::batch_postgres`].

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cubby_core::DeviceId;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::messaging::{DELETE_IF_DELIVERED, INSERT_MEMBER};
use crate::{Append, Appended, BatchWritten, BlockingBatchWriter, EpochChange, StoreError};

pub(crate) struct SqliteWriter {
    /// None once closed.
    connection: Arc<Mutex<Option<Connection>>>,
}

impl SqliteWriter {
    /// Opens the writer's connection to a database sqlx has opened (and migrated) first.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let connection = Connection::open(path)?;
        // WAL is a setting of the file, made when sqlx opened it; these are per connection.
        // FULL: a commit survives power loss, not just a crash of the process.
        connection.pragma_update(None, "synchronous", "FULL")?;
        // Off on this connection only. Every row it writes is checked in its own transaction,
        // under the write lock: a group by its key's lookup, each recipient by `Queues`,
        // a member by INSERT_MEMBER's select; a message is deleted only once nothing is
        // queued for it, so no cascade is needed. SQLite's own checks repeated those lookups
        // for every row (two per queue entry), 15 % of a fan-out batch's appends.
        // store_suite's `the_writer_leaves_nothing_dangling` holds it to that.
        connection.pragma_update(None, "foreign_keys", false)?;
        connection.busy_timeout(Duration::from_secs(10))?;
        Ok(Self { connection: Arc::new(Mutex::new(Some(connection))) })
    }

    /// Closes the connection, so that the last one to close folds the WAL into the database
    /// file as SQLite does; a batch after this fails as on a closed pool.
    pub(crate) async fn close(&self) {
        let connection = self.connection.clone();
        let closed = tokio::task::spawn_blocking(move || {
            let connection = connection.lock().unwrap_or_else(PoisonError::into_inner).take();
            connection.map(Connection::close)
        })
        .await;
        if let Ok(Some(Err((_, error)))) = closed {
            tracing::warn!(%error, "closing the message writer's database connection failed");
        }
    }

    /// From a task: the batch is written on a blocking thread. The group commit's writer,
    /// a thread of its own, calls [`BlockingBatchWriter::write_batch`] instead.
    pub(crate) async fn write_batch(&self, batch: Vec<Append>, acks: Vec<(DeviceId, Vec<i64>)>) -> Result<BatchWritten, StoreError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || write_locked(&connection, batch, &acks))
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))?
    }
}

impl BlockingBatchWriter for SqliteWriter {
    fn write_batch(&self, batch: Vec<Append>, acks: Vec<(DeviceId, Vec<i64>)>) -> Result<BatchWritten, StoreError> {
        write_locked(&self.connection, batch, &acks)
    }
}

fn write_locked(connection: &Mutex<Option<Connection>>, batch: Vec<Append>, acks: &[(DeviceId, Vec<i64>)]) -> Result<BatchWritten, StoreError> {
    // A panic while writing rolled its transaction back (Transaction's drop): the
    // connection is fine to use again.
    let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(connection) = connection.as_mut() else { return Err(StoreError::Database(sqlx::Error::PoolClosed)) };
    let written = write(connection, &batch, acks)?;
    Ok(BatchWritten { batch, ..written })
}

fn write(connection: &mut Connection, batch: &[Append], acks: &[(DeviceId, Vec<i64>)]) -> rusqlite::Result<BatchWritten> {
    // The write lock at BEGIN: another connection's write makes this one wait its turn.
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut appended = Vec::with_capacity(batch.len());
    let mut queued = Vec::new();
    // Messages no device waits for: written for nobody live, or acknowledged by all.
    let mut forgettable = Vec::new();
    let mut queues = Queues::new(&tx)?;
    {
        // A group's key exists as long as the group does (cascade).
        let mut group_key = tx.prepare_cached("SELECT group_key FROM group_keys WHERE group_id = ?1")?;
        let mut insert_message = tx.prepare_cached(
            "INSERT INTO messages (group_key, sender_device, kind, payload, urgent, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut queue = tx.prepare_cached(
            "INSERT INTO deliveries (queue, message_id) VALUES (?1, ?2) ON CONFLICT (queue, message_id) DO NOTHING",
        )?;
        let mut group_keys: HashMap<&[u8], i64> = HashMap::new();
        'appends: for append in batch {
            // A group deleted since its sender looked it up refuses that append alone,
            // rather than failing the whole batch on the foreign key.
            let mut keys = Vec::with_capacity(append.messages.len());
            for message in &append.messages {
                let key = match group_keys.entry(message.group_id.as_slice()) {
                    Entry::Occupied(known) => *known.get(),
                    Entry::Vacant(unknown) => {
                        let Some(key) = group_key.query_row([unknown.key()], |row| row.get(0)).optional()? else {
                            appended.push(Appended::GroupGone);
                            continue 'appends;
                        };
                        *unknown.insert(key)
                    }
                };
                keys.push(key);
            }
            // Of two commits to the same epoch the first wins, in this batch or not.
            if let Some(change) = &append.epoch_change
                && !change_epoch(&tx, change)?
            {
                appended.push(Appended::StaleEpoch);
                continue;
            }
            let mut ids = Vec::with_capacity(append.messages.len());
            for (message, group_key) in append.messages.iter().zip(keys) {
                let id = insert_message.insert(params![
                    group_key,
                    message.sender.map(|id| id.to_string()),
                    message.kind.as_str(),
                    message.payload,
                    message.urgent,
                    message.created_at,
                    message.expires_at,
                ])?;
                let before = queued.len();
                for device in &message.recipients {
                    // Only to live devices: one gone or revoked meanwhile gets nothing.
                    let Some(device_queue) = queues.live_queue(*device)? else { continue };
                    if queue.execute(params![device_queue, id])? > 0 {
                        queued.push((*device, id));
                    }
                }
                if queued.len() == before {
                    forgettable.push(id);
                }
                ids.push(id);
            }
            appended.push(Appended::Stored(ids));
        }
    }

    let mut acknowledged = 0;
    {
        let mut remove = tx.prepare_cached("DELETE FROM deliveries WHERE queue = ?1 AND message_id = ?2")?;
        for (device, ids) in acks {
            // A device deleted meanwhile has no queue left to take entries from.
            let Some(device_queue) = queues.queue(*device)? else { continue };
            for id in ids {
                if remove.execute(params![device_queue, id])? > 0 {
                    acknowledged += 1;
                    forgettable.push(*id);
                }
            }
        }
        forgettable.sort_unstable();
        forgettable.dedup();
        let mut forget = tx.prepare_cached(DELETE_IF_DELIVERED)?;
        for id in forgettable {
            forget.execute([id])?;
        }
    }
    drop(queues); // its statement borrows the transaction
    tx.commit()?;
    Ok(BatchWritten { appended, acknowledged, queued, batch: Vec::new() })
}

/// Each device's queue, and whether the device is live (neither revoked nor gone), looked
/// up once per batch for its messages and its acknowledgements alike (in a relay the same
/// toys receive and acknowledge): the batch holds the write lock, so no revocation lands
/// between two of its statements.
struct Queues<'tx> {
    lookup: rusqlite::CachedStatement<'tx>,
    /// Each device seen, with its queue and whether it is live; none if it is gone.
    seen: HashMap<DeviceId, Option<(i64, bool)>>,
}

impl<'tx> Queues<'tx> {
    fn new(tx: &'tx Transaction<'_>) -> rusqlite::Result<Self> {
        let lookup = tx.prepare_cached(
            "SELECT q.queue, d.revoked_at IS NULL FROM device_queues q JOIN devices d ON d.id = q.device_id \
             WHERE q.device_id = ?1",
        )?;
        Ok(Self { lookup, seen: HashMap::new() })
    }

    /// The queue of a device that may receive: none for one revoked or gone.
    fn live_queue(&mut self, device: DeviceId) -> rusqlite::Result<Option<i64>> {
        Ok(self.of(device)?.and_then(|(queue, live)| live.then_some(queue)))
    }

    /// The queue of a device, revoked or not: none once it is gone.
    fn queue(&mut self, device: DeviceId) -> rusqlite::Result<Option<i64>> {
        Ok(self.of(device)?.map(|(queue, _)| queue))
    }

    fn of(&mut self, device: DeviceId) -> rusqlite::Result<Option<(i64, bool)>> {
        match self.seen.entry(device) {
            Entry::Occupied(seen) => Ok(*seen.get()),
            Entry::Vacant(unseen) => {
                let found = self.lookup.query_row([device.to_string()], |row| Ok((row.get(0)?, row.get(1)?))).optional()?;
                Ok(*unseen.insert(found))
            }
        }
    }
}

/// Moves a group to its next epoch if it is still at the one the change was made for;
/// false if another change got there first.
fn change_epoch(tx: &Transaction<'_>, change: &EpochChange) -> rusqlite::Result<bool> {
    let moved = tx
        .prepare_cached("UPDATE mls_groups SET epoch = ?1, public_state = ?2 WHERE id = ?3 AND epoch = ?4")?
        .execute(params![change.to_epoch, change.public_state, change.group_id, change.from_epoch])?;
    if moved == 0 {
        return Ok(false);
    }
    tx.prepare_cached("DELETE FROM group_members WHERE group_id = ?1")?.execute([&change.group_id])?;
    let mut add = tx.prepare_cached(INSERT_MEMBER)?;
    for member in &change.members {
        add.execute(params![change.group_id, member.to_string()])?;
    }
    Ok(true)
}
