//! `cubby bench`: drives simulated toys against a Cubby server and, side by side in the
//! same run, the same load over MQTT against Mosquitto; reports medians of several runs as
//! a table (or JSON) and can draw latency against offered rate as SVG.
//!
//! Scenarios: durable relay between pairs of toys, fan-out in a family group, idle
//! connections (server memory per connection), media upload/download, guardian sign-ins.

mod cubby_ws;
mod idle;
mod load;
mod logins;
mod media;
mod mosquitto;
mod mqtt;
mod plot;
mod process;
mod provision;
mod report;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use cubby_ws::Group;
use load::Load;
use mosquitto::Mosquitto;
use provision::{Family, Toy, source_address};
use report::{Machine, Report, Row, RunFigures, SweepPoint, System};
use target::Target;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Pairs of toys exchange messages, each acknowledged once durably stored.
    Relay,
    /// One toy sends to a family group; every other member receives.
    Fanout,
    /// Latency against offered rate, for the plot.
    Sweep,
    /// Idle connections: server memory per connection.
    Idle,
    /// Upload and download of encrypted media blobs.
    Media,
    /// Guardians' sign-ins per second (Argon2id).
    Logins,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Scenarios to run, comma-separated. [default: all]
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Benchmark a server already running at this URL instead of starting one.
    #[arg(long, value_name = "URL", requires = "outbox")]
    url: Option<String>,
    /// The running server's --outbox-dir (the harness signs guardians up through mail).
    #[arg(long, value_name = "DIR")]
    outbox: Option<PathBuf>,
    /// The running server's process id, to report its CPU and memory.
    #[arg(long, value_name = "PID", requires = "url")]
    server_pid: Option<u32>,
    /// Start the server on this PostgreSQL database instead of SQLite.
    #[arg(long, value_name = "URL", conflicts_with = "url")]
    database_url: Option<String>,
    /// Skip the side-by-side runs against Mosquitto (run when /usr/sbin/mosquitto exists).
    #[arg(long)]
    no_mosquitto: bool,
    /// Device pairs in the relay scenario.
    #[arg(long, default_value_t = 50)]
    pairs: usize,
    /// Unacknowledged messages each sender may have at once.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Bytes each message's content is padded to before encryption (a short text, padded to
    /// one 256-byte block by default). The MQTT payload is the size of the resulting MLS
    /// ciphertext, so both systems carry the same bytes.
    #[arg(long, default_value_t = 256)]
    payload: usize,
    /// Receivers of the fan-out scenario's sender.
    #[arg(long, default_value_t = 6)]
    receivers: usize,
    /// Offered rate (messages/s) for the fixed-rate latency figure.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Offered rates of the latency sweep.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000.0, 2_000.0, 5_000.0, 10_000.0, 20_000.0, 40_000.0])]
    sweep: Vec<f64>,
    /// Seconds measured per run (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Runs per figure; the report gives their medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Idle connections to open.
    #[arg(long, default_value_t = 19_000)]
    idle_connections: usize,
    /// Media blob size in bytes.
    #[arg(long, default_value_t = 5 << 20)]
    media_size: usize,
    /// Uploads and downloads per run.
    #[arg(long, default_value_t = 10)]
    media_transfers: usize,
    /// Guardians signing in at once.
    #[arg(long, default_value_t = 4)]
    login_workers: usize,
    /// Print the report as JSON on standard output (progress stays on standard error).
    #[arg(long)]
    json: bool,
    /// Also draw latency against offered rate into this SVG file.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
}

impl BenchArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        Bench::new(self).await?.run().await?;
        Ok(ExitCode::SUCCESS)
    }

    fn wants(&self, scenario: Scenario) -> bool {
        self.scenarios.is_empty() || self.scenarios.contains(&scenario)
    }

    fn load(&self, offered_rate: Option<f64>, server_pid: Option<u32>) -> Load {
        Load {
            offered_rate,
            warmup: Duration::from_secs_f64(self.warmup),
            duration: Duration::from_secs_f64(self.duration),
            drain: Duration::from_secs(10),
            server_pid,
        }
    }
}

struct Bench {
    args: BenchArgs,
    target: Target,
    mosquitto: Option<Mosquitto>,
    progress: ProgressBar,
    state_dir: tempfile::TempDir,
    rows: Vec<Row>,
    sweep: Vec<SweepPoint>,
}

impl Bench {
    async fn new(args: BenchArgs) -> anyhow::Result<Self> {
        let progress = ProgressBar::new_spinner();
        progress.set_style(ProgressStyle::with_template("{spinner} {msg} {wide_bar} {pos}/{len} {elapsed}")?);
        progress.enable_steady_tick(Duration::from_millis(200));
        progress.set_message("starting the server");
        let target = match (&args.url, &args.outbox) {
            (Some(url), Some(outbox)) => Target::existing(url, outbox, args.server_pid).await?,
            _ => Target::start(args.database_url.as_deref()).await?,
        };
        let messaging = args.wants(Scenario::Relay) || args.wants(Scenario::Fanout) || args.wants(Scenario::Sweep);
        let mosquitto = if messaging && !args.no_mosquitto {
            if mosquitto::available() {
                Some(Mosquitto::start()?)
            } else {
                progress.println("Mosquitto is not installed (apt install mosquitto): comparing with nothing");
                None
            }
        } else {
            None
        };
        Ok(Self { args, target, mosquitto, progress, state_dir: tempfile::tempdir()?, rows: Vec::new(), sweep: Vec::new() })
    }

    async fn run(mut self) -> anyhow::Result<Report> {
        let mut family = Family::create(&self.target, "bench-0", "correct horse battery staple 0", source_address(0)).await?;
        family.sign_in().await?;
        let family = Arc::new(family);
        let mut next_toy = 0;
        if self.args.wants(Scenario::Relay) || self.args.wants(Scenario::Sweep) || self.args.wants(Scenario::Media) {
            let toys = self.pair(&family, "Relay", &mut next_toy, 2 * self.args.pairs.max(1)).await?;
            let mut groups = self.groups(&toys, 2).await?;
            if self.args.wants(Scenario::Relay) {
                self.relay(&mut groups).await?;
            }
            if self.args.wants(Scenario::Sweep) {
                self.sweep(&mut groups).await?;
            }
            if self.args.wants(Scenario::Media) {
                self.media(&mut groups).await?;
            }
        }
        if self.args.wants(Scenario::Fanout) {
            let toys = self.pair(&family, "Fanout", &mut next_toy, self.args.receivers + 1).await?;
            let mut groups = self.groups(&toys, self.args.receivers + 1).await?;
            let setting = format!("1 → {}, {} in flight", self.args.receivers, self.args.in_flight);
            self.compare("fanout", &setting, &mut groups, self.args.in_flight, None).await?;
        }
        if self.args.wants(Scenario::Idle) {
            let toys = self.pair(&family, "Idle", &mut next_toy, self.args.idle_connections).await?;
            self.progress.set_message("opening idle connections");
            self.progress.set_length(toys.len() as u64);
            self.progress.set_position(0);
            let metrics = idle::measure(&self.target, &toys, &self.progress).await?;
            self.rows.push(Row::of_runs("idle", System::Cubby, format!("{} toys", toys.len()), vec![metrics]));
        }
        if self.args.wants(Scenario::Logins) {
            self.logins().await?;
        }
        self.progress.finish_and_clear();
        let report = Report {
            machine: Machine::describe(),
            runs_per_figure: self.args.runs,
            mosquitto: self.mosquitto.as_ref().map(|_| mosquitto::SETTINGS),
            rows: self.rows,
            sweep: self.sweep,
        };
        if let Some(path) = &self.args.plot {
            plot::latency_svg(&report.sweep, path).with_context(|| format!("drawing {}", path.display()))?;
        }
        if self.args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.table());
        }
        Ok(report)
    }

    async fn pair(&self, family: &Arc<Family>, child: &str, next: &mut usize, count: usize) -> anyhow::Result<Vec<Toy>> {
        self.progress.set_message(format!("pairing {count} toys ({child})"));
        self.progress.set_length(count as u64);
        self.progress.set_position(0);
        let child = family.add_child(child).await?;
        let toys = family.pair_toys(&child, *next, count, &self.progress).await?;
        *next += count;
        Ok(toys)
    }

    async fn groups(&self, toys: &[Toy], size: usize) -> anyhow::Result<Vec<Group>> {
        self.progress.set_message(format!("making {} groups of {size} with the SDK", toys.len() / size));
        let dir = self.state_dir.path().join(format!("groups-{size}-{}", toys.len()));
        cubby_ws::make_groups(&self.target.base_url, toys, size, self.args.payload, &dir).await
    }

    async fn relay(&mut self, groups: &mut [Group]) -> anyhow::Result<()> {
        let (pairs, in_flight) = (groups.len(), self.args.in_flight);
        self.compare("relay", &format!("{pairs} pairs, {in_flight} in flight"), groups, in_flight, None).await?;
        self.compare("relay", &format!("{pairs} pairs, 1 in flight"), groups, 1, None).await?;
        let rate = self.args.rate;
        self.compare("relay", &format!("{pairs} pairs, {rate:.0}/s offered"), groups, in_flight, Some(rate)).await
    }

    /// Runs one setting on Cubby and (if present) Mosquitto, alternating run by run, and
    /// records a row for each.
    async fn compare(
        &mut self,
        scenario: &'static str,
        setting: &str,
        groups: &mut [Group],
        in_flight: usize,
        rate: Option<f64>,
    ) -> anyhow::Result<()> {
        let bytes = groups.first().map_or(self.args.payload, |g| g.ciphertext.len());
        let setting = format!("{setting}, {bytes} B");
        let (mut cubby, mut mqtt) = (Vec::new(), Vec::new());
        for run in 1..=self.args.runs {
            self.progress.set_message(format!("{scenario} ({setting}) run {run}/{}", self.args.runs));
            cubby.push(self.run_cubby(groups, in_flight, rate).await?.metrics());
            if let Some(figures) = self.run_mosquitto(groups, in_flight, rate).await? {
                mqtt.push(figures.metrics());
            }
        }
        self.rows.push(Row::of_runs(scenario, System::Cubby, setting.clone(), cubby));
        if !mqtt.is_empty() {
            self.rows.push(Row::of_runs(scenario, System::Mosquitto, setting, mqtt));
        }
        Ok(())
    }

    async fn run_cubby(&self, groups: &mut [Group], in_flight: usize, rate: Option<f64>) -> anyhow::Result<RunFigures> {
        for group in groups.iter_mut() {
            provision::refresh_tokens(&self.target.base_url, &mut group.members).await?;
        }
        let (streams, connections) = cubby_ws::open_streams(self.target.address()?, groups, in_flight).await?;
        let figures = load::drive(streams, self.args.load(rate, self.target.pid)).await;
        drop(connections);
        figures
    }

    async fn run_mosquitto(&self, groups: &[Group], in_flight: usize, rate: Option<f64>) -> anyhow::Result<Option<RunFigures>> {
        let Some(broker) = &self.mosquitto else { return Ok(None) };
        let receivers = groups.first().map_or(1, |g| g.members.len() - 1);
        let bytes = groups.first().map_or(self.args.payload, |g| g.ciphertext.len());
        let (streams, connections) = mqtt::connect_streams(broker.address, groups.len(), receivers, bytes, in_flight).await?;
        let figures = load::drive(streams, self.args.load(rate, Some(broker.pid))).await;
        drop(connections);
        figures.map(Some)
    }

    async fn sweep(&mut self, groups: &mut [Group]) -> anyhow::Result<()> {
        let rates = self.args.sweep.clone();
        for (n, rate) in rates.iter().enumerate() {
            self.progress.set_message(format!("latency sweep {}/{}: {rate:.0}/s offered", n + 1, rates.len()));
            let figures = self.run_cubby(groups, self.args.in_flight, Some(*rate)).await?;
            self.sweep.push(SweepPoint::of(System::Cubby, *rate, &figures));
            if let Some(figures) = self.run_mosquitto(groups, self.args.in_flight, Some(*rate)).await? {
                self.sweep.push(SweepPoint::of(System::Mosquitto, *rate, &figures));
            }
        }
        Ok(())
    }

    async fn media(&mut self, groups: &mut [Group]) -> anyhow::Result<()> {
        let group = groups.first_mut().context("the media scenario needs a group")?;
        let (mut copies, mut uploads, mut downloads) = (Vec::new(), Vec::new(), Vec::new());
        for run in 1..=self.args.runs {
            self.progress.set_message(format!("media run {run}/{}", self.args.runs));
            provision::refresh_tokens(&self.target.base_url, &mut group.members).await?;
            let [copy, upload, download] =
                media::measure(&self.target.base_url, group, self.args.media_size, self.args.media_transfers).await?;
            copies.push(copy);
            uploads.push(upload);
            downloads.push(download);
        }
        let size = format!("{:.1} MiB", self.args.media_size as f64 / (1024.0 * 1024.0));
        self.rows.push(Row::of_runs("media", System::Machine, format!("loopback file copy, {size}"), copies));
        self.rows.push(Row::of_runs("media", System::Cubby, format!("upload, {size}"), uploads));
        self.rows.push(Row::of_runs("media", System::Cubby, format!("download, {size}"), downloads));
        Ok(())
    }

    async fn logins(&mut self) -> anyhow::Result<()> {
        self.progress.set_message("signing guardians up");
        let mut families = Vec::new();
        for n in 1..=self.args.login_workers.max(1) {
            let family = Family::create(&self.target, &format!("bench-{n}"), &format!("correct horse battery staple {n}"), source_address(60_000 + n)).await?;
            families.push(Arc::new(tokio::sync::Mutex::new(family)));
        }
        let mut runs = Vec::new();
        for run in 1..=self.args.runs {
            self.progress.set_message(format!("sign-ins run {run}/{}", self.args.runs));
            runs.push(logins::measure(&families, Duration::from_secs_f64(self.args.duration)).await?);
        }
        self.rows.push(Row::of_runs("logins", System::Cubby, format!("{} guardians at once", families.len()), runs));
        Ok(())
    }
}
