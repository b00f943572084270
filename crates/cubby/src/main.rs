//! `cubby`: the server (`cubby serve`) and the operator's tools (`cubby admin …`).

mod bootstrap;
mod cli;
mod logging;
mod settings;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // One TLS provider for the whole process (HTTPS and PostgreSQL alike).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // A panic's message may hold request data: log where it happened, never what it said.
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        tracing::error!(%location, "panic");
    }));
    let cli = cli::Cli::parse();
    match cli.run().await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("cubby: {error:#}");
            ExitCode::FAILURE
        }
    }
}
