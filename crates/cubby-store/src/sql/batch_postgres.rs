//! PostgreSQL's side of the group commit: a batch in a handful of statements whatever its
//! size (all its messages in one multi-row `INSERT`, their queue entries in one `INSERT …
//! SELECT`, all acknowledgements in one `DELETE`), since each statement is a round trip
//! to the server. SQLite's side is [`super::batch_sqlite`].

use std::collections::HashMap;

use cubby_core::DeviceId;
use sqlx::PgPool;

use super::messaging::{INSERT_MEMBER, IDS_PER_STATEMENT};
use super::{BeginWrite, parse_id, push_list};
use crate::{Append, Appended, BatchWritten, NewMessage, StoreError};

/// Messages in one multi-row insert (seven parameters each).
const MESSAGES_PER_STATEMENT: usize = 100;
/// Queue entries in one multi-row insert (two parameters each).
const DELIVERIES_PER_STATEMENT: usize = 250;

pub(super) async fn write_batch(pool: &PgPool, batch: Vec<Append>, acks: Vec<(DeviceId, Vec<i64>)>) -> Result<BatchWritten, StoreError> {
    let mut outcomes = Vec::with_capacity(batch.len());
    let written = async {
        let mut tx = pool.begin_write().await?;
        // Group changes first, in order: of two commits to the same epoch the first
        // wins, in this batch or across nodes. Recipients were chosen by the caller,
        // so the order of changes and inserts does not matter to them.
        // Each with its group's key.
        let mut messages: Vec<(i64, &NewMessage)> = Vec::new();
        // A group deleted since its sender looked it up refuses that append alone,
        // rather than failing the whole batch on the foreign key.
        let mut wanted: Vec<&[u8]> = batch.iter().flat_map(|a| &a.messages).map(|m| m.group_id.as_slice()).collect();
        wanted.sort_unstable();
        wanted.dedup();
        // A group's key exists as long as the group does (cascade).
        let mut group_keys: HashMap<Vec<u8>, i64> = HashMap::with_capacity(wanted.len());
        for chunk in wanted.chunks(IDS_PER_STATEMENT) {
            let mut select = sqlx::QueryBuilder::new("SELECT group_id, group_key FROM group_keys WHERE group_id IN (");
            push_list(&mut select, chunk.iter().copied());
            select.push(")");
            group_keys.extend(select.build_query_as::<(Vec<u8>, i64)>().fetch_all(&mut *tx).await?);
        }
        for append in &batch {
            let keys: Option<Vec<i64>> = append.messages.iter().map(|m| group_keys.get(&m.group_id).copied()).collect();
            let Some(keys) = keys else {
                outcomes.push(Appended::GroupGone);
                continue;
            };
            if let Some(change) = &append.epoch_change {
                let moved = sqlx::query(
                    "UPDATE mls_groups SET epoch = $1, public_state = $2 WHERE id = $3 AND epoch = $4",
                )
                .bind(change.to_epoch)
                .bind(&change.public_state)
                .bind(&change.group_id)
                .bind(change.from_epoch)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if moved == 0 {
                    outcomes.push(Appended::StaleEpoch);
                    continue;
                }
                sqlx::query("DELETE FROM group_members WHERE group_id = $1")
                    .bind(&change.group_id)
                    .execute(&mut *tx)
                    .await?;
                for member in &change.members {
                    sqlx::query(INSERT_MEMBER).bind(&change.group_id).bind(member.to_string()).execute(&mut *tx).await?;
                }
            }
            outcomes.push(Appended::Stored(Vec::with_capacity(append.messages.len())));
            messages.extend(keys.into_iter().zip(&append.messages));
        }

        let mut ids = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(MESSAGES_PER_STATEMENT) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO messages (group_key, sender_device, kind, payload, urgent, created_at, expires_at) ",
            );
            insert.push_values(chunk, |mut row, (group_key, message)| {
                row.push_bind(*group_key)
                    .push_bind(message.sender.map(|id| id.to_string()))
                    .push_bind(message.kind.as_str())
                    .push_bind(&message.payload)
                    .push_bind(message.urgent)
                    .push_bind(message.created_at)
                    .push_bind(message.expires_at);
            });
            insert.push(" RETURNING id");
            let mut chunk_ids: Vec<i64> = insert.build_query_scalar().fetch_all(&mut *tx).await?;
            // RETURNING promises no order, but PostgreSQL draws each row's nextval in
            // VALUES order: ascending ids are the VALUES order.
            chunk_ids.sort_unstable();
            ids.extend(chunk_ids);
        }

        // Only to live devices: one gone or revoked meanwhile gets nothing, and does
        // not fail the batch.
        let queue: Vec<(String, i64)> = messages
            .iter()
            .zip(&ids)
            .flat_map(|((_, message), id)| message.recipients.iter().map(move |device| (device.to_string(), *id)))
            .collect();
        let mut queued: Vec<(String, i64)> = Vec::with_capacity(queue.len());
        for chunk in queue.chunks(DELIVERIES_PER_STATEMENT) {
            let mut insert = sqlx::QueryBuilder::new(
                "WITH inserted AS (INSERT INTO deliveries (queue, message_id) SELECT q.queue, v.column2 FROM (",
            );
            insert.push_values(chunk, |mut row, (device, id)| {
                row.push_bind(device).push_bind(*id);
            });
            insert.push(
                ") AS v JOIN devices d ON d.id = v.column1 JOIN device_queues q ON q.device_id = d.id \
                 WHERE d.revoked_at IS NULL ON CONFLICT (queue, message_id) DO NOTHING RETURNING queue, message_id) \
                 SELECT q.device_id, i.message_id FROM inserted i JOIN device_queues q ON q.queue = i.queue",
            );
            queued.extend(insert.build_query_as::<(String, i64)>().fetch_all(&mut *tx).await?);
        }

        // Acknowledgements: one statement for all of the batch's devices (an OR of
        // per-device IN lists, which PostgreSQL answers from the primary key), each
        // device's ids packed into statements of at most IDS_PER_STATEMENT parameters.
        let mut statements: Vec<Vec<(String, &[i64])>> = Vec::new();
        let mut bound = IDS_PER_STATEMENT;
        for (device, ids) in &acks {
            for ids in ids.chunks(IDS_PER_STATEMENT - 1) {
                if bound + 1 + ids.len() > IDS_PER_STATEMENT {
                    statements.push(Vec::new());
                    bound = 0;
                }
                bound += 1 + ids.len();
                if let Some(statement) = statements.last_mut() {
                    statement.push((device.to_string(), ids));
                }
            }
        }
        let mut removed = 0;
        for statement in &statements {
            let mut delete = sqlx::QueryBuilder::new("DELETE FROM deliveries WHERE ");
            for (n, (device, ids)) in statement.iter().enumerate() {
                delete.push(if n == 0 { "(" } else { " OR (" });
                delete.push("queue = (SELECT queue FROM device_queues WHERE device_id = ");
                delete.push_bind(device).push(") AND message_id IN (");
                push_list(&mut delete, ids.iter().copied());
                delete.push("))");
            }
            removed += delete.build().execute(&mut *tx).await?.rows_affected();
        }
        // Then, in one pass, the messages no device waits for any longer: acknowledged
        // by all, or (not kept until they expire) written for nobody live.
        let mut forgettable: Vec<i64> = acks.iter().flat_map(|(_, ids)| ids.iter().copied()).collect();
        if queued.len() < queue.len() || messages.iter().any(|(_, m)| m.recipients.is_empty()) {
            forgettable.extend(&ids);
        }
        forgettable.sort_unstable();
        forgettable.dedup();
        for chunk in forgettable.chunks(IDS_PER_STATEMENT) {
            let mut forget = sqlx::QueryBuilder::new("DELETE FROM messages WHERE id IN (");
            push_list(&mut forget, chunk.iter().copied());
            forget.push(") AND NOT EXISTS (SELECT 1 FROM deliveries WHERE message_id = messages.id)");
            forget.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok::<_, sqlx::Error>((ids, removed, queued))
    }
    .await?;
    let (ids, acknowledged, queued) = written;
    let queued = queued.iter().map(|(device, id)| Ok((parse_id(device)?, *id))).collect::<Result<_, StoreError>>()?;
    let mut ids = ids.into_iter();
    for (append, outcome) in batch.iter().zip(&mut outcomes) {
        if let Appended::Stored(stored) = outcome {
            stored.extend(ids.by_ref().take(append.messages.len()));
        }
    }
    Ok(BatchWritten { appended: outcomes, acknowledged, queued, batch })
}

