//! What happened to a family and to one's account: the family's security events, the
//! guardian's signed-in sessions (and signing them out), and the account page (password,
//! sessions, deleting the account). All through the API's handlers.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cubby_core::ErrorCode;
use maud::{Markup, html};
use serde::Deserialize;

use super::dates::when;
use super::session::{local_path, query_value, with_cookie_of};
use super::sign_up::{message_page, new_password_field};
use super::{Nav, Notice, error_for, layout, page, posted, problem, signed_in, with_csrf};
use crate::api::accounts::{self, ChangePassword};
use crate::api::families::{self, SecurityEvent};
use crate::api::sessions::{self, SessionInfo};
use crate::http::auth::{Guardian, cleared_cookie};
use crate::http::{ApiError, ApiJson, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/families/{family}/security", get(family_security))
        .route("/account", get(account))
        .route("/account/password", post(change_password))
        .route("/account/delete", post(delete_account))
        .route("/account/deleted", get(account_deleted))
        .route("/account/sessions/{session}/sign-out", post(sign_out_session))
        .route("/account/sessions/sign-out-everywhere", post(sign_out_everywhere))
}

// --- Security events ---

/// An audit action in plain words (an unknown one is shown as it is).
fn event_label(action: &str) -> &str {
    match action {
        "account.created" => "Account created",
        "account.email_verified" => "Email address confirmed",
        "account.deleted" => "Account deleted",
        "login.succeeded" => "Signed in",
        "login.failed" => "A sign-in failed (wrong password)",
        "password.changed" => "Password changed",
        "password.reset" => "Password reset by email link",
        "password.reset_requested" => "Password reset asked for",
        "session.signed_out" => "A session was signed out",
        "session.signed_out_everywhere" => "Signed out everywhere",
        "family.created" => "Family created",
        "family.deleted" => "Family deleted",
        "family.exported" => "The family's data was downloaded",
        "family.guardian_invited" => "A co-guardian was invited",
        "family.guardian_joined" => "A co-guardian joined",
        "family.guardian_left" => "A guardian left the family",
        "family.guardian_removed_idle" => "An unused guardian account was removed",
        "family.message_retention_set" => "How long messages are kept was changed",
        "consent.requested" => "Consent was asked for (email sent)",
        "consent.given" => "Consent was given",
        "consent.withdrawn" => "Consent was withdrawn",
        "consent.third_party_withdrawn" => "Consent to sharing with third parties was withdrawn",
        "child.created" => "A child was added",
        "child.updated" => "A child's details were changed",
        "child.deleted" => "A child was deleted",
        "child.exported" => "A child's data was downloaded",
        "child.quiet_hours_set" => "Quiet hours were set",
        "child.quiet_hours_removed" => "Quiet hours were removed",
        "child.supervision_set" => "Contact supervision was changed",
        "device.paired" => "A toy or app was paired",
        "device.pairing_denied" => "A pairing was refused",
        "device.revoked" => "A toy or app was revoked",
        "device.wipe_requested" => "A toy was asked to erase itself",
        "contact.requested" | "contact.code_created" => "A contact was asked for",
        "contact.request_received" => "Another family asked to be a contact",
        "contact.approved" | "contact.adult_accepted" => "A contact was approved",
        "contact.adult_invited" => "An adult was invited as a contact",
        "contact.removed" => "A contact was removed",
        "contact.blocked" => "A contact was blocked",
        "report.received" => "A child reported a message",
        "report.escalated" => "A report was passed on",
        "report.deleted" => "A report was deleted",
        "retention.expired" => "Old messages were deleted",
        other => other,
    }
}

/// Who did it, in plain words: never another guardian's account id.
fn actor_label(actor: &str, guardian: &Guardian) -> &'static str {
    match actor.split_once(':') {
        Some(("account", id)) if id == guardian.account.to_string() => "You",
        Some(("account", _)) => "Another guardian",
        Some(("device", _)) => "A toy or app",
        _ if actor == "system" => "Cubby",
        _ if actor == "operator" => "The server's operator",
        _ => "Someone not signed in",
    }
}

fn events_table(events: &[SecurityEvent], guardian: &Guardian) -> Markup {
    html! {
        @if events.is_empty() {
            p { "Nothing has happened yet." }
        } @else {
            table.records {
                caption { "Newest first" }
                thead { tr { th scope="col" { "When" } th scope="col" { "What" } th scope="col" { "Who" } } }
                tbody {
                    @for event in events {
                        tr {
                            td { (when(event.at)) }
                            td { (event_label(&event.action)) }
                            td { (actor_label(&event.actor, guardian)) }
                        }
                    }
                }
            }
        }
    }
}

pub async fn family_security(State(state): State<AppState>, headers: HeaderMap, Path(family): Path<String>) -> Response {
    let (guardian, csrf) = match signed_in(&state, &headers, None).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    let loaded = async {
        let ApiJson(events) = families::security_events(State(state.clone()), guardian.clone(), Path(family.clone())).await?;
        let ApiJson(sessions) = sessions::list(State(state.clone()), guardian.clone()).await?;
        Ok::<_, ApiError>((events, sessions))
    };
    let (events, sessions) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return problem(&error, Some(&csrf)),
    };
    let back = format!("/families/{family}/security");
    let main = html! {
        h1 { "Security" }
        section aria-labelledby="events" {
            h2 id="events" { "What happened in this family" }
            (events_table(&events, &guardian))
        }
        (sessions_section(&sessions, &csrf, &back))
    };
    page(StatusCode::OK, layout("Security", Nav::family(&csrf, &family), main))
}

// --- Sessions ---

const SIGN_OUT_EVERYWHERE: &str = "sign-out-everywhere";

fn sign_out_form_id(session: &SessionInfo) -> String {
    format!("sign-out-session-{}", session.id)
}

/// The guardian's sessions, each with its sign-out button. `back`: the page to return to.
fn sessions_section(sessions: &[SessionInfo], csrf: &str, back: &str) -> Markup {
    html! {
        section aria-labelledby="sessions" {
            h2 id="sessions" { "Where you are signed in" }
            table.records {
                thead { tr {
                    th scope="col" { "Browser or app" } th scope="col" { "Signed in" } th scope="col" { "Last used" }
                    th scope="col" { span.visually-hidden { "Action" } }
                } }
                tbody {
                    @for session in sessions {
                        tr {
                            td { @if session.current { strong { "This browser (this session)" } } @else { "Another browser or app" } }
                            td { (when(session.created_at)) }
                            td { (when(session.last_seen_at)) }
                            td {
                                form.inline id=(sign_out_form_id(session)) method="post"
                                    action=(format!("/account/sessions/{}/sign-out", session.id)) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="back" value=(back);
                                    button type="submit" aria-label=(format!("Sign out the session signed in on {}", when(session.created_at))) { "Sign out" }
                                }
                            }
                        }
                    }
                }
            }
            form id=(SIGN_OUT_EVERYWHERE) method="post" action="/account/sessions/sign-out-everywhere" {
                input type="hidden" name="csrf" value=(csrf);
                p.small { "Lost a phone, or signed in on a shared computer? This signs out every browser and app, this one included." }
                button type="submit" { "Sign out everywhere" }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct SessionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    back: String,
}

with_csrf!(SessionForm, AccountForm, DeleteForm);

pub async fn sign_out_session(State(state): State<AppState>, headers: HeaderMap, Path(session): Path<String>, body: Bytes) -> Response {
    let (fields, guardian, csrf) = match posted::<SessionForm>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let this_session = session == guardian.session.to_string();
    match sessions::sign_out_one(State(state), guardian, Path(session)).await {
        Ok(_) if this_session => signed_out(),
        Ok(_) => Redirect::to(local_path(&fields.back).unwrap_or("/account")).into_response(),
        Err(error) => problem(&error, Some(&csrf)),
    }
}

pub async fn sign_out_everywhere(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (_, guardian, csrf) = match posted::<SessionForm>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    match sessions::sign_out_all(State(state), guardian).await {
        Ok(api_response) => with_cookie_of(Redirect::to("/sign-in"), &api_response),
        Err(error) => problem(&error, Some(&csrf)),
    }
}

/// Back to sign in, with the browser's session cookie cleared.
fn signed_out() -> Response {
    ([(header::SET_COOKIE, cleared_cookie())], Redirect::to("/sign-in")).into_response()
}

// --- The account page ---

const CHANGE_PASSWORD: &str = "change-password";
const CURRENT_PASSWORD: &str = "current-password";
const NEW_PASSWORD: &str = "new-password";
const DELETE_ACCOUNT: &str = "delete-account";

async fn render_account(state: &AppState, guardian: &Guardian, csrf: &str, notice: Option<&Notice>, done: Option<&str>) -> Response {
    let loaded = async {
        let ApiJson(me) = accounts::me(State(state.clone()), guardian.clone()).await?;
        let ApiJson(sessions) = sessions::list(State(state.clone()), guardian.clone()).await?;
        Ok::<_, ApiError>((me, sessions))
    };
    let (me, sessions) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return problem(&error, Some(csrf)),
    };
    let main = html! {
        h1 { "Your account" }
        @if let Some(done) = done {
            p.notice role="status" { (done) }
        }
        p { "Signed in as " strong { (me.email) } "." }
        (change_password_form(csrf, notice))
        (sessions_section(&sessions, csrf, "/account"))
        (delete_account_form(csrf, notice))
    };
    page(Notice::status(notice), layout("Your account", Nav::signed_in(csrf), main))
}

fn change_password_form(csrf: &str, notice: Option<&Notice>) -> Markup {
    html! {
        form id=(CHANGE_PASSWORD) method="post" action="/account/password" {
            input type="hidden" name="csrf" value=(csrf);
            h2 { "Change your password" }
            p.small { "Every other browser and app signed in to your account is then signed out." }
            (error_for(notice, CHANGE_PASSWORD))
            label for=(CURRENT_PASSWORD) { "Current password" }
            input id=(CURRENT_PASSWORD) name="current_password" type="password" autocomplete="current-password" required;
            (error_for(notice, CURRENT_PASSWORD))
            (new_password_field(NEW_PASSWORD, "new_password", "New password", notice))
            button type="submit" { "Change my password" }
        }
    }
}

fn delete_account_form(csrf: &str, notice: Option<&Notice>) -> Markup {
    html! {
        form id=(DELETE_ACCOUNT) method="post" action="/account/delete" {
            input type="hidden" name="csrf" value=(csrf);
            h2 { "Delete your account" }
            p { "Your account, your email address and your sessions are deleted for good. If you are the last "
                "guardian of a family, delete the family or invite another guardian first." }
            (error_for(notice, DELETE_ACCOUNT))
            div.tick {
                input type="checkbox" id="delete-confirm" name="confirm" value="yes" required;
                label for="delete-confirm" { "I understand that my account is deleted for good and cannot be restored." }
            }
            button type="submit" { "Delete my account" }
        }
    }
}

pub async fn account(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let (guardian, csrf) = match signed_in(&state, &headers, None).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    let done = (query_value(query.as_deref(), "done") == "password")
        .then_some("Your password is changed. Every other browser and app was signed out.");
    render_account(&state, &guardian, &csrf, None, done).await
}

#[derive(Deserialize)]
pub struct AccountForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

/// Which field a refused password change is about.
fn password_error_place(error: &ApiError) -> &'static str {
    match error.code() {
        ErrorCode::WeakPassword => NEW_PASSWORD,
        ErrorCode::InvalidCredentials => CURRENT_PASSWORD,
        _ => CHANGE_PASSWORD,
    }
}

pub async fn change_password(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (fields, guardian, csrf) = match posted::<AccountForm>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let change = ChangePassword { current_password: fields.current_password, new_password: fields.new_password };
    match accounts::change_password(State(state.clone()), guardian.clone(), ApiJson(change)).await {
        Ok(_) => Redirect::to("/account?done=password").into_response(),
        Err(error) => {
            let notice = Notice::new(password_error_place(&error), &error);
            render_account(&state, &guardian, &csrf, Some(&notice), None).await
        }
    }
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

pub async fn delete_account(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (fields, guardian, csrf) = match posted::<DeleteForm>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let result = if fields.confirm.is_empty() {
        Err(ApiError::new(ErrorCode::InvalidBody, "tick the box to confirm that you want to delete your account"))
    } else {
        accounts::delete_me(State(state.clone()), guardian.clone()).await
    };
    match result {
        Ok(_) => ([(header::SET_COOKIE, cleared_cookie())], Redirect::to("/account/deleted")).into_response(),
        Err(error) => render_account(&state, &guardian, &csrf, Some(&Notice::new(DELETE_ACCOUNT, &error)), None).await,
    }
}

pub async fn account_deleted() -> Response {
    message_page(
        "Account deleted",
        "Your Cubby account is deleted, with your email address and every session. Thank you for using Cubby.",
        ("/sign-up", "Create a new account"),
    )
}
