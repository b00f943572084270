//! The server's settings, already resolved from flags, environment and file by the
//! `cubby` binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
