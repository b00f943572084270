//! The [`Store`] over sqlx. One SQL text serves both engines (`$n` placeholders, standard
//! SQL); the `on_pool!` macro expands a method body once per engine, so the two cannot drift.

mod connect;

use async_trait::async_trait;
use cubby_core::FamilyId;
use sqlx::{PgPool, SqlitePool};

use crate::{
    AuditRow, AuditTail, Engine, FamilyRow, KeyOwner, NewAuditRow, Rewrap, Store, StoreError, WrappedKey,
};

pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the engine's concrete pool.
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

pub struct SqlStore {
    db: Db,
}

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

/// A lock id for serialising audit appends across PostgreSQL nodes ("cubbyaud").
const AUDIT_APPEND_LOCK: i64 = 0x6375_6262_7961_7564;

impl SqlStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Ok(Self { db: connect::open(url).await? })
    }

    /// The SQLite pool, for tests that inspect the files directly.
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.db {
            Db::Sqlite(pool) => Some(pool),
            Db::Postgres(_) => None,
        }
    }
}

type KeyRow = (String, String, Vec<u8>, i64);

fn system_key_from_row((_, master_key_id, wrapped_key, created_at): KeyRow) -> WrappedKey {
    WrappedKey { owner: KeyOwner::System, master_key_id, wrapped_key, created_at }
}

fn family_key_from_row((family_id, master_key_id, wrapped_key, created_at): KeyRow) -> Result<WrappedKey, StoreError> {
    let id = parse_family_id(&family_id)?;
    Ok(WrappedKey { owner: KeyOwner::Family(id), master_key_id, wrapped_key, created_at })
}

fn parse_family_id(text: &str) -> Result<FamilyId, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt("family id".to_owned()))
}

const SELECT_SYSTEM_KEY: &str =
    "SELECT owner, master_key_id, wrapped_key, created_at FROM system_keys WHERE owner = $1";

#[async_trait]
impl Store for SqlStore {
    fn engine(&self) -> Engine {
        match self.db {
            Db::Sqlite(_) => Engine::Sqlite,
            Db::Postgres(_) => Engine::Postgres,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    async fn close(&self) {
        on_pool!(&self.db, |pool| pool.close().await)
    }

    async fn system_key(&self) -> Result<Option<WrappedKey>, StoreError> {
        let row: Option<KeyRow> = on_pool!(&self.db, |pool| {
            sqlx::query_as(SELECT_SYSTEM_KEY).bind(KeyOwner::System.label()).fetch_optional(pool).await
        })?;
        Ok(row.map(system_key_from_row))
    }

    async fn insert_system_key(&self, key: &WrappedKey) -> Result<WrappedKey, StoreError> {
        let row: KeyRow = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO system_keys (owner, master_key_id, wrapped_key, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (owner) DO NOTHING",
            )
            .bind(KeyOwner::System.label())
            .bind(&key.master_key_id)
            .bind(&key.wrapped_key)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query_as(SELECT_SYSTEM_KEY).bind(KeyOwner::System.label()).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(row)
        })?;
        Ok(system_key_from_row(row))
    }

    async fn keys_not_wrapped_by(&self, master_key_id: &str, limit: i64) -> Result<Vec<WrappedKey>, StoreError> {
        let (system, families): (Vec<KeyRow>, Vec<KeyRow>) = on_pool!(&self.db, |pool| {
            let system = sqlx::query_as(
                "SELECT owner, master_key_id, wrapped_key, created_at FROM system_keys \
                 WHERE master_key_id <> $1 ORDER BY owner LIMIT $2",
            )
            .bind(master_key_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let families = sqlx::query_as(
                "SELECT family_id, master_key_id, wrapped_key, created_at FROM family_keys \
                 WHERE master_key_id <> $1 ORDER BY family_id LIMIT $2",
            )
            .bind(master_key_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok::<_, sqlx::Error>((system, families))
        })?;
        let mut keys: Vec<WrappedKey> = system.into_iter().map(system_key_from_row).collect();
        for row in families {
            keys.push(family_key_from_row(row)?);
        }
        keys.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(keys)
    }

    async fn rewrap_keys(&self, updates: &[Rewrap]) -> Result<u64, StoreError> {
        let applied = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            let mut applied = 0;
            for update in updates {
                let (sql, owner) = match update.owner {
                    KeyOwner::System => (
                        "UPDATE system_keys SET master_key_id = $1, wrapped_key = $2 \
                         WHERE owner = $3 AND master_key_id = $4",
                        KeyOwner::System.label(),
                    ),
                    KeyOwner::Family(id) => (
                        "UPDATE family_keys SET master_key_id = $1, wrapped_key = $2 \
                         WHERE family_id = $3 AND master_key_id = $4",
                        id.to_string(),
                    ),
                };
                applied += sqlx::query(sql)
                    .bind(&update.new_master_key_id)
                    .bind(&update.wrapped_key)
                    .bind(owner)
                    .bind(&update.old_master_key_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(applied)
        })?;
        Ok(applied)
    }

    async fn count_keys_by_master(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let counts = on_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT master_key_id, COUNT(*) FROM \
                 (SELECT master_key_id FROM system_keys UNION ALL SELECT master_key_id FROM family_keys) AS k \
                 GROUP BY master_key_id ORDER BY master_key_id",
            )
            .fetch_all(pool)
            .await
        })?;
        Ok(counts)
    }

    async fn create_family(&self, family: &FamilyRow, key: &WrappedKey) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            let mut tx = pool.begin().await.map_err(StoreError::from)?;
            sqlx::query("INSERT INTO families (id, created_at, name_sealed) VALUES ($1, $2, $3)")
                .bind(family.id.to_string())
                .bind(family.created_at)
                .bind(&family.name_sealed)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_write)?;
            sqlx::query(
                "INSERT INTO family_keys (family_id, master_key_id, wrapped_key, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(family.id.to_string())
            .bind(&key.master_key_id)
            .bind(&key.wrapped_key)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_write)?;
            tx.commit().await.map_err(StoreError::from)
        })
    }

    async fn family(&self, id: FamilyId) -> Result<Option<FamilyRow>, StoreError> {
        let row: Option<(String, i64, Vec<u8>)> = on_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT id, created_at, name_sealed FROM families WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(pool)
                .await
        })?;
        row.map(|(id, created_at, name_sealed)| {
            Ok(FamilyRow { id: parse_family_id(&id)?, created_at, name_sealed })
        })
        .transpose()
    }

    async fn family_key(&self, id: FamilyId) -> Result<Option<WrappedKey>, StoreError> {
        let row: Option<KeyRow> = on_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT family_id, master_key_id, wrapped_key, created_at FROM family_keys WHERE family_id = $1",
            )
            .bind(id.to_string())
            .fetch_optional(pool)
            .await
        })?;
        row.map(family_key_from_row).transpose()
    }

    async fn delete_family(&self, id: FamilyId) -> Result<bool, StoreError> {
        let deleted = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            // The key goes first and explicitly: shredding must not depend on a cascade.
            sqlx::query("DELETE FROM family_keys WHERE family_id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            let deleted = sqlx::query("DELETE FROM families WHERE id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(deleted)
        })?;
        Ok(deleted > 0)
    }

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
                let mut tx = pool.begin().await?;
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
}

