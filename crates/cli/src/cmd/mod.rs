//! The commands, one module each, and what they share: the command tree,
//! `--threads`, and `--config FILE` (flags read from JSON, such as the
//! `config.json` a run writes, so a run can be repeated).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};
use deepgen_cli::{Error, Result};

pub mod args;
mod compress;
mod download;
mod eval_classifier;
mod eval_gan;
mod eval_gan2d;
mod eval_text;
mod eval_vae;
mod export;
mod sample;
mod tools;
mod train_classifier;
mod train_gan;
mod train_text;
mod train_vae;

#[derive(Parser)]
#[command(
    name = "deepgen",
    version = version(),
    about = "Train, sample and evaluate deep generative models on the CPU"
)]
pub struct Cli {
    /// Threads for the math [default: RAYON_NUM_THREADS, else one per core]
    #[arg(long, global = true, value_parser = args::at_least_one)]
    threads: Option<usize>,
    /// Read flags from a JSON file of flag names and values, such as the
    /// config.json a run writes (flags on the command line win; a switch
    /// the file turns on stays on) [default: none]
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The memory budget in GiB: sizes from flags, file headers and
    /// checkpoint metadata that need more stop with a message before memory
    /// is taken [default: the machine's physical memory]
    #[arg(long, global = true, value_parser = args::positive)]
    memory_budget: Option<f64>,
    #[command(subcommand)]
    command: Command,
}

/// The version line: the crate's version, and whether it can run
/// data-parallel under mpirun.
fn version() -> &'static str {
    match deepgen_dist::MPI_BUILT {
        true => concat!(env!("CARGO_PKG_VERSION"), " (data-parallel: MPI)"),
        false => concat!(
            env!("CARGO_PKG_VERSION"),
            " (data-parallel: not built, see --features mpi)"
        ),
    }
}

// Parsed once per process: the size of the biggest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Download a data set, verifying every file's SHA-256.
    Download(download::Args),
    /// Train a model.
    #[command(subcommand)]
    Train(Train),
    /// Evaluate a model.
    #[command(subcommand)]
    Eval(Eval),
    /// Draw images from a trained VAE's prior or a GAN's generator: a PNG
    /// grid, or raw samples as .safetensors or .idx for other tools.
    Sample(sample::Args),
    /// Held-out images beside their reconstructions (rows of 8 above 8).
    Reconstruct(tools::ReconstructArgs),
    /// Latent means and log-variances of a whole data set, as safetensors and
    /// CSV, with a scatter plot of the latent space coloured by label.
    Encode(tools::EncodeArgs),
    /// Decodes a straight line in latent space between two held-out images.
    Interpolate(tools::InterpolateArgs),
    /// Losslessly compresses an IDX file of images with a trained VAE
    /// (bits-back coding with ANS; Bernoulli or discretised-logistic decoder).
    Compress(compress::CompressArgs),
    /// Restores the IDX file `compress` wrote, byte for byte.
    Decompress(compress::DecompressArgs),
    /// Writes a trained model as an ONNX file for ONNX Runtime, TensorRT,
    /// OpenVINO or a browser: a GAN's generator, a VAE's decoder or
    /// encoder, the classifier.
    Export(export::Args),
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Train {
    /// A VAE: MLP (pytorch/examples' 784-400-20 by default) or
    /// convolutional, with a Bernoulli or Gaussian decoder.
    Vae(train_vae::Args),
    /// A GAN: DCGAN (default) or MLP, with the loss of your choice.
    Gan(train_gan::Args),
    /// The LeNet-style digit classifier (cross entropy, Adam).
    Classifier(train_classifier::Args),
    /// A sentence VAE (Bowman et al.): GRU encoder and decoder over the
    /// lines of a text file, or the built-in synthetic sentences.
    #[command(name = "text-vae")]
    TextVae(train_text::Args),
    /// A GAN that writes text (ARAE, Zhao et al.): a GRU autoencoder, and
    /// an MLP generator and WGAN-GP critic in its code space.
    #[command(name = "text-gan")]
    TextGan(train_text::GanArgs),
    /// A GRU language model of the training lines: the judge of
    /// generated text (`eval text --judge`).
    #[command(name = "text-lm")]
    TextLm(train_text::LmArgs),
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Eval {
    /// Held-out negative ELBO and importance-weighted bound (nats per example).
    Vae(eval_vae::Args),
    /// Image quality of generated digits, judged by a classifier from
    /// `train classifier`: Fréchet distance of its features between the
    /// samples and the held-out images, and the histogram of predicted
    /// classes with its entropy.
    Gan(eval_gan::Args),
    /// The 2-D mode-coverage benchmark (VEEGAN): trains the MLP GAN on
    /// ring8 or grid25 for each seed and reports modes covered and the
    /// share of high-quality samples.
    #[command(name = "gan-2d")]
    Gan2d(eval_gan2d::Args),
    /// Accuracy of a classifier checkpoint on the held-out images.
    Classifier(eval_classifier::Args),
    /// A text model on the held-out lines: a sentence VAE's negative ELBO
    /// and IWAE bound per token, KL and active units; an ARAE's
    /// reconstruction; a language model's perplexity. With --judge, the
    /// forward perplexity of its samples under a language model.
    Text(eval_text::Args),
}

/// Runs the command the arguments name.
pub fn run(cli: Cli) -> Result<()> {
    // Ranks sharing a machine share its cores, unless --threads says.
    let ranks_here = deepgen_dist::local_ranks();
    let threads = cli.threads.or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (deepgen_dist::distributed() && std::env::var_os("RAYON_NUM_THREADS").is_none())
            .then(|| (cores / ranks_here).max(1))
    });
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::Usage(format!("--threads {n}: {e}")))?;
    }
    if let Some(gib) = cli.memory_budget {
        deepgen_tensor::budget::set_limit((gib * (1u64 << 30) as f64).min(u64::MAX as f64) as u64);
    }
    // A tensor over the budget (an activation of absurd sizes, say) unwinds
    // rather than aborting in the allocator; here it becomes an error.
    deepgen_tensor::budget::quiet_hook();
    let over = |e: deepgen_tensor::Error| Error::Nn(deepgen_nn::Error::from(e));
    deepgen_tensor::budget::catch(|| dispatch(cli.command)).map_err(over)?
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Download(a) => download::run(a),
        Command::Train(Train::Vae(a)) => train_vae::run(a),
        Command::Train(Train::Gan(a)) => train_gan::run(a),
        Command::Train(Train::Classifier(a)) => train_classifier::run(a),
        Command::Train(Train::TextVae(a)) => train_text::run(a),
        Command::Train(Train::TextGan(a)) => train_text::run_gan(a),
        Command::Train(Train::TextLm(a)) => train_text::run_lm(a),
        Command::Eval(Eval::Vae(a)) => eval_vae::run(a),
        Command::Eval(Eval::Gan(a)) => eval_gan::run(a),
        Command::Eval(Eval::Gan2d(a)) => eval_gan2d::run(a),
        Command::Eval(Eval::Classifier(a)) => eval_classifier::run(a),
        Command::Eval(Eval::Text(a)) => eval_text::run(a),
        Command::Sample(a) => sample::run(a),
        Command::Reconstruct(a) => tools::reconstruct(a),
        Command::Encode(a) => tools::encode(a),
        Command::Interpolate(a) => tools::interpolate(a),
        Command::Compress(a) => compress::compress(a),
        Command::Decompress(a) => compress::decompress(a),
        Command::Export(a) => export::run(a),
    }
}

/// Keys of a run's config.json that are records, not flags.
const RECORD_KEYS: [&str; 5] = ["command", "model", "generator", "discriminator", "data"];
/// Flags a config file never sets: how this invocation starts, not what it runs.
const NOT_FROM_CONFIG: [&str; 5] = ["resume", "force", "config", "threads", "memory-budget"];

/// The command line with the flags of `--config FILE` added (those not
/// given on the command line).
pub fn expand_config(args: Vec<OsString>) -> Result<Vec<OsString>> {
    let text: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let Some(file) = config_path(&text) else {
        return Ok(args);
    };
    let bad = |msg: String| Error::Usage(format!("--config {file}: {msg}"));
    let json = std::fs::read_to_string(&file).map_err(|e| bad(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(bad("expected a JSON object of flag names and values".into()));
    };
    let path = subcommand_path(&text);
    if path.is_empty() {
        return Err(bad(
            "give the command too, e.g. `deepgen train vae --config FILE`".into(),
        ));
    }
    if let Some(recorded) = map.get("command").and_then(|c| c.as_str()) {
        if recorded != path.join(" ") {
            return Err(bad(format!(
                "it was written by `deepgen {recorded}`, not `deepgen {}`",
                path.join(" ")
            )));
        }
    }
    let known = long_flags(&path);
    let mut out = args;
    for (key, v) in map {
        let flag = key.replace('_', "-");
        if RECORD_KEYS.contains(&key.as_str()) || NOT_FROM_CONFIG.contains(&flag.as_str()) {
            continue;
        }
        if !known.contains(&flag) {
            return Err(bad(format!(
                "`{key}` is not a flag of `deepgen {}`",
                path.join(" ")
            )));
        }
        let given = text
            .iter()
            .any(|a| *a == format!("--{flag}") || a.starts_with(&format!("--{flag}=")));
        if given {
            continue;
        }
        let value = match v {
            serde_json::Value::Null | serde_json::Value::Bool(false) => continue,
            serde_json::Value::Array(items) if items.is_empty() => continue,
            serde_json::Value::Bool(true) => None,
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Array(items) => Some(
                items
                    .iter()
                    .map(|i| i.as_str().map_or(i.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            serde_json::Value::Object(_) => {
                return Err(bad(format!("`{key}` holds an object, not a flag value")))
            }
        };
        out.push(format!("--{flag}").into());
        if let Some(v) = value {
            out.push(v.into());
        }
    }
    Ok(out)
}

/// The value of `--config`, if given.
fn config_path(args: &[String]) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=").map(str::to_string).or_else(|| {
            (a == "--config")
                .then(|| args.get(i + 1).cloned())
                .flatten()
        })
    })
}

/// The subcommand names (`train vae`): the words before the first flag.
fn subcommand_path(args: &[String]) -> Vec<String> {
    let root = Cli::command();
    let mut cmd = &root;
    let mut path = Vec::new();
    let mut words = args.iter().skip(1);
    while let Some(a) = words.next() {
        match cmd.find_subcommand(a) {
            Some(sub) => {
                path.push(a.clone());
                cmd = sub;
            }
            None if a == "--threads" || a == "--config" => {
                words.next();
            }
            None if a.starts_with('-') => continue,
            None => break,
        }
    }
    path
}

/// The long flags of the subcommand at `path`.
fn long_flags(path: &[String]) -> Vec<String> {
    let root = Cli::command();
    let mut cmd = &root;
    for p in path {
        if let Some(sub) = cmd.find_subcommand(p) {
            cmd = sub;
        }
    }
    cmd.get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect()
}
