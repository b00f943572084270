//! The guardian's side of the API, for scenario tests: sign up, confirm by the emailed
//! link (read from the outbox), sign in, create a family, consent, add children.

use std::path::Path;

use serde_json::{Value, json};

use super::{Fallible, Server, client};

/// A signed-in guardian.
#[derive(Clone, Debug)]
pub struct Session {
    pub email: String,
    pub password: String,
    pub token: String,
    pub csrf: String,
    pub session_id: String,
    pub account_id: String,
}

/// The newest 64-hex-digit token in a mail to `to` whose subject contains `subject`,
/// waiting up to 10 s for it: sign-up and reset mail goes out after the server answers.
pub fn outbox_token(outbox: &Path, to: &str, subject: &str) -> Fallible<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match newest_token(outbox, to, subject) {
            Ok(token) => return Ok(token),
            Err(error) if std::time::Instant::now() > deadline => return Err(error),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(25)),
        }
    }
}

fn newest_token(outbox: &Path, to: &str, subject: &str) -> Fallible<String> {
    // Through the server's own reader, which skips a message still being written.
    let mails = cubby_server::mail::read_outbox(outbox)?;
    mails
        .iter()
        .rev()
        .filter(|mail| mail.to == to && mail.subject.contains(subject))
        .find_map(|mail| mail.body.split(|c: char| !c.is_ascii_hexdigit()).find(|w| w.len() == 64))
        .map(str::to_owned)
        .ok_or_else(|| format!("no mail to {to} about {subject:?} in {}", outbox.display()).into())
}

/// A JSON call with an optional bearer token: the status and the JSON answer (`null`
/// when the body is not JSON).
pub async fn call(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Fallible<(u16, Value)> {
    let mut request = client()?.request(method, server.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

pub async fn post(server: &Server, path: &str, token: Option<&str>, body: Value) -> Fallible<(u16, Value)> {
    call(server, reqwest::Method::POST, path, token, Some(body)).await
}

pub async fn put(server: &Server, path: &str, token: Option<&str>, body: Value) -> Fallible<(u16, Value)> {
    call(server, reqwest::Method::PUT, path, token, Some(body)).await
}

pub async fn delete(server: &Server, path: &str, token: Option<&str>) -> Fallible<(u16, Value)> {
    call(server, reqwest::Method::DELETE, path, token, None).await
}

pub async fn get(server: &Server, path: &str, token: Option<&str>) -> Fallible<(u16, Value)> {
    call(server, reqwest::Method::GET, path, token, None).await
}

/// `adult` (signed in, with the given address) becomes an approved contact of the child:
/// its guardian invites the address, the adult accepts the mailed token.
pub async fn adult_contact(
    server: &Server,
    outbox: &Path,
    guardian: &Session,
    family: &str,
    child: &str,
    adult: &Session,
    email: &str,
) -> Fallible<Value> {
    let invite = format!("/api/v1/families/{family}/children/{child}/contacts/invite");
    let (status, body) = post(server, &invite, Some(&guardian.token), json!({"email": email})).await?;
    if status != 202 {
        return Err(format!("the contact invitation answered {status}: {body}").into());
    }
    let token = outbox_token(outbox, email, "invites you")?;
    let (status, body) = post(server, "/api/v1/contact-invites/accept", Some(&adult.token), json!({"token": token})).await?;
    if status != 200 {
        return Err(format!("accepting the contact invitation answered {status}: {body}").into());
    }
    Ok(body)
}

/// How many mails to `to` about `subject` are in the outbox now (no waiting: for checking
/// that a refused form sent nothing).
pub fn mails(outbox: &Path, to: &str, subject: &str) -> usize {
    let Ok(mails) = cubby_server::mail::read_outbox(outbox) else { return 0 };
    mails.iter().filter(|mail| mail.to == to && mail.subject.contains(subject)).count()
}

/// Signs up, confirms the address from the outbox and signs in.
pub async fn guardian(server: &Server, outbox: &Path, email: &str, password: &str) -> Fallible<Session> {
    let subject = "Confirm your email";
    let before = mails(outbox, email, subject);
    let (status, body) = post(server, "/api/v1/accounts", None, json!({"email": email, "password": password})).await?;
    if status != 202 {
        return Err(format!("sign-up answered {status}: {body}").into());
    }
    // The mail goes out after the answer: wait for this sign-up's own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while mails(outbox, email, subject) <= before {
        if std::time::Instant::now() > deadline {
            return Err(format!("no confirmation mail to {email}").into());
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let token = outbox_token(outbox, email, subject)?;
    let (status, body) = post(server, "/api/v1/accounts/verify-email", None, json!({"token": token})).await?;
    if status != 204 {
        return Err(format!("verification answered {status}: {body}").into());
    }
    login(server, email, password).await
}

pub async fn login(server: &Server, email: &str, password: &str) -> Fallible<Session> {
    let (status, body) = post(server, "/api/v1/sessions", None, json!({"email": email, "password": password})).await?;
    if status != 201 {
        return Err(format!("login answered {status}: {body}").into());
    }
    let (_, me) = get(server, "/api/v1/me", body["token"].as_str()).await?;
    Ok(Session {
        email: email.to_owned(),
        password: password.to_owned(),
        token: string(&body["token"])?,
        csrf: string(&body["csrf_token"])?,
        session_id: string(&body["session_id"])?,
        account_id: string(&me["account_id"])?,
    })
}

/// Creates a family and returns its id.
pub async fn family(server: &Server, session: &Session, name: &str) -> Fallible<String> {
    let (status, body) = post(server, "/api/v1/families", Some(&session.token), json!({"name": name})).await?;
    if status != 201 {
        return Err(format!("family creation answered {status}: {body}").into());
    }
    string(&body["id"])
}

/// Gives consent to the current notice by email-plus (confirming from the outbox).
pub async fn consent(server: &Server, outbox: &Path, session: &Session, family: &str) -> Fallible<()> {
    let (_, notice) = get(server, "/api/v1/privacy-notice", None).await?;
    let version = notice["version"].as_u64().ok_or("notice without version")?;
    let path = format!("/api/v1/families/{family}/consent");
    let (status, body) = post(server, &path, Some(&session.token), json!({"notice_version": version, "method": "email_plus"})).await?;
    if status != 202 {
        return Err(format!("consent answered {status}: {body}").into());
    }
    let token = outbox_token(outbox, &session.email, "Confirm your parental consent")?;
    let (status, body) = post(server, "/api/v1/consent/confirm", None, json!({"token": token})).await?;
    if status != 204 {
        return Err(format!("consent confirmation answered {status}: {body}").into());
    }
    Ok(())
}

/// Adds a child and returns its id.
pub async fn child(server: &Server, session: &Session, family: &str, nickname: &str, age_band: &str) -> Fallible<String> {
    let path = format!("/api/v1/families/{family}/children");
    let (status, body) = post(server, &path, Some(&session.token), json!({"nickname": nickname, "age_band": age_band})).await?;
    if status != 201 {
        return Err(format!("child creation answered {status}: {body}").into());
    }
    string(&body["id"])
}

fn string(value: &Value) -> Fallible<String> {
    value.as_str().map(ToOwned::to_owned).ok_or_else(|| format!("expected a string, got {value}").into())
}

/// A guardian makes a one-time contact code for `child` of `family`; returns the code.
pub async fn contact_code(server: &Server, session: &Session, family: &str, child: &str) -> Fallible<String> {
    let path = format!("/api/v1/families/{family}/children/{child}/contact-codes");
    let (status, body) = post(server, &path, Some(&session.token), json!({})).await?;
    if status != 201 {
        return Err(format!("the contact code answered {status}: {body}").into());
    }
    string(&body["code"])
}

/// A guardian redeems another family's contact `code` for `child` of `family` (their
/// approval); returns their side of the contact as the server shows it.
pub async fn redeem_contact_code(server: &Server, session: &Session, family: &str, child: &str, code: &str) -> Fallible<Value> {
    let path = format!("/api/v1/families/{family}/children/{child}/contacts/redeem");
    let (status, body) = post(server, &path, Some(&session.token), json!({"code": code})).await?;
    if status != 201 {
        return Err(format!("redeeming the contact code answered {status}: {body}").into());
    }
    Ok(body)
}

/// The id of the one contact of `child` of `family`, which must have `status`.
pub async fn only_contact(server: &Server, session: &Session, family: &str, child: &str, status: &str) -> Fallible<String> {
    let path = format!("/api/v1/families/{family}/children/{child}/contacts");
    let (code, body) = get(server, &path, Some(&session.token)).await?;
    match body.as_array().map(Vec::as_slice) {
        Some([contact]) if code == 200 && contact["status"] == status => string(&contact["id"]),
        _ => Err(format!("expected one contact, {status}; the list answered {code}: {body}").into()),
    }
}

/// A guardian invites the adult at `email` to be a contact of `child` of `family`; returns
/// the token from the mail.
pub async fn contact_invite(server: &Server, outbox: &Path, session: &Session, family: &str, child: &str, email: &str) -> Fallible<String> {
    let path = format!("/api/v1/families/{family}/children/{child}/contacts/invite");
    let (status, body) = post(server, &path, Some(&session.token), json!({"email": email})).await?;
    if status != 202 {
        return Err(format!("the contact invitation answered {status}: {body}").into());
    }
    outbox_token(outbox, email, "invites you")
}

/// What the API answers `guardian` at `path`; anything but a 200 is an error.
pub async fn read(server: &Server, guardian: &Session, path: &str) -> Fallible<Value> {
    let (status, body) = get(server, path, Some(&guardian.token)).await?;
    if status != 200 {
        return Err(format!("GET {path} answered {status}: {body}").into());
    }
    Ok(body)
}

/// The nicknames of the family's children, as the API lists them.
pub async fn nicknames(server: &Server, guardian: &Session, family: &str) -> Fallible<Vec<String>> {
    let children = read(server, guardian, &format!("/api/v1/families/{family}/children")).await?;
    let children = children.as_array().ok_or("children are not a list")?;
    Ok(children.iter().filter_map(|c| c["nickname"].as_str().map(ToOwned::to_owned)).collect())
}

/// The family's devices, as the API lists them.
pub async fn devices(server: &Server, guardian: &Session, family: &str) -> Fallible<Vec<Value>> {
    let devices = read(server, guardian, &format!("/api/v1/families/{family}/devices")).await?;
    Ok(devices.as_array().ok_or("devices are not a list")?.clone())
}
