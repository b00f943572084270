//! Families, consent and children through the real binary: no child data before consent,
//! a materially changed privacy notice asks again, co-guardians, export, and deletion that
//! shreds (a restored copy of a deleted row does not open). On SQLite and PostgreSQL; the
//! at-rest scan of the data directory on SQLite, whose files can be read, and of a
//! `pg_dump` of the whole database on PostgreSQL.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use crate::common::api::{self, Session};
use crate::common::{Dirs, Fallible, Server, TestResult, client};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection;

// ---------------------------------------------------------------------------------------
// Talking to the server
// ---------------------------------------------------------------------------------------

/// An answer: status, parsed JSON (or null) and the raw text (to look for what must not be in it).
struct Reply {
    status: u16,
    body: Value,
    text: String,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

async fn call(server: &Server, method: Method, path: &str, session: &Session, body: Option<Value>) -> Fallible<Reply> {
    let mut request = client()?.request(method, server.url(path)).bearer_auth(&session.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Reply { status, body, text })
}

async fn get(server: &Server, path: &str, session: &Session) -> Fallible<Reply> {
    call(server, Method::GET, path, session, None).await
}

async fn post(server: &Server, path: &str, session: &Session, body: Value) -> Fallible<Reply> {
    call(server, Method::POST, path, session, Some(body)).await
}

async fn put(server: &Server, path: &str, session: &Session, body: Value) -> Fallible<Reply> {
    call(server, Method::PUT, path, session, Some(body)).await
}

async fn delete(server: &Server, path: &str, session: &Session) -> Fallible<Reply> {
    call(server, Method::DELETE, path, session, None).await
}

fn family_path(family: &str, rest: &str) -> String {
    format!("/api/v1/families/{family}{rest}")
}

fn child_path(family: &str, child: &str, rest: &str) -> String {
    format!("/api/v1/families/{family}/children/{child}{rest}")
}

/// The `action`s of a list of security events.
fn actions(events: &Value) -> Vec<String> {
    events.as_array().into_iter().flatten().filter_map(|e| e["action"].as_str().map(ToOwned::to_owned)).collect()
}

/// The nicknames in a list of children.
fn nicknames(children: &Value) -> Vec<String> {
    children.as_array().into_iter().flatten().filter_map(|c| c["nickname"].as_str().map(ToOwned::to_owned)).collect()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array().into_iter().flatten().filter_map(|c| c["id"].as_str().map(ToOwned::to_owned)).collect()
}

/// Is there a mail to `to` whose subject contains `subject`?
fn mail_to(outbox: &Path, to: &str, subject: &str) -> bool {
    api::mails(outbox, to, subject) > 0
}

/// Invites `email` to the family and returns the token from the invitation mail.
async fn invite(server: &Server, outbox: &Path, by: &Session, family: &str, email: &str) -> Fallible<String> {
    let reply = post(server, &family_path(family, "/invites"), by, json!({ "email": email })).await?;
    assert_eq!(reply.status, 202, "invitation: {}", reply.text);
    api::outbox_token(outbox, &email.trim().to_lowercase(), "invited")
}

// ---------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------

/// Fresh directories, the database URL the server uses, and the arguments to start it with.
struct Setup {
    dirs: Dirs,
    url: String,
    args: Vec<String>,
}

async fn setup(postgres: bool) -> Fallible<Setup> {
    let dirs = Dirs::new()?;
    if postgres {
        let url = cubby_store::testing::fresh_postgres_database().await?;
        let args = dirs.args(Some(&url));
        Ok(Setup { dirs, url, args })
    } else {
        // The server's default: cubby.db in the data directory.
        let url = dirs.database_url();
        let args = dirs.args(None);
        Ok(Setup { dirs, url, args })
    }
}

/// A direct connection to the server's database, as someone with database access has.
enum Db {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

/// Runs the same code on either engine's connection.
macro_rules! with_db {
    ($db:expr, $conn:ident => $body:expr) => {
        match $db {
            Db::Sqlite($conn) => $body,
            Db::Postgres($conn) => $body,
        }
    };
}

/// Every column of a `children` row, in table order.
type ChildRecord = (String, String, i64, Vec<u8>, Vec<u8>, bool);
const CHILD_COLUMNS: [&str; 6] = ["id", "family_id", "created_at", "nickname_sealed", "age_band_sealed", "supervised"];
/// Every column of a `child_keys` row.
type ChildKeyRecord = (String, String, String, Vec<u8>, i64);
const CHILD_KEY_COLUMNS: [&str; 5] = ["child_id", "family_id", "master_key_id", "wrapped_key", "created_at"];
/// Every column of a `families` row.
type FamilyRecord = (String, i64, Vec<u8>, Option<i64>, bool);
const FAMILY_COLUMNS: [&str; 5] = ["id", "created_at", "name_sealed", "message_retention_days", "keep_history"];
/// Every column of a `family_guardians` row.
type GuardianRecord = (String, String, i64);
const GUARDIAN_COLUMNS: [&str; 3] = ["family_id", "account_id", "joined_at"];

impl Db {
    async fn connect(url: &str) -> Fallible<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(sqlx::SqliteConnection::connect(url).await?))
        } else {
            Ok(Self::Postgres(sqlx::PgConnection::connect(url).await?))
        }
    }

    async fn close(self) -> TestResult {
        with_db!(self, conn => conn.close().await?);
        Ok(())
    }

    /// The table's columns, in order.
    async fn columns(&mut self, table: &str) -> Fallible<Vec<String>> {
        let rows: Vec<(String,)> = match self {
            Self::Sqlite(conn) => {
                sqlx::query_as("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                    .bind(table)
                    .fetch_all(&mut *conn)
                    .await?
            }
            Self::Postgres(conn) => {
                sqlx::query_as(
                    "SELECT column_name::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(&mut *conn)
                .await?
            }
        };
        Ok(rows.into_iter().map(|(name,)| name).collect())
    }

    /// Every table that has a column of this name.
    async fn tables_with_column(&mut self, column: &str) -> Fallible<BTreeSet<String>> {
        let rows: Vec<(String,)> = match self {
            Self::Sqlite(conn) => {
                sqlx::query_as(
                    "SELECT m.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p \
                     WHERE m.type = 'table' AND p.name = $1",
                )
                .bind(column)
                .fetch_all(&mut *conn)
                .await?
            }
            Self::Postgres(conn) => {
                sqlx::query_as(
                    "SELECT table_name::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND column_name = $1",
                )
                .bind(column)
                .fetch_all(&mut *conn)
                .await?
            }
        };
        Ok(rows.into_iter().map(|(name,)| name).collect())
    }

    /// How many rows of `table` have `column = value`. Table and column come from this
    /// test or from the database's own catalogue, never from outside.
    async fn count(&mut self, table: &str, column: &str, value: &str) -> Fallible<i64> {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1");
        let (n,): (i64,) =
            with_db!(self, conn => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(value).fetch_one(&mut *conn).await?);
        Ok(n)
    }

    async fn child_record(&mut self, id: &str) -> Fallible<ChildRecord> {
        let sql = "SELECT id, family_id, created_at, nickname_sealed, age_band_sealed, supervised FROM children WHERE id = $1";
        Ok(with_db!(self, conn => sqlx::query_as(sql).bind(id).fetch_one(&mut *conn).await?))
    }

    async fn restore_child(&mut self, row: &ChildRecord) -> TestResult {
        let sql = "INSERT INTO children (id, family_id, created_at, nickname_sealed, age_band_sealed, supervised) \
                   VALUES ($1, $2, $3, $4, $5, $6)";
        with_db!(self, conn => {
            sqlx::query(sql)
                .bind(row.0.clone())
                .bind(row.1.clone())
                .bind(row.2)
                .bind(row.3.clone())
                .bind(row.4.clone())
                .bind(row.5)
                .execute(&mut *conn)
                .await?;
        });
        Ok(())
    }

    async fn child_key_record(&mut self, child: &str) -> Fallible<ChildKeyRecord> {
        let sql =
            "SELECT child_id, family_id, master_key_id, wrapped_key, created_at FROM child_keys WHERE child_id = $1";
        Ok(with_db!(self, conn => sqlx::query_as(sql).bind(child).fetch_one(&mut *conn).await?))
    }

    async fn restore_child_key(&mut self, row: &ChildKeyRecord) -> TestResult {
        let sql = "INSERT INTO child_keys (child_id, family_id, master_key_id, wrapped_key, created_at) \
                   VALUES ($1, $2, $3, $4, $5)";
        with_db!(self, conn => {
            sqlx::query(sql)
                .bind(row.0.clone())
                .bind(row.1.clone())
                .bind(row.2.clone())
                .bind(row.3.clone())
                .bind(row.4)
                .execute(&mut *conn)
                .await?;
        });
        Ok(())
    }

    async fn family_record(&mut self, id: &str) -> Fallible<FamilyRecord> {
        let sql = "SELECT id, created_at, name_sealed, message_retention_days, keep_history FROM families WHERE id = $1";
        Ok(with_db!(self, conn => sqlx::query_as(sql).bind(id).fetch_one(&mut *conn).await?))
    }

    async fn restore_family(&mut self, row: &FamilyRecord) -> TestResult {
        let sql = "INSERT INTO families (id, created_at, name_sealed, message_retention_days, keep_history) VALUES ($1, $2, $3, $4, $5)";
        with_db!(self, conn => {
            sqlx::query(sql).bind(row.0.clone()).bind(row.1).bind(row.2.clone()).bind(row.3).bind(row.4).execute(&mut *conn).await?;
        });
        Ok(())
    }

    async fn guardian_records(&mut self, family: &str) -> Fallible<Vec<GuardianRecord>> {
        let sql = "SELECT family_id, account_id, joined_at FROM family_guardians WHERE family_id = $1";
        Ok(with_db!(self, conn => sqlx::query_as(sql).bind(family).fetch_all(&mut *conn).await?))
    }

    async fn restore_guardian(&mut self, row: &GuardianRecord) -> TestResult {
        let sql = "INSERT INTO family_guardians (family_id, account_id, joined_at) VALUES ($1, $2, $3)";
        with_db!(self, conn => {
            sqlx::query(sql).bind(row.0.clone()).bind(row.1.clone()).bind(row.2).execute(&mut *conn).await?;
        });
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// 1. Consent before child data
// ---------------------------------------------------------------------------------------

async fn consent_comes_before_child_data(postgres: bool) -> TestResult {
    let setup = setup(postgres).await?;
    let server = Server::start(&setup.args)?;
    let outbox = setup.dirs.outbox();
    let alice = api::guardian(&server, &outbox, "alice@example.org", "a long and unusual passphrase").await?;
    let family = api::family(&server, &alice, "The Robinsons").await?;
    let children = family_path(&family, "/children");
    let consent = family_path(&family, "/consent");
    let sam = json!({"nickname": "Sam", "age_band": "6_8"});

    // No child before consent.
    let reply = post(&server, &children, &alice, sam.clone()).await?;
    assert_eq!((reply.status, reply.code()), (403, "consent_required"), "{}", reply.text);
    let reply = get(&server, &children, &alice).await?;
    assert_eq!((reply.status, reply.body.clone()), (200, json!([])), "{}", reply.text);

    // The notice is public and complete.
    let (status, notice) = api::get(&server, "/api/v1/privacy-notice", None).await?;
    assert_eq!(status, 200, "{notice}");
    let version = notice["version"].as_u64().ok_or("notice without a version")?;
    assert_eq!(version, 1, "{notice}");
    assert_eq!(notice["material_since"].as_u64(), Some(1), "{notice}");
    assert!(notice["operator_contact"].as_str().is_some_and(|c| !c.is_empty()), "{notice}");
    let sections = notice["sections"].as_array().ok_or("notice without sections")?;
    assert!(!sections.is_empty(), "{notice}");
    for section in sections {
        assert!(section["title"].as_str().is_some_and(|t| !t.is_empty()), "{section}");
        assert!(section["body"].as_str().is_some_and(|b| !b.is_empty()), "{section}");
    }

    // The status before any consent: nothing valid, third parties off.
    let reply = get(&server, &consent, &alice).await?;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["collection_valid"], false, "{}", reply.text);
    assert_eq!(reply.body["third_party"], false, "third-party consent is off by default: {}", reply.text);
    assert_eq!(reply.body["current_notice_version"], 1, "{}", reply.text);
    assert_eq!(reply.body["records"], json!([]), "{}", reply.text);
    assert!(reply.body["methods"].as_array().is_some_and(|m| m.contains(&json!("email_plus"))), "{}", reply.text);

    // Third-party consent needs consent to collection first.
    let third_party = family_path(&family, "/third-party-consent");
    let reply = put(&server, &third_party, &alice, json!({"enabled": true})).await?;
    assert_eq!((reply.status, reply.code()), (403, "consent_required"), "{}", reply.text);

    // Only the current notice can be consented to, and only by a method the server offers.
    let reply = post(&server, &consent, &alice, json!({"notice_version": version + 1, "method": "email_plus"})).await?;
    assert_eq!((reply.status, reply.code()), (409, "conflict"), "{}", reply.text);
    let reply = post(&server, &consent, &alice, json!({"notice_version": 0, "method": "email_plus"})).await?;
    assert_eq!(reply.status, 409, "{}", reply.text);
    let reply = post(&server, &consent, &alice, json!({"notice_version": version, "method": "card"})).await?;
    assert_eq!((reply.status, reply.code()), (501, "method_unavailable"), "{}", reply.text);
    let reply = post(&server, &children, &alice, sam.clone()).await?;
    assert_eq!(reply.status, 403, "refused consent attempts record nothing: {}", reply.text);

    // Email plus, confirmed from the outbox: now a child can be added.
    api::consent(&server, &outbox, &alice, &family).await?;
    let reply = get(&server, &consent, &alice).await?;
    assert_eq!(reply.body["collection_valid"], true, "{}", reply.text);
    assert_eq!(reply.body["third_party"], false, "consent to collection is not consent to disclosure: {}", reply.text);
    let records = reply.body["records"].as_array().ok_or("no records")?;
    assert_eq!(records.len(), 1, "{}", reply.text);
    assert_eq!(records[0]["kind"], "collection");
    assert_eq!(records[0]["method"], "email_plus");
    assert_eq!(records[0]["notice_version"], "1");
    assert_eq!(records[0]["given_by"], alice.account_id.as_str());
    assert_eq!(records[0]["withdrawn_at"], Value::Null);
    assert!(mail_to(&outbox, &alice.email, "Your parental consent is recorded"), "a second mail confirms the consent");

    let reply = post(&server, &children, &alice, sam.clone()).await?;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.body["nickname"], "Sam");
    assert_eq!(reply.body["age_band"], "6_8");
    assert_eq!(reply.body["family_id"], family.as_str());

    // Third parties, separately and only now.
    let reply = put(&server, &third_party, &alice, json!({"enabled": true})).await?;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let reply = get(&server, &consent, &alice).await?;
    assert_eq!(reply.body["third_party"], true, "{}", reply.text);
    assert_eq!(reply.body["collection_valid"], true, "{}", reply.text);

    // Withdrawal stops collection, and takes third-party consent with it.
    let reply = delete(&server, &consent, &alice).await?;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let reply = get(&server, &consent, &alice).await?;
    assert_eq!(reply.body["collection_valid"], false, "{}", reply.text);
    assert_eq!(reply.body["third_party"], false, "{}", reply.text);
    let records = reply.body["records"].as_array().ok_or("no records")?;
    assert!(!records.is_empty() && records.iter().all(|r| r["withdrawn_at"].is_i64()), "{}", reply.text);
    let reply = post(&server, &children, &alice, json!({"nickname": "Kit", "age_band": "9_12"})).await?;
    assert_eq!((reply.status, reply.code()), (403, "consent_required"), "{}", reply.text);
    let reply = put(&server, &third_party, &alice, json!({"enabled": true})).await?;
    assert_eq!((reply.status, reply.code()), (403, "consent_required"), "{}", reply.text);

    let (status, logs) = server.stop()?;
    assert!(status.success(), "{logs}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. A material change to the notice asks again
// ---------------------------------------------------------------------------------------

fn write_notice(dirs: &Dirs, version: u32, material_since: u32) -> Fallible<PathBuf> {
    let path = dirs.root.path().join(format!("notice-{version}.toml"));
    let text = format!(
        "version = {version}\nmaterial_since = {material_since}\n\
         operator_contact = \"Test Operator, privacy@operator.example\"\n\n\
         [[sections]]\ntitle = \"What we collect\"\nbody = \"A nickname and an age band (edition {version}).\"\n\n\
         [[sections]]\ntitle = \"Parents' rights\"\nbody = \"See, export and delete everything.\"\n"
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

fn with_notice(setup: &Setup, notice: &Path) -> Vec<String> {
    let mut args = setup.args.clone();
    args.extend(["--privacy-notice".to_owned(), notice.display().to_string()]);
    args
}

async fn a_material_notice_change_asks_again(postgres: bool) -> TestResult {
    let setup = setup(postgres).await?;
    let outbox = setup.dirs.outbox();

    // Version 1: consent, add a child.
    let server = Server::start(&with_notice(&setup, &write_notice(&setup.dirs, 1, 1)?))?;
    let (_, notice) = api::get(&server, "/api/v1/privacy-notice", None).await?;
    assert_eq!(notice["version"], 1, "{notice}");
    assert_eq!(notice["operator_contact"], "Test Operator, privacy@operator.example", "the file's notice: {notice}");
    assert_eq!(notice["sections"].as_array().map(Vec::len), Some(2), "{notice}");
    assert_eq!(notice["sections"][0]["title"], "What we collect", "{notice}");
    let alice = api::guardian(&server, &outbox, "alice@example.org", "a long and unusual passphrase").await?;
    let family = api::family(&server, &alice, "The Robinsons").await?;
    api::consent(&server, &outbox, &alice, &family).await?;
    api::child(&server, &alice, &family, "Sam", "6_8").await?;
    let (status, logs) = server.stop()?;
    assert!(status.success(), "{logs}");

    // Version 2, not material: the consent to version 1 still covers it.
    let server = Server::start(&with_notice(&setup, &write_notice(&setup.dirs, 2, 1)?))?;
    let (_, notice) = api::get(&server, "/api/v1/privacy-notice", None).await?;
    assert_eq!((notice["version"].clone(), notice["material_since"].clone()), (json!(2), json!(1)), "{notice}");
    let reply = get(&server, &family_path(&family, "/consent"), &alice).await?;
    assert_eq!(reply.status, 200, "the session outlives a restart: {}", reply.text);
    assert_eq!(reply.body["collection_valid"], true, "{}", reply.text);
    assert_eq!(reply.body["current_notice_version"], 2, "{}", reply.text);
    api::child(&server, &alice, &family, "Kit", "9_12").await?;
    let (status, logs) = server.stop()?;
    assert!(status.success(), "{logs}");

    // Version 3, material: every family is asked again before any new child data.
    let server = Server::start(&with_notice(&setup, &write_notice(&setup.dirs, 3, 3)?))?;
    let children = family_path(&family, "/children");
    let reply = post(&server, &children, &alice, json!({"nickname": "Bo", "age_band": "under_6"})).await?;
    assert_eq!((reply.status, reply.code()), (403, "consent_required"), "{}", reply.text);
    let reply = get(&server, &family_path(&family, "/consent"), &alice).await?;
    assert_eq!(reply.body["collection_valid"], false, "{}", reply.text);
    assert_eq!(reply.body["current_notice_version"], 3, "{}", reply.text);
    // What is held stays visible to the guardian.
    let reply = get(&server, &children, &alice).await?;
    assert_eq!((reply.status, nicknames(&reply.body).len()), (200, 2), "{}", reply.text);
    // Consent to the old version is refused; consent to the current one works.
    let reply =
        post(&server, &family_path(&family, "/consent"), &alice, json!({"notice_version": 2, "method": "email_plus"}))
            .await?;
    assert_eq!(reply.status, 409, "{}", reply.text);
    api::consent(&server, &outbox, &alice, &family).await?;
    let reply = get(&server, &family_path(&family, "/consent"), &alice).await?;
    assert_eq!(reply.body["collection_valid"], true, "{}", reply.text);
    let versions: BTreeSet<String> = reply.body["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["notice_version"].as_str().map(ToOwned::to_owned))
        .collect();
    assert_eq!(versions, BTreeSet::from(["1".to_owned(), "3".to_owned()]), "{}", reply.text);
    api::child(&server, &alice, &family, "Bo", "under_6").await?;
    let reply = get(&server, &children, &alice).await?;
    assert_eq!(nicknames(&reply.body).len(), 3, "{}", reply.text);
    let (status, logs) = server.stop()?;
    assert!(status.success(), "{logs}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. Families and co-guardians
// ---------------------------------------------------------------------------------------

async fn families_and_co_guardians(postgres: bool) -> TestResult {
    let setup = setup(postgres).await?;
    let server = Server::start(&setup.args)?;
    let outbox = setup.dirs.outbox();
    let alice = api::guardian(&server, &outbox, "alice@example.org", "a long and unusual passphrase").await?;
    let bob = api::guardian(&server, &outbox, "bob@example.org", "another quite long passphrase").await?;
    let carol = api::guardian(&server, &outbox, "carol@example.org", "carol's own long passphrase").await?;

    // Create, list, get.
    let reply = post(&server, "/api/v1/families", &alice, json!({"name": "The Robinsons"})).await?;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.body["name"], "The Robinsons");
    let family = reply.body["id"].as_str().ok_or("no family id")?.to_owned();
    assert_eq!(reply.body["guardians"].as_array().map(Vec::len), Some(1), "{}", reply.text);
    assert_eq!(reply.body["guardians"][0]["account_id"], alice.account_id.as_str());
    let reply = get(&server, "/api/v1/families", &alice).await?;
    assert_eq!((reply.status, ids(&reply.body)), (200, vec![family.clone()]), "{}", reply.text);
    let reply = get(&server, &family_path(&family, ""), &alice).await?;
    assert_eq!((reply.status, reply.body["name"].clone()), (200, json!("The Robinsons")), "{}", reply.text);
    let reply = get(&server, "/api/v1/families", &bob).await?;
    assert_eq!((reply.status, reply.body.clone()), (200, json!([])), "{}", reply.text);
    for path in ["", "/consent", "/children", "/security-events", "/export"] {
        let reply = get(&server, &family_path(&family, path), &bob).await?;
        assert_eq!((reply.status, reply.code()), (404, "not_found"), "{path} for a stranger: {}", reply.text);
    }
    let reply = post(&server, "/api/v1/families", &alice, json!({"name": "  "})).await?;
    assert_eq!(reply.status, 422, "{}", reply.text);

    // The last guardian cannot leave.
    let membership = family_path(&family, "/membership");
    let reply = delete(&server, &membership, &alice).await?;
    assert_eq!((reply.status, reply.code()), (409, "last_guardian"), "{}", reply.text);

    // An invitation opened by an account with another address is refused and joins nobody.
    let token = invite(&server, &outbox, &alice, &family, "bob@example.org").await?;
    let reply = post(&server, "/api/v1/invites/accept", &carol, json!({"token": token})).await?;
    assert_eq!((reply.status, reply.code()), (400, "invalid_token"), "{}", reply.text);
    let reply = get(&server, &family_path(&family, ""), &carol).await?;
    assert_eq!(reply.status, 404, "{}", reply.text);
    let reply = post(&server, "/api/v1/invites/accept", &carol, json!({"token": "00".repeat(32)})).await?;
    assert_eq!((reply.status, reply.code()), (400, "invalid_token"), "{}", reply.text);

    // The invited address accepts the same invitation: another account's attempt did not use it up.
    let reply = post(&server, "/api/v1/invites/accept", &bob, json!({"token": token})).await?;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["id"], family.as_str());
    assert_eq!(reply.body["guardians"].as_array().map(Vec::len), Some(2), "{}", reply.text);
    let reply = post(&server, "/api/v1/invites/accept", &bob, json!({"token": token})).await?;
    assert_eq!((reply.status, reply.code()), (400, "invalid_token"), "an invitation is single-use: {}", reply.text);

    // Both see the family.
    for who in [&alice, &bob] {
        let reply = get(&server, "/api/v1/families", who).await?;
        assert_eq!(ids(&reply.body), vec![family.clone()], "{}", reply.text);
        let reply = get(&server, &family_path(&family, ""), who).await?;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let guardians: BTreeSet<String> = reply.body["guardians"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g["account_id"].as_str().map(ToOwned::to_owned))
            .collect();
        assert_eq!(guardians, BTreeSet::from([alice.account_id.clone(), bob.account_id.clone()]), "{}", reply.text);
    }

    // The co-guardian consents and adds a child; then leaves.
    api::consent(&server, &outbox, &bob, &family).await?;
    api::child(&server, &bob, &family, "Pip", "under_6").await?;
    let reply = delete(&server, &membership, &bob).await?;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let reply = get(&server, &family_path(&family, ""), &bob).await?;
    assert_eq!(reply.status, 404, "{}", reply.text);
    let reply = get(&server, "/api/v1/families", &bob).await?;
    assert_eq!(reply.body, json!([]), "{}", reply.text);
    let reply = get(&server, &family_path(&family, ""), &alice).await?;
    assert_eq!(reply.body["guardians"].as_array().map(Vec::len), Some(1), "{}", reply.text);
    let reply = delete(&server, &membership, &alice).await?;
    assert_eq!((reply.status, reply.code()), (409, "last_guardian"), "{}", reply.text);

    // The security events tell what happened, and nothing personal.
    let reply = get(&server, &family_path(&family, "/security-events"), &alice).await?;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seen = actions(&reply.body);
    for action in
        ["family.created", "family.guardian_invited", "family.guardian_joined", "consent.given", "child.created"]
    {
        assert!(seen.iter().any(|a| a == action), "{action} missing from {seen:?}");
    }
    assert!(seen.iter().any(|a| a == "family.guardian_left"), "{seen:?}");
    for personal in ["alice@example.org", "bob@example.org", "carol@example.org", "Pip", "The Robinsons"] {
        assert!(!reply.text.to_lowercase().contains(&personal.to_lowercase()), "{personal} in {}", reply.text);
    }
    let actors: BTreeSet<&str> =
        reply.body.as_array().into_iter().flatten().filter_map(|e| e["actor"].as_str()).collect();
    let alice_actor = format!("account:{}", alice.account_id);
    let bob_actor = format!("account:{}", bob.account_id);
    assert!(actors.contains(alice_actor.as_str()) && actors.contains(bob_actor.as_str()), "{actors:?}");

    let (status, logs) = server.stop()?;
    assert!(status.success(), "{logs}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. Export
// ---------------------------------------------------------------------------------------

async fn a_guardian_can_export_everything(postgres: bool) -> TestResult {
    let setup = setup(postgres).await?;
    let server = Server::start(&setup.args)?;
    let outbox = setup.dirs.outbox();
    let alice = api::guardian(&server, &outbox, "alice@example.org", "a long and unusual passphrase").await?;
    let bob = api::guardian(&server, &outbox, "bob@example.org", "another quite long passphrase").await?;
    let family = api::family(&server, &alice, "The Robinsons").await?;
    let token = invite(&server, &outbox, &alice, &family, &bob.email).await?;
    let reply = post(&server, "/api/v1/invites/accept", &bob, json!({"token": token})).await?;
    assert_eq!(reply.status, 200, "{}", reply.text);
    api::consent(&server, &outbox, &alice, &family).await?;
    let sam = api::child(&server, &alice, &family, "Sam", "6_8").await?;
    let kit = api::child(&server, &bob, &family, "Kit", "13_17").await?;

    let reply = get(&server, &family_path(&family, "/export"), &alice).await?;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let export = &reply.body;
    assert!(export["exported_at"].is_i64(), "{}", reply.text);
    assert_eq!(export["family"]["id"], family.as_str());
    assert_eq!(export["family"]["name"], "The Robinsons");
    assert_eq!(export["family"]["guardians"].as_array().map(Vec::len), Some(2), "{}", reply.text);
    assert_eq!(export["your_email"], "alice@example.org");
    assert!(!reply.text.contains("bob@example.org"), "a co-guardian's address is theirs: {}", reply.text);
    let mut children: Vec<(String, String, String)> = export["children"]
        .as_array()
        .ok_or("no children")?
        .iter()
        .map(|c| {
            let field = |name: &str| c[name].as_str().unwrap_or_default().to_owned();
            (field("id"), field("nickname"), field("age_band"))
        })
        .collect();
    children.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        children,
        vec![(kit.clone(), "Kit".to_owned(), "13_17".to_owned()), (sam.clone(), "Sam".to_owned(), "6_8".to_owned())],
        "{}",
        reply.text
    );
    assert_eq!(export["consent"]["collection_valid"], true, "{}", reply.text);
    let records = export["consent"]["records"].as_array().ok_or("no consent records")?;
    assert!(
        records.iter().any(|r| r["kind"] == "collection" && r["given_by"] == alice.account_id.as_str()),
        "{}",
        reply.text
    );
    let seen = actions(&export["security_events"]);
    for action in ["family.created", "family.guardian_joined", "consent.given", "child.created"] {
        assert!(seen.iter().any(|a| a == action), "{action} missing from {seen:?}");
    }

    // The co-guardian's export carries their own address, not Alice's.
    let reply = get(&server, &family_path(&family, "/export"), &bob).await?;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["your_email"], "bob@example.org");
    assert!(!reply.text.contains("alice@example.org"), "{}", reply.text);

    // One child's export.
    let reply = get(&server, &child_path(&family, &sam, "/export"), &alice).await?;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.body["exported_at"].is_i64(), "{}", reply.text);
    assert_eq!(reply.body["child"]["id"], sam.as_str());
    assert_eq!(reply.body["child"]["family_id"], family.as_str());
    assert_eq!(reply.body["child"]["nickname"], "Sam");
    assert_eq!(reply.body["child"]["age_band"], "6_8");
    assert!(!reply.text.contains("Kit"), "only that child: {}", reply.text);

    // Exports are audited, and nobody else can make one.
    let reply = get(&server, &family_path(&family, "/security-events"), &alice).await?;
    let seen = actions(&reply.body);
    assert!(seen.iter().any(|a| a == "family.exported") && seen.iter().any(|a| a == "child.exported"), "{seen:?}");
    let carol = api::guardian(&server, &outbox, "carol@example.org", "carol's own long passphrase").await?;
    let reply = get(&server, &family_path(&family, "/export"), &carol).await?;
    assert_eq!(reply.status, 404, "{}", reply.text);
    let reply = get(&server, &child_path(&family, &sam, "/export"), &carol).await?;
    assert_eq!(reply.status, 404, "{}", reply.text);
    let (status, body) = api::get(&server, &family_path(&family, "/export"), None).await?;
    assert_eq!(status, 401, "{body}");

    let (status, logs) = server.stop()?;
    assert!(status.success(), "{logs}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 5. Nothing personal at rest (SQLite)
// ---------------------------------------------------------------------------------------

/// One byte string to look for, and what it is.
struct Needle {
    label: String,
    bytes: Vec<u8>,
}

/// Every form in which `value` could sit in a file: UTF-8 (as given, lowercased, uppercased),
/// UTF-16 LE and BE, hex in both cases, and standard and URL-safe base64, padded and not,
/// at each of the three alignments (the encodings of the value after 0, 1 and 2 bytes of
/// something else, trimmed to the characters that depend on the value alone).
fn encodings(value: &str) -> Vec<Needle> {
    let bytes = value.as_bytes();
    let mut forms: Vec<(String, Vec<u8>)> = vec![
        ("utf-8".to_owned(), bytes.to_vec()),
        ("utf-8 lowercase".to_owned(), value.to_lowercase().into_bytes()),
        ("utf-8 uppercase".to_owned(), value.to_uppercase().into_bytes()),
        ("utf-16le".to_owned(), value.encode_utf16().flat_map(u16::to_le_bytes).collect()),
        ("utf-16be".to_owned(), value.encode_utf16().flat_map(u16::to_be_bytes).collect()),
        ("hex".to_owned(), hex::encode(bytes).into_bytes()),
        ("HEX".to_owned(), hex::encode_upper(bytes).into_bytes()),
        ("base64".to_owned(), STANDARD.encode(bytes).into_bytes()),
        ("base64 unpadded".to_owned(), STANDARD_NO_PAD.encode(bytes).into_bytes()),
        ("base64url".to_owned(), URL_SAFE.encode(bytes).into_bytes()),
        ("base64url unpadded".to_owned(), URL_SAFE_NO_PAD.encode(bytes).into_bytes()),
    ];
    for offset in 0..3usize {
        let mut shifted = vec![0u8; offset];
        shifted.extend_from_slice(bytes);
        // Characters [start, end) carry bits of the value only.
        let start = (8 * offset).div_ceil(6);
        let end = 8 * shifted.len() / 6;
        for (name, engine) in [("base64", &STANDARD_NO_PAD), ("base64url", &URL_SAFE_NO_PAD)] {
            let encoded = engine.encode(&shifted);
            if let Some(core) = encoded.get(start..end) {
                forms.push((format!("{name} at alignment {offset}"), core.as_bytes().to_vec()));
            }
        }
    }
    let mut seen = BTreeSet::new();
    forms
        .into_iter()
        .filter(|(_, bytes)| seen.insert(bytes.clone()))
        .map(|(form, bytes)| Needle { label: format!("{value:?} as {form}"), bytes })
        .collect()
}

/// The labels of the needles found in `haystack` (one pass, indexed by each needle's first
/// four bytes, so hundreds of needles over megabytes stay quick in a debug build).
fn find(haystack: &[u8], needles: &[Needle]) -> Vec<String> {
    let mut by_prefix: HashMap<[u8; 4], Vec<&Needle>> = HashMap::new();
    let mut first_two = vec![false; 1 << 16];
    for needle in needles {
        assert!(needle.bytes.len() >= 4, "{} is too short to look for", needle.label);
        let prefix = [needle.bytes[0], needle.bytes[1], needle.bytes[2], needle.bytes[3]];
        by_prefix.entry(prefix).or_default().push(needle);
        first_two[usize::from(needle.bytes[0]) << 8 | usize::from(needle.bytes[1])] = true;
    }
    let mut found = BTreeSet::new();
    for (at, window) in haystack.windows(4).enumerate() {
        if !first_two[usize::from(window[0]) << 8 | usize::from(window[1])] {
            continue;
        }
        if let Some(candidates) = by_prefix.get(&[window[0], window[1], window[2], window[3]]) {
            for needle in candidates {
                if haystack[at..].starts_with(&needle.bytes) {
                    found.insert(needle.label.clone());
                }
            }
        }
    }
    found.into_iter().collect()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Fallible<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// What each file of the data directory gives away: "file: needle" lines.
fn scan(dir: &Path, needles: &[Needle]) -> Fallible<(Vec<PathBuf>, Vec<String>)> {
    let files = files_under(dir)?;
    let mut leaks = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file)?;
        leaks.extend(find(&bytes, needles).into_iter().map(|label| format!("{}: {label}", file.display())));
    }
    Ok((files, leaks))
}

/// The scan itself finds each encoding wherever it sits, whatever surrounds it.
#[test]
fn the_scan_finds_every_encoding_at_every_alignment() {
    let value = "Wrenna-Bellflower?>~";
    let needles = encodings(value);
    for prefix_len in 0..6usize {
        for suffix_len in 0..4usize {
            // Bytes around the value that make '+', '/', '-' and '_' likely in base64.
            let mut raw: Vec<u8> = (0..prefix_len).map(|i| 0xfb ^ (i as u8)).collect();
            raw.extend_from_slice(value.as_bytes());
            raw.extend((0..suffix_len).map(|i| 0xff ^ (i as u8)));
            for encoded in [STANDARD.encode(&raw), URL_SAFE.encode(&raw), URL_SAFE_NO_PAD.encode(&raw)] {
                let haystack = format!("before {encoded} after");
                assert!(
                    !find(haystack.as_bytes(), &needles).is_empty(),
                    "missed {value:?} in {encoded} (prefix {prefix_len}, suffix {suffix_len})"
                );
            }
        }
    }
    let mut hex_lower = b"x".to_vec();
    hex_lower.extend(hex::encode(value).into_bytes());
    let utf16: Vec<u8> = value.encode_utf16().flat_map(u16::to_be_bytes).collect();
    for haystack in [hex_lower, hex::encode_upper(value).into_bytes(), utf16, value.to_uppercase().into_bytes()] {
        assert!(!find(&haystack, &needles).is_empty(), "missed {value:?} in {haystack:?}");
    }
    assert!(find(b"nothing to see here, honestly", &needles).is_empty());
}

const AT_REST_PASSWORDS: [&str; 3] =
    ["Quartz-Lantern-Meadow-4471", "Velvet-Anchor-Orchard-9023", "Saffron-Beacon-Tundra-5518"];
const AT_REST_EMAILS: [&str; 3] =
    ["ottoline.quillfeather@example.org", "barnaby.marchbanks@example.org", "imogen.thistlewood@example.net"];
/// Invited, never accepts.
const AT_REST_INVITEE: &str = "never.answers.pendleworth@example.com";
const AT_REST_FAMILIES: [&str; 2] = ["Quillfeather-Marchbanks Household", "Thistlewood-Okonkwo Family"];
const AT_REST_KIDS: [&str; 4] = ["Wrenna-Bellflower", "Caspian-Moonwhistle", "Juniper-Starling-Quay", "Tobiah-Fernsworth"];

/// Every personal value the at-rest scenario hands the server.
fn at_rest_values() -> Vec<&'static str> {
    AT_REST_EMAILS
        .iter()
        .chain([AT_REST_INVITEE].iter())
        .chain(AT_REST_FAMILIES.iter())
        .chain(AT_REST_KIDS.iter())
        .chain(AT_REST_PASSWORDS.iter())
        .copied()
        .collect()
}

/// The ids of the at-rest scenario's two families.
struct AtRestFamilies {
    first: String,
    second: String,
}

/// The at-rest scenario, on a running server: three guardians, two families, a co-guardian
/// who joined by invitation, an invitation never accepted, consent, four children,
/// third-party consent, an export and the deletion of a child.
async fn at_rest_scenario(server: &Server, outbox: &Path) -> Fallible<AtRestFamilies> {
    let (emails, families, kids) = (AT_REST_EMAILS, AT_REST_FAMILIES, AT_REST_KIDS);
    let ottoline = api::guardian(server, outbox, emails[0], AT_REST_PASSWORDS[0]).await?;
    let barnaby = api::guardian(server, outbox, emails[1], AT_REST_PASSWORDS[1]).await?;
    let imogen = api::guardian(server, outbox, emails[2], AT_REST_PASSWORDS[2]).await?;
    let first = api::family(server, &ottoline, families[0]).await?;
    let second = api::family(server, &imogen, families[1]).await?;
    let token = invite(server, outbox, &ottoline, &first, emails[1]).await?;
    let reply = post(server, "/api/v1/invites/accept", &barnaby, json!({"token": token})).await?;
    assert_eq!(reply.status, 200, "{}", reply.text);
    // A pending invitation too, to an address that never accepts.
    invite(server, outbox, &imogen, &second, AT_REST_INVITEE).await?;
    api::consent(server, outbox, &ottoline, &first).await?;
    api::consent(server, outbox, &imogen, &second).await?;
    api::child(server, &ottoline, &first, kids[0], "6_8").await?;
    let caspian = api::child(server, &barnaby, &first, kids[1], "9_12").await?;
    api::child(server, &imogen, &second, kids[2], "under_6").await?;
    api::child(server, &imogen, &second, kids[3], "13_17").await?;
    let reply = put(server, &family_path(&second, "/third-party-consent"), &imogen, json!({"enabled": true})).await?;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let reply = get(server, &family_path(&first, "/export"), &barnaby).await?;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.text.contains(kids[0]) && reply.text.contains(emails[1]), "the export holds them: {}", reply.text);
    let reply = delete(server, &child_path(&first, &caspian, ""), &ottoline).await?;
    assert_eq!(reply.status, 204, "{}", reply.text);
    Ok(AtRestFamilies { first, second })
}

#[tokio::test]
async fn nothing_personal_is_in_the_sqlite_files() -> TestResult {
    let setup = setup(false).await?;
    let server = Server::start(&setup.args)?;
    let outbox = setup.dirs.outbox();
    at_rest_scenario(&server, &outbox).await?;
    let emails = AT_REST_EMAILS;
    let values = at_rest_values();
    let needles: Vec<Needle> = values.iter().flat_map(|v| encodings(v)).collect();

    // While the server runs (fresh writes sit in the write-ahead log)...
    let (files, leaks) = scan(&setup.dirs.data(), &needles)?;
    assert!(files.iter().any(|f| f.ends_with("cubby.db-wal")), "expected a write-ahead log while open: {files:?}");
    assert!(leaks.is_empty(), "personal data in the data directory while serving:\n{}", leaks.join("\n"));

    // ...and after a clean stop.
    let (status, logs) = server.stop()?;
    assert!(status.success(), "{logs}");
    let (files, leaks) = scan(&setup.dirs.data(), &needles)?;
    assert!(files.iter().any(|f| f.ends_with("cubby.db")), "{files:?}");
    assert!(leaks.is_empty(), "personal data in the data directory:\n{}", leaks.join("\n"));

    // The scan reads the real files: what is stored in the clear, it finds.
    let plain = [Needle { label: "the table name".to_owned(), bytes: b"children".to_vec() }];
    let (_, found) = scan(&setup.dirs.data(), &plain)?;
    assert!(found.iter().any(|f| f.contains("cubby.db:")), "the scan found nothing it should: {found:?}");
    // ...and the same needles find the addresses in the outbox, where mail holds them in the clear.
    let (_, in_outbox) = scan(&outbox, &needles)?;
    for email in emails {
        assert!(in_outbox.iter().any(|f| f.contains(&format!("{email:?} as utf-8"))), "{email}: {in_outbox:?}");
    }

    // Nor do the server's logs carry any of it.
    let in_logs: Vec<&str> = values.iter().copied().filter(|v| logs.contains(v)).collect();
    assert!(in_logs.is_empty(), "in the logs: {in_logs:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 5b. Nothing personal at rest (PostgreSQL): in a dump of the whole database
// ---------------------------------------------------------------------------------------

/// `pg_dump`, found as scripts/test finds the server's binaries: the newest
/// /usr/lib/postgresql/VERSION/bin, else `pg_dump` on PATH.
fn pg_dump_binary() -> Fallible<PathBuf> {
    let version = |name: &str| -> Option<Vec<u32>> { name.split('.').map(|part| part.parse().ok()).collect() };
    let mut newest: Option<(Vec<u32>, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.filter_map(Result::ok) {
            let binary = entry.path().join("bin").join("pg_dump");
            let Some(number) = entry.file_name().to_str().and_then(version) else { continue };
            if binary.is_file() && newest.as_ref().is_none_or(|(best, _)| number > *best) {
                newest = Some((number, binary));
            }
        }
    }
    if let Some((_, binary)) = newest {
        return Ok(binary);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("pg_dump")).find(|binary| binary.is_file()).ok_or_else(|| {
        "pg_dump not found: neither /usr/lib/postgresql/*/bin/pg_dump nor pg_dump on PATH; \
         install PostgreSQL's client tools (scripts/test installs the Debian package `postgresql`)"
            .into()
    })
}

/// The whole database at `url`, schema and rows, as `pg_dump` writes it in plain SQL.
fn pg_dump(url: &str) -> Fallible<Vec<u8>> {
    let binary = pg_dump_binary()?;
    let output = std::process::Command::new(&binary)
        .args(["--format=plain", "--no-password", "--dbname", url])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("{} failed ({}): {stderr}", binary.display(), output.status).into());
    }
    Ok(output.stdout)
}

#[tokio::test]
async fn nothing_personal_is_in_the_postgres_database() -> TestResult {
    // Fail before any work when the dump cannot be made.
    pg_dump_binary()?;
    let setup = setup(true).await?;
    let server = Server::start(&setup.args)?;
    let outbox = setup.dirs.outbox();
    let families = at_rest_scenario(&server, &outbox).await?;
    let values = at_rest_values();
    let needles: Vec<Needle> = values.iter().flat_map(|v| encodings(v)).collect();
    let (status, logs) = server.stop()?;
    assert!(status.success(), "{logs}");

    // What the first family's name is sealed to, read directly: a bytea value.
    let mut db = Db::connect(&setup.url).await?;
    let (_, _, name_sealed, _, _) = db.family_record(&families.first).await?;
    db.close().await?;
    assert!(name_sealed.len() >= 4, "a sealed name of {} bytes", name_sealed.len());

    let dump = pg_dump(&setup.url)?;
    let leaks = find(&dump, &needles);
    assert!(leaks.is_empty(), "personal data in the PostgreSQL database:\n{}", leaks.join("\n"));

    // The scan reads the real dump: what is stored in the clear, it finds. pg_dump writes
    // bytea as \x and lowercase hex, which the hex needles cover; the sealed name is found so.
    let mut sealed_hex = b"\\x".to_vec();
    sealed_hex.extend(hex::encode(&name_sealed).into_bytes());
    let plain = [
        Needle { label: "the table name".to_owned(), bytes: b"children".to_vec() },
        Needle { label: "the first family's id".to_owned(), bytes: families.first.clone().into_bytes() },
        Needle { label: "the second family's id".to_owned(), bytes: families.second.clone().into_bytes() },
        Needle { label: "the first family's sealed name as bytea".to_owned(), bytes: sealed_hex },
    ];
    let found = find(&dump, &plain);
    let expected: Vec<String> = plain.iter().map(|n| n.label.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    assert_eq!(found, expected, "the scan missed what the dump holds in the clear ({} bytes)", dump.len());
    // ...and the same needles find the addresses in the outbox, where mail holds them in the clear.
    let (_, in_outbox) = scan(&outbox, &needles)?;
    for email in AT_REST_EMAILS {
        assert!(in_outbox.iter().any(|f| f.contains(&format!("{email:?} as utf-8"))), "{email}: {in_outbox:?}");
    }

    // Nor do the server's logs carry any of it.
    let in_logs: Vec<&str> = values.iter().copied().filter(|v| logs.contains(v)).collect();
    assert!(in_logs.is_empty(), "in the logs: {in_logs:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 6. Deletion shreds: a restored copy of the rows does not open
// ---------------------------------------------------------------------------------------

async fn a_deleted_child_stays_unreadable_when_its_row_comes_back(postgres: bool) -> TestResult {
    let setup = setup(postgres).await?;
    let server = Server::start(&setup.args)?;
    let outbox = setup.dirs.outbox();
    let alice = api::guardian(&server, &outbox, "alice@example.org", "a long and unusual passphrase").await?;
    let family = api::family(&server, &alice, "The Robinsons").await?;
    api::consent(&server, &outbox, &alice, &family).await?;
    let gone = api::child(&server, &alice, &family, "Marigold-Gone", "6_8").await?;
    let kept = api::child(&server, &alice, &family, "Kept-Kestrel", "9_12").await?;

    let mut db = Db::connect(&setup.url).await?;
    assert_eq!(db.columns("children").await?, CHILD_COLUMNS.map(String::from).to_vec(), "a saved row has every column");
    let saved = db.child_record(&gone).await?;
    assert_eq!(db.columns("child_keys").await?, CHILD_KEY_COLUMNS.map(String::from).to_vec());
    let saved_key = db.child_key_record(&gone).await?;
    assert_eq!((saved.0.as_str(), saved.1.as_str()), (gone.as_str(), family.as_str()));
    assert_eq!(db.count("child_keys", "child_id", &gone).await?, 1);

    let reply = delete(&server, &child_path(&family, &gone, ""), &alice).await?;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let reply = delete(&server, &child_path(&family, &gone, ""), &alice).await?;
    assert_eq!(reply.status, 404, "a second deletion: {}", reply.text);

    // Gone from every endpoint...
    let check_gone = async |stage: &str| -> TestResult {
        for path in [child_path(&family, &gone, ""), child_path(&family, &gone, "/export")] {
            let reply = get(&server, &path, &alice).await?;
            assert_eq!((reply.status, reply.code()), (404, "not_found"), "{stage}: {path}: {}", reply.text);
            assert!(!reply.text.contains("Marigold"), "{stage}: {}", reply.text);
        }
        let reply = get(&server, &family_path(&family, "/children"), &alice).await?;
        assert_eq!(reply.status, 200, "{stage}: {}", reply.text);
        assert_eq!(ids(&reply.body), vec![kept.clone()], "{stage}: {}", reply.text);
        let reply = get(&server, &family_path(&family, "/export"), &alice).await?;
        assert_eq!(reply.status, 200, "{stage}: {}", reply.text);
        assert_eq!(nicknames(&reply.body["children"]), vec!["Kept-Kestrel".to_owned()], "{stage}: {}", reply.text);
        assert!(!reply.text.contains("Marigold") && !reply.text.contains(&gone), "{stage}: {}", reply.text);
        Ok(())
    };
    check_gone("after deletion").await?;
    // ...and from the database, key included.
    assert_eq!(db.count("children", "id", &gone).await?, 0);
    assert_eq!(db.count("child_keys", "child_id", &gone).await?, 0);
    assert_eq!(db.count("child_keys", "child_id", &kept).await?, 1);

    // A backup brings the row back; without its key it opens for nobody.
    db.restore_child(&saved).await?;
    assert_eq!(db.count("children", "id", &gone).await?, 1);
    check_gone("after restoring the row").await?;
    let reply = get(&server, &child_path(&family, &kept, ""), &alice).await?;
    assert_eq!((reply.status, reply.body["nickname"].clone()), (200, json!("Kept-Kestrel")), "{}", reply.text);

    // The restored row is intact: with its wrapped key put back too, it opens again. So it
    // is the destroyed key, and nothing else, that keeps it closed (which also means that a
    // backup carrying `child_keys`, opened with the same master key, is readable).
    db.restore_child_key(&saved_key).await?;
    let reply = get(&server, &child_path(&family, &gone, ""), &alice).await?;
    assert_eq!((reply.status, reply.body["nickname"].clone()), (200, json!("Marigold-Gone")), "{}", reply.text);
    db.close().await?;

    let reply = get(&server, &family_path(&family, "/security-events"), &alice).await?;
    assert!(actions(&reply.body).iter().any(|a| a == "child.deleted"), "{}", reply.text);
    let (status, logs) = server.stop()?;
    assert!(status.success(), "{logs}");
    assert!(!logs.contains("Marigold"), "{logs}");
    Ok(())
}

async fn a_deleted_family_stays_unreadable_when_its_rows_come_back(postgres: bool) -> TestResult {
    let setup = setup(postgres).await?;
    let server = Server::start(&setup.args)?;
    let outbox = setup.dirs.outbox();
    let alice = api::guardian(&server, &outbox, "alice@example.org", "a long and unusual passphrase").await?;
    let bob = api::guardian(&server, &outbox, "bob@example.org", "another quite long passphrase").await?;
    let family = api::family(&server, &alice, "Hollowmere Household").await?;
    let other = api::family(&server, &bob, "The Neighbours").await?;
    let token = invite(&server, &outbox, &alice, &family, &bob.email).await?;
    let reply = post(&server, "/api/v1/invites/accept", &bob, json!({"token": token})).await?;
    assert_eq!(reply.status, 200, "{}", reply.text);
    invite(&server, &outbox, &alice, &family, "pending@example.org").await?;
    api::consent(&server, &outbox, &alice, &family).await?;
    let child = api::child(&server, &alice, &family, "Rowan-Hollowmere", "9_12").await?;
    api::child(&server, &bob, &family, "Ash-Hollowmere", "under_6").await?;
    let reply = put(&server, &family_path(&family, "/third-party-consent"), &alice, json!({"enabled": true})).await?;
    assert_eq!(reply.status, 204, "{}", reply.text);
    // A consent request never confirmed leaves a pending token for the family.
    let reply =
        post(&server, &family_path(&family, "/consent"), &bob, json!({"notice_version": 1, "method": "email_plus"}))
            .await?;
    assert_eq!(reply.status, 202, "{}", reply.text);
    // The other family, to see that only this one goes.
    api::consent(&server, &outbox, &bob, &other).await?;
    let neighbour_child = api::child(&server, &bob, &other, "Next-Door-Nell", "6_8").await?;

    let mut db = Db::connect(&setup.url).await?;
    for (table, columns) in [("families", &FAMILY_COLUMNS[..]), ("family_guardians", &GUARDIAN_COLUMNS[..])] {
        assert_eq!(db.columns(table).await?, columns.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>(), "{table}");
    }
    // Every table that holds rows of a family, found in the database's own catalogue.
    let tables = db.tables_with_column("family_id").await?;
    let expected = [
        "children",
        "child_keys",
        "family_keys",
        "family_guardians",
        "invites",
        "consents",
        "email_tokens",
        "audit_log",
    ];
    for table in expected {
        assert!(tables.contains(table), "{table} not among {tables:?}");
    }
    for table in expected.iter().filter(|t| **t != "audit_log") {
        assert!(db.count(table, "family_id", &family).await? > 0, "{table} should hold rows of the family before");
    }
    let saved_family = db.family_record(&family).await?;
    let saved_child = db.child_record(&child).await?;
    let saved_guardians = db.guardian_records(&family).await?;
    assert_eq!(saved_guardians.len(), 2);

    // Only a guardian may delete it.
    let carol = api::guardian(&server, &outbox, "carol@example.org", "carol's own long passphrase").await?;
    let reply = delete(&server, &family_path(&family, ""), &carol).await?;
    assert_eq!(reply.status, 404, "{}", reply.text);
    let reply = delete(&server, &family_path(&family, ""), &alice).await?;
    assert_eq!(reply.status, 204, "{}", reply.text);

    let check_gone = async |stage: &str| -> TestResult {
        for who in [&alice, &bob] {
            for path in [
                family_path(&family, ""),
                family_path(&family, "/export"),
                family_path(&family, "/consent"),
                family_path(&family, "/security-events"),
                child_path(&family, &child, ""),
                child_path(&family, &child, "/export"),
            ] {
                let reply = get(&server, &path, who).await?;
                assert_eq!((reply.status, reply.code()), (404, "not_found"), "{stage}: {path}: {}", reply.text);
                assert!(!reply.text.contains("Hollowmere"), "{stage}: {}", reply.text);
            }
        }
        Ok(())
    };
    check_gone("after deletion").await?;
    let reply = get(&server, "/api/v1/families", &alice).await?;
    assert_eq!((reply.status, reply.body.clone()), (200, json!([])), "{}", reply.text);
    let reply = get(&server, "/api/v1/families", &bob).await?;
    assert_eq!((reply.status, ids(&reply.body)), (200, vec![other.clone()]), "{}", reply.text);

    // Every row of the family is gone, keys included; the audit log keeps its (non-personal) entries.
    assert_eq!(db.count("families", "id", &family).await?, 0);
    for table in tables.iter().filter(|t| *t != "audit_log") {
        assert_eq!(db.count(table, "family_id", &family).await?, 0, "{table} still holds rows of the deleted family");
    }
    assert_eq!(db.count("child_keys", "child_id", &child).await?, 0);
    assert!(db.count("audit_log", "family_id", &family).await? > 0);
    // The other family is untouched.
    let reply = get(&server, &child_path(&other, &neighbour_child, ""), &bob).await?;
    assert_eq!((reply.status, reply.body["nickname"].clone()), (200, json!("Next-Door-Nell")), "{}", reply.text);

    // A backup brings back the family's row and a child's: nobody can read them.
    db.restore_family(&saved_family).await?;
    db.restore_child(&saved_child).await?;
    check_gone("after restoring the family and child rows").await?;
    // Even with the memberships back, so that only the missing keys stand in the way.
    for row in &saved_guardians {
        db.restore_guardian(row).await?;
    }
    for who in [&alice, &bob] {
        for path in [family_path(&family, ""), child_path(&family, &child, ""), child_path(&family, &child, "/export")]
        {
            let reply = get(&server, &path, who).await?;
            assert_eq!(
                (reply.status, reply.code()),
                (404, "not_found"),
                "with memberships back: {path}: {}",
                reply.text
            );
            assert!(!reply.text.contains("Hollowmere"), "{}", reply.text);
        }
        let reply = get(&server, &family_path(&family, "/children"), who).await?;
        assert_eq!((reply.status, reply.body.clone()), (200, json!([])), "with memberships back: {}", reply.text);
    }
    db.close().await?;

    let (status, logs) = server.stop()?;
    assert!(status.success(), "{logs}");
    assert!(!logs.contains("Hollowmere"), "{logs}");
    Ok(())
}

async fn a_former_guardian_cannot_confirm_consent(postgres: bool) -> TestResult {
    let setup = setup(postgres).await?;
    let server = Server::start(&setup.args)?;
    let outbox = setup.dirs.outbox();
    let alice = api::guardian(&server, &outbox, "alice.former@example.org", "violet-otter-rides-quietly").await?;
    let bob = api::guardian(&server, &outbox, "bob.former@example.org", "amber-heron-sings-softly").await?;
    let family = api::family(&server, &alice, "The Formers").await?;
    let token = invite(&server, &outbox, &alice, &family, "bob.former@example.org").await?;
    let reply = post(&server, "/api/v1/invites/accept", &bob, json!({"token": token})).await?;
    assert_eq!(reply.status, 200, "{}", reply.text);

    // Bob asks to consent, then leaves the family before following the link.
    let reply = post(&server, &family_path(&family, "/consent"), &bob, json!({"notice_version": 1, "method": "email_plus"})).await?;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let consent_token = api::outbox_token(&outbox, "bob.former@example.org", "Confirm your parental consent")?;
    let reply = delete(&server, &family_path(&family, "/membership"), &bob).await?;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let (status, body) = api::post(&server, "/api/v1/consent/confirm", None, json!({"token": consent_token})).await?;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_token")), "{body}");
    let reply = get(&server, &family_path(&family, "/consent"), &alice).await?;
    assert_eq!(reply.body["collection_valid"], false, "{}", reply.text);
    Ok(())
}

on_both_engines!(
    a_former_guardian_cannot_confirm_consent,
    consent_comes_before_child_data,
    a_material_notice_change_asks_again,
    families_and_co_guardians,
    a_guardian_can_export_everything,
    a_deleted_child_stays_unreadable_when_its_row_comes_back,
    a_deleted_family_stays_unreadable_when_its_rows_come_back,
);
