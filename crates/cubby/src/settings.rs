//! Settings come from flags, then `CUBBY_*` environment variables (clap reads both),
//! then the optional TOML file, then defaults, in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use cubby_crypto::key_files::MasterKeySource;
use cubby_server::config::{ServerConfig, TlsSettings};
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
        let server = ServerConfig {
            listen: self.listen.or(file.listen).unwrap_or(defaults.listen),
            tls,
            max_body_bytes: self.max_body_bytes.or(file.max_body_bytes).unwrap_or(defaults.max_body_bytes),
            request_timeout: self
                .request_timeout_secs
                .or(file.request_timeout_secs)
                .map_or(defaults.request_timeout, Duration::from_secs),
            shutdown_grace: defaults.shutdown_grace,
        };
        Ok(ServeSettings {
            storage,
            server,
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
            log_level: self.log_level.clone().or_else(|| file.log_level.clone()).unwrap_or_else(|| "info".to_owned()),
        })
    }
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
