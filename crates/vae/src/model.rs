//! The VAE as a whole: an encoder/decoder network ([`VaeNet`]: MLP or
//! convolutional) and the decoder's likelihood p(x|z) (Bernoulli, or
//! Gaussian with a fixed or learned variance), described by a [`VaeConfig`]
//! that travels as JSON inside every checkpoint.

use std::collections::HashMap;
use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use deepgen_autograd::{Element, Tensor, Var};
use deepgen_nn::checkpoint;
use deepgen_nn::export::{Attr, Graph};
use deepgen_nn::module::visit_child;
use deepgen_nn::{Forward, Module, ModuleField, Slot};

use crate::codec::LATENT_BOUND;
use crate::{CodecNet, ConvVae, Error, MlpVae, Result};

/// Key of the model description in a checkpoint's safetensors metadata.
pub const CONFIG_KEY: &str = "deepgen.vae";

/// An encoder q(z|x) and a decoder network; the likelihood is [`Vae`]'s.
pub trait VaeNet<T: Element>: Forward<T> {
    /// [n, image..] -> (mu, logvar), each [n, latent].
    fn encode(&self, x: &Var<T>) -> Result<(Var<T>, Var<T>)>;
    /// [n, latent] -> [n, image..]: Bernoulli logits or Gaussian means.
    fn decode(&self, z: &Var<T>) -> Result<Var<T>>;

    /// ONNX export of `encode` on the graph value `x`: (mu, logvar).
    fn export_encode(&self, g: &mut Graph, x: &str) -> Result<(String, String)> {
        let _ = (g, x);
        Err(not_exported("encoder"))
    }

    /// ONNX export of `decode` on the graph value `z`.
    fn export_decode(&self, g: &mut Graph, z: &str) -> Result<String> {
        let _ = (g, z);
        Err(not_exported("decoder"))
    }
}

fn not_exported(part: &str) -> Error {
    Error::Invalid {
        op: "export",
        msg: format!(
            "a codec's {part} has no ONNX export (its latents are rounded and entropy \
             coded; export a VAE, a GAN generator or the classifier)"
        ),
    }
}

/// A boxed network is a field of [`Vae`] like any child module.
impl<T: Element> ModuleField<T> for dyn VaeNet<T> {
    fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        visit_child(name, self, f);
    }

    fn set_training_field(&self, training: bool) {
        self.set_training(training);
    }
}

/// A VAE error as the `Forward` trait's.
fn as_nn(e: Error) -> deepgen_nn::Error {
    deepgen_nn::Error::Invalid {
        op: "vae",
        msg: e.to_string(),
    }
}

/// `Forward::forward` of a [`VaeNet`]: decode the posterior mean.
pub(crate) fn forward_through_mean<T: Element>(
    net: &dyn VaeNet<T>,
    x: &Var<T>,
) -> deepgen_nn::Result<Var<T>> {
    let (mu, _) = net.encode(x).map_err(as_nn)?;
    net.decode(&mu).map_err(as_nn)
}

/// `v` clamped to [0, 1].
fn clamp01<T: Element>(v: &Var<T>) -> Var<T> {
    v.maximum(&Var::scalar(T::zero()))
        .and_then(|m| m.minimum(&Var::scalar(T::one())))
        .expect("scalars broadcast")
}

/// Which network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// pytorch/examples' VAE: fc1, fc21, fc22, fc3, fc4.
    Mlp,
    /// Strided convolutions down, transposed convolutions up.
    Conv,
    /// The lossy codec ([`CodecNet`]): a convolutional latent grid rounded
    /// to integers, coded under a learned factorised prior; `latent` counts
    /// the grid's channels, `hidden` is unused.
    Codec,
}

/// The decoder's distribution over pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Likelihood {
    /// Independent Bernoulli pixels from logits (binary cross entropy);
    /// for images in [0, 1].
    Bernoulli,
    /// N(mean, std^2) per pixel with a fixed std.
    Gaussian { std: f64 },
    /// N(mean, sigma^2) with one learned log-variance for all pixels (as in
    /// Rybkin et al.'s sigma-VAE): a per-pixel variance would shrink to zero
    /// on MNIST's constant background and the likelihood would diverge.
    GaussianLearned,
    /// 8-bit pixels (k / 255 in [0, 1]) under a logistic discretised into
    /// 256 bins, with a mean and a log-scale per pixel from the decoder
    /// (which outputs twice the channels: means, then log-scales): a
    /// probability for every level, as lossless compression needs.
    DiscretizedLogistic,
    /// 8-bit pixels under a mixture of `components` discretised logistics
    /// (PixelCNN++'s likelihood): the decoder outputs three times
    /// `components` channels per image channel — the mixture logits, the
    /// means, the log-scales — so a pixel can be likely black and likely
    /// white at once, as stroke edges are.
    LogisticMixture { components: usize },
}

impl Likelihood {
    /// Decoder outputs per pixel: 2 for the discretised logistic (mean and
    /// log-scale), 3 per component for a mixture, 1 otherwise.
    pub fn outputs_per_pixel(self) -> usize {
        match self {
            Likelihood::DiscretizedLogistic => 2,
            Likelihood::LogisticMixture { components } => 3 * components,
            _ => 1,
        }
    }

    /// Whether pixels are 8-bit levels with a probability each (the
    /// logistic likelihoods).
    pub fn is_levels(self) -> bool {
        matches!(
            self,
            Likelihood::DiscretizedLogistic | Likelihood::LogisticMixture { .. }
        )
    }
}

/// Everything needed to rebuild a model before loading its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    pub arch: Arch,
    /// One image, e.g. [1, 28, 28] or [3, 32, 32].
    pub image_shape: Vec<usize>,
    /// MLP: hidden units; conv: units of the dense layer after the convolutions.
    pub hidden: usize,
    pub latent: usize,
    /// Conv: channels of each stride-2 stage.
    pub widths: Vec<usize>,
    pub likelihood: Likelihood,
}

impl Default for VaeConfig {
    /// pytorch/examples' VAE: MLP 784-400-20, Bernoulli decoder.
    fn default() -> Self {
        VaeConfig {
            arch: Arch::Mlp,
            image_shape: vec![1, 28, 28],
            hidden: 400,
            latent: 20,
            widths: vec![32, 64],
            likelihood: Likelihood::Bernoulli,
        }
    }
}

impl VaeConfig {
    /// Latent values per image: `latent`, or for a codec its grid's
    /// channels x rows x columns.
    pub fn latent_dim(&self) -> usize {
        match (self.arch, &self.image_shape[..]) {
            (Arch::Codec, &[_, h, w]) => {
                let scale = 1 << self.widths.len().min(31);
                self.latent * (h / scale) * (w / scale)
            }
            _ => self.latent,
        }
    }

    /// The convolutional VAE for `image_shape` (28x28 gray, 32x32 RGB, ...).
    pub fn conv(image_shape: &[usize], latent: usize) -> Self {
        VaeConfig {
            arch: Arch::Conv,
            image_shape: image_shape.to_vec(),
            hidden: 256,
            latent,
            ..Default::default()
        }
    }
}

/// A VAE: network, likelihood and (for [`Likelihood::GaussianLearned`])
/// the decoder's log-variance, a parameter named `decoder_log_var` of shape
/// `[1]`. A codec ([`Arch::Codec`]) has a learned prior instead of N(0, I):
/// a logistic per latent value with location `prior_loc` and log-scale
/// `prior_log_scale`, each `[latent_dim]`.
///
/// ```
/// use deepgen_autograd::{Tensor, Var};
/// use deepgen_nn::Module;
/// use deepgen_vae::{elbo, Vae, VaeConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A small MLP VAE for 4x4 gray images, Bernoulli decoder.
/// let config = VaeConfig { image_shape: vec![1, 4, 4], hidden: 8, latent: 2, ..Default::default() };
/// let model = Vae::<f32>::new(config, 0)?;
/// let x = Var::constant(Tensor::full(&[3, 1, 4, 4], 0.5));
/// let (mu, logvar) = model.encode(&x)?;
/// assert_eq!((mu.shape(), logvar.shape()), (vec![3, 2], vec![3, 2]));
/// assert_eq!(model.decode(&mu)?.shape(), [3, 1, 4, 4]);
///
/// // The negative ELBO with reparameterisation noise eps [n, latent].
/// let eps = Var::constant(Tensor::zeros(&[3, 2]));
/// let out = elbo(&model, &x, &eps, 1.0)?;
/// // Each of 16 pixels at 1/2 costs at least ln 2 nats under a Bernoulli decoder.
/// assert!(out.reconstruction >= 16.0 * 2f64.ln() && out.kl >= 0.0);
/// out.loss.backward()?;
/// assert!(model.parameters().iter().all(|p| p.grad().is_some()));
/// # Ok(())
/// # }
/// ```
#[derive(Module)]
pub struct Vae<T: Element = f32> {
    /// Visited without a prefix, so an MLP VAE's state dict is pytorch/examples'.
    #[module(flatten)]
    pub net: Box<dyn VaeNet<T>>,
    #[module(skip)]
    pub config: VaeConfig,
    pub decoder_log_var: Option<Var<T>>,
    pub prior_loc: Option<Var<T>>,
    pub prior_log_scale: Option<Var<T>>,
}

impl<T: Element> Vae<T> {
    /// PyTorch-initialised from `seed`.
    pub fn new(config: VaeConfig, seed: u64) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (shape, h, z) = (&config.image_shape, config.hidden, config.latent);
        if shape.is_empty() || shape.contains(&0) || h == 0 || z == 0 {
            return Err(Error::Invalid {
                op: "vae",
                msg: format!("sizes must be positive: image {shape:?}, hidden {h}, latent {z}"),
            });
        }
        // Every product of the image's sizes below then fits in a usize.
        deepgen_nn::budget::check(
            &format!("an image of shape {shape:?}"),
            deepgen_nn::budget::shape_bytes(shape, size_of::<T>()),
        )?;
        let outputs = config.likelihood.outputs_per_pixel();
        let net: Box<dyn VaeNet<T>> = match config.arch {
            Arch::Mlp => Box::new(MlpVae::new(shape, h, z, outputs, &mut rng)?),
            Arch::Conv => Box::new(ConvVae::new(
                shape,
                &config.widths,
                h,
                z,
                outputs,
                &mut rng,
            )?),
            Arch::Codec => Box::new(CodecNet::new(shape, &config.widths, z, outputs, &mut rng)?),
        };
        // A codec's prior starts as the standard logistic in every value.
        let prior = || {
            (config.arch == Arch::Codec)
                .then(|| Var::parameter(Tensor::zeros(&[config.latent_dim()])))
        };
        let (prior_loc, prior_log_scale) = (prior(), prior());
        let decoder_log_var = match config.likelihood {
            Likelihood::GaussianLearned => Some(Var::parameter(Tensor::zeros(&[1]))),
            Likelihood::LogisticMixture { components } if !(1..=32).contains(&components) => {
                return Err(Error::Invalid {
                    op: "vae",
                    msg: format!("a logistic mixture needs 1 to 32 components, got {components}"),
                })
            }
            Likelihood::Gaussian { std } if !(std > 0.0 && std.is_finite()) => {
                return Err(Error::Invalid {
                    op: "vae",
                    msg: format!("the Gaussian decoder's std must be positive, got {std}"),
                })
            }
            _ => None,
        };
        Ok(Vae {
            net,
            config,
            decoder_log_var,
            prior_loc,
            prior_log_scale,
        })
    }

    pub fn latent_dim(&self) -> usize {
        self.config.latent_dim()
    }

    /// Whether this is a lossy codec: a rounded latent under a learned prior.
    pub fn is_codec(&self) -> bool {
        self.config.arch == Arch::Codec
    }

    /// The codec's learned prior (location, log-scale), each `[latent_dim]`.
    pub fn prior(&self) -> Option<(&Var<T>, &Var<T>)> {
        self.prior_loc.as_ref().zip(self.prior_log_scale.as_ref())
    }

    /// Posterior noise for `n` images, [n, latent_dim]: N(0, 1) for the
    /// reparameterisation z = mu + sigma eps, or for a codec U(-1/2, 1/2),
    /// the training stand-in for rounding.
    pub fn noise<R: rand::Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Tensor<T> {
        let shape = [n, self.latent_dim()];
        if self.is_codec() {
            Tensor::rand_uniform(&shape, T::of(-0.5), T::of(0.5), rng)
        } else {
            Tensor::randn(&shape, T::zero(), T::one(), rng)
        }
    }

    /// A codec's prior as (location, scale) of each latent value's
    /// logistic, the log-scale clamped as the rate clamps it
    /// (`deepgen_nn::loss::LOGISTIC_LOG_SCALE_RANGE`).
    pub fn prior_logistics(&self) -> Option<Vec<(f64, f64)>> {
        let (loc, log_scale) = self.prior()?;
        let (lo, hi) = deepgen_nn::loss::LOGISTIC_LOG_SCALE_RANGE;
        let pairs = loc
            .value()
            .to_vec()
            .into_iter()
            .zip(log_scale.value().to_vec());
        Some(
            pairs
                .map(|(m, ls)| (m.as_f64(), ls.as_f64().clamp(lo, hi).exp()))
                .collect(),
        )
    }

    /// `n` latent points from the prior, [n, latent_dim]: N(0, I), or a
    /// codec's logistics sampled by their inverse cdf and quantised.
    pub fn prior_sample<R: rand::Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Tensor<T> {
        let Some(logistics) = self.prior_logistics() else {
            return Tensor::randn(&[n, self.latent_dim()], T::zero(), T::one(), rng);
        };
        let dim = logistics.len();
        let u: Tensor<f64> = Tensor::rand_uniform(&[n, dim], 1e-12, 1.0 - 1e-12, rng);
        let values = u.to_vec().into_iter().enumerate().map(|(i, u)| {
            let (m, s) = logistics[i % dim];
            T::of(m + s * (u / (1.0 - u)).ln())
        });
        let y = Tensor::from_vec(values.collect(), &[n, dim]).expect("n x latent values");
        Self::quantise(&y)
    }

    /// A codec's latent as coded: each value rounded to the nearest
    /// integer and clamped to [-LATENT_BOUND, LATENT_BOUND].
    pub fn quantise(y: &Tensor<T>) -> Tensor<T> {
        let bound = LATENT_BOUND as f64;
        let values = y
            .to_vec()
            .into_iter()
            .map(|v| T::of(v.as_f64().round().clamp(-bound, bound)));
        Tensor::from_vec(values.collect(), y.shape()).expect("same shape")
    }

    /// The latent point an image is reconstructed from: the posterior
    /// mean, rounded for a codec. [n, image..] -> [n, latent_dim].
    pub fn latent_point(&self, x: &Var<T>) -> Result<Var<T>> {
        let (mu, _) = self.encode(x)?;
        Ok(if self.is_codec() {
            Var::constant(Self::quantise(&mu.value()))
        } else {
            mu
        })
    }

    /// The rate of latent values `z` [n, latent_dim] under a codec's
    /// learned prior: -log of each unit bin's mass, in nats, summed.
    pub fn rate(&self, z: &Var<T>) -> Result<Var<T>> {
        use deepgen_nn::loss::{logistic_bin_nll, Reduction};
        let (loc, log_scale) = self.prior().ok_or_else(|| Error::Invalid {
            op: "vae",
            msg: "only a codec has a learned prior to measure a rate under".into(),
        })?;
        Ok(logistic_bin_nll(z, loc, log_scale, Reduction::Sum)?)
    }

    pub fn image_shape(&self) -> &[usize] {
        &self.config.image_shape
    }

    /// [n, image..] -> (mu, logvar), each [n, latent].
    pub fn encode(&self, x: &Var<T>) -> Result<(Var<T>, Var<T>)> {
        self.net.encode(x)
    }

    /// [n, latent] -> the decoder's output [n, image..] (logits or means).
    pub fn decode(&self, z: &Var<T>) -> Result<Var<T>> {
        self.net.decode(z)
    }

    /// ONNX export of [`Vae::encode`] on the graph value `x` (images
    /// [n, image..]): the values of (mu, logvar).
    pub fn export_encoder(&self, g: &mut Graph, x: &str) -> Result<(String, String)> {
        self.net.export_encode(g, x)
    }

    /// ONNX export of the pixel means [`Vae::mean`] of [`Vae::decode`] on
    /// the graph value `z` ([n, latent]): what `deepgen sample` draws.
    pub fn export_decoder(&self, g: &mut Graph, z: &str) -> Result<String> {
        let decoded = self.net.export_decode(g, z)?;
        let c = self.config.image_shape[0] as i64;
        let clamp01 = |g: &mut Graph, x: &str| {
            let (lo, hi) = (g.floats("zero", vec![0.0]), g.floats("one", vec![1.0]));
            // Clip takes scalars: the constants' shape [1] reshaped to [].
            let scalar = g.ints("scalar", &[]);
            let lo = g.node("Reshape", &[&lo, &scalar], vec![]);
            let hi = g.node("Reshape", &[&hi, &scalar], vec![]);
            g.node("Clip", &[x, &lo, &hi], vec![])
        };
        // Channels [from, from + len) of the decoder output.
        let channels = |g: &mut Graph, from: i64, len: i64| {
            let (starts, ends) = (g.ints("starts", &[from]), g.ints("ends", &[from + len]));
            let axes = g.ints("axes", &[1]);
            g.node("Slice", &[&decoded, &starts, &ends, &axes], vec![])
        };
        Ok(match self.config.likelihood {
            Likelihood::Bernoulli => g.node("Sigmoid", &[&decoded], vec![]),
            Likelihood::DiscretizedLogistic => {
                let location = channels(g, 0, c);
                clamp01(g, &location)
            }
            Likelihood::LogisticMixture { components } => {
                let k = components as i64;
                let mut shape = vec![0, k];
                shape.extend(self.config.image_shape.iter().map(|&d| d as i64));
                let shape = g.ints("mixture_shape", &shape);
                let part = |g: &mut Graph, i: i64| {
                    let block = channels(g, i * k * c, k * c);
                    g.node("Reshape", &[&block, &shape], vec![])
                };
                let (logits, means) = (part(g, 0), part(g, 1));
                let weights = g.node("Softmax", &[&logits], vec![("axis", Attr::Int(1))]);
                let means = clamp01(g, &means);
                let weighted = g.node("Mul", &[&weights, &means], vec![]);
                let axis = g.ints("component_axis", &[1]);
                let keep = ("keepdims", Attr::Int(0));
                g.node("ReduceSum", &[&weighted, &axis], vec![keep])
            }
            _ => decoded,
        })
    }

    /// The pixel means E[x|z] of a decoder output: sigmoid of the logits,
    /// the Gaussian means themselves, or the logistic's location clamped to
    /// [0, 1] (its discretised mean up to the tails).
    pub fn mean(&self, decoded: &Var<T>) -> Var<T> {
        match self.config.likelihood {
            Likelihood::Bernoulli => decoded.sigmoid(),
            Likelihood::DiscretizedLogistic => {
                let (location, _) = self.split_logistic(decoded).expect("decoder output");
                clamp01(&location)
            }
            Likelihood::LogisticMixture { .. } => {
                // The components' locations weighted by their probabilities.
                let [logits, means, _] = self.split_mixture(decoded).expect("decoder output");
                let weights = logits
                    .sub(&logits.logsumexp(&[1], true).expect("axis 1"))
                    .expect("same shape")
                    .exp();
                weights
                    .mul(&clamp01(&means))
                    .and_then(|m| m.sum(&[1], false))
                    .expect("same shape")
            }
            _ => decoded.clone(),
        }
    }

    /// A logistic mixture's decoder output [n, 3kc, ...] as (logits, means,
    /// log-scales), each [n, k, c, ...].
    fn split_mixture(&self, decoded: &Var<T>) -> Result<[Var<T>; 3]> {
        let Likelihood::LogisticMixture { components } = self.config.likelihood else {
            unreachable!("only called for mixtures")
        };
        let shape = decoded.shape();
        let block = components * self.config.image_shape[0];
        let mut parts = vec![shape[0], components];
        parts.extend(&self.config.image_shape);
        let part = |i: usize| -> Result<Var<T>> {
            // Splitting axis 1 into [k, c] is a view of the narrowed block.
            Ok(decoded.narrow(1, i * block, block)?.reshape(&parts)?)
        };
        Ok([part(0)?, part(1)?, part(2)?])
    }

    /// A discretised-logistic decoder output [n, 2c, ...] as (means,
    /// log-scales), each [n, c, ...].
    fn split_logistic(&self, decoded: &Var<T>) -> Result<(Var<T>, Var<T>)> {
        let c = self.config.image_shape[0];
        Ok((decoded.narrow(1, 0, c)?, decoded.narrow(1, c, c)?))
    }

    /// -log p(x|z) per pixel, [n, image..], from the decoder output.
    pub fn pixel_nll(&self, decoded: &Var<T>, x: &Var<T>) -> Result<Var<T>> {
        use deepgen_nn::loss::{bce_with_logits, Reduction};
        let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        Ok(match (self.config.likelihood, &self.decoder_log_var) {
            (Likelihood::Bernoulli, _) => bce_with_logits(decoded, x, None, Reduction::None)?,
            (Likelihood::Gaussian { std }, _) => {
                // (x - mean)^2 / (2 std^2) + log std + log(2 pi) / 2
                let c = std.ln() + half_log_2pi;
                decoded
                    .sub(x)?
                    .square()
                    .mul_scalar(T::of(0.5 / (std * std)))
                    .add_scalar(T::of(c))
            }
            (Likelihood::GaussianLearned, Some(log_var)) => {
                // ((x - mean)^2 exp(-log_var) + log_var + log(2 pi)) / 2
                let inv = log_var.neg().exp();
                decoded
                    .sub(x)?
                    .square()
                    .mul(&inv)?
                    .add(log_var)?
                    .mul_scalar(T::of(0.5))
                    .add_scalar(T::of(half_log_2pi))
            }
            (Likelihood::DiscretizedLogistic, _) => {
                use deepgen_nn::loss::discretized_logistic_nll;
                let (mean, log_scale) = self.split_logistic(decoded)?;
                discretized_logistic_nll(&mean, &log_scale, x, Reduction::None)?
            }
            (Likelihood::LogisticMixture { .. }, _) => {
                use deepgen_nn::loss::discretized_logistic_mixture_nll;
                let [logits, means, log_scales] = self.split_mixture(decoded)?;
                discretized_logistic_mixture_nll(&logits, &means, &log_scales, x, Reduction::None)?
            }
            (Likelihood::GaussianLearned, None) => {
                return Err(Error::Invalid {
                    op: "vae",
                    msg: "a learned-variance decoder without its decoder_log_var".into(),
                })
            }
        })
    }

    /// Safetensors metadata describing this model (see [`CONFIG_KEY`]).
    pub fn metadata(&self) -> HashMap<String, String> {
        let json = serde_json::to_string(&self.config).expect("configs serialise");
        HashMap::from([(CONFIG_KEY.to_string(), json)])
    }

    /// Writes the state dict with the config in the file's metadata.
    pub fn save(&self, path: &Path) -> Result<()> {
        let state = checkpoint::state_dict(self);
        Ok(checkpoint::save_tensors(
            path,
            &state,
            Some(self.metadata()),
        )?)
    }
}

impl<T: Element> Forward<T> for Vae<T> {
    /// The pixel means of the reconstruction through the posterior mean
    /// (rounded, for a codec: what decompression gives).
    fn forward(&self, x: &Var<T>) -> deepgen_nn::Result<Var<T>> {
        let z = self.latent_point(x).map_err(as_nn)?;
        Ok(self.mean(&self.decode(&z).map_err(as_nn)?))
    }
}

impl Vae {
    /// A model shaped by the config in the file's metadata and filled from
    /// its tensors. A file without that metadata (e.g. saved from PyTorch's
    /// pytorch/examples VAE) is taken as an MLP VAE with a Bernoulli
    /// decoder, sized from `fc1.weight` [hidden, pixels] and `fc21.weight`
    /// [latent, hidden]; 784 pixels are [1, 28, 28], 3072 are [3, 32, 32].
    pub fn from_checkpoint(path: &Path) -> Result<Self> {
        let (tensors, meta) = checkpoint::load_tensors(path)?;
        Self::from_loaded(path, tensors, meta)
    }

    /// [`Vae::from_checkpoint`] on a file already read (`path` names it in
    /// errors): the config in `meta` is checked against what `tensors`
    /// hold before any of the model is allocated.
    pub fn from_loaded(
        path: &Path,
        tensors: Vec<(String, checkpoint::TensorData)>,
        meta: HashMap<String, String>,
    ) -> Result<Self> {
        let bad = |msg: String| Error::Invalid {
            op: "vae checkpoint",
            msg: format!("{}: {msg}", path.display()),
        };
        let config = match meta.get(CONFIG_KEY) {
            Some(json) => serde_json::from_str::<VaeConfig>(json)
                .map_err(|e| bad(format!("unreadable model config: {e}")))?,
            None => {
                let shape = |name: &str| {
                    tensors
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, t)| t.shape())
                        .ok_or_else(|| bad(format!("no {name} (and no model config)")))
                };
                let (fc1, fc21) = (shape("fc1.weight")?, shape("fc21.weight")?);
                let image_shape = match fc1.get(1) {
                    Some(784) => vec![1, 28, 28],
                    Some(3072) => vec![3, 32, 32],
                    p => return Err(bad(format!("{p:?} pixels is not a known image shape"))),
                };
                VaeConfig {
                    image_shape,
                    hidden: fc1[0],
                    latent: fc21[0],
                    ..Default::default()
                }
            }
        };
        let model = checkpoint::within_file(path, &tensors, || Vae::new(config, 0))?;
        checkpoint::load_entries(&model, path, tensors, true)?;
        Ok(model)
    }
}
