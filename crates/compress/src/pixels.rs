//! Pixels as symbols, and the decoder's likelihood as one categorical
//! entropy model per pixel.
//!
//! The probabilities are computed in f64 from the network's f32 outputs by
//! the same code when compressing and when decompressing, so both sides
//! build bit-identical models; constriction then quantises them to 24-bit
//! fixed point, keeping every symbol codable ("leaky").

use constriction::stream::model::DefaultContiguousCategoricalEntropyModel as Categorical;
use deepgen_vae::Likelihood;
use rayon::prelude::*;

use crate::{Error, Result};

/// The largest `near` (its bins: 0..=127 and 128..=255 come back as 0 and
/// 255).
pub const MAX_NEAR: u8 = 127;

/// How an image's bytes map to the symbols the likelihood codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pixels {
    /// Binary images whose bytes are 0 and `one` (1 or 255, say), coded
    /// under a Bernoulli decoder.
    Binary { one: u8 },
    /// 8-bit gray levels 0..=255 under a discretised logistic decoder, or
    /// a mixture of `mixture` of them. With `near` > 0 the coding is
    /// near-lossless (JPEG-LS's NEAR, WebP's near-lossless): levels are
    /// coded in bins of 2 `near` + 1 and come back as their bin's centre,
    /// each within `near` of the original.
    Levels { mixture: Option<usize>, near: u8 },
}

impl Pixels {
    /// The pixel coding a model's likelihood implies for `bytes`: a
    /// Bernoulli decoder needs binary data (0 and one other value), a
    /// discretised logistic takes any bytes; a Gaussian decoder has no
    /// probabilities for discrete pixels.
    pub fn for_data(likelihood: Likelihood, bytes: &[u8]) -> Result<Self> {
        match likelihood {
            Likelihood::Bernoulli => {
                let one = bytes.iter().copied().find(|&b| b != 0).unwrap_or(255);
                match bytes.iter().find(|&&b| b != 0 && b != one) {
                    None => Ok(Pixels::Binary { one }),
                    Some(b) => Err(Error::Invalid(format!(
                        "the model's Bernoulli decoder codes binary images, but the \
                         data has the values 0, {one} and {b} (binarise it, or use a \
                         model with a discretised logistic decoder)"
                    ))),
                }
            }
            Likelihood::DiscretizedLogistic => Ok(Pixels::Levels {
                mixture: None,
                near: 0,
            }),
            Likelihood::LogisticMixture { components } => Ok(Pixels::Levels {
                mixture: Some(components),
                near: 0,
            }),
            other => Err(Error::Invalid(format!(
                "a {other:?} decoder has no probabilities for discrete pixels: \
                 lossless coding needs a Bernoulli or discretised logistic decoder"
            ))),
        }
    }

    /// These levels coded near-lossless, each pixel within `near` of the
    /// original (0: lossless); binary pixels are always coded exactly.
    pub fn with_near(self, near: u8) -> Result<Self> {
        if near > MAX_NEAR {
            return Err(Error::Invalid(format!(
                "a largest pixel error of {near}: at most {MAX_NEAR} (two bins)"
            )));
        }
        match self {
            Pixels::Levels { mixture, .. } => Ok(Pixels::Levels { mixture, near }),
            Pixels::Binary { .. } if near == 0 => Ok(self),
            Pixels::Binary { .. } => Err(Error::Invalid(format!(
                "near-lossless coding (a largest error of {near}) needs 8-bit levels; \
                 a Bernoulli decoder codes binary pixels exactly"
            ))),
        }
    }

    /// The largest difference between a pixel and its decoded value.
    pub fn near(self) -> u8 {
        match self {
            Pixels::Binary { .. } => 0,
            Pixels::Levels { near, .. } => near,
        }
    }

    /// Levels per bin: 2 `near` + 1.
    fn bin_width(near: u8) -> usize {
        2 * near as usize + 1
    }

    /// The symbol of one byte: its bin (bins are centred on multiples of
    /// the width, so 0 is coded exactly).
    pub fn symbol(self, byte: u8) -> usize {
        match self {
            Pixels::Binary { one } => usize::from(byte == one),
            Pixels::Levels { near, .. } => (byte as usize + near as usize) / Self::bin_width(near),
        }
    }

    /// The byte of one symbol.
    pub fn byte(self, symbol: usize) -> u8 {
        match self {
            Pixels::Binary { one } => {
                if symbol == 1 {
                    one
                } else {
                    0
                }
            }
            // The last bin's centre may pass 255; 255 is then within
            // `near` of its every level.
            Pixels::Levels { near, .. } => (symbol * Self::bin_width(near)).min(255) as u8,
        }
    }

    /// The byte a pixel decodes to: itself when lossless.
    pub fn decoded(self, byte: u8) -> u8 {
        self.byte(self.symbol(byte))
    }

    /// The value the network sees for a byte, as the trainer's loader
    /// gives it: 0 or 1 for binary images, `byte / 255` in f32 for levels.
    pub fn input(self, byte: u8) -> f32 {
        match self {
            Pixels::Binary { one } => f32::from(u8::from(byte == one)),
            Pixels::Levels { .. } => byte as f32 / 255.0,
        }
    }

    /// One entropy model per pixel from the decoder's output for one image:
    /// `pixels` logits (binary); `pixels` means then `pixels` log-scales (a
    /// logistic); or, for a mixture of k, k x `pixels` mixture logits, then
    /// as many means, then as many log-scales.
    pub fn models(self, decoded: &[f32], pixels: usize) -> Result<Vec<Categorical>> {
        let bad = || Error::Invalid("the model produced non-finite probabilities".into());
        match self {
            Pixels::Binary { .. } => decoded[..pixels]
                .iter()
                .map(|&logit| {
                    let p = 1.0 / (1.0 + (-(logit as f64)).exp());
                    Categorical::from_floating_point_probabilities_fast(&[1.0 - p, p], None)
                        .map_err(|()| bad())
                })
                .collect(),
            Pixels::Levels {
                mixture: None,
                near,
            } => {
                let (means, log_scales) = decoded.split_at(pixels);
                means
                    .par_iter()
                    .zip(&log_scales[..pixels])
                    .map(|(&mean, &log_scale)| {
                        let mut probs = [0.0f64; 256];
                        logistic_levels(mean, log_scale, &mut probs);
                        Categorical::from_floating_point_probabilities_fast(
                            bins(&mut probs, near),
                            None,
                        )
                        .map_err(|()| bad())
                    })
                    .collect()
            }
            Pixels::Levels {
                mixture: Some(components),
                near,
            } => {
                // Blocks of components x pixels: logits, means, log-scales.
                let block = components * pixels;
                let at = |part: usize, k: usize, p: usize| decoded[part * block + k * pixels + p];
                // Pixels in parallel (each its own model, so the result is
                // the same on any thread count): 256 levels x components
                // logistics a pixel is most of the coder's time.
                (0..pixels)
                    .into_par_iter()
                    .map(|p| {
                        let (mut probs, mut one) = ([0.0f64; 256], [0.0f64; 256]);
                        // At most 32 components (the VAE refuses more).
                        let mut weights = [0.0f64; 32];
                        let weights = &mut weights[..components];
                        softmax((0..components).map(|k| at(0, k, p) as f64), weights);
                        for (k, w) in weights.iter().enumerate() {
                            logistic_levels(at(1, k, p), at(2, k, p), &mut one);
                            probs.iter_mut().zip(&one).for_each(|(a, b)| *a += w * b);
                        }
                        Categorical::from_floating_point_probabilities_fast(
                            bins(&mut probs, near),
                            None,
                        )
                        .map_err(|()| bad())
                    })
                    .collect()
            }
        }
    }
}

/// The 256 level probabilities `probs` summed into bins of 2 `near` + 1
/// levels (bin b holds levels b w - near ..= b w + near), in place: the
/// first entries, returned.
fn bins(probs: &mut [f64; 256], near: u8) -> &[f64] {
    if near == 0 {
        return probs;
    }
    let width = Pixels::bin_width(near);
    let count = (255 + near as usize) / width + 1;
    for b in 0..count {
        let lo = (b * width).saturating_sub(near as usize);
        let hi = (b * width + near as usize).min(255);
        probs[b] = probs[lo..=hi].iter().sum();
    }
    &probs[..count]
}

/// The softmax of `logits` into `out`.
fn softmax(logits: impl Iterator<Item = f64> + Clone, out: &mut [f64]) {
    let max = logits.clone().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for (o, l) in out.iter_mut().zip(logits) {
        *o = (l - max).exp();
        sum += *o;
    }
    out.iter_mut().for_each(|o| *o /= sum);
}

/// The 256 level probabilities of a logistic with `mean` and log-scale
/// `log_scale` (both in [0, 1] pixel units) discretised into bins of width
/// 1/255 centred on k/255, the end bins taking the tails: the likelihood
/// `deepgen_nn::loss::discretized_logistic_nll` trains (its log-scale clamp
/// included).
pub fn logistic_levels(mean: f32, log_scale: f32, probs: &mut [f64; 256]) {
    let (lo, hi) = deepgen_nn::loss::LOGISTIC_LOG_SCALE_RANGE;
    let inv_scale = (-(log_scale.clamp(lo as f32, hi as f32) as f64)).exp();
    let cdf = |k: usize| {
        let edge = (k as f64 + 0.5) / 255.0;
        1.0 / (1.0 + (-(edge - mean as f64) * inv_scale).exp())
    };
    let mut below = 0.0;
    for (k, p) in probs.iter_mut().enumerate() {
        let upper = if k == 255 { 1.0 } else { cdf(k) };
        *p = (upper - below).max(0.0);
        below = upper;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bernoulli_data_must_be_binary() {
        let p = Pixels::for_data(Likelihood::Bernoulli, &[0, 255, 0, 255]).unwrap();
        assert_eq!(p, Pixels::Binary { one: 255 });
        assert_eq!((p.symbol(255), p.byte(1), p.input(255)), (1, 255, 1.0));
        let e = Pixels::for_data(Likelihood::Bernoulli, &[0, 1, 7]).unwrap_err();
        assert!(e.to_string().contains("0, 1 and 7"), "{e}");
        let gauss = Likelihood::Gaussian { std: 0.1 };
        assert!(Pixels::for_data(gauss, &[0]).is_err());
    }

    #[test]
    fn near_lossless_bins_cover_the_levels_and_decode_within_near() {
        let mut rng_free = [0.0f64; 256];
        logistic_levels(0.4, -2.5, &mut rng_free);
        for near in 0..=MAX_NEAR {
            let p = Pixels::Levels {
                mixture: None,
                near,
            };
            let mut probs = rng_free;
            let binned = bins(&mut probs, near).to_vec();
            assert!(
                (binned.iter().sum::<f64>() - 1.0).abs() < 1e-12,
                "near {near}"
            );
            for byte in 0..=255u8 {
                let s = p.symbol(byte);
                assert!(s < binned.len(), "near {near}: byte {byte} in bin {s}");
                assert!(
                    p.decoded(byte).abs_diff(byte) <= near,
                    "near {near}, {byte}"
                );
                assert_eq!(p.symbol(p.decoded(byte)), s, "a decoded byte keeps its bin");
            }
        }
    }

    #[test]
    fn logistic_levels_sum_to_one_and_peak_at_the_mean() {
        let mut probs = [0.0; 256];
        logistic_levels(100.0 / 255.0, -4.0, &mut probs);
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let peak = (0..256)
            .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
            .unwrap();
        assert_eq!(peak, 100);
        // A mean far below 0 puts almost everything on level 0.
        logistic_levels(-1.0, -3.0, &mut probs);
        assert!(probs[0] > 0.999);
    }
}
