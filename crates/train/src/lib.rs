//! deepgen-train: the training runtime every deepgen model runs on.
//!
//! A model's trainer is a [`Task`]: a step function (forward, loss,
//! [`Updater::backward_step`]) plus what its checkpoint holds. [`fit`]
//! runs it: the run directory ([`RunDir`]: `config.json`, `metrics.csv`,
//! loss charts, sample grids, TensorBoard events under `tb/`), progress,
//! checkpoints that are whole or absent and resume bit for bit
//! ([`Checkpoint`], [`Restored`]), the stop on a non-finite loss that keeps
//! the last good checkpoint, the best checkpoint by a held-out metric,
//! early stopping, hooks, and a clean stop on request ([`interrupt`]: the
//! binary's Ctrl-C) with a checkpoint inside the epoch. [`Updater`] is the one place where a loss
//! becomes an update: gradient accumulation, clipping, learning-rate
//! schedules.
//!
//! ```no_run
//! # use deepgen_train::*;
//! # fn demo(task: &mut dyn Task, loader: &deepgen_data::DataLoader) -> Result<()> {
//! let config = RunConfig { out_dir: "runs/mine".into(), epochs: 5, ..Default::default() };
//! let fitted = fit(task, loader, &config, &serde_json::json!({"epochs": 5}), &mut [])?;
//! println!("{} epochs", fitted.history.len());
//! # Ok(())
//! # }
//! ```

pub mod checkpoint;
mod error;
mod fit;
pub mod grid;
pub mod interrupt;
pub mod metrics;
mod optimizer;
mod parallel;
pub mod plot;
pub mod progress;
pub mod run;
pub mod step;
mod task;
pub mod tensorboard;

pub use checkpoint::{Checkpoint, Restored};
pub use error::{Error, Result};
pub use fit::{fit, RunConfig, RESUMABLE_KEYS};
pub use optimizer::{OptimizerConfig, OptimizerKind};
pub use progress::Progress;
pub use run::{RunDir, Start};
pub use step::{Schedule, StepConfig, Updater};
pub use task::{At, Chart, Control, EpochRecord, Fitted, Hook, OnEpoch, Picture, StepValues, Task};

/// What a model author writing a training loop needs, from every layer:
/// `use deepgen_train::prelude::*;`. The random generator types are
/// re-exported so that a user crate never has to match deepgen's `rand`
/// version by hand.
pub mod prelude {
    pub use crate::{
        fit, At, Chart, Checkpoint, Control, EpochRecord, Hook, OnEpoch, OptimizerConfig,
        OptimizerKind, Picture, Restored, RunConfig, Schedule, Start, StepConfig, StepValues, Task,
        Updater,
    };
    pub use deepgen_data::prelude::*;
    pub use deepgen_nn::prelude::*;
    pub use deepgen_optim::prelude::*;
}
