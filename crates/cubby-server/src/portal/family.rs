//! The family dashboard: each family of the signed-in guardian, its children and its
//! devices, read through the API's handlers (so `policy::authorize` decides what shows).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use cubby_core::ErrorCode;
use cubby_core::validation::AgeBand;
use maud::{Markup, html};
use serde::Deserialize;

use super::pair::{devices_section, pair_form};
use super::{PRIVACY_NOTICE, form, layout, page, problem, signed_in};
use crate::api::children::{self, NewChild};
use crate::api::consent::consent_status;
use crate::api::devices::{self, DeviceView};
use crate::api::families;
use crate::http::auth::Guardian;
use crate::http::error::status_for;
use crate::http::{ApiError, ApiJson, AppState};
use crate::vault::ChildView;

const AGE_BANDS: [(AgeBand, &str); 4] = [
    (AgeBand::Under6, "under 6"),
    (AgeBand::From6To8, "6 to 8"),
    (AgeBand::From9To12, "9 to 12"),
    (AgeBand::From13To17, "13 to 17"),
];

fn age_label(band: AgeBand) -> &'static str {
    AGE_BANDS.iter().find(|(b, _)| *b == band).map_or("", |(_, label)| label)
}

/// Which form of which family an error belongs next to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FormKind {
    AddChild,
    Pair,
    Devices,
}

/// An error to show beside the form that caused it.
pub struct Notice {
    pub family: String,
    pub form: FormKind,
    pub message: String,
    pub status: StatusCode,
}

impl Notice {
    pub fn from_error(family: &str, form: FormKind, error: &ApiError) -> Self {
        Self { family: family.to_owned(), form, message: error.message().to_owned(), status: status_for(error.code()) }
    }

    pub fn for_form<'a>(notice: Option<&'a Self>, family: &str, form: FormKind) -> Option<&'a str> {
        notice.filter(|n| n.family == family && n.form == form).map(|n| n.message.as_str())
    }
}

/// One family as the dashboard shows it.
struct FamilyView {
    id: String,
    name: String,
    consented: bool,
    children: Vec<ChildView>,
    devices: Vec<DeviceView>,
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
        let consented = consent_status(state, family.id).await?.collection_valid;
        views.push(FamilyView { id, name: family.name, consented, children, devices });
    }
    Ok(views)
}

pub async fn dashboard(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (guardian, csrf) = match signed_in(&state, &headers, None).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    render(&state, &guardian, &csrf, None).await
}

/// The dashboard, with `notice` shown beside the form it concerns.
pub async fn render(state: &AppState, guardian: &Guardian, csrf: &str, notice: Option<Notice>) -> Response {
    let families = match load(state, guardian).await {
        Ok(families) => families,
        Err(error) => return problem(&error, Some(csrf)),
    };
    let status = notice.as_ref().map_or(StatusCode::OK, |n| n.status);
    let main = html! {
        h1 { "Your family" }
        @if families.is_empty() {
            p { "You are not in a family yet. Create one with POST /api/v1/families, or accept a co-guardian's invitation; "
                "these steps come to the portal soon." }
        }
        @for family in &families {
            section.family aria-labelledby=(format!("family-{}", family.id)) {
                h2 id=(format!("family-{}", family.id)) { (family.name) }
                (children_section(family, csrf, notice.as_ref()))
                (devices_section(&family.id, &family.devices, &family.children, csrf, notice.as_ref()))
                (pair_form(&family.id, &family.children, csrf, notice.as_ref()))
            }
        }
    };
    page(status, layout("Your family", super::Nav::signed_in(csrf), main))
}

fn children_section(family: &FamilyView, csrf: &str, notice: Option<&Notice>) -> Markup {
    let error = Notice::for_form(notice, &family.id, FormKind::AddChild);
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
        @if !family.consented {
            p.notice role="note" {
                "Before you add a child, a guardian of this family must agree to the "
                a href=(PRIVACY_NOTICE) { "privacy notice" }
                ". Read it, then give your consent (for now through the API: POST /api/v1/families/"
                (family.id) "/consent; a consent page is coming to the portal)."
            }
        }
        form method="post" action=(format!("/families/{}/children", family.id)) {
            input type="hidden" name="csrf" value=(csrf);
            h4 { "Add a child" }
            @if let Some(error) = error {
                p.error role="alert" { (error) }
            }
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

#[derive(Deserialize)]
pub struct ChildForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    nickname: String,
    #[serde(default)]
    age_band: String,
}

pub async fn add_child(State(state): State<AppState>, headers: HeaderMap, Path(family): Path<String>, body: Bytes) -> Response {
    let fields: ChildForm = match form(&body) {
        Ok(fields) => fields,
        Err(error) => return problem(&error, None),
    };
    let (guardian, csrf) = match signed_in(&state, &headers, Some(&fields.csrf)).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    let Some(age_band) = AGE_BANDS.iter().map(|(b, _)| *b).find(|b| b.as_str() == fields.age_band) else {
        let error = ApiError::new(ErrorCode::InvalidBody, "choose the child's age from the list");
        return render(&state, &guardian, &csrf, Some(Notice::from_error(&family, FormKind::AddChild, &error))).await;
    };
    let child = NewChild { nickname: fields.nickname, age_band };
    match children::create(State(state.clone()), guardian.clone(), Path(family.clone()), ApiJson(child)).await {
        Ok(_) => Redirect::to("/").into_response(),
        // Someone else's (or no) family: the same plain answer the API gives.
        Err(error) if error.code() == ErrorCode::NotFound => problem(&error, Some(&csrf)),
        Err(error) => render(&state, &guardian, &csrf, Some(Notice::from_error(&family, FormKind::AddChild, &error))).await,
    }
}

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
}
