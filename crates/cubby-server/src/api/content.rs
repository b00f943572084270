//! The learning content store over HTTP.
//!
//! - Publishers submit a signed manifest, then its files (no session: the signature over
//!   the manifest, and each file's SHA-256 in it, are the authority). A package is offered
//!   once its last file is in.
//! - Guardians browse the catalogue, and approve titles for a child (its age band or a
//!   younger one; paid titles wait for a payment provider).
//! - Toys list what they may install and download it (resumable); they check the
//!   publisher's signature and every hash themselves, so this server is not trusted with
//!   the content's integrity.
//!
//! Anything a device may not have answers exactly as something that does not exist.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::BytesMut;
use cubby_core::audit::Actor;
use cubby_core::content::{Manifest, PackageKind, Price, Version, is_package_id, suits_child};
use cubby_core::policy::Action;
use cubby_core::validation::AgeBand;
use cubby_core::{ChildId, ErrorCode, FamilyId};
use cubby_crypto::content_signature::verify_manifest;
use cubby_store::{
    ApprovalRow, BlobLocation, Blobs, DownloadRow, FileStored, NewApproval, NewPackage, PackageRow, Submitted,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::children::child_id;
use super::families::allowed;
use super::support::audit;
use crate::http::auth::Guardian;
use crate::http::device_auth::Device;
use crate::http::{ApiError, ApiJson, AppState, ErrorBody};
use crate::media::range::{Wanted, wanted};
use crate::vault::now_millis;

/// A submission carries the manifest (at most 1000 files, each with a path of at most 200
/// characters) in base64: this is ample, and it is read whole.
const MAX_SUBMISSION_BYTES: usize = 2 * 1024 * 1024;
const DEFAULT_PER_PAGE: usize = 20;
const MAX_PER_PAGE: usize = 100;

/// Where package files are kept: the media blob store, under `packages/`.
pub struct PackageFiles {
    blobs: Result<Blobs, String>,
    max_size: u64,
}

impl PackageFiles {
    pub fn open(location: &BlobLocation, max_size: u64) -> Self {
        Self { blobs: Blobs::open(location).map_err(|e| e.to_string()), max_size }
    }

    fn blobs(&self) -> Result<&Blobs, ApiError> {
        self.blobs.as_ref().map_err(|error| ApiError::unavailable(error))
    }
}

/// The object key of a file. Only called with a checked package id and a parsed version,
/// so the key has no `..` or empty segment.
fn object_key(package_id: &str, version: Version, index: usize) -> String {
    format!("packages/{package_id}/{version}/{index}")
}

// ---------------------------------------------------------------- publishing

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// The manifest's exact bytes, base64 (standard alphabet, padded).
    pub manifest: String,
    /// The publisher's Ed25519 signature over those bytes (domain-separated), base64.
    pub signature: String,
}

#[derive(Serialize, ToSchema)]
pub struct PackageSubmitted {
    pub package_id: String,
    pub version: String,
    /// Indexes (into the manifest's `files`) of the files still to upload.
    pub missing_files: Vec<i64>,
}

/// Submit a signed package manifest; then upload each file it lists.
#[utoipa::path(post, path = "/api/v1/packages", tag = "content", request_body = Submission,
    responses(
        (status = 201, body = PackageSubmitted),
        (status = 400, description = "malformed_json", body = ErrorBody),
        (status = 403, description = "signature_invalid: unknown publisher, or a signature that does not verify", body = ErrorBody),
        (status = 409, description = "version_not_newer: a version as new or newer exists", body = ErrorBody),
        (status = 413, description = "body_too_large", body = ErrorBody),
        (status = 422, description = "invalid_body: not base64, or an invalid manifest", body = ErrorBody),
    ))]
pub async fn submit(State(state): State<AppState>, body: Body) -> Result<(StatusCode, ApiJson<PackageSubmitted>), ApiError> {
    let raw = read_limited(body, MAX_SUBMISSION_BYTES).await?;
    let submission: Submission = serde_json::from_slice(&raw).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::new(ErrorCode::MalformedJson, "the body is not valid JSON")
        } else {
            ApiError::new(ErrorCode::InvalidBody, format!("the body does not fit: {e}"))
        }
    })?;
    let manifest_bytes = decode(&submission.manifest, "manifest")?;
    let signature = decode(&submission.signature, "signature")?;
    let manifest = Manifest::parse(&manifest_bytes).map_err(|e| ApiError::new(ErrorCode::InvalidBody, e.to_string()))?;
    let bad_signature = || {
        ApiError::new(ErrorCode::SignatureInvalid, "the signature does not verify under a registered publisher's key")
    };
    let store = state.vault.store();
    let publisher = store.publisher(&manifest.publisher).await?.ok_or_else(bad_signature)?;
    let key = <[u8; 32]>::try_from(publisher.public_key.as_slice()).map_err(|_| bad_signature())?;
    if !verify_manifest(&key, &manifest_bytes, &signature) {
        return Err(bad_signature());
    }
    let version = manifest.version.to_string();
    let not_newer = || {
        ApiError::new(
            ErrorCode::VersionNotNewer,
            "a version of this package as new or newer is already published or pending; raise the version",
        )
    };
    let answer = |missing_files| {
        Ok((
            StatusCode::CREATED,
            ApiJson(PackageSubmitted { package_id: manifest.id.clone(), version: version.clone(), missing_files }),
        ))
    };
    if let Some(existing) = store.package(&manifest.id, &version).await? {
        // The same signed bytes again, still incomplete: the publisher resumes.
        let resumed =
            existing.published_at.is_none() && existing.manifest == manifest_bytes && existing.signature == signature;
        if !resumed {
            return Err(not_newer());
        }
        return answer(store.missing_files(&manifest.id, &version).await?);
    }
    let files = manifest
        .files
        .iter()
        .map(|f| Ok((i64::try_from(f.size).map_err(|_| ApiError::new(ErrorCode::InvalidBody, "a file is too large"))?, f.sha256.clone())))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let package = NewPackage {
        package_id: manifest.id.clone(),
        version: version.clone(),
        major: i64::from(manifest.version.major),
        minor: i64::from(manifest.version.minor),
        patch: i64::from(manifest.version.patch),
        publisher_id: manifest.publisher.clone(),
        kind: manifest.kind.as_str().to_owned(),
        manifest: manifest_bytes.clone(),
        signature,
        files,
        created_at: now_millis(),
    };
    match store.submit_package(&package).await? {
        Submitted::Created => answer((0..i64::try_from(manifest.files.len()).unwrap_or(0)).collect()),
        Submitted::NotNewer => Err(not_newer()),
        // A package id belongs to the publisher that first used it: another publisher's
        // newer version would otherwise reach children who were approved the first one's.
        Submitted::OtherPublisher => Err(bad_signature()),
    }
}

fn decode(value: &str, what: &str) -> Result<Vec<u8>, ApiError> {
    BASE64.decode(value.trim()).map_err(|_| ApiError::new(ErrorCode::InvalidBody, format!("{what} must be base64")))
}

/// Reads a body whole, refusing more than `limit` bytes (the JSON body limit of the rest
/// of the API is smaller than a large manifest).
async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut buffer = BytesMut::new();
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|_| ApiError::new(ErrorCode::InvalidBody, "the body could not be read to its end"))?;
        if buffer.len().saturating_add(piece.len()) > limit {
            return Err(ApiError::new(ErrorCode::BodyTooLarge, format!("the body may be at most {limit} bytes")));
        }
        buffer.extend_from_slice(&piece);
    }
    Ok(buffer.to_vec())
}

/// A package version named in a path: checked before it reaches a query or an object key.
fn package_path(package_id: &str, version: &str, index: &str) -> Result<(Version, usize), ApiError> {
    if !is_package_id(package_id) {
        return Err(ApiError::not_found());
    }
    let version: Version = version.parse().map_err(|_| ApiError::not_found())?;
    let index = (!index.is_empty() && index.len() <= 4 && index.bytes().all(|b| b.is_ascii_digit()))
        .then(|| index.parse::<usize>().ok())
        .flatten()
        .ok_or_else(ApiError::not_found)?;
    Ok((version, index))
}

/// The manifest of a stored package (its bytes were checked when it was submitted).
fn stored_manifest(package: &PackageRow) -> Result<Manifest, ApiError> {
    Manifest::parse(&package.manifest).map_err(|e| ApiError::internal(&e))
}

/// Upload one file of a submitted package (the whole file, raw). Its SHA-256 must be the
/// manifest's; otherwise nothing is kept.
#[utoipa::path(put, path = "/api/v1/packages/{package_id}/{version}/files/{index}", tag = "content",
    params(("package_id" = String, Path), ("version" = String, Path), ("index" = u32, Path)),
    request_body(content = [u8], content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Stored (or stored already); the package is published with its last file"),
        (status = 404, description = "No such package version or file", body = ErrorBody),
        (status = 413, description = "body_too_large: larger than the manifest says, or than --package-max-size", body = ErrorBody),
        (status = 422, description = "hash_mismatch: the bytes are not the ones the manifest lists", body = ErrorBody),
        (status = 503, description = "The blob store is unavailable", body = ErrorBody),
    ))]
pub async fn upload_file(
    State(state): State<AppState>,
    Path((package_id, version, index)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let (version, index) = package_path(&package_id, &version, &index)?;
    let store = state.vault.store();
    let package = store.package(&package_id, &version.to_string()).await?.ok_or_else(ApiError::not_found)?;
    let manifest = stored_manifest(&package)?;
    let entry = manifest.files.get(index).ok_or_else(ApiError::not_found)?;
    let index_i64 = i64::try_from(index).map_err(|_| ApiError::not_found())?;
    if !store.missing_files(&package_id, &package.version).await?.contains(&index_i64) {
        // A retry after a lost answer: the bytes are in already (and were checked).
        return Ok(StatusCode::NO_CONTENT);
    }
    let limit = entry.size.min(state.packages.max_size);
    let too_large = || ApiError::new(ErrorCode::BodyTooLarge, format!("this file may be at most {limit} bytes"));
    if entry.size > state.packages.max_size {
        return Err(too_large());
    }
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let blobs = state.packages.blobs()?;
    let key = object_key(&package_id, version, index);
    let mut writer = blobs.start_write(&key).await.map_err(|e| ApiError::unavailable(&e))?;
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    let mut stream = body.into_data_stream();
    let mut refusal = None;
    while let Some(piece) = stream.next().await {
        let Ok(piece) = piece else {
            refusal = Some(ApiError::new(ErrorCode::InvalidBody, "the body could not be read to its end"));
            break;
        };
        received = received.saturating_add(piece.len() as u64);
        if received > limit {
            refusal = Some(too_large());
            break;
        }
        hasher.update(&piece);
        if let Err(error) = writer.write(&piece).await {
            refusal = Some(ApiError::unavailable(&error));
            break;
        }
    }
    if refusal.is_none() && hex::encode(hasher.finalize()) != entry.sha256 {
        refusal = Some(ApiError::new(
            ErrorCode::HashMismatch,
            "the file's SHA-256 is not the one in the manifest; nothing was kept",
        ));
    }
    if let Some(refusal) = refusal {
        if let Err(error) = writer.abort().await {
            tracing::warn!(%error, "could not abort a refused package file upload");
        }
        return Err(refusal);
    }
    writer.finish().await.map_err(|e| ApiError::unavailable(&e))?;
    match store.record_file(&package_id, &package.version, index_i64, now_millis()).await? {
        FileStored::Recorded { published: true } => {
            let detail = serde_json::json!({
                "package_id": package_id, "version": package.version, "publisher": package.publisher_id,
            });
            audit(&state, Actor::System, "package.published", None, detail.to_string()).await?;
        }
        FileStored::Recorded { published: false } | FileStored::AlreadyStored => {}
        FileStored::Unknown => return Err(ApiError::not_found()),
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- catalogue

#[derive(Serialize, ToSchema)]
pub struct PublisherView {
    pub id: String,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct PriceView {
    pub amount_cents: u64,
    pub currency: String,
}

impl From<&Price> for PriceView {
    fn from(price: &Price) -> Self {
        Self { amount_cents: price.amount_cents, currency: price.currency.clone() }
    }
}

/// A title as the catalogue shows it: the newest published version of a package.
#[derive(Serialize, ToSchema)]
pub struct Title {
    pub package_id: String,
    pub version: String,
    /// `content` or `firmware`.
    pub kind: String,
    pub title: String,
    pub description: String,
    pub languages: Vec<String>,
    #[schema(value_type = String, example = "6_8")]
    pub age_band: AgeBand,
    pub subjects: Vec<String>,
    pub content_descriptors: Vec<String>,
    /// `null`: free.
    pub price: Option<PriceView>,
    pub size: u64,
    pub publisher: PublisherView,
}

#[derive(Serialize, ToSchema)]
pub struct Catalogue {
    pub items: Vec<Title>,
    pub page: usize,
    pub per_page: usize,
    pub total: usize,
}

/// A published package with its parsed manifest.
struct Offered {
    row: PackageRow,
    manifest: Manifest,
}

impl Offered {
    fn title(&self) -> Title {
        let m = &self.manifest;
        Title {
            package_id: m.id.clone(),
            version: self.row.version.clone(),
            kind: m.kind.as_str().to_owned(),
            title: m.title.clone(),
            description: m.description.clone(),
            languages: m.languages.clone(),
            age_band: m.age_band,
            subjects: m.subjects.clone(),
            content_descriptors: m.content_descriptors.clone(),
            price: m.price.as_ref().map(PriceView::from),
            size: m.size,
            publisher: PublisherView { id: self.row.publisher_id.clone(), name: self.row.publisher_name.clone() },
        }
    }
}

/// The newest published version of every package id, by id.
async fn newest_published(state: &AppState) -> Result<BTreeMap<String, Offered>, ApiError> {
    let mut newest: BTreeMap<String, Offered> = BTreeMap::new();
    for row in state.vault.store().published_packages().await? {
        let manifest = stored_manifest(&row)?;
        let newer = newest.get(&row.package_id).is_none_or(|current| manifest.version > current.manifest.version);
        if newer {
            newest.insert(row.package_id.clone(), Offered { row, manifest });
        }
    }
    Ok(newest)
}

/// The catalogue's filters, read from the query string.
struct Filters {
    age_band: Option<AgeBand>,
    subject: Option<String>,
    language: Option<String>,
    kind: Option<PackageKind>,
    q: Option<String>,
    page: usize,
    per_page: usize,
}

/// 422 for a query parameter out of range, as the catalogue's contract says.
fn bad_parameter(message: &'static str) -> Response {
    let mut response = ApiError::new(ErrorCode::InvalidParameter, message).into_response();
    *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    response
}

/// Reads the filters; an error is the message for [`bad_parameter`].
fn filters(query: Option<&str>) -> Result<Filters, &'static str> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| "the query string could not be read")?;
    let mut filters =
        Filters { age_band: None, subject: None, language: None, kind: None, q: None, page: 1, per_page: DEFAULT_PER_PAGE };
    let number = |value: &str| value.parse::<usize>().ok();
    for (name, value) in pairs {
        if value.is_empty() {
            continue;
        }
        match name.as_str() {
            "age_band" => {
                filters.age_band =
                    Some(AgeBand::parse(&value).ok_or("age_band must be under_6, 6_8, 9_12 or 13_17")?)
            }
            "kind" => {
                filters.kind = Some(PackageKind::parse(&value).ok_or("kind must be content or firmware")?)
            }
            "subject" => filters.subject = Some(value),
            "language" => filters.language = Some(value),
            "q" => filters.q = Some(value.to_lowercase()),
            "page" => {
                filters.page = number(&value).filter(|p| *p >= 1).ok_or("page must be 1 or more")?
            }
            "per_page" => {
                filters.per_page = number(&value)
                    .filter(|n| (1..=MAX_PER_PAGE).contains(n))
                    .ok_or("per_page must be from 1 to 100")?
            }
            _ => {}
        }
    }
    Ok(filters)
}

impl Filters {
    fn admits(&self, m: &Manifest) -> bool {
        self.age_band.is_none_or(|band| m.age_band == band)
            && self.kind.is_none_or(|kind| m.kind == kind)
            && self.subject.as_ref().is_none_or(|s| m.subjects.iter().any(|x| x.eq_ignore_ascii_case(s)))
            && self.language.as_ref().is_none_or(|l| m.languages.iter().any(|x| x.eq_ignore_ascii_case(l)))
            && self.q.as_ref().is_none_or(|q| m.title.to_lowercase().contains(q) || m.description.to_lowercase().contains(q))
    }
}

/// The catalogue is the operator's publishers' titles: small enough to filter in memory.
async fn catalogue_for(state: &AppState, filters: &Filters, child_band: Option<AgeBand>) -> Result<Catalogue, ApiError> {
    let mut offered: Vec<Offered> = newest_published(state)
        .await?
        .into_values()
        .filter(|o| filters.admits(&o.manifest))
        .filter(|o| child_band.is_none_or(|band| suits_child(o.manifest.age_band, band)))
        .collect();
    offered.sort_by(|a, b| a.manifest.title.cmp(&b.manifest.title).then_with(|| a.row.package_id.cmp(&b.row.package_id)));
    let total = offered.len();
    let items = offered
        .iter()
        .skip(filters.page.saturating_sub(1).saturating_mul(filters.per_page))
        .take(filters.per_page)
        .map(Offered::title)
        .collect();
    Ok(Catalogue { items, page: filters.page, per_page: filters.per_page, total })
}

/// Browse every published title.
#[utoipa::path(get, path = "/api/v1/catalogue", tag = "content",
    params(
        ("age_band" = Option<String>, Query), ("subject" = Option<String>, Query), ("language" = Option<String>, Query),
        ("kind" = Option<String>, Query), ("q" = Option<String>, Query, description = "Words in the title or description"),
        ("page" = Option<usize>, Query), ("per_page" = Option<usize>, Query, description = "1 to 100; 20 by default"),
    ),
    responses(
        (status = 200, body = Catalogue),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "invalid_parameter", body = ErrorBody),
    ))]
pub async fn catalogue(State(state): State<AppState>, _guardian: Guardian, RawQuery(query): RawQuery) -> Response {
    let filters = match filters(query.as_deref()) {
        Ok(filters) => filters,
        Err(message) => return bad_parameter(message),
    };
    match catalogue_for(&state, &filters, None).await {
        Ok(catalogue) => ApiJson(catalogue).into_response(),
        Err(error) => error.into_response(),
    }
}

/// A child of one of the guardian's families, with its age band.
async fn family_child(state: &AppState, guardian: &Guardian, family: &str, child: &str, action: Action) -> Result<(FamilyId, ChildId, AgeBand), ApiError> {
    let family = allowed(guardian, family, action)?;
    let child = child_id(child)?;
    let row = state.vault.store().child(family, child).await?.ok_or_else(ApiError::not_found)?;
    let view = state.vault.open_child(&row).await?.ok_or_else(ApiError::not_found)?;
    Ok((family, child, view.age_band))
}

/// The titles suitable for one child: its age band or younger.
#[utoipa::path(get, path = "/api/v1/families/{family_id}/children/{child_id}/catalogue", tag = "content",
    params(
        ("family_id" = String, Path), ("child_id" = String, Path),
        ("age_band" = Option<String>, Query), ("subject" = Option<String>, Query), ("language" = Option<String>, Query),
        ("kind" = Option<String>, Query), ("q" = Option<String>, Query),
        ("page" = Option<usize>, Query), ("per_page" = Option<usize>, Query),
    ),
    responses(
        (status = 200, body = Catalogue),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such child of mine", body = ErrorBody),
        (status = 422, description = "invalid_parameter", body = ErrorBody),
    ))]
pub async fn child_catalogue(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let result = async {
        let (_, _, band) = family_child(&state, &guardian, &family, &child, Action::Read).await?;
        Ok::<AgeBand, ApiError>(band)
    }
    .await;
    let band = match result {
        Ok(band) => band,
        Err(error) => return error.into_response(),
    };
    let filters = match filters(query.as_deref()) {
        Ok(filters) => filters,
        Err(message) => return bad_parameter(message),
    };
    match catalogue_for(&state, &filters, Some(band)).await {
        Ok(catalogue) => ApiJson(catalogue).into_response(),
        Err(error) => error.into_response(),
    }
}

// ---------------------------------------------------------------- approvals

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    pub package_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct EntitlementView {
    pub granted_at: Option<i64>,
    pub price: Option<PriceView>,
}

#[derive(Serialize, ToSchema)]
pub struct ApprovalView {
    pub package_id: String,
    pub approved_at: i64,
    pub price: Option<PriceView>,
    pub entitlement: EntitlementView,
}

#[derive(Serialize, ToSchema)]
pub struct ApprovedTitle {
    pub package_id: String,
    pub approved_at: i64,
    pub price: Option<PriceView>,
    pub entitlement: EntitlementView,
    /// The newest published version (`null` if none is offered any more).
    pub version: Option<String>,
    pub title: Option<Title>,
}

fn stored_price(row: &ApprovalRow) -> Option<PriceView> {
    match (row.price_cents, &row.currency) {
        (Some(cents), Some(currency)) => Some(PriceView { amount_cents: u64::try_from(cents).unwrap_or(0), currency: currency.clone() }),
        _ => None,
    }
}

fn approval_view(row: &ApprovalRow) -> ApprovalView {
    ApprovalView {
        package_id: row.package_id.clone(),
        approved_at: row.approved_at,
        price: stored_price(row),
        entitlement: EntitlementView { granted_at: row.granted_at, price: stored_price(row) },
    }
}

/// Approve a title for a child: from then on its toy may install it.
#[utoipa::path(post, path = "/api/v1/families/{family_id}/children/{child_id}/titles", tag = "content",
    request_body = ApprovalRequest,
    params(("family_id" = String, Path), ("child_id" = String, Path)),
    responses(
        (status = 201, body = ApprovalView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 402, description = "payment_required: a paid title (no payment provider is configured)", body = ErrorBody),
        (status = 403, description = "not_suitable_for_age: the title is for older children", body = ErrorBody),
        (status = 404, description = "No such child of mine, or no such title", body = ErrorBody),
    ))]
pub async fn approve(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child)): Path<(String, String)>,
    ApiJson(body): ApiJson<ApprovalRequest>,
) -> Result<(StatusCode, ApiJson<ApprovalView>), ApiError> {
    let (family, child, band) = family_child(&state, &guardian, &family, &child, Action::Change).await?;
    if !is_package_id(&body.package_id) {
        return Err(ApiError::not_found());
    }
    let newest = newest_published(&state).await?;
    // Firmware needs no approval: it is not a title.
    let offered = newest
        .get(&body.package_id)
        .filter(|o| o.manifest.kind == PackageKind::Content)
        .ok_or_else(ApiError::not_found)?;
    if !suits_child(offered.manifest.age_band, band) {
        return Err(ApiError::new(ErrorCode::NotSuitableForAge, "this title is for older children than this child"));
    }
    if !offered.manifest.is_free() {
        return Err(ApiError::new(ErrorCode::PaymentRequired, "paid titles need a payment provider; none is configured"));
    }
    let row = state
        .vault
        .store()
        .approve_title(&NewApproval {
            family_id: family,
            child_id: child,
            package_id: body.package_id.clone(),
            version: offered.row.version.clone(),
            publisher_id: offered.row.publisher_id.clone(),
            price_cents: None,
            currency: None,
            at: now_millis(),
        })
        .await?;
    let detail = serde_json::json!({"child_id": child.to_string(), "package_id": body.package_id});
    audit(&state, Actor::Account(guardian.account), "content.approved", Some(family), detail.to_string()).await?;
    Ok((StatusCode::CREATED, ApiJson(approval_view(&row))))
}

/// The titles approved for a child, each with its newest version.
#[utoipa::path(get, path = "/api/v1/families/{family_id}/children/{child_id}/titles", tag = "content",
    params(("family_id" = String, Path), ("child_id" = String, Path)),
    responses(
        (status = 200, body = Vec<ApprovedTitle>),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such child of mine", body = ErrorBody),
    ))]
pub async fn list_approved(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child)): Path<(String, String)>,
) -> Result<ApiJson<Vec<ApprovedTitle>>, ApiError> {
    let (family, child, _) = family_child(&state, &guardian, &family, &child, Action::Read).await?;
    let newest = newest_published(&state).await?;
    let approvals = state.vault.store().child_approvals(family, child).await?;
    Ok(ApiJson(
        approvals
            .iter()
            .map(|row| {
                let view = approval_view(row);
                let offered = newest.get(&row.package_id);
                ApprovedTitle {
                    package_id: view.package_id,
                    approved_at: view.approved_at,
                    price: view.price,
                    entitlement: view.entitlement,
                    version: offered.map(|o| o.row.version.clone()),
                    title: offered.map(Offered::title),
                }
            })
            .collect(),
    ))
}

/// Withdraw a title's approval (the toy stops being offered it).
#[utoipa::path(delete, path = "/api/v1/families/{family_id}/children/{child_id}/titles/{package_id}", tag = "content",
    params(("family_id" = String, Path), ("child_id" = String, Path), ("package_id" = String, Path)),
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such child of mine, or the title is not approved", body = ErrorBody),
    ))]
pub async fn withdraw(
    State(state): State<AppState>,
    guardian: Guardian,
    Path((family, child, package_id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let (family, child, _) = family_child(&state, &guardian, &family, &child, Action::Change).await?;
    if !is_package_id(&package_id) || !state.vault.store().withdraw_title(family, child, &package_id).await? {
        return Err(ApiError::not_found());
    }
    let detail = serde_json::json!({"child_id": child.to_string(), "package_id": package_id});
    audit(&state, Actor::Account(guardian.account), "content.withdrawn", Some(family), detail.to_string()).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- devices

#[derive(Serialize, ToSchema)]
pub struct DeviceTitle {
    pub package_id: String,
    pub version: String,
    pub kind: String,
    /// The publisher's id (its key is configured on the toy).
    pub publisher: String,
    /// The manifest's exact signed bytes, base64.
    pub manifest: String,
    /// The publisher's signature, base64.
    pub signature: String,
}

/// What a device may have: for a toy, the newest version of each title approved for its
/// child and suitable for its age band; for every device, every firmware package.
async fn entitled(state: &AppState, device: &cubby_store::DeviceRow) -> Result<BTreeMap<String, Offered>, ApiError> {
    let mut newest = newest_published(state).await?;
    let mut approved = std::collections::BTreeSet::new();
    let mut band = None;
    if let Some(child) = device.child_id {
        let store = state.vault.store();
        if let Some(row) = store.child(device.family_id, child).await? {
            band = state.vault.open_child(&row).await?.map(|view| view.age_band);
        }
        if band.is_some() {
            approved = store.child_approvals(device.family_id, child).await?.into_iter().map(|a| a.package_id).collect();
        }
    }
    newest.retain(|id, offered| match offered.manifest.kind {
        PackageKind::Firmware => true,
        PackageKind::Content => {
            approved.contains(id) && band.is_some_and(|band| suits_child(offered.manifest.age_band, band))
        }
    });
    Ok(newest)
}

/// The packages this device should install: approved titles and firmware.
#[utoipa::path(get, path = "/api/v1/device/titles", tag = "content",
    responses(
        (status = 200, body = Vec<DeviceTitle>),
        (status = 401, description = "Not signed in as a device", body = ErrorBody),
    ))]
pub async fn device_titles(State(state): State<AppState>, Device(device): Device) -> Result<ApiJson<Vec<DeviceTitle>>, ApiError> {
    let titles = entitled(&state, &device)
        .await?
        .into_values()
        .map(|o| DeviceTitle {
            package_id: o.row.package_id,
            version: o.row.version,
            kind: o.manifest.kind.as_str().to_owned(),
            publisher: o.row.publisher_id,
            manifest: BASE64.encode(&o.row.manifest),
            signature: BASE64.encode(&o.row.signature),
        })
        .collect();
    Ok(ApiJson(titles))
}

/// Download one file of a package this device may have (streamed, resumable with Range).
#[utoipa::path(get, path = "/api/v1/packages/{package_id}/{version}/files/{index}", tag = "content",
    params(
        ("package_id" = String, Path), ("version" = String, Path), ("index" = u32, Path),
        ("Range" = Option<String>, Header, description = "bytes=N- or bytes=N-M, to resume"),
    ),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = [u8]),
        (status = 206, description = "The range asked for (Content-Range)", content_type = "application/octet-stream", body = [u8]),
        (status = 401, description = "Not signed in as a device", body = ErrorBody),
        (status = 404, description = "No such file for this device", body = ErrorBody),
        (status = 416, description = "invalid_parameter: a Range outside the file", body = ErrorBody),
        (status = 503, description = "The blob store is unavailable", body = ErrorBody),
    ))]
pub async fn download_file(
    State(state): State<AppState>,
    Device(device): Device,
    Path((package_id, version, index)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (version, index) = package_path(&package_id, &version, &index)?;
    let store = state.vault.store();
    let package = store.package(&package_id, &version.to_string()).await?.ok_or_else(ApiError::not_found)?;
    if package.published_at.is_none() {
        return Err(ApiError::not_found());
    }
    let manifest = stored_manifest(&package)?;
    // Any published version of a title the device may have (an older one may still be
    // half-downloaded when a newer one appears).
    let may_have = entitled(&state, &device).await?.get(&package_id).is_some_and(|o| o.manifest.kind == manifest.kind);
    if !may_have {
        return Err(ApiError::not_found());
    }
    let entry = manifest.files.get(index).ok_or_else(ApiError::not_found)?;
    let size = entry.size;
    let part = match wanted(headers.get(header::RANGE).and_then(|v| v.to_str().ok()), size) {
        Wanted::All => None,
        Wanted::Part(range) => Some(range),
        Wanted::Unsatisfiable if size == 0 => None,
        Wanted::Unsatisfiable => {
            let message = format!("the Range must be one range of bytes within the file's {size} bytes");
            let mut response = ApiError::new(ErrorCode::InvalidParameter, message).into_response();
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };
    let blobs = state.packages.blobs()?;
    let key = object_key(&package_id, version, index);
    let body = if size == 0 {
        Body::empty()
    } else {
        Body::from_stream(blobs.read(&key, part.clone()).await.map_err(|e| ApiError::unavailable(&e))?)
    };
    store
        .record_download(&DownloadRow {
            family_id: device.family_id,
            child_id: device.child_id,
            device_id: device.id,
            package_id: package_id.clone(),
            version: package.version.clone(),
            publisher_id: package.publisher_id.clone(),
            at: now_millis(),
        })
        .await?;
    let (status, length) = match &part {
        None => (StatusCode::OK, size),
        Some(range) => (StatusCode::PARTIAL_CONTENT, range.end - range.start),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(range) = part {
        let value = format!("bytes {}-{}/{}", range.start, range.end - 1, size);
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(header::CONTENT_RANGE, value);
        }
    }
    Ok(response)
}

// ---------------------------------------------------------------- export

#[derive(Serialize, ToSchema)]
pub struct ExportedApproval {
    pub package_id: String,
    pub approved_at: i64,
    pub entitlement: EntitlementView,
}

#[derive(Serialize, ToSchema)]
pub struct ExportedDownload {
    pub package_id: String,
    pub version: String,
    #[schema(value_type = String)]
    pub device_id: cubby_core::DeviceId,
    pub at: i64,
}

/// One child's approvals and its toys' downloads (`child_id` null: the downloads of
/// guardians' devices, which are firmware only).
#[derive(Serialize, ToSchema)]
pub struct ChildTitles {
    #[schema(value_type = Option<String>)]
    pub child_id: Option<ChildId>,
    pub approvals: Vec<ExportedApproval>,
    pub downloads: Vec<ExportedDownload>,
}

/// For the family export.
pub async fn family_titles(state: &AppState, family: FamilyId) -> Result<Vec<ChildTitles>, ApiError> {
    let store = state.vault.store();
    let mut by_child: BTreeMap<Option<String>, ChildTitles> = BTreeMap::new();
    fn entry(by_child: &mut BTreeMap<Option<String>, ChildTitles>, child: Option<ChildId>) -> &mut ChildTitles {
        by_child
            .entry(child.map(|c| c.to_string()))
            .or_insert_with(|| ChildTitles { child_id: child, approvals: Vec::new(), downloads: Vec::new() })
    }
    for row in store.family_approvals(family).await? {
        entry(&mut by_child, Some(row.child_id)).approvals.push(ExportedApproval {
            package_id: row.package_id.clone(),
            approved_at: row.approved_at,
            entitlement: EntitlementView { granted_at: row.granted_at, price: stored_price(&row) },
        });
    }
    for row in store.family_downloads(family).await? {
        entry(&mut by_child, row.child_id).downloads.push(ExportedDownload {
            package_id: row.package_id,
            version: row.version,
            device_id: row.device_id,
            at: row.at,
        });
    }
    Ok(by_child.into_values().collect())
}
