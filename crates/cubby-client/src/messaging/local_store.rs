//! The device's own storage: one SQLite file holding its MLS state (group secrets, its
//! private keys), the messages it received, and the messages it has not yet got the server
//! to acknowledge. Every value is sealed with the device's storage key (XChaCha20-Poly1305,
//! bound to its row), so a copy of the file without that key reveals nothing.
//!
//! Each received message is written in one transaction with the MLS state it advanced
//! and the id it came with: after a crash the device neither loses nor re-reads one.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use cubby_crypto::{DataKey, FieldContext};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};

use crate::ClientError;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS mls_state (key BLOB PRIMARY KEY, value BLOB NOT NULL) STRICT",
    "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value BLOB NOT NULL) STRICT",
    "CREATE TABLE IF NOT EXISTS inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, envelope_id TEXT NOT NULL UNIQUE, \
     group_id TEXT NOT NULL, sender TEXT NOT NULL, body BLOB NOT NULL, received_at INTEGER NOT NULL) STRICT",
    "CREATE TABLE IF NOT EXISTS processed (id INTEGER PRIMARY KEY, at INTEGER NOT NULL) STRICT",
    "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, message BLOB NOT NULL) STRICT",
];

/// `(seq, envelope_id, group_id, sender, sealed body)`.
type InboxRow = (i64, String, String, String, Vec<u8>);

pub struct LocalStore {
    pool: SqlitePool,
    key: DataKey,
    /// The MLS state as last written, to write only what changed.
    written: HashMap<Vec<u8>, Vec<u8>>,
}

fn local(error: impl std::fmt::Display) -> ClientError {
    ClientError::Local(error.to_string())
}

fn place<'a>(table: &'a str, row: &'a str) -> FieldContext<'a> {
    FieldContext { table, column: "value", row }
}

impl LocalStore {
    pub async fn open(path: &Path, storage_key: [u8; 32]) -> Result<Self, ClientError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(local)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.map_err(local)?;
        for statement in SCHEMA {
            sqlx::query(*statement).execute(&pool).await.map_err(local)?;
        }
        let mut store = Self { pool, key: DataKey::from_bytes(storage_key), written: HashMap::new() };
        store.written = store.read_mls_state().await?;
        Ok(store)
    }

    pub fn mls_state(&self) -> &HashMap<Vec<u8>, Vec<u8>> {
        &self.written
    }

    async fn read_mls_state(&self) -> Result<HashMap<Vec<u8>, Vec<u8>>, ClientError> {
        let rows: Vec<(Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT key, value FROM mls_state").fetch_all(&self.pool).await.map_err(local)?;
        let mut state = HashMap::with_capacity(rows.len());
        for (key, sealed) in rows {
            let value = self.key.open(place("mls_state", &hex::encode(&key)), &sealed).map_err(|_| ClientError::StorageKey)?;
            state.insert(key, value);
        }
        Ok(state)
    }

    pub async fn begin(&self) -> Result<Transaction<'static, Sqlite>, ClientError> {
        self.pool.begin().await.map_err(local)
    }

    /// Writes the MLS state's changes since the last write into `tx`. The caller commits
    /// and then calls [`LocalStore::written`] with the same state.
    pub async fn write_mls_state(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        current: &HashMap<Vec<u8>, Vec<u8>>,
    ) -> Result<(), ClientError> {
        for (key, value) in current {
            if self.written.get(key) != Some(value) {
                let sealed = self.key.seal(place("mls_state", &hex::encode(key)), value).map_err(local)?;
                sqlx::query("INSERT INTO mls_state (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                    .bind(key)
                    .bind(sealed)
                    .execute(&mut **tx)
                    .await
                    .map_err(local)?;
            }
        }
        for key in self.written.keys().filter(|k| !current.contains_key(*k)) {
            sqlx::query("DELETE FROM mls_state WHERE key = $1").bind(key).execute(&mut **tx).await.map_err(local)?;
        }
        Ok(())
    }

    pub fn written(&mut self, current: HashMap<Vec<u8>, Vec<u8>>) {
        self.written = current;
    }

    pub async fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT value FROM settings WHERE name = $1").bind(name).fetch_optional(&self.pool).await.map_err(local)?;
        row.map(|(sealed,)| self.key.open(place("settings", name), &sealed).map_err(|_| ClientError::StorageKey)).transpose()
    }

    pub async fn set_setting(&self, tx: &mut Transaction<'static, Sqlite>, name: &str, value: &[u8]) -> Result<(), ClientError> {
        let sealed = self.key.seal(place("settings", name), value).map_err(local)?;
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
            .bind(name)
            .bind(sealed)
            .execute(&mut **tx)
            .await
            .map_err(local)?;
        Ok(())
    }

    /// Records a received message; false if one with this envelope id is there already
    /// (a copy the sender sent again after losing the server's acknowledgement).
    pub async fn add_to_inbox(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        envelope_id: &str,
        group_id: &str,
        sender: &str,
        body: &[u8],
        received_at: i64,
    ) -> Result<bool, ClientError> {
        let sealed = self.key.seal(place("inbox", envelope_id), body).map_err(local)?;
        let inserted = sqlx::query(
            "INSERT INTO inbox (envelope_id, group_id, sender, body, received_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (envelope_id) DO NOTHING",
        )
        .bind(envelope_id)
        .bind(group_id)
        .bind(sender)
        .bind(sealed)
        .bind(received_at)
        .execute(&mut **tx)
        .await
        .map_err(local)?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Whether the server message `id` was processed already (it is sent again until
    /// acknowledged, and quiet hours deliver out of id order).
    pub async fn was_processed(&self, id: i64) -> Result<bool, ClientError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM processed WHERE id = $1").bind(id).fetch_optional(&self.pool).await.map_err(local)?;
        Ok(row.is_some())
    }

    /// Records that `id` was processed; forgets ids older than `forget_before` (the server
    /// has deleted those messages by then).
    pub async fn mark_processed(&self, tx: &mut Transaction<'static, Sqlite>, id: i64, at: i64, forget_before: i64) -> Result<(), ClientError> {
        sqlx::query("INSERT INTO processed (id, at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(at)
            .execute(&mut **tx)
            .await
            .map_err(local)?;
        if id % 256 == 0 {
            sqlx::query("DELETE FROM processed WHERE at < $1").bind(forget_before).execute(&mut **tx).await.map_err(local)?;
        }
        Ok(())
    }

    /// Received messages in the order they arrived, after `after` (a sequence number):
    /// `(sequence, group id in base64, sender, envelope)`.
    pub async fn inbox(&self, after: i64, limit: i64) -> Result<Vec<(i64, String, String, Vec<u8>)>, ClientError> {
        let rows: Vec<InboxRow> = sqlx::query_as(
            "SELECT seq, envelope_id, group_id, sender, body FROM inbox WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(local)?;
        rows.into_iter()
            .map(|(seq, envelope_id, group, sender, sealed)| {
                let body = self.key.open(place("inbox", &envelope_id), &sealed).map_err(|_| ClientError::StorageKey)?;
                Ok((seq, group, sender, body))
            })
            .collect()
    }

    /// Deletes received messages up to sequence number `upto` (the family keeps no history).
    pub async fn forget_inbox(&self, upto: i64) -> Result<(), ClientError> {
        sqlx::query("DELETE FROM inbox WHERE seq <= $1").bind(upto).execute(&self.pool).await.map_err(local)?;
        Ok(())
    }

    /// Queues an encrypted message to send, in the same transaction as the MLS state that
    /// encrypted it: a message encrypted is a message that will be sent.
    pub async fn add_to_outbox(&self, tx: &mut Transaction<'static, Sqlite>, message: &[u8]) -> Result<i64, ClientError> {
        // The message is MLS ciphertext already; sealing it again keeps even its metadata
        // (group id, epoch) unreadable in the file.
        let id: (i64,) = sqlx::query_as("INSERT INTO outbox (message) VALUES (x'') RETURNING seq")
            .fetch_one(&mut **tx)
            .await
            .map_err(local)?;
        let sealed = self.key.seal(place("outbox", &id.0.to_string()), message).map_err(local)?;
        sqlx::query("UPDATE outbox SET message = $1 WHERE seq = $2").bind(sealed).bind(id.0).execute(&mut **tx).await.map_err(local)?;
        Ok(id.0)
    }

    pub async fn outbox(&self) -> Result<Vec<(i64, Vec<u8>)>, ClientError> {
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, message FROM outbox ORDER BY seq").fetch_all(&self.pool).await.map_err(local)?;
        rows.into_iter()
            .map(|(seq, sealed)| {
                let message = self.key.open(place("outbox", &seq.to_string()), &sealed).map_err(|_| ClientError::StorageKey)?;
                Ok((seq, message))
            })
            .collect()
    }

    pub async fn remove_from_outbox(&self, seq: i64) -> Result<(), ClientError> {
        sqlx::query("DELETE FROM outbox WHERE seq = $1").bind(seq).execute(&self.pool).await.map_err(local)?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
