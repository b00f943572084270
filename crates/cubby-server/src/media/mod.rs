//! Encrypted media: photos and voice clips, as opaque ciphertext blobs.
//!
//! A device encrypts the file with a fresh key (the SDK's streaming AEAD), uploads the
//! ciphertext here in resumable chunks, and sends the blob's id, key and hash inside an
//! MLS message. The server never sees a key, and the id alone grants nothing: a blob is
//! read only by a device that is still a member of its conversation and one of its
//! recipients (or its uploader), and everyone else gets the answer a made-up id gets.
//! A blob is deleted once every recipient fetched it, when its family's retention ends,
//! or, unfinished, a day after its upload started.

pub mod range;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cubby_core::ErrorCode;
use cubby_store::{BlobError, BlobLocation, Blobs, ChunkOutcome, DeviceRow, MediaChunk, MediaId, MediaRow, NewMedia, Store, StoreError};
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};

use crate::http::ApiError;
use crate::vault::now_millis;
use range::Wanted;

/// Largest chunk one `PATCH` may carry: a few MiB, so that a chunk fits in memory and a
/// slow connection loses little when it breaks.
pub const MAX_CHUNK: usize = 8 * 1024 * 1024;
/// Smallest chunk but the last: bounds the number of objects one blob is made of.
pub const MIN_CHUNK: usize = 64 * 1024;
/// Unfinished uploads a device may have at once.
pub const MAX_OPEN_UPLOADS: i64 = 32;
/// An upload not finished this long after it started is deleted.
pub const INCOMPLETE_FOR_MS: i64 = 24 * 3600 * 1000;
/// Blobs deleted per round of a sweep.
const SWEEP_BATCH: i64 = 100;

/// What a failed upload step tells the uploader.
pub enum UploadRefusal {
    Refused(ApiError),
    /// The chunk does not start where the upload stands: resume from `received`.
    WrongOffset { received: i64 },
}

impl From<ApiError> for UploadRefusal {
    fn from(error: ApiError) -> Self {
        Self::Refused(error)
    }
}

/// Why a download is not served.
pub enum DownloadRefusal {
    Refused(ApiError),
    /// The `Range` asked for lies outside the blob (or is no range): 416.
    Unsatisfiable { size: u64 },
}

impl From<ApiError> for DownloadRefusal {
    fn from(error: ApiError) -> Self {
        Self::Refused(error)
    }
}

/// A download about to be streamed.
pub struct Download {
    /// The whole blob's size.
    pub size: u64,
    /// The part sent, when the caller asked for a range.
    pub part: Option<Range<u64>>,
    pub body: BoxStream<'static, Result<Bytes, BlobError>>,
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

pub struct Media {
    store: Arc<dyn Store>,
    /// The blob store; its opening error, if it could not be opened (then every media
    /// request answers `unavailable` and the rest of the server works on).
    blobs: Result<Blobs, String>,
    max_size: u64,
    /// Retention of a family that chose none.
    default_retention: Duration,
}

/// The same answer for a blob that does not exist and for one the caller may not see.
fn no_such_media() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "there is no such photo or voice clip")
}

fn no_such_conversation() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "there is no such conversation")
}

/// Opens the configured blob store, to report a configuration that cannot work at start.
pub fn check_blob_store(location: &BlobLocation) -> Result<String, String> {
    Blobs::open(location).map(|b| b.description().to_owned()).map_err(|e| e.to_string())
}

impl Media {
    /// Opens the blob store for the server. A store that cannot be opened is logged and
    /// makes the media endpoints answer `unavailable`; the rest of the server works on.
    /// [`Media::expire`] is run periodically, and audited, by `crate::expiry`.
    pub fn start(store: Arc<dyn Store>, location: &BlobLocation, max_size: u64, default_retention: Duration) -> Arc<Self> {
        let blobs = Blobs::open(location).map_err(|e| e.to_string());
        match &blobs {
            Ok(blobs) => tracing::info!(blob_store = %blobs.description(), "media blobs ready"),
            Err(error) => tracing::error!(%error, "the blob store cannot be opened: photos and voice clips are unavailable"),
        }
        Arc::new(Self { store, blobs, max_size, default_retention })
    }

    /// Opens the blob store, failing if it cannot be: for an admin command that runs
    /// [`Media::expire`] once.
    pub fn open(store: Arc<dyn Store>, location: &BlobLocation, max_size: u64, default_retention: Duration) -> Result<Self, BlobError> {
        Ok(Self { store, blobs: Ok(Blobs::open(location)?), max_size, default_retention })
    }

    fn blobs(&self) -> Result<&Blobs, ApiError> {
        self.blobs.as_ref().map_err(|error| ApiError::unavailable(error))
    }

    /// The largest ciphertext accepted: that of a file of exactly the size limit.
    pub fn max_ciphertext(&self) -> u64 {
        ciphertext_limit(self.max_size)
    }

    /// Starts an upload into a conversation of which the device is a member.
    pub async fn create(&self, device: &DeviceRow, group_id: &[u8], size: u64) -> Result<MediaRow, ApiError> {
        self.blobs()?;
        if size == 0 {
            return Err(ApiError::new(ErrorCode::InvalidBody, "size must be the ciphertext's size in bytes, at least 1"));
        }
        if size > self.max_ciphertext() {
            return Err(ApiError::new(
                ErrorCode::BodyTooLarge,
                format!(
                    "a photo or voice clip may be at most {} bytes ({} encrypted); this one is {size}",
                    self.max_size,
                    self.max_ciphertext()
                ),
            ));
        }
        let group = self.store.group(group_id).await?.ok_or_else(no_such_conversation)?;
        if !self.store.group_members(group_id).await?.contains(&device.id) {
            return Err(no_such_conversation());
        }
        if self.store.open_uploads(device.id).await? >= MAX_OPEN_UPLOADS {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!("this device has {MAX_OPEN_UPLOADS} unfinished uploads: finish them first (unfinished ones go after a day)"),
            ));
        }
        let now = now_millis();
        let media = NewMedia {
            id: MediaId::from_random(cubby_crypto::random_bytes::<16>()?),
            family_id: group.family_id,
            group_id: group.id,
            uploader: device.id,
            size: i64::try_from(size).map_err(|_| ApiError::new(ErrorCode::InvalidBody, "size is out of range"))?,
            created_at: now,
            expires_at: now.saturating_add(self.retention_ms(group.family_id).await?),
        };
        self.store.create_media(&media).await?;
        self.store.media(&media.id).await?.ok_or_else(|| ApiError::internal(&"a new upload vanished"))
    }

    /// How long the family's undelivered messages (and so its media) are kept.
    async fn retention_ms(&self, family: cubby_core::FamilyId) -> Result<i64, ApiError> {
        Ok(match self.store.message_retention_days(family).await? {
            Some(days) => days.saturating_mul(86_400_000),
            None => i64::try_from(self.default_retention.as_millis()).unwrap_or(i64::MAX),
        })
    }

    /// An upload of this device's, by the id as the caller wrote it.
    pub async fn own_upload(&self, device: &DeviceRow, id: &str) -> Result<MediaRow, ApiError> {
        let id = MediaId::parse(id).ok_or_else(no_such_media)?;
        let row = self.store.media(&id).await?.ok_or_else(no_such_media)?;
        if row.uploader != Some(device.id) {
            return Err(no_such_media());
        }
        Ok(row)
    }

    /// Stores the next bytes of an upload, sent from `offset`. Returns where the upload
    /// stands after them and whether it is complete.
    pub async fn append(&self, device: &DeviceRow, id: &str, offset: u64, bytes: Bytes) -> Result<(i64, bool), UploadRefusal> {
        let blobs = self.blobs()?;
        let row = self.own_upload(device, id).await?;
        if row.completed_at.is_some() || i64::try_from(offset).ok() != Some(row.received) {
            return Err(UploadRefusal::WrongOffset { received: row.received });
        }
        let length = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        let remaining = row.size - row.received;
        if length == 0 {
            return Err(ApiError::new(ErrorCode::InvalidBody, "send the next bytes of the upload as the body").into());
        }
        if length > remaining {
            return Err(ApiError::new(
                ErrorCode::InvalidBody,
                format!("the upload was declared {} bytes: {remaining} are left, this chunk has {length}", row.size),
            )
            .into());
        }
        if bytes.len() < MIN_CHUNK && length != remaining {
            return Err(ApiError::new(
                ErrorCode::InvalidBody,
                format!("a chunk must hold at least {MIN_CHUNK} bytes, except the last one"),
            )
            .into());
        }
        // A fresh key per attempt: two attempts at the same offset never overwrite each
        // other's object, and the database records the one that won.
        let attempt = hex::encode(cubby_crypto::random_bytes::<8>().map_err(ApiError::from)?);
        let chunk = MediaChunk { start: row.received, length, object_key: format!("media/{}/{:020}-{attempt}", row.id, row.received) };
        blobs.put(&chunk.object_key, bytes).await.map_err(|e| ApiError::unavailable(&e))?;
        let outcome = self.store.add_media_chunk(&row.id, &chunk, now_millis()).await;
        let discard = || async {
            if let Err(error) = blobs.delete(&chunk.object_key).await {
                tracing::warn!(%error, "an unrecorded chunk could not be deleted; the sweep will");
            }
        };
        match outcome {
            Ok(ChunkOutcome::Stored { received, completed }) => {
                if completed {
                    tracing::debug!(size = row.size, "a media upload completed");
                }
                Ok((received, completed))
            }
            Ok(ChunkOutcome::WrongOffset { received }) => {
                discard().await;
                Err(UploadRefusal::WrongOffset { received })
            }
            Ok(ChunkOutcome::Gone) => {
                discard().await;
                Err(no_such_media().into())
            }
            Err(error) => {
                discard().await;
                Err(ApiError::from(error).into())
            }
        }
    }

    /// Opens a blob for a device allowed to read it: still a member of the conversation,
    /// and one of the blob's recipients or its uploader. A recipient's fetch of the whole
    /// blob (or of its end, after earlier ranges) is recorded once its last byte went out;
    /// when every recipient has it, the blob is deleted.
    pub async fn download(self: &Arc<Self>, device: &DeviceRow, id: &str, range: Option<&str>) -> Result<Download, DownloadRefusal> {
        let blobs = self.blobs()?.clone();
        let id = MediaId::parse(id).ok_or_else(no_such_media)?;
        let row = self.store.media(&id).await.map_err(ApiError::from)?.ok_or_else(no_such_media)?;
        let members = self.store.group_members(&row.group_id).await.map_err(ApiError::from)?;
        if row.completed_at.is_none() || !members.contains(&device.id) {
            return Err(no_such_media().into());
        }
        let is_uploader = row.uploader == Some(device.id);
        if !is_uploader && !self.store.is_media_recipient(&id, device.id).await.map_err(ApiError::from)? {
            return Err(no_such_media().into());
        }
        let size = u64::try_from(row.size).map_err(|_| ApiError::internal(&"a blob with a negative size"))?;
        let part = match range::wanted(range, size) {
            Wanted::All => None,
            Wanted::Part(part) => Some(part),
            Wanted::Unsatisfiable => return Err(DownloadRefusal::Unsatisfiable { size }),
        };
        let wanted = part.clone().unwrap_or(0..size);
        let pieces = pieces(&self.store.media_chunks(&id).await.map_err(ApiError::from)?, size, &wanted)?;
        let record = (!is_uploader && wanted.end == size).then(|| (self.clone(), id, device.id));
        Ok(Download { size, part, body: stream_pieces(blobs, pieces, wanted.end - wanted.start, record) })
    }

    /// A recipient has the whole blob; the last one's fetch deletes it.
    async fn fetched(&self, id: &MediaId, device: cubby_core::DeviceId) {
        match self.store.record_media_fetch(id, device, now_millis()).await {
            Ok(true) => {
                if let Err(error) = self.purge(id).await {
                    tracing::warn!(%error, "deleting a fetched blob failed; the sweep will");
                }
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "recording a blob's fetch failed"),
        }
    }

    /// Deletes a blob's objects, then its rows (so a failure leaves rows that the next
    /// sweep finds again, never objects that nothing points to).
    async fn purge(&self, id: &MediaId) -> Result<(), MediaError> {
        let blobs = self.blobs.as_ref().map_err(|e| BlobError::Store(e.clone()))?;
        blobs.delete_prefix(&format!("media/{id}")).await?;
        self.store.delete_media(id).await?;
        Ok(())
    }

    /// Deletes what has to go at `now_ms` (an injected clock for tests and admin
    /// commands): blobs past their family's retention, uploads unfinished a day after they
    /// started, blobs that no recipient able to fetch them waits for, and objects left
    /// behind by blobs whose rows went with their conversation or family. Returns how
    /// many blobs were deleted.
    pub async fn expire(&self, now_ms: i64) -> Result<u64, MediaError> {
        let mut deleted = 0;
        loop {
            let due = self.store.due_media(now_ms, now_ms.saturating_sub(INCOMPLETE_FOR_MS), SWEEP_BATCH).await?;
            for id in &due {
                self.purge(id).await?;
                deleted += 1;
            }
            if (due.len() as i64) < SWEEP_BATCH {
                break;
            }
        }
        let blobs = self.blobs.as_ref().map_err(|e| BlobError::Store(e.clone()))?;
        for folder in blobs.folders("media").await? {
            let Some(id) = MediaId::parse(&folder) else { continue };
            if self.store.media(&id).await?.is_none() {
                blobs.delete_prefix(&format!("media/{id}")).await?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "deleted photos and voice clips: fetched by all, past retention, or abandoned");
        }
        Ok(deleted)
    }
}

/// The ciphertext size of a `plaintext`-byte file as the SDK encrypts it (cubby-client
/// `messaging::media`): a 27-byte header, and a 16-byte tag per 64 KiB segment plus one for
/// the last, shorter segment. The media tests check that both sides agree.
pub fn ciphertext_limit(plaintext: u64) -> u64 {
    const HEADER: u64 = 27;
    const SEGMENT: u64 = 64 * 1024;
    const TAG: u64 = 16;
    HEADER.saturating_add(plaintext).saturating_add(TAG.saturating_mul(plaintext / SEGMENT + 1))
}

/// The objects (and the part of each) that make up `wanted` of a blob of `size` bytes.
fn pieces(chunks: &[MediaChunk], size: u64, wanted: &Range<u64>) -> Result<Vec<(String, Range<u64>)>, ApiError> {
    let mut pieces = Vec::new();
    let mut position = 0u64;
    for chunk in chunks {
        let (Ok(start), Ok(length)) = (u64::try_from(chunk.start), u64::try_from(chunk.length)) else {
            return Err(ApiError::internal(&"a blob chunk out of range"));
        };
        if start != position {
            return Err(ApiError::internal(&"a blob's chunks do not follow each other"));
        }
        let end = start + length;
        let (from, to) = (wanted.start.max(start), wanted.end.min(end));
        if from < to {
            pieces.push((chunk.object_key.clone(), from - start..to - start));
        }
        position = end;
    }
    if position != size {
        return Err(ApiError::internal(&"a complete blob's chunks do not add up to its size"));
    }
    Ok(pieces)
}

/// Streams the pieces in order, opening each object when the one before is done. When
/// `record` is given, the fetch is recorded once all `length` bytes went out.
fn stream_pieces(
    blobs: Blobs,
    pieces: Vec<(String, Range<u64>)>,
    length: u64,
    record: Option<(Arc<Media>, MediaId, cubby_core::DeviceId)>,
) -> BoxStream<'static, Result<Bytes, BlobError>> {
    let sent = Arc::new(AtomicU64::new(0));
    let mut record = record;
    stream::iter(pieces)
        .then(move |(key, range)| {
            let blobs = blobs.clone();
            async move { blobs.read(&key, Some(range)).await }
        })
        .try_flatten()
        .inspect_ok(move |piece| {
            let total = sent.fetch_add(piece.len() as u64, Ordering::Relaxed) + piece.len() as u64;
            if total >= length
                && let Some((media, id, device)) = record.take()
            {
                // Off the response: the body ends without waiting for the bookkeeping.
                tokio::spawn(async move { media.fetched(&id, device).await });
            }
        })
        .boxed()
}

#[cfg(test)]
mod tests;
