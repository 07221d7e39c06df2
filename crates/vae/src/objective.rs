//! The training objective (ELBO) and the importance-weighted evaluation bound.

use deepgen_autograd::{no_grad, Element, Tensor, Var};
use deepgen_nn::loss::{kl_normal_std, Reduction};
use rand::Rng;

use crate::{Result, Vae};

/// The negative ELBO of a batch, per example: `loss = reconstruction + beta * kl`.
pub struct Elbo<T: Element> {
    /// Differentiable, averaged over the batch.
    pub loss: Var<T>,
    /// -E_q[log p(x|z)] per example (nats), one sample.
    pub reconstruction: f64,
    /// KL(q(z|x) || N(0, I)) per example (nats).
    pub kl: f64,
}

/// The negative ELBO of images `x` (values in [0, 1] for a Bernoulli
/// decoder) with reparameterisation noise `eps` [n, latent]:
/// z = mu + exp(logvar / 2) eps.
pub fn elbo<T: Element>(model: &Vae<T>, x: &Var<T>, eps: &Var<T>, beta: f64) -> Result<Elbo<T>> {
    let n = x.shape()[0] as f64;
    let (mu, logvar) = model.encode(x)?;
    let z = mu.add(&logvar.mul_scalar(T::of(0.5)).exp().mul(eps)?)?;
    let decoded = model.decode(&z)?;
    let rec = model
        .pixel_nll(&decoded, x)?
        .sum(&[], false)?
        .mul_scalar(T::of(1.0 / n));
    let kl = kl_normal_std(&mu, &logvar, Reduction::Sum)?.mul_scalar(T::of(1.0 / n));
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
