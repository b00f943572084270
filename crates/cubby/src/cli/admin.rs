//! `cubby admin …`: the operator's tools.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use cubby_core::audit::AuditEvent;
use cubby_crypto::key_files::{KeyDir, MasterKeySource, read_key_file};
use cubby_crypto::{Keyring, MasterKey};
use cubby_server::vault::rotate_keys;
use indicatif::{ProgressBar, ProgressStyle};

use crate::bootstrap;
use crate::settings::{ServeArgs, StorageArgs};

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Re-wrap every data key under a new master key. Stop the server first. Safe to
    /// interrupt: run it again and it resumes where it stopped.
    RotateKeys(RotateKeysArgs),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Delete now what is past its retention (undelivered messages, photos and voice clips,
    /// reports), as the server does every ten minutes. Stop the server first.
    Expire(Box<ExpireArgs>),
    /// Reports that families escalated to the operator (only those: the rest stay with
    /// the children's guardians).
    Reports(ReportsArgs),
    /// Content publishers: register their signing keys, see their counts.
    #[command(subcommand)]
    Publisher(PublisherAdminCommand),
}

#[derive(Subcommand, Debug)]
pub enum PublisherAdminCommand {
    /// Register a publisher and the public key its packages must be signed with.
    Add(PublisherAddArgs),
    /// Per publisher, package and version: downloads and approvals (no family, child or
    /// device).
    Stats(PublisherStatsArgs),
}

#[derive(Args, Debug)]
pub struct PublisherAddArgs {
    #[command(flatten)]
    storage: StorageArgs,

    /// The publisher id used in its manifests: 2 to 40 characters of a-z, 0-9 and '-'.
    #[arg(long)]
    id: String,

    /// The publisher's name as guardians see it in the catalogue.
    #[arg(long)]
    name: String,

    /// The Ed25519 public key (64 hex digits) that `cubby publisher keygen` printed.
    #[arg(long, value_name = "HEX")]
    public_key: String,
}

#[derive(Args, Debug)]
pub struct PublisherStatsArgs {
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Args, Debug)]
pub struct ReportsArgs {
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Args, Debug)]
pub struct ExpireArgs {
    /// The server's settings (data directory, database, blob store, default retention).
    #[command(flatten)]
    serve: ServeArgs,

    /// Expire as of this instant (RFC 3339, e.g. 2027-01-31T00:00:00Z) instead of now:
    /// to see what a date will delete, or to test retention.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
}

#[derive(Args, Debug)]
pub struct RotateKeysArgs {
    #[command(flatten)]
    storage: StorageArgs,

    /// Keys re-wrapped per transaction.
    #[arg(long, default_value_t = 500)]
    batch_size: i64,

    /// Pause between batches, in milliseconds, to go easy on a busy database.
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,

    /// When the master key comes from CUBBY_MASTER_KEY or --master-key-file: the new key
    /// (64 hex digits, mode 0600). With the key directory, a new key is made there.
    #[arg(long, value_name = "FILE")]
    new_master_key_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the whole chain; name the first missing, edited or unchained entry.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    storage: StorageArgs,
}

impl AdminCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Self::RotateKeys(args) => rotate(args).await,
            Self::Audit(AuditCommand::Verify(args)) => verify(args).await,
            Self::Expire(args) => expire(*args).await,
            Self::Reports(args) => reports(args).await,
            Self::Publisher(PublisherAdminCommand::Add(args)) => publisher_add(args).await,
            Self::Publisher(PublisherAdminCommand::Stats(args)) => publisher_stats(args).await,
        }
    }
}

async fn rotate(args: RotateKeysArgs) -> anyhow::Result<ExitCode> {
    let settings = args.storage.resolve()?;
    let key_dir = KeyDir::open(&settings.key_dir, &settings.data_dir)?;
    let uses_key_dir = matches!(settings.master_key, MasterKeySource::KeyDir);
    let loaded = key_dir.load_keyring(&settings.master_key)?;
    // Lock before making a new key: a refused rotation leaves nothing behind.
    let lock = bootstrap::lock(&settings)?;
    let target: MasterKey = match (&args.new_master_key_file, uses_key_dir) {
        (Some(path), _) => MasterKey::new(&read_key_file(path)?),
        (None, true) => key_dir.next_master_key()?,
        (None, false) => anyhow::bail!(
            "the master key comes from outside the key directory: give the new one with --new-master-key-file"
        ),
    };
    let keyring = Keyring::new(loaded.current().clone(), Some(target.clone()));
    let opened = bootstrap::open_with(&settings, lock, key_dir, keyring.clone()).await?;
    let vault = &opened.vault;
    let from = keyring.current().id().to_string();
    let to = target.id().to_string();
    let detail = format!(r#"{{"from":"{from}","to":"{to}"}}"#);
    vault.audit().append(&AuditEvent::operator("keys.rotation_started", detail.clone())).await?;

    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} keys ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("re-wrapping data keys");
    let report = rotate_keys(
        vault,
        &keyring,
        &target,
        args.batch_size,
        Duration::from_millis(args.pause_ms),
        |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )
    .await
    .context("key rotation stopped; run the same command again to resume")?;
    bar.finish();

    vault.audit().append(&AuditEvent::operator("keys.rotated", detail)).await?;
    if uses_key_dir && args.new_master_key_file.is_none() {
        opened.key_dir.promote_next_master_key()?;
        println!(
            "Rotated: {} data keys now wrapped by master key {to} (re-wrapped {} this run). \
             The old key {from} is deleted.",
            report.total, report.rewrapped
        );
    } else {
        println!(
            "Rotated: {} data keys now wrapped by master key {to} (re-wrapped {} this run). \
             Now replace the master key in your secrets manager with the new one, then restart.",
            report.total, report.rewrapped
        );
    }
    vault.store().close().await;
    Ok(ExitCode::SUCCESS)
}

async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let settings = args.storage.resolve()?;
    let opened = bootstrap::open(&settings).await?;
    let report = opened.vault.audit().verify().await?;
    opened.vault.store().close().await;
    match report.problem {
        None => {
            println!("audit log OK: {} entries, chain intact", report.entries);
            Ok(ExitCode::SUCCESS)
        }
        Some(problem) => {
            eprintln!("audit log BROKEN: {problem} ({} entries before it verified)", report.entries);
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn expire(args: ExpireArgs) -> anyhow::Result<ExitCode> {
    let now_ms = match &args.at {
        Some(text) => {
            let at: jiff::Timestamp = text.parse().with_context(|| format!("--at {text:?} is not an RFC 3339 time"))?;
            at.as_millisecond()
        }
        None => cubby_server::vault::now_millis(),
    };
    let settings = args.serve.resolve()?;
    let opened = bootstrap::open(&settings.storage).await?;
    let vault = &opened.vault;
    let media = cubby_server::media::Media::open(
        vault.store().clone(),
        &settings.server.media.blob_store,
        settings.server.media.max_size,
        settings.server.message_retention,
    )?;
    let expired = cubby_server::expiry::expire(vault, &media, now_ms, cubby_core::audit::Actor::Operator).await?;
    vault.store().close().await;
    println!(
        "deleted {} messages, {} photos and voice clips, {} reports past their retention",
        expired.messages, expired.media, expired.reports
    );
    Ok(ExitCode::SUCCESS)
}

async fn reports(args: ReportsArgs) -> anyhow::Result<ExitCode> {
    let settings = args.storage.resolve()?;
    let opened = bootstrap::open(&settings).await?;
    let vault = &opened.vault;
    let escalated = vault.store().escalated_reports().await?;
    for row in &escalated {
        let Some(report) = vault.open_report(row).await? else { continue };
        println!(
            "report {} (family {}, escalated at {}): from device {}: {:?}{}",
            row.id,
            row.family_id,
            row.escalated_at.unwrap_or_default(),
            report.sender_device,
            report.content,
            if report.note.is_empty() { String::new() } else { format!(" (the child added: {:?})", report.note) },
        );
    }
    vault.audit().append(&AuditEvent::operator("report.operator_read", format!(r#"{{"reports":{}}}"#, escalated.len()))).await?;
    vault.store().close().await;
    if escalated.is_empty() {
        println!("no escalated reports");
    }
    Ok(ExitCode::SUCCESS)
}

/// The longest publisher name shown in the catalogue.
const MAX_PUBLISHER_NAME_CHARS: usize = 100;

async fn publisher_add(args: PublisherAddArgs) -> anyhow::Result<ExitCode> {
    if !cubby_core::content::is_publisher_id(&args.id) {
        anyhow::bail!("--id must be 2 to 40 characters of a-z, 0-9 and '-'");
    }
    let name = args.name.trim();
    if name.is_empty() || name.chars().count() > MAX_PUBLISHER_NAME_CHARS || name.chars().any(char::is_control) {
        anyhow::bail!("--name must be 1 to {MAX_PUBLISHER_NAME_CHARS} characters on one line");
    }
    let Some(public_key) = cubby_crypto::content_signature::parse_public_key_hex(&args.public_key) else {
        anyhow::bail!("--public-key must be an Ed25519 public key as 64 hex digits");
    };
    let settings = args.storage.resolve()?;
    let opened = bootstrap::open(&settings).await?;
    let vault = &opened.vault;
    let row = cubby_store::PublisherRow {
        id: args.id.clone(),
        name: name.to_owned(),
        public_key: public_key.to_vec(),
        created_at: cubby_server::vault::now_millis(),
    };
    let added = vault.store().add_publisher(&row).await?;
    if added {
        let detail = format!(r#"{{"publisher":"{}"}}"#, args.id);
        vault.audit().append(&AuditEvent::operator("publisher.added", detail)).await?;
    }
    vault.store().close().await;
    if !added {
        eprintln!("a publisher with id {} exists already; nothing changed", args.id);
        return Ok(ExitCode::FAILURE);
    }
    println!("publisher {} added", args.id);
    Ok(ExitCode::SUCCESS)
}

async fn publisher_stats(args: PublisherStatsArgs) -> anyhow::Result<ExitCode> {
    let settings = args.storage.resolve()?;
    let opened = bootstrap::open(&settings).await?;
    let stats = opened.vault.store().publisher_stats().await?;
    opened.vault.store().close().await;
    if stats.is_empty() {
        println!("no packages");
    }
    for stat in &stats {
        println!(
            "{} {} {} downloads={} approvals={}",
            stat.publisher_id, stat.package_id, stat.version, stat.downloads, stat.approvals
        );
    }
    Ok(ExitCode::SUCCESS)
}
