//! A small least-squares problem shared by the integration tests.

use deepgen_autograd::{Element, Tensor, Var};

/// Deterministic values in [-1, 1) (no RNG needed).
fn values<T: Element>(n: usize, seed: usize) -> Vec<T> {
    (0..n)
        .map(|i| T::of((((i * 37 + seed * 101) % 97) as f64) / 48.5 - 1.0))
        .collect()
}

pub struct Problem<T: Element> {
    pub x: Var<T>,
    pub y: Var<T>,
    pub w: Var<T>,
    pub b: Var<T>,
}

impl<T: Element> Problem<T> {
    /// x [6, 3], y [6, 4], parameters w [3, 4] and b [4].
    pub fn new() -> Self {
        let t = |n, seed, shape: &[usize]| Tensor::from_vec(values::<T>(n, seed), shape).unwrap();
        Problem {
            x: Var::constant(t(18, 1, &[6, 3])),
            y: Var::constant(t(24, 2, &[6, 4])),
            w: Var::parameter(t(12, 3, &[3, 4])),
            b: Var::parameter(t(4, 4, &[4])),
        }
    }

    /// The same data with fresh parameters holding these values.
    pub fn with_params(&self, w: Tensor<T>, b: Tensor<T>) -> Self {
        Problem {
            x: self.x.clone(),
            y: self.y.clone(),
            w: Var::parameter(w),
            b: Var::parameter(b),
        }
    }

    pub fn params(&self) -> [Var<T>; 2] {
        [self.w.clone(), self.b.clone()]
    }

    /// ((x @ w + b - y)^2).mean()
    pub fn loss(&self) -> Var<T> {
        self.x
            .matmul(&self.w)
            .and_then(|z| z.add(&self.b))
            .and_then(|z| z.sub(&self.y))
            .and_then(|z| z.square().mean(&[], false))
            .unwrap()
    }

    /// Clears the gradients and accumulates the loss's.
    pub fn backward(&self) -> T {
        self.w.zero_grad();
        self.b.zero_grad();
        let loss = self.loss();
        loss.backward().unwrap();
        loss.item().unwrap()
    }
}
