//! `cubby serve`.

use std::process::ExitCode;

use cubby_core::audit::AuditEvent;
use cubby_server::http::Services;
use tokio::signal::unix::{SignalKind, signal};

use crate::settings::ServeArgs;
use crate::{bootstrap, logging};

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let settings = args.resolve()?;
    logging::init(settings.log_format, &settings.log_level)?;
    // Refuse plain HTTP off loopback before touching any file.
    settings.server.check().map_err(anyhow::Error::msg)?;
    let opened = bootstrap::open(&settings.storage).await?;
    let vault = opened.vault.clone();
    let engine = vault.store().engine();
    tracing::info!(%engine, master_key_id = %vault.keyring().current().id(), "database open");
    vault
        .audit()
        .append(&AuditEvent::system(
            "server.started",
            format!(r#"{{"version":"{}","engine":"{engine}"}}"#, env!("CARGO_PKG_VERSION")),
        ))
        .await?;

    // A blob store that cannot work (bad bucket, plain HTTP off loopback, no credentials,
    // an unwritable directory) stops the start here, with its reason.
    cubby_server::media::check_blob_store(&settings.server.media.blob_store).map_err(anyhow::Error::msg)?;

    let services = Services {
        vault: vault.clone(),
        mailer: cubby_server::mail::mailer(&settings.mail, &settings.storage.data_dir)?,
        passwords: bootstrap::password_hasher(&opened.key_dir)?,
    };
    let sweeper = tokio::spawn(cubby_server::idle_accounts::run(services.clone(), settings.server.clone()));
    let app = cubby_server::http::app(services, &settings.server);
    let served = cubby_server::serve(settings.server, app, shutdown_signal()).await;
    sweeper.abort();
    if served.is_ok() {
        vault.audit().append(&AuditEvent::system("server.stopped", "{}")).await?;
    }
    vault.store().close().await;
    tracing::info!("stopped");
    served.map_err(anyhow::Error::msg)?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM"),
        _ = int.recv() => tracing::info!("received SIGINT"),
    }
}
