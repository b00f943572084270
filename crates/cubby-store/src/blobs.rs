//! Blob storage for media ciphertext, through the `object_store` crate: a local directory
//! by default (`blobs/` in the data directory), or an S3-compatible bucket for servers
//! spread over several machines.
//!
//! Objects are written once and never appended to (S3 cannot append): a resumable upload
//! stores each chunk as its own object, and the database says which objects make up a
//! blob in which order. The store holds only ciphertext the devices made; it never sees a
//! key.

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

/// Where blobs live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobLocation {
    /// In memory, gone when the process ends: for tests of the layers above only.
    Memory,
    /// Files under this directory (created with mode 0700 if missing).
    Local(PathBuf),
    /// An S3-compatible bucket. Credentials come from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optionally `AWS_SESSION_TOKEN`), never
    /// from a flag or a file, so they appear in no command line and no log.
    S3(S3Location),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// `https://host[:port]` of an S3-compatible service (MinIO, Garage, …); None: AWS.
    /// Plain `http://` only to a loopback address.
    pub endpoint: Option<String>,
    /// None: `AWS_REGION`, `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
}

impl BlobLocation {
    /// Parses `--blob-store`: `s3://BUCKET`, or a local directory.
    pub fn parse(text: &str, endpoint: Option<String>, region: Option<String>) -> Result<Self, BlobError> {
        if let Some(bucket) = text.strip_prefix("s3://") {
            let bucket = bucket.trim_end_matches('/');
            let valid = (3..=63).contains(&bucket.len())
                && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !valid {
                return Err(BlobError::Config(format!(
                    "{text:?}: give the bucket as s3://BUCKET (3 to 63 lowercase letters, digits, '-' or '.'; no path)"
                )));
            }
            return Ok(Self::S3(S3Location { bucket: bucket.to_owned(), endpoint, region }));
        }
        if text.contains("://") {
            return Err(BlobError::Config(format!("{text:?}: the blob store is a local directory or s3://BUCKET")));
        }
        if endpoint.is_some() {
            return Err(BlobError::Config("--s3-endpoint needs --blob-store s3://BUCKET".into()));
        }
        Ok(Self::Local(PathBuf::from(text)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The configuration cannot work (a bad bucket name, plain HTTP off loopback, …).
    #[error("blob store configuration: {0}")]
    Config(String),
    /// No object at that key.
    #[error("a blob object is missing")]
    NotFound,
    /// The store failed (disk, network, credentials). The text names no key material.
    #[error("the blob store failed: {0}")]
    Store(String),
}

impl From<object_store::Error> for BlobError {
    fn from(error: object_store::Error) -> Self {
        match error {
            object_store::Error::NotFound { .. } => Self::NotFound,
            other => Self::Store(other.to_string()),
        }
    }
}

/// The blob store, cheap to clone.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    description: String,
}

impl fmt::Debug for Blobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

impl Blobs {
    /// Opens the store: creates a local directory if needed, checks an S3 configuration
    /// (no request is made yet).
    pub fn open(location: &BlobLocation) -> Result<Self, BlobError> {
        match location {
            BlobLocation::Memory => Ok(Self { store: Arc::new(InMemory::new()), description: "memory".into() }),
            BlobLocation::Local(dir) => {
                create_private_dir(dir)?;
                let store = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| BlobError::Config(format!("cannot use {} for blobs: {e}", dir.display())))?
                    // Deleting a blob's last chunk removes its directory too.
                    .with_automatic_cleanup(true)
                    // An acknowledged chunk survives a power cut, as an acknowledged message does.
                    .with_fsync(true);
                Ok(Self { store: Arc::new(store), description: format!("local directory {}", dir.display()) })
            }
            BlobLocation::S3(s3) => open_s3(s3),
        }
    }

    /// For logs: where the blobs are (no credential).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Writes one object (replacing any at that key).
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), BlobError> {
        self.store.put(&path(key)?, PutPayload::from(data)).await?;
        Ok(())
    }

    /// Starts writing a large object piece by piece (package files), so that it is never
    /// held whole in memory. Nothing is visible at `key` until [`BlobWriter::finish`];
    /// [`BlobWriter::abort`] leaves nothing behind.
    pub async fn start_write(&self, key: &str) -> Result<BlobWriter, BlobError> {
        let upload = self.store.put_multipart(&path(key)?).await?;
        Ok(BlobWriter { inner: WriteMultipart::new(upload) })
    }

    /// Reads an object, or the part of it in `range`, as a stream of pieces.
    pub async fn read(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        let result = self.store.get_opts(&path(key)?, options).await?;
        Ok(match result.payload {
            GetResultPayload::File(file, _) => read_file(file, result.range),
            GetResultPayload::Stream(stream) => stream.map_err(BlobError::from).boxed(),
        })
    }

    /// Deletes one object; deleting one that is not there is no error.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes every object under `prefix` (a folder, `media/<id>`); returns how many went.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, BlobError> {
        let prefix = path(prefix)?;
        let locations = self.store.list(Some(&prefix)).map_ok(|meta| meta.location).boxed();
        let deleted: Vec<Path> = self.store.delete_stream(locations).try_collect().await?;
        Ok(deleted.len() as u64)
    }

    /// The names of the folders directly under `prefix` (`media` lists the blob ids).
    pub async fn folders(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let listing = self.store.list_with_delimiter(Some(&path(prefix)?)).await?;
        Ok(listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_owned)).collect())
    }
}

/// An object being written in parts (see [`Blobs::start_write`]).
pub struct BlobWriter {
    inner: WriteMultipart,
}

impl BlobWriter {
    /// Parts uploaded at the same time; waiting for room keeps memory bounded.
    const MAX_PARTS_IN_FLIGHT: usize = 4;

    pub async fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        self.inner.wait_for_capacity(Self::MAX_PARTS_IN_FLIGHT).await?;
        self.inner.write(data);
        Ok(())
    }

    pub async fn finish(self) -> Result<(), BlobError> {
        self.inner.finish().await?;
        Ok(())
    }

    pub async fn abort(self) -> Result<(), BlobError> {
        self.inner.abort().await?;
        Ok(())
    }
}

/// How much of a local file one blocking read takes. `object_store`'s own stream reads
/// 8 KiB per blocking task, which held downloads to about half the disk's speed.
const LOCAL_READ_CHUNK: u64 = 256 * 1024;

/// Streams `range` of a local file in [`LOCAL_READ_CHUNK`] pieces, each read on the
/// blocking pool.
fn read_file(file: std::fs::File, range: Range<u64>) -> BoxStream<'static, Result<Bytes, BlobError>> {
    let file = Arc::new(file);
    futures_util::stream::try_unfold(range, move |range| {
        let file = file.clone();
        async move {
            if range.start >= range.end {
                return Ok(None);
            }
            let length = (range.end - range.start).min(LOCAL_READ_CHUNK);
            let at = range.start;
            let piece = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut buffer = vec![0; length as usize];
                file.read_exact_at(&mut buffer, at).map(|()| Bytes::from(buffer))
            })
            .await
            .map_err(|_| BlobError::Store("reading a blob file was interrupted".into()))?
            .map_err(|e| BlobError::Store(format!("cannot read a blob file: {e}")))?;
            Ok(Some((piece, at + length..range.end)))
        }
    })
    .boxed()
}

/// Keys are made by the layers above from ids they checked; a key that is no valid object
/// path is a bug there, reported rather than written somewhere unexpected.
fn path(key: &str) -> Result<Path, BlobError> {
    Path::parse(key).map_err(|_| BlobError::Store("not a valid object key".into()))
}

fn create_private_dir(dir: &std::path::Path) -> Result<(), BlobError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| BlobError::Config(format!("cannot create the blob directory {}: {e}", dir.display())))
}

const ACCESS_KEY_VAR: &str = "AWS_ACCESS_KEY_ID";
const SECRET_KEY_VAR: &str = "AWS_SECRET_ACCESS_KEY";
const SESSION_TOKEN_VAR: &str = "AWS_SESSION_TOKEN";

fn open_s3(s3: &S3Location) -> Result<Blobs, BlobError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(access_key), Some(secret_key)) = (env(ACCESS_KEY_VAR), env(SECRET_KEY_VAR)) else {
        return Err(BlobError::Config(format!(
            "an S3 blob store needs credentials: set {ACCESS_KEY_VAR} and {SECRET_KEY_VAR} in the environment"
        )));
    };
    let region = s3
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_owned());
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&s3.bucket)
        .with_region(&region)
        .with_access_key_id(access_key)
        .with_secret_access_key(secret_key)
        .with_allow_http(false);
    if let Some(token) = env(SESSION_TOKEN_VAR) {
        builder = builder.with_token(token);
    }
    let mut description = format!("S3 bucket {}", s3.bucket);
    if let Some(endpoint) = &s3.endpoint {
        let endpoint = endpoint.trim_end_matches('/');
        let plain = endpoint_allows_http(endpoint)?;
        // Path-style requests (`endpoint/bucket/key`): what S3-compatible servers expect.
        builder = builder.with_endpoint(endpoint).with_allow_http(plain).with_virtual_hosted_style_request(false);
        description = format!("{description} at {endpoint}");
    }
    let store = builder.build().map_err(|e| BlobError::Config(format!("the S3 settings do not work: {e}")))?;
    Ok(Blobs { store: Arc::new(store), description })
}

/// True for `http://` to a loopback host, false for `https://`; an error for plain HTTP
/// anywhere else (ciphertext or not, credentials and metadata would cross the network in
/// clear: DESIGN.md non-negotiable 7).
fn endpoint_allows_http(endpoint: &str) -> Result<bool, BlobError> {
    if endpoint.starts_with("https://") {
        return Ok(false);
    }
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return Err(BlobError::Config(format!("the S3 endpoint {endpoint:?} must start with https://")));
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(host, _port)| host),
    };
    let loopback = host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(true)
    } else {
        Err(BlobError::Config(format!(
            "refusing the plain-HTTP S3 endpoint {endpoint:?}: only a loopback address may be reached without TLS"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_endpoints_are_for_loopback_only() {
        assert!(matches!(endpoint_allows_http("https://s3.example.org"), Ok(false)));
        assert!(matches!(endpoint_allows_http("http://127.0.0.1:9000"), Ok(true)));
        assert!(matches!(endpoint_allows_http("http://[::1]:9000/"), Ok(true)));
        assert!(matches!(endpoint_allows_http("http://localhost:9000"), Ok(true)));
        assert!(endpoint_allows_http("http://10.0.0.5:9000").is_err());
        assert!(endpoint_allows_http("http://127.0.0.1.example.org").is_err());
        assert!(endpoint_allows_http("ftp://127.0.0.1").is_err());
    }

    #[test]
    fn blob_store_locations_parse_strictly() {
        assert_eq!(BlobLocation::parse("/srv/blobs", None, None).ok(), Some(BlobLocation::Local("/srv/blobs".into())));
        let s3 = BlobLocation::parse("s3://cubby-media", Some("https://s3.example.org".into()), None);
        assert!(matches!(s3, Ok(BlobLocation::S3(S3Location { ref bucket, .. })) if bucket == "cubby-media"));
        assert!(BlobLocation::parse("s3://Bad_Bucket", None, None).is_err());
        assert!(BlobLocation::parse("s3://bucket/and/path", None, None).is_err());
        assert!(BlobLocation::parse("gs://bucket", None, None).is_err());
        assert!(BlobLocation::parse("/srv/blobs", Some("https://x".into()), None).is_err());
    }

    #[tokio::test]
    async fn objects_are_written_read_by_range_listed_and_deleted_by_prefix() -> Result<(), BlobError> {
        let dir = tempfile::tempdir().map_err(|e| BlobError::Store(e.to_string()))?;
        let blobs = Blobs::open(&BlobLocation::Local(dir.path().join("blobs")))?;
        blobs.put("media/a/0", Bytes::from_static(b"hello ")).await?;
        blobs.put("media/a/6", Bytes::from_static(b"world")).await?;
        blobs.put("media/b/0", Bytes::from_static(b"other")).await?;
        let read: Vec<Bytes> = blobs.read("media/a/6", Some(1..4)).await?.try_collect().await?;
        assert_eq!(read.concat(), b"orl");
        let mut folders = blobs.folders("media").await?;
        folders.sort();
        assert_eq!(folders, ["a", "b"]);
        blobs.delete("media/b/0").await?;
        blobs.delete("media/b/0").await?;
        assert_eq!(blobs.delete_prefix("media/a").await?, 2);
        assert!(matches!(blobs.read("media/a/0", None).await, Err(BlobError::NotFound)));
        assert!(blobs.folders("media").await?.is_empty());
        assert!(!dir.path().join("blobs/media/a").exists(), "an emptied blob leaves no directory behind");
        Ok(())
    }

    #[tokio::test]
    async fn large_local_objects_read_whole_and_by_range_across_pieces() -> Result<(), BlobError> {
        let dir = tempfile::tempdir().map_err(|e| BlobError::Store(e.to_string()))?;
        let blobs = Blobs::open(&BlobLocation::Local(dir.path().join("blobs")))?;
        let size = 3 * LOCAL_READ_CHUNK as usize + 1_000;
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        blobs.put("media/big/0", Bytes::from(data.clone())).await?;
        let whole: Vec<Bytes> = blobs.read("media/big/0", None).await?.try_collect().await?;
        assert_eq!(whole.len(), 4, "read in pieces of {LOCAL_READ_CHUNK} bytes");
        assert_eq!(whole.concat(), data);
        let (start, end) = (LOCAL_READ_CHUNK - 10, 2 * LOCAL_READ_CHUNK + 10);
        let part: Vec<Bytes> = blobs.read("media/big/0", Some(start..end)).await?.try_collect().await?;
        assert_eq!(part.concat(), data[start as usize..end as usize]);
        // A file cut short under the store is an error, never fewer bytes than announced.
        let file = dir.path().join("blobs/media/big/0");
        let stream = blobs.read("media/big/0", None).await?;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_len(LOCAL_READ_CHUNK))
            .map_err(|e| BlobError::Store(e.to_string()))?;
        let cut: Result<Vec<Bytes>, BlobError> = stream.try_collect().await;
        assert!(matches!(cut, Err(BlobError::Store(_))), "{cut:?}");
        Ok(())
    }
}
