//! `cubby`: the server (`cubby serve`) and the operator's tools (`cubby admin …`).

mod bootstrap;
mod cli;
mod logging;
mod settings;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's allocator: a server holding tens of thousands of toys keeps
/// a few small allocations per toy alive among the short-lived ones of every request, and
/// glibc kept more memory resident around them; mimalloc is also faster on the message
/// path. Single runs: 19,000 idle toys 4.4 -> 3.5 KB each, the relay 92k -> 125k msg/s.
/// Built without transparent huge pages (the `no_thp` feature, in the workspace's
/// Cargo.toml): with them, a 2 MiB page became resident for the first small allocation in
/// it, 14 MiB of a relaying server's 68 MiB, and the relay was no faster (A/B runs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
