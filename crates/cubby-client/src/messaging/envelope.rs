//! What travels inside an MLS application message: a typed envelope with a unique id (the
//! receiver drops copies by it) and the sender's clock. The media issue adds photo, voice
//! and sticker bodies; a receiver shows what it does not know as "unsupported".

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Random, made by the sender: identifies the message end to end.
    pub id: String,
    /// The sender's clock, milliseconds since the Unix epoch (informative: clocks drift).
    pub sent_at: i64,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    Text { text: String },
    /// A kind this version does not know (from a newer sender).
    #[serde(other)]
    Unsupported,
}

impl Envelope {
    pub fn text(text: &str) -> Self {
        Self { id: uuid::Uuid::new_v4().to_string(), sent_at: now_millis(), body: Body::Text { text: text.to_owned() } }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_unknown_kinds_are_unsupported() {
        let envelope = Envelope::text("hello");
        assert_eq!(Envelope::decode(&envelope.encode()), Some(envelope));
        let newer = br#"{"id":"x","sent_at":1,"body":{"kind":"hologram","frames":3}}"#;
        assert_eq!(Envelope::decode(newer).map(|e| e.body), Some(Body::Unsupported));
        assert_eq!(Envelope::decode(b"not json"), None);
    }
}
