//! Pairing and device authentication end to end: a simulated toy built on cubby-client
//! pairs with the real `cubby` binary, signs in, is revoked and wiped; codes cannot cross
//! families, expire, are single-use and throttled; and the database holds nothing from which
//! a device's credential could be rebuilt. Every scenario runs on SQLite and PostgreSQL.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::api::{self, Session};
use crate::common::{Dirs, Fallible, Server, TestResult, client, file_contains};
use cubby_client::{ClientError, CubbyClient, DeviceKey, DeviceKind, DeviceSession, Paired, PairingPoll, PairingStart};
use serde_json::{Value, json};
use sqlx::Connection;

const PAIRED_SUBJECT: &str = "A new toy was paired in your family";

/// A server on a fresh database (SQLite in the data directory, or a fresh PostgreSQL one),
/// and the URL tests use to look at the database directly.
async fn start(dirs: &Dirs, postgres: bool) -> Fallible<(Server, String)> {
    if postgres {
        let url = cubby_store::testing::fresh_postgres_database().await?;
        Ok((Server::start(&dirs.args(Some(&url)))?, url))
    } else {
        Ok((Server::start(&dirs.args(None))?, dirs.database_url()))
    }
}

/// A guardian with a family, consent given, and one child.
struct Family {
    guardian: Session,
    id: String,
    child: String,
}

async fn family(server: &Server, outbox: &Path, email: &str, child: &str) -> Fallible<Family> {
    let guardian = api::guardian(server, outbox, email, "correct horse battery staple").await?;
    let id = api::family(server, &guardian, "The Family").await?;
    api::consent(server, outbox, &guardian, &id).await?;
    let child = api::child(server, &guardian, &id, child, "6_8").await?;
    Ok(Family { guardian, id, child })
}

fn toy_client(server: &Server) -> Fallible<CubbyClient> {
    Ok(CubbyClient::with_http_client(&server.base_url, client()?))
}

async fn approve(server: &Server, family: &Family, user_code: &str, child: &str, approve: bool) -> Fallible<(u16, Value)> {
    let body = json!({"user_code": user_code, "family_id": family.id, "child_id": child, "name": "Bear", "approve": approve});
    api::post(server, "/api/v1/pairing/approve", Some(&family.guardian.token), body).await
}

/// A toy starts pairing, the guardian approves it for their child, the toy polls once.
async fn pair_toy(server: &Server, family: &Family) -> Fallible<(CubbyClient, DeviceKey, PairingStart, Paired)> {
    let toy = toy_client(server)?;
    let key = DeviceKey::generate()?;
    let start = toy.start_pairing(&key, DeviceKind::Toy, "toy-os 1.0").await?;
    let (status, body) = approve(server, family, &start.user_code, &family.child, true).await?;
    if status != 200 || body["approved"] != json!(true) {
        return Err(format!("approval answered {status}: {body}").into());
    }
    match toy.poll_pairing(&start.device_code).await? {
        PairingPoll::Paired(paired) => Ok((toy, key, start, paired)),
        other => Err(format!("the first poll after approval answered {other:?}").into()),
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn devices_path(family: &str) -> String {
    format!("/api/v1/families/{family}/devices")
}

async fn device_request(server: &Server, method: reqwest::Method, path: &str, token: &str) -> Fallible<u16> {
    let response = client()?.request(method, server.url(path)).bearer_auth(token).send().await?;
    Ok(response.status().as_u16())
}

/// Mails in the outbox to `to` whose subject contains `subject`, waiting up to 10 s for one.
fn wait_for_mail(outbox: &Path, to: &str, subject: &str) -> Fallible<usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count = api::mails(outbox, to, subject);
        if count > 0 || Instant::now() > deadline {
            return Ok(count);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn is_api(error: &ClientError, status: u16, wanted: &str) -> bool {
    matches!(error, ClientError::Api { status: s, code, .. } if *s == status && code == wanted)
}

// ---------------------------------------------------------------------------------------
// 1. A toy pairs end to end.

async fn a_toy_pairs_end_to_end(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, _) = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let fam = family(&server, &outbox, "alice@example.org", "Pip").await?;
    // A second guardian joins by invitation: every guardian hears of a new toy.
    let bob = api::guardian(&server, &outbox, "bob@example.org", "another long passphrase").await?;
    let (status, body) =
        api::post(&server, &format!("/api/v1/families/{}/invites", fam.id), Some(&fam.guardian.token), json!({"email": bob.email}))
            .await?;
    assert_eq!(status, 202, "{body}");
    let invitation = api::outbox_token(&outbox, &bob.email, "invited")?;
    let (status, body) = api::post(&server, "/api/v1/invites/accept", Some(&bob.token), json!({"token": invitation})).await?;
    assert!((200..300).contains(&status), "{status} {body}");

    let toy = toy_client(&server)?;
    let key = DeviceKey::generate()?;
    let start = toy.start_pairing(&key, DeviceKind::Toy, "toy-os 1.0").await?;
    assert_eq!((start.expires_in, start.interval), (600, 5));
    assert_eq!(start.user_code.len(), 9, "{start:?}");
    // Nobody approved yet: the first poll is always allowed and answers pending.
    assert_eq!(toy.poll_pairing(&start.device_code).await?, PairingPoll::Pending);

    let (status, body) = approve(&server, &fam, &start.user_code.to_lowercase(), &fam.child, true).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["approved"], json!(true), "{body}");
    let approved_id = body["device_id"].as_str().ok_or("no device id")?.to_owned();

    // The interval since the pending poll has not passed: the SDK's wait honours it.
    let paired = toy.wait_for_pairing(&start, Duration::from_secs(30)).await?;
    assert_eq!(paired.device_id, approved_id);
    assert_eq!(paired.family_id.to_string(), fam.id);

    let session = toy.authenticate(&key, &paired.device_id).await?;
    assert_eq!(session.expires_in, 900);
    let info = toy.device_info(&session).await?;
    assert_eq!(info.device_id, paired.device_id);
    assert_eq!(info.family_id.to_string(), fam.id);
    assert_eq!(info.child_id.map(|c| c.to_string()), Some(fam.child.clone()));
    assert_eq!(info.kind, DeviceKind::Toy);
    assert_eq!(info.name, "Bear");
    assert!(!info.wipe);

    // The guardians see it.
    for session in [&fam.guardian, &bob] {
        let (status, list) = api::get(&server, &devices_path(&fam.id), Some(&session.token)).await?;
        assert_eq!(status, 200, "{list}");
        let devices = list.as_array().ok_or("not a list")?;
        assert_eq!(devices.len(), 1, "{list}");
        let device = &devices[0];
        assert_eq!(device["device_id"], json!(paired.device_id), "{list}");
        assert_eq!(device["child_id"], json!(fam.child), "{list}");
        assert_eq!((device["kind"].as_str(), device["name"].as_str()), (Some("toy"), Some("Bear")), "{list}");
        assert_eq!((device["revoked"].as_bool(), device["wipe"].as_bool()), (Some(false), Some(false)), "{list}");
        assert!(device["last_seen_at"].is_i64(), "an authenticated request marks the device seen: {list}");
    }
    // Every guardian was told by mail.
    for email in [&fam.guardian.email, &bob.email] {
        assert_eq!(wait_for_mail(&outbox, email, PAIRED_SUBJECT)?, 1, "no pairing mail to {email}");
    }
    // The security events hold the pairing, and not the toy's name.
    let (status, events) = api::get(&server, &format!("/api/v1/families/{}/security-events", fam.id), Some(&bob.token)).await?;
    assert_eq!(status, 200, "{events}");
    let paired_events: Vec<&Value> =
        events.as_array().into_iter().flatten().filter(|e| e["action"] == json!("device.paired")).collect();
    assert_eq!(paired_events.len(), 1, "{events}");
    assert!(!events.to_string().contains("Bear"), "{events}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Codes cannot cross families.

async fn a_code_never_attaches_a_toy_to_another_family(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, _) = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let a = family(&server, &outbox, "alice@example.org", "Pip").await?;
    let b = family(&server, &outbox, "bea@example.org", "Tam").await?;

    let toy = toy_client(&server)?;
    let key = DeviceKey::generate()?;
    let start = toy.start_pairing(&key, DeviceKind::Toy, "toy-os 1.0").await?;

    // Family B is not Alice's.
    let body = json!({"user_code": start.user_code, "family_id": b.id, "child_id": b.child, "name": "Bear"});
    let (status, reply) = api::post(&server, "/api/v1/pairing/approve", Some(&a.guardian.token), body).await?;
    assert_eq!(status, 404, "{reply}");
    // Alice's family, B's child.
    let (status, reply) = approve(&server, &a, &start.user_code, &b.child, true).await?;
    assert_eq!(status, 404, "{reply}");

    // Still pending, and B has no device.
    assert_eq!(toy.poll_pairing(&start.device_code).await?, PairingPoll::Pending);
    let (status, list) = api::get(&server, &devices_path(&b.id), Some(&b.guardian.token)).await?;
    assert_eq!((status, list), (200, json!([])));
    let (status, list) = api::get(&server, &devices_path(&a.id), Some(&a.guardian.token)).await?;
    assert_eq!((status, list), (200, json!([])));
    assert_eq!(wait_for_mail_now(&outbox, &b.guardian.email), 0);
    Ok(())
}

/// Pairing mails to `to` right now, without waiting.
fn wait_for_mail_now(outbox: &Path, to: &str) -> usize {
    api::mails(outbox, to, PAIRED_SUBJECT)
}

// ---------------------------------------------------------------------------------------
// 3. Expired, used and denied codes; polling too fast.

async fn expire(database_url: &str, device_code: &str) -> TestResult {
    let hash = cubby_crypto::token_hash(device_code).to_vec();
    let sql = "UPDATE pairing_requests SET expires_at = 1 WHERE device_code_hash = $1";
    let changed = if database_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(database_url).await?;
        let n = sqlx::query(sql).bind(hash).execute(&mut conn).await?.rows_affected();
        conn.close().await?;
        n
    } else {
        let mut conn = sqlx::PgConnection::connect(database_url).await?;
        let n = sqlx::query(sql).bind(hash).execute(&mut conn).await?.rows_affected();
        conn.close().await?;
        n
    };
    assert_eq!(changed, 1);
    Ok(())
}

async fn expired_used_and_denied_codes_are_refused(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, database_url) = start(&dirs, postgres).await?;
    let fam = family(&server, &dirs.outbox(), "alice@example.org", "Pip").await?;
    let toy = toy_client(&server)?;

    // Expired.
    let key = DeviceKey::generate()?;
    let start = toy.start_pairing(&key, DeviceKind::Toy, "toy-os 1.0").await?;
    expire(&database_url, &start.device_code).await?;
    let (status, body) = approve(&server, &fam, &start.user_code, &fam.child, true).await?;
    assert_eq!((status, code(&body)), (400, "invalid_token"), "{body}");
    let polled = toy.poll_pairing(&start.device_code).await;
    assert!(matches!(polled, Err(ClientError::PairingExpired)), "{polled:?}");

    // Used.
    let (_, _, used, _) = pair_toy(&server, &fam).await?;
    let (status, body) = approve(&server, &fam, &used.user_code, &fam.child, true).await?;
    assert_eq!((status, code(&body)), (400, "invalid_token"), "{body}");
    let polled = toy.poll_pairing(&used.device_code).await;
    assert!(matches!(&polled, Err(e) if is_api(e, 400, "invalid_token")), "{polled:?}");
    // A code nobody issued is refused the same way.
    let polled = toy.poll_pairing(&"ab".repeat(32)).await;
    assert!(matches!(&polled, Err(e) if is_api(e, 400, "invalid_token")), "{polled:?}");

    // Denied.
    let key = DeviceKey::generate()?;
    let denied = toy.start_pairing(&key, DeviceKind::Toy, "toy-os 1.0").await?;
    let (status, body) = approve(&server, &fam, &denied.user_code, &fam.child, false).await?;
    assert_eq!((status, &body["approved"]), (200, &json!(false)), "{body}");
    let polled = toy.poll_pairing(&denied.device_code).await;
    assert!(matches!(polled, Err(ClientError::PairingDenied)), "{polled:?}");
    // A denied code cannot then be approved.
    let (status, body) = approve(&server, &fam, &denied.user_code, &fam.child, true).await?;
    assert_eq!((status, code(&body)), (400, "invalid_token"), "{body}");

    // Polling too fast.
    let key = DeviceKey::generate()?;
    let fast = toy.start_pairing(&key, DeviceKind::Toy, "toy-os 1.0").await?;
    assert_eq!(toy.poll_pairing(&fast.device_code).await?, PairingPoll::Pending);
    assert_eq!(toy.poll_pairing(&fast.device_code).await?, PairingPoll::SlowDown);

    // Only the one toy that was approved exists.
    let (status, list) = api::get(&server, &devices_path(&fam.id), Some(&fam.guardian.token)).await?;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. Guessing codes is throttled.

async fn guessing_codes_is_throttled(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, _) = start(&dirs, postgres).await?;
    let fam = family(&server, &dirs.outbox(), "alice@example.org", "Pip").await?;
    let toy = toy_client(&server)?;
    let key = DeviceKey::generate()?;
    let start = toy.start_pairing(&key, DeviceKind::Toy, "toy-os 1.0").await?;
    let right = start.user_code.replace('-', "");

    let wrong: Vec<String> = ["BCDFGHJK", "LMNPQRST", "VWXZBCDF", "GHJKLMNP", "QRSTVWXZ", "ZXWVTSRQ"]
        .into_iter()
        .filter(|c| *c != right)
        .take(5)
        .map(ToOwned::to_owned)
        .collect();
    for guess in &wrong {
        let (status, body) = approve(&server, &fam, guess, &fam.child, true).await?;
        assert_eq!((status, code(&body)), (400, "invalid_token"), "{guess}: {body}");
    }
    // Blocked now, even for the right code.
    let body = json!({"user_code": start.user_code, "family_id": fam.id, "child_id": fam.child, "name": "Bear"});
    let response = client()?
        .post(server.url("/api/v1/pairing/approve"))
        .bearer_auth(&fam.guardian.token)
        .json(&body)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .ok_or("429 without Retry-After")?
        .to_str()?
        .parse()?;
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    let reply: Value = response.json().await?;
    assert_eq!(code(&reply), "rate_limited", "{reply}");
    // The block did not use the code up: after it, the right code pairs.
    assert_eq!(toy.poll_pairing(&start.device_code).await?, PairingPoll::Pending);
    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(100)).await;
    let (status, body) = approve(&server, &fam, &start.user_code, &fam.child, true).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 5. Revocation, replayed challenges, wipe.

async fn challenge(server: &Server, device_id: &str) -> Fallible<String> {
    let (status, body) = api::post(server, "/api/v1/devices/challenge", None, json!({"device_id": device_id})).await?;
    if status != 200 {
        return Err(format!("challenge answered {status}: {body}").into());
    }
    body["challenge"].as_str().map(ToOwned::to_owned).ok_or_else(|| "no challenge".into())
}

async fn sign_in(server: &Server, device_id: &str, challenge: &str, signature: &str) -> Fallible<(u16, Value)> {
    let body = json!({"device_id": device_id, "challenge": challenge, "signature": signature});
    api::post(server, "/api/v1/devices/session", None, body).await
}

async fn revoked_devices_and_replayed_challenges_are_refused(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, _) = start(&dirs, postgres).await?;
    let fam = family(&server, &dirs.outbox(), "alice@example.org", "Pip").await?;
    let (toy, key, _, paired) = pair_toy(&server, &fam).await?;
    let (_, other_key, _, other) = pair_toy(&server, &fam).await?;
    let id = paired.device_id.as_str();

    // Signing in by hand, as the SDK does.
    let first = challenge(&server, id).await?;
    let signature = key.sign_challenge(id, &first);
    let (status, body) = sign_in(&server, id, &first, &signature).await?;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().ok_or("no token")?.to_owned();
    assert_eq!(device_request(&server, reqwest::Method::GET, "/api/v1/device", &token).await?, 200);

    // The same (challenge, signature) again: the challenge is single-use.
    let (status, body) = sign_in(&server, id, &first, &signature).await?;
    assert_eq!((status, code(&body)), (401, "unauthenticated"), "{body}");
    // A fresh challenge signed for another device id.
    let fresh = challenge(&server, id).await?;
    let (status, body) = sign_in(&server, id, &fresh, &key.sign_challenge(&other.device_id, &fresh)).await?;
    assert_eq!(status, 401, "{body}");
    // A challenge issued to the other device, correctly signed by this one.
    let theirs = challenge(&server, &other.device_id).await?;
    let (status, body) = sign_in(&server, id, &theirs, &key.sign_challenge(id, &theirs)).await?;
    assert_eq!(status, 401, "{body}");
    // ... nor can the other device use it with this device's signature.
    let (status, body) = sign_in(&server, &other.device_id, &theirs, &key.sign_challenge(&other.device_id, &theirs)).await?;
    assert_eq!(status, 401, "{body}");
    // The failed attempts did not use up the fresh challenge, which still works once.
    let (status, body) = sign_in(&server, id, &fresh, &key.sign_challenge(id, &fresh)).await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = sign_in(&server, id, &fresh, &key.sign_challenge(id, &fresh)).await?;
    assert_eq!(status, 401, "{body}");

    // Wipe: the device learns it at its next request.
    let sdk_session = toy.authenticate(&key, id).await?;
    assert!(!toy.device_info(&sdk_session).await?.wipe);
    let wipe = format!("{}/{id}/wipe", devices_path(&fam.id));
    assert_eq!(device_request(&server, reqwest::Method::POST, &wipe, &fam.guardian.token).await?, 204);
    assert!(toy.device_info(&sdk_session).await?.wipe);

    // Revocation: the token already issued dies on the very next request.
    let revoke = format!("{}/{id}", devices_path(&fam.id));
    assert_eq!(device_request(&server, reqwest::Method::DELETE, &revoke, &fam.guardian.token).await?, 204);
    let revoked_at = Instant::now();
    assert_eq!(device_request(&server, reqwest::Method::GET, "/api/v1/device", &token).await?, 401);
    let refused_after = revoked_at.elapsed();
    assert!(refused_after < Duration::from_secs(1), "{refused_after:?}");
    let refused = toy.device_info(&sdk_session).await;
    assert!(matches!(&refused, Err(e) if e.is_unauthenticated()), "{refused:?}");
    let again = toy.authenticate(&key, id).await;
    assert!(matches!(&again, Err(e) if is_api(e, 401, "unauthenticated")), "{again:?}");
    // Revoking twice is not found; the list shows it revoked.
    assert_eq!(device_request(&server, reqwest::Method::DELETE, &revoke, &fam.guardian.token).await?, 404);
    let (_, list) = api::get(&server, &devices_path(&fam.id), Some(&fam.guardian.token)).await?;
    let mine = list.as_array().into_iter().flatten().find(|d| d["device_id"] == json!(id)).ok_or("gone")?;
    assert_eq!(mine["revoked"], json!(true), "{list}");

    // The other toy is untouched.
    let session: DeviceSession = toy.authenticate(&other_key, &other.device_id).await?;
    assert_eq!(toy.device_info(&session).await?.device_id, other.device_id);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 6. The database holds no secret from which a credential could be rebuilt.

const TABLES: [&str; 4] = ["devices", "device_tokens", "device_challenges", "pairing_requests"];

/// Every value of every column of `table`, as lowercase hex of its bytes (text as UTF-8,
/// numbers as their decimal text), one string per value.
async fn table_values(database_url: &str, table: &str) -> Fallible<Vec<String>> {
    let mut values = Vec::new();
    if database_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(database_url).await?;
        let columns: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM pragma_table_info($1)").bind(table).fetch_all(&mut conn).await?;
        assert!(!columns.is_empty(), "no table {table}");
        for (column,) in columns {
            // Audited: `table` is one of TABLES, `column` a name read from the schema.
            let sql = format!(r#"SELECT lower(hex("{column}")) FROM {table}"#);
            let rows: Vec<(Option<String>,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&mut conn).await?;
            values.extend(rows.into_iter().filter_map(|(v,)| v));
        }
        conn.close().await?;
    } else {
        let mut conn = sqlx::PgConnection::connect(database_url).await?;
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_name = $1 AND table_schema = current_schema()",
        )
        .bind(table)
        .fetch_all(&mut conn)
        .await?;
        assert!(!columns.is_empty(), "no table {table}");
        for (column, data_type) in columns {
            let expr = if data_type == "bytea" {
                format!(r#"encode("{column}", 'hex')"#)
            } else {
                format!(r#"encode(convert_to("{column}"::text, 'UTF8'), 'hex')"#)
            };
            // Audited: `table` is one of TABLES, `column` a name read from the schema.
            let sql = format!("SELECT {expr} FROM {table}");
            let rows: Vec<(Option<String>,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&mut conn).await?;
            values.extend(rows.into_iter().filter_map(|(v,)| v));
        }
        conn.close().await?;
    }
    Ok(values)
}

async fn the_database_holds_no_device_secret(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let (server, database_url) = start(&dirs, postgres).await?;
    let fam = family(&server, &dirs.outbox(), "alice@example.org", "Pip").await?;
    let (toy, key, start, paired) = pair_toy(&server, &fam).await?;
    let session = toy.authenticate(&key, &paired.device_id).await?;
    assert_eq!(toy.device_info(&session).await?.device_id, paired.device_id);
    // Something in every table: a second toy waiting for approval, and an unused challenge.
    let waiting_key = DeviceKey::generate()?;
    let waiting = toy.start_pairing(&waiting_key, DeviceKind::Toy, "toy-os 1.0").await?;
    let open_challenge = challenge(&server, &paired.device_id).await?;

    let mut secrets: Vec<(&str, Vec<u8>)> = Vec::new();
    for (what, device_key) in [("secret key", &key), ("waiting toy's secret key", &waiting_key)] {
        let secret = device_key.secret_bytes();
        secrets.push((what, secret.to_vec()));
        secrets.push((what, hex::encode(secret).into_bytes()));
        secrets.push((what, hex::encode_upper(secret).into_bytes()));
    }
    for (what, token) in [
        ("access token", session.access_token.as_str()),
        ("device code", start.device_code.as_str()),
        ("waiting device code", waiting.device_code.as_str()),
        ("open challenge", open_challenge.as_str()),
    ] {
        secrets.push((what, token.as_bytes().to_vec()));
        if let Ok(raw) = hex::decode(token) {
            secrets.push((what, raw));
        }
    }

    let mut all = Vec::new();
    for table in TABLES {
        let values = table_values(&database_url, table).await?;
        assert!(!values.is_empty(), "{table} is empty: nothing was checked");
        for (what, secret) in &secrets {
            let needle = hex::encode(secret);
            assert!(!values.iter().any(|v| v.contains(&needle)), "the {what} is stored in {table}");
        }
        all.extend(values);
    }
    // What is stored instead: the public key as it was sent, and SHA-256 hashes.
    let public_key = hex::decode(key.public_key_hex())?;
    let devices = table_values(&database_url, "devices").await?;
    assert!(devices.contains(&hex::encode(&public_key)), "the public key is not stored as sent");
    for (what, token, table) in [
        ("access token", session.access_token.as_str(), "device_tokens"),
        ("waiting device code", waiting.device_code.as_str(), "pairing_requests"),
        ("open challenge", open_challenge.as_str(), "device_challenges"),
    ] {
        let hash = hex::encode(cubby_crypto::token_hash(token));
        let values = table_values(&database_url, table).await?;
        assert!(values.contains(&hash), "the {what}'s SHA-256 hash is not in {table}");
    }
    assert!(!all.is_empty());

    if !postgres {
        let data = dirs.data();
        let files: Vec<_> = ["cubby.db", "cubby.db-wal", "cubby.db-shm"].iter().map(|f| data.join(f)).collect();
        assert!(files[0].exists());
        for file in &files {
            for (what, secret) in &secrets {
                assert!(!file_contains(file, secret), "the {what} is in {}", file.display());
            }
        }
        // The scan reads what is there: the public key is found.
        assert!(files.iter().any(|f| file_contains(f, &public_key)), "the scan found not even the public key");
        // And once more after the server checkpointed and stopped.
        let (status, logs) = server.stop()?;
        assert!(status.success(), "{logs}");
        for file in &files {
            for (what, secret) in &secrets {
                assert!(!file_contains(file, secret), "after shutdown the {what} is in {}", file.display());
            }
        }
    }
    Ok(())
}

on_both_engines!(
    a_toy_pairs_end_to_end,
    revoked_devices_and_replayed_challenges_are_refused,
    a_code_never_attaches_a_toy_to_another_family,
    expired_used_and_denied_codes_are_refused,
    the_database_holds_no_device_secret,
    guessing_codes_is_throttled,
);
