//! A family's contacts page: for each child, the requests waiting for this family's
//! approval, the contacts it has (approved, waiting, blocked from the toy), one-time
//! contact codes, adults invited by email and supervision; and the page an invited adult's
//! emailed link opens. Every change is one of the API's `contacts` handlers, so the same
//! authorisation, validation and audit apply.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cubby_core::ErrorCode;
use maud::{Markup, html};
use serde::Deserialize;

use super::dates::when_markup;
use super::{
    Confirmation, CsrfOnly, Nav, Notice, PRIVACY_NOTICE, error_for, layout, no_session, page, posted, problem, sign_in_then, signed_in,
    with_csrf,
};
use crate::api::accounts::invalid_token;
use crate::api::contacts::{self, AcceptContactInvite, AcceptedContact, ContactCode, ContactView, InviteAdult, RedeemCode, Supervision};
use crate::api::{children, families};
use crate::http::auth::Guardian;
use crate::http::{ApiError, ApiJson, AppState};
use crate::vault::ChildView;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/families/{family}/contacts", get(contacts_page))
        .route("/families/{family}/contacts/{child}/code", post(share_code))
        .route("/families/{family}/contacts/{child}/redeem", post(redeem))
        .route("/families/{family}/contacts/{child}/invite", post(invite_adult))
        .route("/families/{family}/contacts/{child}/supervision", post(supervise))
        .route("/families/{family}/contacts/{child}/{contact}/approve", post(approve))
        .route("/families/{family}/contacts/{child}/{contact}/decline", post(decline))
        .route("/families/{family}/contacts/{child}/{contact}/remove", post(remove))
        .route("/accept-contact", get(accept_page).post(accept))
}

fn contacts_path(family: &str) -> String {
    format!("/families/{family}/contacts")
}

// ---------------------------------------------------------------------------------------
// Shared with the reports page.

/// One child and its contacts, as the API's handlers show them to this guardian.
pub(super) struct ChildContacts {
    pub child: ChildView,
    pub contacts: Vec<ContactView>,
    pub supervised: bool,
}

/// Every child of the family with its contacts. A family that is not the guardian's is the
/// API's 404.
pub(super) async fn family_contacts(state: &AppState, guardian: &Guardian, family: &str) -> Result<Vec<ChildContacts>, ApiError> {
    let ApiJson(children) = children::list(State(state.clone()), guardian.clone(), Path(family.to_owned())).await?;
    let mut found = Vec::with_capacity(children.len());
    for child in children {
        let path = (family.to_owned(), child.id.to_string());
        let ApiJson(contacts) = contacts::list(State(state.clone()), guardian.clone(), Path(path.clone())).await?;
        let ApiJson(Supervision { supervised }) = contacts::get_supervision(State(state.clone()), guardian.clone(), Path(path)).await?;
        found.push(ChildContacts { child, contacts, supervised });
    }
    Ok(found)
}

// ---------------------------------------------------------------------------------------
// The contacts page.

/// What a post adds to the page it re-renders.
#[derive(Default)]
struct Outcome {
    notice: Option<Notice>,
    /// A contact code just made, and the child it is for: shown once, never stored.
    shared: Option<(String, ContactCode)>,
    /// The child for whom an invitation was just sent.
    invited: Option<String>,
}

impl Outcome {
    fn error(form: String, error: &ApiError) -> Self {
        Self { notice: Some(Notice::new(form, error)), ..Self::default() }
    }
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    invited: Option<String>,
}

async fn contacts_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(family): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let (guardian, csrf) = match signed_in(&state, &headers, None).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    // A query the page did not make is ignored, not refused: it only adds a notice.
    let invited = query.and_then(|q| serde_urlencoded::from_str::<PageQuery>(&q).ok()).and_then(|q| q.invited);
    render(&state, &guardian, &csrf, &family, Outcome { invited, ..Outcome::default() }).await
}

/// The family's name and its children's contacts.
async fn load(state: &AppState, guardian: &Guardian, family: &str) -> Result<(String, Vec<ChildContacts>), ApiError> {
    let ApiJson(details) = families::get(State(state.clone()), guardian.clone(), Path(family.to_owned())).await?;
    Ok((details.name, family_contacts(state, guardian, family).await?))
}

async fn render(state: &AppState, guardian: &Guardian, csrf: &str, family: &str, outcome: Outcome) -> Response {
    let (name, children) = match load(state, guardian, family).await {
        Ok(loaded) => loaded,
        Err(error) => return problem(&error, Some(csrf)),
    };
    let main = html! {
        h1 { "Contacts" }
        p { "Who the children of " (name) " may exchange messages with. Another child becomes a contact once a "
            "guardian of each child agrees; an adult, once they accept your invitation with their own account." }
        @if children.is_empty() {
            p { "No child yet: " a href="/" { "add a child" } " first." }
        }
        @for entry in &children {
            (child_section(family, entry, csrf, &outcome))
        }
    };
    page(Notice::status(outcome.notice.as_ref()), layout("Contacts", Nav::family(csrf, family), main))
}

fn child_section(family: &str, entry: &ChildContacts, csrf: &str, outcome: &Outcome) -> Markup {
    let heading = format!("child-{}", entry.child.id);
    html! {
        section.child aria-labelledby=(heading) {
            h2 id=(heading) { (entry.child.nickname) }
            (requests(family, entry, csrf, outcome.notice.as_ref()))
            (contact_list(family, entry, csrf, outcome.notice.as_ref()))
            (code_section(family, &entry.child, csrf, outcome))
            (redeem_form(family, &entry.child, csrf, outcome.notice.as_ref()))
            (invite_form(family, &entry.child, csrf, outcome))
            (supervision_form(family, entry, csrf, outcome.notice.as_ref()))
        }
    }
}

/// Who a contact is, in the API's words and no more.
fn who(contact: &ContactView) -> String {
    match contact.kind {
        "adult" => format!("{} (an adult)", contact.name),
        _ => format!("{} (a child in another family)", contact.name),
    }
}

fn contact_action(family: &str, child: &ChildView, contact: &ContactView, action: &str) -> String {
    format!("/families/{family}/contacts/{}/{}/{action}", child.id, contact.id)
}

fn requests(family: &str, entry: &ChildContacts, csrf: &str, notice: Option<&Notice>) -> Markup {
    let waiting: Vec<&ContactView> = entry.contacts.iter().filter(|c| c.status == "needs_your_approval").collect();
    let child = &entry.child;
    html! {
        h3 { "Waiting for your approval" }
        @if waiting.is_empty() {
            p { "No request is waiting." }
        } @else {
            table.contacts {
                thead { tr {
                    th scope="col" { "Who" } th scope="col" { "Asked on" } th scope="col" { span.visually-hidden { "Your answer" } }
                } }
                tbody {
                    @for contact in waiting {
                        @let (approve, decline) = (format!("approve-{}", contact.id), format!("decline-{}", contact.id));
                        tr {
                            td { (who(contact)) }
                            td { (when_markup(contact.created_at)) }
                            td {
                                (error_for(notice, &approve))
                                (error_for(notice, &decline))
                                form.inline id=(approve) method="post" action=(contact_action(family, child, contact, "approve")) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button type="submit" aria-label=(format!("Approve {} as a contact of {}", contact.name, child.nickname)) { "Approve" }
                                }
                                " "
                                form.inline id=(decline) method="post" action=(contact_action(family, child, contact, "decline")) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button.secondary type="submit" aria-label=(format!("Decline {}'s request", contact.name)) { "Decline" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn state_label(contact: &ContactView, child: &str) -> String {
    match contact.status {
        "approved" => "approved".to_owned(),
        "blocked" => format!("blocked by {child}"),
        _ => "waiting for the other family's guardian".to_owned(),
    }
}

fn contact_list(family: &str, entry: &ChildContacts, csrf: &str, notice: Option<&Notice>) -> Markup {
    let current: Vec<&ContactView> = entry.contacts.iter().filter(|c| c.status != "needs_your_approval").collect();
    let child = &entry.child;
    html! {
        h3 { (child.nickname) "'s contacts" }
        @if current.is_empty() {
            p { "No contact yet." }
        } @else {
            table.contacts {
                thead { tr {
                    th scope="col" { "Who" } th scope="col" { "State" } th scope="col" { "Since" }
                    th scope="col" { span.visually-hidden { "Remove" } }
                } }
                tbody {
                    @for contact in current {
                        tr {
                            td { (who(contact)) }
                            td.contact-state { (state_label(contact, &child.nickname)) }
                            td { (when_markup(contact.created_at)) }
                            td { (remove_form(family, child, contact, csrf, notice)) }
                        }
                    }
                }
            }
        }
    }
}

fn remove_form(family: &str, child: &ChildView, contact: &ContactView, csrf: &str, notice: Option<&Notice>) -> Markup {
    let id = format!("remove-{}", contact.id);
    let confirm = format!("confirm-remove-{}", contact.id);
    html! {
        form.confirm id=(id) method="post" action=(contact_action(family, child, contact, "remove")) {
            input type="hidden" name="csrf" value=(csrf);
            (error_for(notice, &id))
            div.check {
                input type="checkbox" id=(confirm) name="confirm" value="yes" required;
                label for=(confirm) { "I understand " (contact.name) " leaves " (child.nickname) "'s conversations and can no longer message "
                    (child.nickname) "." }
            }
            button type="submit" aria-label=(format!("Remove {} from {}'s contacts", contact.name, child.nickname)) { "Remove" }
        }
    }
}

fn code_section(family: &str, child: &ChildView, csrf: &str, outcome: &Outcome) -> Markup {
    let id = format!("contact-code-{}", child.id);
    let shared = outcome.shared.as_ref().filter(|(for_child, _)| *for_child == child.id.to_string()).map(|(_, code)| code);
    html! {
        h3 { "Share a contact code" }
        // The code replaces the button (which has the output's id), so it cannot be made
        // twice by accident; reloading the page offers the button again.
        @if let Some(code) = shared {
            p { "Give this code to the other child's guardian:" }
            p { output.code id=(id) { (code.code) } }
            p { "It works once, until " (when_markup(code.expires_at)) ". They enter it on their own Contacts page, under "
                "“Enter a code from another family”, for their child; you then approve their request here." }
            p { a href=(contacts_path(family)) { "Done" } }
        } @else {
            p.small { "For a child in another family whose guardian also uses Cubby. The code works once, for 72 hours." }
            form id=(id) method="post" action=(format!("/families/{family}/contacts/{}/code", child.id)) {
                input type="hidden" name="csrf" value=(csrf);
                (error_for(outcome.notice.as_ref(), &id))
                button type="submit" { "Make a contact code for " (child.nickname) }
            }
        }
    }
}

/// Points a field at the error shown beside its form, so screen readers read both.
fn described_by(notice: Option<&Notice>, form: &str) -> Option<String> {
    Notice::for_form(notice, form).map(|_| format!("{form}-error"))
}

#[derive(Deserialize)]
struct RedeemForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

with_csrf!(RedeemForm);

fn redeem_form(family: &str, child: &ChildView, csrf: &str, notice: Option<&Notice>) -> Markup {
    let id = format!("redeem-{}", child.id);
    let field = format!("code-{}", child.id);
    html! {
        h3 { "Enter a code from another family" }
        form id=(id) method="post" action=(format!("/families/{family}/contacts/{}/redeem", child.id)) {
            input type="hidden" name="csrf" value=(csrf);
            (error_for(notice, &id))
            label for=(field) { "The code their guardian gave you" }
            input id=(field) name="code" required autocomplete="off" spellcheck="false" aria-describedby=[described_by(notice, &id)];
            p.small { "Entering it is your approval; the other child's guardian approves next." }
            button type="submit" { "Add the contact for " (child.nickname) }
        }
    }
}

#[derive(Deserialize)]
struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

with_csrf!(InviteForm);

fn invite_form(family: &str, child: &ChildView, csrf: &str, outcome: &Outcome) -> Markup {
    let id = format!("invite-adult-{}", child.id);
    let field = format!("email-{}", child.id);
    let notice = outcome.notice.as_ref();
    html! {
        h3 { "Invite an adult by email" }
        form id=(id) method="post" action=(format!("/families/{family}/contacts/{}/invite", child.id)) {
            input type="hidden" name="csrf" value=(csrf);
            (error_for(notice, &id))
            @if outcome.invited.as_deref() == Some(child.id.to_string().as_str()) {
                p.notice role="status" { "The invitation is on its way. Once they accept it with their own Cubby account, "
                    "they show among " (child.nickname) "'s contacts." }
            }
            label for=(field) { "Their email address (a grandparent, a teacher)" }
            input id=(field) name="email" type="email" required autocomplete="off" aria-describedby=[described_by(notice, &id)];
            p.small { "We use the address only to send the invitation, valid 7 days; only an account with this address can accept it. "
                a href=(PRIVACY_NOTICE) { "Privacy notice" } }
            button type="submit" { "Invite them to talk with " (child.nickname) }
        }
    }
}

#[derive(Deserialize)]
struct SupervisionForm {
    #[serde(default)]
    csrf: String,
    /// A checkbox: present only when ticked.
    #[serde(default)]
    supervised: Option<String>,
}

with_csrf!(SupervisionForm);

fn supervision_form(family: &str, entry: &ChildContacts, csrf: &str, notice: Option<&Notice>) -> Markup {
    let child = &entry.child;
    let id = format!("supervision-{}", child.id);
    let field = format!("supervised-{}", child.id);
    html! {
        h3 { "Supervision" }
        form id=(id) method="post" action=(format!("/families/{family}/contacts/{}/supervision", child.id)) {
            input type="hidden" name="csrf" value=(csrf);
            (error_for(notice, &id))
            p.small { "When it is on, your family's guardians' phones and tablets join every conversation "
                (child.nickname) " is in and read along. Everyone in the conversation is told it is supervised." }
            div.check {
                input type="checkbox" id=(field) name="supervised" value="yes" checked[entry.supervised];
                label for=(field) { "Supervise " (child.nickname) "'s conversations" }
            }
            button type="submit" { "Save supervision for " (child.nickname) }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The contacts page's forms.

/// After a post: back to the page (post-redirect-get), or the page again with the error
/// beside `form`. A family, child or contact that is not the guardian's is the API's 404,
/// on a page of its own that shows nothing of the family.
async fn answer(
    state: &AppState,
    guardian: &Guardian,
    csrf: &str,
    family: &str,
    form: String,
    result: Result<String, ApiError>,
) -> Response {
    match result {
        Ok(location) => Redirect::to(&location).into_response(),
        Err(error) if error.code() == ErrorCode::NotFound => problem(&error, Some(csrf)),
        Err(error) => render(state, guardian, csrf, family, Outcome::error(form, &error)).await,
    }
}

async fn share_code(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((family, child)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (_, guardian, csrf) = match posted::<CsrfOnly>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    match contacts::create_code(State(state.clone()), guardian.clone(), Path((family.clone(), child.clone()))).await {
        // Shown in the answer itself: a code must not travel in a URL or be kept to show later.
        Ok((_, ApiJson(code))) => {
            render(&state, &guardian, &csrf, &family, Outcome { shared: Some((child, code)), ..Outcome::default() }).await
        }
        Err(error) => answer(&state, &guardian, &csrf, &family, format!("contact-code-{child}"), Err(error)).await,
    }
}

async fn redeem(State(state): State<AppState>, headers: HeaderMap, Path((family, child)): Path<(String, String)>, body: Bytes) -> Response {
    let (fields, guardian, csrf) = match posted::<RedeemForm>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let path = Path((family.clone(), child.clone()));
    let result = contacts::redeem_code(State(state.clone()), guardian.clone(), path, ApiJson(RedeemCode { code: fields.code })).await;
    answer(&state, &guardian, &csrf, &family, format!("redeem-{child}"), result.map(|_| contacts_path(&family))).await
}

async fn invite_adult(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((family, child)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (fields, guardian, csrf) = match posted::<InviteForm>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let path = Path((family.clone(), child.clone()));
    let result = contacts::invite_adult(State(state.clone()), guardian.clone(), path, ApiJson(InviteAdult { email: fields.email })).await;
    // The address stays out of the URL; the page only says which child's invitation left.
    let location = |_| format!("{}?invited={child}", contacts_path(&family));
    answer(&state, &guardian, &csrf, &family, format!("invite-adult-{child}"), result.map(location)).await
}

async fn supervise(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((family, child)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (fields, guardian, csrf) = match posted::<SupervisionForm>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let choice = Supervision { supervised: fields.supervised.is_some() };
    let path = Path((family.clone(), child.clone()));
    let result = contacts::set_supervision(State(state.clone()), guardian.clone(), path, ApiJson(choice)).await;
    answer(&state, &guardian, &csrf, &family, format!("supervision-{child}"), result.map(|_| contacts_path(&family))).await
}

async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((family, child, contact)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let (_, guardian, csrf) = match posted::<CsrfOnly>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let result = contacts::approve(State(state.clone()), guardian.clone(), Path((family.clone(), child, contact.clone()))).await;
    answer(&state, &guardian, &csrf, &family, format!("approve-{contact}"), result.map(|_| contacts_path(&family))).await
}

/// Declining a request is the API's removal: both families' sides go.
async fn decline(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((family, child, contact)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let (_, guardian, csrf) = match posted::<CsrfOnly>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let result = contacts::remove(State(state.clone()), guardian.clone(), Path((family.clone(), child, contact.clone()))).await;
    answer(&state, &guardian, &csrf, &family, format!("decline-{contact}"), result.map(|_| contacts_path(&family))).await
}

async fn remove(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((family, child, contact)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let (fields, guardian, csrf) = match posted::<Confirmation>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let form = format!("remove-{contact}");
    if let Err(error) = fields.require("tick the box to confirm that this contact leaves the child's conversations") {
        return answer(&state, &guardian, &csrf, &family, form, Err(error)).await;
    }
    let result = contacts::remove(State(state.clone()), guardian.clone(), Path((family.clone(), child, contact))).await;
    answer(&state, &guardian, &csrf, &family, form, result.map(|_| contacts_path(&family))).await
}

// ---------------------------------------------------------------------------------------
// The link in an invited adult's email.

const ACCEPT_FORM: &str = "accept-contact";

#[derive(Deserialize)]
struct AcceptForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

with_csrf!(AcceptForm);

async fn accept_page(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let token = query.and_then(|q| serde_urlencoded::from_str::<AcceptForm>(&q).ok()).map(|q| q.token).filter(|t| !t.is_empty());
    let Some(token) = token else { return problem(&invalid_token(), None) };
    // Without a session the page explains instead of sending the adult to sign in blindly.
    if no_session(&state, &headers).await {
        return sign_in_first(&token);
    }
    match signed_in(&state, &headers, None).await {
        Ok((_, csrf)) => accept_form(&csrf, &token, None),
        Err(response) => response,
    }
}

fn sign_in_first(token: &str) -> Response {
    let sign_in = sign_in_then("/accept-contact", token);
    let main = html! {
        h1 { "An invitation to talk with a child" }
        p { "A family on Cubby invites you to exchange messages with their child. To accept, use a Cubby account "
            "with the email address the invitation was sent to." }
        p { a href=(sign_in) { "Sign in to accept" } }
        p { "No account yet? " a href="/sign-up" { "Create one with that address" } ", then open the link in the email again." }
        p.small { "If you do not know why you received the invitation, ignore it: nothing happens. "
            a href=(PRIVACY_NOTICE) { "Privacy notice" } }
    };
    page(StatusCode::OK, layout("An invitation to talk with a child", Nav::default(), main))
}

fn accept_form(csrf: &str, token: &str, notice: Option<Notice>) -> Response {
    let main = html! {
        h1 { "Accept an invitation" }
        p { "A family invites you to exchange messages with their child. Once you accept, the child's toy can be "
            "added to a conversation from one of your devices, and the child's guardians see you among its contacts." }
        form id=(ACCEPT_FORM) method="post" action="/accept-contact" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="token" value=(token);
            (error_for(notice.as_ref(), ACCEPT_FORM))
            button type="submit" { "Accept the invitation" }
        }
        p.small { a href=(PRIVACY_NOTICE) { "Privacy notice" } }
    };
    page(Notice::status(notice.as_ref()), layout("Accept an invitation", Nav::signed_in(csrf), main))
}

async fn accept(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (fields, guardian, csrf) = match posted::<AcceptForm>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let invitation = AcceptContactInvite { token: fields.token.clone() };
    match contacts::accept_invite(State(state.clone()), guardian, ApiJson(invitation)).await {
        // The answer names the child, which no later page could show: it is rendered here.
        Ok(ApiJson(accepted)) => accepted_page(&csrf, &accepted),
        Err(error) => accept_form(&csrf, &fields.token, Some(Notice::new(ACCEPT_FORM, &error))),
    }
}

fn accepted_page(csrf: &str, accepted: &AcceptedContact) -> Response {
    let toys = accepted.devices.len();
    let main = html! {
        h1 { "You can now talk with " (accepted.child) }
        p { "You are one of " (accepted.child) "'s contacts. "
            @match toys {
                0 => { (accepted.child) " has no toy paired yet: once one is, you can add it to a conversation from your Cubby app." }
                1 => { "Add " (accepted.child) "'s toy to a conversation from your Cubby app." }
                _ => { "Add " (accepted.child) "'s " (toys) " toys to a conversation from your Cubby app." }
            }
        }
        p { a href="/" { "Go to your family" } }
    };
    page(StatusCode::OK, layout("Invitation accepted", Nav::signed_in(csrf), main))
}
