//! Scenario (d): photos and voice clips. A toy uploads an (already encrypted) blob into its
//! conversation and another member downloads it, both over HTTP as the SDK does; the
//! yardstick is the machine's own loopback file copy (a file read, sent over a loopback
//! TCP connection, and written to another file).

use std::time::Instant;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cubby_ws::Group;
use super::provision::http_from;
use super::report::{Metric, median};

const MIB: f64 = 1024.0 * 1024.0;

/// One run: `transfers` uploads and downloads of `size` bytes, and as many loopback copies.
/// Returns (copy, upload, download) metrics, each the run's median.
pub async fn measure(base_url: &str, group: &Group, size: usize, transfers: usize) -> anyhow::Result<[Vec<Metric>; 3]> {
    let dir = tempfile::tempdir()?;
    let blob: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(7)).collect();
    let source = dir.path().join("blob");
    tokio::fs::write(&source, &blob).await?;
    let (sender, receiver) = (&group.members[0], &group.members[1]);
    let upload_http = http_from(sender.source)?;
    let download_http = http_from(receiver.source)?;
    let (mut copies, mut uploads, mut downloads) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..transfers {
        copies.push(loopback_copy(&source, &dir.path().join(format!("copy-{n}")), size).await?);
        let started = Instant::now();
        let media_id = upload(&upload_http, base_url, &sender.token, &group.group_id, &blob).await?;
        uploads.push(rate(size, started));
        let started = Instant::now();
        let answer = download_http.get(format!("{base_url}/api/v1/media/{media_id}")).bearer_auth(&receiver.token).send().await?;
        if !answer.status().is_success() {
            bail!("the download answered {}", answer.status());
        }
        let bytes = answer.bytes().await?;
        downloads.push(rate(size, started));
        if bytes.as_ref() != blob.as_slice() {
            bail!("the downloaded blob differs from the uploaded one");
        }
    }
    let metric = |values: &mut Vec<f64>| vec![Metric::new("throughput", median(values), "MiB/s")];
    Ok([metric(&mut copies), metric(&mut uploads), metric(&mut downloads)])
}

fn rate(size: usize, started: Instant) -> f64 {
    size as f64 / MIB / started.elapsed().as_secs_f64()
}

/// Starts an upload and sends the whole blob as one chunk; returns the media id.
async fn upload(http: &reqwest::Client, base_url: &str, token: &str, group_id: &[u8], blob: &[u8]) -> anyhow::Result<String> {
    let created = http
        .post(format!("{base_url}/api/v1/media"))
        .bearer_auth(token)
        .json(&json!({"group_id": BASE64.encode(group_id), "size": blob.len()}))
        .send()
        .await?;
    if created.status().as_u16() != 201 {
        bail!("starting an upload answered {}: {}", created.status(), created.text().await.unwrap_or_default());
    }
    let created: Value = created.json().await?;
    let id = created["id"].as_str().context("an upload without an id")?.to_owned();
    let sent = http
        .patch(format!("{base_url}/api/v1/media/{id}"))
        .bearer_auth(token)
        .header("upload-offset", "0")
        .header("content-type", "application/octet-stream")
        .body(blob.to_vec())
        .send()
        .await?;
    if !sent.status().is_success() {
        bail!("the upload answered {}: {}", sent.status(), sent.text().await.unwrap_or_default());
    }
    Ok(id)
}

/// Reads `source`, sends it over a loopback TCP connection, and writes it to `destination`;
/// returns MiB/s.
async fn loopback_copy(source: &std::path::Path, destination: &std::path::Path, size: usize) -> anyhow::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let destination = destination.to_owned();
    let started = Instant::now();
    let receiving = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await?;
        let mut file = tokio::fs::File::create(&destination).await?;
        tokio::io::copy(&mut stream, &mut file).await?;
        file.flush().await?;
        Ok::<_, std::io::Error>(())
    });
    let mut file = tokio::fs::File::open(source).await?;
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        stream.write_all(&buffer[..read]).await?;
    }
    stream.shutdown().await?;
    receiving.await??;
    Ok(rate(size, started))
}
