//! Starts Debian's Mosquitto for the side-by-side comparison: a private broker per bench,
//! on a free loopback port, with its own persistence directory, so nothing on the machine
//! (a system Mosquitto, a previous run's database) changes what is measured.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tempfile::TempDir;

/// Where Debian installs the broker.
const DEFAULT_BINARY: &str = "/usr/sbin/mosquitto";

/// Overrides [`DEFAULT_BINARY`], for machines that keep Mosquitto elsewhere.
const BINARY_ENV: &str = "CUBBY_BENCH_MOSQUITTO";

/// The broker's configuration in one line, for the report. It must say what
/// [`config_text`] writes: persistence on, everything else Mosquitto 2.0's defaults.
pub const SETTINGS: &str = "Mosquitto, plain TCP on loopback, allow_anonymous true, persistence true \
(autosave_interval 1800 s, so no write per message), max_inflight_messages 20, \
max_queued_messages 1000 (defaults otherwise)";

/// How long the broker gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How often to look whether it listens yet.
const START_POLL: Duration = Duration::from_millis(20);

/// Lines of the broker's log quoted when it fails to start.
const LOG_TAIL_LINES: usize = 20;

/// A running Mosquitto, killed when dropped.
pub struct Mosquitto {
    /// Where clients connect.
    pub address: SocketAddr,
    /// The broker's process, for its CPU time.
    pub pid: u32,
    child: Child,
    /// Holds the configuration, the log and the persistence database; removed after the
    /// broker is killed (fields drop after [`Drop::drop`] has run).
    dir: TempDir,
}

impl Mosquitto {
    /// Starts a broker and returns once it accepts TCP connections.
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("cubby-bench-mosquitto-").tempdir().context("making Mosquitto's directory")?;
        let port = free_port()?;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(&config, config_text(port, dir.path())).context("writing Mosquitto's configuration")?;
        let log = File::create(log_path(dir.path())).context("creating Mosquitto's log")?;
        let binary = binary();
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("sharing Mosquitto's log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut broker = Self { address, pid: child.id(), child, dir };
        broker.wait_until_listening()?;
        Ok(broker)
    }

    /// Polls until a connection succeeds; fails early if the broker exits.
    fn wait_until_listening(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("watching Mosquitto")? {
                anyhow::bail!("Mosquitto exited ({status}) before listening; its log ends:\n{}", self.log_tail());
            }
            if TcpStream::connect_timeout(&self.address, START_POLL * 10).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "Mosquitto did not listen on {} within {:?}; its log ends:\n{}",
                    self.address,
                    START_TIMEOUT,
                    self.log_tail()
                );
            }
            std::thread::sleep(START_POLL);
        }
    }

    /// The last lines of the broker's own output, to explain a failure.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(log_path(self.dir.path())).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        // Killing an already exited child fails harmlessly; wait reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the broker's binary is there, so the bench can skip the comparison without it.
pub fn available() -> bool {
    binary().is_file()
}

fn binary() -> PathBuf {
    std::env::var_os(BINARY_ENV).map_or_else(|| PathBuf::from(DEFAULT_BINARY), PathBuf::from)
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("mosquitto.log")
}

/// A port nobody listens on right now: the kernel picks it, and it is released at once
/// for the broker (another process could take it in between, which is unlikely enough).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The configuration file: what [`SETTINGS`] describes. The defaults are spelled out so the
/// comparison does not change if Debian's ever do. `user root` keeps a broker started by root
/// from switching to the `mosquitto` user, which could not write into our temporary
/// directory; started by anyone else, the broker ignores it.
fn config_text(port: u16, dir: &Path) -> String {
    format!(
        "listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         persistence true\n\
         persistence_location {}/\n\
         autosave_interval 1800\n\
         max_inflight_messages 20\n\
         max_queued_messages 1000\n\
         user root\n",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_listens_and_stops() -> anyhow::Result<()> {
        let broker = Mosquitto::start()?;
        let pid = broker.pid;
        assert!(TcpStream::connect(broker.address).is_ok());
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(broker);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        Ok(())
    }
}
