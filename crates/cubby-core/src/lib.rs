//! Cubby's domain: the types every other crate speaks, with no I/O.
//!
//! Nothing here touches a socket, a file or a database, so the rules can be read
//! and tested on their own.

pub mod audit;
pub mod content;
pub mod contacts;
pub mod devices;
pub mod error;
pub mod ids;
pub mod password_rules;
pub mod policy;
pub mod privacy_notice;
pub mod quiet_hours;
pub mod validation;

pub use error::{Error, ErrorCode};
pub use ids::{AccountId, ChildId, ConsentId, ContactId, DeviceId, FamilyId, ReportId, SessionId};
