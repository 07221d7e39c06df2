//! The lossy codec's files: the round trip gives the codec's own
//! reconstruction, the size is its prior's information, and damaged or
//! mismatched files are errors. On synthetic digits with untrained codecs
//! (what is tested holds whatever the weights).

use std::path::Path;

use deepgen_autograd::Tensor;
use deepgen_compress::{compress_idx, decompress_idx, Coding, Container, Error, LatentCoder};
use deepgen_vae::codec::{level, quality_std};
use deepgen_vae::{codec_rate_distortion, generate, Arch, Likelihood, Vae, VaeConfig};

mod common;
use common::{idx, pool, MODEL_HASH};

fn codec(seed: u64) -> Vae {
    let config = VaeConfig {
        arch: Arch::Codec,
        image_shape: vec![1, 28, 28],
        latent: 4,
        widths: vec![8, 8],
        likelihood: Likelihood::Gaussian {
            std: quality_std(4).unwrap(),
        },
        ..Default::default()
    };
    let model = Vae::new(config, seed).unwrap();
    // A prior narrower than its N(0, 1)-like start, as training makes it.
    let (_, log_scale) = model.prior().unwrap();
    log_scale
        .set_value(Tensor::full(&[model.latent_dim()], -1.0))
        .unwrap();
    model
}

/// The images of an IDX file as floats k / 255, [n, 1, 28, 28].
fn images(file: &[u8]) -> Tensor {
    let n = (file.len() - 16) / 784;
    let values = file[16..].iter().map(|&b| b as f32 / 255.0).collect();
    Tensor::from_vec(values, &[n, 1, 28, 28]).unwrap()
}

#[test]
fn the_round_trip_gives_the_codecs_reconstruction() {
    let m = codec(0);
    let original = idx(12, false);
    let (file, rate) = compress_idx(&m, MODEL_HASH, Path::new("t.idx"), &original, 8).unwrap();
    assert_eq!(rate.per_image.len(), 12);
    let back = decompress_idx(&m, &MODEL_HASH, &file).unwrap();
    assert_eq!(back.len(), original.len());
    assert_eq!(
        back[..16],
        original[..16],
        "the IDX header is the original's"
    );
    // What `deepgen reconstruct` computes, as 8-bit levels.
    let expected: Vec<u8> = generate::reconstruct(&m, &images(&original))
        .unwrap()
        .to_vec()
        .iter()
        .map(|&v| level(v))
        .collect();
    assert!(
        back[16..] == expected[..],
        "decompressed != the reconstruction"
    );
    assert!(back != original, "an untrained codec cannot be lossless");
}

#[test]
fn the_file_costs_the_priors_information_in_the_latents() {
    let m = codec(1);
    let original = idx(30, false);
    let (file, rate) = compress_idx(&m, MODEL_HASH, Path::new("t.idx"), &original, 8).unwrap();
    let model_bits = codec_rate_distortion(&m, &images(&original))
        .unwrap()
        .bits_per_image
        * 30.0;
    let coded: f64 = rate.per_image.iter().sum();
    // The entropy coder's quantised probabilities cost a little; the file
    // adds the 54-byte header and at most a word of slack.
    assert!(
        (coded - model_bits).abs() < 0.01 * model_bits,
        "{coded} vs {model_bits}"
    );
    let words_bits = 8.0 * (file.len() - 54) as f64;
    assert!(
        words_bits >= coded - 1.0 && words_bits < coded + 64.0,
        "{words_bits} vs {coded}"
    );
}

#[test]
fn another_model_or_another_coding_is_refused() {
    let m = codec(0);
    let (file, _) = compress_idx(&m, MODEL_HASH, Path::new("t.idx"), &idx(3, false), 8).unwrap();
    assert!(matches!(
        decompress_idx(&m, &[9; 32], &file),
        Err(Error::WrongModel { .. })
    ));
    // A lossless VAE given a codec's file under the same name, and back.
    let vae = Vae::new(
        VaeConfig {
            hidden: 16,
            latent: 2,
            likelihood: Likelihood::DiscretizedLogistic,
            ..Default::default()
        },
        0,
    )
    .unwrap();
    let msg = decompress_idx(&vae, &MODEL_HASH, &file)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("lossless VAE"), "{msg}");
    let (lossless, _) =
        compress_idx(&vae, MODEL_HASH, Path::new("t.idx"), &idx(2, false), 8).unwrap();
    let msg = decompress_idx(&m, &MODEL_HASH, &lossless)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("lossy codec"), "{msg}");
    // The header says which coding.
    let c = Container::parse(&file, &MODEL_HASH).unwrap();
    assert_eq!(c.coding, Coding::Latents);
}

#[test]
fn every_truncation_or_corrupted_byte_is_an_error() {
    let m = codec(2);
    let (file, _) = compress_idx(&m, MODEL_HASH, Path::new("t.idx"), &idx(2, false), 8).unwrap();
    for len in 0..file.len() {
        let e = decompress_idx(&m, &MODEL_HASH, &file[..len]).unwrap_err();
        assert!(matches!(e, Error::Corrupt(_)), "cut at {len}: {e}");
    }
    for at in 0..file.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = file.clone();
            bad[at] ^= flip;
            assert!(
                decompress_idx(&m, &MODEL_HASH, &bad).is_err(),
                "byte {at} ^ {flip:#x} decoded without an error"
            );
        }
    }
}

#[test]
fn a_count_the_words_cannot_hold_is_refused_before_decoding() {
    let m = codec(0);
    let coder = LatentCoder::new(&m).unwrap();
    let (words, _) = coder.encode(&vec![0; m.latent_dim()]).unwrap();
    let e = coder.decode(words.clone(), 1 << 30).unwrap_err();
    assert!(e.to_string().contains("cannot be coded"), "{e}");
    assert_eq!(coder.decode(words, 1).unwrap(), vec![0; m.latent_dim()]);
}

#[test]
fn decoding_on_other_thread_counts_gives_the_same_bytes() {
    let m = codec(3);
    let original = idx(5, false);
    let (file, _) = pool(2)
        .install(|| compress_idx(&m, MODEL_HASH, Path::new("t"), &original, 8))
        .unwrap();
    let one = pool(1)
        .install(|| decompress_idx(&m, &MODEL_HASH, &file))
        .unwrap();
    let two = pool(2)
        .install(|| decompress_idx(&m, &MODEL_HASH, &file))
        .unwrap();
    assert!(one == two);
}
