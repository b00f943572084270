//! The calling client's address, for per-address throttling. Taken from the TCP
//! connection: no forwarding header is trusted (a proxy in front of Cubby would make
//! every client one address; put Cubby's TLS at the edge instead).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

pub struct ClientAddr(pub Option<IpAddr>);

impl ClientAddr {
    /// The throttle key for this address.
    pub fn throttle_key(&self) -> String {
        self.0.map_or_else(|| "addr:unknown".to_owned(), |ip| format!("addr:{ip}"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip())))
    }
}
