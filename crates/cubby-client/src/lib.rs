//! The device SDK, used by toys, the parent app and `cubby chat`.
//!
//! End-to-end secrets live here and only here: the server never holds a group
//! secret or a media key. The messaging issue fills this crate in; until then it
//! only re-exports the domain types a client speaks.

pub use cubby_core::{Error, ErrorCode, FamilyId};
