//! Settings come from flags, then `CUBBY_*` environment variables (clap reads both),
//! then the optional TOML file, then defaults, in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use cubby_crypto::key_files::MasterKeySource;
use cubby_core::privacy_notice::PrivacyNotice;
use cubby_server::config::{ServerConfig, TlsSettings};
use cubby_server::config::MediaConfig;
use cubby_server::mail::MailSettings;
use cubby_store::BlobLocation;
use serde::Deserialize;

use crate::logging::LogFormat;

/// Where Cubby keeps its data and keys: shared by `serve` and `admin`.
#[derive(Args, Clone, Debug, Default)]
pub struct StorageArgs {
    /// A TOML file with any of the settings below (keys as the flags, with underscores:
    /// data_dir = "…"). Flags and environment variables take precedence over it.
    #[arg(long, env = "CUBBY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory for the database (SQLite) and files. Holds no key. [default: ./cubby-data]
    #[arg(long, env = "CUBBY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Directory for the master key and TLS key; created (mode 0700) on first start.
    /// Must not be inside the data directory. [default: ./cubby-keys]
    #[arg(long, env = "CUBBY_KEY_DIR", value_name = "DIR")]
    pub key_dir: Option<PathBuf>,

    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB (put a password in the
    /// environment, not on the command line). [default: SQLite in the data directory]
    #[arg(long, env = "CUBBY_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Read the master key (64 hex digits, mode 0600) from this file instead of the key
    /// directory, e.g. one mounted by a secrets manager. The environment variable
    /// CUBBY_MASTER_KEY, holding the 64 hex digits, takes precedence over both.
    #[arg(long, env = "CUBBY_MASTER_KEY_FILE", value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,
}

/// `cubby serve`'s own settings.
#[derive(Args, Clone, Debug, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    pub storage: StorageArgs,

    /// Address to listen on. Plain HTTP is allowed only on loopback addresses; anywhere
    /// else give --tls-cert/--tls-key or --tls-self-signed. [default: 127.0.0.1:8080]
    #[arg(long, env = "CUBBY_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// TLS certificate chain (PEM). Needs --tls-key.
    #[arg(long, env = "CUBBY_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM). Needs --tls-cert.
    #[arg(long, env = "CUBBY_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve HTTPS with a self-signed certificate, created in the key directory on first
    /// start (for trials and private networks; browsers will warn).
    #[arg(long, env = "CUBBY_TLS_SELF_SIGNED", conflicts_with = "tls_cert")]
    pub tls_self_signed: bool,

    /// Extra host names for the self-signed certificate (localhost is always included).
    #[arg(long = "tls-hostname", env = "CUBBY_TLS_HOSTNAMES", value_name = "NAME", value_delimiter = ',')]
    pub tls_hostnames: Vec<String>,

    /// Largest request body accepted, in bytes. [default: 65536]
    #[arg(long, env = "CUBBY_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,

    /// Longest time a request may take, in seconds. [default: 30]
    #[arg(long, env = "CUBBY_REQUEST_TIMEOUT_SECS", value_name = "SECS")]
    pub request_timeout_secs: Option<u64>,

    /// Log format. [default: text]
    #[arg(long, env = "CUBBY_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Log level or filter (tracing's EnvFilter syntax, e.g. "info,cubby=debug"). [default: info]
    #[arg(long, env = "CUBBY_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,

    /// The address people reach this server at, for links in emails.
    /// [default: http(s)://ADDR of --listen]
    #[arg(long, env = "CUBBY_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// Without SMTP, mail (sign-up links, resets, invitations) is written here for the
    /// operator, one file per message. Must not be inside the data directory. [default: ./cubby-outbox]
    #[arg(long, env = "CUBBY_OUTBOX_DIR", value_name = "DIR")]
    pub outbox_dir: Option<PathBuf>,

    /// Send mail over SMTP with TLS instead: smtps://USER:PASS@HOST:465 or
    /// smtp://USER:PASS@HOST:587?tls=required (put it in the environment: it holds a password).
    #[arg(long, env = "CUBBY_SMTP_URL", value_name = "URL", hide_env_values = true, requires = "mail_from")]
    pub smtp_url: Option<String>,

    /// The From address for SMTP mail.
    #[arg(long, env = "CUBBY_MAIL_FROM", value_name = "ADDR")]
    pub mail_from: Option<String>,

    /// The privacy notice (TOML: version, material_since, operator_contact, [[sections]]
    /// title/body). [default: the notice built into Cubby]
    #[arg(long, env = "CUBBY_PRIVACY_NOTICE", value_name = "FILE")]
    pub privacy_notice: Option<PathBuf>,

    /// A session unused this long ends (e.g. 30m, 12h, 7d). [default: 12h]
    #[arg(long, env = "CUBBY_SESSION_IDLE", value_name = "DURATION", value_parser = parse_duration)]
    pub session_idle: Option<Duration>,

    /// A session ends this long after sign-in. [default: 30d]
    #[arg(long, env = "CUBBY_SESSION_MAX_AGE", value_name = "DURATION", value_parser = parse_duration)]
    pub session_max_age: Option<Duration>,

    /// Accounts unused this long are warned, then deleted after --account-idle-grace. [default: 548d]
    #[arg(long, env = "CUBBY_ACCOUNT_IDLE", value_name = "DURATION", value_parser = parse_duration)]
    pub account_idle: Option<Duration>,

    /// Time between the idle warning and deletion. [default: 30d]
    #[arg(long, env = "CUBBY_ACCOUNT_IDLE_GRACE", value_name = "DURATION", value_parser = parse_duration)]
    pub account_idle_grace: Option<Duration>,

    /// How often to look for idle accounts. [default: 1h]
    #[arg(long, env = "CUBBY_IDLE_SWEEP_EVERY", value_name = "DURATION", value_parser = parse_duration)]
    pub idle_sweep_every: Option<Duration>,

    /// Undelivered messages are deleted this long after they were sent. [default: 30d]
    #[arg(long, env = "CUBBY_MESSAGE_RETENTION", value_name = "DURATION", value_parser = parse_duration)]
    pub message_retention: Option<Duration>,

    /// Largest photo or voice clip, in bytes before encryption (K, M, G: binary units,
    /// e.g. 25M). Larger uploads get 413 body_too_large. [default: 25M]
    #[arg(long, env = "CUBBY_MEDIA_MAX_SIZE", value_name = "SIZE", value_parser = parse_size)]
    pub media_max_size: Option<u64>,

    /// Largest file of a learning content or firmware package (K, M, G: binary units).
    /// Larger uploads get 413 body_too_large. [default: 512M]
    #[arg(long, env = "CUBBY_PACKAGE_MAX_SIZE", value_name = "SIZE", value_parser = parse_size)]
    pub package_max_size: Option<u64>,

    /// Where photos and voice clips (ciphertext only) are kept: a directory, or
    /// s3://BUCKET for an S3-compatible object store (credentials from AWS_ACCESS_KEY_ID
    /// and AWS_SECRET_ACCESS_KEY). [default: blobs/ in the data directory]
    #[arg(long, env = "CUBBY_BLOB_STORE", value_name = "DIR|s3://BUCKET")]
    pub blob_store: Option<String>,

    /// The S3-compatible service's URL (MinIO, Garage, …), for --blob-store s3://…;
    /// plain http:// only on a loopback address. [default: AWS]
    #[arg(long, env = "CUBBY_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// The S3 region. [default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1]
    #[arg(long, env = "CUBBY_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
}

/// Parses `26214400`, `512K`, `25M` or `1G` (binary units) into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let value: u64 = number.parse().map_err(|_| format!("{text:?} is not a size like 26214400, 512K or 25M"))?;
    let factor: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("{text:?}: the unit must be K, M or G")),
    };
    match value.checked_mul(factor) {
        Some(0) => Err(format!("{text:?}: the size must be at least 1 byte")),
        Some(bytes) => Ok(bytes),
        None => Err(format!("{text:?} is too large")),
    }
}

/// Parses `90s`, `30m`, `12h`, `7d` (or plain seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let value: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 30s, 15m, 12h or 7d"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    value.checked_mul(seconds).map(Duration::from_secs).ok_or_else(|| format!("{text:?} is too long"))
}

/// The TOML file: the same settings, all optional. Unknown keys are an error, so a typo
/// does not silently fall back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    key_dir: Option<PathBuf>,
    database_url: Option<String>,
    master_key_file: Option<PathBuf>,
    listen: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_self_signed: Option<bool>,
    tls_hostnames: Option<Vec<String>>,
    max_body_bytes: Option<usize>,
    request_timeout_secs: Option<u64>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    public_url: Option<String>,
    outbox_dir: Option<PathBuf>,
    smtp_url: Option<String>,
    mail_from: Option<String>,
    privacy_notice: Option<PathBuf>,
    #[serde(default, deserialize_with = "optional_duration")]
    session_idle: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    session_max_age: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    account_idle: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    account_idle_grace: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    idle_sweep_every: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    message_retention: Option<Duration>,
    #[serde(default, deserialize_with = "optional_size")]
    media_max_size: Option<u64>,
    #[serde(default, deserialize_with = "optional_size")]
    package_max_size: Option<u64>,
    blob_store: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
}

/// A size in the file: a number of bytes, or text such as "25M".
fn optional_size<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Option::<Size>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Size::Bytes(0)) => Err(serde::de::Error::custom("the size must be at least 1 byte")),
        Some(Size::Bytes(n)) => Ok(Some(n)),
        Some(Size::Text(text)) => parse_size(&text).map(Some).map_err(serde::de::Error::custom),
    }
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = Option::deserialize(deserializer)?;
    text.map(|t| parse_duration(&t).map_err(serde::de::Error::custom)).transpose()
}

fn read_file_settings(path: Option<&Path>) -> anyhow::Result<FileSettings> {
    let Some(path) = path else { return Ok(FileSettings::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not a valid Cubby settings file", path.display()))
}

/// Where the data and keys are, resolved.
#[derive(Clone, Debug)]
pub struct StorageSettings {
    pub data_dir: PathBuf,
    pub key_dir: PathBuf,
    pub database_url: Option<String>,
    pub master_key: MasterKeySource,
}

pub const MASTER_KEY_VAR: &str = "CUBBY_MASTER_KEY";

impl StorageArgs {
    pub fn resolve(&self) -> anyhow::Result<StorageSettings> {
        let file = read_file_settings(self.config.as_deref())?;
        Ok(resolve_storage(self, &file))
    }
}

fn resolve_storage(args: &StorageArgs, file: &FileSettings) -> StorageSettings {
    let master_key = match std::env::var(MASTER_KEY_VAR) {
        Ok(hex) => MasterKeySource::Hex { source_name: MASTER_KEY_VAR.to_owned(), hex },
        Err(_) => match args.master_key_file.clone().or_else(|| file.master_key_file.clone()) {
            Some(path) => MasterKeySource::File(path),
            None => MasterKeySource::KeyDir,
        },
    };
    StorageSettings {
        data_dir: args.data_dir.clone().or_else(|| file.data_dir.clone()).unwrap_or_else(|| "cubby-data".into()),
        key_dir: args.key_dir.clone().or_else(|| file.key_dir.clone()).unwrap_or_else(|| "cubby-keys".into()),
        database_url: args.database_url.clone().or_else(|| file.database_url.clone()),
        master_key,
    }
}

pub struct ServeSettings {
    pub storage: StorageSettings,
    pub mail: MailSettings,
    pub server: ServerConfig,
    pub log_format: LogFormat,
    pub log_level: String,
}

impl ServeArgs {
    pub fn resolve(&self) -> anyhow::Result<ServeSettings> {
        let file = read_file_settings(self.storage.config.as_deref())?;
        let storage = resolve_storage(&self.storage, &file);
        let defaults = ServerConfig::default();
        let tls_cert = self.tls_cert.clone().or_else(|| file.tls_cert.clone());
        let tls_key = self.tls_key.clone().or_else(|| file.tls_key.clone());
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => TlsSettings::Files { cert, key },
            (Some(_), None) | (None, Some(_)) => anyhow::bail!("give both tls_cert and tls_key, or neither"),
            (None, None) if self.tls_self_signed || file.tls_self_signed.unwrap_or(false) => {
                let mut hostnames = self.tls_hostnames.clone();
                if hostnames.is_empty() {
                    hostnames = file.tls_hostnames.clone().unwrap_or_default();
                }
                TlsSettings::SelfSigned { key_dir: storage.key_dir.clone(), hostnames }
            }
            (None, None) => TlsSettings::None,
        };
        let listen = self.listen.or(file.listen).unwrap_or(defaults.listen);
        let scheme = if tls == TlsSettings::None { "http" } else { "https" };
        let public_url = self.public_url.clone().or_else(|| file.public_url.clone()).unwrap_or_else(|| format!("{scheme}://{listen}"));
        let privacy_notice = match self.privacy_notice.clone().or_else(|| file.privacy_notice.clone()) {
            Some(path) => read_notice(&path)?,
            None => PrivacyNotice::default_notice(),
        };
        let mail = match (self.smtp_url.clone().or_else(|| file.smtp_url.clone()), self.mail_from.clone().or_else(|| file.mail_from.clone())) {
            (Some(url), Some(from)) => MailSettings::Smtp { url, from },
            (Some(_), None) => anyhow::bail!("give --mail-from with --smtp-url"),
            _ => MailSettings::Outbox {
                dir: self.outbox_dir.clone().or_else(|| file.outbox_dir.clone()).unwrap_or_else(|| "cubby-outbox".into()),
            },
        };
        let s3_endpoint = self.s3_endpoint.clone().or_else(|| file.s3_endpoint.clone());
        let s3_region = self.s3_region.clone().or_else(|| file.s3_region.clone());
        let blob_store = match self.blob_store.clone().or_else(|| file.blob_store.clone()) {
            Some(text) => BlobLocation::parse(&text, s3_endpoint, s3_region)?,
            None if s3_endpoint.is_some() => anyhow::bail!("--s3-endpoint needs --blob-store s3://BUCKET"),
            None => BlobLocation::Local(storage.data_dir.join("blobs")),
        };
        let media = MediaConfig {
            max_size: self.media_max_size.or(file.media_max_size).unwrap_or(defaults.media.max_size),
            blob_store,
            package_max_size: self.package_max_size.or(file.package_max_size).unwrap_or(defaults.media.package_max_size),
        };
        let server = ServerConfig {
            listen,
            tls,
            max_body_bytes: self.max_body_bytes.or(file.max_body_bytes).unwrap_or(defaults.max_body_bytes),
            request_timeout: self
                .request_timeout_secs
                .or(file.request_timeout_secs)
                .map_or(defaults.request_timeout, Duration::from_secs),
            shutdown_grace: defaults.shutdown_grace,
            session_idle: self.session_idle.or(file.session_idle).unwrap_or(defaults.session_idle),
            session_max_age: self.session_max_age.or(file.session_max_age).unwrap_or(defaults.session_max_age),
            account_idle: self.account_idle.or(file.account_idle).unwrap_or(defaults.account_idle),
            account_idle_grace: self.account_idle_grace.or(file.account_idle_grace).unwrap_or(defaults.account_idle_grace),
            idle_sweep_every: self.idle_sweep_every.or(file.idle_sweep_every).unwrap_or(defaults.idle_sweep_every),
            message_retention: self.message_retention.or(file.message_retention).unwrap_or(defaults.message_retention),
            media,
            public_url: public_url.trim_end_matches('/').to_owned(),
            privacy_notice,
        };
        Ok(ServeSettings {
            storage,
            mail,
            server,
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
            log_level: self.log_level.clone().or_else(|| file.log_level.clone()).unwrap_or_else(|| "info".to_owned()),
        })
    }
}

fn read_notice(path: &Path) -> anyhow::Result<PrivacyNotice> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let notice: PrivacyNotice =
        toml::from_str(&text).with_context(|| format!("{} is not a valid privacy notice", path.display()))?;
    anyhow::ensure!(
        notice.material_since >= 1 && notice.material_since <= notice.version,
        "{}: material_since must be between 1 and version",
        path.display()
    );
    Ok(notice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("cubby.toml");
        std::fs::write(&path, "data_dir = \"/from/file\"\nkey_dir = \"/keys/file\"\nlisten = \"127.0.0.1:9999\"\n")?;
        let args = ServeArgs {
            storage: StorageArgs { config: Some(path), data_dir: Some("/from/flag".into()), ..Default::default() },
            ..Default::default()
        };
        let settings = args.resolve()?;
        assert_eq!(settings.storage.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(settings.storage.key_dir, PathBuf::from("/keys/file"));
        assert_eq!(settings.server.listen.port(), 9999);
        assert_eq!(settings.server.max_body_bytes, ServerConfig::default().max_body_bytes);
        Ok(())
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("548d"), Ok(Duration::from_secs(548 * 86_400)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(parse_size("26214400"), Ok(26_214_400));
        assert_eq!(parse_size("25M"), Ok(25 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("25X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn media_go_to_the_data_directory_unless_a_store_is_named() -> anyhow::Result<()> {
        let args = ServeArgs {
            storage: StorageArgs { data_dir: Some("/srv/cubby".into()), ..Default::default() },
            ..Default::default()
        };
        let settings = args.resolve()?;
        assert_eq!(settings.server.media.blob_store, BlobLocation::Local("/srv/cubby/blobs".into()));
        assert_eq!(settings.server.media.max_size, 25 << 20);
        let s3 = ServeArgs {
            blob_store: Some("s3://cubby-media".into()),
            s3_endpoint: Some("https://s3.example.org".into()),
            media_max_size: Some(1 << 20),
            ..Default::default()
        };
        let settings = s3.resolve()?;
        assert!(matches!(settings.server.media.blob_store, BlobLocation::S3(ref s) if s.bucket == "cubby-media"));
        assert_eq!(settings.server.media.max_size, 1 << 20);
        let stray = ServeArgs { s3_endpoint: Some("https://s3.example.org".into()), ..Default::default() };
        assert!(stray.resolve().is_err(), "an endpoint without an S3 store is a mistake");
        Ok(())
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("cubby.toml");
        std::fs::write(&path, "data_dri = \"typo\"\n")?;
        let args = StorageArgs { config: Some(path), ..Default::default() };
        let error = args.resolve().err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(error.contains("data_dri"), "{error}");
        Ok(())
    }
}
