//! Learning-rate schedules with PyTorch's semantics: StepLR, ExponentialLR,
//! CosineAnnealingLR and LinearLR (linear warm-up).
//!
//! As in PyTorch, a scheduler is built on an optimizer (which performs step
//! 0 at once: LinearLR scales the learning rates by `start_factor` right
//! away), and `step` is called once per epoch (or per batch), after
//! `optimizer.step()`. Each step computes the new rates from the groups'
//! *current* rates (PyTorch's chainable `get_lr`, not the closed forms), so
//! rates set by hand or by another scheduler compose as they do in PyTorch,
//! and the numbers agree with PyTorch's to the last bit.
//!
//! To resume, build the scheduler on the optimizer, then load the
//! optimizer's state dict (which restores the rates), then the scheduler's.

use std::f64::consts::PI;

use deepgen_autograd::Tensor;

use crate::optimizer::{check_min, LrGroups};
use crate::state::{StateDict, StateReader, StateWriter};
use crate::{Error, Result};

/// What every scheduler keeps: PyTorch's `LRScheduler` attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerState {
    /// The groups' learning rates when the scheduler was built.
    pub base_lrs: Vec<f64>,
    /// The index of the last step taken: 0 right after construction.
    pub last_epoch: i64,
    /// Calls of `step`, counting the one at construction.
    pub step_count: u64,
    /// The learning rates the last step set.
    pub last_lr: Vec<f64>,
}

impl SchedulerState {
    /// The state before the construction step (`last_epoch` -1).
    pub fn new(opt: &dyn LrGroups) -> Self {
        let lrs = opt.lrs();
        SchedulerState {
            base_lrs: lrs.clone(),
            last_epoch: -1,
            step_count: 0,
            last_lr: lrs,
        }
    }
}

/// A learning-rate schedule. Implementors supply the state and the rule
/// (`get_lr`); stepping, inspection and state dicts come with the trait.
///
/// A scheduler writes the rates into the optimizer it is stepped with:
///
/// ```
/// use deepgen_autograd::{Tensor, Var};
/// use deepgen_optim::{LrGroups, LrScheduler, Sgd, SgdConfig, StepLR};
///
/// # fn main() -> deepgen_optim::Result<()> {
/// let w = Var::<f32>::parameter(Tensor::zeros(&[1]));
/// let mut opt = Sgd::new([w], SgdConfig { lr: 0.1, ..Default::default() })?;
/// // Halve the rate every 2 steps.
/// let mut sched = StepLR::new(&mut opt, 2, 0.5)?;
/// let mut lrs = vec![opt.lr(0)?];
/// for _epoch in 0..4 {
///     // ... the epoch's optimizer steps, then:
///     sched.step(&mut opt)?;
///     lrs.push(opt.lr(0)?);
/// }
/// assert_eq!(lrs, [0.1, 0.1, 0.05, 0.05, 0.025]);
/// assert_eq!((sched.last_lr(), sched.last_epoch()), (&[0.025][..], 4));
/// # Ok(())
/// # }
/// ```
pub trait LrScheduler {
    fn state(&self) -> &SchedulerState;

    fn state_mut(&mut self) -> &mut SchedulerState;

    /// PyTorch's `get_lr`: the rates for step `state().last_epoch` (already
    /// advanced), given the groups' current rates. `initial` is true for the
    /// step taken at construction.
    fn get_lr(&self, current: &[f64], initial: bool) -> Vec<f64>;

    /// The step a constructor takes (PyTorch's `_initial_step`): step 0,
    /// with `initial` true. Call it once, from the constructor, when
    /// implementing a scheduler.
    fn initial_step(&mut self, opt: &mut dyn LrGroups) -> Result<()> {
        advance(self, opt, true)
    }

    /// Advances one step and writes the new rates into the optimizer's
    /// groups. Call it after `optimizer.step()`.
    fn step(&mut self, opt: &mut dyn LrGroups) -> Result<()> {
        advance(self, opt, false)
    }

    /// The rates the last step set (PyTorch's `get_last_lr()`).
    fn last_lr(&self) -> &[f64] {
        &self.state().last_lr
    }

    /// The index of the last step taken (0 after construction).
    fn last_epoch(&self) -> i64 {
        self.state().last_epoch
    }

    /// Sets the step index (to resume without a state dict: build the
    /// scheduler, set the optimizer's rates, then this).
    fn set_last_epoch(&mut self, epoch: i64) {
        self.state_mut().last_epoch = epoch;
    }

    /// `last_epoch`, `step_count`, `base_lrs` and `last_lr`. The schedule's
    /// own options (gamma, ...) are not included: rebuild the scheduler with
    /// the same ones.
    fn state_dict(&self) -> StateDict {
        let s = self.state();
        let mut w = StateWriter::new();
        w.num("last_epoch", s.last_epoch as f64);
        w.num("step_count", s.step_count as f64);
        w.nums("base_lrs", &s.base_lrs);
        w.nums("last_lr", &s.last_lr);
        w.finish()
    }

    /// Restores a state dict written by [`LrScheduler::state_dict`] for the
    /// same number of groups; on error nothing changes.
    fn load_state_dict(&mut self, state: &[(String, Tensor<f64>)]) -> Result<()> {
        let groups = self.state().base_lrs.len();
        let mut r = StateReader::new(state)?;
        let last_epoch = r.num("last_epoch")?;
        if !(last_epoch >= -1.0 && last_epoch.fract() == 0.0 && last_epoch < 2f64.powi(53)) {
            return Err(r.bad_value("last_epoch", last_epoch, "a whole number >= -1"));
        }
        let step_count = r.count("step_count")?;
        let base_lrs = r.nums("base_lrs", groups)?;
        let last_lr = r.nums("last_lr", groups)?;
        r.finish()?;
        *self.state_mut() = SchedulerState {
            base_lrs,
            last_epoch: last_epoch as i64,
            step_count: step_count as u64,
            last_lr,
        };
        Ok(())
    }
}

/// One step: advance the counters, compute the rates, write them.
fn advance<S: LrScheduler + ?Sized>(
    s: &mut S,
    opt: &mut dyn LrGroups,
    initial: bool,
) -> Result<()> {
    let want = s.state().base_lrs.len();
    if opt.num_groups() != want {
        return Err(Error::GroupCount {
            op: "LrScheduler::step",
            got: opt.num_groups(),
            want,
        });
    }
    let current = opt.lrs();
    s.state_mut().last_epoch += 1;
    let lrs = s.get_lr(&current, initial);
    if let Some(&bad) = lrs.iter().find(|lr| !(**lr >= 0.0 && lr.is_finite())) {
        s.state_mut().last_epoch -= 1;
        return Err(Error::InvalidOption {
            owner: "LrScheduler::step",
            option: "lr",
            value: bad,
            expected: "the schedule must give finite rates >= 0",
        });
    }
    for (g, &lr) in lrs.iter().enumerate() {
        opt.set_lr(g, lr)?;
    }
    let st = s.state_mut();
    st.step_count += 1;
    st.last_lr = lrs;
    Ok(())
}

/// Finishes construction with the initial step.
fn start<S: LrScheduler>(mut s: S, opt: &mut dyn LrGroups) -> Result<S> {
    s.initial_step(opt)?;
    Ok(s)
}

/// Multiplies the rates by `gamma` every `step_size` steps.
#[derive(Debug, Clone)]
pub struct StepLR {
    step_size: u64,
    gamma: f64,
    state: SchedulerState,
}

impl StepLR {
    pub fn new(opt: &mut dyn LrGroups, step_size: u64, gamma: f64) -> Result<Self> {
        check_min("StepLR", "step_size", step_size as f64, 1.0, "must be >= 1")?;
        check_min("StepLR", "gamma", gamma, 0.0, "must be finite and >= 0")?;
        let state = SchedulerState::new(opt);
        start(
            StepLR {
                step_size,
                gamma,
                state,
            },
            opt,
        )
    }
}

impl LrScheduler for StepLR {
    fn state(&self) -> &SchedulerState {
        &self.state
    }

    fn state_mut(&mut self) -> &mut SchedulerState {
        &mut self.state
    }

    fn get_lr(&self, current: &[f64], _initial: bool) -> Vec<f64> {
        let e = self.state.last_epoch;
        if e == 0 || e.rem_euclid(self.step_size as i64) != 0 {
            return current.to_vec();
        }
        current.iter().map(|lr| lr * self.gamma).collect()
    }
}

/// Multiplies the rates by `gamma` every step.
#[derive(Debug, Clone)]
pub struct ExponentialLR {
    gamma: f64,
    state: SchedulerState,
}

impl ExponentialLR {
    pub fn new(opt: &mut dyn LrGroups, gamma: f64) -> Result<Self> {
        check_min(
            "ExponentialLR",
            "gamma",
            gamma,
            0.0,
            "must be finite and >= 0",
        )?;
        let state = SchedulerState::new(opt);
        start(ExponentialLR { gamma, state }, opt)
    }
}

impl LrScheduler for ExponentialLR {
    fn state(&self) -> &SchedulerState {
        &self.state
    }

    fn state_mut(&mut self) -> &mut SchedulerState {
        &mut self.state
    }

    fn get_lr(&self, current: &[f64], initial: bool) -> Vec<f64> {
        if initial {
            return current.to_vec();
        }
        current.iter().map(|lr| lr * self.gamma).collect()
    }
}

/// Cosine annealing from the base rate down to `eta_min` over `t_max`
/// steps (then back up, as PyTorch's recursion does; no restarts).
///
/// ```
/// use deepgen_autograd::{Tensor, Var};
/// use deepgen_optim::{Adam, AdamConfig, CosineAnnealingLR, LrGroups, LrScheduler};
///
/// # fn main() -> deepgen_optim::Result<()> {
/// let w = Var::<f32>::parameter(Tensor::zeros(&[1]));
/// let mut opt = Adam::new([w], AdamConfig { lr: 1.0, ..Default::default() })?;
/// let mut sched = CosineAnnealingLR::new(&mut opt, 4, 0.1)?;
/// let mut lrs = vec![opt.lr(0)?];
/// for _ in 0..4 {
///     sched.step(&mut opt)?;
///     lrs.push(opt.lr(0)?);
/// }
/// // 0.1 + 0.9 (1 + cos(pi t / 4)) / 2: half-way at t = 2, eta_min at t = 4.
/// assert!((lrs[2] - 0.55).abs() < 1e-12 && (lrs[4] - 0.1).abs() < 1e-12);
/// assert!(lrs.windows(2).all(|p| p[1] < p[0]));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CosineAnnealingLR {
    t_max: u64,
    eta_min: f64,
    state: SchedulerState,
}

impl CosineAnnealingLR {
    pub fn new(opt: &mut dyn LrGroups, t_max: u64, eta_min: f64) -> Result<Self> {
        check_min(
            "CosineAnnealingLR",
            "t_max",
            t_max as f64,
            1.0,
            "must be >= 1",
        )?;
        check_min(
            "CosineAnnealingLR",
            "eta_min",
            eta_min,
            0.0,
            "must be finite and >= 0",
        )?;
        let state = SchedulerState::new(opt);
        start(
            CosineAnnealingLR {
                t_max,
                eta_min,
                state,
            },
            opt,
        )
    }
}

impl LrScheduler for CosineAnnealingLR {
    fn state(&self) -> &SchedulerState {
        &self.state
    }

    fn state_mut(&mut self) -> &mut SchedulerState {
        &mut self.state
    }

    /// PyTorch's recursive form, operation for operation.
    fn get_lr(&self, current: &[f64], initial: bool) -> Vec<f64> {
        if initial {
            return current.to_vec();
        }
        let (e, t) = (self.state.last_epoch, self.t_max as i64);
        let (ef, tf) = (e as f64, t as f64);
        let eta_min = self.eta_min;
        if (e - 1 - t).rem_euclid(2 * t) == 0 {
            return current
                .iter()
                .zip(&self.state.base_lrs)
                .map(|(lr, base)| lr + (base - eta_min) * (1.0 - (PI / tf).cos()) / 2.0)
                .collect();
        }
        let ratio = (1.0 + (PI * ef / tf).cos()) / (1.0 + (PI * (ef - 1.0) / tf).cos());
        current
            .iter()
            .map(|lr| ratio * (lr - eta_min) + eta_min)
            .collect()
    }
}

/// Scales the rates linearly from `start_factor` to `end_factor` times the
/// base rate over `total_iters` steps (PyTorch's `LinearLR`): a linear
/// warm-up with `start_factor` < 1 and `end_factor` 1.
#[derive(Debug, Clone)]
pub struct LinearLR {
    start_factor: f64,
    end_factor: f64,
    total_iters: u64,
    state: SchedulerState,
}

/// LinearLR by its most common use.
pub type LinearWarmup = LinearLR;

impl LinearLR {
    pub fn new(
        opt: &mut dyn LrGroups,
        start_factor: f64,
        end_factor: f64,
        total_iters: u64,
    ) -> Result<Self> {
        if !(start_factor > 0.0 && start_factor <= 1.0) {
            return Err(Error::InvalidOption {
                owner: "LinearLR",
                option: "start_factor",
                value: start_factor,
                expected: "must be in (0, 1]",
            });
        }
        if !(0.0..=1.0).contains(&end_factor) {
            return Err(Error::InvalidOption {
                owner: "LinearLR",
                option: "end_factor",
                value: end_factor,
                expected: "must be in [0, 1]",
            });
        }
        let state = SchedulerState::new(opt);
        start(
            LinearLR {
                start_factor,
                end_factor,
                total_iters,
                state,
            },
            opt,
        )
    }
}

impl LrScheduler for LinearLR {
    fn state(&self) -> &SchedulerState {
        &self.state
    }

    fn state_mut(&mut self) -> &mut SchedulerState {
        &mut self.state
    }

    fn get_lr(&self, current: &[f64], initial: bool) -> Vec<f64> {
        let e = self.state.last_epoch;
        let (start, end) = (self.start_factor, self.end_factor);
        if e == 0 {
            return current.iter().map(|lr| lr * start).collect();
        }
        if initial || e > self.total_iters as i64 {
            return current.to_vec();
        }
        let factor = 1.0
            + (end - start) / (self.total_iters as f64 * start + (e - 1) as f64 * (end - start));
        current.iter().map(|lr| lr * factor).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Just the rates, as a scheduler sees an optimizer.
    struct Lrs(Vec<f64>);

    impl LrGroups for Lrs {
        fn num_groups(&self) -> usize {
            self.0.len()
        }
        fn lr(&self, group: usize) -> Result<f64> {
            Ok(self.0[group])
        }
        fn set_lr(&mut self, group: usize, lr: f64) -> Result<()> {
            self.0[group] = lr;
            Ok(())
        }
    }

    fn run(s: &mut dyn LrScheduler, opt: &mut Lrs, steps: usize) -> Vec<f64> {
        let mut seen = vec![opt.0[0]];
        for _ in 0..steps {
            s.step(opt).unwrap();
            seen.push(opt.0[0]);
        }
        seen
    }

    #[test]
    fn step_lr_decays_every_step_size_steps() {
        let mut opt = Lrs(vec![1.0]);
        let mut s = StepLR::new(&mut opt, 2, 0.5).unwrap();
        assert_eq!(
            run(&mut s, &mut opt, 5),
            vec![1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
        );
        assert_eq!(s.last_epoch(), 5);
    }

    #[test]
    fn linear_warmup_reaches_the_base_rate_and_stays() {
        let mut opt = Lrs(vec![1.0]);
        let mut s = LinearLR::new(&mut opt, 0.25, 1.0, 3).unwrap();
        let lrs = run(&mut s, &mut opt, 5);
        let want = [0.25, 0.5, 0.75, 1.0, 1.0, 1.0];
        for (got, want) in lrs.iter().zip(want) {
            assert!((got - want).abs() < 1e-15, "{lrs:?}");
        }
    }

    #[test]
    fn cosine_follows_the_closed_form_through_a_full_period() {
        let mut opt = Lrs(vec![0.1]);
        let mut s = CosineAnnealingLR::new(&mut opt, 4, 0.01).unwrap();
        let lrs = run(&mut s, &mut opt, 12);
        for (e, lr) in lrs.iter().enumerate() {
            let closed = 0.01 + (0.1 - 0.01) * (1.0 + (PI * e as f64 / 4.0).cos()) / 2.0;
            assert!((lr - closed).abs() < 1e-12, "epoch {e}: {lr} vs {closed}");
        }
    }

    #[test]
    fn scheduler_state_round_trips_and_checks_group_count() {
        let mut opt = Lrs(vec![1.0, 0.5]);
        let mut s = ExponentialLR::new(&mut opt, 0.9).unwrap();
        run(&mut s, &mut opt, 3);
        let saved = s.state_dict();
        let mut fresh_opt = Lrs(vec![1.0, 0.5]);
        let mut fresh = ExponentialLR::new(&mut fresh_opt, 0.9).unwrap();
        fresh.load_state_dict(&saved).unwrap();
        assert_eq!(fresh.state(), s.state());

        let mut one = Lrs(vec![1.0]);
        let mut other = ExponentialLR::new(&mut one, 0.9).unwrap();
        let err = other.load_state_dict(&saved).unwrap_err();
        assert!(
            err.to_string()
                .contains("base_lrs has shape [2], expected [1]"),
            "{err}"
        );
        let err = s.step(&mut one).unwrap_err();
        assert!(
            matches!(
                err,
                Error::GroupCount {
                    got: 1,
                    want: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_options_are_refused() {
        let mut opt = Lrs(vec![1.0]);
        assert!(StepLR::new(&mut opt, 0, 0.5).is_err());
        assert!(LinearLR::new(&mut opt, 0.0, 1.0, 3).is_err());
        assert!(CosineAnnealingLR::new(&mut opt, 0, 0.0).is_err());
        assert!(ExponentialLR::new(&mut opt, f64::NAN).is_err());
        assert_eq!(opt.0, vec![1.0], "a refused scheduler changes nothing");
    }
}
