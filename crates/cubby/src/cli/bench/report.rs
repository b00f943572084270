//! What the bench reports: figures per run, medians over runs, the human table and the
//! JSON document.

use std::fmt::Write as _;

use serde::Serialize;

/// Delivery latency percentiles of one run.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

impl Latency {
    /// Percentiles of latencies given in microseconds (sorts them).
    pub fn of(micros: &mut [u32]) -> Self {
        if micros.is_empty() {
            return Self::default();
        }
        micros.sort_unstable();
        let at = |q: f64| {
            let index = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
            f64::from(micros[index]) / 1000.0
        };
        Self { samples: micros.len(), p50_ms: at(0.50), p99_ms: at(0.99), p999_ms: at(0.999) }
    }
}

/// One run of a messaging scenario (relay or fan-out).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RunFigures {
    /// Messages the server confirmed per second over the measured interval.
    pub acknowledged_per_second: f64,
    /// Messages received per second by all receivers over the measured interval.
    pub deliveries_per_second: f64,
    /// Totals over the whole run (warm-up included).
    pub acknowledged: u64,
    pub delivered: u64,
    /// Confirmed messages some receiver never got (counted after the drain wait).
    pub dropped: u64,
    pub latency: Latency,
    /// Percent of one core.
    pub harness_cpu_percent: f64,
    pub server_cpu_percent: Option<f64>,
}

impl RunFigures {
    pub fn metrics(&self) -> Vec<Metric> {
        let mut metrics = vec![
            Metric::new("acknowledged", self.acknowledged_per_second, "msg/s"),
            Metric::new("deliveries", self.deliveries_per_second, "msg/s"),
            Metric::new("dropped", self.dropped as f64, "msgs"),
            Metric::new("p50", self.latency.p50_ms, "ms"),
            Metric::new("p99", self.latency.p99_ms, "ms"),
            Metric::new("p99.9", self.latency.p999_ms, "ms"),
            Metric::new("harness CPU", self.harness_cpu_percent, "%"),
        ];
        if let Some(server) = self.server_cpu_percent {
            metrics.push(Metric::new("server CPU", server, "%"));
        }
        metrics
    }
}

/// One named figure.
#[derive(Clone, Debug, Serialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
}

impl Metric {
    pub fn new(name: &str, value: f64, unit: &'static str) -> Self {
        Self { name: name.to_owned(), value, unit }
    }
}

/// Which server a row measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Cubby,
    Mosquitto,
    /// The machine itself (a baseline such as a loopback file copy).
    Machine,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            Self::Cubby => "cubby",
            Self::Mosquitto => "mosquitto",
            Self::Machine => "machine",
        }
    }
}

/// One scenario on one system at one setting: every run's figures and their medians.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub scenario: &'static str,
    pub system: System,
    pub setting: String,
    pub median: Vec<Metric>,
    pub runs: Vec<Vec<Metric>>,
}

impl Row {
    /// Medians, metric by metric, of runs that report the same metrics.
    pub fn of_runs(scenario: &'static str, system: System, setting: String, runs: Vec<Vec<Metric>>) -> Self {
        let median = match runs.first() {
            Some(first) => first
                .iter()
                .enumerate()
                .map(|(index, metric)| {
                    let mut values: Vec<f64> = runs.iter().filter_map(|run| run.get(index).map(|m| m.value)).collect();
                    Metric { value: median(&mut values), ..metric.clone() }
                })
                .collect(),
            None => Vec::new(),
        };
        Self { scenario, system, setting, median, runs }
    }

    pub fn median_of(&self, name: &str) -> Option<f64> {
        self.median.iter().find(|m| m.name == name).map(|m| m.value)
    }
}

pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 }
}

/// One point of the latency-against-offered-rate sweep.
#[derive(Clone, Debug, Serialize)]
pub struct SweepPoint {
    pub system: System,
    pub offered_per_second: f64,
    pub acknowledged_per_second: f64,
    pub latency: Latency,
}

impl SweepPoint {
    pub fn of(system: System, offered_per_second: f64, figures: &RunFigures) -> Self {
        Self { system, offered_per_second, acknowledged_per_second: figures.acknowledged_per_second, latency: figures.latency }
    }
}

/// Where the figures were taken.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub cubby_version: &'static str,
}

impl Machine {
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or_else(|| "unknown".to_owned(), |m| m.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_gib: memory_kib / (1024.0 * 1024.0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
            cubby_version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// Everything one `cubby bench` produced.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub runs_per_figure: usize,
    /// How Mosquitto was configured, when it ran.
    pub mosquitto: Option<&'static str>,
    pub rows: Vec<Row>,
    pub sweep: Vec<SweepPoint>,
}

impl Report {
    /// The human table: medians per row, and the Cubby/Mosquitto ratio where both ran.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} CPUs ({}), {:.0} GiB, Linux {}; medians of {} run(s)\n",
            self.machine.cpus, self.machine.cpu_model, self.machine.memory_gib, self.machine.kernel, self.runs_per_figure
        );
        if let Some(settings) = self.mosquitto {
            let _ = writeln!(out, "{settings}\n");
        }
        for row in &self.rows {
            let figures: Vec<String> = row.median.iter().map(|m| format!("{} {} {}", m.name, format_value(m.value), m.unit)).collect();
            let _ = writeln!(out, "{:<10} {:<10} {:<34} {}", row.scenario, row.system.name(), row.setting, figures.join(", "));
            if row.system == System::Cubby
                && let Some(ratio) = self.ratio(row)
            {
                let _ = writeln!(out, "{:<10} {:<10} {:<34} cubby/mosquitto {ratio}", "", "ratio", "");
            }
        }
        if !self.sweep.is_empty() {
            let _ = writeln!(out, "\nlatency against offered rate");
            for point in &self.sweep {
                let _ = writeln!(
                    out,
                    "{:<10} offered {:>8.0}/s  acknowledged {:>8.0}/s  p50 {} ms  p99 {} ms  p99.9 {} ms",
                    point.system.name(),
                    point.offered_per_second,
                    point.acknowledged_per_second,
                    format_value(point.latency.p50_ms),
                    format_value(point.latency.p99_ms),
                    format_value(point.latency.p999_ms)
                );
            }
        }
        out
    }

    /// Cubby's headline figure divided by Mosquitto's, for the same scenario and setting.
    fn ratio(&self, cubby: &Row) -> Option<String> {
        let mosquitto = self
            .rows
            .iter()
            .find(|r| r.system == System::Mosquitto && r.scenario == cubby.scenario && r.setting == cubby.setting)?;
        let parts: Vec<String> = ["acknowledged", "deliveries", "p50", "p99"]
            .iter()
            .filter_map(|name| {
                let (c, m) = (cubby.median_of(name)?, mosquitto.median_of(name)?);
                (m > 0.0).then(|| format!("{name} {:.2}", c / m))
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

fn format_value(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let mut micros: Vec<u32> = (1..=1000).collect();
        let latency = Latency::of(&mut micros);
        assert_eq!(latency.samples, 1000);
        assert_eq!(latency.p50_ms, 0.5);
        assert_eq!(latency.p99_ms, 0.99);
        assert_eq!(latency.p999_ms, 0.999);
        assert_eq!(Latency::of(&mut []).samples, 0);
    }

    #[test]
    fn medians_are_taken_metric_by_metric() {
        let run = |a: f64, b: f64| vec![Metric::new("acknowledged", a, "msg/s"), Metric::new("p99", b, "ms")];
        let row = Row::of_runs("relay", System::Cubby, "x".into(), vec![run(3.0, 9.0), run(1.0, 7.0), run(2.0, 8.0)]);
        assert_eq!(row.median_of("acknowledged"), Some(2.0));
        assert_eq!(row.median_of("p99"), Some(8.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
