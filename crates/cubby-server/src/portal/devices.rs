//! A family's toys and devices: pairing a toy by the code its screen shows, renaming,
//! revoking and wiping devices, and each child's quiet hours and daily limit. Every
//! change goes through the API handler that does it (`api::devices`, `api::quiet_hours`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cubby_core::ErrorCode;
use cubby_core::quiet_hours::{MAX_DAILY_LIMIT, MAX_WINDOWS, QuietHours, Window};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Confirmation, CsrfOnly, Nav, Notice, PRIVACY_NOTICE, error_for, form, layout, page, posted, problem, signed_in};
use crate::api::devices::{self, ApprovePairing, DeviceView, RenameDevice};
use crate::api::families::family_id;
use crate::api::{children, families, quiet_hours};
use crate::http::auth::Guardian;
use crate::http::client::ClientAddr;
use crate::http::{ApiError, ApiJson, AppState};
use crate::vault::ChildView;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/families/{family}/devices", get(devices_page))
        .route("/families/{family}/pair", post(pair))
        .route("/families/{family}/devices/{device}/rename", post(rename))
        .route("/families/{family}/devices/{device}/revoke", post(revoke))
        .route("/families/{family}/devices/{device}/wipe", post(wipe))
        .route("/families/{family}/children/{child}/quiet-hours", post(set_quiet_hours))
        .route("/families/{family}/children/{child}/quiet-hours/clear", post(clear_quiet_hours))
}

fn devices_url(family: &str) -> String {
    format!("/families/{family}/devices")
}

/// Everything the devices page shows, read through the API's handlers.
struct Family {
    id: String,
    name: String,
    children: Vec<ChildView>,
    devices: Vec<DeviceView>,
    quiet_hours: Vec<Option<QuietHours>>,
}

async fn load(state: &AppState, guardian: &Guardian, family: &str) -> Result<Family, ApiError> {
    let path = || Path(family.to_owned());
    let ApiJson(details) = families::get(State(state.clone()), guardian.clone(), path()).await?;
    let ApiJson(children) = children::list(State(state.clone()), guardian.clone(), path()).await?;
    let ApiJson(devices) = devices::list(State(state.clone()), guardian.clone(), path()).await?;
    let mut schedules = Vec::with_capacity(children.len());
    for child in &children {
        let ids = Path((family.to_owned(), child.id.to_string()));
        let ApiJson(schedule) = quiet_hours::get(State(state.clone()), guardian.clone(), ids).await?;
        schedules.push(schedule);
    }
    Ok(Family { id: family.to_owned(), name: details.name, children, devices, quiet_hours: schedules })
}

async fn devices_page(State(state): State<AppState>, headers: HeaderMap, Path(family): Path<String>) -> Response {
    match signed_in(&state, &headers, None).await {
        Ok((guardian, csrf)) => render(&state, &guardian, &csrf, &family, None, &Typed::default()).await,
        Err(response) => response,
    }
}

/// What the parent typed into a form that was refused, shown again so nothing is lost.
#[derive(Default)]
struct Typed {
    pair: Option<PairForm>,
    /// The child's id, and the schedule as typed.
    quiet_hours: Option<(String, QuietHours)>,
}

/// The devices page, with `notice` beside the form it concerns. Another family's (or no)
/// family: the API's 404, and nothing of it shown.
async fn render(state: &AppState, guardian: &Guardian, csrf: &str, family: &str, notice: Option<Notice>, typed: &Typed) -> Response {
    let family = match load(state, guardian, family).await {
        Ok(family) => family,
        Err(error) => return problem(&error, Some(csrf)),
    };
    let notice = notice.as_ref();
    let main = html! {
        h1 { "Toys and devices" }
        p { "The toys and parent apps of " (family.name) ", and when each child's toys stay quiet." }
        (pair_section(&family, csrf, notice, typed.pair.as_ref()))
        (devices_table(&family, csrf, notice))
        (quiet_hours_section(&family, csrf, notice, typed.quiet_hours.as_ref()))
    };
    page(Notice::status(notice), layout("Toys and devices", Nav::family(csrf, &family.id), main))
}

/// What a post came to: the devices page again (post-redirect-get), the page with the
/// error beside `form_id`, or, for something not in the guardian's families, the API's 404.
async fn outcome<T>(
    state: &AppState,
    guardian: &Guardian,
    csrf: &str,
    family: &str,
    form_id: &str,
    result: Result<T, ApiError>,
    typed: Typed,
) -> Response {
    match result {
        Ok(_) => Redirect::to(&devices_url(family)).into_response(),
        Err(error) if error.code() == ErrorCode::NotFound => problem(&error, Some(csrf)),
        Err(error) => render(state, guardian, csrf, family, Some(Notice::new(form_id, &error)), &typed).await,
    }
}

// ---- Pairing ----

fn pair_section(family: &Family, csrf: &str, notice: Option<&Notice>, typed: Option<&PairForm>) -> Markup {
    let typed_child = typed.map_or("", |t| t.child_id.as_str());
    html! {
        section aria-labelledby="pair-heading" {
            h2 id="pair-heading" { "Pair a toy" }
            @if family.children.is_empty() {
                p { "A toy always belongs to a child: " a href="/" { "add a child first" } ", then come back here." }
            } @else {
                p { "Switch the toy on: its screen shows a short code such as BCDF-GHJK. Type that code here within ten minutes." }
                (error_for(notice, "pair"))
                form id="pair" method="post" action=(format!("/families/{}/pair", family.id)) {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="pair-user-code" { "The code on the toy's screen" }
                    input id="pair-user-code" name="user_code" required autocomplete="off" autocapitalize="characters" spellcheck="false"
                        value=(typed.map_or("", |t| t.user_code.as_str()));
                    label for="pair-child" { "Whose toy is it?" }
                    select id="pair-child" name="child_id" required {
                        @for child in &family.children {
                            @let id = child.id.to_string();
                            option value=(id) selected[id == typed_child] { (child.nickname) }
                        }
                    }
                    label for="pair-name" { "What do you call the toy?" }
                    input id="pair-name" name="name" required maxlength="40" value=(typed.map_or("", |t| t.name.as_str()));
                    p.small { "Cubby keeps only this name and whose toy it is. " a href=(PRIVACY_NOTICE) { "Privacy notice" } }
                    button type="submit" { "Pair the toy" }
                }
            }
        }
    }
}

#[derive(Clone, Deserialize)]
struct PairForm {
    #[serde(default)]
    user_code: String,
    #[serde(default)]
    child_id: String,
    #[serde(default)]
    name: String,
}

async fn pair(State(state): State<AppState>, headers: HeaderMap, client: ClientAddr, Path(family): Path<String>, body: Bytes) -> Response {
    let (_, guardian, csrf) = match posted::<CsrfOnly>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let (result, typed) = match form::<PairForm>(&body) {
        Ok(fields) => (approve(&state, &guardian, client, &family, fields.clone()).await, Typed { pair: Some(fields), ..Typed::default() }),
        Err(error) => (Err(error), Typed::default()),
    };
    outcome(&state, &guardian, &csrf, &family, "pair", result, typed).await
}

async fn approve(state: &AppState, guardian: &Guardian, client: ClientAddr, family: &str, fields: PairForm) -> Result<(), ApiError> {
    let family_id = family_id(family)?;
    let child = fields.child_id.parse().map_err(|_| ApiError::new(ErrorCode::InvalidBody, "choose the child this toy is for"))?;
    let approval = ApprovePairing { user_code: fields.user_code, family_id, child_id: Some(child), name: fields.name, approve: true };
    devices::approve_pairing(State(state.clone()), guardian.clone(), client, ApiJson(approval)).await?;
    Ok(())
}

// ---- The devices table ----

fn kind_label(kind: &str) -> &str {
    match kind {
        "toy" => "Toy",
        "app" => "Parent app",
        other => other,
    }
}

fn state_label(device: &DeviceView) -> &'static str {
    match (device.revoked, device.wipe) {
        (true, _) => "revoked",
        (false, true) => "wipe pending: erases itself when it next connects",
        (false, false) => "active",
    }
}

fn last_seen(device: &DeviceView) -> String {
    device.last_seen_at.map_or_else(
        || "not yet".to_owned(),
        super::dates::when,
    )
}

fn devices_table(family: &Family, csrf: &str, notice: Option<&Notice>) -> Markup {
    let whose = |device: &DeviceView| {
        device
            .child_id
            .and_then(|id| family.children.iter().find(|c| c.id == id))
            .map_or_else(|| "a guardian".to_owned(), |c| c.nickname.clone())
    };
    html! {
        section aria-labelledby="devices-heading" {
            h2 id="devices-heading" { "Paired toys and apps" }
            @if family.devices.is_empty() {
                p { "No toy or app paired yet." }
            } @else {
                table.devices {
                    thead {
                        tr {
                            th scope="col" { "Name" }
                            th scope="col" { "Kind" }
                            th scope="col" { "Whose" }
                            th scope="col" { "State" }
                            th scope="col" { "Last seen" }
                            th scope="col" { "Change" }
                        }
                    }
                    tbody {
                        @for device in &family.devices {
                            tr id=(format!("device-{}", device.device_id)) {
                                td.device-name { (device.name) }
                                td { (kind_label(&device.kind)) }
                                td { (whose(device)) }
                                td.device-state { (state_label(device)) }
                                td { (last_seen(device)) }
                                td { (device_actions(&family.id, device, csrf, notice)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn device_actions(family: &str, device: &DeviceView, csrf: &str, notice: Option<&Notice>) -> Markup {
    let base = format!("/families/{family}/devices/{}", device.device_id);
    let (rename_id, revoke_id, wipe_id) =
        (format!("rename-{}", device.device_id), format!("revoke-{}", device.device_id), format!("wipe-{}", device.device_id));
    html! {
        @if device.revoked {
            p.small { "This device can no longer connect. Pair it again to use it." }
        } @else {
            (error_for(notice, &rename_id))
            form id=(rename_id) method="post" action=(format!("{base}/rename")) {
                input type="hidden" name="csrf" value=(csrf);
                label for=(format!("{rename_id}-name")) { "New name" }
                input id=(format!("{rename_id}-name") ) name="name" required maxlength="40" value=(device.name);
                button type="submit" aria-label=(format!("Rename {}", device.name)) { "Rename" }
            }
            (error_for(notice, &revoke_id))
            form id=(revoke_id) method="post" action=(format!("{base}/revoke")) {
                input type="hidden" name="csrf" value=(csrf);
                p.small { "Revoking cuts the device off at once: it can never connect again unless you pair it anew." }
                button type="submit" { "Revoke " (device.name) }
            }
            @if !device.wipe {
                (error_for(notice, &wipe_id))
                form id=(wipe_id) method="post" action=(format!("{base}/wipe")) {
                    input type="hidden" name="csrf" value=(csrf);
                    div.check {
                        input type="checkbox" id=(format!("{wipe_id}-confirm")) name="confirm" value="yes" required;
                        label for=(format!("{wipe_id}-confirm")) {
                            "I understand that " (device.name) " will erase its keys and every message it holds "
                            "the next time it connects; this cannot be undone"
                        }
                    }
                    button type="submit" { "Wipe " (device.name) }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct NameForm {
    #[serde(default)]
    name: String,
}

async fn rename(State(state): State<AppState>, headers: HeaderMap, Path((family, device)): Path<(String, String)>, body: Bytes) -> Response {
    let (_, guardian, csrf) = match posted::<CsrfOnly>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let form_id = format!("rename-{device}");
    let result = match form::<NameForm>(&body) {
        Ok(fields) => {
            let ids = Path((family.clone(), device));
            devices::rename(State(state.clone()), guardian.clone(), ids, ApiJson(RenameDevice { name: fields.name })).await
        }
        Err(error) => Err(error),
    };
    outcome(&state, &guardian, &csrf, &family, &form_id, result, Typed::default()).await
}

async fn revoke(State(state): State<AppState>, headers: HeaderMap, Path((family, device)): Path<(String, String)>, body: Bytes) -> Response {
    let (_, guardian, csrf) = match posted::<CsrfOnly>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let form_id = format!("revoke-{device}");
    let result = devices::revoke(State(state.clone()), guardian.clone(), Path((family.clone(), device))).await;
    outcome(&state, &guardian, &csrf, &family, &form_id, result, Typed::default()).await
}

async fn wipe(State(state): State<AppState>, headers: HeaderMap, Path((family, device)): Path<(String, String)>, body: Bytes) -> Response {
    let (_, guardian, csrf) = match posted::<CsrfOnly>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let form_id = format!("wipe-{device}");
    let result = match Confirmation::given(&body, "tick the box to confirm the wipe: nothing was changed") {
        Ok(()) => devices::wipe(State(state.clone()), guardian.clone(), Path((family.clone(), device))).await,
        Err(error) => Err(error),
    };
    outcome(&state, &guardian, &csrf, &family, &form_id, result, Typed::default()).await
}

// ---- Quiet hours ----

const DAYS: [(&str, &str); 7] =
    [("mon", "Mon"), ("tue", "Tue"), ("wed", "Wed"), ("thu", "Thu"), ("fri", "Fri"), ("sat", "Sat"), ("sun", "Sun")];

/// Offered when no child of the family has a time zone yet; the page asks to change it.
const DEFAULT_TIME_ZONE: &str = "Europe/London";

/// A few common zones to pick from; any IANA name may be typed.
const COMMON_TIME_ZONES: [&str; 10] = [
    "Europe/London",
    "Europe/Dublin",
    "Europe/Paris",
    "Europe/Berlin",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Australia/Sydney",
    "Asia/Tokyo",
    "UTC",
];

fn describe(schedule: Option<&QuietHours>) -> Markup {
    html! {
        @match schedule {
            None => p { "No quiet hours: messages arrive at any time, with no daily limit." },
            Some(schedule) => {
                @if schedule.windows.is_empty() {
                    p { "No quiet time set." }
                } @else {
                    ul {
                        @for window in &schedule.windows {
                            li { "Quiet from " (window.start) " to " (window.end) ", " (days_text(&window.days)) }
                        }
                    }
                }
                p {
                    @match schedule.daily_limit {
                        Some(limit) => { "At most " (limit) " messages sent a day. " }
                        None => { "No daily limit. " }
                    }
                    "Times are in " (schedule.time_zone) "."
                }
            }
        }
    }
}

fn days_text(days: &[String]) -> String {
    if days.is_empty() {
        return "every day".to_owned();
    }
    let names: Vec<&str> =
        days.iter().filter_map(|d| DAYS.iter().find(|(value, _)| value.eq_ignore_ascii_case(d)).map(|(_, label)| *label)).collect();
    format!("starting on {}", names.join(", "))
}

fn quiet_hours_section(family: &Family, csrf: &str, notice: Option<&Notice>, typed: Option<&(String, QuietHours)>) -> Markup {
    let family_zone = family.quiet_hours.iter().flatten().map(|s| s.time_zone.as_str()).next().unwrap_or(DEFAULT_TIME_ZONE);
    html! {
        @if !family.children.is_empty() {
            section aria-labelledby="quiet-hours-heading" {
                h2 id="quiet-hours-heading" { "Quiet hours" }
                p {
                    "During quiet hours a child's toys receive only the messages guardians mark urgent; the others wait "
                    "and arrive when the quiet time ends. A time that ends earlier than it starts runs past midnight."
                }
                datalist id="time-zones" { @for zone in COMMON_TIME_ZONES { option value=(zone) {} } }
                @for (child, saved) in family.children.iter().zip(&family.quiet_hours) {
                    @let typed = typed.filter(|(id, _)| *id == child.id.to_string()).map(|(_, schedule)| schedule);
                    (child_quiet_hours(&family.id, child, saved.as_ref(), typed, family_zone, csrf, notice))
                }
            }
        }
    }
}

/// One child's quiet hours: what is `saved`, and the form filled with it (or with what was
/// `typed`, when that was refused).
fn child_quiet_hours(
    family: &str,
    child: &ChildView,
    saved: Option<&QuietHours>,
    typed: Option<&QuietHours>,
    family_zone: &str,
    csrf: &str,
    notice: Option<&Notice>,
) -> Markup {
    let form_id = format!("quiet-hours-{}", child.id);
    let clear_id = format!("clear-quiet-hours-{}", child.id);
    let action = format!("/families/{family}/children/{}/quiet-hours", child.id);
    let schedule = typed.or(saved);
    let windows = schedule.map_or(&[][..], |s| s.windows.as_slice());
    // The windows set so far, and one empty row to add another.
    let rows = (windows.len() + 1).min(MAX_WINDOWS);
    let zone = schedule.map_or(family_zone, |s| s.time_zone.as_str());
    let limit = schedule.and_then(|s| s.daily_limit).map(|l| l.to_string()).unwrap_or_default();
    html! {
        h3 id=(format!("quiet-hours-{}-heading", child.id)) { (child.nickname) }
        (describe(saved))
        (error_for(notice, &form_id))
        form id=(form_id) method="post" action=(action) aria-labelledby=(format!("quiet-hours-{}-heading", child.id)) {
            input type="hidden" name="csrf" value=(csrf);
            @for index in 0..rows {
                (window_fields(&form_id, index, windows.get(index)))
            }
            p.small { "Leave both times of a row empty to remove that quiet time." }
            label for=(format!("{form_id}-zone")) { "Time zone" }
            input id=(format!("{form_id}-zone")) name="time_zone" list="time-zones" required value=(zone)
                aria-describedby=(format!("{form_id}-zone-help"));
            p.small id=(format!("{form_id}-zone-help")) {
                "Where the toy is, as a city name such as Europe/London or America/New_York, so that 07:00 means 07:00 at home."
            }
            label for=(format!("{form_id}-limit")) { "Daily limit (optional)" }
            input id=(format!("{form_id}-limit")) name="daily_limit" type="number" min="1" max=(MAX_DAILY_LIMIT) value=(limit)
                aria-describedby=(format!("{form_id}-limit-help"));
            p.small id=(format!("{form_id}-limit-help")) { "The most messages " (child.nickname) "'s toys may send in a day; empty for no limit." }
            button type="submit" { "Save quiet hours for " (child.nickname) }
        }
        @if saved.is_some() {
            (error_for(notice, &clear_id))
            form id=(clear_id) method="post" action=(format!("{action}/clear")) {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" aria-label=(format!("Turn quiet hours off for {}", child.nickname)) { "Turn quiet hours off" }
            }
        }
    }
}

fn window_fields(form_id: &str, index: usize, window: Option<&Window>) -> Markup {
    let id = |part: &str| format!("{form_id}-{index}-{part}");
    let ticked = |day: &str| window.is_some_and(|w| w.days.iter().any(|d| d.eq_ignore_ascii_case(day)));
    html! {
        fieldset {
            legend { "Quiet time " (index + 1) }
            label for=(id("start")) { "From" }
            input id=(id("start")) type="time" name=(format!("start_{index}")) value=(window.map_or("", |w| w.start.as_str()));
            label for=(id("end")) { "Until" }
            input id=(id("end")) type="time" name=(format!("end_{index}")) value=(window.map_or("", |w| w.end.as_str()));
            fieldset.days {
                legend { "On (none ticked: every day)" }
                @for (day, label) in DAYS {
                    span.day {
                        input type="checkbox" id=(id(day)) name=(format!("days_{index}")) value=(day) checked[ticked(day)];
                        label for=(id(day)) { (label) }
                    }
                }
            }
        }
    }
}

/// The schedule as a quiet-hours form was filled in (a row with at least one time is a
/// window; a daily limit that is not a number is left out). Read as pairs because the
/// day checkboxes repeat their field name.
fn typed_schedule(fields: &[(String, String)]) -> QuietHours {
    let value = |name: &str| fields.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.trim());
    let windows = (0..MAX_WINDOWS)
        .filter_map(|index| {
            let (start, end) = (value(&format!("start_{index}")), value(&format!("end_{index}")));
            let day_field = format!("days_{index}");
            let days = fields.iter().filter(|(k, _)| *k == day_field).map(|(_, v)| v.clone()).collect();
            (!start.is_empty() || !end.is_empty()).then(|| Window { start: start.to_owned(), end: end.to_owned(), days })
        })
        .collect();
    QuietHours { time_zone: value("time_zone").to_owned(), windows, daily_limit: value("daily_limit").parse().ok() }
}

/// What the form itself got wrong, said in the form's terms; the API checks the rest.
fn form_problem(fields: &[(String, String)], typed: &QuietHours) -> Option<ApiError> {
    let limit = fields.iter().find(|(k, _)| k == "daily_limit").map_or("", |(_, v)| v.trim());
    if !limit.is_empty() && typed.daily_limit.is_none() {
        return Some(ApiError::new(ErrorCode::InvalidBody, format!("the daily limit must be a whole number from 1 to {MAX_DAILY_LIMIT}")));
    }
    let half = typed.windows.iter().position(|w| w.start.is_empty() || w.end.is_empty())?;
    Some(ApiError::new(ErrorCode::InvalidBody, format!("quiet time {} needs both a start and an end", half + 1)))
}

async fn set_quiet_hours(State(state): State<AppState>, headers: HeaderMap, Path((family, child)): Path<(String, String)>, body: Bytes) -> Response {
    let (_, guardian, csrf) = match posted::<CsrfOnly>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let fields: Vec<(String, String)> = match form(&body) {
        Ok(fields) => fields,
        Err(error) => return problem(&error, Some(&csrf)),
    };
    let schedule = typed_schedule(&fields);
    let result = match form_problem(&fields, &schedule) {
        Some(error) => Err(error),
        None => {
            let ids = Path((family.clone(), child.clone()));
            quiet_hours::set(State(state.clone()), guardian.clone(), ids, ApiJson(schedule.clone())).await
        }
    };
    let form_id = format!("quiet-hours-{child}");
    let typed = Typed { quiet_hours: Some((child, schedule)), ..Typed::default() };
    outcome(&state, &guardian, &csrf, &family, &form_id, result, typed).await
}

async fn clear_quiet_hours(State(state): State<AppState>, headers: HeaderMap, Path((family, child)): Path<(String, String)>, body: Bytes) -> Response {
    let (_, guardian, csrf) = match posted::<CsrfOnly>(&state, &headers, &body).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let form_id = format!("clear-quiet-hours-{child}");
    let result = quiet_hours::delete(State(state.clone()), guardian.clone(), Path((family.clone(), child))).await;
    outcome(&state, &guardian, &csrf, &family, &form_id, result, Typed::default()).await
}
