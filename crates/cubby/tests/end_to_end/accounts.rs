//! Guardian accounts through the real binary, on SQLite and on PostgreSQL: sign-up, email
//! verification, sign-in and its throttle, sessions (bearer and cookie), password change and
//! reset, idle-account deletion, and what reaches the audit log and the server's log.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::common::api::{self, Session, outbox_token};
use crate::common::{Dirs, Fallible, Server, TestResult, client, cubby, strings, text};
use reqwest::header::{COOKIE, HeaderMap, RETRY_AFTER, SET_COOKIE};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use sqlx::Connection;

const PASSWORD: &str = "violet-otter-rides-quietly";
const NEW_PASSWORD: &str = "amber-heron-naps-at-noon";
const OTHER_PASSWORD: &str = "copper-kettle-sings-twice";
/// Eleven characters: one short of the minimum.
const SHORT_PASSWORD: &str = "tiny-otter1";
/// "password" with digits appended: a disguise of a listed password.
const COMMON_PASSWORD: &str = "password1234";

const CONFIRM_SUBJECT: &str = "Confirm your email";
const ALREADY_SUBJECT: &str = "You already have a Cubby account";
const RESET_SUBJECT: &str = "Reset your Cubby password";
const IDLE_SUBJECT: &str = "Your Cubby account will be deleted";

// ---- running a server ----------------------------------------------------------------------

/// A server on fresh directories and a fresh database. The server is dropped (killed)
/// before the directories are removed.
struct Running {
    server: Server,
    url: String,
    dirs: Dirs,
}

impl Running {
    async fn start(postgres: bool, extra: &[&str]) -> Fallible<Self> {
        let dirs = Dirs::new()?;
        let url = if postgres {
            cubby_store::testing::fresh_postgres_database().await?
        } else {
            std::fs::create_dir_all(dirs.data())?;
            dirs.database_url()
        };
        let mut args = dirs.args(Some(&url));
        args.extend(strings(extra));
        let server = Server::start(&args)?;
        Ok(Self { server, url, dirs })
    }

    fn outbox(&self) -> std::path::PathBuf {
        self.dirs.outbox()
    }

    async fn guardian(&self, email: &str) -> Fallible<Session> {
        api::guardian(&self.server, &self.outbox(), email, PASSWORD).await
    }

    /// Stops the server (SIGTERM) and returns its log, keeping the directories.
    fn stop(self) -> Fallible<(String, String, Dirs)> {
        let Self { server, url, dirs } = self;
        let (status, logs) = server.stop()?;
        if !status.success() {
            return Err(format!("cubby serve exited with {status}: {logs}").into());
        }
        Ok((logs, url, dirs))
    }
}

// ---- HTTP ------------------------------------------------------------------------------------

/// A whole answer: status, headers, raw body and the body as JSON (Null if it is not).
struct Reply {
    status: u16,
    headers: HeaderMap,
    text: String,
    body: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }

    fn header(&self, name: impl reqwest::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The header names, without those that differ from one answer to the next anyway.
    fn header_names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.headers.keys().map(|k| k.as_str().to_owned()).filter(|k| k != "date").collect();
        names.sort();
        names
    }

    fn expect(self, status: u16, code: &str, what: &str) -> Fallible<Self> {
        if self.status != status || (!code.is_empty() && self.code() != code) {
            return Err(format!("{what}: expected {status} {code}, got {} {}", self.status, self.text).into());
        }
        Ok(self)
    }
}

async fn send(request: RequestBuilder) -> Fallible<Reply> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Reply { status, headers, text, body })
}

fn request(server: &Server, method: Method, path: &str, token: Option<&str>) -> Fallible<RequestBuilder> {
    let mut request = client()?.request(method, server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Ok(request)
}

async fn call(server: &Server, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Fallible<Reply> {
    let mut request = request(server, method, path, token)?;
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(request).await
}

async fn post(server: &Server, path: &str, token: Option<&str>, body: Value) -> Fallible<Reply> {
    call(server, Method::POST, path, token, Some(body)).await
}

async fn get(server: &Server, path: &str, token: Option<&str>) -> Fallible<Reply> {
    call(server, Method::GET, path, token, None).await
}

async fn sign_up(server: &Server, email: &str, password: &str) -> Fallible<Reply> {
    post(server, "/api/v1/accounts", None, json!({"email": email, "password": password})).await
}

async fn login(server: &Server, email: &str, password: &str) -> Fallible<Reply> {
    post(server, "/api/v1/sessions", None, json!({"email": email, "password": password})).await
}

async fn request_reset(server: &Server, email: &str) -> Fallible<Reply> {
    post(server, "/api/v1/password-reset", None, json!({"email": email})).await
}

async fn confirm_reset(server: &Server, token: &str, new_password: &str) -> Fallible<Reply> {
    post(server, "/api/v1/password-reset/confirm", None, json!({"token": token, "new_password": new_password})).await
}

async fn change_password(server: &Server, token: &str, current: &str, new: &str) -> Fallible<Reply> {
    let body = json!({"current_password": current, "new_password": new});
    call(server, Method::PUT, "/api/v1/me/password", Some(token), Some(body)).await
}

/// The status GET /api/v1/me answers for this bearer token.
async fn me_status(server: &Server, token: &str) -> Fallible<u16> {
    Ok(get(server, "/api/v1/me", Some(token)).await?.status)
}

/// Two answers that must not tell an existing account from an unknown one.
fn assert_indistinguishable(what: &str, existing: &Reply, unknown: &Reply) {
    assert_eq!(existing.status, unknown.status, "{what}: status differs ({} vs {})", existing.text, unknown.text);
    assert_eq!(existing.text, unknown.text, "{what}: body differs");
    assert_eq!(existing.header_names(), unknown.header_names(), "{what}: headers differ");
    assert_eq!(existing.header(SET_COOKIE), unknown.header(SET_COOKIE), "{what}: cookies differ");
}

// ---- mail --------------------------------------------------------------------------------------

/// Waits (up to 10 s) until a mail to `to` about `subject` is in the outbox.
fn await_mail(outbox: &std::path::Path, to: &str, subject: &str) -> Fallible<()> {
    await_mails(outbox, to, subject, 1)
}

/// Waits (up to 10 s) until at least `count` such mails are in the outbox.
fn await_mails(outbox: &std::path::Path, to: &str, subject: &str, count: usize) -> Fallible<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while mails(outbox, to, subject)?.len() < count {
        if std::time::Instant::now() > deadline {
            return Err(format!("no mail to {to} about {subject:?}").into());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Ok(())
}

/// The mails to `to` whose subject contains `subject` (none if the outbox does not exist yet).
fn mails(outbox: &std::path::Path, to: &str, subject: &str) -> Fallible<Vec<cubby_server::mail::Email>> {
    if !outbox.exists() {
        return Ok(Vec::new());
    }
    Ok(cubby_server::mail::read_outbox(outbox)?
        .into_iter()
        .filter(|mail| mail.to == to && mail.subject.contains(subject))
        .collect())
}

/// Polls `check` every 100 ms until it holds, for at most `timeout`.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Fallible<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Fallible<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {timeout:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- the database, read directly ------------------------------------------------------------

/// `SELECT COUNT(*) … WHERE … = $1` on either engine.
async fn count(url: &str, sql: &'static str, arg: &str) -> Fallible<i64> {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        let n: i64 = sqlx::query_scalar(sql).bind(arg).fetch_one(&mut conn).await?;
        conn.close().await?;
        Ok(n)
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let n: i64 = sqlx::query_scalar(sql).bind(arg).fetch_one(&mut conn).await?;
        conn.close().await?;
        Ok(n)
    }
}

async fn account_exists(url: &str, account_id: &str) -> Fallible<bool> {
    Ok(count(url, "SELECT COUNT(*) FROM accounts WHERE id = $1", account_id).await? > 0)
}

/// When the account was warned that it would be deleted for being idle, if it was.
async fn idle_warned_at(url: &str, account_id: &str) -> Fallible<Option<i64>> {
    const SQL: &str = "SELECT idle_warned_at FROM accounts WHERE id = $1";
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        let at: Option<i64> = sqlx::query_scalar(SQL).bind(account_id).fetch_one(&mut conn).await?;
        conn.close().await?;
        Ok(at)
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let at: Option<i64> = sqlx::query_scalar(SQL).bind(account_id).fetch_one(&mut conn).await?;
        conn.close().await?;
        Ok(at)
    }
}

/// One audit-log row, without its MACs.
#[derive(Debug)]
struct AuditRow {
    actor: String,
    action: String,
    family_id: Option<String>,
    detail: String,
}

async fn audit_rows(url: &str) -> Fallible<Vec<AuditRow>> {
    const SQL: &str = "SELECT actor, action, family_id, detail FROM audit_log ORDER BY seq";
    let rows: Vec<(String, String, Option<String>, String)> = if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        let rows = sqlx::query_as(SQL).fetch_all(&mut conn).await?;
        conn.close().await?;
        rows
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let rows = sqlx::query_as(SQL).fetch_all(&mut conn).await?;
        conn.close().await?;
        rows
    };
    Ok(rows.into_iter().map(|(actor, action, family_id, detail)| AuditRow { actor, action, family_id, detail }).collect())
}

/// `cubby admin audit verify` on a stopped server's directories: Ok with its output if it passes.
fn verify_audit(dirs: &Dirs, url: &str) -> Fallible<String> {
    let mut args = strings(&["admin", "audit", "verify"]);
    args.extend(dirs.args(Some(url)));
    let output = cubby(&args)?;
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    if !output.status.success() {
        return Err(format!("audit verify failed: {said}").into());
    }
    Ok(said)
}

// ---- 1. no enumeration ---------------------------------------------------------------------------

async fn sign_up_login_and_reset_do_not_reveal_who_has_an_account(postgres: bool) -> TestResult {
    let run = Running::start(postgres, &[]).await?;
    let server = &run.server;
    let outbox = run.outbox();
    let owner = run.guardian("owner@example.com").await?;

    // Sign-up: an address with an account answers like a fresh one.
    let existing = sign_up(server, "owner@example.com", OTHER_PASSWORD).await?.expect(202, "", "sign-up, existing")?;
    let fresh = sign_up(server, "newcomer@example.com", OTHER_PASSWORD).await?.expect(202, "", "sign-up, new")?;
    assert_indistinguishable("sign-up", &existing, &fresh);
    assert_eq!(existing.body["status"], "accepted", "{}", existing.text);
    // The mail goes out after the answer.
    outbox_token(&outbox, "newcomer@example.com", CONFIRM_SUBJECT)?;
    await_mail(&outbox, "owner@example.com", ALREADY_SUBJECT)?;
    // The owner hears about it instead of getting a second account.
    assert_eq!(mails(&outbox, "owner@example.com", ALREADY_SUBJECT)?.len(), 1);
    assert_eq!(mails(&outbox, "owner@example.com", CONFIRM_SUBJECT)?.len(), 1, "one confirmation, from the first sign-up");
    assert!(mails(&outbox, "newcomer@example.com", ALREADY_SUBJECT)?.is_empty());
    assert_eq!(mails(&outbox, "newcomer@example.com", CONFIRM_SUBJECT)?.len(), 1);
    let already = mails(&outbox, "owner@example.com", ALREADY_SUBJECT)?;
    let note = already.first().ok_or("no note to the owner")?;
    assert!(!note.body.contains(OTHER_PASSWORD), "the note repeats the password");
    assert!(
        !note.body.split(|c: char| !c.is_ascii_hexdigit()).any(|w| w.len() == 64),
        "the note carries a token: {}",
        note.body
    );
    // The account is unchanged: its password is still the first one.
    login(server, "owner@example.com", OTHER_PASSWORD).await?.expect(401, "invalid_credentials", "second password")?;
    let again = login(server, "owner@example.com", PASSWORD).await?.expect(201, "", "first password")?;
    assert_eq!(me_account(server, &again).await?, owner.account_id);

    // Login: a wrong password answers like an unknown address.
    let wrong = login(server, "owner@example.com", OTHER_PASSWORD).await?;
    let unknown = login(server, "nobody@example.com", OTHER_PASSWORD).await?;
    assert_indistinguishable("login", &wrong, &unknown);
    wrong.expect(401, "invalid_credentials", "login, wrong password")?;
    // Nor does an unconfirmed account with a wrong password say it exists.
    let pending = login(server, "newcomer@example.com", PASSWORD).await?;
    assert_indistinguishable("login, unconfirmed account", &pending, &unknown);

    // Password reset: same answer; only the owner gets mail.
    let existing = request_reset(server, "owner@example.com").await?.expect(202, "", "reset, existing")?;
    let unknown = request_reset(server, "nobody@example.com").await?.expect(202, "", "reset, unknown")?;
    assert_indistinguishable("password reset", &existing, &unknown);
    await_mail(&outbox, "owner@example.com", RESET_SUBJECT)?;
    assert_eq!(mails(&outbox, "owner@example.com", RESET_SUBJECT)?.len(), 1);
    assert!(mails(&outbox, "nobody@example.com", "")?.is_empty(), "mail went to an address without an account");
    Ok(())
}

/// The account id GET /api/v1/me reports for a login answer's token.
async fn me_account(server: &Server, login: &Reply) -> Fallible<String> {
    let token = login.body["token"].as_str().ok_or("login answer without token")?;
    let me = get(server, "/api/v1/me", Some(token)).await?.expect(200, "", "me")?;
    Ok(me.body["account_id"].as_str().ok_or("me without account_id")?.to_owned())
}

// ---- 2. throttling ------------------------------------------------------------------------------

async fn the_sixth_login_after_five_failures_is_throttled_even_with_the_right_password(postgres: bool) -> TestResult {
    let run = Running::start(postgres, &[]).await?;
    let server = &run.server;
    run.guardian("target@example.com").await?;

    for attempt in 1..=5 {
        login(server, "target@example.com", OTHER_PASSWORD)
            .await?
            .expect(401, "invalid_credentials", &format!("failed attempt {attempt}"))?;
    }
    let refused = login(server, "target@example.com", PASSWORD).await?.expect(429, "rate_limited", "6th attempt")?;
    let retry_after = refused.header(RETRY_AFTER).ok_or("429 without Retry-After")?;
    let seconds: u64 = retry_after.parse().map_err(|_| format!("Retry-After {retry_after:?} is not an integer"))?;
    assert!((1..=2).contains(&seconds), "Retry-After {seconds} (the first block is 2 s)");
    assert!(refused.body.get("token").is_none(), "{}", refused.text);

    // The block ends by itself; the right password then works. The account's count is
    // cleared, but the address keeps its five failures, so it stays in back-off.
    tokio::time::sleep(Duration::from_secs(seconds) + Duration::from_millis(200)).await;
    login(server, "target@example.com", PASSWORD).await?.expect(201, "", "after waiting Retry-After")?;
    login(server, "target@example.com", OTHER_PASSWORD).await?.expect(429, "rate_limited", "the address's count stands")?;
    Ok(())
}

// ---- 3. weak passwords ---------------------------------------------------------------------------

/// An entry of the common-password list of at least 12 characters, as it is in the list.
fn listed_password() -> Fallible<String> {
    let list = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../cubby-core/data/common-passwords.txt"))?;
    list.lines()
        .map(str::trim)
        .find(|line| line.chars().count() >= 12)
        .map(ToOwned::to_owned)
        .ok_or_else(|| "no entry of 12 characters or more in the list".into())
}

/// Checks that `reply` refuses a weak password with a message a person can act on.
fn assert_refused_as_weak(reply: &Reply, password: &str, what: &str) {
    assert_eq!((reply.status, reply.code()), (422, "weak_password"), "{what}: {}", reply.text);
    let message = reply.message();
    if password.chars().count() < 12 {
        assert!(message.contains("12 characters"), "{what}: {message}");
    } else {
        assert!(message.contains("common"), "{what}: {message}");
    }
    assert!(!message.contains(password), "{what}: the message repeats the password");
}

async fn weak_passwords_are_refused_at_sign_up_reset_and_change(postgres: bool) -> TestResult {
    let run = Running::start(postgres, &[]).await?;
    let server = &run.server;
    let outbox = run.outbox();
    let listed = listed_password()?;
    let weak = [SHORT_PASSWORD, COMMON_PASSWORD, listed.as_str()];
    assert_eq!(SHORT_PASSWORD.chars().count(), 11);

    // Sign-up: refused, and nothing created or sent.
    for password in weak {
        let reply = sign_up(server, "weak@example.com", password).await?;
        assert_refused_as_weak(&reply, password, &format!("sign-up with {password:?}"));
    }
    assert!(mails(&outbox, "weak@example.com", "")?.is_empty(), "a refused sign-up sent mail");

    // Reset: refused, and the token is not used up by the refusal.
    let user = run.guardian("strong@example.com").await?;
    request_reset(server, "strong@example.com").await?.expect(202, "", "reset request")?;
    let token = outbox_token(&outbox, "strong@example.com", RESET_SUBJECT)?;
    for password in weak {
        let reply = confirm_reset(server, &token, password).await?;
        assert_refused_as_weak(&reply, password, &format!("reset to {password:?}"));
    }
    assert_eq!(me_status(server, &user.token).await?, 200, "a refused reset signed the session out");

    // Change: refused, even with the right current password.
    for password in weak {
        let reply = change_password(server, &user.token, PASSWORD, password).await?;
        assert_refused_as_weak(&reply, password, &format!("change to {password:?}"));
    }
    for password in weak {
        login(server, "strong@example.com", password).await?.expect(401, "invalid_credentials", "weak password set")?;
    }
    login(server, "strong@example.com", PASSWORD).await?.expect(201, "", "the password is unchanged")?;

    // The token still works for a strong password.
    confirm_reset(server, &token, NEW_PASSWORD).await?.expect(204, "", "reset with a strong password")?;
    login(server, "strong@example.com", NEW_PASSWORD).await?.expect(201, "", "new password")?;
    Ok(())
}

// ---- 4. email verification ---------------------------------------------------------------------

async fn an_unconfirmed_account_cannot_sign_in_and_the_link_works_once(postgres: bool) -> TestResult {
    let run = Running::start(postgres, &[]).await?;
    let server = &run.server;
    let outbox = run.outbox();

    sign_up(server, "pending@example.com", PASSWORD).await?.expect(202, "", "sign-up")?;
    // The account exists once its confirmation mail is out.
    let token = outbox_token(&outbox, "pending@example.com", CONFIRM_SUBJECT)?;
    let refused =
        login(server, "pending@example.com", PASSWORD).await?.expect(403, "email_not_verified", "login before confirming")?;
    assert!(refused.header(SET_COOKIE).is_none() && refused.body.get("token").is_none(), "{}", refused.text);

    // The confirmation token is not a password-reset token.
    confirm_reset(server, &token, NEW_PASSWORD).await?.expect(400, "invalid_token", "verify token used to reset")?;
    post(server, "/api/v1/accounts/verify-email", None, json!({"token": "00".repeat(32)}))
        .await?
        .expect(400, "invalid_token", "made-up token")?;

    post(server, "/api/v1/accounts/verify-email", None, json!({"token": token})).await?.expect(204, "", "confirm")?;
    let again = post(server, "/api/v1/accounts/verify-email", None, json!({"token": token}))
        .await?
        .expect(400, "invalid_token", "second use")?;
    assert!(!again.message().is_empty());

    let session = login(server, "pending@example.com", PASSWORD).await?.expect(201, "", "login after confirming")?;
    let token = session.body["token"].as_str().ok_or("no token")?;
    let me = get(server, "/api/v1/me", Some(token)).await?.expect(200, "", "me")?;
    assert_eq!(me.body["email_verified"], true, "{}", me.text);
    assert_eq!(me.body["email"], "pending@example.com", "{}", me.text);
    login(server, "pending@example.com", NEW_PASSWORD).await?.expect(401, "invalid_credentials", "no reset happened")?;
    Ok(())
}

// ---- 5. sessions ---------------------------------------------------------------------------------

async fn sessions(server: &Server, token: &str) -> Fallible<Vec<Value>> {
    let reply = get(server, "/api/v1/sessions", Some(token)).await?.expect(200, "", "list sessions")?;
    Ok(reply.body.as_array().ok_or("sessions is not a list")?.clone())
}

async fn sessions_can_be_listed_and_signed_out_one_or_all(postgres: bool) -> TestResult {
    let run = Running::start(postgres, &[]).await?;
    let server = &run.server;
    let me = run.guardian("sessions@example.com").await?;
    let phone = api::login(server, &me.email, PASSWORD).await?;
    let tablet = api::login(server, &me.email, PASSWORD).await?;
    let stranger = run.guardian("stranger@example.com").await?;

    let listed = sessions(server, &me.token).await?;
    let mut ids: Vec<&str> = listed.iter().filter_map(|s| s["id"].as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec![me.session_id.as_str(), phone.session_id.as_str(), tablet.session_id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected, "{listed:?}");
    let current: Vec<&str> = listed.iter().filter(|s| s["current"] == true).filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(current, [me.session_id.as_str()], "{listed:?}");
    // From the phone, the phone's session is the current one.
    let from_phone = sessions(server, &phone.token).await?;
    let current: Vec<&str> = from_phone.iter().filter(|s| s["current"] == true).filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(current, [phone.session_id.as_str()]);
    assert!(!listed.iter().any(|s| s["id"] == stranger.session_id.as_str()), "another account's session is listed");

    // Sign out the phone from here.
    let path = format!("/api/v1/sessions/{}", phone.session_id);
    call(server, Method::DELETE, &path, Some(&me.token), None).await?.expect(204, "", "sign out the phone")?;
    get(server, "/api/v1/me", Some(&phone.token)).await?.expect(401, "unauthenticated", "the phone's token")?;
    assert_eq!(me_status(server, &me.token).await?, 200);
    assert_eq!(me_status(server, &tablet.token).await?, 200);
    assert_eq!(sessions(server, &me.token).await?.len(), 2);
    call(server, Method::DELETE, &path, Some(&me.token), None).await?.expect(404, "not_found", "signed out twice")?;

    // Another account's session is not mine to end.
    let path = format!("/api/v1/sessions/{}", stranger.session_id);
    call(server, Method::DELETE, &path, Some(&me.token), None).await?.expect(404, "not_found", "another's session")?;
    assert_eq!(me_status(server, &stranger.token).await?, 200, "another account's session was ended");

    // Sign out everywhere, this session included.
    let all = call(server, Method::DELETE, "/api/v1/sessions", Some(&me.token), None).await?.expect(204, "", "all")?;
    assert!(all.header(SET_COOKIE).is_some_and(|c| c.contains("Max-Age=0")), "the cookie is not cleared");
    for (name, token) in [("this", &me.token), ("phone", &phone.token), ("tablet", &tablet.token)] {
        get(server, "/api/v1/me", Some(token)).await?.expect(401, "unauthenticated", &format!("{name} after all"))?;
    }
    assert_eq!(me_status(server, &stranger.token).await?, 200, "another account was signed out too");
    Ok(())
}

async fn changing_the_password_keeps_this_session_and_ends_the_others(postgres: bool) -> TestResult {
    let run = Running::start(postgres, &[]).await?;
    let server = &run.server;
    let me = run.guardian("change@example.com").await?;
    let other = api::login(server, &me.email, PASSWORD).await?;

    change_password(server, &me.token, OTHER_PASSWORD, NEW_PASSWORD)
        .await?
        .expect(401, "invalid_credentials", "wrong current password")?;
    assert_eq!(me_status(server, &other.token).await?, 200, "a refused change ended a session");
    call(server, Method::PUT, "/api/v1/me/password", None, Some(json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD})))
        .await?
        .expect(401, "unauthenticated", "change without a session")?;

    change_password(server, &me.token, PASSWORD, NEW_PASSWORD).await?.expect(204, "", "change")?;
    assert_eq!(me_status(server, &me.token).await?, 200, "this session was ended");
    get(server, "/api/v1/me", Some(&other.token)).await?.expect(401, "unauthenticated", "the other session")?;
    let left = sessions(server, &me.token).await?;
    assert_eq!(left.len(), 1, "{left:?}");
    login(server, &me.email, PASSWORD).await?.expect(401, "invalid_credentials", "old password")?;
    login(server, &me.email, NEW_PASSWORD).await?.expect(201, "", "new password")?;
    Ok(())
}

// ---- 6. cookie sessions ---------------------------------------------------------------------------

/// The session cookie a login answer sets: (the whole header, the token in it).
fn session_cookie(reply: &Reply) -> Fallible<(String, String)> {
    let header = reply.header(SET_COOKIE).ok_or("login set no cookie")?.to_owned();
    let token = header
        .split(';')
        .next()
        .and_then(|pair| pair.trim().strip_prefix("cubby_session="))
        .ok_or_else(|| format!("not the session cookie: {header}"))?
        .to_owned();
    Ok((header, token))
}

/// Checks the attributes every session cookie must carry; returns its Max-Age.
fn assert_cookie_attributes(header: &str) -> Fallible<u64> {
    let attributes: Vec<&str> = header.split(';').skip(1).map(str::trim).collect();
    for wanted in ["Path=/", "HttpOnly", "SameSite=Strict"] {
        assert!(attributes.contains(&wanted), "{wanted} missing: {header}");
    }
    let max_age = attributes
        .iter()
        .find_map(|a| a.strip_prefix("Max-Age="))
        .ok_or_else(|| format!("no Max-Age: {header}"))?
        .parse::<u64>()?;
    assert!(max_age > 0, "{header}");
    assert!(!attributes.iter().any(|a| a.starts_with("Domain")), "a Domain widens the cookie: {header}");
    Ok(max_age)
}

fn with_cookie(server: &Server, method: Method, path: &str, token: &str) -> Fallible<RequestBuilder> {
    Ok(request(server, method, path, None)?.header(COOKIE, format!("cubby_session={token}")))
}

async fn the_portal_signs_in_with_a_cookie_and_changes_need_the_csrf_token(postgres: bool) -> TestResult {
    let run = Running::start(postgres, &[]).await?;
    let server = &run.server;
    run.guardian("portal@example.com").await?;

    let reply = login(server, "portal@example.com", PASSWORD).await?.expect(201, "", "login")?;
    let (header, token) = session_cookie(&reply)?;
    assert_eq!(Some(token.as_str()), reply.body["token"].as_str(), "the cookie holds another token");
    let max_age = assert_cookie_attributes(&header)?;
    assert_eq!(max_age, 30 * 86_400, "the default session lifetime is 30 days: {header}");
    assert!(!header.contains("Secure"), "Secure over plain http would lose the cookie: {header}");
    let csrf = reply.body["csrf_token"].as_str().ok_or("no csrf_token")?.to_owned();
    assert!(!csrf.is_empty() && csrf != token);

    // Reading needs the cookie only.
    let me = send(with_cookie(server, Method::GET, "/api/v1/me", &token)?).await?.expect(200, "", "cookie GET")?;
    assert_eq!(me.body["email"], "portal@example.com");
    send(request(server, Method::GET, "/api/v1/me", None)?.header(COOKIE, "cubby_session=".to_owned() + &"0".repeat(43)))
        .await?
        .expect(401, "unauthenticated", "made-up cookie")?;

    // Changing needs the CSRF token too.
    let create = |csrf: Option<&str>| -> Fallible<RequestBuilder> {
        let mut request = with_cookie(server, Method::POST, "/api/v1/families", &token)?.json(&json!({"name": "The Otters"}));
        if let Some(csrf) = csrf {
            request = request.header("X-CSRF-Token", csrf);
        }
        Ok(request)
    };
    send(create(None)?).await?.expect(403, "csrf_rejected", "no CSRF token")?;
    send(create(Some("0".repeat(64).as_str()))?).await?.expect(403, "csrf_rejected", "wrong CSRF token")?;
    send(create(Some(token.as_str()))?).await?.expect(403, "csrf_rejected", "the session token as CSRF token")?;
    let created = send(create(Some(csrf.as_str()))?).await?.expect(201, "", "right CSRF token")?;
    let listed = send(with_cookie(server, Method::GET, "/api/v1/families", &token)?).await?.expect(200, "", "list")?;
    let families = listed.body.as_array().ok_or("families is not a list")?;
    assert_eq!(families.len(), 1, "a refused request created a family: {}", listed.text);
    assert_eq!(families.first().map(|f| &f["id"]), Some(&created.body["id"]));

    // Another session's CSRF token does not fit this one.
    let other = api::login(server, "portal@example.com", PASSWORD).await?;
    send(create(Some(other.csrf.as_str()))?).await?.expect(403, "csrf_rejected", "another session's CSRF token")?;
    // A bearer token needs no CSRF token (no browser sends it by itself).
    post(server, "/api/v1/families", Some(&other.token), json!({"name": "The Herons"}))
        .await?
        .expect(201, "", "bearer POST")?;

    // Signing out everywhere by cookie needs the CSRF token as well, and clears the cookie.
    send(with_cookie(server, Method::DELETE, "/api/v1/sessions", &token)?).await?.expect(403, "csrf_rejected", "sign out")?;
    let out = send(with_cookie(server, Method::DELETE, "/api/v1/sessions", &token)?.header("X-CSRF-Token", &csrf))
        .await?
        .expect(204, "", "sign out with CSRF")?;
    let cleared = out.header(SET_COOKIE).ok_or("no cookie cleared")?;
    assert!(cleared.starts_with("cubby_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    send(with_cookie(server, Method::GET, "/api/v1/me", &token)?).await?.expect(401, "unauthenticated", "after sign-out")?;
    Ok(())
}

async fn over_tls_the_session_cookie_is_secure(postgres: bool) -> TestResult {
    let run = Running::start(postgres, &["--tls-self-signed"]).await?;
    let server = &run.server;
    assert!(server.base_url.starts_with("https://"), "{}", server.base_url);
    run.guardian("secure@example.com").await?;

    let reply = login(server, "secure@example.com", PASSWORD).await?.expect(201, "", "login over TLS")?;
    let (header, token) = session_cookie(&reply)?;
    assert_cookie_attributes(&header)?;
    assert!(header.split(';').map(str::trim).any(|a| a == "Secure"), "no Secure over https: {header}");
    send(with_cookie(server, Method::GET, "/api/v1/me", &token)?).await?.expect(200, "", "cookie GET over TLS")?;
    Ok(())
}

// ---- 7. password reset ---------------------------------------------------------------------------

async fn a_password_reset_signs_out_everywhere_and_its_link_works_once(postgres: bool) -> TestResult {
    let run = Running::start(postgres, &[]).await?;
    let server = &run.server;
    let outbox = run.outbox();
    let me = run.guardian("forgetful@example.com").await?;
    let other = api::login(server, &me.email, PASSWORD).await?;

    request_reset(server, "forgetful@example.com").await?.expect(202, "", "reset request")?;
    await_mail(&outbox, "forgetful@example.com", RESET_SUBJECT)?;
    let reset_mails = mails(&outbox, "forgetful@example.com", RESET_SUBJECT)?;
    assert_eq!(reset_mails.len(), 1);
    let token = outbox_token(&outbox, "forgetful@example.com", RESET_SUBJECT)?;
    // Asking alone changes nothing.
    assert_eq!(me_status(server, &me.token).await?, 200);
    login(server, &me.email, PASSWORD).await?.expect(201, "", "old password before the reset")?;

    confirm_reset(server, &token, NEW_PASSWORD).await?.expect(204, "", "confirm reset")?;
    for (name, session) in [("first", &me), ("second", &other)] {
        get(server, "/api/v1/me", Some(&session.token)).await?.expect(401, "unauthenticated", &format!("{name} session"))?;
    }
    login(server, &me.email, PASSWORD).await?.expect(401, "invalid_credentials", "old password after the reset")?;
    login(server, &me.email, NEW_PASSWORD).await?.expect(201, "", "new password")?;

    // Single use: the same link cannot set the password again.
    confirm_reset(server, &token, OTHER_PASSWORD).await?.expect(400, "invalid_token", "second use")?;
    login(server, &me.email, OTHER_PASSWORD).await?.expect(401, "invalid_credentials", "second use took effect")?;
    login(server, &me.email, NEW_PASSWORD).await?.expect(201, "", "new password still")?;
    // A reset token is not an email-confirmation token either.
    request_reset(server, "forgetful@example.com").await?.expect(202, "", "second reset request")?;
    await_mails(&outbox, "forgetful@example.com", RESET_SUBJECT, 2)?;
    let second = outbox_token(&outbox, "forgetful@example.com", RESET_SUBJECT)?;
    assert_ne!(second, token, "a new request sends a new token");
    post(server, "/api/v1/accounts/verify-email", None, json!({"token": second}))
        .await?
        .expect(400, "invalid_token", "reset token used to verify")?;
    confirm_reset(server, &second, OTHER_PASSWORD).await?.expect(204, "", "second token after the misuse")?;
    Ok(())
}

/// Regression: an older reset link must not work once the password was reset with a newer one.
async fn an_older_reset_link_is_void_once_the_password_was_reset(postgres: bool) -> TestResult {
    let run = Running::start(postgres, &[]).await?;
    let server = &run.server;
    let outbox = run.outbox();
    run.guardian("twice@example.com").await?;
    request_reset(server, "twice@example.com").await?.expect(202, "", "first reset request")?;
    await_mails(&outbox, "twice@example.com", RESET_SUBJECT, 1)?;
    let first = outbox_token(&outbox, "twice@example.com", RESET_SUBJECT)?;
    request_reset(server, "twice@example.com").await?.expect(202, "", "second reset request")?;
    await_mails(&outbox, "twice@example.com", RESET_SUBJECT, 2)?;
    let second = outbox_token(&outbox, "twice@example.com", RESET_SUBJECT)?;
    assert_ne!(first, second);
    confirm_reset(server, &second, NEW_PASSWORD).await?.expect(204, "", "newer link")?;
    confirm_reset(server, &first, OTHER_PASSWORD).await?.expect(400, "invalid_token", "older link after the reset")?;
    login(server, "twice@example.com", NEW_PASSWORD).await?.expect(201, "", "the reset password stands")?;
    Ok(())
}

/// Regression: one's own successful logins must not wipe an address's failed guesses at others.
async fn own_logins_do_not_reset_an_address_guessing_at_others(postgres: bool) -> TestResult {
    let run = Running::start(postgres, &[]).await?;
    let server = &run.server;
    let own = run.guardian("sprayer@example.com").await?;
    let mut guesses = Vec::new();
    for _ in 0..3 {
        for victim in ["victim.one@example.com", "victim.two@example.com"] {
            guesses.push(login(server, victim, "wrong-guess-password-1").await?.status);
        }
        let _ = login(server, &own.email, PASSWORD).await?;
    }
    assert_eq!(guesses, vec![401, 401, 401, 401, 401, 429], "the sixth guess from one address is throttled");
    Ok(())
}

/// Runs one statement with two text parameters on either engine.
async fn execute(url: &str, sql: &'static str, first: &str, second: &str) -> Fallible<u64> {
    let affected = if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        let n = sqlx::query(sql).bind(first).bind(second).execute(&mut conn).await?.rows_affected();
        conn.close().await?;
        n
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let n = sqlx::query(sql).bind(first).bind(second).execute(&mut conn).await?.rows_affected();
        conn.close().await?;
        n
    };
    Ok(affected)
}

async fn stored_password_hash(url: &str, account_id: &str) -> Fallible<String> {
    const SQL: &str = "SELECT password_hash FROM accounts WHERE id = $1";
    let hash: String = if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        sqlx::query_scalar(SQL).bind(account_id).fetch_one(&mut conn).await?
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query_scalar(SQL).bind(account_id).fetch_one(&mut conn).await?
    };
    Ok(hash)
}

/// A hash made with weaker parameters (as an older server would have) is upgraded at login.
async fn a_password_hashed_with_weaker_parameters_is_rehashed_at_login(postgres: bool) -> TestResult {
    let run = Running::start(postgres, &[]).await?;
    let me = run.guardian("upgrade@example.com").await?;
    let keys = cubby_crypto::key_files::KeyDir::open(&run.dirs.keys(), &run.dirs.data())?;
    let old_hasher = cubby_crypto::PasswordHasher::with_params(keys.password_pepper()?, 8 * 1024, 1, 1)?;
    let weak = old_hasher.hash(PASSWORD)?;
    assert!(weak.contains("m=8192,t=1,p=1"), "{weak}");
    let updated = execute(&run.url, "UPDATE accounts SET password_hash = $1 WHERE id = $2", &weak, &me.account_id).await?;
    assert_eq!(updated, 1);

    login(&run.server, "upgrade@example.com", PASSWORD).await?.expect(201, "", "login with the old hash")?;
    let upgraded = stored_password_hash(&run.url, &me.account_id).await?;
    assert!(upgraded.contains("m=19456,t=2,p=1"), "not re-hashed: {upgraded}");
    assert_ne!(upgraded, weak);
    login(&run.server, "upgrade@example.com", PASSWORD).await?.expect(201, "", "login with the new hash")?;
    Ok(())
}

// ---- 8. idle accounts ----------------------------------------------------------------------------

// Long enough that signing up and in stays well inside the idle time on a loaded machine.
const IDLE_ARGS: [&str; 6] = ["--account-idle", "4s", "--account-idle-grace", "3s", "--idle-sweep-every", "1s"];
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

async fn an_idle_account_is_warned_then_deleted_with_its_family(postgres: bool) -> TestResult {
    let run = Running::start(postgres, &IDLE_ARGS).await?;
    let server = &run.server;
    let outbox = run.outbox();
    let url = run.url.clone();
    let idle = run.guardian("idle@example.com").await?;
    let family = api::family(server, &idle, "The Sleepy Dormice").await?;
    assert_eq!(count(&url, "SELECT COUNT(*) FROM families WHERE id = $1", &family).await?, 1);

    let mailbox = outbox.as_path();
    eventually("the idle warning", IDLE_TIMEOUT, move || async move {
        Ok(!mails(mailbox, "idle@example.com", IDLE_SUBJECT)?.is_empty())
    })
    .await?;
    let warning = mails(&outbox, "idle@example.com", IDLE_SUBJECT)?;
    let warning = warning.first().ok_or("no warning")?;
    assert!(warning.body.contains("sign in"), "the warning does not say how to keep the account: {}", warning.body);
    let (db, id) = (url.as_str(), idle.account_id.as_str());
    eventually("the idle account's deletion", IDLE_TIMEOUT, move || async move { Ok(!account_exists(db, id).await?) })
        .await?;

    // Its family, of which it was the only guardian, went with it, keys first.
    assert_eq!(count(&url, "SELECT COUNT(*) FROM families WHERE id = $1", &family).await?, 0, "family kept");
    assert_eq!(count(&url, "SELECT COUNT(*) FROM family_keys WHERE family_id = $1", &family).await?, 0, "key kept");
    assert_eq!(count(&url, "SELECT COUNT(*) FROM account_keys WHERE account_id = $1", &idle.account_id).await?, 0);
    assert_eq!(count(&url, "SELECT COUNT(*) FROM sessions WHERE account_id = $1", &idle.account_id).await?, 0);
    // Its session is gone, and signing in answers as for an address nobody uses.
    get(server, "/api/v1/me", Some(&idle.token)).await?.expect(401, "unauthenticated", "the deleted account's session")?;
    let deleted = login(server, "idle@example.com", PASSWORD).await?;
    let unknown = login(server, "never-existed@example.com", PASSWORD).await?;
    assert_indistinguishable("login to a deleted account", &deleted, &unknown);
    deleted.expect(401, "invalid_credentials", "login to a deleted account")?;

    // The address can sign up again as a new account: a fresh confirmation, no "already have".
    // (Only the mail is checked: with idle times of seconds, the sweeper could delete the
    // new account too before a slow machine finished signing it in.)
    sign_up(server, "idle@example.com", PASSWORD).await?.expect(202, "", "sign-up again")?;
    await_mails(&outbox, "idle@example.com", CONFIRM_SUBJECT, 2)?;
    assert!(
        mails(&outbox, "idle@example.com", ALREADY_SUBJECT)?.is_empty(),
        "the deleted account was still known at sign-up"
    );

    let (_, url, dirs) = run.stop()?;
    let actions: Vec<String> = audit_rows(&url).await?.into_iter().map(|r| r.action).collect();
    for action in ["account.idle_warned", "family.deleted_idle", "account.idle_deleted"] {
        assert!(actions.iter().any(|a| a == action), "{action} not audited: {actions:?}");
    }
    verify_audit(&dirs, &url)?;
    Ok(())
}

async fn signing_in_after_the_idle_warning_keeps_the_account(postgres: bool) -> TestResult {
    let run = Running::start(postgres, &IDLE_ARGS).await?;
    let server = &run.server;
    let outbox = run.outbox();
    let url = run.url.clone();
    // Left alone, for comparison; signed in before the other, so warned no later.
    let left_alone = run.guardian("left-alone@example.com").await?;
    let returning = run.guardian("returning@example.com").await?;

    let mailbox = outbox.as_path();
    eventually("the warning to the returning guardian", IDLE_TIMEOUT, move || async move {
        Ok(!mails(mailbox, "returning@example.com", IDLE_SUBJECT)?.is_empty())
    })
    .await?;
    assert!(idle_warned_at(&url, &returning.account_id).await?.is_some(), "warned but not marked");
    login(server, "returning@example.com", PASSWORD).await?.expect(201, "", "sign in after the warning")?;
    assert_eq!(idle_warned_at(&url, &returning.account_id).await?, None, "signing in did not clear the warning");

    // The account left alone is deleted on schedule; the returning one is still there.
    let (db, id) = (url.as_str(), left_alone.account_id.as_str());
    eventually("the deletion of the account left alone", IDLE_TIMEOUT, move || async move {
        Ok(!account_exists(db, id).await?)
    })
    .await?;
    assert!(account_exists(&url, &returning.account_id).await?, "deleted although it signed in after the warning");
    login(server, "returning@example.com", PASSWORD).await?.expect(201, "", "sign in again")?;
    Ok(())
}

// ---- 9. audit -----------------------------------------------------------------------------------

async fn sign_up_and_logins_are_audited_without_emails_or_passwords(postgres: bool) -> TestResult {
    const EMAIL: &str = "zebrafinch.audit.7731@example.com";
    const UNKNOWN: &str = "pemberton.ghost.4412@example.com";
    const WRONG: &str = "marmalade-sextant-quibble";
    let run = Running::start(postgres, &[]).await?;
    let server = &run.server;
    let me = run.guardian(EMAIL).await?;
    login(server, EMAIL, WRONG).await?.expect(401, "invalid_credentials", "wrong password")?;
    login(server, UNKNOWN, WRONG).await?.expect(401, "invalid_credentials", "unknown address")?;
    sign_up(server, EMAIL, NEW_PASSWORD).await?.expect(202, "", "second sign-up")?;
    request_reset(server, UNKNOWN).await?.expect(202, "", "reset for an unknown address")?;

    let (logs, url, dirs) = run.stop()?;
    let said = verify_audit(&dirs, &url)?;
    assert!(!said.is_empty());

    let rows = audit_rows(&url).await?;
    let actor = format!("account:{}", me.account_id);
    let has = |action: &str, actor: &str| rows.iter().any(|r| r.action == action && r.actor == actor);
    assert!(has("account.created", &actor), "{rows:#?}");
    assert!(has("account.email_verified", &actor), "{rows:#?}");
    assert!(has("login.succeeded", &actor), "{rows:#?}");
    assert!(has("login.failed", &actor), "wrong password not audited: {rows:#?}");
    assert!(has("login.failed", "anonymous"), "unknown address not audited: {rows:#?}");
    let created = rows.iter().filter(|r| r.action == "account.created").count();
    assert_eq!(created, 1, "the second sign-up created an account: {rows:#?}");
    let succeeded = rows.iter().find(|r| r.action == "login.succeeded").ok_or("no login.succeeded")?;
    assert!(succeeded.detail.contains(&me.session_id), "the login names its session: {}", succeeded.detail);
    assert!(!succeeded.detail.contains(&me.token), "the session token is in the log");

    let secrets = [EMAIL, "zebrafinch", UNKNOWN, "pemberton", PASSWORD, WRONG, NEW_PASSWORD, me.token.as_str()];
    for row in &rows {
        let line = format!("{} {} {} {}", row.actor, row.action, row.family_id.as_deref().unwrap_or(""), row.detail);
        for secret in secrets {
            assert!(!line.to_lowercase().contains(&secret.to_lowercase()), "audit row holds {secret:?}: {line}");
        }
    }
    assert!(logs.lines().any(|l| l.contains("/api/v1/sessions")), "the log does not cover the requests: {logs}");
    for line in logs.lines() {
        serde_json::from_str::<Value>(line).map_err(|e| format!("not a JSON log line ({e}): {line}"))?;
        for secret in secrets {
            assert!(!line.to_lowercase().contains(&secret.to_lowercase()), "the log holds {secret:?}: {line}");
        }
    }
    Ok(())
}

on_both_engines!(
    sign_up_login_and_reset_do_not_reveal_who_has_an_account,
    the_sixth_login_after_five_failures_is_throttled_even_with_the_right_password,
    weak_passwords_are_refused_at_sign_up_reset_and_change,
    an_unconfirmed_account_cannot_sign_in_and_the_link_works_once,
    sessions_can_be_listed_and_signed_out_one_or_all,
    changing_the_password_keeps_this_session_and_ends_the_others,
    the_portal_signs_in_with_a_cookie_and_changes_need_the_csrf_token,
    over_tls_the_session_cookie_is_secure,
    a_password_reset_signs_out_everywhere_and_its_link_works_once,
    an_idle_account_is_warned_then_deleted_with_its_family,
    signing_in_after_the_idle_warning_keeps_the_account,
    sign_up_and_logins_are_audited_without_emails_or_passwords,
    an_older_reset_link_is_void_once_the_password_was_reset,
    own_logins_do_not_reset_an_address_guessing_at_others,
    a_password_hashed_with_weaker_parameters_is_rehashed_at_login,
);
