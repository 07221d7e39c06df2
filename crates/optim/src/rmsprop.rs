//! RMSprop: `torch.optim.RMSprop`, optionally centred and with momentum.

use deepgen_autograd::Element;

use crate::optimizer::{check_min, lerp, GroupedOptimizer, UpdateRule};
use crate::state::{StateReader, StateWriter};
use crate::Result;

/// RMSprop over parameters of element type `T`.
pub type RmsProp<T> = GroupedOptimizer<T, RmsPropConfig>;

/// The options of `torch.optim.RMSprop`, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsPropConfig {
    /// Learning rate (PyTorch's default for RMSprop: 1e-2).
    pub lr: f64,
    /// Smoothing constant of the running mean of squared gradients.
    pub alpha: f64,
    /// Added to the denominator, for stability.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Momentum factor; 0 keeps no buffer.
    pub momentum: f64,
    /// Normalise by an estimate of the gradient's variance rather than its
    /// second moment.
    pub centered: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            maximize: false,
        }
    }
}

/// RMSprop's state of one parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct RmsPropState<T> {
    /// Steps taken.
    pub step: f64,
    /// Running mean of squared gradients.
    pub square_avg: Vec<T>,
    /// With momentum > 0.
    pub momentum_buffer: Option<Vec<T>>,
    /// Running mean of gradients, when centred.
    pub grad_avg: Option<Vec<T>>,
}

impl<T: Element> UpdateRule<T> for RmsPropConfig {
    const NAME: &'static str = "RMSprop";
    type State = RmsPropState<T>;

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn validate(&self) -> Result<()> {
        let name = <Self as UpdateRule<T>>::NAME;
        let ok = "must be finite and >= 0";
        check_min(name, "lr", self.lr, 0.0, ok)?;
        check_min(name, "eps", self.eps, 0.0, ok)?;
        check_min(name, "momentum", self.momentum, 0.0, ok)?;
        check_min(name, "weight_decay", self.weight_decay, 0.0, ok)?;
        check_min(name, "alpha", self.alpha, 0.0, ok)
    }

    /// PyTorch's `_single_tensor_rmsprop`, element by element:
    ///
    /// ```text
    /// g = grad (negated when maximizing) + weight_decay * p
    /// sq = alpha * sq + (1 - alpha) * g * g
    /// avg = sqrt(sq - ga * ga) + eps, ga = lerp(ga, g, 1 - alpha)  (centred)
    /// avg = sqrt(sq) + eps                                         (else)
    /// buf = momentum * buf + g / avg; p -= lr * buf                (momentum > 0)
    /// p += -lr * g / avg                                           (else)
    /// ```
    fn update(&self, param: &mut [T], grad: &[T], state: &mut Option<RmsPropState<T>>) {
        let n = param.len();
        let s = state.get_or_insert_with(|| RmsPropState {
            step: 0.0,
            square_avg: vec![T::zero(); n],
            momentum_buffer: None,
            grad_avg: None,
        });
        if self.momentum > 0.0 && s.momentum_buffer.is_none() {
            s.momentum_buffer = Some(vec![T::zero(); n]);
        }
        if self.centered && s.grad_avg.is_none() {
            s.grad_avg = Some(vec![T::zero(); n]);
        }
        s.step += 1.0;
        let decay = (self.weight_decay != 0.0).then(|| T::of(self.weight_decay));
        let alpha = T::of(self.alpha);
        let keep = T::of(1.0 - self.alpha);
        let eps = T::of(self.eps);
        let momentum = T::of(self.momentum);
        let neg_lr = T::of(-self.lr);
        let mut grad_avg = if self.centered {
            s.grad_avg.as_deref_mut()
        } else {
            None
        };
        let mut buf = if self.momentum > 0.0 {
            s.momentum_buffer.as_deref_mut()
        } else {
            None
        };
        for i in 0..n {
            let mut g = if self.maximize { -grad[i] } else { grad[i] };
            if let Some(wd) = decay {
                g = g + wd * param[i];
            }
            let sq = s.square_avg[i] * alpha + keep * g * g;
            s.square_avg[i] = sq;
            let avg = match grad_avg.as_deref_mut() {
                Some(ga) => {
                    let a = lerp(ga[i], g, keep);
                    ga[i] = a;
                    (sq + (-a) * a).sqrt()
                }
                None => sq.sqrt(),
            } + eps;
            match buf.as_deref_mut() {
                Some(buf) => {
                    let b = buf[i] * momentum + g / avg;
                    buf[i] = b;
                    param[i] = param[i] + neg_lr * b;
                }
                None => param[i] = param[i] + neg_lr * g / avg,
            }
        }
    }

    fn save_options(&self, w: &mut StateWriter) {
        w.num("lr", self.lr);
        w.num("alpha", self.alpha);
        w.num("eps", self.eps);
        w.num("weight_decay", self.weight_decay);
        w.num("momentum", self.momentum);
        w.flag("centered", self.centered);
        w.flag("maximize", self.maximize);
    }

    fn load_options(&mut self, r: &mut StateReader) -> Result<()> {
        self.lr = r.num("lr")?;
        self.alpha = r.num("alpha")?;
        self.eps = r.num("eps")?;
        self.weight_decay = r.num("weight_decay")?;
        self.momentum = r.num("momentum")?;
        self.centered = r.flag("centered")?;
        self.maximize = r.flag("maximize")?;
        Ok(())
    }

    fn save_state(&self, s: &RmsPropState<T>, shape: &[usize], w: &mut StateWriter) {
        w.num("step", s.step);
        w.buffer("square_avg", &s.square_avg, shape);
        if let Some(buf) = &s.momentum_buffer {
            w.buffer("momentum_buffer", buf, shape);
        }
        if let Some(ga) = &s.grad_avg {
            w.buffer("grad_avg", ga, shape);
        }
    }

    fn load_state(&self, shape: &[usize], r: &mut StateReader) -> Result<Option<RmsPropState<T>>> {
        if !r.has("step") {
            return Ok(None);
        }
        let mut optional = |name: &str, required: bool| -> Result<Option<Vec<T>>> {
            if required || r.has(name) {
                r.buffer(name, shape).map(Some)
            } else {
                Ok(None)
            }
        };
        let momentum_buffer = optional("momentum_buffer", self.momentum > 0.0)?;
        let grad_avg = optional("grad_avg", self.centered)?;
        Ok(Some(RmsPropState {
            step: r.count("step")?,
            square_avg: r.buffer("square_avg", shape)?,
            momentum_buffer,
            grad_avg,
        }))
    }
}

#[cfg(test)]
mod tests {
    use deepgen_autograd::{Tensor, Var};

    use super::*;
    use crate::Optimizer;

    #[test]
    fn first_step_divides_by_the_root_mean_square() {
        let p = Var::<f64>::parameter(Tensor::from_vec(vec![0.0], &[1]).unwrap());
        p.set_grad(Some(Tensor::from_vec(vec![2.0], &[1]).unwrap()))
            .unwrap();
        let mut opt = RmsProp::new([p.clone()], RmsPropConfig::default()).unwrap();
        opt.step().unwrap();
        // sq = 0.01 * 4; p = -0.01 * 2 / (sqrt(0.04) + 1e-8)
        let want = -0.01 * 2.0 / (0.04f64.sqrt() + 1e-8);
        assert!((p.value().to_vec()[0] - want).abs() < 1e-15);
    }

    #[test]
    fn centred_momentum_state_has_every_buffer() {
        let p = Var::<f32>::parameter(Tensor::from_vec(vec![0.0, 1.0], &[2]).unwrap());
        p.set_grad(Some(Tensor::from_vec(vec![1.0, -1.0], &[2]).unwrap()))
            .unwrap();
        let config = RmsPropConfig {
            momentum: 0.9,
            centered: true,
            ..Default::default()
        };
        let mut opt = RmsProp::new([p], config).unwrap();
        opt.step().unwrap();
        let s = opt.state(0).unwrap();
        assert!(s.momentum_buffer.is_some() && s.grad_avg.is_some());
    }
}
