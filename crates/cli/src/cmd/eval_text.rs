//! `deepgen eval text`: held-out measures of a sentence VAE (negative ELBO
//! and IWAE bound per token, KL, active units), an ARAE (reconstruction,
//! critic gap) or a language model (perplexity), and with `--judge` the
//! forward perplexity of the model's samples under a language model of the
//! real training lines, beside the judge's perplexity on the held-out lines.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use deepgen_cli::{Error, Result};
use deepgen_data::text::{batch, Vocab};
use deepgen_nn::Module;
use deepgen_text::lm::{perplexity, LanguageModel};
use deepgen_text::model::TextModel;
use deepgen_text::{arae, trainer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;

use super::args::{at_least_one, non_negative};
use super::sample::Loaded;
use super::train_text::TextDataArgs;

#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    data: TextDataArgs,
    /// A text model's model.safetensors (`train text-vae`, `text-gan` or `text-lm`)
    #[arg(long)]
    checkpoint: PathBuf,
    /// A language model of the same training lines (`train text-lm`) to
    /// judge the model's samples (forward perplexity)
    #[arg(long)]
    judge: Option<PathBuf>,
    /// Importance samples per sentence of the IWAE bound (sentence VAE)
    #[arg(long, default_value_t = 20, value_parser = at_least_one)]
    iwae_samples: usize,
    /// Sentences the judge scores
    #[arg(long, default_value_t = 1000, value_parser = at_least_one)]
    samples: usize,
    /// Softmax temperature of the judged samples (0: greedy)
    #[arg(long, default_value_t = 1.0, value_parser = non_negative)]
    temperature: f64,
    /// Seed of the built-in sentences (as in training) and of the noise
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write the figures to this JSON file
    #[arg(long)]
    json: Option<PathBuf>,
}

/// A text model and its vocabulary from `path`.
fn text_model(path: &Path) -> Result<(TextModel, Vocab)> {
    match Loaded::read(path)?.0 {
        Loaded::Text(m, v) => Ok((m, v)),
        _ => Err(Error::Usage(format!(
            "{}: not a text model (train one with `deepgen train text-vae`, `text-gan` or `text-lm`)",
            path.display()
        ))),
    }
}

/// Refuses a vocabulary other than the data's: ids would mean other tokens.
fn same_vocab(path: &Path, vocab: &Vocab, data: &Vocab) -> Result<()> {
    if vocab.to_text() != data.to_text() {
        return Err(Error::Usage(format!(
            "{}: its vocabulary ({} tokens) is not the one of these lines ({}); give the \
             --text, --level, --max-len, --train-fraction (and, for the built-in sentences, \
             --sentences and --seed) it was trained with",
            path.display(),
            vocab.len(),
            data.len()
        )));
    }
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    let (model, vocab) = text_model(&a.checkpoint)?;
    let (set, what) = a.data.set(a.seed)?;
    same_vocab(&a.checkpoint, &vocab, &set.vocab)?;
    model.as_module().eval();
    println!("{} on the held-out part of {what}", model.kind());
    let held = &set.held_out;
    let mut out = json!({ "model": model.kind(), "held_out_lines": held.len() });
    match &model {
        TextModel::Vae(m) => {
            let e = trainer::evaluate(m, held, 256, a.seed)?;
            let rng = &mut ChaCha8Rng::seed_from_u64(a.seed);
            let (mut elbo, mut iwae, mut tokens) = (0.0, 0.0, 0usize);
            for chunk in held.chunks(64) {
                let refs: Vec<&[usize]> = chunk.iter().map(Vec::as_slice).collect();
                let b = batch(&refs);
                let (e, w) = m.bounds(&b, a.iwae_samples, rng)?;
                elbo += e.iter().sum::<f64>();
                iwae += w.iter().sum::<f64>();
                tokens += b.lengths.iter().sum::<usize>();
            }
            let t = tokens.max(1) as f64;
            println!(
                "  -ELBO {:.4} nats/token ({:.2} per line: reconstruction {:.2} + KL {:.2}); \
                 IWAE bound (k = {}) {:.4} nats/token, perplexity <= {:.3}; {} of {} latent units active",
                -elbo / t,
                -elbo / held.len() as f64,
                e.reconstruction,
                e.kl,
                a.iwae_samples,
                -iwae / t,
                (-iwae / t).exp(),
                e.active_units,
                m.config.latent
            );
            out["neg_elbo_per_token"] = json!(-elbo / t);
            out["iwae_per_token"] = json!(-iwae / t);
            out["iwae_k"] = json!(a.iwae_samples);
            out["kl_per_line"] = json!(e.kl);
            out["active_units"] = json!(e.active_units);
        }
        TextModel::Arae(m) => {
            let e = arae::evaluate(m, held, 256, a.seed)?;
            println!(
                "  reconstruction {:.4} nats/token, {:.1}% of tokens decoded right; critic gap {:.4}",
                e.nats_per_token,
                100.0 * e.token_accuracy,
                e.critic_gap
            );
            out["reconstruction_per_token"] = json!(e.nats_per_token);
            out["token_accuracy"] = json!(e.token_accuracy);
            out["critic_gap"] = json!(e.critic_gap);
        }
        TextModel::Lm(m) => {
            let p = perplexity(m, held, 256)?;
            println!(
                "  {:.4} nats/token, perplexity {:.3}",
                p.nats_per_token, p.perplexity
            );
            out["nats_per_token"] = json!(p.nats_per_token);
            out["perplexity"] = json!(p.perplexity);
        }
    }
    if let Some(path) = &a.judge {
        out["judge"] = judge(&a, path, &model, &set.vocab, held)?;
    }
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&out).expect("JSON values serialise");
        deepgen_train::run::write_file(path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Forward perplexity of the model's samples, the judge's perplexity of
/// the real held-out lines, and the share of distinct samples.
fn judge(
    a: &Args,
    path: &Path,
    model: &TextModel,
    vocab: &Vocab,
    held: &[Vec<usize>],
) -> Result<serde_json::Value> {
    let (judge, judge_vocab) = text_model(path)?;
    let TextModel::Lm(judge) = judge else {
        return Err(Error::Usage(format!(
            "--judge {}: {}, not a language model (`deepgen train text-lm`)",
            path.display(),
            judge.kind()
        )));
    };
    same_vocab(path, &judge_vocab, vocab)?;
    let judge: &LanguageModel = &judge;
    judge.eval();
    let samples = model.sample(a.samples, a.data.max_len, a.temperature, a.seed ^ 0x5a3)?;
    let forward = perplexity(judge, &samples, 256)?;
    let real = perplexity(judge, held, 256)?;
    let distinct = samples.iter().collect::<HashSet<_>>().len() as f64 / samples.len() as f64;
    println!(
        "  judged by {}: forward perplexity of {} samples (temperature {}) {:.3}; \
         real held-out lines {:.3}; {:.1}% of samples distinct",
        path.display(),
        samples.len(),
        a.temperature,
        forward.perplexity,
        real.perplexity,
        100.0 * distinct
    );
    for s in samples.iter().take(5) {
        println!("    {}", vocab.decode(s));
    }
    Ok(json!({
        "forward_perplexity": forward.perplexity,
        "real_perplexity": real.perplexity,
        "distinct": distinct,
        "samples": a.samples,
        "temperature": a.temperature,
        "examples": samples.iter().take(5).map(|s| vocab.decode(s)).collect::<Vec<_>>(),
    }))
}
