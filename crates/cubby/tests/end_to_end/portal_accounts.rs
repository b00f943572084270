//! The portal's account, family and security pages, driven as a browser without
//! JavaScript: signing up and following the emailed links, consenting, inviting a
//! co-guardian, resetting a password, the security and account pages. Each step is
//! checked on the page and then through the API. Each scenario runs on both engines.

use crate::common;

use crate::common::api::{self, Session};
use crate::common::portal::{Browser, PASSWORD, guardian_with_family, start};
use crate::common::{Dirs, Fallible, Server, TestResult};
use serde_json::Value;

async fn consent_status(server: &Server, guardian: &Session, family: &str) -> Fallible<Value> {
    api::read(server, guardian, &format!("/api/v1/families/{family}/consent")).await
}

async fn family_ids(server: &Server, guardian: &Session) -> Fallible<Vec<String>> {
    let families = api::read(server, guardian, "/api/v1/families").await?;
    let families = families.as_array().ok_or("families are not a list")?;
    Ok(families.iter().filter_map(|f| f["id"].as_str().map(ToOwned::to_owned)).collect())
}

/// The status of an API call with the guardian's bearer token (401 once signed out).
async fn me_status(server: &Server, token: &str) -> Fallible<u16> {
    Ok(api::get(server, "/api/v1/me", Some(token)).await?.0)
}

fn assert_contains(body: &str, needles: &[&str]) {
    for needle in needles {
        assert!(body.contains(needle), "{needle:?} is missing from: {body}");
    }
}

async fn a_new_parent_signs_up_consents_and_adds_a_child(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let mut browser = Browser::new(&server)?;
    let email = "ann@example.com";

    let sign_up = browser.get("/sign-up").await?;
    assert_eq!(sign_up.status, 200);
    assert_contains(&sign_up.body, &[
        r#"id="sign-up""#,
        "At least 12 characters",
        r#"href="/api/v1/privacy-notice""#,
        r#"<label for="email">"#,
        r#"<label for="password">"#,
        r#"href="/sign-in""#,
    ]);
    let csrf = sign_up.form_csrf("sign-up")?;

    // A weak password is explained beside the field; nothing is mailed.
    let weak = browser.post("/sign-up", &[("csrf", &csrf), ("email", email), ("password", "short")]).await?;
    assert_eq!(weak.status, 422);
    assert_contains(&weak.body, &[r#"id="password-error""#, "at least 12 characters", r#"value="ann@example.com""#]);
    // Without the form's token, nothing happens either.
    assert_eq!(browser.post("/sign-up", &[("email", email), ("password", PASSWORD)]).await?.status, 403);
    assert_eq!(api::mails(&outbox, email, "Confirm your email"), 0);

    let signed_up = browser.post("/sign-up", &[("csrf", &csrf), ("email", email), ("password", PASSWORD)]).await?;
    assert!(signed_up.is_redirect_to("/sign-up/sent"), "{}: {}", signed_up.status, signed_up.body);
    assert_contains(&browser.get("/sign-up/sent").await?.body, &["Check your email"]);

    // The emailed link opens a page with a button; opening it confirms nothing yet.
    let token = api::outbox_token(&outbox, email, "Confirm your email")?;
    let verify = browser.get(&format!("/verify-email?token={token}")).await?;
    assert_eq!(verify.status, 200);
    assert_contains(&verify.body, &[r#"id="verify-email""#, &format!(r#"name="token" value="{token}""#)]);
    let (status, _) = api::post(&server, "/api/v1/sessions", None, serde_json::json!({"email": email, "password": PASSWORD})).await?;
    assert_eq!(status, 403, "a GET of the link confirmed the address");
    let csrf = verify.form_csrf("verify-email")?;
    assert_eq!(browser.post("/verify-email", &[("token", &token)]).await?.status, 403);
    let confirmed = browser.post("/verify-email", &[("csrf", &csrf), ("token", &token)]).await?;
    assert!(confirmed.is_redirect_to("/verify-email/done"), "{}: {}", confirmed.status, confirmed.body);
    assert_contains(&browser.get("/verify-email/done").await?.body, &["Address confirmed", r#"href="/sign-in""#]);
    // A used link is explained beside its button.
    let again = browser.post("/verify-email", &[("csrf", &csrf), ("token", &token)]).await?;
    assert_eq!(again.status, 400);
    assert_contains(&again.body, &[r#"id="verify-email-error""#, "already used"]);

    // Signed in, with no family yet: the page offers to create one.
    let dashboard = browser.sign_in(email, PASSWORD).await?;
    assert_contains(&dashboard.body, &[r#"id="create-family""#, r#"<label for="family-name">"#]);
    let csrf = dashboard.form_csrf("create-family")?;
    assert_eq!(browser.post("/families", &[("name", "The Robinsons")]).await?.status, 403);
    let created = browser.post("/families", &[("csrf", &csrf), ("name", "The Robinsons")]).await?;
    assert!(created.is_redirect_to("/"), "{}: {}", created.status, created.body);
    let ann = api::login(&server, email, PASSWORD).await?;
    let families = family_ids(&server, &ann).await?;
    let [family] = families.as_slice() else { return Err(format!("expected one family: {families:?}").into()) };
    let dashboard = browser.get("/").await?;
    let consent_path = format!("/families/{family}/consent");
    assert_contains(&dashboard.body, &[
        "The Robinsons",
        "Before adding a child, read the privacy notice and give your consent",
        &format!(r#"href="{consent_path}""#),
        &format!(r#"href="/families/{family}/devices""#),
        "Pair a toy",
    ]);

    // The consent page shows the notice in full, then consent as its own step.
    let (_, notice) = api::get(&server, "/api/v1/privacy-notice", None).await?;
    let consent = browser.get(&consent_path).await?;
    assert_eq!(consent.status, 200);
    for section in notice["sections"].as_array().ok_or("a notice without sections")? {
        assert_contains(&consent.body, &[section["title"].as_str().ok_or("untitled section")?]);
    }
    assert_contains(&consent.body, &[&format!("Version {}", notice["version"]), r#"id="consent""#, r#"<label for="agree">"#, "I consent"]);
    let csrf = consent.form_csrf("consent")?;
    let version = notice["version"].to_string();

    // Without the tick: the reason beside the form, and no consent.
    let unticked = browser.post(&consent_path, &[("csrf", &csrf), ("notice_version", &version)]).await?;
    assert_eq!(unticked.status, 422);
    assert_contains(&unticked.body, &[r#"id="consent-error""#, "tick the box"]);
    let fields = [("csrf", csrf.as_str()), ("notice_version", &version), ("agree", "yes")];
    assert_eq!(browser.post(&consent_path, &fields[1..]).await?.status, 403);
    assert_eq!(api::mails(&outbox, email, "Confirm your parental consent"), 0);
    let status = consent_status(&server, &ann, family).await?;
    assert_eq!(status["collection_valid"], false);
    assert_eq!(status["records"].as_array().map(Vec::len), Some(0));

    let asked = browser.post(&consent_path, &fields).await?;
    assert!(asked.is_redirect_to(&format!("{consent_path}/sent")), "{}: {}", asked.status, asked.body);
    assert_contains(&browser.get(&format!("{consent_path}/sent")).await?.body, &["We emailed you a link to confirm"]);
    let token = api::outbox_token(&outbox, email, "Confirm your parental consent")?;
    let confirm = browser.get(&format!("/confirm-consent?token={token}")).await?;
    assert_contains(&confirm.body, &[r#"id="confirm-consent""#]);
    assert_eq!(consent_status(&server, &ann, family).await?["collection_valid"], false, "a GET recorded consent");
    let csrf = confirm.form_csrf("confirm-consent")?;
    let recorded = browser.post("/confirm-consent", &[("csrf", &csrf), ("token", &token)]).await?;
    assert!(recorded.is_redirect_to("/confirm-consent/done"), "{}: {}", recorded.status, recorded.body);
    assert_contains(&browser.get("/confirm-consent/done").await?.body, &["Consent recorded", r#"href="/""#]);
    assert_eq!(consent_status(&server, &ann, family).await?["collection_valid"], true);

    // Now a child can be added, and the API lists it.
    let dashboard = browser.get("/").await?;
    let form = format!("add-child-{family}");
    assert!(!dashboard.body.contains("Before adding a child"), "{}", dashboard.body);
    let csrf = dashboard.form_csrf(&form)?;
    let added = browser
        .post(&format!("/families/{family}/children"), &[("csrf", &csrf), ("nickname", "Sam"), ("age_band", "6_8")])
        .await?;
    assert!(added.is_redirect_to("/"), "{}: {}", added.status, added.body);
    let children = api::read(&server, &ann, &format!("/api/v1/families/{family}/children")).await?;
    assert_eq!(children[0]["nickname"], "Sam");
    assert_contains(&browser.get("/").await?.body, &["Sam", "6 to 8"]);

    // Withdrawing needs its own tick, then collection stops.
    let consent = browser.get(&consent_path).await?;
    assert_contains(&consent.body, &[r#"id="withdraw-consent""#, "Consent records"]);
    let withdraw = format!("{consent_path}/withdraw");
    let unticked = browser.post(&withdraw, &[("csrf", &csrf)]).await?;
    assert_eq!(unticked.status, 422);
    assert_contains(&unticked.body, &[r#"id="withdraw-consent-error""#]);
    assert_eq!(consent_status(&server, &ann, family).await?["collection_valid"], true);
    let withdrawn = browser.post(&withdraw, &[("csrf", &csrf), ("confirm", "yes")]).await?;
    assert!(withdrawn.is_redirect_to(&consent_path), "{}: {}", withdrawn.status, withdrawn.body);
    assert_eq!(consent_status(&server, &ann, family).await?["collection_valid"], false);
    Ok(())
}

async fn a_forgotten_password_is_reset_by_the_emailed_link(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let ann = api::guardian(&server, &outbox, "ann@example.com", PASSWORD).await?;
    let mut browser = Browser::new(&server)?;

    let sign_in = browser.get("/sign-in").await?;
    assert_contains(&sign_in.body, &[r#"id="sign-in""#, r#"href="/sign-up""#, r#"href="/forgot-password""#, "Forgot your password?"]);
    let forgot = browser.get("/forgot-password").await?;
    let csrf = forgot.form_csrf("forgot-password")?;
    // The same answer whether or not the address has an account.
    for email in ["nobody@example.com", "ann@example.com"] {
        let sent = browser.post("/forgot-password", &[("csrf", &csrf), ("email", email)]).await?;
        assert!(sent.is_redirect_to("/forgot-password/sent"), "{}: {}", sent.status, sent.body);
    }
    assert_contains(&browser.get("/forgot-password/sent").await?.body, &["Check your email"]);

    let token = api::outbox_token(&outbox, "ann@example.com", "Reset your Cubby password")?;
    let reset = browser.get(&format!("/reset-password?token={token}")).await?;
    assert_contains(&reset.body, &[r#"id="reset-password""#, "At least 12 characters", r#"<label for="new-password">"#]);
    let csrf = reset.form_csrf("reset-password")?;
    let weak = browser.post("/reset-password", &[("csrf", &csrf), ("token", &token), ("password", "short")]).await?;
    assert_eq!(weak.status, 422);
    assert_contains(&weak.body, &[r#"id="new-password-error""#, "at least 12 characters"]);
    let new_password = "a brand new battery staple";
    assert_eq!(browser.post("/reset-password", &[("token", &token), ("password", new_password)]).await?.status, 403);
    assert_eq!(me_status(&server, &ann.token).await?, 200, "a refused reset signed the guardian out");

    let done = browser.post("/reset-password", &[("csrf", &csrf), ("token", &token), ("password", new_password)]).await?;
    assert!(done.is_redirect_to("/reset-password/done"), "{}: {}", done.status, done.body);
    assert_contains(&browser.get("/reset-password/done").await?.body, &["Password changed"]);
    // Every session ended; the old password no longer works, the new one does.
    assert_eq!(me_status(&server, &ann.token).await?, 401);
    assert!(api::login(&server, "ann@example.com", PASSWORD).await.is_err());
    api::login(&server, "ann@example.com", new_password).await?;
    let again = browser.post("/reset-password", &[("csrf", &csrf), ("token", &token), ("password", new_password)]).await?;
    assert_eq!(again.status, 400);
    assert_contains(&again.body, &[r#"id="reset-password-error""#]);
    Ok(())
}

async fn a_co_guardian_accepts_an_invitation_from_the_page(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let (ann, family) = guardian_with_family(&server, &outbox, "ann@example.com", "The Robinsons").await?;
    let bob = api::guardian(&server, &outbox, "bob@example.com", PASSWORD).await?;

    let mut anns = Browser::new(&server)?;
    let dashboard = anns.sign_in("ann@example.com", PASSWORD).await?;
    let form = format!("invite-{family}");
    let csrf = dashboard.form_csrf(&form)?;
    let path = format!("/families/{family}/invite");
    let bad = anns.post(&path, &[("csrf", &csrf), ("email", "not an address")]).await?;
    assert_eq!(bad.status, 422);
    assert_contains(&bad.body, &[&format!(r#"id="{form}-error""#)]);
    assert_eq!(anns.post(&path, &[("email", "bob@example.com")]).await?.status, 403);
    assert_eq!(api::mails(&outbox, "bob@example.com", "invited to a family"), 0);
    let sent = anns.post(&path, &[("csrf", &csrf), ("email", "bob@example.com")]).await?;
    assert!(sent.is_redirect_to("/?done=invited"), "{}: {}", sent.status, sent.body);
    assert_contains(&anns.get("/?done=invited").await?.body, &["The invitation is on its way"]);
    let token = api::outbox_token(&outbox, "bob@example.com", "invited to a family")?;

    // Not signed in: the link's page explains and comes back after signing in.
    let mut bobs = Browser::new(&server)?;
    let link = format!("/accept-invite?token={token}");
    let stranger = bobs.get(&link).await?;
    assert_eq!(stranger.status, 200);
    let next = format!("/sign-in?next=%2Faccept-invite%3Ftoken%3D{token}");
    assert_contains(&stranger.body, &[&format!(r#"href="{next}""#), r#"href="/sign-up""#]);
    let sign_in = bobs.get(&next).await?;
    assert_contains(&sign_in.body, &[&format!(r#"name="next" value="{link}""#)]);
    let csrf = sign_in.form_csrf("sign-in")?;
    let fields = [("csrf", csrf.as_str()), ("email", "bob@example.com"), ("password", PASSWORD), ("next", &link)];
    let back = bobs.post("/sign-in", &fields).await?;
    assert!(back.is_redirect_to(&link), "{}: {:?}", back.status, back.location);

    let accept = bobs.get(&link).await?;
    let csrf = accept.form_csrf("accept-invite")?;
    assert_eq!(bobs.post("/accept-invite", &[("token", &token)]).await?.status, 403);
    assert!(family_ids(&server, &bob).await?.is_empty());
    let joined = bobs.post("/accept-invite", &[("csrf", &csrf), ("token", &token)]).await?;
    assert!(joined.is_redirect_to("/?done=joined"), "{}: {}", joined.status, joined.body);
    assert_eq!(family_ids(&server, &bob).await?, std::slice::from_ref(&family));
    assert_contains(&bobs.get("/?done=joined").await?.body, &["The Robinsons", "You joined the family"]);
    assert_contains(&anns.get("/").await?.body, &["Another guardian"]);
    // The invitation was for one use.
    let again = bobs.post("/accept-invite", &[("csrf", &csrf), ("token", &token)]).await?;
    assert_eq!(again.status, 400);
    assert_contains(&again.body, &[r#"id="accept-invite-error""#]);

    // Leaving needs the tick; the last guardian cannot leave.
    let leave = format!("/families/{family}/leave");
    let unticked = bobs.post(&leave, &[("csrf", &csrf)]).await?;
    assert_eq!(unticked.status, 422);
    assert_contains(&unticked.body, &[&format!(r#"id="leave-{family}-error""#)]);
    let left = bobs.post(&leave, &[("csrf", &csrf), ("confirm", "yes")]).await?;
    assert!(left.is_redirect_to("/?done=left"), "{}: {}", left.status, left.body);
    assert!(family_ids(&server, &bob).await?.is_empty());
    let anns_csrf = anns.get("/").await?.form_csrf(&format!("leave-{family}"))?;
    let last = anns.post(&leave, &[("csrf", &anns_csrf), ("confirm", "yes")]).await?;
    assert_eq!(last.status, 409);
    assert_contains(&last.body, &["last guardian"]);
    assert_eq!(family_ids(&server, &ann).await?, [family]);
    Ok(())
}

async fn the_security_page_lists_events_and_signs_out_everywhere(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let (ann, family) = guardian_with_family(&server, &outbox, "ann@example.com", "The Robinsons").await?;
    let phone = api::login(&server, "ann@example.com", PASSWORD).await?;
    let mut browser = Browser::new(&server)?;
    browser.sign_in("ann@example.com", PASSWORD).await?;

    let path = format!("/families/{family}/security");
    let security = browser.get(&path).await?;
    assert_eq!(security.status, 200);
    assert_contains(&security.body, &[
        "Family created",
        "Consent was given",
        "You",
        r#"<th scope="col">When</th>"#,
        "This browser",
        "Another browser or app",
        &format!(r#"id="sign-out-session-{}""#, phone.session_id),
        r#"id="sign-out-everywhere""#,
    ]);
    assert!(!security.body.contains(&ann.account_id), "an account id is shown: {}", security.body);

    // One session is signed out, and back to the same page.
    let csrf = security.form_csrf("sign-out-everywhere")?;
    let one = format!("/account/sessions/{}/sign-out", phone.session_id);
    assert_eq!(browser.post(&one, &[("back", &path)]).await?.status, 403);
    assert_eq!(me_status(&server, &phone.token).await?, 200);
    let signed_out = browser.post(&one, &[("csrf", &csrf), ("back", &path)]).await?;
    assert!(signed_out.is_redirect_to(&path), "{}: {:?}", signed_out.status, signed_out.location);
    assert_eq!(me_status(&server, &phone.token).await?, 401);
    assert_eq!(me_status(&server, &ann.token).await?, 200);

    // Everywhere: the other session's next call is refused, and this browser signs in again.
    assert_eq!(browser.post("/account/sessions/sign-out-everywhere", &[]).await?.status, 403);
    assert_eq!(me_status(&server, &ann.token).await?, 200);
    let everywhere = browser.post("/account/sessions/sign-out-everywhere", &[("csrf", &csrf)]).await?;
    assert!(everywhere.is_redirect_to("/sign-in"), "{}: {:?}", everywhere.status, everywhere.location);
    assert_eq!(me_status(&server, &ann.token).await?, 401);
    assert!(browser.get("/").await?.is_redirect_to("/sign-in"));
    Ok(())
}

async fn the_account_page_changes_the_password_and_deletes_the_account(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let (ann, _) = guardian_with_family(&server, &outbox, "ann@example.com", "The Robinsons").await?;
    let mut browser = Browser::new(&server)?;
    browser.sign_in("ann@example.com", PASSWORD).await?;

    let account = browser.get("/account").await?;
    assert_contains(&account.body, &["ann@example.com", r#"id="change-password""#, r#"id="delete-account""#, "This browser"]);
    let csrf = account.form_csrf("change-password")?;
    let new_password = "a brand new battery staple";
    let wrong = browser
        .post("/account/password", &[("csrf", &csrf), ("current_password", "not it at all"), ("new_password", new_password)])
        .await?;
    assert_eq!(wrong.status, 401);
    assert_contains(&wrong.body, &[r#"id="current-password-error""#]);
    let weak = browser.post("/account/password", &[("csrf", &csrf), ("current_password", PASSWORD), ("new_password", "short")]).await?;
    assert_eq!(weak.status, 422);
    assert_contains(&weak.body, &[r#"id="new-password-error""#, "at least 12 characters"]);
    let changed = browser
        .post("/account/password", &[("csrf", &csrf), ("current_password", PASSWORD), ("new_password", new_password)])
        .await?;
    assert!(changed.is_redirect_to("/account?done=password"), "{}: {}", changed.status, changed.body);
    assert_contains(&browser.get("/account?done=password").await?.body, &["Your password is changed"]);
    assert_eq!(me_status(&server, &ann.token).await?, 401, "the other session outlived the change");
    api::login(&server, "ann@example.com", new_password).await?;

    // The last guardian of a family cannot delete the account: said beside the form.
    let unticked = browser.post("/account/delete", &[("csrf", &csrf)]).await?;
    assert_eq!(unticked.status, 422);
    let refused = browser.post("/account/delete", &[("csrf", &csrf), ("confirm", "yes")]).await?;
    assert_eq!(refused.status, 409);
    assert_contains(&refused.body, &[r#"id="delete-account-error""#, "last guardian"]);

    // Without a family, it goes (with its session).
    api::guardian(&server, &outbox, "bob@example.com", PASSWORD).await?;
    let mut bobs = Browser::new(&server)?;
    let csrf = bobs.sign_in("bob@example.com", PASSWORD).await?.form_csrf("create-family")?;
    assert_eq!(bobs.post("/account/delete", &[("confirm", "yes")]).await?.status, 403);
    api::login(&server, "bob@example.com", PASSWORD).await?;
    let deleted = bobs.post("/account/delete", &[("csrf", &csrf), ("confirm", "yes")]).await?;
    assert!(deleted.is_redirect_to("/account/deleted"), "{}: {}", deleted.status, deleted.body);
    assert!(!bobs.cookies.contains_key("cubby_session"));
    assert_contains(&bobs.get("/account/deleted").await?.body, &["Account deleted"]);
    assert!(api::login(&server, "bob@example.com", PASSWORD).await.is_err());
    Ok(())
}

async fn pages_refuse_other_families_forged_posts_and_foreign_redirects(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let (ann, robinsons) = guardian_with_family(&server, &outbox, "ann@example.com", "The Robinsons").await?;
    let bob = api::guardian(&server, &outbox, "bob@example.com", PASSWORD).await?;
    let bakers = api::family(&server, &bob, "The Bakers").await?;

    // `next` only ever leads to a page of this site.
    let mut browser = Browser::new(&server)?;
    for evil in ["//evil.example", "/\\evil.example", "https://evil.example/"] {
        let query = format!("/sign-in?next={}", common::portal::form_body(&[("", evil)]).trim_start_matches('='));
        let page = browser.get(&query).await?;
        assert!(!page.body.contains("evil.example"), "{evil}: {}", page.body);
        let csrf = page.form_csrf("sign-in")?;
        let fields = [("csrf", csrf.as_str()), ("email", "bob@example.com"), ("password", PASSWORD), ("next", evil)];
        let signed_in = browser.post("/sign-in", &fields).await?;
        assert!(signed_in.is_redirect_to("/"), "{evil}: {} {:?}", signed_in.status, signed_in.location);
    }

    // Bob's session does not reach Ann's family's pages or forms.
    let csrf = browser.get("/").await?.form_csrf(&format!("invite-{bakers}"))?;
    for page in ["consent", "security", "consent/sent"] {
        let foreign = browser.get(&format!("/families/{robinsons}/{page}")).await?;
        assert_eq!(foreign.status, 404, "{page}");
        assert!(!foreign.body.contains("Robinsons"), "{}", foreign.body);
    }
    let consent = format!("/families/{robinsons}/consent");
    let fields = [("csrf", csrf.as_str()), ("agree", "yes"), ("notice_version", "1")];
    assert_eq!(browser.post(&consent, &fields).await?.status, 404);
    assert_eq!(browser.post(&format!("{consent}/withdraw"), &[("csrf", &csrf), ("confirm", "yes")]).await?.status, 404);
    let invite = [("csrf", csrf.as_str()), ("email", "eve@example.com")];
    assert_eq!(browser.post(&format!("/families/{robinsons}/invite"), &invite).await?.status, 404);
    let leave = format!("/families/{robinsons}/leave");
    assert_eq!(browser.post(&leave, &[("csrf", &csrf), ("confirm", "yes")]).await?.status, 404);
    // Even a refusal the page makes itself does not reveal that the family exists.
    assert_eq!(browser.post(&leave, &[("csrf", &csrf)]).await?.status, 404);
    let child = [("csrf", csrf.as_str()), ("nickname", "Kim"), ("age_band", "forty")];
    assert_eq!(browser.post(&format!("/families/{robinsons}/children"), &child).await?.status, 404);
    let status = consent_status(&server, &ann, &robinsons).await?;
    assert_eq!(status["collection_valid"], true);
    assert_eq!(status["records"].as_array().map(Vec::len), Some(1));
    assert_eq!(family_ids(&server, &ann).await?, [robinsons]);
    assert_eq!(api::mails(&outbox, "eve@example.com", "invited"), 0);

    // Posts without the form's token change nothing.
    let own = format!("/families/{bakers}/consent");
    assert_eq!(browser.post(&own, &fields[1..]).await?.status, 403);
    assert_eq!(api::mails(&outbox, "bob@example.com", "Confirm your parental consent"), 0);
    assert_eq!(browser.post("/families", &[("name", "Another")]).await?.status, 403);
    assert_eq!(family_ids(&server, &bob).await?, [bakers]);
    // A mangled body is refused in words, never a crash.
    let mangled = browser.post(&own, &[("csrf", &csrf), ("agree", "yes"), ("notice_version", "not a number")]).await?;
    assert_eq!(mangled.status, 422);
    assert_contains(&mangled.body, &[r#"id="consent-error""#]);
    Ok(())
}

on_both_engines!(
    a_new_parent_signs_up_consents_and_adds_a_child,
    a_forgotten_password_is_reset_by_the_emailed_link,
    a_co_guardian_accepts_an_invitation_from_the_page,
    the_security_page_lists_events_and_signs_out_everywhere,
    the_account_page_changes_the_password_and_deletes_the_account,
    pages_refuse_other_families_forged_posts_and_foreign_redirects,
);
