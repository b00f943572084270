//! A device's live connection (`/api/v1/ws`) and what guardians do to devices: a revoked
//! toy's open connection is closed within a second (within a poll interval when it is
//! connected to another node, or at once if it sends) and it cannot connect again; a toy flagged as lost is told
//! to wipe itself when it connects; a message stored through another node reaches an open
//! connection within a poll interval.

use std::time::{Duration, Instant};

use crate::common::api::{self, Session};
use crate::common::devices::{device_token, paired_device_at};
use crate::common::socket::{next_frame_of, open_socket};
use crate::common::{Dirs, Fallible, Server, TestResult, client};
use cubby_client::{CubbyClient, DeviceKey, DeviceKind, PairingPoll};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Toy {
    guardian: Session,
    family: String,
    device_id: String,
    token: String,
}

async fn paired_toy(server: &Server, dirs: &Dirs) -> Fallible<Toy> {
    let guardian = api::guardian(server, &dirs.outbox(), "parent@example.org", "correct horse battery staple").await?;
    let family = api::family(server, &guardian, "The Family").await?;
    api::consent(server, &dirs.outbox(), &guardian, &family).await?;
    let child = api::child(server, &guardian, &family, "Sam", "6_8").await?;
    let toy = CubbyClient::with_http_client(&server.base_url, client()?);
    let key = DeviceKey::generate()?;
    let start = toy.start_pairing(&key, DeviceKind::Toy, "toy 1.0").await?;
    let body = json!({"user_code": start.user_code, "family_id": family, "child_id": child, "name": "Bear"});
    let (status, answer) = api::post(server, "/api/v1/pairing/approve", Some(&guardian.token), body).await?;
    if status != 200 {
        return Err(format!("approval answered {status}: {answer}").into());
    }
    let PairingPoll::Paired(paired) = toy.poll_pairing(&start.device_code).await? else {
        return Err("not paired".into());
    };
    let session = toy.authenticate(&key, &paired.device_id).await?;
    Ok(Toy { guardian, family, device_id: paired.device_id, token: session.access_token.clone() })
}

async fn connect(server: &Server, token: &str) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let url = server.base_url.replacen("http://", "ws://", 1) + "/api/v1/ws";
    let mut request = url.into_client_request()?;
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().map_err(|_| {
        tokio_tungstenite::tungstenite::Error::Url(tokio_tungstenite::tungstenite::error::UrlError::EmptyHostName)
    })?);
    Ok(tokio_tungstenite::connect_async(request).await?.0)
}

async fn start(dirs: &Dirs, postgres: bool) -> Fallible<Server> {
    if postgres {
        Ok(Server::start(&dirs.args(Some(&cubby_store::testing::fresh_postgres_database().await?)))?)
    } else {
        Ok(Server::start(&dirs.args(None))?)
    }
}

async fn a_revoked_toys_open_connection_closes_within_a_second(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let toy = paired_toy(&server, &dirs).await?;
    let mut socket = connect(&server, &toy.token).await?;

    revoke(&server, &toy).await?;
    closed_as_revoked(&mut socket, Duration::from_secs(1)).await?;

    // It cannot come back: neither the live connection nor any request.
    match connect(&server, &toy.token).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 401),
        other => return Err(format!("a revoked device connected again: {:?}", other.map(|_| ())).into()),
    }
    server.stop()?;
    Ok(())
}

/// A signed-in device asking for the live connection without a WebSocket upgrade gets a
/// clear refusal, not a hang or a 500.
#[tokio::test]
async fn a_request_that_is_not_a_websocket_upgrade_is_refused_with_426() -> TestResult {
    let dirs = Dirs::new()?;
    let server = Server::start(&dirs.args(None))?;
    let toy = paired_toy(&server, &dirs).await?;
    let plain = client()?.get(server.url("/api/v1/ws")).bearer_auth(&toy.token).send().await?;
    assert_eq!(plain.status().as_u16(), 426);
    let body: Value = plain.json().await?;
    assert_eq!(body["error"]["code"], "upgrade_required", "{body}");
    // The right headers but the wrong protocol version.
    let old = client()?
        .get(server.url("/api/v1/ws"))
        .bearer_auth(&toy.token)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "8")
        .send()
        .await?;
    assert_eq!(old.status().as_u16(), 426);
    server.stop()?;
    Ok(())
}

/// The toy's guardian revokes it through `server`'s API.
async fn revoke(server: &Server, toy: &Toy) -> TestResult {
    let path = format!("/api/v1/families/{}/devices/{}", toy.family, toy.device_id);
    let response = client()?.delete(server.url(&path)).bearer_auth(&toy.guardian.token).send().await?;
    assert_eq!(response.status().as_u16(), 204);
    Ok(())
}

/// Closes as revoked (4001) within `within`, or fails.
async fn closed_as_revoked(socket: &mut Socket, within: Duration) -> TestResult {
    let started = Instant::now();
    let close = tokio::time::timeout(within, async {
        while let Some(frame) = socket.next().await {
            if let Message::Close(frame) = frame? {
                return Ok::<_, tokio_tungstenite::tungstenite::Error>(frame.map(|f| u16::from(f.code)));
            }
        }
        Ok(None)
    })
    .await
    .map_err(|_| format!("still open {within:?} after the revocation"))??;
    assert_eq!(close, Some(4001), "closed as revoked, {:?} after the revocation", started.elapsed());
    Ok(())
}

/// Two nodes on one fresh PostgreSQL database, each with a data directory of its own (one
/// process per directory) and the same keys; the first node's directories come first.
async fn two_nodes() -> Fallible<(Dirs, Dirs, Server, Server)> {
    let dirs = Dirs::new()?;
    let database = cubby_store::testing::fresh_postgres_database().await?;
    let first = Server::start(&dirs.args(Some(&database)))?;
    let elsewhere = Dirs::new()?;
    let second = Server::start(&[
        "--data-dir".to_owned(),
        elsewhere.data().display().to_string(),
        "--key-dir".to_owned(),
        dirs.keys().display().to_string(),
        "--database-url".to_owned(),
        database,
    ])?;
    Ok((dirs, elsewhere, first, second))
}

/// Two nodes on one PostgreSQL database: the toy is connected to one, its guardian revokes
/// it through the other. The news reaches the first node through the database, within
/// its poll interval (5 s).
#[tokio::test]
async fn a_toy_revoked_through_another_node_is_closed_within_a_poll() -> TestResult {
    let (dirs, _elsewhere, first, second) = two_nodes().await?;
    let toy = paired_toy(&first, &dirs).await?;
    let mut socket = connect(&first, &toy.token).await?;

    revoke(&second, &toy).await?;
    closed_as_revoked(&mut socket, Duration::from_secs(8)).await?;
    first.stop()?;
    second.stop()?;
    Ok(())
}

/// The same, but the toy sends before the first node's poll has seen the revocation: the
/// connection reads the device's row again at its first send, so the send is not looked at
/// (no answer to it) and the connection closes as revoked at once.
#[tokio::test]
async fn a_toy_revoked_through_another_node_cannot_send_before_the_poll() -> TestResult {
    let (dirs, _elsewhere, first, second) = two_nodes().await?;
    let toy = paired_toy(&first, &dirs).await?;
    let mut socket = connect(&first, &toy.token).await?;

    revoke(&second, &toy).await?;
    let send = json!({"type": "send", "ref": 1, "message": "AAAA"});
    futures_util::SinkExt::send(&mut socket, Message::text(send.to_string())).await?;
    let started = Instant::now();
    let close = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(frame) = socket.next().await {
            match frame? {
                Message::Close(frame) => return Ok(frame.map(|f| u16::from(f.code))),
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(text.as_str())?;
                    if frame["ref"] == 1 {
                        return Err(format!("the revoked toy's send was answered: {frame}").into());
                    }
                }
                _ => {}
            }
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(None)
    })
    .await
    .map_err(|_| "still open 2 s after the revoked toy's send")??;
    assert_eq!(close, Some(4001), "closed as revoked, {:?} after the send", started.elapsed());
    first.stop()?;
    second.stop()?;
    Ok(())
}

/// Two nodes on one PostgreSQL database: the toy is connected to one, and a message for it
/// is stored through the other, whose writer cannot hand it to the toy's connection. The
/// first node's polls have the connection read its queue again within the poll interval.
#[tokio::test]
async fn a_message_stored_through_another_node_arrives_within_a_poll() -> TestResult {
    let (dirs, _elsewhere, first, second) = two_nodes().await?;
    let guardian = api::guardian(&first, &dirs.outbox(), "parent@example.org", "correct horse battery staple").await?;
    let family = api::family(&first, &guardian, "The Family").await?;
    api::consent(&first, &dirs.outbox(), &guardian, &family).await?;
    let child = api::child(&first, &guardian, &family, "Sam", "6_8").await?;
    let local = tempfile::tempdir()?;
    let (phone, _) = paired_device_at(&first, &second.base_url, local.path(), "phone", &guardian, &family, None).await?;
    let (toy, toy_secret) = paired_device_at(&first, &first.base_url, local.path(), "toy", &guardian, &family, Some(&child)).await?;
    let mut socket = open_socket(&first, &device_token(&first, toy_secret, toy.device_id()).await?).await?;

    // Past the first node's first pass of polls (which has every connection read its
    // queue), so that a later pass must find what the second node stores.
    tokio::time::sleep(Duration::from_secs(6)).await;
    // The invitation's Welcome is stored by the second node, for the toy on the first.
    let chat = phone.create_conversation().await?;
    phone.invite(&chat, toy.device_id()).await?;
    let welcome = next_frame_of(&mut socket, "message").await?;
    assert_eq!(welcome["kind"].as_str(), Some("welcome"), "{welcome}");
    first.stop()?;
    second.stop()?;
    Ok(())
}

async fn a_lost_toy_is_told_to_wipe_when_it_connects(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let toy = paired_toy(&server, &dirs).await?;
    let path = format!("/api/v1/families/{}/devices/{}/wipe", toy.family, toy.device_id);
    let (status, _) = api::post(&server, &path, Some(&toy.guardian.token), json!({})).await?;
    assert_eq!(status, 204);
    let mut socket = connect(&server, &toy.token).await?;
    let first = tokio::time::timeout(Duration::from_secs(5), socket.next()).await?.ok_or("closed")??;
    let Message::Text(text) = first else { return Err(format!("expected a text frame, got {first:?}").into()) };
    let frame: Value = serde_json::from_str(text.as_str())?;
    assert_eq!(frame["type"], "wipe");
    server.stop()?;
    Ok(())
}

on_both_engines!(a_revoked_toys_open_connection_closes_within_a_second, a_lost_toy_is_told_to_wipe_when_it_connects);
