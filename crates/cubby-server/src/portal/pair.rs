//! Pairing a toy (the code its screen shows, and the child it is for) and revoking a
//! device: the API's `POST /api/v1/pairing/approve` and `DELETE …/devices/{id}` handlers.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use cubby_core::{ChildId, ErrorCode};
use maud::{Markup, html};
use serde::Deserialize;

use super::family::{FormKind, Notice, render};
use super::{form, problem, signed_in};
use crate::api::devices::{self, ApprovePairing, DeviceView};
use crate::api::families::family_id;
use crate::http::client::ClientAddr;
use crate::http::{ApiError, ApiJson, AppState};
use crate::vault::ChildView;

pub fn devices_section(family: &str, devices: &[DeviceView], children: &[ChildView], csrf: &str, notice: Option<&Notice>) -> Markup {
    let child_name = |device: &DeviceView| {
        device.child_id.and_then(|id| children.iter().find(|c| c.id == id)).map(|c| c.nickname.clone())
    };
    html! {
        h3 { "Devices" }
        @if let Some(error) = Notice::for_form(notice, family, FormKind::Devices) {
            p.error role="alert" { (error) }
        }
        @if devices.is_empty() {
            p { "No toy or app paired yet." }
        } @else {
            table.devices {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "For" } th scope="col" { "State" } th scope="col" { span.visually-hidden { "Action" } } } }
                tbody {
                    @for device in devices {
                        tr {
                            td.device-name { (device.name) }
                            td { (device.kind) }
                            td { (child_name(device).unwrap_or_else(|| "a guardian".to_owned())) }
                            td.device-state { @if device.revoked { "revoked" } @else { "active" } }
                            td {
                                @if !device.revoked {
                                    form.inline method="post" action=(format!("/families/{family}/devices/{}/revoke", device.device_id)) {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button type="submit" aria-label=(format!("Revoke {}", device.name)) { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn pair_form(family: &str, children: &[ChildView], csrf: &str, notice: Option<&Notice>) -> Markup {
    let code = format!("user-code-{family}");
    let child = format!("child-{family}");
    let name = format!("device-name-{family}");
    html! {
        form method="post" action=(format!("/families/{family}/pair")) {
            input type="hidden" name="csrf" value=(csrf);
            h4 { "Pair a toy" }
            @if children.is_empty() {
                p { "Add a child first: a toy always belongs to a child." }
            } @else {
                @if let Some(error) = Notice::for_form(notice, family, FormKind::Pair) {
                    p.error role="alert" { (error) }
                }
                label for=(code) { "The code on the toy's screen" }
                input id=(code) name="user_code" required autocomplete="off" autocapitalize="characters" spellcheck="false";
                label for=(child) { "Whose toy is it?" }
                select id=(child) name="child_id" {
                    @for c in children { option value=(c.id.to_string()) { (c.nickname) } }
                }
                label for=(name) { "What do you call the toy?" }
                input id=(name) name="name" required maxlength="40";
                button type="submit" { "Pair the toy" }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct PairForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user_code: String,
    #[serde(default)]
    child_id: String,
    #[serde(default)]
    name: String,
}

pub async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientAddr,
    Path(family): Path<String>,
    body: Bytes,
) -> Response {
    let fields: PairForm = match form(&body) {
        Ok(fields) => fields,
        Err(error) => return problem(&error, None),
    };
    let (guardian, csrf) = match signed_in(&state, &headers, Some(&fields.csrf)).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    let family_id = match family_id(&family) {
        Ok(id) => id,
        Err(error) => return problem(&error, Some(&csrf)),
    };
    let Ok(child_id) = fields.child_id.parse::<ChildId>() else {
        let error = ApiError::new(ErrorCode::InvalidBody, "choose the child this toy is for");
        return render(&state, &guardian, &csrf, Some(Notice::from_error(&family, FormKind::Pair, &error))).await;
    };
    let approval =
        ApprovePairing { user_code: fields.user_code, family_id, child_id: Some(child_id), name: fields.name, approve: true };
    match devices::approve_pairing(State(state.clone()), guardian.clone(), client, ApiJson(approval)).await {
        Ok(_) => Redirect::to("/").into_response(),
        Err(error) if error.code() == ErrorCode::NotFound && !guardian.families.contains(&family_id) => {
            problem(&error, Some(&csrf))
        }
        Err(error) => render(&state, &guardian, &csrf, Some(Notice::from_error(&family, FormKind::Pair, &error))).await,
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((family, device)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let fields: CsrfOnly = match form(&body) {
        Ok(fields) => fields,
        Err(error) => return problem(&error, None),
    };
    let (guardian, csrf) = match signed_in(&state, &headers, Some(&fields.csrf)).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    match devices::revoke(State(state.clone()), guardian, Path((family, device))).await {
        Ok(_) => Redirect::to("/").into_response(),
        Err(error) => problem(&error, Some(&csrf)),
    }
}
