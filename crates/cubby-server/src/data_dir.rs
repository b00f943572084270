//! The data directory: the database (for SQLite) and, later, blob files. It holds no key.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// An exclusive lock on the data directory, held for the life of a `cubby serve` or a
/// `cubby admin` command that must not run beside one (such as a key rotation).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Creates the directory (mode 0700) if needed and locks it.
    pub fn acquire(dir: &Path) -> Result<Self, String> {
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
        }
        let lock_path = dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
        file.try_lock().map_err(|_| {
            format!(
                "another cubby process is using the data directory {} (stop it first)",
                dir.display()
            )
        })?;
        Ok(Self { _file: file, path: dir.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The default SQLite database inside the data directory.
    pub fn default_database_url(&self) -> String {
        format!("sqlite://{}", self.path.join("cubby.db").display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() -> Result<(), String> {
        let root = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = root.path().join("data");
        let first = DataDirLock::acquire(&dir)?;
        let second = DataDirLock::acquire(&dir);
        assert!(second.err().unwrap_or_default().contains("another cubby process"));
        drop(first);
        assert!(DataDirLock::acquire(&dir).is_ok());
        Ok(())
    }
}
