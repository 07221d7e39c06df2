//! The VAE's tools: `deepgen reconstruct`, `encode` and `interpolate`.

use std::path::PathBuf;

use deepgen_cli::{Error, Result};
use deepgen_data::{DataLoader, LoaderConfig, Scale};
use deepgen_vae::{generate, Vae};
use serde::Serialize;

use super::args::DataArgs;
use super::sample::check_finite;

/// A VAE from its checkpoint, with its data (as recorded unless flags say otherwise).
fn model_and_data(data: &DataArgs, checkpoint: &std::path::Path) -> Result<(Vae, DataArgs)> {
    let model = Vae::from_checkpoint(checkpoint)?;
    check_finite(&model, checkpoint)?;
    Ok((model, data.for_checkpoint(checkpoint)?))
}

/// Held-out images beside their reconstructions (rows of 8 above 8).
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ReconstructArgs {
    #[command(flatten)]
    #[serde(flatten)]
    data: DataArgs,
    /// A VAE's model.safetensors
    #[arg(long)]
    checkpoint: PathBuf,
    /// Images to reconstruct
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    n: u64,
    /// The output PNG (its folder is created)
    #[arg(long, default_value = "reconstructions.png")]
    out: PathBuf,
}

pub fn reconstruct(a: ReconstructArgs) -> Result<()> {
    let (model, data) = model_and_data(&a.data, &a.checkpoint)?;
    let target = data.evaluation_set()?;
    let loader = DataLoader::new(
        target.clone(),
        LoaderConfig {
            shuffle: false,
            ..Default::default()
        },
    )?;
    let x = loader
        .batch((0..(a.n as usize).min(target.len())).collect())?
        .images;
    let grid = generate::reconstruction_grid(&model, &x)?;
    generate::write_images(&a.out, &grid, 8)?;
    println!("wrote {}", a.out.display());
    Ok(())
}

/// Latent means and log-variances of a whole data set, as safetensors and
/// CSV, with a scatter plot of the latent space coloured by label.
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct EncodeArgs {
    #[command(flatten)]
    #[serde(flatten)]
    data: DataArgs,
    /// A VAE's model.safetensors
    #[arg(long)]
    checkpoint: PathBuf,
    /// Folder for latents.safetensors, latents.csv and latents.png
    #[arg(long, default_value = "runs/encode")]
    out: PathBuf,
}

pub fn encode(a: EncodeArgs) -> Result<()> {
    let (model, data) = model_and_data(&a.data, &a.checkpoint)?;
    let (train, held) = data.split()?;
    let target = match (&data.train_range, &data.held_out, held) {
        (None, Some(_), Some(h)) => h,
        _ => train,
    };
    let (mu, logvar) = generate::encode_all(&model, target.clone())?;
    let labels: Vec<usize> = (0..target.len())
        .map(|i| target.label(i).unwrap_or(0))
        .collect();
    generate::write_latents(&a.out, &mu, &logvar, &labels)?;
    let how = if model.latent_dim() == 2 {
        "the 2-D latent"
    } else {
        "the first two principal components"
    };
    println!(
        "encoded {} images into {}; latents.png shows {how}",
        labels.len(),
        a.out.display()
    );
    Ok(())
}

/// Decodes a straight line in latent space between two held-out images.
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct InterpolateArgs {
    #[command(flatten)]
    #[serde(flatten)]
    data: DataArgs,
    /// A VAE's model.safetensors
    #[arg(long)]
    checkpoint: PathBuf,
    /// Index (within the held-out images) of the first image
    #[arg(long, default_value_t = 0)]
    from: usize,
    /// Index of the second image
    #[arg(long, default_value_t = 1)]
    to: usize,
    /// Images along the line, ends included
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=1000))]
    steps: u64,
    /// The output PNG (its folder is created)
    #[arg(long, default_value = "interpolation.png")]
    out: PathBuf,
}

pub fn interpolate(a: InterpolateArgs) -> Result<()> {
    let (model, data) = model_and_data(&a.data, &a.checkpoint)?;
    let target = data.evaluation_set()?;
    for i in [a.from, a.to] {
        if i >= target.len() {
            return Err(Error::Usage(format!(
                "image {i} is beyond the {} images at hand",
                target.len()
            )));
        }
    }
    let (x, _) = target.get(a.from, Scale::ZeroOne)?;
    let (y, _) = target.get(a.to, Scale::ZeroOne)?;
    let steps = a.steps as usize;
    let images = generate::interpolate(&model, &x, &y, steps)?;
    generate::write_images(&a.out, &images, steps)?;
    println!("wrote {}", a.out.display());
    Ok(())
}
