//! VAE training on the deepgen-train runtime: the step is the negative
//! ELBO (with KL warm-up) through [`Updater::backward_step`]; each epoch
//! ends with a held-out evaluation, sample and reconstruction grids, and a
//! checkpoint of the model, its optimizer and the noise generator.

use std::sync::Arc;

use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_data::{Batch, DataLoader, Dataset, LoaderConfig, Scale};
use deepgen_nn::Module;
use deepgen_train::{
    At, Chart, Checkpoint, EpochRecord, OnEpoch, OptimizerConfig, Picture, Restored, RunConfig,
    StepConfig, StepValues, Task, Updater,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{elbo, Error, Result, Vae};

/// Training settings (pytorch/examples' defaults: Adam 1e-3, batch 128).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainConfig {
    /// The run: directory, epochs, resume, progress, pictures, logs.
    pub run: RunConfig,
    /// Schedule, warm-up, clipping, accumulation.
    pub step: StepConfig,
    /// Which optimizer (Adam by default) and its options.
    pub optimizer: OptimizerConfig,
    pub batch_size: usize,
    pub lr: f64,
    /// Weight of the KL term.
    pub beta: f64,
    /// Epochs over which the KL weight rises linearly from 0 to `beta` (0: none).
    pub kl_warmup_epochs: usize,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            run: RunConfig {
                out_dir: "runs/vae".into(),
                epochs: 10,
                monitor: Some("held_out_loss".into()),
                ..Default::default()
            },
            step: StepConfig::default(),
            optimizer: OptimizerConfig::default(),
            batch_size: 128,
            lr: 1e-3,
            beta: 1.0,
            kl_warmup_epochs: 0,
            seed: 0,
        }
    }
}

/// Per-example losses (nats) of one epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_reconstruction: f64,
    pub train_kl: f64,
    /// (loss, reconstruction, KL) on the held-out set, when one is given.
    pub held_out: Option<(f64, f64, f64)>,
    pub seconds: f64,
    pub images_per_second: f64,
}

impl EpochMetrics {
    fn from_record(r: &EpochRecord) -> Self {
        let v = |name: &str| r.get(name).unwrap_or(f64::NAN);
        let held = match (
            r.get("held_out_loss"),
            r.get("held_out_reconstruction"),
            r.get("held_out_kl"),
        ) {
            (Some(a), Some(b), Some(c)) => Some((a, b, c)),
            _ => None,
        };
        EpochMetrics {
            epoch: r.epoch,
            train_loss: v("train_loss"),
            train_reconstruction: v("train_reconstruction"),
            train_kl: v("train_kl"),
            held_out: held,
            seconds: r.seconds,
            images_per_second: r.items_per_second,
        }
    }
}

/// Mean negative ELBO, reconstruction and KL over a data set (one posterior
/// sample per image, from a fixed seed so epochs compare).
pub fn evaluate(
    model: &Vae,
    data: Arc<dyn Dataset>,
    batch_size: usize,
    seed: u64,
) -> Result<(f64, f64, f64)> {
    let loader = DataLoader::new(
        data,
        LoaderConfig {
            batch_size,
            shuffle: false,
            ..Default::default()
        },
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut loss, mut rec, mut kl, mut n) = (0.0, 0.0, 0.0, 0usize);
    for batch in loader.epoch(0) {
        let batch = batch?;
        let b = batch.indices.len();
        let eps = Var::constant(model.noise(b, &mut rng));
        let e = no_grad(|| elbo(model, &Var::constant(batch.images), &eps, 1.0))?;
        loss += e.loss.item()? as f64 * b as f64;
        rec += e.reconstruction * b as f64;
        kl += e.kl * b as f64;
        n += b;
    }
    let n = n.max(1) as f64;
    Ok((loss / n, rec / n, kl / n))
}

/// The VAE's step function and checkpoint contents.
struct VaeTask<'a> {
    model: &'a Vae,
    updater: Updater,
    rng: ChaCha8Rng,
    config: &'a TrainConfig,
    batches: usize,
    data: Arc<dyn Dataset>,
    held_out: Option<Arc<dyn Dataset>>,
    /// Fixed latent points for the sample grids, so epochs compare.
    fixed_z: Tensor<f32>,
}

impl Task for VaeTask<'_> {
    fn step_columns(&self) -> Vec<String> {
        ["train_loss", "train_reconstruction", "train_kl"]
            .map(String::from)
            .to_vec()
    }

    fn epoch_columns(&self) -> Vec<String> {
        ["held_out_loss", "held_out_reconstruction", "held_out_kl"]
            .map(String::from)
            .to_vec()
    }

    fn step(&mut self, batch: Batch, at: At) -> deepgen_train::Result<StepValues> {
        let c = self.config;
        let n = batch.indices.len();
        let beta = match c.kl_warmup_epochs {
            0 => c.beta,
            w => {
                c.beta
                    * ((at.epoch as f64 + at.batch as f64 / self.batches as f64) / w as f64)
                        .min(1.0)
            }
        };
        // The whole global batch's noise, of which this rank takes its rows.
        let noise = self.model.noise(batch.share.global, &mut self.rng);
        let eps = Var::constant(batch.share.rows(noise)?);
        let e = elbo(self.model, &Var::constant(batch.images), &eps, beta)?;
        let (r, k) = (e.reconstruction, e.kl);
        self.updater.backward_step(e.loss)?;
        Ok(StepValues {
            items: n,
            values: vec![Some(r + k), Some(r), Some(k)],
        })
    }

    fn end_epoch(&mut self, _epoch: usize) -> deepgen_train::Result<Vec<Option<f64>>> {
        Ok(match &self.held_out {
            Some(d) => {
                let (l, r, k) = evaluate(self.model, d.clone(), 500, self.config.seed ^ 0xe7a1)?;
                vec![Some(l), Some(r), Some(k)]
            }
            None => vec![None; 3],
        })
    }

    fn pictures(&mut self) -> deepgen_train::Result<Vec<Picture>> {
        let data = self.held_out.as_ref().unwrap_or(&self.data);
        Ok(no_grad(|| -> Result<Vec<Picture>> {
            let samples = crate::generate::decode_means(self.model, self.fixed_z.clone())?;
            let loader = DataLoader::new(
                data.clone(),
                LoaderConfig {
                    batch_size: 32,
                    shuffle: false,
                    ..Default::default()
                },
            )?;
            let x = loader.batch((0..32.min(data.len())).collect())?.images;
            let grid = crate::generate::reconstruction_grid(self.model, &x)?;
            let picture = |name: &str, images| Picture {
                name: name.into(),
                images,
                range: (0.0, 1.0),
            };
            Ok(vec![
                picture("samples", samples),
                picture("reconstructions", grid),
            ])
        })?)
    }

    fn charts(&self) -> Vec<Chart> {
        let columns = [("train_loss", "train"), ("held_out_loss", "held-out")];
        vec![Chart::of(
            "loss.png",
            "negative ELBO",
            "nats per example",
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
        c.module("model", self.model, self.model.metadata())?;
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

/// How much faster a codec's prior learns than its networks. The prior is a
/// location and log-scale per latent value, and every value the encoder
/// leaves unused costs about 1.4 nats under the initial unit-scale
/// logistic until its scale shrinks: at the networks' rate (Adam moves a
/// parameter about `lr` per step) that takes tens of epochs.
pub const PRIOR_LR_FACTOR: f64 = 10.0;

/// The optimizer's parameter groups: the whole model at `lr`, or for a
/// codec the networks at `lr` and the prior at `lr * PRIOR_LR_FACTOR`.
fn param_groups(model: &Vae, lr: f64) -> Vec<(Vec<Var<f32>>, f64)> {
    match model.prior() {
        None => vec![(model.parameters(), lr)],
        Some((loc, log_scale)) => {
            let prior = [loc.id(), log_scale.id()];
            let net = model
                .parameters()
                .into_iter()
                .filter(|p| !prior.contains(&p.id()))
                .collect();
            vec![
                (net, lr),
                (vec![loc.clone(), log_scale.clone()], lr * PRIOR_LR_FACTOR),
            ]
        }
    }
}

/// The JSON of a run's settings for `config.json`.
pub fn record(model: &Vae, config: &TrainConfig) -> serde_json::Value {
    serde_json::json!({ "model": model.config, "training": config })
}

/// Trains `model` in place; calls `on_epoch` after each epoch. `record` is
/// what `config.json` holds (see [`record`]; the CLI passes its flags).
pub fn train_with_record(
    model: &Vae,
    data: Arc<dyn Dataset>,
    held_out: Option<Arc<dyn Dataset>>,
    config: &TrainConfig,
    record: &serde_json::Value,
    on_epoch: impl FnMut(&EpochMetrics),
) -> Result<Vec<EpochMetrics>> {
    if data.item_shape() != model.image_shape() {
        return Err(Error::Invalid {
            op: "train_vae",
            msg: format!(
                "images of shape {:?} for a model of {:?}",
                data.item_shape(),
                model.image_shape()
            ),
        });
    }
    let loader = DataLoader::new(
        data.clone(),
        LoaderConfig {
            batch_size: config.batch_size,
            seed: config.seed,
            scale: Scale::ZeroOne,
            ..Default::default()
        },
    )?;
    let optimizer = config
        .optimizer
        .build_groups(param_groups(model, config.lr))?;
    let updater = Updater::new(
        "model",
        optimizer,
        &config.step,
        loader.num_batches(),
        config.run.epochs,
    )?;
    let run = config.run.clone().watching_train_without_held_out(
        held_out.is_some(),
        "held_out_loss",
        "train_loss",
    );
    let mut task = VaeTask {
        model,
        updater,
        rng: ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(1)),
        config,
        batches: loader.num_batches(),
        data,
        held_out,
        fixed_z: model.prior_sample(64, &mut ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed)),
    };
    model.train();
    let mut on_epoch = on_epoch;
    let mut hook = OnEpoch(|r: &EpochRecord| on_epoch(&EpochMetrics::from_record(r)));
    let fitted = deepgen_train::fit(&mut task, &loader, &run, record, &mut [&mut hook])?;
    Ok(fitted
        .history
        .iter()
        .map(EpochMetrics::from_record)
        .collect())
}

/// Trains `model` in place, recording its config and these settings.
///
/// Two short epochs on synthetic digits, written to a temporary run
/// directory:
///
/// ```
/// use std::sync::Arc;
/// use deepgen_data::{synthetic, Dataset};
/// use deepgen_train::RunConfig;
/// use deepgen_vae::trainer::{train, TrainConfig};
/// use deepgen_vae::{Vae, VaeConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let data: Arc<dyn Dataset> = Arc::new(synthetic::digits(64, 0)?);
/// let model = Vae::new(VaeConfig { hidden: 32, latent: 2, ..Default::default() }, 0)?;
/// let out_dir = std::env::temp_dir().join(format!("deepgen-doc-vae-{}", std::process::id()));
/// let run = RunConfig { out_dir: out_dir.clone(), epochs: 2, progress: false, images: false, tensorboard: false, ..TrainConfig::default().run };
/// let config = TrainConfig { run, batch_size: 16, ..Default::default() };
/// let history = train(&model, data, None, &config, |_| {});
/// std::fs::remove_dir_all(&out_dir)?;
/// let history = history?;
/// assert_eq!(history.len(), 2);
/// assert!(history[1].train_loss < history[0].train_loss);
/// # Ok(())
/// # }
/// ```
pub fn train(
    model: &Vae,
    data: Arc<dyn Dataset>,
    held_out: Option<Arc<dyn Dataset>>,
    config: &TrainConfig,
    on_epoch: impl FnMut(&EpochMetrics),
) -> Result<Vec<EpochMetrics>> {
    train_with_record(
        model,
        data,
        held_out,
        config,
        &record(model, config),
        on_epoch,
    )
}
