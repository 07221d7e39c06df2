//! deepgen-tensor: n-dimensional arrays of `f32` or `f64`.
//!
//! A [`Tensor`] is shared storage plus a [`Layout`] (shape, strides, offset).
//! Views — reshape of a contiguous tensor, permute, transpose, narrow,
//! broadcast_to, squeeze, unsqueeze — only rewrite the layout, so they cost no
//! copy; `contiguous()` copies only when the layout is not row-major already.
//!
//! Buffers come from a small recycling pool ([`storage`]): training loops
//! allocate the same sizes step after step, and handing a freed buffer back
//! saves the page faults that fresh allocations of large buffers cost.

pub mod budget;
mod display;
mod element;
mod error;
pub mod io;
pub mod layout;
mod random;
pub mod storage;
mod tensor;
mod view;

pub use element::{DType, Element};
pub use error::{Error, Result};
pub use layout::{broadcast_shapes, Layout};
pub use storage::Buffer;
pub use tensor::Tensor;
// The `rand` version whose `Rng` the random constructors take.
pub use rand;
