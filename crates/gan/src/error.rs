/// Errors of GAN models, losses, training and evaluation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Nn(#[from] deepgen_nn::Error),
    #[error(transparent)]
    Autograd(#[from] deepgen_autograd::Error),
    #[error(transparent)]
    Optim(#[from] deepgen_optim::Error),
    #[error(transparent)]
    Data(#[from] deepgen_data::Error),
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
    #[error("training stopped: the {which} loss became {loss} at epoch {epoch}, batch {batch}; the last good checkpoint is kept")]
    NonFinite {
        /// "discriminator" or "generator".
        which: &'static str,
        loss: f64,
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
