//! Running the server until asked to stop.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum_server::Handle;
use axum_server::accept::NoDelayAcceptor;

use crate::{ServerConfig, tls};

/// Serves `app` (see [`crate::http::app`]) until `shutdown` completes, then stops
/// accepting, lets requests in flight finish (up to the grace period) and returns.
/// The caller closes the store.
pub async fn serve(
    config: ServerConfig,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    config.check()?;
    let tls = tls::rustls_config(&config.tls).await?;
    let app = app.into_make_service_with_connect_info::<SocketAddr>();

    let handle: Handle<SocketAddr> = Handle::new();
    let grace = config.shutdown_grace;
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
        stopper.graceful_shutdown(Some(grace));
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    let announcer = handle.clone();
    tokio::spawn(async move {
        if let Some(address) = announcer.listening().await {
            tracing::info!("listening on {scheme}://{address}");
        }
    });

    // Without TCP_NODELAY a small frame written while the previous one is unacknowledged
    // waits for the peer's delayed ACK (up to 40 ms), and a toy's messages are small frames.
    let result = match tls {
        None => axum_server::bind(config.listen).acceptor(NoDelayAcceptor).handle(handle).serve(app).await,
        Some(tls) => {
            let server = axum_server::bind_rustls(config.listen, tls).map(|tls| tls.acceptor(NoDelayAcceptor));
            server.handle(handle).serve(app).await
        }
    };
    result.map_err(|e| format!("cannot serve on {}: {e}", config.listen))
}
