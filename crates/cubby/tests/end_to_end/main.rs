//! Cubby end to end: the real `cubby` binary, real MLS clients (cubby-client), real SQLite
//! and PostgreSQL, a real S3-compatible server and a real browser. Each module is one area;
//! its own doc says what it covers.
//!
//! One test binary rather than one per file: each binary links the whole server, MLS and
//! TLS stacks, and twenty-seven of them took over 3 GB of disk and most of CI's link time.

#[macro_use]
mod common;

mod accounts;
mod audit;
mod authorisation;
mod bench;
mod chat;
mod contacts;
mod content;
mod content_api;
mod data_at_rest;
mod devices;
mod families;
mod live_connection;
mod media;
mod messaging;
mod messaging_durability;
mod messaging_rules;
mod portal;
mod portal_accounts;
mod portal_browser;
mod portal_contacts;
mod portal_devices;
mod portal_learning;
mod quiet_hours;
mod retention;
mod rotate_keys;
mod serve;
