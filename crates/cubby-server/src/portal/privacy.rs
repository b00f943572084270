//! A family's privacy: how long messages wait on the server, consent, downloading
//! everything Cubby holds, and deleting a child or the whole family. Each change is the
//! API handler's (`api::retention`, `api::consent`, `api::children`, `api::families`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cubby_core::ErrorCode;
use maud::{Markup, html};
use serde::Deserialize;

use super::dates::iso_day;
use super::{Confirmation, CsrfOnly, Nav, Notice, PRIVACY_NOTICE, error_for, form, layout, page, posted, problem, signed_in};
use crate::api::consent::{self, ConsentStatus, ThirdPartyConsent};
use crate::api::retention::{self, MAX_DAYS, MessageRetention};
use crate::api::{children, families};
use crate::http::auth::Guardian;
use crate::http::{ApiError, ApiJson, AppState};
use crate::vault::ChildView;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/families/{family}/privacy", get(privacy_page))
        .route("/families/{family}/retention", post(set_retention))
        .route("/families/{family}/third-party", post(set_third_party))
        .route("/families/{family}/export", get(export_family))
        .route("/families/{family}/children/{child}/export", get(export_child))
        .route("/families/{family}/children/{child}/delete", post(delete_child))
        .route("/families/{family}/delete", post(delete_family))
}

fn privacy_url(family: &str) -> String {
    format!("/families/{family}/privacy")
}

/// The query the page is redirected to after a child is deleted, so it can say so.
const CHILD_DELETED: &str = "deleted=child";

/// Everything the privacy page shows, read through the API's handlers.
struct Family {
    id: String,
    name: String,
    retention: MessageRetention,
    consent: ConsentStatus,
    children: Vec<ChildView>,
}

async fn load(state: &AppState, guardian: &Guardian, family: &str) -> Result<Family, ApiError> {
    let path = || Path(family.to_owned());
    let ApiJson(details) = families::get(State(state.clone()), guardian.clone(), path()).await?;
    let ApiJson(retention) = retention::get(State(state.clone()), guardian.clone(), path()).await?;
    let ApiJson(consent) = consent::get_consent(State(state.clone()), guardian.clone(), path()).await?;
    let ApiJson(children) = children::list(State(state.clone()), guardian.clone(), path()).await?;
    Ok(Family { id: family.to_owned(), name: details.name, retention, consent, children })
}

async fn privacy_page(State(state): State<AppState>, headers: HeaderMap, Path(family): Path<String>, RawQuery(query): RawQuery) -> Response {
    let (guardian, csrf) = match signed_in(&state, &headers, None).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    let child_deleted = query.as_deref() == Some(CHILD_DELETED);
    render(&state, &guardian, &csrf, &family, None, child_deleted).await
}

/// The privacy page, with `notice` beside the form it concerns. Another family's (or no)
/// family: the API's 404, and nothing of it shown.
async fn render(state: &AppState, guardian: &Guardian, csrf: &str, family: &str, notice: Option<Notice>, child_deleted: bool) -> Response {
    let family = match load(state, guardian, family).await {
        Ok(family) => family,
        Err(error) => return problem(&error, Some(csrf)),
    };
    let notice = notice.as_ref();
    let main = html! {
        h1 { "Privacy" }
        @if child_deleted {
            p.notice role="status" { "The child's profile was deleted, with everything Cubby held about them." }
        }
        p { "What Cubby keeps about " (family.name) ", for how long, and how to take it with you or delete it. "
            "The " a href=(PRIVACY_NOTICE) { "privacy notice" } " explains it all in full." }
        (retention_section(&family, csrf, notice))
        (consent_section(&family, csrf, notice))
        (download_section(&family))
        (delete_section(&family, csrf, notice))
    };
    page(Notice::status(notice), layout("Privacy", Nav::family(csrf, &family.id), main))
}

/// What a post came to: `done` (post-redirect-get), the privacy page with the error
/// beside `form_id`, or, for something not in the guardian's families, the API's 404.
async fn outcome<T>(state: &AppState, guardian: &Guardian, csrf: &str, family: &str, form_id: &str, result: Result<T, ApiError>, done: &str) -> Response {
    match result {
        Ok(_) => Redirect::to(done).into_response(),
        Err(error) if error.code() == ErrorCode::NotFound => problem(&error, Some(csrf)),
        Err(error) => render(state, guardian, csrf, family, Some(Notice::new(form_id, &error)), false).await,
    }
}

// ---- Message retention ----

fn retention_section(family: &Family, csrf: &str, notice: Option<&Notice>) -> Markup {
    let days = family.retention.days.map(|d| d.to_string()).unwrap_or_default();
    html! {
        section aria-labelledby="retention-heading" {
            h2 id="retention-heading" { "How long messages are kept" }
            p { "Now: undelivered messages are deleted after " (family.retention.effective_days) " days." }
            (error_for(notice, "retention"))
            form id="retention" method="post" action=(format!("/families/{}/retention", family.id)) {
                input type="hidden" name="csrf" value=(csrf);
                label for="retention-days" { "Days to keep an undelivered message" }
                input id="retention-days" name="days" type="number" min="1" max=(MAX_DAYS) value=(days)
                    aria-describedby="retention-days-help";
                p.small id="retention-days-help" {
                    "A message, photo or voice clip a toy has not collected yet is deleted from the server after this many days "
                    "(1 to " (MAX_DAYS) "; empty for Cubby's default). A delivered one is deleted as soon as every toy it was for has it."
                }
                div.check {
                    input id="retention-keep-history" name="keep_history" type="checkbox" value="yes" checked[family.retention.keep_history]
                        aria-describedby="retention-keep-history-help";
                    label for="retention-keep-history" { "Toys keep the messages they have shown" }
                }
                p.small id="retention-keep-history-help" {
                    "Untick it and each toy deletes a message as soon as it has been shown, so nothing builds up on the toy."
                }
                button type="submit" { "Save how long messages are kept" }
            }
        }
    }
}

#[derive(Deserialize)]
struct RetentionForm {
    #[serde(default)]
    days: String,
    #[serde(default)]
    keep_history: Option<String>,
}

fn retention_from(body: &Bytes) -> Result<MessageRetention, ApiError> {
    let fields: RetentionForm = form(body)?;
    let days = match fields.days.trim() {
        "" => None,
        text => Some(text.parse::<i64>().map_err(|_| {
            ApiError::new(ErrorCode::InvalidBody, format!("the number of days must be a whole number from 1 to {MAX_DAYS}"))
        })?),
    };
    Ok(MessageRetention { days, keep_history: fields.keep_history.is_some(), effective_days: 0 })
}

async fn set_retention(State(state): State<AppState>, headers: HeaderMap, Path(family): Path<String>, body: Bytes) -> Response {
    let (_, guardian, csrf) = match posted::<CsrfOnly>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let result = match retention_from(&body) {
        Ok(choice) => retention::set(State(state.clone()), guardian.clone(), Path(family.clone()), ApiJson(choice)).await,
        Err(error) => Err(error),
    };
    outcome(&state, &guardian, &csrf, &family, "retention", result, &privacy_url(&family)).await
}

// ---- Consent ----

/// The notice version the family's consent to collection was given for, if it holds.
fn consented_version(consent: &ConsentStatus) -> Option<&str> {
    consent
        .records
        .iter()
        .rev()
        .find(|r| r.kind == "collection" && r.record.withdrawn_at.is_none())
        .map(|r| r.record.notice_version.as_str())
}

fn consent_section(family: &Family, csrf: &str, notice: Option<&Notice>) -> Markup {
    let consent = &family.consent;
    html! {
        section aria-labelledby="consent-heading" {
            h2 id="consent-heading" { "Consent" }
            @if consent.collection_valid {
                p { "Consent given to the " a href=(PRIVACY_NOTICE) { "privacy notice" } " (version "
                    (consented_version(consent).unwrap_or("current")) ")." }
            } @else {
                p { "Consent not given for the current " a href=(PRIVACY_NOTICE) { "privacy notice" } " (version "
                    (consent.current_notice_version) "): until a guardian gives it, no child can be added." }
            }
            p { a href=(format!("/families/{}/consent", family.id)) { "Give, review or withdraw consent" } }
            h3 { "Sharing with other companies" }
            p {
                "Separately from the above, you may allow Cubby to share your family's data with other companies "
                "named in the privacy notice. It is off unless you turn it on, and Cubby works fully without it."
            }
            (error_for(notice, "third-party"))
            form id="third-party" method="post" action=(format!("/families/{}/third-party", family.id)) {
                input type="hidden" name="csrf" value=(csrf);
                div.check {
                    input id="third-party-enabled" name="enabled" type="checkbox" value="yes" checked[consent.third_party];
                    label for="third-party-enabled" { "Allow sharing with the other companies named in the privacy notice" }
                }
                button type="submit" { "Save the sharing choice" }
            }
        }
    }
}

#[derive(Deserialize)]
struct ThirdPartyForm {
    #[serde(default)]
    enabled: Option<String>,
}

async fn set_third_party(State(state): State<AppState>, headers: HeaderMap, Path(family): Path<String>, body: Bytes) -> Response {
    let (_, guardian, csrf) = match posted::<CsrfOnly>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let result = match form::<ThirdPartyForm>(&body) {
        Ok(fields) => {
            let choice = ThirdPartyConsent { enabled: fields.enabled.is_some() };
            consent::set_third_party(State(state.clone()), guardian.clone(), Path(family.clone()), ApiJson(choice)).await
        }
        Err(error) => Err(error),
    };
    outcome(&state, &guardian, &csrf, &family, "third-party", result, &privacy_url(&family)).await
}

// ---- Downloads ----

fn download_section(family: &Family) -> Markup {
    html! {
        section aria-labelledby="download-heading" {
            h2 id="download-heading" { "Download your data" }
            p { "A file (JSON) with everything Cubby holds: your family, the children, consent, contacts, reports and the security log." }
            p { a id="download-family" href=(format!("/families/{}/export", family.id)) download { "Download everything about " (family.name) } }
            @if !family.children.is_empty() {
                ul {
                    @for child in &family.children {
                        li {
                            a id=(format!("download-child-{}", child.id)) href=(format!("/families/{}/children/{}/export", family.id, child.id)) download {
                                "Download " (child.nickname) "'s profile"
                            }
                        }
                    }
                }
            }
        }
    }
}

/// An export as a file to save, never kept by a cache. `exported_at` dates its name.
fn attachment(body: Response, name: &str, exported_at: i64) -> Response {
    let date = iso_day(exported_at);
    let mut response = body;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"cubby-{name}-{date}.json\"")) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    response
}

async fn export_family(State(state): State<AppState>, headers: HeaderMap, Path(family): Path<String>) -> Response {
    let (guardian, csrf) = match signed_in(&state, &headers, None).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    match families::export(State(state.clone()), guardian, Path(family)).await {
        Ok(ApiJson(export)) => {
            let exported_at = export.exported_at;
            attachment(ApiJson(export).into_response(), "family", exported_at)
        }
        Err(error) => problem(&error, Some(&csrf)),
    }
}

async fn export_child(State(state): State<AppState>, headers: HeaderMap, Path((family, child)): Path<(String, String)>) -> Response {
    let (guardian, csrf) = match signed_in(&state, &headers, None).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    match children::export(State(state.clone()), guardian, Path((family, child))).await {
        Ok(ApiJson(export)) => {
            let exported_at = export.exported_at;
            attachment(ApiJson(export).into_response(), "child", exported_at)
        }
        Err(error) => problem(&error, Some(&csrf)),
    }
}

// ---- Deleting ----

fn delete_section(family: &Family, csrf: &str, notice: Option<&Notice>) -> Markup {
    html! {
        section aria-labelledby="delete-heading" {
            h2 id="delete-heading" { "Delete" }
            p { "Deleting cannot be undone: the data and the keys that could open any copy of it are destroyed. "
                "Download what you want to keep first." }
            @for child in &family.children {
                (delete_child_form(&family.id, child, csrf, notice))
            }
            (delete_family_form(family, csrf, notice))
        }
    }
}

fn delete_child_form(family: &str, child: &ChildView, csrf: &str, notice: Option<&Notice>) -> Markup {
    let form_id = format!("delete-child-{}", child.id);
    html! {
        h3 { "Delete " (child.nickname) "'s profile" }
        (error_for(notice, &form_id))
        form id=(form_id) method="post" action=(format!("/families/{family}/children/{}/delete", child.id)) {
            input type="hidden" name="csrf" value=(csrf);
            div.check {
                input id=(format!("{form_id}-confirm")) name="confirm" type="checkbox" value="yes" required;
                label for=(format!("{form_id}-confirm")) {
                    "I understand this permanently deletes " (child.nickname)
                    "'s profile, messages, contacts and reports, and unpairs the toy"
                }
            }
            button type="submit" { "Delete " (child.nickname) "'s profile" }
        }
    }
}

fn delete_family_form(family: &Family, csrf: &str, notice: Option<&Notice>) -> Markup {
    html! {
        h3 { "Delete the family" }
        p { "Deletes " (family.name) " for every guardian: all children, toys, contacts, reports and consent records." }
        (error_for(notice, "delete-family"))
        form id="delete-family" method="post" action=(format!("/families/{}/delete", family.id)) {
            input type="hidden" name="csrf" value=(csrf);
            label for="delete-family-name" { "Type the family's name, " (family.name) ", to confirm" }
            input id="delete-family-name" name="family_name" required autocomplete="off";
            div.check {
                input id="delete-family-confirm" name="confirm" type="checkbox" value="yes" required;
                label for="delete-family-confirm" { "I understand this permanently deletes the whole family and cannot be undone" }
            }
            button type="submit" { "Delete " (family.name) " for good" }
        }
    }
}

async fn delete_child(State(state): State<AppState>, headers: HeaderMap, Path((family, child)): Path<(String, String)>, body: Bytes) -> Response {
    let (_, guardian, csrf) = match posted::<CsrfOnly>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let form_id = format!("delete-child-{child}");
    let result = match Confirmation::given(&body, "tick the box to confirm: nothing was deleted") {
        Ok(()) => children::delete(State(state.clone()), guardian.clone(), Path((family.clone(), child))).await,
        Err(error) => Err(error),
    };
    let done = format!("{}?{CHILD_DELETED}", privacy_url(&family));
    outcome(&state, &guardian, &csrf, &family, &form_id, result, &done).await
}

#[derive(Deserialize)]
struct FamilyNameForm {
    #[serde(default)]
    family_name: String,
}

/// The typed name must be the family's: a slip of the finger cannot delete a family.
async fn name_typed(state: &AppState, guardian: &Guardian, family: &str, body: &Bytes) -> Result<(), ApiError> {
    Confirmation::given(body, "tick the box to confirm: nothing was deleted")?;
    let typed: FamilyNameForm = form(body)?;
    let ApiJson(details) = families::get(State(state.clone()), guardian.clone(), Path(family.to_owned())).await?;
    if typed.family_name.trim() != details.name.trim() {
        return Err(ApiError::new(ErrorCode::InvalidBody, "the name typed is not the family's name: nothing was deleted"));
    }
    Ok(())
}

async fn delete_family(State(state): State<AppState>, headers: HeaderMap, Path(family): Path<String>, body: Bytes) -> Response {
    let (_, guardian, csrf) = match posted::<CsrfOnly>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let result = match name_typed(&state, &guardian, &family, &body).await {
        Ok(()) => families::delete(State(state.clone()), guardian.clone(), Path(family.clone())).await,
        Err(error) => Err(error),
    };
    outcome(&state, &guardian, &csrf, &family, "delete-family", result, "/").await
}
