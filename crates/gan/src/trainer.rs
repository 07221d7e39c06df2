//! GAN training on the deepgen-train runtime: alternating discriminator
//! and generator steps, each through its own [`Updater`] (Adam by default,
//! any optimizer, with the run's schedule, clipping and accumulation), a
//! sample grid from fixed noise per epoch, an optional EMA generator, and
//! exact resume.
//!
//! Each batch of real data makes one discriminator step, on the real batch
//! (target "real") and on generated samples that are detached, so the step
//! reaches only the discriminator. Every `n_critic`-th step is followed by
//! a generator step on the same generated batch, through the updated
//! discriminator (pytorch/examples' DCGAN order). The generator step takes
//! gradients with respect to the generator's parameters only
//! (`autograd::grad`), so the discriminator's parameters get no gradient at
//! all, and it puts back the discriminator's BatchNorm running statistics
//! after its forward pass: the discriminator runs in training mode (batch
//! statistics, as in PyTorch), yet a generator step leaves every
//! discriminator parameter, buffer and counter bit-identical.
//!
//! A NaN or infinite loss stops training (the runtime's
//! `Error::NonFinite`) before any optimizer steps on it; the previous
//! epoch's checkpoint stays.

use std::sync::Arc;

use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_data::{Batch, DataLoader, Dataset, LoaderConfig, Scale, Share};
use deepgen_nn::Module;
use deepgen_train::{
    At, Chart, Checkpoint, EpochRecord, OnEpoch, OptimizerConfig, Picture, Restored, RunConfig,
    StepConfig, StepValues, Task, Updater,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::loss::{discriminator_loss, generator_loss, gradient_penalty, r1_penalty, GanLoss};
use crate::net::{ema_update, restore_buffers, snapshot_buffers, Discriminator, Generator};
use crate::{Error, Result};

/// Training settings (DCGAN's defaults: Adam 2e-4, betas (0.5, 0.999), batch 64).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainConfig {
    /// The run: directory, epochs, resume, progress, pictures, logs.
    pub run: RunConfig,
    /// Schedule, warm-up, clipping and accumulation, for both optimizers
    /// (a linear decay to zero over the run is `Schedule::Linear`).
    pub step: StepConfig,
    pub batch_size: usize,
    /// Learning rate of the generator (and of the discriminator unless `lr_d` is set).
    pub lr: f64,
    pub lr_d: Option<f64>,
    /// Both nets' optimizer: Adam by default, with DCGAN's betas.
    pub optimizer: OptimizerConfig,
    pub loss: GanLoss,
    /// Discriminator steps per generator step.
    pub n_critic: usize,
    /// Weight of WGAN-GP's gradient penalty; used with [`GanLoss::Wasserstein`] (0: plain WGAN, unclipped).
    pub gp_lambda: f64,
    /// R1 penalty gamma / 2 * E ||grad D(x_real)||^2, with any loss.
    pub r1_gamma: Option<f64>,
    /// Keep an exponential moving average of the generator's weights with this decay.
    pub ema_decay: Option<f64>,
    /// How the loader scales data; None: raw values for points (`[2]`), `[-1, 1]` for images.
    #[serde(skip)]
    pub scale: Option<Scale>,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            run: RunConfig {
                out_dir: "runs/gan".into(),
                epochs: 25,
                ..Default::default()
            },
            step: StepConfig::default(),
            batch_size: 64,
            lr: 2e-4,
            lr_d: None,
            optimizer: OptimizerConfig::adam((0.5, 0.999)),
            loss: GanLoss::NonSaturating,
            n_critic: 1,
            gp_lambda: 10.0,
            r1_gamma: None,
            ema_decay: None,
            scale: None,
            seed: 0,
        }
    }
}

impl TrainConfig {
    /// WGAN-GP's settings (Gulrajani et al.): 5 critic steps per generator
    /// step, lambda 10, Adam 1e-4 with betas (0, 0.9).
    pub fn wgan_gp() -> Self {
        TrainConfig {
            loss: GanLoss::Wasserstein,
            n_critic: 5,
            gp_lambda: 10.0,
            lr: 1e-4,
            optimizer: OptimizerConfig::adam((0.0, 0.9)),
            ..Default::default()
        }
    }
}

/// Means over one epoch's steps. `d_real` / `d_fake` are the mean
/// discriminator outputs on real and generated data: probabilities
/// (sigmoid of the logits) for the logistic losses, raw outputs otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub d_loss: f64,
    pub g_loss: f64,
    pub d_real: f64,
    pub d_fake: f64,
    /// Mean gradient penalty (WGAN-GP) plus R1 penalty, before their weights.
    pub penalty: f64,
    pub generator_steps: usize,
    pub seconds: f64,
}

impl EpochMetrics {
    fn from_record(r: &EpochRecord) -> Self {
        let v = |name: &str| r.get(name).unwrap_or(f64::NAN);
        EpochMetrics {
            epoch: r.epoch,
            d_loss: v("d_loss"),
            g_loss: v("g_loss"),
            d_real: v("d_real"),
            d_fake: v("d_fake"),
            penalty: v("penalty"),
            generator_steps: r.get("generator_steps").unwrap_or(0.0) as usize,
            seconds: r.seconds,
        }
    }
}

/// What [`train`] returns: the epochs' metrics and, with `ema_decay`, the
/// averaged generator.
pub struct Trained {
    pub history: Vec<EpochMetrics>,
    pub ema: Option<Box<dyn Generator>>,
}

/// What one discriminator step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DStep {
    pub loss: f64,
    pub real: f64,
    pub fake: f64,
    pub penalty: f64,
}

fn mean_output(kind: GanLoss, out: &Var<f32>) -> f64 {
    let v = out.value().to_vec();
    let f = |x: f32| {
        if kind.is_logistic() {
            1.0 / (1.0 + (-x as f64).exp())
        } else {
            x as f64
        }
    };
    v.iter().map(|&x| f(x)).sum::<f64>() / v.len().max(1) as f64
}

/// One discriminator update on a real batch and a generated batch (values,
/// so nothing flows into the generator); `rng` draws the gradient-penalty
/// interpolation weights, for the whole of a data-parallel step's global
/// batch of which `share` says the rows this batch holds. The penalties'
/// `create_graph` gradients stay inside the loss (they never cross ranks);
/// only the final parameter gradients reach the updater.
#[allow(clippy::too_many_arguments)]
pub fn discriminator_step<R: Rng + ?Sized>(
    d: &dyn Discriminator,
    updater: &mut Updater,
    real: &Tensor<f32>,
    fake: &Tensor<f32>,
    labels: Option<&[usize]>,
    config: &TrainConfig,
    rng: &mut R,
    share: Share,
) -> Result<DStep> {
    let x = match config.r1_gamma {
        Some(_) => Var::parameter(real.clone()),
        None => Var::constant(real.clone()),
    };
    let r = d.score(&x, labels)?;
    let f = d.score(&Var::constant(fake.clone()), labels)?;
    let mut loss = discriminator_loss(config.loss, &r, &f)?;
    let mut penalty = 0.0;
    if config.loss == GanLoss::Wasserstein && config.gp_lambda > 0.0 {
        let all: Vec<f32> = (0..share.global).map(|_| rng.random()).collect();
        let eps = all
            .get(share.offset..share.offset + real.shape()[0])
            .ok_or_else(|| Error::Invalid {
                op: "discriminator_step",
                msg: format!("{share:?} does not fit a batch of {}", real.shape()[0]),
            })?;
        let gp = gradient_penalty(d, real, fake, eps, labels)?;
        penalty += gp.item()? as f64;
        loss = loss.add(&gp.mul_scalar(config.gp_lambda as f32))?;
    }
    if let Some(gamma) = config.r1_gamma {
        let r1 = r1_penalty(&x, &r)?;
        penalty += r1.item()? as f64;
        loss = loss.add(&r1.mul_scalar((gamma / 2.0) as f32))?;
    }
    let (real_out, fake_out) = (mean_output(config.loss, &r), mean_output(config.loss, &f));
    drop((r, f, x));
    let (value, _) = updater.backward_step(loss)?;
    Ok(DStep {
        loss: value,
        real: real_out,
        fake: fake_out,
        penalty,
    })
}

/// One generator update through `d`: `fake` must be the generator's output
/// with its graph, and `updater` the generator's. Only the generator's
/// parameters get gradients (the discriminator's weight gradients are not
/// even computed); `d`'s buffers and counters are restored after its
/// forward pass. Returns the loss.
pub fn generator_step(
    d: &dyn Discriminator,
    updater: &mut Updater,
    fake: Var<f32>,
    labels: Option<&[usize]>,
    kind: GanLoss,
) -> Result<f64> {
    let saved = snapshot_buffers(d.as_module());
    let out = d.score(&fake, labels);
    restore_buffers(d.as_module(), saved)?;
    drop(fake);
    let loss = generator_loss(kind, &out?)?;
    Ok(updater.backward_step(loss)?.0)
}

fn check_setup(
    g: &dyn Generator,
    d: &dyn Discriminator,
    data: &dyn Dataset,
    config: &TrainConfig,
) -> Result<()> {
    let bad = |msg: String| {
        Err(Error::Invalid {
            op: "train_gan",
            msg,
        })
    };
    let item = data.item_shape();
    if g.output_shape() != item || d.input_shape() != item {
        return bad(format!(
            "data items {item:?}, generator output {:?}, discriminator input {:?}",
            g.output_shape(),
            d.input_shape()
        ));
    }
    if g.num_classes() != d.num_classes() {
        return bad(format!(
            "generator over {} classes, discriminator over {}",
            classes(g.num_classes()),
            classes(d.num_classes())
        ));
    }
    if let Some(k) = g.num_classes() {
        match data.num_classes() {
            Some(c) if c <= k => {}
            other => return bad(format!("conditional nets over {k} classes need labelled data with at most {k} classes; the data has {}", classes(other))),
        }
    }
    if config.n_critic == 0 || config.batch_size < 2 {
        return bad(format!(
            "n_critic ({}) must be positive and the batch size ({}) at least 2",
            config.n_critic, config.batch_size
        ));
    }
    if let Some(e) = config.ema_decay.filter(|e| !(0.0..1.0).contains(e)) {
        return bad(format!("EMA decay {e} is not in [0, 1)"));
    }
    if !(config.gp_lambda >= 0.0 && config.gp_lambda.is_finite()) {
        return bad(format!(
            "the gradient penalty weight must be finite and >= 0, got {}",
            config.gp_lambda
        ));
    }
    if let Some(r1) = config.r1_gamma.filter(|r| !(*r >= 0.0 && r.is_finite())) {
        return bad(format!("R1 gamma must be finite and >= 0, got {r1}"));
    }
    if data.len() < config.batch_size {
        return bad(format!(
            "{} items do not fill one batch of {}",
            data.len(),
            config.batch_size
        ));
    }
    Ok(())
}

/// "no" or the count, for messages.
fn classes(k: Option<usize>) -> String {
    k.map_or("no".to_string(), |k| k.to_string())
}

/// The GAN's step function and checkpoint contents.
struct GanTask<'a> {
    g: &'a dyn Generator,
    d: &'a dyn Discriminator,
    ema: Option<Box<dyn Generator>>,
    opt_g: Updater,
    opt_d: Updater,
    rng: ChaCha8Rng,
    config: &'a TrainConfig,
    conditional: bool,
    generator_steps: usize,
    /// The generator updates the EMA has followed.
    ema_updates: u64,
    /// Fixed noise (and labels) for the sample grids, so epochs compare.
    fixed_z: Tensor<f32>,
    fixed_labels: Option<Vec<usize>>,
}

impl Task for GanTask<'_> {
    fn step_columns(&self) -> Vec<String> {
        ["d_loss", "g_loss", "d_real", "d_fake", "penalty"]
            .map(String::from)
            .to_vec()
    }

    fn epoch_columns(&self) -> Vec<String> {
        vec!["generator_steps".into()]
    }

    fn step(&mut self, batch: Batch, at: At) -> deepgen_train::Result<StepValues> {
        let (g, c) = (self.g, self.config);
        let n = batch.indices.len();
        let labels = batch.labels.as_deref().filter(|_| self.conditional);
        // The whole global batch's noise, of which this rank takes its rows.
        let share = batch.share;
        let z = Tensor::randn(&[share.global, g.latent_dim()], 0.0, 1.0, &mut self.rng);
        let z = Var::constant(share.rows(z)?);
        let g_turn = (at.batch + 1).is_multiple_of(c.n_critic);
        let fake = match g_turn {
            true => g.generate(&z, labels)?,
            false => no_grad(|| g.generate(&z, labels))?,
        };
        let s = discriminator_step(
            self.d,
            &mut self.opt_d,
            &batch.images,
            &fake.value(),
            labels,
            c,
            &mut self.rng,
            share,
        )?;
        let mut g_loss = None;
        if g_turn {
            g_loss = Some(generator_step(
                self.d,
                &mut self.opt_g,
                fake,
                labels,
                c.loss,
            )?);
            self.generator_steps += 1;
            self.follow_generator()?;
        }
        Ok(StepValues {
            items: n,
            values: vec![
                Some(s.loss),
                g_loss,
                Some(s.real),
                Some(s.fake),
                Some(s.penalty),
            ],
        })
    }

    fn end_epoch(&mut self, _epoch: usize) -> deepgen_train::Result<Vec<Option<f64>>> {
        // The loop flushed a partial accumulation: an update the EMA follows.
        self.follow_generator()?;
        Ok(vec![Some(std::mem::take(&mut self.generator_steps) as f64)])
    }

    fn pictures(&mut self) -> deepgen_train::Result<Vec<Picture>> {
        if self.g.output_shape().len() != 3 {
            return Ok(Vec::new());
        }
        let mut out = vec![self.picture("samples", self.g)?];
        if let Some(e) = &self.ema {
            out.push(self.picture("samples_ema", e.as_ref())?);
        }
        Ok(out)
    }

    fn charts(&self) -> Vec<Chart> {
        let columns = [("d_loss", "D"), ("g_loss", "G")];
        vec![Chart::of("losses.png", "GAN losses", "loss", &columns)]
    }

    fn updaters(&mut self) -> Vec<&mut Updater> {
        vec![&mut self.opt_g, &mut self.opt_d]
    }

    fn modules(&self) -> Vec<(String, &dyn Module<f32>)> {
        vec![
            ("generator".into(), self.g.as_module()),
            ("discriminator".into(), self.d.as_module()),
        ]
    }

    fn save(&mut self, c: &mut Checkpoint) -> deepgen_train::Result<()> {
        c.module("generator", self.g.as_module(), self.g.spec().metadata())?;
        c.module(
            "discriminator",
            self.d.as_module(),
            self.d.spec().metadata(),
        )?;
        if let Some(e) = &self.ema {
            c.module("generator_ema", e.as_module(), e.spec().metadata())?;
        }
        c.updater(&self.opt_g)?;
        c.updater(&self.opt_d)?;
        c.rng("noise", &self.rng);
        Ok(())
    }

    fn restore(&mut self, r: &Restored) -> deepgen_train::Result<()> {
        r.module("generator", self.g.as_module())?;
        r.module("discriminator", self.d.as_module())?;
        if let Some(e) = &self.ema {
            r.module("generator_ema", e.as_module())?;
        }
        r.updater(&mut self.opt_g)?;
        r.updater(&mut self.opt_d)?;
        self.ema_updates = self.opt_g.updates();
        r.rng("noise", &mut self.rng)
    }
}

impl GanTask<'_> {
    /// Moves the EMA copy toward the generator once per generator update
    /// (not per micro-batch, so accumulation does not change its decay).
    fn follow_generator(&mut self) -> Result<()> {
        let updates = self.opt_g.updates();
        if let (Some(e), Some(decay), true) =
            (&self.ema, self.config.ema_decay, updates > self.ema_updates)
        {
            ema_update(e.as_module(), self.g.as_module(), decay)?;
        }
        self.ema_updates = updates;
        Ok(())
    }

    /// Samples from the fixed noise. The generator runs in training mode,
    /// as during training, and its running statistics are put back so that
    /// drawing pictures never changes the model.
    fn picture(&self, name: &str, g: &dyn Generator) -> Result<Picture> {
        let saved = snapshot_buffers(g.as_module());
        let x = no_grad(|| {
            g.generate(
                &Var::constant(self.fixed_z.clone()),
                self.fixed_labels.as_deref(),
            )
        });
        restore_buffers(g.as_module(), saved)?;
        Ok(Picture {
            name: name.into(),
            images: x?.value(),
            range: (-1.0, 1.0),
        })
    }
}

/// The JSON of a run's settings for `config.json`.
pub fn record(g: &dyn Generator, d: &dyn Discriminator, config: &TrainConfig) -> serde_json::Value {
    serde_json::json!({ "generator": g.spec(), "discriminator": d.spec(), "training": config })
}

/// Trains `g` and `d` in place on `data` (points `[2]` or images `[c, h, w]`;
/// labels are used when the nets are conditional); calls `on_epoch` after
/// each epoch.
///
/// One short epoch on ring8, written to a temporary run directory:
///
/// ```
/// use std::sync::Arc;
/// use deepgen_data::{synthetic, Dataset};
/// use deepgen_gan::trainer::{train, TrainConfig};
/// use deepgen_gan::{MlpDiscriminator, MlpGanConfig, MlpGenerator};
/// use deepgen_train::RunConfig;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let net = MlpGanConfig { latent: 4, g_hidden: vec![16], d_hidden: vec![16], ..Default::default() };
/// let (g, d) = (MlpGenerator::new(&net, 0)?, MlpDiscriminator::new(&net, 1)?);
/// let data: Arc<dyn Dataset> = Arc::new(synthetic::ring8(256, 0)?);
/// let out_dir = std::env::temp_dir().join(format!("deepgen-doc-gan-{}", std::process::id()));
/// let run = RunConfig { out_dir: out_dir.clone(), epochs: 1, progress: false, images: false, tensorboard: false, ..TrainConfig::default().run };
/// let config = TrainConfig { run, batch_size: 32, ..Default::default() };
/// let trained = train(&g, &d, data, &config, |_| {});
/// std::fs::remove_dir_all(&out_dir)?;
/// let epoch = &trained?.history[0];
/// assert_eq!(epoch.generator_steps, 256 / 32);
/// assert!(epoch.d_loss.is_finite() && epoch.g_loss.is_finite());
/// assert!(epoch.d_real > 0.0 && epoch.d_real < 1.0); // mean D(x), a probability
/// # Ok(())
/// # }
/// ```
pub fn train(
    g: &dyn Generator,
    d: &dyn Discriminator,
    data: Arc<dyn Dataset>,
    config: &TrainConfig,
    on_epoch: impl FnMut(&EpochMetrics),
) -> Result<Trained> {
    train_with_record(g, d, data, config, &record(g, d, config), on_epoch)
}

/// [`train`] with the JSON `config.json` records (the CLI passes its flags).
pub fn train_with_record(
    g: &dyn Generator,
    d: &dyn Discriminator,
    data: Arc<dyn Dataset>,
    config: &TrainConfig,
    record: &serde_json::Value,
    mut on_epoch: impl FnMut(&EpochMetrics),
) -> Result<Trained> {
    check_setup(g, d, data.as_ref(), config)?;
    let scale = config.scale.unwrap_or(if data.item_shape().len() == 1 {
        Scale::Raw
    } else {
        Scale::MinusOneOne
    });
    let loader = DataLoader::new(
        data.clone(),
        LoaderConfig {
            batch_size: config.batch_size,
            seed: config.seed,
            scale,
            drop_last: true,
            ..Default::default()
        },
    )?;
    let d_updates = loader.num_batches();
    let g_updates = (loader.num_batches() / config.n_critic).max(1);
    let epochs = config.run.epochs;
    let opt_g = Updater::new(
        "generator",
        config.optimizer.build(g.parameters(), config.lr)?,
        &config.step,
        g_updates,
        epochs,
    )?;
    let lr_d = config.lr_d.unwrap_or(config.lr);
    let opt_d = Updater::new(
        "discriminator",
        config.optimizer.build(d.parameters(), lr_d)?,
        &config.step,
        d_updates,
        epochs,
    )?;
    g.train();
    d.train();
    let mut task = GanTask {
        g,
        d,
        ema: config.ema_decay.map(|_| g.duplicate()).transpose()?,
        opt_g,
        opt_d,
        rng: ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(1)),
        config,
        conditional: g.num_classes().is_some(),
        generator_steps: 0,
        ema_updates: 0,
        fixed_z: Tensor::<f32>::randn(
            &[64, g.latent_dim()],
            0.0,
            1.0,
            &mut ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed),
        ),
        fixed_labels: g.num_classes().map(|k| (0..64).map(|i| i % k).collect()),
    };
    let mut hook = OnEpoch(|r: &EpochRecord| on_epoch(&EpochMetrics::from_record(r)));
    let fitted = deepgen_train::fit(&mut task, &loader, &config.run, record, &mut [&mut hook])?;
    Ok(Trained {
        history: fitted
            .history
            .iter()
            .map(EpochMetrics::from_record)
            .collect(),
        ema: task.ema,
    })
}
