//! The differentiable ops, one family per file; each op's backward sits
//! beside its forward and is written in Var ops.

mod conv;
mod elementwise;
mod linalg;
mod norm;
mod operators;
mod reduce;
mod shape;

pub use norm::BatchNormOutput;
