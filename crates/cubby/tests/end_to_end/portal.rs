//! The parent portal, driven as a browser without JavaScript would: plain HTTP with the
//! cookies it is given, forms posted back with the tokens the pages carry. Every response
//! is checked for the security headers. Each scenario runs on SQLite and PostgreSQL.

use crate::common;

use std::time::Duration;

use crate::common::api::{self, Session};
use crate::common::portal::{Browser, PASSWORD, guardian_with_family, start};
use crate::common::{Dirs, Fallible, Server, TestResult};
use cubby_client::{CubbyClient, DeviceKey, DeviceKind, PairingPoll};
use serde_json::Value;

async fn a_guardian_signs_in_and_adds_a_child(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let (guardian, family) = guardian_with_family(&server, &outbox, "ann@example.com", "The Robinsons").await?;
    api::child(&server, &guardian, &family, "<script>alert(1)</script>", "6_8").await?;
    let mut browser = Browser::new(&server)?;

    // No session: every page sends the browser to sign in.
    assert!(browser.get("/").await?.is_redirect_to("/sign-in"));
    let refused = browser.post(&format!("/families/{family}/children"), &[("nickname", "Sam"), ("age_band", "6_8")]).await?;
    assert!(refused.is_redirect_to("/sign-in"), "{}", refused.status);

    // The sign-in form links the privacy notice and labels its fields.
    let form = browser.get("/sign-in").await?;
    assert!(form.body.contains(r#"href="/api/v1/privacy-notice""#));
    assert!(form.body.contains(r#"<label for="email">"#) && form.body.contains(r#"<label for="password">"#));
    // A sign-in posted from elsewhere (without this form's token) is refused.
    let forged = browser.post("/sign-in", &[("email", "ann@example.com"), ("password", PASSWORD)]).await?;
    assert_eq!(forged.status, 403);
    assert!(!browser.cookies.contains_key("cubby_session"));
    // A wrong password is explained next to the form, which keeps the address typed.
    let csrf = form.csrf()?;
    let wrong = browser.post("/sign-in", &[("csrf", &csrf), ("email", "ann@example.com"), ("password", "nope")]).await?;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("the email address or the password is not right"), "{}", wrong.body);
    assert!(wrong.body.contains(r#"value="ann@example.com""#));

    let dashboard = browser.sign_in("ann@example.com", PASSWORD).await?;
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.body.contains("The Robinsons"), "{}", dashboard.body);
    assert!(dashboard.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{}", dashboard.body);
    assert!(!dashboard.body.contains("<script>"), "an unescaped child nickname: {}", dashboard.body);
    assert!(dashboard.body.contains(r#"href="/api/v1/privacy-notice""#));
    let csrf = dashboard.csrf()?;

    // Without the form's token, or with another, a change is refused and nothing changes.
    let path = format!("/families/{family}/children");
    let missing = browser.post(&path, &[("nickname", "Sam"), ("age_band", "6_8")]).await?;
    assert_eq!(missing.status, 403);
    let wrong = browser.post(&path, &[("csrf", &"0".repeat(64)), ("nickname", "Sam"), ("age_band", "6_8")]).await?;
    assert_eq!(wrong.status, 403);
    assert_eq!(api::nicknames(&server, &guardian, &family).await?, ["<script>alert(1)</script>"]);

    // A bad nickname is explained next to the field; a good one is added.
    let empty = browser.post(&path, &[("csrf", &csrf), ("nickname", "  "), ("age_band", "6_8")]).await?;
    assert_eq!(empty.status, 422);
    assert!(empty.body.contains("a nickname must be 1 to 40 characters"), "{}", empty.body);
    let added = browser.post(&path, &[("csrf", &csrf), ("nickname", "Sam"), ("age_band", "9_12")]).await?;
    assert!(added.is_redirect_to("/"), "{}: {}", added.status, added.body);
    let mut names = api::nicknames(&server, &guardian, &family).await?;
    names.sort();
    assert_eq!(names, ["<script>alert(1)</script>", "Sam"]);
    assert!(browser.get("/").await?.body.contains("Sam"));

    // Signing out ends the session: the dashboard asks to sign in again.
    let out = browser.post("/sign-out", &[("csrf", &csrf)]).await?;
    assert!(out.is_redirect_to("/sign-in"));
    assert!(browser.get("/").await?.is_redirect_to("/sign-in"));

    // Pages are not API endpoints: the OpenAPI document does not list them.
    let (_, openapi) = api::get(&server, "/api/v1/openapi.json", None).await?;
    let paths = openapi["paths"].as_object().ok_or("no paths in the OpenAPI document")?;
    assert!(paths.contains_key("/api/v1/sessions"));
    assert!(paths.keys().all(|p| p.starts_with("/api/v1/") || p == "/healthz" || p == "/metrics"), "{:?}", paths.keys());

    // The stylesheet the pages link is served, and may be cached.
    let sheet = dashboard.body.split(r#"rel="stylesheet" href=""#).nth(1).and_then(|s| s.split('"').next());
    let sheet = browser.http.get(server.url(sheet.ok_or("no stylesheet link")?)).send().await?;
    assert_eq!(sheet.status(), 200);
    assert!(sheet.headers().get("cache-control").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("max-age")));
    Ok(())
}

async fn a_toy_is_paired_and_revoked_from_the_portal(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let (guardian, family) = guardian_with_family(&server, &outbox, "ann@example.com", "The Robinsons").await?;
    let child = api::child(&server, &guardian, &family, "Sam", "6_8").await?;
    let mut browser = Browser::new(&server)?;
    let dashboard = browser.sign_in("ann@example.com", PASSWORD).await?;
    let csrf = dashboard.csrf()?;

    // The toy asks to pair and shows its code.
    let toy = CubbyClient::with_http_client(&server.base_url, common::client()?);
    let key = DeviceKey::generate()?;
    let start = toy.start_pairing(&key, DeviceKind::Toy, "toy-os 1.0").await?;

    let path = format!("/families/{family}/pair");
    let wrong = browser.post(&path, &[("csrf", &csrf), ("user_code", "BCDF-GHJK"), ("child_id", &child), ("name", "Bear")]).await?;
    assert_eq!(wrong.status, 400);
    assert!(wrong.body.contains("this code is unknown or expired"), "{}", wrong.body);
    let forged = browser.post(&path, &[("user_code", &start.user_code), ("child_id", &child), ("name", "Bear")]).await?;
    assert_eq!(forged.status, 403);
    assert_eq!(toy.poll_pairing(&start.device_code).await?, PairingPoll::Pending);

    let paired = browser.post(&path, &[("csrf", &csrf), ("user_code", &start.user_code), ("child_id", &child), ("name", "Bear")]).await?;
    let devices_page = format!("/families/{family}/devices");
    assert!(paired.is_redirect_to(&devices_page), "{}: {}", paired.status, paired.body);
    // The toy's next poll (after its interval) brings its credential, which signs it in.
    let credential = toy.wait_for_pairing(&start, Duration::from_secs(30)).await?;
    toy.authenticate(&key, &credential.device_id).await?;
    let page = browser.get(&devices_page).await?;
    assert!(page.body.contains("Bear") && page.body.contains("active"), "{}", page.body);

    // Revoking needs the token too; with it, the API shows the toy revoked.
    let revoke = format!("/families/{family}/devices/{}/revoke", credential.device_id);
    assert_eq!(browser.post(&revoke, &[]).await?.status, 403);
    assert_eq!(api::devices(&server, &guardian, &family).await?[0]["revoked"], false);
    assert!(browser.post(&revoke, &[("csrf", &csrf)]).await?.is_redirect_to(&devices_page));
    let listed = api::devices(&server, &guardian, &family).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["revoked"], true);
    assert!(browser.get(&devices_page).await?.body.contains("revoked"));
    assert!(toy.authenticate(&key, &credential.device_id).await.is_err(), "a revoked toy signed in");
    Ok(())
}

async fn a_guardian_never_sees_or_changes_another_family(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let (ann, robinsons) = guardian_with_family(&server, &outbox, "ann@example.com", "The Robinsons").await?;
    let sam = api::child(&server, &ann, &robinsons, "Samwise", "6_8").await?;
    // Bob's family has not consented yet.
    let bob = api::guardian(&server, &outbox, "bob@example.com", PASSWORD).await?;
    let bakers = api::family(&server, &bob, "The Bakers").await?;

    let mut browser = Browser::new(&server)?;
    let dashboard = browser.sign_in("bob@example.com", PASSWORD).await?;
    assert!(dashboard.body.contains("The Bakers"));
    assert!(!dashboard.body.contains("Robinsons") && !dashboard.body.contains("Samwise"), "{}", dashboard.body);
    assert!(!dashboard.body.contains(&robinsons) && !dashboard.body.contains(&sam));
    // Consent first, said in plain words with the notice linked.
    assert!(dashboard.body.contains("must agree to the"), "{}", dashboard.body);
    let csrf = dashboard.csrf()?;
    let refused = browser.post(&format!("/families/{bakers}/children"), &[("csrf", &csrf), ("nickname", "Kim"), ("age_band", "6_8")]).await?;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("consent"), "{}", refused.body);
    assert!(api::nicknames(&server, &bob, &bakers).await?.is_empty());

    // Bob's own valid session and token do not reach Ann's family.
    let foreign = browser.post(&format!("/families/{robinsons}/children"), &[("csrf", &csrf), ("nickname", "Kim"), ("age_band", "6_8")]).await?;
    assert_eq!(foreign.status, 404);
    assert!(!foreign.body.contains("Robinsons") && !foreign.body.contains("Samwise"));
    assert_eq!(api::nicknames(&server, &ann, &robinsons).await?, ["Samwise"]);

    let toy = CubbyClient::with_http_client(&server.base_url, common::client()?);
    let start = toy.start_pairing(&DeviceKey::generate()?, DeviceKind::Toy, "toy-os 1.0").await?;
    let fields = [("csrf", csrf.as_str()), ("user_code", &start.user_code), ("child_id", &sam), ("name", "Bear")];
    assert_eq!(browser.post(&format!("/families/{robinsons}/pair"), &fields).await?.status, 404);
    assert_eq!(toy.poll_pairing(&start.device_code).await?, PairingPoll::Pending);
    Ok(())
}

/// Under TLS the same pages add HSTS and mark their cookies Secure (checked by the browser
/// on every answer).
#[tokio::test]
async fn under_tls_the_portal_insists_on_https() -> TestResult {
    let dirs = Dirs::new()?;
    let mut args = dirs.args(None);
    args.push("--tls-self-signed".to_owned());
    let server = Server::start(&args)?;
    assert!(server.base_url.starts_with("https://"), "{}", server.base_url);
    let outbox = dirs.outbox();
    guardian_with_family(&server, &outbox, "ann@example.com", "The Robinsons").await?;
    let mut browser = Browser::new(&server)?;
    assert!(browser.get("/").await?.is_redirect_to("/sign-in"));
    let dashboard = browser.sign_in("ann@example.com", PASSWORD).await?;
    assert!(dashboard.body.contains("The Robinsons"));
    assert!(browser.cookies.contains_key("cubby_session"));
    Ok(())
}

on_both_engines!(
    a_guardian_signs_in_and_adds_a_child,
    a_toy_is_paired_and_revoked_from_the_portal,
    a_guardian_never_sees_or_changes_another_family,
    every_page_and_form_keeps_to_its_own_family,
);

/// A form as found on a page: its action and its fields' names and values.
type FoundForm = (String, Vec<(String, String)>);

/// Every `href` and form of a page.
fn links_and_forms(body: &str) -> (Vec<String>, Vec<FoundForm>) {
    let unescape = |text: &str| text.replace("&amp;", "&").replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">");
    let attribute = |tag: &str, name: &str| {
        let tag = format!(" {tag}");
        let marker = format!(" {name}=\"");
        let start = tag.find(&marker)? + marker.len();
        let end = tag[start..].find('"')?;
        Some(unescape(&tag[start..start + end]))
    };
    let links = body.split("<a ").skip(1).filter_map(|tag| attribute(&tag[..tag.find('>').unwrap_or(tag.len())], "href")).collect();
    let mut forms = Vec::new();
    for form in body.split("<form").skip(1) {
        let form = &form[..form.find("</form>").unwrap_or(form.len())];
        let Some(action) = attribute(&form[..form.find('>').unwrap_or(form.len())], "action") else { continue };
        let fields = form
            .split("<input")
            .skip(1)
            .chain(form.split("<select").skip(1))
            .filter_map(|tag| {
                let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
                let name = attribute(tag, "name")?;
                let value = attribute(tag, "value").unwrap_or_else(|| "1".to_owned());
                Some((name, value))
            })
            .collect();
        forms.push((action, fields));
    }
    (links, forms)
}

/// What a family's guardian can read about it through the API, for "nothing changed".
async fn family_state(server: &Server, guardian: &Session, family: &str, children: &[&str]) -> Fallible<Vec<Value>> {
    let mut paths = vec![
        "/api/v1/families".to_owned(),
        format!("/api/v1/families/{family}/children"),
        format!("/api/v1/families/{family}/devices"),
        format!("/api/v1/families/{family}/consent"),
        format!("/api/v1/families/{family}/message-retention"),
        format!("/api/v1/families/{family}/reports"),
        "/api/v1/me".to_owned(),
    ];
    for child in children {
        paths.push(format!("/api/v1/families/{family}/children/{child}/contacts"));
        paths.push(format!("/api/v1/families/{family}/children/{child}/quiet-hours"));
        paths.push(format!("/api/v1/families/{family}/children/{child}/supervision"));
    }
    let mut state = Vec::new();
    for path in paths {
        let (status, body) = api::get(server, &path, Some(&guardian.token)).await?;
        state.push(serde_json::json!({"path": path, "status": status, "body": body}));
    }
    Ok(state)
}

/// Pages anyone may open (the rest need a session).
const PUBLIC_PAGES: [&str; 4] = ["/sign-in", "/sign-up", "/forgot-password", "/api/v1/privacy-notice"];

/// Crawls the portal as a guardian with a full family (a child, a toy, a contact), then
/// replays every page and every form it found, with the real form fields, as nobody and
/// as another family's guardian: no page opens without a session, none of them shows the
/// family to the other guardian, and no post changes anything the API reports.
async fn every_page_and_form_keeps_to_its_own_family(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let (ann, robinsons) = guardian_with_family(&server, &outbox, "ann@example.com", "The Robinsons").await?;
    let sam = api::child(&server, &ann, &robinsons, "Samwise", "6_8").await?;
    let toys = dirs.root.path().join("toys");
    std::fs::create_dir_all(&toys)?;
    let _toy = common::devices::device(&server, &toys, "Rosie", &ann, &robinsons, Some(&sam)).await?;
    let (bob, bakers) = guardian_with_family(&server, &outbox, "bob@example.com", "The Bakers").await?;
    let kim = api::child(&server, &bob, &bakers, "Kimberley", "6_8").await?;
    let code = api::contact_code(&server, &bob, &bakers, &kim).await?;
    api::redeem_contact_code(&server, &ann, &robinsons, &sam, &code).await?;
    let before = family_state(&server, &ann, &robinsons, &[&sam]).await?;

    // Ann's portal, page by page from the dashboard.
    let mut browser = Browser::new(&server)?;
    browser.sign_in("ann@example.com", PASSWORD).await?;
    let mut pages = vec!["/".to_owned()];
    let mut forms = Vec::new();
    let mut at = 0;
    while at < pages.len() {
        let path = pages[at].clone();
        at += 1;
        let page = browser.get(&path).await?;
        assert_eq!(page.status, 200, "{path} answered {}: {}", page.status, page.body);
        let (links, found) = links_and_forms(&page.body);
        for link in links {
            let link = link.split('#').next().unwrap_or_default().to_owned();
            let own = link.starts_with('/') && !link.starts_with("//") && !link.starts_with("/api/") && !link.starts_with("/assets/");
            if own && !link.is_empty() && !pages.contains(&link) {
                pages.push(link);
            }
        }
        for form in found {
            if !forms.contains(&form) {
                forms.push(form);
            }
        }
    }
    for section in ["devices", "contacts", "reports", "privacy", "security", "consent"] {
        let page = format!("/families/{robinsons}/{section}");
        assert!(pages.contains(&page), "the crawl never reached {page}: {pages:?}");
    }
    let family_forms: Vec<_> = forms.iter().filter(|(action, _)| action.contains(&robinsons)).collect();
    assert!(family_forms.len() >= 10, "only {} forms of the family were found: {forms:?}", family_forms.len());

    // Nobody: every page but the public ones sends to sign in; no post does anything.
    let mut nobody = Browser::new(&server)?;
    for path in &pages {
        let page = nobody.get(path).await?;
        if PUBLIC_PAGES.iter().any(|p| path.starts_with(p)) {
            continue;
        }
        assert_eq!(page.status, 303, "{path} opened without a session");
        assert!(page.location.as_deref().is_some_and(|l| l.starts_with("/sign-in")), "{path}: {:?}", page.location);
    }
    for (action, fields) in &forms {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let answer = nobody.post(action, &fields).await?;
        let to_sign_in = answer.status == 303 && answer.location.as_deref().is_some_and(|l| l.starts_with("/sign-in"));
        assert!(to_sign_in || (400..500).contains(&answer.status), "{action} without a session answered {}", answer.status);
        assert!(!answer.body.contains("Samwise") && !answer.body.contains("Robinsons"), "{action}: {}", answer.body);
    }

    // Bob, signed in with his own session and CSRF token: Ann's family is not there.
    let mut other = Browser::new(&server)?;
    let dashboard = other.sign_in("bob@example.com", PASSWORD).await?;
    let bobs_csrf = dashboard.csrf()?;
    for path in pages.iter().filter(|p| p.contains(&robinsons) || p.contains(&sam)) {
        let page = other.get(path).await?;
        assert_eq!(page.status, 404, "{path} answered {} to another family's guardian", page.status);
        for secret in ["Robinsons", "Samwise", "Rosie", "ann@example.com"] {
            assert!(!page.body.contains(secret), "{path} showed {secret} to another family's guardian");
        }
    }
    for (action, fields) in &family_forms {
        let fields: Vec<(&str, &str)> =
            fields.iter().map(|(k, v)| (k.as_str(), if k == "csrf" { bobs_csrf.as_str() } else { v.as_str() })).collect();
        let answer = other.post(action, &fields).await?;
        assert!((400..500).contains(&answer.status), "{action} by another family's guardian answered {}", answer.status);
        assert!(!answer.body.contains("Samwise") && !answer.body.contains("Robinsons"), "{action}: {}", answer.body);
    }

    assert_eq!(family_state(&server, &ann, &robinsons, &[&sam]).await?, before, "a refused request changed the family");
    Ok(())
}

/// Anyone may send a CSP report, so the endpoint takes only what a report is: a real one
/// is counted; junk, the wrong shape and an oversize body are refused and counted nowhere.
#[tokio::test]
async fn csp_reports_are_counted_and_junk_is_refused() -> TestResult {
    let dirs = Dirs::new()?;
    let server = Server::start(&dirs.args(None))?;
    let http = common::client()?;
    let send = |body: Vec<u8>| http.post(server.url("/csp-reports")).header("content-type", "application/csp-report").body(body).send();
    let counted = || async {
        let metrics = http.get(server.url("/metrics")).send().await?.text().await?;
        Fallible::Ok(metrics.lines().filter(|l| l.starts_with("cubby_csp_violations_total{")).map(ToOwned::to_owned).collect::<Vec<_>>())
    };
    let report = r#"{"csp-report":{"document-uri":"http://127.0.0.1/reset-password?token=secret","effective-directive":"script-src-elem","blocked-uri":"inline"}}"#;
    assert_eq!(send(report.as_bytes().to_vec()).await?.status(), 204);
    assert_eq!(counted().await?, [r#"cubby_csp_violations_total{directive="script-src-elem"} 1"#]);

    for (body, status, code) in [
        (b"not json".to_vec(), 400, "malformed_json"),
        (br#"{"report":{}}"#.to_vec(), 422, "invalid_body"),
        (vec![b' '; 17 * 1024], 413, "body_too_large"),
    ] {
        let answer = send(body).await?;
        assert_eq!(answer.status(), status);
        let error: Value = answer.json().await?;
        assert_eq!(error["error"]["code"], code, "{error}");
    }
    // An unknown directive is counted as `other`, never as a label of the sender's choosing.
    let odd = r#"{"csp-report":{"effective-directive":"x-made-up\"}"}}"#;
    assert_eq!(send(odd.as_bytes().to_vec()).await?.status(), 204);
    let lines = counted().await?;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.contains(&r#"cubby_csp_violations_total{directive="other"} 1"#.to_owned()), "{lines:?}");
    assert!(!server.logs().contains("token=secret"), "a reported page address was logged");
    Ok(())
}
