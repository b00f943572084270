//! The HTTP layer: routes from [`crate::api`], wrapped in the limits and observers every
//! request passes through.

pub mod auth;
pub mod client;
pub mod device_auth;
pub mod error;
pub mod json;
pub mod metrics;
pub mod throttle;
pub mod websocket;
mod middleware;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Response};
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa_axum::router::OpenApiRouter;

use cubby_crypto::PasswordHasher;

use crate::delivery::Delivery;
use crate::mail::Mailer;
use crate::media::Media;
use crate::{ServerConfig, Vault};
pub use error::{ApiError, ErrorBody};
pub use json::ApiJson;
pub use metrics::Metrics;

/// The long-lived parts a server is made of, opened at start.
#[derive(Clone)]
pub struct Services {
    pub vault: Arc<Vault>,
    pub mailer: Arc<dyn Mailer>,
    pub passwords: Arc<PasswordHasher>,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub vault: Arc<Vault>,
    pub mailer: Arc<dyn Mailer>,
    pub passwords: Arc<PasswordHasher>,
    pub config: Arc<ServerConfig>,
    pub throttles: Arc<Throttles>,
    pub metrics: Arc<Metrics>,
    pub openapi: Arc<utoipa::openapi::OpenApi>,
    pub delivery: Arc<Delivery>,
    pub media: Arc<Media>,
    /// Files of learning content and firmware packages.
    pub packages: Arc<crate::api::content::PackageFiles>,
}

/// Throttles for the endpoints that guess-resistant secrets pass through.
pub struct Throttles {
    /// Failed logins, per account and per client address.
    pub login: throttle::Throttle,
    /// Sign-ups and reset requests, per client address and per email.
    pub requests: throttle::Throttle,
}

impl Default for Throttles {
    fn default() -> Self {
        let requests = throttle::ThrottlePolicy { free_failures: 20, ..throttle::ThrottlePolicy::default() };
        Self { login: throttle::Throttle::default(), requests: throttle::Throttle::new(requests) }
    }
}

/// The whole application: the API routes, their OpenAPI document, and the layers.
pub fn app(services: Services, config: &ServerConfig) -> Router {
    // The portal's pages are merged as plain routes, so they stay out of the OpenAPI document.
    let portal = crate::portal::routes(config.tls != crate::config::TlsSettings::None);
    build(crate::api::routes().merge(OpenApiRouter::from(portal)), services, config)
}

/// Wraps routes (documented with utoipa) in the middleware stack. Public so that tests
/// can check the stack's behaviour on routes of their own.
pub fn build(routes: OpenApiRouter<AppState>, services: Services, config: &ServerConfig) -> Router {
    let (router, openapi) = routes.split_for_parts();
    let metrics = Arc::new(Metrics::new());
    let delivery = Arc::new(Delivery::start(services.vault.clone(), config.message_retention, metrics.commits.clone()));
    let media = Media::start(services.vault.store().clone(), &config.media.blob_store, config.media.max_size, config.message_retention);
    crate::expiry::start(&services.vault, &media);
    let packages = Arc::new(crate::api::content::PackageFiles::open(&config.media.blob_store, config.media.package_max_size));
    let state = AppState {
        delivery,
        media,
        packages,
        vault: services.vault,
        mailer: services.mailer,
        passwords: services.passwords,
        config: Arc::new(config.clone()),
        throttles: Arc::new(Throttles::default()),
        metrics: metrics.clone(),
        openapi: Arc::new(openapi),
    };
    router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(from_fn_with_state(config.request_timeout, middleware::deadline))
        // Inside `observe` and the header layers, so a panic's 500 is logged, counted and
        // carries the same headers as every other answer.
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(from_fn_with_state(metrics, middleware::observe))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
        // Only the portal's versioned stylesheet says otherwise (it may be kept a year).
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("cache-control"),
            HeaderValue::from_static("no-store"),
        ))
        .with_state(state)
}

/// A panic is a bug: answer 500 in the API's shape (the panic message, which might hold
/// request data, is not echoed or logged) and keep serving.
fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response<axum::body::Body> {
    tracing::error!("a request handler panicked");
    ApiError::new(cubby_core::ErrorCode::Internal, "something went wrong on the server; it has been logged")
        .into_response()
}
