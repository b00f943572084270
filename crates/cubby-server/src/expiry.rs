//! Retention: the server is a relay, not an archive. What waits longer than its family's
//! retention goes: undelivered messages, photos and voice clips (and their blobs), and
//! children's reports. Each pass that deletes something is audited with its counts.

use std::sync::{Arc, Weak};
use std::time::Duration;

use cubby_core::audit::{Actor, AuditEvent};

use cubby_store::StoreError;

use crate::media::{Media, MediaError};
use crate::vault::{Vault, now_millis};

/// How often the background pass runs.
const EVERY: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ExpiryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Media(#[from] MediaError),
}

/// What one pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    pub messages: u64,
    pub media: u64,
    pub reports: u64,
}

/// Deletes everything past its retention at `now_ms` (the real clock in the background
/// pass; an injected one from `cubby admin expire --at`), and audits what went.
pub async fn expire(vault: &Vault, media: &Media, now_ms: i64, actor: Actor) -> Result<Expired, ExpiryError> {
    let store = vault.store();
    let expired = Expired {
        messages: store.expire_messages(now_ms).await?,
        media: media.expire(now_ms).await?,
        reports: store.expire_reports(now_ms).await?,
    };
    if expired != Expired::default() {
        let detail = format!(
            r#"{{"messages":{},"media":{},"reports":{},"as_of":{now_ms}}}"#,
            expired.messages, expired.media, expired.reports
        );
        vault.audit().append(&AuditEvent { actor, action: "retention.expired", family_id: None, detail }).await?;
    }
    Ok(expired)
}

/// Runs [`expire`] every ten minutes until the server stops.
pub fn start(vault: &Arc<Vault>, media: &Arc<Media>) {
    tokio::spawn(periodically(Arc::downgrade(vault), Arc::downgrade(media)));
}

async fn periodically(vault: Weak<Vault>, media: Weak<Media>) {
    loop {
        tokio::time::sleep(EVERY).await;
        let (Some(vault), Some(media)) = (vault.upgrade(), media.upgrade()) else { return };
        match expire(&vault, &media, now_millis(), Actor::System).await {
            Ok(expired) if expired != Expired::default() => tracing::info!(?expired, "deleted what was past its retention"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "deleting what is past its retention failed; trying again later"),
        }
    }
}
