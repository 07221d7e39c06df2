//! Flags several commands share: which data, how a run goes, how a step
//! goes; and the data set a model was trained on, recorded in its run and
//! its checkpoint so that evaluation defaults to it.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deepgen_cli::{datasets, Error, Result};
use deepgen_data::Dataset;
use deepgen_train::{OptimizerConfig, OptimizerKind, RunConfig, Schedule, Start, StepConfig};
use serde::{Deserialize, Serialize};

pub type Data = Arc<dyn Dataset>;

/// Checkpoint metadata key of the data a model was trained on.
pub const DATA_KEY: &str = "deepgen.data";

/// Which data to use (shared by training, evaluation and the tools).
#[derive(clap::Args, Clone, Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DataArgs {
    /// digits (built in), mnist, fashion-mnist, kmnist or cifar10 [default:
    /// digits for training; for evaluation, the data the model was trained on]
    #[arg(long)]
    pub dataset: Option<String>,
    /// Folder with the data set's files [default: none; needed for file data sets]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Read the test split's files (when only they are at hand)
    #[arg(long)]
    pub test_split: bool,
    /// Images to train on, e.g. 0..9000 [default: all; digits: the first five sixths]
    #[arg(long, value_parser = datasets::parse_range)]
    #[serde(serialize_with = "range_text")]
    pub train_range: Option<Range<usize>>,
    /// Images held out for evaluation, e.g. 9000..10000 [default: none; digits: the last sixth]
    #[arg(long, value_parser = datasets::parse_range)]
    #[serde(serialize_with = "range_text")]
    pub held_out: Option<Range<usize>>,
    /// Number of synthetic digits to generate [default: 12000; for
    /// evaluation, the number the model was trained on]
    #[arg(long)]
    pub synthetic_size: Option<usize>,
    /// Threshold every pixel at 0.5 (8-bit: 128 and up is 1): binarised
    /// images, for Bernoulli decoders and lossless binary coding [default:
    /// off; for evaluation, as the model was trained]
    #[arg(long)]
    pub binarize: bool,
}

/// The synthetic digits' default count.
const SYNTHETIC_SIZE: usize = 12_000;

/// `a..b`, as the flags take it.
fn range_string(r: &Option<Range<usize>>) -> Option<String> {
    r.as_ref().map(|r| format!("{}..{}", r.start, r.end))
}

fn range_text<S: serde::Serializer>(r: &Option<Range<usize>>, s: S) -> Result<S::Ok, S::Error> {
    match range_string(r) {
        Some(text) => s.serialize_str(&text),
        None => s.serialize_none(),
    }
}

/// The data a model was trained on, as recorded in its checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataRecord {
    pub dataset: String,
    pub data_dir: Option<PathBuf>,
    pub test_split: bool,
    pub train_range: Option<String>,
    pub held_out: Option<String>,
    pub synthetic_size: usize,
    /// Absent in checkpoints written before the flag existed.
    #[serde(default)]
    pub binarize: bool,
}

impl DataArgs {
    fn name(&self) -> &str {
        self.dataset.as_deref().unwrap_or("digits")
    }

    /// What the checkpoint records of this choice.
    pub fn record(&self) -> DataRecord {
        DataRecord {
            dataset: self.name().to_string(),
            data_dir: self.data_dir.clone(),
            test_split: self.test_split,
            train_range: range_string(&self.train_range),
            held_out: range_string(&self.held_out),
            synthetic_size: self.synthetic_size(),
            binarize: self.binarize,
        }
    }

    fn synthetic_size(&self) -> usize {
        self.synthetic_size.unwrap_or(SYNTHETIC_SIZE)
    }

    /// The checkpoint metadata that records this choice.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let json = serde_json::to_string(&self.record()).expect("records serialise");
        BTreeMap::from([(DATA_KEY.to_string(), json)])
    }

    /// For evaluating the model in `checkpoint`: the data it was trained on
    /// unless flags say otherwise, with a warning when they do.
    pub fn for_checkpoint(&self, checkpoint: &Path) -> Result<DataArgs> {
        let recorded = recorded_data(checkpoint)?;
        let Some(rec) = recorded else {
            return Ok(self.clone());
        };
        if self.dataset.is_none() && self.data_dir.is_none() {
            let parse = |r: &Option<String>| -> Result<Option<Range<usize>>> {
                r.as_deref()
                    .map(|s| datasets::parse_range(s).map_err(Error::Usage))
                    .transpose()
            };
            return Ok(DataArgs {
                dataset: Some(rec.dataset),
                data_dir: rec.data_dir,
                test_split: self.test_split || rec.test_split,
                train_range: self.train_range.clone().or(parse(&rec.train_range)?),
                held_out: self.held_out.clone().or(parse(&rec.held_out)?),
                synthetic_size: self.synthetic_size.or(Some(rec.synthetic_size)),
                binarize: self.binarize || rec.binarize,
            });
        }
        if self.name() != rec.dataset || (self.data_dir.is_some() && self.data_dir != rec.data_dir)
        {
            eprintln!(
                "warning: {} was trained on {}{}; evaluating on {} as asked",
                checkpoint.display(),
                rec.dataset,
                rec.data_dir
                    .as_ref()
                    .map(|d| format!(" ({})", d.display()))
                    .unwrap_or_default(),
                self.name()
            );
        }
        Ok(self.clone())
    }

    /// (train part, held-out part) of the chosen data. Synthetic digits hold
    /// out their last sixth unless a range says otherwise. Overlapping
    /// ranges are refused.
    pub fn split(&self) -> Result<(Data, Option<Data>)> {
        let all = datasets::load(
            self.name(),
            self.data_dir.as_deref(),
            !self.test_split,
            self.synthetic_size(),
            0,
        )?;
        let all: Data = match self.binarize {
            true => Arc::new(deepgen_data::Binarized::new(all)),
            false => all,
        };
        let n = all.len();
        let (train, held) = match (&self.train_range, &self.held_out, self.name()) {
            (None, None, "digits") => (Some(0..n - n / 6), Some(n - n / 6..n)),
            (t, h, _) => (t.clone(), h.clone()),
        };
        if let (Some(t), Some(h)) = (&train, &held) {
            if t.start < h.end && h.start < t.end {
                return Err(Error::Usage(format!(
                    "--train-range {}..{} and --held-out {}..{} overlap; held-out images must not be trained on",
                    t.start, t.end, h.start, h.end
                )));
            }
        }
        let held = held
            .map(|r| datasets::take(all.clone(), Some(r)))
            .transpose()?;
        Ok((datasets::take(all, train)?, held))
    }

    /// The held-out part, or the training part when none is held out.
    pub fn evaluation_set(&self) -> Result<Data> {
        let (train, held) = self.split()?;
        Ok(held.unwrap_or(train))
    }
}

/// The data recorded in a checkpoint's metadata, if any.
pub fn recorded_data(checkpoint: &Path) -> Result<Option<DataRecord>> {
    let (_, meta) = deepgen_nn::checkpoint::load_tensors(checkpoint)?;
    Ok(meta
        .get(DATA_KEY)
        .and_then(|json| serde_json::from_str(json).ok()))
}

/// What every training command takes besides its model's own flags.
#[derive(clap::Args, Clone, Debug, Serialize)]
pub struct TrainArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub step: StepArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub optim: OptimArgs,
}

/// Which optimizer.
#[derive(clap::Args, Clone, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct OptimArgs {
    /// The optimizer
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimizerArg,
    /// SGD and RMSprop's momentum
    #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
    pub momentum: f64,
    /// Weight decay (Adam, SGD, RMSprop: L2 in the gradient; AdamW: decoupled)
    #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
    pub weight_decay: f64,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerArg {
    /// Adam (PyTorch's update rule)
    Adam,
    /// AdamW (decoupled weight decay)
    Adamw,
    /// SGD, with --momentum
    Sgd,
    /// RMSprop, with --momentum
    Rmsprop,
}

impl OptimArgs {
    /// The optimizer with these flags; `betas` for Adam and AdamW.
    pub fn config(&self, betas: (f64, f64)) -> OptimizerConfig {
        OptimizerConfig {
            kind: match self.optimizer {
                OptimizerArg::Adam => OptimizerKind::Adam,
                OptimizerArg::Adamw => OptimizerKind::AdamW,
                OptimizerArg::Sgd => OptimizerKind::Sgd,
                OptimizerArg::Rmsprop => OptimizerKind::RmsProp,
            },
            betas,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
        }
    }
}

impl TrainArgs {
    /// The runtime's settings for `epochs` in `out`, recording the data set
    /// in the checkpoints.
    pub fn run_config(&self, out: &Path, epochs: usize, defaults: RunConfig) -> RunConfig {
        let mut run = self.run.config(out, epochs, defaults);
        run.metadata = self.data.metadata();
        run
    }
}

/// How a training run goes: its directory, resume, logs, what it keeps.
#[derive(clap::Args, Clone, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RunArgs {
    /// Continue the run in --out from its last checkpoint, exactly (the
    /// flags must be the run's; --epochs may grow)
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Start over in a --out that holds an earlier run (its checkpoints,
    /// metrics and logs are removed)
    #[arg(long)]
    pub force: bool,
    /// Do not write TensorBoard event files (default: written under OUT/tb)
    #[arg(long)]
    pub no_tensorboard: bool,
    /// Also log weight and gradient histograms to TensorBoard each epoch
    #[arg(long)]
    pub histograms: bool,
    /// Checkpoints to keep: last, or best,last (best by --monitor)
    #[arg(long, value_delimiter = ',', default_value = "last", value_parser = ["last", "best"])]
    pub keep: Vec<String>,
    /// The metrics.csv column that picks the best checkpoint and drives
    /// --patience; lower is better, but for accuracies [default: VAE the
    /// held-out loss, classifier the held-out accuracy (the training ones
    /// without a held-out set), GAN none]
    #[arg(long)]
    pub monitor: Option<String>,
    /// Stop after this many epochs without improvement of --monitor [default: never]
    #[arg(long, value_parser = at_least_one)]
    pub patience: Option<usize>,
    /// No progress bars (nor, without a terminal, progress lines on stderr)
    #[arg(long)]
    pub quiet: bool,
    /// Under mpirun: BatchNorm statistics over the global batch, summed
    /// across the ranks, so N processes train as one (default: each rank
    /// normalises its share, as PyTorch DDP does)
    #[arg(long)]
    pub sync_batch_norm: bool,
}

impl RunArgs {
    /// The runtime's settings for a run of `epochs` in `out`.
    pub fn config(&self, out: &Path, epochs: usize, defaults: RunConfig) -> RunConfig {
        let start = match (self.resume, self.force) {
            (true, _) => Start::Resume,
            (false, true) => Start::Force,
            (false, false) => Start::New,
        };
        RunConfig {
            out_dir: out.to_path_buf(),
            epochs,
            start,
            progress: !self.quiet,
            tensorboard: !self.no_tensorboard,
            histograms: self.histograms,
            keep_best: self.keep.iter().any(|k| k == "best"),
            // A metric the user names is minimised unless it is an accuracy.
            maximize: match &self.monitor {
                Some(m) => m.contains("accuracy"),
                None => defaults.maximize,
            },
            monitor: self.monitor.clone().or(defaults.monitor.clone()),
            patience: self.patience,
            sync_batch_norm: self.sync_batch_norm,
            ..defaults
        }
    }
}

/// How each update goes: schedule, warm-up, clipping, accumulation.
#[derive(clap::Args, Clone, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct StepArgs {
    /// Learning-rate schedule over the run: constant, linear (to zero),
    /// cosine (to zero) or step:EPOCHS:GAMMA
    #[arg(long, default_value = "constant", value_parser = Schedule::parse)]
    #[serde(serialize_with = "schedule_text")]
    pub lr_schedule: Schedule,
    /// Updates of linear learning-rate warm-up
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// Clip the gradients' total 2-norm to this before each update [default: no clipping]
    #[arg(long, value_parser = positive)]
    pub clip_grad_norm: Option<f64>,
    /// Batches whose gradients add up to one update
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub accumulate: u64,
}

fn schedule_text<S: serde::Serializer>(s: &Schedule, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&s.to_string())
}

impl StepArgs {
    pub fn config(&self) -> StepConfig {
        StepConfig {
            schedule: self.lr_schedule,
            warmup: self.warmup,
            clip_grad_norm: self.clip_grad_norm,
            accumulate: self.accumulate as usize,
        }
    }
}

/// A finite number above zero, that stays finite in f32 (learning rates,
/// norms): `1e39` is refused here rather than becoming infinite in training.
pub fn positive(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if v > 0.0 && v.is_finite() && (v as f32).is_finite() {
        Ok(v)
    } else {
        Err(format!(
            "{s} must be positive and finite (as f32: at most 3.4e38)"
        ))
    }
}

/// Builds the model(s) of a training run within a quarter of the memory
/// budget: training holds four copies of the parameters (the weights, their
/// gradients and Adam's two moments), so sizes from flags that cannot train
/// stop here, before the weights are drawn.
pub fn for_training<R>(build: impl FnOnce() -> R) -> R {
    use deepgen_tensor::budget;
    let limit = budget::limit() as u128;
    let context = format!(
        "the model is too large to train: its weights, gradients and Adam's two moments (4 copies) must fit the memory budget of {} (--memory-budget)",
        budget::human(limit)
    );
    budget::within(limit / 4, context, build)
}

/// A finite number at least zero that stays finite in f32.
pub fn non_negative(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if v >= 0.0 && v.is_finite() && (v as f32).is_finite() {
        Ok(v)
    } else {
        Err(format!("{s} must be finite and at least 0"))
    }
}

/// "1 epoch", "2 epochs".
pub fn count(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

/// The JSON a run's config.json holds: the command and every flag (the
/// file can be passed back with --config to repeat the run).
pub fn record(
    command: &str,
    flags: &impl Serialize,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut v = serde_json::to_value(flags).expect("flags serialise");
    if let (Some(map), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
        map.insert("command".into(), command.into());
        map.extend(more);
    }
    v
}

/// A whole number at least 1 (epochs, batch sizes).
pub fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}
