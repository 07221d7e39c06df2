//! deepgen-autograd: reverse-mode automatic differentiation over tensors.
//!
//! A [`Var`] is a cheap, clonable, thread-safe handle to a graph node. Ops on
//! Vars compute their value with deepgen-kernels and, while recording is on
//! and some input requires a gradient, remember a backward rule. Every
//! backward rule is written in Var ops itself, so with `create_graph = true`
//! the gradient is again a differentiable graph: gradients of gradients (the
//! gradient penalty of WGAN-GP, R1) come for free. Without it, the rules run
//! under [`no_grad`] and record nothing.
//!
//! [`gradcheck`] compares every op's first and second derivatives with finite
//! differences in f64; `cargo xtask gradcheck` prints the table.

mod engine;
mod error;
mod grad_mode;
pub mod gradcheck;
mod ops;
mod var;

pub use deepgen_kernels::{Conv2dOptions, Pool2dOptions};
pub use deepgen_tensor::{DType, Element, Error as TensorError, Tensor};
pub use engine::grad;
pub use error::{Error, Result};
pub use grad_mode::{is_grad_enabled, no_grad, NoGradGuard};
pub use ops::BatchNormOutput;
pub use var::{Ctx, Grads, Var};
