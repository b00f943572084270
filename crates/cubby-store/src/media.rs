//! Encrypted media (photos, voice clips): which blobs exist, who uploaded them into which
//! conversation, how far each upload got, its chunks, and which devices still have to
//! fetch it. The bytes themselves are in the blob store ([`crate::Blobs`]); they are
//! ciphertext whose key travels only inside MLS messages.

use std::fmt;

use async_trait::async_trait;
use cubby_core::{DeviceId, FamilyId};

use crate::StoreError;

/// A blob's id: 128 random bits as 32 lowercase hex digits. Unguessable, but it grants
/// nothing by itself: every read is checked against the conversation's members.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaId(String);

impl MediaId {
    /// Makes an id from fresh random bytes (the caller's CSPRNG).
    pub fn from_random(bytes: [u8; 16]) -> Self {
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Accepts exactly 32 lowercase hex digits: nothing else can name a blob (or reach
    /// a query, or an object key).
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 32 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MediaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A blob as the server tracks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaRow {
    pub id: MediaId,
    /// The family that owns the conversation (the sharding key).
    pub family_id: FamilyId,
    pub group_id: Vec<u8>,
    /// None once the uploading device is deleted.
    pub uploader: Option<DeviceId>,
    /// The ciphertext's size, declared when the upload started.
    pub size: i64,
    /// Bytes stored so far; the upload resumes from here.
    pub received: i64,
    pub created_at: i64,
    pub completed_at: Option<i64>,
    pub expires_at: i64,
}

/// A new upload, before any byte of it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMedia {
    pub id: MediaId,
    pub family_id: FamilyId,
    pub group_id: Vec<u8>,
    pub uploader: DeviceId,
    pub size: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

/// One stored chunk: `length` bytes of the blob from `start`, in the object `object_key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaChunk {
    pub start: i64,
    pub length: i64,
    pub object_key: String,
}

/// What became of a chunk the uploader sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Recorded: the upload now stands at `received`; `completed` when that is all of it
    /// (the recipients were then fixed: the group's members but the uploader).
    Stored { received: i64, completed: bool },
    /// The chunk does not start where the upload stands (`received`), or the upload is
    /// complete already: nothing was recorded.
    WrongOffset { received: i64 },
    /// The blob is gone (expired, deleted with its conversation).
    Gone,
}

#[async_trait]
pub trait MediaStore {
    /// Records a new upload. Fails (foreign key) if the group does not exist.
    async fn create_media(&self, media: &NewMedia) -> Result<(), StoreError>;
    async fn media(&self, id: &MediaId) -> Result<Option<MediaRow>, StoreError>;
    /// Uploads of a device that are not complete yet.
    async fn open_uploads(&self, device: DeviceId) -> Result<i64, StoreError>;

    /// Records a chunk already written to the blob store, if it starts exactly where the
    /// upload stands (first wins: of two chunks sent for the same offset, one is recorded,
    /// the other told `WrongOffset`). The chunk that completes the upload also fixes the
    /// recipients: the group's live member devices at that moment, but the uploader.
    async fn add_media_chunk(&self, id: &MediaId, chunk: &MediaChunk, now: i64) -> Result<ChunkOutcome, StoreError>;
    /// The chunks in order.
    async fn media_chunks(&self, id: &MediaId) -> Result<Vec<MediaChunk>, StoreError>;

    /// Whether the device is one of the blob's recipients (fetched already or not).
    async fn is_media_recipient(&self, id: &MediaId, device: DeviceId) -> Result<bool, StoreError>;
    /// Records that a recipient fetched the whole blob. True when no recipient that can
    /// still fetch it (a live device, still a member of the group) waits for it: the blob
    /// is then due for deletion (see [`MediaStore::due_media`]).
    async fn record_media_fetch(&self, id: &MediaId, device: DeviceId, now: i64) -> Result<bool, StoreError>;

    /// Blobs to delete: past their expiry, unfinished uploads started before `incomplete_before`,
    /// and complete ones that no recipient able to fetch them waits for.
    async fn due_media(&self, now: i64, incomplete_before: i64, limit: i64) -> Result<Vec<MediaId>, StoreError>;
    /// Deletes a blob's rows (chunks and recipients with it); its objects must be deleted
    /// first. False if it was gone already.
    async fn delete_media(&self, id: &MediaId) -> Result<bool, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ids_are_32_lowercase_hex_digits_and_nothing_else() {
        let id = MediaId::from_random([0xab; 16]);
        assert_eq!(id.as_str(), "ab".repeat(16));
        assert_eq!(MediaId::parse(id.as_str()), Some(id));
        for bad in ["", "AB".repeat(16).as_str(), &"a".repeat(31), &"a".repeat(33), "../../etc/passwd", "1 OR 1=1", &"g".repeat(32)] {
            assert_eq!(MediaId::parse(bad), None, "{bad:?}");
        }
    }
}
