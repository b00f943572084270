//! Contacts between families, checked by the server on every group change, with real MLS
//! clients against the real `cubby` binary, on SQLite and PostgreSQL: the Messenger Kids
//! 2019 case and its variants, adults invited by email, child-to-child contacts that need a
//! guardian of each child, removal and blocking repairing conversations, supervised
//! children, and reports.

use crate::common;

use std::path::Path;
use std::time::Duration;

use crate::common::api::{self, Session};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use crate::common::devices::{device, device_token, paired_device_at, texts};
use crate::common::socket::{next_frame_of, open_socket};
use crate::common::{Dirs, Fallible, Server, TestResult};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as Frame;
use cubby_client::{ConversationId, Event, Messenger};
use serde_json::{Value, json};

const IDLE: Duration = Duration::from_millis(700);
const PASSWORD: &str = "correct horse battery staple";

async fn start(dirs: &Dirs, postgres: bool) -> Fallible<Server> {
    if postgres {
        let url = cubby_store::testing::fresh_postgres_database().await?;
        Ok(Server::start(&dirs.args(Some(&url)))?)
    } else {
        Ok(Server::start(&dirs.args(None))?)
    }
}

/// A family with one guardian and one child (and the child's toy, once paired).
struct Family {
    guardian: Session,
    id: String,
    child: String,
}

async fn family(server: &Server, outbox: &Path, tag: &str, nickname: &str) -> Fallible<Family> {
    let guardian = api::guardian(server, outbox, &format!("parent-{tag}@example.org"), PASSWORD).await?;
    let id = api::family(server, &guardian, &format!("Family {tag}")).await?;
    api::consent(server, outbox, &guardian, &id).await?;
    let child = api::child(server, &guardian, &id, nickname, "6_8").await?;
    Ok(Family { guardian, id, child })
}

fn ok(status: u16, body: &Value, what: &str) -> Fallible<()> {
    if (200..300).contains(&status) { Ok(()) } else { Err(format!("{what} answered {status}: {body}").into()) }
}

fn contacts_path(family: &Family) -> String {
    format!("/api/v1/families/{}/children/{}/contacts", family.id, family.child)
}

async fn contacts(server: &Server, family: &Family) -> Fallible<Vec<Value>> {
    let (status, body) = api::get(server, &contacts_path(family), Some(&family.guardian.token)).await?;
    ok(status, &body, "the contact list")?;
    Ok(body.as_array().cloned().unwrap_or_default())
}

/// `a`'s guardian makes a code, `b`'s guardian redeems it: `b`'s approval. Returns `a`'s
/// side of the contact, waiting for `a`'s guardian.
async fn request_contact(server: &Server, a: &Family, b: &Family) -> Fallible<String> {
    let path = format!("/api/v1/families/{}/children/{}/contact-codes", a.id, a.child);
    let (status, body) = api::post(server, &path, Some(&a.guardian.token), json!({})).await?;
    ok(status, &body, "a contact code")?;
    let code = body["code"].as_str().ok_or("no code")?.to_owned();
    let (status, body) =
        api::post(server, &format!("{}/redeem", contacts_path(b)), Some(&b.guardian.token), json!({"code": code})).await?;
    ok(status, &body, "redeeming the code")?;
    assert_eq!(body["status"], "waiting_for_them", "{body}");
    let pending = contacts(server, a).await?;
    let request = pending.iter().find(|c| c["status"] == "needs_your_approval").ok_or("no request to approve")?;
    Ok(request["id"].as_str().ok_or("no id")?.to_owned())
}

async fn approve(server: &Server, family: &Family, contact: &str) -> Fallible<()> {
    let path = format!("{}/{contact}/approve", contacts_path(family));
    let (status, body) = api::post(server, &path, Some(&family.guardian.token), json!({})).await?;
    ok(status, &body, "the approval")?;
    assert_eq!(body["status"], "approved", "{body}");
    Ok(())
}

/// A contact approved by a guardian of each child.
async fn friends(server: &Server, a: &Family, b: &Family) -> Fallible<String> {
    let contact = request_contact(server, a, b).await?;
    approve(server, a, &contact).await?;
    Ok(contact)
}

async fn joined(member: &Messenger, chat: &ConversationId) -> Fallible<()> {
    let events = member.sync(IDLE).await?;
    if events.contains(&Event::Joined { conversation: chat.clone() }) {
        Ok(())
    } else {
        Err(format!("{} did not join: {events:?}", member.device_id()).into())
    }
}

fn refused(result: Result<(), cubby_client::ClientError>, code: &str) -> Fallible<()> {
    match result {
        Err(error) if error.code() == Some(code) => Ok(()),
        Err(other) => Err(format!("expected {code}, got {other:?}").into()),
        Ok(()) => Err(format!("expected {code}, but it was accepted").into()),
    }
}

async fn members(messenger: &Messenger, chat: &ConversationId) -> Fallible<Vec<String>> {
    let mut found = messenger.conversations().await?.into_iter().find(|c| &c.id == chat).ok_or("no such conversation")?.members;
    found.sort();
    Ok(found)
}

/// Messenger Kids 2019: A's approved friend B creates a group and adds B's approved friend
/// C, whom A's guardians never approved. Also the other order (C in the group first, then
/// A added), and the same refused to a guardian's own device.
async fn a_friend_of_a_friend_is_refused(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let (a, b, c) = (family(&server, &outbox, "a", "Ava").await?, family(&server, &outbox, "b", "Ben").await?, family(&server, &outbox, "c", "Cleo").await?);
    friends(&server, &a, &b).await?;
    friends(&server, &b, &c).await?;
    let local = tempfile::tempdir()?;
    let ava = device(&server, local.path(), "ava-toy", &a.guardian, &a.id, Some(&a.child)).await?;
    let (ben, ben_secret) = paired_device_at(&server, &server.base_url, local.path(), "ben-toy", &b.guardian, &b.id, Some(&b.child)).await?;
    let cleo = device(&server, local.path(), "cleo-toy", &c.guardian, &c.child_family(), Some(&c.child)).await?;

    // B's group with A, then C added: refused, and the group is as it was.
    let chat = ben.create_conversation().await?;
    ben.invite(&chat, ava.device_id()).await?;
    joined(&ava, &chat).await?;
    refused(ben.invite(&chat, cleo.device_id()).await, "membership_refused")?;
    assert_eq!(members(&ben, &chat).await?, sorted([ava.device_id(), ben.device_id()]));
    assert!(cleo.sync(IDLE).await?.is_empty(), "C heard of the conversation");
    ben.send_text(&chat, "still just us").await?;
    assert_eq!(texts(&ava.sync(IDLE).await?), ["still just us"]);

    // The other order: B's group with C, then A added: refused.
    let other = ben.create_conversation().await?;
    ben.invite(&other, cleo.device_id()).await?;
    joined(&cleo, &other).await?;
    refused(ben.invite(&other, ava.device_id()).await, "membership_refused")?;
    assert!(ava.sync(IDLE).await?.is_empty(), "A heard of the conversation");

    // A group made by C: the server does not hand C a KeyPackage of A's toy, and one that
    // B passes on to C (claimed as B's friend) is refused in C's commit.
    let third = cleo.create_conversation().await?;
    cleo.invite(&third, ben.device_id()).await?;
    refused(cleo.invite(&third, ava.device_id()).await, "not_found")?;
    let ben_token = device_token(&server, ben_secret, ben.device_id()).await?;
    let (status, body) = api::post(&server, &format!("/api/v1/devices/{}/key-package", ava.device_id()), Some(&ben_token), json!({})).await?;
    ok(status, &body, "B claiming A's KeyPackage")?;
    let package = BASE64.decode(body["key_package"].as_str().ok_or("no package")?)?;
    refused(cleo.add_with_key_package(&third, &package, Some(ava.device_id())).await, "membership_refused")?;
    assert_eq!(members(&cleo, &third).await?, sorted([ben.device_id(), cleo.device_id()]));
    server.stop()?;
    Ok(())
}

impl Family {
    fn child_family(&self) -> String {
        self.id.clone()
    }
}

fn sorted<const N: usize>(ids: [&str; N]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    ids.sort();
    ids
}

/// A child-to-child contact counts only once a guardian of each child approved it.
async fn a_contact_needs_a_guardian_of_each_child(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let (a, b) = (family(&server, &outbox, "a", "Ava").await?, family(&server, &outbox, "b", "Ben").await?);
    let local = tempfile::tempdir()?;
    let ava = device(&server, local.path(), "ava-toy", &a.guardian, &a.id, Some(&a.child)).await?;
    let ben = device(&server, local.path(), "ben-toy", &b.guardian, &b.id, Some(&b.child)).await?;
    let chat = ben.create_conversation().await?;
    // No contact at all: the KeyPackage is not even handed out.
    refused(ben.invite(&chat, ava.device_id()).await, "not_found")?;
    // B's guardian redeemed A's code (B's approval), A's guardian has not approved yet.
    let request = request_contact(&server, &a, &b).await?;
    refused(ben.invite(&chat, ava.device_id()).await, "membership_refused")?;
    approve(&server, &a, &request).await?;
    ben.invite(&chat, ava.device_id()).await?;
    joined(&ava, &chat).await?;
    ava.send_text(&chat, "hi Ben").await?;
    assert_eq!(texts(&ben.sync(IDLE).await?), ["hi Ben"]);
    // A code works once; a family cannot befriend its own child; a guessed code is refused.
    let path = format!("/api/v1/families/{}/children/{}/contact-codes", a.id, a.child);
    let (_, body) = api::post(&server, &path, Some(&a.guardian.token), json!({})).await?;
    let code = body["code"].as_str().ok_or("no code")?.to_owned();
    let (status, body) = api::post(&server, &format!("{}/redeem", contacts_path(&a)), Some(&a.guardian.token), json!({"code": code})).await?;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_token")), "{body}");
    let (status, _) = api::post(&server, &format!("{}/redeem", contacts_path(&b)), Some(&b.guardian.token), json!({"code": "guess"})).await?;
    assert_eq!(status, 400);
    // Another family's guardian cannot list, approve or remove this child's contacts.
    let (status, _) = api::get(&server, &contacts_path(&a), Some(&b.guardian.token)).await?;
    assert_eq!(status, 404);
    server.stop()?;
    Ok(())
}

/// A guardian removes a contact while the children share a conversation: the server
/// proposes the removal, the next member commits it, and the friend cannot be added back.
async fn a_removed_contact_leaves_and_cannot_come_back(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let (a, b) = (family(&server, &outbox, "a", "Ava").await?, family(&server, &outbox, "b", "Ben").await?);
    let contact = friends(&server, &a, &b).await?;
    let local = tempfile::tempdir()?;
    let (ava, ava_secret) = paired_device_at(&server, &server.base_url, local.path(), "ava-toy", &a.guardian, &a.id, Some(&a.child)).await?;
    let (ben, ben_secret) =
        paired_device_at(&server, &server.base_url, local.path(), "ben-toy", &b.guardian, &b.id, Some(&b.child)).await?;
    let (mum, mum_secret) = paired_device_at(&server, &server.base_url, local.path(), "mum-phone", &a.guardian, &a.id, None).await?;
    let chat = ava.create_conversation().await?;
    ava.invite(&chat, mum.device_id()).await?;
    ava.invite(&chat, ben.device_id()).await?;
    joined(&ben, &chat).await?;
    joined(&mum, &chat).await?;
    ben.send_text(&chat, "before").await?;

    // Ben's toy also holds a live connection and sends over it: the copy of "before" that
    // Mum's connection is handed (left unacknowledged, so her SDK still gets it).
    let mut mums_socket = open_socket(&server, &device_token(&server, mum_secret, mum.device_id()).await?).await?;
    let before = next_frame_of(&mut mums_socket, "message").await?;
    drop(mums_socket);
    let mut bens_socket = open_socket(&server, &device_token(&server, ben_secret, ben.device_id()).await?).await?;
    let again = json!({"type": "send", "ref": 1, "message": before["data"]});
    bens_socket.send(Frame::Text(again.to_string().into())).await?;
    let sent = next_frame_of(&mut bens_socket, "sent").await?;
    assert_eq!(sent["ref"], 1, "{sent}");
    assert_eq!(texts(&ava.sync(IDLE).await?), ["before"], "the copy is unreadable, not a second message");

    // A KeyPackage of Ben's toy, claimed while they were friends and kept.
    let ava_token = device_token(&server, ava_secret, ava.device_id()).await?;
    let (status, body) = api::post(&server, &format!("/api/v1/devices/{}/key-package", ben.device_id()), Some(&ava_token), json!({})).await?;
    ok(status, &body, "claiming Ben's KeyPackage")?;
    let kept = BASE64.decode(body["key_package"].as_str().ok_or("no package")?)?;

    let (status, body) = api::delete(&server, &format!("{}/{contact}", contacts_path(&a)), Some(&a.guardian.token)).await?;
    assert_eq!(status, 204, "{body}");
    // Ben's toy may no longer send into the conversation, even before the commit.
    let sent = ben.send_text(&chat, "are you there?").await;
    assert!(sent.is_ok(), "the SDK keeps a refused message out of its outbox: {sent:?}");
    // Nor over the connection it already had, though its sends there were accepted a
    // moment ago (what a connection knows of a group's members is read again after a change).
    let again = json!({"type": "send", "ref": 2, "message": before["data"]});
    bens_socket.send(Frame::Text(again.to_string().into())).await?;
    let refused_frame = next_frame_of(&mut bens_socket, "error").await?;
    assert_eq!((refused_frame["ref"].as_u64(), refused_frame["code"].as_str()), (Some(2), Some("not_found")), "{refused_frame}");
    drop(bens_socket);
    // The next member to send commits the server's proposal first.
    mum.sync(IDLE).await?;
    mum.send_text(&chat, "after").await?;
    let events = ben.sync(IDLE).await?;
    assert!(events.contains(&Event::Removed { conversation: chat.clone() }), "{events:?}");
    assert!(!texts(&events).contains(&"after".to_owned()), "{events:?}");
    let seen = texts(&ava.sync(IDLE).await?);
    assert_eq!(seen, ["after"], "the removed friend's late message was not relayed");
    assert_eq!(members(&mum, &chat).await?, sorted([ava.device_id(), mum.device_id()]));

    // Re-adding: no KeyPackage is handed out, and one kept from before is refused.
    refused(ava.invite(&chat, ben.device_id()).await, "not_found")?;
    refused(ava.add_with_key_package(&chat, &kept, Some(ben.device_id())).await, "membership_refused")?;
    assert_eq!(members(&ava, &chat).await?, sorted([ava.device_id(), mum.device_id()]));
    server.stop()?;
    Ok(())
}

/// An adult invited by email (a grandparent) talks with the child from their own phone;
/// nobody else's adult may come in; a blocked adult is removed.
async fn an_invited_adult_talks_with_the_child_until_blocked(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let a = family(&server, &outbox, "a", "Ava").await?;
    let grandma = api::guardian(&server, &outbox, "grandma@example.org", PASSWORD).await?;
    let grandma_family = api::family(&server, &grandma, "Grandma's").await?;
    let stranger = api::guardian(&server, &outbox, "stranger@example.org", PASSWORD).await?;
    let stranger_family = api::family(&server, &stranger, "Stranger's").await?;
    let local = tempfile::tempdir()?;
    let ava = device(&server, local.path(), "ava-toy", &a.guardian, &a.id, Some(&a.child)).await?;
    let granny_phone = device(&server, local.path(), "grandma-phone", &grandma, &grandma_family, None).await?;
    let stranger_phone = device(&server, local.path(), "stranger-phone", &stranger, &stranger_family, None).await?;

    let chat = ava.create_conversation().await?;
    refused(ava.invite(&chat, granny_phone.device_id()).await, "not_found")?;
    let (status, body) = api::post(&server, &format!("{}/invite", contacts_path(&a)), Some(&a.guardian.token), json!({"email": "grandma@example.org"})).await?;
    ok(status, &body, "the invitation")?;
    let token = api::outbox_token(&outbox, "grandma@example.org", "invites you")?;
    // Only the invited address may accept.
    let (status, _) = api::post(&server, "/api/v1/contact-invites/accept", Some(&stranger.token), json!({"token": token})).await?;
    assert_eq!(status, 400);
    let (status, body) = api::post(&server, "/api/v1/contact-invites/accept", Some(&grandma.token), json!({"token": token})).await?;
    ok(status, &body, "the acceptance")?;
    assert_eq!(body["child"], "Ava");
    assert_eq!(body["devices"], json!([ava.device_id()]));

    ava.invite(&chat, granny_phone.device_id()).await?;
    joined(&granny_phone, &chat).await?;
    granny_phone.send_text(&chat, "hello sweetheart").await?;
    assert_eq!(texts(&ava.sync(IDLE).await?), ["hello sweetheart"]);
    let listed = granny_phone.contacts().await?;
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].devices.clone()), ("Ava", vec![ava.device_id().to_owned()]));
    // Grandma's phone cannot bring in another adult the child's guardians never approved.
    refused(granny_phone.invite(&chat, stranger_phone.device_id()).await, "not_found")?;

    // Ava blocks grandma from the toy: she leaves the conversation.
    let own = ava.contacts().await?;
    let contact = own[0].contact_id.clone().ok_or("no contact id")?;
    ava.block(&contact).await?;
    let listed = contacts(&server, &a).await?;
    assert_eq!(listed[0]["status"], "blocked", "{listed:?}");
    ava.sync(IDLE).await?;
    ava.send_text(&chat, "bye").await?;
    let events = granny_phone.sync(IDLE).await?;
    assert!(events.contains(&Event::Removed { conversation: chat.clone() }), "{events:?}");
    refused(ava.invite(&chat, granny_phone.device_id()).await, "not_found")?;
    server.stop()?;
    Ok(())
}

/// A supervised child's conversations include its guardians' devices: a grandparent who
/// invites the toy brings them along (the SDK adds them in the same commit), the server
/// refuses the toy alone, and everyone sees the conversation marked supervised. Turning
/// supervision on later brings the guardians into existing conversations.
async fn a_supervised_childs_conversations_include_its_guardians(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let a = family(&server, &outbox, "a", "Ava").await?;
    let grandma = api::guardian(&server, &outbox, "grandma@example.org", PASSWORD).await?;
    let grandma_family = api::family(&server, &grandma, "Grandma's").await?;
    api::adult_contact(&server, &outbox, &a.guardian, &a.id, &a.child, &grandma, "grandma@example.org").await?;
    let local = tempfile::tempdir()?;
    let ava = device(&server, local.path(), "ava-toy", &a.guardian, &a.id, Some(&a.child)).await?;
    let mum = device(&server, local.path(), "mum-phone", &a.guardian, &a.id, None).await?;
    let (granny, granny_secret) = paired_device_at(&server, &server.base_url, local.path(), "grandma-phone", &grandma, &grandma_family, None).await?;

    // A conversation from before supervision.
    let before = granny.create_conversation().await?;
    granny.invite(&before, ava.device_id()).await?;
    joined(&ava, &before).await?;
    assert!(!granny.is_supervised(&before).await?);

    let supervision = format!("/api/v1/families/{}/children/{}/supervision", a.id, a.child);
    let (status, body) = api::put(&server, &supervision, Some(&a.guardian.token), json!({"supervised": true})).await?;
    ok(status, &body, "supervision")?;

    // The toy alone is refused: its guardians' devices must come in the same commit.
    let alone = granny.create_conversation().await?;
    let granny_token = device_token(&server, granny_secret, granny.device_id()).await?;
    let (status, body) = api::post(&server, &format!("/api/v1/devices/{}/key-package", ava.device_id()), Some(&granny_token), json!({})).await?;
    ok(status, &body, "claiming the toy's KeyPackage")?;
    assert_eq!(body["join_with"], json!([mum.device_id()]), "{body}");
    let package = BASE64.decode(body["key_package"].as_str().ok_or("no package")?)?;
    refused(granny.add_with_key_package(&alone, &package, Some(ava.device_id())).await, "supervision_required")?;
    assert_eq!(members(&granny, &alone).await?, vec![granny.device_id().to_owned()]);

    // A new conversation: the toy comes with mum's phone.
    let chat = granny.create_conversation().await?;
    granny.invite(&chat, ava.device_id()).await?;
    joined(&ava, &chat).await?;
    joined(&mum, &chat).await?;
    granny.send_text(&chat, "a secret?").await?;
    assert_eq!(texts(&mum.sync(IDLE).await?), ["a secret?"]);
    assert_eq!(texts(&ava.sync(IDLE).await?), ["a secret?"]);
    for member in [&granny, &ava, &mum] {
        assert!(member.is_supervised(&chat).await?, "{} is told", member.device_id());
    }

    // The existing conversation: the server proposed adding mum's phone; the next member
    // to send commits it, so mum reads what follows.
    granny.sync(IDLE).await?;
    granny.send_text(&before, "still there?").await?;
    let seen = texts(&mum.sync(IDLE).await?);
    assert!(mum.conversations().await?.iter().any(|c| c.id == before), "mum joined the conversation from before supervision");
    assert_eq!(seen, ["still there?"]);
    assert!(granny.is_supervised(&before).await?);

    // A guardian's new device joins the supervised child's conversations once it has
    // KeyPackages to be added with (proposed by the server, committed by the next sender).
    let tablet = device(&server, local.path(), "mum-tablet", &a.guardian, &a.id, None).await?;
    granny.sync(IDLE).await?;
    granny.send_text(&chat, "hello tablet").await?;
    assert_eq!(texts(&tablet.sync(IDLE).await?), ["hello tablet"]);
    assert!(tablet.conversations().await?.iter().any(|c| c.id == chat));
    server.stop()?;
    Ok(())
}

/// A child reports a message: its guardians read it, nobody else; they can escalate it.
async fn a_report_reaches_the_childs_guardians_only(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let db = if postgres { Some(cubby_store::testing::fresh_postgres_database().await?) } else { None };
    let server = Server::start(&dirs.args(db.as_deref()))?;
    let outbox = dirs.outbox();
    let (a, b) = (family(&server, &outbox, "a", "Ava").await?, family(&server, &outbox, "b", "Ben").await?);
    friends(&server, &a, &b).await?;
    let local = tempfile::tempdir()?;
    let ava = device(&server, local.path(), "ava-toy", &a.guardian, &a.id, Some(&a.child)).await?;
    let ben = device(&server, local.path(), "ben-toy", &b.guardian, &b.id, Some(&b.child)).await?;
    let chat = ben.create_conversation().await?;
    ben.invite(&chat, ava.device_id()).await?;
    joined(&ava, &chat).await?;
    ben.send_text(&chat, "you are silly").await?;
    let events = ava.sync(IDLE).await?;
    let (sender, envelope) = events
        .iter()
        .find_map(|e| match e {
            Event::Message { sender, envelope, .. } => Some((sender.clone(), envelope.clone())),
            _ => None,
        })
        .ok_or("no message")?;
    let report = ava.report(&chat, &sender, &envelope, "this made me sad").await?;

    let reports_path = format!("/api/v1/families/{}/reports", a.id);
    let (status, body) = api::get(&server, &reports_path, Some(&a.guardian.token)).await?;
    ok(status, &body, "the reports")?;
    assert_eq!(body[0]["content"], "you are silly");
    assert_eq!(body[0]["note"], "this made me sad");
    assert_eq!(body[0]["sender_device"], ben.device_id());
    let (status, _) = api::get(&server, &reports_path, Some(&b.guardian.token)).await?;
    assert_eq!(status, 404, "the other family does not see it");
    let (status, _) = api::get(&server, &format!("/api/v1/families/{}/reports", b.id), Some(&b.guardian.token)).await?;
    assert_eq!(status, 200);
    let escalate = format!("{reports_path}/{report}/escalate");
    let (status, _) = api::post(&server, &escalate, Some(&b.guardian.token), json!({})).await?;
    assert_eq!(status, 404);
    let (status, body) = api::post(&server, &escalate, Some(&a.guardian.token), json!({})).await?;
    assert_eq!(status, 204, "{body}");
    let (_, body) = api::get(&server, &reports_path, Some(&a.guardian.token)).await?;
    assert!(body[0]["escalated_at"].is_i64(), "{body}");
    // Both are in the family's export.
    let (status, export) = api::get(&server, &format!("/api/v1/families/{}/export", a.id), Some(&a.guardian.token)).await?;
    assert_eq!(status, 200);
    assert_eq!(export["reports"][0]["content"], "you are silly", "{export}");
    assert_eq!(export["contacts"][0]["contacts"][0]["name"], "Ben", "{export}");
    assert_eq!(export["contacts"][0]["contacts"][0]["status"], "approved", "{export}");
    // A second report, not escalated, stays with the guardians.
    ava.report(&chat, &sender, &envelope, "not for the operator").await?;
    server.stop()?;

    // The operator sees the escalated report, and only it.
    let mut args = vec!["admin".to_owned(), "reports".to_owned()];
    args.extend(dirs.args(db.as_deref()));
    let output = common::cubby(&args)?;
    let shown = common::text(&output.stdout);
    assert!(output.status.success() && shown.contains("you are silly") && shown.contains(&report), "{shown}");
    assert!(!shown.contains("not for the operator"), "{shown}");

    // Reports go with the child.
    let server = Server::start(&dirs.args(db.as_deref()))?;
    let (status, _) = api::delete(&server, &format!("/api/v1/families/{}/children/{}", a.id, a.child), Some(&a.guardian.token)).await?;
    assert_eq!(status, 204);
    let (_, body) = api::get(&server, &reports_path, Some(&a.guardian.token)).await?;
    assert_eq!(body, json!([]));
    server.stop()?;
    Ok(())
}

on_both_engines!(
    a_friend_of_a_friend_is_refused,
    a_contact_needs_a_guardian_of_each_child,
    a_removed_contact_leaves_and_cannot_come_back,
    an_invited_adult_talks_with_the_child_until_blocked,
    a_supervised_childs_conversations_include_its_guardians,
    a_report_reaches_the_childs_guardians_only,
);
