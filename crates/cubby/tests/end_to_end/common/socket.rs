//! A device's raw WebSocket (`/api/v1/ws`), for tests that speak its frames themselves.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{Fallible, Server};

/// How long a frame is waited for.
const PATIENCE: Duration = Duration::from_secs(15);

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the live connection by hand, as a device.
pub async fn open_socket(server: &Server, token: &str) -> Fallible<Socket> {
    let url = format!("{}/api/v1/ws", server.base_url.replacen("http", "ws", 1));
    let mut request = url.as_str().into_client_request()?;
    request
        .headers_mut()
        .insert(reqwest::header::AUTHORIZATION, reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?);
    let (socket, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(socket)
}

/// The next JSON frame of type `kind` (others are skipped), within [`PATIENCE`].
pub async fn next_frame_of(socket: &mut Socket, kind: &str) -> Fallible<Value> {
    next_frame_of_any(socket, &[kind]).await
}

/// The next JSON frame of one of these types (others are skipped), within [`PATIENCE`].
pub async fn next_frame_of_any(socket: &mut Socket, kinds: &[&str]) -> Fallible<Value> {
    next_frame_within(socket, kinds, PATIENCE).await
}

/// The next JSON frame of one of these types (others are skipped), within `patience`.
pub async fn next_frame_within(socket: &mut Socket, kinds: &[&str], patience: Duration) -> Fallible<Value> {
    let kind = kinds.join(" or ");
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .map_err(|_| format!("no {kind} frame within {patience:?}"))?;
        match frame {
            Some(Ok(Frame::Text(text))) => {
                let value: Value = serde_json::from_str(text.as_str())?;
                if kinds.iter().any(|kind| value["type"] == json!(kind)) {
                    return Ok(value);
                }
            }
            Some(Ok(Frame::Close(close))) => return Err(format!("closed while waiting for {kind}: {close:?}").into()),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(format!("the connection broke while waiting for {kind}: {error}").into()),
            None => return Err(format!("the connection ended while waiting for {kind}").into()),
        }
    }
}

