//! Batch normalisation's full-size passes, fused per channel. With batch
//! statistics the layer's forward takes two passes over its input (the
//! moments, then the affine map) and its backward two (two sums, then the
//! input gradient), where composing elementwise ops and reductions takes
//! about a dozen; the activations are larger than the caches, so passes are
//! what costs.
//!
//! A rectifier after the affine map (ReLU, LeakyReLU: BatchNorm's usual
//! company in a DCGAN) can ride along, [`Rectifier`]: applied in the forward
//! pass, and its mask applied to the gradient inside the backward passes, so
//! it costs no pass of its own either way.
//!
//! Every tensor is read as [n, c, s]: channels on axis 1 and s the product of
//! the axes after it (1 for [n, c]).

use deepgen_tensor::storage::Buffer;

use crate::{par, Element, Error, Result, Tensor};

/// The [n, c, s] view of a shape with channels on axis 1.
fn ncs(op: &'static str, shape: &[usize]) -> Result<[usize; 3]> {
    match shape {
        [n, c, rest @ ..] => Ok([*n, *c, rest.iter().product()]),
        _ => Err(Error::Invalid {
            op,
            shape: shape.to_vec(),
            msg: "expected at least [n, c]".into(),
        }),
    }
}

fn per_channel<T: Element>(op: &'static str, what: &str, v: &[T], c: usize) -> Result<()> {
    if v.len() == c {
        return Ok(());
    }
    Err(Error::Invalid {
        op,
        shape: vec![v.len()],
        msg: format!("{what} needs one value per channel ({c})"),
    })
}

/// Sums `f(a, b)` over two equal slices in 8 lanes (so it vectorises),
/// blocks accumulated in f64.
fn lane_sum<T: Element>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> f64 {
    let mut total = 0.0;
    for (a, b) in a.chunks(1024).zip(b.chunks(1024)) {
        let mut lanes = [T::zero(); 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .fold(T::zero(), |s, (&x, &y)| s + f(x, y));
        for (ca, cb) in ca.zip(cb) {
            for ((l, &x), &y) in lanes.iter_mut().zip(ca).zip(cb) {
                *l = *l + f(x, y);
            }
        }
        total += (lanes.iter().copied().sum::<T>() + tail).as_f64();
    }
    total
}

/// Images per task of [`channel_sums`]: a fixed number, so that the sums
/// do not depend on the thread count.
const SUM_IMAGES: usize = 4;

/// For each channel, `K` sums over its n planes of `f(a_plane, b_plane,
/// channel)`. Tasks take groups of whole images, so that each reads one
/// contiguous run (a channel's planes are c * s apart, which the prefetcher
/// follows badly when planes are small); their per-channel sums are then
/// added in order.
fn channel_sums<T: Element, const K: usize>(
    a: &[T],
    b: &[T],
    [n, c, s]: [usize; 3],
    f: impl Fn(&[T], &[T], usize) -> [f64; K] + Sync,
) -> Vec<[f64; K]> {
    let groups = n.div_ceil(SUM_IMAGES);
    let mut partial = vec![[0.0; K]; groups * c];
    let per_task = if par::worth_splitting(n * c * s) {
        1
    } else {
        groups.max(1)
    };
    par::for_each_chunk(&mut partial, per_task * c, |t, sums| {
        for (j, sums) in sums.chunks_exact_mut(c).enumerate() {
            let first = (t * per_task + j) * SUM_IMAGES;
            for i in first..(first + SUM_IMAGES).min(n) {
                for (ch, acc) in sums.iter_mut().enumerate() {
                    let at = (i * c + ch) * s;
                    let v = f(&a[at..at + s], &b[at..at + s], ch);
                    for (acc, v) in acc.iter_mut().zip(v) {
                        *acc += v;
                    }
                }
            }
        }
    });
    let mut out = vec![[0.0; K]; c];
    for group in partial.chunks_exact(c.max(1)) {
        for (acc, v) in out.iter_mut().zip(group) {
            for (acc, v) in acc.iter_mut().zip(v) {
                *acc += v;
            }
        }
    }
    out
}

/// A fresh [n, c, s] buffer filled plane by plane with `f(a_plane, b_plane,
/// out_plane, channel)`; in parallel over planes.
fn channel_map<T: Element>(
    a: &[T],
    b: &[T],
    [n, c, s]: [usize; 3],
    f: impl Fn(&[T], &[T], &mut [T], usize) + Sync,
) -> Buffer<T> {
    let mut out = Buffer::for_overwrite(n * c * s);
    if out.is_empty() {
        return out;
    }
    let planes = if par::worth_splitting(out.len()) {
        (n * c).div_ceil(par::threads() * 8)
    } else {
        n * c
    };
    par::for_each_chunk(&mut out, planes * s, |t, o| {
        for (j, o) in o.chunks_exact_mut(s).enumerate() {
            let p = t * planes + j;
            f(&a[p * s..][..s], &b[p * s..][..s], o, p % c);
        }
    });
    out
}

/// Per-channel mean and biased variance of x [n, c, ...] over every axis
/// but 1. Two passes, so the variance keeps its precision when the mean is
/// large.
pub fn channel_moments<T: Element>(x: &Tensor<T>) -> Result<(Vec<T>, Vec<T>)> {
    let dims @ [n, _, s] = ncs("batch_norm", x.shape())?;
    let x = x.contiguous();
    let xs = x.as_slice().expect("contiguous");
    let count = (n * s).max(1) as f64;
    let mean: Vec<T> = channel_sums(xs, xs, dims, |a, _, _| [lane_sum(a, a, |v, _| v)])
        .into_iter()
        .map(|[v]| T::of(v / count))
        .collect();
    let var = channel_sums(xs, xs, dims, |a, _, ch| {
        let m = mean[ch];
        [lane_sum(a, a, |v, _| (v - m) * (v - m))]
    })
    .into_iter()
    .map(|[v]| T::of(v / count))
    .collect();
    Ok((mean, var))
}

/// The affine map v = (x - mean) * scale + shift per channel, then
/// optionally a leaky rectifier: v for v > 0, `slope` * v otherwise (slope 0
/// is ReLU).
#[derive(Debug, Clone, Copy)]
pub struct ChannelAffine<'a, T> {
    pub mean: &'a [T],
    pub scale: &'a [T],
    pub shift: &'a [T],
    pub slope: Option<T>,
}

impl<T: Element> ChannelAffine<'_, T> {
    fn check(&self, op: &'static str, c: usize) -> Result<()> {
        for (what, v) in [
            ("mean", self.mean),
            ("scale", self.scale),
            ("shift", self.shift),
        ] {
            per_channel(op, what, v, c)?;
        }
        Ok(())
    }

    /// g times the rectifier's derivative at x, for channel ch with the
    /// rectifier's slope: g, or slope * g where the affine value is not
    /// positive (as PyTorch's backward). Branch-free, so loops vectorise.
    #[inline(always)]
    fn masked(&self, ch: usize, slope: T) -> impl Fn(T, T) -> T {
        let (m, k, b) = (self.mean[ch], self.scale[ch], self.shift[ch]);
        move |g: T, v: T| {
            let below = (v - m) * k + b <= T::zero();
            if below {
                g * slope
            } else {
                g
            }
        }
    }
}

/// The forward of [`ChannelAffine`] over x [n, c, ...].
pub fn channel_affine<T: Element>(x: &Tensor<T>, f: ChannelAffine<'_, T>) -> Result<Tensor<T>> {
    let dims @ [_, c, _] = ncs("batch_norm", x.shape())?;
    f.check("batch_norm", c)?;
    let x = x.contiguous();
    let xs = x.as_slice().expect("contiguous");
    let out = channel_map(xs, xs, dims, |a, _, o, ch| {
        let (m, k, b) = (f.mean[ch], f.scale[ch], f.shift[ch]);
        match f.slope {
            None => {
                for (o, &v) in o.iter_mut().zip(a) {
                    *o = (v - m) * k + b;
                }
            }
            Some(slope) => {
                for (o, &v) in o.iter_mut().zip(a) {
                    let y = (v - m) * k + b;
                    *o = if y > T::zero() { y } else { slope * y };
                }
            }
        }
    });
    Tensor::from_buffer(out, x.shape())
}

/// Per channel, Σ g' and Σ g' (x - mean) over every axis but 1, where g' is
/// g times the rectifier's derivative (g itself without one): the bias and
/// (times 1/std) weight gradients of batch normalisation.
pub fn channel_grad_sums<T: Element>(
    g: &Tensor<T>,
    x: &Tensor<T>,
    f: ChannelAffine<'_, T>,
) -> Result<(Vec<T>, Vec<T>)> {
    let dims @ [_, c, _] = ncs("batch_norm_backward", x.shape())?;
    same_shape(g, x)?;
    f.check("batch_norm_backward", c)?;
    let (g, x) = (g.contiguous(), x.contiguous());
    let (gs, xs) = (
        g.as_slice().expect("contiguous"),
        x.as_slice().expect("contiguous"),
    );
    let sums = channel_sums(gs, xs, dims, |g, x, ch| {
        let m = f.mean[ch];
        match f.slope {
            None => [lane_sum(g, x, |g, _| g), lane_sum(g, x, |g, v| g * (v - m))],
            Some(slope) => {
                let masked = f.masked(ch, slope);
                [
                    lane_sum(g, x, &masked),
                    lane_sum(g, x, |g, v| masked(g, v) * (v - m)),
                ]
            }
        }
    });
    Ok(sums.into_iter().map(|[a, b]| (T::of(a), T::of(b))).unzip())
}

/// g' * a + (x - mean) * b + d per channel, g' as in [`channel_grad_sums`]:
/// batch normalisation's input gradient for the right per-channel a, b, d.
pub fn channel_grad_affine<T: Element>(
    g: &Tensor<T>,
    x: &Tensor<T>,
    f: ChannelAffine<'_, T>,
    [a, b, d]: [&[T]; 3],
) -> Result<Tensor<T>> {
    let dims @ [_, c, _] = ncs("batch_norm_backward", x.shape())?;
    same_shape(g, x)?;
    f.check("batch_norm_backward", c)?;
    for v in [a, b, d] {
        per_channel("batch_norm_backward", "a coefficient", v, c)?;
    }
    let (g, x) = (g.contiguous(), x.contiguous());
    let (gs, xs) = (
        g.as_slice().expect("contiguous"),
        x.as_slice().expect("contiguous"),
    );
    let out = channel_map(gs, xs, dims, |g, x, o, ch| {
        let (m, a, b, d) = (f.mean[ch], a[ch], b[ch], d[ch]);
        match f.slope {
            None => {
                for ((o, &g), &v) in o.iter_mut().zip(g).zip(x) {
                    *o = g * a + (v - m) * b + d;
                }
            }
            Some(slope) => {
                let masked = f.masked(ch, slope);
                for ((o, &g), &v) in o.iter_mut().zip(g).zip(x) {
                    *o = masked(g, v) * a + (v - m) * b + d;
                }
            }
        }
    });
    Tensor::from_buffer(out, x.shape())
}

fn same_shape<T: Element>(g: &Tensor<T>, x: &Tensor<T>) -> Result<()> {
    if g.shape() == x.shape() {
        return Ok(());
    }
    Err(Error::ShapeMismatch {
        op: "batch_norm_backward",
        lhs: g.shape().to_vec(),
        rhs: x.shape().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_over_partial_image_groups_match_a_plain_loop() {
        // 9 images: two whole groups of SUM_IMAGES and a partial one.
        let (n, c, s) = (9, 3, 5);
        let x: Vec<f64> = (0..n * c * s)
            .map(|i| ((i * 37) % 23) as f64 - 11.0)
            .collect();
        let g: Vec<f64> = (0..n * c * s)
            .map(|i| ((i * 11) % 7) as f64 - 3.0)
            .collect();
        let (xt, gt) = (
            Tensor::from_vec(x.clone(), &[n, c, s]).unwrap(),
            Tensor::from_vec(g.clone(), &[n, c, s]).unwrap(),
        );
        let (mean, var) = channel_moments(&xt).unwrap();
        let plain = ChannelAffine {
            mean: &mean,
            scale: &[1.0; 3],
            shift: &[0.0; 3],
            slope: None,
        };
        let (sg, sgx) = channel_grad_sums(&gt, &xt, plain).unwrap();
        for ch in 0..c {
            let at = |i: usize, j: usize| (i * c + ch) * s + j;
            let idx: Vec<usize> = (0..n).flat_map(|i| (0..s).map(move |j| at(i, j))).collect();
            let m = idx.iter().map(|&k| x[k]).sum::<f64>() / (n * s) as f64;
            let v = idx.iter().map(|&k| (x[k] - m).powi(2)).sum::<f64>() / (n * s) as f64;
            let a = idx.iter().map(|&k| g[k]).sum::<f64>();
            let b = idx.iter().map(|&k| g[k] * (x[k] - m)).sum::<f64>();
            assert!((mean[ch] - m).abs() < 1e-12 && (var[ch] - v).abs() < 1e-12);
            assert!((sg[ch] - a).abs() < 1e-9 && (sgx[ch] - b).abs() < 1e-9);
        }
    }

    #[test]
    fn moments_and_sums_match_the_definitions() {
        // x [2, 3, 2]: channel ch holds 10 ch + {0, 1, 5, 6} (plus a large
        // offset, which two passes keep out of the variance).
        let x: Vec<f64> = (0..12)
            .map(|i| {
                let (img, ch, j) = (i / 6, (i / 2) % 3, i % 2);
                1e6 + 10.0 * ch as f64 + (5 * img + j) as f64
            })
            .collect();
        let x = Tensor::from_vec(x, &[2, 3, 2]).unwrap();
        let (mean, var) = channel_moments(&x).unwrap();
        assert_eq!(mean, vec![1e6 + 3.0, 1e6 + 13.0, 1e6 + 23.0]);
        assert_eq!(var, vec![6.5; 3]);
        let g = Tensor::from_vec((0..12).map(|i| i as f64).collect(), &[2, 3, 2]).unwrap();
        let one = [1.0; 3];
        let plain = ChannelAffine {
            mean: &mean,
            scale: &[1.0, 2.0, 0.5],
            shift: &[0.0, 1.0, -1.0],
            slope: None,
        };
        let (sg, sgx) = channel_grad_sums(&g, &x, plain).unwrap();
        // channel 0: g = 0, 1, 6, 7 at x - mean = -3, -2, 2, 3.
        assert_eq!((sg[0], sgx[0]), (14.0, 0.0 - 2.0 + 12.0 + 21.0));
        let y = channel_affine(&x, plain).unwrap();
        assert_eq!(y.get(&[1, 1, 1]).unwrap(), 3.0 * 2.0 + 1.0);
        let dx = channel_grad_affine(&g, &x, plain, [&one, &[0.0; 3], &one]).unwrap();
        assert_eq!(dx.to_vec(), (1..13).map(|i| i as f64).collect::<Vec<_>>());
        // With a rectifier of slope 0.5, channel 0's negative half (x below
        // the mean, shift 0) is halved, forward and backward.
        let rect = ChannelAffine {
            slope: Some(0.5),
            ..plain
        };
        let y = channel_affine(&x, rect).unwrap();
        assert_eq!(y.get(&[0, 0, 0]).unwrap(), -1.5);
        assert_eq!(y.get(&[1, 0, 1]).unwrap(), 3.0);
        let (sg, sgx) = channel_grad_sums(&g, &x, rect).unwrap();
        assert_eq!((sg[0], sgx[0]), (0.5 + 13.0, -1.0 + 33.0));
        let dx = channel_grad_affine(&g, &x, rect, [&one, &[0.0; 3], &[0.0; 3]]).unwrap();
        assert_eq!(dx.get(&[0, 0, 1]).unwrap(), 0.5);
        assert!(channel_moments(&Tensor::<f64>::zeros(&[4])).is_err());
        let short = ChannelAffine {
            mean: &mean[..2],
            ..plain
        };
        assert!(channel_affine(&x, short).is_err());
    }
}
