/// Errors of autograd: tensor errors from the ops, and misuse of the graph.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tensor(#[from] deepgen_tensor::Error),
    #[error(
        "backward: output has shape {shape:?}; only a one-element output has an implicit gradient"
    )]
    NonScalarOutput { shape: Vec<usize> },
    #[error("grad: {what} has shape {got:?}, expected {want:?}")]
    GradShape {
        what: String,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    #[error("grad: input {index} does not require grad")]
    InputWithoutGrad { index: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
