//! `deepgen train text-vae | text-gan | text-lm`: the sentence VAE, the
//! ARAE and the judging language model (deepgen-text) on a text file, one
//! example per line, or on the built-in synthetic sentences.

use std::path::{Path, PathBuf};

use deepgen_cli::{Error, Result};
use deepgen_data::text::{self, Level, TextSet};
use deepgen_nn::Module;
use deepgen_text::arae::{self, Arae, AraeConfig, AraeTrainConfig};
use deepgen_text::lm::{self, LanguageModel, LmConfig, LmTrainConfig};
use deepgen_text::model::TextModel;
use deepgen_text::trainer::{self, TrainConfig};
use deepgen_text::{SentenceVae, SentenceVaeConfig};
use deepgen_train::OptimizerConfig;
use serde::Serialize;

use super::args::{
    at_least_one, count, non_negative, positive, record, OptimArgs, RunArgs, StepArgs,
};

/// Where the lines come from, and how they are cut and split: the same
/// flags must be given to `eval text` as to training.
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TextDataArgs {
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
    pub max_len: usize,
    /// The first part of the lines trains, the rest is held out
    #[arg(long, default_value_t = 0.9, value_parser = fraction)]
    train_fraction: f64,
    /// How many built-in sentences (drawn with --seed)
    #[arg(long, default_value_t = 5000, value_parser = at_least_one)]
    sentences: usize,
}

/// The flags every text model's training takes.
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrainArgs {
    #[command(flatten)]
    #[serde(flatten)]
    data: TextDataArgs,
    #[command(flatten)]
    #[serde(flatten)]
    run: RunArgs,
    #[command(flatten)]
    #[serde(flatten)]
    step: StepArgs,
    /// Epochs to train (on --resume: the total, counting those done)
    #[arg(long, default_value_t = 10, value_parser = at_least_one)]
    epochs: usize,
    /// Sentences per batch
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    batch_size: usize,
    /// The learning rate (an ARAE's autoencoder's)
    #[arg(long, default_value_t = 1e-3, value_parser = positive)]
    lr: f64,
    /// Token embedding size
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    embed: usize,
    /// GRU hidden units
    #[arg(long, default_value_t = 256, value_parser = at_least_one)]
    hidden: usize,
    /// Seed of the weights, the shuffling, the noise and the built-in sentences
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    train: TrainArgs,
    #[command(flatten)]
    #[serde(flatten)]
    optim: OptimArgs,
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
    /// The run directory
    #[arg(long, default_value = "runs/text-vae")]
    out: PathBuf,
}

/// `train text-gan`: an ARAE.
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct GanArgs {
    #[command(flatten)]
    #[serde(flatten)]
    train: TrainArgs,
    /// The generator's and critic's learning rate (Adam, betas 0.5, 0.9)
    #[arg(long, default_value_t = 1e-4, value_parser = positive)]
    lr_gan: f64,
    /// Dimensions of the code space (the unit sphere)
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    code: usize,
    /// Dimensions of the generator's noise
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    noise: usize,
    /// Hidden width of the generator's and the critic's two layers
    #[arg(long, default_value_t = 256, value_parser = at_least_one)]
    gan_hidden: usize,
    /// Critic steps per generator step
    #[arg(long, default_value_t = 5, value_parser = at_least_one)]
    n_critic: usize,
    /// Weight of the critic's gradient penalty
    #[arg(long, default_value_t = 10.0, value_parser = non_negative)]
    gp_lambda: f64,
    /// Weight of the critic's gradient into the encoder
    #[arg(long, default_value_t = 0.01, value_parser = non_negative)]
    lambda_enc: f64,
    /// Gaussian noise on the codes while the autoencoder trains (annealed
    /// by 0.995 every 100 steps)
    #[arg(long, default_value_t = 0.1, value_parser = non_negative)]
    noise_std: f64,
    /// Probability that a decoder input token becomes the unknown token
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    word_dropout: f64,
    /// A one-directional encoder (default: bidirectional)
    #[arg(long)]
    unidirectional: bool,
    /// The run directory
    #[arg(long, default_value = "runs/text-gan")]
    out: PathBuf,
}

/// `train text-lm`: the language model that judges generated text.
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LmArgs {
    #[command(flatten)]
    #[serde(flatten)]
    train: TrainArgs,
    #[command(flatten)]
    #[serde(flatten)]
    optim: OptimArgs,
    /// The run directory
    #[arg(long, default_value = "runs/text-lm")]
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
fn lines(a: &TextDataArgs, seed: u64) -> Result<(Vec<String>, Level)> {
    let level = |default| match a.level {
        Some(LevelArg::Char) => Level::Char,
        Some(LevelArg::Word) => Level::Word,
        None => default,
    };
    let Some(path) = &a.text else {
        return Ok((
            text::synthetic_sentences(a.sentences, seed),
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

impl TextDataArgs {
    /// The training and held-out lines (the built-in sentences drawn with
    /// `seed`), and what they are, for messages.
    pub fn set(&self, seed: u64) -> Result<(TextSet, String)> {
        let (lines, level) = lines(self, seed)?;
        if lines.len() < 2 {
            return Err(Error::Usage(
                "a text of at least 2 lines is needed (training and held out)".into(),
            ));
        }
        let set = TextSet::split_fraction(&lines, level, self.train_fraction)?;
        let what = format!(
            "{} lines ({} held out) of {}, {} tokens of {}",
            set.train.len(),
            set.held_out.len(),
            self.text
                .as_ref()
                .map_or("the built-in sentences".to_string(), |p| p
                    .display()
                    .to_string()),
            set.vocab.len(),
            match level {
                Level::Char => "characters",
                Level::Word => "words",
            },
        );
        Ok((set, what))
    }
}

pub fn run(a: Args) -> Result<()> {
    let t = &a.train;
    let (set, what) = t.data.set(t.seed)?;
    let config = SentenceVaeConfig {
        vocab: set.vocab.len(),
        embed: t.embed,
        hidden: t.hidden,
        latent: a.latent,
        bidirectional: !a.unidirectional,
    };
    let model = super::args::for_training(|| SentenceVae::new(config, t.seed))?;
    let tc = TrainConfig {
        run: t.run.config(&a.out, t.epochs, TrainConfig::default().run),
        step: t.step.config(),
        optimizer: a.optim.config(OptimizerConfig::default().betas),
        batch_size: t.batch_size,
        lr: t.lr,
        word_dropout: a.word_dropout,
        kl_anneal_steps: a.kl_anneal_steps,
        free_bits: a.free_bits,
        seed: t.seed,
    };
    announce("a sentence VAE", model.num_parameters(), &what, t.epochs);
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
    finish(&TextModel::Vae(Box::new(model)), &set.vocab, t, &a.out)
}

/// The line before training: what trains on what.
fn announce(model: &str, parameters: usize, what: &str, epochs: usize) {
    println!(
        "training {model} ({parameters} parameters) on {what}, {}",
        count(epochs, "epoch")
    );
}

/// After training: five greedy samples and where the run is.
fn finish(model: &TextModel, vocab: &text::Vocab, t: &TrainArgs, out: &Path) -> Result<()> {
    model.as_module().eval();
    println!("samples (greedy):");
    for s in model.sample(5, t.data.max_len, 0.0, t.seed)? {
        println!("  {}", vocab.decode(&s));
    }
    println!("wrote {}", out.display());
    Ok(())
}

pub fn run_gan(a: GanArgs) -> Result<()> {
    let t = &a.train;
    let (set, what) = t.data.set(t.seed)?;
    let config = AraeConfig {
        vocab: set.vocab.len(),
        embed: t.embed,
        hidden: t.hidden,
        code: a.code,
        bidirectional: !a.unidirectional,
        noise: a.noise,
        g_hidden: vec![a.gan_hidden; 2],
        d_hidden: vec![a.gan_hidden; 2],
    };
    let model = super::args::for_training(|| Arae::new(config, t.seed))?;
    let defaults = AraeTrainConfig::default();
    let tc = AraeTrainConfig {
        run: t.run.config(&a.out, t.epochs, defaults.run.clone()),
        step: t.step.config(),
        batch_size: t.batch_size,
        lr_ae: t.lr,
        lr_gan: a.lr_gan,
        n_critic: a.n_critic,
        gp_lambda: a.gp_lambda,
        lambda_enc: a.lambda_enc,
        noise_std: a.noise_std,
        word_dropout: a.word_dropout,
        seed: t.seed,
        ..defaults
    };
    announce("an ARAE", model.num_parameters(), &what, t.epochs);
    let record = record(
        "train text-gan",
        &a,
        serde_json::json!({ "model": model.config }),
    );
    arae::train(&model, &set, &tc, &record, |r| {
        let v = |k: &str| r.get(k).unwrap_or(f64::NAN);
        println!(
            "epoch {}: reconstruction {:.2} nats/sentence, critic {:.3}, generator {:.3}; held-out {:.3} nats/token, \
             {:.1}% tokens right, critic gap {:.3}; {:.1} s",
            r.epoch + 1,
            v("train_reconstruction"),
            v("d_loss"),
            v("g_loss"),
            v("held_out_nats_per_token"),
            100.0 * v("held_out_token_accuracy"),
            v("critic_gap"),
            r.seconds
        );
    })?;
    finish(&TextModel::Arae(Box::new(model)), &set.vocab, t, &a.out)
}

pub fn run_lm(a: LmArgs) -> Result<()> {
    let t = &a.train;
    let (set, what) = t.data.set(t.seed)?;
    let config = LmConfig {
        vocab: set.vocab.len(),
        embed: t.embed,
        hidden: t.hidden,
    };
    let model = super::args::for_training(|| LanguageModel::new(config, t.seed))?;
    let tc = LmTrainConfig {
        run: t.run.config(&a.out, t.epochs, LmTrainConfig::default().run),
        step: t.step.config(),
        optimizer: a.optim.config(OptimizerConfig::default().betas),
        batch_size: t.batch_size,
        lr: t.lr,
        seed: t.seed,
    };
    announce("a language model", model.num_parameters(), &what, t.epochs);
    let record = record(
        "train text-lm",
        &a,
        serde_json::json!({ "model": model.config }),
    );
    lm::train(&model, &set, &tc, &record, |r| {
        let v = |k: &str| r.get(k).unwrap_or(f64::NAN);
        println!(
            "epoch {}: train {:.3} nats/token; held-out {:.3} nats/token, perplexity {:.2}; {:.1} s",
            r.epoch + 1,
            v("train_nats_per_token"),
            v("held_out_nats_per_token"),
            v("held_out_perplexity"),
            r.seconds
        );
    })?;
    finish(&TextModel::Lm(Box::new(model)), &set.vocab, t, &a.out)
}
