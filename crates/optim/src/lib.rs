//! deepgen-optim: SGD, Adam, AdamW, RMSprop, learning-rate schedules and
//! gradient clipping, with PyTorch's update rules.
//!
//! The update rules follow PyTorch 2.x's single-tensor implementations
//! (`foreach=False`) operation for operation, in the parameters' own element
//! type, so a model trained here takes the same steps as in PyTorch (the
//! tests replay PyTorch runs to 1e-5). Parameters live in groups, each with
//! its own options, as in PyTorch:
//!
//! ```
//! use deepgen_autograd::{Tensor, Var};
//! use deepgen_optim::{Adam, AdamConfig, LrScheduler, Optimizer, StepLR};
//!
//! # fn main() -> deepgen_optim::Result<()> {
//! let w = Var::<f32>::parameter(Tensor::ones(&[3, 2]));
//! let b = Var::<f32>::parameter(Tensor::zeros(&[2]));
//! let mut opt = Adam::new([w.clone()], AdamConfig { lr: 1e-3, ..Default::default() })?;
//! opt.add_param_group([b.clone()], AdamConfig { lr: 1e-2, ..Default::default() })?;
//! let mut sched = StepLR::new(&mut opt, 10, 0.5)?;
//! for _epoch in 0..3 {
//!     let loss = w.square().sum_all()?.add(&b.sum_all()?)?;
//!     opt.zero_grad();
//!     loss.backward()?;
//!     opt.step()?;
//!     sched.step(&mut opt)?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Optimizers and schedulers write their state as named f64 tensors
//! ([`Optimizer::state_dict`]), so that a run saved and resumed continues
//! exactly as if uninterrupted.

mod adam;
mod clip;
mod error;
mod optimizer;
mod rmsprop;
mod schedule;
mod sgd;
pub mod state;

pub use adam::{Adam, AdamConfig, AdamState, AdamW, AdamWConfig};
pub use clip::{clip_grad_norm, clip_grad_value};
pub use error::{Error, Result};
pub use optimizer::{GroupedOptimizer, LrGroups, Optimizer, ParamGroup, UpdateRule};
pub use rmsprop::{RmsProp, RmsPropConfig, RmsPropState};
pub use schedule::{
    CosineAnnealingLR, ExponentialLR, LinearLR, LinearWarmup, LrScheduler, SchedulerState, StepLR,
};
pub use sgd::{Sgd, SgdConfig};
pub use state::StateDict;

/// The optimizers, schedulers and the traits whose methods a training loop
/// calls: `use deepgen_optim::prelude::*;`.
pub mod prelude {
    pub use crate::{
        clip_grad_norm, Adam, AdamConfig, AdamW, AdamWConfig, CosineAnnealingLR, LinearLR,
        LrGroups, LrScheduler, Optimizer, RmsProp, RmsPropConfig, Sgd, SgdConfig, StepLR,
    };
}
