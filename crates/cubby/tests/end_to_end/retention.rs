//! Retention with an injected clock: once a family's retention has passed, no message,
//! photo (row or blob) or report of a conversation remains, and the deletion is audited.
//! The clock is injected through the operator's real command, `cubby admin expire --at`,
//! run against the server's own data directory and database; SQLite and PostgreSQL.

use crate::common;

use std::path::Path;
use std::time::Duration;

use crate::common::api::{self, Session};
use crate::common::devices::device;
use crate::common::{Dirs, Fallible, Server, TestResult, cubby, text};
use cubby_client::Event;
use serde_json::json;
use sqlx::Connection;

const IDLE: Duration = Duration::from_millis(700);
const PASSWORD: &str = "correct horse battery staple";
const DAY_MS: i64 = 86_400_000;

async fn count(db: &str, sql: &'static str) -> Fallible<i64> {
    let (n,): (i64,) = if db.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(db).await?;
        let row = sqlx::query_as(sql).fetch_one(&mut conn).await?;
        conn.close().await?;
        row
    } else {
        let mut conn = sqlx::PgConnection::connect(db).await?;
        let row = sqlx::query_as(sql).fetch_one(&mut conn).await?;
        conn.close().await?;
        row
    };
    Ok(n)
}

/// Everything of the kinds retention deletes, and the blob files on disk.
async fn remaining(db: &str, blobs: &Path) -> Fallible<[i64; 5]> {
    let files = walk(blobs)?.len() as i64;
    Ok([
        count(db, "SELECT COUNT(*) FROM messages").await?,
        count(db, "SELECT COUNT(*) FROM deliveries").await?,
        count(db, "SELECT COUNT(*) FROM media").await?,
        count(db, "SELECT COUNT(*) FROM reports").await?,
        files,
    ])
}

fn walk(dir: &Path) -> Fallible<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    if !dir.exists() {
        return Ok(files);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(walk(&path)?);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

fn now_ms() -> Fallible<i64> {
    Ok(i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis())?)
}

fn rfc3339(ms: i64) -> Fallible<String> {
    Ok(jiff::Timestamp::from_millisecond(ms)?.to_string())
}

fn expire_at(dirs: &Dirs, db: &str, at_ms: i64) -> Fallible<String> {
    let mut args = vec!["admin".to_owned(), "expire".to_owned()];
    args.extend(dirs.args(Some(db)));
    args.extend(["--at".to_owned(), rfc3339(at_ms)?]);
    let output = cubby(&args)?;
    if !output.status.success() {
        return Err(format!("cubby admin expire failed: {}{}", text(&output.stdout), text(&output.stderr)).into());
    }
    Ok(text(&output.stdout))
}

async fn guardian_with_family(server: &Server, outbox: &Path, email: &str, name: &str) -> Fallible<(Session, String)> {
    let guardian = api::guardian(server, outbox, email, PASSWORD).await?;
    let family = api::family(server, &guardian, name).await?;
    Ok((guardian, family))
}

async fn nothing_of_the_conversation_outlives_its_retention(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let db = if postgres { cubby_store::testing::fresh_postgres_database().await? } else { dirs.database_url() };
    let server = Server::start(&dirs.args(Some(&db)))?;
    let outbox = dirs.outbox();
    let (mum, family) = guardian_with_family(&server, &outbox, "mum@example.org", "The Family").await?;
    api::consent(&server, &outbox, &mum, &family).await?;
    let child = api::child(&server, &mum, &family, "Ava", "6_8").await?;
    let (grandma, grandma_family) = guardian_with_family(&server, &outbox, "grandma@example.org", "Grandma's").await?;
    api::adult_contact(&server, &outbox, &mum, &family, &child, &grandma, "grandma@example.org").await?;
    // The family keeps undelivered things a week.
    let retention = format!("/api/v1/families/{family}/message-retention");
    let (status, _) = api::put(&server, &retention, Some(&mum.token), json!({"days": 7})).await?;
    assert_eq!(status, 200);

    let local = tempfile::tempdir()?;
    let toy = device(&server, local.path(), "toy", &mum, &family, Some(&child)).await?;
    let phone = device(&server, local.path(), "mum-phone", &mum, &family, None).await?;
    let granny = device(&server, local.path(), "grandma-phone", &grandma, &grandma_family, None).await?;
    let chat = toy.create_conversation().await?;
    toy.invite(&chat, phone.device_id()).await?;
    toy.invite(&chat, granny.device_id()).await?;
    granny.sync(IDLE).await?;
    granny.send_text(&chat, "a message the child reports").await?;
    let events = toy.sync(IDLE).await?;
    let (sender, envelope) = events
        .iter()
        .find_map(|e| match e {
            Event::Message { sender, envelope, .. } => Some((sender.clone(), envelope.clone())),
            _ => None,
        })
        .ok_or("no message")?;
    toy.report(&chat, &sender, &envelope, "").await?;
    // Nobody reads what follows: it waits on the server.
    toy.send_text(&chat, "nobody fetches this").await?;
    let photo = local.path().join("photo.jpg");
    std::fs::write(&photo, common::media::random_bytes(200_000)?)?;
    toy.send_photo(&chat, &photo, "image/jpeg").await?;
    let sent_at = now_ms()?;
    let blobs = dirs.data().join("blobs");
    server.stop()?;

    let before = remaining(&db, &blobs).await?;
    assert!(before.iter().all(|n| *n > 0), "messages, deliveries, media, reports, blob files: {before:?}");
    // Six days on, nothing is due yet.
    let output = expire_at(&dirs, &db, sent_at + 6 * DAY_MS)?;
    assert_eq!(remaining(&db, &blobs).await?, before, "{output}");
    // Eight days on, the week has passed: nothing of the conversation remains.
    let output = expire_at(&dirs, &db, sent_at + 8 * DAY_MS)?;
    assert_eq!(remaining(&db, &blobs).await?, [0, 0, 0, 0, 0], "{output}");
    assert!(output.contains("reports past their retention"), "{output}");
    let audited = count(&db, "SELECT COUNT(*) FROM audit_log WHERE action = 'retention.expired'").await?;
    assert_eq!(audited, 1, "the pass that deleted something is audited, the empty one is not");
    let mut verify = vec!["admin".to_owned(), "audit".to_owned(), "verify".to_owned()];
    verify.extend(dirs.args(Some(&db)));
    let verified = cubby(&verify)?;
    assert!(verified.status.success(), "{}", text(&verified.stdout));
    Ok(())
}

on_both_engines!(nothing_of_the_conversation_outlives_its_retention);
