//! The decompressor on arbitrary input: it must return the original or an
//! error, never panic, hang or allocate without bound. Two ways in: the
//! bytes as a whole file (the header checks), and the bytes as the coded
//! words behind a valid header (the ANS decoder, the model and the data
//! checksum), with a small model so that each run is quick.
#![no_main]

use deepgen_compress::{decompress_idx, Container, Pixels};
use deepgen_vae::{Arch, Likelihood, Vae, VaeConfig};
use libfuzzer_sys::fuzz_target;

const MODEL: [u8; 32] = [3; 32];

fn model(likelihood: Likelihood) -> Vae {
    let config = VaeConfig {
        arch: Arch::Mlp,
        image_shape: vec![1, 4, 4],
        hidden: 8,
        latent: 2,
        likelihood,
        ..Default::default()
    };
    Vae::new(config, 0).expect("a small model")
}

thread_local! {
    static MODELS: [Vae; 2] = [
        model(Likelihood::Bernoulli),
        model(Likelihood::DiscretizedLogistic),
    ];
}

fuzz_target!(|data: &[u8]| MODELS.with(|models| run(models, data)));

fn run(models: &[Vae; 2], data: &[u8]) {
    let _ = decompress_idx(&models[0], &MODEL, data);
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    // Up to 8 images of 4x4 behind a valid header, the rest as words.
    let levels = first & 1 == 1;
    let container = Container {
        model_hash: MODEL,
        pixels: if levels {
            Pixels::Levels { mixture: None }
        } else {
            Pixels::Binary { one: 255 }
        },
        bucket_bits: 1 + (first >> 1) % 12,
        dims: vec![1 + (first >> 5) as usize, 4, 4],
        data_hash: [0; 32],
        words: rest
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    };
    let bytes = container.to_bytes().expect("a valid header");
    let _ = decompress_idx(&models[usize::from(levels)], &MODEL, &bytes);
}
