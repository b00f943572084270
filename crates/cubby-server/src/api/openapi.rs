//! The OpenAPI 3 document of this API.

use axum::Json;
use axum::extract::State;

use crate::http::{AppState, ErrorBody};

/// This document: every endpoint, its schemas and its errors.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3 document", content_type = "application/json"),
        (status = 404, description = "Never: listed so that every path documents its error shape", body = ErrorBody),
    )
)]
pub async fn openapi_json(State(state): State<AppState>) -> Json<utoipa::openapi::OpenApi> {
    Json(state.openapi.as_ref().clone())
}
