//! The portal's learning page, against the real binary on both engines: a child sees only
//! titles for its age, a guardian offers and stops offering titles through the API's own
//! rules (age, price), and no other family and no forged post changes anything.

use crate::common::api;
use crate::common::content::{self, Family, Package, World};
use crate::common::portal::{Browser, PASSWORD};
use crate::common::{Fallible, TestResult};
use cubby_client::content::manifest_bytes;
use cubby_core::content::{Manifest, PackageKind, Price};
use cubby_core::validation::AgeBand;

on_both_engines!(a_guardian_offers_and_withdraws_titles_suited_to_the_child, no_other_family_and_no_forged_post_changes_titles,);

const COUNTING: &str = "org.example.counting";
const SHAPES: &str = "org.example.shapes";
const ALGEBRA: &str = "org.example.algebra";
const ATLAS: &str = "org.example.atlas";

/// A 6–8 title, a second one, a 9–12 one and a paid 6–8 one, all published.
async fn publish_titles(world: &World) -> TestResult {
    let title = |id, band| content::package(&world.publisher, id, "1.0.0", band, PackageKind::Content, vec![vec![7; 1500]]);
    for package in [title(COUNTING, AgeBand::From6To8)?, title(SHAPES, AgeBand::From6To8)?, title(ALGEBRA, AgeBand::From9To12)?] {
        content::publish(&world.server, &package).await?;
    }
    content::publish(&world.server, &paid(world, title(ATLAS, AgeBand::From6To8)?)?).await?;
    Ok(())
}

/// The same package with a price, signed again.
fn paid(world: &World, mut package: Package) -> Fallible<Package> {
    let mut manifest = Manifest::parse(&package.manifest)?;
    manifest.price = Some(Price { amount_cents: 499, currency: "EUR".to_owned() });
    package.manifest = manifest_bytes(&manifest)?;
    package.signature = world.publisher.key.sign(&package.manifest);
    Ok(package)
}

/// The package ids the API says are approved for the family's child.
async fn approved(world: &World, family: &Family) -> Fallible<Vec<String>> {
    let (status, body) = api::get(&world.server, &family.path("/titles"), Some(&family.guardian.token)).await?;
    assert_eq!(status, 200, "{body}");
    let items = body.as_array().ok_or("the titles are not a list")?;
    Ok(items.iter().filter_map(|t| t["package_id"].as_str().map(str::to_owned)).collect())
}

fn learning(family: &Family) -> String {
    format!("/families/{}/learning", family.id)
}

fn approve_path(family: &Family) -> String {
    format!("/families/{}/children/{}/titles", family.id, family.child)
}

fn withdraw_path(family: &Family, package: &str) -> String {
    format!("/families/{}/children/{}/titles/{package}/withdraw", family.id, family.child)
}

fn form(prefix: &str, family: &Family, package: &str) -> String {
    format!("{prefix}-{}-{package}", family.child)
}

async fn a_guardian_offers_and_withdraws_titles_suited_to_the_child(postgres: bool) -> TestResult {
    let world = World::start(postgres).await?;
    publish_titles(&world).await?;
    // Enough titles for a second page of the child's catalogue (20 a page).
    for n in 0..18 {
        let id = format!("org.example.book-{n:02}");
        let book = content::package(&world.publisher, &id, "1.0.0", AgeBand::Under6, PackageKind::Content, vec![vec![1; 10]])?;
        content::publish(&world.server, &book).await?;
    }
    let ann = content::family(&world, "ann", "6_8").await?;
    let mut browser = Browser::new(&world.server)?;
    browser.sign_in("ann@example.org", PASSWORD).await?;

    let page = browser.get(&learning(&ann)).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Sam (ages 6 to 8)"), "{}", page.body);
    assert!(page.body.contains(&format!("Title of {COUNTING}")));
    assert!(!page.body.contains(ALGEBRA), "a 9–12 title is listed for a 6–8 child");
    assert!(page.body.contains("EUR 4.99"), "the paid title's price is not shown");
    assert!(page.body.contains(&format!(r#"href="/families/{}/learning""#, ann.id)), "no link in the navigation");
    let second = format!("{}?child={}&page=2", learning(&ann), ann.child);
    let link = format!(r#"href="{}?child={}&amp;page=2#catalogue-{}""#, learning(&ann), ann.child, ann.child);
    assert!(page.body.contains(&link), "no link to the second page");
    assert!(!page.body.contains(&format!(r#"id="{}""#, form("approve", &ann, SHAPES))), "the first page lists the 21st title");
    let page_two = browser.get(&second).await?;
    assert!(page_two.body.contains(&format!(r#"id="{}""#, form("approve", &ann, SHAPES))), "{}", page_two.body);

    // Offer a free title: the API lists it, the page shows it offered, with no offer button.
    let offer = form("approve", &ann, COUNTING);
    let csrf = page.form_csrf(&offer)?;
    let offered = browser.post(&approve_path(&ann), &[("csrf", &csrf), ("package_id", COUNTING)]).await?;
    assert!(offered.is_redirect_to(&learning(&ann)), "{} {}", offered.status, offered.body);
    assert_eq!(approved(&world, &ann).await?, vec![COUNTING.to_owned()]);
    let page = browser.get(&learning(&ann)).await?;
    assert!(page.body.contains(&format!(r#"id="{}""#, form("withdraw", &ann, COUNTING))));
    assert!(!page.body.contains(&format!(r#"id="{offer}""#)));
    assert!(page.body.contains("Offered"));

    // A paid title: the API's refusal beside its button.
    let refused = browser.post(&approve_path(&ann), &[("csrf", &csrf), ("package_id", ATLAS)]).await?;
    assert_eq!(refused.status, 402, "{}", refused.body);
    assert!(refused.body.contains(&format!(r#"id="{}-error""#, form("approve", &ann, ATLAS))), "{}", refused.body);
    assert!(refused.body.contains("payment provider"));

    // A 9–12 title posted by hand: refused for the child's age, and nothing approved.
    let refused = browser.post(&approve_path(&ann), &[("csrf", &csrf), ("package_id", ALGEBRA)]).await?;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains(&format!(r#"id="{}-error""#, form("approve", &ann, ALGEBRA))), "{}", refused.body);
    assert!(refused.body.contains("older children"));
    assert_eq!(approved(&world, &ann).await?, vec![COUNTING.to_owned()]);

    // Searching one child's catalogue.
    let found = browser.get(&format!("{}?child={}&q=shapes", learning(&ann), ann.child)).await?;
    assert_eq!(found.status, 200);
    assert!(found.body.contains(&format!(r#"id="{}""#, form("approve", &ann, SHAPES))));
    assert!(!found.body.contains(&format!(r#"id="{}""#, form("approve", &ann, ATLAS))));
    let nothing = browser.get(&format!("{}?child={}&q=zebras&subject=maths", learning(&ann), ann.child)).await?;
    assert!(nothing.body.contains("No titles match."), "{}", nothing.body);
    let bad_page = browser.get(&format!("{}?child={}&page=0", learning(&ann), ann.child)).await?;
    assert!(bad_page.body.contains(&format!(r#"id="search-{}-error""#, ann.child)), "{}", bad_page.body);

    // Stop offering it: the API agrees, and it can be offered again.
    let withdraw = form("withdraw", &ann, COUNTING);
    let csrf = page.form_csrf(&withdraw)?;
    let withdrawn = browser.post(&withdraw_path(&ann, COUNTING), &[("csrf", &csrf)]).await?;
    assert!(withdrawn.is_redirect_to(&learning(&ann)), "{} {}", withdrawn.status, withdrawn.body);
    assert!(approved(&world, &ann).await?.is_empty());
    let page = browser.get(&learning(&ann)).await?;
    assert!(page.body.contains(&format!(r#"id="{offer}""#)));
    Ok(())
}

async fn no_other_family_and_no_forged_post_changes_titles(postgres: bool) -> TestResult {
    let world = World::start(postgres).await?;
    publish_titles(&world).await?;
    let ann = content::family(&world, "ann", "6_8").await?;
    let bob = content::family(&world, "bob", "6_8").await?;
    let (status, body) = content::approve(&world.server, &ann, COUNTING).await?;
    assert_eq!(status, 201, "{body}");
    let before = approved(&world, &ann).await?;

    // Bob, with a valid token of his own, on Ann's family.
    let mut bobs = Browser::new(&world.server)?;
    bobs.sign_in("bob@example.org", PASSWORD).await?;
    let own = bobs.get(&learning(&bob)).await?;
    let csrf = own.form_csrf(&form("approve", &bob, SHAPES))?;
    let page = bobs.get(&learning(&ann)).await?;
    assert_eq!(page.status, 404);
    assert!(!page.body.contains("Sam ("), "another family's child is shown");
    let attempts = [
        bobs.post(&approve_path(&ann), &[("csrf", &csrf), ("package_id", SHAPES)]).await?,
        bobs.post(&withdraw_path(&ann, COUNTING), &[("csrf", &csrf)]).await?,
    ];
    for attempt in attempts {
        assert_eq!(attempt.status, 404, "{}", attempt.body);
    }
    assert_eq!(approved(&world, &ann).await?, before);
    assert!(approved(&world, &bob).await?.is_empty());

    // Ann's own forms without their token, or with nothing in them.
    let mut anns = Browser::new(&world.server)?;
    anns.sign_in("ann@example.org", PASSWORD).await?;
    let forged = [
        anns.post(&approve_path(&ann), &[("package_id", SHAPES)]).await?,
        anns.post(&withdraw_path(&ann, COUNTING), &[]).await?,
    ];
    for attempt in forged {
        assert_eq!(attempt.status, 403, "{}", attempt.body);
    }
    let page = anns.get(&learning(&ann)).await?;
    let csrf = page.form_csrf(&form("approve", &ann, SHAPES))?;
    let empty = anns.post(&approve_path(&ann), &[("csrf", &csrf)]).await?;
    assert!((400..500).contains(&empty.status), "{} {}", empty.status, empty.body);
    let unknown = anns.post(&approve_path(&ann), &[("csrf", &csrf), ("package_id", "org.example.nothing")]).await?;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(approved(&world, &ann).await?, before);
    let nobody = Browser::new(&world.server)?.get(&learning(&ann)).await?;
    assert!(nobody.is_redirect_to("/sign-in"));
    Ok(())
}
