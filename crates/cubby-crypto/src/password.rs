//! Password hashing: Argon2id with a per-password random salt and a server-side pepper.
//!
//! - The **salt** (16 random bytes per hash) makes every hash unique, so equal passwords
//!   do not look equal and precomputed tables are useless.
//! - The **pepper** is Argon2's secret input, read from the key directory (never the
//!   database): a stolen database alone does not allow even a dictionary attack.
//! - The cost is OWASP's minimum for Argon2id (m = 19 MiB, t = 2, p = 1). Stored hashes
//!   carry their own parameters, so raising the cost later is a matter of rehashing at
//!   the next successful login ([`Verification::Valid`] says when).
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`); the pepper is
//! not in them, by design.

use argon2::password_hash::phc::PasswordHash;
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Params, Version};
// The traits only; their names would clash with ours.
use argon2::{PasswordHasher as _, PasswordVerifier as _};

use crate::{CryptoError, SecretKey, random_bytes};

/// OWASP's minimum for Argon2id: 19 MiB of memory, 2 passes, 1 lane.
const DEFAULT_M_KIB: u32 = 19 * 1024;
const DEFAULT_T: u32 = 2;
const DEFAULT_P: u32 = 1;
const DEFAULT_PARAMS: Params = match Params::new(DEFAULT_M_KIB, DEFAULT_T, DEFAULT_P, None) {
    Ok(params) => params,
    // Evaluated at compile time: a bad constant fails the build, never a request.
    Err(_) => panic!("invalid default Argon2 parameters"),
};
const SALT_LEN: usize = 16;
/// The salt `verify_dummy` hashes with; it need not be secret or random, only the work counts.
const DUMMY_SALT: [u8; SALT_LEN] = [0x5a; SALT_LEN];

/// The outcome of checking a password against a stored hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// The password does not match (or the hash was made with another pepper).
    Invalid,
    /// The password matches. When `needs_rehash` is true the stored hash was made with
    /// another algorithm or other parameters than this hasher's: hash the password again
    /// now, while it is at hand, and store the new hash.
    Valid { needs_rehash: bool },
}

/// Hashes and verifies passwords with Argon2id and the server's pepper.
#[derive(Clone, Debug)]
pub struct PasswordHasher {
    pepper: SecretKey,
    params: Params,
}

impl PasswordHasher {
    /// Argon2id, m = 19 MiB (19456 KiB), t = 2, p = 1 (OWASP minimum), with the pepper as
    /// Argon2's secret input.
    pub fn new(pepper: SecretKey) -> Self {
        Self { pepper, params: DEFAULT_PARAMS }
    }

    /// Argon2id with other costs: `m_kib` KiB of memory (at least 8 per lane), `t` passes,
    /// `p` lanes. Fails with [`CryptoError::Malformed`] when Argon2 refuses the parameters.
    pub fn with_params(pepper: SecretKey, m_kib: u32, t: u32, p: u32) -> Result<Self, CryptoError> {
        let params = Params::new(m_kib, t, p, None).map_err(|_| CryptoError::Malformed)?;
        Ok(Self { pepper, params })
    }

    /// The Argon2 context for this hasher's parameters; it borrows the pepper, so it is
    /// built per call (cheap: no allocation, no hashing).
    fn argon2(&self) -> Result<Argon2<'_>, CryptoError> {
        Argon2::new_with_secret(self.pepper.bytes(), Algorithm::Argon2id, Version::V0x13, self.params.clone())
            .map_err(|_| CryptoError::Malformed)
    }

    /// PHC string with a fresh random 16-byte salt from the OS RNG.
    ///
    /// Errors: [`CryptoError::Random`] if the RNG fails, [`CryptoError::Malformed`] if
    /// Argon2 fails (e.g. it cannot allocate its memory).
    pub fn hash(&self, password: &str) -> Result<String, CryptoError> {
        let salt = random_bytes::<SALT_LEN>()?;
        let hash = self
            .argon2()?
            .hash_password_with_salt(password.as_bytes(), &salt)
            .map_err(|_| CryptoError::Malformed)?;
        Ok(hash.to_string())
    }

    /// Checks a password against a stored PHC string, comparing the outputs in constant
    /// time. The stored string's own algorithm and parameters are used, with this
    /// hasher's pepper.
    ///
    /// `needs_rehash` is true when the stored hash's algorithm, version, parameters, salt
    /// length or output length differ from what [`PasswordHasher::hash`] makes now.
    ///
    /// A stored string that is not a usable Argon2 PHC string (corrupt, truncated, another
    /// algorithm such as bcrypt) is `Err(CryptoError::Malformed)`, not `Invalid`: it is a
    /// fault in the stored data for the server's log, not a wrong password.
    pub fn verify(&self, password: &str, stored_phc: &str) -> Result<Verification, CryptoError> {
        let stored = PasswordHash::new(stored_phc).map_err(|_| CryptoError::Malformed)?;
        match self.argon2()?.verify_password(password.as_bytes(), &stored) {
            Ok(()) => Ok(Verification::Valid { needs_rehash: self.needs_rehash(&stored) }),
            Err(argon2::password_hash::Error::PasswordInvalid) => Ok(Verification::Invalid),
            Err(_) => Err(CryptoError::Malformed),
        }
    }

    /// Spends the same work as a verify, for unknown accounts (so timing does not reveal
    /// which emails exist). Call it where `verify` would have been called, then answer
    /// exactly as for a wrong password.
    ///
    /// The work matches a verify against a hash made with this hasher's parameters; an
    /// account whose stored hash is older and cheaper verifies faster until it is rehashed.
    pub fn verify_dummy(&self, password: &str) {
        if let Ok(argon2) = self.argon2() {
            // The result is meaningless by design; only the time spent matters.
            let _ = argon2.hash_password_with_salt(password.as_bytes(), &DUMMY_SALT);
        }
    }

    fn needs_rehash(&self, stored: &PasswordHash) -> bool {
        let same_params = Params::try_from(stored).is_ok_and(|p| {
            p.m_cost() == self.params.m_cost()
                && p.t_cost() == self.params.t_cost()
                && p.p_cost() == self.params.p_cost()
                && p.keyid().is_empty()
                && p.data().is_empty()
        });
        let same_shape = stored.salt.is_some_and(|s| s.len() == SALT_LEN)
            && stored.hash.as_ref().is_some_and(|h| h.len() == Params::DEFAULT_OUTPUT_LEN);
        let same_algorithm = stored.algorithm == ARGON2ID_IDENT && stored.version == Some(Version::V0x13.into());
        !(same_params && same_shape && same_algorithm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn hasher(pepper: u8) -> PasswordHasher {
        PasswordHasher::new(SecretKey::from_bytes([pepper; 32]))
    }

    #[test]
    fn default_params_are_the_owasp_minimum_and_show_in_the_phc_string() -> TestResult {
        let phc = hasher(1).hash("correct horse battery staple")?;
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        Ok(())
    }

    #[test]
    fn round_trip_verifies_without_rehash() -> TestResult {
        let hasher = hasher(1);
        let phc = hasher.hash("correct horse battery staple")?;
        assert_eq!(hasher.verify("correct horse battery staple", &phc)?, Verification::Valid { needs_rehash: false });
        Ok(())
    }

    #[test]
    fn wrong_password_is_invalid() -> TestResult {
        let hasher = hasher(1);
        let phc = hasher.hash("correct horse battery staple")?;
        assert_eq!(hasher.verify("correct horse battery stapler", &phc)?, Verification::Invalid);
        assert_eq!(hasher.verify("", &phc)?, Verification::Invalid);
        Ok(())
    }

    #[test]
    fn same_password_with_another_pepper_is_invalid() -> TestResult {
        let phc = hasher(1).hash("correct horse battery staple")?;
        assert_eq!(hasher(2).verify("correct horse battery staple", &phc)?, Verification::Invalid);
        Ok(())
    }

    #[test]
    fn two_hashes_of_one_password_differ_by_salt() -> TestResult {
        let hasher = hasher(1);
        let a = hasher.hash("correct horse battery staple")?;
        let b = hasher.hash("correct horse battery staple")?;
        assert_ne!(a, b);
        assert_eq!(hasher.verify("correct horse battery staple", &a)?, Verification::Valid { needs_rehash: false });
        assert_eq!(hasher.verify("correct horse battery staple", &b)?, Verification::Valid { needs_rehash: false });
        Ok(())
    }

    #[test]
    fn phc_string_does_not_contain_the_password_or_the_pepper() -> TestResult {
        let pepper = SecretKey::from_bytes([0x42; 32]);
        let phc = PasswordHasher::new(pepper.clone()).hash("violet-otter-rides-quietly")?;
        assert!(!phc.contains("violet-otter-rides-quietly"), "{phc}");
        assert!(!phc.contains("violet"), "{phc}");
        assert!(!phc.contains(&pepper.to_hex()), "{phc}");
        Ok(())
    }

    #[test]
    fn weaker_stored_params_verify_but_need_rehash() -> TestResult {
        let weak = PasswordHasher::with_params(SecretKey::from_bytes([1; 32]), 8 * 1024, 1, 1)?;
        let phc = weak.hash("correct horse battery staple")?;
        assert!(phc.contains("m=8192,t=1,p=1"), "{phc}");
        let strong = hasher(1);
        assert_eq!(strong.verify("correct horse battery staple", &phc)?, Verification::Valid { needs_rehash: true });
        assert_eq!(strong.verify("not the password at all", &phc)?, Verification::Invalid);
        let rehashed = strong.hash("correct horse battery staple")?;
        assert_eq!(strong.verify("correct horse battery staple", &rehashed)?, Verification::Valid { needs_rehash: false });
        Ok(())
    }

    #[test]
    fn other_argon2_variants_verify_but_need_rehash() -> TestResult {
        let pepper = SecretKey::from_bytes([1; 32]);
        let argon2i = Argon2::new_with_secret(pepper.bytes(), Algorithm::Argon2i, Version::V0x13, DEFAULT_PARAMS)?;
        let phc = argon2i.hash_password_with_salt(b"correct horse battery staple", &[7; SALT_LEN])?.to_string();
        assert!(phc.starts_with("$argon2i$"), "{phc}");
        assert_eq!(hasher(1).verify("correct horse battery staple", &phc)?, Verification::Valid { needs_rehash: true });
        Ok(())
    }

    #[test]
    fn malformed_stored_hashes_are_errors_not_invalid() -> TestResult {
        let hasher = hasher(1);
        let good = hasher.hash("correct horse battery staple")?;
        let truncated = &good[..good.len() - 10];
        let bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
        for stored in ["", "not a hash", truncated, bcrypt, "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaA"] {
            assert!(
                matches!(hasher.verify("correct horse battery staple", stored), Err(CryptoError::Malformed)),
                "{stored:?} was not refused as malformed"
            );
        }
        Ok(())
    }

    #[test]
    fn invalid_params_are_refused() -> TestResult {
        let pepper = || SecretKey::from_bytes([1; 32]);
        assert!(PasswordHasher::with_params(pepper(), 4, 1, 1).is_err(), "memory below 8 KiB");
        assert!(PasswordHasher::with_params(pepper(), 8 * 1024, 0, 1).is_err(), "no passes");
        assert!(PasswordHasher::with_params(pepper(), 8 * 1024, 1, 0).is_err(), "no lanes");
        PasswordHasher::with_params(pepper(), 8 * 1024, 1, 1)?;
        Ok(())
    }

    #[test]
    fn verify_dummy_spends_comparable_work() -> TestResult {
        // Not a timing benchmark (too noisy for CI): it checks that the dummy really runs
        // Argon2 at the hasher's cost rather than returning at once. The fastest of three
        // runs each keeps other tests running in parallel from skewing the comparison.
        let hasher = hasher(1);
        let phc = hasher.hash("correct horse battery staple")?;
        let mut verify = std::time::Duration::MAX;
        let mut dummy = std::time::Duration::MAX;
        for _ in 0..3 {
            let start = std::time::Instant::now();
            hasher.verify("correct horse battery staple", &phc)?;
            verify = verify.min(start.elapsed());
            let start = std::time::Instant::now();
            hasher.verify_dummy("correct horse battery staple");
            dummy = dummy.min(start.elapsed());
        }
        assert!(dummy * 4 >= verify, "dummy {dummy:?} vs verify {verify:?}");
        Ok(())
    }
}
