//! Stopping the server: requests in flight finish, new connections are refused.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use cubby_crypto::{Keyring, MasterKey, SecretKey};
use cubby_server::{ServerConfig, Vault};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(800)).await;
    "finished"
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish_and_refuses_new_ones() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = cubby_store::connect(&format!("sqlite://{}", dir.path().join("cubby.db").display())).await?;
    let vault = Arc::new(Vault::open(store, Keyring::new(MasterKey::new(&SecretKey::random()?), None)).await?);

    // A free port (the server binds it again a moment later).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = ServerConfig { listen: ([127, 0, 0, 1], port).into(), ..ServerConfig::default() };
    let routes = cubby_server::api::routes().route("/test/slow", get(slow));
    let app = cubby_server::http::build(routes, services(&dir, vault.clone())?, &config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cubby_server::serve(config, app, async move {
        let _ = stopped.await;
    }));

    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = format!("{base}/test/slow");
        async move { client.get(url).send().await?.text().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).map_err(|()| "server already gone")?;

    assert_eq!(in_flight.await??, "finished", "the request in flight must complete");
    server.await??;
    let fresh = reqwest::Client::new().get(format!("{base}/healthz")).send().await;
    assert!(fresh.is_err(), "a stopped server must not accept connections");
    vault.store().close().await;
    Ok(())
}

/// The server's parts over a vault: mail to an outbox beside the data, a fresh pepper.
fn services(
    dir: &tempfile::TempDir,
    vault: std::sync::Arc<cubby_server::Vault>,
) -> Result<cubby_server::http::Services, Box<dyn std::error::Error + Send + Sync>> {
    let outbox = cubby_server::mail::OutboxMailer::open(&dir.path().join("outbox"), &dir.path().join("data"))?;
    Ok(cubby_server::http::Services {
        vault,
        mailer: std::sync::Arc::new(outbox),
        passwords: std::sync::Arc::new(cubby_crypto::PasswordHasher::new(cubby_crypto::SecretKey::random()?)),
    })
}
