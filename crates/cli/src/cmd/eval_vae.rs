//! `deepgen eval vae`.

use std::path::PathBuf;

use deepgen_cli::{Error, Result};
use deepgen_data::{DataLoader, LoaderConfig};
use deepgen_train::Progress;
use deepgen_vae::{codec_rate_distortion, iwae_bound, trainer, Likelihood, Vae};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::args::DataArgs;
use super::sample::check_finite;

/// Most importance samples per image: k samples of a batch are one tensor
/// of k x batch x latent, and the bound gains little past a few thousand.
const MAX_K: u64 = 100_000;

/// Held-out negative ELBO and importance-weighted bound (nats per example);
/// for a codec, its rate (bits per pixel) and distortion (MSE, PSNR).
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    data: DataArgs,
    /// A model.safetensors written by `train vae` (or a PyTorch VAE's state dict)
    #[arg(long)]
    checkpoint: PathBuf,
    /// Importance samples for the IWAE bound
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_K))]
    k: u64,
    /// Seed of the posterior samples
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No progress bar
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: Args) -> Result<()> {
    let data = a.data.for_checkpoint(&a.checkpoint)?;
    let target = data.evaluation_set()?;
    let model = Vae::from_checkpoint(&a.checkpoint)?;
    check_finite(&model, &a.checkpoint)?;
    if target.item_shape() != model.image_shape() {
        return Err(Error::Usage(format!(
            "{} takes images of shape {:?}; the data has {:?}",
            a.checkpoint.display(),
            model.image_shape(),
            target.item_shape()
        )));
    }
    let (elbo, rec, kl) = trainer::evaluate(&model, target.clone(), 500, a.seed)?;
    let pixels: usize = model.image_shape().iter().product();
    if model.is_codec() {
        return codec(&model, target, (rec, kl), pixels);
    }
    let k = a.k as usize;
    // Batches small enough that k samples of one stay near 8 M latent values.
    let batch = (8_000_000 / (k * model.latent_dim().max(1))).clamp(1, 100);
    let loader = DataLoader::new(
        target.clone(),
        LoaderConfig {
            batch_size: batch,
            shuffle: false,
            ..Default::default()
        },
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let bar = Progress::new(
        !a.quiet,
        loader.num_batches(),
        format!("IWAE bound, k = {k}"),
    );
    let (mut sum, mut n) = (0.0, 0usize);
    for images in loader.epoch(0) {
        let b = iwae_bound(&model, &images?.images, k, &mut rng)?;
        n += b.len();
        sum += b.iter().sum::<f64>();
        bar.step(|| format!("{:.2} nats/example so far", sum / n as f64));
    }
    bar.finish(&format!("{} images", n));
    let iwae = sum / n.max(1) as f64;
    println!(
        "{} images: negative ELBO {elbo:.2} ({rec:.2} + {kl:.2}), IWAE bound (k = {k}) {iwae:.2} nats/example",
        target.len(),
    );
    // Discrete pixels (binarised under a Bernoulli decoder, or 8-bit levels)
    // have probabilities, so nats convert to the bits per dimension a
    // lossless coder can reach (`deepgen compress`).
    let discrete = match model.config.likelihood {
        Likelihood::Bernoulli => data.binarize,
        l => l.is_levels(),
    };
    if discrete {
        let per_dim = |nats: f64| nats / (pixels as f64 * std::f64::consts::LN_2);
        println!(
            "in bits per dimension: negative ELBO {:.4}, IWAE bound {:.4}",
            per_dim(elbo),
            per_dim(iwae)
        );
    }
    Ok(())
}

/// A codec's rate and distortion with its latents rounded, as `deepgen
/// compress` codes them, beside the noisy training objective's terms.
fn codec(
    model: &Vae,
    target: std::sync::Arc<dyn deepgen_data::Dataset>,
    (distortion, rate): (f64, f64),
    pixels: usize,
) -> Result<()> {
    let loader = DataLoader::new(
        target.clone(),
        LoaderConfig {
            batch_size: 500,
            shuffle: false,
            ..Default::default()
        },
    )?;
    let (mut bits, mut se, mut n) = (0.0, 0.0, 0usize);
    for batch in loader.epoch(0) {
        let x = batch?.images;
        let b = x.shape()[0];
        let rd = codec_rate_distortion(model, &x)?;
        bits += rd.bits_per_image * b as f64;
        se += rd.mse * b as f64;
        n += b;
    }
    let (bits, mse) = (bits / n.max(1) as f64, se / n.max(1) as f64);
    println!(
        "{n} images: {bits:.1} bits per image ({:.4} bits per pixel), MSE {mse:.6}, PSNR {:.2} dB \
         (rounded latents, 8-bit reconstructions)",
        bits / pixels as f64,
        10.0 * (1.0 / mse).log10()
    );
    println!(
        "training objective (uniform noise for rounding): rate {:.4} bits per pixel, \
         distortion {distortion:.2} nats/example",
        rate / (pixels as f64 * std::f64::consts::LN_2)
    );
    Ok(())
}
