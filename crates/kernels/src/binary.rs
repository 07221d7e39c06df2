//! Elementwise functions of two tensors, with NumPy broadcasting.

use crate::{par, Element, Result, Tensor};
use deepgen_tensor::layout::for_each_run;
use deepgen_tensor::storage::Buffer;
use deepgen_tensor::{broadcast_shapes, Layout};

/// Applies `f` elementwise to `a` and `b` broadcast against each other.
///
/// Fast paths: equal contiguous shapes zip two slices; otherwise the
/// broadcast layouts are walked run by run, and the inner loop is chosen by
/// the run strides (dense/dense, dense/scalar, scalar/dense, general), which
/// covers scalar, row and column broadcasting without index arithmetic.
pub fn zip_with<T: Element>(
    op: &'static str,
    a: &Tensor<T>,
    b: &Tensor<T>,
    f: impl Fn(T, T) -> T + Sync,
) -> Result<Tensor<T>> {
    let shape = broadcast_shapes(op, a.shape(), b.shape())?;
    let a = a.broadcast_to(&shape)?;
    let b = b.broadcast_to(&shape)?;
    let n = a.numel();
    let mut out = Buffer::for_overwrite(n);
    if let (Some(x), Some(y)) = (a.as_slice(), b.as_slice()) {
        let run = |o: &mut [T], x: &[T], y: &[T]| {
            for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                *o = f(x, y);
            }
        };
        if par::worth_splitting(n) {
            let len = par::chunk_len(n);
            par::for_each_chunk(&mut out, len, |i, o| {
                run(o, &x[i * len..][..o.len()], &y[i * len..][..o.len()])
            });
        } else {
            run(&mut out, x, y);
        }
        return Tensor::from_buffer(out, &shape);
    }
    let walk = |out: &mut [T], a: &Tensor<T>, b: &Tensor<T>| {
        let out_strides = Layout::contiguous(a.shape()).strides().to_vec();
        let (sa, sb) = (a.storage(), b.storage());
        for_each_run(
            a.shape(),
            [a.strides(), b.strides(), &out_strides],
            [a.layout().offset(), b.layout().offset(), 0],
            |[ia, ib, io], len, [ra, rb, _]| {
                let o = &mut out[io..io + len];
                match (ra, rb) {
                    (1, 1) => {
                        for ((o, &x), &y) in
                            o.iter_mut().zip(&sa[ia..ia + len]).zip(&sb[ib..ib + len])
                        {
                            *o = f(x, y);
                        }
                    }
                    (1, 0) => {
                        let y = sb[ib];
                        for (o, &x) in o.iter_mut().zip(&sa[ia..ia + len]) {
                            *o = f(x, y);
                        }
                    }
                    (0, 1) => {
                        let x = sa[ia];
                        for (o, &y) in o.iter_mut().zip(&sb[ib..ib + len]) {
                            *o = f(x, y);
                        }
                    }
                    _ => {
                        for (k, o) in o.iter_mut().enumerate() {
                            *o = f(sa[ia + k * ra], sb[ib + k * rb]);
                        }
                    }
                }
            },
        );
    };
    let rows = shape.first().copied().unwrap_or(1);
    if par::worth_splitting(n) && rows > 1 {
        // Split along the first axis; each task walks its own block.
        let row_len = n / rows;
        let per_task = par::chunk_len(n).div_ceil(row_len).max(1);
        par::for_each_chunk(&mut out, per_task * row_len, |t, o| {
            let (start, len) = (t * per_task, o.len() / row_len);
            // In range by construction: the blocks tile the first axis.
            let (a, b) = (a.narrow(0, start, len), b.narrow(0, start, len));
            walk(o, &a.expect("block in range"), &b.expect("block in range"));
        });
    } else {
        walk(&mut out, &a, &b);
    }
    Tensor::from_buffer(out, &shape)
}

pub fn add<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    zip_with("add", a, b, |x, y| x + y)
}

pub fn sub<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    zip_with("sub", a, b, |x, y| x - y)
}

pub fn mul<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    zip_with("mul", a, b, |x, y| x * y)
}

pub fn div<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    zip_with("div", a, b, |x, y| x / y)
}

pub fn pow<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    zip_with("pow", a, b, |x, y| x.powf(y))
}

pub fn maximum<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    zip_with(
        "maximum",
        a,
        b,
        |x, y| if x >= y || x.is_nan() { x } else { y },
    )
}

pub fn minimum<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    zip_with(
        "minimum",
        a,
        b,
        |x, y| if x <= y || x.is_nan() { x } else { y },
    )
}

/// The share of the gradient of maximum(a, b) that flows to `a`: 1 where
/// a > b, 1/2 on ties (as PyTorch), 0 elsewhere. `minimum` is `max_share(b, a)`.
pub fn max_share<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    zip_with("max_share", a, b, |x, y| {
        if x > y {
            T::one()
        } else if x == y {
            T::of(0.5)
        } else {
            T::zero()
        }
    })
}

/// 1 where a == b, else 0.
pub fn eq_mask<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    zip_with("eq", a, b, |x, y| if x == y { T::one() } else { T::zero() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f64], shape: &[usize]) -> Tensor<f64> {
        Tensor::from_vec(v.to_vec(), shape).unwrap()
    }

    #[test]
    fn row_column_and_scalar_broadcasting() {
        let m = t(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
        assert_eq!(
            add(&m, &t(&[10., 20., 30.], &[3])).unwrap().to_vec(),
            vec![11., 22., 33., 14., 25., 36.]
        );
        assert_eq!(
            mul(&m, &t(&[1., 10.], &[2, 1])).unwrap().to_vec(),
            vec![1., 2., 3., 40., 50., 60.]
        );
        assert_eq!(
            sub(&t(&[1.], &[]), &m).unwrap().to_vec(),
            vec![0., -1., -2., -3., -4., -5.]
        );
    }

    #[test]
    fn mismatched_shapes_name_the_op_and_shapes() {
        let err = add(&Tensor::<f32>::zeros(&[2, 3]), &Tensor::zeros(&[2])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "add: shapes [2, 3] and [2] do not broadcast"
        );
    }

    #[test]
    fn large_broadcast_takes_the_parallel_path() {
        let rows = 300;
        let cols = crate::PAR_THRESHOLD / 100;
        let a =
            Tensor::<f64>::from_vec((0..rows * cols).map(|i| i as f64).collect(), &[rows, cols])
                .unwrap();
        let b = Tensor::<f64>::from_vec((0..rows).map(|i| i as f64).collect(), &[rows, 1]).unwrap();
        let c = sub(&a, &b).unwrap().to_vec();
        for r in [0, 7, rows - 1] {
            assert_eq!(c[r * cols + 5], (r * cols + 5) as f64 - r as f64);
        }
    }
}
