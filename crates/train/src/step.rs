//! The one way a loss becomes an update: [`Updater::backward_step`].
//!
//! It checks the loss (a NaN or infinite loss is an error and nothing
//! moves), takes its gradients with respect to this optimizer's parameters
//! only (PyTorch's `loss.backward(inputs=params)`: a generator's step never
//! computes the discriminator's weight gradients), frees the graph — the
//! loss is taken by value and dropped before the update, because a graph
//! still holding views of the weights would make the in-place update copy
//! every weight — and then, once `accumulate` micro-batches have added up,
//! clips the gradient norm, steps the optimizer and advances the
//! learning-rate schedule.
//!
//! Schedules are deepgen-optim's schedulers (PyTorch's LinearLR,
//! CosineAnnealingLR, StepLR), stepped once per update; a warm-up is a
//! LinearLR chained with them (PyTorch's `ChainedScheduler`: both step
//! every update and their factors multiply).

use deepgen_autograd::{Tensor, Var};
use deepgen_optim::prelude::*;
use deepgen_optim::{clip_grad_norm, CosineAnnealingLR, LinearLR, StepLR};

use crate::{Error, Result};

/// How the learning rate moves over a run.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Linearly down to zero at the last update of the run.
    Linear,
    /// Cosine annealing down to zero at the last update of the run.
    Cosine,
    /// Times `gamma` every `epochs` epochs.
    Step { epochs: usize, gamma: f64 },
}

impl Schedule {
    /// Parses `constant`, `linear`, `cosine` or `step:EPOCHS:GAMMA`.
    pub fn parse(s: &str) -> std::result::Result<Schedule, String> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "linear" => Ok(Schedule::Linear),
            "cosine" => Ok(Schedule::Cosine),
            _ => {
                let parts: Vec<&str> = s.split(':').collect();
                match parts.as_slice() {
                    ["step", e, g] => {
                        let epochs = e.parse::<usize>().ok().filter(|&e| e > 0);
                        let gamma = g.parse::<f64>().ok().filter(|g| g.is_finite() && *g >= 0.0);
                        match (epochs, gamma) {
                            (Some(epochs), Some(gamma)) => Ok(Schedule::Step { epochs, gamma }),
                            _ => Err(format!(
                                "{s:?}: expected step:EPOCHS:GAMMA with EPOCHS >= 1 and GAMMA >= 0"
                            )),
                        }
                    }
                    _ => Err(format!(
                        "{s:?}: expected constant, linear, cosine or step:EPOCHS:GAMMA"
                    )),
                }
            }
        }
    }
}

/// What every update does besides the optimizer's rule.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepConfig {
    pub schedule: Schedule,
    /// Updates of linear warm-up from base / (warmup + 1) to the base rate (0: none).
    pub warmup: usize,
    /// Clip the gradients' total 2-norm to this before each update.
    pub clip_grad_norm: Option<f64>,
    /// Micro-batches whose gradients add up to one update (1: every batch).
    /// Each micro-batch's loss is scaled by 1 / accumulate, so an update
    /// sees the mean over all of them.
    pub accumulate: usize,
}

impl Default for StepConfig {
    fn default() -> Self {
        StepConfig {
            schedule: Schedule::Constant,
            warmup: 0,
            clip_grad_norm: None,
            accumulate: 1,
        }
    }
}

impl std::fmt::Display for Schedule {
    /// The text [`Schedule::parse`] reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Constant => f.write_str("constant"),
            Schedule::Linear => f.write_str("linear"),
            Schedule::Cosine => f.write_str("cosine"),
            Schedule::Step { epochs, gamma } => write!(f, "step:{epochs}:{gamma}"),
        }
    }
}

impl StepConfig {
    /// Updates in an epoch of `batches` batches (the last, partial
    /// accumulation of an epoch is an update too).
    pub fn updates_per_epoch(&self, batches: usize) -> usize {
        batches.div_ceil(self.accumulate.max(1))
    }

    /// Checks the settings (clear messages naming the flags).
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Invalid { op: "step", msg });
        if self.accumulate == 0 {
            return bad("--accumulate must be at least 1".into());
        }
        if let Some(c) = self.clip_grad_norm {
            if !(c > 0.0 && c.is_finite()) {
                return bad(format!(
                    "--clip-grad-norm must be positive and finite, got {c}"
                ));
            }
        }
        Ok(())
    }
}

/// An optimizer with its schedule, clipping and gradient accumulation.
pub struct Updater {
    name: String,
    opt: Box<dyn Optimizer<f32> + Send>,
    warmup: Option<LinearLR>,
    schedule: Option<Box<dyn LrScheduler + Send>>,
    config: StepConfig,
    /// Micro-batches whose gradients wait for an update.
    pending: usize,
    /// Updates taken.
    updates: u64,
    /// Updates the schedule spans (a linear or cosine schedule is sized by it).
    total: u64,
    last_grad_norm: Option<f64>,
    /// This rank's fraction of the global batch of the current step (1 in
    /// one process): its mean loss is weighted by it, so the ranks'
    /// gradients add up to the global batch's.
    share: f64,
    /// The flattened gradients of a data-parallel update, kept between updates.
    flat: Vec<f32>,
}

/// Gradient values per all-reduce of a data-parallel update (PyTorch DDP's
/// default bucket is 25 MB; 4 M floats is 16 MB).
const BUCKET: usize = 1 << 22;

impl Updater {
    /// `name` names it in messages ("the generator loss became NaN") and in
    /// checkpoints (`optimizer_generator.safetensors`);
    /// `steps_per_epoch` (the calls of [`Updater::backward_step`] in an
    /// epoch: its batches, or for a GAN's generator its generator steps) and
    /// `epochs` size the schedule.
    pub fn new(
        name: &str,
        mut opt: Box<dyn Optimizer<f32> + Send>,
        config: &StepConfig,
        steps_per_epoch: usize,
        epochs: usize,
    ) -> Result<Self> {
        config.validate()?;
        let per_epoch = config.updates_per_epoch(steps_per_epoch).max(1) as u64;
        let too_long = || Error::Invalid {
            op: "step",
            msg: format!("a schedule over {epochs} epochs of {per_epoch} updates is too long"),
        };
        let total = per_epoch
            .checked_mul(epochs.max(1) as u64)
            .ok_or_else(too_long)?;
        // The main schedule is built before the warm-up, so that both see
        // the base rates (the warm-up's construction step scales them).
        let schedule: Option<Box<dyn LrScheduler + Send>> = match config.schedule {
            Schedule::Constant => None,
            Schedule::Linear => Some(Box::new(LinearLR::new(&mut *opt, 1.0, 0.0, total)?)),
            Schedule::Cosine => Some(Box::new(CosineAnnealingLR::new(&mut *opt, total, 0.0)?)),
            Schedule::Step { epochs, gamma } => {
                let every = per_epoch.checked_mul(epochs as u64).ok_or_else(too_long)?;
                Some(Box::new(StepLR::new(&mut *opt, every, gamma)?))
            }
        };
        let warmup = match config.warmup {
            0 => None,
            w => Some(LinearLR::new(
                &mut *opt,
                1.0 / (w as f64 + 1.0),
                1.0,
                w as u64,
            )?),
        };
        Ok(Updater {
            name: name.to_string(),
            opt,
            warmup,
            schedule,
            config: config.clone(),
            pending: 0,
            updates: 0,
            total,
            last_grad_norm: None,
            share: 1.0,
            flat: Default::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn optimizer(&self) -> &dyn Optimizer<f32> {
        self.opt.as_ref()
    }

    /// The first group's learning rate (what the next update uses).
    pub fn lr(&self) -> f64 {
        self.opt.lr(0).unwrap_or(f64::NAN)
    }

    /// Updates taken so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// The gradient norm before clipping at the last update (with clipping on).
    pub fn last_grad_norm(&self) -> Option<f64> {
        self.last_grad_norm
    }

    /// Checks `loss`, adds its gradients (scaled for accumulation) to this
    /// optimizer's parameters, frees the graph and, when enough
    /// micro-batches have added up, updates. Returns the loss's value and
    /// whether an update was taken. A NaN or infinite loss is
    /// [`Error::NonFinite`], with nothing changed.
    ///
    /// Drop every other handle on the step's graph first (outputs kept for
    /// logging: take their values): what still holds the graph holds views
    /// of the weights, and the update then copies them.
    pub fn backward_step(&mut self, loss: Var<f32>) -> Result<(f64, bool)> {
        let value = loss.item()? as f64;
        if !value.is_finite() {
            return Err(Error::NonFinite {
                what: format!("{} loss", self.name),
                value,
                epoch: None,
                batch: None,
                kept: None,
            });
        }
        if self.pending == 0 {
            self.opt.zero_grad();
        }
        let params = self.opt.params();
        let weight = self.share / self.config.accumulate as f64;
        let scaled = match weight == 1.0 {
            true => loss,
            false => loss.mul_scalar(weight as f32),
        };
        scaled.backward_inputs(&params)?;
        drop(scaled);
        drop(params);
        self.pending += 1;
        if self.pending < self.config.accumulate {
            return Ok((value, false));
        }
        self.update()?;
        Ok((value, true))
    }

    /// Micro-batches whose gradients wait for an update (0 between updates).
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Takes the update for micro-batches still waiting (the end of an
    /// epoch that did not fill the last accumulation); true if it did.
    pub fn flush(&mut self) -> Result<bool> {
        if self.pending == 0 {
            return Ok(false);
        }
        self.update()?;
        Ok(true)
    }

    /// Sets this rank's fraction of the global batch for the coming steps
    /// (the runtime does, from each batch's [`deepgen_data::Share`]).
    pub fn set_share(&mut self, weight: f64) {
        self.share = weight;
    }

    /// Sums the ranks' gradients in place (data-parallel runs): buckets of
    /// the flattened gradients in the optimizer's parameter order, the same
    /// on every rank. Each parameter carries a flag, so one that no rank
    /// gave a gradient keeps none (and the optimizer skips it, as in one
    /// process).
    fn reduce_grads(&mut self) -> Result<()> {
        let world = deepgen_dist::world();
        if world.size() == 1 {
            return Ok(());
        }
        let params = self.opt.params();
        let mut start = 0;
        while start < params.len() {
            let mut end = start;
            let mut len = 0;
            while end < params.len() && (end == start || len + params[end].numel() < BUCKET) {
                len += params[end].numel() + 1;
                end += 1;
            }
            let bucket = &params[start..end];
            // One buffer for the run: a fresh one each update would fault
            // its pages in again every step.
            let flat = &mut self.flat;
            flat.clear();
            for p in bucket {
                match p.grad() {
                    Some(g) => {
                        match g.as_slice() {
                            Some(s) => flat.extend_from_slice(s),
                            None => flat.extend(g.to_vec()),
                        }
                        flat.push(1.0);
                    }
                    None => flat.extend(std::iter::repeat_n(0.0, p.numel() + 1)),
                }
            }
            world.sum_f32(flat);
            let mut at = 0;
            for p in bucket {
                let n = p.numel();
                if flat[at + n] > 0.0 {
                    // A pooled buffer: already mapped, unlike a fresh Vec.
                    let buf = deepgen_tensor::storage::Buffer::copy_of(&flat[at..at + n]);
                    let g = Tensor::from_buffer(buf, &p.shape())?;
                    p.set_grad(Some(g))?;
                }
                at += n + 1;
            }
            start = end;
        }
        Ok(())
    }

    fn update(&mut self) -> Result<()> {
        self.reduce_grads()?;
        if self.pending < self.config.accumulate {
            // Fewer micro-batches than usual (an epoch's end): each was scaled
            // by 1 / accumulate, so rescale to their mean.
            self.scale_grads(self.config.accumulate as f32 / self.pending as f32)?;
        }
        if let Some(max) = self.config.clip_grad_norm {
            let norm = clip_grad_norm(&self.opt.params(), max, 2.0)?;
            self.last_grad_norm = Some(norm);
            if !norm.is_finite() {
                self.opt.zero_grad();
                self.pending = 0;
                return Err(Error::NonFinite {
                    what: format!("{} gradient norm", self.name),
                    value: norm,
                    epoch: None,
                    batch: None,
                    kept: None,
                });
            }
        }
        self.opt.step()?;
        // The gradients stay until the next step's first backward (as in
        // PyTorch), for histograms and inspection.
        self.pending = 0;
        self.updates += 1;
        if let Some(w) = &mut self.warmup {
            w.step(&mut *self.opt)?;
        }
        if let Some(s) = &mut self.schedule {
            s.step(&mut *self.opt)?;
        }
        Ok(())
    }

    fn scale_grads(&self, factor: f32) -> Result<()> {
        for p in self.opt.params() {
            if let Some(g) = p.grad() {
                let scaled =
                    deepgen_autograd::no_grad(|| Var::constant(g).mul_scalar(factor).value());
                p.set_grad(Some(scaled))?;
            }
        }
        Ok(())
    }

    /// Optimizer, schedule and counters as named f64 tensors (for a checkpoint).
    pub fn state_dict(&self) -> Vec<(String, Tensor<f64>)> {
        let mut out: Vec<(String, Tensor<f64>)> = Vec::new();
        let mut add = |prefix: &str, entries: Vec<(String, Tensor<f64>)>| {
            out.extend(
                entries
                    .into_iter()
                    .map(|(k, v)| (format!("{prefix}.{k}"), v)),
            );
        };
        add("optimizer", self.opt.state_dict());
        if let Some(w) = &self.warmup {
            add("warmup", w.state_dict());
        }
        if let Some(s) = &self.schedule {
            add("schedule", s.state_dict());
        }
        let counters = vec![
            ("pending".to_string(), scalar(self.pending as f64)),
            ("updates".to_string(), scalar(self.updates as f64)),
            ("total".to_string(), scalar(self.total as f64)),
        ];
        add("updater", counters);
        out
    }

    /// Restores [`Updater::state_dict`]: same optimizer kind, parameters,
    /// schedule and warm-up.
    pub fn load_state_dict(&mut self, state: &[(String, Tensor<f64>)]) -> Result<()> {
        let part = |prefix: &str| -> Vec<(String, Tensor<f64>)> {
            let p = format!("{prefix}.");
            state
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(&p).map(|k| (k.to_string(), v.clone())))
                .collect()
        };
        let counter = |name: &str| -> Result<f64> {
            let key = format!("updater.{name}");
            state
                .iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v.to_vec().first().copied())
                .filter(|v| *v >= 0.0 && v.fract() == 0.0)
                .ok_or_else(|| Error::Invalid {
                    op: "resume",
                    msg: format!("{}: the checkpoint has no valid {key}", self.name),
                })
        };
        let total = counter("total")? as u64;
        let sized = matches!(self.config.schedule, Schedule::Linear | Schedule::Cosine);
        if sized && total != self.total {
            return Err(Error::Invalid {
                op: "resume",
                msg: format!(
                    "{}: the {} learning-rate schedule spans {total} updates in the checkpoint but {} now (--epochs changed); resume with the run's --epochs",
                    self.name, self.config.schedule, self.total
                ),
            });
        }
        // The schedulers read the optimizer's rates: optimizer first.
        self.opt.load_state_dict(&part("optimizer"))?;
        if let Some(w) = &mut self.warmup {
            w.load_state_dict(&part("warmup"))?;
        }
        if let Some(s) = &mut self.schedule {
            s.load_state_dict(&part("schedule"))?;
        }
        self.pending = counter("pending")? as usize;
        self.updates = counter("updates")? as u64;
        Ok(())
    }
}

fn scalar(v: f64) -> Tensor<f64> {
    Tensor::from_vec(vec![v], &[1]).expect("one element")
}

#[cfg(test)]
mod tests {
    use super::*;
    use deepgen_optim::{Sgd, SgdConfig};

    fn sgd(w: &Var<f32>, lr: f64) -> Box<dyn Optimizer<f32> + Send> {
        Box::new(
            Sgd::new(
                [w.clone()],
                SgdConfig {
                    lr,
                    ..Default::default()
                },
            )
            .unwrap(),
        )
    }

    /// Loss 0.5 * sum(w * x)^2-free: sum(w * x), gradient x.
    fn loss(w: &Var<f32>, x: &[f32]) -> Var<f32> {
        let x = Var::constant(Tensor::from_vec(x.to_vec(), &[x.len()]).unwrap());
        w.mul(&x).unwrap().sum_all().unwrap()
    }

    #[test]
    fn accumulated_micro_batches_update_once_with_the_mean_gradient() {
        let w = Var::parameter(Tensor::zeros(&[2]));
        let config = StepConfig {
            accumulate: 2,
            ..Default::default()
        };
        let mut u = Updater::new("model", sgd(&w, 1.0), &config, 4, 1).unwrap();
        assert!(!u.backward_step(loss(&w, &[1.0, 2.0])).unwrap().1);
        assert_eq!(w.value().to_vec(), vec![0.0, 0.0]);
        assert!(u.backward_step(loss(&w, &[3.0, 4.0])).unwrap().1);
        assert_eq!(w.value().to_vec(), vec![-2.0, -3.0]);
        assert_eq!(u.updates(), 1);
    }

    #[test]
    fn a_flushed_partial_accumulation_updates_with_the_mean_gradient() {
        let w = Var::parameter(Tensor::zeros(&[2]));
        let config = StepConfig {
            accumulate: 3,
            ..Default::default()
        };
        let mut u = Updater::new("model", sgd(&w, 1.0), &config, 1, 1).unwrap();
        u.backward_step(loss(&w, &[1.0, 2.0])).unwrap();
        u.backward_step(loss(&w, &[3.0, 4.0])).unwrap();
        assert!(u.flush().unwrap());
        assert_eq!(w.value().to_vec(), vec![-2.0, -3.0]);
        assert!(!u.flush().unwrap(), "nothing left to flush");
    }

    #[test]
    fn a_sized_schedule_refuses_a_checkpoint_of_another_length() {
        let w = Var::parameter(Tensor::zeros(&[1]));
        let config = StepConfig {
            schedule: Schedule::Linear,
            ..Default::default()
        };
        let a = Updater::new("model", sgd(&w, 1.0), &config, 4, 2).unwrap();
        let mut longer = Updater::new("model", sgd(&w, 1.0), &config, 4, 3).unwrap();
        let err = longer
            .load_state_dict(&a.state_dict())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("spans 8 updates") && err.contains("--epochs"),
            "{err}"
        );
        let constant = StepConfig::default();
        let b = Updater::new("model", sgd(&w, 1.0), &constant, 4, 2).unwrap();
        let mut c = Updater::new("model", sgd(&w, 1.0), &constant, 4, 3).unwrap();
        c.load_state_dict(&b.state_dict()).unwrap();
    }

    #[test]
    fn a_non_finite_loss_moves_nothing() {
        let w = Var::parameter(Tensor::ones(&[2]));
        let mut u = Updater::new("critic", sgd(&w, 1.0), &StepConfig::default(), 1, 1).unwrap();
        let bad = loss(&w, &[f32::NAN, 1.0]);
        let err = u.backward_step(bad).unwrap_err().to_string();
        assert!(err.contains("critic loss became NaN"), "{err}");
        assert_eq!(w.value().to_vec(), vec![1.0, 1.0]);
    }

    #[test]
    fn clipping_bounds_the_update_and_reports_the_norm() {
        let w = Var::parameter(Tensor::zeros(&[2]));
        let config = StepConfig {
            clip_grad_norm: Some(1.0),
            ..Default::default()
        };
        let mut u = Updater::new("model", sgd(&w, 1.0), &config, 1, 1).unwrap();
        u.backward_step(loss(&w, &[3.0, 4.0])).unwrap();
        assert_eq!(u.last_grad_norm(), Some(5.0));
        let v = w.value().to_vec();
        assert!(
            ((v[0] * v[0] + v[1] * v[1]).sqrt() - 1.0).abs() < 1e-5,
            "{v:?}"
        );
    }

    #[test]
    fn warmup_and_linear_decay_follow_pytorchs_chained_schedulers() {
        let w = Var::parameter(Tensor::zeros(&[1]));
        let config = StepConfig {
            schedule: Schedule::Linear,
            warmup: 3,
            ..Default::default()
        };
        // 2 epochs of 4 updates: warm-up over 3, linear decay over 8.
        let mut u = Updater::new("model", sgd(&w, 1.0), &config, 4, 2).unwrap();
        let mut lrs = vec![u.lr()];
        for _ in 0..8 {
            u.backward_step(loss(&w, &[1.0])).unwrap();
            lrs.push(u.lr());
        }
        // PyTorch: ChainedScheduler([LinearLR(1, 0, 8), LinearLR(1/4, 1, 3)]).
        let expected = [0.25, 0.4375, 0.5625, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0];
        for (a, b) in lrs.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{lrs:?}");
        }
    }

    #[test]
    fn state_dicts_restore_the_schedule_and_counters() {
        let w = Var::parameter(Tensor::zeros(&[1]));
        let config = StepConfig {
            schedule: Schedule::Cosine,
            warmup: 2,
            accumulate: 2,
            ..Default::default()
        };
        let mut a = Updater::new("model", sgd(&w, 0.5), &config, 3, 2).unwrap();
        for _ in 0..5 {
            a.backward_step(loss(&w, &[1.0])).unwrap();
        }
        let w2 = Var::parameter(w.value());
        let mut b = Updater::new("model", sgd(&w2, 0.5), &config, 3, 2).unwrap();
        b.load_state_dict(&a.state_dict()).unwrap();
        assert_eq!(
            (b.updates(), b.pending, b.lr()),
            (a.updates(), a.pending, a.lr())
        );
    }

    #[test]
    fn schedules_parse_from_flags() {
        assert_eq!(Schedule::parse("cosine"), Ok(Schedule::Cosine));
        assert_eq!(
            Schedule::parse("step:10:0.5"),
            Ok(Schedule::Step {
                epochs: 10,
                gamma: 0.5
            })
        );
        assert!(Schedule::parse("step:0:0.5").is_err());
        assert!(Schedule::parse("warm").is_err());
    }
}
