//! Per-request middleware: a deadline, and one log line plus metrics per request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cubby_core::ErrorCode;

use super::error::ApiError;
use super::metrics::{ErrorLabels, Metrics, RequestLabels, RouteLabels};

/// Answers `timeout` when a request takes longer than the configured limit. The handler
/// future is dropped, so an unfinished transaction rolls back: nothing half-written.
pub async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    let limit = if is_package_file_upload(&request) { limit.max(PACKAGE_UPLOAD_LIMIT) } else { limit };
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::timeout().into_response(),
    }
}

/// A package file (up to `--package-max-size`) is read within its request, so its time
/// grows with its size: it gets an hour (512 MiB at about 150 KB/s) instead of the usual
/// limit. What a cut-off upload wrote is discarded, as for any refused file.
const PACKAGE_UPLOAD_LIMIT: Duration = Duration::from_secs(3600);

fn is_package_file_upload(request: &Request) -> bool {
    request.method() == axum::http::Method::PUT
        && request.uri().path().starts_with("/api/v1/packages/")
        && request.uri().path().contains("/files/")
}

/// Logs and counts each request by its route template. Deliberately not logged: the
/// query string, headers, cookies and bodies, where tokens and personal data travel.
pub async fn observe(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics.requests.get_or_create(&RequestLabels { method: method.clone(), route: route.clone(), status }).inc();
    metrics
        .latency
        .get_or_create(&RouteLabels { method: method.clone(), route: route.clone() })
        .observe(elapsed.as_secs_f64());
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        metrics.errors.get_or_create(&ErrorLabels { route: route.clone(), code: code.as_str().to_owned() }).inc();
    }
    tracing::info!(
        target: "cubby::http",
        method = %method,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    response
}
