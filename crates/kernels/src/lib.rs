//! deepgen-kernels: the math on tensors.
//!
//! Plain functions from tensors to new tensors. Each kernel takes any layout
//! (strided views included) and writes a fresh contiguous result from the
//! buffer pool. Work is split over rayon only above [`PAR_THRESHOLD`]
//! elements, so small tensors pay no thread overhead; f32 transcendental
//! functions use vectorised code chosen at run time (AVX2 + FMA where the CPU
//! has it, a portable path elsewhere).
//!
//! Who owns the cores: rayon does. matrixmultiply runs single-threaded inside
//! rayon tasks — a large gemm is split into row blocks, a batch of small gemms
//! (batched matmul, convolution) is split over the batch — so the two thread
//! pools never compete.

mod binary;
mod conv;
mod dispatch;
mod gemm;
pub mod math;
mod norm;
mod packed;
pub mod par;
mod pool;
mod reduce;
pub mod rnn;
mod shape;
mod unary;

pub use binary::*;
pub use conv::*;
pub use gemm::*;
pub use norm::*;
pub use packed::PackedB;
pub use pool::*;
pub use reduce::*;
pub use shape::*;
pub use unary::*;

pub use deepgen_tensor::{Element, Error, Result, Tensor};

/// Elementwise work below this many elements stays on the calling thread.
pub const PAR_THRESHOLD: usize = 1 << 15;

/// Elements per rayon task for elementwise work.
pub(crate) const PAR_CHUNK: usize = 1 << 14;
