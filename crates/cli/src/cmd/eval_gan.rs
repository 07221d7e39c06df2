//! `deepgen eval gan`: image quality judged by the digit classifier.

use std::path::PathBuf;

use deepgen_autograd::Tensor;
use deepgen_cli::{classifier, quality, Error, Result};
use deepgen_data::{DataLoader, LoaderConfig};
use serde::Serialize;

use super::args::{Data, DataArgs};
use super::sample::{check_finite, gan_samples, MAX_IMAGES};

/// Image quality of generated digits, judged by a classifier from `train
/// classifier`: Fréchet distance of its features between the samples and
/// the held-out images, and the histogram of predicted classes with its
/// entropy.
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    data: DataArgs,
    /// A classifier.safetensors written by `train classifier`
    #[arg(long)]
    classifier: PathBuf,
    /// Generated images: .idx (8-bit) or .safetensors (float "images")
    #[arg(long, required_unless_present = "checkpoint")]
    samples: Option<PathBuf>,
    /// Or a generator checkpoint to draw --n samples from
    #[arg(long, conflicts_with = "samples")]
    checkpoint: Option<PathBuf>,
    /// Samples to draw from --checkpoint
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(2..=MAX_IMAGES as u64))]
    n: u64,
    /// Seed of the noise
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// The first `count` images of `d`, in [0, 1].
fn images(d: &Data, count: usize) -> Result<Tensor> {
    let loader = DataLoader::new(
        d.clone(),
        LoaderConfig {
            shuffle: false,
            ..Default::default()
        },
    )?;
    Ok(loader.batch((0..count.min(d.len())).collect())?.images)
}

pub fn run(a: Args) -> Result<()> {
    let data = match &a.checkpoint {
        Some(c) => a.data.for_checkpoint(c)?,
        None => a.data.clone(),
    };
    let (train, held) = data.split()?;
    let Some(reference) = held else {
        return Err(Error::Usage(
            "eval gan needs held-out images as the reference: give --held-out".into(),
        ));
    };
    let model = classifier::load(&a.classifier)?;
    let generated = match (&a.samples, &a.checkpoint) {
        (Some(path), _) => quality::read_samples(path)?,
        (None, Some(path)) => {
            let g = deepgen_gan::load_generator(path)?;
            check_finite(g.as_module(), path)?;
            gan_samples(g.as_ref(), a.n as usize, None, a.seed)?
        }
        (None, None) => unreachable!("clap requires one"),
    };
    let real = images(&reference, reference.len())?;
    // Real images from the training part, as many as generated: the score
    // a perfect generator would get.
    let baseline = images(&train, generated.shape()[0])?;
    let q = quality::judge(&model, &generated, &real, &baseline)?;
    println!(
        "{} samples vs {} held-out images: Fréchet distance (classifier features) {:.3} ({} real training images: {:.3})",
        generated.shape()[0],
        reference.len(),
        q.frechet,
        baseline.shape()[0],
        q.real_baseline
    );
    let histogram: Vec<String> = q.histogram.iter().map(|c| c.to_string()).collect();
    println!(
        "predicted classes [{}], entropy {:.3} nats (uniform: {:.3})",
        histogram.join(", "),
        q.entropy,
        (q.histogram.len() as f64).ln()
    );
    Ok(())
}
