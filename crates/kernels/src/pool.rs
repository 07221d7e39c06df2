//! max_pool2d and avg_pool2d, with their backward kernels.

use crate::{par, Element, Error, Result, Tensor};
use deepgen_tensor::storage::Buffer;

/// Window, stride and zero padding of a pooling, per spatial axis (y, x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2dOptions {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl Pool2dOptions {
    /// A square window whose stride is its size, as PyTorch's default.
    pub fn new(kernel: usize) -> Self {
        Pool2dOptions {
            kernel: [kernel; 2],
            stride: [kernel; 2],
            padding: [0; 2],
        }
    }

    fn geom(&self, op: &'static str, shape: &[usize]) -> Result<PoolGeom> {
        let bad = |msg: String| Error::Invalid {
            op,
            shape: shape.to_vec(),
            msg,
        };
        let &[n, c, h, w] = shape else {
            return Err(bad("expected a 4-D tensor".into()));
        };
        let mut out = [0; 2];
        for (axis, size) in [h, w].into_iter().enumerate() {
            let (k, s, p) = (self.kernel[axis], self.stride[axis], self.padding[axis]);
            if k == 0 || s == 0 || 2 * p > k {
                return Err(bad(format!(
                    "bad pooling {self:?}: padding must be at most half the kernel"
                )));
            }
            if size + 2 * p < k {
                return Err(bad(format!(
                    "window {k} does not fit size {size} with padding {p}"
                )));
            }
            out[axis] = (size + 2 * p - k) / s + 1;
        }
        Ok(PoolGeom {
            planes: n * c,
            n,
            c,
            h,
            w,
            oh: out[0],
            ow: out[1],
            opts: *self,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct PoolGeom {
    planes: usize,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    opts: Pool2dOptions,
}

impl PoolGeom {
    /// Input rows (or columns) covered by output position `o` along `axis`.
    fn window(&self, axis: usize, o: usize) -> std::ops::Range<usize> {
        let size = if axis == 0 { self.h } else { self.w };
        let start = (o * self.opts.stride[axis]) as isize - self.opts.padding[axis] as isize;
        let end = (start + self.opts.kernel[axis] as isize).min(size as isize);
        start.max(0) as usize..end.max(0) as usize
    }
}

/// Runs `f(plane_index, out_plane)` over output planes, in parallel when
/// `work` (elements touched) is large.
fn per_plane<U: Send>(
    out: &mut [U],
    plane: usize,
    work: usize,
    f: impl Fn(usize, &mut [U]) + Sync,
) {
    if plane == 0 {
        return;
    }
    let planes = out.len() / plane;
    if par::worth_splitting(work) && planes > 1 {
        let per_task = planes.div_ceil(par::threads() * 4);
        par::for_each_chunk(out, per_task * plane, |t, o| {
            for (i, o) in o.chunks_mut(plane).enumerate() {
                f(t * per_task + i, o);
            }
        });
    } else {
        out.chunks_mut(plane).enumerate().for_each(|(p, o)| f(p, o));
    }
}

/// Max over each window: x [n, c, h, w] -> ([n, c, oh, ow], argmax indices),
/// each index the flat position `y * w + x` inside its input plane (as PyTorch).
pub fn max_pool2d<T: Element>(
    x: &Tensor<T>,
    opts: Pool2dOptions,
) -> Result<(Tensor<T>, Vec<usize>)> {
    let g = opts.geom("max_pool2d", x.shape())?;
    let x = x.contiguous();
    let xs = x.as_slice().expect("contiguous");
    let plane_out = g.oh * g.ow;
    let mut idx = vec![0usize; g.planes * plane_out];
    let work = g.planes * plane_out * g.opts.kernel[0] * g.opts.kernel[1];
    per_plane(&mut idx, plane_out, work, |p, ix| {
        let src = &xs[p * g.h * g.w..][..g.h * g.w];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let (mut best, mut at) = (T::neg_infinity(), usize::MAX);
                for iy in g.window(0, oy) {
                    for ix_ in g.window(1, ox) {
                        let v = src[iy * g.w + ix_];
                        if v > best || v.is_nan() || at == usize::MAX {
                            (best, at) = (v, iy * g.w + ix_);
                            if v.is_nan() {
                                break;
                            }
                        }
                    }
                }
                ix[oy * g.ow + ox] = at;
            }
        }
    });
    let out = gather_planes(&x, &idx, &[g.n, g.c, g.oh, g.ow])?;
    Ok((out, idx))
}

/// Adds each element of g [n, c, k...] into the plane position that
/// `indices` names: out `[n, c, plane_hw[0], plane_hw[1]]`. The backward of
/// max_pool2d; its own adjoint is [`gather_planes`].
pub fn scatter_add_planes<T: Element>(
    g: &Tensor<T>,
    indices: &[usize],
    plane_hw: [usize; 2],
) -> Result<Tensor<T>> {
    let shape = g.shape();
    if shape.len() < 2 || indices.len() != g.numel() {
        return Err(Error::Invalid {
            op: "scatter_add_planes",
            shape: shape.to_vec(),
            msg: format!("{} indices for {} elements", indices.len(), g.numel()),
        });
    }
    let (planes, per) = (
        shape[0] * shape[1],
        g.numel() / (shape[0] * shape[1]).max(1),
    );
    let plane = plane_hw[0] * plane_hw[1];
    if let Some(&bad) = indices.iter().find(|&&i| i >= plane) {
        return Err(Error::Index {
            op: "scatter_add_planes",
            index: bad,
            len: plane,
            shape: shape.to_vec(),
        });
    }
    let g = g.contiguous();
    let gs = g.as_slice().expect("contiguous");
    let mut out = Buffer::for_overwrite(planes * plane);
    per_plane(&mut out, plane, g.numel(), |p, o| {
        o.fill(T::zero());
        for (&i, &v) in indices[p * per..(p + 1) * per]
            .iter()
            .zip(&gs[p * per..(p + 1) * per])
        {
            o[i] = o[i] + v;
        }
    });
    Tensor::from_buffer(out, &[shape[0], shape[1], plane_hw[0], plane_hw[1]])
}

/// Reads x [n, c, h, w] at the plane positions `indices` (laid out as
/// `out_shape` = [n, c, ...]): the adjoint of [`scatter_add_planes`].
pub fn gather_planes<T: Element>(
    x: &Tensor<T>,
    indices: &[usize],
    out_shape: &[usize],
) -> Result<Tensor<T>> {
    let numel: usize = out_shape.iter().product();
    let xs4 = x.shape();
    if xs4.len() != 4 || out_shape.len() < 2 || out_shape[..2] != xs4[..2] || indices.len() != numel
    {
        return Err(Error::ShapeMismatch {
            op: "gather_planes",
            lhs: xs4.to_vec(),
            rhs: out_shape.to_vec(),
        });
    }
    let plane = xs4[2] * xs4[3];
    if let Some(&bad) = indices.iter().find(|&&i| i >= plane) {
        return Err(Error::Index {
            op: "gather_planes",
            index: bad,
            len: plane,
            shape: xs4.to_vec(),
        });
    }
    let per = numel / (out_shape[0] * out_shape[1]).max(1);
    let x = x.contiguous();
    let xs = x.as_slice().expect("contiguous");
    let mut out = Buffer::for_overwrite(numel);
    per_plane(&mut out, per, numel, |p, o| {
        let src = &xs[p * plane..][..plane];
        for (o, &i) in o.iter_mut().zip(&indices[p * per..(p + 1) * per]) {
            *o = src[i];
        }
    });
    Tensor::from_buffer(out, out_shape)
}

/// Mean over each window, counting padding as zeros (PyTorch's default
/// count_include_pad = true): x [n, c, h, w] -> [n, c, oh, ow].
pub fn avg_pool2d<T: Element>(x: &Tensor<T>, opts: Pool2dOptions) -> Result<Tensor<T>> {
    let g = opts.geom("avg_pool2d", x.shape())?;
    let x = x.contiguous();
    let xs = x.as_slice().expect("contiguous");
    let scale = T::one() / T::of((opts.kernel[0] * opts.kernel[1]) as f64);
    let mut out = Buffer::for_overwrite(g.planes * g.oh * g.ow);
    per_plane(&mut out, g.oh * g.ow, x.numel(), |p, o| {
        let src = &xs[p * g.h * g.w..][..g.h * g.w];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let mut s = T::zero();
                for iy in g.window(0, oy) {
                    for ix in g.window(1, ox) {
                        s = s + src[iy * g.w + ix];
                    }
                }
                o[oy * g.ow + ox] = s * scale;
            }
        }
    });
    Tensor::from_buffer(out, &[g.n, g.c, g.oh, g.ow])
}

/// The adjoint of [`avg_pool2d`]: spreads gy [n, c, oh, ow] evenly over each
/// window of an input of shape `input_shape`.
pub fn avg_pool2d_backward<T: Element>(
    gy: &Tensor<T>,
    opts: Pool2dOptions,
    input_shape: &[usize],
) -> Result<Tensor<T>> {
    let g = opts.geom("avg_pool2d_backward", input_shape)?;
    gy.expect_shape("avg_pool2d_backward", &[g.n, g.c, g.oh, g.ow])?;
    let gy = gy.contiguous();
    let gs = gy.as_slice().expect("contiguous");
    let scale = T::one() / T::of((opts.kernel[0] * opts.kernel[1]) as f64);
    let mut out = Buffer::for_overwrite(g.planes * g.h * g.w);
    per_plane(
        &mut out,
        g.h * g.w,
        gy.numel() * opts.kernel[0] * opts.kernel[1],
        |p, o| {
            o.fill(T::zero());
            let src = &gs[p * g.oh * g.ow..][..g.oh * g.ow];
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let v = src[oy * g.ow + ox] * scale;
                    for iy in g.window(0, oy) {
                        for ix in g.window(1, ox) {
                            o[iy * g.w + ix] = o[iy * g.w + ix] + v;
                        }
                    }
                }
            }
        },
    );
    Tensor::from_buffer(out, input_shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_pool_picks_window_maxima_and_their_positions() {
        let x = Tensor::<f64>::from_vec(
            vec![
                1., 5., 2., 0., 3., 4., 9., 1., 0., 0., 0., 7., 8., 1., 6., 2.,
            ],
            &[1, 1, 4, 4],
        )
        .unwrap();
        let (y, idx) = max_pool2d(&x, Pool2dOptions::new(2)).unwrap();
        assert_eq!(y.to_vec(), vec![5., 9., 8., 7.]);
        assert_eq!(idx, vec![1, 6, 12, 11]);
        let back = scatter_add_planes(&y, &idx, [4, 4]).unwrap();
        assert_eq!(back.get(&[0, 0, 1, 2]).unwrap(), 9.0);
        assert_eq!(
            gather_planes(&x, &idx, &[1, 1, 2, 2]).unwrap().to_vec(),
            y.to_vec()
        );
    }

    #[test]
    fn avg_pool_counts_padding() {
        let x = Tensor::<f64>::ones(&[1, 1, 2, 2]);
        let o = Pool2dOptions {
            kernel: [2, 2],
            stride: [1, 1],
            padding: [1, 1],
        };
        let y = avg_pool2d(&x, o).unwrap();
        assert_eq!(y.shape(), &[1, 1, 3, 3]);
        assert_eq!(y.get(&[0, 0, 0, 0]).unwrap(), 0.25);
        assert_eq!(y.get(&[0, 0, 1, 1]).unwrap(), 1.0);
        assert!(avg_pool2d(
            &x,
            Pool2dOptions {
                padding: [2, 2],
                ..o
            }
        )
        .is_err());
    }
}
