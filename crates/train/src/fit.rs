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

use deepgen_data::DataLoader;
use serde_json::Value;

use crate::checkpoint::{Checkpoint, Position, Restored};
use crate::grid::{grid_pixels, save_grid, GridOptions};
use crate::metrics::{MetricsCsv, METRICS_FILE};
use crate::progress::Progress;
use crate::run::{config_differences, RunDir, Start, CONFIG_FILE};
use crate::task::{At, Control, EpochRecord, Fitted, Hook, StepValues, Task};
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
    /// Synchronised BatchNorm in a data-parallel run: statistics over the
    /// global batch ([`deepgen_nn::set_sync_batch_norm`]); off, each rank
    /// normalises its share, as in PyTorch DDP.
    pub sync_batch_norm: bool,
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
            sync_batch_norm: false,
            metadata: Default::default(),
        }
    }
}

impl RunConfig {
    /// Watches `train` instead of `held_out` when there is no held-out set
    /// and the run watches `held_out`.
    pub fn watching_train_without_held_out(
        mut self,
        held_out: bool,
        held: &str,
        train: &str,
    ) -> Self {
        if !held_out && self.monitor.as_deref() == Some(held) {
            self.monitor = Some(train.to_string());
        }
        self
    }

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
pub const RESUMABLE_KEYS: [&str; 21] = [
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
    "init",
];

/// Running means of the step columns over an epoch.
struct Meter {
    sums: Vec<f64>,
    weights: Vec<f64>,
    items: usize,
    /// Seconds of the epoch spent before an interruption.
    seconds_before: f64,
}

impl Meter {
    fn new(n: usize) -> Self {
        Meter {
            sums: vec![0.0; n],
            weights: vec![0.0; n],
            items: 0,
            seconds_before: 0.0,
        }
    }

    /// Into an interrupted run's checkpoint, so the resumed epoch's row of
    /// metrics is the one an uninterrupted epoch would have written.
    fn save(&self, c: &mut Checkpoint, seconds: f64) {
        for (i, (s, w)) in self.sums.iter().zip(&self.weights).enumerate() {
            c.number(&format!("meter.sum.{i}"), *s);
            c.number(&format!("meter.weight.{i}"), *w);
        }
        c.number("meter.items", self.items as f64);
        c.number("meter.seconds", seconds);
    }

    fn restore(r: &Restored, n: usize) -> Result<Self> {
        let mut m = Meter::new(n);
        for i in 0..n {
            m.sums[i] = r.number(&format!("meter.sum.{i}"))?;
            m.weights[i] = r.number(&format!("meter.weight.{i}"))?;
        }
        m.items = r.number("meter.items")? as usize;
        m.seconds_before = r.number("meter.seconds")?;
        Ok(m)
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
    /// The monitor of `config` over a run's `columns`; an unknown metric,
    /// or keeping the best / patience without one, is an error.
    fn new(config: &RunConfig, columns: &[String]) -> Result<Self> {
        let invalid = |msg: String| Error::Invalid { op: "monitor", msg };
        let column = match &config.monitor {
            Some(m) => Some(columns.iter().position(|c| c == m).ok_or_else(|| {
                invalid(format!(
                    "no metric {m:?}; this run has {}",
                    columns.join(", ")
                ))
            })?),
            None if config.keep_best || config.patience.is_some() => {
                return Err(invalid(format!(
                    "--keep best and --patience need a metric to watch: give --monitor (one of {})",
                    columns.join(", ")
                )))
            }
            None => None,
        };
        Ok(Monitor {
            column,
            maximize: config.maximize,
            min_delta: config.min_delta,
            best: None,
            since_best: 0,
        })
    }

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

    /// What the monitor knows, with what it watched and which way.
    fn save(&self, c: &mut Checkpoint) {
        if let (Some(col), Some((e, v))) = (self.column, self.best) {
            c.number("monitor_column", col as f64);
            c.number("monitor_maximize", f64::from(u8::from(self.maximize)));
            c.number("best", v);
            c.number("best_epoch", e as f64);
            c.number("since_best", self.since_best as f64);
        }
    }

    /// The best so far from a checkpoint, when it watched the same column
    /// the same way (a resume with another --monitor starts afresh).
    fn restore(&mut self, r: &Restored) -> Result<()> {
        let (Ok(col), Ok(max)) = (r.number("monitor_column"), r.number("monitor_maximize")) else {
            return Ok(());
        };
        if Some(col as usize) == self.column && (max != 0.0) == self.maximize {
            self.best = Some((r.number("best_epoch")? as usize, r.number("best")?));
            self.since_best = r.number("since_best")? as usize;
        }
        Ok(())
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
    let invalid = |op, msg: String| Err(Error::Invalid { op, msg });
    let world = deepgen_dist::world();
    // Data-parallel: this rank's share of every global batch.
    let shard = deepgen_data::Shard {
        rank: world.rank(),
        ranks: world.size(),
    };
    let loader = &loader.sharded(shard);
    deepgen_nn::set_sync_batch_norm(config.sync_batch_norm);
    if config.epochs == 0 {
        return invalid("train", "--epochs must be at least 1".into());
    }
    if loader.num_batches() == 0 {
        let (n, b) = (loader.dataset().len(), loader.config().batch_size);
        return invalid("train", format!("{n} items make no batch of {b}"));
    }
    let step_columns = task.step_columns();
    let epoch_columns = task.epoch_columns();
    let mut columns: Vec<String> = step_columns.iter().chain(&epoch_columns).cloned().collect();
    columns.extend(["seconds".to_string(), "items_per_second".to_string()]);
    // Every check that can fail on the settings alone comes before the run
    // directory is touched (--force would otherwise have removed a run).
    let mut monitor = Monitor::new(config, &columns)?;
    if world.size() > 1 {
        crate::parallel::check_same_settings(record)?;
    }
    let run = RunDir::new(&config.out_dir, config.writer && world.rank() == 0);
    let _listening = crate::interrupt::Listening::start();
    let opened = match run.is_writer() {
        true => open_run(
            task,
            &run,
            config.start,
            record,
            &mut monitor,
            step_columns.len(),
        ),
        false => Ok((None, Begun::default())),
    };
    let (_lock, begun) = match world.size() {
        1 => opened?,
        _ => share_start(task, &run, opened, &mut monitor, step_columns.len())?,
    };
    let Begun {
        first_epoch,
        mut global_step,
        mut kept,
        mut partial,
        start,
    } = begun;
    if start == Start::Resume && first_epoch >= config.epochs {
        // Complete already (a crash after its last checkpoint, say):
        // nothing to train, as Keras and Lightning treat it.
        if run.is_writer() {
            eprintln!(
                "note: the run in {} already has {first_epoch} epochs; nothing to train (pass a larger --epochs to continue it)",
                run.path().display()
            );
        }
        return Ok(Fitted {
            history: Vec::new(),
            stopped_early: None,
            best: monitor.best,
        });
    }
    run.write_json(CONFIG_FILE, record)?;
    let resume_at = (start == Start::Resume && run.is_writer()).then_some(first_epoch);
    let mut metrics = MetricsCsv::open(&run, columns.clone(), resume_at)?;
    let mut tb = match config.tensorboard && run.is_writer() {
        true => {
            let mut w = EventWriter::create(&run.join("tb"))?;
            if start == Start::Resume {
                // Steps up to the checkpoint's global step are logged and kept;
                // TensorBoard drops the old run's later ones.
                w.restart_at(global_step + 1)?;
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
        let shown = config.progress && run.is_writer();
        let bar = Progress::epoch(shown, loader.num_batches(), epoch, config.epochs);
        let (skip, mut meter) = partial
            .take()
            .unwrap_or_else(|| (0, Meter::new(step_columns.len())));
        let mut steps = Steps {
            task: &mut *task,
            global_step: &mut global_step,
            meter: &mut meter,
            bar: &bar,
            columns: &step_columns,
            tb: tb.as_mut(),
        };
        let stepped = steps
            .epoch(loader, epoch, skip, hooks)
            .and_then(|stop| match stop {
                Some(batches) => Ok(Some(batches)),
                None => task
                    .updaters()
                    .into_iter()
                    .try_for_each(|u| u.flush().map(|_| ()))
                    .map(|()| None),
            });
        let seconds = meter.seconds_before + start.elapsed().as_secs_f64();
        match stepped {
            Err(e) => {
                bar.abandon();
                return Err(with_place(e, epoch, kept.clone()));
            }
            Ok(Some(batches_done)) => {
                bar.abandon();
                let mut checkpoint = Checkpoint::new();
                task.save(&mut checkpoint)?;
                checkpoint.add_metadata(&config.metadata);
                checkpoint.number(RANKS, world.size() as f64);
                monitor.save(&mut checkpoint);
                meter.save(&mut checkpoint, seconds);
                let at = Position {
                    epochs_done: epoch,
                    batches_done,
                };
                return Err(interrupted(
                    checkpoint.commit(&run, at, global_step, false)?,
                    at,
                    tb,
                ));
            }
            Ok(None) => {}
        }
        let mut row = meter.means();
        let end = task.end_epoch(epoch)?;
        if end.len() != epoch_columns.len() {
            return invalid(
                "end_epoch",
                format!(
                    "{} values for the {} epoch columns {epoch_columns:?}",
                    end.len(),
                    epoch_columns.len()
                ),
            );
        }
        row.extend(end);
        if world.size() > 1 {
            crate::parallel::check_ranks_agree(&*task, epoch)?;
        }
        let items_per_second = meter.items as f64 / seconds.max(1e-9);
        row.extend([Some(seconds), Some(items_per_second)]);
        bar.finish(&summary(&columns, &row));
        metrics.append(&run, epoch, &row)?;
        crate::checkpoint::crash_point("after-metrics");
        let is_best = monitor.observe(epoch, &row);
        // The checkpoint first: pictures and logs that fail must not lose the epoch.
        let mut checkpoint = Checkpoint::new();
        task.save(&mut checkpoint)?;
        checkpoint.add_metadata(&config.metadata);
        checkpoint.number(RANKS, world.size() as f64);
        monitor.save(&mut checkpoint);
        let at = Position {
            epochs_done: epoch + 1,
            batches_done: 0,
        };
        let dir = checkpoint.commit(&run, at, global_step, is_best && config.keep_best)?;
        kept = Some(dir.display().to_string());
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
        fitted.best = monitor.best;
        let mut stop = false;
        for h in hooks.iter_mut() {
            stop |= h.on_epoch(&record) == Control::Stop;
        }
        fitted.history.push(record);
        if crate::parallel::stop_requested() && epoch + 1 < config.epochs {
            return Err(interrupted(dir, at, tb));
        }
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
    if world.size() > 1 && run.is_writer() && !fitted.history.is_empty() {
        eprintln!(
            "note: {} trained one model: every rank's parameters and buffers were bit-identical at each epoch's end",
            world.engine()
        );
    }
    Ok(fitted)
}

/// The checkpoint number holding how many processes wrote it.
const RANKS: &str = "ranks";

/// Where a run starts: from scratch, or from its last checkpoint.
#[derive(Default)]
struct Begun {
    first_epoch: usize,
    global_step: u64,
    /// The checkpoint in force (named when a run stops on a NaN).
    kept: Option<String>,
    /// An interrupted epoch: batches done, and its running means so far.
    partial: Option<(usize, Meter)>,
    start: Start,
}

/// Opens the run directory for writing (locked) and restores the task when
/// resuming: what the writing process (rank 0) does before the first step.
fn open_run(
    task: &mut dyn Task,
    run: &RunDir,
    mut start: Start,
    record: &Value,
    monitor: &mut Monitor,
    step_columns: usize,
) -> Result<(Option<crate::run::RunLock>, Begun)> {
    let lock = run.lock()?;
    run.prepare(start)?;
    if start == Start::Resume && crate::checkpoint::checkpoint_dir(run, "last")?.is_none() {
        // Stopped before its first checkpoint was complete: nothing to
        // continue from, so the run starts again (with the same settings).
        check_settings(run, record)?;
        eprintln!(
            "note: {} has no complete checkpoint yet; the run starts from the beginning",
            run.path().display()
        );
        run.prepare(Start::Force)?;
        start = Start::Force;
    }
    let mut begun = Begun {
        start,
        ..Default::default()
    };
    if start == Start::Resume {
        let restored = resume(task, run, record, monitor)?;
        (begun.first_epoch, begun.global_step) = (restored.epochs_done, restored.global_step);
        begun.kept = Some(restored.dir().display().to_string());
        if restored.batches_done > 0 {
            let meter = Meter::restore(&restored, step_columns)?;
            begun.partial = Some((restored.batches_done, meter));
        }
        note_other_ranks(&restored);
        crate::checkpoint::repair(run)?;
    }
    Ok((lock, begun))
}

/// Says whether a resume on another number of processes continues exactly.
fn note_other_ranks(restored: &Restored) {
    let then = restored.number(RANKS).map_or(1, |n| n as usize);
    let now = deepgen_dist::world().size();
    if then != now {
        eprintln!(
            "note: the checkpoint was written by {then} process(es), this run has {now}: the global batch, data order and noise are the same, so it continues as the run would have, up to the order of floating-point sums (and BatchNorm statistics, unless synchronised)"
        );
    }
}

/// Data-parallel start: rank 0 sends what it opened (the task's state,
/// fresh or resumed, and where the run stands) and every other rank takes
/// it, so all ranks start bit for bit alike; a rank 0 that could not start
/// stops every rank with its message.
fn share_start(
    task: &mut dyn Task,
    run: &RunDir,
    opened: Result<(Option<crate::run::RunLock>, Begun)>,
    monitor: &mut Monitor,
    step_columns: usize,
) -> Result<(Option<crate::run::RunLock>, Begun)> {
    let world = deepgen_dist::world();
    let mut bytes = Vec::new();
    if world.rank() == 0 {
        let sent = opened.and_then(|(lock, begun)| {
            let mut c = Checkpoint::new();
            task.save(&mut c)?;
            monitor.save(&mut c);
            c.number("start", f64::from(u8::from(begun.start == Start::Resume)));
            if let Some((_, meter)) = &begun.partial {
                meter.save(&mut c, 0.0);
            }
            let at = Position {
                epochs_done: begun.first_epoch,
                batches_done: begun.partial.as_ref().map_or(0, |p| p.0),
            };
            let state = c.into_bytes(at, begun.global_step)?;
            Ok((lock, begun, state))
        });
        return match sent {
            Ok((lock, begun, state)) => {
                bytes.push(0);
                bytes.extend(state);
                world.broadcast(&mut bytes);
                Ok((lock, begun))
            }
            Err(e) => {
                bytes.push(1);
                bytes.extend(e.to_string().into_bytes());
                world.broadcast(&mut bytes);
                Err(e)
            }
        };
    }
    world.broadcast(&mut bytes);
    let Some((&0, state)) = bytes.split_first() else {
        let msg = String::from_utf8_lossy(bytes.get(1..).unwrap_or_default()).into_owned();
        return Err(Error::Invalid {
            op: "train",
            msg: format!("rank 0 could not start: {msg}"),
        });
    };
    let restored = Restored::from_bytes(run.path(), state)?;
    task.restore(&restored)?;
    monitor.restore(&restored)?;
    let partial = match restored.batches_done {
        0 => None,
        b => Some((b, Meter::restore(&restored, step_columns)?)),
    };
    let start = match restored.number("start")? {
        0.0 => Start::New,
        _ => Start::Resume,
    };
    Ok((
        None,
        Begun {
            first_epoch: restored.epochs_done,
            global_step: restored.global_step,
            kept: None,
            partial,
            start,
        },
    ))
}

/// The error of a run stopped on request at `at`, whose checkpoint is in
/// `dir`; the event file is flushed first (a failed flush loses log lines,
/// not the stop).
fn interrupted(dir: PathBuf, at: Position, tb: Option<EventWriter>) -> Error {
    if let Some(mut w) = tb {
        let _ = w.flush();
    }
    Error::Interrupted {
        epoch: at.epochs_done,
        batch: at.batches_done,
        checkpoint: dir,
    }
}

/// Checks a resumed run's settings against those it recorded, restores the
/// task from its last checkpoint, and the monitor's best when it watched
/// the same metric the same way.
fn resume(
    task: &mut dyn Task,
    run: &RunDir,
    record: &Value,
    monitor: &mut Monitor,
) -> Result<Restored> {
    check_settings(run, record)?;
    let restored = Restored::open(run)?;
    task.restore(&restored)?;
    monitor.restore(&restored)?;
    Ok(restored)
}

/// A resumed run's settings must be those it recorded (outside
/// [`RESUMABLE_KEYS`]); each difference is named.
fn check_settings(run: &RunDir, record: &Value) -> Result<()> {
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
    Ok(())
}

/// What the steps of an epoch work on.
struct Steps<'a> {
    task: &'a mut dyn Task,
    global_step: &'a mut u64,
    meter: &'a mut Meter,
    bar: &'a Progress,
    columns: &'a [String],
    tb: Option<&'a mut EventWriter>,
}

impl Steps<'_> {
    /// The steps of epoch `epoch` after the first `skip` batches; Some(b)
    /// when a stop was requested ([`crate::interrupt`]) and honoured after
    /// batch b, at an update boundary.
    fn epoch(
        &mut self,
        loader: &DataLoader,
        epoch: usize,
        skip: usize,
        hooks: &mut [&mut dyn Hook],
    ) -> Result<Option<usize>> {
        let last = loader.num_batches();
        for (b, batch) in (skip..).zip(loader.epoch_from(epoch as u64, skip)) {
            let at = At {
                epoch,
                batch: b,
                global_step: *self.global_step,
            };
            let batch = batch?;
            for u in self.task.updaters() {
                u.set_share(batch.share.weight());
            }
            let values = self.task.step(batch, at).map_err(|e| match e {
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
            if values.values.len() != self.columns.len() {
                return Err(Error::Invalid {
                    op: "step",
                    msg: format!(
                        "{} values for the {} step columns {:?}",
                        values.values.len(),
                        self.columns.len(),
                        self.columns
                    ),
                });
            }
            crate::checkpoint::crash_point("step");
            let mut stop = crate::interrupt::requested();
            let values = match deepgen_dist::distributed() {
                true => {
                    crate::parallel::broadcast_buffers(&*self.task)?;
                    let (values, any_stop) = crate::parallel::reduce_step(values, stop);
                    stop = any_stop;
                    values
                }
                false => values,
            };
            *self.global_step += 1;
            self.meter.add(&values);
            if let Some(w) = self.tb.as_deref_mut() {
                for (name, v) in self.columns.iter().zip(&values.values) {
                    if let Some(v) = v {
                        w.add_scalar(&format!("train/{name}"), *v, *self.global_step)?;
                    }
                }
            }
            for h in hooks.iter_mut() {
                h.on_step(at, &values);
            }
            self.bar.step(|| summary(self.columns, &self.meter.means()));
            let between_updates = self.task.updaters().iter().all(|u| u.pending() == 0);
            if stop && between_updates && b + 1 < last {
                return Ok(Some(b + 1));
            }
        }
        Ok(None)
    }
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
        let drawn = crate::plot::metrics_chart(
            &run.join(METRICS_FILE),
            &run.join(&chart.file),
            &chart.title,
            &chart.y_label,
            &columns,
        );
        // A chart is a view of metrics.csv, which is written: a chart that
        // cannot be drawn (no finite values yet) is worth a line, not the run.
        if let Err(e) = drawn {
            eprintln!("warning: {} not drawn: {e}", chart.file);
        }
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
        // Only this rank draws: BatchNorm must not wait for the others.
        let synced = deepgen_nn::sync_batch_norm();
        deepgen_nn::set_sync_batch_norm(false);
        let pictures = task.pictures();
        deepgen_nn::set_sync_batch_norm(synced);
        for p in pictures? {
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
