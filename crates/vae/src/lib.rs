//! deepgen-vae: variational autoencoders (Kingma & Welling, arXiv 1312.6114).
//!
//! [`MlpVae`] is pytorch/examples' VAE (784-400-20, state dict names fc1,
//! fc21, fc22, fc3, fc4, so checkpoints move between the two unchanged)
//! with configurable sizes and a Bernoulli decoder on logits. [`elbo`]
//! gives the negative evidence lower bound with its reconstruction and KL
//! parts (with a beta weight), [`iwae_bound`] the importance-weighted bound
//! of Burda et al. (arXiv 1509.00519). [`trainer`] runs epochs with
//! held-out evaluation, metrics, image grids and checkpoints.
//!
//! [`generate`] samples, reconstructs, interpolates, encodes and writes images.
//!
//! Work in progress: the convolutional VAE, Gaussian decoders, the
//! loss-curve plot and the manifold grid are not here yet.

mod error;
pub mod generate;
mod model;
mod objective;
pub mod trainer;

pub use error::{Error, Result};
pub use model::{MlpVae, MlpVaeConfig};
pub use objective::{elbo, iwae_bound, Elbo};
