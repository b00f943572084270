//! `cubby chat`, the terminal client, end to end: it pairs as a guardian's device through
//! the real pairing flow, starts a conversation with a child's toy (an SDK client), sends
//! to it and reads its answer.

use std::process::Stdio;
use std::time::Duration;

use crate::common::api;
use crate::common::{BIN, Dirs, Fallible, Server, TestResult, client, text};
use cubby_client::messaging::Body;
use cubby_client::{CubbyClient, DeviceKey, DeviceKind, Event, Messenger, PairingPoll};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

async fn chat(dir: &std::path::Path, args: &[&str]) -> Fallible<String> {
    let output = tokio::process::Command::new(BIN).arg("chat").arg("--dir").arg(dir).args(args).output().await?;
    if !output.status.success() {
        return Err(format!("cubby chat {args:?} failed: {}", text(&output.stderr)).into());
    }
    Ok(text(&output.stdout))
}

async fn a_parent_talks_to_a_toy_from_the_terminal(postgres: bool) -> TestResult {
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
    let approve = |code: String, child: Option<String>| {
        let body = json!({"user_code": code, "family_id": family, "child_id": child, "name": "device"});
        api::post(&server, "/api/v1/pairing/approve", Some(&guardian.token), body)
    };

    // The terminal pairs: it shows a code, the parent enters it, the terminal finishes.
    let chat_dir = dirs.root.path().join("chat");
    let mut pairing = tokio::process::Command::new(BIN)
        .args(["chat", "--dir"])
        .arg(&chat_dir)
        .args(["pair", "--server", &server.base_url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = pairing.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await??.ok_or("no output")?;
    let code = first.rsplit(' ').next().ok_or("no code shown")?.to_owned();
    let (status, body) = approve(code, None).await?;
    assert_eq!(status, 200, "{body}");
    let status = tokio::time::timeout(Duration::from_secs(60), pairing.wait()).await??;
    assert!(status.success(), "pairing ended with {status}");
    assert!(lines.next_line().await?.is_some_and(|l| l.starts_with("Paired as device ")));

    // A toy, on the SDK.
    let toy_api = CubbyClient::with_http_client(&server.base_url, client()?);
    let key = DeviceKey::generate()?;
    let start = toy_api.start_pairing(&key, DeviceKind::Toy, "toy 1.0").await?;
    let (status, body) = approve(start.user_code.clone(), Some(child)).await?;
    assert_eq!(status, 200, "{body}");
    let PairingPoll::Paired(paired) = toy_api.poll_pairing(&start.device_code).await? else {
        return Err("the toy is not paired".into());
    };
    let state = tempfile::tempdir()?;
    let toy = Messenger::open(&state.path().join("toy.db"), [3; 32], toy_api, key, &paired.device_id).await?;
    toy.publish_key_packages().await?;

    let conversation = chat(&chat_dir, &["new"]).await?.trim().to_owned();
    chat(&chat_dir, &["invite", &conversation, &paired.device_id]).await?;
    chat(&chat_dir, &["send", &conversation, "Dinner is ready, come down!"]).await?;
    let events = toy.sync(Duration::from_millis(700)).await?;
    let received: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message { envelope, .. } => match &envelope.body {
                Body::Text { text } => Some(text.as_str()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(received, ["Dinner is ready, come down!"], "{events:?}");
    let chat_id = cubby_client::ConversationId::from_base64(&conversation).ok_or("not a conversation id")?;
    toy.send_text(&chat_id, "Coming!").await?;
    let read = chat(&chat_dir, &["read"]).await?;
    assert!(read.contains(&format!("{}: Coming!", paired.device_id)), "{read}");
    let listed = chat(&chat_dir, &["list"]).await?;
    assert!(listed.contains(&conversation) && listed.contains(&paired.device_id), "{listed}");
    server.stop()?;
    Ok(())
}

on_both_engines!(a_parent_talks_to_a_toy_from_the_terminal);
