//! The [`Store`] over sqlx. One SQL text serves both engines (`$n` placeholders, standard
//! SQL); the `on_pool!` macro expands a method body once per engine, so the two cannot
//! drift. One file per area, as in the traits.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::{PgPool, SqlitePool};

use crate::{Engine, Store, StoreError};

pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the engine's concrete pool.
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            crate::sql::Db::Sqlite($pool) => $body,
            crate::sql::Db::Postgres($pool) => $body,
        }
    };
}

mod accounts;
mod audit;
mod batch_postgres;
mod batch_sqlite;
mod connect;
mod contacts;
mod content;
mod devices;
mod families;
mod keys;
mod media;
mod messaging;
mod schedules;

/// Begins a transaction that will write. SQLite takes its write lock at once (`BEGIN
/// IMMEDIATE`), so that a busy database makes it wait its turn (the busy timeout): a
/// deferred transaction that reads before it writes fails at once with "database is
/// locked" when another connection wrote meanwhile. PostgreSQL needs nothing special.
pub(crate) trait BeginWrite {
    type Engine: sqlx::Database;
    fn begin_write(&self) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Engine>, sqlx::Error>> + Send;
}

impl BeginWrite for SqlitePool {
    type Engine = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Engine = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

pub struct SqlStore {
    db: Db,
    /// SQLite's message writer (the group commit's connection); none on PostgreSQL.
    sqlite_writer: Option<batch_sqlite::SqliteWriter>,
}

impl SqlStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (db, sqlite_writer) = connect::open(url).await?;
        Ok(Self { db, sqlite_writer })
    }
}

/// Binds each value into a comma-separated list (an `IN (…)`; the caller writes the brackets).
pub(crate) fn push_list<'t, DB, T>(query: &mut sqlx::QueryBuilder<DB>, values: impl IntoIterator<Item = T>)
where
    DB: sqlx::Database,
    T: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let mut list = query.separated(", ");
    for value in values {
        list.push_bind(value);
    }
}

/// Parses an id read back from the database.
pub(crate) fn parse_id<T: FromStr>(text: &str) -> Result<T, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt(format!("not an id: {} characters", text.len())))
}

pub(crate) fn parse_opt_id<T: FromStr>(text: Option<String>) -> Result<Option<T>, StoreError> {
    text.as_deref().map(parse_id).transpose()
}

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
        if let Some(writer) = &self.sqlite_writer {
            writer.close().await;
        }
        on_pool!(&self.db, |pool| pool.close().await)
    }
}
