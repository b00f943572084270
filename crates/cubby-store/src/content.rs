//! The learning content store: publishers and their keys, signed packages and their files,
//! the titles guardians approved for a child (with the entitlement), the downloads of a
//! family's devices, and the per-version counts a publisher may see. The package files are
//! in the blob store ([`crate::Blobs`], under `packages/…`); manifests are kept as the
//! exact bytes their signature covers.

use async_trait::async_trait;
use cubby_core::{ChildId, DeviceId, FamilyId};

use crate::StoreError;

/// A publisher the operator registered, with the key its packages must be signed with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublisherRow {
    pub id: String,
    pub name: String,
    /// Ed25519 public key, 32 bytes.
    pub public_key: Vec<u8>,
    pub created_at: i64,
}

/// A package version as the publisher submitted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPackage {
    pub package_id: String,
    /// `MAJOR.MINOR.PATCH`, and its parts for numeric comparison.
    pub version: String,
    pub major: i64,
    pub minor: i64,
    pub patch: i64,
    pub publisher_id: String,
    /// `content` or `firmware`.
    pub kind: String,
    pub manifest: Vec<u8>,
    pub signature: Vec<u8>,
    /// (size, sha256) of each file, in the manifest's order.
    pub files: Vec<(i64, String)>,
    pub created_at: i64,
}

/// A stored package version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageRow {
    pub package_id: String,
    pub version: String,
    pub publisher_id: String,
    pub publisher_name: String,
    pub kind: String,
    pub manifest: Vec<u8>,
    pub signature: Vec<u8>,
    pub created_at: i64,
    /// None while files are still missing.
    pub published_at: Option<i64>,
}

/// What became of a submitted package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submitted {
    Created,
    /// A version of this id as new or newer exists (published or pending): nothing stored.
    NotNewer,
    /// The id belongs to another publisher: nothing stored.
    OtherPublisher,
}

/// What became of a stored file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileStored {
    /// Recorded; `published` when it was the last one missing.
    Recorded { published: bool },
    /// It was stored already (nothing changed).
    AlreadyStored,
    /// No such package version or file.
    Unknown,
}

/// A title approved for a child, with its entitlement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalRow {
    pub family_id: FamilyId,
    pub child_id: ChildId,
    pub package_id: String,
    pub approved_at: i64,
    pub granted_at: Option<i64>,
    pub price_cents: Option<i64>,
    pub currency: Option<String>,
}

/// A title to approve, and the version the approval is counted against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApproval {
    pub family_id: FamilyId,
    pub child_id: ChildId,
    pub package_id: String,
    pub version: String,
    pub publisher_id: String,
    pub price_cents: Option<i64>,
    pub currency: Option<String>,
    pub at: i64,
}

/// The first download of a package version by one of the family's devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadRow {
    pub family_id: FamilyId,
    pub child_id: Option<ChildId>,
    pub device_id: DeviceId,
    pub package_id: String,
    pub version: String,
    pub publisher_id: String,
    pub at: i64,
}

/// A publisher's counts for one package version (no family, child or device).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublisherStat {
    pub publisher_id: String,
    pub package_id: String,
    pub version: String,
    pub downloads: i64,
    pub approvals: i64,
}

#[async_trait]
pub trait ContentStore {
    /// Registers a publisher; false if one with this id exists already (nothing changed).
    async fn add_publisher(&self, publisher: &PublisherRow) -> Result<bool, StoreError>;
    async fn publisher(&self, id: &str) -> Result<Option<PublisherRow>, StoreError>;
    /// Every publisher's counts, by publisher, package and version.
    async fn publisher_stats(&self) -> Result<Vec<PublisherStat>, StoreError>;

    /// Stores a package version and its file list in one transaction, unless a version of
    /// the same id as new or newer exists (published or pending).
    async fn submit_package(&self, package: &NewPackage) -> Result<Submitted, StoreError>;
    async fn package(&self, package_id: &str, version: &str) -> Result<Option<PackageRow>, StoreError>;
    /// Indexes of the files not stored yet, in order.
    async fn missing_files(&self, package_id: &str, version: &str) -> Result<Vec<i64>, StoreError>;
    /// Records a file (already written to the blob store and checked); publishes the
    /// package when it was the last one missing, in the same transaction.
    async fn record_file(&self, package_id: &str, version: &str, index: i64, now: i64) -> Result<FileStored, StoreError>;
    /// Every published package version (all kinds), oldest first.
    async fn published_packages(&self) -> Result<Vec<PackageRow>, StoreError>;

    /// Approves a title for a child and grants the entitlement (one transaction); counts
    /// the approval for the publisher when it is new. Returns the approval as stored.
    async fn approve_title(&self, approval: &NewApproval) -> Result<ApprovalRow, StoreError>;
    /// Withdraws an approval and its entitlement; false if there was none.
    async fn withdraw_title(&self, family: FamilyId, child: ChildId, package_id: &str) -> Result<bool, StoreError>;
    async fn child_approvals(&self, family: FamilyId, child: ChildId) -> Result<Vec<ApprovalRow>, StoreError>;
    async fn family_approvals(&self, family: FamilyId) -> Result<Vec<ApprovalRow>, StoreError>;

    /// Records the first download of a package version by a device and counts it for the
    /// publisher; false (nothing changed) if the device downloaded this version before.
    async fn record_download(&self, download: &DownloadRow) -> Result<bool, StoreError>;
    async fn family_downloads(&self, family: FamilyId) -> Result<Vec<DownloadRow>, StoreError>;
}
