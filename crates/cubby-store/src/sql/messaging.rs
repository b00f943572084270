use async_trait::async_trait;
use cubby_core::DeviceId;

use super::{BeginWrite, Db, SqlStore, batch_postgres, parse_id, parse_opt_id};
use crate::{
    Append, BatchWritten, BlockingBatchWriter, GroupRouting, GroupRow, MessageKind, MessagingStore, NewKeyPackage, QueuedMessage,
    StoreError,
};

type GroupTuple = (Vec<u8>, String, i64, Vec<u8>, i64);

fn group_from((id, family_id, epoch, public_state, created_at): GroupTuple) -> Result<GroupRow, StoreError> {
    Ok(GroupRow { id, family_id: parse_id(&family_id)?, epoch, public_state, created_at })
}

type QueuedTuple = (i64, Vec<u8>, Option<String>, String, Vec<u8>, bool, i64);

fn queued_from((id, group_id, sender, kind, payload, urgent, created_at): QueuedTuple) -> Result<QueuedMessage, StoreError> {
    let kind = MessageKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("message {id}: unknown kind")))?;
    Ok(QueuedMessage { id, group_id, sender: parse_opt_id(sender)?, kind, payload, urgent, created_at })
}

/// Adds a device to a group if it still exists (a device deleted meanwhile is skipped, not
/// an error that would fail a whole batch).
pub(super) const INSERT_MEMBER: &str = "INSERT INTO group_members (group_id, device_id) SELECT $1, id FROM devices WHERE id = $2 \
                             ON CONFLICT (group_id, device_id) DO NOTHING";

/// Ids bound in one `IN (…)` list, well under either engine's limit on parameters.
pub(super) const IDS_PER_STATEMENT: usize = 500;

/// Deletes a message once no device waits for it any longer.
pub(super) const DELETE_IF_DELIVERED: &str =
    "DELETE FROM messages WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM deliveries WHERE message_id = $1)";

#[async_trait]
impl MessagingStore for SqlStore {
    async fn add_key_packages(&self, device: DeviceId, packages: &[NewKeyPackage]) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            if packages.iter().any(|p| p.last_resort) {
                sqlx::query("DELETE FROM key_packages WHERE device_id = $1 AND last_resort = TRUE")
                    .bind(device.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            for p in packages {
                sqlx::query("INSERT INTO key_packages (device_id, package, last_resort) VALUES ($1, $2, $3)")
                    .bind(device.to_string())
                    .bind(&p.package)
                    .bind(p.last_resort)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })?;
        Ok(())
    }

    async fn claim_key_package(&self, device: DeviceId) -> Result<Option<Vec<u8>>, StoreError> {
        let package = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            // A write first, so SQLite takes its write lock (waiting its turn) before reading.
            let package = loop {
                let claimed: Option<(Vec<u8>,)> = sqlx::query_as(
                    "DELETE FROM key_packages WHERE id = (SELECT id FROM key_packages \
                     WHERE device_id = $1 AND last_resort = FALSE ORDER BY id LIMIT 1) RETURNING package",
                )
                .bind(device.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((package,)) = claimed {
                    break Some(package);
                }
                // Nothing deleted: none is left, or (PostgreSQL) a concurrent claim took the
                // one this picked, and the next is there for the taking.
                let (left,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM key_packages WHERE device_id = $1 AND last_resort = FALSE")
                        .bind(device.to_string())
                        .fetch_one(&mut *tx)
                        .await?;
                if left == 0 {
                    let last: Option<(Vec<u8>,)> = sqlx::query_as(
                        "SELECT package FROM key_packages WHERE device_id = $1 AND last_resort = TRUE \
                         ORDER BY id DESC LIMIT 1",
                    )
                    .bind(device.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
                    break last.map(|(package,)| package);
                }
            };
            tx.commit().await?;
            Ok::<_, sqlx::Error>(package)
        })?;
        Ok(package)
    }

    async fn key_packages_left(&self, device: DeviceId) -> Result<i64, StoreError> {
        let (left,): (i64,) = on_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM key_packages WHERE device_id = $1 AND last_resort = FALSE")
                .bind(device.to_string())
                .fetch_one(pool)
                .await
        })?;
        Ok(left)
    }

    async fn create_group(&self, group: &GroupRow, members: &[DeviceId]) -> Result<bool, StoreError> {
        let created = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let created = sqlx::query(
                "INSERT INTO mls_groups (id, family_id, epoch, public_state, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&group.id)
            .bind(group.family_id.to_string())
            .bind(group.epoch)
            .bind(&group.public_state)
            .bind(group.created_at)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
            if created {
                sqlx::query("INSERT INTO group_keys (group_id) VALUES ($1)").bind(&group.id).execute(&mut *tx).await?;
                for member in members {
                    sqlx::query(INSERT_MEMBER).bind(&group.id).bind(member.to_string()).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Ok::<_, sqlx::Error>(created)
        })?;
        Ok(created)
    }

    async fn group(&self, id: &[u8]) -> Result<Option<GroupRow>, StoreError> {
        let row: Option<GroupTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT id, family_id, epoch, public_state, created_at FROM mls_groups WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        row.map(group_from).transpose()
    }

    async fn group_members(&self, id: &[u8]) -> Result<Vec<DeviceId>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT device_id FROM group_members WHERE group_id = $1 ORDER BY device_id")
                .bind(id)
                .fetch_all(pool)
                .await
        })?;
        rows.iter().map(|(id,)| parse_id(id)).collect()
    }

    async fn group_routing(&self, id: &[u8]) -> Result<Option<GroupRouting>, StoreError> {
        // A LEFT JOIN so that a group without members still answers (with none).
        let rows: Vec<(String, i64, Option<String>)> = on_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT g.family_id, g.epoch, m.device_id FROM mls_groups g \
                 LEFT JOIN group_members m ON m.group_id = g.id WHERE g.id = $1 ORDER BY m.device_id",
            )
            .bind(id)
            .fetch_all(pool)
            .await
        })?;
        let Some((family_id, epoch, _)) = rows.first() else { return Ok(None) };
        let members = rows.iter().filter_map(|(_, _, device)| device.as_deref()).map(parse_id).collect::<Result<_, _>>()?;
        Ok(Some(GroupRouting { family_id: parse_id(family_id)?, epoch: *epoch, members }))
    }

    async fn device_groups(&self, device: DeviceId) -> Result<Vec<GroupRow>, StoreError> {
        let rows: Vec<GroupTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT g.id, g.family_id, g.epoch, g.public_state, g.created_at \
                 FROM group_members m JOIN mls_groups g ON g.id = m.group_id \
                 WHERE m.device_id = $1 ORDER BY g.created_at, g.id",
            )
            .bind(device.to_string())
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(group_from).collect()
    }

    async fn write_batch(&self, batch: Vec<Append>, acks: Vec<(DeviceId, Vec<i64>)>) -> Result<BatchWritten, StoreError> {
        match (&self.db, &self.sqlite_writer) {
            (_, Some(writer)) => writer.write_batch(batch, acks).await,
            (Db::Postgres(pool), None) => batch_postgres::write_batch(pool, batch, acks).await,
            // SqlStore::connect opens the writer with every SQLite pool.
            (Db::Sqlite(_), None) => Err(StoreError::UnsupportedUrl),
        }
    }

    fn blocking_batch_writer(&self) -> Option<&dyn BlockingBatchWriter> {
        self.sqlite_writer.as_ref().map(|writer| writer as &dyn BlockingBatchWriter)
    }

    async fn queued_for(&self, device: DeviceId, after_id: i64, limit: i64) -> Result<Vec<QueuedMessage>, StoreError> {
        let rows: Vec<QueuedTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT m.id, g.group_id, m.sender_device, m.kind, m.payload, m.urgent, m.created_at \
                 FROM device_queues q JOIN deliveries d ON d.queue = q.queue \
                 JOIN messages m ON m.id = d.message_id JOIN group_keys g ON g.group_key = m.group_key \
                 WHERE q.device_id = $1 AND d.message_id > $2 ORDER BY d.message_id LIMIT $3",
            )
            .bind(device.to_string())
            .bind(after_id)
            .bind(limit)
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(queued_from).collect()
    }

    async fn drop_queue(&self, device: DeviceId) -> Result<u64, StoreError> {
        let dropped = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let rows: Vec<(i64,)> = sqlx::query_as(
                "DELETE FROM deliveries WHERE queue = (SELECT queue FROM device_queues WHERE device_id = $1) \
                 RETURNING message_id",
            )
            .bind(device.to_string())
            .fetch_all(&mut *tx)
            .await?;
            for (id,) in &rows {
                sqlx::query(DELETE_IF_DELIVERED).bind(id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(rows.len() as u64)
        })?;
        Ok(dropped)
    }

    async fn expire_messages(&self, now: i64) -> Result<u64, StoreError> {
        // Queue entries go by cascade (SQLite's foreign keys are on for every connection).
        let n = on_pool!(&self.db, |pool| {
            sqlx::query("DELETE FROM messages WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n)
    }
}
