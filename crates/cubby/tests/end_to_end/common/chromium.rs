//! A real browser for the portal's end-to-end tests: Debian's headless Chromium driven
//! through its chromedriver (WebDriver) with fantoccini. `scripts/test` installs both;
//! a missing browser fails the test rather than skipping it.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use super::Fallible;

/// Where screenshots go: `$CUBBY_TEST_ARTIFACTS`, or `target/test-artifacts` of the
/// workspace (CI keeps that directory).
pub fn artifacts_dir() -> PathBuf {
    std::env::var_os("CUBBY_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts"))
}

fn first_existing(candidates: &[&str]) -> Option<String> {
    candidates.iter().find(|p| Path::new(p).exists()).map(|p| (*p).to_owned())
}

/// A headless Chromium session with its own profile and download directory.
pub struct Chromium {
    pub client: Client,
    driver: Child,
    pub downloads: PathBuf,
    _profile: tempfile::TempDir,
}

impl Chromium {
    pub async fn start() -> Fallible<Self> {
        let driver_bin = std::env::var("CUBBY_TEST_CHROMEDRIVER")
            .ok()
            .or_else(|| first_existing(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]))
            .ok_or("chromedriver is not installed (scripts/test installs Debian's chromium-driver)")?;
        // Debian's /usr/bin/chromium is a wrapper script; the binary itself starts faster.
        let browser_bin = std::env::var("CUBBY_TEST_CHROMIUM")
            .ok()
            .or_else(|| first_existing(&["/usr/lib/chromium/chromium", "/usr/bin/chromium"]))
            .ok_or("chromium is not installed (scripts/test installs Debian's chromium)")?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        // Its own process group, so that the browsers it starts end with it (see `Drop`).
        let driver =
            Command::new(&driver_bin).process_group(0).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        let profile = tempfile::tempdir()?;
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads)?;
        let mut capabilities = Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": browser_bin,
                // The machine has no network: without these Chromium keeps trying to reach
                // Google's hosts. --no-sandbox because CI runs as root.
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().join("profile").display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                },
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::new(connector.clone())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(error) if Instant::now() > deadline => return Err(format!("chromium did not start: {error}").into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Ok(Self { client, driver, downloads, _profile: profile })
    }

    /// Opens a page of `base` (e.g. the server's URL) and returns once it loaded.
    pub async fn open(&self, url: &str) -> Fallible<()> {
        self.client.goto(url).await?;
        Ok(())
    }

    /// The page's address, without the origin.
    pub async fn path(&self) -> Fallible<String> {
        let url = self.client.current_url().await?;
        let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
        Ok(format!("{}{query}", url.path()))
    }

    /// The visible text of the page's `main`.
    pub async fn main_text(&self) -> Fallible<String> {
        Ok(self.client.find(Locator::Css("main")).await?.text().await?)
    }

    /// Types `value` into the field `name` of form `form` (replacing what is there).
    pub async fn fill(&self, form: &str, name: &str, value: &str) -> Fallible<()> {
        let field = self.client.find(Locator::Css(&format!("form#{form} [name=\"{name}\"]"))).await?;
        field.clear().await?;
        field.send_keys(value).await?;
        Ok(())
    }

    /// Chooses the option whose visible text is `label` in select `name` of form `form`.
    pub async fn choose(&self, form: &str, name: &str, label: &str) -> Fallible<()> {
        let select = self.client.find(Locator::Css(&format!("form#{form} select[name=\"{name}\"]"))).await?;
        select.select_by_label(label).await?;
        Ok(())
    }

    /// Ticks the checkbox `name` of form `form`.
    pub async fn tick(&self, form: &str, name: &str) -> Fallible<()> {
        let checkbox = self.client.find(Locator::Css(&format!("form#{form} input[name=\"{name}\"]"))).await?;
        if !checkbox.is_selected().await? {
            checkbox.click().await?;
        }
        Ok(())
    }

    /// Presses form `form`'s submit button and waits for the next page.
    pub async fn submit(&self, form: &str) -> Fallible<()> {
        let button = self.client.find(Locator::Css(&format!("form#{form} button[type=\"submit\"]"))).await?;
        self.next_page(|| async { Ok(button.click().await?) }).await
    }

    /// Does `act` and waits until it loaded another page (the old document goes stale).
    pub async fn next_page<F, Fut>(&self, act: F) -> Fallible<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Fallible<()>>,
    {
        let before = self.client.find(Locator::Css("html")).await?;
        act().await?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while before.tag_name().await.is_ok() {
            if Instant::now() > deadline {
                return Err("no new page was loaded".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Types on the keyboard, into whatever has the focus (`Key::Tab` etc. as characters).
    pub async fn keyboard(&self, keys: &str) -> Fallible<()> {
        let mut actions = KeyActions::new("keyboard".to_owned());
        for key in keys.chars() {
            actions = actions.then(KeyAction::Down { value: key }).then(KeyAction::Up { value: key });
        }
        self.client.perform_actions(actions).await?;
        Ok(())
    }

    /// Presses Tab from the top of the page until the field `name` has the focus, as a
    /// keyboard user would; fails if it is never reached.
    pub async fn tab_to(&self, name: &str) -> Fallible<()> {
        for _ in 0..60 {
            self.keyboard(&Key::Tab.to_string()).await?;
            let focused = self.client.execute("return document.activeElement && document.activeElement.name", vec![]).await?;
            if focused.as_str() == Some(name) {
                return Ok(());
            }
        }
        Err(format!("the field {name} cannot be reached with the Tab key").into())
    }

    /// Saves a PNG of the page at `width`×`height` as `name`-`width`.png in [`artifacts_dir`].
    pub async fn screenshot(&self, name: &str, width: u32, height: u32) -> Fallible<PathBuf> {
        self.client.set_window_size(width, height).await?;
        let png = self.client.screenshot().await?;
        let dir = artifacts_dir().join("portal");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}-{width}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    pub async fn quit(self) -> Fallible<()> {
        self.client.clone().close().await?;
        Ok(())
    }
}

impl Drop for Chromium {
    /// Ends chromedriver and every browser process it started, also when a test failed
    /// half-way (a lone browser would otherwise keep running, and spinning, after the test).
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
