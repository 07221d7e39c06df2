//! What a model gives the training loop ([`Task`]: its step function and
//! what its checkpoint holds) and what the loop gives back (records,
//! hooks).

use deepgen_autograd::Tensor;
use deepgen_data::Batch;
use deepgen_nn::Module;
use rand_chacha::ChaCha8Rng;

use crate::checkpoint::{Checkpoint, Restored};
use crate::step::Updater;
use crate::Result;

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    /// 0-based epoch.
    pub epoch: usize,
    /// 0-based batch within the epoch.
    pub batch: usize,
    /// Batches done before this one, over the whole run.
    pub global_step: u64,
}

/// What one step measured: values for the task's step columns (None where
/// a value was not measured this step, e.g. a GAN's generator loss on a
/// critic-only step) and the batch's size, which weighs them in the
/// epoch's means.
#[derive(Debug, Clone, PartialEq)]
pub struct StepValues {
    pub items: usize,
    pub values: Vec<Option<f64>>,
}

impl StepValues {
    /// The values of a step over `items` examples.
    pub fn new(items: usize, values: Vec<Option<f64>>) -> Self {
        StepValues { items, values }
    }
}

/// A grid of images for the run directory and TensorBoard.
pub struct Picture {
    /// File stem (`samples` -> samples.png) and TensorBoard tag.
    pub name: String,
    /// [n, c, h, w]
    pub images: Tensor<f32>,
    /// The values drawn as black and white.
    pub range: (f32, f32),
}

/// A line chart of some metrics columns, redrawn after each epoch.
pub struct Chart {
    pub file: String,
    pub title: String,
    pub y_label: String,
    /// (column, legend label)
    pub columns: Vec<(String, String)>,
}

impl Chart {
    /// A chart of `columns` (column, legend label) of `metrics.csv`.
    pub fn of(file: &str, title: &str, y_label: &str, columns: &[(&str, &str)]) -> Self {
        Chart {
            file: file.into(),
            title: title.into(),
            y_label: y_label.into(),
            columns: columns
                .iter()
                .map(|(c, l)| (c.to_string(), l.to_string()))
                .collect(),
        }
    }
}

/// A model's training, as the loop sees it.
pub trait Task {
    /// Names of the values [`Task::step`] reports (`train_loss`, ...): the
    /// first columns of `metrics.csv` and TensorBoard's `train/` scalars.
    fn step_columns(&self) -> Vec<String>;

    /// Names of the values [`Task::end_epoch`] reports (held-out metrics,
    /// counts).
    fn epoch_columns(&self) -> Vec<String> {
        Vec::new()
    }

    /// One training step on a batch: forward, loss, [`Updater::backward_step`].
    fn step(&mut self, batch: Batch, at: At) -> Result<StepValues>;

    /// After an epoch's steps: values for [`Task::epoch_columns`].
    fn end_epoch(&mut self, _epoch: usize) -> Result<Vec<Option<f64>>> {
        Ok(Vec::new())
    }

    /// Grids to draw after each epoch (when images are on).
    fn pictures(&mut self) -> Result<Vec<Picture>> {
        Ok(Vec::new())
    }

    /// Charts of `metrics.csv` to redraw after each epoch.
    fn charts(&self) -> Vec<Chart> {
        Vec::new()
    }

    /// The updaters, to flush at an epoch's end and to log their rates.
    fn updaters(&mut self) -> Vec<&mut Updater>;

    /// Named modules: what the default [`Task::save`] checkpoints, and
    /// whose weights and gradients the histograms show.
    fn modules(&self) -> Vec<(String, &dyn Module<f32>)> {
        Vec::new()
    }

    /// Named random generators the steps draw from (noise), saved and
    /// restored with the checkpoint so a resumed run draws what an
    /// uninterrupted one would.
    fn rngs(&mut self) -> Vec<(String, &mut ChaCha8Rng)> {
        Vec::new()
    }

    /// Fills a checkpoint. The default saves every module of
    /// [`Task::modules`] (no metadata), every updater and every generator;
    /// override it to add metadata or more state.
    fn save(&mut self, checkpoint: &mut Checkpoint) -> Result<()> {
        for (name, m) in self.modules() {
            checkpoint.module(&name, m, Default::default())?;
        }
        for u in self.updaters() {
            checkpoint.updater(u)?;
        }
        for (name, rng) in self.rngs() {
            checkpoint.rng(&name, rng);
        }
        Ok(())
    }

    /// Restores what [`Task::save`] wrote (the default mirrors its default).
    fn restore(&mut self, checkpoint: &Restored) -> Result<()> {
        for (name, m) in self.modules() {
            checkpoint.module(&name, m)?;
        }
        for u in self.updaters() {
            checkpoint.updater(u)?;
        }
        for (name, rng) in self.rngs() {
            checkpoint.rng(&name, rng)?;
        }
        Ok(())
    }
}

/// One epoch's results: every column of its `metrics.csv` row.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    /// 0-based.
    pub epoch: usize,
    pub values: Vec<(String, Option<f64>)>,
    pub seconds: f64,
    pub items_per_second: f64,
    /// Each updater's learning rate at the epoch's end.
    pub lrs: Vec<(String, f64)>,
}

impl EpochRecord {
    /// The value of column `name` (None when absent or not measured).
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| *v)
    }
}

/// What a hook may tell the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Stop after this epoch (its checkpoint is written).
    Stop,
}

/// Code of the user's run after each step and epoch (logging, custom
/// stopping rules). Both methods do nothing unless written.
pub trait Hook {
    fn on_step(&mut self, _at: At, _values: &StepValues) {}

    fn on_epoch(&mut self, _record: &EpochRecord) -> Control {
        Control::Continue
    }
}

/// A closure run after each epoch as a [`Hook`].
pub struct OnEpoch<F>(pub F);

impl<F: FnMut(&EpochRecord)> Hook for OnEpoch<F> {
    fn on_epoch(&mut self, record: &EpochRecord) -> Control {
        (self.0)(record);
        Control::Continue
    }
}

/// What [`fit`](fn@crate::fit) returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// The epochs this call ran (a resumed run's earlier ones are in
    /// `metrics.csv`).
    pub history: Vec<EpochRecord>,
    /// Why the run ended before its last epoch, if it did.
    pub stopped_early: Option<String>,
    /// The best epoch (0-based) and value of the monitored metric.
    pub best: Option<(usize, f64)>,
}
