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
//! # Errors and operators
//!
//! An op that can fail on its inputs (shapes that do not broadcast, an axis
//! out of range) returns [`Result`]; an op that cannot (unary and scalar
//! ops: `relu`, `exp`, `mul_scalar`) returns a [`Var`]. The `std::ops`
//! operators (`&a + &b`, `&x * 0.5`, `1.0 - &p`, `-&x`) are the same ops
//! and panic with the error's message where the named method would return
//! it: write `a.add(&b)?` where a mismatch is data-dependent, `&a + &b`
//! where the shapes are fixed by the model.
//!
//! # Random numbers
//!
//! Initialisers and `Tensor::randn` take any [`rand::Rng`] of the `rand`
//! version deepgen uses, which this crate re-exports ([`rand`],
//! [`rand_chacha`], and `ChaCha8Rng`, `SeedableRng`, `Rng` in the
//! [`prelude`]), so a user crate never has to match that version by hand.
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
pub use deepgen_tensor::budget;
pub use deepgen_tensor::{DType, Element, Error as TensorError, Tensor};
pub use engine::{grad, grad_with};
pub use error::{Error, Result};
pub use grad_mode::{is_grad_enabled, no_grad, NoGradGuard};
pub use ops::BatchNormOutput;
pub use var::{Ctx, Grads, Var};
// The random-number crates of the version deepgen's APIs take.
pub use rand;
pub use rand_chacha;

/// What code on Vars needs: `use deepgen_autograd::prelude::*;`.
pub mod prelude {
    pub use crate::{grad, no_grad, Element, NoGradGuard, Tensor, Var};
    pub use rand::{Rng, SeedableRng};
    pub use rand_chacha::ChaCha8Rng;
}
