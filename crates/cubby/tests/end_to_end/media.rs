//! Encrypted photos and voice clips end to end: SDK devices (a child's toy, the guardians'
//! phones) against the real `cubby` binary, on SQLite with local blob files and on
//! PostgreSQL with a real S3-compatible server (s3s-fs, started by scripts/test). What
//! arrives is byte-identical; what the blob store keeps is neither the media nor its key;
//! the blob id alone opens nothing; an interrupted upload resumes where the server stands;
//! a blob goes once every recipient has it; bad input gets a 4xx, never a 500.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64_URL};
use crate::common::api::{self, Session};
use crate::common::devices::paired_device_at;
use crate::common::media::{BlobStore, contains, device_token, random_bytes, start};
use crate::common::{Dirs, Fallible, Server, TestResult, client};
use cubby_client::messaging::{Body, MediaKind, MediaRef};
use cubby_client::{ConversationId, Event, Messenger};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const IDLE: Duration = Duration::from_millis(700);
/// How long a test waits for something the server does asynchronously (polled).
const PATIENCE: Duration = Duration::from_secs(15);

/// A family with two guardians and a child.
struct Family {
    alice: Session,
    bob: Session,
    id: String,
    child: String,
}

async fn family(server: &Server, outbox: &Path, tag: &str) -> Fallible<Family> {
    let password = "correct horse battery staple";
    let alice = api::guardian(server, outbox, &format!("alice-{tag}@example.org"), password).await?;
    let id = api::family(server, &alice, "The Family").await?;
    api::consent(server, outbox, &alice, &id).await?;
    let child = api::child(server, &alice, &id, "Sam", "6_8").await?;
    let bob_email = format!("bob-{tag}@example.org");
    let bob = api::guardian(server, outbox, &bob_email, password).await?;
    let (status, body) =
        api::post(server, &format!("/api/v1/families/{id}/invites"), Some(&alice.token), json!({"email": bob_email})).await?;
    if status >= 300 {
        return Err(format!("invite answered {status}: {body}").into());
    }
    let token = api::outbox_token(outbox, &bob_email, "invited")?;
    let (status, body) = api::post(server, "/api/v1/invites/accept", Some(&bob.token), json!({"token": token})).await?;
    if status >= 300 {
        return Err(format!("accept answered {status}: {body}").into());
    }
    Ok(Family { alice, bob, id, child })
}

/// A paired device with its messenger and the secret of its key (to sign in by hand).
struct Paired {
    messenger: Messenger,
    secret: [u8; 32],
}

async fn paired(server: &Server, dir: &Path, name: &str, guardian: &Session, family: &str, child: Option<&str>) -> Fallible<Paired> {
    let (messenger, secret) = paired_device_at(server, &server.base_url, dir, name, guardian, family, child).await?;
    Ok(Paired { messenger, secret })
}

/// The toy and both guardians' phones in one conversation, started by alice's phone.
struct Conversation {
    toy: Paired,
    alice: Paired,
    bob: Paired,
    chat: ConversationId,
}

async fn conversation(server: &Server, dir: &Path, family: &Family) -> Fallible<Conversation> {
    let toy = paired(server, dir, "toy", &family.alice, &family.id, Some(&family.child)).await?;
    let alice = paired(server, dir, "alice-phone", &family.alice, &family.id, None).await?;
    let bob = paired(server, dir, "bob-phone", &family.bob, &family.id, None).await?;
    let chat = alice.messenger.create_conversation().await?;
    alice.messenger.invite(&chat, bob.messenger.device_id()).await?;
    alice.messenger.invite(&chat, toy.messenger.device_id()).await?;
    for member in [&bob.messenger, &toy.messenger] {
        let events = member.sync(IDLE).await?;
        if !events.contains(&Event::Joined { conversation: chat.clone() }) {
            return Err(format!("{} did not join: {events:?}", member.device_id()).into());
        }
    }
    Ok(Conversation { toy, alice, bob, chat })
}

/// A grandparent: another family's adult, invited by email as the child's contact, whose
/// phone joins the conversation.
async fn add_grandparent(server: &Server, dir: &Path, outbox: &Path, family: &Family, c: &Conversation) -> Fallible<Messenger> {
    let grandma = api::guardian(server, outbox, "grandma@example.org", "correct horse battery staple").await?;
    let own_family = api::family(server, &grandma, "Grandma's").await?;
    api::adult_contact(server, outbox, &family.alice, &family.id, &family.child, &grandma, "grandma@example.org").await?;
    let phone = paired(server, dir, "grandma-phone", &grandma, &own_family, None).await?.messenger;
    c.alice.messenger.invite(&c.chat, phone.device_id()).await?;
    let events = phone.sync(IDLE).await?;
    if !events.contains(&Event::Joined { conversation: c.chat.clone() }) {
        return Err(format!("grandma's phone did not join: {events:?}").into());
    }
    Ok(phone)
}

/// The photos and voice clips among `events`: `(kind, reference, duration)`.
fn media_of(events: &[Event]) -> Vec<(&'static str, MediaRef, Option<u64>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { envelope, .. } => match &envelope.body {
                Body::Photo { media } => Some(("photo", media.clone(), None)),
                Body::Voice { media, duration_ms } => Some(("voice", media.clone(), Some(*duration_ms))),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Syncs `device` and returns the one photo or voice clip it received.
async fn receive_one(device: &Messenger) -> Fallible<MediaRef> {
    let events = device.sync(IDLE).await?;
    match media_of(&events).as_slice() {
        [(_, media, _)] => Ok(media.clone()),
        other => Err(format!("{} expected one photo or voice clip, got {other:?} in {events:?}", device.device_id()).into()),
    }
}

/// A GET (or other method) as a device, or as nobody: status, headers and body bytes.
async fn call(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Fallible<(u16, reqwest::header::HeaderMap, Vec<u8>)> {
    let mut request = client()?.request(method, server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await?;
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    Ok((status, headers, response.bytes().await?.to_vec()))
}

async fn get(server: &Server, path: &str, token: Option<&str>) -> Fallible<(u16, Vec<u8>)> {
    let (status, _, body) = call(server, reqwest::Method::GET, path, token, &[], None).await?;
    Ok((status, body))
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// Polls `check` until it holds, for at most [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Fallible<bool>>,
{
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if check().await? {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("not within {PATIENCE:?}: {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A random id of the right form: what every refused caller must not tell apart.
fn made_up_id() -> Fallible<String> {
    Ok(hex::encode(random_bytes(16)?))
}

// ---- scenarios ---------------------------------------------------------------------------

/// A photo and a voice clip from the child's toy reach both guardians' phones and a grandparent's (another family's adult, the child's approved contact) intact, and
/// the blob store holds neither their bytes nor their keys.
async fn a_photo_and_a_voice_clip_reach_two_guardians_and_a_grandparent_intact_and_storage_holds_neither(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, blobs, _) = start(&dirs, postgres, &[]).await?;
    let family = family(&server, &dirs.outbox(), "a").await?;
    let local = tempfile::tempdir()?;
    let c = conversation(&server, local.path(), &family).await?;
    let grandma = add_grandparent(&server, local.path(), &dirs.outbox(), &family, &c).await?;
    // The toy learns of grandma's arrival first (what it sends at an older epoch, she,
    // having joined after it, could not read).
    c.toy.messenger.sync(IDLE).await?;

    let photo = random_bytes(300 * 1024 + 17)?;
    let voice = random_bytes(150 * 1024 + 3)?;
    let (photo_path, voice_path) = (local.path().join("photo.jpg"), local.path().join("voice.ogg"));
    std::fs::write(&photo_path, &photo)?;
    std::fs::write(&voice_path, &voice)?;
    c.toy.messenger.send_photo(&c.chat, &photo_path, "image/jpeg").await?;
    c.toy.messenger.send_voice(&c.chat, &voice_path, "audio/ogg", 4200).await?;

    let mut received = Vec::new();
    for phone in [&c.alice.messenger, &c.bob.messenger, &grandma] {
        let events = phone.sync(IDLE).await?;
        let media = media_of(&events);
        assert_eq!(media.len(), 2, "{} got {events:?}", phone.device_id());
        assert_eq!((media[0].0, media[0].1.mime.as_str(), media[0].1.size), ("photo", "image/jpeg", photo.len() as u64));
        assert_eq!((media[1].0, media[1].1.mime.as_str(), media[1].2), ("voice", "audio/ogg", Some(4200)));
        received.push(media);
    }

    // What the store keeps, before anyone fetched: ciphertext only.
    let stored = blobs.contents()?;
    for (_, media, _) in &received[0] {
        assert!(!blobs.files_of(&media.id)?.is_empty(), "the blob {} is not in {}", media.id, blobs.dir.display());
    }
    for (name, original) in [("photo", &photo), ("voice clip", &voice)] {
        for start in [0, 1000, original.len() / 3, original.len() / 2, original.len() - 64] {
            let window = &original[start..start + 48];
            for (path, bytes) in &stored {
                assert!(!contains(bytes, window), "{} holds bytes of the {name} at {start}", path.display());
            }
        }
    }
    for (_, media, _) in &received[0] {
        let key = media.key.as_bytes();
        for needle in [key.to_vec(), BASE64.encode(key).into_bytes(), BASE64_URL.encode(key).into_bytes(), hex::encode(key).into_bytes()] {
            for (path, bytes) in &stored {
                assert!(!contains(bytes, &needle), "{} holds a media key", path.display());
            }
        }
    }

    // Each phone decrypts both, byte-identical.
    for (phone, media) in [(&c.alice.messenger, &received[0]), (&c.bob.messenger, &received[1]), (&grandma, &received[2])] {
        for ((kind, reference, _), original) in media.iter().zip([&photo, &voice]) {
            let dest = local.path().join(format!("{}-{kind}", phone.device_id()));
            phone.fetch_media(reference, &dest).await?;
            assert!(std::fs::read(&dest)? == **original, "{}'s {kind} differs from what the toy sent", phone.device_id());
        }
    }

    // A removed member, with the blob id and key in hand, downloads nothing: the guardians
    // remove grandma as a contact after a new photo reached her, before she fetched it.
    c.toy.messenger.send_photo(&c.chat, &photo_path, "image/jpeg").await?;
    let late = receive_one(&grandma).await?;
    let contacts = format!("/api/v1/families/{}/children/{}/contacts", family.id, family.child);
    let (_, listed) = api::get(&server, &contacts, Some(&family.alice.token)).await?;
    let contact = listed[0]["id"].as_str().ok_or("no contact")?.to_owned();
    let (status, _) = api::delete(&server, &format!("{contacts}/{contact}"), Some(&family.alice.token)).await?;
    assert_eq!(status, 204);
    let fetched = grandma.fetch_media(&late, &local.path().join("too-late")).await;
    assert!(matches!(&fetched, Err(e) if e.code() == Some("not_found")), "{fetched:?}");
    server.stop()?;
    Ok(())
}

/// With the blob id in hand, no one but the conversation's recipients (and its uploader)
/// downloads it: a device of the family outside the conversation, a device that joined
/// after the upload, a revoked member, another family's guardian, nobody at all. Each gets
/// exactly the answer a made-up id gets.
async fn with_the_blob_id_in_hand_outsiders_get_what_a_made_up_id_gets(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, _blobs, _) = start(&dirs, postgres, &[]).await?;
    let family = family(&server, &dirs.outbox(), "b").await?;
    let local = tempfile::tempdir()?;
    let c = conversation(&server, local.path(), &family).await?;
    let tablet = paired(&server, local.path(), "alice-tablet", &family.alice, &family.id, None).await?;
    let late = paired(&server, local.path(), "bob-tablet", &family.bob, &family.id, None).await?;
    let other = family_of_others(&server, &dirs.outbox()).await?;
    let stranger = paired(&server, local.path(), "carol-phone", &other.0, &other.1, None).await?;

    let photo = random_bytes(100 * 1024)?;
    let path = local.path().join("photo.png");
    std::fs::write(&path, &photo)?;
    c.toy.messenger.send_photo(&c.chat, &path, "image/png").await?;
    let media = receive_one(&c.alice.messenger).await?;
    let blob = format!("/api/v1/media/{}", media.id);
    let random = format!("/api/v1/media/{}", made_up_id()?);

    // Bob's tablet joins after the upload completed: a member, but not a recipient.
    c.alice.messenger.invite(&c.chat, late.messenger.device_id()).await?;
    late.messenger.sync(IDLE).await?;

    let bob_token = device_token(&server, c.bob.secret, c.bob.messenger.device_id()).await?;
    let revoke = format!("/api/v1/families/{}/devices/{}", family.id, c.bob.messenger.device_id());
    let (status, body) = api::delete(&server, &revoke, Some(&family.alice.token)).await?;
    assert_eq!(status, 204, "revoking bob's phone: {body}");

    let callers = [
        ("a device of the family outside the conversation", Some(device_token(&server, tablet.secret, tablet.messenger.device_id()).await?)),
        ("a member that joined after the upload", Some(device_token(&server, late.secret, late.messenger.device_id()).await?)),
        ("a revoked member", Some(bob_token)),
        ("another family's guardian's phone", Some(device_token(&server, stranger.secret, stranger.messenger.device_id()).await?)),
        ("a guardian's session, not a device", Some(family.alice.token.clone())),
        ("nobody", None),
    ];
    for (who, token) in &callers {
        let token = token.as_deref();
        let expected = get(&server, &random, token).await?;
        assert!(expected.0 == 401 || expected.0 == 404, "{who} on a made-up id: {}", expected.0);
        for path in [blob.clone(), format!("{blob}/upload")] {
            let answer = get(&server, &path, token).await?;
            assert_eq!(answer, expected, "{who}: GET {path} answers unlike a made-up id");
        }
        for (method, path) in [(reqwest::Method::GET, blob.clone()), (reqwest::Method::PATCH, blob.clone())] {
            let headers = [("upload-offset", "0"), ("range", "bytes=0-")];
            let (status, _, body) = call(&server, method.clone(), &path, token, &headers, Some(vec![0; 10])).await?;
            let (made_up_status, _, made_up_body) = call(&server, method, &random, token, &headers, Some(vec![0; 10])).await?;
            assert_eq!((status, body), (made_up_status, made_up_body), "{who}: {path} with headers");
        }
    }
    // A malformed id is as unknown as a made-up one.
    let tablet_token = device_token(&server, tablet.secret, tablet.messenger.device_id()).await?;
    let expected = get(&server, &random, Some(&tablet_token)).await?;
    for id in ["1%20OR%201%3D1", "..%2F..%2Fetc", &media.id.to_uppercase(), &format!("{}0", media.id), "%00"] {
        assert_eq!(get(&server, &format!("/api/v1/media/{id}"), Some(&tablet_token)).await?, expected, "id {id:?}");
    }
    assert_eq!(expected.0, 404);
    assert_eq!(json_of(&expected.1)["error"]["code"], "not_found");

    // Not vacuous: the recipient that is left reads it, and so does the uploader.
    let toy_token = device_token(&server, c.toy.secret, c.toy.messenger.device_id()).await?;
    assert_eq!(get(&server, &blob, Some(&toy_token)).await?.0, 200, "the uploader reads its blob");
    let dest = local.path().join("fetched");
    c.alice.messenger.fetch_media(&media, &dest).await?;
    assert!(std::fs::read(&dest)? == photo, "alice's phone got another photo");
    server.stop()?;
    Ok(())
}

/// Another family: its guardian's session and the family id.
async fn family_of_others(server: &Server, outbox: &Path) -> Fallible<(Session, String)> {
    let carol = api::guardian(server, outbox, "carol@example.org", "correct horse battery staple").await?;
    let id = api::family(server, &carol, "The Others").await?;
    api::consent(server, outbox, &carol, &id).await?;
    Ok((carol, id))
}

/// An upload broken off half-way resumes from the server's offset: a chunk cut short
/// stores nothing, a chunk whose answer was lost is not sent twice, and the recipient
/// decrypts the result byte-identical.
async fn an_interrupted_upload_resumes_from_the_servers_offset(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, _blobs, _) = start(&dirs, postgres, &[]).await?;
    let family = family(&server, &dirs.outbox(), "c").await?;
    let local = tempfile::tempdir()?;
    let c = conversation(&server, local.path(), &family).await?;
    let toy_token = device_token(&server, c.toy.secret, c.toy.messenger.device_id()).await?;

    let photo = random_bytes(600 * 1024 + 5)?;
    let path = local.path().join("photo.jpg");
    std::fs::write(&path, &photo)?;
    const CHUNK: usize = 128 * 1024;
    let mut upload = c.toy.messenger.start_media_upload(&c.chat, &path).await?;
    upload.set_chunk_size(CHUNK);
    let ciphertext = std::fs::read(upload.ciphertext_path())?;
    assert_eq!(ciphertext.len() as u64, upload.size());
    assert!(!c.toy.messenger.upload_media_chunk(&mut upload).await?);
    assert_eq!(upload.offset(), CHUNK as u64);
    let path = format!("/api/v1/media/{}", upload.id());

    // The connection breaks in the middle of the next chunk: nothing of it is kept.
    cut_off_chunk(&server, &path, &toy_token, CHUNK, &ciphertext[CHUNK..2 * CHUNK]).await?;
    let (status, body) = get(&server, &format!("{path}/upload"), Some(&toy_token)).await?;
    assert_eq!((status, json_of(&body)["upload_offset"].as_u64()), (200, Some(CHUNK as u64)), "{}", json_of(&body));

    // The chunk arrives but its answer is lost (sent here by hand: the SDK never sees it).
    let next = ciphertext[CHUNK..2 * CHUNK].to_vec();
    let (status, headers, body) =
        call(&server, reqwest::Method::PATCH, &path, Some(&toy_token), &[("upload-offset", &CHUNK.to_string())], Some(next)).await?;
    assert_eq!((status, json_of(&body)["upload_offset"].as_u64()), (200, Some(2 * CHUNK as u64)), "{}", json_of(&body));
    assert_eq!(headers.get("upload-offset").and_then(|v| v.to_str().ok()), Some((2 * CHUNK).to_string().as_str()));

    // The SDK resumes: the server tells it where it stands, nothing is stored twice.
    assert_eq!(upload.offset(), CHUNK as u64, "the device does not know the chunk arrived");
    c.toy.messenger.finish_media_upload(&mut upload).await?;
    assert!(upload.is_complete());
    let (status, body) = get(&server, &format!("{path}/upload"), Some(&toy_token)).await?;
    let state = json_of(&body);
    assert_eq!((status, &state["complete"], state["upload_offset"].as_u64()), (200, &Value::Bool(true), Some(ciphertext.len() as u64)));

    // The uploader reads back exactly the ciphertext, also by ranges (none reaches the end,
    // which would count as a recipient's fetch; the uploader's never count).
    assert!(get(&server, &path, Some(&toy_token)).await? == (200, ciphertext.clone()), "the stored ciphertext differs");
    let (status, headers, part) =
        call(&server, reqwest::Method::GET, &path, Some(&toy_token), &[("range", "bytes=100000-300000")], None).await?;
    assert_eq!(status, 206);
    assert!(part == ciphertext[100_000..=300_000], "a range that spans chunks differs");
    let content_range = format!("bytes 100000-300000/{}", ciphertext.len());
    assert_eq!(headers.get("content-range").and_then(|v| v.to_str().ok()), Some(content_range.as_str()));

    c.toy.messenger.send_media(upload, MediaKind::Photo, "image/jpeg").await?;
    let media = receive_one(&c.alice.messenger).await?;
    let dest = local.path().join("resumed.jpg");
    c.alice.messenger.fetch_media(&media, &dest).await?;
    assert!(std::fs::read(&dest)? == photo, "the resumed photo differs");
    server.stop()?;
    Ok(())
}

/// Sends a PATCH announcing `chunk.len()` bytes, sends only half of them, and hangs up.
async fn cut_off_chunk(server: &Server, path: &str, token: &str, offset: usize, chunk: &[u8]) -> TestResult {
    let address = server.base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nUpload-Offset: {offset}\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
        chunk.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&chunk[..chunk.len() / 2]).await?;
    stream.flush().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    // Give the server the moment it needs to notice.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// A blob stays until its last recipient fetched it, then its objects and rows go.
async fn a_blob_is_deleted_once_every_recipient_fetched_it(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, blobs, _) = start(&dirs, postgres, &[]).await?;
    let family = family(&server, &dirs.outbox(), "d").await?;
    let local = tempfile::tempdir()?;
    let c = conversation(&server, local.path(), &family).await?;

    let voice = random_bytes(200 * 1024)?;
    let path = local.path().join("voice.ogg");
    std::fs::write(&path, &voice)?;
    c.toy.messenger.send_voice(&c.chat, &path, "audio/ogg", 2500).await?;
    let for_alice = receive_one(&c.alice.messenger).await?;
    let for_bob = receive_one(&c.bob.messenger).await?;
    assert_eq!(for_alice, for_bob);
    let id = for_alice.id.clone();
    assert!(!blobs.files_of(&id)?.is_empty(), "the blob is not stored");

    c.alice.messenger.fetch_media(&for_alice, &local.path().join("alice.ogg")).await?;
    // Bob has not fetched it: it stays (given the server time to act if it wrongly would).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!blobs.files_of(&id)?.is_empty(), "the blob went before bob fetched it");
    // Alice may fetch it again while it is there.
    c.alice.messenger.fetch_media(&for_alice, &local.path().join("alice-again.ogg")).await?;

    c.bob.messenger.fetch_media(&for_bob, &local.path().join("bob.ogg")).await?;
    assert!(std::fs::read(local.path().join("bob.ogg"))? == voice);
    eventually("the blob's objects are deleted once everyone fetched it", || async { Ok(blobs.files_of(&id)?.is_empty()) }).await?;
    let toy_token = device_token(&server, c.toy.secret, c.toy.messenger.device_id()).await?;
    let (status, _) = get(&server, &format!("/api/v1/media/{id}"), Some(&toy_token)).await?;
    assert_eq!(status, 404, "the uploader still reads a blob everyone fetched");
    let again = c.alice.messenger.fetch_media(&for_alice, &local.path().join("too-late.ogg")).await;
    assert!(matches!(&again, Err(e) if e.code() == Some("not_found")), "{again:?}");
    assert!(!local.path().join("too-late.ogg").exists(), "a failed fetch leaves no file");
    server.stop()?;
    Ok(())
}

/// Oversize, malformed and out-of-order requests get a 4xx with a code, never a 500.
async fn bad_input_gets_a_clear_4xx(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, _blobs, _) = start(&dirs, postgres, &["--media-max-size", "1M"]).await?;
    let family = family(&server, &dirs.outbox(), "e").await?;
    let local = tempfile::tempdir()?;
    let c = conversation(&server, local.path(), &family).await?;
    let token = device_token(&server, c.toy.secret, c.toy.messenger.device_id()).await?;
    let group = c.chat.to_base64();
    let post = |body: Value| {
        let (server, token) = (&server, token.clone());
        async move { api::post(server, "/api/v1/media", Some(&token), body).await }
    };
    let expect = |what: &str, (status, body): (u16, Value), want: (u16, &str)| {
        assert_eq!((status, body["error"]["code"].as_str().unwrap_or("")), want, "{what}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap_or("").is_empty(), "{what}: no message");
    };

    // Starting an upload.
    expect("1 MiB + 1 MiB", post(json!({"group_id": group, "size": 2 << 20})).await?, (413, "body_too_large"));
    expect("25 MB", post(json!({"group_id": group, "size": 25_000_000})).await?, (413, "body_too_large"));
    expect("size 0", post(json!({"group_id": group, "size": 0})).await?, (422, "invalid_body"));
    expect("size -1", post(json!({"group_id": group, "size": -1})).await?, (422, "invalid_body"));
    expect("size text", post(json!({"group_id": group, "size": "big"})).await?, (422, "invalid_body"));
    expect("no group", post(json!({"size": 10})).await?, (422, "invalid_body"));
    expect("group not base64", post(json!({"group_id": "%%%", "size": 10})).await?, (422, "invalid_body"));
    expect("unknown group", post(json!({"group_id": BASE64.encode([7u8; 16]), "size": 10})).await?, (404, "not_found"));
    let (status, _, body) = call(&server, reqwest::Method::POST, "/api/v1/media", Some(&token), &[("content-type", "application/json")], Some(b"{not json".to_vec())).await?;
    expect("not JSON", (status, json_of(&body)), (400, "malformed_json"));

    // Chunks.
    let (status, body) = post(json!({"group_id": group, "size": 100_000})).await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["upload_offset"], 0);
    let path = format!("/api/v1/media/{}", body["id"].as_str().ok_or("no id")?);
    let patch = |offset: Option<&str>, bytes: Vec<u8>| {
        let (server, token, path) = (&server, token.clone(), path.clone());
        let offset = offset.map(str::to_owned);
        async move {
            let headers: Vec<(&str, &str)> = offset.as_deref().map(|o| vec![("upload-offset", o)]).unwrap_or_default();
            let (status, headers, body) = call(server, reqwest::Method::PATCH, &path, Some(&token), &headers, Some(bytes)).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, json_of(&body), headers))
        }
    };
    for offset in [None, Some("abc"), Some("-1"), Some("1e3"), Some(""), Some("99999999999999999999999")] {
        let (status, body, _) = patch(offset, vec![0; 70_000]).await?;
        expect(&format!("Upload-Offset {offset:?}"), (status, body), (400, "invalid_parameter"));
    }
    let (status, body, headers) = patch(Some("5"), vec![0; 70_000]).await?;
    expect("a wrong offset", (status, body), (409, "conflict"));
    assert_eq!(headers.get("upload-offset").and_then(|v| v.to_str().ok()), Some("0"), "a 409 tells where to resume");
    let (status, body, _) = patch(Some("0"), Vec::new()).await?;
    expect("an empty chunk", (status, body), (422, "invalid_body"));
    let (status, body, _) = patch(Some("0"), vec![0; 1000]).await?;
    expect("a small chunk that is not the last", (status, body), (422, "invalid_body"));
    let (status, body, _) = patch(Some("0"), vec![0; 100_001]).await?;
    expect("a chunk past the declared size", (status, body), (422, "invalid_body"));
    let (status, body, _) = patch(Some("0"), vec![0; 8 * 1024 * 1024 + 1]).await?;
    expect("a chunk over the limit", (status, body), (413, "body_too_large"));
    let (status, body, _) = patch(Some("0"), vec![0; 70_000]).await?;
    assert_eq!((status, body["upload_offset"].as_u64()), (200, Some(70_000)), "{body}");
    let (status, body, _) = patch(Some("70000"), vec![0; 30_000]).await?;
    assert_eq!((status, &body["complete"]), (200, &Value::Bool(true)), "{body}");
    let (status, body, headers) = patch(Some("100000"), vec![0; 10]).await?;
    expect("a chunk after the end", (status, body), (409, "conflict"));
    assert_eq!(headers.get("upload-offset").and_then(|v| v.to_str().ok()), Some("100000"));

    // Ranges.
    for range in ["bytes=100000-", "bytes=5-2", "bytes=x-y", "bytes=-0"] {
        let (status, headers, body) = call(&server, reqwest::Method::GET, &path, Some(&token), &[("range", range)], None).await?;
        expect(range, (status, json_of(&body)), (416, "invalid_parameter"));
        assert_eq!(headers.get("content-range").and_then(|v| v.to_str().ok()), Some("bytes */100000"), "{range}");
    }
    let (status, _, body) = call(&server, reqwest::Method::GET, &path, Some(&token), &[("range", "bytes=-10")], None).await?;
    assert_eq!((status, body.len()), (206, 10));

    // Through the SDK: a file over the limit is refused before a byte of it is stored.
    let big = local.path().join("big.bin");
    std::fs::write(&big, random_bytes((1 << 20) + 1)?)?;
    let refused = c.toy.messenger.send_photo(&c.chat, &big, "image/jpeg").await;
    assert!(matches!(&refused, Err(e) if e.code() == Some("body_too_large")), "{refused:?}");

    // The server is still well.
    assert_eq!(api::get(&server, "/healthz", None).await?.0, 200);
    let (_, logs) = server.stop()?;
    assert!(!logs.contains("\"status\":500"), "a request was answered 500: {logs}");
    Ok(())
}

on_both_engines!(
    a_photo_and_a_voice_clip_reach_two_guardians_and_a_grandparent_intact_and_storage_holds_neither,
    with_the_blob_id_in_hand_outsiders_get_what_a_made_up_id_gets,
    an_interrupted_upload_resumes_from_the_servers_offset,
    a_blob_is_deleted_once_every_recipient_fetched_it,
    bad_input_gets_a_clear_4xx,
);

/// The server's size limit counts the encryption overhead exactly as the SDK adds it.
#[test]
fn the_server_and_the_sdk_agree_on_the_ciphertext_size() {
    for n in [0, 1, 65_535, 65_536, 65_537, 1 << 20, 25 << 20, (25 << 20) + 1] {
        assert_eq!(cubby_server::media::ciphertext_limit(n), cubby_client::messaging::ciphertext_len(n), "{n} bytes");
    }
}

#[test]
fn the_blob_store_helper_sees_nothing_where_nothing_is() -> TestResult {
    let dirs = Dirs::new()?;
    assert!(BlobStore::local(&dirs).files()?.is_empty());
    Ok(())
}
