//! Shape kernels that autograd needs as the adjoints of views:
//! sum_to (of broadcast_to), pad_axis (of narrow), index_add (of index_select).

use deepgen_tensor::broadcast_shapes;
use deepgen_tensor::storage::Buffer;

use crate::{reduce, Element, Error, Result, Tensor};

/// Sums `x` down to `shape`, which must broadcast to `x`'s shape: the adjoint of broadcast_to.
pub fn sum_to<T: Element>(x: &Tensor<T>, shape: &[usize]) -> Result<Tensor<T>> {
    if x.shape() == shape {
        return Ok(x.clone());
    }
    let err = || Error::Broadcast {
        op: "sum_to",
        lhs: x.shape().to_vec(),
        rhs: shape.to_vec(),
    };
    if shape.len() > x.rank() || broadcast_shapes("sum_to", shape, x.shape())? != x.shape() {
        return Err(err());
    }
    let lead = x.rank() - shape.len();
    let axes: Vec<usize> = (0..x.rank())
        .filter(|&a| a < lead || (shape[a - lead] == 1 && x.shape()[a] != 1))
        .collect();
    reduce::sum(x, &axes, true)?.reshape(shape)
}

/// Zero padding along `axis`: `before` zeros, the tensor, `after` zeros. The adjoint of narrow.
pub fn pad_axis<T: Element>(
    x: &Tensor<T>,
    axis: usize,
    before: usize,
    after: usize,
) -> Result<Tensor<T>> {
    if axis >= x.rank() {
        return Err(Error::Axis {
            op: "pad_axis",
            axis,
            shape: x.shape().to_vec(),
        });
    }
    let mut shape = x.shape().to_vec();
    let n = shape[axis];
    shape[axis] = before + n + after;
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let x = x.contiguous();
    let src = x.as_slice().expect("contiguous");
    let mut out = Buffer::for_overwrite(shape.iter().product());
    let (full, part) = (shape[axis] * inner, n * inner);
    if full > 0 {
        for (o, dst) in out.chunks_exact_mut(full).enumerate() {
            dst[..before * inner].fill(T::zero());
            dst[before * inner..before * inner + part]
                .copy_from_slice(&src[o * part..(o + 1) * part]);
            dst[before * inner + part..].fill(T::zero());
        }
    }
    debug_assert_eq!(out.len(), outer * full);
    Tensor::from_buffer(out, &shape)
}

/// out = zeros with `len` along `axis`; `out[.., indices[j], ..] += x[.., j, ..]`.
/// The adjoint of index_select.
pub fn index_add<T: Element>(
    x: &Tensor<T>,
    axis: usize,
    indices: &[usize],
    len: usize,
) -> Result<Tensor<T>> {
    if axis >= x.rank() || x.shape()[axis] != indices.len() {
        return Err(Error::Invalid {
            op: "index_add",
            shape: x.shape().to_vec(),
            msg: format!("{} indices along axis {axis}", indices.len()),
        });
    }
    if let Some(&bad) = indices.iter().find(|&&i| i >= len) {
        return Err(Error::Index {
            op: "index_add",
            index: bad,
            len,
            shape: x.shape().to_vec(),
        });
    }
    let mut shape = x.shape().to_vec();
    shape[axis] = len;
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let x = x.contiguous();
    let src = x.as_slice().expect("contiguous");
    let mut out = Buffer::filled(outer * len * inner, T::zero());
    for o in 0..outer {
        for (j, &i) in indices.iter().enumerate() {
            let s = &src[(o * indices.len() + j) * inner..][..inner];
            let d = &mut out[(o * len + i) * inner..][..inner];
            for (d, &v) in d.iter_mut().zip(s) {
                *d = *d + v;
            }
        }
    }
    Tensor::from_buffer(out, &shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_to_undoes_broadcasting() {
        let x = Tensor::<f64>::ones(&[2, 3, 4]);
        assert_eq!(sum_to(&x, &[3, 1]).unwrap().to_vec(), vec![8.0; 3]);
        assert_eq!(sum_to(&x, &[]).unwrap().item().unwrap(), 24.0);
        assert!(sum_to(&x, &[2, 4]).is_err());
    }

    #[test]
    fn pad_and_index_add() {
        let x = Tensor::<f64>::from_vec(vec![1., 2., 3., 4.], &[2, 2]).unwrap();
        assert_eq!(
            pad_axis(&x, 1, 1, 0).unwrap().to_vec(),
            vec![0., 1., 2., 0., 3., 4.]
        );
        let a = index_add(&x, 0, &[1, 1], 3).unwrap();
        assert_eq!(a.to_vec(), vec![0., 0., 4., 6., 0., 0.]);
        assert!(index_add(&x, 0, &[0, 3], 3).is_err());
    }
}
