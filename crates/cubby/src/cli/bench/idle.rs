//! Scenario (c): idle authenticated device connections, and what each costs the server in
//! memory (the growth of its resident set divided by the connections).

use std::time::Duration;

use anyhow::Context;

use super::cubby_ws::{Socket, connect};
use super::process::resident_bytes;
use super::provision::Toy;
use super::report::Metric;
use super::target::Target;

/// Connections opened at once.
const CONNECTING_AT_ONCE: usize = 64;
/// Let the server's allocator and tasks settle before reading its memory.
const SETTLE: Duration = Duration::from_secs(2);
/// After connecting, longer than the server's poll interval (5 s), so that what the server
/// keeps after the connections' first polls is counted too (at 5,000 toys, 1.3 KB more
/// each than 2 s after connecting).
const SETTLE_CONNECTED: Duration = Duration::from_secs(8);

pub async fn measure(target: &Target, toys: &[Toy], progress: &indicatif::ProgressBar) -> anyhow::Result<Vec<Metric>> {
    let pid = target.pid.context("the idle scenario reads the server's memory: let the harness start it, or give --server-pid")?;
    let server = target.address()?;
    tokio::time::sleep(SETTLE).await;
    let before = resident_bytes(pid).context("reading the server's memory")?;
    let mut sockets: Vec<Socket> = Vec::with_capacity(toys.len());
    for chunk in toys.chunks(CONNECTING_AT_ONCE) {
        let mut tasks = tokio::task::JoinSet::new();
        for toy in chunk {
            let toy = toy.clone();
            tasks.spawn(async move { connect(server, &toy).await });
        }
        while let Some(socket) = tasks.join_next().await {
            sockets.push(socket??);
            progress.inc(1);
        }
    }
    tokio::time::sleep(SETTLE_CONNECTED).await;
    let after = resident_bytes(pid).context("reading the server's memory")?;
    let count = sockets.len().max(1) as f64;
    let metrics = vec![
        Metric::new("connections", sockets.len() as f64, "conns"),
        Metric::new("per connection", after.saturating_sub(before) as f64 / count, "B"),
        Metric::new("server RSS", after as f64 / (1024.0 * 1024.0), "MiB"),
    ];
    drop(sockets);
    Ok(metrics)
}
