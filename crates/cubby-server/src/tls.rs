//! TLS with rustls: from PEM files, or a self-signed certificate kept in the key
//! directory (so it survives restarts and clients can pin it). ALPN offers h2 and http/1.1.

use std::path::Path;

use axum_server::tls_rustls::RustlsConfig;
use cubby_crypto::key_files::{read_private_file, write_private_file};

use crate::config::TlsSettings;

const SELF_SIGNED_CERT: &str = "tls-self-signed.crt";
const SELF_SIGNED_KEY: &str = "tls-self-signed.key";

pub async fn rustls_config(settings: &TlsSettings) -> Result<Option<RustlsConfig>, String> {
    match settings {
        TlsSettings::None => Ok(None),
        TlsSettings::Files { cert, key } => RustlsConfig::from_pem_file(cert, key)
            .await
            .map(Some)
            .map_err(|e| format!("cannot load TLS certificate {} / key {}: {e}", cert.display(), key.display())),
        TlsSettings::SelfSigned { key_dir, hostnames } => {
            let (cert, key) = self_signed(key_dir, hostnames)?;
            RustlsConfig::from_pem(cert, key)
                .await
                .map(Some)
                .map_err(|e| format!("cannot use the self-signed certificate: {e}"))
        }
    }
}

/// Loads the self-signed certificate and key, creating them on first use.
fn self_signed(key_dir: &Path, hostnames: &[String]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let cert_path = key_dir.join(SELF_SIGNED_CERT);
    let key_path = key_dir.join(SELF_SIGNED_KEY);
    if !cert_path.exists() || !key_path.exists() {
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        names.extend(hostnames.iter().cloned());
        let generated = rcgen::generate_simple_self_signed(names)
            .map_err(|e| format!("cannot generate a self-signed certificate: {e}"))?;
        write_private_file(&key_path, generated.signing_key.serialize_pem().as_bytes()).map_err(|e| e.to_string())?;
        write_private_file(&cert_path, generated.cert.pem().as_bytes()).map_err(|e| e.to_string())?;
        tracing::info!(certificate = %cert_path.display(), "created a self-signed TLS certificate");
    }
    let cert = read_private_file(&cert_path).map_err(|e| e.to_string())?;
    let key = read_private_file(&key_path).map_err(|e| e.to_string())?;
    Ok((cert, key))
}
