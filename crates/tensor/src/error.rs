/// Errors of tensor operations: each names the operation and the shapes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("{op}: shapes {lhs:?} and {rhs:?} do not broadcast")]
    Broadcast {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },
    #[error("{op}: shapes {lhs:?} and {rhs:?} do not match")]
    ShapeMismatch {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },
    #[error("{op}: {len} elements do not fill shape {shape:?}")]
    ElementCount {
        op: &'static str,
        len: usize,
        shape: Vec<usize>,
    },
    #[error("{op}: axis {axis} is out of range for shape {shape:?}")]
    Axis {
        op: &'static str,
        axis: usize,
        shape: Vec<usize>,
    },
    #[error("{op}: index {index} is out of range {len} for shape {shape:?}")]
    Index {
        op: &'static str,
        index: usize,
        len: usize,
        shape: Vec<usize>,
    },
    #[error("{op}: {msg} (shape {shape:?})")]
    Invalid {
        op: &'static str,
        shape: Vec<usize>,
        msg: String,
    },
    /// A size from outside (a flag, a header, metadata) over the memory
    /// budget ([`crate::budget`]) or over what a file holds.
    #[error("{msg}")]
    OverBudget { msg: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
