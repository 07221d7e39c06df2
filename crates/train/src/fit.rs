//! The training loop every model runs: [`fit`] drives a [`Task`] — a
//! model's step function and what it saves — through its epochs.
//!
//! The loop owns everything around the step: the run directory and its
//! config, resuming from the last complete checkpoint (bit for bit: the
//! loader's per-epoch order, the task's generators, optimizers and
//! schedules all come back), the progress bar, `metrics.csv`, loss charts,
//! sample grids, TensorBoard events, the non-finite-loss stop that keeps the
//! last good checkpoint, a checkpoint per epoch (and the best one by a
//! monitored metric), hooks and early stopping.

use std::path::PathBuf;
use std::time::Instant;

use deepgen_autograd::Tensor;
use deepgen_data::{Batch, DataLoader};
use deepgen_nn::Module;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::checkpoint::{Checkpoint, Restored};
use crate::grid::{grid_pixels, save_grid, GridOptions};
use crate::metrics::{MetricsCsv, METRICS_FILE};
use crate::progress::Progress;
use crate::run::{config_differences, RunDir, Start, CONFIG_FILE};
use crate::step::Updater;
use crate::tensorboard::EventWriter;
use crate::{Error, Result};

/// Settings of a run that every model shares.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunConfig {
    /// The run directory.
    pub out_dir: PathBuf,
    pub epochs: usize,
    /// New run, new run over an old one (`--force`), or `--resume`.
    pub start: Start,
    /// Show progress bars (one line per epoch without a terminal).
    pub progress: bool,
    /// Write sample grids each epoch (PNG and TensorBoard).
    pub images: bool,
    /// Write TensorBoard event files under `tb/`.
    pub tensorboard: bool,
    /// Also log weight and gradient histograms each epoch (TensorBoard).
    pub histograms: bool,
    /// The metric that picks the best checkpoint and drives early stopping
    /// (a column of the task's; lower is better unless `maximize`).
    pub monitor: Option<String>,
    pub maximize: bool,
    /// Keep the best checkpoint by `monitor` beside the last one.
    pub keep_best: bool,
    /// Stop after this many epochs without improvement of `monitor`.
    pub patience: Option<usize>,
    /// Improvement smaller than this does not count.
    pub min_delta: f64,
    /// Whether this process writes the run directory (false on all but
    /// one rank of a data-parallel run).
    pub writer: bool,
    /// Metadata added to every module file of a checkpoint (what the model
    /// was trained on, say, so evaluation can default to it).
    pub metadata: std::collections::BTreeMap<String, String>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            out_dir: PathBuf::from("runs/run"),
            epochs: 10,
            start: Start::New,
            progress: true,
            images: true,
            tensorboard: true,
            histograms: false,
            monitor: None,
            maximize: false,
            keep_best: false,
            patience: None,
            min_delta: 0.0,
            writer: true,
            metadata: Default::default(),
        }
    }
}

impl RunConfig {
    /// A new run of `epochs` epochs in `out_dir`, with the defaults otherwise.
    pub fn new(out_dir: impl Into<PathBuf>, epochs: usize) -> Self {
        RunConfig {
            out_dir: out_dir.into(),
            epochs,
            ..Default::default()
        }
    }
}

/// Config keys that may change when a run is resumed: how long it runs,
/// what it shows and keeps, not what it computes (library names and the
/// command line's flags).
pub const RESUMABLE_KEYS: [&str; 20] = [
    "epochs",
    "start",
    "resume",
    "force",
    "progress",
    "quiet",
    "images",
    "tensorboard",
    "no-tensorboard",
    "histograms",
    "threads",
    "config",
    "keep",
    "keep_best",
    "monitor",
    "maximize",
    "patience",
    "min_delta",
    "out",
    "out_dir",
];

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

/// What [`fit`] returns.
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

/// Running means of the step columns over an epoch.
struct Meter {
    sums: Vec<f64>,
    weights: Vec<f64>,
    items: usize,
}

impl Meter {
    fn new(n: usize) -> Self {
        Meter {
            sums: vec![0.0; n],
            weights: vec![0.0; n],
            items: 0,
        }
    }

    fn add(&mut self, s: &StepValues) {
        for ((sum, w), v) in self.sums.iter_mut().zip(&mut self.weights).zip(&s.values) {
            if let Some(v) = v {
                *sum += v * s.items as f64;
                *w += s.items as f64;
            }
        }
        self.items += s.items;
    }

    fn means(&self) -> Vec<Option<f64>> {
        self.sums
            .iter()
            .zip(&self.weights)
            .map(|(s, w)| (*w > 0.0).then(|| s / w))
            .collect()
    }
}

/// Tracks the monitored metric for the best checkpoint and early stopping.
struct Monitor {
    column: Option<usize>,
    maximize: bool,
    min_delta: f64,
    best: Option<(usize, f64)>,
    since_best: usize,
}

impl Monitor {
    /// Takes the epoch's row; true when it is the best so far.
    fn observe(&mut self, epoch: usize, row: &[Option<f64>]) -> bool {
        let Some(v) = self.column.and_then(|c| row[c]).filter(|v| v.is_finite()) else {
            self.since_best += 1;
            return false;
        };
        let better = match self.best {
            None => true,
            Some((_, b)) if self.maximize => v > b + self.min_delta,
            Some((_, b)) => v < b - self.min_delta,
        };
        if better {
            self.best = Some((epoch, v));
            self.since_best = 0;
        } else {
            self.since_best += 1;
        }
        better
    }
}

/// Trains `task` on `loader`'s batches for `config.epochs` epochs (from the
/// last checkpoint with `Start::Resume`), writing the run directory.
/// `record` is the run's settings for `config.json` (the same keys as the
/// command line's flags); a resumed run refuses settings that differ from
/// the recorded ones outside [`RESUMABLE_KEYS`], naming each difference.
pub fn fit(
    task: &mut dyn Task,
    loader: &DataLoader,
    config: &RunConfig,
    record: &Value,
    hooks: &mut [&mut dyn Hook],
) -> Result<Fitted> {
    if config.epochs == 0 {
        return Err(Error::Invalid {
            op: "train",
            msg: "--epochs must be at least 1".into(),
        });
    }
    if loader.num_batches() == 0 {
        return Err(Error::Invalid {
            op: "train",
            msg: format!(
                "{} items make no batch of {}",
                loader.dataset().len(),
                loader.config().batch_size
            ),
        });
    }
    let run = RunDir::new(&config.out_dir, config.writer);
    run.prepare(config.start)?;
    let step_columns = task.step_columns();
    let epoch_columns = task.epoch_columns();
    let mut columns: Vec<String> = step_columns.iter().chain(&epoch_columns).cloned().collect();
    columns.extend(["seconds".to_string(), "items_per_second".to_string()]);
    let mut monitor = Monitor {
        column: match &config.monitor {
            Some(m) => Some(
                columns
                    .iter()
                    .position(|c| c == m)
                    .ok_or_else(|| Error::Invalid {
                        op: "monitor",
                        msg: format!("no metric {m:?}; this run has {}", columns.join(", ")),
                    })?,
            ),
            None => None,
        },
        maximize: config.maximize,
        min_delta: config.min_delta,
        best: None,
        since_best: 0,
    };
    let (mut first_epoch, mut global_step, mut kept) = (0, 0u64, None);
    if config.start == Start::Resume {
        if let Some(old) = run.read_json(CONFIG_FILE)? {
            let diff = config_differences(&old, record, &RESUMABLE_KEYS);
            if !diff.is_empty() {
                return Err(Error::Invalid {
                    op: "resume",
                    msg: format!(
                        "the settings differ from the run's in {} ({}); resume with the recorded ones (see its {CONFIG_FILE}) or start a new run",
                        run.path().display(),
                        diff.join("; ")
                    ),
                });
            }
        }
        let restored = Restored::open(&run)?;
        task.restore(&restored)?;
        first_epoch = restored.epochs_done;
        global_step = restored.global_step;
        if let Ok(v) = restored.number("best") {
            monitor.best = Some((restored.number("best_epoch")? as usize, v));
            monitor.since_best = restored.number("since_best")? as usize;
        }
        kept = Some(restored.dir().display().to_string());
    }
    run.write_json(CONFIG_FILE, record)?;
    let mut metrics = MetricsCsv::open(
        &run,
        columns.clone(),
        (config.start == Start::Resume).then_some(first_epoch),
    )?;
    let mut tb = match config.tensorboard && run.is_writer() {
        true => {
            let mut w = EventWriter::create(&run.join("tb"))?;
            if config.start == Start::Resume {
                w.restart_at(global_step)?;
            }
            Some(w)
        }
        false => None,
    };
    let mut fitted = Fitted {
        history: Vec::new(),
        stopped_early: None,
        best: monitor.best,
    };
    for epoch in first_epoch..config.epochs {
        let start = Instant::now();
        let bar = Progress::epoch(config.progress, loader.num_batches(), epoch, config.epochs);
        let mut meter = Meter::new(step_columns.len());
        let stepped = run_epoch(
            task,
            loader,
            epoch,
            &mut global_step,
            &mut meter,
            &bar,
            &step_columns,
            tb.as_mut(),
            hooks,
        );
        let stepped = stepped.and_then(|()| {
            task.updaters()
                .into_iter()
                .try_for_each(|u| u.flush().map(|_| ()))
        });
        if let Err(e) = stepped {
            bar.abandon();
            return Err(with_place(e, epoch, kept.clone()));
        }
        let seconds = start.elapsed().as_secs_f64();
        let mut row = meter.means();
        row.extend(task.end_epoch(epoch)?);
        let items_per_second = meter.items as f64 / seconds.max(1e-9);
        row.extend([Some(seconds), Some(items_per_second)]);
        bar.finish(&summary(&columns, &row));
        metrics.append(&run, epoch, &row)?;
        let lrs: Vec<(String, f64)> = task
            .updaters()
            .iter()
            .map(|u| (u.name().to_string(), u.lr()))
            .collect();
        let record = EpochRecord {
            epoch,
            values: columns.iter().cloned().zip(row.iter().copied()).collect(),
            seconds,
            items_per_second,
            lrs,
        };
        write_epoch_outputs(task, config, &run, &record, tb.as_mut(), global_step)?;
        let is_best = monitor.observe(epoch, &row);
        let mut checkpoint = Checkpoint::new();
        task.save(&mut checkpoint)?;
        checkpoint.add_metadata(&config.metadata);
        if let Some((e, v)) = monitor.best {
            checkpoint.number("best", v);
            checkpoint.number("best_epoch", e as f64);
            checkpoint.number("since_best", monitor.since_best as f64);
        }
        checkpoint.commit(&run, epoch + 1, global_step, is_best && config.keep_best)?;
        kept = Some(
            run.join("checkpoints")
                .join(format!("epoch-{:04}", epoch + 1))
                .display()
                .to_string(),
        );
        fitted.best = monitor.best;
        let mut stop = false;
        for h in hooks.iter_mut() {
            stop |= h.on_epoch(&record) == Control::Stop;
        }
        fitted.history.push(record);
        if stop {
            fitted.stopped_early =
                Some(format!("a hook stopped the run after epoch {}", epoch + 1));
            break;
        }
        if let (Some(p), Some((best, _))) = (config.patience, monitor.best) {
            if monitor.since_best >= p && epoch + 1 < config.epochs {
                fitted.stopped_early = Some(format!(
                    "early stopping: {} has not improved for {p} epochs (best at epoch {})",
                    config.monitor.as_deref().unwrap_or("the metric"),
                    best + 1
                ));
                break;
            }
        }
    }
    if let Some(w) = &mut tb {
        w.flush()?;
    }
    Ok(fitted)
}

/// The steps of one epoch.
#[allow(clippy::too_many_arguments)]
fn run_epoch(
    task: &mut dyn Task,
    loader: &DataLoader,
    epoch: usize,
    global_step: &mut u64,
    meter: &mut Meter,
    bar: &Progress,
    columns: &[String],
    mut tb: Option<&mut EventWriter>,
    hooks: &mut [&mut dyn Hook],
) -> Result<()> {
    for (b, batch) in loader.epoch(epoch as u64).enumerate() {
        let at = At {
            epoch,
            batch: b,
            global_step: *global_step,
        };
        let values = task.step(batch?, at).map_err(|e| match e {
            Error::NonFinite {
                what, value, kept, ..
            } => Error::NonFinite {
                what,
                value,
                epoch: Some(epoch),
                batch: Some(b),
                kept,
            },
            other => other,
        })?;
        *global_step += 1;
        meter.add(&values);
        if let Some(w) = tb.as_deref_mut() {
            for (name, v) in columns.iter().zip(&values.values) {
                if let Some(v) = v {
                    w.add_scalar(&format!("train/{name}"), *v, *global_step)?;
                }
            }
        }
        for h in hooks.iter_mut() {
            h.on_step(at, &values);
        }
        bar.step(|| summary(columns, &meter.means()));
    }
    Ok(())
}

/// Fills in where a non-finite stop happened and what was kept.
fn with_place(e: Error, epoch: usize, kept: Option<String>) -> Error {
    match e {
        Error::NonFinite {
            what,
            value,
            epoch: at,
            batch,
            ..
        } => Error::NonFinite {
            what,
            value,
            epoch: at.or(Some(epoch)),
            batch,
            kept,
        },
        other => other,
    }
}

/// `name value, ...` of the first few measured columns, for progress lines.
fn summary(columns: &[String], row: &[Option<f64>]) -> String {
    columns
        .iter()
        .zip(row)
        .filter_map(|(c, v)| v.map(|v| format!("{c} {}", short(v))))
        .take(4)
        .collect::<Vec<_>>()
        .join(", ")
}

fn short(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

/// Charts, grids, and the epoch's TensorBoard scalars, images and histograms.
fn write_epoch_outputs(
    task: &mut dyn Task,
    config: &RunConfig,
    run: &RunDir,
    record: &EpochRecord,
    mut tb: Option<&mut EventWriter>,
    step: u64,
) -> Result<()> {
    if !run.is_writer() {
        return Ok(());
    }
    for chart in task.charts() {
        let columns: Vec<(&str, &str)> = chart
            .columns
            .iter()
            .map(|(c, l)| (c.as_str(), l.as_str()))
            .collect();
        crate::plot::metrics_chart(
            &run.join(METRICS_FILE),
            &run.join(&chart.file),
            &chart.title,
            &chart.y_label,
            &columns,
        )?;
    }
    if let Some(w) = tb.as_deref_mut() {
        for (name, v) in &record.values {
            if let Some(v) = v {
                w.add_scalar(&format!("epoch/{name}"), *v, step)?;
            }
        }
        for (name, lr) in &record.lrs {
            w.add_scalar(&format!("lr/{name}"), *lr, step)?;
        }
    }
    if config.images {
        for p in task.pictures()? {
            let opts = GridOptions {
                range: p.range,
                ..Default::default()
            };
            save_grid(&run.join(format!("{}.png", p.name)), &p.images, opts)?;
            if let Some(w) = tb.as_deref_mut() {
                let (gw, gh, c, px) = grid_pixels(&p.images, opts)?;
                w.add_image(&p.name, gw, gh, c, &px, step)?;
            }
        }
    }
    if let (true, Some(w)) = (config.histograms, tb) {
        for (module, m) in task.modules() {
            for (name, p) in m.named_parameters() {
                let values: Vec<f64> = p.value().to_vec().into_iter().map(f64::from).collect();
                w.add_histogram(&format!("weights/{module}.{name}"), &values, step)?;
                if let Some(g) = p.grad() {
                    let g: Vec<f64> = g.to_vec().into_iter().map(f64::from).collect();
                    w.add_histogram(&format!("grads/{module}.{name}"), &g, step)?;
                }
            }
        }
    }
    Ok(())
}
