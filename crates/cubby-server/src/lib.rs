//! The Cubby server: the HTTP API (axum) and, between the handlers and the store, the
//! vault that seals personal data and keeps the audit log.
//!
//! A request flows one way: `http` (limits, timeouts, metrics, errors) -> `api::<area>`
//! (one module per API area) -> `cubby_core` rules -> [`vault::Vault`] -> `cubby_store`.

pub mod api;
pub mod config;
pub mod data_dir;
pub mod delivery;
pub mod expiry;
pub mod http;
pub mod idle_accounts;
pub mod mail;
pub mod media;
pub mod portal;
pub mod serve;
pub mod tls;
pub mod vault;

pub use config::ServerConfig;
pub use serve::serve;
pub use vault::Vault;
