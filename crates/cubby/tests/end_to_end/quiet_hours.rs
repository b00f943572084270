//! Quiet hours and daily limits, end to end with real MLS clients on both engines: during
//! a child's quiet hours the toy receives a guardian's urgent message and nothing else;
//! what was held arrives once the window is over; a toy past its daily limit is refused.
//! (The window arithmetic itself — midnight, weekdays, daylight saving, the release time —
//! is tested with explicit clocks in cubby_core::quiet_hours.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::api::{self, Session};
use crate::common::devices::{device, device_token, paired_device_at, texts};
use crate::common::socket::{next_frame_of, next_frame_within, open_socket};
use crate::common::{Dirs, Fallible, Server, TestResult, client};
use cubby_client::{ConversationId, Messenger};
use serde_json::{Value, json};

const IDLE: Duration = Duration::from_millis(700);

/// `HH:MM` in UTC, `minutes` from now.
fn utc_time(minutes: i64) -> Fallible<String> {
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    let minute_of_day = ((now / 60 + minutes) % 1440 + 1440) % 1440;
    Ok(format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60))
}

async fn put_quiet_hours(server: &Server, guardian: &Session, family: &str, child: &str, body: Value) -> Fallible<(u16, Value)> {
    let response = client()?
        .put(server.url(&format!("/api/v1/families/{family}/children/{child}/quiet-hours")))
        .bearer_auth(&guardian.token)
        .json(&body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A family with a child, a guardian's phone and the child's toy, in one conversation.
struct Household {
    _dirs: Dirs,
    _local: tempfile::TempDir,
    server: Server,
    guardian: Session,
    family: String,
    child: String,
    phone: Messenger,
    toy: Messenger,
    /// The toy's key, to open a raw socket as the toy.
    toy_secret: [u8; 32],
    chat: ConversationId,
}

async fn household(postgres: bool) -> Fallible<Household> {
    let dirs = Dirs::new()?;
    let server = if postgres {
        Server::start(&dirs.args(Some(&cubby_store::testing::fresh_postgres_database().await?)))?
    } else {
        Server::start(&dirs.args(None))?
    };
    let guardian = api::guardian(&server, &dirs.outbox(), "parent@example.org", "correct horse battery staple").await?;
    let family = api::family(&server, &guardian, "The Family").await?;
    api::consent(&server, &dirs.outbox(), &guardian, &family).await?;
    let child = api::child(&server, &guardian, &family, "Sam", "6_8").await?;
    let local = tempfile::tempdir()?;
    let phone = device(&server, local.path(), "phone", &guardian, &family, None).await?;
    let (toy, toy_secret) = paired_device_at(&server, &server.base_url, local.path(), "toy", &guardian, &family, Some(&child)).await?;
    let chat = phone.create_conversation().await?;
    phone.invite(&chat, toy.device_id()).await?;
    toy.sync(IDLE).await?;
    Ok(Household { _dirs: dirs, _local: local, server, guardian, family, child, phone, toy, toy_secret, chat })
}

async fn quiet_hours_hold_all_but_urgent_messages_until_the_window_ends(postgres: bool) -> TestResult {
    let Household { _dirs, _local, server, guardian, family, child, phone, toy, toy_secret, chat } = household(postgres).await?;

    // Bedtime now: from an hour ago to an hour from now.
    let (start, end) = (utc_time(-60)?, utc_time(60)?);
    let bedtime = json!({"time_zone": "UTC", "windows": [{"start": start, "end": end}]});
    let (status, body) = put_quiet_hours(&server, &guardian, &family, &child, bedtime.clone()).await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api::get(&server, &format!("/api/v1/families/{family}/children/{child}/quiet-hours"), Some(&guardian.token)).await?;
    assert_eq!((status, &body["windows"][0]["start"]), (200, &Value::from(start.as_str())), "{body}");

    phone.send_text(&chat, "time to tidy your room").await?;
    phone.send_urgent_text(&chat, "grandma is here, come downstairs").await?;
    assert_eq!(texts(&toy.sync(IDLE).await?), ["grandma is here, come downstairs"], "only the urgent one passes");
    assert!(texts(&toy.sync(IDLE).await?).is_empty(), "the rest is still held");

    // A connection that stays open holds the message back too...
    let mut socket = open_socket(&server, &device_token(&server, toy_secret, toy.device_id()).await?).await?;
    let early = tokio::time::timeout(Duration::from_secs(1), next_frame_of(&mut socket, "message")).await;
    assert!(early.is_err(), "pushed during quiet hours: {early:?}");

    // The window is over (a schedule whose bedtime ended a minute ago): the held message arrives,
    // on the open connection within a poll (its window would have lasted another hour), and
    // to the toy's next sync.
    let over = json!({"time_zone": "UTC", "windows": [{"start": utc_time(-120)?, "end": utc_time(-1)?}]});
    let (status, body) = put_quiet_hours(&server, &guardian, &family, &child, over).await?;
    assert_eq!(status, 200, "{body}");
    let released = next_frame_of(&mut socket, "message").await?;
    assert_eq!(released["kind"].as_str(), Some("application"), "{released}");
    drop(socket);
    assert_eq!(texts(&toy.sync(IDLE).await?), ["time to tidy your room"]);

    // Bad schedules are refused with the field named.
    for (bad, field) in [
        (json!({"time_zone": "Mars/Olympus", "windows": []}), "time_zone"),
        (json!({"time_zone": "UTC", "windows": [{"start": "24:00", "end": "07:00"}]}), "start"),
        (json!({"time_zone": "UTC", "windows": [], "daily_limit": 0}), "daily_limit"),
    ] {
        let (status, body) = put_quiet_hours(&server, &guardian, &family, &child, bad).await?;
        assert_eq!(status, 422, "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains(field)), "{body}");
    }
    server.stop()?;
    Ok(())
}

/// What a window held goes out on a connection that stayed open when the window ends, by
/// the connection's own timer: nothing about the schedule changes. (On SQLite the queue is
/// read again only every minute, on PostgreSQL every 5 s; the release comes within a few
/// seconds of the window's end, not a poll later.)
async fn a_held_message_goes_out_on_an_open_connection_when_the_window_ends(postgres: bool) -> TestResult {
    let Household { _dirs, _local, server, guardian, family, child, phone, toy, toy_secret, chat } = household(postgres).await?;

    // A window that ends at a minute's turn, at least 20 s from now (the setup's time).
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let to_next_minute = 60 - now.as_secs() % 60;
    let minutes = if to_next_minute < 20 { 2 } else { 1 };
    let ends_at = UNIX_EPOCH + Duration::from_secs(now.as_secs() - now.as_secs() % 60 + 60 * minutes);
    let bedtime = json!({"time_zone": "UTC", "windows": [{"start": utc_time(-60)?, "end": utc_time(i64::try_from(minutes)?)?}]});
    let (status, body) = put_quiet_hours(&server, &guardian, &family, &child, bedtime).await?;
    assert_eq!(status, 200, "{body}");
    let mut socket = open_socket(&server, &device_token(&server, toy_secret, toy.device_id()).await?).await?;
    phone.send_text(&chat, "breakfast is ready").await?;

    let until_end = ends_at.duration_since(SystemTime::now())?;
    let early = next_frame_within(&mut socket, &["message"], until_end.saturating_sub(Duration::from_secs(1))).await;
    assert!(early.as_ref().is_err_and(|e| e.to_string().starts_with("no message frame")), "pushed during quiet hours: {early:?}");
    let released = next_frame_of(&mut socket, "message").await?;
    let late = SystemTime::now().duration_since(ends_at).unwrap_or_default();
    assert!(late < Duration::from_secs(4), "released {late:?} after the window ended: not by the connection's timer");
    assert_eq!(released["kind"].as_str(), Some("application"), "{released}");
    drop(socket);
    assert_eq!(texts(&toy.sync(IDLE).await?), ["breakfast is ready"]);
    server.stop()?;
    Ok(())
}

async fn a_toy_past_its_daily_limit_is_refused(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = if postgres {
        Server::start(&dirs.args(Some(&cubby_store::testing::fresh_postgres_database().await?)))?
    } else {
        Server::start(&dirs.args(None))?
    };
    let guardian = api::guardian(&server, &dirs.outbox(), "parent@example.org", "correct horse battery staple").await?;
    let family = api::family(&server, &guardian, "The Family").await?;
    api::consent(&server, &dirs.outbox(), &guardian, &family).await?;
    let child = api::child(&server, &guardian, &family, "Sam", "6_8").await?;
    let local = tempfile::tempdir()?;
    let phone = device(&server, local.path(), "phone", &guardian, &family, None).await?;
    let toy = device(&server, local.path(), "toy", &guardian, &family, Some(&child)).await?;
    let chat = phone.create_conversation().await?;
    phone.invite(&chat, toy.device_id()).await?;
    toy.sync(IDLE).await?;

    let limit = json!({"time_zone": "Europe/Paris", "windows": [], "daily_limit": 2});
    let (status, body) = put_quiet_hours(&server, &guardian, &family, &child, limit).await?;
    assert_eq!(status, 200, "{body}");
    toy.send_text(&chat, "one").await?;
    toy.send_text(&chat, "two").await?;
    match toy.send_text(&chat, "three").await {
        Err(error) => assert_eq!(error.code(), Some("daily_limit_reached"), "{error}"),
        Ok(_) => return Err("a third message went past a limit of two".into()),
    }
    // The guardian's phone is not limited, and received exactly what passed.
    phone.send_text(&chat, "bedtime").await?;
    phone.send_text(&chat, "sleep well").await?;
    phone.send_text(&chat, "love you").await?;
    assert_eq!(texts(&phone.sync(IDLE).await?), ["one", "two"]);
    server.stop()?;
    Ok(())
}

on_both_engines!(
    quiet_hours_hold_all_but_urgent_messages_until_the_window_ends,
    a_held_message_goes_out_on_an_open_connection_when_the_window_ends,
    a_toy_past_its_daily_limit_is_refused
);
