//! `cubby publish` and `cubby publisher keygen`: the publisher's side of the content store.
//!
//! A publisher describes a package in a TOML file (PACKAGE.toml: `publisher`, `id`,
//! `version`, `kind`, `title`, `description`, `languages`, `age_band`, `subjects`,
//! `content_descriptors`, optional `[price] amount_cents, currency`). `cubby publish`
//! measures and hashes the FILES given (each stored under its file name), serialises the
//! manifest once, signs exactly those bytes with the publisher's key, and uploads. Running
//! it again after an interruption uploads only the files the server still misses.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use cubby_client::content::{PackageUploader, PublisherKey, digest_file, manifest_bytes};
use cubby_core::content::{FileEntry, Manifest, PackageKind, Price, Version};
use cubby_core::validation::AgeBand;
use cubby_crypto::SecretKey;
use cubby_crypto::key_files::{read_key_file, write_private_file};
use serde::Deserialize;

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The package description (TOML).
    #[arg(value_name = "PACKAGE.toml")]
    package: PathBuf,

    /// The package's files, in order; each is stored under its file name.
    #[arg(required = true, value_name = "FILES")]
    files: Vec<PathBuf>,

    /// The publisher's signing key (from `cubby publisher keygen`; mode 0600).
    #[arg(long, value_name = "KEYFILE")]
    key: PathBuf,

    /// The Cubby server, e.g. https://cubby.example (or http://127.0.0.1:8080 on this machine).
    #[arg(long, value_name = "URL")]
    server: String,
}

#[derive(Subcommand, Debug)]
pub enum PublisherCommand {
    /// Make a new signing key: writes its seed to FILE (mode 0600) and prints the public
    /// key for the operator to register (`cubby admin publisher add`).
    Keygen {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// PACKAGE.toml: the manifest without its files and size, which come from the FILES.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct PackageDescription {
    publisher: String,
    id: String,
    version: Version,
    kind: PackageKind,
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    languages: Vec<String>,
    age_band: AgeBand,
    #[serde(default)]
    subjects: Vec<String>,
    #[serde(default)]
    content_descriptors: Vec<String>,
    #[serde(default)]
    price: Option<Price>,
}

impl PublisherCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Self::Keygen { out } => keygen(&out),
        }
    }
}

fn keygen(out: &Path) -> anyhow::Result<ExitCode> {
    // Never overwrite a key: the packages already signed with it would be orphaned.
    if out.exists() {
        bail!("{} exists already; choose another file", out.display());
    }
    let key = PublisherKey::generate()?;
    let seed = SecretKey::from_bytes(*key.seed());
    write_private_file(out, seed.to_hex().as_bytes())?;
    println!("{}", key.public_key_hex());
    Ok(ExitCode::SUCCESS)
}

impl PublishArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let text = std::fs::read_to_string(&self.package).with_context(|| format!("cannot read {}", self.package.display()))?;
        let description: PackageDescription = toml::from_str(&text).with_context(|| format!("{} is not a package description", self.package.display()))?;
        let key = PublisherKey::from_seed(read_key_file(&self.key)?.expose());

        let mut files = Vec::with_capacity(self.files.len());
        for path in &self.files {
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .with_context(|| format!("{} has no usable file name", path.display()))?;
            let digest = digest_file(path).with_context(|| format!("cannot read {}", path.display()))?;
            files.push(FileEntry { path: name.to_owned(), size: digest.size, sha256: digest.sha256 });
        }
        let size = files.iter().map(|file| file.size).sum();
        let manifest = Manifest {
            publisher: description.publisher,
            id: description.id,
            version: description.version,
            kind: description.kind,
            title: description.title,
            description: description.description,
            languages: description.languages,
            age_band: description.age_band,
            subjects: description.subjects,
            content_descriptors: description.content_descriptors,
            price: description.price,
            files,
            size,
        };
        let bytes = manifest_bytes(&manifest)?;
        let signature = key.sign(&bytes);

        let uploader = PackageUploader::new(&self.server)?;
        let published = uploader.publish(&bytes, &signature, &self.files).await.context("publishing failed; run the same command again to resume")?;
        println!(
            "published {} {} ({} of {} files uploaded this time)",
            published.package_id,
            published.version,
            published.uploaded.len(),
            self.files.len()
        );
        Ok(ExitCode::SUCCESS)
    }
}
