//! `deepgen train classifier`.

use std::path::PathBuf;

use deepgen_cli::classifier::{self, TrainConfig};
use deepgen_cli::Result;
use deepgen_train::OptimizerConfig;
use serde::Serialize;

use super::args::{at_least_one, count, positive, record, TrainArgs};

/// The LeNet-style digit classifier (cross entropy, Adam).
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    common: TrainArgs,
    /// Epochs to train (on --resume: the total, counting those done)
    #[arg(long, default_value_t = 5, value_parser = at_least_one)]
    epochs: usize,
    /// Images per batch
    #[arg(long, default_value_t = 128, value_parser = at_least_one)]
    batch_size: usize,
    /// Adam's learning rate
    #[arg(long, default_value_t = 1e-3, value_parser = positive)]
    lr: f64,
    /// Seed of the weights and the shuffling
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The run directory (classifier.safetensors is written there)
    #[arg(long, default_value = "runs/classifier")]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let (train, held) = a.common.data.split()?;
    println!(
        "training the classifier on {} images ({}), {}",
        train.len(),
        a.common.data.record().dataset,
        count(a.epochs, "epoch")
    );
    let run = a
        .common
        .run_config(&a.out, a.epochs, TrainConfig::default().run);
    let cfg = TrainConfig {
        run,
        step: a.common.step.config(),
        optimizer: a.common.optim.config(OptimizerConfig::default().betas),
        batch_size: a.batch_size,
        lr: a.lr,
        seed: a.seed,
    };
    let record = record(
        "train classifier",
        &a,
        serde_json::json!({ "data": a.common.data.record() }),
    );
    classifier::train(train, held, &cfg, &record, |r| {
        let held = r
            .held_out_accuracy
            .map(|a| format!(", held-out accuracy {:.2}%", 100.0 * a))
            .unwrap_or_default();
        println!(
            "epoch {}: loss {:.4}, train accuracy {:.2}%{held}, {:.1} s",
            r.epoch + 1,
            r.loss,
            100.0 * r.train_accuracy,
            r.seconds
        );
    })?;
    println!(
        "checkpoint: {}",
        a.out.join("classifier.safetensors").display()
    );
    Ok(())
}
