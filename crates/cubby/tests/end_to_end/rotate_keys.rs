//! `cubby admin rotate-keys`: killed half-way and run again, every sealed value stays
//! readable and the old master key is retired.

use crate::common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{BIN, Dirs, TestResult, cubby, open_vault, signal, strings, text};
use sqlx::Connection;

const FAMILIES: usize = 300;

async fn keys_by_master(url: &str) -> Result<HashMap<String, i64>, sqlx::Error> {
    let mut conn = sqlx::SqliteConnection::connect(url).await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT master_key_id, COUNT(*) FROM \
         (SELECT master_key_id FROM system_keys UNION ALL SELECT master_key_id FROM family_keys) AS k \
         GROUP BY master_key_id",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    Ok(rows.into_iter().collect())
}

#[tokio::test]
async fn an_interrupted_rotation_resumes_and_loses_nothing() -> TestResult {
    let dirs = Dirs::new()?;
    std::fs::create_dir_all(dirs.data())?;
    let vault = open_vault(&dirs, None).await?;
    let old_id = vault.keyring().current().id().to_string();
    let mut families = Vec::new();
    for n in 0..FAMILIES {
        families.push((vault.create_family(&format!("family number {n}")).await?, n));
    }
    vault.store().close().await;

    // Rotate slowly (10 keys a batch, 50 ms apart) and kill -9 once some batches are in.
    let mut args = strings(&["admin", "rotate-keys", "--batch-size", "10", "--pause-ms", "50"]);
    args.extend(dirs.args(None));
    let mut child = Command::new(BIN).args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = keys_by_master(&dirs.database_url()).await?;
        if counts.iter().any(|(id, n)| *id != old_id && *n >= 30) {
            break;
        }
        assert!(child.try_wait()?.is_none(), "rotation finished before it could be interrupted");
        assert!(Instant::now() < deadline, "rotation made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(child.id(), "KILL")?;
    child.wait()?;

    let counts = keys_by_master(&dirs.database_url()).await?;
    assert_eq!(counts.len(), 2, "expected a half-done rotation, got {counts:?}");
    assert!(counts.get(&old_id).copied().unwrap_or(0) > 0, "{counts:?}");
    assert!(dirs.keys().join("master.next.key").exists());

    // Run it again: it resumes with the same new key and finishes.
    let output = cubby(&args)?;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains(&format!("{} data keys", FAMILIES + 1)), "{}", text(&output.stdout));
    let counts = keys_by_master(&dirs.database_url()).await?;
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert!(!counts.contains_key(&old_id));
    assert!(!dirs.keys().join("master.next.key").exists(), "the new key is promoted");

    let vault = open_vault(&dirs, None).await?;
    let new_id = vault.keyring().current().id().to_string();
    assert_ne!(new_id, old_id);
    assert_eq!(counts.get(&new_id).copied(), Some(i64::try_from(FAMILIES + 1)?));
    for (family, n) in families {
        assert_eq!(vault.family_name(family).await?, Some(format!("family number {n}")));
    }
    let report = vault.audit().verify().await?;
    assert_eq!(report.problem, None, "the audit chain survives the rotation");
    vault.store().close().await;
    Ok(())
}

#[tokio::test]
async fn rotation_is_refused_while_a_server_runs() -> TestResult {
    let dirs = Dirs::new()?;
    let _server = common::Server::start(&dirs.args(None))?;
    let mut args = strings(&["admin", "rotate-keys"]);
    args.extend(dirs.args(None));
    let output = cubby(&args)?;
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("another cubby process"), "{}", text(&output.stderr));
    assert!(!dirs.keys().join("master.next.key").exists(), "a refused rotation leaves no key behind");
    Ok(())
}
