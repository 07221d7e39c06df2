//! A small LeNet-style digit classifier: the end-to-end proof that layers
//! and optimizers learn, and the feature network that judges generated
//! digits. Conv(1->16, k5, p2) - ReLU - MaxPool 2 - Conv(16->32, k5, p2) -
//! ReLU - MaxPool 2 - Flatten - Linear(1568 -> 128) - ReLU - Linear(128 -> 10),
//! trained with cross entropy and Adam.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use deepgen_autograd::{no_grad, Var};
use deepgen_data::{DataLoader, Dataset, LoaderConfig, Scale};
use deepgen_nn::loss::{cross_entropy, Reduction};
use deepgen_nn::{
    checkpoint, Conv2d, Conv2dConfig, Flatten, Linear, MaxPool2d, Module, Relu, Sequential,
};
use deepgen_optim::prelude::*;
use deepgen_optim::{Adam, AdamConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

/// The network, PyTorch-initialised from `seed`; its state dict names are
/// nn.Sequential's (`0.weight`, `3.weight`, `7.weight`, `9.weight`).
pub fn lenet(seed: u64) -> Result<Sequential> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let same = Conv2dConfig {
        padding: 2,
        ..Default::default()
    };
    Ok(Sequential::new()
        .add(Conv2d::new(1, 16, 5, same, &mut rng)?)
        .add(Relu)
        .add(MaxPool2d::new(2))
        .add(Conv2d::new(16, 32, 5, same, &mut rng)?)
        .add(Relu)
        .add(MaxPool2d::new(2))
        .add(Flatten::default())
        .add(Linear::new(32 * 7 * 7, 128, true, &mut rng)?)
        .add(Relu)
        .add(Linear::new(128, 10, true, &mut rng)?))
}

/// Training settings.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    /// Where `classifier.safetensors` is written (after every epoch).
    pub out_dir: PathBuf,
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 5,
            batch_size: 128,
            lr: 1e-3,
            seed: 0,
            out_dir: PathBuf::from("runs/classifier"),
            progress: true,
        }
    }
}

/// One epoch's figures.
#[derive(Debug, Clone, Copy)]
pub struct EpochReport {
    pub epoch: usize,
    pub loss: f64,
    pub train_accuracy: f64,
    pub held_out_accuracy: Option<f64>,
    pub seconds: f64,
}

fn check_images(data: &dyn Dataset) -> Result<()> {
    if data.item_shape() != [1, 28, 28] || data.num_classes() != Some(10) {
        return Err(Error::Usage(format!(
            "the classifier takes labelled 28x28 grayscale digits, got items {:?} with {:?} classes",
            data.item_shape(),
            data.num_classes()
        )));
    }
    Ok(())
}

/// Trains a fresh classifier; writes `out_dir/classifier.safetensors` after
/// each epoch and returns the model with each epoch's report.
pub fn train(
    data: Arc<dyn Dataset>,
    held_out: Option<Arc<dyn Dataset>>,
    config: &TrainConfig,
    mut on_epoch: impl FnMut(&EpochReport),
) -> Result<(Sequential, Vec<EpochReport>)> {
    check_images(data.as_ref())?;
    std::fs::create_dir_all(&config.out_dir).map_err(|source| deepgen_data::Error::Io {
        path: config.out_dir.clone(),
        source,
    })?;
    let model = lenet(config.seed)?;
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
    let loader = DataLoader::new(data, loader_cfg)?;
    let mut reports = Vec::new();
    for epoch in 0..config.epochs {
        model.train();
        let start = Instant::now();
        let bar = deepgen_data::progress::epoch_bar(
            config.progress,
            loader.num_batches(),
            epoch,
            config.epochs,
        );
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for (b, batch) in loader.epoch(epoch as u64).enumerate() {
            let batch = batch?;
            let labels = batch.labels.unwrap_or_default();
            let logits = model.forward(&Var::constant(batch.images))?;
            let loss = cross_entropy(&logits, &labels, Reduction::Mean)?;
            let value = loss.item()?;
            if !value.is_finite() {
                return Err(Error::NonFinite {
                    loss: value,
                    epoch,
                    batch: b,
                });
            }
            opt.zero_grad();
            loss.backward()?;
            correct += count_correct(&logits, &labels)?;
            // Free the graph first: its views of the weights would make the
            // in-place update copy them.
            drop((loss, logits));
            opt.step()?;
            seen += labels.len();
            loss_sum += value as f64 * labels.len() as f64;
            bar.set_message(format!(
                "loss {:.4}, {:.0} img/s",
                loss_sum / seen as f64,
                seen as f64 / start.elapsed().as_secs_f64()
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        checkpoint::save(&model, &config.out_dir.join("classifier.safetensors"))?;
        let seconds = start.elapsed().as_secs_f64();
        let held_out_accuracy = held_out
            .as_ref()
            .map(|d| accuracy(&model, d.clone()))
            .transpose()?;
        let report = EpochReport {
            epoch,
            loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            held_out_accuracy,
            seconds,
        };
        on_epoch(&report);
        reports.push(report);
    }
    Ok((model, reports))
}

fn count_correct(logits: &Var, labels: &[usize]) -> Result<usize> {
    let predicted = logits.argmax(1)?;
    Ok(predicted.iter().zip(labels).filter(|(p, l)| p == l).count())
}

/// Predicted classes of every item (eval mode, no graph).
pub fn predict(model: &Sequential, data: Arc<dyn Dataset>) -> Result<Vec<usize>> {
    model.eval();
    let loader = DataLoader::new(
        data,
        LoaderConfig {
            batch_size: 500,
            shuffle: false,
            ..Default::default()
        },
    )?;
    let mut out = Vec::new();
    for batch in loader.epoch(0) {
        let images = Var::constant(batch?.images);
        out.extend(no_grad(|| model.forward(&images))?.argmax(1)?);
    }
    Ok(out)
}

/// Share of items whose predicted class is their label.
pub fn accuracy(model: &Sequential, data: Arc<dyn Dataset>) -> Result<f64> {
    check_images(data.as_ref())?;
    let predicted = predict(model, data.clone())?;
    let correct = predicted
        .iter()
        .enumerate()
        .filter(|(i, &p)| data.label(*i) == Some(p))
        .count();
    Ok(correct as f64 / predicted.len().max(1) as f64)
}

/// Loads a classifier checkpoint (strict).
pub fn load(path: &Path) -> Result<Sequential> {
    let model = lenet(0)?;
    checkpoint::load(&model, path, true)?;
    Ok(model)
}
