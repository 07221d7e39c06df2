//! The `deepgen` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use deepgen_cli::{classifier, datasets, Result};

#[derive(Parser)]
#[command(
    name = "deepgen",
    version,
    about = "Train, sample and evaluate deep generative models on the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download a data set, verifying every file's SHA-256.
    Download {
        /// mnist, fashion-mnist, kmnist or cifar10
        dataset: String,
        /// Target folder (default: data/<dataset>)
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Train a model.
    #[command(subcommand)]
    Train(Train),
    /// Evaluate a model.
    #[command(subcommand)]
    Eval(Eval),
}

/// Which data to use (shared by train and eval).
#[derive(clap::Args, Clone)]
struct DataArgs {
    /// digits (built in), mnist, fashion-mnist or kmnist
    #[arg(long, default_value = "digits")]
    dataset: String,
    /// Folder with the data set's files
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Read the test split's files (when only they are at hand)
    #[arg(long)]
    test_split: bool,
    /// Images to train on, e.g. 0..9000 (default: all)
    #[arg(long, value_parser = datasets::parse_range)]
    train_range: Option<std::ops::Range<usize>>,
    /// Images held out for evaluation, e.g. 9000..10000
    #[arg(long, value_parser = datasets::parse_range)]
    held_out: Option<std::ops::Range<usize>>,
    /// Number of synthetic digits to generate
    #[arg(long, default_value_t = 12_000)]
    synthetic_size: usize,
}

#[derive(Subcommand)]
enum Train {
    /// The LeNet-style digit classifier (cross entropy, Adam).
    Classifier {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, default_value_t = 5)]
        epochs: usize,
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output folder for the checkpoint
        #[arg(long, default_value = "runs/classifier")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum Eval {
    /// Accuracy of a classifier checkpoint on the held-out images.
    Classifier {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        checkpoint: PathBuf,
    },
}

type Data = std::sync::Arc<dyn deepgen_data::Dataset>;

/// (train part, held-out part) of the chosen data. Synthetic digits hold out
/// their last sixth unless a range says otherwise.
fn split(d: &DataArgs) -> Result<(Data, Option<Data>)> {
    let all = datasets::load(
        &d.dataset,
        d.data_dir.as_deref(),
        !d.test_split,
        d.synthetic_size,
        0,
    )?;
    let n = all.len();
    let (train, held) = match (&d.train_range, &d.held_out, d.dataset.as_str()) {
        (None, None, "digits") => (Some(0..n - n / 6), Some(n - n / 6..n)),
        (t, h, _) => (t.clone(), h.clone()),
    };
    let held = held
        .map(|r| datasets::take(all.clone(), Some(r)))
        .transpose()?;
    Ok((datasets::take(all, train)?, held))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Download { dataset, dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("data").join(&dataset));
            let files = deepgen_data::download::download(&dataset, &dir, &Default::default())?;
            for f in files {
                println!("{}", f.display());
            }
        }
        Command::Train(Train::Classifier {
            data,
            epochs,
            batch_size,
            lr,
            seed,
            out,
        }) => {
            let (train, held) = split(&data)?;
            println!(
                "training the classifier on {} images ({}), {epochs} epochs",
                train.len(),
                data.dataset
            );
            let cfg = classifier::TrainConfig {
                epochs,
                batch_size,
                lr,
                seed,
                out_dir: out.clone(),
                progress: true,
            };
            classifier::train(train, held, &cfg, |r| {
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
                out.join("classifier.safetensors").display()
            );
        }
        Command::Eval(Eval::Classifier { data, checkpoint }) => {
            let (train, held) = split(&data)?;
            let model = classifier::load(&checkpoint)?;
            let target = held.unwrap_or(train);
            let acc = classifier::accuracy(&model, target.clone())?;
            println!("accuracy {:.2}% on {} images", 100.0 * acc, target.len());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The error chain, no backtrace: these are user-facing errors.
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
