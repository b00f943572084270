//! Drives the real `cubby` binary: start it on fresh directories, talk to it over HTTP,
//! stop it with a signal, run its admin commands.

pub mod api;
pub mod chromium;
pub mod content;
pub mod devices;
pub mod media;
pub mod portal;
pub mod socket;

/// Expands scenarios `async fn NAME(postgres: bool) -> TestResult` into one test per
/// engine: `sqlite::NAME` and `postgres::NAME` (a fresh database each).
#[allow(unused_macros)] // not every test binary runs on both engines
macro_rules! on_both_engines {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $scenario() -> super::TestResult { super::$scenario(false).await } )* }
        mod postgres { $( #[tokio::test] async fn $scenario() -> super::TestResult { super::$scenario(true).await } )* }
    };
}

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
pub type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub const BIN: &str = env!("CARGO_BIN_EXE_cubby");

/// A data directory and a key directory side by side, as an operator would have them.
pub struct Dirs {
    pub root: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Fallible<Self> {
        Ok(Self { root: tempfile::tempdir()? })
    }

    pub fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub fn keys(&self) -> PathBuf {
        self.root.path().join("keys")
    }

    pub fn outbox(&self) -> PathBuf {
        self.root.path().join("outbox")
    }

    pub fn database_url(&self) -> String {
        format!("sqlite://{}", self.data().join("cubby.db").display())
    }

    /// `--data-dir … --key-dir …`, plus a database URL when given.
    pub fn args(&self, database_url: Option<&str>) -> Vec<String> {
        let mut args =
            vec!["--data-dir".to_owned(), self.data().display().to_string(), "--key-dir".to_owned(), self.keys().display().to_string()];
        if let Some(url) = database_url {
            args.extend(["--database-url".to_owned(), url.to_owned()]);
        }
        args
    }
}

/// A running `cubby serve`.
pub struct Server {
    child: Child,
    pub base_url: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `cubby serve ARGS --listen 127.0.0.1:0` and waits until it listens.
    pub fn start(args: &[String]) -> Fallible<Self> {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[String], env: &[(&str, &str)]) -> Fallible<Self> {
        let mut command = Command::new(BIN);
        command.arg("serve").args(args);
        if !args.iter().any(|a| a == "--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        // Mail goes to an outbox beside the data directory, never into the test's cwd.
        let data_dir = args.iter().position(|a| a == "--data-dir").and_then(|i| args.get(i + 1));
        if let (Some(data_dir), false) = (data_dir, args.iter().any(|a| a == "--outbox-dir")) {
            let outbox = Path::new(data_dir).parent().unwrap_or(Path::new(".")).join("outbox");
            command.arg("--outbox-dir").arg(outbox);
        }
        command.args(["--log-format", "json"]).env_remove("CUBBY_MASTER_KEY");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut lines) = sink.lock() {
                    lines.push(line);
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(address) = find_listening(&logs) {
                return Ok(Self { child, base_url: address, logs });
            }
            if let Some(status) = child.try_wait()? {
                return Err(format!("cubby serve exited with {status}: {}", join(&logs)).into());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("cubby serve did not start: {}", join(&logs)).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn logs(&self) -> String {
        join(&self.logs)
    }

    /// SIGTERM, then wait for the process to finish its graceful shutdown.
    pub fn stop(mut self) -> Fallible<(ExitStatus, String)> {
        signal(self.child.id(), "TERM")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                // Let the reader thread drain the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Ok((status, join(&self.logs)));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err("cubby serve did not stop within 30 s of SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_listening(logs: &Mutex<Vec<String>>) -> Option<String> {
    let lines = logs.lock().ok()?;
    lines.iter().find_map(|line| {
        let start = line.find("listening on ")? + "listening on ".len();
        let rest = &line[start..];
        let end = rest.find(['"', ' ']).unwrap_or(rest.len());
        Some(rest[..end].to_owned())
    })
}

fn join(logs: &Mutex<Vec<String>>) -> String {
    logs.lock().map(|lines| lines.join("\n")).unwrap_or_default()
}

pub fn signal(pid: u32, name: &str) -> Fallible<()> {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status()?;
    if !status.success() {
        return Err(format!("kill -{name} {pid} failed").into());
    }
    Ok(())
}

/// Runs `cubby ARGS` to completion.
pub fn cubby(args: &[String]) -> Fallible<Output> {
    Ok(Command::new(BIN).args(args).env_remove("CUBBY_MASTER_KEY").stdin(Stdio::null()).output()?)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn strings(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

/// An HTTP client that accepts the self-signed certificate of a test server.
pub fn client() -> Fallible<reqwest::Client> {
    Ok(reqwest::Client::builder().danger_accept_invalid_certs(true).timeout(Duration::from_secs(10)).build()?)
}

/// Opens the vault on a stopped server's directories, as the server itself would.
pub async fn open_vault(dirs: &Dirs, database_url: Option<&str>) -> Fallible<cubby_server::Vault> {
    let keys = cubby_crypto::key_files::KeyDir::open(&dirs.keys(), &dirs.data())?;
    let keyring = keys.load_keyring(&cubby_crypto::key_files::MasterKeySource::KeyDir)?;
    let url = database_url.map_or_else(|| dirs.database_url(), ToOwned::to_owned);
    let store = cubby_store::connect(&url).await?;
    Ok(cubby_server::Vault::open(store, keyring).await?)
}

pub fn file_contains(path: &Path, needle: &[u8]) -> bool {
    std::fs::read(path).map(|bytes| bytes.windows(needle.len()).any(|w| w == needle)).unwrap_or(false)
}
