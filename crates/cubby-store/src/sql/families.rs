use async_trait::async_trait;
use cubby_core::{AccountId, ChildId, FamilyId};

use super::{BeginWrite, SqlStore, parse_id};
use crate::{ChildRow, ConsentRow, FamilyRow, FamilyStore, GuardianRow, InviteRow, StoreError, WrappedKey};

type ConsentTuple = (String, String, String, String, String, String, i64, Option<i64>);

fn consent_from(row: ConsentTuple) -> Result<ConsentRow, StoreError> {
    let (id, family_id, account_id, kind, notice_version, method, given_at, withdrawn_at) = row;
    Ok(ConsentRow {
        id: parse_id(&id)?,
        family_id: parse_id(&family_id)?,
        account_id: parse_id(&account_id)?,
        kind,
        notice_version,
        method,
        given_at,
        withdrawn_at,
    })
}

type ChildTuple = (String, String, i64, Vec<u8>, Vec<u8>);

macro_rules! select_child {
    () => {
        "SELECT id, family_id, created_at, nickname_sealed, age_band_sealed FROM children"
    };
}

fn child_from((id, family_id, created_at, nickname_sealed, age_band_sealed): ChildTuple) -> Result<ChildRow, StoreError> {
    Ok(ChildRow { id: parse_id(&id)?, family_id: parse_id(&family_id)?, created_at, nickname_sealed, age_band_sealed })
}

/// Runs `$body` in a transaction that serialises changes to families' guardians: SQLite
/// takes its write lock up front; on PostgreSQL `lock_families!` locks the family rows.
/// The body evaluates to a bool: true commits, false rolls back.
macro_rules! with_family_lock {
    ($db:expr, |$tx:ident, $lock:ident| $body:expr) => {
        match $db {
            crate::sql::Db::Sqlite(pool) => {
                let $lock = "SELECT id FROM families WHERE id = $1";
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let outcome: bool = $body;
                if outcome { $tx.commit().await? } else { $tx.rollback().await? }
                Ok::<bool, StoreError>(outcome)
            }
            crate::sql::Db::Postgres(pool) => {
                let $lock = "SELECT id FROM families WHERE id = $1 FOR UPDATE";
                let mut $tx = pool.begin_write().await?;
                let outcome: bool = $body;
                if outcome { $tx.commit().await? } else { $tx.rollback().await? }
                Ok::<bool, StoreError>(outcome)
            }
        }
    };
}

/// Locks the families' rows (in id order, so two transactions cannot deadlock). On SQLite
/// the transaction's write lock already covers it and the statement only reads.
macro_rules! lock_families {
    ($tx:ident, $lock:ident, $families:expr) => {
        for family in $families {
            sqlx::query($lock).bind(family.to_string()).execute(&mut *$tx).await?;
        }
    };
}

/// Deletes the membership if another guardian remains; evaluates to whether it did.
macro_rules! remove_if_not_last {
    ($tx:ident, $family:expr, $account:expr) => {{
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM family_guardians WHERE family_id = $1")
            .bind($family.to_string())
            .fetch_one(&mut *$tx)
            .await?;
        if count > 1 {
            sqlx::query("DELETE FROM family_guardians WHERE family_id = $1 AND account_id = $2")
                .bind($family.to_string())
                .bind($account.to_string())
                .execute(&mut *$tx)
                .await?
                .rows_affected()
                > 0
        } else {
            false
        }
    }};
}

#[async_trait]
impl FamilyStore for SqlStore {
    async fn create_family(
        &self,
        family: &FamilyRow,
        key: &WrappedKey,
        guardian: Option<AccountId>,
    ) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await.map_err(StoreError::from)?;
            sqlx::query("INSERT INTO families (id, created_at, name_sealed) VALUES ($1, $2, $3)")
                .bind(family.id.to_string())
                .bind(family.created_at)
                .bind(&family.name_sealed)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_write)?;
            sqlx::query("INSERT INTO family_keys (family_id, master_key_id, wrapped_key, created_at) VALUES ($1, $2, $3, $4)")
                .bind(family.id.to_string())
                .bind(&key.master_key_id)
                .bind(&key.wrapped_key)
                .bind(key.created_at)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_write)?;
            if let Some(account) = guardian {
                sqlx::query("INSERT INTO family_guardians (family_id, account_id, joined_at) VALUES ($1, $2, $3)")
                    .bind(family.id.to_string())
                    .bind(account.to_string())
                    .bind(family.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_write)?;
            }
            tx.commit().await.map_err(StoreError::from)
        })
    }

    async fn message_retention_days(&self, id: FamilyId) -> Result<Option<i64>, StoreError> {
        let row: Option<(Option<i64>,)> = on_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT message_retention_days FROM families WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.and_then(|(days,)| days))
    }

    async fn set_message_retention_days(&self, id: FamilyId, days: Option<i64>) -> Result<bool, StoreError> {
        let updated = on_pool!(&self.db, |pool| {
            sqlx::query("UPDATE families SET message_retention_days = $1 WHERE id = $2")
                .bind(days)
                .bind(id.to_string())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(updated == 1)
    }

    async fn keep_history(&self, id: FamilyId) -> Result<bool, StoreError> {
        let row: Option<(bool,)> = on_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT keep_history FROM families WHERE id = $1").bind(id.to_string()).fetch_optional(pool).await
        })?;
        Ok(row.is_none_or(|(keep,)| keep))
    }

    async fn set_keep_history(&self, id: FamilyId, keep: bool) -> Result<bool, StoreError> {
        let updated = on_pool!(&self.db, |pool| {
            sqlx::query("UPDATE families SET keep_history = $1 WHERE id = $2")
                .bind(keep)
                .bind(id.to_string())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(updated == 1)
    }

    async fn family(&self, id: FamilyId) -> Result<Option<FamilyRow>, StoreError> {
        let row: Option<(String, i64, Vec<u8>)> = on_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT id, created_at, name_sealed FROM families WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(pool)
                .await
        })?;
        row.map(|(id, created_at, name_sealed)| Ok(FamilyRow { id: parse_id(&id)?, created_at, name_sealed }))
            .transpose()
    }

    async fn delete_family(&self, id: FamilyId) -> Result<bool, StoreError> {
        let deleted = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            // Keys first and explicitly: shredding must not depend on a cascade.
            for sql in ["DELETE FROM child_keys WHERE family_id = $1", "DELETE FROM family_keys WHERE family_id = $1"] {
                sqlx::query(sql).bind(id.to_string()).execute(&mut *tx).await?;
            }
            let deleted =
                sqlx::query("DELETE FROM families WHERE id = $1").bind(id.to_string()).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(deleted)
        })?;
        Ok(deleted > 0)
    }

    async fn families_of(&self, account: AccountId) -> Result<Vec<FamilyId>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT family_id FROM family_guardians WHERE account_id = $1 ORDER BY joined_at, family_id")
                .bind(account.to_string())
                .fetch_all(pool)
                .await
        })?;
        rows.iter().map(|(id,)| parse_id(id)).collect()
    }

    async fn guardians(&self, family: FamilyId) -> Result<Vec<GuardianRow>, StoreError> {
        let rows: Vec<(String, i64)> = on_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT account_id, joined_at FROM family_guardians WHERE family_id = $1 ORDER BY joined_at, account_id")
                .bind(family.to_string())
                .fetch_all(pool)
                .await
        })?;
        rows.into_iter()
            .map(|(account, joined_at)| Ok(GuardianRow { family_id: family, account_id: parse_id(&account)?, joined_at }))
            .collect()
    }

    async fn add_guardian(&self, guardian: &GuardianRow) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            sqlx::query("INSERT INTO family_guardians (family_id, account_id, joined_at) VALUES ($1, $2, $3)")
                .bind(guardian.family_id.to_string())
                .bind(guardian.account_id.to_string())
                .bind(guardian.joined_at)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(StoreError::from_write)
    }

    async fn remove_guardian(&self, family: FamilyId, account: AccountId) -> Result<bool, StoreError> {
        let removed = with_family_lock!(&self.db, |tx, lock| {
            lock_families!(tx, lock, &[family]);
            remove_if_not_last!(tx, family, account)
        })?;
        Ok(removed)
    }

    async fn leave_all_families(&self, account: AccountId) -> Result<bool, StoreError> {
        let left = with_family_lock!(&self.db, |tx, lock| {
            let rows: Vec<(String,)> = sqlx::query_as(
                "SELECT family_id FROM family_guardians WHERE account_id = $1 ORDER BY family_id",
            )
            .bind(account.to_string())
            .fetch_all(&mut *tx)
            .await?;
            let families = rows.iter().map(|(id,)| parse_id(id)).collect::<Result<Vec<FamilyId>, _>>()?;
            lock_families!(tx, lock, &families);
            let mut all = true;
            for family in &families {
                all &= remove_if_not_last!(tx, *family, account);
            }
            all
        })?;
        Ok(left)
    }

    async fn create_invite(&self, invite: &InviteRow) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO invites (token_hash, family_id, email_index, invited_by, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&invite.token_hash)
            .bind(invite.family_id.to_string())
            .bind(&invite.email_index)
            .bind(invite.invited_by.to_string())
            .bind(invite.created_at)
            .bind(invite.expires_at)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(StoreError::from_write)
    }

    async fn take_invite(&self, token_hash: &[u8], email_index: &[u8], now: i64) -> Result<Option<InviteRow>, StoreError> {
        let row: Option<(Vec<u8>, String, Vec<u8>, String, i64, i64)> = on_pool!(&self.db, |pool| {
            sqlx::query_as(
                "DELETE FROM invites WHERE token_hash = $1 AND email_index = $2 \
                 RETURNING token_hash, family_id, email_index, invited_by, created_at, expires_at",
            )
            .bind(token_hash)
            .bind(email_index)
            .fetch_optional(pool)
            .await
        })?;
        let Some((token_hash, family_id, email_index, invited_by, created_at, expires_at)) = row else {
            return Ok(None);
        };
        if expires_at <= now {
            return Ok(None);
        }
        Ok(Some(InviteRow {
            token_hash,
            family_id: parse_id(&family_id)?,
            email_index,
            invited_by: parse_id(&invited_by)?,
            created_at,
            expires_at,
        }))
    }

    async fn add_consent(&self, consent: &ConsentRow) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO consents (id, family_id, account_id, kind, notice_version, method, given_at, withdrawn_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(consent.id.to_string())
            .bind(consent.family_id.to_string())
            .bind(consent.account_id.to_string())
            .bind(&consent.kind)
            .bind(&consent.notice_version)
            .bind(&consent.method)
            .bind(consent.given_at)
            .bind(consent.withdrawn_at)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(StoreError::from_write)
    }

    async fn consents(&self, family: FamilyId) -> Result<Vec<ConsentRow>, StoreError> {
        let rows: Vec<ConsentTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT id, family_id, account_id, kind, notice_version, method, given_at, withdrawn_at \
                 FROM consents WHERE family_id = $1 ORDER BY given_at, id",
            )
            .bind(family.to_string())
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(consent_from).collect()
    }

    async fn withdraw_consents(&self, family: FamilyId, kind: &str, at: i64) -> Result<u64, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            sqlx::query("UPDATE consents SET withdrawn_at = $1 WHERE family_id = $2 AND kind = $3 AND withdrawn_at IS NULL")
                .bind(at)
                .bind(family.to_string())
                .bind(kind)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n)
    }

    async fn create_child(&self, child: &ChildRow, key: &WrappedKey) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await.map_err(StoreError::from)?;
            sqlx::query(
                "INSERT INTO children (id, family_id, created_at, nickname_sealed, age_band_sealed) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(child.id.to_string())
            .bind(child.family_id.to_string())
            .bind(child.created_at)
            .bind(&child.nickname_sealed)
            .bind(&child.age_band_sealed)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_write)?;
            sqlx::query(
                "INSERT INTO child_keys (child_id, family_id, master_key_id, wrapped_key, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(child.id.to_string())
            .bind(child.family_id.to_string())
            .bind(&key.master_key_id)
            .bind(&key.wrapped_key)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_write)?;
            tx.commit().await.map_err(StoreError::from)
        })
    }

    async fn children(&self, family: FamilyId) -> Result<Vec<ChildRow>, StoreError> {
        let rows: Vec<ChildTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(concat!(select_child!(), " WHERE family_id = $1 ORDER BY created_at, id"))
                .bind(family.to_string())
                .fetch_all(pool)
                .await
        })?;
        rows.into_iter().map(child_from).collect()
    }

    async fn child(&self, family: FamilyId, id: ChildId) -> Result<Option<ChildRow>, StoreError> {
        let row: Option<ChildTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(concat!(select_child!(), " WHERE family_id = $1 AND id = $2"))
                .bind(family.to_string())
                .bind(id.to_string())
                .fetch_optional(pool)
                .await
        })?;
        row.map(child_from).transpose()
    }

    async fn update_child(&self, child: &ChildRow) -> Result<bool, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            sqlx::query(
                "UPDATE children SET nickname_sealed = $1, age_band_sealed = $2 WHERE family_id = $3 AND id = $4",
            )
            .bind(&child.nickname_sealed)
            .bind(&child.age_band_sealed)
            .bind(child.family_id.to_string())
            .bind(child.id.to_string())
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(n > 0)
    }

    async fn delete_child(&self, family: FamilyId, id: ChildId) -> Result<bool, StoreError> {
        let deleted = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query("DELETE FROM child_keys WHERE family_id = $1 AND child_id = $2")
                .bind(family.to_string())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            let deleted = sqlx::query("DELETE FROM children WHERE family_id = $1 AND id = $2")
                .bind(family.to_string())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(deleted)
        })?;
        Ok(deleted > 0)
    }
}
