//! Sentence-VAE training on the deepgen-train runtime: the step is the
//! negative ELBO with word dropout, the KL weight annealed linearly over
//! the first steps and free bits; each epoch ends with the held-out
//! negative ELBO per token, the KL per sentence and the active units, and
//! a checkpoint of the model (its config and vocabulary in the metadata),
//! its optimizer and the noise generator.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use deepgen_autograd::{no_grad, Tensor};
use deepgen_data::text::{batch, LineSet, TextSet, Vocab};
use deepgen_data::{Batch, DataLoader, Dataset, LoaderConfig};
use deepgen_nn::{checkpoint, Module};
use deepgen_train::{
    At, Chart, Checkpoint, EpochRecord, OnEpoch, OptimizerConfig, Restored, RunConfig, StepConfig,
    StepValues, Task, Updater,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{active_units, Objective, SentenceVae, SentenceVaeConfig};

/// Metadata key of the model's config (JSON) in its checkpoint.
pub const CONFIG_KEY: &str = "deepgen.text";
/// Metadata key of the vocabulary ([`Vocab::to_text`]).
pub const VOCAB_KEY: &str = "deepgen.text.vocab";

/// Training settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainConfig {
    pub run: RunConfig,
    pub step: StepConfig,
    pub optimizer: OptimizerConfig,
    pub batch_size: usize,
    pub lr: f64,
    /// Decoder inputs dropped to `<unk>` (Bowman et al.: 0.25-0.5 helps
    /// the latent carry the sentence).
    pub word_dropout: f64,
    /// Steps over which the KL weight rises linearly from 0 to 1.
    pub kl_anneal_steps: usize,
    /// Free bits per latent dimension (nats; 0 for none).
    pub free_bits: f64,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            run: RunConfig {
                out_dir: "runs/text-vae".into(),
                epochs: 10,
                monitor: Some("held_out_loss".into()),
                ..Default::default()
            },
            step: StepConfig::default(),
            optimizer: OptimizerConfig::default(),
            batch_size: 32,
            lr: 1e-3,
            word_dropout: 0.3,
            kl_anneal_steps: 2000,
            free_bits: 0.1,
            seed: 0,
        }
    }
}

/// Held-out figures: the negative ELBO per sentence and per token (one
/// posterior sample from a fixed seed), its reconstruction and KL parts,
/// and the active units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub reconstruction: f64,
    pub kl: f64,
    pub nats_per_token: f64,
    pub active_units: usize,
}

/// The negative ELBO of `lines` in batches of `batch_size`.
pub fn evaluate(
    model: &SentenceVae,
    lines: &[Vec<usize>],
    batch_size: usize,
    seed: u64,
) -> crate::Result<Evaluation> {
    let rng = &mut ChaCha8Rng::seed_from_u64(seed);
    let (mut rec, mut kl, mut tokens, mut mus) = (0.0, 0.0, 0.0, Vec::new());
    for chunk in lines.chunks(batch_size.max(1)) {
        let refs: Vec<&[usize]> = chunk.iter().map(Vec::as_slice).collect();
        let b = batch(&refs);
        let eps = Tensor::randn(&[chunk.len(), model.config.latent], 0.0, 1.0, rng);
        let t = no_grad(|| model.terms(&b, &eps, Objective::default(), rng))?;
        let n = chunk.len() as f64;
        (rec, kl, tokens) = (
            rec + t.reconstruction * n,
            kl + t.kl * n,
            tokens + t.tokens * n,
        );
        // The posterior means of the same pass: no second encoding.
        mus.extend(t.mu.to_vec().iter().map(|&v| f64::from(v)));
    }
    let n = lines.len().max(1) as f64;
    Ok(Evaluation {
        loss: (rec + kl) / n,
        reconstruction: rec / n,
        kl: kl / n,
        nats_per_token: (rec + kl) / tokens.max(1.0),
        active_units: active_units(&mus, model.config.latent, 0.01),
    })
}

/// The checkpoint metadata of a model and its vocabulary.
pub fn metadata(model: &SentenceVae, vocab: &Vocab) -> HashMap<String, String> {
    metadata_of(CONFIG_KEY, &model.config, vocab)
}

/// A model's config (JSON under `key`) and the vocabulary, as checkpoint
/// metadata.
pub(crate) fn metadata_of(
    key: &str,
    config: &impl serde::Serialize,
    vocab: &Vocab,
) -> HashMap<String, String> {
    let config = serde_json::to_string(config).expect("configs serialise");
    HashMap::from([
        (key.to_string(), config),
        (VOCAB_KEY.to_string(), vocab.to_text()),
    ])
}

/// A model and its vocabulary from a checkpoint written by [`train`].
pub fn load(path: &Path) -> crate::Result<(SentenceVae, Vocab)> {
    let (tensors, meta) = checkpoint::load_tensors(path)?;
    from_loaded(path, tensors, &meta)
}

/// [`load`] on a file already read (`path` names it in errors).
pub fn from_loaded(
    path: &Path,
    tensors: Vec<(String, checkpoint::TensorData)>,
    meta: &HashMap<String, String>,
) -> crate::Result<(SentenceVae, Vocab)> {
    load_model(path, tensors, meta, CONFIG_KEY, "a sentence VAE", |c| {
        let c: SentenceVaeConfig = c;
        Ok((c.vocab, SentenceVae::new(c, 0)?))
    })
}

/// A text model from a file already read: its config from the metadata
/// under `key` (`what` names the kind in errors), `build` makes it (and
/// says its vocabulary size), then the weights load strictly.
pub(crate) fn load_model<C: serde::de::DeserializeOwned, M: Module<f32>>(
    path: &Path,
    tensors: Vec<(String, checkpoint::TensorData)>,
    meta: &HashMap<String, String>,
    key: &str,
    what: &str,
    build: impl FnOnce(C) -> crate::Result<(usize, M)>,
) -> crate::Result<(M, Vocab)> {
    let bad = |msg: String| deepgen_nn::Error::Invalid {
        op: "text checkpoint",
        msg: format!("{}: {msg}", path.display()),
    };
    let config: C = serde_json::from_str(
        meta.get(key)
            .ok_or_else(|| bad(format!("not {what} (no {key} metadata)")))?,
    )
    .map_err(|e| bad(format!("unreadable config: {e}")))?;
    let vocab = Vocab::from_text(
        meta.get(VOCAB_KEY)
            .ok_or_else(|| bad("no vocabulary".into()))?,
    )
    .map_err(|e| bad(e.to_string()))?;
    let (size, model) = checkpoint::within_file(path, &tensors, || build(config))?;
    if vocab.len() != size {
        return Err(bad(format!(
            "a vocabulary of {} for a model of {size}",
            vocab.len()
        )));
    }
    checkpoint::load_entries(&model, path, tensors, true)?;
    Ok((model, vocab))
}

/// A shuffling loader over training lines.
pub(crate) fn loader(
    lines: &[Vec<usize>],
    batch_size: usize,
    seed: u64,
) -> deepgen_train::Result<DataLoader> {
    let data: Arc<dyn Dataset> = Arc::new(LineSet {
        lines: lines.to_vec(),
    });
    Ok(DataLoader::new(
        data,
        LoaderConfig {
            batch_size,
            seed,
            ..Default::default()
        },
    )?)
}

/// Whether a checkpoint's metadata is a text model's (a sentence VAE, an
/// ARAE, a language model).
pub fn is_text_checkpoint(meta: &HashMap<String, String>) -> bool {
    [CONFIG_KEY, crate::arae::ARAE_KEY, crate::lm::LM_KEY]
        .iter()
        .any(|k| meta.contains_key(*k))
}

struct TextTask<'a> {
    model: &'a SentenceVae,
    set: &'a TextSet,
    updater: Updater,
    rng: ChaCha8Rng,
    config: &'a TrainConfig,
    batches: usize,
}

impl Task for TextTask<'_> {
    fn step_columns(&self) -> Vec<String> {
        ["train_loss", "train_reconstruction", "train_kl"]
            .map(String::from)
            .to_vec()
    }

    fn epoch_columns(&self) -> Vec<String> {
        [
            "held_out_loss",
            "held_out_reconstruction",
            "held_out_kl",
            "held_out_nats_per_token",
            "active_units",
        ]
        .map(String::from)
        .to_vec()
    }

    fn step(&mut self, b: Batch, at: At) -> deepgen_train::Result<StepValues> {
        let c = self.config;
        let lines: Vec<&[usize]> = b
            .indices
            .iter()
            .map(|&i| self.set.train[i].as_slice())
            .collect();
        let step = at.epoch * self.batches + at.batch;
        let beta = match c.kl_anneal_steps {
            0 => 1.0,
            s => (step as f64 / s as f64).min(1.0),
        };
        let objective = Objective {
            beta,
            word_dropout: c.word_dropout,
            free_bits: c.free_bits,
        };
        // The global batch's noise, of which this rank takes its rows.
        let share = b.share;
        let eps = Tensor::randn(
            &[share.global, self.model.config.latent],
            0.0,
            1.0,
            &mut self.rng,
        );
        let eps = share.rows(eps)?;
        let mut tb = batch(&lines);
        (tb.first_row, tb.global_rows) = (share.offset, share.global);
        let t = self
            .model
            .terms(&tb, &eps, objective, &mut self.rng)
            .map_err(nn)?;
        self.updater.backward_step(t.loss)?;
        Ok(StepValues {
            items: lines.len(),
            values: vec![
                Some(t.reconstruction + t.kl),
                Some(t.reconstruction),
                Some(t.kl),
            ],
        })
    }

    fn end_epoch(&mut self, _epoch: usize) -> deepgen_train::Result<Vec<Option<f64>>> {
        self.model.eval();
        let e = evaluate(
            self.model,
            &self.set.held_out,
            256,
            self.config.seed ^ 0xe7a1,
        )
        .map_err(nn);
        self.model.train();
        let e = e?;
        Ok(vec![
            Some(e.loss),
            Some(e.reconstruction),
            Some(e.kl),
            Some(e.nats_per_token),
            Some(e.active_units as f64),
        ])
    }

    fn charts(&self) -> Vec<Chart> {
        let columns = [("train_loss", "train"), ("held_out_loss", "held-out")];
        vec![Chart::of(
            "loss.png",
            "negative ELBO",
            "nats per sentence",
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
        c.module("model", self.model, metadata(self.model, &self.set.vocab))?;
        c.updater(&self.updater)?;
        c.rng("noise", &self.rng);
        Ok(())
    }

    fn restore(&mut self, r: &Restored) -> deepgen_train::Result<()> {
        r.module("model", self.model)?;
        r.updater(&mut self.updater)?;
        r.rng("noise", &mut self.rng)
    }
}

/// One optimizer over `params` at `lr`, its schedule sized by `batches`
/// steps an epoch for `epochs`: the VAE's, the language model's and each of
/// the ARAE's three.
pub(crate) fn updater(
    name: &str,
    optimizer: &OptimizerConfig,
    params: Vec<deepgen_autograd::Var<f32>>,
    lr: f64,
    step: &StepConfig,
    batches: usize,
    epochs: usize,
) -> deepgen_train::Result<Updater> {
    let opt = optimizer.build_groups(vec![(params, lr)])?;
    Updater::new(name, opt, step, batches, epochs)
}

pub(crate) fn nn(e: deepgen_nn::Error) -> deepgen_train::Error {
    deepgen_train::Error::Model(Box::new(e))
}

/// Trains `model` on `set`'s training lines, in place, calling `on_epoch`
/// after each epoch; `record` is what `config.json` holds. Returns every
/// epoch's record (the columns of `metrics.csv`).
pub fn train(
    model: &SentenceVae,
    set: &TextSet,
    config: &TrainConfig,
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
    let mut task = TextTask {
        model,
        set,
        updater,
        rng: ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(1)),
        config,
        batches: loader.num_batches(),
    };
    fit(model, &mut task, &loader, &config.run, record, on_epoch)
}

/// Trains `model` through `task` (the text models' common loop: training
/// mode, `fit`, `on_epoch` after each epoch); returns every epoch's record.
pub(crate) fn fit(
    model: &dyn Module<f32>,
    task: &mut dyn Task,
    loader: &DataLoader,
    run: &RunConfig,
    record: &serde_json::Value,
    mut on_epoch: impl FnMut(&EpochRecord),
) -> deepgen_train::Result<Vec<EpochRecord>> {
    model.train();
    let mut hook = OnEpoch(|r: &EpochRecord| on_epoch(r));
    Ok(deepgen_train::fit(task, loader, run, record, &mut [&mut hook])?.history)
}
