//! The media service over a real SQLite store and local blob files, with an injected
//! clock: uploads, the recipients' fetches, and what `expire` deletes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cubby_core::{DeviceId, FamilyId};
use cubby_store::{Approval, BlobLocation, DeviceRow, FamilyRow, GroupRow, KeyOwner, PairingRow, Store, WrappedKey};

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const DAY_MS: i64 = 86_400_000;

/// An API error as a test failure.
fn refused(error: ApiError) -> String {
    format!("{}: {}", error.code(), error.message())
}

struct World {
    media: Arc<Media>,
    store: Arc<dyn Store>,
    blobs_dir: std::path::PathBuf,
    devices: Vec<DeviceRow>,
    family: FamilyId,
    _dir: tempfile::TempDir,
}

async fn world(devices: u8) -> Result<World, Box<dyn std::error::Error + Send + Sync>> {
    let dir = tempfile::tempdir()?;
    let store = cubby_store::connect(&format!("sqlite://{}", dir.path().join("cubby.db").display())).await?;
    let family = FamilyRow { id: FamilyId::random(), created_at: 1, name_sealed: vec![1] };
    let key = WrappedKey { owner: KeyOwner::Family(family.id), master_key_id: "m".into(), wrapped_key: vec![1], created_at: 1 };
    store.create_family(&family, &key, None).await?;
    let mut rows = Vec::new();
    for n in 0..devices {
        let pairing = PairingRow {
            device_code_hash: vec![n; 32],
            user_code_index: vec![n; 32],
            public_key: vec![n; 32],
            kind: "toy".into(),
            software_version: "1".into(),
            created_at: 1,
            expires_at: i64::MAX,
            last_poll_at: 0,
            status: "pending".into(),
            approval: None,
        };
        store.create_pairing(&pairing).await?;
        let id = DeviceId::random();
        let approval = Approval { device_id: id, family_id: family.id, child_id: None, account_id: None, name_sealed: vec![n] };
        store.decide_pairing(&[n; 32], Some(&approval), 2).await?;
        let row = DeviceRow {
            id,
            family_id: family.id,
            child_id: None,
            account_id: None,
            kind: "toy".into(),
            public_key: vec![n; 32],
            name_sealed: vec![n],
            software_version: "1".into(),
            paired_at: 3,
            last_seen_at: None,
            revoked_at: None,
            wipe_requested_at: None,
        };
        store.complete_pairing(&[n; 32], &row).await?;
        rows.push(row);
    }
    let group = GroupRow { id: vec![1; 16], family_id: family.id, epoch: 0, public_state: vec![], created_at: 1 };
    let members: Vec<DeviceId> = rows.iter().map(|d| d.id).collect();
    store.create_group(&group, &members).await?;
    let blobs_dir = dir.path().join("blobs");
    let media = Arc::new(Media::open(store.clone(), &BlobLocation::Local(blobs_dir.clone()), 1 << 20, Duration::from_secs(30 * 86_400))?);
    Ok(World { media, store, blobs_dir, devices: rows, family: family.id, _dir: dir })
}

impl World {
    /// A complete upload of `size` bytes by device 0, in chunks of at most 64 KiB.
    async fn upload(&self, size: usize) -> Result<MediaId, Box<dyn std::error::Error + Send + Sync>> {
        let row = self.media.create(&self.devices[0], &[1; 16], size as u64).await.map_err(refused)?;
        let mut offset = 0;
        while offset < size {
            let length = (size - offset).min(MIN_CHUNK);
            let appended = self.media.append(&self.devices[0], row.id.as_str(), offset as u64, Bytes::from(vec![7u8; length])).await;
            match appended {
                Ok((received, _)) => offset = usize::try_from(received)?,
                Err(_) => return Err("a chunk was refused".into()),
            }
        }
        Ok(row.id)
    }

    fn objects(&self) -> usize {
        fn count(dir: &std::path::Path) -> usize {
            std::fs::read_dir(dir)
                .map(|entries| {
                    entries.filter_map(Result::ok).map(|e| if e.path().is_dir() { count(&e.path()) } else { 1 }).sum()
                })
                .unwrap_or(0)
        }
        count(&self.blobs_dir)
    }

    /// Downloads as device `n` to the end, as a recipient does.
    async fn fetch(&self, n: usize, id: &MediaId) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        let download = match self.media.download(&self.devices[n], id.as_str(), None).await {
            Ok(download) => download,
            Err(_) => return Err("the download was refused".into()),
        };
        let pieces: Vec<Bytes> = download.body.try_collect().await?;
        Ok(pieces.concat())
    }
}

#[tokio::test]
async fn a_blob_goes_once_every_recipient_fetched_it() -> TestResult {
    let w = world(3).await?;
    let id = w.upload(150_000).await?;
    assert_eq!(w.objects(), 3, "one object per chunk");
    assert_eq!(w.fetch(0, &id).await?.len(), 150_000, "the uploader reads its blob, and that counts for nothing");
    assert_eq!(w.fetch(1, &id).await?, vec![7u8; 150_000]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(w.objects(), 3, "device 2 has not fetched it yet");
    w.fetch(2, &id).await?;
    for _ in 0..50 {
        if w.objects() == 0 && w.store.media(&id).await?.is_none() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err("the blob outlived its last fetch".into())
}

#[tokio::test]
async fn expiry_deletes_old_blobs_abandoned_uploads_and_orphaned_objects() -> TestResult {
    let w = world(2).await?;
    let now = crate::vault::now_millis();
    let kept = w.upload(70_000).await?;
    let abandoned = w.media.create(&w.devices[0], &[1; 16], 200_000).await.map_err(refused)?;
    let appended = w.media.append(&w.devices[0], abandoned.id.as_str(), 0, Bytes::from(vec![1u8; MIN_CHUNK])).await;
    assert!(appended.is_ok());
    // Objects nothing points to (their rows went with a conversation or a family).
    let orphan = MediaId::from_random([5; 16]);
    Blobs::open(&BlobLocation::Local(w.blobs_dir.clone()))?.put(&format!("media/{orphan}/0"), Bytes::from_static(b"x")).await?;
    assert_eq!(w.objects(), 4);

    assert_eq!(w.media.expire(now).await?, 1, "only the orphan goes now");
    assert_eq!(w.objects(), 3);
    assert_eq!(w.media.expire(now + DAY_MS + 1_000).await?, 1, "the upload unfinished for a day goes");
    assert!(w.store.media(&abandoned.id).await?.is_none());
    assert_eq!(w.objects(), 2);
    assert_eq!(w.media.expire(now + 29 * DAY_MS).await?, 0, "within the family's retention");
    assert_eq!(w.media.expire(now + 31 * DAY_MS).await?, 1, "past the default retention of 30 days");
    assert!(w.store.media(&kept).await?.is_none());
    assert_eq!(w.objects(), 0);

    // A family's own retention counts.
    assert!(w.store.set_message_retention_days(w.family, Some(2)).await?);
    let short = w.upload(10).await?;
    assert_eq!(w.media.expire(now + DAY_MS).await?, 0);
    assert_eq!(w.media.expire(now + 3 * DAY_MS).await?, 1);
    assert!(w.store.media(&short).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn uploads_are_for_members_within_the_limit_and_only_their_uploader_continues_them() -> TestResult {
    let w = world(2).await?;
    let code = |r: Result<MediaRow, ApiError>| r.err().map(|e| e.code());
    assert_eq!(code(w.media.create(&w.devices[0], &[9; 16], 10).await), Some(ErrorCode::NotFound), "no such group");
    assert_eq!(code(w.media.create(&w.devices[0], &[1; 16], 0).await), Some(ErrorCode::InvalidBody));
    let limit = ciphertext_limit(1 << 20);
    assert_eq!(code(w.media.create(&w.devices[0], &[1; 16], limit + 1).await), Some(ErrorCode::BodyTooLarge));
    let row = w.media.create(&w.devices[0], &[1; 16], limit).await.map_err(refused)?;
    assert!(w.media.own_upload(&w.devices[1], row.id.as_str()).await.is_err(), "another device's upload");
    let not_mine = w.media.append(&w.devices[1], row.id.as_str(), 0, Bytes::from(vec![0; MIN_CHUNK])).await;
    assert!(matches!(not_mine, Err(UploadRefusal::Refused(e)) if e.code() == ErrorCode::NotFound));
    let early = w.media.download(&w.devices[0], row.id.as_str(), None).await;
    assert!(matches!(early, Err(DownloadRefusal::Refused(e)) if e.code() == ErrorCode::NotFound), "unfinished: nothing to read");
    for _ in 0..MAX_OPEN_UPLOADS - 1 {
        w.media.create(&w.devices[0], &[1; 16], 10).await.map_err(refused)?;
    }
    assert_eq!(code(w.media.create(&w.devices[0], &[1; 16], 10).await), Some(ErrorCode::RateLimited));
    Ok(())
}

fn chunk(start: i64, length: i64) -> MediaChunk {
    MediaChunk { start, length, object_key: format!("k{start}") }
}

#[test]
fn a_range_maps_onto_the_chunks_it_touches() -> Result<(), String> {
    let chunks = [chunk(0, 4), chunk(4, 4), chunk(8, 2)];
    let all = pieces(&chunks, 10, &(0..10)).map_err(|e| e.message().to_owned())?;
    assert_eq!(all, vec![("k0".to_owned(), 0..4), ("k4".to_owned(), 0..4), ("k8".to_owned(), 0..2)]);
    let middle = pieces(&chunks, 10, &(3..9)).map_err(|e| e.message().to_owned())?;
    assert_eq!(middle, vec![("k0".to_owned(), 3..4), ("k4".to_owned(), 0..4), ("k8".to_owned(), 0..1)]);
    assert!(pieces(&chunks, 11, &(0..10)).is_err(), "chunks short of the size");
    assert!(pieces(&[chunk(0, 4), chunk(5, 5)], 10, &(0..10)).is_err(), "a gap");
    Ok(())
}
