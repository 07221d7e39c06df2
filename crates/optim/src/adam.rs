//! Adam and AdamW: `torch.optim.Adam` and `torch.optim.AdamW`.
//!
//! They differ only in weight decay. Adam adds `weight_decay * p` to the
//! gradient (an L2 penalty, which the adaptive step then rescales); AdamW
//! shrinks the parameter directly, `p *= 1 - lr * weight_decay`, before the
//! step ("decoupled" weight decay, Loshchilov & Hutter), which is what makes
//! weight decay behave as intended with adaptive steps and why AdamW's
//! default decay is 1e-2 rather than 0.

use deepgen_autograd::Element;
use deepgen_kernels::par;

use crate::optimizer::{check_min, check_unit, lerp, maximum, GroupedOptimizer, UpdateRule};
use crate::state::{StateReader, StateWriter};
use crate::Result;

/// Adam over parameters of element type `T`.
///
/// A fit of y = 2 x:
///
/// ```
/// use deepgen_autograd::{Tensor, Var};
/// use deepgen_optim::{Optimizer, Adam, AdamConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let x = Var::constant(Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[4])?);
/// let y = x.mul_scalar(2.0);
/// let w = Var::parameter(Tensor::zeros(&[1]));
/// let mut opt = Adam::new([w.clone()], AdamConfig { lr: 0.1, ..Default::default() })?;
/// let mut losses = Vec::new();
/// for _ in 0..100 {
///     let loss = x.mul(&w)?.sub(&y)?.square().mean(&[], false)?;
///     losses.push(loss.item()?);
///     opt.zero_grad();
///     loss.backward()?;
///     opt.step()?;
/// }
/// assert!(losses[losses.len() - 1] < 0.01 * losses[0]);
/// assert!((w.item()? - 2.0).abs() < 0.1);
/// # Ok(())
/// # }
/// ```
pub type Adam<T> = GroupedOptimizer<T, AdamConfig>;

/// AdamW over parameters of element type `T`.
pub type AdamW<T> = GroupedOptimizer<T, AdamWConfig>;

/// The options of `torch.optim.Adam`, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    /// Decay rates of the first and second moment estimates.
    pub betas: (f64, f64),
    /// Added to the denominator, for stability.
    pub eps: f64,
    /// L2 penalty added to the gradient (or, with `decoupled_weight_decay`,
    /// AdamW's decay).
    pub weight_decay: f64,
    /// Normalise by the running maximum of the second moment (AMSGrad).
    pub amsgrad: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
    /// Decay the parameter directly, as AdamW does.
    pub decoupled_weight_decay: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            maximize: false,
            decoupled_weight_decay: false,
        }
    }
}

/// The options of `torch.optim.AdamW`, with its defaults (weight decay
/// 1e-2, always decoupled).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    /// Decoupled decay: `p *= 1 - lr * weight_decay` each step.
    pub weight_decay: f64,
    pub amsgrad: bool,
    pub maximize: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
            maximize: false,
        }
    }
}

impl From<AdamWConfig> for AdamConfig {
    fn from(c: AdamWConfig) -> Self {
        AdamConfig {
            lr: c.lr,
            betas: c.betas,
            eps: c.eps,
            weight_decay: c.weight_decay,
            amsgrad: c.amsgrad,
            maximize: c.maximize,
            decoupled_weight_decay: true,
        }
    }
}

/// Adam's state of one parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamState<T> {
    /// Steps taken (f64 holds every count exactly up to 2^53).
    pub step: f64,
    /// First moment estimate (running mean of gradients).
    pub exp_avg: Vec<T>,
    /// Second moment estimate (running mean of squared gradients).
    pub exp_avg_sq: Vec<T>,
    /// Running maximum of `exp_avg_sq`, with AMSGrad.
    pub max_exp_avg_sq: Option<Vec<T>>,
}

impl AdamConfig {
    fn check(&self, name: &'static str) -> Result<()> {
        check_min(name, "lr", self.lr, 0.0, "must be finite and >= 0")?;
        check_min(name, "eps", self.eps, 0.0, "must be finite and >= 0")?;
        check_unit(name, "betas.0", self.betas.0)?;
        check_unit(name, "betas.1", self.betas.1)?;
        check_min(
            name,
            "weight_decay",
            self.weight_decay,
            0.0,
            "must be finite and >= 0",
        )
    }

    /// PyTorch's `_single_tensor_adam` (not capturable, not differentiable),
    /// element by element; scalars are computed in f64 and rounded to `T`
    /// once, as PyTorch passes Python floats to its kernels:
    ///
    /// ```text
    /// step += 1
    /// p *= 1 - lr * wd               (decoupled)  or  g += wd * p   (L2)
    /// m = lerp(m, g, 1 - beta1)
    /// v = beta2 * v + (1 - beta2) * g * g
    /// vmax = max(vmax, v)            (AMSGrad: use vmax for v below)
    /// denom = sqrt(v) / sqrt(1 - beta2^step) + eps
    /// p += -(lr / (1 - beta1^step)) * m / denom
    /// ```
    fn step<T: Element>(&self, param: &mut [T], grad: &[T], state: &mut Option<AdamState<T>>) {
        let n = param.len();
        let s = state.get_or_insert_with(|| AdamState {
            step: 0.0,
            exp_avg: vec![T::zero(); n],
            exp_avg_sq: vec![T::zero(); n],
            max_exp_avg_sq: None,
        });
        if self.amsgrad && s.max_exp_avg_sq.is_none() {
            s.max_exp_avg_sq = Some(vec![T::zero(); n]);
        }
        s.step += 1.0;
        let (beta1, beta2) = self.betas;
        let bias_correction1 = 1.0 - beta1.powf(s.step);
        let bias_correction2 = 1.0 - beta2.powf(s.step);
        let neg_step_size = T::of(-(self.lr / bias_correction1));
        let bias_correction2_sqrt = T::of(bias_correction2.sqrt());
        let (l2, shrink) = match (self.weight_decay != 0.0, self.decoupled_weight_decay) {
            (false, _) => (None, None),
            (true, false) => (Some(T::of(self.weight_decay)), None),
            (true, true) => (None, Some(T::of(1.0 - self.lr * self.weight_decay))),
        };
        let w1 = T::of(1.0 - beta1);
        let b2 = T::of(beta2);
        let w2 = T::of(1.0 - beta2);
        let eps = T::of(self.eps);
        let maximize = self.maximize;
        // The same arithmetic for every element, in PyTorch's order; the
        // options are loop-invariant, so the zipped loop (no bounds checks)
        // vectorises.
        let update = move |p: &mut T, g: T, m: &mut T, v: &mut T, vmax: Option<&mut T>| {
            let mut g = if maximize { -g } else { g };
            if let Some(shrink) = shrink {
                *p = *p * shrink;
            }
            if let Some(wd) = l2 {
                g = g + wd * *p;
            }
            *m = lerp(*m, g, w1);
            *v = *v * b2 + w2 * g * g;
            let mut v_hat = *v;
            if let Some(vmax) = vmax {
                v_hat = maximum(*vmax, v_hat);
                *vmax = v_hat;
            }
            let denom = v_hat.sqrt() / bias_correction2_sqrt + eps;
            *p = *p + neg_step_size * *m / denom;
        };
        // Large tensors are updated in chunks on all threads (fc1 and fc4
        // of the MLP VAE are 314k elements each); small ones in one piece.
        let n = param.len();
        let chunk = if par::worth_splitting(n) {
            par::chunk_len(n)
        } else {
            n.max(1)
        };
        let vmax: Vec<Option<&mut [T]>> = match s.max_exp_avg_sq.as_deref_mut() {
            Some(vmax) if self.amsgrad => vmax.chunks_mut(chunk).map(Some).collect(),
            _ => (0..n.div_ceil(chunk)).map(|_| None).collect(),
        };
        let mut parts: Vec<_> = param
            .chunks_mut(chunk)
            .zip(grad.chunks(chunk))
            .zip(
                s.exp_avg
                    .chunks_mut(chunk)
                    .zip(s.exp_avg_sq.chunks_mut(chunk)),
            )
            .zip(vmax)
            .collect();
        par::for_each_chunk(&mut parts, 1, |_, part| {
            for (((p, g), (m, v)), vmax) in part {
                update_chunk(p, g, m, v, vmax.as_deref_mut(), &update);
            }
        });
    }

    fn save_common(&self, w: &mut StateWriter) {
        w.num("lr", self.lr);
        w.nums("betas", &[self.betas.0, self.betas.1]);
        w.num("eps", self.eps);
        w.num("weight_decay", self.weight_decay);
        w.flag("amsgrad", self.amsgrad);
        w.flag("maximize", self.maximize);
    }

    fn load_common(&mut self, r: &mut StateReader) -> Result<()> {
        self.lr = r.num("lr")?;
        let betas = r.nums("betas", 2)?;
        self.betas = (betas[0], betas[1]);
        self.eps = r.num("eps")?;
        self.weight_decay = r.num("weight_decay")?;
        self.amsgrad = r.flag("amsgrad")?;
        self.maximize = r.flag("maximize")?;
        Ok(())
    }
}

fn save_adam_state<T: Element>(s: &AdamState<T>, shape: &[usize], w: &mut StateWriter) {
    w.num("step", s.step);
    w.buffer("exp_avg", &s.exp_avg, shape);
    w.buffer("exp_avg_sq", &s.exp_avg_sq, shape);
    if let Some(vmax) = &s.max_exp_avg_sq {
        w.buffer("max_exp_avg_sq", vmax, shape);
    }
}

fn load_adam_state<T: Element>(
    amsgrad: bool,
    shape: &[usize],
    r: &mut StateReader,
) -> Result<Option<AdamState<T>>> {
    if !r.has("step") {
        return Ok(None);
    }
    Ok(Some(AdamState {
        step: r.count("step")?,
        exp_avg: r.buffer("exp_avg", shape)?,
        exp_avg_sq: r.buffer("exp_avg_sq", shape)?,
        // Required with AMSGrad; kept if present without it (PyTorch keeps
        // it too when AMSGrad is switched off).
        max_exp_avg_sq: if amsgrad || r.has("max_exp_avg_sq") {
            Some(r.buffer("max_exp_avg_sq", shape)?)
        } else {
            None
        },
    }))
}

impl<T: Element> UpdateRule<T> for AdamConfig {
    const NAME: &'static str = "Adam";
    type State = AdamState<T>;

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn validate(&self) -> Result<()> {
        self.check(<Self as UpdateRule<T>>::NAME)
    }

    fn update(&self, param: &mut [T], grad: &[T], state: &mut Option<AdamState<T>>) {
        self.step(param, grad, state);
    }

    fn save_options(&self, w: &mut StateWriter) {
        self.save_common(w);
        w.flag("decoupled_weight_decay", self.decoupled_weight_decay);
    }

    fn load_options(&mut self, r: &mut StateReader) -> Result<()> {
        self.load_common(r)?;
        self.decoupled_weight_decay = r.flag("decoupled_weight_decay")?;
        Ok(())
    }

    fn save_state(&self, state: &AdamState<T>, shape: &[usize], w: &mut StateWriter) {
        save_adam_state(state, shape, w);
    }

    fn load_state(&self, shape: &[usize], r: &mut StateReader) -> Result<Option<AdamState<T>>> {
        load_adam_state(self.amsgrad, shape, r)
    }
}

impl<T: Element> UpdateRule<T> for AdamWConfig {
    const NAME: &'static str = "AdamW";
    type State = AdamState<T>;

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn validate(&self) -> Result<()> {
        AdamConfig::from(*self).check(<Self as UpdateRule<T>>::NAME)
    }

    fn update(&self, param: &mut [T], grad: &[T], state: &mut Option<AdamState<T>>) {
        AdamConfig::from(*self).step(param, grad, state);
    }

    fn save_options(&self, w: &mut StateWriter) {
        AdamConfig::from(*self).save_common(w);
    }

    fn load_options(&mut self, r: &mut StateReader) -> Result<()> {
        let mut c = AdamConfig::from(*self);
        c.load_common(r)?;
        *self = AdamWConfig {
            lr: c.lr,
            betas: c.betas,
            eps: c.eps,
            weight_decay: c.weight_decay,
            amsgrad: c.amsgrad,
            maximize: c.maximize,
        };
        Ok(())
    }

    fn save_state(&self, state: &AdamState<T>, shape: &[usize], w: &mut StateWriter) {
        save_adam_state(state, shape, w);
    }

    fn load_state(&self, shape: &[usize], r: &mut StateReader) -> Result<Option<AdamState<T>>> {
        load_adam_state(self.amsgrad, shape, r)
    }
}

/// Applies `update` to one chunk. A function of its own so the slices
/// arrive as separate `&mut` arguments, which the compiler knows do not
/// alias, and the loop vectorises (through `&mut &mut [T]` it did not).
fn update_chunk<T: Element>(
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    vmax: Option<&mut [T]>,
    update: &impl Fn(&mut T, T, &mut T, &mut T, Option<&mut T>),
) {
    let moments = p.iter_mut().zip(g).zip(m.iter_mut().zip(v.iter_mut()));
    match vmax {
        Some(vmax) => {
            for (((p, &g), (m, v)), vm) in moments.zip(vmax) {
                update(p, g, m, v, Some(vm));
            }
        }
        None => {
            for ((p, &g), (m, v)) in moments {
                update(p, g, m, v, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use deepgen_autograd::{Tensor, Var};

    use super::*;
    use crate::Optimizer;

    fn param_with_grad(value: f64, grad: f64) -> Var<f64> {
        let p = Var::parameter(Tensor::from_vec(vec![value], &[1]).unwrap());
        p.set_grad(Some(Tensor::from_vec(vec![grad], &[1]).unwrap()))
            .unwrap();
        p
    }

    #[test]
    fn chunked_updates_on_two_threads_equal_one_thread_bit_for_bit() {
        let n = 100_003; // above the split threshold, not a multiple of the chunk
        let run = |threads: usize, amsgrad: bool| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let p = Var::parameter(
                    Tensor::from_vec((0..n).map(|i| (i as f32 * 0.37).sin()).collect(), &[n])
                        .unwrap(),
                );
                let config = AdamConfig {
                    amsgrad,
                    weight_decay: 0.01,
                    ..Default::default()
                };
                let mut opt = Adam::new([p.clone()], config).unwrap();
                for step in 0..3 {
                    let g: Vec<f32> = (0..n)
                        .map(|i| ((i * (step + 2)) as f32 * 0.11).cos())
                        .collect();
                    p.set_grad(Some(Tensor::from_vec(g, &[n]).unwrap()))
                        .unwrap();
                    opt.step().unwrap();
                }
                p.value().to_vec()
            })
        };
        for amsgrad in [false, true] {
            assert_eq!(run(1, amsgrad), run(2, amsgrad), "amsgrad {amsgrad}");
        }
    }

    #[test]
    fn first_adam_step_moves_by_about_lr_whatever_the_gradient_scale() {
        for g in [1e-3, 1.0, 1e3] {
            let p = param_with_grad(0.0, g);
            let mut opt = Adam::new([p.clone()], AdamConfig::default()).unwrap();
            opt.step().unwrap();
            let moved = p.value().to_vec()[0];
            assert!((moved + 1e-3).abs() < 1e-8, "g {g}: moved {moved}");
            assert_eq!(opt.state(0).unwrap().step, 1.0);
        }
    }

    #[test]
    fn adamw_shrinks_the_parameter_before_the_step() {
        // A zero gradient leaves only the decay: p (1 - lr wd).
        let p = param_with_grad(2.0, 0.0);
        let config = AdamWConfig {
            lr: 0.1,
            weight_decay: 0.5,
            ..Default::default()
        };
        let mut opt = AdamW::new([p.clone()], config).unwrap();
        opt.step().unwrap();
        assert_eq!(p.value().to_vec(), vec![2.0 * (1.0 - 0.05)]);
    }

    #[test]
    fn amsgrad_keeps_the_largest_second_moment() {
        let p = param_with_grad(0.0, 10.0);
        let config = AdamConfig {
            amsgrad: true,
            ..Default::default()
        };
        let mut opt = Adam::new([p.clone()], config).unwrap();
        opt.step().unwrap();
        p.set_grad(Some(Tensor::from_vec(vec![0.0], &[1]).unwrap()))
            .unwrap();
        opt.step().unwrap();
        let s = opt.state(0).unwrap();
        assert!(s.max_exp_avg_sq.as_ref().unwrap()[0] > s.exp_avg_sq[0]);
    }

    #[test]
    fn betas_outside_the_unit_interval_are_refused() {
        let p = param_with_grad(0.0, 1.0);
        let config = AdamConfig {
            betas: (0.9, 1.0),
            ..Default::default()
        };
        let err = Adam::new([p], config).err().unwrap();
        assert!(err.to_string().contains("Adam: invalid betas.1 1"), "{err}");
    }
}
