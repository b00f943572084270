//! The API, one module per area. Each handler is documented with `#[utoipa::path]` and
//! registered with `routes!`, so the OpenAPI document is generated from the routes
//! themselves and cannot miss one.

pub mod health;
pub mod openapi;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::{AppState, ErrorBody};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cubby",
        description = "The secure backend for connected children's toys. Every error answers \
                       `{\"error\":{\"code\":\"…\",\"message\":\"…\"}}`.",
        license(name = "AGPL-3.0-or-later"),
    ),
    components(schemas(ErrorBody)),
)]
struct ApiDoc;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi::openapi_json))
}
