//! The API, one module per area. Each handler is documented with `#[utoipa::path]` and
//! registered with `routes!`, so the OpenAPI document is generated from the routes
//! themselves and cannot miss one.

pub mod accounts;
pub mod children;
pub mod consent;
pub mod contacts;
pub mod content;
pub mod devices;
pub mod families;
pub mod health;
pub mod media;
pub mod messaging;
pub mod openapi;
pub mod quiet_hours;
pub mod reports;
pub mod retention;
pub mod sessions;
mod support;
pub mod ws;

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
        .routes(routes!(accounts::sign_up))
        .routes(routes!(accounts::verify_email))
        .routes(routes!(accounts::request_reset))
        .routes(routes!(accounts::confirm_reset))
        .routes(routes!(accounts::me, accounts::delete_me))
        .routes(routes!(accounts::change_password))
        .routes(routes!(sessions::login, sessions::list, sessions::sign_out_all))
        .routes(routes!(sessions::sign_out_one))
        .routes(routes!(sessions::sign_out))
        .routes(routes!(families::create, families::list))
        .routes(routes!(families::get, families::delete))
        .routes(routes!(families::invite))
        .routes(routes!(families::accept_invite))
        .routes(routes!(families::leave))
        .routes(routes!(families::security_events))
        .routes(routes!(families::export))
        .routes(routes!(retention::get, retention::set))
        .routes(routes!(consent::privacy_notice))
        .routes(routes!(consent::get_consent, consent::give_consent, consent::withdraw_consent))
        .routes(routes!(consent::confirm_consent))
        .routes(routes!(consent::set_third_party))
        .routes(routes!(children::create, children::list))
        .routes(routes!(children::get, children::update, children::delete))
        .routes(routes!(children::export))
        .routes(routes!(quiet_hours::get, quiet_hours::set, quiet_hours::delete))
        .routes(routes!(devices::start_pairing))
        .routes(routes!(devices::approve_pairing))
        .routes(routes!(devices::poll_pairing))
        .routes(routes!(devices::challenge))
        .routes(routes!(devices::session))
        .routes(routes!(devices::me))
        .routes(routes!(devices::list))
        .routes(routes!(devices::rename, devices::revoke))
        .routes(routes!(devices::wipe))
        .routes(routes!(contacts::create_code))
        .routes(routes!(contacts::redeem_code))
        .routes(routes!(contacts::invite_adult))
        .routes(routes!(contacts::accept_invite))
        .routes(routes!(contacts::list))
        .routes(routes!(contacts::approve))
        .routes(routes!(contacts::remove))
        .routes(routes!(contacts::get_supervision, contacts::set_supervision))
        .routes(routes!(contacts::reachable))
        .routes(routes!(contacts::block))
        .routes(routes!(reports::create))
        .routes(routes!(reports::list))
        .routes(routes!(reports::escalate))
        .routes(routes!(reports::delete))
        .routes(routes!(messaging::external_sender))
        .routes(routes!(messaging::upload_key_packages, messaging::count_key_packages))
        .routes(routes!(messaging::claim_key_package))
        .routes(routes!(messaging::create_group, messaging::list_groups))
        .routes(routes!(messaging::send))
        .routes(routes!(media::create))
        .routes(routes!(media::upload_chunk, media::download))
        .routes(routes!(media::upload_state))
        .routes(routes!(ws::connect))
        .routes(routes!(content::submit))
        .routes(routes!(content::upload_file, content::download_file))
        .routes(routes!(content::catalogue))
        .routes(routes!(content::child_catalogue))
        .routes(routes!(content::approve, content::list_approved))
        .routes(routes!(content::withdraw))
        .routes(routes!(content::device_titles))
}
