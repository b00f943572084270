//! What someone who copies the data directory finds: no personal data in the clear,
//! no key, and ciphertexts that cannot be moved between rows.

use std::fs;

use crate::common::{Dirs, TestResult, file_contains, open_vault};
use sqlx::Connection;

const NAME: &str = "Pemberton-Zebrafinch-7731";

fn data_files(dirs: &Dirs) -> Vec<std::path::PathBuf> {
    ["cubby.db", "cubby.db-wal", "cubby.db-shm"].iter().map(|f| dirs.data().join(f)).collect()
}

#[tokio::test]
async fn a_sealed_value_is_nowhere_in_the_sqlite_files_and_neither_is_the_key() -> TestResult {
    let dirs = Dirs::new()?;
    fs::create_dir_all(dirs.data())?;
    let vault = open_vault(&dirs, None).await?;
    for _ in 0..20 {
        vault.create_family(NAME).await?;
    }
    let master_hex = fs::read_to_string(dirs.keys().join("master.key"))?;
    let master_raw = hex::decode(master_hex.trim())?;

    // While the server holds the database open, fresh writes sit in the WAL.
    assert!(dirs.data().join("cubby.db-wal").exists(), "expected a write-ahead log while open");
    let scan = |stage: &str| {
        for file in data_files(&dirs) {
            for needle in [NAME.as_bytes(), master_hex.trim().as_bytes(), &master_raw] {
                assert!(!file_contains(&file, needle), "{stage}: {} holds a secret", file.display());
            }
        }
    };
    scan("open");
    vault.store().close().await;
    scan("closed");
    assert!(file_contains(&dirs.data().join("cubby.db"), b"families"), "the scan reads the real file");

    // ...and the name is there for whoever holds the key.
    let vault = open_vault(&dirs, None).await?;
    let family = vault.create_family(NAME).await?;
    assert_eq!(vault.family_name(family).await?.as_deref(), Some(NAME));
    vault.store().close().await;
    Ok(())
}

#[tokio::test]
async fn a_sealed_value_moved_to_another_row_does_not_open() -> TestResult {
    let dirs = Dirs::new()?;
    fs::create_dir_all(dirs.data())?;
    let vault = open_vault(&dirs, None).await?;
    let alice = vault.create_family("Alice's family").await?;
    let bob = vault.create_family("Bob's family").await?;
    vault.store().close().await;

    let mut conn = sqlx::SqliteConnection::connect(&dirs.database_url()).await?;
    // Move Alice's sealed name into Bob's row.
    sqlx::query("UPDATE families SET name_sealed = (SELECT name_sealed FROM families WHERE id = $1) WHERE id = $2")
        .bind(alice.to_string())
        .bind(bob.to_string())
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let vault = open_vault(&dirs, None).await?;
    assert!(vault.family_name(bob).await.is_err(), "Alice's name must not open as Bob's");
    assert_eq!(vault.family_name(alice).await?.as_deref(), Some("Alice's family"));
    vault.store().close().await;

    // Move Alice's wrapped key too, so Bob's row has Alice's key and Alice's ciphertext:
    // the key is bound to its owner, so this does not open either.
    let mut conn = sqlx::SqliteConnection::connect(&dirs.database_url()).await?;
    sqlx::query(
        "UPDATE family_keys SET wrapped_key = (SELECT wrapped_key FROM family_keys WHERE family_id = $1) \
         WHERE family_id = $2",
    )
    .bind(alice.to_string())
    .bind(bob.to_string())
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    let vault = open_vault(&dirs, None).await?;
    assert!(vault.family_name(bob).await.is_err(), "a key moved to another family must not unwrap");
    vault.store().close().await;
    Ok(())
}
