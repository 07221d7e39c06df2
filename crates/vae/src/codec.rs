//! The lossy codec's network: a fully convolutional autoencoder whose
//! latent is a grid of values rounded to integers (Ballé et al., "End-to-end
//! Optimized Image Compression", ICLR 2017), and its quality table.
//!
//! As a VAE it has a uniform posterior of width one around the encoder's
//! output — training adds U(-1/2, 1/2) noise in place of rounding — and a
//! learned factorised prior (a logistic per latent value, held by [`Vae`]),
//! so the KL term of the ELBO is the rate in nats and the decoder's fixed
//! Gaussian likelihood is the distortion, weighted by the quality's lambda.
//!
//! [`Vae`]: crate::Vae

use rand::Rng;

use deepgen_autograd::{Element, Tensor, Var};
use deepgen_nn::{Conv2d, Conv2dConfig, ConvTranspose2d, Forward, Module, Relu, Sequential};

use crate::model::VaeNet;
use crate::{Error, Result};

/// The largest magnitude a coded latent value may take: values are clamped
/// to [-LATENT_BOUND, LATENT_BOUND] before coding (and before decoding, so
/// the reconstruction is what the decompressor computes).
pub const LATENT_BOUND: i32 = 1023;

/// A decoded pixel mean as the 8-bit level a decompressed image stores.
pub fn level(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// CompressAI's lambdas for its MSE models at qualities 1 to 8 (the weight
/// of 255^2 times the mean squared error against bits per pixel).
const LAMBDAS: [f64; 8] = [
    0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800,
];

/// The rate-distortion weight lambda of `quality` (1 = smallest files to 8
/// = best images), as in CompressAI's `bmshj2018_factorized(quality)`.
pub fn quality_lambda(quality: u8) -> Result<f64> {
    match quality {
        1..=8 => Ok(LAMBDAS[quality as usize - 1]),
        q => Err(Error::Invalid {
            op: "codec",
            msg: format!("quality must be 1 to 8, got {q}"),
        }),
    }
}

/// The fixed decoder std whose Gaussian likelihood weighs distortion
/// against rate as `quality`'s lambda does: minimising bits + lambda 255^2
/// MSE per pixel is minimising nats + sum (x - x')^2 / (2 std^2) per image
/// with std^2 = 1 / (2 lambda 255^2 ln 2).
pub fn quality_std(quality: u8) -> Result<f64> {
    let lambda = quality_lambda(quality)?;
    Ok((2.0 * lambda * 255.0 * 255.0 * std::f64::consts::LN_2)
        .sqrt()
        .recip())
}

/// Encoder: (Conv k4 s2 p1, ReLU, Conv k3 p1, ReLU) per width, then Conv
/// k3 p1 to `latent` channels: the latent grid y, [n, latent, h / 2^s,
/// w / 2^s], flattened. Decoder: Conv k3 p1 to the last width, ReLU, then
/// per width in reverse ConvTranspose k4 s2 p1 (and ReLU, Conv k3 p1, ReLU
/// but after the last), the last to the image's channels times the
/// likelihood's outputs. No dense layer, so the latent keeps the image's
/// layout and the rate can spread over it.
#[derive(Module)]
pub struct CodecNet<T: Element = f32> {
    pub encoder: Sequential<T>,
    pub decoder: Sequential<T>,
    /// [latent channels, h', w'].
    #[module(skip)]
    grid: [usize; 3],
}

impl<T: Element> CodecNet<T> {
    pub fn new<R: Rng + ?Sized>(
        image_shape: &[usize],
        widths: &[usize],
        latent: usize,
        outputs_per_pixel: usize,
        rng: &mut R,
    ) -> Result<Self> {
        let (c, h, w) = crate::conv::check_stages("codec", image_shape, widths)?;
        let scale = 1 << widths.len();
        let (down, up) = crate::conv::halving();
        let same = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let last = widths[widths.len() - 1];
        let mut encoder = Sequential::new();
        let mut inputs = c;
        for &width in widths {
            encoder = encoder
                .add(Conv2d::new(inputs, width, 4, down, rng)?)
                .add(Relu)
                .add(Conv2d::new(width, width, 3, same, rng)?)
                .add(Relu);
            inputs = width;
        }
        let encoder = encoder.add(Conv2d::new(last, latent, 3, same, rng)?);
        let mut decoder = Sequential::new()
            .add(Conv2d::new(latent, last, 3, same, rng)?)
            .add(Relu);
        for (i, &width) in widths.iter().enumerate().rev() {
            let outputs = crate::conv::up_channels(widths, i, c * outputs_per_pixel);
            decoder = decoder.add(ConvTranspose2d::new(width, outputs, 4, up, rng)?);
            if i > 0 {
                decoder = decoder
                    .add(Relu)
                    .add(Conv2d::new(outputs, outputs, 3, same, rng)?)
                    .add(Relu);
            }
        }
        Ok(CodecNet {
            encoder,
            decoder,
            grid: [latent, h / scale, w / scale],
        })
    }

    /// Values in the latent grid: channels x rows x columns.
    pub fn latent_dim(&self) -> usize {
        self.grid.iter().product()
    }
}

impl<T: Element> VaeNet<T> for CodecNet<T> {
    /// (y, 0): the posterior is U(y - 1/2, y + 1/2), whose width is fixed,
    /// so the log-variance is a constant placeholder.
    fn encode(&self, x: &Var<T>) -> Result<(Var<T>, Var<T>)> {
        let n = x.shape()[0];
        let y = self.encoder.forward(x)?.reshape(&[n, self.latent_dim()])?;
        let zeros = Var::constant(Tensor::zeros(&[n, self.latent_dim()]));
        Ok((y, zeros))
    }

    fn decode(&self, z: &Var<T>) -> Result<Var<T>> {
        let n = z.shape()[0];
        let [k, h, w] = self.grid;
        Ok(self.decoder.forward(&z.reshape(&[n, k, h, w])?)?)
    }
}

impl<T: Element> Forward<T> for CodecNet<T> {
    /// The decoder's output through the unrounded latent.
    fn forward(&self, x: &Var<T>) -> deepgen_nn::Result<Var<T>> {
        crate::model::forward_through_mean(self, x)
    }
}
