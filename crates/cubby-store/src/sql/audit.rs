use async_trait::async_trait;
use cubby_core::FamilyId;

use super::{BeginWrite, Db, SqlStore};
use crate::{AuditRow, AuditStore, AuditTail, NewAuditRow, StoreError};

/// A lock id for serialising audit appends across PostgreSQL nodes ("cubbyaud").
const AUDIT_APPEND_LOCK: i64 = 0x6375_6262_7961_7564;


/// Reads the audit tail and inserts the entry `build` makes for it, inside transaction `tx`.
macro_rules! append_audit_in {
    ($tx:ident, $build:expr) => {{
        let last: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *$tx)
                .await?;
        let tail = match last {
            Some((seq, mac)) => AuditTail { seq, mac: Some(mac) },
            None => AuditTail::default(),
        };
        let entry: NewAuditRow = $build(&tail);
        let row: AuditRow = sqlx::query_as(
            "INSERT INTO audit_log (seq, at, actor, action, family_id, detail, prev_mac, mac) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             RETURNING seq, at, actor, action, family_id, detail, prev_mac, mac",
        )
        .bind(tail.seq + 1)
        .bind(entry.at)
        .bind(entry.actor)
        .bind(entry.action)
        .bind(entry.family_id.map(|id| id.to_string()))
        .bind(entry.detail)
        .bind(entry.prev_mac)
        .bind(entry.mac)
        .fetch_one(&mut *$tx)
        .await
        .map_err(StoreError::from_write)?;
        row
    }};
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(
        &self,
        build: &(dyn for<'t> Fn(&'t AuditTail) -> NewAuditRow + Send + Sync),
    ) -> Result<AuditRow, StoreError> {
        // Appends are serialised so that each entry chains to the true tail: SQLite takes
        // its write lock up front (BEGIN IMMEDIATE), PostgreSQL a transaction advisory lock.
        let row = match &self.db {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let row = append_audit_in!(tx, build);
                tx.commit().await?;
                row
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin_write().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(AUDIT_APPEND_LOCK).execute(&mut *tx).await?;
                let row = append_audit_in!(tx, build);
                tx.commit().await?;
                row
            }
        };
        Ok(row)
    }

    async fn audit_entries(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        let rows = on_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT seq, at, actor, action, family_id, detail, prev_mac, mac FROM audit_log \
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await
        })?;
        Ok(rows)
    }

    async fn family_audit_entries(&self, family: FamilyId, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        let rows = on_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT seq, at, actor, action, family_id, detail, prev_mac, mac FROM audit_log \
                 WHERE family_id = $1 ORDER BY seq DESC LIMIT $2",
            )
            .bind(family.to_string())
            .bind(limit)
            .fetch_all(pool)
            .await
        })?;
        Ok(rows)
    }
}
