//! The server's settings, already resolved from flags, environment and file by the
//! `cubby` binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cubby_core::privacy_notice::PrivacyNotice;
use cubby_store::BlobLocation;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub tls: TlsSettings,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Longest time a request may take before it is answered with `timeout`.
    pub request_timeout: Duration,
    /// How long a graceful shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub session_max_age: Duration,
    /// Accounts unused this long are warned by email, then deleted `account_idle_grace` later.
    pub account_idle: Duration,
    pub account_idle_grace: Duration,
    /// How often idle accounts are looked for.
    pub idle_sweep_every: Duration,
    /// Messages no device fetched are deleted this long after they were sent.
    pub message_retention: Duration,
    /// Photos and voice clips: size limit and blob store.
    pub media: MediaConfig,
    /// The address people reach this server at, for links in emails.
    pub public_url: String,
    pub privacy_notice: PrivacyNotice,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaConfig {
    /// Largest photo or voice clip, in bytes of plaintext (its ciphertext may be larger by
    /// the encryption's overhead).
    pub max_size: u64,
    /// Where the ciphertext goes. `cubby serve` always names one (by default `blobs/` in
    /// the data directory); the in-memory default is for tests of the HTTP stack.
    pub blob_store: BlobLocation,
    /// Largest file of a learning content or firmware package (stored in the same blob
    /// store, under `packages/`).
    pub package_max_size: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self { max_size: 25 * 1024 * 1024, blob_store: BlobLocation::Memory, package_max_size: 512 * 1024 * 1024 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSettings {
    /// Plain HTTP: only allowed on a loopback address.
    None,
    /// A certificate chain and private key in PEM files.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate kept in the key directory (created on first use).
    SelfSigned { key_dir: PathBuf, hostnames: Vec<String> },
}

impl ServerConfig {
    /// Refuses plain HTTP anywhere but loopback (DESIGN.md non-negotiable 7).
    pub fn check(&self) -> Result<(), String> {
        if self.tls == TlsSettings::None && !self.listen.ip().is_loopback() {
            return Err(format!(
                "refusing to serve plain HTTP on {}, which is not a loopback address: \
                 traffic would cross the network unencrypted.\n\
                 Give a certificate with --tls-cert FILE --tls-key FILE, \
                 or ask for a self-signed one with --tls-self-signed, \
                 or listen on 127.0.0.1 behind a TLS-terminating proxy.",
                self.listen
            ));
        }
        Ok(())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: TlsSettings::None,
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            session_idle: Duration::from_secs(12 * 3600),
            session_max_age: Duration::from_secs(30 * 24 * 3600),
            account_idle: Duration::from_secs(548 * 24 * 3600),
            account_idle_grace: Duration::from_secs(30 * 24 * 3600),
            message_retention: Duration::from_secs(30 * 24 * 3600),
            idle_sweep_every: Duration::from_secs(3600),
            media: MediaConfig::default(),
            public_url: "http://127.0.0.1:8080".to_owned(),
            privacy_notice: PrivacyNotice::default_notice(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_only_for_loopback() {
        let mut config = ServerConfig::default();
        assert!(config.check().is_ok());
        config.listen = "[::1]:8080".parse().unwrap_or(config.listen);
        assert!(config.check().is_ok());
        config.listen = SocketAddr::from(([0, 0, 0, 0], 8080));
        let message = config.check().err().unwrap_or_default();
        assert!(message.contains("--tls-cert") && message.contains("--tls-self-signed"), "{message}");
        config.tls = TlsSettings::SelfSigned { key_dir: "k".into(), hostnames: vec![] };
        assert!(config.check().is_ok());
    }
}
