//! deepgen-cli: the `deepgen` binary and the pieces it is made of.
//!
//! The binary is glue: one module per command parses flags into the
//! libraries' configs and calls them. What it does, a library user can do
//! by calling them. This library part holds what the binary adds of its
//! own: the digit classifier ([`classifier`]) and the image-quality score
//! built on it ([`quality`]), and picking data sets by name ([`datasets`]).

pub mod classifier;
pub mod datasets;
pub mod quality;

/// Errors the CLI reports (each wraps the failing layer's error).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Data(#[from] deepgen_data::Error),
    #[error(transparent)]
    Nn(#[from] deepgen_nn::Error),
    #[error(transparent)]
    Optim(#[from] deepgen_optim::Error),
    #[error(transparent)]
    Autograd(#[from] deepgen_autograd::Error),
    #[error(transparent)]
    Vae(#[from] deepgen_vae::Error),
    #[error(transparent)]
    Gan(#[from] deepgen_gan::Error),
    #[error(transparent)]
    Train(#[from] deepgen_train::Error),
    #[error(transparent)]
    Onnx(#[from] deepgen_onnx::Error),
    /// Compressing failed (the message names the input).
    #[error(transparent)]
    Compress(Box<deepgen_compress::Error>),
    /// Decompressing `path` failed.
    #[error("{}: {source}", path.display())]
    Decompress {
        path: std::path::PathBuf,
        source: Box<deepgen_compress::Error>,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// A flag or value the command cannot use (exit code 2, like clap's).
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// The process exit code: 2 for usage errors (as clap's), 130 after
    /// Ctrl-C, 1 for runs that failed.
    pub fn exit_code(&self) -> u8 {
        // A run stopped by Ctrl-C exits as an interrupted process does.
        if deepgen_train::interrupt::requested() {
            return 130;
        }
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// A classifier step's error as the training loop reports it.
impl From<Error> for deepgen_train::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Train(t) => t,
            other => deepgen_train::Error::Model(Box::new(other)),
        }
    }
}

impl From<deepgen_autograd::TensorError> for Error {
    fn from(e: deepgen_autograd::TensorError) -> Self {
        Error::Autograd(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
