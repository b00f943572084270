//! Photos and voice clips, the device side.
//!
//! Sending: the file is encrypted here with a fresh random key, in 64 KiB chunks with the
//! STREAM construction (RustCrypto `aead-stream`, XChaCha20-Poly1305), into a temporary
//! file while its SHA-256 is computed, so a 25 MB video never sits in memory. The
//! ciphertext goes to the server in resumable chunks (`/api/v1/media`), and the blob's id,
//! key, hash, size and MIME type go to the conversation inside an MLS message.
//!
//! Receiving: [`Messenger::fetch_media`] downloads the blob (resuming with `Range` after a
//! broken connection), checks its hash, and decrypts it chunk by chunk into the
//! destination. Plaintext is written to a side file first and takes the destination's
//! name only once everything authenticated: a blob that does not authenticate leaves
//! nothing behind.
//!
//! The ciphertext: `cubbym01` (8 bytes), the 19-byte STREAM nonce prefix, then segments of
//! 64 KiB of plaintext plus a 16-byte tag; the last segment is always shorter than 64 KiB
//! (empty when the plaintext fills whole segments) and is sealed as the last, so a
//! truncated or reordered blob does not authenticate. The header is every segment's
//! associated data.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aead_stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use reqwest::{Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::envelope::{MediaKey, MediaRef};
use super::{Body, ConversationId, Envelope, Messenger};
use crate::{ClientError, CubbyClient};

const MAGIC: &[u8; 8] = b"cubbym01";
const NONCE_PREFIX_LEN: usize = 19;
const HEADER_LEN: usize = MAGIC.len() + NONCE_PREFIX_LEN;
/// Plaintext per sealed segment.
pub const SEGMENT: usize = 64 * 1024;
const TAG_LEN: usize = 16;
/// Bytes sent per upload request unless [`MediaUpload::set_chunk_size`] says otherwise.
pub const DEFAULT_UPLOAD_CHUNK: usize = 1024 * 1024;
/// Failed requests in a row after which an upload or download gives up (it can be
/// resumed later from where the server stands).
const ATTEMPTS: u32 = 5;
/// One chunk's request, or one download, may take this long (slow links, large files).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(600);

/// The ciphertext's size for a plaintext of `plaintext` bytes.
pub fn ciphertext_len(plaintext: u64) -> u64 {
    HEADER_LEN as u64 + plaintext + TAG_LEN as u64 * (plaintext / SEGMENT as u64 + 1)
}

fn crypto_failure() -> ClientError {
    ClientError::Mls("the photo or voice clip does not authenticate: refused".into())
}

fn local(error: std::io::Error) -> ClientError {
    ClientError::Local(error.to_string())
}

fn new_key() -> Result<MediaKey, ClientError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|_| ClientError::Random)?;
    Ok(MediaKey(key))
}

/// Reads until `buffer` is full or the input ends; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// What sealing produced: the ciphertext's hash and sizes.
#[derive(Debug)]
struct Sealed {
    sha256: [u8; 32],
    plaintext_len: u64,
    ciphertext_len: u64,
}

/// Encrypts everything `input` holds into `output` under `key`.
fn seal(input: &mut impl Read, output: &mut impl Write, key: &MediaKey) -> Result<Sealed, ClientError> {
    let mut header = [0u8; HEADER_LEN];
    header[..MAGIC.len()].copy_from_slice(MAGIC);
    getrandom::fill(&mut header[MAGIC.len()..]).map_err(|_| ClientError::Random)?;
    let nonce = aead_stream::Nonce::<XChaCha20Poly1305, aead_stream::StreamBE32<XChaCha20Poly1305>>::try_from(&header[MAGIC.len()..])
        .map_err(|_| crypto_failure())?;
    let mut encryptor = EncryptorBE32::from_aead(XChaCha20Poly1305::new(key.as_bytes().into()), &nonce);
    let mut hasher = Sha256::new();
    output.write_all(&header).map_err(local)?;
    hasher.update(header);
    let (mut plaintext_len, mut ciphertext_len) = (0u64, HEADER_LEN as u64);
    let mut segment = vec![0u8; SEGMENT];
    let mut buffer = Vec::with_capacity(SEGMENT + TAG_LEN);
    // A full segment is never the last: the last is shorter (maybe empty).
    let last_len = loop {
        let n = read_full(input, &mut segment).map_err(local)?;
        plaintext_len += n as u64;
        if n < SEGMENT {
            break n;
        }
        buffer.clear();
        buffer.extend_from_slice(&segment);
        encryptor.encrypt_next_in_place(&header, &mut buffer).map_err(|_| crypto_failure())?;
        output.write_all(&buffer).map_err(local)?;
        hasher.update(&buffer);
        ciphertext_len += buffer.len() as u64;
    };
    buffer.clear();
    buffer.extend_from_slice(&segment[..last_len]);
    encryptor.encrypt_last_in_place(&header, &mut buffer).map_err(|_| crypto_failure())?;
    output.write_all(&buffer).map_err(local)?;
    hasher.update(&buffer);
    ciphertext_len += buffer.len() as u64;
    segment.zeroize();
    buffer.zeroize();
    output.flush().map_err(local)?;
    Ok(Sealed { sha256: hasher.finalize().into(), plaintext_len, ciphertext_len })
}

/// Decrypts a ciphertext as it arrives, piece by piece, hashing it on the way.
struct Opener {
    key: MediaKey,
    header: Vec<u8>,
    decryptor: Option<DecryptorBE32<XChaCha20Poly1305>>,
    pending: Vec<u8>,
    hasher: Sha256,
    received: u64,
    expected: u64,
}

impl Opener {
    fn new(key: &MediaKey, expected: u64) -> Self {
        Self {
            key: key.clone(),
            header: Vec::with_capacity(HEADER_LEN),
            decryptor: None,
            pending: Vec::with_capacity(2 * (SEGMENT + TAG_LEN)),
            hasher: Sha256::new(),
            received: 0,
            expected,
        }
    }

    /// Takes the next ciphertext bytes; writes the plaintext of each segment known not to
    /// be the last (more bytes follow it).
    fn push(&mut self, mut bytes: &[u8], output: &mut impl Write) -> Result<(), ClientError> {
        self.received += bytes.len() as u64;
        if self.received > self.expected {
            return Err(ClientError::Malformed("the server sent more bytes than the blob has".into()));
        }
        self.hasher.update(bytes);
        if self.decryptor.is_none() {
            let take = (HEADER_LEN - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.header.len() < HEADER_LEN {
                return Ok(());
            }
            if &self.header[..MAGIC.len()] != MAGIC {
                return Err(crypto_failure());
            }
            let nonce = aead_stream::Nonce::<XChaCha20Poly1305, aead_stream::StreamBE32<XChaCha20Poly1305>>::try_from(
                &self.header[MAGIC.len()..],
            )
            .map_err(|_| crypto_failure())?;
            self.decryptor = Some(DecryptorBE32::from_aead(XChaCha20Poly1305::new(self.key.as_bytes().into()), &nonce));
        }
        self.pending.extend_from_slice(bytes);
        let Some(decryptor) = self.decryptor.as_mut() else { return Err(crypto_failure()) };
        // Only a segment with bytes after it is surely not the last.
        while self.pending.len() > SEGMENT + TAG_LEN {
            let mut segment: Vec<u8> = self.pending.drain(..SEGMENT + TAG_LEN).collect();
            decryptor.decrypt_next_in_place(&self.header, &mut segment).map_err(|_| crypto_failure())?;
            output.write_all(&segment).map_err(local)?;
            segment.zeroize();
        }
        Ok(())
    }

    /// Decrypts the last segment and returns the ciphertext's hash.
    fn finish(mut self, output: &mut impl Write) -> Result<[u8; 32], ClientError> {
        if self.received != self.expected {
            return Err(ClientError::Malformed("the blob ended early".into()));
        }
        let decryptor = self.decryptor.take().ok_or_else(crypto_failure)?;
        let mut last = std::mem::take(&mut self.pending);
        decryptor.decrypt_last_in_place(&self.header, &mut last).map_err(|_| crypto_failure())?;
        output.write_all(&last).map_err(local)?;
        last.zeroize();
        output.flush().map_err(local)?;
        Ok(self.hasher.finalize().into())
    }
}

/// A file next to `near` (or in the temporary directory) with a random name, created new
/// and readable by this user only.
fn side_file(near: Option<&Path>, suffix: &str) -> Result<(PathBuf, std::fs::File), ClientError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|_| ClientError::Random)?;
    let name = format!(".cubby-{}{suffix}", hex::encode(random));
    // Beside the destination, so that the final rename stays on one file system.
    let path = match near.map(|p| p.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."))) {
        Some(dir) => dir.join(name),
        None => std::env::temp_dir().join(name),
    };
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(local)?;
    Ok((path, file))
}

/// Deletes a file when dropped (the ciphertext of an upload, a half-written download).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a finished upload is sent as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    Photo,
    Voice { duration_ms: u64 },
}

/// An encrypted file on its way to the server. Dropping it deletes the local ciphertext;
/// the server deletes an unfinished upload after a day.
pub struct MediaUpload {
    conversation: ConversationId,
    ciphertext: Scratch,
    key: MediaKey,
    sha256: String,
    plaintext_len: u64,
    size: u64,
    id: String,
    offset: u64,
    chunk: usize,
    min_chunk: usize,
    max_chunk: usize,
}

impl std::fmt::Debug for MediaUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaUpload").field("id", &self.id).field("offset", &self.offset).field("size", &self.size).finish()
    }
}

impl MediaUpload {
    /// The blob's id on the server.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where the upload stands, as far as this device knows.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The ciphertext's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_complete(&self) -> bool {
        self.offset >= self.size
    }

    /// The local ciphertext (for diagnostics and tests: it is what the server receives).
    pub fn ciphertext_path(&self) -> &Path {
        &self.ciphertext.0
    }

    /// Bytes per request, within what the server accepts: smaller loses less on a
    /// connection that breaks often, larger needs fewer requests.
    pub fn set_chunk_size(&mut self, bytes: usize) {
        self.chunk = bytes.clamp(self.min_chunk, self.max_chunk);
    }

    /// What the recipients need to fetch and open the blob.
    pub fn media_ref(&self, mime: &str) -> MediaRef {
        MediaRef { id: self.id.clone(), key: self.key.clone(), sha256: self.sha256.clone(), size: self.plaintext_len, mime: mime.to_owned() }
    }
}

#[derive(Serialize)]
struct NewUpload {
    group_id: String,
    size: u64,
}

#[derive(Deserialize)]
struct UploadAnswer {
    id: String,
    upload_offset: u64,
    #[serde(default)]
    max_chunk_bytes: Option<usize>,
    #[serde(default)]
    min_chunk_bytes: Option<usize>,
}

#[derive(Deserialize)]
struct Uploaded {
    upload_offset: u64,
}

/// The `Upload-Offset` an answer carries.
fn upload_offset(response: &reqwest::Response) -> Option<u64> {
    response.headers().get("upload-offset")?.to_str().ok()?.parse().ok()
}

fn is_retryable(error: &ClientError) -> bool {
    match error {
        ClientError::Transport(_) => true,
        ClientError::Api { status, .. } | ClientError::HttpStatus { status } => *status >= 500 || *status == 429 || *status == 408,
        _ => false,
    }
}

impl Messenger {
    /// Sends a photo: encrypts the file at `path`, uploads it (resuming after failures)
    /// and sends its reference to the conversation. `mime` is e.g. `image/jpeg`.
    pub async fn send_photo(&self, conversation: &ConversationId, path: &Path, mime: &str) -> Result<Envelope, ClientError> {
        let mut upload = self.start_media_upload(conversation, path).await?;
        self.finish_media_upload(&mut upload).await?;
        self.send_media(upload, MediaKind::Photo, mime).await
    }

    /// Sends a voice clip of `duration_ms` milliseconds, as [`Messenger::send_photo`].
    pub async fn send_voice(
        &self,
        conversation: &ConversationId,
        path: &Path,
        mime: &str,
        duration_ms: u64,
    ) -> Result<Envelope, ClientError> {
        let mut upload = self.start_media_upload(conversation, path).await?;
        self.finish_media_upload(&mut upload).await?;
        self.send_media(upload, MediaKind::Voice { duration_ms }, mime).await
    }

    /// Sends the reference to a finished upload to its conversation, as a photo or a
    /// voice clip.
    pub async fn send_media(&self, upload: MediaUpload, kind: MediaKind, mime: &str) -> Result<Envelope, ClientError> {
        if !upload.is_complete() {
            return Err(ClientError::Local("the upload is not finished".into()));
        }
        let media = upload.media_ref(mime);
        let body = match kind {
            MediaKind::Photo => Body::Photo { media },
            MediaKind::Voice { duration_ms } => Body::Voice { media, duration_ms },
        };
        let conversation = upload.conversation.clone();
        drop(upload);
        self.send_envelope(&conversation, Envelope::new(body), false).await
    }

    /// Encrypts the file at `path` and starts its upload to `conversation` (of which this
    /// device must be a member). Send it with [`Messenger::upload_media_chunk`] or
    /// [`Messenger::finish_media_upload`].
    pub async fn start_media_upload(&self, conversation: &ConversationId, path: &Path) -> Result<MediaUpload, ClientError> {
        let key = new_key()?;
        let (source, key_for_sealing) = (path.to_path_buf(), key.clone());
        let (ciphertext, sealed) = tokio::task::spawn_blocking(move || {
            let (path, file) = side_file(None, ".media")?;
            let scratch = Scratch(path);
            let mut input = std::io::BufReader::new(std::fs::File::open(&source).map_err(local)?);
            let mut output = std::io::BufWriter::new(file);
            let sealed = seal(&mut input, &mut output, &key_for_sealing)?;
            output.into_inner().map_err(|e| local(e.into_error()))?.sync_all().map_err(local)?;
            Ok::<_, ClientError>((scratch, sealed))
        })
        .await
        .map_err(|_| ClientError::Local("encrypting the file stopped".into()))??;
        let body = NewUpload { group_id: conversation.to_base64(), size: sealed.ciphertext_len };
        let answer: UploadAnswer = self.call(Method::POST, "/api/v1/media", Some(&body), "the new upload").await?;
        let max_chunk = answer.max_chunk_bytes.unwrap_or(DEFAULT_UPLOAD_CHUNK).max(1);
        let min_chunk = answer.min_chunk_bytes.unwrap_or(1).clamp(1, max_chunk);
        Ok(MediaUpload {
            conversation: conversation.clone(),
            ciphertext,
            key,
            sha256: hex::encode(sealed.sha256),
            plaintext_len: sealed.plaintext_len,
            size: sealed.ciphertext_len,
            id: answer.id,
            offset: answer.upload_offset,
            chunk: DEFAULT_UPLOAD_CHUNK.clamp(min_chunk, max_chunk),
            min_chunk,
            max_chunk,
        })
    }

    /// Sends the next chunk from where the upload stands; true once it is complete. When
    /// the server stands elsewhere (an earlier answer was lost), it adopts the server's
    /// offset and sends nothing this time.
    pub async fn upload_media_chunk(&self, upload: &mut MediaUpload) -> Result<bool, ClientError> {
        if upload.is_complete() {
            return Ok(true);
        }
        let length = (upload.size - upload.offset).min(upload.chunk as u64);
        let (path, offset) = (upload.ciphertext.0.clone(), upload.offset);
        let bytes = tokio::task::spawn_blocking(move || {
            use std::io::{Seek, SeekFrom};
            let mut file = std::fs::File::open(path).map_err(local)?;
            file.seek(SeekFrom::Start(offset)).map_err(local)?;
            let mut bytes = vec![0u8; usize::try_from(length).unwrap_or(0)];
            file.read_exact(&mut bytes).map_err(local)?;
            Ok::<_, ClientError>(bytes::Bytes::from(bytes))
        })
        .await
        .map_err(|_| ClientError::Local("reading the ciphertext stopped".into()))??;
        let path = format!("/api/v1/media/{}", upload.id);
        let response = self
            .raw(Method::PATCH, &path, |request| {
                request
                    .header("upload-offset", offset)
                    .header(header::CONTENT_TYPE, "application/offset+octet-stream")
                    .timeout(TRANSFER_TIMEOUT)
                    .body(bytes.clone())
            })
            .await?;
        match response.status() {
            status if status.is_success() => {
                let answer: Uploaded = response.json().await.map_err(|_| ClientError::Malformed("the upload answer".into()))?;
                upload.offset = answer.upload_offset;
            }
            StatusCode::CONFLICT => {
                upload.offset = upload_offset(&response).ok_or_else(|| ClientError::Malformed("a conflict without Upload-Offset".into()))?;
            }
            _ => return Err(CubbyClient::error_of(response).await),
        }
        Ok(upload.is_complete())
    }

    /// Asks the server where the upload stands and continues from there (after a crash,
    /// or a failure whose outcome is unknown). Returns the offset.
    pub async fn resume_media_upload(&self, upload: &mut MediaUpload) -> Result<u64, ClientError> {
        let answer: UploadAnswer =
            self.call(Method::GET, &format!("/api/v1/media/{}/upload", upload.id), None, "the upload's state").await?;
        if answer.id != upload.id {
            return Err(ClientError::Malformed("the upload's state names another upload".into()));
        }
        upload.offset = answer.upload_offset;
        Ok(upload.offset)
    }

    /// Sends the rest of an upload; after a failed request it asks the server where the
    /// upload stands and resumes from there (a few times, with a growing pause).
    pub async fn finish_media_upload(&self, upload: &mut MediaUpload) -> Result<(), ClientError> {
        let mut failures = 0;
        while !upload.is_complete() {
            match self.upload_media_chunk(upload).await {
                Ok(_) => failures = 0,
                Err(error) if is_retryable(&error) && failures + 1 < ATTEMPTS => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(250 << failures)).await;
                    // Where does the server stand? The failed chunk may have arrived.
                    if let Err(error) = self.resume_media_upload(upload).await
                        && !is_retryable(&error)
                    {
                        return Err(error);
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Downloads a photo or voice clip, checks it and decrypts it into `dest`. Anything
    /// that does not authenticate (a wrong key, a changed or truncated blob, a hash that
    /// does not match) is refused and leaves no file behind.
    pub async fn fetch_media(&self, media: &MediaRef, dest: &Path) -> Result<(), ClientError> {
        let expected_hash = hex::decode(&media.sha256).ok().filter(|h| h.len() == 32).ok_or_else(crypto_failure)?;
        let expected = ciphertext_len(media.size);
        let (partial_path, file) = side_file(Some(dest), ".partial")?;
        let partial = Scratch(partial_path);
        let mut output = std::io::BufWriter::new(file);
        let mut opener = Opener::new(&media.key, expected);
        let path = format!("/api/v1/media/{}", media.id);
        let mut failures = 0;
        while opener.received < expected {
            let from = opener.received;
            let attempt = self
                .raw(Method::GET, &path, |request| {
                    let request = request.timeout(TRANSFER_TIMEOUT);
                    if from > 0 { request.header(header::RANGE, format!("bytes={from}-")) } else { request }
                })
                .await;
            let outcome = match attempt {
                Ok(response) => read_into(response, from, &mut opener, &mut output).await,
                Err(error) => Err(error),
            };
            match outcome {
                Ok(()) if opener.received == from => {
                    return Err(ClientError::Malformed("the blob ended before its size".into()));
                }
                Ok(()) => {}
                Err(error) if is_retryable(&error) && failures + 1 < ATTEMPTS => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(250 << failures)).await;
                }
                Err(error) => return Err(error),
            }
        }
        let hash = opener.finish(&mut output)?;
        if hash.as_slice() != expected_hash.as_slice() {
            return Err(crypto_failure());
        }
        let file = output.into_inner().map_err(|e| local(e.into_error()))?;
        file.sync_all().map_err(local)?;
        std::fs::rename(&partial.0, dest).map_err(local)?;
        std::mem::forget(partial);
        Ok(())
    }

    /// An authenticated request whose body or answer is not JSON; signs in again once if
    /// the access token expired. The session is not held while the transfer runs.
    async fn raw(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let session = self.session.lock().await.clone();
        let response = build(self.api.raw_request(method.clone(), path, &session)?).send().await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let session = {
            let mut current = self.session.lock().await;
            *current = self.api.authenticate(&self.key, &self.device_id).await?;
            current.clone()
        };
        Ok(build(self.api.raw_request(method, path, &session)?).send().await?)
    }
}

/// Feeds one download answer into the opener. A 200 to a request from `from` > 0 (the
/// server ignored the range) skips what is already here.
async fn read_into(
    response: reqwest::Response,
    from: u64,
    opener: &mut Opener,
    output: &mut impl Write,
) -> Result<(), ClientError> {
    let mut skip = match response.status() {
        StatusCode::OK => from,
        StatusCode::PARTIAL_CONTENT if from > 0 => 0,
        _ => return Err(CubbyClient::error_of(response).await),
    };
    let mut response = response;
    while let Some(piece) = response.chunk().await? {
        let start = usize::try_from(skip.min(piece.len() as u64)).unwrap_or(piece.len());
        skip -= start as u64;
        opener.push(&piece[start..], output)?;
    }
    Ok(())
}


#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(plaintext: &[u8], key: &MediaKey) -> Result<(Vec<u8>, Sealed), ClientError> {
        let mut ciphertext = Vec::new();
        let sealed = seal(&mut &plaintext[..], &mut ciphertext, key)?;
        Ok((ciphertext, sealed))
    }

    /// Opens `ciphertext` fed in pieces of `piece` bytes, expecting `expected` bytes.
    fn open(ciphertext: &[u8], key: &MediaKey, expected: u64, piece: usize) -> Result<(Vec<u8>, [u8; 32]), ClientError> {
        let mut opener = Opener::new(key, expected);
        let mut plaintext = Vec::new();
        for part in ciphertext.chunks(piece.max(1)) {
            opener.push(part, &mut plaintext)?;
        }
        let hash = opener.finish(&mut plaintext)?;
        Ok((plaintext, hash))
    }

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn files_of_every_shape_round_trip_in_any_pieces() -> Result<(), ClientError> {
        let key = new_key()?;
        for n in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT, 3 * SEGMENT + 100] {
            let plaintext = bytes(n);
            let (ciphertext, sealed) = sealed(&plaintext, &key)?;
            assert_eq!(sealed.ciphertext_len, ciphertext.len() as u64);
            assert_eq!(ciphertext_len(n as u64), ciphertext.len() as u64, "{n} bytes");
            assert_eq!(sealed.sha256, <[u8; 32]>::from(Sha256::digest(&ciphertext)));
            for piece in [1, 1000, SEGMENT + TAG_LEN, ciphertext.len()] {
                let (opened, hash) = open(&ciphertext, &key, ciphertext_len(n as u64), piece)?;
                assert_eq!(opened, plaintext, "{n} bytes in pieces of {piece}");
                assert_eq!(hash, sealed.sha256);
            }
        }
        Ok(())
    }

    #[test]
    fn the_ciphertext_shows_nothing_of_the_plaintext() -> Result<(), ClientError> {
        let key = new_key()?;
        let plaintext = vec![b'A'; 3 * SEGMENT];
        let (ciphertext, _) = sealed(&plaintext, &key)?;
        assert!(!ciphertext.windows(16).any(|w| w == [b'A'; 16]), "runs of plaintext in the ciphertext");
        let (again, _) = sealed(&plaintext, &new_key()?)?;
        assert_ne!(ciphertext[HEADER_LEN..HEADER_LEN + 64], again[HEADER_LEN..HEADER_LEN + 64], "fresh keys");
        Ok(())
    }

    #[test]
    fn anything_changed_truncated_or_under_another_key_is_refused() -> Result<(), ClientError> {
        let key = new_key()?;
        let n = 2 * SEGMENT + 10;
        let (ciphertext, _) = sealed(&bytes(n), &key)?;
        let full = ciphertext.len() as u64;
        let refused = |ciphertext: &[u8], key: &MediaKey, expected: u64| open(ciphertext, key, expected, 4096).is_err();
        assert!(!refused(&ciphertext, &key, full), "the original opens");
        assert!(refused(&ciphertext, &new_key()?, full), "another key");
        for position in [0, 9, HEADER_LEN + 5, HEADER_LEN + SEGMENT + TAG_LEN + 3, ciphertext.len() - 1] {
            let mut changed = ciphertext.clone();
            changed[position] ^= 1;
            assert!(refused(&changed, &key, full), "a bit flipped at {position}");
        }
        // Cut after whole segments: short of the size, and, even when expected at that
        // length, the last segment is missing (the one there was not sealed as the last).
        let cut = HEADER_LEN + 2 * (SEGMENT + TAG_LEN);
        assert!(refused(&ciphertext[..cut], &key, full), "truncated");
        assert!(refused(&ciphertext[..cut], &key, cut as u64), "truncated at a segment boundary");
        // Segments swapped.
        let mut swapped = ciphertext.clone();
        let (a, b) = (HEADER_LEN, HEADER_LEN + SEGMENT + TAG_LEN);
        let first: Vec<u8> = swapped[a..b].to_vec();
        let second: Vec<u8> = swapped[b..b + SEGMENT + TAG_LEN].to_vec();
        swapped[a..b].copy_from_slice(&second);
        swapped[b..b + SEGMENT + TAG_LEN].copy_from_slice(&first);
        assert!(refused(&swapped, &key, full), "reordered");
        // More bytes than the blob has.
        let mut longer = ciphertext.clone();
        longer.push(0);
        assert!(refused(&longer, &key, full), "too long");
        Ok(())
    }
}
