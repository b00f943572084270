//! The portal's contacts and reports pages, driven as a browser without JavaScript would,
//! against the real binary on SQLite and PostgreSQL: what each page shows, and what the
//! API reports after each of its forms (the pages change nothing the API does not).

use std::path::Path;
use std::time::Duration;

use crate::common::api::{self, Session};
use crate::common::devices::device;
use crate::common::portal::{Browser, PASSWORD, Page, family_with_child, start};
use crate::common::{Dirs, Fallible, Server, TestResult};
use cubby_client::Event;
use serde_json::{Value, json};

const IDLE: Duration = Duration::from_millis(700);

/// A family with one consenting guardian (`parent-{tag}@example.org`) and one child.
struct Family {
    guardian: Session,
    id: String,
    child: String,
}

impl Family {
    fn page(&self) -> String {
        format!("/families/{}/contacts", self.id)
    }

    fn reports_page(&self) -> String {
        format!("/families/{}/reports", self.id)
    }

    /// Where the page's form for this child posts `action`.
    fn child_form(&self, action: &str) -> String {
        format!("/families/{}/contacts/{}/{action}", self.id, self.child)
    }

    fn contact_form(&self, contact: &str, action: &str) -> String {
        format!("/families/{}/contacts/{}/{contact}/{action}", self.id, self.child)
    }
}

async fn family(server: &Server, outbox: &Path, tag: &str, nickname: &str) -> Fallible<Family> {
    let email = format!("parent-{tag}@example.org");
    let (guardian, id, child) = family_with_child(server, outbox, &email, &format!("Family {tag}"), nickname).await?;
    Ok(Family { guardian, id, child })
}

/// The child's contacts as the API lists them to its guardian.
async fn contacts(server: &Server, family: &Family) -> Fallible<Vec<Value>> {
    let path = format!("/api/v1/families/{}/children/{}/contacts", family.id, family.child);
    let (status, body) = api::get(server, &path, Some(&family.guardian.token)).await?;
    assert_eq!(status, 200, "{body}");
    Ok(body.as_array().cloned().unwrap_or_default())
}

fn statuses(contacts: &[Value]) -> Vec<String> {
    contacts.iter().filter_map(|c| c["status"].as_str().map(ToOwned::to_owned)).collect()
}

async fn supervised(server: &Server, family: &Family) -> Fallible<bool> {
    let path = format!("/api/v1/families/{}/children/{}/supervision", family.id, family.child);
    let (status, body) = api::get(server, &path, Some(&family.guardian.token)).await?;
    assert_eq!(status, 200, "{body}");
    body["supervised"].as_bool().ok_or_else(|| format!("no supervision in {body}").into())
}

async fn reports(server: &Server, family: &Family) -> Fallible<Vec<Value>> {
    let (status, body) = api::get(server, &format!("/api/v1/families/{}/reports", family.id), Some(&family.guardian.token)).await?;
    assert_eq!(status, 200, "{body}");
    Ok(body.as_array().cloned().unwrap_or_default())
}

/// The text of the element with this `id` (the page escapes nothing in a code or a name
/// used here, so the raw text is the value).
fn element_text(page: &Page, id: &str) -> Fallible<String> {
    let open = format!(r#"id="{id}">"#);
    let start = page.body.find(&open).ok_or_else(|| format!("no element {id} in {}", page.body))? + open.len();
    let end = page.body[start..].find('<').ok_or("unterminated element")?;
    Ok(page.body[start..start + end].to_owned())
}

/// The error paragraph shown beside the form `id`, if any.
fn error_beside(page: &Page, form: &str) -> Option<String> {
    element_text(page, &format!("{form}-error")).ok()
}

/// Families "a" (Ava) and "b" (Ben): Ben's family redeemed Ava's contact code through the
/// API, so Ava's side (the returned id) waits for her family's approval.
async fn ava_and_ben_asking_to_talk(server: &Server, outbox: &Path) -> Fallible<(Family, Family, String)> {
    let (a, b) = (family(server, outbox, "a", "Ava").await?, family(server, outbox, "b", "Ben").await?);
    let code = api::contact_code(server, &a.guardian, &a.id, &a.child).await?;
    api::redeem_contact_code(server, &b.guardian, &b.id, &b.child, &code).await?;
    let contact = api::only_contact(server, &a.guardian, &a.id, &a.child, "needs_your_approval").await?;
    Ok((a, b, contact))
}

/// `a`'s guardian makes a contact code on the page; `b`'s guardian redeems it through the
/// API. Returns the id of `a`'s side, now waiting for `a`'s approval.
async fn request_from_the_page(server: &Server, browser: &mut Browser<'_>, a: &Family, b: &Family) -> Fallible<String> {
    let form = format!("contact-code-{}", a.child);
    let csrf = browser.get(&a.page()).await?.form_csrf(&form)?;
    let shared = browser.post(&a.child_form("code"), &[("csrf", &csrf)]).await?;
    assert_eq!(shared.status, 200, "{}", shared.body);
    assert!(shared.body.contains("It works once, until"), "{}", shared.body);
    let code = element_text(&shared, &form)?;
    assert_eq!(code.len(), 64, "{code}");
    let theirs = api::redeem_contact_code(server, &b.guardian, &b.id, &b.child, &code).await?;
    assert_eq!(theirs["status"], "waiting_for_them", "{theirs}");
    api::only_contact(server, &a.guardian, &a.id, &a.child, "needs_your_approval").await
}

async fn a_contact_code_is_shared_approved_declined_and_removed(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let (a, b) = (family(&server, &outbox, "a", "Ava").await?, family(&server, &outbox, "b", "Ben").await?);
    let mut browser = Browser::new(&server)?;
    assert!(browser.get(&a.page()).await?.is_redirect_to("/sign-in"));
    browser.sign_in("parent-a@example.org", PASSWORD).await?;

    let empty = browser.get(&a.page()).await?;
    assert_eq!(empty.status, 200);
    assert!(
        empty.body.contains("Ava") && empty.body.contains("No request is waiting") && empty.body.contains("No contact yet"),
        "{}",
        empty.body
    );
    assert!(empty.body.contains(r#"href="/api/v1/privacy-notice""#));
    let csrf = empty.form_csrf(&format!("contact-code-{}", a.child))?;

    // A code asked for without the page's token is refused.
    assert_eq!(browser.post(&a.child_form("code"), &[]).await?.status, 403);

    // Shared from the page, redeemed by B's guardian: A's page lists the request.
    let contact = request_from_the_page(&server, &mut browser, &a, &b).await?;
    let listed = browser.get(&a.page()).await?;
    assert!(listed.body.contains("Ben (a child in another family)"), "{}", listed.body);
    assert!(listed.body.contains(&format!(r#"id="approve-{contact}""#)) && listed.body.contains(&format!(r#"id="decline-{contact}""#)));

    // Approving needs the token; with it, both families' sides are approved.
    assert_eq!(browser.post(&a.contact_form(&contact, "approve"), &[]).await?.status, 403);
    assert_eq!(statuses(&contacts(&server, &a).await?), ["needs_your_approval"]);
    let approved = browser.post(&a.contact_form(&contact, "approve"), &[("csrf", &csrf)]).await?;
    assert!(approved.is_redirect_to(&a.page()), "{}: {}", approved.status, approved.body);
    assert_eq!(statuses(&contacts(&server, &a).await?), ["approved"]);
    assert_eq!(statuses(&contacts(&server, &b).await?), ["approved"]);
    let page = browser.get(&a.page()).await?;
    assert!(page.body.contains("approved") && page.body.contains(&format!(r#"id="remove-{contact}""#)), "{}", page.body);
    assert!(
        page.body.contains(&format!(r#"<label for="confirm-remove-{contact}">I understand Ben leaves Ava's conversations"#)),
        "{}",
        page.body
    );

    // Removing needs the box ticked: without it, the reason shows beside the form.
    let unticked = browser.post(&a.contact_form(&contact, "remove"), &[("csrf", &csrf)]).await?;
    assert_eq!(unticked.status, 422);
    assert!(error_beside(&unticked, &format!("remove-{contact}")).is_some_and(|e| e.contains("tick the box")), "{}", unticked.body);
    assert_eq!(statuses(&contacts(&server, &a).await?), ["approved"]);
    let forged = browser.post(&a.contact_form(&contact, "remove"), &[("confirm", "yes")]).await?;
    assert_eq!(forged.status, 403);
    assert_eq!(statuses(&contacts(&server, &a).await?), ["approved"]);
    let removed = browser.post(&a.contact_form(&contact, "remove"), &[("csrf", &csrf), ("confirm", "yes")]).await?;
    assert!(removed.is_redirect_to(&a.page()), "{}: {}", removed.status, removed.body);
    assert!(contacts(&server, &a).await?.is_empty());
    assert!(contacts(&server, &b).await?.is_empty(), "B's side goes too");

    // A second request, declined: both sides go.
    let contact = request_from_the_page(&server, &mut browser, &a, &b).await?;
    assert_eq!(browser.post(&a.contact_form(&contact, "decline"), &[]).await?.status, 403);
    assert_eq!(statuses(&contacts(&server, &a).await?), ["needs_your_approval"]);
    let declined = browser.post(&a.contact_form(&contact, "decline"), &[("csrf", &csrf)]).await?;
    assert!(declined.is_redirect_to(&a.page()), "{}: {}", declined.status, declined.body);
    assert!(contacts(&server, &a).await?.is_empty());
    assert!(contacts(&server, &b).await?.is_empty());

    // A code that is not one is explained beside the field; one of A's own too.
    let redeem = format!("redeem-{}", a.child);
    let wrong = browser.post(&a.child_form("redeem"), &[("csrf", &csrf), ("code", "not-a-code")]).await?;
    assert_eq!(wrong.status, 400);
    assert!(error_beside(&wrong, &redeem).is_some_and(|e| e.contains("unknown, already used or expired")), "{}", wrong.body);
    assert!(wrong.body.contains(&format!(r#"aria-describedby="{redeem}-error""#)), "{}", wrong.body);
    let own = api::contact_code(&server, &a.guardian, &a.id, &a.child).await?;
    let own = browser.post(&a.child_form("redeem"), &[("csrf", &csrf), ("code", &own)]).await?;
    assert_eq!(own.status, 400);
    assert!(error_beside(&own, &redeem).is_some_and(|e| e.contains("your own family's")), "{}", own.body);
    assert!(contacts(&server, &a).await?.is_empty());

    // Redeeming B's code from A's page is A's approval, waiting for B's guardian.
    let theirs = api::contact_code(&server, &b.guardian, &b.id, &b.child).await?;
    assert_eq!(browser.post(&a.child_form("redeem"), &[("code", &theirs)]).await?.status, 403);
    assert!(contacts(&server, &a).await?.is_empty());
    let redeemed = browser.post(&a.child_form("redeem"), &[("csrf", &csrf), ("code", &theirs)]).await?;
    assert!(redeemed.is_redirect_to(&a.page()), "{}: {}", redeemed.status, redeemed.body);
    assert_eq!(statuses(&contacts(&server, &a).await?), ["waiting_for_them"]);
    assert_eq!(statuses(&contacts(&server, &b).await?), ["needs_your_approval"]);
    assert!(browser.get(&a.page()).await?.body.contains("waiting for the other family's guardian"));
    Ok(())
}

async fn supervision_and_an_invited_adult_from_the_page(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let a = family(&server, &outbox, "a", "Ava").await?;
    api::guardian(&server, &outbox, "grandma@example.org", PASSWORD).await?;
    let mut browser = Browser::new(&server)?;
    browser.sign_in("parent-a@example.org", PASSWORD).await?;
    let page = browser.get(&a.page()).await?;
    let csrf = page.form_csrf(&format!("supervision-{}", a.child))?;
    assert!(page.body.contains(&format!(r#"<label for="supervised-{}">"#, a.child)), "{}", page.body);

    // Supervision: ticked turns it on, unticked off; without the token nothing changes.
    assert_eq!(browser.post(&a.child_form("supervision"), &[("supervised", "yes")]).await?.status, 403);
    assert!(!supervised(&server, &a).await?);
    let on = browser.post(&a.child_form("supervision"), &[("csrf", &csrf), ("supervised", "yes")]).await?;
    assert!(on.is_redirect_to(&a.page()), "{}: {}", on.status, on.body);
    assert!(supervised(&server, &a).await?);
    assert!(browser.get(&a.page()).await?.body.contains(&format!(r#"id="supervised-{}" name="supervised" value="yes" checked"#, a.child)));
    let off = browser.post(&a.child_form("supervision"), &[("csrf", &csrf)]).await?;
    assert!(off.is_redirect_to(&a.page()));
    assert!(!supervised(&server, &a).await?);

    // An adult invited by email: a bad address is explained beside the field.
    let invite = format!("invite-adult-{}", a.child);
    let bad = browser.post(&a.child_form("invite"), &[("csrf", &csrf), ("email", "grandma")]).await?;
    assert_eq!(bad.status, 422);
    assert!(error_beside(&bad, &invite).is_some(), "{}", bad.body);
    assert_eq!(browser.post(&a.child_form("invite"), &[("email", "grandma@example.org")]).await?.status, 403);
    assert_eq!(api::mails(&outbox, "grandma@example.org", "invites you"), 0, "an invitation left without the token");
    let sent = browser.post(&a.child_form("invite"), &[("csrf", &csrf), ("email", "grandma@example.org")]).await?;
    let after = format!("{}?invited={}", a.page(), a.child);
    assert!(sent.is_redirect_to(&after), "{}: {:?} {}", sent.status, sent.location, sent.body);
    assert!(!after.contains("grandma"), "the address stays out of the URL");
    assert!(browser.get(&after).await?.body.contains("The invitation is on its way"));
    let token = api::outbox_token(&outbox, "grandma@example.org", "invites you")?;

    // Grandma opens the link before signing in: told what to do, with a way back here.
    let link = format!("/accept-contact?token={token}");
    let mut grandma = Browser::new(&server)?;
    let explained = grandma.get(&link).await?;
    assert_eq!(explained.status, 200);
    assert!(explained.body.contains(&format!(r#"href="/sign-in?next=%2Faccept-contact%3Ftoken%3D{token}""#)), "{}", explained.body);
    assert!(explained.body.contains(r#"href="/sign-up""#));
    assert!(grandma.post("/accept-contact", &[("token", &token)]).await?.is_redirect_to("/sign-in"));

    grandma.sign_in("grandma@example.org", PASSWORD).await?;
    let offered = grandma.get(&link).await?;
    assert_eq!(offered.status, 200);
    let grandma_csrf = offered.form_csrf("accept-contact")?;
    assert!(offered.body.contains(&format!(r#"name="token" value="{token}""#)), "{}", offered.body);
    assert_eq!(grandma.post("/accept-contact", &[("token", &token)]).await?.status, 403);
    assert!(contacts(&server, &a).await?.is_empty());
    let accepted = grandma.post("/accept-contact", &[("csrf", &grandma_csrf), ("token", &token)]).await?;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert!(accepted.body.contains("You can now talk with Ava"), "{}", accepted.body);
    let listed = contacts(&server, &a).await?;
    assert_eq!(
        (listed.len(), listed[0]["name"].as_str(), listed[0]["status"].as_str()),
        (1, Some("grandma@example.org"), Some("approved"))
    );
    // A link works once; the second time says why beside the button.
    let again = grandma.post("/accept-contact", &[("csrf", &grandma_csrf), ("token", &token)]).await?;
    assert_eq!(again.status, 400);
    assert!(error_beside(&again, "accept-contact").is_some_and(|e| e.contains("already used")), "{}", again.body);
    assert!(browser.get(&a.page()).await?.body.contains("grandma@example.org (an adult)"));
    Ok(())
}

async fn a_toys_report_is_escalated_and_dismissed_from_the_page(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let (a, b, contact) = ava_and_ben_asking_to_talk(&server, &outbox).await?;
    let (status, body) = api::post(
        &server,
        &format!("/api/v1/families/{}/children/{}/contacts/{contact}/approve", a.id, a.child),
        Some(&a.guardian.token),
        json!({}),
    )
    .await?;
    assert_eq!(status, 200, "{body}");

    let mut browser = Browser::new(&server)?;
    browser.sign_in("parent-a@example.org", PASSWORD).await?;
    let quiet = browser.get(&a.reports_page()).await?;
    assert_eq!(quiet.status, 200);
    assert!(quiet.body.contains("Nothing has been reported") && quiet.body.contains("No child has blocked anyone"), "{}", quiet.body);

    // Ben's toy sends; Ava's toy reports the message twice.
    let local = tempfile::tempdir()?;
    let ava = device(&server, local.path(), "ava-toy", &a.guardian, &a.id, Some(&a.child)).await?;
    let ben = device(&server, local.path(), "ben-toy", &b.guardian, &b.id, Some(&b.child)).await?;
    let chat = ben.create_conversation().await?;
    ben.invite(&chat, ava.device_id()).await?;
    ava.sync(IDLE).await?;
    ben.send_text(&chat, "you are <b>silly</b>").await?;
    let (sender, envelope) = ava
        .sync(IDLE)
        .await?
        .into_iter()
        .find_map(|e| match e {
            Event::Message { sender, envelope, .. } => Some((sender, envelope)),
            _ => None,
        })
        .ok_or("no message reached Ava's toy")?;
    let kept = ava.report(&chat, &sender, &envelope, "this made me sad").await?;
    let dismissed = ava.report(&chat, &sender, &envelope, "again").await?;

    let page = browser.get(&a.reports_page()).await?;
    assert!(page.body.contains("you are &lt;b&gt;silly&lt;/b&gt;") && page.body.contains("this made me sad"), "{}", page.body);
    assert!(page.body.contains("Reported by Ava") && page.body.contains(ben.device_id()), "{}", page.body);
    let csrf = page.form_csrf(&format!("escalate-{kept}"))?;
    assert!(page.body.contains(&format!(r#"id="dismiss-{dismissed}""#)));

    // Sending on to the operator needs the token and the box ticked.
    let escalate = format!("{}/{kept}/escalate", a.reports_page());
    assert_eq!(browser.post(&escalate, &[("confirm", "yes")]).await?.status, 403);
    let unticked = browser.post(&escalate, &[("csrf", &csrf)]).await?;
    assert_eq!(unticked.status, 422);
    assert!(error_beside(&unticked, &format!("escalate-{kept}")).is_some_and(|e| e.contains("tick the box")), "{}", unticked.body);
    assert!(reports(&server, &a).await?.iter().all(|r| r["escalated_at"].is_null()));
    let sent = browser.post(&escalate, &[("csrf", &csrf), ("confirm", "yes")]).await?;
    assert!(sent.is_redirect_to(&a.reports_page()), "{}: {}", sent.status, sent.body);
    let listed = reports(&server, &a).await?;
    let escalated = |id: &str| listed.iter().find(|r| r["id"] == id).map(|r| r["escalated_at"].is_i64());
    assert_eq!((escalated(&kept), escalated(&dismissed)), (Some(true), Some(false)));
    assert!(browser.get(&a.reports_page()).await?.body.contains("Sent to the operator on"));

    // Another family's guardian: 404 on the page and its forms, and nothing changes.
    let mut other = Browser::new(&server)?;
    let own = other.sign_in("parent-b@example.org", PASSWORD).await?;
    let other_csrf = own.csrf()?;
    let foreign = other.get(&a.reports_page()).await?;
    assert_eq!(foreign.status, 404);
    assert!(!foreign.body.contains("silly") && !foreign.body.contains("Ava"), "{}", foreign.body);
    let dismiss = format!("{}/{dismissed}/dismiss", a.reports_page());
    assert_eq!(other.post(&dismiss, &[("csrf", &other_csrf)]).await?.status, 404);
    let escalate_other = format!("{}/{dismissed}/escalate", a.reports_page());
    assert_eq!(other.post(&escalate_other, &[("csrf", &other_csrf), ("confirm", "yes")]).await?.status, 404);
    // Nor through B's own family's address.
    assert_eq!(other.post(&format!("{}/{dismissed}/dismiss", b.reports_page()), &[("csrf", &other_csrf)]).await?.status, 404);
    assert_eq!(reports(&server, &a).await?.len(), 2);
    assert!(reports(&server, &a).await?.iter().any(|r| r["id"] == dismissed.as_str() && r["escalated_at"].is_null()));

    // Dismissing deletes the report.
    assert_eq!(browser.post(&dismiss, &[]).await?.status, 403);
    assert_eq!(reports(&server, &a).await?.len(), 2);
    let gone = browser.post(&dismiss, &[("csrf", &csrf)]).await?;
    assert!(gone.is_redirect_to(&a.reports_page()), "{}: {}", gone.status, gone.body);
    let left: Vec<Value> = reports(&server, &a).await?;
    assert_eq!((left.len(), left[0]["id"].as_str()), (1, Some(kept.as_str())));
    assert!(!browser.get(&a.reports_page()).await?.body.contains(&format!(r#"id="dismiss-{dismissed}""#)));

    // Ava blocks Ben from her toy: both pages say so, and the block can be removed.
    let reachable = ava.contacts().await?;
    ava.block(reachable[0].contact_id.as_deref().ok_or("no contact id")?).await?;
    let page = browser.get(&a.reports_page()).await?;
    assert!(page.body.contains("Ben, blocked by Ava") && page.body.contains(&format!(r#"href="{}""#, a.page())), "{}", page.body);
    let contacts_page = browser.get(&a.page()).await?;
    assert!(contacts_page.body.contains("blocked by Ava") && contacts_page.body.contains(&format!(r#"id="remove-{contact}""#)));
    let removed = browser.post(&a.contact_form(&contact, "remove"), &[("csrf", &csrf), ("confirm", "yes")]).await?;
    assert!(removed.is_redirect_to(&a.page()));
    assert!(contacts(&server, &a).await?.is_empty());
    Ok(())
}

async fn another_familys_guardian_gets_404_and_changes_nothing(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let outbox = dirs.outbox();
    let (a, b, contact) = ava_and_ben_asking_to_talk(&server, &outbox).await?;
    let spare = api::contact_code(&server, &b.guardian, &b.id, &b.child).await?;

    let mut browser = Browser::new(&server)?;
    let dashboard = browser.sign_in("parent-b@example.org", PASSWORD).await?;
    let csrf = dashboard.csrf()?;
    for page in [a.page(), a.reports_page()] {
        let refused = browser.get(&page).await?;
        assert_eq!(refused.status, 404, "{page}");
        assert!(!refused.body.contains("Ava") && !refused.body.contains("Family a"), "{}", refused.body);
    }
    let posts: [(String, Vec<(&str, &str)>); 7] = [
        (a.child_form("code"), vec![]),
        (a.child_form("redeem"), vec![("code", &spare)]),
        (a.child_form("invite"), vec![("email", "stranger@example.org")]),
        (a.child_form("supervision"), vec![("supervised", "yes")]),
        (a.contact_form(&contact, "approve"), vec![]),
        (a.contact_form(&contact, "decline"), vec![]),
        (a.contact_form(&contact, "remove"), vec![("confirm", "yes")]),
    ];
    for (path, fields) in &posts {
        let mut with_token = vec![("csrf", csrf.as_str())];
        with_token.extend(fields.iter().copied());
        let refused = browser.post(path, &with_token).await?;
        assert_eq!(refused.status, 404, "{path}: {}", refused.body);
        assert!(!refused.body.contains("Ava"), "{}", refused.body);
    }
    // A's child under B's own family's address is no child of B's either.
    let mixed = format!("/families/{}/contacts/{}/code", b.id, a.child);
    assert_eq!(browser.post(&mixed, &[("csrf", &csrf)]).await?.status, 404);

    assert_eq!(statuses(&contacts(&server, &a).await?), ["needs_your_approval"]);
    assert!(!supervised(&server, &a).await?);
    assert_eq!(api::mails(&outbox, "stranger@example.org", "invites you"), 0, "an invitation left");
    // B's spare code was not used up by the refused redeem.
    api::redeem_contact_code(&server, &a.guardian, &a.id, &a.child, &spare).await?;

    // A malformed body is a plain 4xx page, never a crash.
    let garbled = browser
        .http
        .post(server.url(&b.child_form("redeem")))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", browser.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; "))
        .body("csrf=a&csrf=b&code=%zz")
        .send()
        .await?;
    assert!(garbled.status().is_client_error(), "{}", garbled.status());
    Ok(())
}

on_both_engines!(
    a_contact_code_is_shared_approved_declined_and_removed,
    supervision_and_an_invited_adult_from_the_page,
    a_toys_report_is_escalated_and_dismissed_from_the_page,
    another_familys_guardian_gets_404_and_changes_nothing,
);
