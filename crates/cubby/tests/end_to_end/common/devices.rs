//! The devices' side, for scenario tests: pair a toy or a guardian's app through the real
//! flow and open its SDK messenger; read the texts out of a batch of events.

use std::path::Path;

use cubby_client::messaging::Body;
use cubby_client::{CubbyClient, DeviceKey, DeviceKind, Event, Messenger, PairingPoll};
use serde_json::json;

use super::api::{self, Session};
use super::{Fallible, Server, client};

/// A fresh access token for a device, signed in as the SDK does.
pub async fn device_token(server: &Server, secret: [u8; 32], device_id: &str) -> Fallible<String> {
    let api = CubbyClient::with_http_client(&server.base_url, client()?);
    let session = api.authenticate(&DeviceKey::from_secret_bytes(secret), device_id).await?;
    Ok(session.access_token.clone())
}

/// Pairs a device (approved by `guardian`, for `child` or the guardian's own app) and opens
/// its messenger in `dir` with KeyPackages published.
pub async fn device(server: &Server, dir: &Path, name: &str, guardian: &Session, family: &str, child: Option<&str>) -> Fallible<Messenger> {
    Ok(paired_device_at(server, &server.base_url, dir, name, guardian, family, child).await?.0)
}

/// As [`device`], with the device talking to the server at `url` (a relay, say), and also
/// returning its key's secret so that a test can sign in as the device by hand.
pub async fn paired_device_at(
    server: &Server,
    url: &str,
    dir: &Path,
    name: &str,
    guardian: &Session,
    family: &str,
    child: Option<&str>,
) -> Fallible<(Messenger, [u8; 32])> {
    let api = CubbyClient::with_http_client(url, client()?);
    let key = DeviceKey::generate()?;
    let secret = key.secret_bytes();
    let kind = if child.is_some() { DeviceKind::Toy } else { DeviceKind::App };
    let start = api.start_pairing(&key, kind, "test 1.0").await?;
    let body = json!({"user_code": start.user_code, "family_id": family, "child_id": child, "name": name});
    let (status, answer) = api::post(server, "/api/v1/pairing/approve", Some(&guardian.token), body).await?;
    if status != 200 {
        return Err(format!("approval answered {status}: {answer}").into());
    }
    let PairingPoll::Paired(paired) = api.poll_pairing(&start.device_code).await? else {
        return Err("not paired after approval".into());
    };
    let messenger = Messenger::open(&dir.join(format!("{name}.db")), [7; 32], api, key, &paired.device_id).await?;
    messenger.publish_key_packages().await?;
    Ok((messenger, secret))
}

/// The texts among `events`, in order.
pub fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { envelope, .. } => match &envelope.body {
                Body::Text { text } => Some(text.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
