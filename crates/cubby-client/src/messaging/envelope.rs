//! What travels inside an MLS application message: a typed envelope with a unique id (the
//! receiver drops copies by it) and the sender's clock. A photo or voice clip travels as a
//! reference to its encrypted blob on the server, with the blob's key: the key exists only
//! on the devices and inside MLS ciphertext. A receiver shows what it does not know as
//! "unsupported".

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop};

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
    /// A photo: fetch it with `Messenger::fetch_media`.
    Photo { media: MediaRef },
    /// A voice clip of `duration_ms` milliseconds.
    Voice { media: MediaRef, duration_ms: u64 },
    /// A kind this version does not know (from a newer sender).
    #[serde(other)]
    Unsupported,
}

/// Where a photo or voice clip is and how to open it: everything a recipient needs, and
/// nothing the server may see (it travels only inside an MLS message).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRef {
    /// The blob's id on the server.
    pub id: String,
    /// The blob's own key (a fresh one per blob).
    pub key: MediaKey,
    /// SHA-256 of the ciphertext (hex): the download is checked against it.
    pub sha256: String,
    /// The plaintext's size in bytes.
    pub size: u64,
    /// The plaintext's MIME type (`image/jpeg`, `audio/ogg`, …), as the sender said.
    pub mime: String,
}

/// A blob's 256-bit key: base64 in the envelope, never shown by `Debug`, wiped on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct MediaKey(pub(crate) [u8; 32]);

impl MediaKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for MediaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MediaKey(..)")
    }
}

impl Serialize for MediaKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for MediaKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut bytes = BASE64.decode(text.as_bytes()).map_err(|_| serde::de::Error::custom("a media key is base64"))?;
        let key = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| serde::de::Error::custom("a media key is 32 bytes"));
        bytes.zeroize();
        key.map(Self)
    }
}

impl Envelope {
    pub fn text(text: &str) -> Self {
        Self::new(Body::Text { text: text.to_owned() })
    }

    pub fn new(body: Body) -> Self {
        Self { id: uuid::Uuid::new_v4().to_string(), sent_at: now_millis(), body }
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

    #[test]
    fn photos_and_voice_clips_round_trip_and_their_keys_stay_out_of_debug_output() {
        let media = MediaRef { id: "ab".repeat(16), key: MediaKey([9; 32]), sha256: "00".repeat(32), size: 3, mime: "image/png".into() };
        let photo = Envelope::new(Body::Photo { media: media.clone() });
        assert_eq!(Envelope::decode(&photo.encode()), Some(photo.clone()));
        let voice = Envelope::new(Body::Voice { media, duration_ms: 1500 });
        let decoded = Envelope::decode(&voice.encode());
        assert_eq!(decoded, Some(voice.clone()));
        let json = String::from_utf8_lossy(&voice.encode()).into_owned();
        assert!(json.contains(r#""kind":"voice""#) && json.contains(r#""duration_ms":1500"#), "{json}");
        assert!(!format!("{voice:?}").contains(&BASE64.encode([9u8; 32])), "Debug shows no key");
        let short_key = json.replace(&BASE64.encode([9u8; 32]), &BASE64.encode([9u8; 31]));
        assert_eq!(Envelope::decode(short_key.as_bytes()), None, "a key of the wrong length is refused");
    }
}
