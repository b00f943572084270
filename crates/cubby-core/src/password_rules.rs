//! What a new password must be: long enough, not absurdly long, and not one of the
//! passwords attackers try first.
//!
//! Length beats composition rules (NIST SP 800-63B): there is no "one digit, one symbol"
//! requirement, only a minimum length and a check against 30,000 common passwords
//! (`data/common-passwords.txt`, from zxcvbn; see `data/README.md`), including the usual
//! disguises of a common password: other letter case, digits or punctuation appended,
//! the same word repeated.

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::{Error, ErrorCode};

/// The shortest password accepted, counted in characters (not bytes).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted, in bytes of UTF-8. Bounds the hashing work a request can cause.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// After stripping trailing digits and punctuation, a remainder shorter than this is not
/// looked up (almost every 1–3 character string is on the list).
const MIN_STRIPPED_CHARS: usize = 4;
/// A password that is one unit of at most this many characters repeated ("aaaaaaaaaaaa",
/// "abcabcabcabc") is refused as common even when the unit is not on the list: the list
/// leaves such patterns out because zxcvbn detects them separately.
const MAX_TRIVIAL_UNIT_CHARS: usize = 4;

const TOO_COMMON: &str =
    "this password is too common: it appears in lists attackers try first; choose a longer, unusual passphrase";

const COMMON_PASSWORDS_TXT: &str = include_str!("../data/common-passwords.txt");

/// The common-password list, lower case, built on first use.
static COMMON_PASSWORDS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    COMMON_PASSWORDS_TXT.lines().map(str::trim).filter(|line| !line.is_empty()).map(str::to_lowercase).collect()
});

/// Checks a password chosen for a new account or a password change.
///
/// Err(Error) with ErrorCode::WeakPassword and a message a person can act on.
/// The message never repeats the password.
pub fn check_new_password(password: &str) -> Result<(), Error> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(weak(format!(
            "this password is too long: use at most {MAX_PASSWORD_BYTES} bytes (about {MAX_PASSWORD_BYTES} \
             letters, fewer with accents or other scripts)"
        )));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(weak(format!(
            "this password is too short: use at least {MIN_PASSWORD_CHARS} characters; a few unrelated words \
             make a long password that is easy to remember"
        )));
    }
    if is_common(password) {
        return Err(weak(TOO_COMMON));
    }
    Ok(())
}

fn weak(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::WeakPassword, message)
}

/// True when the password, ignoring case, is on the list, is a list entry followed by
/// digits or punctuation, or is a list entry (or a very short unit) repeated.
fn is_common(password: &str) -> bool {
    let lower = password.to_lowercase();
    let stripped = lower.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation() || c.is_whitespace());
    let mut candidates = vec![lower.as_str()];
    if stripped.len() < lower.len() && stripped.chars().count() >= MIN_STRIPPED_CHARS {
        candidates.push(stripped);
    }
    candidates.into_iter().any(|candidate| COMMON_PASSWORDS.contains(candidate) || is_repeated_common(candidate))
}

/// True when `text` is two or more copies of one unit that is on the list or is at most
/// [`MAX_TRIVIAL_UNIT_CHARS`] characters long.
fn is_repeated_common(text: &str) -> bool {
    let bytes = text.as_bytes();
    (1..=bytes.len() / 2).filter(|&period| bytes.len().is_multiple_of(period)).any(|period| {
        // `get` is None when `period` is not a character boundary; a UTF-8 string that
        // repeats with this period always splits on one, so nothing is missed.
        let Some(unit) = text.get(..period) else { return false };
        let repeats = bytes.chunks(period).all(|chunk| chunk == unit.as_bytes());
        repeats && (unit.chars().count() <= MAX_TRIVIAL_UNIT_CHARS || COMMON_PASSWORDS.contains(unit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// The message a refused password gets, or an error if it was accepted.
    fn refusal(password: &str) -> Result<String, Box<dyn std::error::Error>> {
        match check_new_password(password) {
            Ok(()) => Err(format!("{password:?} was accepted").into()),
            Err(err) if err.code == ErrorCode::WeakPassword => Ok(err.message),
            Err(err) => Err(format!("{password:?} was refused with the wrong code: {err}").into()),
        }
    }

    #[test]
    fn short_passwords_are_refused_with_the_minimum() -> TestResult {
        for password in ["short", "elevenchars", "ÄÖÜäöüßéèêë"] {
            assert!(password.chars().count() < MIN_PASSWORD_CHARS);
            let message = refusal(password)?;
            assert!(message.contains("at least 12 characters"), "{message}");
        }
        Ok(())
    }

    #[test]
    fn common_passwords_and_their_disguises_are_refused() -> TestResult {
        for password in [
            "passwordpassword",
            "Password123456",
            "qwertyuiop123!",
            "qwertyqwertyqwerty",
            "QWERTYUIOP!!!",
            "passwordpassword1!",
            "monkey2024 !!",
            "aaaaaaaaaaaa",
            "abcabcabcabc",
            "111111111111",
        ] {
            assert_eq!(refusal(password)?, TOO_COMMON, "{password:?}");
        }
        Ok(())
    }

    #[test]
    fn a_long_entry_from_the_list_is_refused() -> TestResult {
        let entry = COMMON_PASSWORDS_TXT
            .lines()
            .find(|line| line.chars().count() >= MIN_PASSWORD_CHARS)
            .ok_or("no entry of 12 characters or more in the list")?;
        assert_eq!(refusal(entry)?, TOO_COMMON, "{entry:?}");
        assert_eq!(refusal(&entry.to_uppercase())?, TOO_COMMON, "{entry:?} in upper case");
        Ok(())
    }

    #[test]
    fn good_passphrases_are_accepted() -> TestResult {
        for password in ["correct horse battery staple", "violet-otter-rides-quietly", "password is not my password"] {
            check_new_password(password)?;
        }
        Ok(())
    }

    #[test]
    fn length_counts_characters_not_bytes() -> TestResult {
        let password = "żółć-gęś-łąk"; // 12 characters, 20 bytes
        assert_eq!(password.chars().count(), 12);
        assert!(password.len() > 12);
        check_new_password(password)?;
        check_new_password("日本語のとても長い合言葉です")?;
        Ok(())
    }

    #[test]
    fn over_long_passwords_are_refused() -> TestResult {
        let password = "violet-otter-".repeat(154); // 2002 bytes
        assert!(password.len() >= 2000);
        let message = refusal(&password)?;
        assert!(message.contains("at most 1024 bytes"), "{message}");
        let exactly_max = format!("{}{}", "correct horse battery staple ".repeat(35), "ninebytes");
        assert_eq!(exactly_max.len(), MAX_PASSWORD_BYTES);
        check_new_password(&exactly_max)?;
        assert!(refusal(&format!("{exactly_max}!"))?.contains("too long"));
        Ok(())
    }

    #[test]
    fn the_list_is_loaded_in_full() -> TestResult {
        assert!(COMMON_PASSWORDS.len() >= 10_000, "only {} entries", COMMON_PASSWORDS.len());
        assert_eq!(COMMON_PASSWORDS.len(), COMMON_PASSWORDS_TXT.lines().count(), "no entry lost or duplicated");
        for entry in ["password", "123456", "qwertyuiop"] {
            COMMON_PASSWORDS.get(entry).ok_or(format!("{entry} missing"))?;
        }
        Ok(())
    }
}
