//! Which optimizer a trainer builds: any of deepgen-optim's, chosen by
//! settings (`--optimizer adam|adamw|sgd|rmsprop` on the command line),
//! so no trainer is tied to one.

use deepgen_autograd::Var;
use deepgen_optim::{
    AdamConfig, AdamWConfig, GroupedOptimizer, Optimizer, RmsPropConfig, SgdConfig, UpdateRule,
};

use crate::Result;

/// The optimizers a trainer can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (with `weight_decay` as PyTorch's L2 term).
    #[default]
    Adam,
    /// AdamW (decoupled weight decay).
    AdamW,
    /// SGD with momentum (`momentum`; 0 for plain SGD).
    Sgd,
    /// RMSprop (with `momentum`).
    RmsProp,
}

/// An optimizer's kind and the options a trainer does not set itself (it
/// sets the learning rate).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// Adam / AdamW's (beta1, beta2).
    pub betas: (f64, f64),
    /// SGD / RMSprop's momentum.
    pub momentum: f64,
    pub weight_decay: f64,
}

impl Default for OptimizerConfig {
    /// PyTorch's defaults: Adam, betas (0.9, 0.999), no momentum or decay.
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::Adam,
            betas: (0.9, 0.999),
            momentum: 0.0,
            weight_decay: 0.0,
        }
    }
}

impl OptimizerConfig {
    /// Adam with these betas.
    pub fn adam(betas: (f64, f64)) -> Self {
        OptimizerConfig {
            betas,
            ..Default::default()
        }
    }

    /// The optimizer over `params` with learning rate `lr` (options checked
    /// as PyTorch's constructors check them).
    pub fn build(&self, params: Vec<Var<f32>>, lr: f64) -> Result<Box<dyn Optimizer<f32> + Send>> {
        self.build_groups(vec![(params, lr)])
    }

    /// The optimizer over parameter groups, each with its learning rate
    /// and these options (PyTorch's `param_groups`; a scheduler scales each
    /// group's rate from its own start).
    pub fn build_groups(
        &self,
        groups: Vec<(Vec<Var<f32>>, f64)>,
    ) -> Result<Box<dyn Optimizer<f32> + Send>> {
        let (betas, momentum, weight_decay) = (self.betas, self.momentum, self.weight_decay);
        Ok(match self.kind {
            OptimizerKind::Adam => grouped(groups, |lr| AdamConfig {
                lr,
                betas,
                weight_decay,
                ..Default::default()
            })?,
            OptimizerKind::AdamW => grouped(groups, |lr| AdamWConfig {
                lr,
                betas,
                weight_decay,
                ..Default::default()
            })?,
            OptimizerKind::Sgd => grouped(groups, |lr| SgdConfig {
                lr,
                momentum,
                weight_decay,
                ..Default::default()
            })?,
            OptimizerKind::RmsProp => grouped(groups, |lr| RmsPropConfig {
                lr,
                momentum,
                weight_decay,
                ..Default::default()
            })?,
        })
    }
}

/// One optimizer of groups whose options differ only in the rate.
fn grouped<C>(
    groups: Vec<(Vec<Var<f32>>, f64)>,
    config: impl Fn(f64) -> C,
) -> Result<Box<dyn Optimizer<f32> + Send>>
where
    C: UpdateRule<f32>,
    GroupedOptimizer<f32, C>: Optimizer<f32> + Send,
{
    let mut groups = groups.into_iter();
    let (params, lr) = groups.next().unwrap_or_default();
    let mut opt = GroupedOptimizer::new(params, config(lr))?;
    for (params, lr) in groups {
        opt.add_param_group(params, config(lr))?;
    }
    Ok(Box::new(opt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deepgen_autograd::Tensor;

    #[test]
    fn every_kind_builds_and_steps_and_bad_options_are_refused() {
        for kind in [
            OptimizerKind::Adam,
            OptimizerKind::AdamW,
            OptimizerKind::Sgd,
            OptimizerKind::RmsProp,
        ] {
            let w = Var::parameter(Tensor::<f32>::ones(&[2]));
            let config = OptimizerConfig {
                kind,
                momentum: 0.9,
                ..Default::default()
            };
            let mut opt = config.build(vec![w.clone()], 0.1).unwrap();
            w.square().sum_all().unwrap().backward().unwrap();
            opt.step().unwrap();
            assert!(w.value().to_vec()[0] < 1.0, "{kind:?} moved downhill");
        }
        let bad = OptimizerConfig {
            betas: (1.5, 0.999),
            ..Default::default()
        };
        let w = Var::parameter(Tensor::<f32>::ones(&[2]));
        assert!(bad.build(vec![w], 0.1).is_err());
    }
}
