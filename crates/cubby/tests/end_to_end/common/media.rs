//! Media tests' support: a server over local blob files (with SQLite) or over a real
//! S3-compatible server (s3s-fs, with PostgreSQL), and a look at what the blob store keeps
//! on disk either way.
//!
//! The S3 server comes from `scripts/test`, which sets `CUBBY_TEST_S3_ENDPOINT` (its URL),
//! `CUBBY_TEST_S3_ROOT` (the directory it keeps buckets in), `CUBBY_TEST_S3_ACCESS_KEY` and
//! `CUBBY_TEST_S3_SECRET_KEY`. A test that needs it fails, never skips, without them.

use std::path::{Path, PathBuf};

use cubby_client::{CubbyClient, DeviceKey};

use super::{Dirs, Fallible, Server, client};

pub const S3_ENDPOINT_VAR: &str = "CUBBY_TEST_S3_ENDPOINT";
pub const S3_ROOT_VAR: &str = "CUBBY_TEST_S3_ROOT";
pub const S3_ACCESS_KEY_VAR: &str = "CUBBY_TEST_S3_ACCESS_KEY";
pub const S3_SECRET_KEY_VAR: &str = "CUBBY_TEST_S3_SECRET_KEY";

/// Where a test server keeps its blobs, and so where a test looks for them.
pub struct BlobStore {
    /// The directory holding every stored object (the local blob directory, or the
    /// bucket's directory in the S3 server's root).
    pub dir: PathBuf,
    /// Everything the store keeps on disk: the blob directory, or the S3 server's whole
    /// root (s3s-fs keeps each object's metadata beside the buckets).
    pub root: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
}

impl BlobStore {
    /// The server's default: `blobs/` in its data directory.
    pub fn local(dirs: &Dirs) -> Self {
        let dir = dirs.data().join("blobs");
        Self { root: dir.clone(), dir, args: Vec::new(), env: Vec::new() }
    }

    /// A fresh bucket on the test S3 server.
    pub fn s3() -> Fallible<Self> {
        let var = |name: &str| {
            std::env::var(name)
                .map_err(|_| format!("{name} is not set: run the tests with scripts/test, which starts an S3-compatible server (s3s-fs)"))
        };
        let (endpoint, root) = (var(S3_ENDPOINT_VAR)?, PathBuf::from(var(S3_ROOT_VAR)?));
        let (access_key, secret_key) = (var(S3_ACCESS_KEY_VAR)?, var(S3_SECRET_KEY_VAR)?);
        let bucket = format!("cubby-test-{}", hex::encode(random_bytes(6)?));
        // s3s-fs keeps each bucket as a directory of its root.
        let dir = root.join(&bucket);
        std::fs::create_dir_all(&dir)?;
        let args = vec![
            "--blob-store".to_owned(),
            format!("s3://{bucket}"),
            "--s3-endpoint".to_owned(),
            endpoint,
            "--s3-region".to_owned(),
            "us-east-1".to_owned(),
        ];
        let env = vec![("AWS_ACCESS_KEY_ID", access_key), ("AWS_SECRET_ACCESS_KEY", secret_key)];
        Ok(Self { dir, root, args, env })
    }

    /// Every object file in the store's directory.
    pub fn files(&self) -> Fallible<Vec<PathBuf>> {
        files_under(&self.dir)
    }

    /// The object files whose path names the blob `id` (its chunks).
    pub fn files_of(&self, id: &str) -> Fallible<Vec<PathBuf>> {
        Ok(self.files()?.into_iter().filter(|p| p.to_string_lossy().contains(id)).collect())
    }

    /// Every byte the store keeps on disk, file by file (objects and their metadata).
    pub fn contents(&self) -> Fallible<Vec<(PathBuf, Vec<u8>)>> {
        let mut contents = Vec::new();
        for path in files_under(&self.root)? {
            // Other tests' blobs may go meanwhile (they share the S3 server's root).
            match std::fs::read(&path) {
                Ok(bytes) => contents.push((path, bytes)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(contents)
    }
}

fn files_under(dir: &Path) -> Fallible<Vec<PathBuf>> {
    let mut files = Vec::new();
    if dir.exists() {
        walk(dir, &mut files)?;
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Fallible<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

/// A server with SQLite and local blob files, or with PostgreSQL and the S3 server.
/// Returns the server, its blob store, and its database URL.
pub async fn start(dirs: &Dirs, postgres: bool, extra: &[&str]) -> Fallible<(Server, BlobStore, String)> {
    let (database, blobs) = if postgres {
        (cubby_store::testing::fresh_postgres_database().await?, BlobStore::s3()?)
    } else {
        (dirs.database_url(), BlobStore::local(dirs))
    };
    let mut args = dirs.args(postgres.then_some(database.as_str()));
    args.extend(blobs.args.iter().cloned());
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let env: Vec<(&str, &str)> = blobs.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_with_env(&args, &env)?;
    Ok((server, blobs, database))
}

/// A fresh access token for a device, signed in as the SDK does.
pub async fn device_token(server: &Server, secret: [u8; 32], device_id: &str) -> Fallible<String> {
    let api = CubbyClient::with_http_client(&server.base_url, client()?);
    let session = api.authenticate(&DeviceKey::from_secret_bytes(secret), device_id).await?;
    Ok(session.access_token.clone())
}

/// `n` bytes from the operating system's random source (incompressible, like a photo).
pub fn random_bytes(n: usize) -> Fallible<Vec<u8>> {
    use std::io::Read;
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
