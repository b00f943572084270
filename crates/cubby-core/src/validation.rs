//! Input rules for what people type. Each returns a clear error a person can act on.

use serde::{Deserialize, Serialize};

use crate::{Error, ErrorCode};

const MAX_EMAIL_BYTES: usize = 254;
const MAX_NICKNAME_CHARS: usize = 40;
const MAX_FAMILY_NAME_CHARS: usize = 80;

/// Trims and lower-cases an email address and checks its shape. The normalised form is
/// what the blind index is computed over, so `Alice@Example.com ` and `alice@example.com`
/// are one account.
pub fn normalize_email(raw: &str) -> Result<String, Error> {
    let email = raw.trim().to_lowercase();
    let invalid = || Error::new(ErrorCode::InvalidBody, "enter a valid email address, like name@example.com");
    if email.len() > MAX_EMAIL_BYTES || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
    if local.is_empty() || domain.len() < 3 || !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
        return Err(invalid());
    }
    Ok(email)
}

/// A short, printable, single-line text (a nickname, a family name).
fn check_label(value: &str, what: &str, max_chars: usize) -> Result<String, Error> {
    let value = value.trim();
    let count = value.chars().count();
    if count == 0 || count > max_chars {
        return Err(Error::new(ErrorCode::InvalidBody, format!("{what} must be 1 to {max_chars} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::new(ErrorCode::InvalidBody, format!("{what} must be a single line of text")));
    }
    Ok(value.to_owned())
}

pub fn check_nickname(value: &str) -> Result<String, Error> {
    check_label(value, "a nickname", MAX_NICKNAME_CHARS)
}

pub fn check_family_name(value: &str) -> Result<String, Error> {
    check_label(value, "a family name", MAX_FAMILY_NAME_CHARS)
}

/// A child's age band: all Cubby ever knows of a child's age (never a birthdate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgeBand {
    #[serde(rename = "under_6")]
    Under6,
    #[serde(rename = "6_8")]
    From6To8,
    #[serde(rename = "9_12")]
    From9To12,
    #[serde(rename = "13_17")]
    From13To17,
}

impl AgeBand {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Under6 => "under_6",
            Self::From6To8 => "6_8",
            Self::From9To12 => "9_12",
            Self::From13To17 => "13_17",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Under6, Self::From6To8, Self::From9To12, Self::From13To17].into_iter().find(|b| b.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(normalize_email("  Alice@Example.COM ").ok().as_deref(), Some("alice@example.com"));
        for bad in ["", "alice", "@example.com", "alice@", "alice@com", "a b@example.com", "a\u{7}b@example.com"] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(300))).is_err());
    }

    #[test]
    fn nicknames_are_short_single_lines() {
        assert_eq!(check_nickname("  Sam ").ok().as_deref(), Some("Sam"));
        assert!(check_nickname("").is_err());
        assert!(check_nickname(&"x".repeat(41)).is_err());
        assert!(check_nickname("two\nlines").is_err());
        assert!(check_nickname("Zoë 🦊").is_ok());
    }

    #[test]
    fn age_bands_round_trip() {
        for band in [AgeBand::Under6, AgeBand::From6To8, AgeBand::From9To12, AgeBand::From13To17] {
            assert_eq!(AgeBand::parse(band.as_str()), Some(band));
        }
        assert_eq!(AgeBand::parse("7"), None);
    }
}
