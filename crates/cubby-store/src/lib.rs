//! Storage for Cubby: one [`Store`] trait (the sum of one trait per area), implemented
//! once by [`SqlStore`] over SQLite (the embedded default) and PostgreSQL.
//!
//! Every query is a constant SQL text with `$n` placeholders (which both engines accept),
//! bound with parameters: no SQL is ever built from values. The store holds only what the
//! layers above give it, which for anything personal is already sealed or hashed.

pub mod accounts;
pub mod audit;
pub mod blobs;
pub mod contacts;
pub mod content;
pub mod devices;
mod error;
pub mod families;
pub mod keys;
pub mod media;
pub mod messaging;
pub mod schedules;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

pub use accounts::{AccountRow, AccountStore, EmailTokenRow, SessionRow};
pub use audit::{AuditRow, AuditStore, AuditTail, NewAuditRow};
pub use contacts::{ContactRow, ContactStatus, ContactStore, Redeemed, ReportRow};
pub use content::{
    ApprovalRow, ContentStore, DownloadRow, FileStored, NewApproval, NewPackage, PackageRow, PublisherRow, PublisherStat,
    Submitted,
};
pub use devices::{Approval, DeviceRow, DeviceStore, PairingRow};
pub use error::StoreError;
pub use families::{ChildRow, ConsentRow, FamilyRow, FamilyStore, GuardianRow, InviteRow};
pub use keys::{KeyOwner, KeyStore, Rewrap, WrappedKey};
pub use blobs::{BlobError, BlobLocation, BlobWriter, Blobs, S3Location};
pub use media::{ChunkOutcome, MediaChunk, MediaId, MediaRow, MediaStore, NewMedia};
pub use messaging::{
    Append, Appended, BatchWritten, BlockingBatchWriter, EpochChange, GroupRouting, GroupRow, MessageKind, MessagingStore,
    NewKeyPackage, NewMessage, QueuedMessage,
};
pub use schedules::ScheduleStore;
pub use sql::SqlStore;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// Whether stored messages become visible in the order of their ids. SQLite has one
    /// writer (one node, one transaction at a time); PostgreSQL commits several nodes'
    /// transactions in any order, so a message can appear below an id already read.
    pub fn messages_visible_in_id_order(self) -> bool {
        matches!(self, Self::Sqlite)
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        })
    }
}

/// Everything Cubby keeps in its database.
#[async_trait]
pub trait Store: KeyStore + AccountStore + FamilyStore + DeviceStore + AuditStore + MessagingStore + ScheduleStore + ContactStore + MediaStore + ContentStore + Send + Sync + 'static {
    fn engine(&self) -> Engine;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Closes every connection cleanly (SQLite checkpoints its WAL on the last one).
    async fn close(&self);
}

/// Opens the database at `url` (`sqlite://…` or `postgres://…`) and applies migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqlStore::connect(url).await?))
}
