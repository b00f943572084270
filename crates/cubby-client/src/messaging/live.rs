//! The live connection (`GET /api/v1/ws`): the server pushes this device's queue in order;
//! each message is processed and persisted, then acknowledged, so a crash in between means
//! the server sends it again and the device skips it by id (at least once on the wire,
//! exactly once for the application).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{Event, Messenger};
use crate::ClientError;

/// The close code the server uses for a revoked device.
const CLOSE_REVOKED: u16 = 4001;
/// Reconnection back-off bounds.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum FromServer {
    Message(MessageFrame),
    KeyPackagesLow {},
    Wipe,
    Sent {},
    Error { code: String, message: String },
}

#[derive(Debug, Deserialize)]
pub(crate) struct MessageFrame {
    pub id: i64,
    pub group_id: String,
    pub kind: String,
    pub data: String,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(messenger: &Messenger) -> Result<Socket, ClientError> {
    let session = messenger.session().await?;
    let url = messenger.api().websocket_url("/api/v1/ws")?;
    let mut request = url.as_str().into_client_request().map_err(|e| ClientError::Mls(e.to_string()))?;
    request.headers_mut().insert(reqwest::header::AUTHORIZATION, crate::pairing::bearer(&session)?);
    let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(tls_connector()?))
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(response) if response.status() == 401 => {
                ClientError::Disconnected { revoked: true }
            }
            other => ClientError::Connection(format!("cannot open it: {other}")),
        })?;
    Ok(socket)
}

/// TLS for `wss://`: the platform's trust store (as the HTTP client uses), aws-lc-rs.
fn tls_connector() -> Result<tokio_tungstenite::Connector, ClientError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let tls_error = |e: rustls::Error| ClientError::Connection(format!("TLS setup failed: {e}"));
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_platform_verifier()
        .map_err(tls_error)?
        .with_no_client_auth();
    Ok(tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(config)))
}

/// Reads frames until the socket is quiet for `idle` (or closes), processing each.
async fn pump(
    messenger: &Messenger,
    socket: &mut Socket,
    idle: Option<Duration>,
    events: &mut (dyn FnMut(Event) -> bool + Send),
) -> Result<(), ClientError> {
    loop {
        let next = match idle {
            Some(idle) => match tokio::time::timeout(idle, socket.next()).await {
                Ok(next) => next,
                Err(_) => {
                    messenger.after_batch().await?;
                    return Ok(());
                }
            },
            None => socket.next().await,
        };
        let frame = match next {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return Err(ClientError::Connection(format!("it broke: {error}"))),
            None => return Err(ClientError::Disconnected { revoked: false }),
        };
        match frame {
            Message::Text(text) => {
                let Ok(parsed) = serde_json::from_str::<FromServer>(text.as_str()) else { continue };
                match parsed {
                    FromServer::Message(message) => {
                        for event in messenger.process(&message).await? {
                            if !events(event) {
                                return Ok(());
                            }
                        }
                        let ack = serde_json::json!({ "type": "ack", "ids": [message.id] }).to_string();
                        socket.send(Message::Text(ack.into())).await.map_err(|e| ClientError::Connection(e.to_string()))?;
                    }
                    FromServer::KeyPackagesLow {} => {
                        messenger.publish_key_packages().await?;
                    }
                    FromServer::Wipe => {
                        if !events(Event::WipeRequested) {
                            return Ok(());
                        }
                    }
                    FromServer::Sent {} => {}
                    FromServer::Error { code, message } => {
                        return Err(ClientError::Api { status: 400, code, message });
                    }
                }
            }
            Message::Close(frame) => {
                let revoked = frame.is_some_and(|f| f.code == CloseCode::from(CLOSE_REVOKED));
                return Err(ClientError::Disconnected { revoked });
            }
            _ => {}
        }
        if idle.is_none() {
            messenger.after_batch().await?;
        }
    }
}

/// Connects, processes the queue until quiet for `idle`, and disconnects. If the
/// connection breaks after some messages were processed, those events are returned (they
/// are stored and acknowledged-or-skipped already); the next sync carries on.
pub(crate) async fn sync(messenger: &Messenger, idle: Duration) -> Result<Vec<Event>, ClientError> {
    messenger.flush_outbox().await?;
    let mut socket = connect(messenger).await?;
    let mut collected = Vec::new();
    let result = pump(messenger, &mut socket, Some(idle), &mut |event| {
        collected.push(event);
        true
    })
    .await;
    let _ = socket.close(None).await;
    match result {
        Ok(()) => Ok(collected),
        Err(ClientError::Connection(_) | ClientError::Disconnected { revoked: false }) if !collected.is_empty() => Ok(collected),
        Err(error) => Err(error),
    }
}

impl Messenger {
    /// Stays connected and streams events until the receiver is dropped or the device is
    /// revoked (then the stream ends after a last `Err(Disconnected { revoked: true })`).
    /// Reconnects with back-off, sending the local outbox first each time.
    pub fn listen(self: &std::sync::Arc<Self>) -> mpsc::Receiver<Result<Event, ClientError>> {
        let (tx, rx) = mpsc::channel(256);
        let messenger = self.clone();
        tokio::spawn(async move {
            let mut retry = RETRY_FIRST;
            loop {
                let attempt = async {
                    messenger.flush_outbox().await?;
                    let mut socket = connect(&messenger).await?;
                    pump(&messenger, &mut socket, None, &mut |event| tx.try_send(Ok(event)).is_ok() || !tx.is_closed()).await
                };
                match attempt.await {
                    Ok(()) => return,
                    Err(ClientError::Disconnected { revoked: true }) => {
                        let _ = tx.send(Err(ClientError::Disconnected { revoked: true })).await;
                        return;
                    }
                    Err(ClientError::Api { status: 401, .. }) => {
                        let _ = tx.send(Err(ClientError::Disconnected { revoked: true })).await;
                        return;
                    }
                    Err(_) if tx.is_closed() => return,
                    Err(_) => {
                        tokio::time::sleep(retry).await;
                        retry = (retry * 2).min(RETRY_MAX);
                    }
                }
            }
        });
        rx
    }
}
