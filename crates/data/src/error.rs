use std::path::PathBuf;

/// Errors of data sets, loaders, downloads and image output.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tensor(#[from] deepgen_tensor::Error),
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    BadFile { path: PathBuf, msg: String },
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
    /// A file's SHA-256 is not the one expected.
    #[error("{path}: SHA-256 is {found}, expected {expected}")]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// Every source of a download failed; `attempts` says how, one per URL.
    #[error("could not download {file}: {}", .attempts.join("; "))]
    Download { file: String, attempts: Vec<String> },
    /// No source of a download could be reached at all.
    #[error("could not reach any mirror for {file}: {} (are you offline?)", .attempts.join("; "))]
    Unreachable { file: String, attempts: Vec<String> },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
