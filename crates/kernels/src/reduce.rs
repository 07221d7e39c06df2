//! Reductions over any set of axes.

use crate::{binary, par, unary, Element, Error, Result, Tensor};
use deepgen_tensor::storage::Buffer;

#[derive(Clone, Copy)]
enum Kind {
    Sum,
    Max,
    Min,
}

impl Kind {
    fn init<T: Element>(self) -> T {
        match self {
            Kind::Sum => T::zero(),
            Kind::Max => T::neg_infinity(),
            Kind::Min => T::infinity(),
        }
    }

    #[inline(always)]
    fn combine<T: Element>(self, a: T, b: T) -> T {
        match self {
            Kind::Sum => a + b,
            // NaN wins, as in PyTorch.
            Kind::Max => {
                if b > a || b.is_nan() {
                    b
                } else {
                    a
                }
            }
            Kind::Min => {
                if b < a || b.is_nan() {
                    b
                } else {
                    a
                }
            }
        }
    }

    fn slice<T: Element>(self, x: &[T]) -> T {
        match self {
            Kind::Sum => sum_slice(x),
            _ => x.iter().fold(self.init(), |a, &b| self.combine(a, b)),
        }
    }
}

/// Sum with 8 independent lanes (so it vectorises) and blocks accumulated in
/// f64 (so long sums keep their precision).
fn sum_slice<T: Element>(x: &[T]) -> T {
    let mut total = 0.0f64;
    for block in x.chunks(1024) {
        let mut lanes = [T::zero(); 8];
        let mut chunks = block.chunks_exact(8);
        for c in &mut chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l = *l + v;
            }
        }
        let tail: T = chunks.remainder().iter().copied().sum();
        total += (lanes.iter().copied().sum::<T>() + tail).as_f64();
    }
    T::of(total)
}

/// Checks and sorts `axes`; an empty list means every axis.
pub fn normalize_axes(op: &'static str, shape: &[usize], axes: &[usize]) -> Result<Vec<usize>> {
    if axes.is_empty() {
        return Ok((0..shape.len()).collect());
    }
    let mut v = axes.to_vec();
    v.sort_unstable();
    v.dedup();
    if let Some(&bad) = v.iter().find(|&&a| a >= shape.len()) {
        return Err(Error::Axis {
            op,
            axis: bad,
            shape: shape.to_vec(),
        });
    }
    Ok(v)
}

/// Shape after reducing `axes` (sorted), with or without the size-1 axes kept.
pub fn reduced_shape(shape: &[usize], axes: &[usize], keepdim: bool) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(i, &n)| match (axes.contains(&i), keepdim) {
            (false, _) => Some(n),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

fn reduce<T: Element>(
    op: &'static str,
    kind: Kind,
    x: &Tensor<T>,
    axes: &[usize],
    keepdim: bool,
) -> Result<Tensor<T>> {
    let axes = normalize_axes(op, x.shape(), axes)?;
    let out_shape = reduced_shape(x.shape(), &axes, keepdim);
    if x.numel() == 0 && !matches!(kind, Kind::Sum) {
        return Err(Error::Invalid {
            op,
            shape: x.shape().to_vec(),
            msg: "cannot reduce an empty tensor".into(),
        });
    }
    // Group the axes into [reduced outer, kept, reduced inner] when the kept
    // axes are adjacent; otherwise move the kept axes to the front first.
    let kept: Vec<usize> = (0..x.rank()).filter(|a| !axes.contains(a)).collect();
    let adjacent = kept.windows(2).all(|w| w[1] == w[0] + 1);
    let (src, r1, k, r2) = if adjacent {
        let shape = x.shape();
        let (first, last) = match (kept.first(), kept.last()) {
            (Some(&f), Some(&l)) => (f, l + 1),
            // No kept axes: the whole tensor is one reduced inner run.
            _ => (0, 0),
        };
        let r1: usize = shape[..first].iter().product();
        let k: usize = shape[first..last].iter().product();
        let r2: usize = shape[last..].iter().product();
        (x.contiguous(), r1, k, r2)
    } else {
        let order: Vec<usize> = kept.iter().chain(&axes).copied().collect();
        let p = x.permute(&order)?.contiguous();
        let k: usize = kept.iter().map(|&a| x.shape()[a]).product();
        (p, 1, k, x.numel() / k.max(1))
    };
    let data = src.as_slice().expect("contiguous");
    let mut out = Buffer::filled(k, kind.init::<T>());
    if r2 > 1 {
        // Each output is a reduction of contiguous runs of length r2.
        let fill = |(j, o): (usize, &mut T)| {
            for i in 0..r1 {
                let start = (i * k + j) * r2;
                *o = kind.combine(*o, kind.slice(&data[start..start + r2]));
            }
        };
        if k > 1 && par::worth_splitting(data.len()) {
            let per_task = k.div_ceil(par::threads() * 4);
            par::for_each_chunk(&mut out, per_task, |t, o| {
                for (j, o) in o.iter_mut().enumerate() {
                    fill((t * per_task + j, o));
                }
            });
        } else if k == 1 && r1 == 1 && par::worth_splitting(data.len()) {
            let len = par::chunk_len(data.len());
            let mut parts = vec![T::zero(); data.len().div_ceil(len)];
            par::for_each_chunk(&mut parts, 1, |i, p| {
                p[0] = kind.slice(&data[i * len..((i + 1) * len).min(data.len())]);
            });
            out[0] = kind.slice(&parts);
        } else {
            out.iter_mut().enumerate().for_each(fill);
        }
    } else {
        // Rows of length k combined elementwise: vectorises along k.
        for row in data.chunks_exact(k.max(1)).take(r1) {
            for (o, &v) in out.iter_mut().zip(row) {
                *o = kind.combine(*o, v);
            }
        }
    }
    Tensor::from_buffer(out, &out_shape)
}

/// Sum over `axes` (all axes when empty).
pub fn sum<T: Element>(x: &Tensor<T>, axes: &[usize], keepdim: bool) -> Result<Tensor<T>> {
    reduce("sum", Kind::Sum, x, axes, keepdim)
}

/// Maximum over `axes` (all axes when empty); NaN propagates.
pub fn max<T: Element>(x: &Tensor<T>, axes: &[usize], keepdim: bool) -> Result<Tensor<T>> {
    reduce("max", Kind::Max, x, axes, keepdim)
}

/// Minimum over `axes` (all axes when empty); NaN propagates.
pub fn min<T: Element>(x: &Tensor<T>, axes: &[usize], keepdim: bool) -> Result<Tensor<T>> {
    reduce("min", Kind::Min, x, axes, keepdim)
}

/// Number of elements that reducing `axes` folds into one.
pub fn reduced_count(shape: &[usize], axes: &[usize]) -> usize {
    axes.iter().map(|&a| shape[a]).product()
}

/// Mean over `axes` (all axes when empty).
pub fn mean<T: Element>(x: &Tensor<T>, axes: &[usize], keepdim: bool) -> Result<Tensor<T>> {
    let axes = normalize_axes("mean", x.shape(), axes)?;
    let n = reduced_count(x.shape(), &axes);
    Ok(unary::mul_scalar(
        &sum(x, &axes, keepdim)?,
        T::one() / T::of(n as f64),
    ))
}

/// Variance over `axes` with Bessel's correction `correction` (1 = unbiased, as PyTorch's default).
pub fn var<T: Element>(
    x: &Tensor<T>,
    axes: &[usize],
    keepdim: bool,
    correction: usize,
) -> Result<Tensor<T>> {
    let axes = normalize_axes("var", x.shape(), axes)?;
    let n = reduced_count(x.shape(), &axes);
    let centred = binary::sub(x, &mean(x, &axes, true)?)?;
    let ss = sum(&unary::square(&centred), &axes, keepdim)?;
    let dof = n.saturating_sub(correction) as f64;
    Ok(unary::mul_scalar(&ss, T::one() / T::of(dof)))
}

/// ln Σ e^x over `axes`, computed stably (max subtracted first).
pub fn logsumexp<T: Element>(x: &Tensor<T>, axes: &[usize], keepdim: bool) -> Result<Tensor<T>> {
    let axes = normalize_axes("logsumexp", x.shape(), axes)?;
    let m = max(x, &axes, true)?;
    // An all -inf (or inf) slice would give inf - inf; shift by 0 there.
    let m = unary::map(&m, |v| if v.is_finite() { v } else { T::zero() });
    let s = sum(&unary::exp(&binary::sub(x, &m)?), &axes, true)?;
    let r = binary::add(&unary::log(&s), &m)?;
    if keepdim {
        Ok(r)
    } else {
        r.reshape(&reduced_shape(x.shape(), &axes, false))
    }
}

/// Index of the largest element along `axis` (the first on ties; NaN counts
/// as largest), for every position of the other axes, in row-major order of
/// the shape with `axis` removed.
pub fn argmax<T: Element>(x: &Tensor<T>, axis: usize) -> Result<Vec<usize>> {
    arg_extreme("argmax", x, axis, Kind::Max)
}

/// Index of the smallest element along `axis`; see [`argmax`].
pub fn argmin<T: Element>(x: &Tensor<T>, axis: usize) -> Result<Vec<usize>> {
    arg_extreme("argmin", x, axis, Kind::Min)
}

fn arg_extreme<T: Element>(
    op: &'static str,
    x: &Tensor<T>,
    axis: usize,
    kind: Kind,
) -> Result<Vec<usize>> {
    if axis >= x.rank() || x.shape()[axis] == 0 {
        return Err(Error::Axis {
            op,
            axis,
            shape: x.shape().to_vec(),
        });
    }
    // Move `axis` last, keeping the other axes in order.
    let order: Vec<usize> = (0..x.rank()).filter(|&a| a != axis).chain([axis]).collect();
    let moved = x.permute(&order)?.contiguous();
    let n = x.shape()[axis];
    let data = moved.as_slice().expect("contiguous");
    Ok(data
        .chunks_exact(n)
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if row[best].is_nan() {
                    break;
                }
                if kind.combine(row[best], v) != row[best] {
                    best = i;
                }
            }
            best
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize]) -> Tensor<f64> {
        let n = shape.iter().product::<usize>();
        Tensor::from_vec((0..n).map(|i| ((i * 7) % 11) as f64).collect(), shape).unwrap()
    }

    #[test]
    fn sum_over_middle_and_split_axes() {
        let x = t(&[2, 3, 4]);
        let v = x.to_vec();
        let s = sum(&x, &[0, 2], false).unwrap();
        for j in 0..3 {
            let want: f64 = (0..2)
                .flat_map(|i| (0..4).map(move |k| (i, k)))
                .map(|(i, k)| v[i * 12 + j * 4 + k])
                .sum();
            assert_eq!(s.get(&[j]).unwrap(), want);
        }
        let s = sum(&x, &[1], true).unwrap();
        assert_eq!(s.shape(), &[2, 1, 4]);
        assert_eq!(
            s.get(&[1, 0, 2]).unwrap(),
            v[12 + 2] + v[12 + 4 + 2] + v[12 + 8 + 2]
        );
        assert!(sum(&x, &[3], false).is_err());
    }

    #[test]
    fn max_argmax_and_var() {
        let x = Tensor::<f64>::from_vec(vec![1., 5., 3., 7., 2., 0.], &[2, 3]).unwrap();
        assert_eq!(max(&x, &[1], false).unwrap().to_vec(), vec![5., 7.]);
        assert_eq!(min(&x, &[0], false).unwrap().to_vec(), vec![1., 2., 0.]);
        assert_eq!(argmax(&x, 1).unwrap(), vec![1, 0]);
        assert_eq!(argmax(&x, 0).unwrap(), vec![1, 0, 0]);
        assert_eq!(argmin(&x, 1).unwrap(), vec![0, 2]);
        let v = var(&x, &[1], false, 1).unwrap().to_vec();
        assert!(
            (v[0] - 4.0).abs() < 1e-12 && (v[1] - 13.0).abs() < 1e-12,
            "{v:?}"
        );
    }

    #[test]
    fn argmax_of_rank3_keeps_other_axes_in_order() {
        let x = t(&[2, 3, 4]);
        let got = argmax(&x, 1).unwrap();
        let v = x.to_vec();
        for i in 0..2 {
            for k in 0..4 {
                let col: Vec<f64> = (0..3).map(|j| v[i * 12 + j * 4 + k]).collect();
                let best = (0..3).fold(0, |b, j| if col[j] > col[b] { j } else { b });
                assert_eq!(got[i * 4 + k], best);
            }
        }
    }

    #[test]
    fn logsumexp_is_stable() {
        let x = Tensor::<f32>::from_vec(vec![1000.0, 1000.0], &[2]).unwrap();
        let r = logsumexp(&x, &[], false).unwrap().item().unwrap();
        assert!((r - (1000.0 + 2f32.ln())).abs() < 1e-3, "{r}");
    }
}
