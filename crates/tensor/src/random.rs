//! Seeded samples: the caller passes the generator, so the same seed gives the same numbers.

use rand::Rng;

use crate::storage::Buffer;
use crate::{Element, Tensor};

impl<T: Element> Tensor<T> {
    /// Samples from U(low, high).
    pub fn rand_uniform<R: Rng + ?Sized>(shape: &[usize], low: T, high: T, rng: &mut R) -> Self {
        let n = crate::budget::alloc_numel(shape);
        let mut buf = Buffer::for_overwrite(n);
        let (lo, width) = (low.as_f64(), (high - low).as_f64());
        for v in buf.iter_mut() {
            *v = T::of(lo + width * rng.random::<f64>());
        }
        Tensor::from_buffer(buf, shape).expect("shape and buffer agree")
    }

    /// Samples from N(mean, std^2), by the Box-Muller transform.
    pub fn randn<R: Rng + ?Sized>(shape: &[usize], mean: T, std: T, rng: &mut R) -> Self {
        let n = crate::budget::alloc_numel(shape);
        let mut buf = Buffer::for_overwrite(n);
        let (m, s) = (mean.as_f64(), std.as_f64());
        for pair in buf.chunks_mut(2) {
            // 1 - u lies in (0, 1], so the log is finite.
            let u1 = 1.0 - rng.random::<f64>();
            let u2 = rng.random::<f64>();
            let r = (-2.0 * u1.ln()).sqrt();
            let theta = std::f64::consts::TAU * u2;
            pair[0] = T::of(m + s * r * theta.cos());
            if let Some(second) = pair.get_mut(1) {
                *second = T::of(m + s * r * theta.sin());
            }
        }
        Tensor::from_buffer(buf, shape).expect("shape and buffer agree")
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn same_seed_same_samples_and_sane_moments() {
        let a = Tensor::<f64>::randn(&[10000], 1.0, 2.0, &mut ChaCha8Rng::seed_from_u64(3));
        let b = Tensor::<f64>::randn(&[10000], 1.0, 2.0, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(a, b);
        let v = a.to_vec();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(
            (mean - 1.0).abs() < 0.1 && (var.sqrt() - 2.0).abs() < 0.1,
            "{mean} {var}"
        );
        let u = Tensor::<f32>::rand_uniform(&[1000], -1.0, 3.0, &mut ChaCha8Rng::seed_from_u64(4));
        assert!(u.to_vec().iter().all(|&x| (-1.0..3.0).contains(&x)));
    }
}
