//! The key directory: where the master key lives, away from the data.
//!
//! Rules enforced at every start, because a key beside its ciphertexts protects nothing:
//! - the key directory must not lie inside the data directory (a backup of the data
//!   directory must never carry the keys);
//! - no file in it may be readable or writable by anyone but its owner (mode 0600),
//!   and the directory itself may not be writable by others;
//! - key files are written atomically (temporary file, fsync, rename, fsync directory),
//!   so a crash never leaves half a key.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::{CryptoError, Keyring, MasterKey, SecretKey};

pub const MASTER_KEY_FILE: &str = "master.key";
/// Present only while a key rotation is under way.
pub const NEXT_MASTER_KEY_FILE: &str = "master.next.key";
/// The password pepper: Argon2's secret input for every password hash.
pub const PEPPER_FILE: &str = "pepper.key";

/// Where the current master key comes from.
#[derive(Clone, Debug)]
pub enum MasterKeySource {
    /// `master.key` in the key directory, created on first start.
    KeyDir,
    /// 64 hex digits given directly, e.g. from an environment variable set by a secrets manager.
    Hex { source_name: String, hex: String },
    /// A file holding 64 hex digits, e.g. mounted by a secrets manager.
    File(PathBuf),
}

#[derive(Clone, Debug)]
pub struct KeyDir {
    path: PathBuf,
}

impl KeyDir {
    /// Opens the key directory, creating it (mode 0700) if it does not exist, after
    /// checking that it is not inside the data directory and that its files are private.
    pub fn open(key_dir: &Path, data_dir: &Path) -> Result<Self, CryptoError> {
        let key_dir_abs = resolve_path(key_dir)?;
        let data_dir_abs = resolve_path(data_dir)?;
        if key_dir_abs.starts_with(&data_dir_abs) {
            return Err(CryptoError::key_file(
                key_dir,
                format!(
                    "the key directory is inside the data directory {}; a copy or backup of the data \
                     would carry its keys. Choose a key directory outside it (--key-dir).",
                    data_dir.display()
                ),
            ));
        }
        if !key_dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(key_dir)
                .map_err(|e| CryptoError::key_file(key_dir, format!("cannot create: {e}")))?;
        }
        let dir = Self { path: key_dir.to_path_buf() };
        dir.check_permissions()?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn check_permissions(&self) -> Result<(), CryptoError> {
        let meta = fs::metadata(&self.path)
            .map_err(|e| CryptoError::key_file(&self.path, format!("cannot read: {e}")))?;
        if !meta.is_dir() {
            return Err(CryptoError::key_file(&self.path, "is not a directory"));
        }
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(CryptoError::key_file(
                &self.path,
                format!(
                    "the key directory is writable by other users; run: chmod 700 {}",
                    self.path.display()
                ),
            ));
        }
        let entries = fs::read_dir(&self.path)
            .map_err(|e| CryptoError::key_file(&self.path, format!("cannot list: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| CryptoError::key_file(&self.path, format!("cannot list: {e}")))?;
            check_private(&entry.path())?;
        }
        Ok(())
    }

    /// Loads the current master key (creating `master.key` on first start when the key
    /// directory is the source) and, during a rotation, the next one.
    pub fn load_keyring(&self, source: &MasterKeySource) -> Result<Keyring, CryptoError> {
        let current = match source {
            MasterKeySource::KeyDir => {
                let path = self.file(MASTER_KEY_FILE);
                if !path.exists() {
                    write_private_file(&path, SecretKey::random()?.to_hex().as_bytes())?;
                }
                read_key_file(&path)?
            }
            MasterKeySource::Hex { source_name, hex } => {
                SecretKey::from_hex(hex).ok_or_else(|| CryptoError::KeySource {
                    source_name: source_name.clone(),
                    problem: "expected 64 hexadecimal digits (32 random bytes)".to_owned(),
                })?
            }
            MasterKeySource::File(path) => read_key_file(path)?,
        };
        let next_path = self.file(NEXT_MASTER_KEY_FILE);
        let next = if next_path.exists() { Some(MasterKey::new(&read_key_file(&next_path)?)) } else { None };
        Ok(Keyring::new(MasterKey::new(&current), next))
    }

    /// Starts a key rotation: writes a new random `master.next.key`, or returns the one
    /// already there if an earlier rotation was interrupted.
    pub fn next_master_key(&self) -> Result<MasterKey, CryptoError> {
        let path = self.file(NEXT_MASTER_KEY_FILE);
        if !path.exists() {
            write_private_file(&path, SecretKey::random()?.to_hex().as_bytes())?;
        }
        Ok(MasterKey::new(&read_key_file(&path)?))
    }

    /// The password pepper (Argon2's secret input), creating `pepper.key` (32 random bytes
    /// as 64 hex digits, mode 0600) on first call and reading it afterwards.
    ///
    /// The pepper is separate from the master key on purpose: `cubby admin rotate-keys`
    /// rotates the master key but not the pepper, since changing the pepper would
    /// invalidate every password. Losing this file locks every account out, so it is
    /// backed up with the master key (and, like it, never with the data).
    pub fn password_pepper(&self) -> Result<SecretKey, CryptoError> {
        let path = self.file(PEPPER_FILE);
        if !path.exists() {
            write_private_file(&path, SecretKey::random()?.to_hex().as_bytes())?;
        }
        read_key_file(&path)
    }

    /// Ends a key rotation: the next key replaces the current one, atomically.
    /// The old key is gone afterwards, which is the point of rotating it.
    pub fn promote_next_master_key(&self) -> Result<(), CryptoError> {
        let next = self.file(NEXT_MASTER_KEY_FILE);
        let current = self.file(MASTER_KEY_FILE);
        fs::rename(&next, &current)
            .map_err(|e| CryptoError::key_file(&next, format!("cannot rename to {MASTER_KEY_FILE}: {e}")))?;
        sync_dir(&self.path)
    }
}

/// Reads a key file (64 hex digits) after checking that only its owner can read it.
pub fn read_key_file(path: &Path) -> Result<SecretKey, CryptoError> {
    let text = read_private_file(path)?;
    let text = String::from_utf8(text).map_err(|_| CryptoError::key_file(path, "not a key file"))?;
    SecretKey::from_hex(&text)
        .ok_or_else(|| CryptoError::key_file(path, "expected 64 hexadecimal digits (32 random bytes)"))
}

/// Reads a file that must be private to its owner (mode 0600 or stricter).
pub fn read_private_file(path: &Path) -> Result<Vec<u8>, CryptoError> {
    check_private(path)?;
    fs::read(path).map_err(|e| CryptoError::key_file(path, format!("cannot read: {e}")))
}

/// Writes a private file (mode 0600) atomically and durably.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), CryptoError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    let temp = dir.join(format!(".{file_name}.tmp"));
    let fail = |e: std::io::Error| CryptoError::key_file(path, format!("cannot write: {e}"));
    let _ = fs::remove_file(&temp);
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp).map_err(fail)?;
    file.write_all(contents).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    fs::rename(&temp, path).map_err(fail)?;
    sync_dir(dir)
}

fn check_private(path: &Path) -> Result<(), CryptoError> {
    let meta = fs::metadata(path).map_err(|e| CryptoError::key_file(path, format!("cannot read: {e}")))?;
    if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
        return Err(CryptoError::key_file(
            path,
            format!(
                "key file is accessible to other users (mode {:o}); run: chmod 600 {}",
                meta.permissions().mode() & 0o777,
                path.display()
            ),
        ));
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), CryptoError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CryptoError::key_file(dir, format!("cannot sync: {e}")))
}

/// The absolute, symlink-free form of a path that may not exist yet: `..` is removed,
/// then the longest existing ancestor is canonicalised and the rest appended, so `a/../b`
/// tricks and symlinks cannot hide that one directory is inside another.
pub fn resolve_path(path: &Path) -> Result<PathBuf, CryptoError> {
    let absolute = std::path::absolute(path).map_err(|e| CryptoError::key_file(path, e.to_string()))?;
    let mut existing = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                existing.pop();
            }
            Component::CurDir => {}
            other => existing.push(other),
        }
    }
    let mut missing = Vec::new();
    while !existing.exists() {
        let Some(name) = existing.file_name().map(ToOwned::to_owned) else { break };
        missing.push(name);
        existing.pop();
    }
    let mut resolved = existing.canonicalize().map_err(|e| CryptoError::key_file(path, e.to_string()))?;
    resolved.extend(missing.iter().rev());
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn first_open_creates_a_private_master_key_that_is_reused() -> TestResult {
        let root = tempfile::tempdir()?;
        let keys = KeyDir::open(&root.path().join("keys"), &root.path().join("data"))?;
        let first = keys.load_keyring(&MasterKeySource::KeyDir)?;
        let mode = fs::metadata(keys.file(MASTER_KEY_FILE))?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::metadata(keys.path())?.permissions().mode() & 0o777, 0o700);
        let again = KeyDir::open(&root.path().join("keys"), &root.path().join("data"))?;
        assert_eq!(again.load_keyring(&MasterKeySource::KeyDir)?.current().id(), first.current().id());
        Ok(())
    }

    #[test]
    fn key_dir_inside_data_dir_is_refused_even_through_dot_dot() -> TestResult {
        let root = tempfile::tempdir()?;
        let data = root.path().join("data");
        fs::create_dir(&data)?;
        for inside in [data.join("keys"), root.path().join("other/../data/keys"), data.clone()] {
            let err = KeyDir::open(&inside, &data).err().ok_or("accepted")?;
            assert!(err.to_string().contains("inside the data directory"), "{err}");
        }
        Ok(())
    }

    #[test]
    fn readable_key_files_are_refused_with_the_fix() -> TestResult {
        let root = tempfile::tempdir()?;
        let keys_path = root.path().join("keys");
        let keys = KeyDir::open(&keys_path, &root.path().join("data"))?;
        keys.load_keyring(&MasterKeySource::KeyDir)?;
        fs::set_permissions(keys.file(MASTER_KEY_FILE), fs::Permissions::from_mode(0o644))?;
        let err = KeyDir::open(&keys_path, &root.path().join("data")).err().ok_or("accepted")?;
        assert!(err.to_string().contains("chmod 600"), "{err}");
        Ok(())
    }

    #[test]
    fn password_pepper_is_created_once_private_and_separate_from_the_master_key() -> TestResult {
        let root = tempfile::tempdir()?;
        let keys_path = root.path().join("keys");
        let keys = KeyDir::open(&keys_path, &root.path().join("data"))?;
        assert!(!keys.file(PEPPER_FILE).exists());
        let first = keys.password_pepper()?;
        assert_eq!(fs::metadata(keys.file(PEPPER_FILE))?.permissions().mode() & 0o777, 0o600);
        assert_eq!(keys.password_pepper()?.bytes(), first.bytes(), "stable across calls");
        let reopened = KeyDir::open(&keys_path, &root.path().join("data"))?;
        assert_eq!(reopened.password_pepper()?.bytes(), first.bytes(), "stable across restarts");
        let master = read_key_file(&keys.file(MASTER_KEY_FILE)).ok();
        assert!(master.is_none(), "the pepper must not create or be the master key");
        keys.load_keyring(&MasterKeySource::KeyDir)?;
        assert_ne!(read_key_file(&keys.file(MASTER_KEY_FILE))?.bytes(), first.bytes());
        fs::set_permissions(keys.file(PEPPER_FILE), fs::Permissions::from_mode(0o644))?;
        let err = KeyDir::open(&keys_path, &root.path().join("data")).err().ok_or("accepted")?;
        assert!(err.to_string().contains("chmod 600") && err.to_string().contains(PEPPER_FILE), "{err}");
        assert!(keys.password_pepper().is_err(), "a readable pepper is refused on read too");
        Ok(())
    }

    #[test]
    fn external_sources_are_used_and_checked() -> TestResult {
        let root = tempfile::tempdir()?;
        let keys = KeyDir::open(&root.path().join("keys"), &root.path().join("data"))?;
        let secret = SecretKey::random()?;
        let from_hex = keys.load_keyring(&MasterKeySource::Hex { source_name: "CUBBY_MASTER_KEY".into(), hex: secret.to_hex() })?;
        assert_eq!(from_hex.current().id(), MasterKey::new(&secret).id());
        assert!(!keys.file(MASTER_KEY_FILE).exists(), "an external key must not create a key file");
        let bad = keys.load_keyring(&MasterKeySource::Hex { source_name: "CUBBY_MASTER_KEY".into(), hex: "nope".into() });
        assert!(bad.is_err());
        let file = root.path().join("secret.key");
        write_private_file(&file, secret.to_hex().as_bytes())?;
        assert_eq!(keys.load_keyring(&MasterKeySource::File(file.clone()))?.current().id(), MasterKey::new(&secret).id());
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640))?;
        assert!(keys.load_keyring(&MasterKeySource::File(file)).is_err());
        Ok(())
    }

    #[test]
    fn rotation_files_resume_and_promote() -> TestResult {
        let root = tempfile::tempdir()?;
        let keys = KeyDir::open(&root.path().join("keys"), &root.path().join("data"))?;
        let old = keys.load_keyring(&MasterKeySource::KeyDir)?;
        let next = keys.next_master_key()?;
        assert_eq!(keys.next_master_key()?.id(), next.id(), "an interrupted rotation resumes with the same key");
        let during = keys.load_keyring(&MasterKeySource::KeyDir)?;
        assert_eq!(during.current().id(), old.current().id());
        assert_eq!(during.next().map(|k| k.id().clone()), Some(next.id().clone()));
        keys.promote_next_master_key()?;
        let after = keys.load_keyring(&MasterKeySource::KeyDir)?;
        assert_eq!(after.current().id(), next.id());
        assert!(after.next().is_none());
        Ok(())
    }
}
