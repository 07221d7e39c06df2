use std::path::PathBuf;

/// Errors of layers, losses and checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Autograd(#[from] deepgen_autograd::Error),
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid safetensors file ({reason})")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: unexpected tensor `{name}`")]
    UnexpectedTensor { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has shape {found:?}, the module expects {expected:?}")]
    TensorShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: tensor `{name}` has dtype {found}, expected {expected}")]
    TensorDtype {
        path: PathBuf,
        name: String,
        expected: String,
        found: String,
    },
}

impl From<deepgen_autograd::TensorError> for Error {
    fn from(e: deepgen_autograd::TensorError) -> Self {
        Error::Autograd(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
