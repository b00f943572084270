//! `cubby serve` as an operator meets it: first start, restart, refusals, TLS, shutdown.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::common::{Dirs, Server, TestResult, client, cubby, open_vault, strings, text};

#[tokio::test]
async fn first_start_serves_healthz_and_a_restart_keeps_the_data() -> TestResult {
    let dirs = Dirs::new()?;
    let server = Server::start(&dirs.args(None))?;
    let health: serde_json::Value = client()?.get(server.url("/healthz")).send().await?.json().await?;
    assert_eq!(health["status"], "ok");
    let (status, logs) = server.stop()?;
    assert!(status.success(), "graceful stop should exit 0: {logs}");
    assert!(logs.contains("stopped"), "{logs}");
    // A clean close checkpoints SQLite's write-ahead log into the database and removes it.
    assert!(!dirs.data().join("cubby.db-wal").exists(), "database not closed cleanly");
    let key_mode = fs::metadata(dirs.keys().join("master.key"))?.permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600);

    // Data written between runs survives the next run.
    let vault = open_vault(&dirs, None).await?;
    let family = vault.create_family("The Zebrafinches").await?;
    vault.store().close().await;

    let server = Server::start(&dirs.args(None))?;
    let response = client()?.get(server.url("/healthz")).send().await?;
    assert_eq!(response.status(), 200);
    let (status, _) = server.stop()?;
    assert!(status.success());

    let vault = open_vault(&dirs, None).await?;
    assert_eq!(vault.family_name(family).await?.as_deref(), Some("The Zebrafinches"));
    let report = vault.audit().verify().await?;
    assert_eq!(report.problem, None);
    assert_eq!(report.entries, 4, "started, stopped, started, stopped");
    vault.store().close().await;
    Ok(())
}

#[tokio::test]
async fn world_readable_keys_are_refused_with_the_fix() -> TestResult {
    let dirs = Dirs::new()?;
    drop(Server::start(&dirs.args(None))?);
    fs::set_permissions(dirs.keys().join("master.key"), fs::Permissions::from_mode(0o644))?;
    let mut args = strings(&["serve", "--listen", "127.0.0.1:0"]);
    args.extend(dirs.args(None));
    let output = cubby(&args)?;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("accessible to other users") && stderr.contains("chmod 600"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn keys_inside_the_data_directory_are_refused() -> TestResult {
    let dirs = Dirs::new()?;
    let inside = dirs.data().join("keys");
    let args = strings(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &dirs.data().display().to_string(),
        "--key-dir",
        &inside.display().to_string(),
    ]);
    let output = cubby(&args)?;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("inside the data directory"), "{stderr}");
    assert!(!inside.join("master.key").exists(), "no key may be written there");
    Ok(())
}

#[tokio::test]
async fn a_master_key_from_another_installation_is_refused() -> TestResult {
    let dirs = Dirs::new()?;
    drop(Server::start(&dirs.args(None))?);
    let stranger = "11".repeat(32);
    let result = Server::start_with_env(&dirs.args(None), &[("CUBBY_MASTER_KEY", &stranger)]);
    let error = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("cannot open this database's keys"), "{error}");
    Ok(())
}

#[tokio::test]
async fn plain_http_off_loopback_is_refused() -> TestResult {
    let dirs = Dirs::new()?;
    let mut args = strings(&["serve", "--listen", "0.0.0.0:0"]);
    args.extend(dirs.args(None));
    let output = cubby(&args)?;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("--tls-cert") && stderr.contains("--tls-self-signed"), "{stderr}");
    assert!(!dirs.data().exists(), "refused before touching any file");
    Ok(())
}

#[tokio::test]
async fn self_signed_tls_serves_https_over_http2_and_http1() -> TestResult {
    let dirs = Dirs::new()?;
    let mut args = dirs.args(None);
    args.push("--tls-self-signed".to_owned());
    let server = Server::start(&args)?;
    assert!(server.base_url.starts_with("https://"), "{}", server.base_url);

    let h2 = client()?.get(server.url("/healthz")).send().await?;
    assert_eq!(h2.status(), 200);
    assert_eq!(h2.version(), reqwest::Version::HTTP_2, "ALPN should pick h2");

    let http1 = reqwest::Client::builder().danger_accept_invalid_certs(true).http1_only().build()?;
    let h1 = http1.get(server.url("/healthz")).send().await?;
    assert_eq!(h1.status(), 200);
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);

    let plain = server.url("/healthz").replacen("https://", "http://", 1);
    assert!(client()?.get(plain).send().await.map(|r| !r.status().is_success()).unwrap_or(true));

    let cert = dirs.keys().join("tls-self-signed.key");
    assert_eq!(fs::metadata(&cert)?.permissions().mode() & 0o777, 0o600);
    Ok(())
}

#[tokio::test]
async fn settings_come_from_the_toml_file_when_no_flag_is_given() -> TestResult {
    let dirs = Dirs::new()?;
    let file = dirs.root.path().join("cubby.toml");
    fs::write(
        &file,
        format!(
            "data_dir = \"{}\"\nkey_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n",
            dirs.data().display(),
            dirs.keys().display()
        ),
    )?;
    let server = Server::start(&strings(&["--config", &file.display().to_string()]))?;
    assert_eq!(client()?.get(server.url("/healthz")).send().await?.status(), 200);
    assert!(dirs.keys().join("master.key").exists());
    assert!(dirs.data().join("cubby.db").exists());
    Ok(())
}

#[test]
fn serve_help_documents_every_setting() -> TestResult {
    let output = cubby(&strings(&["serve", "--help"]))?;
    let help = text(&output.stdout);
    for flag in [
        "--data-dir",
        "--key-dir",
        "--listen",
        "--database-url",
        "--tls-cert",
        "--tls-key",
        "--tls-self-signed",
        "--config",
        "CUBBY_DATA_DIR",
        "CUBBY_MASTER_KEY",
        "[default: ./cubby-data]",
        "[default: 127.0.0.1:8080]",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}:\n{help}");
    }
    Ok(())
}

#[tokio::test]
async fn a_second_server_on_the_same_data_is_refused() -> TestResult {
    let dirs = Dirs::new()?;
    let _first = Server::start(&dirs.args(None))?;
    let second = Server::start(&dirs.args(None));
    let error = second.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("another cubby process"), "{error}");
    Ok(())
}

#[tokio::test]
async fn the_log_carries_no_secret_from_any_part_of_a_request() -> TestResult {
    let dirs = Dirs::new()?;
    let server = Server::start(&dirs.args(None))?;
    let http = client()?;
    let secrets = ["tok_SECRET_0123456789", "alice.secret@example.com", "hunter2-correct-horse", "sess_COOKIE_987"];
    for path in ["/healthz", "/api/v1/nothing-here", "/metrics"] {
        let url = format!("{}?email={}&token={}", server.url(path), secrets[1], secrets[0]);
        http.get(&url)
            .header("Authorization", format!("Bearer {}", secrets[0]))
            .header("Cookie", format!("session={}", secrets[3]))
            .send()
            .await?;
        http.post(&url)
            .header("Content-Type", "application/json")
            .body(format!(r#"{{"email":"{}","password":"{}"}}"#, secrets[1], secrets[2]))
            .send()
            .await?;
    }
    let (_, logs) = server.stop()?;
    assert!(logs.contains("\"route\":\"/healthz\""), "requests should be logged: {logs}");
    for secret in secrets {
        assert!(!logs.contains(secret), "the log contains {secret}:\n{logs}");
    }
    Ok(())
}
