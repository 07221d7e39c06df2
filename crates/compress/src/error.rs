use thiserror::Error;

/// What can go wrong compressing or decompressing.
#[derive(Debug, Error)]
pub enum Error {
    /// Input the coder cannot take (a model or data that do not fit).
    #[error("{0}")]
    Invalid(String),
    /// A compressed file that is cut short or altered.
    #[error("corrupted compressed data: {0}")]
    Corrupt(String),
    #[error(
        "the file was compressed with the model whose checkpoint hashes to {file}, \
         not with this checkpoint ({given}): decompress it with the same model"
    )]
    WrongModel { file: String, given: String },
    #[error(transparent)]
    Vae(#[from] deepgen_vae::Error),
    #[error(transparent)]
    Tensor(#[from] deepgen_autograd::TensorError),
    #[error(transparent)]
    Data(#[from] deepgen_data::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
