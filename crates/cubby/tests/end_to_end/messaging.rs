//! End-to-end-encrypted messaging with real MLS clients (cubby-client on openmls) against
//! the real `cubby` binary, on SQLite and PostgreSQL: conversations between a guardian's
//! phone, a co-guardian's phone and a child's toy; offline catch-up in order; removal and
//! revocation; what the server refuses; and what it stores.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use crate::common::api::{self, Session};
use crate::common::devices::{device, device_token, texts};
use crate::common::socket::{next_frame_of, next_frame_of_any, open_socket};
use crate::common::{Dirs, Fallible, Server, TestResult, client, file_contains};
use cubby_client::messaging::Body;
use cubby_client::{ClientError, ConversationId, Event, Messenger};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio_tungstenite::tungstenite::Message as Frame;

const IDLE: Duration = Duration::from_millis(700);
/// How long a test waits for something the server does asynchronously (polled).
const PATIENCE: Duration = Duration::from_secs(15);
/// The server's default request body limit (`ServerConfig::default().max_body_bytes`),
/// which also bounds WebSocket frames.
const BODY_LIMIT: usize = 64 * 1024;

async fn start(dirs: &Dirs, postgres: bool) -> Fallible<(Server, String)> {
    if postgres {
        let url = cubby_store::testing::fresh_postgres_database().await?;
        Ok((Server::start(&dirs.args(Some(&url)))?, url))
    } else {
        Ok((Server::start(&dirs.args(None))?, dirs.database_url()))
    }
}

/// A family with two guardians and a child.
struct Family {
    alice: Session,
    bob: Session,
    id: String,
    child: String,
}

async fn family(server: &Server, outbox: &Path, tag: &str) -> Fallible<Family> {
    let password = "correct horse battery staple";
    let alice = api::guardian(server, outbox, &format!("alice-{tag}@example.org"), password).await?;
    let id = api::family(server, &alice, "The Family").await?;
    api::consent(server, outbox, &alice, &id).await?;
    let child = api::child(server, &alice, &id, "Sam", "6_8").await?;
    let bob_email = format!("bob-{tag}@example.org");
    let bob = api::guardian(server, outbox, &bob_email, password).await?;
    let (status, body) =
        api::post(server, &format!("/api/v1/families/{id}/invites"), Some(&alice.token), json!({"email": bob_email})).await?;
    if status >= 300 {
        return Err(format!("invite answered {status}: {body}").into());
    }
    let token = api::outbox_token(outbox, &bob_email, "invited")?;
    let (status, body) = api::post(server, "/api/v1/invites/accept", Some(&bob.token), json!({"token": token})).await?;
    if status >= 300 {
        return Err(format!("accept answered {status}: {body}").into());
    }
    Ok(Family { alice, bob, id, child })
}

/// Pairs a device (approved by `guardian`, for `child` or the guardian's own app) and opens
/// its messenger with KeyPackages published.
async fn paired_device(
    server: &Server,
    dir: &Path,
    name: &str,
    guardian: &Session,
    family: &str,
    child: Option<&str>,
) -> Fallible<(Messenger, [u8; 32])> {
    common::devices::paired_device_at(server, &server.base_url, dir, name, guardian, family, child).await
}

/// Alice's phone starts a conversation and invites bob's phone and the toy; both join.
async fn conversation_of_three(alice: &Messenger, bob: &Messenger, toy: &Messenger) -> Fallible<ConversationId> {
    let chat = alice.create_conversation().await?;
    alice.invite(&chat, bob.device_id()).await?;
    alice.invite(&chat, toy.device_id()).await?;
    for member in [bob, toy] {
        let events = member.sync(IDLE).await?;
        if !events.contains(&Event::Joined { conversation: chat.clone() }) {
            return Err(format!("{} did not join: {events:?}", member.device_id()).into());
        }
    }
    Ok(chat)
}

async fn three_devices_converse_and_an_offline_toy_catches_up_in_order(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, _) = start(&dirs, postgres).await?;
    let family = family(&server, &dirs.outbox(), "a").await?;
    let local = tempfile::tempdir()?;
    let alice = device(&server, local.path(), "alice-phone", &family.alice, &family.id, None).await?;
    let bob = device(&server, local.path(), "bob-phone", &family.bob, &family.id, None).await?;
    let toy = device(&server, local.path(), "toy", &family.alice, &family.id, Some(&family.child)).await?;

    let chat: ConversationId = alice.create_conversation().await?;
    alice.invite(&chat, bob.device_id()).await?;
    alice.invite(&chat, toy.device_id()).await?;
    let joined = bob.sync(IDLE).await?;
    assert!(joined.contains(&Event::Joined { conversation: chat.clone() }), "bob joined: {joined:?}");
    let joined = toy.sync(IDLE).await?;
    assert!(joined.contains(&Event::Joined { conversation: chat.clone() }), "the toy joined: {joined:?}");

    alice.send_text(&chat, "hello from mum").await?;
    toy.send_text(&chat, "hi mum!").await?;
    assert_eq!(texts(&bob.sync(IDLE).await?), ["hello from mum", "hi mum!"]);
    assert_eq!(texts(&alice.sync(IDLE).await?), ["hi mum!"]);

    // The toy is offline while several messages are sent; it catches up in order.
    for n in 1..=5 {
        bob.send_text(&chat, &format!("story part {n}")).await?;
    }
    let caught_up = texts(&toy.sync(IDLE).await?);
    assert_eq!(caught_up, ["hello from mum", "story part 1", "story part 2", "story part 3", "story part 4", "story part 5"]);
    // Nothing is delivered twice.
    assert!(texts(&toy.sync(IDLE).await?).is_empty());

    // The message writer's transactions show in the metrics: every send above went
    // through one (commits and welcomes included), each counted with its duration.
    let metrics = client()?.get(server.url("/metrics")).send().await?.text().await?;
    let figure = |name: &str| -> Fallible<f64> {
        let line = metrics.lines().find(|l| l.starts_with(name)).ok_or(format!("{name} missing from /metrics"))?;
        Ok(line.rsplit(' ').next().unwrap_or_default().parse()?)
    };
    let (items, transactions) = (figure("cubby_message_batch_size_sum")?, figure("cubby_message_batch_write_seconds_count")?);
    assert!(items >= 7.0, "seven texts at least went through the writer: {items}");
    assert!(transactions >= 1.0 && transactions <= items, "{transactions} transactions for {items} writes");
    assert!(figure("cubby_message_batch_write_seconds_sum")? > 0.0);
    server.stop()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Looking at the server from outside: its database, raw HTTP, a raw WebSocket.

/// Runs `$body` with `$conn` connected to the server's database, SQLite or PostgreSQL by
/// the URL (the body is compiled once per engine).
macro_rules! with_db {
    ($url:expr, |$conn:ident| $body:expr) => {{
        let url: &str = $url;
        if url.starts_with("sqlite:") {
            let mut $conn = sqlx::SqliteConnection::connect(url).await?;
            let result = $body;
            $conn.close().await?;
            result
        } else {
            let mut $conn = sqlx::PgConnection::connect(url).await?;
            let result = $body;
            $conn.close().await?;
            result
        }
    }};
}

/// The payload of the newest stored message of a kind (`application`, `commit`, …).
async fn latest_payload(db: &str, kind: &str) -> Fallible<Vec<u8>> {
    let sql = "SELECT payload FROM messages WHERE kind = $1 ORDER BY id DESC LIMIT 1";
    let row: Option<(Vec<u8>,)> = with_db!(db, |conn| sqlx::query_as(sql).bind(kind).fetch_optional(&mut conn).await?);
    Ok(row.ok_or_else(|| format!("no {kind} message is stored"))?.0)
}

/// The group's epoch as the server has it.
async fn server_epoch(db: &str, chat: &ConversationId) -> Fallible<i64> {
    let sql = "SELECT epoch FROM mls_groups WHERE id = $1";
    let (epoch,): (i64,) = with_db!(db, |conn| sqlx::query_as(sql).bind(chat.0.as_slice()).fetch_one(&mut conn).await?);
    Ok(epoch)
}

/// A `SELECT COUNT(*) …` with one text parameter.
async fn count(db: &str, sql: &'static str, param: &str) -> Fallible<i64> {
    let (n,): (i64,) = with_db!(db, |conn| sqlx::query_as(sql).bind(param).fetch_one(&mut conn).await?);
    Ok(n)
}

/// A `SELECT COUNT(*) …` without parameters.
async fn count_all(db: &str, sql: &'static str) -> Fallible<i64> {
    let (n,): (i64,) = with_db!(db, |conn| sqlx::query_as(sql).fetch_one(&mut conn).await?);
    Ok(n)
}

/// How many messages are queued for a device.
const QUEUED_FOR: &str = "SELECT COUNT(*) FROM deliveries d JOIN device_queues q ON q.queue = d.queue WHERE q.device_id = $1";

/// Who the newest application message is still queued for.
async fn recipients_of_latest_application(db: &str) -> Fallible<Vec<String>> {
    let sql = "SELECT q.device_id FROM deliveries d JOIN device_queues q ON q.queue = d.queue \
               WHERE d.message_id = (SELECT MAX(id) FROM messages WHERE kind = 'application') ORDER BY q.device_id";
    let rows: Vec<(String,)> = with_db!(db, |conn| sqlx::query_as(sql).fetch_all(&mut conn).await?);
    Ok(rows.into_iter().map(|(d,)| d).collect())
}

/// One KeyPackage a device uploaded, straight from the server's table.
async fn stored_key_package(db: &str, device: &str) -> Fallible<Vec<u8>> {
    let sql = "SELECT package FROM key_packages WHERE device_id = $1 LIMIT 1";
    let row: Option<(Vec<u8>,)> = with_db!(db, |conn| sqlx::query_as(sql).bind(device).fetch_optional(&mut conn).await?);
    Ok(row.ok_or("the device has no KeyPackage stored")?.0)
}

/// Every value of every column of every table, as lowercase hex of its bytes (text as
/// UTF-8, numbers as their decimal text), one string per value.
async fn every_stored_value(db: &str) -> Fallible<Vec<String>> {
    let mut values = Vec::new();
    if db.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(db).await?;
        let tables: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table'").fetch_all(&mut conn).await?;
        for (table,) in tables {
            let columns: Vec<(String,)> =
                sqlx::query_as("SELECT name FROM pragma_table_info($1)").bind(&table).fetch_all(&mut conn).await?;
            for (column,) in columns {
                // Audited: table and column names read from the schema.
                let sql = format!(r#"SELECT lower(hex("{column}")) FROM "{table}""#);
                let rows: Vec<(Option<String>,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&mut conn).await?;
                values.extend(rows.into_iter().filter_map(|(v,)| v));
            }
        }
        conn.close().await?;
    } else {
        let mut conn = sqlx::PgConnection::connect(db).await?;
        let columns: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT c.table_name::text, c.column_name::text, c.data_type::text FROM information_schema.columns c \
             JOIN information_schema.tables t ON t.table_name = c.table_name AND t.table_schema = c.table_schema \
             WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'",
        )
        .fetch_all(&mut conn)
        .await?;
        for (table, column, data_type) in columns {
            let expr = if data_type == "bytea" {
                format!(r#"encode("{column}", 'hex')"#)
            } else {
                format!(r#"encode(convert_to("{column}"::text, 'UTF8'), 'hex')"#)
            };
            // Audited: table and column names read from the schema.
            let sql = format!(r#"SELECT {expr} FROM "{table}""#);
            let rows: Vec<(Option<String>,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&mut conn).await?;
            values.extend(rows.into_iter().filter_map(|(v,)| v));
        }
        conn.close().await?;
    }
    Ok(values)
}

/// Polls `check` until it holds, for at most [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Fallible<bool>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("not within {PATIENCE:?}: {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every file under a directory, recursively.
fn files_under(dir: &Path) -> Fallible<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    Ok(files)
}

/// `POST /api/v1/messages` by hand.
async fn post_message(server: &Server, token: &str, body: Value) -> Fallible<(u16, Value)> {
    api::post(server, "/api/v1/messages", Some(token), body).await
}

/// An answer is the error expected, in the API's shape: a code and a message saying why.
fn assert_error(what: &str, answer: &(u16, Value), status: u16, code: &str) {
    let (got, body) = answer;
    assert_eq!((*got, body["error"]["code"].as_str()), (status, Some(code)), "{what}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.trim().is_empty(), "{what}: the error says nothing: {body}");
}

/// The conversation as `GET /api/v1/groups` shows it to a device: (epoch, members sorted).
async fn server_view(server: &Server, token: &str, chat: &ConversationId) -> Fallible<(i64, Vec<String>)> {
    let (status, body) = api::get(server, "/api/v1/groups", Some(token)).await?;
    if status != 200 {
        return Err(format!("GET /api/v1/groups answered {status}: {body}").into());
    }
    let group = body
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["group_id"] == json!(chat.to_base64()))
        .ok_or_else(|| format!("the conversation is not listed: {body}"))?;
    let mut members: Vec<String> =
        group["members"].as_array().into_iter().flatten().filter_map(|m| m.as_str().map(ToOwned::to_owned)).collect();
    members.sort();
    Ok((group["epoch"].as_i64().ok_or("no epoch")?, members))
}

fn sorted<S: AsRef<str>>(ids: &[S]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| s.as_ref().to_owned()).collect();
    ids.sort();
    ids
}

/// The same MLS message with its (cleartext) group id replaced by another of equal length.
fn with_group_id(message: &[u8], from: &[u8], to: &[u8]) -> Fallible<Vec<u8>> {
    if from.len() != to.len() {
        return Err("group ids of different lengths".into());
    }
    let at = message.windows(from.len()).position(|w| w == from).ok_or("the group id is not in the message")?;
    let mut changed = message.to_vec();
    changed[at..at + to.len()].copy_from_slice(to);
    Ok(changed)
}

/// An error frame with the code expected and a message saying why.
fn assert_error_frame(what: &str, frame: &Value, code: &str, reference: Option<u64>) {
    assert_eq!(frame["code"].as_str(), Some(code), "{what}: {frame}");
    assert!(!frame["message"].as_str().unwrap_or_default().trim().is_empty(), "{what}: no message: {frame}");
    assert_eq!(frame["ref"].as_u64(), reference, "{what}: {frame}");
}

// ---------------------------------------------------------------------------------------
// Revocation.

/// A device the guardian revokes loses its live connection at once and cannot connect
/// again; the server proposes its removal from the conversation, the next member to sync
/// commits that proposal, and from then on nothing is queued for the revoked device and
/// what is sent cannot be decrypted with the keys it kept — while a message of the epoch
/// it was still in can (the control that makes the failure meaningful).
async fn a_revoked_device_reads_nothing_sent_after_its_removal(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, db) = start(&dirs, postgres).await?;
    let family = family(&server, &dirs.outbox(), "a").await?;
    let local = tempfile::tempdir()?;
    let (alice, alice_secret) = paired_device(&server, local.path(), "alice-phone", &family.alice, &family.id, None).await?;
    let bob = Arc::new(device(&server, local.path(), "bob-phone", &family.bob, &family.id, None).await?);
    let toy = device(&server, local.path(), "toy", &family.alice, &family.id, Some(&family.child)).await?;
    let chat = conversation_of_three(&alice, &bob, &toy).await?;
    let alice_token = device_token(&server, alice_secret, alice.device_id()).await?;

    alice.send_text(&chat, "hello everyone").await?;
    bob.send_text(&chat, "hi from dad").await?;
    assert_eq!(texts(&toy.sync(IDLE).await?), ["hello everyone", "hi from dad"]);
    assert_eq!(texts(&bob.sync(IDLE).await?), ["hello everyone"]);
    assert_eq!(texts(&alice.sync(IDLE).await?), ["hi from dad"]);

    // Control: a ciphertext of the epoch bob is in, taken off the server, opens with bob's keys.
    alice.send_text(&chat, "before removal").await?;
    let before = latest_payload(&db, "application").await?;
    let read = bob.read_captured(&chat, &before).await?;
    assert_eq!(read.body, Body::Text { text: "before removal".into() });

    // Bob's phone is connected live when it is revoked (a message reaching it proves it).
    let mut live = bob.listen();
    toy.send_text(&chat, "one more for dad").await?;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, live.recv()).await {
            Ok(Some(Ok(Event::Message { envelope, .. }))) if envelope.body == Body::Text { text: "one more for dad".into() } => break,
            Ok(Some(Ok(_))) => {}
            other => return Err(format!("bob's live connection did not deliver: {other:?}").into()),
        }
    }
    let revoke = format!("/api/v1/families/{}/devices/{}", family.id, bob.device_id());
    let status = client()?.delete(server.url(&revoke)).bearer_auth(&family.alice.token).send().await?.status();
    assert_eq!(status.as_u16(), 204);

    // (a) The live connection is closed as revoked, and bob cannot connect again.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, live.recv()).await {
            Ok(Some(Err(ClientError::Disconnected { revoked: true }))) => break,
            Ok(Some(Ok(_))) => {}
            other => return Err(format!("bob's live connection was not closed as revoked: {other:?}").into()),
        }
    }
    let refused = bob.sync(IDLE).await;
    assert!(matches!(&refused, Err(e) if e.is_unauthenticated()), "a revoked device synced: {refused:?}");
    // Its queue is gone, and the server proposed its removal (as the external sender) to the others.
    assert_eq!(count(&db, QUEUED_FOR, bob.device_id()).await?, 0);
    let proposed = "SELECT COUNT(*) FROM messages m JOIN deliveries d ON d.message_id = m.id \
                    JOIN device_queues q ON q.queue = d.queue \
                    WHERE m.kind = 'proposal' AND m.sender_device IS NULL AND q.device_id = $1";
    assert_eq!(count(&db, proposed, alice.device_id()).await?, 1, "no removal proposal queued for alice");
    assert_eq!(count(&db, proposed, toy.device_id()).await?, 1, "no removal proposal queued for the toy");

    // (b) Alice's phone syncs: it processes the proposal and commits it; the server accepts.
    let epoch = server_epoch(&db, &chat).await?;
    assert_eq!(texts(&alice.sync(IDLE).await?), ["one more for dad"]);
    let remaining = sorted(&[alice.device_id(), toy.device_id()]);
    assert_eq!(server_view(&server, &alice_token, &chat).await?, (epoch + 1, remaining.clone()));
    assert_eq!(server_epoch(&db, &chat).await?, epoch + 1);
    let mine = alice.conversations().await?.into_iter().find(|c| c.id == chat).ok_or("alice lost the conversation")?;
    assert_eq!((i64::try_from(mine.epoch)?, sorted(&mine.members)), (epoch + 1, remaining.clone()));

    // (c) What alice sends next is queued for the toy only, and the toy reads it; bob's
    // keys, kept on the revoked phone, do not open it.
    alice.send_text(&chat, "after removal").await?;
    let after = latest_payload(&db, "application").await?;
    assert_eq!(recipients_of_latest_application(&db).await?, [toy.device_id().to_owned()]);
    let events = toy.sync(IDLE).await?;
    assert!(
        events.iter().any(|e| matches!(e, Event::MembersChanged { conversation, members }
            if *conversation == chat && sorted(members) == remaining)),
        "the toy did not see bob leave: {events:?}"
    );
    assert_eq!(texts(&events), ["before removal", "after removal"]);
    let leaked = bob.read_captured(&chat, &after).await;
    assert!(leaked.is_err(), "the revoked phone decrypted a message sent after its removal: {leaked:?}");
    assert_eq!(count(&db, QUEUED_FOR, bob.device_id()).await?, 0);
    server.stop()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// What the server refuses.

/// Another family's device cannot be reached (no KeyPackage is handed out for it, exactly
/// as for a device that does not exist) nor added with a KeyPackage obtained elsewhere
/// (`membership_refused`, the group unchanged); a commit replayed after the group moved on
/// is refused as `stale_epoch`. After each refusal the conversation works as before.
async fn the_server_refuses_outsiders_and_stale_commits(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, db) = start(&dirs, postgres).await?;
    let a = family(&server, &dirs.outbox(), "a").await?;
    let b = family(&server, &dirs.outbox(), "b").await?;
    let local = tempfile::tempdir()?;
    let (alice, alice_secret) = paired_device(&server, local.path(), "alice-phone", &a.alice, &a.id, None).await?;
    let bob = device(&server, local.path(), "bob-phone", &a.bob, &a.id, None).await?;
    let toy = device(&server, local.path(), "toy", &a.alice, &a.id, Some(&a.child)).await?;
    let outsider = device(&server, local.path(), "outsider-phone", &b.alice, &b.id, None).await?;

    let chat = alice.create_conversation().await?;
    alice.invite(&chat, bob.device_id()).await?;
    // Inviting the toy is a commit at epoch 1, queued for bob: keep a copy of it.
    alice.invite(&chat, toy.device_id()).await?;
    let commit = latest_payload(&db, "commit").await?;
    let welcome = latest_payload(&db, "welcome").await?;
    assert!(bob.sync(IDLE).await?.contains(&Event::Joined { conversation: chat.clone() }));
    assert!(toy.sync(IDLE).await?.contains(&Event::Joined { conversation: chat.clone() }));
    let epoch = server_epoch(&db, &chat).await?;
    assert_eq!(epoch, 2);

    // (a) Another family's device is invisible: answered as a device that does not exist.
    let invited = alice.invite(&chat, outsider.device_id()).await;
    let nobody = alice.invite(&chat, "00000000-0000-4000-8000-000000000000").await;
    match (&invited, &nobody) {
        (
            Err(ClientError::Api { status: 404, code, message }),
            Err(ClientError::Api { status: 404, code: code2, message: message2 }),
        ) => {
            assert_eq!((code.as_str(), message), ("not_found", message2));
            assert_eq!(code, code2);
            assert!(!message.is_empty());
        }
        _ => return Err(format!("another family's device: {invited:?}; no device: {nobody:?}").into()),
    }

    // (b) Its KeyPackage, taken from the server's table, does not get it in either.
    let package = stored_key_package(&db, outsider.device_id()).await?;
    let added = alice.add_with_key_package(&chat, &package, None).await;
    assert!(
        matches!(&added, Err(ClientError::Api { status: 403, code, message }) if code == "membership_refused" && !message.is_empty()),
        "{added:?}"
    );
    assert_eq!(server_epoch(&db, &chat).await?, epoch, "a refused commit moved the group");
    assert_eq!(count(&db, QUEUED_FOR, outsider.device_id()).await?, 0);
    assert_eq!(outsider.sync(IDLE).await?, [], "the outsider heard of the conversation");
    alice.send_text(&chat, "still just us").await?;
    assert_eq!(texts(&toy.sync(IDLE).await?), ["still just us"]);
    toy.send_text(&chat, "yes!").await?;
    assert_eq!(texts(&alice.sync(IDLE).await?), ["yes!"]);

    // (c) The toy's invitation, sent again now that the group is past its epoch.
    let token = device_token(&server, alice_secret, alice.device_id()).await?;
    let body = json!({"message": BASE64.encode(&commit), "welcome": BASE64.encode(&welcome)});
    let answer = post_message(&server, &token, body).await?;
    assert_error("a replayed commit", &answer, 409, "stale_epoch");
    assert_eq!(server_epoch(&db, &chat).await?, epoch, "a replayed commit moved the group");
    alice.send_text(&chat, "after the replay").await?;
    assert_eq!(texts(&toy.sync(IDLE).await?), ["after the replay"]);
    toy.send_text(&chat, "all good").await?;
    assert_eq!(texts(&alice.sync(IDLE).await?), ["all good"]);
    assert_eq!(texts(&bob.sync(IDLE).await?), ["still just us", "yes!", "after the replay", "all good"]);
    server.stop()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// What the server stores.

const SECRETS: [&str; 4] = [
    "the-secret-picnic-is-at-the-old-oak-7f3a",
    "dad-hid-the-cake-in-the-blue-box-91c2",
    "sam-wants-a-red-kite-for-the-birthday-e4d0",
    "grandma-arrives-on-the-5pm-train-b6a1",
];

/// Each text as bytes, hex and base64: the forms in which it could have been stored.
fn forms(text: &str) -> Vec<Vec<u8>> {
    vec![text.as_bytes().to_vec(), hex::encode(text).into_bytes(), BASE64.encode(text).into_bytes()]
}

/// The server stores no message text, in no form, anywhere: not in any column of any
/// table (while the messages wait for their recipients, and after), not in any file it
/// writes (the database and its WAL, the key directory — so holding the master key reveals
/// nothing either — the mail outbox) and not in its logs. And it keeps a message only until
/// every recipient acknowledged it.
async fn the_server_stores_no_message_text(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, db) = start(&dirs, postgres).await?;
    let family = family(&server, &dirs.outbox(), "a").await?;
    let local = tempfile::tempdir()?;
    let alice = device(&server, local.path(), "alice-phone", &family.alice, &family.id, None).await?;
    let bob = device(&server, local.path(), "bob-phone", &family.bob, &family.id, None).await?;
    let toy = device(&server, local.path(), "toy", &family.alice, &family.id, Some(&family.child)).await?;
    let chat = conversation_of_three(&alice, &bob, &toy).await?;

    alice.send_text(&chat, SECRETS[0]).await?;
    bob.send_text(&chat, SECRETS[1]).await?;
    toy.send_text(&chat, SECRETS[2]).await?;
    alice.send_urgent_text(&chat, SECRETS[3]).await?;
    let needles: Vec<(&str, String)> =
        SECRETS.iter().flat_map(|s| forms(s).into_iter().map(move |f| (*s, hex::encode(f)))).collect();
    let scan = |values: &[String], stage: &str| {
        for (secret, needle) in &needles {
            assert!(!values.iter().any(|v| v.contains(needle.as_str())), "{stage}: {secret:?} is stored");
        }
    };

    // While the messages wait for their recipients: the ciphertext is there, the text is not.
    let waiting = count(&db, "SELECT COUNT(*) FROM messages WHERE kind = $1", "application").await?;
    assert_eq!(waiting, SECRETS.len() as i64);
    let latest = hex::encode(latest_payload(&db, "application").await?);
    let values = every_stored_value(&db).await?;
    assert!(values.contains(&latest), "the scan does not see the stored ciphertext");
    scan(&values, "queued");

    assert_eq!(texts(&alice.sync(IDLE).await?), [SECRETS[1], SECRETS[2]]);
    assert_eq!(texts(&bob.sync(IDLE).await?), [SECRETS[0], SECRETS[2], SECRETS[3]]);
    assert_eq!(texts(&toy.sync(IDLE).await?), [SECRETS[0], SECRETS[1], SECRETS[3]]);

    // Acknowledged by every recipient: deleted.
    let db_ref = db.as_str();
    eventually("every message deleted once acknowledged", || async move {
        let messages = count_all(db_ref, "SELECT COUNT(*) FROM messages").await?;
        let deliveries = count_all(db_ref, "SELECT COUNT(*) FROM deliveries").await?;
        Ok(messages == 0 && deliveries == 0)
    })
    .await?;
    scan(&every_stored_value(&db).await?, "delivered");
    for secret in SECRETS {
        assert!(!server.logs().contains(secret), "{secret:?} is in the server's log");
    }

    // Every file the server wrote, once it has checkpointed and stopped.
    let (status, logs) = server.stop()?;
    assert!(status.success(), "{logs}");
    assert!(!SECRETS.iter().any(|s| logs.contains(s)), "a text is in the server's log");
    let files = files_under(dirs.root.path())?;
    if !postgres {
        let database = dirs.data().join("cubby.db");
        assert!(files.contains(&database));
        // Any of the schema's text will do; SQLite keeps a renamed table's as `"messages"`.
        assert!(file_contains(&database, b"CREATE TABLE families"), "the scan does not read the database");
    }
    assert!(files.iter().any(|f| f.starts_with(dirs.keys())), "no key file scanned");
    for file in &files {
        for secret in SECRETS {
            for form in forms(secret) {
                assert!(!file_contains(file, &form), "{secret:?} is in {}", file.display());
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Bad input.

/// Malformed sends get a precise error, in the API's shape (a code and a message), and
/// change nothing: not base64 (422 `invalid_body`), not MLS or cut short (400
/// `malformed_message`), for a group that does not exist or is another family's (404
/// `not_found`, the same answer for both), too large (413 `body_too_large`). On the
/// WebSocket, a frame that is not JSON gets an error frame and the connection goes on;
/// a frame over the limit ends that connection, and the server carries on.
async fn bad_messages_get_clear_errors(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, db) = start(&dirs, postgres).await?;
    let a = family(&server, &dirs.outbox(), "a").await?;
    let b = family(&server, &dirs.outbox(), "b").await?;
    let local = tempfile::tempdir()?;
    let (alice, alice_secret) = paired_device(&server, local.path(), "alice-phone", &a.alice, &a.id, None).await?;
    let bob = device(&server, local.path(), "bob-phone", &a.bob, &a.id, None).await?;
    let toy = device(&server, local.path(), "toy", &a.alice, &a.id, Some(&a.child)).await?;
    let outsider = device(&server, local.path(), "outsider-phone", &b.alice, &b.id, None).await?;
    let theirs = outsider.create_conversation().await?;

    let chat = alice.create_conversation().await?;
    alice.invite(&chat, bob.device_id()).await?;
    alice.invite(&chat, toy.device_id()).await?;
    let commit = latest_payload(&db, "commit").await?;
    assert!(bob.sync(IDLE).await?.contains(&Event::Joined { conversation: chat.clone() }));
    assert!(toy.sync(IDLE).await?.contains(&Event::Joined { conversation: chat.clone() }));
    alice.send_text(&chat, "a real message").await?;
    let application = latest_payload(&db, "application").await?;
    let epoch = server_epoch(&db, &chat).await?;
    let token = device_token(&server, alice_secret, alice.device_id()).await?;
    let send = |bytes: &[u8]| json!({"message": BASE64.encode(bytes)});

    let answer = post_message(&server, &token, json!({"message": "this is not base64!"})).await?;
    assert_error("not base64", &answer, 422, "invalid_body");
    let answer = post_message(&server, &token, send(b"these bytes are not an MLS message at all")).await?;
    assert_error("not MLS", &answer, 400, "malformed_message");
    for (what, real) in [("application", &application), ("commit", &commit)] {
        let answer = post_message(&server, &token, send(&real[..real.len() / 2])).await?;
        assert_error(&format!("a truncated {what}"), &answer, 400, "malformed_message");
        let answer = post_message(&server, &token, send(&real[..real.len() - 1])).await?;
        assert_error(&format!("a {what} one byte short"), &answer, 400, "malformed_message");
    }
    for (what, real) in [("application", &application), ("commit", &commit)] {
        let unknown = with_group_id(real, &chat.0, &vec![0x5a; chat.0.len()])?;
        let foreign = with_group_id(real, &chat.0, &theirs.0)?;
        let unknown = post_message(&server, &token, send(&unknown)).await?;
        let foreign = post_message(&server, &token, send(&foreign)).await?;
        assert_error(&format!("an {what} for no group"), &unknown, 404, "not_found");
        assert_error(&format!("an {what} for another family's group"), &foreign, 404, "not_found");
        assert_eq!(unknown, foreign, "another family's group is told apart from a missing one");
    }
    let answer = post_message(&server, &token, json!({"message": "A".repeat(2 * BODY_LIMIT)})).await?;
    assert_error("a body over the limit", &answer, 413, "body_too_large");
    // None of it reached anyone or moved the group.
    assert_eq!(server_epoch(&db, &chat).await?, epoch);
    assert_eq!(texts(&toy.sync(IDLE).await?), ["a real message"]);
    assert_eq!(texts(&bob.sync(IDLE).await?), ["a real message"]);

    // The WebSocket: with alice's queue empty, a raw connection sees only what follows.
    assert!(alice.sync(IDLE).await?.is_empty());
    let mut socket = open_socket(&server, &token).await?;
    socket.send(Frame::Text("hello, is this JSON?".into())).await?;
    assert_error_frame("a text frame that is not JSON", &next_frame_of(&mut socket, "error").await?, "malformed_json", None);
    socket.send(Frame::Binary(vec![1, 2, 3].into())).await?;
    assert_error_frame("a binary frame", &next_frame_of(&mut socket, "error").await?, "malformed_json", None);
    // Still usable: sends are answered by reference...
    let frame = json!({"type": "send", "ref": 7, "message": "this is not base64!"});
    socket.send(Frame::Text(frame.to_string().into())).await?;
    assert_error_frame("a send that is not base64", &next_frame_of(&mut socket, "error").await?, "invalid_body", Some(7));
    let frame = json!({"type": "send", "ref": 8, "message": BASE64.encode(&application[..application.len() / 2])});
    socket.send(Frame::Text(frame.to_string().into())).await?;
    assert_error_frame("a truncated send", &next_frame_of(&mut socket, "error").await?, "malformed_message", Some(8));
    // ...and new messages are pushed.
    toy.send_text(&chat, "still there?").await?;
    let pushed = next_frame_of(&mut socket, "message").await?;
    assert_eq!((pushed["kind"].as_str(), pushed["sender"].as_str()), (Some("application"), Some(toy.device_id())), "{pushed}");
    // Sends pipelined on the socket (here in one write) are answered in the order sent:
    // one the checks refuse at once waits for those before it, still being stored.
    let refused = 30;
    for reference in 21..=31u64 {
        let message = if reference == refused { "not base64!".to_owned() } else { BASE64.encode(&application) };
        socket.feed(Frame::Text(json!({"type": "send", "ref": reference, "message": message}).to_string().into())).await?;
    }
    socket.flush().await?;
    let mut answers = Vec::new();
    for _ in 21..=31 {
        answers.push(next_frame_of_any(&mut socket, &["sent", "error"]).await?);
    }
    let order: Vec<(Option<u64>, Option<&str>)> = answers.iter().map(|a| (a["ref"].as_u64(), a["type"].as_str())).collect();
    let expected: Vec<(Option<u64>, Option<&str>)> =
        (21..=31).map(|r| (Some(r), Some(if r == refused { "error" } else { "sent" }))).collect();
    assert_eq!(order, expected, "{answers:?}");
    let ids: Vec<i64> = answers.iter().filter_map(|a| a["ids"][0].as_i64()).collect();
    assert!(ids.len() == 10 && ids.is_sorted(), "stored out of order: {answers:?}");

    // A frame over the limit ends this connection...
    let _ = socket.send(Frame::Text("x".repeat(2 * BODY_LIMIT).into())).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return Err("the connection stayed open after an oversize frame".into()),
            Ok(None | Some(Err(_)) | Some(Ok(Frame::Close(_)))) => break,
            Ok(Some(Ok(_))) => {}
        }
    }
    // ...not the server: it answers, and alice's phone connects and gets what is queued.
    let (status, health) = api::get(&server, "/healthz", None).await?;
    assert_eq!(status, 200, "{health}");
    assert_eq!(texts(&alice.sync(IDLE).await?), ["still there?"]);
    let (status, logs) = server.stop()?;
    assert!(status.success(), "{logs}");
    Ok(())
}

/// A family chooses how long its undelivered messages wait on the server: what is stored
/// carries that expiry, the setting is checked, and `null` returns to the server's 30 days.
async fn a_family_chooses_how_long_undelivered_messages_wait(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, db) = start(&dirs, postgres).await?;
    let family = family(&server, &dirs.outbox(), "r").await?;
    let local = tempfile::tempdir()?;
    let alice = device(&server, local.path(), "alice-phone", &family.alice, &family.id, None).await?;
    let toy = device(&server, local.path(), "toy", &family.alice, &family.id, Some(&family.child)).await?;
    let chat = alice.create_conversation().await?;
    alice.invite(&chat, toy.device_id()).await?;

    let path = format!("/api/v1/families/{}/message-retention", family.id);
    let (status, body) = api::get(&server, &path, Some(&family.alice.token)).await?;
    assert_eq!((status, &body["days"], &body["effective_days"]), (200, &Value::Null, &json!(30)), "{body}");
    let put = |days: Value| {
        let request = client().map(|c| c.put(server.url(&path)).bearer_auth(&family.bob.token).json(&json!({"days": days})));
        async move { Ok::<_, Box<dyn std::error::Error + Send + Sync>>(request?.send().await?.status().as_u16()) }
    };
    assert_eq!(put(json!(0)).await?, 422);
    assert_eq!(put(json!(31)).await?, 422, "the server is a relay, not an archive: 30 days at most");
    assert_eq!(put(json!(2)).await?, 200, "a co-guardian may choose it");

    alice.send_text(&chat, "kept two days at most").await?;
    let sql = "SELECT expires_at - created_at FROM messages WHERE kind = 'application' ORDER BY id DESC LIMIT 1";
    let (kept,): (i64,) = with_db!(&db, |conn| sqlx::query_as(sql).fetch_one(&mut conn).await?);
    assert_eq!(kept, 2 * 86_400_000);

    assert_eq!(put(Value::Null).await?, 200);
    alice.send_text(&chat, "back to the default").await?;
    let (kept,): (i64,) = with_db!(&db, |conn| sqlx::query_as(sql).fetch_one(&mut conn).await?);
    assert_eq!(kept, 30 * 86_400_000);
    assert_eq!(texts(&toy.sync(IDLE).await?), ["kept two days at most", "back to the default"]);
    assert_eq!(toy.received(0, 10).await?.len(), 2, "devices keep their history by default");

    // The family keeps no history on its devices: a message is gone once the app took it.
    let (status, body) = api::put(&server, &path, Some(&family.alice.token), json!({"days": null, "keep_history": false})).await?;
    assert_eq!((status, &body["keep_history"]), (200, &json!(false)), "{body}");
    alice.send_text(&chat, "read me once").await?;
    assert_eq!(texts(&toy.sync(IDLE).await?), ["read me once"]);
    let taken = toy.received(0, 10).await?;
    assert_eq!(taken.len(), 3, "{taken:?}");
    assert!(toy.received(0, 10).await?.is_empty(), "the device forgot what it showed");
    server.stop()?;
    Ok(())
}

/// KeyPackages are used once each; a device that runs low is told so on its live
/// connection and uploads more, and the last-resort one keeps it reachable meanwhile.
async fn a_device_running_low_on_key_packages_tops_up(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, _) = start(&dirs, postgres).await?;
    let family = family(&server, &dirs.outbox(), "k").await?;
    let local = tempfile::tempdir()?;
    let alice = device(&server, local.path(), "alice-phone", &family.alice, &family.id, None).await?;
    let (toy, toy_secret) = paired_device(&server, local.path(), "toy", &family.alice, &family.id, Some(&family.child)).await?;
    let token = device_token(&server, toy_secret, toy.device_id()).await?;
    let available = |token: String| {
        let request = client().map(|c| c.get(server.url("/api/v1/key-packages")).bearer_auth(token));
        async move {
            let body: Value = request?.send().await?.json().await?;
            body["available"].as_i64().ok_or_else(|| Box::<dyn std::error::Error + Send + Sync>::from(format!("{body}")))
        }
    };
    let first = available(token.clone()).await?;
    assert!(first > 10, "a first batch: {first}");
    // Each invitation uses one; the SDK publishes 20 at a time and tops up below 10.
    let mut chats = Vec::new();
    for _ in 0..(first - 9) {
        let chat = alice.create_conversation().await?;
        alice.invite(&chat, toy.device_id()).await?;
        chats.push(chat);
    }
    assert_eq!(available(token.clone()).await?, 9);
    let events = toy.sync(IDLE).await?;
    let joined = events.iter().filter(|e| matches!(e, Event::Joined { .. })).count();
    assert_eq!(joined, chats.len(), "{events:?}");
    assert_eq!(available(token).await?, 29, "told it runs low, the toy uploaded a new batch");
    server.stop()?;
    Ok(())
}

on_both_engines!(
    a_device_running_low_on_key_packages_tops_up,
    a_family_chooses_how_long_undelivered_messages_wait,
    three_devices_converse_and_an_offline_toy_catches_up_in_order,
    a_revoked_device_reads_nothing_sent_after_its_removal,
    the_server_refuses_outsiders_and_stale_commits,
    the_server_stores_no_message_text,
    bad_messages_get_clear_errors,
);
