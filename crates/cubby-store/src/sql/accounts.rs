use async_trait::async_trait;
use cubby_core::{AccountId, SessionId};

use super::{BeginWrite, SqlStore, parse_id, parse_opt_id};
use crate::{AccountRow, AccountStore, EmailTokenRow, SessionRow, StoreError, WrappedKey};

type AccountTuple = (String, Vec<u8>, Vec<u8>, String, Option<i64>, i64, i64, Option<i64>);
macro_rules! select_account {
    () => {
        "SELECT id, email_index, email_sealed, password_hash, email_verified_at, \
         created_at, last_active_at, idle_warned_at FROM accounts"
    };
}

fn account_from(row: AccountTuple) -> Result<AccountRow, StoreError> {
    let (id, email_index, email_sealed, password_hash, email_verified_at, created_at, last_active_at, idle_warned_at) =
        row;
    Ok(AccountRow {
        id: parse_id(&id)?,
        email_index,
        email_sealed,
        password_hash,
        email_verified_at,
        created_at,
        last_active_at,
        idle_warned_at,
    })
}

type SessionTuple = (String, Vec<u8>, String, i64, i64, i64);
macro_rules! select_session {
    () => {
        "SELECT id, token_hash, account_id, created_at, last_seen_at, expires_at FROM sessions"
    };
}

fn session_from((id, token_hash, account_id, created_at, last_seen_at, expires_at): SessionTuple) -> Result<SessionRow, StoreError> {
    Ok(SessionRow { id: parse_id(&id)?, token_hash, account_id: parse_id(&account_id)?, created_at, last_seen_at, expires_at })
}

type TokenTuple = (Vec<u8>, String, String, Option<String>, String, i64, i64);

#[async_trait]
impl AccountStore for SqlStore {
    async fn create_account(&self, account: &AccountRow, key: &WrappedKey) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await.map_err(StoreError::from)?;
            sqlx::query(
                "INSERT INTO accounts (id, email_index, email_sealed, password_hash, email_verified_at, \
                 created_at, last_active_at, idle_warned_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(account.id.to_string())
            .bind(&account.email_index)
            .bind(&account.email_sealed)
            .bind(&account.password_hash)
            .bind(account.email_verified_at)
            .bind(account.created_at)
            .bind(account.last_active_at)
            .bind(account.idle_warned_at)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_write)?;
            sqlx::query("INSERT INTO account_keys (account_id, master_key_id, wrapped_key, created_at) VALUES ($1, $2, $3, $4)")
                .bind(account.id.to_string())
                .bind(&key.master_key_id)
                .bind(&key.wrapped_key)
                .bind(key.created_at)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_write)?;
            tx.commit().await.map_err(StoreError::from)
        })
    }

    async fn account(&self, id: AccountId) -> Result<Option<AccountRow>, StoreError> {
        let row: Option<AccountTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(concat!(select_account!(), " WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await
        })?;
        row.map(account_from).transpose()
    }

    async fn account_by_email_index(&self, email_index: &[u8]) -> Result<Option<AccountRow>, StoreError> {
        let row: Option<AccountTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(concat!(select_account!(), " WHERE email_index = $1"))
                .bind(email_index)
                .fetch_optional(pool)
                .await
        })?;
        row.map(account_from).transpose()
    }

    async fn set_password_hash(&self, id: AccountId, password_hash: &str) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2")
                .bind(password_hash)
                .bind(id.to_string())
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    async fn mark_email_verified(&self, id: AccountId, at: i64) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            sqlx::query("UPDATE accounts SET email_verified_at = $1 WHERE id = $2 AND email_verified_at IS NULL")
                .bind(at)
                .bind(id.to_string())
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    async fn touch_account(&self, id: AccountId, at: i64) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            sqlx::query("UPDATE accounts SET last_active_at = $1, idle_warned_at = NULL WHERE id = $2")
                .bind(at)
                .bind(id.to_string())
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    async fn idle_accounts(&self, before: i64, limit: i64) -> Result<Vec<AccountRow>, StoreError> {
        let rows: Vec<AccountTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(concat!(select_account!(), " WHERE last_active_at < $1 ORDER BY last_active_at LIMIT $2"))
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(account_from).collect()
    }

    async fn mark_idle_warned(&self, id: AccountId, at: i64, idle_before: i64) -> Result<bool, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            sqlx::query(
                "UPDATE accounts SET idle_warned_at = $1 \
                 WHERE id = $2 AND last_active_at < $3 AND idle_warned_at IS NULL",
            )
            .bind(at)
            .bind(id.to_string())
            .bind(idle_before)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(n > 0)
    }

    async fn delete_account(&self, id: AccountId) -> Result<bool, StoreError> {
        let deleted = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            // The key first and explicitly: shredding must not depend on a cascade.
            sqlx::query("DELETE FROM account_keys WHERE account_id = $1").bind(id.to_string()).execute(&mut *tx).await?;
            let deleted =
                sqlx::query("DELETE FROM accounts WHERE id = $1").bind(id.to_string()).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(deleted)
        })?;
        Ok(deleted > 0)
    }

    async fn create_session(&self, session: &SessionRow) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO sessions (id, token_hash, account_id, created_at, last_seen_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(session.id.to_string())
            .bind(&session.token_hash)
            .bind(session.account_id.to_string())
            .bind(session.created_at)
            .bind(session.last_seen_at)
            .bind(session.expires_at)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(StoreError::from_write)
    }

    async fn session_by_token_hash(&self, token_hash: &[u8]) -> Result<Option<SessionRow>, StoreError> {
        let row: Option<SessionTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(concat!(select_session!(), " WHERE token_hash = $1"))
                .bind(token_hash)
                .fetch_optional(pool)
                .await
        })?;
        row.map(session_from).transpose()
    }

    async fn touch_session(&self, id: SessionId, at: i64) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2")
                .bind(at)
                .bind(id.to_string())
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    async fn sessions_of(&self, account: AccountId) -> Result<Vec<SessionRow>, StoreError> {
        let rows: Vec<SessionTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(concat!(select_session!(), " WHERE account_id = $1 ORDER BY created_at"))
                .bind(account.to_string())
                .fetch_all(pool)
                .await
        })?;
        rows.into_iter().map(session_from).collect()
    }

    async fn delete_session(&self, account: AccountId, id: SessionId) -> Result<bool, StoreError> {
        let deleted = on_pool!(&self.db, |pool| {
            sqlx::query("DELETE FROM sessions WHERE id = $1 AND account_id = $2")
                .bind(id.to_string())
                .bind(account.to_string())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(deleted > 0)
    }

    async fn delete_sessions_except(&self, account: AccountId, keep: Option<SessionId>) -> Result<u64, StoreError> {
        let keep = keep.map(|id| id.to_string()).unwrap_or_default();
        let deleted = on_pool!(&self.db, |pool| {
            sqlx::query("DELETE FROM sessions WHERE account_id = $1 AND id <> $2")
                .bind(account.to_string())
                .bind(&keep)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(deleted)
    }

    async fn create_email_token(&self, token: &EmailTokenRow) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO email_tokens (token_hash, purpose, account_id, family_id, detail, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&token.token_hash)
            .bind(&token.purpose)
            .bind(token.account_id.to_string())
            .bind(token.family_id.map(|id| id.to_string()))
            .bind(&token.detail)
            .bind(token.created_at)
            .bind(token.expires_at)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(StoreError::from_write)
    }

    async fn delete_email_tokens(&self, account: AccountId, purpose: &str) -> Result<u64, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            sqlx::query("DELETE FROM email_tokens WHERE account_id = $1 AND purpose = $2")
                .bind(account.to_string())
                .bind(purpose)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n)
    }

    async fn take_email_token(
        &self,
        token_hash: &[u8],
        purpose: &str,
        now: i64,
    ) -> Result<Option<EmailTokenRow>, StoreError> {
        // DELETE … RETURNING: two concurrent uses cannot both succeed.
        let row: Option<TokenTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(
                "DELETE FROM email_tokens WHERE token_hash = $1 AND purpose = $2 \
                 RETURNING token_hash, purpose, account_id, family_id, detail, created_at, expires_at",
            )
            .bind(token_hash)
            .bind(purpose)
            .fetch_optional(pool)
            .await
        })?;
        let Some((token_hash, purpose, account_id, family_id, detail, created_at, expires_at)) = row else {
            return Ok(None);
        };
        if expires_at <= now {
            return Ok(None);
        }
        Ok(Some(EmailTokenRow {
            token_hash,
            purpose,
            account_id: parse_id(&account_id)?,
            family_id: parse_opt_id(family_id)?,
            detail,
            created_at,
            expires_at,
        }))
    }
}
