//! Opening a database: engine settings and embedded migrations.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::Db;
use super::batch_sqlite::SqliteWriter;
use crate::StoreError;

pub(super) async fn open(url: &str) -> Result<(Db, Option<SqliteWriter>), StoreError> {
    if url.starts_with("sqlite:") {
        open_sqlite(url).await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok((open_postgres(url).await?, None))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

async fn open_sqlite(url: &str) -> Result<(Db, Option<SqliteWriter>), StoreError> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        // 8 KiB pages, not SQLite's 4 KiB: a batch of messages dirties fewer pages (each
        // costs a WAL frame, a checksum and a checkpoint copy), and the durable relay went
        // from 118,600 to 130,400 msg/s (medians of 3) with fan-out unchanged; 16 KiB lost
        // fan-out 9 %, 1 KiB and 64 KiB relayed less. Only a new database takes it: one in WAL
        // mode keeps the page size it was made with.
        .page_size(8192)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a commit survives power loss, not just a crash of the process.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        // 128 KiB of page cache for each pooled connection, not SQLite's 2 MiB (the writer
        // opens its own). In WAL mode a connection drops its whole cache at its next read
        // after another connection commits, and the writer commits all the time: a large
        // cache seldom serves. Idle, the eight filled with the rows of every toy that signed
        // in: 700 bytes per connected toy at 19,000 with 2 MiB, and 256 KiB still cost
        // ≈ 100 bytes more than 128 once a toy's queue was found through device_queues.
        // Relay, one in flight and p99 at 10,000/s: unchanged, in noise.
        .pragma("cache_size", "-128");
    // The message writer opens the same file on a connection of its own: an in-memory
    // database would be another database to it.
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(StoreError::UnsupportedUrl);
    }
    let path = options.get_filename().to_owned();
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        // A local file does not go stale: no ping before each use of a connection.
        .test_before_acquire(false)
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
    let writer = SqliteWriter::open(&path)?;
    Ok((Db::Sqlite(pool), Some(writer)))
}

async fn open_postgres(url: &str) -> Result<Db, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    Ok(Db::Postgres(pool))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pooled connection has the small page cache, not SQLite's default (-2000, in
    /// KiB); the writer's connection keeps the default.
    #[tokio::test]
    async fn pooled_sqlite_connections_keep_128_kib_of_page_cache() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("cubby.db").display());
        let (Db::Sqlite(pool), Some(_writer)) = open(&url).await? else { return Err("not SQLite with a writer".into()) };
        // Two connections at once, so that more than the first one of the pool is looked at.
        let (mut first, mut second) = (pool.acquire().await?, pool.acquire().await?);
        for connection in [&mut first, &mut second] {
            let cache: i64 = sqlx::query_scalar("PRAGMA cache_size").fetch_one(&mut **connection).await?;
            assert_eq!(cache, -128);
        }
        Ok(())
    }
}
