//! The one error type of deepgen-optim.

/// What went wrong, naming the optimizer, option, group or tensor involved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Autograd(#[from] deepgen_autograd::Error),
    #[error("{owner}: invalid {option} {value} ({expected})")]
    InvalidOption {
        owner: &'static str,
        option: &'static str,
        value: f64,
        expected: &'static str,
    },
    #[error("{optimizer}: got an empty parameter list")]
    EmptyParams { optimizer: &'static str },
    #[error("{optimizer}: parameter {index} appears more than once (in group {group})")]
    DuplicateParam {
        optimizer: &'static str,
        index: usize,
        group: usize,
    },
    #[error("{optimizer}: parameter {index} is not a leaf (it was made by {op}); optimize leaves")]
    NonLeafParam {
        optimizer: &'static str,
        index: usize,
        op: &'static str,
    },
    #[error("{op}: parameter group {group} does not exist ({len} groups)")]
    NoSuchGroup {
        op: &'static str,
        group: usize,
        len: usize,
    },
    #[error(
        "{op}: parameter {index} has a gradient of shape {got:?}, but its value has shape {want:?}"
    )]
    GradShape {
        op: &'static str,
        index: usize,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    #[error("{op}: the optimizer has {got} parameter groups, the scheduler was built for {want}")]
    GroupCount {
        op: &'static str,
        got: usize,
        want: usize,
    },
    #[error("load_state_dict: missing tensor {name} (expected shape {want:?})")]
    MissingTensor { name: String, want: Vec<usize> },
    #[error("load_state_dict: unexpected tensor {name} (shape {shape:?})")]
    UnexpectedTensor { name: String, shape: Vec<usize> },
    #[error("load_state_dict: tensor {name} appears more than once")]
    DuplicateTensor { name: String },
    #[error("load_state_dict: tensor {name} has shape {got:?}, expected {want:?}")]
    TensorShape {
        name: String,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    #[error("load_state_dict: tensor {name} holds {value}, expected {expected}")]
    TensorValue {
        name: String,
        value: f64,
        expected: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
