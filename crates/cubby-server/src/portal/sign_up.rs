//! Creating an account and the pages its emails link to: confirming the address, and
//! resetting a forgotten password. All come before a session exists, so their forms are
//! tied to the browser's form cookie (`anonymous`). An emailed link only opens a page with
//! a button: a GET never uses a token up, since mail scanners prefetch links.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use cubby_core::ErrorCode;
use cubby_core::password_rules::MIN_PASSWORD_CHARS;
use maud::{Markup, html};
use serde::Deserialize;

use super::session::{anonymous_page, query_value};
use super::{Nav, Notice, PRIVACY_NOTICE, WithCsrf, anonymous, error_for, form, layout, page, problem, with_csrf};
use crate::api::accounts::{self, ResetConfirm, ResetRequest, SignUp, TokenBody};
use crate::http::client::ClientAddr;
use crate::http::{ApiError, ApiJson, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sign-up", get(sign_up_page).post(sign_up))
        .route("/sign-up/sent", get(sign_up_sent))
        .route("/verify-email", get(verify_email_page).post(verify_email))
        .route("/verify-email/done", get(verify_email_done))
        .route("/forgot-password", get(forgot_password_page).post(forgot_password))
        .route("/forgot-password/sent", get(forgot_password_sent))
        .route("/reset-password", get(reset_password_page).post(reset_password))
        .route("/reset-password/done", get(reset_password_done))
}

/// The id of the field an error is about: a weak password is explained beside the
/// password, anything else beside the form.
fn error_place<'a>(error: &ApiError, form_id: &'a str, password_field: &'a str) -> &'a str {
    if error.code() == ErrorCode::WeakPassword { password_field } else { form_id }
}

/// A new password field with its rule (the API's own minimum), and its error (if any)
/// right under it.
pub(super) fn new_password_field(id: &str, name: &str, label: &str, notice: Option<&Notice>) -> Markup {
    let rule = format!("{id}-rule");
    html! {
        label for=(id) { (label) }
        p.small id=(rule) {
            "At least " (MIN_PASSWORD_CHARS) " characters. A few unrelated words make a long password that is easy "
            "to remember."
        }
        input id=(id) name=(name) type="password" autocomplete="new-password" minlength=(MIN_PASSWORD_CHARS) required
            aria-describedby=(rule);
        (error_for(notice, id))
    }
}

/// A page with nothing to fill in: what happened and where to go next.
pub(super) fn message_page(title: &str, message: &str, link: (&str, &str)) -> Response {
    page(StatusCode::OK, layout(title, Nav::default(), html! {
        h1 { (title) }
        p role="status" { (message) }
        p { a href=(link.0) { (link.1) } }
    }))
}

/// Decodes an anonymous form and checks its CSRF token against the browser's cookie.
/// The error is the page refusing it, as with `anonymous::check`.
#[allow(clippy::result_large_err)]
pub(super) fn anonymous_form<T: WithCsrf>(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<T, Response> {
    let fields: T = form(body).map_err(|error| problem(&error, None))?;
    anonymous::check(state, headers, fields.csrf())?;
    Ok(fields)
}

with_csrf!(SignUpForm, TokenForm, EmailForm, ResetForm);

// --- Sign up ---

const SIGN_UP: &str = "sign-up";
const SIGN_UP_PASSWORD: &str = "password";

fn sign_up_form(csrf: &str, email: &str, notice: Option<&Notice>) -> Markup {
    html! {
        h1 { "Create your Cubby account" }
        p { "We keep your email address, to sign you in and to write to you, and a scrambled form of "
            "your password (never the password itself). Nothing else about you. Your children's details "
            "come later, only after you have read the privacy notice and given your consent." }
        p { a href=(PRIVACY_NOTICE) { "Read the privacy notice" } }
        form id=(SIGN_UP) method="post" action="/sign-up" {
            input type="hidden" name="csrf" value=(csrf);
            (error_for(notice, SIGN_UP))
            label for="email" { "Email address" }
            input id="email" name="email" type="email" autocomplete="email" required value=(email);
            (new_password_field(SIGN_UP_PASSWORD, "password", "Password", notice))
            button type="submit" { "Create my account" }
        }
        p { "Already have an account? " a href="/sign-in" { "Sign in" } "." }
    }
}

pub async fn sign_up_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    anonymous_page(&state, &headers, StatusCode::OK, "Create an account", |csrf| sign_up_form(csrf, "", None))
}

#[derive(Deserialize)]
pub struct SignUpForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

pub async fn sign_up(State(state): State<AppState>, headers: HeaderMap, client: ClientAddr, body: Bytes) -> Response {
    let fields: SignUpForm = match anonymous_form(&state, &headers, &body) {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let request = SignUp { email: fields.email.clone(), password: fields.password };
    match accounts::sign_up(State(state.clone()), client, ApiJson(request)).await {
        Ok(_) => Redirect::to("/sign-up/sent").into_response(),
        Err(error) => {
            let notice = Notice::new(error_place(&error, SIGN_UP, SIGN_UP_PASSWORD), &error);
            anonymous_page(&state, &headers, notice.status, "Create an account", |csrf| {
                sign_up_form(csrf, &fields.email, Some(&notice))
            })
        }
    }
}

pub async fn sign_up_sent() -> Response {
    message_page(
        "Check your email",
        "If the address can be used, we have sent it a link to confirm it. Open it within 24 hours, then sign in. \
         Nothing arrived? Look in the spam folder, or sign up again in a few minutes.",
        ("/sign-in", "Go to sign in"),
    )
}

// --- Confirming the address ---

const VERIFY_EMAIL: &str = "verify-email";

/// A page with one button that posts the emailed token back.
pub(super) fn token_form(csrf: &str, form_id: &str, action: &str, token: &str, button: &str, notice: Option<&Notice>) -> Markup {
    html! {
        form id=(form_id) method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="token" value=(token);
            (error_for(notice, form_id))
            button type="submit" { (button) }
        }
    }
}

/// The page an emailed link opens: `body` (given the CSRF token, the link's token and any
/// error) holds a [`token_form`] with id `form`, whose post goes to `done` once the API
/// accepts the token. Anonymous: the emailed token is the proof, and the link may open in
/// another browser.
pub(super) struct EmailedLink {
    pub title: &'static str,
    pub form: &'static str,
    pub body: fn(&str, &str, Option<&Notice>) -> Markup,
    pub done: &'static str,
}

impl EmailedLink {
    /// The page for the link's `?token=`.
    pub fn show(&self, state: &AppState, headers: &HeaderMap, query: Option<&str>) -> Response {
        let token = query_value(query, "token");
        anonymous_page(state, headers, StatusCode::OK, self.title, |csrf| (self.body)(csrf, &token, None))
    }

    /// The posted token, given to `redeem` (the API's handler): on to `done`, or the page
    /// again with the API's refusal beside the form.
    pub async fn redeem<T, Answer>(&self, state: &AppState, headers: &HeaderMap, body: &Bytes, redeem: impl FnOnce(String) -> Answer) -> Response
    where
        Answer: Future<Output = Result<T, ApiError>>,
    {
        let fields: TokenForm = match anonymous_form(state, headers, body) {
            Ok(fields) => fields,
            Err(response) => return response,
        };
        match redeem(fields.token.clone()).await {
            Ok(_) => Redirect::to(self.done).into_response(),
            Err(error) => {
                let notice = Notice::new(self.form, &error);
                anonymous_page(state, headers, notice.status, self.title, |csrf| (self.body)(csrf, &fields.token, Some(&notice)))
            }
        }
    }
}

const VERIFY_EMAIL_LINK: EmailedLink =
    EmailedLink { title: "Confirm your email address", form: VERIFY_EMAIL, body: verify_email_form, done: "/verify-email/done" };

fn verify_email_form(csrf: &str, token: &str, notice: Option<&Notice>) -> Markup {
    html! {
        h1 { "Confirm your email address" }
        p { "Press the button to confirm that this address is yours. Then you can sign in." }
        (token_form(csrf, VERIFY_EMAIL, "/verify-email", token, "Confirm my email address", notice))
    }
}

pub async fn verify_email_page(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    VERIFY_EMAIL_LINK.show(&state, &headers, query.as_deref())
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub token: String,
}

pub async fn verify_email(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    VERIFY_EMAIL_LINK
        .redeem(&state, &headers, &body, |token| accounts::verify_email(State(state.clone()), ApiJson(TokenBody { token })))
        .await
}

pub async fn verify_email_done() -> Response {
    message_page(
        "Address confirmed — sign in",
        "Your email address is confirmed. You can sign in now.",
        ("/sign-in", "Sign in"),
    )
}

// --- Forgotten password ---

const FORGOT_PASSWORD: &str = "forgot-password";

fn forgot_password_form(csrf: &str, email: &str, notice: Option<&Notice>) -> Markup {
    html! {
        h1 { "Forgot your password?" }
        p { "Give the address you signed up with. If it has an account, we email it a link to choose a new "
            "password; the link works for 30 minutes." }
        form id=(FORGOT_PASSWORD) method="post" action="/forgot-password" {
            input type="hidden" name="csrf" value=(csrf);
            (error_for(notice, FORGOT_PASSWORD))
            label for="email" { "Email address" }
            input id="email" name="email" type="email" autocomplete="email" required value=(email);
            button type="submit" { "Email me a reset link" }
        }
        p { a href="/sign-in" { "Back to sign in" } }
    }
}

pub async fn forgot_password_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    anonymous_page(&state, &headers, StatusCode::OK, "Forgot your password?", |csrf| forgot_password_form(csrf, "", None))
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

pub async fn forgot_password(State(state): State<AppState>, headers: HeaderMap, client: ClientAddr, body: Bytes) -> Response {
    let fields: EmailForm = match anonymous_form(&state, &headers, &body) {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let request = ResetRequest { email: fields.email.clone() };
    match accounts::request_reset(State(state.clone()), client, ApiJson(request)).await {
        Ok(_) => Redirect::to("/forgot-password/sent").into_response(),
        // Only throttling refuses: the answer never says whether the address has an account.
        Err(error) => {
            let notice = Notice::new(FORGOT_PASSWORD, &error);
            anonymous_page(&state, &headers, notice.status, "Forgot your password?", |csrf| {
                forgot_password_form(csrf, &fields.email, Some(&notice))
            })
        }
    }
}

pub async fn forgot_password_sent() -> Response {
    message_page(
        "Check your email",
        "If the address has a Cubby account, a link to choose a new password is on its way. It works for 30 minutes.",
        ("/sign-in", "Back to sign in"),
    )
}

// --- Choosing a new password ---

const RESET_PASSWORD: &str = "reset-password";
const RESET_PASSWORD_FIELD: &str = "new-password";

fn reset_password_form(csrf: &str, token: &str, notice: Option<&Notice>) -> Markup {
    html! {
        h1 { "Choose a new password" }
        p { "Once it is changed, every browser and app signed in to your account is signed out." }
        form id=(RESET_PASSWORD) method="post" action="/reset-password" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="token" value=(token);
            (error_for(notice, RESET_PASSWORD))
            (new_password_field(RESET_PASSWORD_FIELD, "password", "New password", notice))
            button type="submit" { "Change my password" }
        }
    }
}

pub async fn reset_password_page(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let token = query_value(query.as_deref(), "token");
    anonymous_page(&state, &headers, StatusCode::OK, "Choose a new password", |csrf| reset_password_form(csrf, &token, None))
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

pub async fn reset_password(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let fields: ResetForm = match anonymous_form(&state, &headers, &body) {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let request = ResetConfirm { token: fields.token.clone(), new_password: fields.password };
    match accounts::confirm_reset(State(state.clone()), ApiJson(request)).await {
        Ok(_) => Redirect::to("/reset-password/done").into_response(),
        Err(error) => {
            let notice = Notice::new(error_place(&error, RESET_PASSWORD, RESET_PASSWORD_FIELD), &error);
            anonymous_page(&state, &headers, notice.status, "Choose a new password", |csrf| {
                reset_password_form(csrf, &fields.token, Some(&notice))
            })
        }
    }
}

pub async fn reset_password_done() -> Response {
    message_page(
        "Password changed",
        "Your password is changed, and every session of your account is signed out. Sign in with the new password.",
        ("/sign-in", "Sign in"),
    )
}
