use async_trait::async_trait;
use cubby_core::DeviceId;

use super::{BeginWrite, SqlStore, parse_id, parse_opt_id};
use crate::{ChunkOutcome, MediaChunk, MediaId, MediaRow, MediaStore, NewMedia, StoreError};

type MediaTuple = (String, String, Vec<u8>, Option<String>, i64, i64, i64, Option<i64>, i64);

const SELECT_MEDIA: &str = "SELECT id, family_id, group_id, uploader_device, size, received, created_at, completed_at, \
                            expires_at FROM media WHERE id = $1";

fn media_from(row: MediaTuple) -> Result<MediaRow, StoreError> {
    let (id, family_id, group_id, uploader, size, received, created_at, completed_at, expires_at) = row;
    let id = MediaId::parse(&id).ok_or_else(|| StoreError::Corrupt("a media id".into()))?;
    Ok(MediaRow {
        id,
        family_id: parse_id(&family_id)?,
        group_id,
        uploader: parse_opt_id(uploader)?,
        size,
        received,
        created_at,
        completed_at,
        expires_at,
    })
}

/// A recipient that can still fetch the blob: it has not yet, its device is live, and it
/// is still a member of the conversation. (A fragment of the queries over `media` below,
/// joined at compile time: the SQL stays constant.)
macro_rules! someone_waits {
    () => {
        "EXISTS (SELECT 1 FROM media_recipients r \
         JOIN devices d ON d.id = r.device_id \
         JOIN group_members g ON g.device_id = r.device_id AND g.group_id = media.group_id \
         WHERE r.media_id = media.id AND r.fetched_at IS NULL AND d.revoked_at IS NULL)"
    };
}

/// Whether a complete blob is for nobody any more.
const FETCHED_BY_ALL_SQL: &str =
    concat!("SELECT COUNT(*) FROM media WHERE id = $1 AND completed_at IS NOT NULL AND NOT ", someone_waits!());

/// Blobs to delete: expired, unfinished for too long, or complete and waited for by nobody.
const DUE_SQL: &str = concat!(
    "SELECT id FROM media WHERE expires_at <= $1 OR (completed_at IS NULL AND created_at < $2) \
     OR (completed_at IS NOT NULL AND NOT ",
    someone_waits!(),
    ") ORDER BY created_at LIMIT $3"
);

#[async_trait]
impl MediaStore for SqlStore {
    async fn create_media(&self, media: &NewMedia) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO media (id, family_id, group_id, uploader_device, size, received, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, 0, $6, $7)",
            )
            .bind(media.id.as_str())
            .bind(media.family_id.to_string())
            .bind(&media.group_id)
            .bind(media.uploader.to_string())
            .bind(media.size)
            .bind(media.created_at)
            .bind(media.expires_at)
            .execute(pool)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }

    async fn media(&self, id: &MediaId) -> Result<Option<MediaRow>, StoreError> {
        let row: Option<MediaTuple> =
            on_pool!(&self.db, |pool| sqlx::query_as(SELECT_MEDIA).bind(id.as_str()).fetch_optional(pool).await)?;
        row.map(media_from).transpose()
    }

    async fn open_uploads(&self, device: DeviceId) -> Result<i64, StoreError> {
        let (n,): (i64,) = on_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM media WHERE uploader_device = $1 AND completed_at IS NULL")
                .bind(device.to_string())
                .fetch_one(pool)
                .await
        })?;
        Ok(n)
    }

    async fn add_media_chunk(&self, id: &MediaId, chunk: &MediaChunk, now: i64) -> Result<ChunkOutcome, StoreError> {
        let outcome = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            // A write first: SQLite takes its write lock before anything is read, and of
            // two chunks for the same offset exactly one moves the upload on.
            let moved = sqlx::query(
                "UPDATE media SET received = $2 + $3 \
                 WHERE id = $1 AND received = $2 AND completed_at IS NULL AND $2 + $3 <= size",
            )
            .bind(id.as_str())
            .bind(chunk.start)
            .bind(chunk.length)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let outcome = if moved == 0 {
                let current: Option<(i64,)> = sqlx::query_as("SELECT received FROM media WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                match current {
                    Some((received,)) => ChunkOutcome::WrongOffset { received },
                    None => ChunkOutcome::Gone,
                }
            } else {
                sqlx::query("INSERT INTO media_chunks (media_id, start, length, object_key) VALUES ($1, $2, $3, $4)")
                    .bind(id.as_str())
                    .bind(chunk.start)
                    .bind(chunk.length)
                    .bind(&chunk.object_key)
                    .execute(&mut *tx)
                    .await?;
                let (received, size): (i64, i64) = sqlx::query_as("SELECT received, size FROM media WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                let completed = received == size;
                if completed {
                    sqlx::query("UPDATE media SET completed_at = $2 WHERE id = $1")
                        .bind(id.as_str())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    // The group's live members now, but the uploader.
                    sqlx::query(
                        "INSERT INTO media_recipients (media_id, device_id) \
                         SELECT x.id, g.device_id FROM media x \
                         JOIN group_members g ON g.group_id = x.group_id \
                         JOIN devices d ON d.id = g.device_id \
                         WHERE x.id = $1 AND d.revoked_at IS NULL \
                         AND (x.uploader_device IS NULL OR g.device_id <> x.uploader_device)",
                    )
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                ChunkOutcome::Stored { received, completed }
            };
            tx.commit().await?;
            Ok::<_, sqlx::Error>(outcome)
        })?;
        Ok(outcome)
    }

    async fn media_chunks(&self, id: &MediaId) -> Result<Vec<MediaChunk>, StoreError> {
        let rows: Vec<(i64, i64, String)> = on_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT start, length, object_key FROM media_chunks WHERE media_id = $1 ORDER BY start")
                .bind(id.as_str())
                .fetch_all(pool)
                .await
        })?;
        Ok(rows.into_iter().map(|(start, length, object_key)| MediaChunk { start, length, object_key }).collect())
    }

    async fn is_media_recipient(&self, id: &MediaId, device: DeviceId) -> Result<bool, StoreError> {
        let (n,): (i64,) = on_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM media_recipients WHERE media_id = $1 AND device_id = $2")
                .bind(id.as_str())
                .bind(device.to_string())
                .fetch_one(pool)
                .await
        })?;
        Ok(n > 0)
    }

    async fn record_media_fetch(&self, id: &MediaId, device: DeviceId, now: i64) -> Result<bool, StoreError> {
        let done = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "UPDATE media_recipients SET fetched_at = $3 WHERE media_id = $1 AND device_id = $2 AND fetched_at IS NULL",
            )
            .bind(id.as_str())
            .bind(device.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let (n,): (i64,) = sqlx::query_as(FETCHED_BY_ALL_SQL).bind(id.as_str()).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n > 0)
        })?;
        Ok(done)
    }

    async fn due_media(&self, now: i64, incomplete_before: i64, limit: i64) -> Result<Vec<MediaId>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(&self.db, |pool| {
            sqlx::query_as(DUE_SQL).bind(now).bind(incomplete_before).bind(limit).fetch_all(pool).await
        })?;
        rows.iter().map(|(id,)| MediaId::parse(id).ok_or_else(|| StoreError::Corrupt("a media id".into()))).collect()
    }

    async fn delete_media(&self, id: &MediaId) -> Result<bool, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            sqlx::query("DELETE FROM media WHERE id = $1").bind(id.as_str()).execute(pool).await.map(|r| r.rows_affected())
        })?;
        Ok(n > 0)
    }
}
