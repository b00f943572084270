use async_trait::async_trait;

use super::{BeginWrite, SqlStore, parse_id};
use crate::{KeyOwner, KeyStore, Rewrap, StoreError, WrappedKey};

type KeyRow = (String, String, Vec<u8>, i64);

/// Per owner kind: the select by owner, the select of keys not wrapped by a master key,
/// and the conditional re-wrap. Constant texts, one per table.
struct KeyTable {
    select_one: &'static str,
    select_pending: &'static str,
    rewrap: &'static str,
    owner: fn(&str) -> Result<KeyOwner, StoreError>,
}

macro_rules! key_table {
    ($table:literal, $owner:literal, $make:expr) => {
        KeyTable {
            select_one: concat!("SELECT ", $owner, ", master_key_id, wrapped_key, created_at FROM ", $table,
                                " WHERE ", $owner, " = $1"),
            select_pending: concat!("SELECT ", $owner, ", master_key_id, wrapped_key, created_at FROM ", $table,
                                    " WHERE master_key_id <> $1 ORDER BY ", $owner, " LIMIT $2"),
            rewrap: concat!("UPDATE ", $table, " SET master_key_id = $1, wrapped_key = $2 WHERE ", $owner,
                            " = $3 AND master_key_id = $4"),
            owner: $make,
        }
    };
}

fn system_owner(_: &str) -> Result<KeyOwner, StoreError> {
    Ok(KeyOwner::System)
}
fn family_owner(id: &str) -> Result<KeyOwner, StoreError> {
    parse_id(id).map(KeyOwner::Family)
}
fn account_owner(id: &str) -> Result<KeyOwner, StoreError> {
    parse_id(id).map(KeyOwner::Account)
}
fn child_owner(id: &str) -> Result<KeyOwner, StoreError> {
    parse_id(id).map(KeyOwner::Child)
}

const SYSTEM: KeyTable = key_table!("system_keys", "owner", system_owner);
const FAMILY: KeyTable = key_table!("family_keys", "family_id", family_owner);
const ACCOUNT: KeyTable = key_table!("account_keys", "account_id", account_owner);
const CHILD: KeyTable = key_table!("child_keys", "child_id", child_owner);

fn table(owner: &KeyOwner) -> (&'static KeyTable, String) {
    match owner {
        KeyOwner::System => (&SYSTEM, owner.label()),
        KeyOwner::Family(id) => (&FAMILY, id.to_string()),
        KeyOwner::Account(id) => (&ACCOUNT, id.to_string()),
        KeyOwner::Child(id) => (&CHILD, id.to_string()),
    }
}

fn key_from_row(kind: &KeyTable, (owner, master_key_id, wrapped_key, created_at): KeyRow) -> Result<WrappedKey, StoreError> {
    Ok(WrappedKey { owner: (kind.owner)(&owner)?, master_key_id, wrapped_key, created_at })
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn system_key(&self) -> Result<Option<WrappedKey>, StoreError> {
        self.data_key(KeyOwner::System).await
    }

    async fn insert_system_key(&self, key: &WrappedKey) -> Result<WrappedKey, StoreError> {
        let row: KeyRow = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
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
            let row = sqlx::query_as(SYSTEM.select_one).bind(KeyOwner::System.label()).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(row)
        })?;
        key_from_row(&SYSTEM, row)
    }

    async fn data_key(&self, owner: KeyOwner) -> Result<Option<WrappedKey>, StoreError> {
        let (kind, id) = table(&owner);
        let row: Option<KeyRow> =
            on_pool!(&self.db, |pool| sqlx::query_as(kind.select_one).bind(id).fetch_optional(pool).await)?;
        row.map(|row| key_from_row(kind, row)).transpose()
    }

    async fn keys_not_wrapped_by(&self, master_key_id: &str, limit: i64) -> Result<Vec<WrappedKey>, StoreError> {
        let mut keys = Vec::new();
        for kind in [&SYSTEM, &FAMILY, &ACCOUNT, &CHILD] {
            let remaining = limit - i64::try_from(keys.len()).unwrap_or(limit);
            if remaining <= 0 {
                break;
            }
            let rows: Vec<KeyRow> = on_pool!(&self.db, |pool| {
                sqlx::query_as(kind.select_pending).bind(master_key_id).bind(remaining).fetch_all(pool).await
            })?;
            for row in rows {
                keys.push(key_from_row(kind, row)?);
            }
        }
        Ok(keys)
    }

    async fn rewrap_keys(&self, updates: &[Rewrap]) -> Result<u64, StoreError> {
        let applied = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut applied = 0;
            for update in updates {
                let (kind, owner) = table(&update.owner);
                applied += sqlx::query(kind.rewrap)
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
                "SELECT master_key_id, COUNT(*) FROM (\
                 SELECT master_key_id FROM system_keys UNION ALL SELECT master_key_id FROM family_keys \
                 UNION ALL SELECT master_key_id FROM account_keys UNION ALL SELECT master_key_id FROM child_keys\
                 ) AS k GROUP BY master_key_id ORDER BY master_key_id",
            )
            .fetch_all(pool)
            .await
        })?;
        Ok(counts)
    }
}
