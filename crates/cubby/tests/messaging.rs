//! End-to-end-encrypted messaging with real MLS clients (cubby-client on openmls) against
//! the real `cubby` binary, on SQLite and PostgreSQL: conversations between a guardian's
//! phone, a co-guardian's phone and a child's toy; offline catch-up in order; removal and
//! revocation; what the server refuses; and what it stores.

#[macro_use]
mod common;

use std::path::Path;
use std::time::Duration;

use common::api::{self, Session};
use common::{Dirs, Fallible, Server, TestResult, client};
use cubby_client::messaging::Body;
use cubby_client::{ConversationId, CubbyClient, DeviceKey, DeviceKind, Event, Messenger, PairingPoll};
use serde_json::json;

const IDLE: Duration = Duration::from_millis(700);

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
async fn device(server: &Server, dir: &Path, name: &str, guardian: &Session, family: &str, child: Option<&str>) -> Fallible<Messenger> {
    let api = CubbyClient::with_http_client(&server.base_url, client()?);
    let key = DeviceKey::generate()?;
    let kind = if child.is_some() { DeviceKind::Toy } else { DeviceKind::App };
    let start = api.start_pairing(&key, kind, "test 1.0").await?;
    let body = json!({"user_code": start.user_code, "family_id": family, "child_id": child, "name": name});
    let (status, answer) = api::post(server, "/api/v1/pairing/approve", Some(&guardian.token), body).await?;
    if status != 200 {
        return Err(format!("approval answered {status}: {answer}").into());
    }
    let PairingPoll::Paired(paired) = api.poll_pairing(&start.device_code).await? else {
        return Err("not paired after approval".into());
    };
    let messenger = Messenger::open(&dir.join(format!("{name}.db")), [7; 32], api, key, &paired.device_id).await?;
    messenger.publish_key_packages().await?;
    Ok(messenger)
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { envelope, .. } => match &envelope.body {
                Body::Text { text } => Some(text.clone()),
                Body::Unsupported => None,
            },
            _ => None,
        })
        .collect()
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
    server.stop()?;
    Ok(())
}

on_both_engines!(three_devices_converse_and_an_offline_toy_catches_up_in_order);
