//! The learning content store over HTTP, against the real binary on both engines:
//! publishing (signatures, hashes, versions, resuming), the catalogue (filters, pages, a
//! child's age band), approvals (age, price), the toy's list and downloads (Range, and one
//! 404 for everything it may not have), the family export, and deletion keeping the
//! publishers' counts.

use crate::common;

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use crate::common::api::{self, Session};
use crate::common::{Dirs, Fallible, Server, TestResult, client};
use cubby_crypto::content_signature::{SigningKey, file_sha256_hex, sign_manifest};
use cubby_store::PublisherRow;
use serde_json::{Value, json};

on_both_engines!(
    publishing_checks_signatures_hashes_and_versions,
    the_catalogue_filters_pages_and_suits_each_child,
    approvals_downloads_export_and_deletion,
);

const PASSWORD: &str = "correct horse battery staple";

struct World {
    server: Server, // dropped first: the process stops before its directories go
    dirs: Dirs,
    database_url: String,
}

impl World {
    async fn start(postgres: bool) -> Fallible<Self> {
        let dirs = Dirs::new()?;
        let url = if postgres { Some(cubby_store::testing::fresh_postgres_database().await?) } else { None };
        let server = Server::start(&dirs.args(url.as_deref()))?;
        let database_url = url.unwrap_or_else(|| dirs.database_url());
        Ok(Self { server, dirs, database_url })
    }

    /// Registers a publisher in the running server's database (what `cubby admin
    /// publisher add` does); its key is made from `seed`.
    async fn register(&self, id: &str, seed: u8) -> Fallible<SigningKey> {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let store = cubby_store::connect(&self.database_url).await?;
        let row = PublisherRow {
            id: id.to_owned(),
            name: format!("{id} (name)"),
            public_key: key.verifying_key().to_bytes().to_vec(),
            created_at: 0,
        };
        store.add_publisher(&row).await?;
        store.close().await;
        Ok(key)
    }

    async fn stats(&self) -> Fallible<Vec<(String, String, i64, i64)>> {
        let store = cubby_store::connect(&self.database_url).await?;
        let stats = store.publisher_stats().await?;
        store.close().await;
        Ok(stats.into_iter().map(|s| (s.package_id, s.version, s.downloads, s.approvals)).collect())
    }

    fn blob(&self, id: &str, version: &str, index: usize) -> PathBuf {
        self.dirs.data().join("blobs").join("packages").join(id).join(version).join(index.to_string())
    }
}

/// A package as a publisher makes it: manifest bytes, signature, files.
struct Package {
    id: String,
    version: String,
    manifest: Vec<u8>,
    signature: [u8; 64],
    files: Vec<Vec<u8>>,
}

struct Spec<'a> {
    publisher: &'a str,
    id: &'a str,
    version: &'a str,
    kind: &'a str,
    title: &'a str,
    age_band: &'a str,
    language: &'a str,
    subject: &'a str,
    price: Value,
}

impl<'a> Spec<'a> {
    fn new(id: &'a str, title: &'a str, age_band: &'a str) -> Self {
        Self {
            publisher: "example-books",
            id,
            version: "1.0.0",
            kind: "content",
            title,
            age_band,
            language: "en",
            subject: "reading",
            price: Value::Null,
        }
    }

    fn manifest(&self, files: &[Vec<u8>]) -> Value {
        let entries: Vec<Value> = files
            .iter()
            .enumerate()
            .map(|(i, f)| json!({"path": format!("data/file-{i}.bin"), "size": f.len(), "sha256": file_sha256_hex(f)}))
            .collect();
        json!({
            "publisher": self.publisher, "id": self.id, "version": self.version, "kind": self.kind,
            "title": self.title, "description": format!("All about {}", self.title), "languages": [self.language],
            "age_band": self.age_band, "subjects": [self.subject], "content_descriptors": [], "price": self.price,
            "files": entries, "size": files.iter().map(Vec::len).sum::<usize>(),
        })
    }

    fn sign(&self, key: &SigningKey, files: Vec<Vec<u8>>) -> Package {
        let manifest = self.manifest(&files).to_string().into_bytes();
        let signature = sign_manifest(key, &manifest);
        Package { id: self.id.to_owned(), version: self.version.to_owned(), manifest, signature, files }
    }
}

async fn submit_bytes(server: &Server, manifest: &[u8], signature: &[u8]) -> Fallible<(u16, Value)> {
    let body = json!({"manifest": BASE64.encode(manifest), "signature": BASE64.encode(signature)});
    api::post(server, "/api/v1/packages", None, body).await
}

async fn submit(server: &Server, package: &Package) -> Fallible<(u16, Value)> {
    submit_bytes(server, &package.manifest, &package.signature).await
}

async fn put_file(server: &Server, id: &str, version: &str, index: usize, bytes: Vec<u8>) -> Fallible<(u16, Value)> {
    let url = server.url(&format!("/api/v1/packages/{id}/{version}/files/{index}"));
    let response = client()?.put(url).body(bytes).send().await?;
    let status = response.status().as_u16();
    Ok((status, serde_json::from_str(&response.text().await?).unwrap_or(Value::Null)))
}

async fn publish(server: &Server, package: &Package) -> TestResult {
    let (status, body) = submit(server, package).await?;
    assert_eq!(status, 201, "{body}");
    for (index, file) in package.files.iter().enumerate() {
        let (status, body) = put_file(server, &package.id, &package.version, index, file.clone()).await?;
        assert_eq!(status, 204, "{body}");
    }
    Ok(())
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// A guardian with a consented family and one child of `age_band`.
struct Family {
    guardian: Session,
    family: String,
    child: String,
}

impl Family {
    fn path(&self, rest: &str) -> String {
        format!("/api/v1/families/{}/children/{}{rest}", self.family, self.child)
    }
}

async fn family(w: &World, tag: &str, age_band: &str) -> Fallible<Family> {
    let guardian = api::guardian(&w.server, &w.dirs.outbox(), &format!("{tag}@example.com"), PASSWORD).await?;
    let family = api::family(&w.server, &guardian, &format!("The {tag}s")).await?;
    api::consent(&w.server, &w.dirs.outbox(), &guardian, &family).await?;
    let child = api::child(&w.server, &guardian, &family, "Sam", age_band).await?;
    Ok(Family { guardian, family, child })
}

/// A toy paired for the family's child; returns its id and access token.
async fn toy(w: &World, f: &Family) -> Fallible<(String, String)> {
    let dir = w.dirs.root.path().join(format!("toy-{}", f.child));
    std::fs::create_dir_all(&dir)?;
    let (messenger, secret) =
        common::devices::paired_device_at(&w.server, &w.server.base_url, &dir, "toy", &f.guardian, &f.family, Some(&f.child))
            .await?;
    let device_id = messenger.device_id().to_owned();
    let token = common::media::device_token(&w.server, secret, &device_id).await?;
    Ok((device_id, token))
}

async fn approve(w: &World, f: &Family, package_id: &str) -> Fallible<(u16, Value)> {
    api::post(&w.server, &f.path("/titles"), Some(&f.guardian.token), json!({"package_id": package_id})).await
}

/// A download by a device: status, headers of interest, body.
async fn download(w: &World, token: &str, path: &str, range: Option<&str>) -> Fallible<(u16, Option<String>, Option<String>, Vec<u8>)> {
    let mut request = client()?.get(w.server.url(path)).bearer_auth(token);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (content_range, accept_ranges) = (header("content-range"), header("accept-ranges"));
    Ok((status, content_range, accept_ranges, response.bytes().await?.to_vec()))
}

fn titles(list: &Value) -> Vec<&str> {
    list["items"].as_array().into_iter().flatten().filter_map(|t| t["title"].as_str()).collect()
}

// ---- scenarios ------------------------------------------------------------------------------

async fn publishing_checks_signatures_hashes_and_versions(postgres: bool) -> TestResult {
    let w = World::start(postgres).await?;
    let key = w.register("example-books", 1).await?;
    let other_key = w.register("other-books", 2).await?;
    let files = vec![b"chapter one".to_vec(), b"chapter two, longer".to_vec()];
    let spec = Spec::new("org.example.counting", "Counting with Bunny", "6_8");
    let package = spec.sign(&key, files.clone());

    // Signed by someone else, or by nobody registered: refused before anything is stored.
    let forged = spec.sign(&other_key, files.clone());
    let (status, body) = submit(&w.server, &forged).await?;
    assert_eq!((status, code(&body)), (403, "signature_invalid"), "{body}");
    let unknown = Spec { publisher: "nobody-books", ..Spec::new("org.example.counting", "Counting", "6_8") };
    let (status, body) = submit(&w.server, &unknown.sign(&key, files.clone())).await?;
    assert_eq!((status, code(&body)), (403, "signature_invalid"), "{body}");
    // The signature covers the exact bytes: the same JSON re-serialised does not verify.
    let mut respaced = package.manifest.clone();
    respaced.insert(1, b' ');
    let (status, body) = submit_bytes(&w.server, &respaced, &package.signature).await?;
    assert_eq!((status, code(&body)), (403, "signature_invalid"), "{body}");

    // A manifest that would write outside the package is invalid, signed or not.
    let mut escaping = spec.manifest(&files);
    escaping["files"][0]["path"] = json!("../../etc/passwd");
    let bytes = escaping.to_string().into_bytes();
    let (status, body) = submit_bytes(&w.server, &bytes, &sign_manifest(&key, &bytes)).await?;
    assert_eq!((status, code(&body)), (422, "invalid_body"), "{body}");
    let (status, body) = submit_bytes(&w.server, b"not json", &sign_manifest(&key, b"not json")).await?;
    assert_eq!((status, code(&body)), (422, "invalid_body"), "{body}");

    // Submitted: every file is missing.
    let (status, body) = submit(&w.server, &package).await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body, json!({"package_id": "org.example.counting", "version": "1.0.0", "missing_files": [0, 1]}));

    // A tampered file: 422, and nothing kept.
    let (status, body) = put_file(&w.server, &package.id, "1.0.0", 0, b"chapter 0ne".to_vec()).await?;
    assert_eq!((status, code(&body)), (422, "hash_mismatch"), "{body}");
    assert!(!w.blob(&package.id, "1.0.0", 0).exists(), "a refused file was kept");
    // Larger than the manifest says: 413.
    let (status, body) = put_file(&w.server, &package.id, "1.0.0", 0, vec![b'x'; 1000]).await?;
    assert_eq!((status, code(&body)), (413, "body_too_large"), "{body}");
    // No such file, version or package.
    for path in [("org.example.counting", "1.0.0", 2), ("org.example.counting", "1.0.1", 0), ("org.example.none", "1.0.0", 0)] {
        let (status, body) = put_file(&w.server, path.0, path.1, path.2, b"x".to_vec()).await?;
        assert_eq!((status, code(&body)), (404, "not_found"), "{path:?}: {body}");
    }

    // Resuming: the same signed bytes again say what is still missing.
    let (status, body) = put_file(&w.server, &package.id, "1.0.0", 0, files[0].clone()).await?;
    assert_eq!(status, 204, "{body}");
    assert!(w.blob(&package.id, "1.0.0", 0).exists());
    let (status, body) = submit(&w.server, &package).await?;
    assert_eq!((status, &body["missing_files"]), (201, &json!([1])), "{body}");

    // Pending: not offered yet.
    let guardian = family(&w, "reader", "6_8").await?;
    let (_, catalogue) = api::get(&w.server, "/api/v1/catalogue", Some(&guardian.guardian.token)).await?;
    assert_eq!(catalogue["total"], 0, "{catalogue}");

    // Versions: not newer than the pending one, or the same version with other bytes.
    let older = Spec { version: "0.9.0", ..Spec::new("org.example.counting", "Counting with Bunny", "6_8") };
    let (status, body) = submit(&w.server, &older.sign(&key, files.clone())).await?;
    assert_eq!((status, code(&body)), (409, "version_not_newer"), "{body}");
    let (status, body) = submit(&w.server, &Spec::new("org.example.counting", "Other title", "6_8").sign(&key, files.clone())).await?;
    assert_eq!((status, code(&body)), (409, "version_not_newer"), "{body}");

    // The last file publishes it.
    let (status, body) = put_file(&w.server, &package.id, "1.0.0", 1, files[1].clone()).await?;
    assert_eq!(status, 204, "{body}");
    let (_, catalogue) = api::get(&w.server, "/api/v1/catalogue", Some(&guardian.guardian.token)).await?;
    assert_eq!(titles(&catalogue), ["Counting with Bunny"], "{catalogue}");
    let item = &catalogue["items"][0];
    assert_eq!(item["publisher"], json!({"id": "example-books", "name": "example-books (name)"}));
    assert_eq!((item["version"].as_str(), item["size"].as_u64()), (Some("1.0.0"), Some(30)));
    // Published: the same submission again is no resumption any more.
    let (status, body) = submit(&w.server, &package).await?;
    assert_eq!((status, code(&body)), (409, "version_not_newer"), "{body}");
    // A package id belongs to its first publisher.
    let squatter = Spec { publisher: "other-books", version: "2.0.0", ..Spec::new("org.example.counting", "Counting", "6_8") };
    let (status, body) = submit(&w.server, &squatter.sign(&other_key, files.clone())).await?;
    assert_eq!((status, code(&body)), (403, "signature_invalid"), "{body}");
    // Version 1.10.0 is newer than 1.9.0 (numbers, not text).
    let v19 = Spec { version: "1.9.0", ..Spec::new("org.example.counting", "Counting with Bunny", "6_8") };
    publish(&w.server, &v19.sign(&key, files.clone())).await?;
    let v110 = Spec { version: "1.10.0", ..Spec::new("org.example.counting", "Counting with Bunny", "6_8") };
    let (status, body) = submit(&w.server, &v110.sign(&key, files.clone())).await?;
    assert_eq!(status, 201, "{body}");
    Ok(())
}

async fn the_catalogue_filters_pages_and_suits_each_child(postgres: bool) -> TestResult {
    let w = World::start(postgres).await?;
    let key = w.register("example-books", 1).await?;
    let file = || vec![b"pages".to_vec()];
    let specs = [
        Spec { subject: "letters", ..Spec::new("org.example.alphabet", "Alphabet", "under_6") },
        Spec { subject: "science", ..Spec::new("org.example.bees", "Bees", "6_8") },
        Spec { subject: "maths", language: "fr", ..Spec::new("org.example.compter", "Compter", "9_12") },
        Spec { price: json!({"amount_cents": 199, "currency": "EUR"}), ..Spec::new("org.example.dinos", "Dinosaurs", "6_8") },
        Spec { kind: "firmware", ..Spec::new("com.example.toy-firmware", "Toy firmware", "under_6") },
    ];
    for spec in &specs {
        publish(&w.server, &spec.sign(&key, file())).await?;
    }
    // A newer version replaces the older one in the catalogue.
    let bees2 = Spec { version: "1.1.0", subject: "science", ..Spec::new("org.example.bees", "Bees", "6_8") };
    publish(&w.server, &bees2.sign(&key, file())).await?;

    let f = family(&w, "browser", "6_8").await?;
    let token = Some(f.guardian.token.as_str());
    let get = |query: String| {
        let server = &w.server;
        async move { api::get(server, &format!("/api/v1/catalogue{query}"), token).await }
    };
    let (status, all) = get(String::new()).await?;
    assert_eq!(status, 200, "{all}");
    assert_eq!(titles(&all), ["Alphabet", "Bees", "Compter", "Dinosaurs", "Toy firmware"]);
    assert_eq!((&all["total"], &all["page"], &all["per_page"]), (&json!(5), &json!(1), &json!(20)));
    assert_eq!(all["items"][1]["version"], "1.1.0");
    assert_eq!(all["items"][3]["price"], json!({"amount_cents": 199, "currency": "EUR"}));

    let (_, page) = get("?per_page=2&page=2".into()).await?;
    assert_eq!((titles(&page), &page["total"]), (vec!["Compter", "Dinosaurs"], &json!(5)), "{page}");
    let (_, past) = get("?per_page=2&page=9".into()).await?;
    assert_eq!((titles(&past).len(), &past["total"]), (0, &json!(5)), "{past}");
    for (query, expected) in [
        ("?age_band=6_8", vec!["Bees", "Dinosaurs"]),
        ("?subject=maths", vec!["Compter"]),
        ("?language=fr", vec!["Compter"]),
        ("?kind=firmware", vec!["Toy firmware"]),
        ("?q=bee", vec!["Bees"]),
        ("?age_band=6_8&q=dino", vec!["Dinosaurs"]),
    ] {
        let (status, found) = get(query.into()).await?;
        assert_eq!((status, titles(&found)), (200, expected), "{query}: {found}");
    }
    for query in ["?per_page=0", "?per_page=101", "?page=0", "?age_band=7", "?kind=toys", "?per_page=x"] {
        let (status, body) = get(query.into()).await?;
        assert_eq!((status, code(&body)), (422, "invalid_parameter"), "{query}: {body}");
    }
    let (status, body) = api::get(&w.server, "/api/v1/catalogue", None).await?;
    assert_eq!((status, code(&body)), (401, "unauthenticated"), "{body}");

    // For a 6-8 child: its band and younger only.
    let (status, mine) = api::get(&w.server, &f.path("/catalogue"), token).await?;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(titles(&mine), ["Alphabet", "Bees", "Dinosaurs", "Toy firmware"]);
    let (_, filtered) = api::get(&w.server, &f.path("/catalogue?subject=maths"), token).await?;
    assert_eq!(filtered["total"], 0, "{filtered}");
    let toddler = family(&w, "toddler", "under_6").await?;
    let (_, theirs) = api::get(&w.server, &toddler.path("/catalogue"), Some(&toddler.guardian.token)).await?;
    assert_eq!(titles(&theirs), ["Alphabet", "Toy firmware"]);
    // Another family's child is not there.
    let (status, body) = api::get(&w.server, &toddler.path("/catalogue"), token).await?;
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
    Ok(())
}

async fn approvals_downloads_export_and_deletion(postgres: bool) -> TestResult {
    let w = World::start(postgres).await?;
    let key = w.register("example-books", 1).await?;
    let story: Vec<u8> = (0..200u8).collect();
    // Larger than the JSON body limit (64 KiB): package files have their own.
    let big = vec![7u8; 300_000];
    let alphabet = Spec::new("org.example.alphabet", "Alphabet", "under_6").sign(&key, vec![story.clone(), big.clone()]);
    let bees = Spec::new("org.example.bees", "Bees", "6_8").sign(&key, vec![b"buzz".to_vec()]);
    let compter = Spec::new("org.example.compter", "Compter", "9_12").sign(&key, vec![b"un deux".to_vec()]);
    let dinos = Spec { price: json!({"amount_cents": 199, "currency": "EUR"}), ..Spec::new("org.example.dinos", "Dinosaurs", "6_8") }
        .sign(&key, vec![b"roar".to_vec()]);
    let firmware = Spec { kind: "firmware", ..Spec::new("com.example.toy-firmware", "Toy firmware", "under_6") }
        .sign(&key, vec![b"\x7fELF".to_vec()]);
    for package in [&alphabet, &bees, &compter, &dinos, &firmware] {
        publish(&w.server, package).await?;
    }

    let f = family(&w, "owner", "6_8").await?;
    let (device_id, toy_token) = toy(&w, &f).await?;

    // The approval rules.
    let (status, body) = approve(&w, &f, "org.example.compter").await?;
    assert_eq!((status, code(&body)), (403, "not_suitable_for_age"), "{body}");
    let (status, body) = approve(&w, &f, "org.example.dinos").await?;
    assert_eq!((status, code(&body)), (402, "payment_required"), "{body}");
    assert_eq!(body["error"]["message"], "paid titles need a payment provider; none is configured");
    for unknown in ["org.example.none", "com.example.toy-firmware", "../x"] {
        let (status, body) = approve(&w, &f, unknown).await?;
        assert_eq!((status, code(&body)), (404, "not_found"), "{unknown}: {body}");
    }
    let (status, approved) = approve(&w, &f, "org.example.alphabet").await?;
    assert_eq!(status, 201, "{approved}");
    assert_eq!((&approved["package_id"], &approved["price"]), (&json!("org.example.alphabet"), &Value::Null));
    assert!(approved["approved_at"].is_i64() && approved["entitlement"]["granted_at"].is_i64(), "{approved}");
    let (status, body) = approve(&w, &f, "org.example.bees").await?;
    assert_eq!(status, 201, "{body}");
    // Another family's guardian cannot approve for this child.
    let stranger = family(&w, "stranger", "6_8").await?;
    let foreign = Family { guardian: stranger.guardian.clone(), family: f.family.clone(), child: f.child.clone() };
    let (status, body) = approve(&w, &foreign, "org.example.alphabet").await?;
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");

    let (status, list) = api::get(&w.server, &f.path("/titles"), Some(&f.guardian.token)).await?;
    assert_eq!(status, 200, "{list}");
    let listed: Vec<(&str, &str)> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["package_id"].as_str()?, t["version"].as_str()?)))
        .collect();
    assert_eq!(listed, [("org.example.alphabet", "1.0.0"), ("org.example.bees", "1.0.0")], "{list}");

    // The toy's list: its approved titles and the firmware, as signed.
    let (status, offered) = api::get(&w.server, "/api/v1/device/titles", Some(&toy_token)).await?;
    assert_eq!(status, 200, "{offered}");
    let ids: Vec<&str> = offered.as_array().into_iter().flatten().filter_map(|t| t["package_id"].as_str()).collect();
    assert_eq!(ids, ["com.example.toy-firmware", "org.example.alphabet", "org.example.bees"], "{offered}");
    let first = offered.as_array().and_then(|a| a.iter().find(|t| t["package_id"] == "org.example.alphabet")).ok_or("no alphabet")?;
    assert_eq!(BASE64.decode(first["manifest"].as_str().unwrap_or(""))?, alphabet.manifest);
    assert_eq!(BASE64.decode(first["signature"].as_str().unwrap_or(""))?, alphabet.signature.to_vec());
    assert_eq!((&first["kind"], &first["publisher"], &first["version"]), (&json!("content"), &json!("example-books"), &json!("1.0.0")));

    // Downloads, whole and resumed.
    let path = |id: &str, index: usize| format!("/api/v1/packages/{id}/1.0.0/files/{index}");
    let (status, _, accept, bytes) = download(&w, &toy_token, &path("org.example.alphabet", 0), None).await?;
    assert_eq!((status, accept.as_deref(), &bytes), (200, Some("bytes"), &story));
    let (status, range, _, bytes) = download(&w, &toy_token, &path("org.example.alphabet", 0), Some("bytes=150-")).await?;
    assert_eq!((status, range.as_deref(), bytes.as_slice()), (206, Some("bytes 150-199/200"), &story[150..]));
    let (status, range, _, bytes) = download(&w, &toy_token, &path("org.example.alphabet", 0), Some("bytes=10-19")).await?;
    assert_eq!((status, range.as_deref(), bytes.as_slice()), (206, Some("bytes 10-19/200"), &story[10..20]));
    let (status, _, _, bytes) = download(&w, &toy_token, &path("org.example.alphabet", 1), None).await?;
    assert_eq!((status, bytes.len()), (200, big.len()));
    let (status, _, _, bytes) = download(&w, &toy_token, &path("com.example.toy-firmware", 0), None).await?;
    assert_eq!((status, bytes.as_slice()), (200, &b"\x7fELF"[..]));

    // Everything the toy may not have answers as something that does not exist.
    let (nothing_status, _, _, nothing) = download(&w, &toy_token, &path("org.example.none", 0), None).await?;
    assert_eq!(nothing_status, 404);
    let (_, other_token) = toy(&w, &stranger).await?;
    for (token, target) in [
        (&toy_token, path("org.example.compter", 0)),   // unsuitable (and unapproved)
        (&toy_token, path("org.example.dinos", 0)),     // not approved
        (&toy_token, path("org.example.alphabet", 5)),  // no such file
        (&toy_token, "/api/v1/packages/org.example.alphabet/9.9.9/files/0".to_owned()),
        (&toy_token, "/api/v1/packages/..%2F..%2Fetc/1.0.0/files/0".to_owned()),
        (&other_token, path("org.example.alphabet", 0)), // another family's toy
    ] {
        let (status, _, _, body) = download(&w, token, &target, None).await?;
        assert_eq!((status, &body), (404, &nothing), "{target}");
    }

    // Withdrawn: no longer offered nor downloadable.
    let withdraw = f.path("/titles/org.example.bees");
    let (status, body) = api::delete(&w.server, &withdraw, Some(&f.guardian.token)).await?;
    assert_eq!(status, 204, "{body}");
    let (status, body) = api::delete(&w.server, &withdraw, Some(&f.guardian.token)).await?;
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
    let (_, offered) = api::get(&w.server, "/api/v1/device/titles", Some(&toy_token)).await?;
    assert_eq!(offered.as_array().map(Vec::len), Some(2), "{offered}");
    let (status, _, _, body) = download(&w, &toy_token, &path("org.example.bees", 0), None).await?;
    assert_eq!((status, &body), (404, &nothing));

    // The family export has the approvals and downloads.
    let (status, export) = api::get(&w.server, &format!("/api/v1/families/{}/export", f.family), Some(&f.guardian.token)).await?;
    assert_eq!(status, 200, "{export}");
    let titles = export["titles"].as_array().ok_or("no titles in the export")?;
    let child = titles.iter().find(|t| t["child_id"] == f.child.as_str()).ok_or_else(|| format!("{export}"))?;
    let approvals: Vec<&str> = child["approvals"].as_array().into_iter().flatten().filter_map(|a| a["package_id"].as_str()).collect();
    assert_eq!(approvals, ["org.example.alphabet"], "{child}");
    let downloads: Vec<(&str, &str, &str)> = child["downloads"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| Some((d["package_id"].as_str()?, d["version"].as_str()?, d["device_id"].as_str()?)))
        .collect();
    assert_eq!(
        downloads,
        [("org.example.alphabet", "1.0.0", device_id.as_str()), ("com.example.toy-firmware", "1.0.0", device_id.as_str())],
        "{child}"
    );

    // The publisher's counts: one download per device and version, one approval each.
    let counts = |stats: &[(String, String, i64, i64)], id: &str| stats.iter().find(|s| s.0 == id).map(|s| (s.2, s.3));
    let stats = w.stats().await?;
    assert_eq!(counts(&stats, "org.example.alphabet"), Some((1, 1)), "{stats:?}");
    assert_eq!(counts(&stats, "org.example.bees"), Some((0, 1)), "{stats:?}");
    assert_eq!(counts(&stats, "com.example.toy-firmware"), Some((1, 0)), "{stats:?}");

    // Deleting the child deletes its approvals and downloads; the counts stay.
    let (status, body) = api::delete(&w.server, &f.path(""), Some(&f.guardian.token)).await?;
    assert_eq!(status, 204, "{body}");
    let (_, export) = api::get(&w.server, &format!("/api/v1/families/{}/export", f.family), Some(&f.guardian.token)).await?;
    assert_eq!(export["titles"], json!([]), "{export}");
    assert_eq!(w.stats().await?, stats);
    Ok(())
}
