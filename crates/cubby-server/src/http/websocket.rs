//! The WebSocket upgrade of a device's live connection (RFC 6455 over HTTP/1.1), with a
//! read path that costs an idle connection next to nothing.
//!
//! tungstenite reads into a buffer of its own that each connection keeps, zero-filled and
//! so resident, for as long as it is open; with axum's upgrade, the socket is read straight
//! into it, so it must be large enough for a frame or every frame costs several system
//! calls. Here tungstenite's buffer is small, and it reads through [`ReadAhead`]: one read
//! of the socket into a buffer of the thread's, of which a connection keeps only what
//! tungstenite has not taken yet, and only until it has.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes};
use cubby_core::ErrorCode;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::ApiError;

pub type WebSocket = WebSocketStream<ReadAhead<TokioIo<Upgraded>>>;

/// The most one read of a socket takes: a burst of a toy's frames in one system call.
const READ_AT_ONCE: usize = 16 * 1024;

thread_local! {
    /// Where each read of a socket lands first, one per thread: connections share it.
    static LANDING: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_AT_ONCE].into_boxed_slice());
}

/// A request to open a WebSocket, checked; answered by [`Upgrade::on_upgrade`].
pub struct Upgrade {
    on_upgrade: OnUpgrade,
    accept: HeaderValue,
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let refuse = |what: &str| {
            ApiError::new(ErrorCode::UpgradeRequired, format!("this endpoint is a WebSocket (RFC 6455 over HTTP/1.1): {what}"))
        };
        if parts.version != Version::HTTP_11 || parts.method != Method::GET {
            return Err(refuse("it takes an HTTP/1.1 GET"));
        }
        if !has_token(&parts.headers, header::CONNECTION, "upgrade") || !has_token(&parts.headers, header::UPGRADE, "websocket") {
            return Err(refuse("the request must ask to upgrade to websocket"));
        }
        if parts.headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|version| version.as_bytes() != b"13") {
            return Err(refuse("Sec-WebSocket-Version must be 13"));
        }
        let key = parts.headers.get(header::SEC_WEBSOCKET_KEY).ok_or_else(|| refuse("Sec-WebSocket-Key is missing"))?;
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes())).map_err(|_| refuse("Sec-WebSocket-Key"))?;
        let on_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or_else(|| refuse("this connection cannot be upgraded"))?;
        Ok(Self { on_upgrade, accept })
    }
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

impl Upgrade {
    /// Answers 101 and, once the connection is switched, hands the WebSocket to `serve`.
    pub fn on_upgrade<F>(self, config: WebSocketConfig, serve: impl FnOnce(WebSocket) -> F + Send + 'static) -> Response
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let io = ReadAhead { io: TokioIo::new(upgraded), ahead: None };
                    serve(WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await).await;
                }
                Err(error) => tracing::debug!(%error, "a WebSocket upgrade failed"),
            }
        });
        let headers = [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (header::SEC_WEBSOCKET_ACCEPT, self.accept),
        ];
        (StatusCode::SWITCHING_PROTOCOLS, headers).into_response()
    }
}

/// A socket read through the thread's landing buffer: what the reader did not take at once
/// waits in `ahead`, which is `None` (no allocation) when the connection is idle.
pub struct ReadAhead<IO> {
    io: IO,
    /// Boxed, never empty: 8 bytes in every connection's task rather than 32, for what is
    /// there only between the reads of one burst.
    ahead: Option<Box<Bytes>>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for ReadAhead<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(ahead) = this.ahead.as_mut() {
            let taken = ahead.len().min(buf.remaining());
            buf.put_slice(&ahead[..taken]);
            ahead.advance(taken);
            if ahead.is_empty() {
                // Frees what was read ahead: an idle connection keeps no buffer.
                this.ahead = None;
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let ahead = LANDING.with_borrow_mut(|landing| {
            let mut landing = ReadBuf::new(&mut landing[..]);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut landing))?;
            let landed = landing.filled();
            let taken = landed.len().min(buf.remaining());
            buf.put_slice(&landed[..taken]);
            let rest = &landed[taken..];
            Poll::Ready(Ok::<_, io::Error>((!rest.is_empty()).then(|| Box::new(Bytes::copy_from_slice(rest)))))
        });
        this.ahead = ready!(ahead)?;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ReadAhead<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Small reads take a larger write piece by piece, in order, and once all is taken the
    /// connection holds nothing read ahead.
    #[tokio::test]
    async fn small_reads_take_all_that_was_read_ahead_in_order_and_then_hold_nothing() -> io::Result<()> {
        let (mut far, near) = tokio::io::duplex(64 * 1024);
        let mut socket = ReadAhead { io: near, ahead: None };
        let sent: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        far.write_all(&sent).await?;
        let mut received = Vec::new();
        let mut piece = [0u8; 64];
        while received.len() < sent.len() {
            let read = socket.read(&mut piece).await?;
            assert!(read > 0, "ended early, at {}", received.len());
            received.extend_from_slice(&piece[..read]);
        }
        assert_eq!(received, sent);
        assert!(socket.ahead.is_none());
        // The end of the stream still reads as the end.
        drop(far);
        assert_eq!(socket.read(&mut piece).await?, 0);
        Ok(())
    }
}
