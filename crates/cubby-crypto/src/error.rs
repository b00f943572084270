use std::path::PathBuf;

/// What can go wrong with keys and ciphertexts. Messages never include key material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("a sealed value could not be opened: wrong key, wrong place, or tampered with")]
    OpenFailed,
    #[error("a sealed value is malformed")]
    Malformed,
    #[error("no master key with id {0} is loaded; is this the right key directory?")]
    UnknownMasterKey(String),
    #[error("{path}: {problem}")]
    KeyFile { path: PathBuf, problem: String },
    #[error("master key from {source_name}: {problem}")]
    KeySource { source_name: String, problem: String },
}

impl CryptoError {
    pub(crate) fn key_file(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Self::KeyFile { path: path.into(), problem: problem.into() }
    }
}
