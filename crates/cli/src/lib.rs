//! deepgen-cli: the `deepgen` binary and the pieces it is made of.
//!
//! The binary is thin: it parses flags into these functions' configs. What
//! it does, a library user can do by calling them. VAE and GAN training
//! arrive with their crates; for now the binary downloads data sets and
//! trains / evaluates the digit classifier ([`classifier`]).

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
    #[error("{0}")]
    Usage(String),
    #[error("training stopped: the loss became {loss} at epoch {epoch}, batch {batch}; the last good checkpoint is kept")]
    NonFinite {
        loss: f32,
        epoch: usize,
        batch: usize,
    },
}

impl From<deepgen_autograd::TensorError> for Error {
    fn from(e: deepgen_autograd::TensorError) -> Self {
        Error::Autograd(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
