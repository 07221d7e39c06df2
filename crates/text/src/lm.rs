//! A recurrent language model: the judge of generated text.
//!
//! Trained on the real training lines, it scores other text by its
//! perplexity. A generator's *forward perplexity* (Zhao et al., ARAE,
//! 2018) is the judge's perplexity on the generator's samples: low when
//! the samples have the statistics of real text. The judge's perplexity
//! on the real held-out lines is the reference to read it against.

use std::collections::HashMap;
use std::path::Path;

use deepgen_autograd::{no_grad, Element, Var};
use deepgen_data::text::{batch, TextBatch, TextSet, Vocab, PAD};
use deepgen_data::Batch;
use deepgen_nn::loss::{cross_entropy_ignore, Reduction};
use deepgen_nn::{checkpoint, Embedding, Gru, Linear, Module, RnnConfig};
use deepgen_train::{
    At, Chart, Checkpoint, EpochRecord, OptimizerConfig, Restored, RunConfig, StepConfig,
    StepValues, Task, Updater,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::trainer::{fit, load_model, loader, metadata_of, nn, updater};
use crate::{Decoding, Result};

/// Metadata key of a language model's config.
pub const LM_KEY: &str = "deepgen.text.lm";

/// The sizes of a language model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LmConfig {
    pub vocab: usize,
    pub embed: usize,
    pub hidden: usize,
}

/// Embedding, GRU, softmax: state-dict names `embed`, `rnn`, `out`.
#[derive(Module)]
pub struct LanguageModel<T: Element = f32> {
    pub embed: Embedding<T>,
    pub rnn: Gru<T>,
    pub out: Linear<T>,
    #[module(skip)]
    pub config: LmConfig,
}

impl<T: Element> LanguageModel<T> {
    /// PyTorch-initialised from `seed`.
    pub fn new(config: LmConfig, seed: u64) -> Result<Self> {
        let rng = &mut ChaCha8Rng::seed_from_u64(seed);
        let rnn = RnnConfig {
            batch_first: true,
            ..Default::default()
        };
        Ok(LanguageModel {
            embed: Embedding::new(config.vocab, config.embed, rng),
            rnn: Gru::new(config.embed, config.hidden, rnn, rng)?,
            out: Linear::new(config.hidden, config.vocab, true, rng)?,
            config,
        })
    }

    fn decoding(&self) -> Decoding<'_, T> {
        Decoding {
            embed: &self.embed,
            fc_init: None,
            decoder: &self.rnn,
            out: &self.out,
            hidden: self.config.hidden,
        }
    }

    /// -log p of the batch's targets (tokens and `<eos>`), summed over
    /// tokens and sentences.
    pub fn nll(&self, b: &TextBatch) -> Result<Var<T>> {
        let (logits, _) = self
            .decoding()
            .decode(None, &b.inputs, &b.lengths, b.time)?;
        cross_entropy_ignore(&logits, &b.targets, PAD, Reduction::Sum)
    }

    /// `n` sentences sampled at `temperature` (0: greedy).
    pub fn generate<R: Rng + ?Sized>(
        &self,
        n: usize,
        max_len: usize,
        temperature: f64,
        rng: &mut R,
    ) -> Result<Vec<Vec<usize>>> {
        self.decoding().generate(None, n, max_len, temperature, rng)
    }
}

/// How likely a language model finds some lines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perplexity {
    /// Mean -log p per token (`<eos>` counted as a token), nats.
    pub nats_per_token: f64,
    /// exp(nats_per_token).
    pub perplexity: f64,
    pub tokens: usize,
}

/// The model's perplexity on `lines` (token ids of its vocabulary); empty
/// lines count their `<eos>`.
pub fn perplexity(
    model: &LanguageModel,
    lines: &[Vec<usize>],
    batch_size: usize,
) -> Result<Perplexity> {
    let (mut nats, mut tokens) = (0.0, 0);
    for chunk in lines.chunks(batch_size.max(1)) {
        let refs: Vec<&[usize]> = chunk.iter().map(Vec::as_slice).collect();
        let b = batch(&refs);
        nats += f64::from(no_grad(|| model.nll(&b))?.item()?);
        tokens += b.lengths.iter().sum::<usize>();
    }
    let per = nats / tokens.max(1) as f64;
    Ok(Perplexity {
        nats_per_token: per,
        perplexity: per.exp(),
        tokens,
    })
}

/// A language model and its vocabulary from a checkpoint file already
/// read (`path` names it in errors).
pub fn from_loaded(
    path: &Path,
    tensors: Vec<(String, checkpoint::TensorData)>,
    meta: &HashMap<String, String>,
) -> Result<(LanguageModel, Vocab)> {
    load_model(path, tensors, meta, LM_KEY, "a language model", |c| {
        let c: LmConfig = c;
        Ok((c.vocab, LanguageModel::new(c, 0)?))
    })
}

/// Training settings of a language model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LmTrainConfig {
    pub run: RunConfig,
    pub step: StepConfig,
    pub optimizer: OptimizerConfig,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
}

impl Default for LmTrainConfig {
    fn default() -> Self {
        LmTrainConfig {
            run: RunConfig {
                out_dir: "runs/text-lm".into(),
                epochs: 10,
                monitor: Some("held_out_perplexity".into()),
                ..Default::default()
            },
            step: StepConfig::default(),
            optimizer: OptimizerConfig::default(),
            batch_size: 32,
            lr: 1e-3,
            seed: 0,
        }
    }
}

struct LmTask<'a> {
    model: &'a LanguageModel,
    set: &'a TextSet,
    updater: Updater,
}

impl Task for LmTask<'_> {
    fn step_columns(&self) -> Vec<String> {
        vec!["train_nats_per_token".into()]
    }

    fn epoch_columns(&self) -> Vec<String> {
        ["held_out_nats_per_token", "held_out_perplexity"]
            .map(String::from)
            .to_vec()
    }

    fn step(&mut self, b: Batch, _at: At) -> deepgen_train::Result<StepValues> {
        let lines: Vec<&[usize]> = b
            .indices
            .iter()
            .map(|&i| self.set.train[i].as_slice())
            .collect();
        let weight = b.share.weight();
        let b = batch(&lines);
        // The mean over the global batch's tokens: the runtime weighs each
        // rank's loss by its share of the lines, so this rank's token sum is
        // divided by the global token count and by that weight.
        let mut tokens = [b.lengths.iter().sum::<usize>() as f64];
        deepgen_dist::world().sum_f64(&mut tokens);
        let scale = 1.0 / (tokens[0] * weight);
        let loss = self.model.nll(&b).map_err(nn)?.mul_scalar(scale as f32);
        let (value, _) = self.updater.backward_step(loss)?;
        Ok(StepValues::new(lines.len(), vec![Some(value)]))
    }

    fn end_epoch(&mut self, _epoch: usize) -> deepgen_train::Result<Vec<Option<f64>>> {
        self.model.eval();
        let p = perplexity(self.model, &self.set.held_out, 256).map_err(nn);
        self.model.train();
        let p = p?;
        Ok(vec![Some(p.nats_per_token), Some(p.perplexity)])
    }

    fn charts(&self) -> Vec<Chart> {
        let columns = [
            ("train_nats_per_token", "train"),
            ("held_out_nats_per_token", "held-out"),
        ];
        vec![Chart::of(
            "loss.png",
            "language model",
            "nats per token",
            &columns,
        )]
    }

    fn updaters(&mut self) -> Vec<&mut Updater> {
        vec![&mut self.updater]
    }

    fn modules(&self) -> Vec<(String, &dyn Module<f32>)> {
        vec![("model".into(), self.model as &dyn Module<f32>)]
    }

    fn save(&mut self, c: &mut Checkpoint) -> deepgen_train::Result<()> {
        c.module(
            "model",
            self.model,
            metadata_of(LM_KEY, &self.model.config, &self.set.vocab),
        )?;
        c.updater(&self.updater)
    }

    fn restore(&mut self, r: &Restored) -> deepgen_train::Result<()> {
        r.module("model", self.model)?;
        r.updater(&mut self.updater)
    }
}

/// Trains a language model on `set`'s training lines, in place, calling
/// `on_epoch` after each epoch; `record` is what `config.json` holds.
pub fn train(
    model: &LanguageModel,
    set: &TextSet,
    config: &LmTrainConfig,
    record: &serde_json::Value,
    on_epoch: impl FnMut(&EpochRecord),
) -> deepgen_train::Result<Vec<EpochRecord>> {
    let loader = loader(&set.train, config.batch_size, config.seed)?;
    let updater = updater(
        "model",
        &config.optimizer,
        model.parameters(),
        config.lr,
        &config.step,
        loader.num_batches(),
        config.run.epochs,
    )?;
    let mut task = LmTask {
        model,
        set,
        updater,
    };
    fit(model, &mut task, &loader, &config.run, record, on_epoch)
}
