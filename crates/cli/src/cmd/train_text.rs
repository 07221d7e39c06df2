//! `deepgen train text-vae`: the sentence VAE (deepgen-text) on a text
//! file, one example per line, or on the built-in synthetic sentences.

use std::path::PathBuf;

use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_cli::{Error, Result};
use deepgen_data::text::{self, Level, TextSet};
use deepgen_nn::Module;
use deepgen_text::trainer::{self, TrainConfig};
use deepgen_text::{SentenceVae, SentenceVaeConfig};
use deepgen_train::OptimizerConfig;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::args::{
    at_least_one, count, non_negative, positive, record, OptimArgs, RunArgs, StepArgs,
};

#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Args {
    /// A UTF-8 text file, one example per line [default: the built-in
    /// synthetic sentences]
    #[arg(long)]
    text: Option<PathBuf>,
    /// Tokens: characters or words [default: word for the built-in
    /// sentences, char for a file]
    #[arg(long, value_enum)]
    level: Option<LevelArg>,
    /// Lines of more tokens are skipped (and counted)
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    max_len: usize,
    /// The first part of the lines trains, the rest is held out
    #[arg(long, default_value_t = 0.9, value_parser = fraction)]
    train_fraction: f64,
    /// How many built-in sentences
    #[arg(long, default_value_t = 5000, value_parser = at_least_one)]
    sentences: usize,
    #[command(flatten)]
    #[serde(flatten)]
    run: RunArgs,
    #[command(flatten)]
    #[serde(flatten)]
    step: StepArgs,
    #[command(flatten)]
    #[serde(flatten)]
    optim: OptimArgs,
    /// Epochs to train (on --resume: the total, counting those done)
    #[arg(long, default_value_t = 10, value_parser = at_least_one)]
    epochs: usize,
    /// Sentences per batch
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    batch_size: usize,
    /// The learning rate
    #[arg(long, default_value_t = 1e-3, value_parser = positive)]
    lr: f64,
    /// Token embedding size
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    embed: usize,
    /// GRU hidden units (encoder and decoder)
    #[arg(long, default_value_t = 256, value_parser = at_least_one)]
    hidden: usize,
    /// Latent dimensions
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    latent: usize,
    /// A one-directional encoder (default: bidirectional)
    #[arg(long)]
    unidirectional: bool,
    /// Probability that a decoder input token becomes the unknown token
    #[arg(long, default_value_t = 0.3, value_parser = fraction)]
    word_dropout: f64,
    /// Steps over which the KL weight rises linearly from 0 to 1
    #[arg(long, default_value_t = 2000)]
    kl_anneal_steps: usize,
    /// Nats per latent dimension below which KL is not penalised (0: none)
    #[arg(long, default_value_t = 0.1, value_parser = non_negative)]
    free_bits: f64,
    /// Seed of the weights, the shuffling, the noise and the built-in sentences
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The run directory
    #[arg(long, default_value = "runs/text-vae")]
    out: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum LevelArg {
    Char,
    Word,
}

fn fraction(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is not in [0, 1)")),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

/// The lines and their level, from the file or the built-in grammar.
fn lines(a: &Args) -> Result<(Vec<String>, Level)> {
    let level = |default| match a.level {
        Some(LevelArg::Char) => Level::Char,
        Some(LevelArg::Word) => Level::Word,
        None => default,
    };
    let Some(path) = &a.text else {
        return Ok((
            text::synthetic_sentences(a.sentences, a.seed),
            level(Level::Word),
        ));
    };
    let level = level(Level::Char);
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let l = text::lines(path, &bytes, level, a.max_len)?;
    if l.skipped() > 0 {
        println!(
            "{}: skipped {} empty lines and {} longer than {} tokens",
            path.display(),
            l.empty,
            l.too_long,
            a.max_len
        );
    }
    Ok((l.lines, level))
}

pub fn run(a: Args) -> Result<()> {
    let (lines, level) = lines(&a)?;
    if lines.len() < 2 {
        return Err(Error::Usage(
            "a text of at least 2 lines is needed (training and held out)".into(),
        ));
    }
    let set = TextSet::split_fraction(&lines, level, a.train_fraction)?;
    let config = SentenceVaeConfig {
        vocab: set.vocab.len(),
        embed: a.embed,
        hidden: a.hidden,
        latent: a.latent,
        bidirectional: !a.unidirectional,
    };
    let model = super::args::for_training(|| SentenceVae::new(config, a.seed))?;
    let tc = TrainConfig {
        run: a.run.config(&a.out, a.epochs, TrainConfig::default().run),
        step: a.step.config(),
        optimizer: a.optim.config(OptimizerConfig::default().betas),
        batch_size: a.batch_size,
        lr: a.lr,
        word_dropout: a.word_dropout,
        kl_anneal_steps: a.kl_anneal_steps,
        free_bits: a.free_bits,
        seed: a.seed,
    };
    println!(
        "training a sentence VAE ({} parameters) on {} lines ({} held out) of {}, {} tokens of {}, {}",
        model.num_parameters(),
        set.train.len(),
        set.held_out.len(),
        a.text.as_ref().map_or("the built-in sentences".to_string(), |p| p.display().to_string()),
        set.vocab.len(),
        match level {
            Level::Char => "characters",
            Level::Word => "words",
        },
        count(a.epochs, "epoch")
    );
    let record = record(
        "train text-vae",
        &a,
        serde_json::json!({ "model": model.config }),
    );
    trainer::train(&model, &set, &tc, &record, |r| {
        let v = |k: &str| r.get(k).unwrap_or(f64::NAN);
        println!(
            "epoch {}: train {:.2} ({:.2} + {:.2}) nats/sentence; held-out {:.2} ({:.2} + KL {:.2}), \
             {:.3} nats/token, {} active units; {:.1} s",
            r.epoch + 1,
            v("train_loss"),
            v("train_reconstruction"),
            v("train_kl"),
            v("held_out_loss"),
            v("held_out_reconstruction"),
            v("held_out_kl"),
            v("held_out_nats_per_token"),
            v("active_units"),
            r.seconds
        );
    })?;
    model.eval();
    println!("samples (greedy, from the prior):");
    for s in sentences(&model, &set.vocab, 5, 0.0, a.seed, a.max_len)? {
        println!("  {s}");
    }
    println!("wrote {}", a.out.display());
    Ok(())
}

/// `n` sentences from the prior: greedy (`temperature` 0) or sampled.
pub fn sentences(
    model: &SentenceVae,
    vocab: &text::Vocab,
    n: usize,
    temperature: f64,
    seed: u64,
    max_len: usize,
) -> Result<Vec<String>> {
    let rng = &mut ChaCha8Rng::seed_from_u64(seed);
    let z = Var::constant(Tensor::randn(&[n, model.config.latent], 0.0, 1.0, rng));
    let ids = no_grad(|| model.generate(&z, max_len, temperature, rng))?;
    Ok(ids.iter().map(|s| vocab.decode(s)).collect())
}
