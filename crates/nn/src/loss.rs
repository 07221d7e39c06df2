//! Losses, with PyTorch's formulas and reductions.
//!
//! Each takes the prediction first and the target second, and a
//! [`Reduction`]; the result is a Var to call `backward` on.
//!
//! ```
//! use deepgen_nn::loss::{bce_with_logits, cross_entropy, mse_loss, Reduction};
//! use deepgen_nn::{Tensor, Var};
//!
//! # fn main() -> deepgen_nn::Result<()> {
//! let v = |data: &[f64], shape: &[usize]| -> deepgen_nn::Result<Var<f64>> {
//!     Ok(Var::constant(Tensor::from_vec(data.to_vec(), shape)?))
//! };
//! let pred = Var::parameter(Tensor::from_vec(vec![1.0, 2.0, 4.0], &[3])?);
//! let target = v(&[1.0, 2.0, 1.0], &[3])?;
//! let mse = mse_loss(&pred, &target, Reduction::Mean)?;
//! assert_eq!(mse.item()?, 3.0); // (0 + 0 + 9) / 3
//! mse.backward()?;
//! assert_eq!(pred.grad().unwrap().to_vec(), [0.0, 0.0, 2.0]); // 2 (p - t) / 3
//!
//! // Logits [n, classes] and class indices: uniform logits cost ln(classes).
//! let ce = cross_entropy(&v(&[0.0; 6], &[2, 3])?, &[0, 2], Reduction::Mean)?;
//! assert!((ce.item()? - 3f64.ln()).abs() < 1e-12);
//!
//! // Binary cross entropy on a logit of 0 (p = 1/2) is ln 2 for either target.
//! let bce = bce_with_logits(&v(&[0.0, 0.0], &[2])?, &v(&[0.0, 1.0], &[2])?, None, Reduction::Sum)?;
//! assert!((bce.item()? - 2.0 * 2f64.ln()).abs() < 1e-12);
//! # Ok(())
//! # }
//! ```

use deepgen_kernels as k;

use crate::{Element, Error, Result, Tensor, Var};

/// How a loss folds its per-element values (PyTorch's `reduction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// The mean over all elements.
    #[default]
    Mean,
    /// The sum over all elements.
    Sum,
    /// No reduction: the per-element losses.
    None,
}

impl Reduction {
    pub fn apply<T: Element>(self, v: Var<T>) -> Result<Var<T>> {
        Ok(match self {
            Reduction::Mean => v.mean(&[], false)?,
            Reduction::Sum => v.sum_all()?,
            Reduction::None => v,
        })
    }
}

fn same_shape<T: Element>(op: &'static str, a: &Var<T>, b: &Var<T>) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::Invalid {
            op,
            msg: format!(
                "input {:?} and target {:?} differ in shape",
                a.shape(),
                b.shape()
            ),
        });
    }
    Ok(())
}

/// (input - target)^2
pub fn mse_loss<T: Element>(
    input: &Var<T>,
    target: &Var<T>,
    reduction: Reduction,
) -> Result<Var<T>> {
    same_shape("mse_loss", input, target)?;
    reduction.apply(input.sub(target)?.square())
}

/// |input - target|
pub fn l1_loss<T: Element>(
    input: &Var<T>,
    target: &Var<T>,
    reduction: Reduction,
) -> Result<Var<T>> {
    same_shape("l1_loss", input, target)?;
    reduction.apply(input.sub(target)?.abs())
}

/// Binary cross entropy on probabilities: -(t log p + (1 - t) log(1 - p)),
/// each log clamped at -100 as PyTorch does, so p = 0 or 1 stays finite.
pub fn bce_loss<T: Element>(
    probs: &Var<T>,
    target: &Var<T>,
    reduction: Reduction,
) -> Result<Var<T>> {
    same_shape("bce_loss", probs, target)?;
    let floor = Var::scalar(T::of(-100.0));
    let log_p = probs.log().maximum(&floor)?;
    let log_1mp = probs.one_minus().log().maximum(&floor)?;
    let loss = target
        .mul(&log_p)?
        .add(&target.one_minus().mul(&log_1mp)?)?
        .neg();
    reduction.apply(loss)
}

/// Binary cross entropy on logits, stable for any logit:
/// (1 - t) x + w (log(1 + e^-|x|) + max(-x, 0)), w = 1 + (pos_weight - 1) t.
/// `pos_weight` broadcasts against the class axis (the last).
pub fn bce_with_logits<T: Element>(
    logits: &Var<T>,
    target: &Var<T>,
    pos_weight: Option<&Var<T>>,
    reduction: Reduction,
) -> Result<Var<T>> {
    same_shape("bce_with_logits", logits, target)?;
    // softplus(-x) = log(1 + e^-|x|) + max(-x, 0)
    let sp = logits.neg().softplus();
    let loss = match pos_weight {
        None => target.one_minus().mul(logits)?.add(&sp)?,
        Some(pw) => {
            let w = pw.add_scalar(-T::one()).mul(target)?.add_scalar(T::one());
            target.one_minus().mul(logits)?.add(&w.mul(&sp)?)?
        }
    };
    reduction.apply(loss)
}

fn check_targets(op: &'static str, input: &[usize], targets: &[usize]) -> Result<()> {
    if input.len() != 2 || input[0] != targets.len() {
        return Err(Error::Invalid {
            op,
            msg: format!(
                "input {input:?} needs [n, classes] with n = {} targets",
                targets.len()
            ),
        });
    }
    if let Some(&t) = targets.iter().find(|&&t| t >= input[1]) {
        return Err(Error::Invalid {
            op,
            msg: format!("target {t} is not a class of 0..{}", input[1]),
        });
    }
    Ok(())
}

/// A constant `[targets.len(), classes]` matrix with 1 at `(i, targets[i])`
/// and 0 elsewhere (PyTorch's `F.one_hot`, as floats): the label input of
/// a conditional model. A target outside `0..classes` is an error.
///
/// ```
/// let m = deepgen_nn::loss::one_hot::<f32>(&[2, 0], 3)?;
/// assert_eq!(m.shape(), vec![2, 3]);
/// assert_eq!(m.value().to_vec(), vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
/// # Ok::<(), deepgen_nn::Error>(())
/// ```
pub fn one_hot<T: Element>(targets: &[usize], classes: usize) -> Result<Var<T>> {
    check_targets("one_hot", &[targets.len(), classes], targets)?;
    let mut m = Tensor::zeros(&[targets.len(), classes]);
    let data = m.data_mut();
    for (i, &t) in targets.iter().enumerate() {
        data[i * classes + t] = T::one();
    }
    Ok(Var::constant(m))
}

/// Negative log likelihood of class indices under log-probabilities [n, classes].
pub fn nll_loss<T: Element>(
    log_probs: &Var<T>,
    targets: &[usize],
    reduction: Reduction,
) -> Result<Var<T>> {
    let shape = log_probs.shape();
    check_targets("nll_loss", &shape, targets)?;
    let picked = log_probs
        .mul(&one_hot(targets, shape[1])?)?
        .sum(&[1], false)?;
    reduction.apply(picked.neg())
}

/// log softmax over axis 1 of [n, classes]: x - logsumexp(x).
pub fn log_softmax<T: Element>(logits: &Var<T>, axis: usize) -> Result<Var<T>> {
    Ok(logits.sub(&logits.logsumexp(&[axis], true)?)?)
}

/// Cross entropy of logits [n, classes] and class indices (PyTorch's
/// cross_entropy): nll_loss(log_softmax(logits)).
pub fn cross_entropy<T: Element>(
    logits: &Var<T>,
    targets: &[usize],
    reduction: Reduction,
) -> Result<Var<T>> {
    check_targets("cross_entropy", &logits.shape(), targets)?;
    nll_loss(&log_softmax(logits, 1)?, targets, reduction)
}

/// [`cross_entropy`] that skips the rows whose target is `ignore_index`
/// (PyTorch's `ignore_index`, for padding tokens): they add zero, and the
/// mean is over the other rows (NaN when there are none, as PyTorch's).
pub fn cross_entropy_ignore<T: Element>(
    logits: &Var<T>,
    targets: &[usize],
    ignore_index: usize,
    reduction: Reduction,
) -> Result<Var<T>> {
    // An ignored row may hold any index, even one past the classes.
    let kept: Vec<usize> = targets
        .iter()
        .map(|&t| if t == ignore_index { 0 } else { t })
        .collect();
    let mask: Vec<T> = targets
        .iter()
        .map(|&t| T::of(f64::from(u8::from(t != ignore_index))))
        .collect();
    let count = mask.iter().filter(|&&m| m != T::zero()).count();
    let mask = Var::constant(Tensor::from_vec(mask, &[targets.len()])?);
    let picked = cross_entropy(logits, &kept, Reduction::None)?.mul(&mask)?;
    Ok(match reduction {
        Reduction::Mean => picked.sum_all()? / T::of(count as f64),
        Reduction::Sum => picked.sum_all()?,
        Reduction::None => picked,
    })
}

/// Gaussian negative log likelihood with predicted variances (PyTorch's
/// gaussian_nll_loss): 0.5 (log var + (input - target)^2 / var), plus
/// 0.5 log(2 pi) when `full`. Variances below `eps` are clamped to it in
/// value only (the gradient passes as if unclamped), as PyTorch does.
pub fn gaussian_nll_loss<T: Element>(
    input: &Var<T>,
    target: &Var<T>,
    var: &Var<T>,
    full: bool,
    eps: f64,
    reduction: Reduction,
) -> Result<Var<T>> {
    same_shape("gaussian_nll_loss", input, target)?;
    let eps = T::of(eps);
    let clamped = k::map(&var.value(), move |v| v.max(eps));
    let shift = Var::constant(k::sub(&clamped, &var.value())?);
    let var = var.add(&shift)?;
    let mut loss = var
        .log()
        .add(&input.sub(target)?.square().div(&var)?)?
        .mul_scalar(T::of(0.5));
    if full {
        loss = loss.add_scalar(T::of(0.5 * (2.0 * std::f64::consts::PI).ln()));
    }
    reduction.apply(loss)
}

/// The range the log-scale of [`discretized_logistic_nll`] is clamped to:
/// narrower than e^-7 puts all mass in one bin anyway (PixelCNN++'s floor),
/// and wider than e^3 (20 in pixel units) would make `1 - e^-c` round to 0.
pub const LOGISTIC_LOG_SCALE_RANGE: (f64, f64) = (-7.0, 3.0);

/// -log p(x) of 8-bit pixels under a logistic with `mean` and `log_scale`
/// discretised into the 256 bins of width 1/255 centred on k/255 (Salimans
/// et al., PixelCNN++, with one component); the bins at 0 and 1 take the
/// tails, so the 256 probabilities sum to one. `x` holds k/255 (the
/// loader's `Scale::ZeroOne`); `log_scale` is clamped to
/// [`LOGISTIC_LOG_SCALE_RANGE`].
///
/// With a = (x - mean + d) / s and b = (x - mean - d) / s, d = 1/510, an
/// inner bin's mass is sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b)
/// (1 - e^-(a - b)), computed in logs so that no difference of nearly
/// equal numbers is taken; the bin at 0 keeps only log sigmoid(a), the bin
/// at 1 only log sigmoid(-b).
pub fn discretized_logistic_nll<T: Element>(
    mean: &Var<T>,
    log_scale: &Var<T>,
    x: &Var<T>,
    reduction: Reduction,
) -> Result<Var<T>> {
    same_shape("discretized_logistic_nll", mean, x)?;
    same_shape("discretized_logistic_nll", log_scale, x)?;
    let (lo, hi) = LOGISTIC_LOG_SCALE_RANGE;
    let log_scale = log_scale
        .maximum(&Var::scalar(T::of(lo)))?
        .minimum(&Var::scalar(T::of(hi)))?;
    let inv_scale = log_scale.neg().exp();
    let half_bin = 0.5 / 255.0;
    let centred = x.sub(mean)?;
    let a = centred.add_scalar(T::of(half_bin)).mul(&inv_scale)?;
    let b = centred.add_scalar(T::of(-half_bin)).mul(&inv_scale)?;
    // Which bin each pixel is in: constants of the data.
    let xs = x.value().to_vec();
    let mask = |f: &dyn Fn(f64) -> bool| -> Result<Var<T>> {
        let m = xs
            .iter()
            .map(|v| if f(v.as_f64()) { T::one() } else { T::zero() });
        Ok(Var::constant(Tensor::from_vec(m.collect(), &x.shape())?))
    };
    let not_top = mask(&|v| v < 1.0 - half_bin)?;
    let not_bottom = mask(&|v| v > half_bin)?;
    let inner = not_top.mul(&not_bottom)?;
    let width = inv_scale
        .mul_scalar(T::of(2.0 * half_bin))
        .neg()
        .exp()
        .one_minus()
        .log();
    let log_p = a
        .log_sigmoid()
        .mul(&not_top)?
        .add(&b.neg().log_sigmoid().mul(&not_bottom)?)?
        .add(&width.mul(&inner)?)?;
    reduction.apply(log_p.neg())
}

/// -log p(x) of 8-bit pixels under a mixture of discretised logistics
/// (PixelCNN++'s likelihood): component weights from `logits`, each
/// component as in [`discretized_logistic_nll`]. `logits`, `means` and
/// `log_scales` are `[n, components, ...]`, `x` is `[n, ...]`; the
/// mixture is summed in logs (log-softmax of the logits plus each
/// component's log-probability, then log-sum-exp over components).
pub fn discretized_logistic_mixture_nll<T: Element>(
    logits: &Var<T>,
    means: &Var<T>,
    log_scales: &Var<T>,
    x: &Var<T>,
    reduction: Reduction,
) -> Result<Var<T>> {
    same_shape("discretized_logistic_mixture_nll", logits, means)?;
    let (shape, x_shape) = (means.shape(), x.shape());
    let fits = shape.len() >= 2
        && shape.len() == x_shape.len() + 1
        && shape[0] == x_shape[0]
        && shape[2..] == x_shape[1..];
    if !fits {
        return Err(Error::Invalid {
            op: "discretized_logistic_mixture_nll",
            msg: format!("means {shape:?} must be x {x_shape:?} with a component axis at 1"),
        });
    }
    let xs = x.unsqueeze(1)?.broadcast_to(&shape)?;
    let component_nll = discretized_logistic_nll(means, log_scales, &xs, Reduction::None)?;
    let log_weights = logits.sub(&logits.logsumexp(&[1], true)?)?;
    let log_p = log_weights.sub(&component_nll)?.logsumexp(&[1], false)?;
    reduction.apply(log_p.neg())
}

/// -log of the mass a logistic with `loc` and `log_scale` puts on the unit
/// bin [y - 1/2, y + 1/2]: the rate of a quantised latent under a learned
/// factorised prior, the prior's density convolved with the uniform
/// quantisation noise (Ballé et al., "End-to-end Optimized Image
/// Compression", ICLR 2017). `loc` and `log_scale` broadcast to `y`'s shape
/// (one prior per latent dimension, shared by the batch); `log_scale` is
/// clamped to [`LOGISTIC_LOG_SCALE_RANGE`]. The bin's mass is computed in
/// logs as in [`discretized_logistic_nll`], with no end bins.
pub fn logistic_bin_nll<T: Element>(
    y: &Var<T>,
    loc: &Var<T>,
    log_scale: &Var<T>,
    reduction: Reduction,
) -> Result<Var<T>> {
    let shape = y.shape();
    let (loc, log_scale) = (loc.broadcast_to(&shape)?, log_scale.broadcast_to(&shape)?);
    let (lo, hi) = LOGISTIC_LOG_SCALE_RANGE;
    let log_scale = log_scale
        .maximum(&Var::scalar(T::of(lo)))?
        .minimum(&Var::scalar(T::of(hi)))?;
    let inv_scale = log_scale.neg().exp();
    let centred = y.sub(&loc)?;
    let a = centred.add_scalar(T::of(0.5)).mul(&inv_scale)?;
    let b = centred.add_scalar(T::of(-0.5)).mul(&inv_scale)?;
    let width = inv_scale.neg().exp().one_minus().log();
    let log_p = a.log_sigmoid().add(&b.neg().log_sigmoid())?.add(&width)?;
    reduction.apply(log_p.neg())
}

/// KL(N(mu, exp(logvar)) || N(0, I)) per element: -0.5 (1 + logvar - mu^2 - exp(logvar)).
/// `Reduction::Sum` gives the usual VAE term (Kingma & Welling, appendix B).
pub fn kl_normal_std<T: Element>(
    mu: &Var<T>,
    logvar: &Var<T>,
    reduction: Reduction,
) -> Result<Var<T>> {
    same_shape("kl_normal_std", mu, logvar)?;
    let kl = logvar
        .add_scalar(T::one())
        .sub(&mu.square())?
        .sub(&logvar.exp())?
        .mul_scalar(T::of(-0.5));
    reduction.apply(kl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(data: &[f64], shape: &[usize]) -> Var<f64> {
        Var::constant(Tensor::from_vec(data.to_vec(), shape).unwrap())
    }

    #[test]
    fn cross_entropy_of_uniform_logits_is_log_classes() {
        let l = cross_entropy(&v(&[0.0; 6], &[2, 3]), &[0, 2], Reduction::Mean).unwrap();
        assert!((l.item().unwrap() - 3f64.ln()).abs() < 1e-12);
        assert!(cross_entropy(&v(&[0.0; 6], &[2, 3]), &[0, 3], Reduction::Mean).is_err());
    }

    #[test]
    fn bce_clamps_its_logs_at_minus_100() {
        let l = bce_loss(&v(&[0.0, 1.0], &[2]), &v(&[1.0, 0.0], &[2]), Reduction::Sum).unwrap();
        assert_eq!(l.item().unwrap(), 200.0);
    }

    #[test]
    fn bce_with_logits_matches_bce_of_sigmoid() {
        let x = v(&[-3.0, 0.5, 2.0], &[3]);
        let t = v(&[0.0, 1.0, 0.3], &[3]);
        let a = bce_with_logits(&x, &t, None, Reduction::None)
            .unwrap()
            .value()
            .to_vec();
        let b = bce_loss(&x.sigmoid(), &t, Reduction::None)
            .unwrap()
            .value()
            .to_vec();
        for (a, b) in a.iter().zip(b) {
            assert!((a - b).abs() < 1e-12);
        }
        let big =
            bce_with_logits(&v(&[1000.0], &[1]), &v(&[0.0], &[1]), None, Reduction::Sum).unwrap();
        assert_eq!(big.item().unwrap(), 1000.0);
    }

    #[test]
    fn discretized_logistic_levels_sum_to_one() {
        // All 256 levels of one pixel: their probabilities add up to 1, for
        // a mean inside, at the edge of and outside [0, 1], and the clamp.
        for (mean, log_scale) in [(0.4, -3.0), (0.0, -6.0), (1.3, -2.0), (0.5, -20.0)] {
            let x = v(
                &(0..256).map(|k| k as f64 / 255.0).collect::<Vec<_>>(),
                &[256],
            );
            let nll = discretized_logistic_nll(
                &v(&[mean; 256], &[256]),
                &v(&[log_scale; 256], &[256]),
                &x,
                Reduction::None,
            )
            .unwrap();
            let total: f64 = nll.value().to_vec().iter().map(|l| (-l).exp()).sum();
            assert!((total - 1.0).abs() < 1e-9, "mean {mean}: {total}");
        }
        let bad = discretized_logistic_nll(
            &v(&[0.0], &[1]),
            &v(&[0.0; 2], &[2]),
            &v(&[0.0], &[1]),
            Reduction::Sum,
        );
        assert!(bad.is_err());
    }

    #[test]
    fn a_logistic_mixture_sums_to_one_and_one_component_is_the_logistic() {
        let levels: Vec<f64> = (0..256).map(|k| k as f64 / 255.0).collect();
        let x = v(&levels, &[256]);
        let rep = |a: &[f64]| -> Vec<f64> { (0..256).flat_map(|_| a.to_vec()).collect() };
        let (logits, means, scales) = ([0.3, -1.0, 2.0], [0.1, 0.5, 1.2], [-3.0, -5.0, -1.0]);
        let nll = discretized_logistic_mixture_nll(
            &v(&rep(&logits), &[256, 3]),
            &v(&rep(&means), &[256, 3]),
            &v(&rep(&scales), &[256, 3]),
            &x,
            Reduction::None,
        )
        .unwrap();
        let total: f64 = nll.value().to_vec().iter().map(|l| (-l).exp()).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        let one = discretized_logistic_mixture_nll(
            &v(&[0.7; 256], &[256, 1]),
            &v(&[0.4; 256], &[256, 1]),
            &v(&[-3.0; 256], &[256, 1]),
            &x,
            Reduction::Sum,
        )
        .unwrap();
        let plain = discretized_logistic_nll(
            &v(&[0.4; 256], &[256]),
            &v(&[-3.0; 256], &[256]),
            &x,
            Reduction::Sum,
        )
        .unwrap();
        assert!((one.item().unwrap() - plain.item().unwrap()).abs() < 1e-9);
        let bad = discretized_logistic_mixture_nll(
            &v(&[0.0; 6], &[2, 3]),
            &v(&[0.0; 6], &[2, 3]),
            &v(&[0.0; 6], &[2, 3]),
            &v(&[0.0; 3], &[3]),
            Reduction::Sum,
        );
        assert!(bad.is_err());
    }
}
