//! A family's learning content: per child, the titles offered to its toys (with a way to
//! stop offering each) and the catalogue of titles suitable for it, to search and offer
//! from. Every read and change goes through `api::content`'s handlers, so the age and
//! price rules are the API's.

use std::collections::BTreeSet;

use axum::Router;
use axum::body::{Bytes, to_bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cubby_core::ErrorCode;
use cubby_core::validation::AgeBand;
use maud::{Markup, html};
use serde::Deserialize;

use super::{CsrfOnly, Nav, Notice, error_for, layout, page, posted, problem, signed_in, with_csrf};
use crate::api::children;
use crate::api::content::{self, ApprovalRequest, ApprovedTitle};
use crate::http::auth::Guardian;
use crate::http::{ApiError, ApiJson, AppState};
use crate::vault::ChildView;

/// A catalogue page is at most this big when read back from the handler.
const MAX_CATALOGUE_BYTES: usize = 4 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/families/{family}/learning", get(learning_page).post(search_posted))
        .route("/families/{family}/children/{child}/titles", post(approve))
        .route("/families/{family}/children/{child}/titles/{package}/withdraw", post(withdraw))
}

fn learning_url(family: &str) -> String {
    format!("/families/{family}/learning")
}

fn age_label(band: AgeBand) -> &'static str {
    match band {
        AgeBand::Under6 => "under 6",
        AgeBand::From6To8 => "6 to 8",
        AgeBand::From9To12 => "9 to 12",
        AgeBand::From13To17 => "13 to 17",
    }
}

/// The search one child's catalogue is showing (the page's query string). Only the child
/// it names is filtered; the others show their first page.
#[derive(Deserialize, Default, Clone)]
struct Search {
    #[serde(default)]
    child: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    page: String,
}

impl Search {
    /// The query string for the catalogue handler, or for a link to `page` of this search.
    fn query(&self, page: &str) -> String {
        let pairs = [("q", self.q.as_str()), ("subject", &self.subject), ("language", &self.language), ("page", page)];
        let pairs: Vec<_> = pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }

    fn link(&self, family: &str, child: &str, page: usize) -> String {
        let query = self.query(&page.to_string());
        format!("{}?child={child}&{query}#catalogue-{child}", learning_url(family))
    }
}

/// The part of the catalogue handler's answer the page shows (read back from its JSON).
#[derive(Deserialize)]
struct Catalogue {
    items: Vec<Title>,
    page: usize,
    per_page: usize,
    total: usize,
}

#[derive(Deserialize)]
struct Title {
    package_id: String,
    title: String,
    description: String,
    languages: Vec<String>,
    age_band: AgeBand,
    subjects: Vec<String>,
    content_descriptors: Vec<String>,
    price: Option<Price>,
    size: u64,
    publisher: Publisher,
}

#[derive(Deserialize)]
struct Price {
    amount_cents: u64,
    currency: String,
}

#[derive(Deserialize)]
struct Publisher {
    name: String,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorMessage,
}

#[derive(Deserialize)]
struct ErrorMessage {
    message: String,
}

fn price_label(price: Option<(u64, &str)>) -> String {
    match price {
        None => "Free".to_owned(),
        Some((cents, currency)) => format!("{currency} {}.{:02}", cents / 100, cents % 100),
    }
}

fn size_label(bytes: u64) -> String {
    // Decimal megabytes, as download sizes are usually given.
    let tenths = bytes.div_ceil(100_000);
    format!("{}.{} MB", tenths / 10, tenths % 10)
}

/// One child's part of the page.
struct ChildLearning {
    child: ChildView,
    approved: Vec<ApprovedTitle>,
    catalogue: Result<Catalogue, ApiError>,
    search: Search,
}

async fn load(state: &AppState, guardian: &Guardian, family: &str, search: &Search) -> Result<Vec<ChildLearning>, ApiError> {
    let ApiJson(kids) = children::list(State(state.clone()), guardian.clone(), Path(family.to_owned())).await?;
    let mut sections = Vec::with_capacity(kids.len());
    for child in kids {
        let ids = || Path((family.to_owned(), child.id.to_string()));
        let ApiJson(approved) = content::list_approved(State(state.clone()), guardian.clone(), ids()).await?;
        let search = if search.child == child.id.to_string() { search.clone() } else { Search::default() };
        let raw = RawQuery(Some(search.query(&search.page)));
        let answer = content::child_catalogue(State(state.clone()), guardian.clone(), ids(), raw).await;
        let catalogue = read_catalogue(answer).await?;
        sections.push(ChildLearning { child, approved, catalogue, search });
    }
    Ok(sections)
}

/// The catalogue handler answers with a response: its JSON, or a refusal. A refused
/// search (say, a page number that is not one) is shown beside the search form; a child
/// that is not the guardian's is the page's 404.
async fn read_catalogue(answer: Response) -> Result<Result<Catalogue, ApiError>, ApiError> {
    let status = answer.status();
    let body = to_bytes(answer.into_body(), MAX_CATALOGUE_BYTES).await.map_err(|e| ApiError::internal(&e))?;
    if status == StatusCode::OK {
        return serde_json::from_slice(&body).map(Ok).map_err(|e| ApiError::internal(&e));
    }
    if status == StatusCode::NOT_FOUND {
        return Err(ApiError::not_found());
    }
    let message = serde_json::from_slice::<ErrorAnswer>(&body)
        .map_or_else(|_| "that search could not be done".to_owned(), |a| a.error.message);
    Ok(Err(ApiError::new(ErrorCode::InvalidParameter, message)))
}

async fn learning_page(State(state): State<AppState>, headers: HeaderMap, Path(family): Path<String>, RawQuery(query): RawQuery) -> Response {
    // An unreadable query string is treated as no search: the page still shows.
    let search: Search = serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    match signed_in(&state, &headers, None).await {
        Ok((guardian, csrf)) => render(&state, &guardian, &csrf, &family, None, &search).await,
        Err(response) => response,
    }
}

/// The search form is a GET form; a post to the page (a script, or an old browser) gets a
/// page saying so, framed and with the portal's headers like every other answer.
async fn search_posted() -> Response {
    problem(&ApiError::method_not_allowed(), None)
}

/// The learning page, with `notice` beside the form it concerns. Another family's (or no)
/// family: the API's 404, and nothing of it shown.
async fn render(state: &AppState, guardian: &Guardian, csrf: &str, family: &str, notice: Option<Notice>, search: &Search) -> Response {
    let sections = match load(state, guardian, family, search).await {
        Ok(sections) => sections,
        Err(error) => return problem(&error, Some(csrf)),
    };
    let notice = notice.as_ref();
    let main = html! {
        h1 { "Learning" }
        p { "Choose the titles each child's toys may install. Only titles for the child's age or younger are listed." }
        @if sections.is_empty() {
            p { "Add a child to your family first: titles are offered to one child at a time." }
        }
        @for section in &sections {
            (child_section(family, csrf, notice, section))
        }
    };
    page(Notice::status(notice), layout("Learning", Nav::family(csrf, family), main))
}

fn child_section(family: &str, csrf: &str, notice: Option<&Notice>, section: &ChildLearning) -> Markup {
    let child = &section.child;
    let id = child.id.to_string();
    html! {
        section aria-labelledby=(format!("child-{id}")) {
            h2 id=(format!("child-{id}")) { (child.nickname) " (ages " (age_label(child.age_band)) ")" }
            (approved_table(family, csrf, notice, section))
            (catalogue_section(family, csrf, notice, section))
        }
    }
}

fn approved_table(family: &str, csrf: &str, notice: Option<&Notice>, section: &ChildLearning) -> Markup {
    let child = &section.child;
    let child_id = child.id.to_string();
    html! {
        h3 { "Offered to " (child.nickname) }
        @if section.approved.is_empty() {
            p { "Nothing yet: offer a title from the list below." }
        } @else {
            table.devices {
                thead { tr {
                    th scope="col" { "Title" } th scope="col" { "Version" } th scope="col" { "Publisher" }
                    th scope="col" { "Size" } th scope="col" { "Price" } th scope="col" { "Action" }
                } }
                tbody {
                    @for approved in &section.approved {
                        @let form_id = format!("withdraw-{child_id}-{}", approved.package_id);
                        @let name = approved.title.as_ref().map_or(approved.package_id.as_str(), |t| t.title.as_str());
                        tr {
                            @if let Some(title) = &approved.title {
                                td { (title.title) }
                                td { (title.version) }
                                td { (title.publisher.name) }
                                td { (size_label(title.size)) }
                                td { (price_label(title.price.as_ref().map(|p| (p.amount_cents, p.currency.as_str())))) }
                            } @else {
                                td { (approved.package_id) }
                                td colspan="4" { "No longer published" }
                            }
                            td {
                                form id=(form_id) method="post"
                                    action=(format!("/families/{family}/children/{child_id}/titles/{}/withdraw", approved.package_id)) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button type="submit" aria-label=(format!("Stop offering {name} to {}", child.nickname)) { "Stop offering" }
                                }
                                (error_for(notice, &form_id))
                            }
                        }
                    }
                }
            }
        }
    }
}

fn catalogue_section(family: &str, csrf: &str, notice: Option<&Notice>, section: &ChildLearning) -> Markup {
    let child = &section.child;
    let child_id = child.id.to_string();
    let search_id = format!("search-{child_id}");
    let approved: BTreeSet<&str> = section.approved.iter().map(|a| a.package_id.as_str()).collect();
    let approve_prefix = format!("approve-{child_id}-");
    // A refused offer of a title this page does not list (posted by hand, or from an older
    // page) is still shown, above the list.
    let stray = notice.filter(|n| {
        n.form.starts_with(&approve_prefix)
            && section.catalogue.as_ref().map_or(true, |c| !c.items.iter().any(|t| n.form == format!("{approve_prefix}{}", t.package_id)))
    });
    let search = &section.search;
    html! {
        h3 id=(format!("catalogue-{child_id}")) { "Titles for " (child.nickname) }
        form id=(search_id) method="get" action=(learning_url(family)) {
            input type="hidden" name="child" value=(child_id);
            label for=(format!("q-{child_id}")) { "Words in the title or description" }
            input id=(format!("q-{child_id}")) type="search" name="q" value=(search.q);
            label for=(format!("subject-{child_id}")) { "Subject" }
            input id=(format!("subject-{child_id}")) type="text" name="subject" value=(search.subject);
            label for=(format!("language-{child_id}")) { "Language (for example en)" }
            input id=(format!("language-{child_id}")) type="text" name="language" value=(search.language);
            button type="submit" aria-label=(format!("Search titles for {}", child.nickname)) { "Search" }
        }
        @if let Some(stray) = stray {
            (error_for(Some(stray), &stray.form))
        }
        @match &section.catalogue {
            Err(error) => p.error role="alert" id=(format!("{search_id}-error")) { (error.message()) },
            Ok(catalogue) => {
                @if catalogue.items.is_empty() {
                    p { "No titles match." }
                }
                ul.titles {
                    @for title in &catalogue.items {
                        (title_entry(family, csrf, notice, child, approved.contains(title.package_id.as_str()), title))
                    }
                }
                (pagination(family, child, search, catalogue))
            }
        }
    }
}

fn title_entry(family: &str, csrf: &str, notice: Option<&Notice>, child: &ChildView, offered: bool, title: &Title) -> Markup {
    let child_id = child.id.to_string();
    let form_id = format!("approve-{child_id}-{}", title.package_id);
    let price = price_label(title.price.as_ref().map(|p| (p.amount_cents, p.currency.as_str())));
    html! {
        li.title {
            h4 { (title.title) }
            p { (title.description) }
            dl {
                dt { "Ages" } dd { (age_label(title.age_band)) }
                dt { "Languages" } dd { (title.languages.join(", ")) }
                dt { "Subjects" } dd { (title.subjects.join(", ")) }
                dt { "Content notes" }
                dd { @if title.content_descriptors.is_empty() { "None" } @else { (title.content_descriptors.join(", ")) } }
                dt { "Publisher" } dd { (title.publisher.name) }
                dt { "Size" } dd { (size_label(title.size)) }
                dt { "Price" } dd { (price) }
            }
            @if offered {
                p.offered { "Offered" }
            } @else {
                form id=(form_id) method="post" action=(format!("/families/{family}/children/{child_id}/titles")) {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="package_id" value=(title.package_id);
                    button type="submit" aria-label=(format!("Offer {} to {}", title.title, child.nickname)) {
                        "Offer to " (child.nickname)
                    }
                }
                (error_for(notice, &form_id))
            }
        }
    }
}

fn pagination(family: &str, child: &ChildView, search: &Search, catalogue: &Catalogue) -> Markup {
    let child_id = child.id.to_string();
    let pages = catalogue.total.div_ceil(catalogue.per_page.max(1));
    html! {
        @if pages > 1 {
            nav.pages aria-label=(format!("Pages of titles for {}", child.nickname)) {
                @for number in 1..=pages {
                    @if number == catalogue.page {
                        span aria-current="page" { (number) }
                    } @else {
                        a href=(search.link(family, &child_id, number)) { (number) }
                    }
                }
            }
        }
    }
}

/// What a post came to: the page again (post-redirect-get), the page with the error
/// beside `form_id`, or, for something not in the guardian's families, the API's 404.
async fn outcome<T>(state: &AppState, guardian: &Guardian, csrf: &str, family: &str, form_id: &str, result: Result<T, ApiError>) -> Response {
    match result {
        Ok(_) => Redirect::to(&learning_url(family)).into_response(),
        Err(error) if error.code() == ErrorCode::NotFound => problem(&error, Some(csrf)),
        Err(error) => render(state, guardian, csrf, family, Some(Notice::new(form_id, &error)), &Search::default()).await,
    }
}

#[derive(Deserialize)]
struct ApproveForm {
    #[serde(default)]
    csrf: String,
    package_id: String,
}

with_csrf!(ApproveForm);

async fn approve(State(state): State<AppState>, headers: HeaderMap, Path((family, child)): Path<(String, String)>, body: Bytes) -> Response {
    let (fields, guardian, csrf) = match posted::<ApproveForm>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let form_id = format!("approve-{child}-{}", fields.package_id);
    let request = ApiJson(ApprovalRequest { package_id: fields.package_id });
    let result = content::approve(State(state.clone()), guardian.clone(), Path((family.clone(), child)), request).await;
    outcome(&state, &guardian, &csrf, &family, &form_id, result).await
}

async fn withdraw(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((family, child, package)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let (_, guardian, csrf) = match posted::<CsrfOnly>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let form_id = format!("withdraw-{child}-{package}");
    let result = content::withdraw(State(state.clone()), guardian.clone(), Path((family.clone(), child, package))).await;
    outcome(&state, &guardian, &csrf, &family, &form_id, result).await
}
