//! The lossy codec's bitstream: a codec model's rounded latents coded under
//! its learned prior, a logistic per latent value quantised to unit bins
//! (constriction's leaky quantizer, so every value in range keeps a nonzero
//! probability). The pixels are not coded: the decompressor decodes the
//! latents and runs the model's decoder, so a round trip gives exactly the
//! model's reconstruction from the rounded latent.

use constriction::stream::model::{
    DefaultLeakyQuantizer, EncoderModel, LeakilyQuantizedDistribution,
};
use constriction::stream::stack::DefaultAnsCoder;
use constriction::stream::Decode;
use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_vae::codec::{level, LATENT_BOUND};
use deepgen_vae::Vae;
use probability::distribution::Logistic;

use crate::bbans::coding_error;
use crate::{Error, Rate, Result};

/// One latent value's model: its logistic over unit bins.
type Prior = LeakilyQuantizedDistribution<f64, i32, u32, Logistic, 24>;

/// Images through the networks at a time: bounds memory, not results.
const BATCH: usize = 100;

/// A codec model and its prior, as both sides of the coder need them.
pub struct LatentCoder<'m> {
    model: &'m Vae,
    /// (location, scale) of each latent value's logistic.
    priors: Vec<(f64, f64)>,
}

impl<'m> LatentCoder<'m> {
    /// The coder of a codec model ([`Vae::is_codec`]).
    pub fn new(model: &'m Vae) -> Result<Self> {
        let priors = model.prior_logistics().ok_or_else(|| {
            Error::Invalid("the model is not a codec (it has no learned prior)".into())
        })?;
        if priors
            .iter()
            .any(|(m, s)| !(m.is_finite() && s.is_finite()))
        {
            return Err(Error::Invalid("the codec's prior is not finite".into()));
        }
        Ok(LatentCoder { model, priors })
    }

    /// Each latent value's entropy model, in order.
    fn models(&self) -> Vec<Prior> {
        let q = DefaultLeakyQuantizer::new(-LATENT_BOUND..=LATENT_BOUND);
        self.priors
            .iter()
            .map(|&(m, s)| q.quantize(Logistic::new(m, s)))
            .collect()
    }

    /// The rounded latents of 8-bit `images`, all images' values in order.
    pub fn latents(&self, images: &[&[u8]]) -> Result<Vec<i32>> {
        let mut shape = vec![0];
        shape.extend(self.model.image_shape());
        let mut out = Vec::with_capacity(images.len() * self.priors.len());
        for chunk in images.chunks(BATCH) {
            shape[0] = chunk.len();
            let x: Vec<f32> = chunk
                .iter()
                .flat_map(|im| im.iter().map(|&b| b as f32 / 255.0))
                .collect();
            let x = Var::constant(Tensor::from_vec(x, &shape)?);
            let z = no_grad(|| self.model.latent_point(&x))?;
            out.extend(z.value().to_vec().iter().map(|&v| v as i32));
        }
        Ok(out)
    }

    /// The 8-bit reconstructions of `latents` (from [`LatentCoder::latents`]
    /// or decoded): what decompression writes.
    pub fn reconstruct(&self, latents: &[i32]) -> Result<Vec<u8>> {
        let dim = self.priors.len();
        let mut out = Vec::with_capacity(latents.len() / dim * self.image_len());
        for chunk in latents.chunks(BATCH * dim) {
            let z: Vec<f32> = chunk.iter().map(|&v| v as f32).collect();
            let z = Var::constant(Tensor::from_vec(z, &[chunk.len() / dim, dim])?);
            let means = no_grad(|| self.model.decode(&z).map(|d| self.model.mean(&d)))?;
            out.extend(means.value().to_vec().iter().map(|&v| level(v)));
        }
        Ok(out)
    }

    fn image_len(&self) -> usize {
        self.model.image_shape().iter().product()
    }

    /// ANS words of `latents` (a whole number of images' worth) and what
    /// each image cost.
    pub fn encode(&self, latents: &[i32]) -> Result<(Vec<u32>, Rate)> {
        let models = self.models();
        let per_image = latents
            .chunks(models.len())
            .map(|image| {
                image
                    .iter()
                    .zip(&models)
                    .map(|(&v, m)| {
                        let p = m.floating_point_probability::<f64>(v);
                        -p.log2()
                    })
                    .sum()
            })
            .collect();
        let mut coder = DefaultAnsCoder::new();
        // A stack: the last image goes on first, so the first comes off first.
        for image in latents.chunks(models.len()).rev() {
            coder
                .encode_symbols_reverse(image.iter().zip(&models))
                .map_err(coding_error)?;
        }
        let total_bits = coder.num_bits();
        let words = coder.into_compressed().map_err(coding_error)?;
        let rate = Rate {
            total_bits,
            per_image,
            initial_bits: 0.0,
        };
        Ok((words, rate))
    }

    /// The latents of `count` images from the words of
    /// [`LatentCoder::encode`]; damaged words fail here or give other
    /// latents (the container's checksum catches those), never a panic.
    pub fn decode(&self, words: Vec<u32>, count: usize) -> Result<Vec<i32>> {
        let models = self.models();
        // Every value costs at least the leak the quantizer gives the other
        // 2046 values, so more images than the words could hold is a damaged
        // count: refused before any decoding work or allocation.
        let leak = (2 * LATENT_BOUND) as f64 / (1u64 << 24) as f64;
        let min_bits = count as f64 * models.len() as f64 * -(1.0 - leak).log2();
        if min_bits > 32.0 * (words.len() as f64 + 2.0) {
            return Err(Error::Corrupt(format!(
                "{count} images cannot be coded in {} words",
                words.len()
            )));
        }
        let mut coder = DefaultAnsCoder::from_compressed(words)
            .map_err(|_| Error::Corrupt("the coded data ends in a zero word".into()))?;
        let mut latents = Vec::with_capacity(count.saturating_mul(models.len()));
        for _ in 0..count {
            for v in coder.decode_symbols(&models) {
                latents.push(v.map_err(coding_error)?);
            }
        }
        if !coder.is_empty() {
            return Err(Error::Corrupt(
                "bits are left over after the last image".into(),
            ));
        }
        Ok(latents)
    }
}

/// The bytes the container's data hash is taken of: the latents,
/// little-endian.
pub fn latent_bytes(latents: &[i32]) -> Vec<u8> {
    latents.iter().flat_map(|v| v.to_le_bytes()).collect()
}
