//! The portal's devices and privacy pages, driven as a browser without JavaScript would:
//! each change made through a page is checked in what the API then reports, and each
//! refusal (no CSRF token, no confirmation, another family's guardian) changes nothing.

use crate::common;

use crate::common::api::{self, Session};
use crate::common::portal::{Browser, PASSWORD, Page, family_with_child, start};
use crate::common::{Dirs, Fallible, Server, TestResult};
use cubby_client::{CubbyClient, DeviceKey, DeviceKind, PairingPoll};
use serde_json::{Value, json};

async fn only_device(server: &Server, guardian: &Session, family: &str) -> Fallible<Value> {
    let devices = api::read(server, guardian, &format!("/api/v1/families/{family}/devices")).await?;
    let devices = devices.as_array().ok_or("devices are not a list")?;
    assert_eq!(devices.len(), 1, "{devices:?}");
    Ok(devices[0].clone())
}

/// Everything the API tells a family's guardian, for "nothing changed".
async fn family_state(server: &Server, guardian: &Session, family: &str, child: &str) -> Fallible<Vec<Value>> {
    let mut state = Vec::new();
    for path in [
        format!("/api/v1/families/{family}"),
        format!("/api/v1/families/{family}/children"),
        format!("/api/v1/families/{family}/devices"),
        format!("/api/v1/families/{family}/consent"),
        format!("/api/v1/families/{family}/message-retention"),
        format!("/api/v1/families/{family}/children/{child}/quiet-hours"),
    ] {
        let (status, body) = api::get(server, &path, Some(&guardian.token)).await?;
        state.push(json!({"path": path, "status": status, "body": body}));
    }
    Ok(state)
}

/// The error paragraph of form `form` is on the page, saying `words`.
fn error_beside(page: &Page, form: &str, words: &str) -> bool {
    let marker = format!(r#"id="{form}-error""#);
    page.body.find(&marker).is_some_and(|at| page.body[at..].split("</p>").next().is_some_and(|p| p.contains(words)))
}

/// A download, with its headers (the portal's `Browser` keeps only the body).
async fn download(browser: &Browser<'_>, path: &str) -> Fallible<(u16, reqwest::header::HeaderMap, String)> {
    let cookies: Vec<String> = browser.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let response = browser.http.get(browser.server.url(path)).header("cookie", cookies.join("; ")).send().await?;
    Ok((response.status().as_u16(), response.headers().clone(), response.text().await?))
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

async fn a_toy_is_paired_renamed_quieted_wiped_and_revoked(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let (ann, family, sam) = family_with_child(&server, &dirs.outbox(), "ann@example.com", "The Robinsons", "Sam").await?;
    let mut browser = Browser::new(&server)?;
    browser.sign_in("ann@example.com", PASSWORD).await?;
    let devices_page = format!("/families/{family}/devices");

    // Pairing comes first, explained, with labelled fields.
    let page = browser.get(&devices_page).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    let pair_at = page.body.find(r#"id="pair""#).ok_or("no pairing form")?;
    assert!(pair_at < page.body.find("Paired toys and apps").ok_or("no devices section")?);
    assert!(page.body.contains(r#"<label for="pair-user-code">The code on the toy's screen</label>"#), "{}", page.body);
    assert!(page.body.contains(r#"<label for="pair-child">Whose toy is it?</label>"#));
    assert!(page.body.contains("No toy or app paired yet."));
    let csrf = page.form_csrf("pair")?;

    let toy = CubbyClient::with_http_client(&server.base_url, common::client()?);
    let key = DeviceKey::generate()?;
    let start = toy.start_pairing(&key, DeviceKind::Toy, "toy-os 1.0").await?;
    let pair = format!("/families/{family}/pair");
    let wrong = browser.post(&pair, &[("csrf", &csrf), ("user_code", "BCDF-GHJK"), ("child_id", &sam), ("name", "Bear")]).await?;
    assert_eq!(wrong.status, 400);
    assert!(error_beside(&wrong, "pair", "this code is unknown or expired"), "{}", wrong.body);
    assert!(wrong.body.contains(r#"value="Bear""#) && wrong.body.contains(r#"value="BCDF-GHJK""#), "what was typed is kept");
    let forged = browser.post(&pair, &[("user_code", &start.user_code), ("child_id", &sam), ("name", "Bear")]).await?;
    assert_eq!(forged.status, 403);
    let paired = browser.post(&pair, &[("csrf", &csrf), ("user_code", &start.user_code), ("child_id", &sam), ("name", "Bear")]).await?;
    assert!(paired.is_redirect_to(&devices_page), "{}: {}", paired.status, paired.body);
    let PairingPoll::Paired(credential) = toy.poll_pairing(&start.device_code).await? else {
        return Err("the toy was not paired".into());
    };
    toy.authenticate(&key, &credential.device_id).await?;
    let device = credential.device_id.clone();
    let page = browser.get(&devices_page).await?;
    assert!(page.body.contains("Bear") && page.body.contains("active") && page.body.contains("Sam"), "{}", page.body);
    for form in ["rename", "revoke", "wipe"] {
        assert!(page.body.contains(&format!(r#"id="{form}-{device}""#)), "no {form} form");
    }

    // Renaming: refused without the token, explained when the name is empty, done otherwise.
    let rename = format!("/families/{family}/devices/{device}/rename");
    assert_eq!(browser.post(&rename, &[("name", "Teddy")]).await?.status, 403);
    let empty = browser.post(&rename, &[("csrf", &csrf), ("name", "  ")]).await?;
    assert_eq!(empty.status, 422);
    assert!(error_beside(&empty, &format!("rename-{device}"), "nickname"), "{}", empty.body);
    assert_eq!(only_device(&server, &ann, &family).await?["name"], "Bear");
    assert!(browser.post(&rename, &[("csrf", &csrf), ("name", "Teddy")]).await?.is_redirect_to(&devices_page));
    assert_eq!(only_device(&server, &ann, &family).await?["name"], "Teddy");

    // Quiet hours: a bedtime on school nights and a daily limit, as the API then reports them.
    let page = browser.get(&devices_page).await?;
    assert!(page.body.contains(&format!(r#"id="quiet-hours-{sam}""#)) && page.body.contains(r#"type="time""#));
    assert!(page.body.contains("No quiet hours"));
    let quiet = format!("/families/{family}/children/{sam}/quiet-hours");
    let bedtime = [
        ("csrf", csrf.as_str()),
        ("start_0", "19:30"),
        ("end_0", "07:00"),
        ("days_0", "mon"),
        ("days_0", "tue"),
        ("start_1", ""),
        ("end_1", ""),
        ("time_zone", "Europe/Paris"),
        ("daily_limit", "50"),
    ];
    assert_eq!(browser.post(&quiet, &bedtime[1..]).await?.status, 403);
    let api_quiet = format!("/api/v1/families/{family}/children/{sam}/quiet-hours");
    assert_eq!(api::read(&server, &ann, &api_quiet).await?, Value::Null);
    let mut on_mars = bedtime.to_vec();
    on_mars[7] = ("time_zone", "Mars/Olympus_Mons");
    let refused = browser.post(&quiet, &on_mars).await?;
    assert_eq!(refused.status, 422);
    assert!(error_beside(&refused, &format!("quiet-hours-{sam}"), "time zone"), "{}", refused.body);
    assert!(refused.body.contains(r#"value="Mars/Olympus_Mons""#) && refused.body.contains(r#"value="19:30""#), "typed times lost");
    let mut half = bedtime.to_vec();
    half[5] = ("start_1", "12:00");
    let refused = browser.post(&quiet, &half).await?;
    assert_eq!(refused.status, 422);
    assert!(error_beside(&refused, &format!("quiet-hours-{sam}"), "quiet time 2 needs both a start and an end"), "{}", refused.body);
    assert_eq!(api::read(&server, &ann, &api_quiet).await?, Value::Null);
    assert!(browser.post(&quiet, &bedtime).await?.is_redirect_to(&devices_page));
    let expected = json!({"time_zone": "Europe/Paris", "windows": [{"start": "19:30", "end": "07:00", "days": ["mon", "tue"]}], "daily_limit": 50});
    assert_eq!(api::read(&server, &ann, &api_quiet).await?, expected);
    let page = browser.get(&devices_page).await?;
    assert!(page.body.contains("Quiet from 19:30 to 07:00, starting on Mon, Tue"), "{}", page.body);
    assert!(page.body.contains(r#"value="19:30""#) && page.body.contains(&format!(r#"id="clear-quiet-hours-{sam}""#)));
    let clear = format!("{quiet}/clear");
    assert_eq!(browser.post(&clear, &[]).await?.status, 403);
    assert_eq!(api::read(&server, &ann, &api_quiet).await?, expected);
    assert!(browser.post(&clear, &[("csrf", &csrf)]).await?.is_redirect_to(&devices_page));
    assert_eq!(api::read(&server, &ann, &api_quiet).await?, Value::Null);

    // Wiping needs its box ticked; nothing is flagged until it is.
    let wipe = format!("/families/{family}/devices/{device}/wipe");
    let unticked = browser.post(&wipe, &[("csrf", &csrf)]).await?;
    assert_eq!(unticked.status, 422);
    assert!(error_beside(&unticked, &format!("wipe-{device}"), "tick the box"), "{}", unticked.body);
    assert_eq!(only_device(&server, &ann, &family).await?["wipe"], false);
    assert_eq!(browser.post(&wipe, &[("confirm", "yes")]).await?.status, 403);
    assert_eq!(only_device(&server, &ann, &family).await?["wipe"], false);
    assert!(browser.post(&wipe, &[("csrf", &csrf), ("confirm", "yes")]).await?.is_redirect_to(&devices_page));
    assert_eq!(only_device(&server, &ann, &family).await?["wipe"], true);
    assert!(browser.get(&devices_page).await?.body.contains("wipe pending"));

    // Revoking: refused without the token; with it, the toy can no longer sign in.
    let revoke = format!("/families/{family}/devices/{device}/revoke");
    assert_eq!(browser.post(&revoke, &[]).await?.status, 403);
    assert_eq!(only_device(&server, &ann, &family).await?["revoked"], false);
    assert!(browser.post(&revoke, &[("csrf", &csrf)]).await?.is_redirect_to(&devices_page));
    assert_eq!(only_device(&server, &ann, &family).await?["revoked"], true);
    assert!(toy.authenticate(&key, &credential.device_id).await.is_err(), "a revoked toy signed in");
    let page = browser.get(&devices_page).await?;
    assert!(page.body.contains("revoked") && !page.body.contains(&format!(r#"id="revoke-{device}""#)));
    Ok(())
}

async fn a_family_without_children_is_told_to_add_one_first(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let ann = api::guardian(&server, &dirs.outbox(), "ann@example.com", PASSWORD).await?;
    let family = api::family(&server, &ann, "The Robinsons").await?;
    let mut browser = Browser::new(&server)?;
    browser.sign_in("ann@example.com", PASSWORD).await?;
    let page = browser.get(&format!("/families/{family}/devices")).await?;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"<a href="/">add a child first</a>"#), "{}", page.body);
    assert!(!page.body.contains(r#"id="pair""#));
    Ok(())
}

async fn privacy_choices_are_made_on_the_privacy_page(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let (ann, family, sam) = family_with_child(&server, &dirs.outbox(), "ann@example.com", "The Robinsons", "Sam").await?;
    let mut browser = Browser::new(&server)?;
    browser.sign_in("ann@example.com", PASSWORD).await?;
    let privacy = format!("/families/{family}/privacy");
    let page = browser.get(&privacy).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"href="/api/v1/privacy-notice""#));
    assert!(page.body.contains("Consent given") && page.body.contains(&format!(r#"href="/families/{family}/consent""#)));
    assert!(page.body.contains(r#"type="number" min="1" max="30""#), "{}", page.body);
    // Sharing with third parties is off until chosen.
    assert!(page.body.contains(r#"<input id="third-party-enabled" name="enabled" type="checkbox" value="yes">"#), "{}", page.body);
    let csrf = page.form_csrf("retention")?;

    // Retention: saved as chosen; out of range explained beside the field, nothing saved.
    let api_retention = format!("/api/v1/families/{family}/message-retention");
    let before = api::read(&server, &ann, &api_retention).await?;
    let retention = format!("/families/{family}/retention");
    for days in ["31", "0", "a week"] {
        let refused = browser.post(&retention, &[("csrf", &csrf), ("days", days), ("keep_history", "yes")]).await?;
        assert_eq!(refused.status, 422, "{days}");
        assert!(error_beside(&refused, "retention", "days"), "{}", refused.body);
    }
    assert_eq!(browser.post(&retention, &[("days", "7")]).await?.status, 403);
    assert_eq!(api::read(&server, &ann, &api_retention).await?, before);
    assert!(browser.post(&retention, &[("csrf", &csrf), ("days", "7")]).await?.is_redirect_to(&privacy));
    let saved = api::read(&server, &ann, &api_retention).await?;
    assert_eq!((saved["days"].clone(), saved["keep_history"].clone()), (json!(7), json!(false)));
    assert!(browser.get(&privacy).await?.body.contains("deleted after 7 days"));

    // Third-party sharing, on and off again, as the API's consent status then says.
    let api_consent = format!("/api/v1/families/{family}/consent");
    let third_party = format!("/families/{family}/third-party");
    assert_eq!(browser.post(&third_party, &[("enabled", "yes")]).await?.status, 403);
    assert_eq!(api::read(&server, &ann, &api_consent).await?["third_party"], false);
    assert!(browser.post(&third_party, &[("csrf", &csrf), ("enabled", "yes")]).await?.is_redirect_to(&privacy));
    assert_eq!(api::read(&server, &ann, &api_consent).await?["third_party"], true);
    assert!(browser.post(&third_party, &[("csrf", &csrf)]).await?.is_redirect_to(&privacy));
    assert_eq!(api::read(&server, &ann, &api_consent).await?["third_party"], false);

    // The downloads are the API's exports, as files to save, and only for the family.
    let page = browser.get(&privacy).await?;
    assert!(page.body.contains(&format!(r#"<a id="download-family" href="/families/{family}/export""#)), "{}", page.body);
    let child_export = format!("/families/{family}/children/{sam}/export");
    assert!(page.body.contains(&format!(r#"href="{child_export}""#)));
    let (status, headers, body) = download(&browser, &format!("/families/{family}/export")).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "content-type"), "application/json");
    assert_eq!(header(&headers, "cache-control"), "no-store");
    let disposition = header(&headers, "content-disposition");
    assert!(disposition.starts_with(r#"attachment; filename="cubby-family-20"#) && disposition.ends_with(r#".json""#), "{disposition}");
    let file: Value = serde_json::from_str(&body)?;
    let from_api = api::read(&server, &ann, &format!("/api/v1/families/{family}/export")).await?;
    for part in ["family", "your_email", "children", "consent", "contacts", "reports"] {
        assert_eq!(file[part], from_api[part], "{part}");
    }
    assert_eq!(file["children"][0]["nickname"], "Sam");
    let (status, headers, body) = download(&browser, &child_export).await?;
    assert_eq!(status, 200, "{body}");
    assert!(header(&headers, "content-disposition").starts_with(r#"attachment; filename="cubby-child-"#));
    assert_eq!(header(&headers, "cache-control"), "no-store");
    let file: Value = serde_json::from_str(&body)?;
    assert_eq!(file["child"], api::read(&server, &ann, &format!("/api/v1/families/{family}/children/{sam}/export")).await?["child"]);

    // Another family's guardian finds no such file.
    api::guardian(&server, &dirs.outbox(), "bob@example.com", PASSWORD).await?;
    let mut bob = Browser::new(&server)?;
    bob.sign_in("bob@example.com", PASSWORD).await?;
    for path in [format!("/families/{family}/export"), child_export.clone()] {
        let (status, _, body) = download(&bob, &path).await?;
        assert_eq!(status, 404, "{path}");
        assert!(!body.contains("Robinsons") && !body.contains("Sam"), "{body}");
    }
    // Without a session, the download asks to sign in.
    let nobody = Browser::new(&server)?;
    assert_eq!(download(&nobody, &child_export).await?.0, 303);
    Ok(())
}

async fn deleting_needs_an_explicit_confirmation(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let (ann, family, sam) = family_with_child(&server, &dirs.outbox(), "ann@example.com", "The Robinsons", "Sam").await?;
    let kim = api::child(&server, &ann, &family, "Kim", "9_12").await?;
    let toys = dirs.root.path().join("toys");
    std::fs::create_dir_all(&toys)?;
    common::devices::device(&server, &toys, "Rosie", &ann, &family, Some(&sam)).await?;
    let mut browser = Browser::new(&server)?;
    browser.sign_in("ann@example.com", PASSWORD).await?;
    let privacy = format!("/families/{family}/privacy");
    let page = browser.get(&privacy).await?;
    assert!(page.body.contains(
        "I understand this permanently deletes Sam's profile, messages, contacts and reports, and unpairs the toy"
    ));
    let csrf = page.form_csrf(&format!("delete-child-{sam}"))?;
    let api_children = format!("/api/v1/families/{family}/children");
    let count = |children: Value| children.as_array().map_or(0, Vec::len);

    // A child: the box must be ticked (and the token sent).
    let delete_sam = format!("/families/{family}/children/{sam}/delete");
    let unticked = browser.post(&delete_sam, &[("csrf", &csrf)]).await?;
    assert_eq!(unticked.status, 422);
    assert!(error_beside(&unticked, &format!("delete-child-{sam}"), "tick the box"), "{}", unticked.body);
    assert_eq!(browser.post(&delete_sam, &[("confirm", "yes")]).await?.status, 403);
    assert_eq!(count(api::read(&server, &ann, &api_children).await?), 2);
    let deleted = browser.post(&delete_sam, &[("csrf", &csrf), ("confirm", "yes")]).await?;
    assert!(deleted.is_redirect_to(&format!("{privacy}?deleted=child")), "{}: {:?}", deleted.status, deleted.location);
    let children = api::read(&server, &ann, &api_children).await?;
    assert_eq!(count(children.clone()), 1);
    assert_eq!(children[0]["id"], kim.as_str());
    // Sam's toy went with the profile.
    assert_eq!(api::read(&server, &ann, &format!("/api/v1/families/{family}/devices")).await?, json!([]));
    let page = browser.get(&format!("{privacy}?deleted=child")).await?;
    assert!(page.body.contains("profile was deleted") && !page.body.contains(&format!("delete-child-{sam}")), "{}", page.body);

    // The family: its name typed, and the box ticked.
    let delete_family = format!("/families/{family}/delete");
    let api_family = format!("/api/v1/families/{family}");
    let misnamed = browser.post(&delete_family, &[("csrf", &csrf), ("family_name", "The Robinson"), ("confirm", "yes")]).await?;
    assert_eq!(misnamed.status, 422);
    assert!(error_beside(&misnamed, "delete-family", "not the family's name"), "{}", misnamed.body);
    let unticked = browser.post(&delete_family, &[("csrf", &csrf), ("family_name", "The Robinsons")]).await?;
    assert_eq!(unticked.status, 422);
    assert_eq!(browser.post(&delete_family, &[("family_name", "The Robinsons"), ("confirm", "yes")]).await?.status, 403);
    api::read(&server, &ann, &api_family).await?;
    let gone = browser.post(&delete_family, &[("csrf", &csrf), ("family_name", "The Robinsons"), ("confirm", "yes")]).await?;
    assert!(gone.is_redirect_to("/"), "{}: {}", gone.status, gone.body);
    assert_eq!(api::get(&server, &api_family, Some(&ann.token)).await?.0, 404);
    assert_eq!(browser.get(&privacy).await?.status, 404);
    Ok(())
}

async fn another_family_sees_and_changes_nothing(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let (ann, family, sam) = family_with_child(&server, &outbox, "ann@example.com", "The Robinsons", "Samwise").await?;
    let toys = dirs.root.path().join("toys");
    std::fs::create_dir_all(&toys)?;
    common::devices::device(&server, &toys, "Rosie", &ann, &family, Some(&sam)).await?;
    let device = only_device(&server, &ann, &family).await?["device_id"].as_str().ok_or("no device id")?.to_owned();
    family_with_child(&server, &outbox, "bob@example.com", "The Bakers", "Kim").await?;
    let before = family_state(&server, &ann, &family, &sam).await?;

    let mut bob = Browser::new(&server)?;
    let dashboard = bob.sign_in("bob@example.com", PASSWORD).await?;
    let csrf = dashboard.csrf()?;
    for page in ["devices", "privacy", "export"] {
        let page = bob.get(&format!("/families/{family}/{page}")).await?;
        assert_eq!(page.status, 404);
        for secret in ["Robinsons", "Samwise", "Rosie"] {
            assert!(!page.body.contains(secret), "{secret} shown to another family");
        }
    }
    let device_path = format!("/families/{family}/devices/{device}");
    let child_path = format!("/families/{family}/children/{sam}");
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        (format!("/families/{family}/pair"), vec![("user_code", "BCDF-GHJK"), ("child_id", &sam), ("name", "Bear")]),
        (format!("{device_path}/rename"), vec![("name", "Mine")]),
        (format!("{device_path}/revoke"), vec![]),
        (format!("{device_path}/wipe"), vec![("confirm", "yes")]),
        (format!("{child_path}/quiet-hours"), vec![("start_0", "19:00"), ("end_0", "07:00"), ("time_zone", "UTC")]),
        (format!("{child_path}/quiet-hours/clear"), vec![]),
        (format!("{child_path}/delete"), vec![("confirm", "yes")]),
        (format!("/families/{family}/retention"), vec![("days", "3")]),
        (format!("/families/{family}/third-party"), vec![("enabled", "yes")]),
        (format!("/families/{family}/delete"), vec![("family_name", "The Robinsons"), ("confirm", "yes")]),
    ];
    for (path, fields) in &posts {
        let mut with_token = fields.clone();
        with_token.push(("csrf", &csrf));
        let answer = bob.post(path, &with_token).await?;
        assert_eq!(answer.status, 404, "{path} answered {} to another family's guardian", answer.status);
        assert!(!answer.body.contains("Samwise") && !answer.body.contains("Robinsons"), "{path}: {}", answer.body);
    }

    // Ann's own posts without her form's token are refused, whatever they carry.
    let mut browser = Browser::new(&server)?;
    browser.sign_in("ann@example.com", PASSWORD).await?;
    for (path, fields) in &posts {
        assert_eq!(browser.post(path, fields).await?.status, 403, "{path} without a token");
        let mut wrong = fields.clone();
        let forged = "0".repeat(64);
        wrong.push(("csrf", &forged));
        assert_eq!(browser.post(path, &wrong).await?.status, 403, "{path} with a forged token");
    }
    // A malformed body is a plain 4xx page, never a crash.
    let garbled = browser.post(&format!("/families/{family}/retention"), &[("csrf", "one"), ("csrf", "two")]).await?;
    assert!((400..500).contains(&garbled.status), "{}", garbled.status);

    assert_eq!(family_state(&server, &ann, &family, &sam).await?, before, "a refused request changed the family");
    Ok(())
}

on_both_engines!(
    a_toy_is_paired_renamed_quieted_wiped_and_revoked,
    a_family_without_children_is_told_to_add_one_first,
    privacy_choices_are_made_on_the_privacy_page,
    deleting_needs_an_explicit_confirmation,
    another_family_sees_and_changes_nothing,
);
