//! Prometheus metrics: requests, latencies and errors per route. Labels are route
//! templates (`/api/v1/families/{id}`), never concrete paths, so no id reaches a metric.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub route: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CspLabels {
    /// The policy directive a browser reported broken (one of a fixed list, or `other`).
    pub directive: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub errors: Family<ErrorLabels, Counter>,
    pub csp_violations: Family<CspLabels, Counter>,
    pub commits: CommitMetrics,
}

/// The message writer's transactions: how full they are and how long each takes, the two
/// figures that say whether group commit is sharing its fsyncs or waiting on them.
#[derive(Clone)]
pub struct CommitMetrics {
    /// Appends and acknowledgements written per transaction.
    pub batch_size: Histogram,
    /// Time from the transaction's start to its durable commit.
    pub write_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cubby");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register("http_request_duration_seconds", "Time to answer an HTTP request", latency.clone());
        registry.register("http_errors", "HTTP error answers, by error code", errors.clone());
        let csp_violations = Family::<CspLabels, Counter>::default();
        registry.register("csp_violations", "Content-Security-Policy violations browsers reported", csp_violations.clone());
        let commits = CommitMetrics {
            batch_size: Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]),
            write_seconds: Histogram::new([0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256]),
        };
        registry.register("message_batch_size", "Appends and acknowledgements written per message transaction", commits.batch_size.clone());
        registry.register("message_batch_write_seconds", "Time to write and durably commit one message transaction", commits.write_seconds.clone());
        Self { registry, requests, latency, errors, csp_violations, commits }
    }

    /// The OpenMetrics text exposition, which Prometheus scrapes.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
