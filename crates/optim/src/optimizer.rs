//! What every optimizer shares: parameter groups, per-parameter state, the
//! step loop and state dicts.
//!
//! An optimizer here is a [`GroupedOptimizer`] together with an
//! [`UpdateRule`]: the rule is the per-group config struct (`SgdConfig`,
//! `AdamConfig`, ...) and says how one parameter moves given its gradient and
//! its state; the grouped optimizer owns the groups, finds the gradients,
//! keeps the state by parameter and writes and reads state dicts. So `Sgd<T>`
//! is `GroupedOptimizer<T, SgdConfig>`, and a new optimizer is one config
//! struct with one `update` function.

use std::collections::HashMap;
use std::fmt::Debug;

use deepgen_autograd::{Element, Tensor, Var};

use crate::state::{StateDict, StateReader, StateWriter};
use crate::{Error, Result};

/// Read and write access to the learning rate of each parameter group: all
/// a learning-rate scheduler needs, whatever the element type.
pub trait LrGroups {
    /// How many parameter groups there are.
    fn num_groups(&self) -> usize;

    /// The learning rate of group `group`.
    fn lr(&self, group: usize) -> Result<f64>;

    /// Sets the learning rate of group `group` (finite, >= 0).
    fn set_lr(&mut self, group: usize, lr: f64) -> Result<()>;

    /// Every group's learning rate, in group order.
    fn lrs(&self) -> Vec<f64> {
        (0..self.num_groups())
            .filter_map(|g| self.lr(g).ok())
            .collect()
    }
}

/// An optimizer: updates its parameters in place from their accumulated
/// gradients.
pub trait Optimizer<T: Element>: LrGroups {
    /// One update of every parameter that has a gradient; parameters whose
    /// gradient is `None` (not reached by `backward`) are skipped and their
    /// state is left alone, as in PyTorch.
    ///
    /// The update is in place. A graph that is still alive (the loss `Var`
    /// and anything computed from the parameters) holds views of their
    /// values, so they are copied first (copy on write): the result is the
    /// same, but drop the loss — after reading its value — before `step`
    /// to save the copy of every weight.
    fn step(&mut self) -> Result<()>;

    /// Clears every parameter's gradient (PyTorch's `set_to_none=True`).
    fn zero_grad(&self);

    /// Every parameter, groups in order: index `i` here is the `i` of
    /// `state.{i}.*` in the state dict.
    fn params(&self) -> Vec<Var<T>>;

    /// The parameters of group `group`.
    fn group_params(&self, group: usize) -> Result<&[Var<T>]>;

    /// The optimizer's state: per-parameter buffers (`state.{i}.{name}`) and
    /// every group's options (`group.{g}.{option}`, `group.{g}.params`).
    fn state_dict(&self) -> StateDict;

    /// Restores a state dict written by [`Optimizer::state_dict`] of an
    /// optimizer of the same kind over parameters of the same shapes in the
    /// same groups. Group options are restored too. A missing, extra or
    /// mis-shaped tensor is an error naming it, and then nothing changes.
    fn load_state_dict(&mut self, state: &[(String, Tensor<f64>)]) -> Result<()>;
}

/// The options of one parameter group and the update rule they define.
///
/// Implemented by the config structs; `T` is the parameters' element type,
/// in which the update computes, as PyTorch computes in the parameter's
/// dtype (options are converted to `T` once per step).
pub trait UpdateRule<T: Element>: Clone + Debug + Send + Sync + 'static {
    /// PyTorch's class name, for messages.
    const NAME: &'static str;

    /// What the optimizer keeps per parameter (moment estimates, step count).
    type State: Send + Sync;

    fn lr(&self) -> f64;

    fn set_lr(&mut self, lr: f64);

    /// Checks the options (PyTorch's constructor checks).
    fn validate(&self) -> Result<()>;

    /// Moves `param` by one step, given its gradient and its state (`None`
    /// before the first step); both slices have the parameter's length.
    fn update(&self, param: &mut [T], grad: &[T], state: &mut Option<Self::State>);

    /// Writes the options under `group.{g}.`.
    fn save_options(&self, w: &mut StateWriter);

    /// Reads the options written by [`UpdateRule::save_options`] into `self`.
    fn load_options(&mut self, r: &mut StateReader) -> Result<()>;

    /// Writes one parameter's state under `state.{i}.`.
    fn save_state(&self, state: &Self::State, shape: &[usize], w: &mut StateWriter);

    /// Reads one parameter's state, or `None` when the state dict has none
    /// for it (the parameter never had a gradient).
    fn load_state(&self, shape: &[usize], r: &mut StateReader) -> Result<Option<Self::State>>;
}

/// Checks `value >= min` (which also refuses NaN).
pub(crate) fn check_min(
    owner: &'static str,
    option: &'static str,
    value: f64,
    min: f64,
    expected: &'static str,
) -> Result<()> {
    if value >= min && value.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidOption {
            owner,
            option,
            value,
            expected,
        })
    }
}

/// Checks `0 <= value < 1` (Adam's betas).
pub(crate) fn check_unit(owner: &'static str, option: &'static str, value: f64) -> Result<()> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::InvalidOption {
            owner,
            option,
            value,
            expected: "must be in [0, 1)",
        })
    }
}

/// Parameters that share options.
#[derive(Debug, Clone)]
pub struct ParamGroup<T: Element, C> {
    params: Vec<Var<T>>,
    config: C,
}

impl<T: Element, C> ParamGroup<T, C> {
    pub fn params(&self) -> &[Var<T>] {
        &self.params
    }

    pub fn config(&self) -> &C {
        &self.config
    }
}

/// Parameter groups, each with its own options `C`, and the state of every
/// parameter: the machinery all optimizers share. Use it through its aliases
/// ([`crate::Sgd`], [`crate::Adam`], [`crate::AdamW`], [`crate::RmsProp`]).
pub struct GroupedOptimizer<T: Element, C: UpdateRule<T>> {
    groups: Vec<ParamGroup<T, C>>,
    /// By global parameter index; `None` until the parameter's first step.
    state: Vec<Option<C::State>>,
}

impl<T: Element, C: UpdateRule<T>> GroupedOptimizer<T, C> {
    /// An optimizer over `params` as one group with options `config`.
    pub fn new(params: impl IntoIterator<Item = Var<T>>, config: C) -> Result<Self> {
        let params: Vec<Var<T>> = params.into_iter().collect();
        if params.is_empty() {
            return Err(Error::EmptyParams { optimizer: C::NAME });
        }
        let mut opt = GroupedOptimizer {
            groups: Vec::new(),
            state: Vec::new(),
        };
        opt.add_param_group(params, config)?;
        Ok(opt)
    }

    /// Adds a group with its own options (say, no weight decay for biases,
    /// or a smaller learning rate for a pretrained part).
    pub fn add_param_group(
        &mut self,
        params: impl IntoIterator<Item = Var<T>>,
        config: C,
    ) -> Result<()> {
        config.validate()?;
        let params: Vec<Var<T>> = params.into_iter().collect();
        let mut seen: HashMap<usize, usize> = HashMap::new();
        for (g, group) in self.groups.iter().enumerate() {
            seen.extend(group.params.iter().map(|p| (p.id(), g)));
        }
        let first = self.state.len();
        for (k, p) in params.iter().enumerate() {
            if let Some(op) = p.op_name() {
                return Err(Error::NonLeafParam {
                    optimizer: C::NAME,
                    index: first + k,
                    op,
                });
            }
            if let Some(&group) = seen.get(&p.id()) {
                return Err(Error::DuplicateParam {
                    optimizer: C::NAME,
                    index: first + k,
                    group,
                });
            }
            seen.insert(p.id(), self.groups.len());
        }
        self.state.extend(params.iter().map(|_| None));
        self.groups.push(ParamGroup { params, config });
        Ok(())
    }

    /// The groups, in order.
    pub fn param_groups(&self) -> &[ParamGroup<T, C>] {
        &self.groups
    }

    /// The options of group `group`, to change between steps (checked at the
    /// next step).
    pub fn config_mut(&mut self, group: usize) -> Result<&mut C> {
        let len = self.groups.len();
        self.groups
            .get_mut(group)
            .map(|g| &mut g.config)
            .ok_or(Error::NoSuchGroup {
                op: "config_mut",
                group,
                len,
            })
    }

    /// The state of the parameter with global index `index` (`None` before
    /// its first step).
    pub fn state(&self, index: usize) -> Option<&C::State> {
        self.state.get(index).and_then(Option::as_ref)
    }

    fn group(&self, op: &'static str, group: usize) -> Result<&ParamGroup<T, C>> {
        self.groups.get(group).ok_or(Error::NoSuchGroup {
            op,
            group,
            len: self.groups.len(),
        })
    }
}

impl<T: Element, C: UpdateRule<T>> LrGroups for GroupedOptimizer<T, C> {
    fn num_groups(&self) -> usize {
        self.groups.len()
    }

    fn lr(&self, group: usize) -> Result<f64> {
        Ok(self.group("lr", group)?.config.lr())
    }

    fn set_lr(&mut self, group: usize, lr: f64) -> Result<()> {
        check_min(C::NAME, "lr", lr, 0.0, "must be finite and >= 0")?;
        let len = self.groups.len();
        let g = self.groups.get_mut(group).ok_or(Error::NoSuchGroup {
            op: "set_lr",
            group,
            len,
        })?;
        g.config.set_lr(lr);
        Ok(())
    }
}

impl<T: Element, C: UpdateRule<T>> Optimizer<T> for GroupedOptimizer<T, C> {
    fn step(&mut self) -> Result<()> {
        // Check everything before moving anything: an error leaves the
        // parameters and the state as they were.
        let mut grads = Vec::with_capacity(self.state.len());
        for group in &self.groups {
            group.config.validate()?;
            for p in &group.params {
                let grad = p.grad();
                if let Some(g) = &grad {
                    let want = p.shape();
                    if g.shape() != want.as_slice() {
                        return Err(Error::GradShape {
                            op: C::NAME,
                            index: grads.len(),
                            got: g.shape().to_vec(),
                            want,
                        });
                    }
                }
                grads.push(grad);
            }
        }
        let params = self.groups.iter().flat_map(|g| {
            let config = &g.config;
            g.params.iter().map(move |p| (config, p))
        });
        for (((config, p), grad), state) in params.zip(grads).zip(&mut self.state) {
            let Some(grad) = grad else { continue };
            let grad = grad.contiguous();
            let grad = grad.as_slice().expect("a contiguous tensor has a slice");
            p.update_value(|value| config.update(value.data_mut(), grad, state));
        }
        Ok(())
    }

    fn zero_grad(&self) {
        for p in self.groups.iter().flat_map(|g| &g.params) {
            p.zero_grad();
        }
    }

    fn params(&self) -> Vec<Var<T>> {
        self.groups.iter().flat_map(|g| g.params.clone()).collect()
    }

    fn group_params(&self, group: usize) -> Result<&[Var<T>]> {
        Ok(&self.group("group_params", group)?.params)
    }

    fn state_dict(&self) -> StateDict {
        let mut w = StateWriter::new();
        let params = self.groups.iter().flat_map(|g| {
            let config = &g.config;
            g.params.iter().map(move |p| (config, p))
        });
        for (i, ((config, p), state)) in params.zip(&self.state).enumerate() {
            if let Some(state) = state {
                w.set_prefix(format!("state.{i}."));
                config.save_state(state, &p.shape(), &mut w);
            }
        }
        let mut first = 0;
        for (g, group) in self.groups.iter().enumerate() {
            w.set_prefix(format!("group.{g}."));
            group.config.save_options(&mut w);
            let n = group.params.len();
            let indices: Vec<f64> = (first..first + n).map(|i| i as f64).collect();
            w.nums("params", &indices);
            first += n;
        }
        w.finish()
    }

    fn load_state_dict(&mut self, state: &[(String, Tensor<f64>)]) -> Result<()> {
        let mut r = StateReader::new(state)?;
        let mut configs = Vec::with_capacity(self.groups.len());
        let mut first = 0;
        for (g, group) in self.groups.iter().enumerate() {
            r.set_prefix(format!("group.{g}."));
            let mut config = group.config.clone();
            config.load_options(&mut r)?;
            config.validate()?;
            let n = group.params.len();
            let indices = r.nums("params", n)?;
            for (k, &v) in indices.iter().enumerate() {
                let want = (first + k) as f64;
                if v != want {
                    return Err(r.bad_value("params", v, format!("{want} at position {k}")));
                }
            }
            first += n;
            configs.push(config);
        }
        let mut states = Vec::with_capacity(self.state.len());
        for (group, config) in self.groups.iter().zip(&configs) {
            for p in &group.params {
                r.set_prefix(format!("state.{}.", states.len()));
                states.push(config.load_state(&p.shape(), &mut r)?);
            }
        }
        r.finish()?;
        for (group, config) in self.groups.iter_mut().zip(configs) {
            group.config = config;
        }
        self.state = states;
        Ok(())
    }
}

/// So a boxed optimizer can be handed to a scheduler as it is.
impl<T: Element> LrGroups for Box<dyn Optimizer<T> + '_> {
    fn num_groups(&self) -> usize {
        (**self).num_groups()
    }

    fn lr(&self, group: usize) -> Result<f64> {
        (**self).lr(group)
    }

    fn set_lr(&mut self, group: usize, lr: f64) -> Result<()> {
        (**self).set_lr(group, lr)
    }
}

/// `torch.lerp` as PyTorch computes it (the form depends on the weight, for
/// accuracy at both ends): `a + w (b - a)`.
pub(crate) fn lerp<T: Element>(a: T, b: T, w: T) -> T {
    if w.abs() < T::of(0.5) {
        a + w * (b - a)
    } else {
        b - (b - a) * (T::one() - w)
    }
}

/// `torch.maximum`: NaN wins, as in PyTorch.
pub(crate) fn maximum<T: Element>(a: T, b: T) -> T {
    if a.is_nan() || a > b {
        a
    } else {
        b
    }
}
