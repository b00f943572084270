//! A browser without JavaScript, for the portal's HTTP-level tests: it keeps the cookies it
//! is given, follows no redirect by itself (so tests see them), posts forms back with the
//! tokens the pages carry, and checks every answer's security headers.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::api::{self, Session};
use super::{Dirs, Fallible, Server};

pub const PASSWORD: &str = "correct horse battery staple";

/// The policy every portal page carries.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'; report-uri /csp-reports";

/// The server on SQLite, or on a fresh PostgreSQL database when `postgres`.
pub async fn start(dirs: &Dirs, postgres: bool) -> Fallible<Server> {
    if postgres {
        let url = cubby_store::testing::fresh_postgres_database().await?;
        Ok(Server::start(&dirs.args(Some(&url)))?)
    } else {
        Ok(Server::start(&dirs.args(None))?)
    }
}

/// A guardian with a family whose consent is given.
pub async fn guardian_with_family(server: &Server, outbox: &Path, email: &str, family: &str) -> Fallible<(Session, String)> {
    let guardian = api::guardian(server, outbox, email, PASSWORD).await?;
    let id = api::family(server, &guardian, family).await?;
    api::consent(server, outbox, &guardian, &id).await?;
    Ok((guardian, id))
}

/// A guardian with a family whose consent is given, and a child in it.
pub async fn family_with_child(server: &Server, outbox: &Path, email: &str, family: &str, child: &str) -> Fallible<(Session, String, String)> {
    let (guardian, id) = guardian_with_family(server, outbox, email, family).await?;
    let child = api::child(server, &guardian, &id, child, "6_8").await?;
    Ok((guardian, id, child))
}

/// One page as the browser got it.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    /// The CSRF token of the form with this `id`.
    pub fn form_csrf(&self, id: &str) -> Fallible<String> {
        let open = format!(r#"id="{id}""#);
        let at = self.body.find(&open).ok_or_else(|| format!("the page has no form {id}"))?;
        let marker = r#"name="csrf" value=""#;
        let start = self.body[at..].find(marker).ok_or("the form has no CSRF token")? + at + marker.len();
        let end = self.body[start..].find('"').ok_or("unterminated CSRF value")?;
        Ok(self.body[start..start + end].to_owned())
    }

    /// The CSRF token the page's first form carries.
    pub fn csrf(&self) -> Fallible<String> {
        let marker = r#"name="csrf" value=""#;
        let start = self.body.find(marker).ok_or("the page has no form with a CSRF token")? + marker.len();
        let end = self.body[start..].find('"').ok_or("unterminated CSRF value")?;
        Ok(self.body[start..start + end].to_owned())
    }

    pub fn is_redirect_to(&self, path: &str) -> bool {
        self.status == 303 && self.location.as_deref() == Some(path)
    }
}

/// A browser: keeps the cookies it is sent, follows no redirect by itself (so tests see
/// them), and checks every answer's security headers.
pub struct Browser<'a> {
    pub server: &'a Server,
    pub http: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    pub fn new(server: &'a Server) -> Fallible<Self> {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { server, http, cookies: BTreeMap::new() })
    }

    pub async fn get(&mut self, path: &str) -> Fallible<Page> {
        let request = self.http.get(self.server.url(path));
        self.send(request).await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Fallible<Page> {
        let request =
            self.http.post(self.server.url(path)).header("content-type", "application/x-www-form-urlencoded").body(form_body(fields));
        self.send(request).await
    }

    async fn send(&mut self, mut request: reqwest::RequestBuilder) -> Fallible<Page> {
        if !self.cookies.is_empty() {
            let header: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("cookie", header.join("; "));
        }
        let response = request.send().await?;
        let headers = response.headers().clone();
        for (name, expected) in [
            ("content-security-policy", CSP),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            ("x-content-type-options", "nosniff"),
        ] {
            let got = headers.get(name).and_then(|v| v.to_str().ok());
            assert_eq!(got, Some(expected), "{name} on {}", response.url());
        }
        // Over HTTPS the browser is told to stay on it, and cookies never travel in clear.
        let tls = self.server.base_url.starts_with("https://");
        let hsts = headers.get("strict-transport-security").and_then(|v| v.to_str().ok());
        assert_eq!(hsts, tls.then_some("max-age=31536000"), "HSTS on {}", response.url());
        for cookie in headers.get_all("set-cookie") {
            let cookie = cookie.to_str()?;
            let pair = cookie.split(';').next().unwrap_or_default();
            let (name, value) = pair.split_once('=').ok_or("a cookie without a value")?;
            if value.is_empty() || cookie.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
                assert_eq!(cookie.contains("; Secure"), tls, "{cookie}");
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let status = response.status().as_u16();
        let location = headers.get("location").and_then(|v| v.to_str().ok()).map(ToOwned::to_owned);
        Ok(Page { status, location, body: response.text().await? })
    }

    /// Signs in through the form; returns the dashboard.
    pub async fn sign_in(&mut self, email: &str, password: &str) -> Fallible<Page> {
        let form = self.get("/sign-in").await?;
        assert_eq!(form.status, 200);
        let csrf = form.csrf()?;
        let signed_in = self.post("/sign-in", &[("csrf", &csrf), ("email", email), ("password", password)]).await?;
        if !signed_in.is_redirect_to("/") {
            return Err(format!("signing in answered {}: {}", signed_in.status, signed_in.body).into());
        }
        self.get("/").await
    }
}

/// `application/x-www-form-urlencoded`, as a browser encodes a form.
pub fn form_body(fields: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => (b as char).to_string(),
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}
