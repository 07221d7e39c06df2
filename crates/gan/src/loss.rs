//! Adversarial losses on discriminator outputs, and the gradient penalties
//! (WGAN-GP, R1), whose gradients are recorded with `create_graph` so the
//! optimizer step differentiates through them.
//!
//! The discriminator outputs logits `r = D(x)` for real and `f = D(G(z))`
//! for generated samples, each `[n]`:
//!
//! | kind | discriminator loss | generator loss |
//! | --- | --- | --- |
//! | non-saturating | softplus(-r) + softplus(f) | softplus(-f) |
//! | minimax | softplus(-r) + softplus(f) | -softplus(f) = log(1 - sigmoid f) |
//! | least squares | ((r - 1)^2 + f^2) / 2 | (f - 1)^2 / 2 |
//! | hinge | relu(1 - r) + relu(1 + f) | -f |
//! | Wasserstein | f - r (+ lambda GP) | -f |
//!
//! each term a mean over the batch. softplus(-r) is the binary cross
//! entropy of r with target 1, softplus(f) that of f with target 0.

use deepgen_autograd::{grad, Element, Tensor, Var};

use crate::net::Discriminator;
use crate::{Error, Result};

/// Which adversarial objective to train with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GanLoss {
    /// Goodfellow et al.'s practical generator loss, -log D(G(z)).
    #[default]
    NonSaturating,
    /// The original minimax game: the generator minimises log(1 - D(G(z))).
    Minimax,
    /// LSGAN (Mao et al.), targets 1 for real and 0 for generated.
    LeastSquares,
    /// Hinge loss (Lim & Ye; SAGAN, BigGAN).
    Hinge,
    /// WGAN critic loss; with a gradient penalty, WGAN-GP (Gulrajani et al.).
    Wasserstein,
}

impl GanLoss {
    /// Whether the outputs are logits of a probability, so that
    /// sigmoid(D(x)) is the "D(x)" that training reports.
    pub fn is_logistic(self) -> bool {
        matches!(self, GanLoss::NonSaturating | GanLoss::Minimax)
    }

    pub fn name(self) -> &'static str {
        match self {
            GanLoss::NonSaturating => "non-saturating",
            GanLoss::Minimax => "minimax",
            GanLoss::LeastSquares => "least-squares",
            GanLoss::Hinge => "hinge",
            GanLoss::Wasserstein => "wasserstein",
        }
    }
}

impl std::str::FromStr for GanLoss {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "non-saturating" | "ns" => GanLoss::NonSaturating,
            "minimax" => GanLoss::Minimax,
            "least-squares" | "lsgan" => GanLoss::LeastSquares,
            "hinge" => GanLoss::Hinge,
            "wasserstein" | "wgan" | "wgan-gp" => GanLoss::Wasserstein,
            other => {
                return Err(Error::Invalid {
                    op: "gan_loss",
                    msg: format!("unknown loss {other:?}; use non-saturating, minimax, least-squares, hinge or wasserstein"),
                })
            }
        })
    }
}

fn mean<T: Element>(v: Var<T>) -> Result<Var<T>> {
    Ok(v.mean(&[], false)?)
}

/// The discriminator's loss from its outputs on real `[n]` and generated `[m]` samples.
pub fn discriminator_loss<T: Element>(
    kind: GanLoss,
    real: &Var<T>,
    fake: &Var<T>,
) -> Result<Var<T>> {
    let half = T::of(0.5);
    Ok(match kind {
        GanLoss::NonSaturating | GanLoss::Minimax => {
            mean(real.neg().softplus())?.add(&mean(fake.softplus())?)?
        }
        GanLoss::LeastSquares => mean(real.add_scalar(-T::one()).square())?
            .add(&mean(fake.square())?)?
            .mul_scalar(half),
        GanLoss::Hinge => mean(real.neg().add_scalar(T::one()).relu())?
            .add(&mean(fake.add_scalar(T::one()).relu())?)?,
        GanLoss::Wasserstein => mean(fake.clone())?.sub(&mean(real.clone())?)?,
    })
}

/// The generator's loss from the discriminator's outputs on its samples `[n]`.
pub fn generator_loss<T: Element>(kind: GanLoss, fake: &Var<T>) -> Result<Var<T>> {
    Ok(match kind {
        GanLoss::NonSaturating => mean(fake.neg().softplus())?,
        GanLoss::Minimax => mean(fake.softplus())?.neg(),
        GanLoss::LeastSquares => mean(fake.add_scalar(-T::one()).square())?.mul_scalar(T::of(0.5)),
        GanLoss::Hinge | GanLoss::Wasserstein => mean(fake.clone())?.neg(),
    })
}

/// Per-sample squared L2 norm of `g` [n, ..]: [n].
fn squared_norms<T: Element>(g: &Var<T>) -> Result<Var<T>> {
    let n = g.shape()[0];
    Ok(g.reshape(&[n, g.numel() / n.max(1)])?
        .square()
        .sum(&[1], false)?)
}

/// WGAN-GP's penalty E[(||grad_x D(x)||_2 - 1)^2] at x = eps real + (1 - eps) fake,
/// with `eps` `[n]` drawn from U(0, 1) by the caller. `real` and `fake` are
/// [n, ..] values (no graph is kept to them). The gradient is recorded, so
/// the result's gradient with respect to D's parameters is exact.
pub fn gradient_penalty<T: Element>(
    d: &dyn Discriminator<T>,
    real: &Tensor<T>,
    fake: &Tensor<T>,
    eps: &[T],
    labels: Option<&[usize]>,
) -> Result<Var<T>> {
    let shape = real.shape().to_vec();
    if fake.shape() != shape || shape.first() != Some(&eps.len()) {
        return Err(Error::Invalid {
            op: "gradient_penalty",
            msg: format!(
                "real {shape:?}, fake {:?} and {} interpolation weights do not fit",
                fake.shape(),
                eps.len()
            ),
        });
    }
    let n = eps.len();
    let mut w_shape = vec![1; shape.len()];
    w_shape[0] = n;
    let w = Tensor::from_vec(eps.to_vec(), &w_shape)?;
    let one_minus = deepgen_kernels::map(&w, |v| T::one() - v);
    let x = deepgen_kernels::add(
        &deepgen_kernels::mul(real, &w)?,
        &deepgen_kernels::mul(fake, &one_minus)?,
    )?;
    let x = Var::parameter(x);
    let out = d.score(&x, labels)?.sum_all()?;
    let g = grad(&[out], std::slice::from_ref(&x), true)?.remove(0);
    // A tiny floor keeps sqrt differentiable where a gradient vanishes.
    let norm = squared_norms(&g)?.add_scalar(T::of(1e-12)).sqrt();
    mean(norm.add_scalar(-T::one()).square())
}

/// R1 (Mescheder et al.): E ||grad_x D(x)||^2 over real samples, without
/// the gamma / 2 factor. `x` must be the leaf (requiring a gradient) that
/// `real_out = D(x)` was computed from, so the discriminator's forward pass
/// on the real batch serves both the loss and the penalty.
pub fn r1_penalty<T: Element>(x: &Var<T>, real_out: &Var<T>) -> Result<Var<T>> {
    let g = grad(&[real_out.sum_all()?], std::slice::from_ref(x), true)?.remove(0);
    mean(squared_norms(&g)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: &[f64]) -> Var<f64> {
        Var::constant(Tensor::from_vec(x.to_vec(), &[x.len()]).unwrap())
    }

    fn sp(x: f64) -> f64 {
        (1.0 + x.exp()).ln()
    }

    #[test]
    fn losses_match_hand_computed_values() {
        let (r, f) = ([1.5, -0.5], [0.25, -2.0]);
        let (rv, fv) = (v(&r), v(&f));
        let avg = |g: &dyn Fn(f64) -> f64, x: &[f64]| x.iter().map(|&x| g(x)).sum::<f64>() / 2.0;
        let cases: [(GanLoss, f64, f64); 5] = [
            (
                GanLoss::NonSaturating,
                avg(&|x| sp(-x), &r) + avg(&sp, &f),
                avg(&|x| sp(-x), &f),
            ),
            (
                GanLoss::Minimax,
                avg(&|x| sp(-x), &r) + avg(&sp, &f),
                avg(&|x| (1.0 - 1.0 / (1.0 + (-x).exp())).ln(), &f),
            ),
            (
                GanLoss::LeastSquares,
                0.5 * (((0.5f64).powi(2) + 1.5f64.powi(2)) / 2.0 + (0.0625 + 4.0) / 2.0),
                0.5 * ((0.75f64).powi(2) + 9.0) / 2.0,
            ),
            (
                GanLoss::Hinge,
                (0.0 + 1.5) / 2.0 + (1.25 + 0.0) / 2.0,
                0.875,
            ),
            (GanLoss::Wasserstein, -0.875 - 0.5, 0.875),
        ];
        for (kind, d, g) in cases {
            let dl = discriminator_loss(kind, &rv, &fv).unwrap().item().unwrap();
            let gl = generator_loss(kind, &fv).unwrap().item().unwrap();
            assert!((dl - d).abs() < 1e-12, "{kind:?} D {dl} vs {d}");
            assert!((gl - g).abs() < 1e-12, "{kind:?} G {gl} vs {g}");
        }
    }

    #[test]
    fn loss_names_parse() {
        for k in [
            GanLoss::NonSaturating,
            GanLoss::Minimax,
            GanLoss::LeastSquares,
            GanLoss::Hinge,
            GanLoss::Wasserstein,
        ] {
            assert_eq!(k.name().parse::<GanLoss>().unwrap(), k);
        }
        assert!("wgan-xx".parse::<GanLoss>().is_err());
    }
}
