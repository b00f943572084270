//! Signing in and out. Sign-in calls the API's own `POST /api/v1/sessions` handler (same
//! throttling, audit and cookie); sign-out calls `DELETE /api/v1/session`'s.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cubby_core::ErrorCode;
use cubby_crypto::{new_token, token_hash};
use maud::html;
use serde::Deserialize;

use super::{PRIVACY_NOTICE, form, layout, page, problem, signed_in};
use crate::api::sessions::{self, Login};
use crate::config::TlsSettings;
use crate::http::auth::csrf_token;
use crate::http::client::ClientAddr;
use crate::http::error::status_for;
use crate::http::{ApiError, ApiJson, AppState};

/// Before a session exists, the sign-in form is tied to a random cookie of its own (its
/// CSRF token is a MAC of it), so another site cannot sign a parent into its account.
const SIGN_IN_COOKIE: &str = "cubby_sign_in";

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

fn sign_in_nonce(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(SIGN_IN_COOKIE)?.strip_prefix('='))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

fn render(state: &AppState, status: StatusCode, nonce: &str, email: &str, error: Option<&str>) -> Response {
    let csrf = csrf_token(state, nonce);
    let markup = layout("Sign in", super::Nav::default(), html! {
        h1 { "Sign in" }
        form method="post" action="/sign-in" {
            input type="hidden" name="csrf" value=(csrf);
            @if let Some(error) = error {
                p.error id="sign-in-error" role="alert" { (error) }
            }
            label for="email" { "Email address" }
            input id="email" name="email" type="email" autocomplete="username" required value=(email);
            label for="password" { "Password" }
            input id="password" name="password" type="password" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
        p.small { "We use your email address only to sign you in and to write to you. "
            a href=(PRIVACY_NOTICE) { "Read the privacy notice" } "." }
    });
    let mut response = page(status, markup);
    let secure = if state.config.tls != TlsSettings::None { "; Secure" } else { "" };
    if let Ok(cookie) =
        HeaderValue::from_str(&format!("{SIGN_IN_COOKIE}={nonce}; Path=/sign-in; HttpOnly; SameSite=Strict; Max-Age=3600{secure}"))
    {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

pub async fn sign_in_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let nonce = match sign_in_nonce(&headers) {
        Some(nonce) => nonce,
        None => match new_token() {
            Ok((nonce, _)) => nonce,
            Err(error) => return problem(&ApiError::from(error), None),
        },
    };
    render(&state, StatusCode::OK, &nonce, "", None)
}

pub async fn sign_in(State(state): State<AppState>, headers: HeaderMap, client: ClientAddr, body: Bytes) -> Response {
    let fields: SignInForm = match form(&body) {
        Ok(fields) => fields,
        Err(error) => return problem(&error, None),
    };
    let nonce = sign_in_nonce(&headers).unwrap_or_default();
    // Compared as hashes, so timing says nothing about the expected token.
    if nonce.is_empty() || token_hash(&fields.csrf) != token_hash(&csrf_token(&state, &nonce)) {
        return problem(
            &ApiError::new(ErrorCode::CsrfRejected, "this form is out of date or did not come from Cubby: reload the page and try again"),
            None,
        );
    }
    let login = Login { email: fields.email.clone(), password: fields.password };
    match sessions::login(State(state.clone()), client, ApiJson(login)).await {
        Ok(api_response) => {
            let mut response = Redirect::to("/").into_response();
            if let Some(cookie) = api_response.headers().get(header::SET_COOKIE) {
                response.headers_mut().insert(header::SET_COOKIE, cookie.clone());
            }
            response
        }
        Err(error) => render(&state, status_for(error.code()), &nonce, &fields.email, Some(error.message())),
    }
}

pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let fields: CsrfOnly = match form(&body) {
        Ok(fields) => fields,
        Err(error) => return problem(&error, None),
    };
    let (guardian, _) = match signed_in(&state, &headers, Some(&fields.csrf)).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    match sessions::sign_out(State(state), guardian).await {
        Ok(api_response) => {
            let mut response = Redirect::to("/sign-in").into_response();
            if let Some(cookie) = api_response.headers().get(header::SET_COOKIE) {
                response.headers_mut().insert(header::SET_COOKIE, cookie.clone());
            }
            response
        }
        Err(error) => problem(&error, None),
    }
}
