//! Devices and the pairing code a toy shows on its screen.
//!
//! The user code follows RFC 8628 §6.1: 8 characters from 20 consonants (no vowels, so no
//! words; no look-alikes such as 0/O or 1/I), shown as `BCDF-GHJK`, about 34.6 bits.
//!
//! Why guessing one is hopeless: there are 20^8 = 2.56 × 10^10 codes, each lives
//! 10 minutes, and only a signed-in guardian can submit one. Wrong codes are throttled per
//! account and per client address: 5 free failures a minute, then a back-off that doubles
//! from 2 s up to 15 min. In its 10 minutes one account or address gets at most about a
//! dozen guesses; even with 10,000 codes live at once and 1,000 accounts and addresses
//! guessing in parallel, the chance of hitting any live code is about
//! 12 × 1,000 × 10,000 / 2.56 × 10^10 ≈ 0.5 %, and the code hit belongs to a stranger's
//! toy that would appear in the guesser's own family, where its owner sees it never paired.

use serde::{Deserialize, Serialize};

/// What kind of device it is: a child's toy, or a guardian's phone app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Toy,
    App,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Toy => "toy",
            Self::App => "app",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "toy" => Some(Self::Toy),
            "app" => Some(Self::App),
            _ => None,
        }
    }
}

pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
pub const USER_CODE_LEN: usize = 8;

/// Makes a user code from random bytes by rejection sampling (bytes ≥ 240 are skipped, so
/// every letter is equally likely). `None` if the bytes ran out, which for 32 random bytes
/// happens with probability below 10^-20; the caller draws again.
pub fn user_code_from(random: &[u8]) -> Option<String> {
    let code: String = random
        .iter()
        .filter(|b| **b < 240)
        .take(USER_CODE_LEN)
        .map(|b| char::from(USER_CODE_ALPHABET[usize::from(*b % 20)]))
        .collect();
    (code.len() == USER_CODE_LEN).then_some(code)
}

/// The code as shown: `BCDF-GHJK`.
pub fn display_user_code(code: &str) -> String {
    let (first, second) = code.split_at(code.len().min(4));
    format!("{first}-{second}")
}

/// Reads a code as a person typed it: any case, with or without the dash and spaces.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed.chars().filter(|c| *c != '-' && !c.is_whitespace()).collect::<String>().to_uppercase();
    let valid = code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
    valid.then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_use_the_alphabet_and_read_back_as_typed() {
        let random: Vec<u8> = (0..=255u8).rev().collect();
        let code = user_code_from(&random).unwrap_or_default();
        assert_eq!(code.len(), 8);
        assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
        let shown = display_user_code(&code);
        assert_eq!(shown.len(), 9);
        assert_eq!(normalize_user_code(&shown.to_lowercase()), Some(code.clone()));
        assert_eq!(normalize_user_code(&format!(" {} ", shown.replace('-', " "))), Some(code));
    }

    #[test]
    fn biased_bytes_are_skipped_and_short_input_is_refused() {
        assert_eq!(user_code_from(&[250; 64]), None, "bytes of 240 and above are never used");
        assert_eq!(user_code_from(&[0; 7]), None);
        assert_eq!(user_code_from(&[0; 8]).as_deref(), Some("BBBBBBBB"));
    }

    #[test]
    fn look_alikes_and_wrong_lengths_are_refused() {
        for bad in ["BCDF-GHJ", "BCDF-GHJKL", "BCDF-GH0K", "AEIOU123", ""] {
            assert_eq!(normalize_user_code(bad), None, "{bad}");
        }
    }
}
