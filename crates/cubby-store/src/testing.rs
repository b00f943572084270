//! Test support: a fresh, empty PostgreSQL database per test.
//!
//! `CUBBY_TEST_POSTGRES_URL` names a PostgreSQL server and a database to connect to for
//! administration (e.g. `postgres://cubby:cubby@127.0.0.1:5432/postgres`); `scripts/test`
//! starts the server and sets it. A test that needs PostgreSQL fails, never skips,
//! when it is not set.

use sqlx::Connection;

pub const POSTGRES_URL_VAR: &str = "CUBBY_TEST_POSTGRES_URL";

/// Creates an empty database and returns its URL.
pub async fn fresh_postgres_database() -> Result<String, String> {
    let admin_url = std::env::var(POSTGRES_URL_VAR).map_err(|_| {
        format!("{POSTGRES_URL_VAR} is not set: run the tests with scripts/test, which starts PostgreSQL")
    })?;
    let (server, _) = admin_url
        .rsplit_once('/')
        .ok_or_else(|| format!("{POSTGRES_URL_VAR} must end with /DATABASE"))?;
    let name = format!("cubby_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .map_err(|e| format!("cannot reach PostgreSQL at {POSTGRES_URL_VAR}: {e}"))?;
    // CREATE DATABASE takes no parameters; the name is "cubby_test_" and 32 hex digits.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .map_err(|e| format!("cannot create test database: {e}"))?;
    let _ = admin.close().await;
    Ok(format!("{server}/{name}"))
}
