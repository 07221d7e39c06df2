//! Training epochs: Adam on the negative ELBO, held-out evaluation, a row of
//! `metrics.csv`, sample and reconstruction grids, and a checkpoint (model
//! and optimizer state) per epoch. A NaN or infinite loss stops training
//! with an error; the previous epoch's checkpoint stays as it was.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_data::{save_grid, DataLoader, Dataset, GridOptions, LoaderConfig, Scale};
use deepgen_nn::checkpoint;
use deepgen_nn::Module;
use deepgen_optim::prelude::*;
use deepgen_optim::{Adam, AdamConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{elbo, Error, Result, Vae};

/// Training settings (pytorch/examples' defaults: Adam 1e-3, batch 128).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Weight of the KL term.
    pub beta: f64,
    /// Epochs over which the KL weight rises linearly from 0 to `beta` (0: none).
    pub kl_warmup_epochs: usize,
    pub seed: u64,
    pub out_dir: PathBuf,
    pub progress: bool,
    /// Write the PNG grids each epoch.
    pub images: bool,
    /// Continue from the checkpoint in `out_dir` (model, optimizer, epoch and
    /// noise generator), so the numbers equal an uninterrupted run.
    pub resume: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 128,
            lr: 1e-3,
            beta: 1.0,
            kl_warmup_epochs: 0,
            seed: 0,
            out_dir: PathBuf::from("runs/vae"),
            progress: true,
            images: true,
            resume: false,
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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| {
        deepgen_data::Error::Io {
            path: path.to_path_buf(),
            source,
        }
        .into()
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
        let eps = Var::constant(Tensor::randn(&[b, model.latent_dim()], 0.0, 1.0, &mut rng));
        let e = no_grad(|| elbo(model, &Var::constant(batch.images), &eps, 1.0))?;
        loss += e.loss.item()? as f64 * b as f64;
        rec += e.reconstruction * b as f64;
        kl += e.kl * b as f64;
        n += b;
    }
    let n = n.max(1) as f64;
    Ok((loss / n, rec / n, kl / n))
}

/// Trains `model` in place; calls `on_epoch` after each epoch.
pub fn train(
    model: &Vae,
    data: Arc<dyn Dataset>,
    held_out: Option<Arc<dyn Dataset>>,
    config: &TrainConfig,
    mut on_epoch: impl FnMut(&EpochMetrics),
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
    let out = &config.out_dir;
    std::fs::create_dir_all(out).map_err(io(out))?;
    write_config(model, config, out)?;
    let mut opt = Adam::new(
        model.parameters(),
        AdamConfig {
            lr: config.lr,
            ..Default::default()
        },
    )?;
    let loader_cfg = LoaderConfig {
        batch_size: config.batch_size,
        seed: config.seed,
        scale: Scale::ZeroOne,
        ..Default::default()
    };
    let loader = DataLoader::new(data.clone(), loader_cfg)?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(1));
    let first_epoch = if config.resume {
        resume(model, &mut opt, &mut rng, out)?
    } else {
        0
    };
    // Fixed latent points for the sample grids, so epochs compare.
    let fixed_z = Tensor::<f32>::randn(
        &[64, model.latent_dim()],
        0.0,
        1.0,
        &mut ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed),
    );
    let mut history = Vec::new();
    for epoch in first_epoch..config.epochs {
        let start = Instant::now();
        let bar = deepgen_data::progress::epoch_bar(
            config.progress,
            loader.num_batches(),
            epoch,
            config.epochs,
        );
        let (mut loss, mut rec, mut kl, mut seen) = (0.0f64, 0.0f64, 0.0f64, 0usize);
        for (b, batch) in loader.epoch(epoch as u64).enumerate() {
            let batch = batch?;
            let n = batch.indices.len();
            let beta = match config.kl_warmup_epochs {
                0 => config.beta,
                w => {
                    config.beta
                        * ((epoch as f64 + b as f64 / loader.num_batches() as f64) / w as f64)
                            .min(1.0)
                }
            };
            let eps = Var::constant(Tensor::randn(&[n, model.latent_dim()], 0.0, 1.0, &mut rng));
            let e = elbo(model, &Var::constant(batch.images), &eps, beta)?;
            let value = e.loss.item()? as f64;
            if !value.is_finite() {
                bar.abandon();
                return Err(Error::NonFinite {
                    loss: value,
                    epoch,
                    batch: b,
                });
            }
            opt.zero_grad();
            e.loss.backward()?;
            let (r, k) = (e.reconstruction, e.kl);
            // Free the graph first: its views of the weights would make the
            // in-place update copy them.
            drop(e);
            opt.step()?;
            loss += (r + k) * n as f64;
            rec += r * n as f64;
            kl += k * n as f64;
            seen += n;
            bar.set_message(format!(
                "loss {:.2}, {:.0} img/s",
                loss / seen as f64,
                seen as f64 / start.elapsed().as_secs_f64()
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let seconds = start.elapsed().as_secs_f64();
        let held = held_out
            .as_ref()
            .map(|d| evaluate(model, d.clone(), 500, config.seed ^ 0xe7a1))
            .transpose()?;
        let seen_f = seen.max(1) as f64;
        let m = EpochMetrics {
            epoch,
            train_loss: loss / seen_f,
            train_reconstruction: rec / seen_f,
            train_kl: kl / seen_f,
            held_out: held,
            seconds,
            images_per_second: seen_f / seconds,
        };
        write_metrics(out, &m)?;
        // From metrics.csv, so a resumed run's curve has the earlier epochs.
        deepgen_data::plot::metrics_chart(
            &out.join("metrics.csv"),
            &out.join("loss.png"),
            "negative ELBO",
            "nats per example",
            &[("train_loss", "train"), ("held_out_loss", "held-out")],
        )?;
        if config.images {
            write_grids(model, &fixed_z, held_out.as_ref().unwrap_or(&data), out)?;
        }
        save_checkpoint(model, &opt, &rng, epoch + 1, out)?;
        on_epoch(&m);
        history.push(m);
    }
    Ok(history)
}

/// config.json: the model's config and the training settings, for people
/// and scripts (checkpoints carry the model config in their metadata too).
fn write_config(model: &Vae, config: &TrainConfig, out: &Path) -> Result<()> {
    let json = serde_json::json!({ "model": model.config, "training": config });
    let text = serde_json::to_string_pretty(&json).expect("configs serialise");
    Ok(checkpoint::write_atomic(
        &out.join("config.json"),
        text.as_bytes(),
    )?)
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
        line.push_str("epoch,train_loss,train_reconstruction,train_kl,held_out_loss,held_out_reconstruction,held_out_kl,seconds,images_per_second\n");
    }
    let (hl, hr, hk) = m
        .held_out
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .unwrap_or_default();
    line.push_str(&format!(
        "{},{},{},{},{hl},{hr},{hk},{},{}\n",
        m.epoch + 1,
        m.train_loss,
        m.train_reconstruction,
        m.train_kl,
        m.seconds,
        m.images_per_second
    ));
    f.write_all(line.as_bytes()).map_err(io(&path))
}

/// samples.png: decoded fixed latent points; reconstructions.png: rows of
/// 8 images with their reconstructions beneath.
fn write_grids(
    model: &Vae,
    fixed_z: &Tensor<f32>,
    data: &Arc<dyn Dataset>,
    out: &Path,
) -> Result<()> {
    no_grad(|| -> Result<()> {
        let samples = crate::generate::decode_means(model, fixed_z.clone())?;
        save_grid(&out.join("samples.png"), &samples, GridOptions::default())?;
        let loader = DataLoader::new(
            data.clone(),
            LoaderConfig {
                batch_size: 32,
                shuffle: false,
                ..Default::default()
            },
        )?;
        let x = loader.batch((0..32.min(data.len())).collect())?.images;
        let grid = crate::generate::reconstruction_grid(model, &x)?;
        save_grid(
            &out.join("reconstructions.png"),
            &grid,
            GridOptions::default(),
        )?;
        Ok(())
    })
}

/// model.safetensors, optimizer.safetensors, and trainer.safetensors (epochs
/// done and the noise generator's position), each written atomically.
fn save_checkpoint(
    model: &Vae,
    opt: &Adam<f32>,
    rng: &ChaCha8Rng,
    epochs_done: usize,
    out: &Path,
) -> Result<()> {
    model.save(&out.join("model.safetensors"))?;
    checkpoint::save_f64(&out.join("optimizer.safetensors"), opt.state_dict())?;
    checkpoint::save_progress(&out.join("trainer.safetensors"), epochs_done, rng)?;
    Ok(())
}

/// Loads a checkpoint written by [`train`] into the model, optimizer and
/// generator; returns the number of epochs already done.
fn resume(model: &Vae, opt: &mut Adam<f32>, rng: &mut ChaCha8Rng, out: &Path) -> Result<usize> {
    checkpoint::load(model, &out.join("model.safetensors"), true)?;
    opt.load_state_dict(&checkpoint::load_f64(&out.join("optimizer.safetensors"))?)?;
    Ok(checkpoint::load_progress(
        &out.join("trainer.safetensors"),
        rng,
    )?)
}
