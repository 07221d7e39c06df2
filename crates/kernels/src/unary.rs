//! Elementwise functions of one tensor.

use crate::{math, par, Element, Tensor};
use deepgen_tensor::storage::Buffer;

/// Applies a slice function chunk by chunk into a fresh tensor, in parallel
/// above the threshold. `f(input, output)` sees equal-length slices.
pub fn map_slices<T: Element>(x: &Tensor<T>, f: impl Fn(&[T], &mut [T]) + Sync) -> Tensor<T> {
    let x = x.contiguous();
    let src = x.as_slice().expect("contiguous");
    let mut out = Buffer::for_overwrite(src.len());
    if par::worth_splitting(src.len()) {
        let len = par::chunk_len(src.len());
        par::for_each_chunk(&mut out, len, |i, o| f(&src[i * len..][..o.len()], o));
    } else {
        f(src, &mut out);
    }
    Tensor::from_buffer(out, x.shape()).expect("same shape")
}

/// Applies `f` to every element. A closure that uses a scalar should own it
/// (`move`): one captured by reference is reloaded on every element, as
/// the output might alias it, and the loop stays scalar (leaky_relu ran
/// 17x slower so).
pub fn map<T: Element>(x: &Tensor<T>, f: impl Fn(T) -> T + Sync) -> Tensor<T> {
    map_slices(x, |s, o| {
        for (o, &v) in o.iter_mut().zip(s) {
            *o = f(v);
        }
    })
}

pub fn neg<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    map(x, |v| -v)
}

pub fn abs<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    map(x, |v| v.abs())
}

/// -1, 0 or 1 by the sign of each element (0 at 0, as PyTorch's sign).
pub fn sign<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    map(x, |v| {
        if v > T::zero() {
            T::one()
        } else if v < T::zero() {
            -T::one()
        } else {
            T::zero()
        }
    })
}

pub fn sqrt<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    map(x, |v| v.sqrt())
}

pub fn square<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    map(x, |v| v * v)
}

pub fn recip<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    map(x, |v| T::one() / v)
}

pub fn relu<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    map(x, |v| if v > T::zero() { v } else { T::zero() })
}

/// x for x > 0, slope * x otherwise.
pub fn leaky_relu<T: Element>(x: &Tensor<T>, slope: T) -> Tensor<T> {
    map(x, move |v| if v > T::zero() { v } else { slope * v })
}

pub fn exp<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    map_slices(x, math::exp)
}

pub fn log<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    map_slices(x, math::log)
}

pub fn sigmoid<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    map_slices(x, math::sigmoid)
}

pub fn tanh<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    map_slices(x, math::tanh)
}

pub fn softplus<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    map_slices(x, math::softplus)
}

pub fn log_sigmoid<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    map_slices(x, math::log_sigmoid)
}

/// x^p for a scalar exponent.
pub fn powf<T: Element>(x: &Tensor<T>, p: T) -> Tensor<T> {
    if p == T::of(2.0) {
        return square(x);
    }
    map(x, move |v| v.powf(p))
}

pub fn add_scalar<T: Element>(x: &Tensor<T>, s: T) -> Tensor<T> {
    map(x, move |v| v + s)
}

pub fn mul_scalar<T: Element>(x: &Tensor<T>, s: T) -> Tensor<T> {
    map(x, move |v| v * s)
}

/// Clamps to [lo, hi].
pub fn clamp<T: Element>(x: &Tensor<T>, lo: T, hi: T) -> Tensor<T> {
    map(x, move |v| v.max(lo).min(hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unary_ops_read_strided_input() {
        let x = Tensor::<f64>::from_vec(vec![-1.0, 2.0, -3.0, 4.0], &[2, 2]).unwrap();
        let t = x.transpose(0, 1).unwrap();
        assert_eq!(relu(&t).to_vec(), vec![0.0, 0.0, 2.0, 4.0]);
        assert_eq!(
            leaky_relu(&t, 0.1).to_vec(),
            vec![-0.1, -0.30000000000000004, 2.0, 4.0]
        );
        assert_eq!(sign(&t).to_vec(), vec![-1.0, -1.0, 1.0, 1.0]);
    }

    #[test]
    fn large_inputs_take_the_parallel_path_with_the_same_result() {
        let n = crate::PAR_THRESHOLD * 3 + 17;
        let x = Tensor::<f32>::from_vec(
            (0..n).map(|i| (i % 200) as f32 * 0.1 - 10.0).collect(),
            &[n],
        )
        .unwrap();
        let got = exp(&x).to_vec();
        let mut want = vec![0.0; n];
        math::exp(x.as_slice().unwrap(), &mut want);
        assert_eq!(got, want);
    }
}
