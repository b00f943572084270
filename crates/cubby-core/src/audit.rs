//! What the audit log records. Entries name who did what to which object, never
//! personal data or secrets: ids, action names and small facts only.

use crate::{AccountId, DeviceId, FamilyId};

/// Who caused an audited event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// The server itself (start, stop, maintenance).
    System,
    /// An operator using `cubby admin`.
    Operator,
    /// A signed-in guardian.
    Account(AccountId),
    /// Someone not signed in (e.g. a failed login for an unknown address).
    Anonymous,
    /// A paired device (a child's toy blocking a contact, reporting a message).
    Device(DeviceId),
}

impl Actor {
    pub fn as_string(&self) -> String {
        match self {
            Self::System => "system".to_owned(),
            Self::Operator => "operator".to_owned(),
            Self::Account(id) => format!("account:{id}"),
            Self::Anonymous => "anonymous".to_owned(),
            Self::Device(id) => format!("device:{id}"),
        }
    }
}

/// One security-relevant event, before it is chained into the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub actor: Actor,
    /// A dotted action name, e.g. `server.started`, `keys.rotated`.
    pub action: &'static str,
    /// The family the event concerns, if any (so it shows in that family's security events).
    pub family_id: Option<FamilyId>,
    /// A small JSON object of non-personal facts (ids, counts, versions).
    pub detail: String,
}

impl AuditEvent {
    pub fn system(action: &'static str, detail: impl Into<String>) -> Self {
        Self { actor: Actor::System, action, family_id: None, detail: detail.into() }
    }

    pub fn new(actor: Actor, action: &'static str, family_id: Option<FamilyId>, detail: impl Into<String>) -> Self {
        Self { actor, action, family_id, detail: detail.into() }
    }

    pub fn operator(action: &'static str, detail: impl Into<String>) -> Self {
        Self { actor: Actor::Operator, action, family_id: None, detail: detail.into() }
    }
}
