//! A family's reports page: the messages its children reported from their toys (which
//! only the family's guardians see, unless they send one on to the operator), and the
//! contacts the children blocked. Read and changed through the API's `reports` and
//! `contacts` handlers.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cubby_core::ErrorCode;
use maud::{Markup, html};

use super::contacts::{ChildContacts, family_contacts};
use super::dates::when_markup;
use super::{Confirmation, CsrfOnly, Nav, Notice, error_for, layout, page, posted, problem, signed_in};
use crate::api::devices::{self, DeviceView};
use crate::api::reports::{self, ReportView};
use crate::http::auth::Guardian;
use crate::http::{ApiError, ApiJson, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/families/{family}/reports", get(reports_page))
        .route("/families/{family}/reports/{report}/escalate", post(escalate))
        .route("/families/{family}/reports/{report}/dismiss", post(dismiss))
}

fn reports_path(family: &str) -> String {
    format!("/families/{family}/reports")
}

/// What the page shows, as the API's handlers answer for this guardian.
struct Loaded {
    reports: Vec<ReportView>,
    children: Vec<ChildContacts>,
    /// The family's own devices, to name a reported sender that is one of them.
    devices: Vec<DeviceView>,
}

async fn load(state: &AppState, guardian: &Guardian, family: &str) -> Result<Loaded, ApiError> {
    let ApiJson(reports) = reports::list(State(state.clone()), guardian.clone(), Path(family.to_owned())).await?;
    let children = family_contacts(state, guardian, family).await?;
    let ApiJson(devices) = devices::list(State(state.clone()), guardian.clone(), Path(family.to_owned())).await?;
    Ok(Loaded { reports, children, devices })
}

async fn reports_page(State(state): State<AppState>, headers: HeaderMap, Path(family): Path<String>) -> Response {
    let (guardian, csrf) = match signed_in(&state, &headers, None).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    render(&state, &guardian, &csrf, &family, None).await
}

async fn render(state: &AppState, guardian: &Guardian, csrf: &str, family: &str, notice: Option<Notice>) -> Response {
    let loaded = match load(state, guardian, family).await {
        Ok(loaded) => loaded,
        Err(error) => return problem(&error, Some(csrf)),
    };
    let main = html! {
        h1 { "Reports" }
        p { "When a child reports a message from their toy, it comes here. Only your family's guardians see it, "
            "unless you send it on to the operator of this Cubby server." }
        h2 { "Reported messages" }
        @if loaded.reports.is_empty() {
            p { "Nothing has been reported." }
        }
        @for report in &loaded.reports {
            (report_article(family, report, &loaded, csrf, notice.as_ref()))
        }
        (blocked_section(family, &loaded.children))
    };
    page(Notice::status(notice.as_ref()), layout("Reports", Nav::family(csrf, family), main))
}

fn child_name<'a>(loaded: &'a Loaded, child_id: &str) -> &'a str {
    loaded.children.iter().find(|c| c.child.id.to_string() == child_id).map_or("a child", |c| c.child.nickname.as_str())
}

/// Who sent the reported message: one of the family's own devices by its name; any other
/// only by its device id, which is all the report holds.
fn sender(loaded: &Loaded, device: &str) -> String {
    match loaded.devices.iter().find(|d| d.device_id.to_string() == device) {
        Some(own) => format!("{} (a device of your family)", own.name),
        None => format!("a device outside your family ({device})"),
    }
}

fn report_article(family: &str, report: &ReportView, loaded: &Loaded, csrf: &str, notice: Option<&Notice>) -> Markup {
    let child = child_name(loaded, &report.child_id);
    let heading = heading_id(report);
    html! {
        article.report aria-labelledby=(heading) {
            h3 id=(heading) { "Reported by " (child) " on " (when_markup(report.created_at)) }
            dl {
                dt { "Sent by" } dd { (sender(loaded, &report.sender_device)) }
                dt { "The message" } dd { blockquote { (report.content) } }
                dt { "What " (child) " said about it" }
                dd { @if report.note.is_empty() { "Nothing." } @else { (report.note) } }
                dt { "Kept until" } dd { (when_markup(report.expires_at)) }
            }
            @if let Some(at) = report.escalated_at {
                p.notice { "Sent to the operator on " (when_markup(at)) "." }
            } @else {
                (escalate_form(family, report, child, csrf, notice))
            }
            (dismiss_form(family, report, child, csrf, notice))
        }
    }
}

/// The report's heading (which says when it was made) describes its buttons, so reports
/// of the same child can be told apart by a screen reader.
fn heading_id(report: &ReportView) -> String {
    format!("report-{}", report.id)
}

fn escalate_form(family: &str, report: &ReportView, child: &str, csrf: &str, notice: Option<&Notice>) -> Markup {
    let id = format!("escalate-{}", report.id);
    let confirm = format!("confirm-escalate-{}", report.id);
    html! {
        form.confirm id=(id) method="post" action=(format!("/families/{family}/reports/{}/escalate", report.id)) {
            input type="hidden" name="csrf" value=(csrf);
            (error_for(notice, &id))
            div.check {
                input type="checkbox" id=(confirm) name="confirm" value="yes" required;
                label for=(confirm) { "I understand the operator of this Cubby server will then read this message and what "
                    (child) " said about it." }
            }
            button type="submit" aria-label=(format!("Send {child}'s report to the operator")) aria-describedby=(heading_id(report)) { "Send to the operator" }
        }
    }
}

fn dismiss_form(family: &str, report: &ReportView, child: &str, csrf: &str, notice: Option<&Notice>) -> Markup {
    let id = format!("dismiss-{}", report.id);
    html! {
        form id=(id) method="post" action=(format!("/families/{family}/reports/{}/dismiss", report.id)) {
            input type="hidden" name="csrf" value=(csrf);
            (error_for(notice, &id))
            button.secondary type="submit" aria-label=(format!("Dismiss {child}'s report and delete it")) aria-describedby=(heading_id(report)) { "Dismiss (delete the report)" }
        }
    }
}

fn blocked_section(family: &str, children: &[ChildContacts]) -> Markup {
    let blocked: Vec<(&str, &str)> = children
        .iter()
        .flat_map(|c| c.contacts.iter().filter(|k| k.status == "blocked").map(move |k| (k.name.as_str(), c.child.nickname.as_str())))
        .collect();
    html! {
        h2 { "Contacts your children blocked" }
        @if blocked.is_empty() {
            p { "No child has blocked anyone." }
        } @else {
            ul.blocked {
                @for (name, child) in blocked {
                    li { (name) ", blocked by " (child) }
                }
            }
        }
        p { "A blocked contact stays out of the child's conversations until you remove it. "
            a href=(format!("/families/{family}/contacts")) { "Manage contacts" } }
    }
}

/// After a post: back to the page, or the page again with the error beside `form`. A
/// report or family that is not the guardian's is the API's 404, showing nothing.
async fn answer(state: &AppState, guardian: &Guardian, csrf: &str, family: &str, form: String, result: Result<(), ApiError>) -> Response {
    match result {
        Ok(()) => Redirect::to(&reports_path(family)).into_response(),
        Err(error) if error.code() == ErrorCode::NotFound => problem(&error, Some(csrf)),
        Err(error) => render(state, guardian, csrf, family, Some(Notice::new(form, &error))).await,
    }
}

async fn escalate(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((family, report)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (fields, guardian, csrf) = match posted::<Confirmation>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let form = format!("escalate-{report}");
    if let Err(error) = fields.require("tick the box to confirm that the operator may read this report") {
        return answer(&state, &guardian, &csrf, &family, form, Err(error)).await;
    }
    let result = reports::escalate(State(state.clone()), guardian.clone(), Path((family.clone(), report))).await;
    answer(&state, &guardian, &csrf, &family, form, result.map(|_| ())).await
}

async fn dismiss(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((family, report)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (_, guardian, csrf) = match posted::<CsrfOnly>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let result = reports::delete(State(state.clone()), guardian.clone(), Path((family.clone(), report.clone()))).await;
    answer(&state, &guardian, &csrf, &family, format!("dismiss-{report}"), result.map(|_| ())).await
}
