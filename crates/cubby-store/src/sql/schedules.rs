use async_trait::async_trait;
use cubby_core::{ChildId, FamilyId};

use super::messaging::IDS_PER_STATEMENT;
use super::{BeginWrite, SqlStore, parse_id, push_list};
use crate::{ScheduleStore, StoreError};

#[async_trait]
impl ScheduleStore for SqlStore {
    async fn set_quiet_hours(&self, family: FamilyId, child: ChildId, sealed: &[u8], at: i64) -> Result<bool, StoreError> {
        let written = on_pool!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO quiet_hours (child_id, family_id, schedule_sealed, updated_at) \
                 SELECT id, family_id, $3, $4 FROM children WHERE id = $1 AND family_id = $2 \
                 ON CONFLICT (child_id) DO UPDATE SET schedule_sealed = excluded.schedule_sealed, updated_at = excluded.updated_at",
            )
            .bind(child.to_string())
            .bind(family.to_string())
            .bind(sealed)
            .bind(at)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(StoreError::from_write)?;
        Ok(written == 1)
    }

    async fn quiet_hours(&self, child: ChildId) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Vec<u8>,)> = on_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT schedule_sealed FROM quiet_hours WHERE child_id = $1")
                .bind(child.to_string())
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.map(|(sealed,)| sealed))
    }

    async fn quiet_hours_set_at(&self, children: &[ChildId]) -> Result<Vec<(ChildId, i64)>, StoreError> {
        let mut set_at = Vec::new();
        for chunk in children.chunks(IDS_PER_STATEMENT) {
            let rows: Vec<(String, i64)> = on_pool!(&self.db, |pool| {
                let mut select = sqlx::QueryBuilder::new("SELECT child_id, updated_at FROM quiet_hours WHERE child_id IN (");
                push_list(&mut select, chunk.iter().map(ToString::to_string));
                select.push(")");
                select.build_query_as().fetch_all(pool).await
            })?;
            for (child, at) in rows {
                set_at.push((parse_id(&child)?, at));
            }
        }
        Ok(set_at)
    }

    async fn delete_quiet_hours(&self, family: FamilyId, child: ChildId) -> Result<bool, StoreError> {
        let deleted = on_pool!(&self.db, |pool| {
            sqlx::query("DELETE FROM quiet_hours WHERE child_id = $1 AND family_id = $2")
                .bind(child.to_string())
                .bind(family.to_string())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(deleted == 1)
    }

    async fn count_send(&self, child: ChildId, day_start: i64, limit: i64) -> Result<bool, StoreError> {
        let counted = on_pool!(&self.db, |pool| async {
            let mut tx = pool.begin_write().await?;
            sqlx::query("DELETE FROM daily_sends WHERE child_id = $1 AND day_start < $2")
                .bind(child.to_string())
                .bind(day_start)
                .execute(&mut *tx)
                .await?;
            // Counted only below the limit: the WHERE of the upsert keeps it exact under
            // concurrent sends.
            let counted = sqlx::query(
                "INSERT INTO daily_sends (child_id, day_start, sent) VALUES ($1, $2, 1) \
                 ON CONFLICT (child_id, day_start) DO UPDATE SET sent = daily_sends.sent + 1 WHERE daily_sends.sent < $3",
            )
            .bind(child.to_string())
            .bind(day_start)
            .bind(limit)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(counted == 1)
        }
        .await)?;
        Ok(counted)
    }
}
