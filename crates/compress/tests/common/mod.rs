//! What the compression tests share: synthetic digits as IDX bytes.

use deepgen_data::{synthetic, Binarized, Dataset, Scale};

/// The checkpoint hash the tests' files name.
pub const MODEL_HASH: [u8; 32] = [7; 32];

/// `n` synthetic digits as an IDX file, 8-bit or binarised to {0, 255}.
pub fn idx(n: usize, binary: bool) -> Vec<u8> {
    let digits: std::sync::Arc<dyn Dataset> = std::sync::Arc::new(synthetic::digits(n, 3).unwrap());
    let data: Box<dyn Dataset> = match binary {
        true => Box::new(Binarized::new(digits)),
        false => Box::new(deepgen_data::Subset::new(digits, 0..n).unwrap()),
    };
    let mut values = vec![0.0f32; n * 784];
    let all: Vec<usize> = (0..n).collect();
    // The digits are floats in [0, 1]: as 8-bit levels, k / 255.
    data.gather(&all, Scale::ZeroOne, &mut values).unwrap();
    let mut out = vec![0, 0, 8, 3];
    for d in [n as u32, 28, 28] {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend(values.iter().map(|&v| (v * 255.0).round() as u8));
    out
}

/// A rayon pool of `n` threads.
pub fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
}
