//! `cubby chat`: a terminal client on the device SDK. A parent pairs it as their own
//! device (like a phone app), then lists conversations, sends and reads messages live.
//!
//! Its state lives in one directory (default `~/.cubby-chat`): `device.toml` (server and
//! device id), `device.key` and `storage.key` (private files, mode 0600), and `state.db`
//! (the SDK's MLS state and messages, sealed with the storage key).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use cubby_client::messaging::Body;
use cubby_client::{ConversationId, CubbyClient, DeviceKey, DeviceKind, Event, Messenger};
use cubby_crypto::key_files::{read_key_file, write_private_file};
use cubby_crypto::{SecretKey, random_bytes};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Args, Debug)]
pub struct ChatArgs {
    /// Where this device's state is kept.
    #[arg(long, env = "CUBBY_CHAT_DIR", value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: ChatCommand,
}

#[derive(Subcommand, Debug)]
enum ChatCommand {
    /// Pair this terminal as a guardian's device: shows a code to enter in the portal.
    Pair {
        /// The server, e.g. https://cubby.example (or http://127.0.0.1:8443 on this machine).
        #[arg(long)]
        server: String,
    },
    /// List conversations and their members.
    List,
    /// Start a conversation; prints its id.
    New,
    /// Add a device of the family (by device id) to a conversation.
    Invite { conversation: String, device: String },
    /// Send a text.
    Send {
        conversation: String,
        text: String,
        /// Let it through a child's quiet hours.
        #[arg(long)]
        urgent: bool,
    },
    /// Print new messages and events, then exit.
    Read,
    /// Stay connected: print messages as they come; lines typed are sent to the
    /// conversation given.
    Live { conversation: Option<String> },
}

#[derive(Serialize, Deserialize)]
struct DeviceFile {
    server: String,
    device_id: String,
}

impl ChatArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let dir = match self.dir {
            Some(dir) => dir,
            None => PathBuf::from(std::env::var_os("HOME").context("set --dir or HOME")?).join(".cubby-chat"),
        };
        if let ChatCommand::Pair { server } = &self.command {
            pair(&dir, server).await?;
            return Ok(ExitCode::SUCCESS);
        }
        let messenger = Arc::new(open(&dir).await?);
        match self.command {
            ChatCommand::Pair { .. } => {}
            ChatCommand::List => {
                for conversation in messenger.conversations().await? {
                    println!("{}  epoch {}  members: {}", conversation.id.to_base64(), conversation.epoch, conversation.members.join(", "));
                }
            }
            ChatCommand::New => println!("{}", messenger.create_conversation().await?.to_base64()),
            ChatCommand::Invite { conversation, device } => {
                messenger.invite(&conversation_id(&conversation)?, &device).await?;
                println!("added {device}");
            }
            ChatCommand::Send { conversation, text, urgent } => {
                let id = conversation_id(&conversation)?;
                if urgent {
                    messenger.send_urgent_text(&id, &text).await?;
                } else {
                    messenger.send_text(&id, &text).await?;
                }
            }
            ChatCommand::Read => {
                for event in messenger.sync(Duration::from_secs(1)).await? {
                    print_event(&event);
                }
            }
            ChatCommand::Live { conversation } => live(&messenger, conversation.as_deref()).await?,
        }
        messenger.close().await;
        Ok(ExitCode::SUCCESS)
    }
}

fn conversation_id(text: &str) -> anyhow::Result<ConversationId> {
    ConversationId::from_base64(text.trim()).context("a conversation id is the base64 text `cubby chat list` shows")
}

fn api(server: &str) -> anyhow::Result<CubbyClient> {
    Ok(CubbyClient::new(server)?)
}

async fn pair(dir: &Path, server: &str) -> anyhow::Result<()> {
    if dir.join("device.toml").exists() {
        bail!("{} holds a paired device already; use another --dir", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let api = api(server)?;
    let key = DeviceKey::generate()?;
    let start = api.start_pairing(&key, DeviceKind::App, concat!("cubby-chat ", env!("CARGO_PKG_VERSION"))).await?;
    println!("Enter this code in the Cubby portal (Devices, Pair a device): {}", start.user_code);
    let paired = api.wait_for_pairing(&start, Duration::from_secs(600)).await?;
    write_private_file(&dir.join("device.key"), SecretKey::from_bytes(key.secret_bytes()).to_hex().as_bytes())?;
    write_private_file(&dir.join("storage.key"), SecretKey::from_bytes(random_bytes()?).to_hex().as_bytes())?;
    let file = DeviceFile { server: server.to_owned(), device_id: paired.device_id.clone() };
    std::fs::write(dir.join("device.toml"), toml::to_string(&file)?)?;
    let messenger = open(dir).await?;
    messenger.publish_key_packages().await?;
    messenger.close().await;
    println!("Paired as device {}", paired.device_id);
    Ok(())
}

async fn open(dir: &Path) -> anyhow::Result<Messenger> {
    let text = std::fs::read_to_string(dir.join("device.toml"))
        .with_context(|| format!("no paired device in {}: run `cubby chat pair --server URL` first", dir.display()))?;
    let file: DeviceFile = toml::from_str(&text).context("device.toml is not valid")?;
    let key = read_key_file(&dir.join("device.key"))?;
    let storage = read_key_file(&dir.join("storage.key"))?;
    let key = DeviceKey::from_secret_bytes(*key.expose());
    Ok(Messenger::open(&dir.join("state.db"), *storage.expose(), api(&file.server)?, key, &file.device_id).await?)
}

fn print_event(event: &Event) {
    match event {
        Event::Message { conversation, sender, envelope } => match &envelope.body {
            Body::Text { text } => println!("[{}] {sender}: {text}", short(conversation)),
            Body::Photo { .. } => println!("[{}] {sender}: (a photo)", short(conversation)),
            Body::Voice { duration_ms, .. } => println!("[{}] {sender}: (a voice clip, {} s)", short(conversation), duration_ms / 1000),
            Body::Unsupported => println!("[{}] {sender}: (a kind of message this version cannot show)", short(conversation)),
        },
        Event::Joined { conversation } => println!("joined conversation {}", conversation.to_base64()),
        Event::MembersChanged { conversation, members } => println!("[{}] members: {}", short(conversation), members.join(", ")),
        Event::Removed { conversation } => println!("removed from conversation {}", conversation.to_base64()),
        Event::Unreadable { conversation, reason } => println!("[{}] (unreadable message: {reason})", short(conversation)),
        Event::WipeRequested => println!("the family asked this device to erase its data: delete the chat directory"),
    }
}

fn short(conversation: &ConversationId) -> String {
    conversation.to_base64().chars().take(8).collect()
}

async fn live(messenger: &Arc<Messenger>, conversation: Option<&str>) -> anyhow::Result<()> {
    let conversation = conversation.map(conversation_id).transpose()?;
    let mut events = messenger.listen();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Ok(event)) => print_event(&event),
                Some(Err(error)) => bail!("{error}"),
                None => return Ok(()),
            },
            line = lines.next_line() => match (line?, &conversation) {
                (None, _) => return Ok(()),
                (Some(line), Some(id)) if !line.trim().is_empty() => { messenger.send_text(id, line.trim()).await?; }
                (Some(_), None) => eprintln!("(read-only: give a conversation id to send)"),
                (Some(_), Some(_)) => {}
            },
        }
    }
}
