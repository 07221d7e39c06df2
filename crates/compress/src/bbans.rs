//! Bits-back coding with ANS (BB-ANS) over a sequence of images.
//!
//! Compressing image x onto the stack: pop z from the posterior q(z|x)
//! (taking bits that are already there back out), push x under p(x|z),
//! push z under the prior. The net cost is log q(z|x) - log p(x|z) -
//! log p(z), whose mean is the negative ELBO. The first image finds the
//! stack empty, with no bits to take back: its z is each dimension's most
//! likely bucket under the posterior, coded in full (popping from an empty
//! coder would give the lowest bucket of every dimension, the posterior's
//! far tail, and a poorly coded image). What it does not get back is the
//! "initial bits", paid once per file, not per image. Decompression runs
//! the same steps backwards, images last to first.
//!
//! The network runs on one image at a time on both sides, so compressor and
//! decompressor compute bit-identical probabilities.

use constriction::stream::model::DefaultContiguousCategoricalEntropyModel as Categorical;
use constriction::stream::model::{DefaultUniformModel, EncoderModel};
use constriction::stream::stack::DefaultAnsCoder;
use constriction::stream::Decode;
use deepgen_autograd::{NoGradGuard, Tensor, Var};
use deepgen_vae::Vae;

use crate::{Buckets, Error, Pixels, Result};

/// A model, its latent buckets and its pixel coding: everything both sides
/// of the coder need.
pub struct BitsBack<'m> {
    model: &'m Vae,
    buckets: Buckets,
    pixels: Pixels,
}

/// What compressing cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    /// Bits of the whole ANS message.
    pub total_bits: usize,
    /// Net bits each image added to the stack, in order.
    pub per_image: Vec<f64>,
    /// Bits the first image's latents would have got back from a stack
    /// that was not empty: the one-off overhead of the chain.
    pub initial_bits: f64,
}

pub(crate) fn coding_error(e: impl std::fmt::Debug) -> Error {
    Error::Corrupt(format!("the entropy coder failed: {e:?}"))
}

impl<'m> BitsBack<'m> {
    pub fn new(model: &'m Vae, buckets: Buckets, pixels: Pixels) -> Self {
        BitsBack {
            model,
            buckets,
            pixels,
        }
    }

    fn image_len(&self) -> usize {
        self.model.image_shape().iter().product()
    }

    /// q(z|x) over the buckets, one model per latent dimension.
    fn posterior(&self, image: &[u8]) -> Result<Vec<Categorical>> {
        let _no_grad = NoGradGuard::new();
        let mut shape = vec![1];
        shape.extend(self.model.image_shape());
        let x: Vec<f32> = image.iter().map(|&b| self.pixels.input(b)).collect();
        let (mu, logvar) = self
            .model
            .encode(&Var::constant(Tensor::from_vec(x, &shape)?))?;
        let (mu, logvar) = (mu.value().to_vec(), logvar.value().to_vec());
        let mut mass = Vec::with_capacity(self.buckets.count());
        mu.iter()
            .zip(&logvar)
            .map(|(&m, &lv)| {
                let sigma = (0.5 * lv as f64).exp();
                if !(m.is_finite() && sigma > 0.0 && sigma.is_finite()) {
                    return Err(Error::Invalid(format!(
                        "the encoder gave a posterior N({m}, {sigma}^2)"
                    )));
                }
                self.buckets.posterior(m as f64, sigma, &mut mass);
                Categorical::from_floating_point_probabilities_fast(&mass, None).map_err(|()| {
                    Error::Invalid(format!("posterior N({m}, {sigma}^2) has no mass"))
                })
            })
            .collect()
    }

    /// p(x|z) for the buckets `z`, one model per pixel.
    fn likelihood(&self, z: &[usize]) -> Result<Vec<Categorical>> {
        let _no_grad = NoGradGuard::new();
        let centres: Vec<f32> = z.iter().map(|&j| self.buckets.centre(j)).collect();
        let z = Var::constant(Tensor::from_vec(centres, &[1, z.len()])?);
        let decoded = self.model.decode(&z)?.value().to_vec();
        self.pixels.models(&decoded, self.image_len())
    }

    /// A latent dimension's most likely bucket under `q`.
    fn mode(&self, q: &Categorical) -> usize {
        let p = |j: usize| q.floating_point_probability::<f64>(j);
        (0..self.buckets.count())
            .max_by(|&a, &b| p(a).total_cmp(&p(b)))
            .expect("at least two buckets")
    }

    fn prior(&self) -> DefaultUniformModel {
        DefaultUniformModel::new(self.buckets.count())
    }

    /// Compresses `images` (each `image_len` bytes) into ANS words.
    pub fn encode(&self, images: &[&[u8]]) -> Result<(Vec<u32>, Rate)> {
        let mut coder = DefaultAnsCoder::new();
        let (mut per_image, mut initial_bits) = (Vec::with_capacity(images.len()), 0.0);
        for (i, image) in images.iter().enumerate() {
            let before = coder.num_bits() as f64;
            let posterior = self.posterior(image)?;
            let z = if i == 0 {
                let z: Vec<usize> = posterior.iter().map(|q| self.mode(q)).collect();
                // What the empty stack could not give back: the information
                // content of the first z under the posterior.
                initial_bits = z
                    .iter()
                    .zip(&posterior)
                    .map(|(&j, q)| -q.floating_point_probability::<f64>(j).log2())
                    .sum();
                z
            } else {
                coder
                    .decode_symbols(&posterior)
                    .collect::<std::result::Result<Vec<usize>, _>>()
                    .map_err(coding_error)?
            };
            let symbols: Vec<usize> = image.iter().map(|&b| self.pixels.symbol(b)).collect();
            let models = self.likelihood(&z)?;
            coder
                .encode_symbols_reverse(symbols.iter().zip(&models))
                .map_err(coding_error)?;
            coder
                .encode_iid_symbols_reverse(&z, self.prior())
                .map_err(coding_error)?;
            per_image.push(coder.num_bits() as f64 - before);
        }
        let total_bits = coder.num_bits();
        let words = coder.into_compressed().map_err(coding_error)?;
        let rate = Rate {
            total_bits,
            per_image,
            initial_bits,
        };
        Ok((words, rate))
    }

    /// The `count` images of ANS words written by [`BitsBack::encode`].
    /// Words that were not written so fail here or give other images (the
    /// container's checksum catches those); they never panic.
    pub fn decode(&self, words: Vec<u32>, count: usize) -> Result<Vec<Vec<u8>>> {
        let mut coder = DefaultAnsCoder::from_compressed(words)
            .map_err(|_| Error::Corrupt("the coded data ends in a zero word".into()))?;
        let latent = self.model.latent_dim();
        let mut images = Vec::with_capacity(count);
        for k in 0..count {
            let z = coder
                .decode_iid_symbols(latent, self.prior())
                .collect::<std::result::Result<Vec<usize>, _>>()
                .map_err(coding_error)?;
            let models = self.likelihood(&z)?;
            let image: Vec<u8> = coder
                .decode_symbols(&models)
                .map(|s| s.map(|s| self.pixels.byte(s)))
                .collect::<std::result::Result<_, _>>()
                .map_err(coding_error)?;
            // The first image (decoded last) took no bits from the stack.
            if k + 1 < count {
                let posterior = self.posterior(&image)?;
                coder
                    .encode_symbols_reverse(z.iter().zip(&posterior))
                    .map_err(coding_error)?;
            }
            images.push(image);
        }
        if !coder.is_empty() {
            return Err(Error::Corrupt(
                "bits are left over after the last image".into(),
            ));
        }
        images.reverse();
        Ok(images)
    }
}
