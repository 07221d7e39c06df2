//! Shared helpers for the criterion benchmarks in `benches/` and the
//! side-by-side comparison with PyTorch (`compare.py`).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use deepgen_tensor::{Element, Tensor};

/// The thread count the benchmarks run with: rayon's global pool size, set
/// through `RAYON_NUM_THREADS` by the caller. It labels the benchmark ids so
/// that runs with 1 and 2 threads sit side by side.
pub fn threads_label() -> String {
    format!("t{}", rayon::current_num_threads())
}

/// A seeded N(0, 1) tensor.
pub fn randn<T: Element>(shape: &[usize], seed: u64) -> Tensor<T> {
    Tensor::randn(
        shape,
        T::zero(),
        T::one(),
        &mut ChaCha8Rng::seed_from_u64(seed),
    )
}
