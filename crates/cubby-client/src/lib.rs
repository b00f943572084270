//! The device SDK, used by toys, the parent app and `cubby chat`.
//!
//! End-to-end secrets live here and only here: the server never holds a group
//! secret or a media key. The messaging issue fills that part in.
//!
//! Today it holds pairing and device authentication (DESIGN.md "Pairing"):
//! - [`DeviceKey`]: the device's Ed25519 key, made on the device, never sent anywhere;
//! - [`CubbyClient`]: pairing by short code (RFC 8628), signing in by signed challenge,
//!   and reading the device's own record;
//! - [`challenge_message`] and [`verify_challenge`]: the signed bytes and their check,
//!   shared with the server so both sides sign and verify exactly the same thing. This is
//!   why the crate's dependencies stay few: the server depends on it too.

pub mod content;
mod device_key;
mod error;
pub mod messaging;
mod pairing;

pub use content::{ContentLibrary, PackageOffer, TrustedPublishers};
pub use device_key::{DeviceKey, challenge_message, is_valid_public_key, verify_challenge};
pub use error::ClientError;
pub use messaging::{Conversation, ConversationId, Envelope, Event, Messenger};
pub use pairing::{CubbyClient, DeviceInfo, DeviceKind, DeviceSession, Paired, PairingPoll, PairingStart};

pub use cubby_core::{ChildId, Error, ErrorCode, FamilyId};
/// The HTTP client [`CubbyClient::with_http_client`] takes, at the version this crate uses.
pub use reqwest;
