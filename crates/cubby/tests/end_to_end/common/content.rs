//! The content store's tests' support: a server with a registered publisher (through the
//! real CLI), signed packages built and uploaded as a publisher would, a family with a
//! child and a paired toy, the toy's SDK library, and direct looks into the database and
//! the blob directory (to play a malicious server).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cubby_client::content::{ContentLibrary, PublisherKey, TrustedPublishers, digest_bytes, manifest_bytes};
use cubby_client::{CubbyClient, DeviceKey, DeviceKind, DeviceSession, PairingPoll};
use cubby_core::content::{FileEntry, Manifest, PackageKind};
use cubby_core::validation::AgeBand;
use serde_json::{Value, json};
use sqlx::Connection;

use super::api::{self, Session};
use super::{Dirs, Fallible, Server, client, cubby, strings, text};

pub const PUBLISHER: &str = "example-books";

/// A publisher: its key file (made by `cubby publisher keygen`) and the key in it.
pub struct Publisher {
    pub id: String,
    pub key_file: PathBuf,
    pub key: PublisherKey,
    pub public_key: String,
}

/// Runs `cubby publisher keygen --out FILE`; returns the publisher with the key read back.
pub fn keygen(dir: &Path, id: &str) -> Fallible<Publisher> {
    let key_file = dir.join(format!("{id}.key"));
    let output = cubby(&strings(&["publisher", "keygen", "--out", &key_file.display().to_string()]))?;
    if !output.status.success() {
        return Err(format!("keygen failed: {}", text(&output.stderr)).into());
    }
    let public_key = text(&output.stdout).trim().to_owned();
    let seed = hex::decode(std::fs::read_to_string(&key_file)?.trim())?;
    let seed: [u8; 32] = seed.as_slice().try_into()?;
    let key = PublisherKey::from_seed(&seed);
    if key.public_key_hex() != public_key {
        return Err("keygen printed another public key than the file holds".into());
    }
    Ok(Publisher { id: id.to_owned(), key_file, key, public_key })
}

/// `cubby admin publisher add` on a stopped server's directories.
pub fn register(dirs: &Dirs, database: Option<&str>, publisher: &Publisher) -> Fallible<std::process::Output> {
    let mut args = strings(&["admin", "publisher", "add", "--id", &publisher.id, "--name", "Example Books", "--public-key", &publisher.public_key]);
    args.extend(dirs.args(database));
    cubby(&args)
}

/// A server (SQLite, or a fresh PostgreSQL database) whose operator registered [`PUBLISHER`].
pub struct World {
    pub dirs: Dirs,
    pub database: Option<String>,
    pub server: Server,
    pub publisher: Publisher,
}

impl World {
    pub async fn start(postgres: bool) -> Fallible<Self> {
        let dirs = Dirs::new()?;
        let database = if postgres { Some(cubby_store::testing::fresh_postgres_database().await?) } else { None };
        // A first start makes the keys and the schema; the admin command needs the server stopped.
        Server::start(&dirs.args(database.as_deref()))?.stop()?;
        let publisher = keygen(dirs.root.path(), PUBLISHER)?;
        let output = register(&dirs, database.as_deref(), &publisher)?;
        if !output.status.success() {
            return Err(format!("publisher add failed: {}", text(&output.stderr)).into());
        }
        let server = Server::start(&dirs.args(database.as_deref()))?;
        Ok(Self { dirs, database, server, publisher })
    }

    pub fn database_url(&self) -> String {
        self.database.clone().unwrap_or_else(|| self.dirs.database_url())
    }

    pub fn outbox(&self) -> PathBuf {
        self.dirs.outbox()
    }

    /// The stored blob files of a package version (the server keeps them under
    /// `packages/<id>/<version>/<index>` in its blob directory).
    pub fn package_blobs(&self, package_id: &str, version: &str) -> Fallible<Vec<PathBuf>> {
        let mut found = Vec::new();
        walk(&self.dirs.data().join("blobs"), &mut found)?;
        let needle = format!("{package_id}/{version}/");
        Ok(found.into_iter().filter(|p| p.to_string_lossy().contains(&needle)).collect())
    }

    /// The toy's library in `dir`, trusting only this world's publisher.
    pub fn library(&self, dir: &Path) -> Fallible<ContentLibrary> {
        let trusted = TrustedPublishers::new().with(PUBLISHER, &self.publisher.public_key)?;
        Ok(ContentLibrary::open(dir, trusted)?)
    }
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Fallible<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() { walk(&path, files)? } else { files.push(path) }
    }
    Ok(())
}

/// A signed package: the manifest bytes, their signature, and the files' contents.
#[derive(Clone)]
pub struct Package {
    pub id: String,
    pub version: String,
    pub manifest: Vec<u8>,
    pub signature: [u8; 64],
    pub files: Vec<Vec<u8>>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    digest_bytes(bytes).sha256
}

/// Builds and signs a package of `files` (stored as `file-<n>.bin`).
pub fn package(publisher: &Publisher, id: &str, version: &str, age_band: AgeBand, kind: PackageKind, files: Vec<Vec<u8>>) -> Fallible<Package> {
    let entries: Vec<FileEntry> = files
        .iter()
        .enumerate()
        .map(|(n, bytes)| FileEntry { path: format!("content/file-{n}.bin"), size: bytes.len() as u64, sha256: sha256_hex(bytes) })
        .collect();
    let manifest = Manifest {
        publisher: publisher.id.clone(),
        id: id.to_owned(),
        version: version.parse()?,
        kind,
        title: format!("Title of {id}"),
        description: "A test title.".to_owned(),
        languages: vec!["en".to_owned()],
        age_band,
        subjects: vec!["maths".to_owned()],
        content_descriptors: vec![],
        price: None,
        size: entries.iter().map(|e| e.size).sum(),
        files: entries,
    };
    let bytes = manifest_bytes(&manifest)?;
    let signature = publisher.key.sign(&bytes);
    Ok(Package { id: id.to_owned(), version: version.to_owned(), manifest: bytes, signature, files })
}

/// `POST /api/v1/packages` with these manifest bytes and signature.
pub async fn submit(server: &Server, manifest: &[u8], signature: &[u8]) -> Fallible<(u16, Value)> {
    let body = json!({"manifest": BASE64.encode(manifest), "signature": BASE64.encode(signature)});
    api::post(server, "/api/v1/packages", None, body).await
}

/// `PUT` one file's bytes.
pub async fn put_file(server: &Server, id: &str, version: &str, index: usize, bytes: Vec<u8>) -> Fallible<(u16, Value)> {
    let url = server.url(&format!("/api/v1/packages/{id}/{version}/files/{index}"));
    let response = client()?.put(url).timeout(std::time::Duration::from_secs(120)).body(bytes).send().await?;
    let status = response.status().as_u16();
    let body = response.text().await?;
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

/// Submits and uploads every file; the package is published after.
pub async fn publish(server: &Server, package: &Package) -> Fallible<()> {
    let (status, body) = submit(server, &package.manifest, &package.signature).await?;
    if status != 201 {
        return Err(format!("submitting {} {} answered {status}: {body}", package.id, package.version).into());
    }
    for (index, bytes) in package.files.iter().enumerate() {
        let (status, body) = put_file(server, &package.id, &package.version, index, bytes.clone()).await?;
        if status != 204 {
            return Err(format!("uploading file {index} answered {status}: {body}").into());
        }
    }
    Ok(())
}

/// A family with consent given and one child of `age_band`.
pub struct Family {
    pub guardian: Session,
    pub id: String,
    pub child: String,
}

pub async fn family(world: &World, tag: &str, age_band: &str) -> Fallible<Family> {
    let server = &world.server;
    let guardian = api::guardian(server, &world.outbox(), &format!("{tag}@example.org"), "correct horse battery staple").await?;
    let id = api::family(server, &guardian, "The Family").await?;
    api::consent(server, &world.outbox(), &guardian, &id).await?;
    let child = api::child(server, &guardian, &id, "Sam", age_band).await?;
    Ok(Family { guardian, id, child })
}

impl Family {
    pub fn path(&self, rest: &str) -> String {
        format!("/api/v1/families/{}/children/{}{rest}", self.id, self.child)
    }
}

/// A guardian approves a title for the child: the status and answer.
pub async fn approve(server: &Server, family: &Family, package_id: &str) -> Fallible<(u16, Value)> {
    api::post(server, &family.path("/titles"), Some(&family.guardian.token), json!({"package_id": package_id})).await
}

/// The child's toy, paired through the real flow and signed in.
pub struct Toy {
    pub device_id: String,
    pub api: CubbyClient,
    pub session: DeviceSession,
}

pub async fn toy(server: &Server, family: &Family) -> Fallible<Toy> {
    let api = CubbyClient::with_http_client(&server.base_url, client()?);
    let key = DeviceKey::generate()?;
    let start = api.start_pairing(&key, DeviceKind::Toy, "test 1.0").await?;
    let body = json!({"user_code": start.user_code, "family_id": family.id, "child_id": family.child, "name": "Bunny"});
    let (status, answer) = api::post(server, "/api/v1/pairing/approve", Some(&family.guardian.token), body).await?;
    if status != 200 {
        return Err(format!("approval answered {status}: {answer}").into());
    }
    let PairingPoll::Paired(paired) = api.poll_pairing(&start.device_code).await? else {
        return Err("not paired after approval".into());
    };
    let session = api.authenticate(&key, &paired.device_id).await?;
    Ok(Toy { device_id: paired.device_id, api, session })
}

impl Toy {
    /// The same toy talking to the server through `url` (a proxy).
    pub fn through(&self, url: &str) -> Fallible<CubbyClient> {
        Ok(CubbyClient::with_http_client(url, client()?))
    }

    /// A raw download request with the toy's token: the status and the body.
    pub async fn download(&self, server: &Server, id: &str, version: &str, index: usize) -> Fallible<(u16, Vec<u8>)> {
        let url = server.url(&format!("/api/v1/packages/{id}/{version}/files/{index}"));
        let response = client()?.get(url).bearer_auth(&self.session.access_token).send().await?;
        Ok((response.status().as_u16(), response.bytes().await?.to_vec()))
    }

    /// `GET /api/v1/device/titles` as JSON.
    pub async fn titles(&self, server: &Server) -> Fallible<Value> {
        let (status, body) = api::get(server, "/api/v1/device/titles", Some(&self.session.access_token)).await?;
        if status != 200 {
            return Err(format!("device titles answered {status}: {body}").into());
        }
        Ok(body)
    }
}

/// The database behind a test server, for looking (and, as a malicious server would,
/// tampering) behind the API's back. Statements take text parameters `$1, $2, …`.
pub struct Database(pub String);

impl Database {
    pub async fn count(&self, sql: &'static str, args: &[&str]) -> Fallible<i64> {
        if self.0.starts_with("postgres") {
            let mut conn = sqlx::PgConnection::connect(&self.0).await?;
            let mut query = sqlx::query_scalar(sql);
            for arg in args {
                query = query.bind(*arg);
            }
            Ok(query.fetch_one(&mut conn).await?)
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.0).await?;
            let mut query = sqlx::query_scalar(sql);
            for arg in args {
                query = query.bind(*arg);
            }
            Ok(query.fetch_one(&mut conn).await?)
        }
    }

    pub async fn execute(&self, sql: &'static str, args: &[&str]) -> Fallible<u64> {
        if self.0.starts_with("postgres") {
            let mut conn = sqlx::PgConnection::connect(&self.0).await?;
            let mut query = sqlx::query(sql);
            for arg in args {
                query = query.bind(*arg);
            }
            Ok(query.execute(&mut conn).await?.rows_affected())
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.0).await?;
            let mut query = sqlx::query(sql);
            for arg in args {
                query = query.bind(*arg);
            }
            Ok(query.execute(&mut conn).await?.rows_affected())
        }
    }

    /// Replaces the stored manifest bytes of a package version.
    pub async fn set_manifest(&self, id: &str, version: &str, manifest: Vec<u8>) -> Fallible<u64> {
        const SQL: &str = "UPDATE packages SET manifest = $1 WHERE package_id = $2 AND version = $3";
        if self.0.starts_with("postgres") {
            let mut conn = sqlx::PgConnection::connect(&self.0).await?;
            Ok(sqlx::query(SQL).bind(manifest).bind(id).bind(version).execute(&mut conn).await?.rows_affected())
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.0).await?;
            Ok(sqlx::query(SQL).bind(manifest).bind(id).bind(version).execute(&mut conn).await?.rows_affected())
        }
    }
}
