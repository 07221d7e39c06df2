//! Gradient clipping: `torch.nn.utils.clip_grad_norm_` and
//! `clip_grad_value_`.
//!
//! Both edit the gradients that `backward` accumulated, in place, between
//! `backward` and `optimizer.step()`. GAN and VAE training use norm clipping
//! to survive the occasional exploding batch without shrinking every step.

use deepgen_autograd::{Element, Tensor, Var};

use crate::optimizer::maximum;
use crate::{Error, Result};

/// Runs `f` on the elements of each parameter's gradient, in place;
/// parameters without a gradient are skipped.
fn for_each_grad<T: Element>(params: &[Var<T>], mut f: impl FnMut(&mut [T])) -> Result<()> {
    for p in params {
        let Some(mut g) = p.grad() else { continue };
        // Release the parameter's reference first, so the write below does
        // not have to copy a shared buffer.
        p.zero_grad();
        f(g.data_mut());
        p.set_grad(Some(g))?;
    }
    Ok(())
}

/// Scales the gradients of `params` together so that their total
/// `norm_type`-norm (the norm of all their elements as one vector) is at most
/// `max_norm`, and returns the total norm from before clipping.
///
/// As in PyTorch: the scale is `max_norm / (total_norm + 1e-6)`, computed and
/// applied in the gradients' element type, and only when it is below 1;
/// `norm_type` is any p > 0 or `f64::INFINITY` (the largest magnitude).
/// Parameters without a gradient are skipped; with none at all the norm is
/// 0. A non-finite total norm is returned, not refused, and then (again as in
/// PyTorch with `error_if_nonfinite=False`) the gradients become NaN — check
/// the returned norm when that matters.
pub fn clip_grad_norm<T: Element>(params: &[Var<T>], max_norm: f64, norm_type: f64) -> Result<f64> {
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(Error::InvalidOption {
            owner: "clip_grad_norm",
            option: "max_norm",
            value: max_norm,
            expected: "must be >= 0",
        });
    }
    if norm_type.is_nan() || norm_type <= 0.0 {
        return Err(Error::InvalidOption {
            owner: "clip_grad_norm",
            option: "norm_type",
            value: norm_type,
            expected: "must be > 0 (or infinity)",
        });
    }
    // Contiguous views (no copy for the usual contiguous gradient).
    let grads: Vec<Tensor<T>> = params
        .iter()
        .filter_map(|p| p.grad().map(|g| g.contiguous()))
        .collect();
    if grads.is_empty() {
        return Ok(0.0);
    }
    let elems = grads
        .iter()
        .flat_map(|g| g.as_slice().expect("a contiguous tensor has a slice"))
        .map(|v| v.as_f64());
    // Accumulate in f64: the norm of millions of f32 elements stays accurate.
    let total = if norm_type == f64::INFINITY {
        elems.fold(0.0, |m, v| maximum(m, v.abs()))
    } else if norm_type == 2.0 {
        elems.map(|v| v * v).sum::<f64>().sqrt()
    } else {
        elems
            .map(|v| v.abs().powf(norm_type))
            .sum::<f64>()
            .powf(1.0 / norm_type)
    };
    drop(grads);
    let total = T::of(total);
    // PyTorch evaluates `max_norm / (total + 1e-6)` as a reciprocal times
    // max_norm (Python's float / tensor); so do we, for the same rounding.
    let coef = T::one() / (total + T::of(1e-6)) * T::of(max_norm);
    // A NaN scale is applied too, as
    // PyTorch's clamp passes NaN through.
    if coef.is_nan() || coef < T::one() {
        for_each_grad(params, |g| g.iter_mut().for_each(|v| *v = *v * coef))?;
    }
    Ok(total.as_f64())
}

/// Clamps every gradient element of `params` to `[-clip, clip]` (NaN stays
/// NaN, as in PyTorch).
pub fn clip_grad_value<T: Element>(params: &[Var<T>], clip: f64) -> Result<()> {
    if clip.is_nan() || clip < 0.0 {
        return Err(Error::InvalidOption {
            owner: "clip_grad_value",
            option: "clip",
            value: clip,
            expected: "must be >= 0",
        });
    }
    let hi = T::of(clip);
    let lo = -hi;
    for_each_grad(params, |g| {
        for v in g {
            if *v < lo {
                *v = lo;
            } else if *v > hi {
                *v = hi;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_grad(grad: &[f64]) -> Var<f64> {
        let p = Var::parameter(Tensor::zeros(&[grad.len()]));
        p.set_grad(Some(
            Tensor::from_vec(grad.to_vec(), &[grad.len()]).unwrap(),
        ))
        .unwrap();
        p
    }

    #[test]
    fn norm_clipping_scales_all_gradients_together() {
        let (a, b) = (with_grad(&[3.0]), with_grad(&[0.0, 4.0]));
        let none = Var::<f64>::parameter(Tensor::zeros(&[2]));
        let params = [a.clone(), none.clone(), b.clone()];
        let total = clip_grad_norm(&params, 1.0, 2.0).unwrap();
        assert_eq!(total, 5.0);
        let coef = 1.0 / (5.0 + 1e-6);
        assert_eq!(a.grad().unwrap().to_vec(), vec![3.0 * coef]);
        assert_eq!(b.grad().unwrap().to_vec(), vec![0.0, 4.0 * coef]);
        assert!(none.grad().is_none());
        // Already small enough: untouched.
        let total = clip_grad_norm(&params, 10.0, f64::INFINITY).unwrap();
        assert!((total - 4.0 * coef).abs() < 1e-15);
        assert_eq!(a.grad().unwrap().to_vec(), vec![3.0 * coef]);
    }

    #[test]
    fn value_clipping_clamps_each_element() {
        let a = with_grad(&[-2.0, 0.5, 3.0, f64::NAN]);
        clip_grad_value(std::slice::from_ref(&a), 1.0).unwrap();
        let g = a.grad().unwrap().to_vec();
        assert_eq!(&g[..3], &[-1.0, 0.5, 1.0]);
        assert!(g[3].is_nan());
    }

    #[test]
    fn bad_clipping_options_are_refused() {
        let a = with_grad(&[1.0]);
        let params = std::slice::from_ref(&a);
        assert!(clip_grad_norm(params, -1.0, 2.0).is_err());
        assert!(clip_grad_norm(params, 1.0, 0.0).is_err());
        assert!(clip_grad_norm(params, 1.0, f64::NAN).is_err());
        assert!(clip_grad_value(params, f64::NAN).is_err());
        assert_eq!(a.grad().unwrap().to_vec(), vec![1.0]);
    }
}
