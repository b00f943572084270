//! Who may call what. Every endpoint that takes a session is called as every kind of
//! caller, and each answer's status and error code is checked, on SQLite and PostgreSQL:
//!
//! | caller                                          | expected                                        |
//! |-------------------------------------------------|-------------------------------------------------|
//! | nobody, or a made-up token                      | 401 `unauthenticated`                           |
//! | a guardian of another family                    | 404 `not_found`, byte for byte the answer for a |
//! |                                                 | family (child, session) that does not exist     |
//! | a co-guardian                                   | 2xx                                             |
//! | a signed-out session                            | 401 `unauthenticated`                           |
//! | a session idle for longer than `--session-idle` | 401 `unauthenticated`                           |
//! | the portal's cookie without its CSRF token      | 403 `csrf_rejected` for changes                 |
//! | another family's child id, a malformed id       | 404 `not_found`                                 |
//! | a device's access token                         | 401 `unauthenticated`                           |
//!
//! Denied callers aim at the real family, child, session, paired toy, pending pairing
//! code, another family's contact request, the toy's report, another family's contact code
//! and its invitation of an adult, and the owner reads them afterwards (and uses the code
//! and the invitation) to prove nothing was changed, deleted or used up; the co-guardian
//! runs destructive calls last, each on a throwaway family, session and toy.
//!
//! The device's own endpoints take no guardian session and stay out of the matrix; those
//! that take a device's token ([`DEVICE_TOKEN`]: its record, messaging, the live
//! connection, contacts, reports, media) have their own check,
//! [`only_a_live_device_token_reads_the_device`].
//!
//! The endpoints are data ([`MATRIX`]). [`the_matrix_covers_every_documented_endpoint`]
//! compares it with the running server's OpenAPI document, so an endpoint cannot be added
//! without joining the matrix.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::common::api::{self, Session};
use crate::common::{Dirs, Fallible, Server, TestResult, client};
use cubby_client::{CubbyClient, DeviceKey, DeviceKind, Messenger, PairingPoll, PairingStart};
use cubby_core::{ChildId, ContactId, DeviceId, FamilyId, ReportId, SessionId};
use serde_json::{Value, json};

// ---- the matrix ------------------------------------------------------------------------

/// What a successful call does, which decides how the allowed caller is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// Reads: run against the shared family.
    Read,
    /// Changes that leave the shared family usable: run against it.
    Change,
    /// Deletes, withdraws or signs out its target: the allowed caller runs it last, each
    /// time on a throwaway family and a throwaway session.
    Destroy,
    /// Deletes the caller's own account: the allowed caller is a disposable co-guardian.
    DeleteAccount,
}

/// One documented operation. Placeholders in `path` are named as in the OpenAPI document;
/// `body` is a JSON template. Both are filled from [`Targets`].
struct Endpoint {
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    effect: Effect,
}

const fn op(method: &'static str, path: &'static str, body: Option<&'static str>, effect: Effect) -> Endpoint {
    Endpoint { method, path, body, effect }
}

use Effect::{Change, DeleteAccount, Destroy, Read};

/// Every endpoint that takes a session. Add new ones here (the OpenAPI guard insists).
const MATRIX: &[Endpoint] = &[
    op("GET", "/api/v1/me", None, Read),
    op("DELETE", "/api/v1/me", None, DeleteAccount),
    // The same password again: the call is real, and leaves the caller able to sign in.
    op("PUT", "/api/v1/me/password", Some(r#"{"current_password":"{password}","new_password":"{password}"}"#), Change),
    op("GET", "/api/v1/sessions", None, Read),
    op("DELETE", "/api/v1/sessions", None, Destroy),
    op("DELETE", "/api/v1/sessions/{id}", None, Destroy),
    op("DELETE", "/api/v1/session", None, Destroy),
    op("GET", "/api/v1/families", None, Read),
    op("POST", "/api/v1/families", Some(r#"{"name":"The Newts"}"#), Change),
    op("GET", "/api/v1/families/{family_id}", None, Read),
    op("DELETE", "/api/v1/families/{family_id}", None, Destroy),
    op("POST", "/api/v1/families/{family_id}/invites", Some(r#"{"email":"friend@example.com"}"#), Change),
    op("POST", "/api/v1/invites/accept", Some(r#"{"token":"{invite_token}"}"#), Change),
    op("DELETE", "/api/v1/families/{family_id}/membership", None, Destroy),
    op("GET", "/api/v1/families/{family_id}/security-events", None, Read),
    op("GET", "/api/v1/families/{family_id}/export", None, Read),
    op("GET", "/api/v1/families/{family_id}/message-retention", None, Read),
    op("PUT", "/api/v1/families/{family_id}/message-retention", Some(r#"{"days":14}"#), Change),
    op("GET", "/api/v1/families/{family_id}/consent", None, Read),
    op(
        "POST",
        "/api/v1/families/{family_id}/consent",
        Some(r#"{"notice_version":{notice_version},"method":"email_plus"}"#),
        Change,
    ),
    op("DELETE", "/api/v1/families/{family_id}/consent", None, Destroy),
    op("PUT", "/api/v1/families/{family_id}/third-party-consent", Some(r#"{"enabled":true}"#), Change),
    op("GET", "/api/v1/families/{family_id}/children", None, Read),
    op("POST", "/api/v1/families/{family_id}/children", Some(r#"{"nickname":"Robin","age_band":"9_12"}"#), Change),
    op("GET", "/api/v1/families/{family_id}/children/{child_id}", None, Read),
    op("PATCH", "/api/v1/families/{family_id}/children/{child_id}", Some(r#"{"nickname":"Changed"}"#), Change),
    op("DELETE", "/api/v1/families/{family_id}/children/{child_id}", None, Destroy),
    op("GET", "/api/v1/families/{family_id}/children/{child_id}/export", None, Read),
    op("GET", "/api/v1/families/{family_id}/children/{child_id}/quiet-hours", None, Read),
    op(
        "PUT",
        "/api/v1/families/{family_id}/children/{child_id}/quiet-hours",
        Some(r#"{"time_zone":"Europe/Paris","windows":[{"start":"19:30","end":"07:00"}],"daily_limit":50}"#),
        Change,
    ),
    op("DELETE", "/api/v1/families/{family_id}/children/{child_id}/quiet-hours", None, Destroy),
    // The code a toy shows; its family and child are in the body.
    op(
        "POST",
        "/api/v1/pairing/approve",
        Some(r#"{"user_code":"{user_code}","family_id":"{family_id}","child_id":"{child_id}","name":"Bear"}"#),
        Change,
    ),
    op("GET", "/api/v1/families/{family_id}/devices", None, Read),
    op("PATCH", "/api/v1/families/{family_id}/devices/{device_id}", Some(r#"{"name":"Renamed"}"#), Change),
    op("DELETE", "/api/v1/families/{family_id}/devices/{device_id}", None, Destroy),
    op("POST", "/api/v1/families/{family_id}/devices/{device_id}/wipe", None, Change),
    op("POST", "/api/v1/families/{family_id}/children/{child_id}/contact-codes", None, Change),
    // Another family's code: redeeming it is this family's approval of the contact.
    op(
        "POST",
        "/api/v1/families/{family_id}/children/{child_id}/contacts/redeem",
        Some(r#"{"code":"{contact_code}"}"#),
        Change,
    ),
    op(
        "POST",
        "/api/v1/families/{family_id}/children/{child_id}/contacts/invite",
        Some(r#"{"email":"teacher@example.com"}"#),
        Change,
    ),
    // An invitation to be another family's child's contact, addressed to the caller.
    op("POST", "/api/v1/contact-invites/accept", Some(r#"{"token":"{contact_invite_token}"}"#), Change),
    op("GET", "/api/v1/families/{family_id}/children/{child_id}/contacts", None, Read),
    op("POST", "/api/v1/families/{family_id}/children/{child_id}/contacts/{contact_id}/approve", None, Change),
    op("DELETE", "/api/v1/families/{family_id}/children/{child_id}/contacts/{contact_id}", None, Destroy),
    op("GET", "/api/v1/families/{family_id}/children/{child_id}/supervision", None, Read),
    op("PUT", "/api/v1/families/{family_id}/children/{child_id}/supervision", Some(r#"{"supervised":true}"#), Change),
    op("GET", "/api/v1/families/{family_id}/reports", None, Read),
    op("POST", "/api/v1/families/{family_id}/reports/{report_id}/escalate", None, Change),
    op("DELETE", "/api/v1/families/{family_id}/reports/{report_id}", None, Destroy),
    op("GET", "/api/v1/catalogue", None, Read),
    op("GET", "/api/v1/families/{family_id}/children/{child_id}/catalogue", None, Read),
    // Approving again is no error: the approval stands.
    op("POST", "/api/v1/families/{family_id}/children/{child_id}/titles", Some(r#"{"package_id":"{package_id}"}"#), Change),
    op("GET", "/api/v1/families/{family_id}/children/{child_id}/titles", None, Read),
    op("DELETE", "/api/v1/families/{family_id}/children/{child_id}/titles/{package_id}", None, Destroy),
];

/// The free title for the youngest children that [`World::new`] publishes: the
/// `{package_id}` the approval endpoints aim at.
const MATRIX_TITLE: &str = "org.example.matrix";

/// The placeholders that name an object (rather than the caller's own account), in the
/// path or in the body.
const ID_PLACEHOLDERS: &[&str] = &["family_id", "child_id", "device_id", "id", "contact_id", "report_id"];

/// Ids that are no id at all; each must be as unknown as a missing one (404, never a 500).
const MALFORMED_IDS: &[&str] = &[
    "1 OR 1=1",
    "../",
    "../../etc/passwd",
    "'; DROP TABLE families; --",
    "\0",
    "00000000-0000-0000-0000-000000000000",
];

/// The device's side of pairing and signing in: called before the device has any
/// credential, so with no session at all.
const DEVICE_PUBLIC: &[(&str, &str)] = &[
    ("POST", "/api/v1/pairing"),
    ("POST", "/api/v1/pairing/token"),
    ("POST", "/api/v1/devices/challenge"),
    ("POST", "/api/v1/devices/session"),
];

/// The endpoints a paired device calls with its access token (and nothing else opens).
const DEVICE_TOKEN: &[(&str, &str)] = &[
    ("GET", "/api/v1/device"),
    ("GET", "/api/v1/mls/external-sender"),
    ("POST", "/api/v1/key-packages"),
    ("GET", "/api/v1/key-packages"),
    ("POST", "/api/v1/devices/{device_id}/key-package"),
    ("POST", "/api/v1/groups"),
    ("GET", "/api/v1/groups"),
    ("POST", "/api/v1/messages"),
    ("GET", "/api/v1/ws"),
    ("GET", "/api/v1/contacts"),
    ("POST", "/api/v1/contacts/{contact_id}/block"),
    ("POST", "/api/v1/reports"),
    ("POST", "/api/v1/media"),
    ("PATCH", "/api/v1/media/{media_id}"),
    ("GET", "/api/v1/media/{media_id}"),
    ("GET", "/api/v1/media/{media_id}/upload"),
    ("GET", "/api/v1/device/titles"),
    ("GET", "/api/v1/packages/{package_id}/{version}/files/{index}"),
];

/// A publisher's side of the content store: its signature is the authority, not a session.
const PUBLISHER_PUBLIC: &[(&str, &str)] =
    &[("POST", "/api/v1/packages"), ("PUT", "/api/v1/packages/{package_id}/{version}/files/{index}")];

/// Documented operations that take no session, so the matrix leaves them out.
fn is_public(method: &str, path: &str) -> bool {
    path.starts_with("/api/v1/accounts")
        || path.starts_with("/api/v1/password-reset")
        || ["/api/v1/consent/confirm", "/api/v1/privacy-notice", "/healthz", "/metrics", "/api/v1/openapi.json"]
            .contains(&path)
        || (method == "POST" && path == "/api/v1/sessions")
        || DEVICE_PUBLIC.contains(&(method, path))
        || PUBLISHER_PUBLIC.contains(&(method, path))
        // A device's token, not a guardian's session: see only_a_live_device_token_reads_the_device.
        || DEVICE_TOKEN.contains(&(method, path))
}

impl Endpoint {
    fn is_safe(&self) -> bool {
        self.method == "GET"
    }

    /// The id placeholders in the path or the body.
    fn ids(&self) -> impl Iterator<Item = &'static str> + '_ {
        ID_PLACEHOLDERS.iter().copied().filter(|name| {
            let placeholder = format!("{{{name}}}");
            self.path.contains(&placeholder) || self.body.is_some_and(|body| body.contains(&placeholder))
        })
    }

    fn in_path(&self, name: &str) -> bool {
        self.path.contains(&format!("{{{name}}}"))
    }
}

/// The matrix's entry for `method path`.
fn endpoint(method: &str, path: &str) -> Fallible<&'static Endpoint> {
    MATRIX.iter().find(|e| e.method == method && e.path == path).ok_or_else(|| format!("{method} {path}?").into())
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

// ---- filling the templates ---------------------------------------------------------------

/// The values a caller's requests are filled with, by placeholder name.
#[derive(Clone, Debug)]
struct Targets(BTreeMap<&'static str, String>);

impl Targets {
    fn new(family: &str, child: &str, device: &str, session: &str, password: &str, notice_version: u64) -> Self {
        Self(BTreeMap::from([
            ("family_id", family.to_owned()),
            ("child_id", child.to_owned()),
            ("device_id", device.to_owned()),
            ("id", session.to_owned()),
            ("password", password.to_owned()),
            ("notice_version", notice_version.to_string()),
            // A made-up invitation and pairing code unless a scenario has real ones.
            ("invite_token", "0".repeat(64)),
            ("user_code", "BCDF-GHJK".to_owned()),
            // Likewise a contact, report, contact code and adult's invitation.
            ("contact_id", ContactId::random().to_string()),
            ("report_id", ReportId::random().to_string()),
            ("contact_code", "0".repeat(64)),
            ("contact_invite_token", "0".repeat(64)),
            ("package_id", MATRIX_TITLE.to_owned()),
        ]))
    }

    fn with(&self, name: &'static str, value: &str) -> Self {
        let mut copy = self.clone();
        copy.0.insert(name, value.to_owned());
        copy
    }

    /// Ids that exist nowhere, well-formed.
    fn missing(&self) -> Self {
        self.with("family_id", &FamilyId::random().to_string())
            .with("child_id", &ChildId::random().to_string())
            .with("device_id", &DeviceId::random().to_string())
            .with("id", &SessionId::random().to_string())
            .with("contact_id", &ContactId::random().to_string())
            .with("report_id", &ReportId::random().to_string())
    }

    fn path(&self, template: &str) -> Fallible<String> {
        let mut path = template.to_owned();
        for (name, value) in &self.0 {
            path = path.replace(&format!("{{{name}}}"), &percent_encode(value));
        }
        if path.contains('{') {
            return Err(format!("{template}: a placeholder has no value in {:?}", self.0.keys()).into());
        }
        Ok(path)
    }

    fn body(&self, template: &str) -> Fallible<Value> {
        let mut text = template.to_owned();
        for (name, value) in &self.0 {
            let quoted = serde_json::to_string(value)?;
            let escaped = quoted.get(1..quoted.len() - 1).unwrap_or_default();
            text = text.replace(&format!("{{{name}}}"), escaped);
        }
        serde_json::from_str(&text).map_err(|e| format!("{template}: not JSON once filled ({e}): {text}").into())
    }
}

/// Every byte but the unreserved ones as %XX, so an id cannot add path segments.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---- calling ------------------------------------------------------------------------------

/// How a request authenticates.
#[derive(Clone, Copy, Debug)]
enum Auth<'a> {
    Nobody,
    Bearer(&'a str),
    /// The portal's way: the session cookie, with or without the X-CSRF-Token header.
    Cookie { token: &'a str, csrf: Option<&'a str> },
}

#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    fn is(&self, status: u16, code: &str) -> bool {
        self.status == status && self.code() == code
    }

    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

/// A running server with an owner, their family (consented to, with one child, whose toy
/// is paired and has filed a report), a second toy's pairing waiting for a guardian to
/// enter its code, and a second family (the friend's) that asked for a contact with the
/// owner's child, made a contact code nobody redeemed, and invited an adult to be its
/// child's contact.
struct World {
    server: Server, // dropped first: the process stops before its directories go
    dirs: Dirs,
    http: reqwest::Client,
    owner: Session,
    family: String,
    child: String,
    /// The child's paired toy, named [`TOY`], and its key.
    device: String,
    device_key: DeviceKey,
    /// A pairing nobody has approved: the `{user_code}` the callers aim at.
    pending: PairingStart,
    notice_version: u64,
    /// The guardian of the second family, its id and its child.
    friend: Session,
    friend_family: String,
    friend_child: String,
    /// The friend's request for a contact, on the owner's child's side, waiting for the
    /// owner's approval: the `{contact_id}`.
    contact: String,
    /// A report the owner's child's toy filed: the `{report_id}`.
    report: String,
    /// The friend's family's contact code, for a guardian of another family to redeem:
    /// the `{contact_code}`.
    contact_code: String,
    /// The friend's family's invitation of [`INVITED_ADULT`]: the `{contact_invite_token}`.
    contact_invite: String,
}

/// What the owner named the World's toy.
const TOY: &str = "Sam's bear";

const PASSWORD: &str = "marmalade kettle orbit 42";

/// The adult the friend's family invited to be its child's contact (`{name}@example.com`).
const INVITED_ADULT: &str = "grandma";

/// Starts `cubby serve` on fresh directories and a fresh database.
async fn start(postgres: bool, extra_args: &[&str]) -> Fallible<(Server, Dirs)> {
    let dirs = Dirs::new()?;
    let url = if postgres { Some(cubby_store::testing::fresh_postgres_database().await?) } else { None };
    let mut args = dirs.args(url.as_deref());
    args.extend(extra_args.iter().map(|a| (*a).to_owned()));
    let server = Server::start(&args)?;
    register_matrix_publisher(&url.unwrap_or_else(|| dirs.database_url())).await?;
    Ok((server, dirs))
}

/// The key of the publisher of [`MATRIX_TITLE`].
fn matrix_publisher_key() -> cubby_crypto::content_signature::SigningKey {
    cubby_crypto::content_signature::SigningKey::from_bytes(&[42; 32])
}

/// Registers the matrix's publisher directly in the running server's database (what
/// `cubby admin publisher add` does).
async fn register_matrix_publisher(database_url: &str) -> TestResult {
    let store = cubby_store::connect(database_url).await?;
    let publisher = cubby_store::PublisherRow {
        id: "matrix-books".to_owned(),
        name: "Matrix Books".to_owned(),
        public_key: matrix_publisher_key().verifying_key().to_bytes().to_vec(),
        created_at: 0,
    };
    store.add_publisher(&publisher).await?;
    store.close().await;
    Ok(())
}

/// Publishes [`MATRIX_TITLE`] (one file) as its publisher would.
async fn publish_matrix_title(server: &Server) -> TestResult {
    use base64::Engine as _;
    let base64 = base64::engine::general_purpose::STANDARD;
    let file = b"once upon a time".to_vec();
    let manifest = json!({
        "publisher": "matrix-books", "id": MATRIX_TITLE, "version": "1.0.0", "kind": "content",
        "title": "Matrix Tales", "description": "", "languages": ["en"], "age_band": "under_6",
        "subjects": ["reading"], "content_descriptors": [], "price": null,
        "files": [{"path": "tales.txt", "size": file.len(), "sha256": cubby_crypto::content_signature::file_sha256_hex(&file)}],
        "size": file.len(),
    })
    .to_string()
    .into_bytes();
    let signature = cubby_crypto::content_signature::sign_manifest(&matrix_publisher_key(), &manifest);
    let body = json!({ "manifest": base64.encode(&manifest), "signature": base64.encode(signature) });
    let (status, answer) = api::post(server, "/api/v1/packages", None, body).await?;
    if status != 201 {
        return Err(format!("submitting the matrix title answered {status}: {answer}").into());
    }
    let response = client()?.put(server.url(&format!("/api/v1/packages/{MATRIX_TITLE}/1.0.0/files/0"))).body(file).send().await?;
    if response.status().as_u16() != 204 {
        return Err(format!("uploading the matrix title's file answered {}", response.status()).into());
    }
    Ok(())
}

/// The device SDK, talking to `server`.
fn device_client(server: &Server) -> Fallible<CubbyClient> {
    Ok(CubbyClient::with_http_client(&server.base_url, client()?))
}

/// The toy `device` (key `key`) starts a conversation (the server registers the group with
/// the toy as its member) and reports a message in it to its child's guardians, with its
/// own access token; returns the report's id. (The server checks only that the toy is in
/// the conversation: what it reports is the toy's word.)
async fn file_report(server: &Server, dirs: &Dirs, key: &DeviceKey, device: &str) -> Fallible<String> {
    let toy_key = DeviceKey::from_secret_bytes(key.secret_bytes());
    let path = dirs.root.path().join(format!("{device}.db"));
    let messenger = Messenger::open(&path, [7; 32], device_client(server)?, toy_key, device).await?;
    let conversation = messenger.create_conversation().await?;
    messenger.close().await;
    let session = device_client(server)?.authenticate(key, device).await?;
    let body = json!({
        "group_id": conversation.to_base64(),
        "sender_device": DeviceId::random().to_string(),
        "message_id": "m-1",
        "content": "you are silly",
        "note": "this made me sad",
    });
    let (status, created) = api::post(server, "/api/v1/reports", Some(&session.access_token), body).await?;
    if status != 201 {
        return Err(format!("filing the report answered {status}: {created}").into());
    }
    created["id"].as_str().map(ToOwned::to_owned).ok_or_else(|| format!("a report without id: {created}").into())
}

/// Pairs a new toy for `child` of `family`, approved by `owner`; returns its key and id.
async fn pair(
    server: &Server,
    owner: &Session,
    family: &str,
    child: &str,
    name: &str,
) -> Fallible<(DeviceKey, String)> {
    let key = DeviceKey::generate()?;
    let device = device_client(server)?;
    let start = device.start_pairing(&key, DeviceKind::Toy, "1.0").await?;
    let body = json!({ "user_code": start.user_code, "family_id": family, "child_id": child, "name": name });
    let (status, body) = api::post(server, "/api/v1/pairing/approve", Some(&owner.token), body).await?;
    if status != 200 {
        return Err(format!("approving the pairing answered {status}: {body}").into());
    }
    // One poll only: the first is always allowed, a second within 5 s is told to slow down.
    match device.poll_pairing(&start.device_code).await? {
        PairingPoll::Paired(paired) => Ok((key, paired.device_id)),
        other => Err(format!("the first poll after approval answered {other:?}").into()),
    }
}

impl World {
    async fn new(postgres: bool, extra_args: &[&str]) -> Fallible<Self> {
        let (server, dirs) = start(postgres, extra_args).await?;
        publish_matrix_title(&server).await?;
        let owner = api::guardian(&server, &dirs.outbox(), "owner@example.com", PASSWORD).await?;
        let family = api::family(&server, &owner, "The Owls").await?;
        api::consent(&server, &dirs.outbox(), &owner, &family).await?;
        let child = api::child(&server, &owner, &family, "Sam", "6_8").await?;
        let (device_key, device) = pair(&server, &owner, &family, &child, TOY).await?;
        let pending = device_client(&server)?.start_pairing(&DeviceKey::generate()?, DeviceKind::Toy, "1.0").await?;
        let (_, notice) = api::get(&server, "/api/v1/privacy-notice", None).await?;
        let notice_version = notice["version"].as_u64().ok_or("notice without version")?;

        // The friend's family asks for a contact with Sam: the friend redeems Sam's code.
        let friend = api::guardian(&server, &dirs.outbox(), "friend@example.com", PASSWORD).await?;
        let friend_family = api::family(&server, &friend, "The Finches").await?;
        api::consent(&server, &dirs.outbox(), &friend, &friend_family).await?;
        let friend_child = api::child(&server, &friend, &friend_family, "Robin", "6_8").await?;
        let code = api::contact_code(&server, &owner, &family, &child).await?;
        let theirs = api::redeem_contact_code(&server, &friend, &friend_family, &friend_child, &code).await?;
        if theirs["status"] != "waiting_for_them" {
            return Err(format!("the friend's side of the request is {theirs}").into());
        }
        let contact = api::only_contact(&server, &owner, &family, &child, "needs_your_approval").await?;
        let contact_code = api::contact_code(&server, &friend, &friend_family, &friend_child).await?;
        let adult = format!("{INVITED_ADULT}@example.com");
        let contact_invite = api::contact_invite(&server, &dirs.outbox(), &friend, &friend_family, &friend_child, &adult).await?;

        // Sam's toy, in a conversation of its own, reports a message.
        let report = file_report(&server, &dirs, &device_key, &device).await?;

        Ok(Self {
            server,
            dirs,
            http: client()?,
            owner,
            family,
            child,
            device,
            device_key,
            pending,
            notice_version,
            friend,
            friend_family,
            friend_child,
            contact,
            report,
            contact_code,
            contact_invite,
        })
    }

    async fn send(&self, method: &str, path: &str, auth: Auth<'_>, body: Option<Value>) -> Fallible<Answer> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = self.http.request(method, self.server.url(path));
        match auth {
            Auth::Nobody => {}
            Auth::Bearer(token) => request = request.bearer_auth(token),
            Auth::Cookie { token, csrf } => {
                request = request.header("cookie", format!("cubby_session={token}"));
                if let Some(csrf) = csrf {
                    request = request.header("x-csrf-token", csrf);
                }
            }
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok(Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::Null) })
    }

    async fn call(&self, endpoint: &Endpoint, auth: Auth<'_>, targets: &Targets) -> Fallible<Answer> {
        let body = endpoint.body.map(|b| targets.body(b)).transpose()?;
        self.send(endpoint.method, &targets.path(endpoint.path)?, auth, body).await
    }

    async fn get(&self, session: &Session, path: &str) -> Fallible<Answer> {
        self.send("GET", path, Auth::Bearer(&session.token), None).await
    }

    /// Signs up, confirms and signs in `name@example.com`.
    async fn guardian(&self, name: &str) -> Fallible<Session> {
        api::guardian(&self.server, &self.dirs.outbox(), &format!("{name}@example.com"), PASSWORD).await
    }

    async fn login(&self, who: &Session) -> Fallible<Session> {
        api::login(&self.server, &who.email, &who.password).await
    }

    /// The owner invites `email` to `family`; returns the token from the mail.
    async fn invite(&self, family: &str, email: &str) -> Fallible<String> {
        let path = format!("/api/v1/families/{family}/invites");
        let (status, body) = api::post(&self.server, &path, Some(&self.owner.token), json!({ "email": email })).await?;
        if status != 202 {
            return Err(format!("invitation answered {status}: {body}").into());
        }
        api::outbox_token(&self.dirs.outbox(), email, "invited")
    }

    /// Makes `who` a co-guardian of the owner's `family`, by invitation.
    async fn join(&self, who: &Session, family: &str) -> TestResult {
        let token = self.invite(family, &who.email).await?;
        let body = json!({ "token": token });
        let (status, body) = api::post(&self.server, "/api/v1/invites/accept", Some(&who.token), body).await?;
        if status != 200 {
            return Err(format!("accepting the invitation answered {status}: {body}").into());
        }
        Ok(())
    }

    /// The owner's real family, child, toy, session and pending pairing code; `caller`'s
    /// password.
    fn targets(&self, caller: &Session) -> Targets {
        let session = &self.owner.session_id;
        Targets::new(&self.family, &self.child, &self.device, session, &caller.password, self.notice_version)
            .with("user_code", &self.pending.user_code)
            .with("contact_id", &self.contact)
            .with("report_id", &self.report)
            .with("contact_code", &self.contact_code)
            .with("contact_invite_token", &self.contact_invite)
    }

    /// A family of the owner's that `who` co-guards, consented to and with a child and its
    /// paired toy, and two fresh sessions of `who`: one to call with, one (the `{id}`) to
    /// be signed out. With a contact of the child (the owner redeemed a fresh code of the
    /// friend's family) and a report from its toy when `endpoint` needs them.
    async fn throwaway(&self, who: &Session, endpoint: &Endpoint) -> Fallible<(Session, Targets)> {
        let family = api::family(&self.server, &self.owner, "The Throwaways").await?;
        api::consent(&self.server, &self.dirs.outbox(), &self.owner, &family).await?;
        let child = api::child(&self.server, &self.owner, &family, "Kit", "under_6").await?;
        let (key, device) = pair(&self.server, &self.owner, &family, &child, "Kit's robot").await?;
        // Fresh sessions: an earlier destructive call may have signed `who` out everywhere.
        let caller = self.login(who).await?;
        let other = self.login(who).await?;
        self.join(&caller, &family).await?;
        let mut targets = Targets::new(&family, &child, &device, &other.session_id, &who.password, self.notice_version)
            .with("invite_token", &self.invite(&family, &who.email).await?);
        if endpoint.in_path("contact_id") {
            let code = api::contact_code(&self.server, &self.friend, &self.friend_family, &self.friend_child).await?;
            let ours = api::redeem_contact_code(&self.server, &self.owner, &family, &child, &code).await?;
            let contact = ours["id"].as_str().ok_or_else(|| format!("a contact without id: {ours}"))?;
            targets = targets.with("contact_id", contact);
        }
        if endpoint.in_path("report_id") {
            targets = targets.with("report_id", &file_report(&self.server, &self.dirs, &key, &device).await?);
        }
        if endpoint.in_path("package_id") {
            let path = format!("/api/v1/families/{family}/children/{child}/titles");
            let (status, body) = api::post(&self.server, &path, Some(&self.owner.token), json!({ "package_id": MATRIX_TITLE })).await?;
            if status != 201 {
                return Err(format!("approving the matrix title answered {status}: {body}").into());
            }
        }
        Ok((caller, targets))
    }

    /// The toy's path `template` for a device-token check: the World's toy and its child's
    /// contact where the path names them (other placeholders stay as they are: no such id).
    fn device_path(&self, template: &str) -> String {
        template.replace("{device_id}", &self.device).replace("{contact_id}", &self.contact)
    }
}

// ---- checks ---------------------------------------------------------------------------------

/// Fails with every mismatch at once, so one run shows the whole hole in the matrix.
fn report(wrong: &[String], expected: &str) -> TestResult {
    assert!(wrong.is_empty(), "{} call(s) did not answer {expected}:\n{}", wrong.len(), wrong.join("\n"));
    Ok(())
}

/// Calls every endpoint as `auth` against `targets`; each must answer `status` and `code`.
async fn expect_everywhere(w: &World, auth: Auth<'_>, targets: &Targets, status: u16, code: &str) -> TestResult {
    let mut wrong = Vec::new();
    for endpoint in MATRIX {
        let answer = w.call(endpoint, auth, targets).await?;
        if !answer.is(status, code) {
            wrong.push(format!("{endpoint} as {auth:?}: {answer}"));
        }
    }
    report(&wrong, &format!("{status} {code}"))
}

/// Reads, as the owner, everything the denied callers aimed at: the family with exactly
/// `guardians`, its one child unchanged and unsupervised, consent as given, `reader`'s
/// session listed, the one toy as paired, the friend's contact request still waiting for
/// approval, the one report not escalated, and the pending pairing still waiting for a
/// guardian. Then proves the friend's contact code and adult's invitation were not used
/// up, by using them. Polls that pairing and uses up those two, so call it once per
/// [`World`] (a second poll within 5 s is told to slow down).
async fn assert_untouched(w: &World, reader: &Session, guardians: &[&str]) -> TestResult {
    let me = w.get(reader, "/api/v1/me").await?;
    assert_eq!(me.status, 200, "the owner's session was signed out or the account deleted: {me}");

    let family = w.get(reader, &format!("/api/v1/families/{}", w.family)).await?;
    assert_eq!(family.status, 200, "the family is gone: {family}");
    let mut members: Vec<&str> = family.body["guardians"]
        .as_array()
        .ok_or("family without guardians")?
        .iter()
        .filter_map(|g| g["account_id"].as_str())
        .collect();
    members.sort_unstable();
    let mut expected = guardians.to_vec();
    expected.sort_unstable();
    assert_eq!(members, expected, "the family's guardians changed");

    let children = w.get(reader, &format!("/api/v1/families/{}/children", w.family)).await?;
    let count = children.body.as_array().map(Vec::len);
    assert_eq!(count, Some(1), "children were added or deleted: {children}");
    let child = w.get(reader, &format!("/api/v1/families/{}/children/{}", w.family, w.child)).await?;
    assert_eq!((child.status, &child.body["nickname"]), (200, &Value::from("Sam")), "the child changed: {child}");

    let consent = w.get(reader, &format!("/api/v1/families/{}/consent", w.family)).await?;
    assert_eq!(consent.body["collection_valid"], true, "consent was withdrawn: {consent}");
    assert_eq!(consent.body["third_party"], false, "third-party consent was switched on: {consent}");

    let sessions = w.get(reader, "/api/v1/sessions").await?;
    assert!(ids(&sessions.body).contains(&reader.session_id.as_str()), "session signed out: {sessions}");

    let devices = w.get(reader, &format!("/api/v1/families/{}/devices", w.family)).await?;
    let listed = devices.body.as_array().ok_or_else(|| format!("no device list: {devices}"))?;
    assert_eq!(listed.len(), 1, "devices were added or removed: {devices}");
    let toy = listed.first().ok_or_else(|| format!("no device listed: {devices}"))?;
    assert_eq!(toy["device_id"], w.device.as_str(), "another device is listed: {devices}");
    assert_eq!(toy["revoked"], false, "the toy was revoked: {devices}");
    assert_eq!(toy["wipe"], false, "the toy was flagged for wiping: {devices}");
    assert_eq!(toy["name"], TOY, "the toy was renamed: {devices}");

    let child_path = format!("/api/v1/families/{}/children/{}", w.family, w.child);
    let contacts = w.get(reader, &format!("{child_path}/contacts")).await?;
    let listed = contacts.body.as_array().ok_or_else(|| format!("no contact list: {contacts}"))?;
    assert_eq!(listed.len(), 1, "contacts were added or removed: {contacts}");
    assert_eq!(listed[0]["id"], w.contact.as_str(), "another contact is listed: {contacts}");
    assert_eq!(listed[0]["status"], "needs_your_approval", "the contact request was decided: {contacts}");
    let supervision = w.get(reader, &format!("{child_path}/supervision")).await?;
    assert_eq!((supervision.status, &supervision.body["supervised"]), (200, &json!(false)), "{supervision}");
    let reports = w.get(reader, &format!("/api/v1/families/{}/reports", w.family)).await?;
    assert_eq!(ids(&reports.body), [w.report.as_str()], "reports were added or deleted: {reports}");
    assert_eq!(reports.body[0]["escalated_at"], Value::Null, "the report was escalated: {reports}");

    let poll = device_client(&w.server)?.poll_pairing(&w.pending.device_code).await?;
    assert_eq!(poll, PairingPoll::Pending, "a denied caller decided the pending pairing");

    // The friend's code still works (for the owner, whose child it befriends), and the
    // adult's invitation is still open to the adult, signing up now.
    let redeem = endpoint("POST", "/api/v1/families/{family_id}/children/{child_id}/contacts/redeem")?;
    let redeemed = w.call(redeem, Auth::Bearer(&reader.token), &w.targets(reader)).await?;
    assert_eq!(redeemed.status, 201, "the contact code was used up by a denied caller: {redeemed}");
    let adult = w.guardian(INVITED_ADULT).await?;
    let accept = endpoint("POST", "/api/v1/contact-invites/accept")?;
    let accepted = w.call(accept, Auth::Bearer(&adult.token), &w.targets(&adult)).await?;
    assert_eq!(accepted.status, 200, "the adult's invitation was used up by a denied caller: {accepted}");
    assert_eq!(accepted.body["child"], "Robin", "{accepted}");
    Ok(())
}

/// The `id` fields of a JSON array.
fn ids(list: &Value) -> Vec<&str> {
    list.as_array().into_iter().flatten().filter_map(|item| item["id"].as_str()).collect()
}

/// The invitation the denied callers tried to accept was not used up: its invitee
/// (`invitee@example.com`, signing up now) still can.
async fn assert_invite_still_open(w: &World, token: &str) -> TestResult {
    let invitee = w.guardian("invitee").await?;
    let body = json!({ "token": token });
    let accepted = w.send("POST", "/api/v1/invites/accept", Auth::Bearer(&invitee.token), Some(body)).await?;
    assert_eq!(accepted.status, 200, "the invitation was used up by a denied caller: {accepted}");
    Ok(())
}

// ---- scenarios ------------------------------------------------------------------------------

async fn nobody_and_made_up_tokens_are_unauthenticated(postgres: bool) -> TestResult {
    let w = World::new(postgres, &[]).await?;
    let invite = w.invite(&w.family, "invitee@example.com").await?;
    let targets = w.targets(&w.owner).with("invite_token", &invite);
    expect_everywhere(&w, Auth::Nobody, &targets, 401, "unauthenticated").await?;
    let (made_up, _) = cubby_crypto::new_token()?;
    expect_everywhere(&w, Auth::Bearer(&made_up), &targets, 401, "unauthenticated").await?;
    expect_everywhere(&w, Auth::Cookie { token: &made_up, csrf: None }, &targets, 401, "unauthenticated").await?;
    assert_untouched(&w, &w.owner, &[&w.owner.account_id]).await?;
    assert_invite_still_open(&w, &invite).await
}

async fn another_familys_guardian_gets_the_answer_for_a_missing_one(postgres: bool) -> TestResult {
    let w = World::new(postgres, &[]).await?;
    let stranger = w.guardian("stranger").await?;
    let own = api::family(&w.server, &stranger, "The Strangers").await?;
    let real = w.targets(&stranger);
    let missing = real.missing();
    let mut wrong = Vec::new();
    // A stranger, and the friend: a guardian of the family that asked for a contact with
    // the owner's child (and whose own code and invitation are in the targets).
    for caller in [&stranger, &w.friend] {
        for endpoint in MATRIX.iter().filter(|e| e.ids().next().is_some()) {
            let theirs = w.call(endpoint, Auth::Bearer(&caller.token), &real).await?;
            let nothing = w.call(endpoint, Auth::Bearer(&caller.token), &missing).await?;
            if !theirs.is(404, "not_found") || theirs != nothing {
                wrong.push(format!("{endpoint} by {}: the owner's answered {theirs}, a missing one {nothing}", caller.email));
            }
        }
    }
    report(&wrong, "404 not_found, as for a missing object")?;

    // What the stranger can list of their own shows nothing of the owner's.
    let me = w.get(&stranger, "/api/v1/me").await?;
    assert_eq!(me.body["account_id"], stranger.account_id.as_str(), "{me}");
    assert_eq!(me.body["families"], Value::from(vec![own.as_str()]), "{me}");
    let families = w.get(&stranger, "/api/v1/families").await?;
    assert_eq!(ids(&families.body), [own.as_str()], "{families}");
    let sessions = w.get(&stranger, "/api/v1/sessions").await?;
    assert_eq!(ids(&sessions.body), [stranger.session_id.as_str()], "{sessions}");

    // Someone else's invitation answers as a made-up one, and stays usable by its invitee.
    let invite = w.invite(&w.family, "invitee@example.com").await?;
    let accept = endpoint("POST", "/api/v1/invites/accept")?;
    let theirs = w.call(accept, Auth::Bearer(&stranger.token), &real.with("invite_token", &invite)).await?;
    let made_up = w.call(accept, Auth::Bearer(&stranger.token), &real).await?;
    assert!(theirs.is(400, "invalid_token") && theirs == made_up, "{theirs} vs {made_up}");
    // So does an invitation to be a child's contact addressed to someone else, even for the
    // family that sent it (assert_untouched proves its adult can still accept it).
    let accept = endpoint("POST", "/api/v1/contact-invites/accept")?;
    let made_up_invite = real.with("contact_invite_token", &"0".repeat(64));
    for caller in [&stranger, &w.friend] {
        let theirs = w.call(accept, Auth::Bearer(&caller.token), &real).await?;
        let made_up = w.call(accept, Auth::Bearer(&caller.token), &made_up_invite).await?;
        assert!(theirs.is(400, "invalid_token") && theirs == made_up, "{}: {theirs} vs {made_up}", caller.email);
    }

    assert_untouched(&w, &w.owner, &[&w.owner.account_id]).await?;
    assert_invite_still_open(&w, &invite).await
}

async fn a_co_guardian_may_read_change_and_delete(postgres: bool) -> TestResult {
    let w = World::new(postgres, &[]).await?;
    let co = w.guardian("co").await?;
    let spare = w.guardian("spare").await?;
    w.join(&co, &w.family).await?;
    let mut wrong = Vec::new();

    // Reads and changes on the real family; the friend's family invites the co-guardian to
    // be its child's contact.
    let invite_token = w.invite(&w.family, &co.email).await?;
    let contact_invite =
        api::contact_invite(&w.server, &w.dirs.outbox(), &w.friend, &w.friend_family, &w.friend_child, &co.email).await?;
    let targets = w
        .targets(&co)
        .with("id", &co.session_id)
        .with("invite_token", &invite_token)
        .with("contact_invite_token", &contact_invite);
    for endpoint in MATRIX.iter().filter(|e| matches!(e.effect, Read | Change)) {
        let answer = w.call(endpoint, Auth::Bearer(&co.token), &targets).await?;
        if !answer.is_success() {
            wrong.push(format!("{endpoint}: {answer}"));
        }
    }
    // Deletions last, each on a throwaway family and session.
    for endpoint in MATRIX.iter().filter(|e| e.effect == Destroy) {
        let (caller, targets) = w.throwaway(&co, endpoint).await?;
        let answer = w.call(endpoint, Auth::Bearer(&caller.token), &targets).await?;
        if !answer.is_success() {
            wrong.push(format!("{endpoint} (throwaway): {answer}"));
        }
    }
    // Deleting one's own account, by a co-guardian kept for it.
    for endpoint in MATRIX.iter().filter(|e| e.effect == DeleteAccount) {
        let (caller, targets) = w.throwaway(&spare, endpoint).await?;
        let answer = w.call(endpoint, Auth::Bearer(&caller.token), &targets).await?;
        let after = w.get(&caller, "/api/v1/me").await?;
        if !answer.is_success() || !after.is(401, "unauthenticated") {
            wrong.push(format!("{endpoint} (disposable co-guardian): {answer}, then GET /api/v1/me {after}"));
        }
    }
    report(&wrong, "2xx")?;

    // The real family survived its co-guardian's changes, with both guardians.
    let family = w.get(&w.owner, &format!("/api/v1/families/{}", w.family)).await?;
    assert_eq!(family.status, 200, "{family}");
    assert_eq!(family.body["guardians"].as_array().map(Vec::len), Some(2), "{family}");
    // And the changes took: the friend's request approved, the report escalated, the
    // child supervised.
    let contacts = w.get(&w.owner, &format!("/api/v1/families/{}/children/{}/contacts", w.family, w.child)).await?;
    let first = &contacts.body[0];
    assert_eq!((first["id"].as_str(), &first["status"]), (Some(w.contact.as_str()), &json!("approved")), "{contacts}");
    let reports = w.get(&w.owner, &format!("/api/v1/families/{}/reports", w.family)).await?;
    assert!(reports.body[0]["escalated_at"].is_i64(), "{reports}");
    let supervision = w.get(&w.owner, &format!("/api/v1/families/{}/children/{}/supervision", w.family, w.child)).await?;
    assert_eq!(supervision.body["supervised"], true, "{supervision}");
    Ok(())
}

async fn a_signed_out_session_is_refused_everywhere(postgres: bool) -> TestResult {
    let w = World::new(postgres, &[]).await?;
    let second = w.login(&w.owner).await?;
    let path = format!("/api/v1/sessions/{}", second.session_id);
    let signed_out = w.send("DELETE", &path, Auth::Bearer(&w.owner.token), None).await?;
    assert_eq!(signed_out.status, 204, "{signed_out}");
    let invite = w.invite(&w.family, "invitee@example.com").await?;
    let targets = w.targets(&w.owner).with("invite_token", &invite);
    expect_everywhere(&w, Auth::Bearer(&second.token), &targets, 401, "unauthenticated").await?;
    let cookie = Auth::Cookie { token: &second.token, csrf: Some(&second.csrf) };
    expect_everywhere(&w, cookie, &targets, 401, "unauthenticated").await?;
    assert_untouched(&w, &w.owner, &[&w.owner.account_id]).await?;
    assert_invite_still_open(&w, &invite).await
}

const IDLE: &str = "2s";

async fn an_idle_session_expires_and_a_recent_one_works(postgres: bool) -> TestResult {
    let w = World::new(postgres, &["--session-idle", IDLE]).await?;

    let recent = w.login(&w.owner).await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let me = w.get(&recent, "/api/v1/me").await?;
    assert_eq!(me.status, 200, "a session used within the idle time must work: {me}");

    // One session per endpoint, so each call meets an expired session rather than one an
    // earlier call already removed.
    let mut sessions = Vec::new();
    for _ in MATRIX {
        sessions.push(w.login(&w.owner).await?);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let targets = w.targets(&w.owner);
    let mut wrong = Vec::new();
    for (endpoint, session) in MATRIX.iter().zip(&sessions) {
        let answer = w.call(endpoint, Auth::Bearer(&session.token), &targets).await?;
        if !answer.is(401, "unauthenticated") {
            wrong.push(format!("{endpoint}: {answer}"));
        }
    }
    report(&wrong, "401 unauthenticated")?;

    let owner = w.login(&w.owner).await?;
    assert_untouched(&w, &owner, &[&w.owner.account_id]).await
}

async fn foreign_and_malformed_ids_are_not_found(postgres: bool) -> TestResult {
    let w = World::new(postgres, &[]).await?;
    let stranger = w.guardian("stranger").await?;
    let own = api::family(&w.server, &stranger, "The Strangers").await?;
    let mut wrong = Vec::new();

    // The owner's child and toy under the stranger's own family, and the owner's contact
    // and report under the friend's own family and child (which holds the other side of
    // that very contact): as unknown as missing ones.
    let foreign = w.targets(&stranger).with("family_id", &own);
    let friends =
        w.targets(&w.friend).with("family_id", &w.friend_family).with("child_id", &w.friend_child);
    let cases = [
        (&stranger, &foreign, "child_id", ChildId::random().to_string()),
        (&stranger, &foreign, "device_id", DeviceId::random().to_string()),
        (&w.friend, &friends, "contact_id", ContactId::random().to_string()),
        (&w.friend, &friends, "report_id", ReportId::random().to_string()),
    ];
    for (caller, foreign, name, missing_id) in cases {
        let missing = foreign.with(name, &missing_id);
        for endpoint in MATRIX.iter().filter(|e| e.ids().any(|id| id == name)) {
            let theirs = w.call(endpoint, Auth::Bearer(&caller.token), foreign).await?;
            let nothing = w.call(endpoint, Auth::Bearer(&caller.token), &missing).await?;
            if !theirs.is(404, "not_found") || theirs != nothing {
                wrong.push(format!("{endpoint}: another family's {name} answered {theirs}, a missing one {nothing}"));
            }
        }
    }

    // Malformed ids in each id's place, called by the owner (who may see the real ones). In
    // a body, a string that is no id at all is also a body that does not fit (422).
    let targets = w.targets(&w.owner);
    for endpoint in MATRIX {
        for name in endpoint.ids() {
            for bad in MALFORMED_IDS {
                let answer = w.call(endpoint, Auth::Bearer(&w.owner.token), &targets.with(name, bad)).await?;
                if !answer.is(404, "not_found") && (endpoint.in_path(name) || !answer.is(422, "invalid_body")) {
                    wrong.push(format!("{endpoint} with {name} = {bad:?}: {answer}"));
                }
            }
        }
    }
    report(&wrong, "404 not_found (or 422 invalid_body for an id in a body)")?;
    assert_untouched(&w, &w.owner, &[&w.owner.account_id]).await
}

async fn cookie_changes_need_the_csrf_token(postgres: bool) -> TestResult {
    let w = World::new(postgres, &[]).await?;
    let other = w.login(&w.owner).await?;
    let invite = w.invite(&w.family, "invitee@example.com").await?;
    let targets = w.targets(&w.owner).with("invite_token", &invite);
    let token = w.owner.token.as_str();
    let mut wrong = Vec::new();
    for csrf in [None, Some(other.csrf.as_str())] {
        let auth = Auth::Cookie { token, csrf };
        for endpoint in MATRIX {
            let answer = w.call(endpoint, auth, &targets).await?;
            let fine = if endpoint.is_safe() { answer.is_success() } else { answer.is(403, "csrf_rejected") };
            if !fine {
                wrong.push(format!("{endpoint} with CSRF token {csrf:?}: {answer}"));
            }
        }
    }
    report(&wrong, "2xx for reads, 403 csrf_rejected for changes")?;
    assert_untouched(&w, &w.owner, &[&w.owner.account_id]).await?;

    // Not vacuous: with its own CSRF token the cookie may change things.
    let path = format!("/api/v1/families/{}/invites", w.family);
    let auth = Auth::Cookie { token, csrf: Some(&w.owner.csrf) };
    let invited = w.send("POST", &path, auth, Some(json!({"email": "friend@example.com"}))).await?;
    assert_eq!(invited.status, 202, "{invited}");
    assert_invite_still_open(&w, &invite).await
}

/// The guard against a vacuous matrix: it must name every operation of the running
/// server's OpenAPI document that takes a session, and nothing else.
async fn the_matrix_covers_every_documented_endpoint(postgres: bool) -> TestResult {
    let (server, _dirs) = start(postgres, &[]).await?;
    let (status, doc) = api::get(&server, "/api/v1/openapi.json", None).await?;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().ok_or("an OpenAPI document without paths")?;
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if item.get(method.to_lowercase()).is_some() && !is_public(method, path) {
                documented.insert((method.to_owned(), path.clone()));
            }
        }
    }
    let tested: BTreeSet<_> = MATRIX.iter().map(|e| (e.method.to_owned(), e.path.to_owned())).collect();
    assert_eq!(MATRIX.len(), tested.len(), "an endpoint is in the matrix twice");
    let untested: Vec<_> = documented.difference(&tested).collect();
    let undocumented: Vec<_> = tested.difference(&documented).collect();
    assert!(untested.is_empty(), "documented but not in MATRIX: {untested:?}");
    assert!(undocumented.is_empty(), "in MATRIX but not documented: {undocumented:?}");
    for prefix in ["/api/v1/families", "/api/v1/sessions"] {
        assert!(tested.iter().any(|(_, path)| path.starts_with(prefix)), "nothing under {prefix}");
    }

    // And the document says what the matrix checks: 401 everywhere, 404 for ids.
    let mut wrong = Vec::new();
    for endpoint in MATRIX {
        let responses = &doc["paths"][endpoint.path][endpoint.method.to_lowercase()]["responses"];
        if responses.get("401").is_none() {
            wrong.push(format!("{endpoint} documents no 401"));
        }
        if endpoint.ids().next().is_some() && responses.get("404").is_none() {
            wrong.push(format!("{endpoint} documents no 404"));
        }
    }
    report(&wrong, "as documented")
}

on_both_engines!(
    the_matrix_covers_every_documented_endpoint,
    nobody_and_made_up_tokens_are_unauthenticated,
    another_familys_guardian_gets_the_answer_for_a_missing_one,
    a_co_guardian_may_read_change_and_delete,
    a_signed_out_session_is_refused_everywhere,
    an_idle_session_expires_and_a_recent_one_works,
    foreign_and_malformed_ids_are_not_found,
    cookie_changes_need_the_csrf_token,
    a_session_in_use_outlives_the_idle_time,
    a_refused_account_deletion_leaves_the_memberships,
    only_a_live_device_token_reads_the_device,
);

// ---- the device's own endpoint ------------------------------------------------------------

/// GET /api/v1/device takes a device's access token: not a guardian's session, and not a
/// revoked device's token. And a device's token is no guardian session anywhere.
async fn only_a_live_device_token_reads_the_device(postgres: bool) -> TestResult {
    let w = World::new(postgres, &[]).await?;
    let path = "/api/v1/device";
    let (made_up, _) = cubby_crypto::new_token()?;
    let mut wrong = Vec::new();
    for auth in [
        Auth::Nobody,
        Auth::Bearer(&made_up),
        Auth::Bearer(&w.owner.token),
        Auth::Cookie { token: &w.owner.token, csrf: Some(&w.owner.csrf) },
    ] {
        for (method, template) in DEVICE_TOKEN {
            let target = w.device_path(template);
            let body = (*method == "POST").then(|| json!({}));
            let answer = w.send(method, &target, auth, body).await?;
            if !answer.is(401, "unauthenticated") {
                wrong.push(format!("{method} {target} as {auth:?}: {answer}"));
            }
        }
    }
    report(&wrong, "401 unauthenticated")?;

    // Not vacuous: the toy's own token reads it.
    let device = device_client(&w.server)?;
    let session = device.authenticate(&w.device_key, &w.device).await?;
    let token = session.access_token.as_str();
    let me = w.send("GET", path, Auth::Bearer(token), None).await?;
    assert_eq!((me.status, &me.body["device_id"]), (200, &Value::from(w.device.as_str())), "{me}");
    // …and its child's contacts (none approved yet). (The World's report shows that it
    // files reports.)
    let contacts = w.send("GET", "/api/v1/contacts", Auth::Bearer(token), None).await?;
    assert_eq!((contacts.status, &contacts.body), (200, &json!([])), "{contacts}");

    // The toy's token opens none of the guardians' endpoints.
    expect_everywhere(&w, Auth::Bearer(token), &w.targets(&w.owner), 401, "unauthenticated").await?;
    assert_untouched(&w, &w.owner, &[&w.owner.account_id]).await?;

    // Revoked: its live token dies at once, and it cannot sign in again.
    let revoke = format!("/api/v1/families/{}/devices/{}", w.family, w.device);
    let revoked = w.send("DELETE", &revoke, Auth::Bearer(&w.owner.token), None).await?;
    assert_eq!(revoked.status, 204, "{revoked}");
    for (method, template) in DEVICE_TOKEN {
        let target = w.device_path(template);
        let body = (*method == "POST").then(|| json!({}));
        let after = w.send(method, &target, Auth::Bearer(token), body).await?;
        assert!(after.is(401, "unauthenticated"), "a revoked toy's token still opens {method} {target}: {after}");
    }
    match device.authenticate(&w.device_key, &w.device).await {
        Err(error) if error.is_unauthenticated() => Ok(()),
        Err(error) => Err(format!("a revoked toy signing in failed otherwise: {error}").into()),
        Ok(_) => Err("a revoked toy signed in again".into()),
    }
}

// ---- regressions of bugs this matrix found ------------------------------------------------

/// A session used more often than `--session-idle` must stay signed in.
async fn a_session_in_use_outlives_the_idle_time(postgres: bool) -> TestResult {
    let w = World::new(postgres, &["--session-idle", IDLE]).await?;
    let session = w.login(&w.owner).await?;
    for use_ in 1..=4 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        let me = w.get(&session, "/api/v1/me").await?;
        assert_eq!(me.status, 200, "use {use_}, 0.9 s after the one before, found the session idle: {me}");
    }
    Ok(())
}

/// DELETE /api/v1/me refused (409 last_guardian) must leave every membership as it was.
async fn a_refused_account_deletion_leaves_the_memberships(postgres: bool) -> TestResult {
    let w = World::new(postgres, &[]).await?;
    let co = w.guardian("co").await?;
    w.join(&co, &w.family).await?;
    api::family(&w.server, &co, "The Co's Own").await?; // of which co is the last guardian
    let refused = w.send("DELETE", "/api/v1/me", Auth::Bearer(&co.token), None).await?;
    assert!(refused.is(409, "last_guardian"), "{refused}");
    assert_untouched(&w, &w.owner, &[&w.owner.account_id, &co.account_id]).await
}

