//! `cubby admin audit verify` against a log that an attacker with database access edited,
//! on SQLite and on PostgreSQL.

use crate::common::{Dirs, Fallible, TestResult, cubby, open_vault, strings, text};
use cubby_core::audit::AuditEvent;
use sqlx::Connection;

/// Writes five audit entries through the vault, as the server would.
async fn log_with_five_entries(dirs: &Dirs, url: Option<&str>) -> TestResult {
    let vault = open_vault(dirs, url).await?;
    for n in 1..=5 {
        vault.audit().append(&AuditEvent::system("test.event", format!(r#"{{"n":{n}}}"#))).await?;
    }
    vault.store().close().await;
    Ok(())
}

fn verify(dirs: &Dirs, url: Option<&str>) -> Fallible<(bool, String)> {
    let mut args = strings(&["admin", "audit", "verify"]);
    args.extend(dirs.args(url));
    let output = cubby(&args)?;
    Ok((output.status.success(), format!("{}{}", text(&output.stdout), text(&output.stderr))))
}

/// Tampers as someone with write access to the database would: drop the append-only
/// triggers first, then change the rows.
async fn tamper(url: &str, statements: &[&'static str]) -> TestResult {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        sqlx::query("DROP TRIGGER audit_log_no_update").execute(&mut conn).await?;
        sqlx::query("DROP TRIGGER audit_log_no_delete").execute(&mut conn).await?;
        for statement in statements {
            sqlx::query(*statement).execute(&mut conn).await?;
        }
        conn.close().await?;
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query("DROP TRIGGER audit_log_no_update ON audit_log").execute(&mut conn).await?;
        for statement in statements {
            sqlx::query(*statement).execute(&mut conn).await?;
        }
        conn.close().await?;
    }
    Ok(())
}

async fn database(dirs: &Dirs, postgres: bool) -> Fallible<String> {
    if postgres {
        Ok(cubby_store::testing::fresh_postgres_database().await?)
    } else {
        std::fs::create_dir_all(dirs.data())?;
        Ok(dirs.database_url())
    }
}

async fn an_intact_log_verifies(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let url = database(&dirs, postgres).await?;
    log_with_five_entries(&dirs, Some(&url)).await?;
    let (ok, output) = verify(&dirs, Some(&url))?;
    assert!(ok, "{output}");
    assert!(output.contains("5 entries"), "{output}");
    Ok(())
}

async fn an_edited_entry_is_named(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let url = database(&dirs, postgres).await?;
    log_with_five_entries(&dirs, Some(&url)).await?;
    tamper(&url, &["UPDATE audit_log SET detail = '{\"n\":99}' WHERE seq = 3"]).await?;
    let (ok, output) = verify(&dirs, Some(&url))?;
    assert!(!ok, "an edited log must fail verification: {output}");
    assert!(output.contains("entry 3 was edited"), "{output}");
    Ok(())
}

async fn a_deleted_entry_is_named(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let url = database(&dirs, postgres).await?;
    log_with_five_entries(&dirs, Some(&url)).await?;
    tamper(&url, &["DELETE FROM audit_log WHERE seq = 2"]).await?;
    let (ok, output) = verify(&dirs, Some(&url))?;
    assert!(!ok, "{output}");
    assert!(output.contains("entry 2 is missing"), "{output}");
    Ok(())
}

async fn a_renumbered_deletion_breaks_the_chain(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let url = database(&dirs, postgres).await?;
    log_with_five_entries(&dirs, Some(&url)).await?;
    // Hide the gap: delete entry 2 and shift the later ones down.
    tamper(
        &url,
        &[
            "DELETE FROM audit_log WHERE seq = 2",
            "UPDATE audit_log SET seq = seq - 1 WHERE seq = 3",
            "UPDATE audit_log SET seq = seq - 1 WHERE seq = 4",
            "UPDATE audit_log SET seq = seq - 1 WHERE seq = 5",
        ],
    )
    .await?;
    let (ok, output) = verify(&dirs, Some(&url))?;
    assert!(!ok, "{output}");
    assert!(output.contains("entry 2 does not chain"), "{output}");
    Ok(())
}

on_both_engines!(
    an_intact_log_verifies,
    an_edited_entry_is_named,
    a_deleted_entry_is_named,
    a_renumbered_deletion_breaks_the_chain,
);
