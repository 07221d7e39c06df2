//! GAN training: alternating discriminator and generator steps with two
//! Adam optimizers, a row of `metrics.csv`, a sample grid from fixed noise
//! and a checkpoint per epoch, an optional EMA generator, and exact resume.
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
//! A NaN or infinite loss stops training with [`Error::NonFinite`] before
//! any optimizer steps on it; the previous epoch's checkpoint stays.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use deepgen_autograd::{grad, no_grad, Tensor, Var};
use deepgen_data::{save_grid, DataLoader, Dataset, GridOptions, LoaderConfig, Scale};
use deepgen_nn::checkpoint;
use deepgen_optim::prelude::*;
use deepgen_optim::{Adam, AdamConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::loss::{discriminator_loss, generator_loss, gradient_penalty, r1_penalty, GanLoss};
use crate::net::{ema_update, restore_buffers, snapshot_buffers, Discriminator, Generator};
use crate::spec::save_net;
use crate::{Error, Result};

/// Training settings (DCGAN's defaults: Adam 2e-4, betas (0.5, 0.999), batch 64).
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Learning rate of the generator (and of the discriminator unless `lr_d` is set).
    pub lr: f64,
    pub lr_d: Option<f64>,
    /// Decay both learning rates linearly to zero over the run (all `epochs`),
    /// by batch; no state, so resume stays exact.
    pub lr_decay: bool,
    pub betas: (f64, f64),
    pub loss: GanLoss,
    /// Discriminator steps per generator step.
    pub n_critic: usize,
    /// Weight of WGAN-GP's gradient penalty; used with [`GanLoss::Wasserstein`] (0: plain WGAN, unclipped).
    pub gp_lambda: f64,
    /// R1 penalty gamma / 2 * E ||grad D(x_real)||^2, with any loss.
    pub r1_gamma: Option<f64>,
    /// Keep an exponential moving average of the generator's weights with this decay.
    pub ema_decay: Option<f64>,
    /// How the loader scales data; None: raw values for points ([2]), [-1, 1] for images.
    pub scale: Option<Scale>,
    pub seed: u64,
    pub out_dir: PathBuf,
    pub progress: bool,
    /// Write samples.png (images only) each epoch.
    pub images: bool,
    /// Continue from the checkpoint in `out_dir` (nets, optimizers, EMA,
    /// epoch and noise generator), so the numbers equal an uninterrupted run.
    pub resume: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 25,
            batch_size: 64,
            lr: 2e-4,
            lr_d: None,
            lr_decay: false,
            betas: (0.5, 0.999),
            loss: GanLoss::NonSaturating,
            n_critic: 1,
            gp_lambda: 10.0,
            r1_gamma: None,
            ema_decay: None,
            scale: None,
            seed: 0,
            out_dir: PathBuf::from("runs/gan"),
            progress: true,
            images: true,
            resume: false,
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
            betas: (0.0, 0.9),
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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| {
        deepgen_data::Error::Io {
            path: path.to_path_buf(),
            source,
        }
        .into()
    }
}

fn finite(which: &'static str, loss: f64, at: (usize, usize)) -> Result<f64> {
    if loss.is_finite() {
        Ok(loss)
    } else {
        Err(Error::NonFinite {
            which,
            loss,
            epoch: at.0,
            batch: at.1,
        })
    }
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
/// interpolation weights. `at` = (epoch, batch) names a non-finite loss.
#[allow(clippy::too_many_arguments)]
pub fn discriminator_step<R: Rng + ?Sized>(
    d: &dyn Discriminator,
    opt: &mut Adam<f32>,
    real: &Tensor<f32>,
    fake: &Tensor<f32>,
    labels: Option<&[usize]>,
    config: &TrainConfig,
    rng: &mut R,
    at: (usize, usize),
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
        let eps: Vec<f32> = (0..real.shape()[0]).map(|_| rng.random()).collect();
        let gp = gradient_penalty(d, real, fake, &eps, labels)?;
        penalty += gp.item()? as f64;
        loss = loss.add(&gp.mul_scalar(config.gp_lambda as f32))?;
    }
    if let Some(gamma) = config.r1_gamma {
        let r1 = r1_penalty(&x, &r)?;
        penalty += r1.item()? as f64;
        loss = loss.add(&r1.mul_scalar((gamma / 2.0) as f32))?;
    }
    let value = finite("discriminator", loss.item()? as f64, at)?;
    let step = DStep {
        loss: value,
        real: mean_output(config.loss, &r),
        fake: mean_output(config.loss, &f),
        penalty,
    };
    opt.zero_grad();
    loss.backward()?;
    // Free the graph first: its views of the weights would make the
    // in-place update copy them.
    drop((loss, r, f, x));
    opt.step()?;
    Ok(step)
}

/// One generator update through `d`: `fake` must be the generator's output
/// with its graph. Only `opt`'s parameters get gradients; `d`'s buffers and
/// counters are restored after its forward pass. Returns the loss.
pub fn generator_step(
    d: &dyn Discriminator,
    opt: &mut Adam<f32>,
    fake: Var<f32>,
    labels: Option<&[usize]>,
    kind: GanLoss,
    at: (usize, usize),
) -> Result<f64> {
    let saved = snapshot_buffers(d.as_module());
    let out = d.score(&fake, labels);
    restore_buffers(d.as_module(), saved)?;
    let loss = generator_loss(kind, &out?)?;
    let value = finite("generator", loss.item()? as f64, at)?;
    let params = opt.params();
    let grads = grad(&[loss], &params, false)?;
    drop(fake);
    for (p, g) in params.iter().zip(grads) {
        p.set_grad(Some(g.value()))?;
    }
    opt.step()?;
    Ok(value)
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
            "generator over {:?} classes, discriminator over {:?}",
            g.num_classes(),
            d.num_classes()
        ));
    }
    if let Some(k) = g.num_classes() {
        match data.num_classes() {
            Some(c) if c <= k => {}
            other => return bad(format!("conditional nets over {k} classes need labelled data with at most {k} classes; the data has {other:?}")),
        }
    }
    if config.n_critic == 0 || config.batch_size < 2 {
        return bad(format!(
            "n_critic ({}) must be positive and the batch size ({}) at least 2",
            config.n_critic, config.batch_size
        ));
    }
    if config.ema_decay.is_some_and(|e| !(0.0..1.0).contains(&e)) {
        return bad(format!("EMA decay {:?} is not in [0, 1)", config.ema_decay));
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

/// Trains `g` and `d` in place on `data` (points [2] or images [c, h, w];
/// labels are used when the nets are conditional); calls `on_epoch` after
/// each epoch.
pub fn train(
    g: &dyn Generator,
    d: &dyn Discriminator,
    data: Arc<dyn Dataset>,
    config: &TrainConfig,
    mut on_epoch: impl FnMut(&EpochMetrics),
) -> Result<Trained> {
    check_setup(g, d, data.as_ref(), config)?;
    let out = &config.out_dir;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let adam = |lr: f64| AdamConfig {
        lr,
        betas: config.betas,
        ..Default::default()
    };
    let mut opt_g = Adam::new(g.parameters(), adam(config.lr))?;
    let mut opt_d = Adam::new(d.parameters(), adam(config.lr_d.unwrap_or(config.lr)))?;
    let ema = config.ema_decay.map(|_| g.duplicate()).transpose()?;
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
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(1));
    let first_epoch = match config.resume {
        true => resume(g, d, ema.as_deref(), &mut opt_g, &mut opt_d, &mut rng, out)?,
        false => 0,
    };
    g.train();
    d.train();
    let conditional = g.num_classes().is_some();
    // Fixed noise (and labels) for the sample grids, so epochs compare.
    let fixed_z = Tensor::<f32>::randn(
        &[64, g.latent_dim()],
        0.0,
        1.0,
        &mut ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed),
    );
    let fixed_labels: Option<Vec<usize>> =
        g.num_classes().map(|k| (0..64).map(|i| i % k).collect());
    let mut history = Vec::new();
    for epoch in first_epoch..config.epochs {
        let start = Instant::now();
        let bar = deepgen_data::progress::epoch_bar(
            config.progress,
            loader.num_batches(),
            epoch,
            config.epochs,
        );
        let (mut sums, mut d_steps, mut g_steps, mut g_sum) = ([0.0f64; 4], 0usize, 0usize, 0.0f64);
        let mut run = || -> Result<()> {
            for (b, batch) in loader.epoch(epoch as u64).enumerate() {
                let batch = batch?;
                let n = batch.indices.len();
                if config.lr_decay {
                    let total = (config.epochs * loader.num_batches()) as f64;
                    let left = 1.0 - (epoch * loader.num_batches() + b) as f64 / total;
                    opt_g.set_lr(0, config.lr * left)?;
                    opt_d.set_lr(0, config.lr_d.unwrap_or(config.lr) * left)?;
                }
                let labels = batch.labels.as_deref().filter(|_| conditional);
                let z = Var::constant(Tensor::randn(&[n, g.latent_dim()], 0.0, 1.0, &mut rng));
                let g_turn = (b + 1) % config.n_critic == 0;
                let fake = match g_turn {
                    true => g.generate(&z, labels)?,
                    false => no_grad(|| g.generate(&z, labels))?,
                };
                let s = discriminator_step(
                    d,
                    &mut opt_d,
                    &batch.images,
                    &fake.value(),
                    labels,
                    config,
                    &mut rng,
                    (epoch, b),
                )?;
                for (acc, v) in sums.iter_mut().zip([s.loss, s.real, s.fake, s.penalty]) {
                    *acc += v;
                }
                d_steps += 1;
                if g_turn {
                    g_sum += generator_step(d, &mut opt_g, fake, labels, config.loss, (epoch, b))?;
                    g_steps += 1;
                    if let (Some(e), Some(decay)) = (&ema, config.ema_decay) {
                        ema_update(e.as_module(), g.as_module(), decay)?;
                    }
                }
                let k = d_steps as f64;
                bar.set_message(format!(
                    "D {:.3}, G {:.3}, D(x) {:.3}, D(G(z)) {:.3}",
                    sums[0] / k,
                    g_sum / g_steps.max(1) as f64,
                    sums[1] / k,
                    sums[2] / k
                ));
                bar.inc(1);
            }
            Ok(())
        };
        if let Err(e) = run() {
            bar.abandon();
            return Err(e);
        }
        bar.finish_and_clear();
        let k = d_steps.max(1) as f64;
        let m = EpochMetrics {
            epoch,
            d_loss: sums[0] / k,
            g_loss: g_sum / g_steps.max(1) as f64,
            d_real: sums[1] / k,
            d_fake: sums[2] / k,
            penalty: sums[3] / k,
            generator_steps: g_steps,
            seconds: start.elapsed().as_secs_f64(),
        };
        write_metrics(out, &m)?;
        // From metrics.csv, so a resumed run's curve has the earlier epochs.
        deepgen_data::plot::metrics_chart(
            &out.join("metrics.csv"),
            &out.join("losses.png"),
            "GAN losses",
            "loss",
            &[("d_loss", "D"), ("g_loss", "G")],
        )?;
        if config.images && g.output_shape().len() == 3 {
            write_grid(
                g,
                &fixed_z,
                fixed_labels.as_deref(),
                &out.join("samples.png"),
            )?;
            if let Some(e) = &ema {
                write_grid(
                    e.as_ref(),
                    &fixed_z,
                    fixed_labels.as_deref(),
                    &out.join("samples_ema.png"),
                )?;
            }
        }
        save_checkpoint(g, d, ema.as_deref(), &opt_g, &opt_d, &rng, epoch + 1, out)?;
        on_epoch(&m);
        history.push(m);
    }
    Ok(Trained { history, ema })
}

fn write_metrics(out: &Path, m: &EpochMetrics) -> Result<()> {
    let path = out.join("metrics.csv");
    let new = m.epoch == 0 || !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(!new)
        .truncate(new)
        .open(&path)
        .map_err(io(&path))?;
    let mut line = String::new();
    if new {
        line.push_str("epoch,d_loss,g_loss,d_real,d_fake,penalty,generator_steps,seconds\n");
    }
    line.push_str(&format!(
        "{},{},{},{},{},{},{},{}\n",
        m.epoch + 1,
        m.d_loss,
        m.g_loss,
        m.d_real,
        m.d_fake,
        m.penalty,
        m.generator_steps,
        m.seconds
    ));
    f.write_all(line.as_bytes()).map_err(io(&path))
}

/// Samples from the fixed noise as a PNG grid. The generator runs in
/// training mode, as during training, and its running statistics are put
/// back so that writing pictures never changes the model.
fn write_grid(
    g: &dyn Generator,
    z: &Tensor<f32>,
    labels: Option<&[usize]>,
    path: &Path,
) -> Result<()> {
    let saved = snapshot_buffers(g.as_module());
    let x = no_grad(|| g.generate(&Var::constant(z.clone()), labels));
    restore_buffers(g.as_module(), saved)?;
    let opts = GridOptions {
        range: (-1.0, 1.0),
        ..Default::default()
    };
    Ok(save_grid(path, &x?.value(), opts)?)
}

/// generator.safetensors, discriminator.safetensors, generator_ema.safetensors
/// (with EMA), optimizer_g.safetensors, optimizer_d.safetensors and
/// trainer.safetensors (epochs done, noise generator position), each atomic.
#[allow(clippy::too_many_arguments)]
fn save_checkpoint(
    g: &dyn Generator,
    d: &dyn Discriminator,
    ema: Option<&dyn Generator>,
    opt_g: &Adam<f32>,
    opt_d: &Adam<f32>,
    rng: &ChaCha8Rng,
    epochs_done: usize,
    out: &Path,
) -> Result<()> {
    save_net(g.as_module(), &g.spec(), &out.join("generator.safetensors"))?;
    save_net(
        d.as_module(),
        &d.spec(),
        &out.join("discriminator.safetensors"),
    )?;
    if let Some(e) = ema {
        save_net(
            e.as_module(),
            &e.spec(),
            &out.join("generator_ema.safetensors"),
        )?;
    }
    checkpoint::save_f64(&out.join("optimizer_g.safetensors"), opt_g.state_dict())?;
    checkpoint::save_f64(&out.join("optimizer_d.safetensors"), opt_d.state_dict())?;
    checkpoint::save_progress(&out.join("trainer.safetensors"), epochs_done, rng)?;
    Ok(())
}

/// Loads a checkpoint written by [`train`]; returns the epochs already done.
fn resume(
    g: &dyn Generator,
    d: &dyn Discriminator,
    ema: Option<&dyn Generator>,
    opt_g: &mut Adam<f32>,
    opt_d: &mut Adam<f32>,
    rng: &mut ChaCha8Rng,
    out: &Path,
) -> Result<usize> {
    checkpoint::load(g.as_module(), &out.join("generator.safetensors"), true)?;
    checkpoint::load(d.as_module(), &out.join("discriminator.safetensors"), true)?;
    if let Some(e) = ema {
        checkpoint::load(e.as_module(), &out.join("generator_ema.safetensors"), true)?;
    }
    opt_g.load_state_dict(&checkpoint::load_f64(&out.join("optimizer_g.safetensors"))?)?;
    opt_d.load_state_dict(&checkpoint::load_f64(&out.join("optimizer_d.safetensors"))?)?;
    Ok(checkpoint::load_progress(
        &out.join("trainer.safetensors"),
        rng,
    )?)
}
