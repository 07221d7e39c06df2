//! The training objective (ELBO) and the importance-weighted evaluation bound.

use deepgen_autograd::{no_grad, Element, Tensor, Var};
use deepgen_nn::loss::{kl_normal_std, Reduction};
use rand::Rng;

use crate::codec::level;
use crate::{Result, Vae};

/// The negative ELBO of a batch, per example: `loss = reconstruction + beta * kl`.
pub struct Elbo<T: Element> {
    /// Differentiable, averaged over the batch.
    pub loss: Var<T>,
    /// -E_q[log p(x|z)] per example (nats), one sample.
    pub reconstruction: f64,
    /// KL(q(z|x) || N(0, I)) per example (nats); for a codec, the rate
    /// -log p(y + u) of the noisy latent under the learned prior (the KL
    /// from its unit-width uniform posterior, whose entropy is zero).
    pub kl: f64,
}

/// The negative ELBO of images `x` (values in [0, 1] for a Bernoulli
/// decoder) with posterior noise `eps` [n, latent] (from [`Vae::noise`]):
/// z = mu + exp(logvar / 2) eps, or for a codec z = y + eps with eps
/// uniform, whose KL term is the rate (Ballé et al.'s rate + lambda
/// distortion, with lambda in the decoder's std).
pub fn elbo<T: Element>(model: &Vae<T>, x: &Var<T>, eps: &Var<T>, beta: f64) -> Result<Elbo<T>> {
    let n = x.shape()[0] as f64;
    let (mu, logvar) = model.encode(x)?;
    let (z, kl) = if model.is_codec() {
        let z = mu.add(eps)?;
        let rate = model.rate(&z)?;
        (z, rate)
    } else {
        let z = mu.add(&logvar.mul_scalar(T::of(0.5)).exp().mul(eps)?)?;
        (z, kl_normal_std(&mu, &logvar, Reduction::Sum)?)
    };
    let decoded = model.decode(&z)?;
    let rec = model
        .pixel_nll(&decoded, x)?
        .sum(&[], false)?
        .mul_scalar(T::of(1.0 / n));
    let kl = kl.mul_scalar(T::of(1.0 / n));
    let (reconstruction, kl_value) = (rec.item()?.as_f64(), kl.item()?.as_f64());
    let loss = rec.add(&kl.mul_scalar(T::of(beta)))?;
    Ok(Elbo {
        loss,
        reconstruction,
        kl: kl_value,
    })
}

/// The importance-weighted bound with `k` samples (Burda et al.), as a
/// negative log likelihood per example in nats (lower is better; it is at
/// most the negative ELBO and tightens as k grows). Samples are drawn in
/// chunks so memory stays bounded for large k.
pub fn iwae_bound<T: Element, R: Rng + ?Sized>(
    model: &Vae<T>,
    x: &Tensor<T>,
    k: usize,
    rng: &mut R,
) -> Result<Vec<f64>> {
    if model.is_codec() {
        return Err(crate::Error::Invalid {
            op: "iwae_bound",
            msg: "a codec has no likelihood bound to tighten: see codec_rate_distortion".into(),
        });
    }
    no_grad(|| {
        let n = x.shape()[0];
        let latent = model.latent_dim();
        let pixels: usize = model.image_shape().iter().product();
        let xv = Var::constant(x.clone());
        let (mu, logvar) = model.encode(&xv)?;
        let (mu, logvar) = (mu.value().to_vec(), logvar.value().to_vec());
        let xs = x.contiguous().reshape(&[n, pixels])?;
        let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        // Running log-sum-exp of the log weights, per example.
        let (mut m, mut s) = (vec![f64::NEG_INFINITY; n], vec![0.0f64; n]);
        let chunk = k.clamp(1, (1 << 22) / (n * pixels).max(1)).max(1);
        let mut done = 0;
        while done < k {
            let c = chunk.min(k - done);
            let eps: Tensor<T> = Tensor::randn(&[c, n, latent], T::zero(), T::one(), rng);
            let e = eps.to_vec();
            let mut z = vec![T::zero(); c * n * latent];
            let mut log_pz_minus_q = vec![0.0f64; c * n];
            for j in 0..c {
                for i in 0..n {
                    let mut acc = 0.0;
                    for l in 0..latent {
                        let idx = (j * n + i) * latent + l;
                        let (mu_, lv) =
                            (mu[i * latent + l].as_f64(), logvar[i * latent + l].as_f64());
                        let ev = e[idx].as_f64();
                        let zv = mu_ + (0.5 * lv).exp() * ev;
                        z[idx] = T::of(zv);
                        // log N(z; 0, 1) - log N(z; mu, sigma^2)
                        acc += (-0.5 * zv * zv - half_log_2pi)
                            - (-0.5 * ev * ev - 0.5 * lv - half_log_2pi);
                    }
                    log_pz_minus_q[j * n + i] = acc;
                }
            }
            let zt = Var::constant(Tensor::from_vec(z, &[c * n, latent])?);
            // Images as the decoder gives them ([c n, image..]; a logistic
            // decoder has twice the channels), summed per image after.
            let decoded = model.decode(&zt)?;
            let mut image = vec![c * n];
            image.extend(model.image_shape());
            let target = xs.broadcast_to(&[c, n, pixels])?.contiguous();
            let target = Var::constant(target.reshape(&image)?);
            let nll = model
                .pixel_nll(&decoded, &target)?
                .reshape(&[c, n, pixels])?
                .sum(&[2], false)?
                .value()
                .to_vec();
            for j in 0..c {
                for i in 0..n {
                    let lw = -nll[j * n + i].as_f64() + log_pz_minus_q[j * n + i];
                    if lw > m[i] {
                        s[i] = s[i] * (m[i] - lw).exp() + 1.0;
                        m[i] = lw;
                    } else {
                        s[i] += (lw - m[i]).exp();
                    }
                }
            }
            done += c;
        }
        Ok(m.iter()
            .zip(&s)
            .map(|(m, s)| -(m + s.ln() - (k as f64).ln()))
            .collect())
    })
}

/// What a codec does to some images, each coded alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateDistortion {
    /// Bits of the rounded latents under the learned prior, per image (what
    /// an entropy coder approaches; the coded file adds a header and the
    /// coder's few bits of slack).
    pub bits_per_image: f64,
    /// Mean squared error of the 8-bit reconstructions, in levels^2 / 255^2.
    pub mse: f64,
    /// 10 log10(1 / mse), from the mean squared error of the whole set.
    pub psnr: f64,
}

/// The rate and distortion of a codec on images `x` [n, image..] in [0, 1]
/// (8-bit levels): latents rounded as when coding, reconstructions rounded
/// to 8-bit as when decompressing.
pub fn codec_rate_distortion(model: &Vae, x: &Tensor) -> Result<RateDistortion> {
    no_grad(|| {
        let n = x.shape()[0];
        let z = model.latent_point(&Var::constant(x.clone()))?;
        let bits = model.rate(&z)?.item()? as f64 / std::f64::consts::LN_2;
        let recon = model.mean(&model.decode(&z)?).value().to_vec();
        let original = x.to_vec();
        let se: f64 = recon
            .iter()
            .zip(&original)
            .map(|(&r, &o)| {
                let d = level(r) as f64 - level(o) as f64;
                d * d
            })
            .sum();
        let mse = se / (original.len().max(1) as f64 * 255.0 * 255.0);
        Ok(RateDistortion {
            bits_per_image: bits / n.max(1) as f64,
            mse,
            psnr: 10.0 * (1.0 / mse).log10(),
        })
    })
}
