//! Content-Security-Policy violation reports. A browser that refused something on a portal
//! page (an injected script, a framing attempt) tells us here: the attempt becomes a metric
//! and a log line an operator can alert on. Reports are untrusted input from anyone, so
//! only the directive (from a fixed list) and the blocked address's origin are kept; a
//! page address may carry an emailed token, so it is never logged.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use cubby_core::ErrorCode;

use crate::http::{ApiError, AppState};
use crate::http::metrics::CspLabels;

/// A report is a few hundred bytes; anything much larger is not one.
const MAX_REPORT_BYTES: usize = 16 * 1024;

/// The directives our policy sets; any other name is counted as `other`.
const DIRECTIVES: [&str; 8] =
    ["default-src", "script-src", "script-src-elem", "style-src", "style-src-elem", "img-src", "form-action", "frame-ancestors"];

/// The legacy `report-uri` body: `{"csp-report": {...}}`.
#[derive(Deserialize)]
struct LegacyReport {
    #[serde(rename = "csp-report")]
    report: Violation,
}

#[derive(Deserialize)]
struct Violation {
    #[serde(rename = "effective-directive", default)]
    effective_directive: Option<String>,
    #[serde(rename = "violated-directive", default)]
    violated_directive: Option<String>,
    #[serde(rename = "blocked-uri", default)]
    blocked_uri: Option<String>,
}

pub async fn receive(State(state): State<AppState>, body: Bytes) -> Response {
    if body.len() > MAX_REPORT_BYTES {
        return ApiError::new(ErrorCode::BodyTooLarge, "a CSP report is at most 16 KiB").into_response();
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return ApiError::new(ErrorCode::MalformedJson, "a CSP report is JSON").into_response();
    };
    let Ok(LegacyReport { report }) = serde_json::from_value::<LegacyReport>(json) else {
        return ApiError::new(ErrorCode::InvalidBody, "not a CSP violation report").into_response();
    };
    let named = report.effective_directive.or(report.violated_directive).unwrap_or_default();
    // `violated-directive` may carry the whole directive ("script-src 'self'").
    let named = named.split_whitespace().next().unwrap_or_default();
    let directive = DIRECTIVES.iter().find(|d| **d == named).copied().unwrap_or("other");
    state.metrics.csp_violations.get_or_create(&CspLabels { directive: directive.to_owned() }).inc();
    tracing::warn!(directive, blocked = %origin_of(report.blocked_uri.as_deref()), "a browser refused something on a portal page");
    StatusCode::NO_CONTENT.into_response()
}

/// Only the scheme and host of a blocked address (`inline`, `eval` and the like as they are).
fn origin_of(uri: Option<&str>) -> String {
    let uri = uri.unwrap_or_default();
    match uri.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            format!("{}://{}", scheme.chars().take(16).collect::<String>(), host.chars().take(255).collect::<String>())
        }
        None => uri.chars().take(32).filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn only_the_origin_of_a_blocked_address_is_kept() {
        assert_eq!(origin_of(Some("https://evil.example/steal?token=secret")), "https://evil.example");
        assert_eq!(origin_of(Some("inline")), "inline");
        assert_eq!(origin_of(None), "");
    }
}
