//! Rules the server keeps on messages whatever a device's SDK asks, end to end with real
//! MLS clients against the real `cubby` binary, on SQLite and PostgreSQL.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::api::{self, Session};
use crate::common::devices::{device, texts};
use crate::common::{Dirs, Fallible, Server, TestResult};
use cubby_client::{ConversationId, Event, Messenger};
use serde_json::{Value, json};

const IDLE: Duration = Duration::from_millis(700);
const PASSWORD: &str = "correct horse battery staple";

async fn start(dirs: &Dirs, postgres: bool) -> Fallible<Server> {
    let url = if postgres { Some(cubby_store::testing::fresh_postgres_database().await?) } else { None };
    Server::start(&dirs.args(url.as_deref()))
}

/// `HH:MM` in UTC, `minutes` from now.
fn utc_time(minutes: i64) -> Fallible<String> {
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    let minute_of_day = ((now / 60 + minutes) % 1440 + 1440) % 1440;
    Ok(format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60))
}

async fn set_quiet_hours(server: &Server, guardian: &Session, family: &str, child: &str, schedule: Value) -> TestResult {
    let path = format!("/api/v1/families/{family}/children/{child}/quiet-hours");
    let (status, body) = api::put(server, &path, Some(&guardian.token), schedule).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

async fn joined(member: &Messenger, chat: &ConversationId) -> TestResult {
    let events = member.sync(IDLE).await?;
    assert!(events.contains(&Event::Joined { conversation: chat.clone() }), "{} did not join: {events:?}", member.device_id());
    Ok(())
}

/// Only a guardian's message may be urgent. A toy's SDK can set the flag (a modified toy,
/// or a child who found the button): the server ignores it, so the toy's "urgent" message
/// waits out the recipient's quiet hours like any other, while the guardian's passes.
///
/// One family: Sam, in quiet hours now, and his sister Kim, who is not; each has a toy, in
/// one conversation with their parent's phone. Kim's toy sends Sam an urgent message, then
/// the parent does.
async fn a_toys_urgent_message_waits_out_quiet_hours(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let guardian = api::guardian(&server, &outbox, "parent@example.org", PASSWORD).await?;
    let family = api::family(&server, &guardian, "The Family").await?;
    api::consent(&server, &outbox, &guardian, &family).await?;
    let sam = api::child(&server, &guardian, &family, "Sam", "6_8").await?;
    let kim = api::child(&server, &guardian, &family, "Kim", "9_12").await?;
    let local = tempfile::tempdir()?;
    let phone = device(&server, local.path(), "phone", &guardian, &family, None).await?;
    let sam_toy = device(&server, local.path(), "sam-toy", &guardian, &family, Some(&sam)).await?;
    let kim_toy = device(&server, local.path(), "kim-toy", &guardian, &family, Some(&kim)).await?;
    let chat = phone.create_conversation().await?;
    phone.invite(&chat, sam_toy.device_id()).await?;
    phone.invite(&chat, kim_toy.device_id()).await?;
    joined(&sam_toy, &chat).await?;
    joined(&kim_toy, &chat).await?;

    // Sam's bedtime: from an hour ago to an hour from now.
    let bedtime = json!({"time_zone": "UTC", "windows": [{"start": utc_time(-60)?, "end": utc_time(60)?}]});
    set_quiet_hours(&server, &guardian, &family, &sam, bedtime).await?;

    kim_toy.send_urgent_text(&chat, "come and play, it's urgent!").await?;
    phone.send_urgent_text(&chat, "grandma is here, come downstairs").await?;
    // The toy's message was taken and relayed: the phone, under no quiet hours, has it now.
    assert_eq!(texts(&phone.sync(IDLE).await?), ["come and play, it's urgent!"]);
    // Sam's toy gets the guardian's urgent message, and only that.
    let passed = texts(&sam_toy.sync(IDLE).await?);
    assert_eq!(passed, ["grandma is here, come downstairs"], "a toy's urgent message passed quiet hours");
    assert!(texts(&sam_toy.sync(IDLE).await?).is_empty(), "the toy's message is still held");

    // Bedtime is over (a window that ended a minute ago): the toy's message arrives.
    let over = json!({"time_zone": "UTC", "windows": [{"start": utc_time(-120)?, "end": utc_time(-1)?}]});
    set_quiet_hours(&server, &guardian, &family, &sam, over).await?;
    assert_eq!(texts(&sam_toy.sync(IDLE).await?), ["come and play, it's urgent!"]);
    server.stop()?;
    Ok(())
}

on_both_engines!(a_toys_urgent_message_waits_out_quiet_hours);
