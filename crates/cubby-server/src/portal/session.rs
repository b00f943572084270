//! Signing in and out. Sign-in calls the API's own `POST /api/v1/sessions` handler (same
//! throttling, audit and cookie); sign-out calls `DELETE /api/v1/session`'s. Also the
//! small pieces the account pages share: an anonymous page with its form cookie, reading
//! a query, and keeping redirects on this site.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{CsrfOnly, Nav, Notice, PRIVACY_NOTICE, anonymous, error_for, form, layout, page, posted, problem};
use crate::api::sessions::{self, Login};
use crate::http::client::ClientAddr;
use crate::http::{ApiJson, AppState};

const FORM_ID: &str = "sign-in";

/// A page shown before sign-in: `body` gets the CSRF token for its forms, and the answer
/// sets the browser's form cookie that token is made from.
pub(super) fn anonymous_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    title: &str,
    body: impl FnOnce(&str) -> Markup,
) -> Response {
    let (nonce, csrf) = match anonymous::token(state, headers) {
        Ok(token) => token,
        Err(response) => return response,
    };
    let mut response = page(status, layout(title, Nav::default(), body(&csrf)));
    anonymous::remember(state, &mut response, &nonce);
    response
}

/// One parameter of a query string (empty when missing or malformed), so a mangled link
/// still gets a page that explains, not a bare 400.
pub(super) fn query_value(query: Option<&str>, name: &str) -> String {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query.unwrap_or_default())
        .ok()
        .and_then(|pairs| pairs.into_iter().find(|(key, _)| key == name))
        .map(|(_, value)| value)
        .unwrap_or_default()
}

/// `raw` if it is a path on this site: one leading `/` and no `//`, backslash (browsers
/// read `/\` as `//`), scheme-changing trick or control character, so a link cannot send
/// a parent, just signed in, to another site.
pub(super) fn local_path(raw: &str) -> Option<&str> {
    let local = raw.starts_with('/')
        && !raw.starts_with("//")
        && raw.len() <= 2048
        && raw.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    local.then_some(raw)
}

/// What the sign-in form shows again after a failed attempt.
#[derive(Default)]
struct Typed<'a> {
    email: &'a str,
    next: Option<&'a str>,
}

fn sign_in_form(csrf: &str, typed: &Typed<'_>, notice: Option<&Notice>) -> Markup {
    html! {
        h1 { "Sign in" }
        form id=(FORM_ID) method="post" action="/sign-in" {
            input type="hidden" name="csrf" value=(csrf);
            @if let Some(next) = typed.next {
                input type="hidden" name="next" value=(next);
            }
            (error_for(notice, FORM_ID))
            label for="email" { "Email address" }
            input id="email" name="email" type="email" autocomplete="username" required value=(typed.email);
            label for="password" { "Password" }
            input id="password" name="password" type="password" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
        p { a href="/forgot-password" { "Forgot your password?" } }
        p { "New to Cubby? " a href="/sign-up" { "Create an account" } "." }
        p.small { "We use your email address only to sign you in and to write to you. "
            a href=(PRIVACY_NOTICE) { "Read the privacy notice" } "." }
    }
}

fn render(state: &AppState, headers: &HeaderMap, typed: &Typed<'_>, notice: Option<&Notice>) -> Response {
    anonymous_page(state, headers, Notice::status(notice), "Sign in", |csrf| sign_in_form(csrf, typed, notice))
}

/// `?next=/local/path`: where to go once signed in (an emailed link's page, say).
pub async fn sign_in_page(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let next = query_value(query.as_deref(), "next");
    render(&state, &headers, &Typed { email: "", next: local_path(&next) }, None)
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

pub async fn sign_in(State(state): State<AppState>, headers: HeaderMap, client: ClientAddr, body: Bytes) -> Response {
    let fields: SignInForm = match form(&body) {
        Ok(fields) => fields,
        Err(error) => return problem(&error, None),
    };
    if let Err(refused) = anonymous::check(&state, &headers, &fields.csrf) {
        return refused;
    }
    let next = local_path(&fields.next);
    let login = Login { email: fields.email.clone(), password: fields.password };
    match sessions::login(State(state.clone()), client, ApiJson(login)).await {
        Ok(api_response) => with_cookie_of(Redirect::to(next.unwrap_or("/")), &api_response),
        Err(error) => {
            let typed = Typed { email: &fields.email, next };
            render(&state, &headers, &typed, Some(&Notice::new(FORM_ID, &error)))
        }
    }
}

pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (_, guardian, _) = match posted::<CsrfOnly>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    match sessions::sign_out(State(state), guardian).await {
        Ok(api_response) => with_cookie_of(Redirect::to("/sign-in"), &api_response),
        Err(error) => problem(&error, None),
    }
}

/// `redirect`, carrying the session cookie the API's answer set (or cleared).
pub(super) fn with_cookie_of(redirect: Redirect, api_response: &Response) -> Response {
    let mut response = redirect.into_response();
    if let Some(cookie) = api_response.headers().get(header::SET_COOKIE) {
        response.headers_mut().insert(header::SET_COOKIE, cookie.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_paths_on_this_site_are_followed() {
        for good in ["/", "/accept-invite?token=abc", "/families/x/consent"] {
            assert_eq!(local_path(good), Some(good));
        }
        for bad in ["", "//evil.example", "/\\evil.example", "https://evil.example", "evil", "/a b", "/\r\nSet-Cookie:x"] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
    }
}
