//! Child profiles: a nickname and an age band, nothing else. Creating one needs consent
//! to the current privacy notice; deleting one destroys its key.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use cubby_core::audit::Actor;
use cubby_core::policy::Action;
use cubby_core::validation::{AgeBand, check_nickname};
use cubby_core::{ChildId, FamilyId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::consent::require_consent;
use super::families::allowed;
use super::support::audit;
use crate::http::auth::Guardian;
use crate::http::{ApiError, ApiJson, AppState, ErrorBody};
use crate::vault::{ChildView, now_millis};

#[derive(Deserialize, ToSchema)]
pub struct NewChild {
    #[schema(example = "Sam")]
    pub nickname: String,
    /// One of `under_6`, `6_8`, `9_12`, `13_17`.
    #[schema(value_type = String, example = "6_8")]
    pub age_band: AgeBand,
}

#[derive(Deserialize, ToSchema)]
pub struct ChildChange {
    pub nickname: Option<String>,
    #[schema(value_type = Option<String>)]
    pub age_band: Option<AgeBand>,
}

pub(crate) fn child_id(raw: &str) -> Result<ChildId, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found())
}

async fn load_child(state: &AppState, family: FamilyId, child: ChildId) -> Result<ChildView, ApiError> {
    let row = state.vault.store().child(family, child).await?.ok_or_else(ApiError::not_found)?;
    state.vault.open_child(&row).await?.ok_or_else(ApiError::not_found)
}

/// Add a child profile. Needs consent to the current privacy notice.
#[utoipa::path(post, path = "/api/v1/families/{family_id}/children", tag = "children", request_body = NewChild,
    params(("family_id" = String, Path)),
    responses(
        (status = 201, body = ChildView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Consent to the current notice is needed first", body = ErrorBody),
        (status = 404, description = "No such family of mine", body = ErrorBody),
        (status = 422, description = "Invalid nickname or age band", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    guardian: Guardian,
    Path(family): Path<String>,
    ApiJson(body): ApiJson<NewChild>,
) -> Result<(StatusCode, ApiJson<ChildView>), ApiError> {
    let family = allowed(&guardian, &family, Action::Change)?;
    let nickname = check_nickname(&body.nickname)?;
    require_consent(&state, family).await?;
    let child = state.vault.create_child(family, &nickname, body.age_band).await?;
    audit(&state, Actor::Account(guardian.account), "child.created", Some(family), "{}".to_owned()).await?;
    Ok((StatusCode::CREATED, ApiJson(child)))
}

/// The family's children.
#[utoipa::path(get, path = "/api/v1/families/{family_id}/children", tag = "children",
    params(("family_id" = String, Path)),
    responses(
        (status = 200, body = Vec<ChildView>),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such family of mine", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    guardian: Guardian,
    Path(family): Path<String>,
) -> Result<ApiJson<Vec<ChildView>>, ApiError> {
    let family = allowed(&guardian, &family, Action::Read)?;
    let mut children = Vec::new();
    for row in state.vault.store().children(family).await? {
        children.extend(state.vault.open_child(&row).await?);
    }
    Ok(ApiJson(children))
}

/// One child.
#[utoipa::path(get, path = "/api/v1/families/{family_id}/children/{child_id}", tag = "children",
    params(("family_id" = String, Path), ("child_id" = String, Path)),
    responses(
        (status = 200, body = ChildView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such child in a family of mine", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child)): Path<(String, String)>,
) -> Result<ApiJson<ChildView>, ApiError> {
    let family = allowed(&guardian, &family, Action::Read)?;
    Ok(ApiJson(load_child(&state, family, child_id(&child)?).await?))
}

/// Change a child's nickname or age band.
#[utoipa::path(patch, path = "/api/v1/families/{family_id}/children/{child_id}", tag = "children",
    request_body = ChildChange, params(("family_id" = String, Path), ("child_id" = String, Path)),
    responses(
        (status = 200, body = ChildView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Consent to the current notice is needed first", body = ErrorBody),
        (status = 404, description = "No such child in a family of mine", body = ErrorBody),
        (status = 422, description = "Invalid nickname or age band", body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child)): Path<(String, String)>,
    ApiJson(body): ApiJson<ChildChange>,
) -> Result<ApiJson<ChildView>, ApiError> {
    let family = allowed(&guardian, &family, Action::Change)?;
    let mut view = load_child(&state, family, child_id(&child)?).await?;
    require_consent(&state, family).await?;
    if let Some(nickname) = &body.nickname {
        view.nickname = check_nickname(nickname)?;
    }
    if let Some(band) = body.age_band {
        view.age_band = band;
    }
    if !state.vault.update_child(&view).await? {
        return Err(ApiError::not_found());
    }
    audit(&state, Actor::Account(guardian.account), "child.updated", Some(family), "{}".to_owned()).await?;
    Ok(ApiJson(view))
}

/// Delete a child: the profile and its data key, so no backup copy can be opened.
#[utoipa::path(delete, path = "/api/v1/families/{family_id}/children/{child_id}", tag = "children",
    params(("family_id" = String, Path), ("child_id" = String, Path)),
    responses(
        (status = 204, description = "Deleted and shredded"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such child in a family of mine", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let family = allowed(&guardian, &family, Action::Delete)?;
    if !state.vault.store().delete_child(family, child_id(&child)?).await? {
        return Err(ApiError::not_found());
    }
    audit(&state, Actor::Account(guardian.account), "child.deleted", Some(family), "{}".to_owned()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct ChildExport {
    pub exported_at: i64,
    pub child: ChildView,
}

/// Everything Cubby holds about one child, as JSON.
#[utoipa::path(get, path = "/api/v1/families/{family_id}/children/{child_id}/export", tag = "children",
    params(("family_id" = String, Path), ("child_id" = String, Path)),
    responses(
        (status = 200, body = ChildExport),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such child in a family of mine", body = ErrorBody),
    ))]
pub async fn export(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child)): Path<(String, String)>,
) -> Result<ApiJson<ChildExport>, ApiError> {
    let family = allowed(&guardian, &family, Action::Read)?;
    let child = load_child(&state, family, child_id(&child)?).await?;
    audit(&state, Actor::Account(guardian.account), "child.exported", Some(family), "{}".to_owned()).await?;
    Ok(ApiJson(ChildExport { exported_at: now_millis(), child }))
}
