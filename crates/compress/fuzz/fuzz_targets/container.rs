//! The decompressor on arbitrary input: it must return the original or an
//! error, never panic, hang or allocate without bound. Two ways in: the
//! bytes as a whole file (the header checks), and the bytes as the coded
//! words behind a valid header (the ANS decoder, the model and the data
//! checksum), with small models so that each run is quick: two lossless
//! VAEs and a lossy codec.
#![no_main]

use deepgen_compress::{decompress_idx, Coding, Container, Pixels};
use deepgen_vae::{Arch, Likelihood, Vae, VaeConfig};
use libfuzzer_sys::fuzz_target;

const MODEL: [u8; 32] = [3; 32];

fn model(arch: Arch, likelihood: Likelihood) -> Vae {
    let config = VaeConfig {
        arch,
        image_shape: vec![1, 4, 4],
        hidden: 8,
        latent: 2,
        widths: vec![2],
        likelihood,
        ..Default::default()
    };
    Vae::new(config, 0).expect("a small model")
}

thread_local! {
    static MODELS: [Vae; 3] = [
        model(Arch::Mlp, Likelihood::Bernoulli),
        model(Arch::Mlp, Likelihood::DiscretizedLogistic),
        model(Arch::Codec, Likelihood::Gaussian { std: 0.03 }),
    ];
}

fuzz_target!(|data: &[u8]| MODELS.with(|models| run(models, data)));

fn run(models: &[Vae; 3], data: &[u8]) {
    let _ = decompress_idx(&models[0], &MODEL, data);
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    // Up to 8 images of 4x4 behind a valid header, the rest as words:
    // binary pixels, 8-bit levels (both bits-back; lossless or within 2)
    // or a codec's latents.
    let which = [0, 1, 2, 1][usize::from(first & 3)];
    let near = if first & 3 == 3 { 2 } else { 0 };
    let bucket_bits = 1 + (first >> 2) % 8;
    let coding = match which {
        0 => Coding::BitsBack {
            pixels: Pixels::Binary { one: 255 },
            bucket_bits,
        },
        1 => Coding::BitsBack {
            pixels: Pixels::Levels {
                mixture: None,
                near,
            },
            bucket_bits,
        },
        _ => Coding::Latents,
    };
    let count = 1 + (first >> 5) as usize;
    // Some headers carry a folder's file names.
    let names = match first & 0x10 {
        0 => Vec::new(),
        _ => (0..count).map(|i| format!("{i}.png")).collect(),
    };
    let container = Container {
        model_hash: MODEL,
        coding,
        dims: vec![count, 4, 4],
        names,
        data_hash: [0; 32],
        words: rest
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    };
    let bytes = container.to_bytes().expect("a valid header");
    let _ = decompress_idx(&models[which], &MODEL, &bytes);
}
