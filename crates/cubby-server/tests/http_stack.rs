//! The HTTP layer, tested through real requests to a server on a real TCP port: every
//! failure answers `{"error":{"code":"…","message":"…"}}` with the right status, metrics
//! count by route template and error code, the OpenAPI document documents every error,
//! and no secret a request carries reaches the log.
//!
//! Test-only routes (`/test/…`) are added to the real ones so the real middleware stack
//! wraps them; they are not documented in the OpenAPI document.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use cubby_server::ServerConfig;
use cubby_server::http::ApiJson;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing_subscriber::fmt::MakeWriter;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const MAX_BODY_BYTES: usize = 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_millis(300);
const SLOW_HANDLER_SLEEP: Duration = Duration::from_secs(3);
const PANIC_MESSAGE: &str = "test handler panicked holding panic_SECRET_5e0d";

// ---------------------------------------------------------------------------------------
// Test-only routes
// ---------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Profile {
    name: String,
    age: u8,
}

async fn echo(ApiJson(profile): ApiJson<Profile>) -> ApiJson<Profile> {
    ApiJson(profile)
}

async fn slow() -> &'static str {
    tokio::time::sleep(SLOW_HANDLER_SLEEP).await;
    "too late"
}

async fn panic_handler() -> &'static str {
    panic!("{PANIC_MESSAGE}")
}

// ---------------------------------------------------------------------------------------
// Server and client
// ---------------------------------------------------------------------------------------

/// A server on 127.0.0.1 over a fresh SQLite file, and a client for it.
struct TestServer {
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start() -> Result<Self, Box<dyn std::error::Error>> {
        captured_log();
        let dir = tempfile::tempdir()?;
        let store = cubby_store::connect(&format!("sqlite://{}", dir.path().join("cubby.db").display())).await?;
        let master_key = cubby_crypto::MasterKey::new(&cubby_crypto::SecretKey::random()?);
        let keyring = cubby_crypto::Keyring::new(master_key, None);
        let vault = Arc::new(cubby_server::Vault::open(store, keyring).await?);
        let config =
            ServerConfig { max_body_bytes: MAX_BODY_BYTES, request_timeout: REQUEST_TIMEOUT, ..Default::default() };
        let routes = cubby_server::api::routes()
            .route("/test/echo", post(echo))
            .route("/test/slow", get(slow))
            .route("/test/panic", get(panic_handler));
        let app = cubby_server::http::build(routes, services(&dir, vault)?, &config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build()?;
        Ok(Self { base, client, _dir: dir })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path))
    }

    /// POSTs `body` as-is with `Content-Type: application/json`.
    async fn post_json_text(&self, path: &str, body: impl Into<String>) -> reqwest::Result<reqwest::Response> {
        self.post(path).header(CONTENT_TYPE, "application/json").body(body.into()).send().await
    }
}

/// Asserts the API's error answer: `status`, the security headers, and a body of exactly
/// `{"error":{"code":code,"message":<non-empty string>}}`. Returns the message.
async fn expect_error(
    response: reqwest::Response,
    status: StatusCode,
    code: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    assert_eq!(response.status(), status, "status of {}", response.url());
    expect_security_headers(&response);
    let content_type = response.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or_default().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/json"), "content type of a {status} answer");
    let body: Value = response.json().await?;
    let Some(outer) = body.as_object() else { return Err(format!("not a JSON object: {body}").into()) };
    assert_eq!(outer.keys().collect::<Vec<_>>(), ["error"], "top-level keys of {body}");
    let Some(error) = outer.get("error").and_then(Value::as_object) else {
        return Err(format!("`error` is not an object: {body}").into());
    };
    let mut keys: Vec<_> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message"], "keys of `error` in {body}");
    assert_eq!(error.get("code").and_then(Value::as_str), Some(code), "code in {body}");
    let message = error.get("message").and_then(Value::as_str).unwrap_or_default();
    assert!(!message.trim().is_empty(), "message must be a non-empty string: {body}");
    Ok(message.to_owned())
}

fn expect_security_headers(response: &reqwest::Response) {
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"), "on {}", response.url());
    assert_eq!(header("cache-control").as_deref(), Some("no-store"), "on {}", response.url());
}

async fn metrics_text(server: &TestServer) -> Result<String, Box<dyn std::error::Error>> {
    let response = server.get("/metrics").send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    Ok(response.text().await?)
}

// ---------------------------------------------------------------------------------------
// Log capture: one global subscriber for the whole test binary
// ---------------------------------------------------------------------------------------

/// Everything logged by any test in this binary, as JSON lines at DEBUG and above.
fn captured_log() -> &'static SharedBuffer {
    static LOG: OnceLock<SharedBuffer> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = SharedBuffer::default();
        // If another subscriber were already installed, the log test fails on finding no
        // request lines, so a failure here cannot make it pass vacuously.
        let _ = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(buffer.clone())
            .try_init();
        buffer
    })
}

#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for SharedBuffer {
    type Writer = SharedBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_json_is_400_malformed_json() -> TestResult {
    let server = TestServer::start().await?;
    for body in [r#"{"name": "Ada", "age": "#, "not json at all", r#"{"name": "Ada", "age": 3,}"#] {
        let response = server.post_json_text("/test/echo", body).await?;
        expect_error(response, StatusCode::BAD_REQUEST, "malformed_json").await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415_unsupported_media_type() -> TestResult {
    let server = TestServer::start().await?;
    let body = r#"{"name": "Ada", "age": 3}"#;
    let text_plain = server.post("/test/echo").header(CONTENT_TYPE, "text/plain").body(body).send().await?;
    expect_error(text_plain, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await?;
    let no_content_type = server.post("/test/echo").body(body).send().await?;
    expect_error(no_content_type, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await?;
    Ok(())
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_body_too_large() -> TestResult {
    let server = TestServer::start().await?;
    let oversize = json!({ "name": "a".repeat(4 * 1024), "age": 3 }).to_string();
    let response = server.post_json_text("/test/echo", oversize).await?;
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await?;

    // Just under the limit is accepted: the limit is the configured one.
    let fits = json!({ "name": "a".repeat(MAX_BODY_BYTES - 64), "age": 3 }).to_string();
    assert!(fits.len() < MAX_BODY_BYTES);
    let response = server.post_json_text("/test/echo", fits).await?;
    assert_eq!(response.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn well_formed_json_that_does_not_fit_is_422_invalid_body() -> TestResult {
    let server = TestServer::start().await?;
    let cases = [
        (json!({ "age": 3 }), "name"),
        (json!({ "name": "Ada", "age": 300 }), "300"),
        (json!({ "name": "Ada", "age": "x" }), "u8"),
        (json!("Ada"), "Profile"),
    ];
    for (body, mentions) in cases {
        let response = server.post_json_text("/test/echo", body.to_string()).await?;
        let message = expect_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await?;
        assert!(message.contains(mentions), "the message for {body} should mention {mentions:?}: {message}");
    }
    Ok(())
}

#[tokio::test]
async fn a_valid_body_is_200_and_echoed() -> TestResult {
    let server = TestServer::start().await?;
    let profile = Profile { name: "Ada".to_owned(), age: 7 };
    let response = server.post("/test/echo").json(&profile).send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    expect_security_headers(&response);
    assert_eq!(response.json::<Profile>().await?, profile);
    Ok(())
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() -> TestResult {
    let server = TestServer::start().await?;
    expect_error(server.get("/no/such/route").send().await?, StatusCode::NOT_FOUND, "not_found").await?;
    expect_error(server.post("/api/v1/nothing").send().await?, StatusCode::NOT_FOUND, "not_found").await?;
    expect_error(server.post("/healthz").send().await?, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await?;
    let delete_healthz = server.client.delete(server.url("/healthz")).send().await?;
    expect_error(delete_healthz, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await?;
    expect_error(server.get("/test/echo").send().await?, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await?;
    Ok(())
}

#[tokio::test]
async fn a_slow_handler_is_cut_off_with_408_timeout() -> TestResult {
    let server = TestServer::start().await?;
    let started = Instant::now();
    let response = server.get("/test/slow").send().await?;
    let elapsed = started.elapsed();
    expect_error(response, StatusCode::REQUEST_TIMEOUT, "timeout").await?;
    assert!(elapsed >= REQUEST_TIMEOUT, "answered after {elapsed:?}, before the deadline");
    assert!(elapsed < SLOW_HANDLER_SLEEP, "answered after {elapsed:?}: the handler was not cut off");
    Ok(())
}

#[tokio::test]
async fn a_panicking_handler_is_500_internal_and_the_server_keeps_serving() -> TestResult {
    let server = TestServer::start().await?;
    let response = server.get("/test/panic").send().await?;
    let message = expect_error(response, StatusCode::INTERNAL_SERVER_ERROR, "internal").await?;
    assert!(!message.contains("panic_SECRET"), "the panic message must not be echoed: {message}");

    let health = server.get("/healthz").send().await?;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.json::<Value>().await?, json!({ "status": "ok" }));
    Ok(())
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_errors_by_code() -> TestResult {
    let server = TestServer::start().await?;
    server.post_json_text("/test/echo", "{").await?;
    server.post_json_text("/test/echo", "{").await?;
    server.post_json_text("/test/echo", r#"{"name":"Ada","age":3}"#).await?;
    server.post_json_text("/test/echo", r#"{"name":"Ada","age":300}"#).await?;
    server.get("/families/id-7f3a9c/children").send().await?;
    server.get("/test/slow").send().await?;
    server.get("/test/panic").send().await?;

    let text = metrics_text(&server).await?;
    for line in [
        r#"cubby_http_requests_total{method="POST",route="/test/echo",status="400"} 2"#,
        r#"cubby_http_requests_total{method="POST",route="/test/echo",status="200"} 1"#,
        r#"cubby_http_requests_total{method="POST",route="/test/echo",status="422"} 1"#,
        r#"cubby_http_requests_total{method="GET",route="/test/slow",status="408"} 1"#,
        r#"cubby_http_requests_total{method="GET",route="/test/panic",status="500"} 1"#,
        r#"cubby_http_errors_total{route="/test/echo",code="malformed_json"} 2"#,
        r#"cubby_http_errors_total{route="/test/echo",code="invalid_body"} 1"#,
        r#"cubby_http_errors_total{route="/test/slow",code="timeout"} 1"#,
        r#"cubby_http_errors_total{route="/test/panic",code="internal"} 1"#,
        r#"cubby_http_errors_total{route="unmatched",code="not_found"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    let echo_latencies = r#"cubby_http_request_duration_seconds_count{method="POST",route="/test/echo"} 4"#;
    assert!(text.lines().any(|l| l == echo_latencies), "missing {echo_latencies:?} in:\n{text}");
    assert!(!text.contains("id-7f3a9c"), "a concrete path reached the metrics:\n{text}");
    assert!(text.trim_end().ends_with("# EOF"), "not an OpenMetrics exposition:\n{text}");
    Ok(())
}

#[tokio::test]
async fn the_openapi_document_lists_every_endpoint_with_its_error_shape() -> TestResult {
    const ERROR_BODY_REF: &str = "#/components/schemas/ErrorBody";
    const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
    let server = TestServer::start().await?;
    let response = server.get("/api/v1/openapi.json").send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = serde_json::from_str(&response.text().await?)?;

    let version = document.get("openapi").and_then(Value::as_str).unwrap_or_default();
    assert!(version.starts_with("3."), "not OpenAPI 3.x: {version:?}");
    assert!(document.pointer("/components/schemas/ErrorBody").is_some(), "ErrorBody schema missing");
    let Some(paths) = document.get("paths").and_then(Value::as_object) else {
        return Err("the document has no `paths`".into());
    };
    for expected in ["/healthz", "/metrics", "/api/v1/openapi.json"] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }

    let mut operations = 0;
    for (path, item) in paths {
        for method in METHODS {
            let Some(operation) = item.get(method) else { continue };
            operations += 1;
            let Some(responses) = operation.get("responses").and_then(Value::as_object) else {
                return Err(format!("{method} {path} documents no responses").into());
            };
            let documents_error_body = responses.iter().any(|(status, response)| {
                (status.starts_with('4') || status.starts_with('5'))
                    && response.get("content").and_then(Value::as_object).is_some_and(|content| {
                        content.values().any(|media| {
                            media.pointer("/schema/$ref").and_then(Value::as_str) == Some(ERROR_BODY_REF)
                        })
                    })
            });
            assert!(documents_error_body, "{method} {path} documents no 4xx/5xx answer with the ErrorBody schema");
        }
    }
    assert!(operations >= 3, "only {operations} operations documented");
    Ok(())
}

#[tokio::test]
async fn no_secret_a_request_carries_reaches_the_log() -> TestResult {
    const PASSWORD: &str = "hunter2-correct-horse-battery";
    const BEARER: &str = "tok_SECRET_4f9a1c7e2b6d";
    const SESSION: &str = "sess_SECRET_8d3e6b1a0c";
    const EMAIL: &str = "alice.secret@example.com";
    const QUERY_TOKEN: &str = "qtok_SECRET_77c2e1";
    const PATH_SECRET: &str = "path_SECRET_91ab3f";
    let log = captured_log();
    let server = TestServer::start().await?;
    let query = format!("?email={EMAIL}&token={QUERY_TOKEN}");
    let with_secrets = |request: reqwest::RequestBuilder| {
        request.header(AUTHORIZATION, format!("Bearer {BEARER}")).header(COOKIE, format!("session={SESSION}"))
    };
    let post_echo = |content_type: &str, body: String| {
        with_secrets(server.post(&format!("/test/echo{query}"))).header(CONTENT_TYPE, content_type).body(body)
    };

    let cases = [
        (post_echo("application/json", json!({ "name": EMAIL, "age": 9, "password": PASSWORD }).to_string()), 200),
        (post_echo("application/json", format!(r#"{{"name":"{EMAIL}","password":"{PASSWORD}""#)), 400),
        (post_echo("application/json", json!({ "name": EMAIL, "age": PASSWORD }).to_string()), 422),
        (post_echo("application/json", json!({ "password": PASSWORD }).to_string()), 422),
        (post_echo("application/json", json!([PASSWORD, EMAIL]).to_string()), 422),
        (post_echo("text/plain", PASSWORD.to_owned()), 415),
        (post_echo("application/json", json!({ "name": PASSWORD.repeat(64), "age": 1 }).to_string()), 413),
        (with_secrets(server.get(&format!("/test/echo/{PATH_SECRET}{query}"))), 404),
        (with_secrets(server.client.put(server.url(&format!("/healthz{query}")))).body(PASSWORD), 405),
        (with_secrets(server.get(&format!("/test/panic{query}"))), 500),
        (with_secrets(server.get(&format!("/test/slow{query}"))), 408),
    ];
    for (request, expected_status) in cases {
        let response = request.send().await?;
        assert_eq!(response.status().as_u16(), expected_status, "status of {}", response.url());
    }

    let text = log.contents();
    for secret in [PASSWORD, BEARER, SESSION, EMAIL, "alice.secret", QUERY_TOKEN, PATH_SECRET, "panic_SECRET"] {
        assert!(!text.contains(secret), "the log holds the secret {secret:?}:\n{text}");
    }
    // Not vacuous: the requests above were logged, by route template.
    for route in ["/test/echo", "/test/panic", "/test/slow", "unmatched"] {
        let line = format!(r#""route":"{route}""#);
        assert!(text.contains(&line), "no request line with {line} in the log:\n{text}");
    }
    assert!(text.contains(r#""target":"cubby::http""#), "no request lines in the log:\n{text}");
    Ok(())
}

/// The server's parts over a vault: mail to an outbox beside the data, a fresh pepper.
fn services(
    dir: &tempfile::TempDir,
    vault: std::sync::Arc<cubby_server::Vault>,
) -> Result<cubby_server::http::Services, Box<dyn std::error::Error>> {
    let outbox = cubby_server::mail::OutboxMailer::open(&dir.path().join("outbox"), &dir.path().join("data"))?;
    Ok(cubby_server::http::Services {
        vault,
        mailer: std::sync::Arc::new(outbox),
        passwords: std::sync::Arc::new(cubby_crypto::PasswordHasher::new(cubby_crypto::SecretKey::random()?)),
    })
}
