//! deepgen-vae: variational autoencoders (Kingma & Welling, arXiv 1312.6114).
//!
//! A [`Vae`] is a network — [`MlpVae`], pytorch/examples' VAE (784-400-20,
//! state dict names fc1, fc21, fc22, fc3, fc4, so checkpoints move between
//! the two unchanged), or the convolutional [`ConvVae`] — with a decoder
//! likelihood: Bernoulli on logits, or Gaussian with a fixed or learned
//! variance. Its [`VaeConfig`] is stored as JSON in every checkpoint. [`elbo`]
//! gives the negative evidence lower bound with its reconstruction and KL
//! parts (with a beta weight), [`iwae_bound`] the importance-weighted bound
//! of Burda et al. (arXiv 1509.00519). [`trainer`] runs epochs with
//! held-out evaluation, metrics, image grids and checkpoints.
//!
//! An [`Arch::Codec`] model is a lossy image codec ([`codec`]): a VAE
//! whose latent is rounded and whose prior is learned, trained for rate
//! and distortion together; `deepgen-compress` entropy codes its latents.
//!
//! [`generate`] samples, reconstructs, interpolates, encodes and writes images.

pub mod codec;
mod conv;
mod error;
pub mod generate;
mod mlp;
mod model;
mod objective;
pub mod trainer;

pub use codec::CodecNet;
pub use conv::ConvVae;
pub use error::{Error, Result};
pub use mlp::MlpVae;
pub use model::{Arch, Likelihood, Vae, VaeConfig, VaeNet, CONFIG_KEY};
pub use objective::{codec_rate_distortion, elbo, iwae_bound, Elbo, RateDistortion};
