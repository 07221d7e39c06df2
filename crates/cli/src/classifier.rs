//! A small LeNet-style digit classifier: the end-to-end proof that layers
//! and optimizers learn, and the feature network that judges generated
//! digits. Conv(1->16, k5, p2) - ReLU - MaxPool 2 - Conv(16->32, k5, p2) -
//! ReLU - MaxPool 2 - Flatten - Linear(1568 -> 128) - ReLU - Linear(128 -> 10),
//! trained with cross entropy and Adam.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deepgen_autograd::{no_grad, Var};
use deepgen_data::{Batch, DataLoader, Dataset, LoaderConfig, Scale};
use deepgen_nn::loss::{cross_entropy, Reduction};
use deepgen_nn::{
    checkpoint, Conv2d, Conv2dConfig, Flatten, Forward, Linear, MaxPool2d, Module, Relu, Sequential,
};
use deepgen_train::{
    At, Chart, EpochRecord, OnEpoch, OptimizerConfig, RunConfig, StepConfig, StepValues, Task,
    Updater,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

/// The images the classifier takes: 28x28 gray digits.
pub const IMAGE_SHAPE: [usize; 3] = [1, 28, 28];
/// Its classes: the ten digits.
pub const CLASSES: usize = 10;

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
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainConfig {
    /// The run: directory (`classifier.safetensors` is written there after
    /// every epoch), epochs, resume, progress, logs.
    pub run: RunConfig,
    /// Schedule, warm-up, clipping, accumulation.
    pub step: StepConfig,
    /// Which optimizer (Adam by default) and its options.
    pub optimizer: OptimizerConfig,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            run: RunConfig {
                out_dir: PathBuf::from("runs/classifier"),
                epochs: 5,
                images: false,
                monitor: Some("held_out_accuracy".into()),
                maximize: true,
                ..Default::default()
            },
            step: StepConfig::default(),
            optimizer: OptimizerConfig::default(),
            batch_size: 128,
            lr: 1e-3,
            seed: 0,
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

impl EpochReport {
    fn from_record(r: &EpochRecord) -> Self {
        EpochReport {
            epoch: r.epoch,
            loss: r.get("train_loss").unwrap_or(f64::NAN),
            train_accuracy: r.get("train_accuracy").unwrap_or(f64::NAN),
            held_out_accuracy: r.get("held_out_accuracy"),
            seconds: r.seconds,
        }
    }
}

fn check_images(data: &dyn Dataset) -> Result<()> {
    if data.item_shape() != [1, 28, 28] || data.num_classes() != Some(10) {
        let classes = data
            .num_classes()
            .map_or("no".to_string(), |k| k.to_string());
        return Err(Error::Usage(format!(
            "the classifier takes labelled 28x28 grayscale digits, got items {:?} with {classes} classes",
            data.item_shape(),
        )));
    }
    Ok(())
}

/// The classifier's step function and checkpoint contents.
struct ClassifierTask<'a> {
    model: &'a Sequential,
    updater: Updater,
    held_out: Option<Arc<dyn Dataset>>,
}

impl Task for ClassifierTask<'_> {
    fn step_columns(&self) -> Vec<String> {
        vec!["train_loss".into(), "train_accuracy".into()]
    }

    fn epoch_columns(&self) -> Vec<String> {
        vec!["held_out_accuracy".into()]
    }

    fn step(&mut self, batch: Batch, _at: At) -> deepgen_train::Result<StepValues> {
        self.model.train();
        let labels = batch.labels.unwrap_or_default();
        let logits = self.model.forward(&Var::constant(batch.images))?;
        let correct = count_correct(&logits, &labels)?;
        let loss = cross_entropy(&logits, &labels, Reduction::Mean)?;
        drop(logits);
        let (value, _) = self.updater.backward_step(loss)?;
        let n = labels.len();
        Ok(StepValues {
            items: n,
            values: vec![Some(value), Some(correct as f64 / n.max(1) as f64)],
        })
    }

    fn end_epoch(&mut self, _epoch: usize) -> deepgen_train::Result<Vec<Option<f64>>> {
        let acc = match &self.held_out {
            Some(d) => Some(accuracy(self.model, d.clone())?),
            None => None,
        };
        self.model.train();
        Ok(vec![acc])
    }

    fn charts(&self) -> Vec<Chart> {
        let columns = [
            ("train_accuracy", "train"),
            ("held_out_accuracy", "held-out"),
        ];
        vec![Chart::of(
            "accuracy.png",
            "classifier accuracy",
            "share correct",
            &columns,
        )]
    }

    fn updaters(&mut self) -> Vec<&mut Updater> {
        vec![&mut self.updater]
    }

    fn modules(&self) -> Vec<(String, &dyn Module<f32>)> {
        vec![("classifier".into(), self.model as &dyn Module<f32>)]
    }
}

/// Trains a fresh classifier; writes `out_dir/classifier.safetensors` after
/// each epoch and returns the model with each epoch's report. `record` is
/// what the run's `config.json` holds.
pub fn train(
    data: Arc<dyn Dataset>,
    held_out: Option<Arc<dyn Dataset>>,
    config: &TrainConfig,
    record: &serde_json::Value,
    mut on_epoch: impl FnMut(&EpochReport),
) -> Result<(Sequential, Vec<EpochReport>)> {
    check_images(data.as_ref())?;
    let model = lenet(config.seed)?;
    let optimizer = config.optimizer.build(model.parameters(), config.lr)?;
    let loader = DataLoader::new(
        data,
        LoaderConfig {
            batch_size: config.batch_size,
            seed: config.seed,
            scale: Scale::ZeroOne,
            ..Default::default()
        },
    )?;
    let updater = Updater::new(
        "classifier",
        optimizer,
        &config.step,
        loader.num_batches(),
        config.run.epochs,
    )?;
    let run = config.run.clone().watching_train_without_held_out(
        held_out.is_some(),
        "held_out_accuracy",
        "train_accuracy",
    );
    let mut task = ClassifierTask {
        model: &model,
        updater,
        held_out,
    };
    let mut hook = OnEpoch(|r: &EpochRecord| on_epoch(&EpochReport::from_record(r)));
    let fitted = deepgen_train::fit(&mut task, &loader, &run, record, &mut [&mut hook])?;
    Ok((
        model,
        fitted
            .history
            .iter()
            .map(EpochReport::from_record)
            .collect(),
    ))
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
    let (tensors, _) = checkpoint::load_tensors(path)?;
    from_loaded(path, tensors)
}

/// [`load`] on a file already read (`path` names it in errors).
pub fn from_loaded(
    path: &Path,
    tensors: Vec<(String, checkpoint::TensorData)>,
) -> Result<Sequential> {
    let model = lenet(0)?;
    checkpoint::load_entries(&model, path, tensors, true)?;
    Ok(model)
}
