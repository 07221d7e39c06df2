//! `deepgen eval classifier`.

use std::path::PathBuf;

use deepgen_cli::{classifier, Result};
use serde::Serialize;

use super::args::DataArgs;

/// Accuracy of a classifier checkpoint on the held-out images.
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    data: DataArgs,
    /// A classifier.safetensors written by `train classifier`
    #[arg(long)]
    checkpoint: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let model = classifier::load(&a.checkpoint)?;
    super::sample::check_finite(&model, &a.checkpoint)?;
    let target = a.data.for_checkpoint(&a.checkpoint)?.evaluation_set()?;
    let acc = classifier::accuracy(&model, target.clone())?;
    println!("accuracy {:.2}% on {} images", 100.0 * acc, target.len());
    Ok(())
}
