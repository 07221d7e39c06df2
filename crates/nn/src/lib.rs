//! deepgen-nn: layers, initialisers, losses and state dicts.
//!
//! A [`Module`] maps a [`Var`] to a [`Var`] and exposes its parameters,
//! buffers and counters under PyTorch's dotted names (`0.weight`,
//! `1.running_mean`, ...), so a state dict written here loads into the same
//! PyTorch module with `load_state_dict`, and back ([`checkpoint`]). Layers
//! take PyTorch's defaults (initialisation included) and are generic over
//! the element type: f32 for training, f64 for gradient checks.

pub mod checkpoint;
mod error;
pub mod export;
pub mod gradcheck;
pub mod init;
mod layers;
pub mod loss;
pub mod module;

pub use deepgen_autograd::budget;
pub use deepgen_autograd::{Conv2dOptions, Element, Tensor, Var};
pub use deepgen_derive::Module;
pub use error::{Error, Result};
pub use layers::*;
pub use loss::Reduction;

/// What a model author needs, from Vars to layers, losses and seeded
/// random generators: `use deepgen_nn::prelude::*;`. Nothing here requires
/// naming deepgen's `rand` version ([`deepgen_autograd::rand`] is it).
pub mod prelude {
    pub use crate::loss::{self, one_hot, Reduction};
    // `Module` here is both the trait and `#[derive(Module)]`.
    pub use crate::{
        init, visit_child, AvgPool2d, BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig,
        ConvTranspose2d, ConvTranspose2dConfig, Dropout, Embedding, Flatten, Forward, Gru,
        LayerNorm, LeakyRelu, Linear, Lstm, MaxPool2d, Module, Relu, RnnConfig, RnnState,
        Sequential, Sigmoid, Tanh, Unflatten,
    };
    pub use deepgen_autograd::prelude::*;
}
pub use module::{visit_child, Forward, Module, ModuleField, Slot};

// So that `#[derive(Module)]`, which names `::deepgen_nn`, works inside this crate too.
extern crate self as deepgen_nn;
