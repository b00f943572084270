//! The parent portal: server-rendered pages at `/`, built into the binary (no front-end
//! build). Every change goes through the API's own handlers, so the portal applies the
//! same authorisation, validation and audit as `/api/v1`: it is a second face, not a
//! second implementation. Not part of the OpenAPI document (these are pages, not API).

mod contacts;
mod csp_report;
mod dates;
mod devices;
mod family;
mod learning;
mod privacy;
mod reports;
mod security;
mod session;
mod sign_up;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::map_response_with_state;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cubby_core::ErrorCode;
use maud::{DOCTYPE, Markup, html};
use serde::de::DeserializeOwned;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::TlsSettings;
use crate::http::auth::{Guardian, authenticate, csrf_token, session_token};
use crate::http::error::status_for;
use crate::http::{ApiError, AppState};

/// No inline script or style can run, nothing loads from elsewhere, no page can frame us,
/// and forms only post back here: an injected tag has nothing to work with.
/// Violations are reported to [`CSP_REPORTS`], so an attempt shows in the metrics and logs.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'; report-uri /csp-reports";

/// Where browsers report Content-Security-Policy violations.
pub const CSP_REPORTS: &str = "/csp-reports";

const STYLESHEET: &str = include_str!("portal.css");
/// The stylesheet's address changes with each release, so browsers may keep it a year.
const STYLESHEET_PATH: &str = concat!("/assets/portal-", env!("CARGO_PKG_VERSION"), ".css");

/// Where the notice parents consent to is read (linked from every page that collects data).
pub const PRIVACY_NOTICE: &str = "/api/v1/privacy-notice";

/// The portal's pages. `tls`: served over HTTPS, so browsers are told to keep to it (HSTS).
pub fn routes(tls: bool) -> Router<AppState> {
    Router::new()
        .route("/", get(family::dashboard))
        .route("/sign-in", get(session::sign_in_page).post(session::sign_in))
        .route("/sign-out", post(session::sign_out))
        .merge(sign_up::routes())
        .merge(family::routes())
        .merge(devices::routes())
        .merge(contacts::routes())
        .merge(reports::routes())
        .merge(privacy::routes())
        .merge(security::routes())
        .merge(learning::routes())
        .route(CSP_REPORTS, post(csp_report::receive))
        .route(STYLESHEET_PATH, get(stylesheet))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
        .layer(map_response_with_state(tls, strict_transport))
}

async fn strict_transport(State(tls): State<bool>, mut response: Response) -> Response {
    if tls {
        response.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// What a page's frame offers: nothing before sign-in; the sign-out button (with its CSRF
/// token) and the account link after; and a family's sections on that family's pages.
#[derive(Clone, Copy, Default)]
pub struct Nav<'a> {
    pub csrf: Option<&'a str>,
    pub family: Option<&'a str>,
}

impl<'a> Nav<'a> {
    pub fn signed_in(csrf: &'a str) -> Self {
        Self { csrf: Some(csrf), family: None }
    }

    pub fn family(csrf: &'a str, family: &'a str) -> Self {
        Self { csrf: Some(csrf), family: Some(family) }
    }
}

/// The sections of a family's pages, in the order the navigation shows them.
pub const FAMILY_SECTIONS: [(&str, &str); 6] = [
    ("devices", "Toys and devices"),
    ("contacts", "Contacts"),
    ("learning", "Learning"),
    ("reports", "Reports"),
    ("privacy", "Privacy"),
    ("security", "Security"),
];

/// The frame of every page.
fn layout(title: &str, nav: Nav<'_>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Cubby" }
                link rel="stylesheet" href=(STYLESHEET_PATH);
            }
            body {
                a.skip href="#main" { "Skip to the page" }
                header {
                    a.brand href="/" { "Cubby" }
                    @if let Some(csrf) = nav.csrf {
                        nav.account aria-label="Account" {
                            a href="/account" { "Your account" }
                            form.inline method="post" action="/sign-out" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                @if let Some(family) = nav.family {
                    nav.sections aria-label="Family" {
                        a href="/" { "Family" }
                        @for (section, label) in FAMILY_SECTIONS {
                            a href=(format!("/families/{family}/{section}")) { (label) }
                        }
                    }
                }
                main id="main" { (main) }
                footer { a href=(PRIVACY_NOTICE) { "Privacy notice" } }
            }
        }
    }
}

/// An HTML answer with a status.
fn page(status: StatusCode, markup: Markup) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response()
}

/// A page that only explains what went wrong, in the API's words (never a trace).
fn problem(error: &ApiError, csrf: Option<&str>) -> Response {
    let status = status_for(error.code());
    page(status, layout("Something went wrong", Nav { csrf, family: None }, html! {
        h1 { "That did not work" }
        p.error role="alert" { (error.message()) }
        p { a href="/" { "Back to your family" } }
    }))
}

/// An error to show beside the form that caused it, in plain words. `form` is the form's
/// id on the page (e.g. `add-child-<family>`), so only that form shows it.
pub struct Notice {
    pub form: String,
    pub message: String,
    pub status: StatusCode,
}

impl Notice {
    pub fn new(form: impl Into<String>, error: &ApiError) -> Self {
        Self { form: form.into(), message: error.message().to_owned(), status: status_for(error.code()) }
    }

    /// The message for `form`, if the notice is about it.
    pub fn for_form<'a>(notice: Option<&'a Self>, form: &str) -> Option<&'a str> {
        notice.filter(|n| n.form == form).map(|n| n.message.as_str())
    }

    /// The page's status: the error's, or 200 without one.
    pub fn status(notice: Option<&Self>) -> StatusCode {
        notice.map_or(StatusCode::OK, |n| n.status)
    }
}

/// The error paragraph beside a form (nothing without an error). Marked by a word and a
/// border as well as colour, and announced to screen readers.
pub fn error_for(notice: Option<&Notice>, form: &str) -> Markup {
    html! {
        @if let Some(message) = Notice::for_form(notice, form) {
            p.error role="alert" id=(format!("{form}-error")) { (message) }
        }
    }
}

/// The body of a form that carries nothing but its CSRF token (a button).
#[derive(serde::Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

/// A posted form's body, which carries the CSRF token of the page it came from.
pub trait WithCsrf: DeserializeOwned {
    fn csrf(&self) -> &str;
}

/// Implements [`WithCsrf`] for forms whose token is their `csrf` field.
macro_rules! with_csrf {
    ($($form:ty),* $(,)?) => { $(impl $crate::portal::WithCsrf for $form { fn csrf(&self) -> &str { &self.csrf } })* };
}
use with_csrf;

with_csrf!(CsrfOnly, Confirmation);

/// A signed-in guardian's posted form: its fields, the guardian and the session's CSRF
/// token for the page that answers, or the page refusing it (a malformed body, no
/// session, a wrong token). The token is checked before any other field is looked at.
async fn posted<T: WithCsrf>(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<(T, Guardian, String), Response> {
    let fields: T = form(body).map_err(|error| problem(&error, None))?;
    let (guardian, csrf) = signed_in(state, headers, Some(fields.csrf())).await?;
    Ok((fields, guardian, csrf))
}

/// A destructive form's required "I understand" checkbox, with the form's CSRF token.
#[derive(serde::Deserialize)]
pub struct Confirmation {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    confirm: String,
}

impl Confirmation {
    /// Refuses with `missing` unless the box was ticked (browsers enforce `required`; this
    /// covers any post that skips them).
    pub fn require(&self, missing: &str) -> Result<(), ApiError> {
        if self.confirm.is_empty() { Err(ApiError::new(ErrorCode::InvalidBody, missing.to_owned())) } else { Ok(()) }
    }

    /// [`Self::require`] on a form body whose CSRF token was already checked.
    pub fn given(body: &Bytes, missing: &str) -> Result<(), ApiError> {
        form::<Self>(body)?.require(missing)
    }
}

/// Whether the browser has no session at all (rather than one that is refused), so an
/// emailed link's page can say what the link is before sending the visitor to sign in.
async fn no_session(state: &AppState, headers: &HeaderMap) -> bool {
    authenticate(state, headers, None).await.is_err_and(|error| error.code() == ErrorCode::Unauthenticated)
}

/// Where an emailed link's page sends a visitor who is not signed in: the sign-in page,
/// which comes back to `path?token=<token>` afterwards.
fn sign_in_then(path: &str, token: &str) -> String {
    let here = format!("{path}?{}", serde_urlencoded::to_string([("token", token)]).unwrap_or_default());
    format!("/sign-in?{}", serde_urlencoded::to_string([("next", here)]).unwrap_or_default())
}

/// Decodes a form body; a malformed one is answered like any invalid input.
fn form<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_urlencoded::from_bytes(body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidBody, "the form was not filled in completely"))
}

/// The signed-in guardian and the CSRF token their forms carry. `change` is the token a
/// form sent, checked by the API's own rule. No session: back to the sign-in page.
async fn signed_in(state: &AppState, headers: &HeaderMap, change: Option<&str>) -> Result<(Guardian, String), Response> {
    match authenticate(state, headers, change).await {
        Ok(guardian) => {
            let csrf = session_token(headers).map(|(token, _)| csrf_token(state, &token)).unwrap_or_default();
            Ok((guardian, csrf))
        }
        Err(error) if error.code() == ErrorCode::Unauthenticated => Err(Redirect::to("/sign-in").into_response()),
        Err(error) if error.code() == ErrorCode::CsrfRejected => Err(problem(&csrf_rejected(), None)),
        Err(error) => Err(problem(&error, None)),
    }
}

/// Before a session exists (sign up, sign in, a password reset, an emailed link), forms are
/// tied to a random cookie of their own: their CSRF token is a MAC of it, so another site
/// can neither post them nor sign a parent into its own account.
pub mod anonymous {
    use axum::http::{HeaderMap, HeaderValue, header};
    use axum::response::Response;
    use cubby_crypto::{new_token, token_hash};

    use super::{TlsSettings, problem};
    use crate::http::auth::csrf_token;
    use crate::http::{ApiError, AppState};

    const FORM_COOKIE: &str = "cubby_form";

    fn nonce(headers: &HeaderMap) -> Option<String> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| pair.trim().strip_prefix(FORM_COOKIE)?.strip_prefix('='))
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    }

    /// The browser's form nonce (a new one if it has none) and the CSRF token for it. Put
    /// the token in the form and pass the nonce to [`remember`] on the response.
    #[allow(clippy::result_large_err)] // the error is the page to answer with, returned at once
    pub fn token(state: &AppState, headers: &HeaderMap) -> Result<(String, String), Response> {
        let nonce = match nonce(headers) {
            Some(nonce) => nonce,
            None => new_token().map(|(nonce, _)| nonce).map_err(|error| problem(&ApiError::from(error), None))?,
        };
        let csrf = csrf_token(state, &nonce);
        Ok((nonce, csrf))
    }

    /// Sets the nonce cookie the form's token was made from.
    pub fn remember(state: &AppState, response: &mut Response, nonce: &str) {
        let secure = if state.config.tls != TlsSettings::None { "; Secure" } else { "" };
        let cookie = format!("{FORM_COOKIE}={nonce}; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600{secure}");
        if let Ok(cookie) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
    }

    /// Checks a posted form's token against the browser's nonce cookie; returns the nonce
    /// (to re-render the form with) or the page refusing the post.
    #[allow(clippy::result_large_err)] // the error is the page to answer with, returned at once
    pub fn check(state: &AppState, headers: &HeaderMap, csrf: &str) -> Result<String, Response> {
        let nonce = nonce(headers).unwrap_or_default();
        // Compared as hashes, so timing says nothing about the expected token.
        if nonce.is_empty() || token_hash(csrf) != token_hash(&csrf_token(state, &nonce)) {
            return Err(problem(&super::csrf_rejected(), None));
        }
        Ok(nonce)
    }
}

/// The answer to a form that did not come from one of our pages (or is out of date).
pub fn csrf_rejected() -> ApiError {
    ApiError::new(ErrorCode::CsrfRejected, "this form is out of date or did not come from Cubby: reload the page and try again")
}
