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
    #[error(transparent)]
    Train(#[from] deepgen_train::Error),
}

impl From<deepgen_autograd::TensorError> for Error {
    fn from(e: deepgen_autograd::TensorError) -> Self {
        Error::Autograd(e.into())
    }
}

/// A GAN step's error as the training loop reports it (its own errors pass
/// through unwrapped).
impl From<Error> for deepgen_train::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Train(t) => t,
            other => deepgen_train::Error::Model(Box::new(other)),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
