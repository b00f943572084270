//! The learning content store end to end, against the real `cubby` binary: publishers sign
//! packages (through the CLI too), guardians approve titles for a child, the toy's SDK
//! downloads, verifies and installs them.
//!
//! The issue's four "done when" lines, each a scenario below:
//! 1. a tampered package is refused by the server, and — served by a malicious server
//!    (files, manifest bytes or versions changed behind the API) — by the SDK, which keeps
//!    the installed version intact;
//! 2. a 6–8 child is never offered, nor able to download, a 9–12 title, nor its toy a title
//!    not approved for it;
//! 3. a 50 MB download cut half-way resumes where it stopped and verifies;
//! 4. the family export lists approvals and downloads; after the family is deleted the
//!    publisher's counts stay and nothing links them to the family.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::common::content::{Database, Package, World, approve, family, keygen, package, publish, put_file, register, sha256_hex, submit, toy};
use crate::common::media::random_bytes;
use crate::common::{Dirs, Server, TestResult, api, cubby, strings, text};
use cubby_client::ClientError;
use cubby_core::content::PackageKind;
use cubby_core::validation::AgeBand;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const COUNTING: &str = "org.example.counting";

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn ids(items: &Value) -> Vec<String> {
    items.as_array().map(|a| a.iter().filter_map(|t| t["package_id"].as_str().map(ToOwned::to_owned)).collect()).unwrap_or_default()
}

fn counting(world: &World, version: &str, first: &[u8]) -> common::Fallible<Package> {
    package(&world.publisher, COUNTING, version, AgeBand::From6To8, PackageKind::Content, vec![first.to_vec(), random_bytes(100_000)?])
}

/// Done when 1: tampering is refused by the server, and by the SDK when the server itself
/// is the one tampering.
async fn tampered_packages_are_refused_by_the_server_and_by_the_toy(postgres: bool) -> TestResult {
    let world = World::start(postgres).await?;
    let server = &world.server;
    let v1 = counting(&world, "1.0.0", b"one, two")?;
    publish(server, &v1).await?;

    // The toy installs 1.0.0.
    let family = family(&world, "tamper", "6_8").await?;
    let (status, body) = approve(server, &family, COUNTING).await?;
    assert_eq!(status, 201, "{body}");
    let toy = toy(server, &family).await?;
    let device_dir = tempfile::tempdir()?;
    let mut library = world.library(device_dir.path())?;
    let offers = library.available(&toy.api, &toy.session).await?;
    let offer = offers.get(COUNTING).ok_or("1.0.0 is not offered")?.clone();
    library.install(&toy.api, &toy.session, &offer).await?;
    let installed = library.installed_file(COUNTING, "content/file-0.bin").ok_or("not installed")?;
    assert_eq!(std::fs::read(&installed)?, b"one, two");

    // The server: a manifest byte changed after signing is refused (403) ...
    let v2 = counting(&world, "1.1.0", b"one, two, three")?;
    let forged = v2.manifest.iter().map(|&b| if b == b'A' { b'B' } else { b }).collect::<Vec<u8>>();
    assert_ne!(forged, v2.manifest);
    let (status, body) = submit(server, &forged, &v2.signature).await?;
    assert_eq!((status, error_code(&body)), (403, "signature_invalid"), "{body}");
    // ... a file changed after signing is refused (422) and nothing of it is kept ...
    let (status, body) = submit(server, &v2.manifest, &v2.signature).await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["missing_files"], serde_json::json!([0, 1]), "{body}");
    let mut changed = v2.files[0].clone();
    changed[0] ^= 1;
    let (status, body) = put_file(server, COUNTING, "1.1.0", 0, changed).await?;
    assert_eq!((status, error_code(&body)), (422, "hash_mismatch"), "{body}");
    let (status, body) = submit(server, &v2.manifest, &v2.signature).await?;
    assert_eq!((status, &body["missing_files"]), (201, &serde_json::json!([0, 1])), "resuming: {body}");
    for (index, bytes) in v2.files.iter().enumerate() {
        let (status, body) = put_file(server, COUNTING, "1.1.0", index, bytes.clone()).await?;
        assert_eq!(status, 204, "{body}");
    }
    // ... and a replayed older signed version is refused (409).
    let (status, body) = submit(server, &v1.manifest, &v1.signature).await?;
    assert_eq!((status, error_code(&body)), (409, "version_not_newer"), "{body}");

    // A malicious server changes a stored file: the toy refuses 1.1.0, keeps 1.0.0.
    let blobs = world.package_blobs(COUNTING, "1.1.0")?;
    let blob = blobs.iter().find(|p| p.to_string_lossy().ends_with("/0")).ok_or(format!("no stored file 0 among {blobs:?}"))?;
    let mut stored = std::fs::read(blob)?;
    stored[0] ^= 1;
    std::fs::write(blob, &stored)?;
    let offers = library.available(&toy.api, &toy.session).await?;
    let offer = offers.get(COUNTING).ok_or("1.1.0 is not offered")?.clone();
    assert_eq!(offer.version().to_string(), "1.1.0");
    let refused = library.install(&toy.api, &toy.session, &offer).await;
    assert!(matches!(refused, Err(ClientError::PackageRefused { .. })), "{refused:?}");
    assert!(!library.partial_file(&offer, 0).exists(), "a file that does not match is not kept");
    assert_installed(&world, device_dir.path(), "1.0.0", b"one, two")?;

    // A malicious server changes the stored manifest bytes: the offer is refused outright.
    let database = Database(world.database_url());
    let tampered = v2.manifest.iter().map(|&b| if b == b'A' { b'B' } else { b }).collect::<Vec<u8>>();
    assert_eq!(database.set_manifest(COUNTING, "1.1.0", tampered).await?, 1);
    let offers = library.available(&toy.api, &toy.session).await?;
    assert!(offers.get(COUNTING).is_none(), "a manifest that does not verify is never installable");
    let refusal = offers.refused.iter().find(|r| r.package_id == COUNTING).ok_or("the tampered manifest is not reported")?;
    assert!(refusal.reason.contains("signature"), "{refusal:?}");
    assert_installed(&world, device_dir.path(), "1.0.0", b"one, two")?;

    // A malicious server offers the older version again (the newer one's rows deleted):
    // a downgrade is refused.
    database.execute("DELETE FROM package_files WHERE package_id = $1 AND version = $2", &[COUNTING, "1.1.0"]).await?;
    assert_eq!(database.execute("DELETE FROM packages WHERE package_id = $1 AND version = $2", &[COUNTING, "1.1.0"]).await?, 1);
    let offers = library.available(&toy.api, &toy.session).await?;
    let offer = offers.get(COUNTING).ok_or("1.0.0 is not offered again")?.clone();
    assert_eq!(offer.version().to_string(), "1.0.0");
    let refused = library.install(&toy.api, &toy.session, &offer).await;
    assert!(matches!(refused, Err(ClientError::PackageNotNewer { .. })), "{refused:?}");
    assert_installed(&world, device_dir.path(), "1.0.0", b"one, two")?;
    Ok(())
}

/// The library, reopened from disk, still has `version` with its first file's bytes.
fn assert_installed(world: &World, dir: &std::path::Path, version: &str, first: &[u8]) -> TestResult {
    let library = world.library(dir)?;
    assert_eq!(library.installed_version(COUNTING).map(|v| v.to_string()).as_deref(), Some(version));
    let path = library.installed_file(COUNTING, "content/file-0.bin").ok_or("not installed")?;
    assert_eq!(std::fs::read(path)?, first);
    Ok(())
}

/// Done when 2: age bands and approvals decide what a toy is offered and may download.
async fn a_child_gets_only_suitable_approved_titles(postgres: bool) -> TestResult {
    let world = World::start(postgres).await?;
    let server = &world.server;
    let p = &world.publisher;
    let teen = package(p, "org.example.teen-science", "1.0.0", AgeBand::From9To12, PackageKind::Content, vec![b"cells".to_vec()])?;
    let colours = package(p, "org.example.colours", "1.0.0", AgeBand::From6To8, PackageKind::Content, vec![b"red, green, blue".to_vec()])?;
    let firmware = package(p, "org.example.firmware", "2.0.0", AgeBand::Under6, PackageKind::Firmware, vec![b"firmware image".to_vec()])?;
    for package in [&teen, &colours, &firmware] {
        publish(server, package).await?;
    }
    let family = family(&world, "ages", "6_8").await?;
    let guardian = Some(family.guardian.token.as_str());

    // The catalogue has the 9–12 title; the child's catalogue does not.
    let (status, all) = api::get(server, "/api/v1/catalogue?age_band=9_12", guardian).await?;
    assert_eq!(status, 200, "{all}");
    assert_eq!(ids(&all["items"]), vec![teen.id.clone()], "{all}");
    let (status, mine) = api::get(server, &family.path("/catalogue?kind=content"), guardian).await?;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(ids(&mine["items"]), vec![colours.id.clone()], "{mine}");
    let (status, body) = api::get(server, "/api/v1/catalogue?per_page=101", guardian).await?;
    assert_eq!((status, error_code(&body)), (422, "invalid_parameter"), "{body}");

    // It cannot be approved for the child.
    let (status, body) = approve(server, &family, &teen.id).await?;
    assert_eq!((status, error_code(&body)), (403, "not_suitable_for_age"), "{body}");

    // The toy is offered the firmware only: the 6–8 title is not approved yet.
    let toy = toy(server, &family).await?;
    assert_eq!(ids(&toy.titles(server).await?), vec![firmware.id.clone()]);
    // With the ids in hand: the unsuitable, the unapproved and the unknown are one 404.
    let (teen_status, teen_body) = toy.download(server, &teen.id, "1.0.0", 0).await?;
    let (colours_status, colours_body) = toy.download(server, &colours.id, "1.0.0", 0).await?;
    let (unknown_status, unknown_body) = toy.download(server, "org.example.nothing", "1.0.0", 0).await?;
    assert_eq!((teen_status, colours_status, unknown_status), (404, 404, 404));
    assert_eq!(teen_body, unknown_body);
    assert_eq!(colours_body, unknown_body);

    // Approved, the 6–8 title is offered and downloads; the 9–12 one still does not.
    let (status, body) = approve(server, &family, &colours.id).await?;
    assert_eq!(status, 201, "{body}");
    let mut offered = ids(&toy.titles(server).await?);
    offered.sort();
    assert_eq!(offered, vec![colours.id.clone(), firmware.id.clone()]);
    assert_eq!(toy.download(server, &colours.id, "1.0.0", 0).await?, (200, b"red, green, blue".to_vec()));
    assert_eq!(toy.download(server, &teen.id, "1.0.0", 0).await?.0, 404);
    // And the SDK installs both offers.
    let device_dir = tempfile::tempdir()?;
    let mut library = world.library(device_dir.path())?;
    let offers = library.available(&toy.api, &toy.session).await?;
    assert!(offers.refused.is_empty(), "{:?}", offers.refused);
    for offer in &offers.verified {
        library.install(&toy.api, &toy.session, offer).await?;
    }
    assert_eq!(library.installed().len(), 2);
    Ok(())
}

/// A TCP relay between the SDK and the server: counts the bytes the server sends through
/// it and, given a limit, cuts the connection once that many went through.
struct Relay {
    url: String,
    from_server: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(server: &Server, cut_after: Option<u64>) -> common::Fallible<Relay> {
    let (scheme, target) = server.base_url.split_once("://").ok_or("the server's URL has no scheme")?;
    let target = target.trim_end_matches('/').to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("{scheme}://{}", listener.local_addr()?);
    let from_server = Arc::new(AtomicU64::new(0));
    let counter = from_server.clone();
    let task = tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let (target, counter) = (target.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(&target).await else { return };
                let (mut client_read, mut client_write) = inbound.into_split();
                let (mut server_read, mut server_write) = outbound.into_split();
                let upstream = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let read = match server_read.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => read,
                    };
                    let before = counter.load(Ordering::SeqCst);
                    let allowed = cut_after.map_or(read as u64, |limit| limit.saturating_sub(before).min(read as u64));
                    counter.fetch_add(allowed, Ordering::SeqCst);
                    if client_write.write_all(&buffer[..allowed as usize]).await.is_err() || allowed < read as u64 {
                        break;
                    }
                }
                // Dropping both halves closes the connection mid-answer.
                upstream.abort();
            });
        }
    });
    Ok(Relay { url, from_server, task })
}

/// Done when 3: a 50 MB download cut half-way resumes where it stopped and verifies.
#[tokio::test]
async fn an_interrupted_download_resumes_where_it_stopped() -> TestResult {
    const SIZE: usize = 50 * 1024 * 1024;
    const CUT: u64 = 25 * 1024 * 1024;
    let world = World::start(false).await?;
    let server = &world.server;
    let big = random_bytes(SIZE)?;
    let expected = sha256_hex(&big);
    let pkg = package(&world.publisher, "org.example.big-book", "1.0.0", AgeBand::From6To8, PackageKind::Content, vec![big])?;
    publish(server, &pkg).await?;
    let family = family(&world, "resume", "6_8").await?;
    assert_eq!(approve(server, &family, &pkg.id).await?.0, 201);
    let toy = toy(server, &family).await?;
    let device_dir = tempfile::tempdir()?;
    let mut library = world.library(device_dir.path())?;
    let offer = library.available(&toy.api, &toy.session).await?.get(&pkg.id).ok_or("not offered")?.clone();

    // Through a relay that cuts the connection after 25 MB: the install fails half-way.
    let cutting = relay(server, Some(CUT)).await?;
    let failed = library.install(&toy.through(&cutting.url)?, &toy.session, &offer).await;
    assert!(failed.is_err(), "the cut download must fail");
    let partial = std::fs::metadata(library.partial_file(&offer, 0))?.len();
    assert!(partial > 20 * 1024 * 1024 && partial <= CUT, "partial file of {partial} bytes");
    assert!(library.installed_version(&pkg.id).is_none());
    drop(cutting);

    // Again, through a relay that only counts: only the rest comes.
    let counting = relay(server, None).await?;
    library.install(&toy.through(&counting.url)?, &toy.session, &offer).await?;
    let second = counting.from_server.load(Ordering::SeqCst);
    let rest = SIZE as u64 - partial;
    assert!(second >= rest && second < rest + 64 * 1024, "the second install fetched {second} bytes for {rest} missing");
    let installed = library.installed_file(&pkg.id, "content/file-0.bin").ok_or("not installed")?;
    assert_eq!(cubby_client::content::digest_file(&installed)?.sha256, expected);
    assert!(!library.partial_file(&offer, 0).exists());
    Ok(())
}

/// Done when 4: the export shows the family's approvals and downloads; deleting the family
/// deletes them, the publisher's counts stay and name no family.
async fn export_lists_titles_and_deletion_leaves_only_anonymous_counts(postgres: bool) -> TestResult {
    let world = World::start(postgres).await?;
    let server = &world.server;
    let pkg = counting(&world, "1.0.0", b"one, two")?;
    publish(server, &pkg).await?;
    let family = family(&world, "export", "6_8").await?;
    let (status, approval) = approve(server, &family, COUNTING).await?;
    assert_eq!(status, 201, "{approval}");
    assert_eq!(approval["package_id"], COUNTING, "{approval}");
    assert!(approval["price"].is_null() && approval["entitlement"]["granted_at"].is_number(), "{approval}");
    let toy = toy(server, &family).await?;
    let device_dir = tempfile::tempdir()?;
    let mut library = world.library(device_dir.path())?;
    let offer = library.available(&toy.api, &toy.session).await?.get(COUNTING).ok_or("not offered")?.clone();
    library.install(&toy.api, &toy.session, &offer).await?;

    let (status, export) = api::get(server, &format!("/api/v1/families/{}/export", family.id), Some(&family.guardian.token)).await?;
    assert_eq!(status, 200, "{export}");
    let titles = &export["titles"][0];
    assert_eq!(titles["child_id"], family.child.as_str(), "{export}");
    assert_eq!(titles["approvals"][0]["package_id"], COUNTING, "{export}");
    assert_eq!(titles["downloads"][0]["package_id"], COUNTING, "{export}");
    assert_eq!(titles["downloads"][0]["version"], "1.0.0", "{export}");
    assert_eq!(titles["downloads"][0]["device_id"], toy.device_id.as_str(), "{export}");

    let (status, body) = api::delete(server, &format!("/api/v1/families/{}", family.id), Some(&family.guardian.token)).await?;
    assert_eq!(status, 204, "{body}");
    let database = Database(world.database_url());
    for sql in ["SELECT COUNT(*) FROM title_approvals", "SELECT COUNT(*) FROM title_entitlements", "SELECT COUNT(*) FROM package_downloads"] {
        assert_eq!(database.count(sql, &[]).await?, 0, "{sql}: the family's rows are still there");
    }
    let counted = "SELECT COUNT(*) FROM package_counts WHERE package_id = $1 AND version = $2 AND downloads = 1 AND approvals = 1";
    assert_eq!(database.count(counted, &[COUNTING, "1.0.0"]).await?, 1);

    let World { dirs, database: url, server, .. } = world;
    server.stop()?;
    let mut args = strings(&["admin", "publisher", "stats"]);
    args.extend(dirs.args(url.as_deref()));
    let output = cubby(&args)?;
    let shown = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(shown.contains("example-books org.example.counting 1.0.0 downloads=1 approvals=1"), "{shown}");
    assert!(!shown.contains(&family.id) && !shown.contains(&family.child) && !shown.contains(&toy.device_id), "{shown}");
    Ok(())
}

/// The CLI: `cubby publisher keygen`, `cubby admin publisher add`, `cubby publish` (and
/// resuming it).
#[tokio::test]
async fn the_cli_makes_keys_registers_publishers_and_publishes() -> TestResult {
    let dirs = Dirs::new()?;
    Server::start(&dirs.args(None))?.stop()?;
    let publisher = keygen(dirs.root.path(), "example-books")?;
    assert_eq!(publisher.public_key.len(), 64);
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&publisher.key_file)?.permissions().mode() & 0o777, 0o600);
    }
    // A key is never overwritten.
    let again = cubby(&strings(&["publisher", "keygen", "--out", &publisher.key_file.display().to_string()]))?;
    assert!(!again.status.success());

    // Registering: a bad key or id is refused, a second registration too.
    let mut bad = strings(&["admin", "publisher", "add", "--id", "example-books", "--name", "Example Books", "--public-key", "abcd"]);
    bad.extend(dirs.args(None));
    assert!(!cubby(&bad)?.status.success());
    let mut bad_id = strings(&["admin", "publisher", "add", "--id", "Example Books", "--name", "Example Books", "--public-key", &publisher.public_key]);
    bad_id.extend(dirs.args(None));
    assert!(!cubby(&bad_id)?.status.success());
    let output = register(&dirs, None, &publisher)?;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!register(&dirs, None, &publisher)?.status.success(), "a publisher is registered once");

    let server = Server::start(&dirs.args(None))?;
    let work = dirs.root.path().join("book");
    std::fs::create_dir_all(&work)?;
    let description = work.join("PACKAGE.toml");
    std::fs::write(
        &description,
        r#"publisher = "example-books"
id = "org.example.counting"
version = "1.2.0"
kind = "content"
title = "Counting with Bunny"
description = "Count to ten with Bunny."
languages = ["en"]
age_band = "6_8"
subjects = ["maths"]
content_descriptors = []
"#,
    )?;
    let (epub, audio) = (work.join("counting.epub"), work.join("counting.ogg"));
    std::fs::write(&epub, b"an epub")?;
    std::fs::write(&audio, random_bytes(200_000)?)?;

    // Interrupted earlier: the same manifest was posted and its first file uploaded (the
    // test builds the bytes the CLI builds; Ed25519 signatures are deterministic).
    let manifest = cubby_core::content::Manifest {
        publisher: "example-books".into(),
        id: "org.example.counting".into(),
        version: "1.2.0".parse()?,
        kind: PackageKind::Content,
        title: "Counting with Bunny".into(),
        description: "Count to ten with Bunny.".into(),
        languages: vec!["en".into()],
        age_band: AgeBand::From6To8,
        subjects: vec!["maths".into()],
        content_descriptors: vec![],
        price: None,
        files: [&epub, &audio]
            .iter()
            .map(|path| {
                let digest = cubby_client::content::digest_file(path)?;
                let name = path.file_name().and_then(|n| n.to_str()).ok_or("file name")?.to_owned();
                Ok(cubby_core::content::FileEntry { path: name, size: digest.size, sha256: digest.sha256 })
            })
            .collect::<common::Fallible<Vec<_>>>()?,
        size: 0,
    };
    let manifest = cubby_core::content::Manifest { size: manifest.files.iter().map(|f| f.size).sum(), ..manifest };
    let bytes = cubby_client::content::manifest_bytes(&manifest)?;
    let (status, body) = submit(&server, &bytes, &publisher.key.sign(&bytes)).await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(put_file(&server, "org.example.counting", "1.2.0", 0, b"an epub".to_vec()).await?.0, 204);

    let publish_args = |server: &Server| {
        let mut args = strings(&["publish", &description.display().to_string(), &epub.display().to_string(), &audio.display().to_string()]);
        args.extend(strings(&["--key", &publisher.key_file.display().to_string(), "--server", &server.base_url]));
        args
    };
    let output = cubby(&publish_args(&server))?;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("1 of 2 files uploaded"), "{}", text(&output.stdout));

    // Published: in the catalogue, with the publisher's name.
    let guardian = api::guardian(&server, &dirs.outbox(), "cli@example.org", "correct horse battery staple").await?;
    let (status, catalogue) = api::get(&server, "/api/v1/catalogue", Some(&guardian.token)).await?;
    assert_eq!(status, 200, "{catalogue}");
    assert_eq!(catalogue["items"][0]["package_id"], "org.example.counting", "{catalogue}");
    assert_eq!(catalogue["items"][0]["publisher"]["name"], "Example Books", "{catalogue}");
    assert_eq!(catalogue["items"][0]["size"], manifest.size, "{catalogue}");

    // Publishing the same version again is refused, with the server's reason.
    let output = cubby(&publish_args(&server))?;
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("version_not_newer"), "{}", text(&output.stderr));
    Ok(())
}

on_both_engines!(
    tampered_packages_are_refused_by_the_server_and_by_the_toy,
    a_child_gets_only_suitable_approved_titles,
    export_lists_titles_and_deletion_leaves_only_anonymous_counts,
);
