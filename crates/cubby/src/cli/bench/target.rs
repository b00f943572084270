//! The Cubby server under test: started by the harness from this same binary with a fresh
//! data directory, or one already running that the harness is pointed at.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A Cubby server the harness talks to.
pub struct Target {
    pub base_url: String,
    /// Where the server writes its mail (sign-up and consent links are read from it).
    pub outbox: PathBuf,
    /// The server's process, when known: its CPU and memory are reported.
    pub pid: Option<u32>,
    /// Set when the harness started the server: stopped and deleted on drop.
    own: Option<(Child, tempfile::TempDir)>,
}

impl Target {
    /// Starts `cubby serve` on a free loopback port over plain HTTP, with a fresh data
    /// directory (SQLite, local blob files) or the PostgreSQL database given.
    pub async fn start(database_url: Option<&str>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("cubby-bench-").tempdir()?;
        let port = free_port()?;
        let outbox = dir.path().join("outbox");
        let exe = std::env::current_exe().context("finding the cubby binary")?;
        let mut command = Command::new(exe);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--key-dir")
            .arg(dir.path().join("keys"))
            .arg("--outbox-dir")
            .arg(&outbox)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--log-format", "json", "--log-level", "warn"])
            .env_remove("CUBBY_MASTER_KEY");
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn().context("starting cubby serve")?;
        let pid = child.id();
        let target = Self { base_url: format!("http://127.0.0.1:{port}"), outbox, pid: Some(pid), own: Some((child, dir)) };
        target.wait_until_serving().await?;
        Ok(target)
    }

    /// A server already running at `url`, writing its mail to `outbox`.
    pub async fn existing(url: &str, outbox: &Path, pid: Option<u32>) -> anyhow::Result<Self> {
        let target = Self { base_url: url.trim_end_matches('/').to_owned(), outbox: outbox.to_owned(), pid, own: None };
        target.wait_until_serving().await?;
        Ok(target)
    }

    pub fn address(&self) -> anyhow::Result<SocketAddr> {
        let authority = self.base_url.split("://").nth(1).unwrap_or(&self.base_url);
        let authority = authority.split('/').next().unwrap_or(authority);
        std::net::ToSocketAddrs::to_socket_addrs(authority)?.next().context("the server's address does not resolve")
    }

    async fn wait_until_serving(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(answer) = http.get(format!("{}/healthz", self.base_url)).send().await
                && answer.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the server at {} did not answer /healthz within 30 s{}", self.base_url, self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let Some((_, dir)) = &self.own else { return String::new() };
        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        format!(": {}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some((child, _)) = &mut self.own {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port free at the time of asking.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
