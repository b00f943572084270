//! Learning content and firmware on the device, and the publisher's side of packaging.
//!
//! The toy trusts its maker, not the server: [`TrustedPublishers`] holds the publisher keys
//! the toy's maker shipped, and every package the server offers is checked against them
//! here (signature over the exact manifest bytes, manifest rules, listing matches manifest,
//! each file's size and SHA-256). A compromised server can withhold content, never change
//! it, replay an older version, or slip in a package nobody trusted signed.
//!
//! [`ContentLibrary`] keeps what is installed in `DIR/installed.json` (package id →
//! version) and the files in `DIR/<package id>/<version>/`. Downloads go to
//! `DIR/.partial/<id>-<version>/<index>` and resume from their length; only when every file
//! checks are they moved into place and the version recorded, the record being the commit
//! point: a crash before it leaves the old version installed and intact.
//!
//! Publishers use [`PublisherKey`], [`manifest_bytes`], [`digest_file`] and
//! [`PackageUploader`] (this is what `cubby publish` runs).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use cubby_core::content::{FileEntry, Manifest, PackageKind, Version, is_safe_relative_path};
use cubby_crypto::content_signature::{sign_manifest, verify_manifest};
use ed25519_dalek::SigningKey;
use reqwest::{Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{ClientError, CubbyClient, DeviceSession};

/// The record of installed versions, in the library's directory.
const INSTALLED_FILE: &str = "installed.json";
/// Downloads in progress, in the library's directory.
const PARTIAL_DIR: &str = ".partial";
/// A listing carries every offered manifest (up to 1000 files each); a hostile server
/// cannot make the toy buffer more than this.
const MAX_LISTING_BYTES: usize = 32 * 1024 * 1024;
/// Small JSON answers (the upload's acknowledgement).
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// A whole file transfer may take this long (large files on slow links).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Reading and hashing files goes in pieces of this size, never whole in memory.
const READ_BUFFER: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------
// Trust
// ---------------------------------------------------------------------------------------

/// The publishers a toy accepts packages from, with their Ed25519 public keys, as shipped
/// by the toy's maker. Keys the server hands out are never added here.
#[derive(Clone, Debug, Default)]
pub struct TrustedPublishers {
    keys: HashMap<String, [u8; 32]>,
}

impl TrustedPublishers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `publisher` with its public key given as 64 hex digits.
    pub fn trust_hex(&mut self, publisher: &str, public_key_hex: &str) -> Result<(), ClientError> {
        let key = cubby_crypto::content_signature::parse_public_key_hex(public_key_hex)
            .ok_or_else(|| ClientError::InvalidPackage(format!("the key of publisher {publisher} is not an Ed25519 public key")))?;
        self.keys.insert(publisher.to_owned(), key);
        Ok(())
    }

    /// As [`Self::trust_hex`], chaining.
    pub fn with(mut self, publisher: &str, public_key_hex: &str) -> Result<Self, ClientError> {
        self.trust_hex(publisher, public_key_hex)?;
        Ok(self)
    }

    fn key_of(&self, publisher: &str) -> Option<&[u8; 32]> {
        self.keys.get(publisher)
    }
}

// ---------------------------------------------------------------------------------------
// Offers
// ---------------------------------------------------------------------------------------

/// A package the server offers this toy whose signature, manifest and listing all checked
/// against the trusted publishers. Only [`ContentLibrary::available`] makes one.
#[derive(Clone, Debug)]
pub struct PackageOffer {
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    signature: Vec<u8>,
}

impl PackageOffer {
    pub fn package_id(&self) -> &str {
        &self.manifest.id
    }

    pub fn version(&self) -> Version {
        self.manifest.version
    }

    pub fn kind(&self) -> PackageKind {
        self.manifest.kind
    }

    /// The signed manifest (title, age band, files …).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
}

/// An offer that failed verification: never installable. `reason` says which check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedOffer {
    pub package_id: String,
    pub version: String,
    pub reason: String,
}

/// What the server offers: the verified packages, and those refused.
#[derive(Clone, Debug, Default)]
pub struct Offers {
    pub verified: Vec<PackageOffer>,
    pub refused: Vec<RefusedOffer>,
}

impl Offers {
    /// The verified offer of `package_id`, if any.
    pub fn get(&self, package_id: &str) -> Option<&PackageOffer> {
        self.verified.iter().find(|offer| offer.package_id() == package_id)
    }
}

/// One entry of `GET /api/v1/device/titles`, as the server sends it (unverified).
#[derive(Deserialize)]
struct ListedPackage {
    package_id: String,
    version: String,
    kind: String,
    publisher: String,
    manifest: String,
    signature: String,
}

/// Checks a listed package against the trusted keys; the error is the reason for refusal.
fn verify_listed(trusted: &TrustedPublishers, listed: &ListedPackage) -> Result<PackageOffer, String> {
    let manifest_bytes = BASE64.decode(&listed.manifest).map_err(|_| "the manifest is not base64".to_owned())?;
    let signature = BASE64.decode(&listed.signature).map_err(|_| "the signature is not base64".to_owned())?;
    verify_signed(trusted, &listed.publisher, manifest_bytes, signature, |manifest| {
        let matches = manifest.id == listed.package_id
            && manifest.version.to_string() == listed.version
            && manifest.kind.as_str() == listed.kind
            && manifest.publisher == listed.publisher;
        if matches { Ok(()) } else { Err("the listing does not match the signed manifest".to_owned()) }
    })
}

/// The signature first (nothing unsigned is parsed further), then the manifest's rules,
/// then `also` (the listing's claims), then what this device needs of paths.
fn verify_signed(
    trusted: &TrustedPublishers,
    publisher: &str,
    manifest_bytes: Vec<u8>,
    signature: Vec<u8>,
    also: impl FnOnce(&Manifest) -> Result<(), String>,
) -> Result<PackageOffer, String> {
    let key = trusted.key_of(publisher).ok_or_else(|| format!("publisher {publisher:?} is not trusted by this device"))?;
    if !verify_manifest(key, &manifest_bytes, &signature) {
        return Err("the publisher's signature does not verify".to_owned());
    }
    let manifest = Manifest::parse(&manifest_bytes).map_err(|e| format!("the manifest is invalid: {e}"))?;
    if manifest.publisher != publisher {
        return Err("the manifest names another publisher".to_owned());
    }
    also(&manifest)?;
    // The package's directory sits beside the record of installed versions.
    if manifest.id == INSTALLED_FILE {
        return Err("the package id is the name of the library's own record".to_owned());
    }
    // Belt and braces: the paths decide where files land on the device.
    if !manifest.files.iter().all(|file| is_safe_relative_path(&file.path)) {
        return Err("a file path is not a safe relative path".to_owned());
    }
    Ok(PackageOffer { manifest, manifest_bytes, signature })
}

// ---------------------------------------------------------------------------------------
// The library
// ---------------------------------------------------------------------------------------

/// The content installed on a toy, and installing more (see the module documentation).
#[derive(Debug)]
pub struct ContentLibrary {
    dir: PathBuf,
    trusted: TrustedPublishers,
    installed: BTreeMap<String, Version>,
}

impl ContentLibrary {
    /// Opens (creating) the library in `dir`.
    pub fn open(dir: &Path, trusted: TrustedPublishers) -> Result<Self, ClientError> {
        std::fs::create_dir_all(dir).map_err(local)?;
        let record = dir.join(INSTALLED_FILE);
        let installed = match std::fs::read(&record) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|_| ClientError::Local(format!("{} is not a record of installed packages", record.display())))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(error) => return Err(local(error)),
        };
        Ok(Self { dir: dir.to_owned(), trusted, installed })
    }

    /// Installed packages and their versions.
    pub fn installed(&self) -> &BTreeMap<String, Version> {
        &self.installed
    }

    pub fn installed_version(&self, package_id: &str) -> Option<Version> {
        self.installed.get(package_id).copied()
    }

    /// Where the installed file `path` of `package_id` is, if that package is installed.
    pub fn installed_file(&self, package_id: &str, path: &str) -> Option<PathBuf> {
        let version = self.installed.get(package_id)?;
        is_safe_relative_path(path).then(|| self.version_dir(package_id, *version).join(path))
    }

    /// Where file `index` of an offer is being downloaded (it exists only mid-download).
    pub fn partial_file(&self, offer: &PackageOffer, index: usize) -> PathBuf {
        self.partial_dir(offer).join(index.to_string())
    }

    /// What the server offers this toy (`GET /api/v1/device/titles`), each offer verified.
    pub async fn available(&self, client: &CubbyClient, session: &DeviceSession) -> Result<Offers, ClientError> {
        let response = client.raw_request(Method::GET, "/api/v1/device/titles", session)?.header(header::ACCEPT, "application/json").send().await?;
        if !response.status().is_success() {
            return Err(CubbyClient::error_of(response).await);
        }
        let body = read_limited(response, MAX_LISTING_BYTES).await?;
        let listed: Vec<ListedPackage> =
            serde_json::from_slice(&body).map_err(|_| ClientError::Malformed("the list of offered packages is not the expected JSON".into()))?;
        let mut offers = Offers::default();
        for entry in &listed {
            match verify_listed(&self.trusted, entry) {
                Ok(offer) => offers.verified.push(offer),
                Err(reason) => offers.refused.push(RefusedOffer {
                    package_id: entry.package_id.chars().take(100).collect(),
                    version: entry.version.chars().take(40).collect(),
                    reason,
                }),
            }
        }
        Ok(offers)
    }

    /// Downloads, checks and installs `offer`. Refuses a version not newer than the
    /// installed one. A broken download keeps what arrived, and installing again resumes
    /// it; a file that does not match the manifest is deleted and the package refused.
    /// Either way the installed version stays until the new one is complete and checked.
    pub async fn install(&mut self, client: &CubbyClient, session: &DeviceSession, offer: &PackageOffer) -> Result<(), ClientError> {
        // Checked again against this library's own trust: an offer is only data.
        let offer = verify_signed(&self.trusted, &offer.manifest.publisher, offer.manifest_bytes.clone(), offer.signature.clone(), |_| Ok(()))
            .map_err(|reason| refused(offer.package_id(), reason))?;
        let id = offer.package_id().to_owned();
        if let Some(installed) = self.installed_version(&id)
            && offer.version() <= installed
        {
            return Err(ClientError::PackageNotNewer { package_id: id, installed: installed.to_string(), offered: offer.version().to_string() });
        }
        let partial_dir = self.partial_dir(&offer);
        std::fs::create_dir_all(&partial_dir).map_err(local)?;
        for (index, file) in offer.manifest.files.iter().enumerate() {
            let partial = partial_dir.join(index.to_string());
            download(client, session, &offer, index, file, &partial).await?;
            check_file(&offer, index, file, &partial)?;
        }
        self.put_in_place(&offer, &partial_dir)?;
        self.record(&id, offer.version())?;
        self.remove_other_versions(&id, offer.version());
        let _ = std::fs::remove_dir_all(&partial_dir);
        Ok(())
    }

    /// Moves the checked files into `DIR/<id>/<version>/`. That directory is not used
    /// until the version is recorded, so anything already there is a crashed attempt's.
    fn put_in_place(&self, offer: &PackageOffer, partial_dir: &Path) -> Result<(), ClientError> {
        let target = self.version_dir(offer.package_id(), offer.version());
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(local)?;
        }
        for (index, file) in offer.manifest.files.iter().enumerate() {
            let destination = target.join(&file.path);
            if let Some(parent) = destination.parent() {
                std::fs::create_dir_all(parent).map_err(local)?;
            }
            std::fs::rename(partial_dir.join(index.to_string()), &destination).map_err(local)?;
        }
        sync_dir(&target);
        Ok(())
    }

    /// Records `version` as installed: written aside and renamed over, so the record is
    /// always either the old one or the new one.
    fn record(&mut self, package_id: &str, version: Version) -> Result<(), ClientError> {
        let mut installed = self.installed.clone();
        installed.insert(package_id.to_owned(), version);
        let bytes = serde_json::to_vec_pretty(&installed).map_err(|_| ClientError::Local("cannot write the installed record".into()))?;
        let record = self.dir.join(INSTALLED_FILE);
        let temporary = self.dir.join(format!(".{INSTALLED_FILE}.tmp"));
        let mut file = std::fs::File::create(&temporary).map_err(local)?;
        file.write_all(&bytes).map_err(local)?;
        file.sync_all().map_err(local)?;
        drop(file);
        std::fs::rename(&temporary, &record).map_err(local)?;
        sync_dir(&self.dir);
        self.installed = installed;
        Ok(())
    }

    /// Best effort: an old version's files are only space once the new one is recorded.
    fn remove_other_versions(&self, package_id: &str, keep: Version) {
        let Ok(entries) = std::fs::read_dir(self.dir.join(package_id)) else { return };
        let keep = keep.to_string();
        for entry in entries.flatten() {
            if entry.file_name().to_str() != Some(keep.as_str()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    fn version_dir(&self, package_id: &str, version: Version) -> PathBuf {
        self.dir.join(package_id).join(version.to_string())
    }

    fn partial_dir(&self, offer: &PackageOffer) -> PathBuf {
        self.dir.join(PARTIAL_DIR).join(format!("{}-{}", offer.package_id(), offer.version()))
    }
}

/// Downloads file `index` into `partial`, resuming from what is already there. Whatever
/// arrives is written as it comes, so a broken connection loses nothing already received.
async fn download(
    client: &CubbyClient,
    session: &DeviceSession,
    offer: &PackageOffer,
    index: usize,
    file: &FileEntry,
    partial: &Path,
) -> Result<(), ClientError> {
    let mut have = match std::fs::metadata(partial) {
        Ok(meta) => meta.len(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
        Err(error) => return Err(local(error)),
    };
    if have > file.size {
        std::fs::remove_file(partial).map_err(local)?;
        have = 0;
    }
    if have == file.size && have > 0 {
        return Ok(());
    }
    let path = format!("/api/v1/packages/{}/{}/files/{index}", offer.package_id(), offer.version());
    let mut request = client.raw_request(Method::GET, &path, session)?.timeout(TRANSFER_TIMEOUT);
    if have > 0 {
        request = request.header(header::RANGE, format!("bytes={have}-"));
    }
    let mut response = request.send().await?;
    match response.status() {
        StatusCode::PARTIAL_CONTENT if have > 0 => {
            if content_range_start(&response) != Some(have) {
                return Err(ClientError::Malformed("the download does not continue where it stopped".into()));
            }
        }
        // The whole file (no range asked, or the server ignored it): start over.
        StatusCode::OK => have = 0,
        _ => return Err(CubbyClient::error_of(response).await),
    }
    let output = std::fs::OpenOptions::new().create(true).write(true).truncate(have == 0).append(have > 0).open(partial).map_err(local)?;
    let mut output = std::io::BufWriter::new(output);
    let outcome = loop {
        match response.chunk().await {
            Ok(Some(piece)) => {
                if have.saturating_add(piece.len() as u64) > file.size {
                    drop(output);
                    let _ = std::fs::remove_file(partial);
                    return Err(refused(offer.package_id(), format!("file {index} is larger than its signed size")));
                }
                output.write_all(&piece).map_err(local)?;
                have += piece.len() as u64;
            }
            Ok(None) => break Ok(()),
            Err(error) => break Err(ClientError::Transport(error)),
        }
    };
    // Keep what arrived even when the connection broke: the next install resumes from it.
    let output = output.into_inner().map_err(|e| local(e.into_error()))?;
    output.sync_all().map_err(local)?;
    outcome?;
    if have < file.size {
        return Err(ClientError::DownloadIncomplete { package_id: offer.package_id().to_owned(), index });
    }
    Ok(())
}

/// The first byte position of a `Content-Range: bytes N-M/T` answer.
fn content_range_start(response: &reqwest::Response) -> Option<u64> {
    let value = response.headers().get(header::CONTENT_RANGE)?.to_str().ok()?;
    let range = value.strip_prefix("bytes ")?;
    range.split('-').next()?.parse().ok()
}

/// A downloaded file must have exactly the signed size and SHA-256; if not, it goes.
fn check_file(offer: &PackageOffer, index: usize, file: &FileEntry, partial: &Path) -> Result<(), ClientError> {
    let digest = digest_file(partial)?;
    if digest.size == file.size && digest.sha256 == file.sha256 {
        return Ok(());
    }
    let _ = std::fs::remove_file(partial);
    Err(refused(offer.package_id(), format!("file {index} ({}) does not match the signed manifest's SHA-256", file.path)))
}

// ---------------------------------------------------------------------------------------
// Publishing
// ---------------------------------------------------------------------------------------

/// A publisher's Ed25519 signing key. `Debug` does not print it.
pub struct PublisherKey(SigningKey);

impl fmt::Debug for PublisherKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublisherKey").field(&self.public_key_hex()).finish()
    }
}

impl PublisherKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Self, ClientError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut_slice()).map_err(|_| ClientError::Random)?;
        Ok(Self::from_seed(&seed))
    }

    /// The key from its 32-byte seed (what a key file holds).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed, to store (privately).
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public key as 64 hex digits: what the operator registers and toys trust.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.0.verifying_key().to_bytes())
    }

    /// Signs manifest bytes exactly as they will be uploaded.
    pub fn sign(&self, manifest_bytes: &[u8]) -> [u8; 64] {
        sign_manifest(&self.0, manifest_bytes)
    }
}

/// The size and SHA-256 (64 lower-case hex digits) of a file, read in pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigest {
    pub size: u64,
    pub sha256: String,
}

pub fn digest_file(path: &Path) -> Result<FileDigest, ClientError> {
    let mut file = std::fs::File::open(path).map_err(local)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer).map_err(local)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok(FileDigest { size, sha256: hex::encode(hasher.finalize()) })
}

/// The size and SHA-256 of bytes in memory.
pub fn digest_bytes(bytes: &[u8]) -> FileDigest {
    FileDigest { size: bytes.len() as u64, sha256: hex::encode(Sha256::digest(bytes)) }
}

/// The manifest's bytes, serialised once; these are what is signed and uploaded. Refused
/// here already if the server would refuse it.
pub fn manifest_bytes(manifest: &Manifest) -> Result<Vec<u8>, ClientError> {
    let bytes = serde_json::to_vec(manifest).map_err(|_| ClientError::InvalidPackage("the manifest cannot be serialised".into()))?;
    Manifest::parse(&bytes).map_err(|e| ClientError::InvalidPackage(e.to_string()))?;
    Ok(bytes)
}

/// What [`PackageUploader::publish`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub package_id: String,
    pub version: String,
    /// The indexes of the files uploaded this time (the others were already there).
    pub uploaded: Vec<usize>,
}

/// Uploads signed packages to a server. No session: the publisher's signature is the
/// authority, so nothing else is sent.
#[derive(Clone, Debug)]
pub struct PackageUploader {
    base: String,
    http: reqwest::Client,
}

impl PackageUploader {
    /// An uploader for the server at `base_url` (https, or http to a loopback address).
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(TRANSFER_TIMEOUT)
            .user_agent(concat!("cubby-client/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Self::with_http_client(base_url, http)
    }

    /// As [`Self::new`] over a configured `reqwest::Client`.
    pub fn with_http_client(base_url: &str, http: reqwest::Client) -> Result<Self, ClientError> {
        // The same rules for the base URL as the device client's.
        let base = CubbyClient::with_http_client(base_url, http.clone()).base_url().to_owned();
        CubbyClient::new(&base)?;
        Ok(Self { base, http })
    }

    /// Posts the signed manifest, then uploads each file the server still misses.
    /// Re-running it after an interruption uploads only what is missing. `files` are in
    /// the manifest's order.
    pub async fn publish(&self, manifest: &[u8], signature: &[u8; 64], files: &[PathBuf]) -> Result<Published, ClientError> {
        #[derive(Serialize)]
        struct Request {
            manifest: String,
            signature: String,
        }
        #[derive(Deserialize)]
        struct Answer {
            package_id: String,
            version: String,
            missing_files: Vec<usize>,
        }
        let request = Request { manifest: BASE64.encode(manifest), signature: BASE64.encode(signature) };
        let response = self.http.post(format!("{}/api/v1/packages", self.base)).header(header::ACCEPT, "application/json").json(&request).send().await?;
        if response.status() != StatusCode::CREATED {
            return Err(CubbyClient::error_of(response).await);
        }
        let body = read_limited(response, MAX_ANSWER_BYTES).await?;
        let answer: Answer = serde_json::from_slice(&body).map_err(|_| ClientError::Malformed("the package acknowledgement is not the expected JSON".into()))?;
        for &index in &answer.missing_files {
            let path = files.get(index).ok_or_else(|| ClientError::Malformed(format!("the server asks for file {index}, which the package does not have")))?;
            // reqwest here has no streaming bodies, so a file goes up whole; publishers'
            // machines, unlike toys, have the memory for it.
            let body = std::fs::read(path).map_err(local)?;
            let url = format!("{}/api/v1/packages/{}/{}/files/{index}", self.base, answer.package_id, answer.version);
            let response = self.http.put(url).header(header::CONTENT_TYPE, "application/octet-stream").body(body).send().await?;
            if response.status() != StatusCode::NO_CONTENT {
                return Err(CubbyClient::error_of(response).await);
            }
        }
        Ok(Published { package_id: answer.package_id, version: answer.version, uploaded: answer.missing_files })
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ClientError> {
    let too_large = || ClientError::Malformed(format!("the answer is larger than {limit} bytes"));
    if response.content_length().is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(piece) = response.chunk().await? {
        if body.len().saturating_add(piece.len()) > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

fn refused(package_id: &str, reason: String) -> ClientError {
    ClientError::PackageRefused { package_id: package_id.to_owned(), reason }
}

fn local(error: std::io::Error) -> ClientError {
    ClientError::Local(error.to_string())
}

/// Makes renames in `dir` durable; best effort (not every platform can open a directory).
fn sync_dir(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(key: &PublisherKey, version: &str) -> Result<(Vec<u8>, [u8; 64]), ClientError> {
        let manifest = Manifest {
            publisher: "example-books".into(),
            id: "org.example.counting".into(),
            version: version.parse().map_err(|_| ClientError::InvalidPackage("version".into()))?,
            kind: PackageKind::Content,
            title: "Counting".into(),
            description: String::new(),
            languages: vec!["en".into()],
            age_band: cubby_core::validation::AgeBand::From6To8,
            subjects: vec![],
            content_descriptors: vec![],
            price: None,
            files: vec![FileEntry { path: "book/a.txt".into(), size: 3, sha256: hex::encode(Sha256::digest(b"abc")) }],
            size: 3,
        };
        let bytes = manifest_bytes(&manifest)?;
        let signature = key.sign(&bytes);
        Ok((bytes, signature))
    }

    fn listed(bytes: &[u8], signature: &[u8], version: &str) -> ListedPackage {
        ListedPackage {
            package_id: "org.example.counting".into(),
            version: version.into(),
            kind: "content".into(),
            publisher: "example-books".into(),
            manifest: BASE64.encode(bytes),
            signature: BASE64.encode(signature),
        }
    }

    #[test]
    fn only_trusted_signed_matching_offers_verify() -> Result<(), ClientError> {
        let key = PublisherKey::from_seed(&[3; 32]);
        let trusted = TrustedPublishers::new().with("example-books", &key.public_key_hex())?;
        let (bytes, signature) = signed(&key, "1.2.0")?;
        assert!(verify_listed(&trusted, &listed(&bytes, &signature, "1.2.0")).is_ok());
        // The listing claims another version than the signed manifest.
        assert!(verify_listed(&trusted, &listed(&bytes, &signature, "1.3.0")).is_err());
        // One byte of the manifest changed.
        let mut changed = bytes.clone();
        if let Some(byte) = changed.iter_mut().find(|b| **b == b'C') {
            *byte = b'K';
        }
        assert!(verify_listed(&trusted, &listed(&changed, &signature, "1.2.0")).is_err());
        // Signed by a key the toy does not trust for that publisher.
        let stranger = PublisherKey::from_seed(&[4; 32]);
        let (bytes, signature) = signed(&stranger, "1.2.0")?;
        assert!(verify_listed(&trusted, &listed(&bytes, &signature, "1.2.0")).is_err());
        assert!(verify_listed(&TrustedPublishers::new(), &listed(&bytes, &signature, "1.2.0")).is_err());
        Ok(())
    }

    #[test]
    fn the_installed_record_survives_reopening() -> Result<(), ClientError> {
        let dir = std::env::temp_dir().join(format!("cubby-content-test-{}", std::process::id()));
        let mut library = ContentLibrary::open(&dir, TrustedPublishers::new())?;
        library.record("org.example.counting", Version::new(1, 10, 0))?;
        let reopened = ContentLibrary::open(&dir, TrustedPublishers::new())?;
        assert_eq!(reopened.installed_version("org.example.counting"), Some(Version::new(1, 10, 0)));
        assert!(reopened.installed_file("org.example.counting", "../x").is_none());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn digests_are_lowercase_hex_of_the_whole_file() -> Result<(), ClientError> {
        let path = std::env::temp_dir().join(format!("cubby-digest-test-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; READ_BUFFER * 2 + 5]).map_err(local)?;
        let digest = digest_file(&path)?;
        assert_eq!(digest.size, (READ_BUFFER * 2 + 5) as u64);
        assert_eq!(digest.sha256, hex::encode(Sha256::digest(vec![7u8; READ_BUFFER * 2 + 5])));
        let _ = std::fs::remove_file(&path);
        Ok(())
    }
}
