//! What can go wrong on the device side of pairing and authentication.
//!
//! Messages never carry a key, a device code, a challenge signature or an access token:
//! devices log errors, and logs leave the device (support requests, crash reports).
//! For the same reason a malformed answer is described by what was expected, never by
//! quoting the server's bytes back.

/// An error from [`crate::CubbyClient`] or [`crate::DeviceKey`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached, the connection broke, or the request timed out.
    #[error("could not talk to the Cubby server: {0}")]
    Transport(#[from] reqwest::Error),

    /// The server answered with a Cubby error (`{"error":{"code","message"}}`).
    /// `code` is the stable machine-readable part; act on it, show `message`.
    #[error("the Cubby server refused (HTTP {status}, {code}): {message}")]
    Api { status: u16, code: String, message: String },

    /// The server answered with an error status but not with a Cubby error body (for
    /// example a proxy in between answered instead).
    #[error("the server answered HTTP {status} without a Cubby error; is the base URL right?")]
    HttpStatus { status: u16 },

    /// The pairing code expired before a guardian approved it: start pairing again.
    #[error("the pairing code expired before a guardian approved it; start pairing again")]
    PairingExpired,

    /// A guardian refused to pair this device.
    #[error("a guardian refused to pair this device")]
    PairingDenied,

    /// [`crate::CubbyClient::wait_for_pairing`] gave up: nobody approved the code in time.
    #[error("no guardian approved the pairing code within {seconds} s")]
    PairingTimeout { seconds: u64 },

    /// The server's answer was not what the contract says (wrong JSON, missing or
    /// ill-formed field, too large). `.0` names what was expected, never the bytes received.
    #[error("the server's answer is malformed: {0}")]
    Malformed(String),

    /// The base URL cannot be used: not a URL, credentials in it, or plain HTTP to a host
    /// that is not loopback (Cubby speaks TLS everywhere off loopback).
    #[error("unusable Cubby server URL: {0}")]
    BaseUrl(&'static str),

    /// The device's own storage failed (disk full, file unreadable).
    #[error("the device's local storage failed: {0}")]
    Local(String),

    /// The local storage does not open with the storage key given: a wrong key, or a file
    /// that was tampered with.
    #[error("the local storage does not open with this storage key")]
    StorageKey,

    /// An MLS operation failed (a message that does not decrypt, a group in a bad state).
    #[error("end-to-end encryption: {0}")]
    Mls(String),

    /// No such conversation on this device.
    #[error("this device is not in that conversation")]
    UnknownConversation,

    /// The live connection could not be opened or broke (network, server restart).
    #[error("the live connection to the server failed: {0}")]
    Connection(String),

    /// The live connection closed; the server revoked this device when `revoked`.
    #[error("the connection to the server closed{}", if *revoked { ": this device was revoked" } else { "" })]
    Disconnected { revoked: bool },

    /// A content package was refused: its publisher is not trusted, its signature or
    /// manifest does not check, or a downloaded file does not match the signed manifest.
    /// Nothing of it was installed; what was installed before stays.
    #[error("package {package_id} refused: {reason}")]
    PackageRefused { package_id: String, reason: String },

    /// The offered version of a package is not newer than the installed one (a downgrade
    /// or a replayed old package): refused, the installed version stays.
    #[error("package {package_id}: version {offered} is not newer than the installed {installed}")]
    PackageNotNewer { package_id: String, installed: String, offered: String },

    /// A download stopped before the whole file arrived; installing again resumes it.
    #[error("package {package_id}: the download of file {index} stopped early; install again to resume")]
    DownloadIncomplete { package_id: String, index: usize },

    /// A publisher's key or package description cannot be used (not a valid Ed25519
    /// public key, or a manifest the contract refuses).
    #[error("unusable package or publisher key: {0}")]
    InvalidPackage(String),

    /// The operating system's random number generator failed, so no key could be made.
    #[error("the operating system's random number generator failed")]
    Random,
}

impl ClientError {
    /// The Cubby error code, when the server gave one (`"unauthenticated"`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True when the server no longer accepts this device's credentials: the access token
    /// expired (authenticate again), or the device was revoked or is unknown (then
    /// authenticating fails the same way, and the device must be paired again).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(self, Self::Api { status: 401, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_expose_their_code_and_401_means_unauthenticated() {
        let err = ClientError::Api {
            status: 401,
            code: "unauthenticated".into(),
            message: "sign in again".into(),
        };
        assert_eq!(err.code(), Some("unauthenticated"));
        assert!(err.is_unauthenticated());
        assert!(err.to_string().contains("unauthenticated"));
        assert!(!ClientError::PairingDenied.is_unauthenticated());
        assert_eq!(ClientError::HttpStatus { status: 401 }.code(), None);
    }
}
