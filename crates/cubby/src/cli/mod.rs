//! The command line.

mod admin;
mod bench;
mod chat;
mod publish;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "cubby", version, about = "Cubby: the secure backend for connected children's toys")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server.
    Serve(Box<crate::settings::ServeArgs>),
    /// Operator's tools: key rotation, audit log verification.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// A terminal messaging client: pair as a guardian's device, then talk to the family.
    Chat(chat::ChatArgs),
    /// Sign a content package with the publisher's key and upload it (resumable).
    Publish(publish::PublishArgs),
    /// Load-test a server (started fresh, or given by URL) with simulated toys, side by side
    /// with Mosquitto; prints medians of several runs.
    Bench(Box<bench::BenchArgs>),
    /// A publisher's own tools: make a signing key.
    #[command(subcommand)]
    Publisher(publish::PublisherCommand),
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Admin(command) => command.run().await,
            Command::Chat(args) => args.run().await,
            Command::Publish(args) => args.run().await,
            Command::Publisher(command) => command.run(),
            Command::Bench(args) => args.run().await,
        }
    }
}
