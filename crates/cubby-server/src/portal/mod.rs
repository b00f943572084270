//! The parent portal: server-rendered pages at `/`, built into the binary (no front-end
//! build). Every change goes through the API's own handlers, so the portal applies the
//! same authorisation, validation and audit as `/api/v1`: it is a second face, not a
//! second implementation. Not part of the OpenAPI document (these are pages, not API).

mod family;
mod pair;
mod session;

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

use crate::http::auth::{Guardian, authenticate, csrf_token, session_token};
use crate::http::error::status_for;
use crate::http::{ApiError, AppState};

/// No inline script or style can run, nothing loads from elsewhere, no page can frame us,
/// and forms only post back here: an injected tag has nothing to work with.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

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
        .route("/families/{family}/children", post(family::add_child))
        .route("/families/{family}/pair", post(pair::approve))
        .route("/families/{family}/devices/{device}/revoke", post(pair::revoke))
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

/// The frame of every page. `csrf` is given when signed in (for the sign-out button).
fn layout(title: &str, csrf: Option<&str>, main: Markup) -> Markup {
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
                header {
                    a.brand href="/" { "Cubby" }
                    @if let Some(csrf) = csrf {
                        form.inline method="post" action="/sign-out" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (main) }
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
    page(status, layout("Something went wrong", csrf, html! {
        h1 { "That did not work" }
        p.error role="alert" { (error.message()) }
        p { a href="/" { "Back to your family" } }
    }))
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
        Err(error) if error.code() == ErrorCode::CsrfRejected => Err(problem(
            &ApiError::new(ErrorCode::CsrfRejected, "this form is out of date or did not come from Cubby: reload the page and try again"),
            None,
        )),
        Err(error) => Err(problem(&error, None)),
    }
}
