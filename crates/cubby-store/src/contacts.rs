//! Contacts between families (each family's approvals of people outside it), the codes
//! and invitations that create them, guardian oversight, and children's reports.

use async_trait::async_trait;
use cubby_core::contacts::Person;
use cubby_core::{AccountId, ChildId, ContactId, FamilyId, ReportId};

use crate::{DeviceRow, StoreError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContactStatus {
    /// Waiting for a guardian of this family to approve.
    Requested,
    Approved,
    /// The child blocked the contact: it stays out until a guardian removes the row.
    Blocked,
}

impl ContactStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Approved => "approved",
            Self::Blocked => "blocked",
        }
    }

    pub fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "requested" => Ok(Self::Requested),
            "approved" => Ok(Self::Approved),
            "blocked" => Ok(Self::Blocked),
            other => Err(StoreError::Corrupt(format!("unknown contact status {other:?}"))),
        }
    }
}

/// One family's side of a contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactRow {
    pub id: ContactId,
    pub family_id: FamilyId,
    pub child_id: ChildId,
    pub other: Person,
    pub status: ContactStatus,
    pub created_at: i64,
    pub decided_at: Option<i64>,
}

/// What redeeming a contact code did.
#[derive(Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// The redeeming family's side (approved) and the code family's side (requested,
    /// unless it was decided before).
    Contact { ours: ContactRow, theirs: ContactRow },
    /// No such code, or it expired or was used.
    UnknownCode,
    /// A code of the redeeming family itself: its children need no contact.
    SameFamily,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRow {
    pub id: ReportId,
    pub family_id: FamilyId,
    pub child_id: ChildId,
    pub group_id: Option<Vec<u8>>,
    pub content_sealed: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
    pub escalated_at: Option<i64>,
}

#[async_trait]
pub trait ContactStore {
    async fn add_contact_code(&self, code_hash: &[u8], family: FamilyId, child: ChildId, at: i64, expires_at: i64) -> Result<bool, StoreError>;
    /// Uses a code once, for `child` of `family`, approved on the redeeming side.
    async fn redeem_contact_code(&self, code_hash: &[u8], family: FamilyId, child: ChildId, now: i64) -> Result<Redeemed, StoreError>;
    async fn add_contact_invite(&self, token_hash: &[u8], family: FamilyId, child: ChildId, email_index: &[u8], at: i64, expires_at: i64) -> Result<bool, StoreError>;
    /// Uses an invitation once, by the account whose address it was sent to: the adult
    /// becomes an approved contact of the child. None if unknown, expired or not theirs.
    async fn accept_contact_invite(&self, token_hash: &[u8], email_index: &[u8], account: AccountId, now: i64) -> Result<Option<ContactRow>, StoreError>;
    /// The contacts of a child of this family, this family's side.
    async fn child_contacts(&self, family: FamilyId, child: ChildId) -> Result<Vec<ContactRow>, StoreError>;
    async fn contact(&self, family: FamilyId, id: ContactId) -> Result<Option<ContactRow>, StoreError>;
    /// The other family's side of a child-to-child contact.
    async fn mirror_contact(&self, row: &ContactRow) -> Result<Option<ContactRow>, StoreError>;
    async fn set_contact_status(&self, family: FamilyId, id: ContactId, status: ContactStatus, at: i64) -> Result<bool, StoreError>;
    /// Deletes this side and, for a child-to-child contact, the other family's side.
    async fn delete_contact(&self, family: FamilyId, id: ContactId) -> Result<Option<ContactRow>, StoreError>;
    /// Approved contacts naming `child` on either side (its family's approvals, and other
    /// families' approvals of it): what the group rule needs.
    async fn approvals_around(&self, child: ChildId) -> Result<Vec<(ChildId, Person)>, StoreError>;
    /// Contacts in which an adult is the other side (any status).
    async fn contacts_of_adult(&self, account: AccountId) -> Result<Vec<ContactRow>, StoreError>;
    /// Whether an approved contact links the two families, either way (a child of one and
    /// a child or guardian of the other).
    async fn families_linked(&self, one: FamilyId, other: FamilyId) -> Result<bool, StoreError>;
    /// A person's active devices.
    async fn person_devices(&self, person: Person) -> Result<Vec<DeviceRow>, StoreError>;
    /// Guardian oversight of a child; false if the child is not in the family.
    async fn set_supervised(&self, family: FamilyId, child: ChildId, supervised: bool) -> Result<bool, StoreError>;
    async fn supervised(&self, child: ChildId) -> Result<bool, StoreError>;

    async fn add_report(&self, report: &ReportRow) -> Result<bool, StoreError>;
    async fn reports(&self, family: FamilyId) -> Result<Vec<ReportRow>, StoreError>;
    async fn escalate_report(&self, family: FamilyId, id: ReportId, at: i64) -> Result<bool, StoreError>;
    async fn delete_report(&self, family: FamilyId, id: ReportId) -> Result<bool, StoreError>;
    /// Reports the guardians sent on to the operator.
    async fn escalated_reports(&self) -> Result<Vec<ReportRow>, StoreError>;
    async fn expire_reports(&self, now: i64) -> Result<u64, StoreError>;
}
