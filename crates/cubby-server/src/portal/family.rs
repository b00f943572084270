//! The family dashboard and the steps that make a family: creating it, consenting to the
//! privacy notice (and confirming by the emailed link), adding children, inviting a
//! co-guardian (and accepting the invitation), leaving. Everything is read and changed
//! through the API's handlers, so `policy::authorize` decides what shows and what happens.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cubby_core::ErrorCode;
use cubby_core::privacy_notice::PrivacyNotice;
use cubby_core::validation::AgeBand;
use maud::{Markup, html};
use serde::Deserialize;

use super::dates::{day, when};
use super::session::query_value;
use super::sign_up::{EmailedLink, TokenForm, message_page, token_form};
use super::{
    Confirmation, FAMILY_SECTIONS, Nav, Notice, PRIVACY_NOTICE, error_for, layout, no_session, page, posted, problem, sign_in_then, signed_in, with_csrf,
};
use crate::api::children::{self, NewChild};
use crate::api::consent::{self, ConfirmConsent, ConsentStatus, GiveConsent};
use crate::api::devices;
use crate::api::families::{self, AcceptInvite, Family, NewFamily, NewInvite};
use crate::http::auth::Guardian;
use crate::http::{ApiError, ApiJson, AppState};
use crate::vault::ChildView;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/families", post(create_family))
        .route("/families/{family}/children", post(add_child))
        .route("/families/{family}/invite", post(invite))
        .route("/families/{family}/leave", post(leave))
        .route("/families/{family}/consent", get(consent_page).post(give_consent))
        .route("/families/{family}/consent/sent", get(consent_sent))
        .route("/families/{family}/consent/withdraw", post(withdraw_consent))
        .route("/confirm-consent", get(confirm_consent_page).post(confirm_consent))
        .route("/confirm-consent/done", get(consent_recorded))
        .route("/accept-invite", get(accept_invite_page).post(accept_invite))
}

const AGE_BANDS: [(AgeBand, &str); 4] = [
    (AgeBand::Under6, "under 6"),
    (AgeBand::From6To8, "6 to 8"),
    (AgeBand::From9To12, "9 to 12"),
    (AgeBand::From13To17, "13 to 17"),
];

fn age_label(band: AgeBand) -> &'static str {
    AGE_BANDS.iter().find(|(b, _)| *b == band).map_or("", |(_, label)| label)
}

/// A form's answer to a missing confirmation tick, in plain words.
fn unticked(what: &'static str) -> ApiError {
    ApiError::new(ErrorCode::InvalidBody, what)
}

with_csrf!(FamilyForm, ChildForm, EmailForm, ConsentForm);

#[derive(Deserialize)]
pub struct FamilyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
pub struct ChildForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    nickname: String,
    #[serde(default)]
    age_band: String,
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

#[derive(Deserialize)]
pub struct ConsentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    agree: String,
    #[serde(default)]
    notice_version: String,
}

// --- The dashboard ---

fn add_child_form_id(family: &str) -> String {
    format!("add-child-{family}")
}

fn invite_form_id(family: &str) -> String {
    format!("invite-{family}")
}

fn leave_form_id(family: &str) -> String {
    format!("leave-{family}")
}

/// One family as the dashboard shows it.
struct FamilyView {
    family: Family,
    id: String,
    consented: bool,
    children: Vec<ChildView>,
    active_devices: usize,
}

async fn load(state: &AppState, guardian: &Guardian) -> Result<Vec<FamilyView>, ApiError> {
    let mut views = Vec::new();
    for id in &guardian.families {
        let id = id.to_string();
        let family = match families::get(State(state.clone()), guardian.clone(), Path(id.clone())).await {
            Ok(ApiJson(family)) => family,
            // A family whose key is gone cannot be shown; it must not hide the others.
            Err(error) if error.code() == ErrorCode::NotFound => continue,
            Err(error) => return Err(error),
        };
        let ApiJson(children) = children::list(State(state.clone()), guardian.clone(), Path(id.clone())).await?;
        let ApiJson(devices) = devices::list(State(state.clone()), guardian.clone(), Path(id.clone())).await?;
        let ApiJson(consent) = consent::get_consent(State(state.clone()), guardian.clone(), Path(id.clone())).await?;
        let active_devices = devices.iter().filter(|d| !d.revoked).count();
        views.push(FamilyView { family, id, consented: consent.collection_valid, children, active_devices });
    }
    Ok(views)
}

/// What a finished action says on the dashboard it redirects to (`?done=`).
fn done_message(done: &str) -> Option<&'static str> {
    match done {
        "invited" => Some("The invitation is on its way. It works for 7 days, for an account with that address."),
        "left" => Some("You left the family."),
        "joined" => Some("You joined the family."),
        _ => None,
    }
}

pub async fn dashboard(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let (guardian, csrf) = match signed_in(&state, &headers, None).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    let done = done_message(&query_value(query.as_deref(), "done"));
    render_dashboard(&state, &guardian, &csrf, None, done).await
}

/// The dashboard, with `notice` shown beside the form it concerns.
async fn render_dashboard(
    state: &AppState,
    guardian: &Guardian,
    csrf: &str,
    notice: Option<&Notice>,
    done: Option<&str>,
) -> Response {
    let families = match load(state, guardian).await {
        Ok(families) => families,
        Err(error) => return problem(&error, Some(csrf)),
    };
    let main = html! {
        h1 { "Your family" }
        @if let Some(done) = done {
            p.notice role="status" { (done) }
        }
        @if families.is_empty() || Notice::for_form(notice, CREATE_FAMILY).is_some() {
            (create_family_form(csrf, notice))
        }
        @for family in &families {
            (family_section(family, guardian, csrf, notice))
        }
    };
    page(Notice::status(notice), layout("Your family", Nav::signed_in(csrf), main))
}

const CREATE_FAMILY: &str = "create-family";

fn create_family_form(csrf: &str, notice: Option<&Notice>) -> Markup {
    html! {
        p { "You are not in a family yet. Create one here. If another parent invited you, open the link in "
            "their invitation email instead." }
        form id=(CREATE_FAMILY) method="post" action="/families" {
            input type="hidden" name="csrf" value=(csrf);
            h2 { "Create your family" }
            (error_for(notice, CREATE_FAMILY))
            label for="family-name" { "Family name (only your family's guardians see it)" }
            input id="family-name" name="name" required maxlength="80" autocomplete="off";
            button type="submit" { "Create the family" }
        }
    }
}

fn family_section(family: &FamilyView, guardian: &Guardian, csrf: &str, notice: Option<&Notice>) -> Markup {
    let heading = format!("family-{}", family.id);
    html! {
        section.family aria-labelledby=(heading) {
            h2 id=(heading) { (family.family.name) }
            nav.sections aria-label=(format!("{} sections", family.family.name)) {
                @for (section, label) in FAMILY_SECTIONS {
                    a href=(format!("/families/{}/{section}", family.id)) { (label) }
                }
            }
            (consent_step(family))
            (children_section(family, csrf, notice))
            (devices_summary(family))
            (guardians_section(family, guardian, csrf, notice))
            (leave_form(family, csrf, notice))
        }
    }
}

fn consent_step(family: &FamilyView) -> Markup {
    let consent = format!("/families/{}/consent", family.id);
    html! {
        @if family.consented {
            p { "Consent to the privacy notice is given. " a href=(consent) { "Consent and privacy notice" } }
        } @else {
            div.step role="note" {
                h3 { a href=(consent) { "Before adding a child, read the privacy notice and give your consent" } }
                p { "A guardian of this family must agree to the privacy notice before Cubby keeps anything about a "
                    "child. It says what we keep, why, for how long and who sees it." }
            }
        }
    }
}

fn children_section(family: &FamilyView, csrf: &str, notice: Option<&Notice>) -> Markup {
    let form_id = add_child_form_id(&family.id);
    let field = format!("nickname-{}", family.id);
    let band = format!("age-band-{}", family.id);
    html! {
        h3 { "Children" }
        @if family.children.is_empty() {
            p { "No child yet." }
        } @else {
            ul.children {
                @for child in &family.children {
                    li { span.nickname { (child.nickname) } " — age " (age_label(child.age_band)) }
                }
            }
        }
        form id=(form_id) method="post" action=(format!("/families/{}/children", family.id)) {
            input type="hidden" name="csrf" value=(csrf);
            h4 { "Add a child" }
            (error_for(notice, &form_id))
            label for=(field) { "Nickname (no full name needed)" }
            input id=(field) name="nickname" required maxlength="40";
            label for=(band) { "Age" }
            select id=(band) name="age_band" {
                @for (value, label) in AGE_BANDS {
                    option value=(value.as_str()) { (label) }
                }
            }
            p.small { "We keep only the nickname and the age band. " a href=(PRIVACY_NOTICE) { "Privacy notice" } }
            button type="submit" { "Add the child" }
        }
    }
}

fn devices_summary(family: &FamilyView) -> Markup {
    let count = match family.active_devices {
        0 => "No toy or app paired yet.".to_owned(),
        1 => "1 toy or app paired.".to_owned(),
        n => format!("{n} toys and apps paired."),
    };
    html! {
        h3 { "Toys and devices" }
        p { (count) " " a href=(format!("/families/{}/devices", family.id)) { "Pair a toy" } }
    }
}

fn guardians_section(family: &FamilyView, guardian: &Guardian, csrf: &str, notice: Option<&Notice>) -> Markup {
    let form_id = invite_form_id(&family.id);
    let field = format!("invite-email-{}", family.id);
    html! {
        h3 { "Guardians" }
        ul {
            @for member in &family.family.guardians {
                li {
                    @if member.account_id == guardian.account { "You" } @else { "Another guardian" }
                    ", since " (day(member.joined_at))
                }
            }
        }
        form id=(form_id) method="post" action=(format!("/families/{}/invite", family.id)) {
            input type="hidden" name="csrf" value=(csrf);
            h4 { "Invite a co-guardian" }
            p.small { "They get an email with a link. Only an account with this address can accept it; they then "
                "see and manage this family as you do." }
            (error_for(notice, &form_id))
            label for=(field) { "Their email address" }
            input id=(field) name="email" type="email" required autocomplete="off";
            button type="submit" { "Send the invitation" }
        }
    }
}

fn leave_form(family: &FamilyView, csrf: &str, notice: Option<&Notice>) -> Markup {
    let form_id = leave_form_id(&family.id);
    let tick = format!("leave-confirm-{}", family.id);
    html! {
        form id=(form_id) method="post" action=(format!("/families/{}/leave", family.id)) {
            input type="hidden" name="csrf" value=(csrf);
            h4 { "Leave this family" }
            (error_for(notice, &form_id))
            div.tick {
                input type="checkbox" id=(tick) name="confirm" value="yes" required;
                label for=(tick) { "I understand that I will no longer see or manage this family." }
            }
            button type="submit" { "Leave " (family.family.name) }
        }
    }
}

// --- Dashboard actions ---

pub async fn create_family(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (fields, guardian, csrf) = match posted::<FamilyForm>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    match families::create(State(state.clone()), guardian.clone(), ApiJson(NewFamily { name: fields.name })).await {
        Ok(_) => Redirect::to("/").into_response(),
        Err(error) => render_dashboard(&state, &guardian, &csrf, Some(&Notice::new(CREATE_FAMILY, &error)), None).await,
    }
}

pub async fn add_child(State(state): State<AppState>, headers: HeaderMap, Path(family): Path<String>, body: Bytes) -> Response {
    let (fields, guardian, csrf) = match posted::<ChildForm>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let Some(age_band) = AGE_BANDS.iter().map(|(b, _)| *b).find(|b| b.as_str() == fields.age_band) else {
        let error = ApiError::new(ErrorCode::InvalidBody, "choose the child's age from the list");
        return refuse_before_the_api(&state, &guardian, &csrf, &family, add_child_form_id(&family), &error).await;
    };
    let child = NewChild { nickname: fields.nickname, age_band };
    let result = children::create(State(state.clone()), guardian.clone(), Path(family.clone()), ApiJson(child)).await;
    after_dashboard_action(&state, &guardian, &csrf, add_child_form_id(&family), result.map(|_| "/")).await
}

pub async fn invite(State(state): State<AppState>, headers: HeaderMap, Path(family): Path<String>, body: Bytes) -> Response {
    let (fields, guardian, csrf) = match posted::<EmailForm>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let invitation = NewInvite { email: fields.email };
    let result = families::invite(State(state.clone()), guardian.clone(), Path(family.clone()), ApiJson(invitation)).await;
    after_dashboard_action(&state, &guardian, &csrf, invite_form_id(&family), result.map(|_| "/?done=invited")).await
}

pub async fn leave(State(state): State<AppState>, headers: HeaderMap, Path(family): Path<String>, body: Bytes) -> Response {
    let (fields, guardian, csrf) = match posted::<Confirmation>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    if let Err(error) = fields.require("tick the box to confirm that you want to leave this family") {
        return refuse_before_the_api(&state, &guardian, &csrf, &family, leave_form_id(&family), &error).await;
    }
    let result = families::leave(State(state.clone()), guardian.clone(), Path(family.clone())).await;
    after_dashboard_action(&state, &guardian, &csrf, leave_form_id(&family), result.map(|_| "/?done=left")).await
}

/// Success goes to `Ok(page)`; an unknown family (or one not the guardian's) gets the
/// API's plain 404, never its data; any other refusal shows beside the form.
async fn after_dashboard_action(
    state: &AppState,
    guardian: &Guardian,
    csrf: &str,
    form_id: String,
    result: Result<&'static str, ApiError>,
) -> Response {
    match result {
        Ok(next) => Redirect::to(next).into_response(),
        Err(error) if error.code() == ErrorCode::NotFound => problem(&error, Some(csrf)),
        Err(error) => dashboard_error(state, guardian, csrf, form_id, &error).await,
    }
}

/// A refusal made before the API's handler runs: beside the form for one of the
/// guardian's families, and the API's 404 for any other (as the handler would answer).
async fn refuse_before_the_api(
    state: &AppState,
    guardian: &Guardian,
    csrf: &str,
    family: &str,
    form_id: String,
    error: &ApiError,
) -> Response {
    match families::get(State(state.clone()), guardian.clone(), Path(family.to_owned())).await {
        Ok(_) => dashboard_error(state, guardian, csrf, form_id, error).await,
        Err(not_found) => problem(&not_found, Some(csrf)),
    }
}

async fn dashboard_error(state: &AppState, guardian: &Guardian, csrf: &str, form_id: String, error: &ApiError) -> Response {
    render_dashboard(state, guardian, csrf, Some(&Notice::new(form_id, error)), None).await
}

// --- Consent ---

const CONSENT: &str = "consent";
const WITHDRAW_CONSENT: &str = "withdraw-consent";

/// The family's consent page; another family's (or an unknown) id gets the API's 404.
async fn render_consent(state: &AppState, guardian: &Guardian, csrf: &str, family: &str, notice: Option<&Notice>) -> Response {
    let loaded = async {
        let ApiJson(found) = families::get(State(state.clone()), guardian.clone(), Path(family.to_owned())).await?;
        let ApiJson(status) = consent::get_consent(State(state.clone()), guardian.clone(), Path(family.to_owned())).await?;
        Ok::<_, ApiError>((found, status))
    };
    let (found, status) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return problem(&error, Some(csrf)),
    };
    let main = html! {
        h1 { "Privacy notice and consent" }
        p { "For " (found.name) ". Read the notice, then give your consent as a separate step below." }
        (privacy_notice(&state.config.privacy_notice))
        section aria-labelledby="your-consent" {
            h2 id="your-consent" { "Your consent" }
            @if status.collection_valid {
                p role="status" { "Consent is given for this family under the current notice." }
            } @else {
                (consent_form(csrf, family, state.config.privacy_notice.version, notice))
            }
            (consent_records(&status, guardian))
            @if status.collection_valid {
                (withdraw_form(csrf, family, notice))
            }
        }
    };
    page(Notice::status(notice), layout("Privacy notice and consent", Nav::family(csrf, family), main))
}

/// The notice in full, as the guardian consents to it.
fn privacy_notice(notice: &PrivacyNotice) -> Markup {
    html! {
        section aria-labelledby="privacy-notice" {
            h2 id="privacy-notice" { "Privacy notice" }
            p.small { "Version " (notice.version) ". " a href=(PRIVACY_NOTICE) { "The same notice as data" } }
            @for section in &notice.sections {
                h3 { (section.title) }
                @for paragraph in section.body.split("\n\n").filter(|p| !p.trim().is_empty()) {
                    p { (paragraph) }
                }
            }
            h3 { "Who to contact" }
            p { (notice.operator_contact) }
        }
    }
}

fn consent_form(csrf: &str, family: &str, version: u32, notice: Option<&Notice>) -> Markup {
    html! {
        form id=(CONSENT) method="post" action=(format!("/families/{family}/consent")) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="notice_version" value=(version);
            (error_for(notice, CONSENT))
            div.tick {
                input type="checkbox" id="agree" name="agree" value="yes" required;
                label for="agree" { "I have read this notice and I consent, as this family's guardian, to Cubby "
                    "collecting and keeping the information it describes about this family's children." }
            }
            p.small { "We then email you a link: following it confirms that the consent is yours." }
            button type="submit" { "I consent" }
        }
    }
}

fn consent_records(status: &ConsentStatus, guardian: &Guardian) -> Markup {
    let kind = |kind: &str| if kind == consent::THIRD_PARTY { "Sharing with third parties" } else { "Collection" };
    html! {
        @if status.records.is_empty() {
            p { "No consent has been given for this family yet." }
        } @else {
            table.records {
                caption { "Consent records" }
                thead { tr {
                    th scope="col" { "For" } th scope="col" { "Notice version" } th scope="col" { "Given by" }
                    th scope="col" { "Given" } th scope="col" { "Withdrawn" }
                } }
                tbody {
                    @for entry in &status.records {
                        tr {
                            td { (kind(&entry.kind)) }
                            td { (entry.record.notice_version) }
                            td { @if entry.record.given_by == guardian.account { "You" } @else { "Another guardian" } }
                            td { (when(entry.record.given_at)) }
                            td { (entry.record.withdrawn_at.map_or_else(|| "—".to_owned(), when)) }
                        }
                    }
                }
            }
        }
    }
}

fn withdraw_form(csrf: &str, family: &str, notice: Option<&Notice>) -> Markup {
    html! {
        form id=(WITHDRAW_CONSENT) method="post" action=(format!("/families/{family}/consent/withdraw")) {
            input type="hidden" name="csrf" value=(csrf);
            h3 { "Withdraw consent" }
            (error_for(notice, WITHDRAW_CONSENT))
            div.tick {
                input type="checkbox" id="withdraw-confirm" name="confirm" value="yes" required;
                label for="withdraw-confirm" { "I understand that collection stops: no child can be added or changed, "
                    "and the family's toys stop syncing, until a guardian consents again." }
            }
            button type="submit" { "Withdraw consent" }
        }
    }
}

pub async fn consent_page(State(state): State<AppState>, headers: HeaderMap, Path(family): Path<String>) -> Response {
    let (guardian, csrf) = match signed_in(&state, &headers, None).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    render_consent(&state, &guardian, &csrf, &family, None).await
}

/// What the consent form asks of the API: the version the page showed (if the notice
/// changed meanwhile, the API refuses), by the method this server ships.
fn consent_request(fields: &ConsentForm) -> Result<GiveConsent, ApiError> {
    if fields.agree.is_empty() {
        return Err(unticked("tick the box to say that you have read the notice and consent"));
    }
    let notice_version = fields
        .notice_version
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::InvalidBody, "reload the page and read the current notice"))?;
    Ok(GiveConsent { notice_version, method: "email_plus".to_owned() })
}

pub async fn give_consent(State(state): State<AppState>, headers: HeaderMap, Path(family): Path<String>, body: Bytes) -> Response {
    let (fields, guardian, csrf) = match posted::<ConsentForm>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let result = match consent_request(&fields) {
        Ok(request) => consent::give_consent(State(state.clone()), guardian.clone(), Path(family.clone()), ApiJson(request)).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(_) => Redirect::to(&format!("/families/{family}/consent/sent")).into_response(),
        Err(error) if error.code() == ErrorCode::NotFound => problem(&error, Some(&csrf)),
        Err(error) => render_consent(&state, &guardian, &csrf, &family, Some(&Notice::new(CONSENT, &error))).await,
    }
}

pub async fn consent_sent(State(state): State<AppState>, headers: HeaderMap, Path(family): Path<String>) -> Response {
    let (guardian, csrf) = match signed_in(&state, &headers, None).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    if let Err(error) = families::get(State(state.clone()), guardian, Path(family.clone())).await {
        return problem(&error, Some(&csrf));
    }
    page(StatusCode::OK, layout("Check your email", Nav::family(&csrf, &family), html! {
        h1 { "We emailed you a link to confirm" }
        p role="status" { "Open the link in the email within 24 hours and press its button: your consent is recorded "
            "then, and you can add your children." }
        p { a href="/" { "Back to your family" } }
    }))
}

pub async fn withdraw_consent(State(state): State<AppState>, headers: HeaderMap, Path(family): Path<String>, body: Bytes) -> Response {
    let (fields, guardian, csrf) = match posted::<Confirmation>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let result = match fields.require("tick the box to confirm that you want to withdraw consent") {
        Ok(()) => consent::withdraw_consent(State(state.clone()), guardian.clone(), Path(family.clone())).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(_) => Redirect::to(&format!("/families/{family}/consent")).into_response(),
        Err(error) => {
            let notice = Notice::new(WITHDRAW_CONSENT, &error);
            render_consent(&state, &guardian, &csrf, &family, Some(&notice)).await
        }
    }
}

// --- The consent email's link ---

const CONFIRM_CONSENT: &str = "confirm-consent";

fn confirm_consent_form(csrf: &str, token: &str, notice: Option<&Notice>) -> Markup {
    html! {
        h1 { "Confirm your consent" }
        p { "Press the button to confirm that you are the child's parent or guardian and that you consent under the "
            a href=(PRIVACY_NOTICE) { "privacy notice" } " you read." }
        (token_form(csrf, CONFIRM_CONSENT, "/confirm-consent", token, "Confirm my consent", notice))
    }
}

const CONFIRM_CONSENT_LINK: EmailedLink =
    EmailedLink { title: "Confirm your consent", form: CONFIRM_CONSENT, body: confirm_consent_form, done: "/confirm-consent/done" };

pub async fn confirm_consent_page(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    CONFIRM_CONSENT_LINK.show(&state, &headers, query.as_deref())
}

pub async fn confirm_consent(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    CONFIRM_CONSENT_LINK
        .redeem(&state, &headers, &body, |token| consent::confirm_consent(State(state.clone()), ApiJson(ConfirmConsent { token })))
        .await
}

pub async fn consent_recorded() -> Response {
    message_page(
        "Consent recorded",
        "Thank you: your consent is recorded, and we emailed you a note of it. You can add your children now, and \
         withdraw consent at any time from the family's consent page.",
        ("/", "Back to your family"),
    )
}

// --- A co-guardian's invitation link ---

const ACCEPT_INVITE: &str = "accept-invite";

pub async fn accept_invite_page(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let token = query_value(query.as_deref(), "token");
    if no_session(&state, &headers).await {
        return invitation_for_a_stranger(&token);
    }
    let (_, csrf) = match signed_in(&state, &headers, None).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    render_accept_invite(&csrf, &token, None)
}

/// Not signed in: say what the link is, and come back to it after signing in.
fn invitation_for_a_stranger(token: &str) -> Response {
    let sign_in = sign_in_then("/accept-invite", token);
    page(StatusCode::OK, layout("Join a family", Nav::default(), html! {
        h1 { "You are invited to a family on Cubby" }
        p { "A parent invited you to help look after their family's toys and contacts. To accept, sign in with the "
            "email address the invitation was sent to; you come back to this page afterwards." }
        p { a href=(sign_in) { "Sign in to accept" } }
        p { "No account yet? " a href="/sign-up" { "Create one with that address" } ", confirm it, then open the "
            "invitation link again." }
    }))
}

fn render_accept_invite(csrf: &str, token: &str, notice: Option<&Notice>) -> Response {
    page(Notice::status(notice), layout("Join a family", Nav::signed_in(csrf), html! {
        h1 { "Join a family" }
        p { "You are invited to be a guardian of a family: you will see and manage its children, toys and contacts, "
            "as its other guardians do." }
        (token_form(csrf, ACCEPT_INVITE, "/accept-invite", token, "Join the family", notice))
    }))
}

pub async fn accept_invite(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (fields, guardian, csrf) = match posted::<TokenForm>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    match families::accept_invite(State(state.clone()), guardian, ApiJson(AcceptInvite { token: fields.token.clone() })).await {
        Ok(_) => Redirect::to("/?done=joined").into_response(),
        Err(error) => render_accept_invite(&csrf, &fields.token, Some(&Notice::new(ACCEPT_INVITE, &error))),
    }
}
