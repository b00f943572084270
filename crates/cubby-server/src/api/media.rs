//! Photos and voice clips over HTTP, with a device's access token: start an upload, send
//! its chunks (resumable, `Upload-Offset` as in the tus protocol), ask where it stands,
//! and download (streamed, with `Range`). The bytes are ciphertext the devices made; see
//! [`crate::media`] for who may read them.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use cubby_core::ErrorCode;
use cubby_store::MediaRow;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::messaging::decode_field;
use crate::http::device_auth::Device;
use crate::http::{ApiError, ApiJson, AppState, ErrorBody};
use crate::media::{DownloadRefusal, MAX_CHUNK, MIN_CHUNK, UploadRefusal};

/// The header that says where an upload stands, or where a chunk starts.
pub const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");

#[derive(Deserialize, ToSchema)]
pub struct NewUpload {
    /// The conversation (MLS group id, base64) the photo or voice clip is for. The
    /// calling device must be a member.
    pub group_id: String,
    /// The ciphertext's exact size in bytes.
    pub size: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Upload {
    /// The blob's id, to send (with its key and hash) inside the MLS message.
    pub id: String,
    /// Bytes the server has; send the next ones from here.
    pub upload_offset: i64,
    /// The ciphertext's size, as declared.
    pub size: i64,
    /// True once every byte arrived; the blob is then for the conversation's members.
    pub complete: bool,
    /// Largest body one `PATCH` may carry.
    pub max_chunk_bytes: usize,
    /// Smallest body one `PATCH` may carry, except the last.
    pub min_chunk_bytes: usize,
}

fn upload_view(row: &MediaRow) -> Upload {
    Upload {
        id: row.id.to_string(),
        upload_offset: row.received,
        size: row.size,
        complete: row.completed_at.is_some(),
        max_chunk_bytes: MAX_CHUNK,
        min_chunk_bytes: MIN_CHUNK,
    }
}

/// Start uploading an encrypted photo or voice clip to a conversation.
#[utoipa::path(post, path = "/api/v1/media", tag = "media", request_body = NewUpload,
    responses(
        (status = 201, body = Upload),
        (status = 401, description = "Not signed in as a device", body = ErrorBody),
        (status = 404, description = "No such conversation of this device", body = ErrorBody),
        (status = 413, description = "body_too_large: larger than --media-max-size (plus the encryption's overhead)", body = ErrorBody),
        (status = 422, description = "A group id that is not base64, or a size of 0", body = ErrorBody),
        (status = 429, description = "Too many unfinished uploads on this device", body = ErrorBody),
        (status = 503, description = "The blob store is unavailable", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Device(device): Device,
    ApiJson(body): ApiJson<NewUpload>,
) -> Result<(StatusCode, ApiJson<Upload>), ApiError> {
    let group_id = decode_field(&body.group_id, "group_id")?;
    let row = state.media.create(&device, &group_id, body.size).await?;
    Ok((StatusCode::CREATED, ApiJson(upload_view(&row))))
}

/// Where an upload of the calling device stands: resume from `upload_offset`.
#[utoipa::path(get, path = "/api/v1/media/{media_id}/upload", tag = "media",
    params(("media_id" = String, Path)),
    responses(
        (status = 200, body = Upload, headers(("Upload-Offset" = i64, description = "Bytes the server has"))),
        (status = 401, description = "Not signed in as a device", body = ErrorBody),
        (status = 404, description = "No such upload of this device", body = ErrorBody),
    ))]
pub async fn upload_state(
    State(state): State<AppState>,
    Device(device): Device,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = state.media.own_upload(&device, &id).await?;
    let mut response = ApiJson(upload_view(&row)).into_response();
    response.headers_mut().insert(UPLOAD_OFFSET, HeaderValue::from(row.received));
    Ok(response)
}

#[derive(Serialize, ToSchema)]
pub struct Uploaded {
    /// Bytes the server has now.
    pub upload_offset: i64,
    /// True when this was the last chunk.
    pub complete: bool,
}

/// Send the next bytes of an upload. `Upload-Offset` must be where the upload stands;
/// otherwise nothing is stored and the answer (409) carries the right offset.
#[utoipa::path(patch, path = "/api/v1/media/{media_id}", tag = "media",
    params(
        ("media_id" = String, Path),
        ("Upload-Offset" = u64, Header, description = "Where these bytes start in the ciphertext"),
    ),
    request_body(content = [u8], content_type = "application/octet-stream",
        description = "The next bytes: at most max_chunk_bytes, at least min_chunk_bytes unless they end the upload"),
    responses(
        (status = 200, body = Uploaded, headers(("Upload-Offset" = i64, description = "Bytes the server has now"))),
        (status = 400, description = "invalid_parameter: no Upload-Offset, or not a number", body = ErrorBody),
        (status = 401, description = "Not signed in as a device", body = ErrorBody),
        (status = 404, description = "No such upload of this device", body = ErrorBody),
        (status = 409, description = "conflict: the upload stands elsewhere (header Upload-Offset), or is complete", body = ErrorBody),
        (status = 413, description = "body_too_large: a chunk over max_chunk_bytes", body = ErrorBody),
        (status = 422, description = "An empty or too small chunk, or one past the declared size", body = ErrorBody),
        (status = 503, description = "The blob store is unavailable", body = ErrorBody),
    ))]
pub async fn upload_chunk(
    State(state): State<AppState>,
    Device(device): Device,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let offset = headers
            .get(&UPLOAD_OFFSET)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::new(ErrorCode::InvalidParameter, "send the header Upload-Offset: N, where the bytes start")
            })?;
        let bytes = read_chunk(&headers, body).await?;
        state.media.append(&device, &id, offset, bytes).await
    }
    .await;
    match result {
        Ok((received, complete)) => {
            let mut response = ApiJson(Uploaded { upload_offset: received, complete }).into_response();
            response.headers_mut().insert(UPLOAD_OFFSET, HeaderValue::from(received));
            response
        }
        Err(refusal) => refusal.into_response(),
    }
}

impl IntoResponse for UploadRefusal {
    fn into_response(self) -> Response {
        match self {
            Self::Refused(error) => error.into_response(),
            Self::WrongOffset { received } => {
                let message = format!("the upload stands at byte {received} (or is complete): send from there");
                let mut response = ApiError::new(ErrorCode::Conflict, message).into_response();
                response.headers_mut().insert(UPLOAD_OFFSET, HeaderValue::from(received));
                response
            }
        }
    }
}

/// Reads a chunk into memory, refusing more than [`MAX_CHUNK`] bytes (the global body
/// limit is for JSON; chunks have their own). The rest of an oversize body is read and
/// dropped, up to as much again, so that the client hears the 413 instead of a reset.
async fn read_chunk(headers: &HeaderMap, body: Body) -> Result<Bytes, UploadRefusal> {
    let too_large = || ApiError::new(ErrorCode::BodyTooLarge, format!("a chunk may be at most {MAX_CHUNK} bytes"));
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > 2 * MAX_CHUNK as u64) {
        return Err(too_large().into());
    }
    let mut buffer = BytesMut::with_capacity(declared.map_or(MIN_CHUNK, |n| (n as usize).min(MAX_CHUNK)));
    let mut seen = 0usize;
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|_| ApiError::new(ErrorCode::InvalidBody, "the body could not be read to its end"))?;
        seen = seen.saturating_add(piece.len());
        if seen > 2 * MAX_CHUNK {
            return Err(too_large().into());
        }
        if seen <= MAX_CHUNK {
            buffer.extend_from_slice(&piece);
        }
    }
    if seen > MAX_CHUNK {
        return Err(too_large().into());
    }
    Ok(buffer.freeze())
}

/// Download a photo or voice clip (ciphertext), for a member of its conversation that
/// it is for. Everyone else gets the answer an id that does not exist gets.
#[utoipa::path(get, path = "/api/v1/media/{media_id}", tag = "media",
    params(
        ("media_id" = String, Path),
        ("Range" = Option<String>, Header, description = "One range of bytes, e.g. bytes=1000- to resume"),
    ),
    responses(
        (status = 200, description = "The ciphertext", content_type = "application/octet-stream", body = [u8]),
        (status = 206, description = "The range asked for (Content-Range)", content_type = "application/octet-stream", body = [u8]),
        (status = 401, description = "Not signed in as a device", body = ErrorBody),
        (status = 404, description = "No such photo or voice clip for this device", body = ErrorBody),
        (status = 416, description = "invalid_parameter: a Range outside the blob", body = ErrorBody),
        (status = 503, description = "The blob store is unavailable", body = ErrorBody),
    ))]
pub async fn download(
    State(state): State<AppState>,
    Device(device): Device,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let download = match state.media.download(&device, &id, range).await {
        Ok(download) => download,
        Err(DownloadRefusal::Refused(error)) => return Err(error),
        Err(DownloadRefusal::Unsatisfiable { size }) => {
            let message = format!("the Range must be one range of bytes within the blob's {size} bytes");
            let mut response = ApiError::new(ErrorCode::InvalidParameter, message).into_response();
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            response.headers_mut().insert(header::CONTENT_RANGE, header_value(&format!("bytes */{size}")));
            return Ok(response);
        }
    };
    let (status, length, content_range) = match &download.part {
        None => (StatusCode::OK, download.size, None),
        Some(part) => (
            StatusCode::PARTIAL_CONTENT,
            part.end - part.start,
            Some(format!("bytes {}-{}/{}", part.start, part.end - 1, download.size)),
        ),
    };
    let mut response = Response::new(Body::from_stream(download.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(range) = content_range {
        headers.insert(header::CONTENT_RANGE, header_value(&range));
    }
    Ok(response)
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
}
