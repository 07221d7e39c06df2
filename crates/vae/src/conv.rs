use rand::Rng;

use deepgen_autograd::{Element, Var};
use deepgen_nn::{
    Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig, Flatten, Forward, Linear, Module,
    Relu, Sequential, Unflatten,
};

use crate::model::VaeNet;
use crate::{Error, Result};
use deepgen_nn::export::Graph;

/// A convolutional VAE for [c, h, w] images (h and w divisible by
/// 2^stages): each stage halves the size with a 4x4 stride-2 convolution.
///
/// encoder: (Conv k4 s2 p1, ReLU) per width -> Flatten -> Linear(hidden), ReLU;
/// fc_mu, fc_logvar: hidden -> latent;
/// decoder: Linear(latent -> hidden), ReLU -> Linear(-> last width x h' x w'),
/// ReLU -> Unflatten -> (ConvTranspose k4 s2 p1, ReLU) per width in reverse
/// -> ConvTranspose k4 s2 p1 to c channels (Bernoulli logits or Gaussian means).
#[derive(Module)]
pub struct ConvVae<T: Element = f32> {
    pub encoder: Sequential<T>,
    pub fc_mu: Linear<T>,
    pub fc_logvar: Linear<T>,
    pub decoder: Sequential<T>,
}

impl<T: Element> ConvVae<T> {
    /// `widths`: channels of the encoder's stages, e.g. [32, 64] for 28x28
    /// (-> 7x7) and 32x32 (-> 8x8); `outputs_per_pixel` multiplies the
    /// decoder's output channels (2 for a logistic's means and log-scales).
    pub fn new<R: Rng + ?Sized>(
        image_shape: &[usize],
        widths: &[usize],
        hidden: usize,
        latent: usize,
        outputs_per_pixel: usize,
        rng: &mut R,
    ) -> Result<Self> {
        let (c, h, w) = check_stages("conv vae", image_shape, widths)?;
        let scale = 1usize << widths.len();
        let (down, up) = halving();
        let (hs, ws, last) = (h / scale, w / scale, widths[widths.len() - 1]);
        // Saturating: an absurd width then fails the dense layer's budget check.
        let flat = last.saturating_mul(hs * ws);
        let mut encoder = Sequential::new();
        let mut inputs = c;
        for &width in widths {
            encoder = encoder
                .add(Conv2d::new(inputs, width, 4, down, rng)?)
                .add(Relu);
            inputs = width;
        }
        let encoder = encoder
            .add(Flatten::default())
            .add(Linear::new(flat, hidden, true, rng)?)
            .add(Relu);
        let fc_mu = Linear::new(hidden, latent, true, rng)?;
        let fc_logvar = Linear::new(hidden, latent, true, rng)?;
        let mut decoder = Sequential::new()
            .add(Linear::new(latent, hidden, true, rng)?)
            .add(Relu)
            .add(Linear::new(hidden, flat, true, rng)?)
            .add(Relu)
            .add(Unflatten::new(1, &[last, hs, ws]));
        for (i, &width) in widths.iter().enumerate().rev() {
            let outputs = up_channels(widths, i, c * outputs_per_pixel);
            decoder = decoder.add(ConvTranspose2d::new(width, outputs, 4, up, rng)?);
            if i > 0 {
                decoder = decoder.add(Relu);
            }
        }
        Ok(ConvVae {
            encoder,
            fc_mu,
            fc_logvar,
            decoder,
        })
    }
}

/// A 4x4 convolution that halves the size (stride 2, padding 1) and the
/// transposed one that doubles it back.
pub(crate) fn halving() -> (Conv2dConfig, ConvTranspose2dConfig) {
    let down = Conv2dConfig {
        stride: 2,
        padding: 1,
        ..Default::default()
    };
    let up = ConvTranspose2dConfig {
        stride: 2,
        padding: 1,
        ..Default::default()
    };
    (down, up)
}

/// The channels the transposed convolution of stage `i` outputs on the way
/// up: the stage below's width, or at the last the image's outputs.
pub(crate) fn up_channels(widths: &[usize], i: usize, image_outputs: usize) -> usize {
    match i {
        0 => image_outputs,
        _ => widths[i - 1],
    }
}

/// (channels, height, width) of `image_shape` when every stride-2 stage
/// of `widths` halves it exactly.
pub(crate) fn check_stages(
    op: &'static str,
    image_shape: &[usize],
    widths: &[usize],
) -> Result<(usize, usize, usize)> {
    let &[c, h, w] = image_shape else {
        return Err(Error::Invalid {
            op,
            msg: format!("needs [channels, height, width] images, got {image_shape:?}"),
        });
    };
    let scale = 1usize.checked_shl(widths.len() as u32).unwrap_or(0);
    if widths.is_empty() || scale == 0 || h % scale != 0 || w % scale != 0 || widths.contains(&0) {
        return Err(Error::Invalid {
            op,
            msg: format!(
                "{h}x{w} images need sides divisible by 2^{} for widths {widths:?}",
                widths.len()
            ),
        });
    }
    Ok((c, h, w))
}

impl<T: Element> VaeNet<T> for ConvVae<T> {
    fn encode(&self, x: &Var<T>) -> Result<(Var<T>, Var<T>)> {
        let h = self.encoder.forward(x)?;
        Ok((self.fc_mu.forward(&h)?, self.fc_logvar.forward(&h)?))
    }

    fn decode(&self, z: &Var<T>) -> Result<Var<T>> {
        Ok(self.decoder.forward(z)?)
    }

    fn export_encode(&self, g: &mut Graph, x: &str) -> Result<(String, String)> {
        let h = g.scoped("encoder", |g| self.encoder.export(g, x))?;
        let mu = g.scoped("fc_mu", |g| self.fc_mu.export(g, &h))?;
        Ok((mu, g.scoped("fc_logvar", |g| self.fc_logvar.export(g, &h))?))
    }

    fn export_decode(&self, g: &mut Graph, z: &str) -> Result<String> {
        Ok(g.scoped("decoder", |g| self.decoder.export(g, z))?)
    }
}

impl<T: Element> Forward<T> for ConvVae<T> {
    /// The decoder's output through the posterior mean.
    fn forward(&self, x: &Var<T>) -> deepgen_nn::Result<Var<T>> {
        crate::model::forward_through_mean(self, x)
    }
}
