//! Pairing and device authentication, the device side.
//!
//! Pairing follows OAuth device authorisation (RFC 8628), because a toy has no keyboard and
//! must not hold a guardian's password:
//! 1. the device makes a [`DeviceKey`] and sends its public key ([`CubbyClient::start_pairing`]);
//!    the server answers with a short `user_code` for the toy to show or say;
//! 2. a guardian enters that code in the portal and chooses the child;
//! 3. meanwhile the device polls ([`CubbyClient::wait_for_pairing`]) until it is told its
//!    `device_id`.
//!
//! From then on the device signs in by signing a fresh server challenge with its key
//! ([`CubbyClient::authenticate`]) and gets a short-lived bearer token. No long-lived secret
//! ever crosses the network, so there is nothing to steal from the server or the wire that
//! lets anyone act as the toy; and a guardian's revocation takes effect at the next request.

use std::fmt;
use std::time::Duration;

use cubby_core::{ChildId, FamilyId};
use reqwest::header::{ACCEPT, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use zeroize::Zeroize;

use crate::{ClientError, DeviceKey};

/// Answers are a few hundred bytes; a (broken or hostile) server cannot make a toy with
/// little memory buffer more than this.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// RFC 8628 section 3.5: on `slow_down` the interval grows by 5 seconds for good.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// No server-given interval is taken below this (a zero would be a busy loop) ...
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// ... or above this (a pairing code lives minutes, not hours).
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Backing off after network trouble doubles the interval up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A wait longer than any pairing code lives is not a wait for pairing.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// What kind of device is pairing: a child's toy, or a guardian's phone app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Toy,
    App,
}

/// The server's answer to [`CubbyClient::start_pairing`] (RFC 8628 section 3.2).
///
/// Show `user_code` (and `verification_uri`) to the person pairing; keep `device_code` to
/// yourself: it is what the device polls with, so `Debug` does not print it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingStart {
    pub device_code: String,
    /// The short code a guardian types into the portal, e.g. `BCDF-GHJK`.
    pub user_code: String,
    pub verification_uri: String,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Seconds to wait between polls.
    pub interval: u64,
}

impl fmt::Debug for PairingStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairingStart")
            .field("device_code", &"…")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish()
    }
}

/// A guardian approved the pairing: the device's identity from now on. Store `device_id`
/// next to the [`DeviceKey`]; together they are the device's credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paired {
    /// Hyphenated lowercase UUID text, exactly as signed in [`crate::challenge_message`].
    pub device_id: String,
    pub family_id: FamilyId,
}

/// One poll of the pairing: what to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PairingPoll {
    /// Nobody has approved yet: poll again after the interval.
    Pending,
    /// Polling too fast: add 5 seconds to the interval, then poll again.
    SlowDown,
    /// Approved.
    Paired(Paired),
}

/// A signed-in device: a short-lived bearer token. When it expires (or any request answers
/// 401, see [`ClientError::is_unauthenticated`]), call [`CubbyClient::authenticate`] again.
/// `Debug` does not print the token, and it is wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSession {
    pub access_token: String,
    /// Seconds the token is valid for, from when it was issued.
    pub expires_in: u64,
}

impl fmt::Debug for DeviceSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceSession").field("access_token", &"…").field("expires_in", &self.expires_in).finish()
    }
}

impl Drop for DeviceSession {
    fn drop(&mut self) {
        self.access_token.zeroize();
    }
}

/// What the server says about this device (`GET /api/v1/device`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub device_id: String,
    pub family_id: FamilyId,
    /// The child this device belongs to (none for a guardian's app, or before one is chosen).
    pub child_id: Option<ChildId>,
    pub kind: DeviceKind,
    pub name: String,
    /// The family asked this device to erase its local data (a lost or given-away toy): do
    /// so, including the stored [`DeviceKey`].
    pub wipe: bool,
    /// Whether the family wants its devices to keep the messages they have shown.
    #[serde(default = "keep_history_default")]
    pub keep_history: bool,
}

fn keep_history_default() -> bool {
    true
}

/// Talks to one Cubby server for one device.
///
/// Only HTTPS, or plain HTTP to a loopback address (for tests and a server on the same
/// machine), is accepted: a child's device never sends anything in clear over a network.
#[derive(Clone, Debug)]
pub struct CubbyClient {
    /// Without a trailing slash; endpoint paths start with one.
    base: String,
    http: reqwest::Client,
}

impl CubbyClient {
    /// A client for the server at `base_url` (e.g. `https://cubby.example`, or
    /// `https://example.org/cubby` behind a path prefix), with TLS checked against the
    /// platform's trust store, no redirects followed, and request time-outs.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        endpoint_url(base_url, "")?;
        let http = reqwest::Client::builder()
            // The API never redirects; following one could carry a request elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("cubby-client/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self::with_http_client(base_url, http))
    }

    /// A client over a `reqwest::Client` the caller configured (e.g. a test trusting a
    /// self-signed certificate). The base URL is checked on every request, so an unusable
    /// one surfaces as [`ClientError::BaseUrl`] then.
    pub fn with_http_client(base_url: &str, http: reqwest::Client) -> Self {
        Self { base: base_url.trim_end_matches('/').to_owned(), http }
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Asks the server for a pairing code for `key` (RFC 8628 device authorisation request).
    pub async fn start_pairing(
        &self,
        key: &DeviceKey,
        kind: DeviceKind,
        software_version: &str,
    ) -> Result<PairingStart, ClientError> {
        #[derive(Serialize)]
        struct Request<'a> {
            public_key: String,
            kind: DeviceKind,
            software_version: &'a str,
        }
        let request = Request { public_key: key.public_key_hex(), kind, software_version };
        let (status, body) = self.post("/api/v1/pairing", &request).await?;
        let start: PairingStart = decode(status, &body, "the pairing start")?;
        if !is_token_text(&start.device_code) || start.user_code.is_empty() {
            return Err(ClientError::Malformed("the pairing start lacks its device or user code".into()));
        }
        Ok(start)
    }

    /// Asks once whether the pairing was approved (RFC 8628 device access token request).
    ///
    /// `Pending` and `SlowDown` mean "ask again"; an expired code is
    /// [`ClientError::PairingExpired`], a refusal [`ClientError::PairingDenied`], and an
    /// unknown or already used code an [`ClientError::Api`] error with code `invalid_token`.
    pub async fn poll_pairing(&self, device_code: &str) -> Result<PairingPoll, ClientError> {
        #[derive(Serialize)]
        struct Request<'a> {
            device_code: &'a str,
        }
        let (status, body) = self.post("/api/v1/pairing/token", &Request { device_code }).await?;
        poll_outcome(status, &body)
    }

    /// Polls until a guardian approves, at the server's interval, for at most `timeout`
    /// (capped at a day; the code itself expires sooner).
    ///
    /// Waits an interval before each poll, adds 5 seconds for good on `slow_down`, and on
    /// network trouble or a server-side (5xx, 429) error doubles the interval up to a minute
    /// and keeps going (RFC 8628 section 3.5): a toy on a flaky connection still pairs.
    /// Expiry, refusal and any other error end the wait at once. When time runs out the
    /// answer is [`ClientError::PairingTimeout`], or the last network error if the server
    /// could not be reached at the end.
    pub async fn wait_for_pairing(&self, start: &PairingStart, timeout: Duration) -> Result<Paired, ClientError> {
        let deadline = Instant::now() + timeout.min(MAX_WAIT);
        let timed_out = |last_error: Option<ClientError>| {
            last_error.unwrap_or(ClientError::PairingTimeout { seconds: timeout.as_secs() })
        };
        let mut interval = initial_interval(start.interval);
        let mut last_error = None;
        loop {
            let wake = Instant::now() + interval;
            if wake >= deadline {
                // The next poll would come after the deadline: no use waiting for it.
                return Err(timed_out(last_error));
            }
            tokio::time::sleep_until(wake).await;
            let Ok(outcome) = tokio::time::timeout_at(deadline, self.poll_pairing(&start.device_code)).await else {
                return Err(timed_out(last_error));
            };
            match outcome {
                Ok(PairingPoll::Paired(paired)) => return Ok(paired),
                Ok(PairingPoll::Pending) => last_error = None,
                Ok(PairingPoll::SlowDown) => {
                    last_error = None;
                    interval = slowed_down(interval);
                }
                Err(error) if is_transient(&error) => {
                    interval = backed_off(interval);
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Signs in as the paired device `device_id`: fetches a fresh challenge, signs it with
    /// `key` ([`DeviceKey::sign_challenge`]) and exchanges the signature for an access token.
    /// A revoked or unknown device gets an [`ClientError::Api`] error with status 401 and code
    /// `unauthenticated` ([`ClientError::is_unauthenticated`]).
    pub async fn authenticate(&self, key: &DeviceKey, device_id: &str) -> Result<DeviceSession, ClientError> {
        #[derive(Serialize)]
        struct ChallengeRequest<'a> {
            device_id: &'a str,
        }
        #[derive(Deserialize)]
        struct ChallengeAnswer {
            challenge: String,
        }
        #[derive(Serialize)]
        struct SessionRequest<'a> {
            device_id: &'a str,
            challenge: &'a str,
            signature: &'a str,
        }

        let (status, body) = self.post("/api/v1/devices/challenge", &ChallengeRequest { device_id }).await?;
        let ChallengeAnswer { challenge } = decode(status, &body, "the challenge")?;
        // The device signs only what the contract says a challenge is (32 bytes as hex), so
        // a hostile server cannot choose what else it gets signed beyond that.
        if challenge.len() != 64 || !challenge.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ClientError::Malformed("the challenge is not 64 hex characters".into()));
        }
        let signature = key.sign_challenge(device_id, &challenge);
        let request = SessionRequest { device_id, challenge: &challenge, signature: &signature };
        let (status, body) = self.post("/api/v1/devices/session", &request).await?;
        let session: DeviceSession = decode(status, &body, "the session")?;
        if !is_token_text(&session.access_token) {
            return Err(ClientError::Malformed("the session has no usable access token".into()));
        }
        Ok(session)
    }

    /// What the server knows about this device. Check [`DeviceInfo::wipe`]. A 401 means the
    /// token expired (authenticate again) or the device was revoked.
    pub async fn device_info(&self, session: &DeviceSession) -> Result<DeviceInfo, ClientError> {
        if !is_token_text(&session.access_token) {
            return Err(ClientError::Malformed("the session has no usable access token".into()));
        }
        let mut authorization = HeaderValue::try_from(format!("Bearer {}", session.access_token))
            .map_err(|_| ClientError::Malformed("the session has no usable access token".into()))?;
        // Kept out of reqwest's and hyper's debug output.
        authorization.set_sensitive(true);
        let url = self.endpoint("/api/v1/device")?;
        let response = self
            .http
            .get(url)
            .header(ACCEPT, "application/json")
            .header(reqwest::header::AUTHORIZATION, authorization)
            .send()
            .await?;
        let (status, body) = read_answer(response).await?;
        let info: DeviceInfo = decode(status, &body, "the device information")?;
        if !is_device_id(&info.device_id) {
            return Err(ClientError::Malformed("the device id is not a lowercase hyphenated UUID".into()));
        }
        Ok(info)
    }

    fn endpoint(&self, path: &str) -> Result<Url, ClientError> {
        endpoint_url(&self.base, path)
    }

    /// An authenticated call as the device; `body` is sent as JSON when given.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        session: &DeviceSession,
        body: Option<&(dyn erased::Json + Sync)>,
        what: &str,
    ) -> Result<T, ClientError> {
        let request = self
            .http
            .request(method, self.endpoint(path)?)
            .header(ACCEPT, "application/json")
            .header(reqwest::header::AUTHORIZATION, bearer(session)?);
        let request = match body {
            Some(body) => request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_json()?),
            None => request,
        };
        let (status, answer) = read_answer(request.send().await?).await?;
        decode(status, &answer, what)
    }

    /// An authenticated request as the device whose body and answer are not JSON (media
    /// chunks, downloads): the caller adds the body, sends it, and turns an unsuccessful
    /// answer into an error with [`CubbyClient::error_of`].
    pub(crate) fn raw_request(
        &self,
        method: reqwest::Method,
        path: &str,
        session: &DeviceSession,
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        Ok(self.http.request(method, self.endpoint(path)?).header(reqwest::header::AUTHORIZATION, bearer(session)?))
    }

    /// The error an unsuccessful answer to a [`CubbyClient::raw_request`] carries.
    pub(crate) async fn error_of(response: reqwest::Response) -> ClientError {
        match read_answer(response).await {
            Ok((status, body)) => api_error(status, &body),
            Err(error) => error,
        }
    }

    /// The WebSocket URL of an endpoint (wss for https, ws for loopback http).
    pub(crate) fn websocket_url(&self, path: &str) -> Result<Url, ClientError> {
        let mut url = self.endpoint(path)?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme).map_err(|_| ClientError::BaseUrl("cannot make a WebSocket URL"))?;
        Ok(url)
    }

    async fn post(&self, path: &str, body: &impl Serialize) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let url = self.endpoint(path)?;
        let response = self.http.post(url).header(ACCEPT, "application/json").json(body).send().await?;
        read_answer(response).await
    }
}

/// The `Authorization` header for a session, kept out of debug output.
pub(crate) fn bearer(session: &DeviceSession) -> Result<HeaderValue, ClientError> {
    if !is_token_text(&session.access_token) {
        return Err(ClientError::Malformed("the session has no usable access token".into()));
    }
    let mut authorization = HeaderValue::try_from(format!("Bearer {}", session.access_token))
        .map_err(|_| ClientError::Malformed("the session has no usable access token".into()))?;
    authorization.set_sensitive(true);
    Ok(authorization)
}

/// Request bodies of any type through one non-generic call path.
pub(crate) mod erased {
    pub trait Json {
        fn to_json(&self) -> Result<Vec<u8>, crate::ClientError>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<Vec<u8>, crate::ClientError> {
            serde_json::to_vec(self).map_err(|_| crate::ClientError::Malformed("a request body".into()))
        }
    }
}

/// `base` + `path` as a URL, if it is one a device may talk to: HTTPS, or HTTP to a loopback
/// address; no credentials, query or fragment (they would end up in logs and error messages).
fn endpoint_url(base: &str, path: &str) -> Result<Url, ClientError> {
    let url = Url::parse(&format!("{}{path}", base.trim_end_matches('/')))
        .map_err(|_| ClientError::BaseUrl("not an absolute URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ClientError::BaseUrl("credentials do not belong in the URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ClientError::BaseUrl("a query or fragment does not belong in the base URL"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(ClientError::BaseUrl("plain HTTP is only for loopback addresses; use https")),
        _ => Err(ClientError::BaseUrl("the scheme must be https (or http to a loopback address)")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Reads an answer's status and body, refusing bodies over [`MAX_ANSWER_BYTES`].
async fn read_answer(mut response: reqwest::Response) -> Result<(StatusCode, Vec<u8>), ClientError> {
    let status = response.status();
    let mut body = Vec::new();
    if response.content_length().is_some_and(|length| length > MAX_ANSWER_BYTES as u64) {
        return Err(too_large());
    }
    while let Some(chunk) = response.chunk().await? {
        append_limited(&mut body, &chunk)?;
    }
    Ok((status, body))
}

fn append_limited(body: &mut Vec<u8>, chunk: &[u8]) -> Result<(), ClientError> {
    if body.len().saturating_add(chunk.len()) > MAX_ANSWER_BYTES {
        return Err(too_large());
    }
    body.extend_from_slice(chunk);
    Ok(())
}

fn too_large() -> ClientError {
    ClientError::Malformed(format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"))
}

/// A successful answer as `T`, or the error the server gave. Parse errors are reported by
/// position only: serde's message can quote the received value, which may be a token.
fn decode<T: DeserializeOwned>(status: StatusCode, body: &[u8], what: &str) -> Result<T, ClientError> {
    if !status.is_success() {
        return Err(api_error(status, body));
    }
    serde_json::from_slice(body).map_err(|error| {
        ClientError::Malformed(format!(
            "{what} is not the expected JSON (line {}, column {})",
            error.line(),
            error.column()
        ))
    })
}

/// The error an unsuccessful answer carries (`{"error":{"code","message"}}`).
fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: ErrorDetail,
    }
    #[derive(Deserialize)]
    struct ErrorDetail {
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => {
            ClientError::Api { status: status.as_u16(), code: error.code, message: error.message }
        }
        Err(_) => ClientError::HttpStatus { status: status.as_u16() },
    }
}

fn poll_outcome(status: StatusCode, body: &[u8]) -> Result<PairingPoll, ClientError> {
    if status.is_success() {
        let paired: Paired = decode(status, body, "the pairing result")?;
        if !is_device_id(&paired.device_id) {
            return Err(ClientError::Malformed("the device id is not a lowercase hyphenated UUID".into()));
        }
        return Ok(PairingPoll::Paired(paired));
    }
    match api_error(status, body) {
        ClientError::Api { code, .. } if code == "authorization_pending" => Ok(PairingPoll::Pending),
        ClientError::Api { code, .. } if code == "slow_down" => Ok(PairingPoll::SlowDown),
        ClientError::Api { code, .. } if code == "expired_token" => Err(ClientError::PairingExpired),
        ClientError::Api { code, .. } if code == "access_denied" => Err(ClientError::PairingDenied),
        other => Err(other),
    }
}

/// The device id is signed as text, so it must be the one canonical spelling the server
/// also uses: a hyphenated lowercase UUID.
fn is_device_id(text: &str) -> bool {
    uuid::Uuid::parse_str(text).is_ok_and(|id| id.hyphenated().to_string() == text)
}

/// A code or token the device sends back verbatim: non-empty printable ASCII, no spaces
/// (so it fits in JSON and an `Authorization` header unchanged).
fn is_token_text(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic())
}

fn initial_interval(seconds: u64) -> Duration {
    Duration::from_secs(seconds).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

fn slowed_down(interval: Duration) -> Duration {
    (interval + SLOW_DOWN_STEP).min(MAX_INTERVAL)
}

fn backed_off(interval: Duration) -> Duration {
    interval.saturating_mul(2).min(MAX_BACKOFF).max(interval)
}

/// Worth polling again after backing off: the network, or the server saying it is busy or
/// broken for now. Not: a refusal, or a request we built wrong.
fn is_transient(error: &ClientError) -> bool {
    match error {
        ClientError::Transport(error) => !error.is_builder(),
        ClientError::Api { status, .. } | ClientError::HttpStatus { status } => *status >= 500 || *status == 429,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICE: &str = "3f2b8c1e-5d4a-4b6e-9c7f-0a1b2c3d4e5f";
    const FAMILY: &str = "0b9e7c5a-3d1f-4e2b-8a6c-4f3e2d1c0b9a";

    fn error_body(code: &str) -> Vec<u8> {
        format!(r#"{{"error":{{"code":"{code}","message":"try later"}}}}"#).into_bytes()
    }

    #[test]
    fn base_urls_must_be_https_or_loopback_http() -> Result<(), ClientError> {
        let url = endpoint_url("https://cubby.example/", "/api/v1/pairing")?;
        assert_eq!(url.as_str(), "https://cubby.example/api/v1/pairing");
        let url = endpoint_url("https://example.org/cubby/", "/api/v1/device")?;
        assert_eq!(url.as_str(), "https://example.org/cubby/api/v1/device");
        for loopback in ["http://127.0.0.1:8080", "http://127.1.2.3/", "http://[::1]:9000", "http://localhost:3000"] {
            assert!(endpoint_url(loopback, "/api/v1/pairing").is_ok(), "{loopback}");
        }
        for bad in [
            "http://cubby.example",
            "http://192.168.1.10:8080",
            "http://[::ffff:10.0.0.1]",
            "ftp://cubby.example",
            "cubby.example",
            "",
            "https://user:pass@cubby.example",
            "https://cubby.example/?x=1",
            "https://cubby.example/#top",
        ] {
            assert!(matches!(endpoint_url(bad, "/api/v1/pairing"), Err(ClientError::BaseUrl(_))), "{bad}");
        }
        assert!(CubbyClient::new("http://cubby.example").is_err());
        let client = CubbyClient::new("https://cubby.example/")?;
        assert_eq!(client.base_url(), "https://cubby.example");
        let unchecked = CubbyClient::with_http_client("http://cubby.example", reqwest::Client::new());
        assert!(matches!(unchecked.endpoint("/api/v1/device"), Err(ClientError::BaseUrl(_))));
        Ok(())
    }

    #[test]
    fn poll_answers_map_to_outcomes_and_errors() -> Result<(), ClientError> {
        let bad_request = StatusCode::BAD_REQUEST;
        assert_eq!(poll_outcome(bad_request, &error_body("authorization_pending"))?, PairingPoll::Pending);
        assert_eq!(poll_outcome(bad_request, &error_body("slow_down"))?, PairingPoll::SlowDown);
        assert!(matches!(poll_outcome(bad_request, &error_body("expired_token")), Err(ClientError::PairingExpired)));
        assert!(matches!(poll_outcome(bad_request, &error_body("access_denied")), Err(ClientError::PairingDenied)));
        match poll_outcome(bad_request, &error_body("invalid_token")) {
            Err(ClientError::Api { status: 400, code, message }) => {
                assert_eq!(code, "invalid_token");
                assert_eq!(message, "try later");
            }
            other => return Err(ClientError::Malformed(format!("unexpected {other:?}"))),
        }
        assert!(matches!(
            poll_outcome(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>"),
            Err(ClientError::HttpStatus { status: 502 })
        ));

        let body = format!(r#"{{"device_id":"{DEVICE}","family_id":"{FAMILY}"}}"#);
        let PairingPoll::Paired(paired) = poll_outcome(StatusCode::OK, body.as_bytes())? else {
            return Err(ClientError::Malformed("not paired".into()));
        };
        assert_eq!(paired.device_id, DEVICE);
        assert_eq!(paired.family_id.to_string(), FAMILY);

        // The id is signed as text: only the canonical spelling is accepted.
        let upper = format!(r#"{{"device_id":"{}","family_id":"{FAMILY}"}}"#, DEVICE.to_uppercase());
        assert!(matches!(poll_outcome(StatusCode::OK, upper.as_bytes()), Err(ClientError::Malformed(_))));
        let garbage = format!(r#"{{"device_id":"1 OR 1=1","family_id":"{FAMILY}"}}"#);
        assert!(matches!(poll_outcome(StatusCode::OK, garbage.as_bytes()), Err(ClientError::Malformed(_))));
        assert!(matches!(poll_outcome(StatusCode::OK, b"{}"), Err(ClientError::Malformed(_))));
        Ok(())
    }

    #[test]
    fn answers_decode_per_the_contract() -> Result<(), ClientError> {
        let start: PairingStart = decode(
            StatusCode::CREATED,
            br#"{"device_code":"ab12","user_code":"BCDF-GHJK","verification_uri":"https://cubby.example/pair","expires_in":600,"interval":5}"#,
            "the pairing start",
        )?;
        assert_eq!((start.user_code.as_str(), start.expires_in, start.interval), ("BCDF-GHJK", 600, 5));

        let body = format!(
            r#"{{"device_id":"{DEVICE}","family_id":"{FAMILY}","child_id":null,"kind":"toy","name":"Bear","wipe":false,"later":1}}"#
        );
        let info: DeviceInfo = decode(StatusCode::OK, body.as_bytes(), "the device information")?;
        assert_eq!((info.kind, info.child_id, info.wipe), (DeviceKind::Toy, None, false));
        assert_eq!(info.name, "Bear");

        let err = decode::<DeviceInfo>(StatusCode::UNAUTHORIZED, &error_body("unauthenticated"), "x")
            .err()
            .ok_or_else(|| ClientError::Malformed("decoded an error".into()))?;
        assert!(err.is_unauthenticated());
        assert_eq!(err.code(), Some("unauthenticated"));

        assert_eq!(serde_json::to_string(&DeviceKind::Toy).ok().as_deref(), Some(r#""toy""#));
        assert_eq!(serde_json::to_string(&DeviceKind::App).ok().as_deref(), Some(r#""app""#));
        Ok(())
    }

    #[test]
    fn malformed_answers_never_quote_what_was_received() {
        let body = br#"{"access_token":"x","expires_in":"0123456789abcdefsecret"}"#;
        let shown = match decode::<DeviceSession>(StatusCode::OK, body, "the session") {
            Err(error @ ClientError::Malformed(_)) => error.to_string(),
            other => format!("unexpected {other:?}"),
        };
        assert!(shown.starts_with("the server's answer is malformed: the session"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn debug_hides_device_codes_and_access_tokens() {
        let start = PairingStart {
            device_code: "d3v1c3c0d3".into(),
            user_code: "BCDF-GHJK".into(),
            verification_uri: "https://cubby.example/pair".into(),
            expires_in: 600,
            interval: 5,
        };
        let shown = format!("{start:?}");
        assert!(shown.contains("BCDF-GHJK") && !shown.contains("d3v1c3c0d3"), "{shown}");
        let session = DeviceSession { access_token: "70k3n70k3n".into(), expires_in: 900 };
        let shown = format!("{session:?} {session:#?}");
        assert!(shown.contains("900") && !shown.contains("70k3n"), "{shown}");
    }

    #[test]
    fn polling_intervals_follow_rfc_8628() {
        assert_eq!(initial_interval(5), Duration::from_secs(5));
        assert_eq!(initial_interval(0), MIN_INTERVAL);
        assert_eq!(initial_interval(u64::MAX), MAX_INTERVAL);
        assert_eq!(slowed_down(Duration::from_secs(5)), Duration::from_secs(10));
        assert_eq!(slowed_down(MAX_INTERVAL), MAX_INTERVAL);
        assert_eq!(backed_off(Duration::from_secs(5)), Duration::from_secs(10));
        assert_eq!(backed_off(Duration::from_secs(40)), MAX_BACKOFF);
        // Backing off never polls faster than the server asked.
        assert_eq!(backed_off(Duration::from_secs(120)), Duration::from_secs(120));
        assert!(is_transient(&ClientError::HttpStatus { status: 503 }));
        assert!(is_transient(&ClientError::Api { status: 429, code: "rate_limited".into(), message: String::new() }));
        assert!(!is_transient(&ClientError::Api { status: 400, code: "invalid_token".into(), message: String::new() }));
        assert!(!is_transient(&ClientError::PairingDenied));
    }

    #[test]
    fn answers_are_size_limited() {
        let mut body = Vec::new();
        assert!(append_limited(&mut body, &[0; 1024]).is_ok());
        assert!(append_limited(&mut body, &vec![0; MAX_ANSWER_BYTES]).is_err());
        assert_eq!(body.len(), 1024);
    }

    #[test]
    fn codes_and_tokens_must_be_sendable_verbatim() {
        assert!(is_token_text("0123abcd"));
        assert!(!is_token_text(""));
        assert!(!is_token_text("abc def"));
        assert!(!is_token_text("abc\r\nX-Evil: 1"));
        assert!(is_device_id(DEVICE));
        assert!(!is_device_id(&DEVICE.replace('-', "")));
    }
}
