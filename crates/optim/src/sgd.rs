//! Stochastic gradient descent with momentum, dampening, Nesterov and weight
//! decay: `torch.optim.SGD`.

use deepgen_autograd::Element;

use crate::optimizer::{check_min, GroupedOptimizer, UpdateRule};
use crate::state::{StateReader, StateWriter};
use crate::{Error, Result};

/// SGD over parameters of element type `T`.
///
/// A fit of y = 2 x:
///
/// ```
/// use deepgen_autograd::{Tensor, Var};
/// use deepgen_optim::{Optimizer, Sgd, SgdConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let x = Var::constant(Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[4])?);
/// let y = x.mul_scalar(2.0);
/// let w = Var::parameter(Tensor::zeros(&[1]));
/// let mut opt = Sgd::new([w.clone()], SgdConfig { lr: 0.05, ..Default::default() })?;
/// let mut losses = Vec::new();
/// for _ in 0..20 {
///     let loss = x.mul(&w)?.sub(&y)?.square().mean(&[], false)?;
///     losses.push(loss.item()?);
///     opt.zero_grad();
///     loss.backward()?;
///     opt.step()?;
/// }
/// assert!(losses[losses.len() - 1] < 0.01 * losses[0]);
/// assert!((w.item()? - 2.0).abs() < 1e-3);
/// # Ok(())
/// # }
/// ```
pub type Sgd<T> = GroupedOptimizer<T, SgdConfig>;

/// The options of `torch.optim.SGD`, with its defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SgdConfig {
    /// Learning rate (PyTorch's default since 2.2: 1e-3).
    pub lr: f64,
    /// Momentum factor; 0 keeps no buffer.
    pub momentum: f64,
    /// How much of the new gradient the momentum buffer does *not* take.
    pub dampening: f64,
    /// L2 penalty, added to the gradient: `g + weight_decay * p`.
    pub weight_decay: f64,
    /// Nesterov momentum (needs momentum > 0 and dampening 0).
    pub nesterov: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
        }
    }
}

impl<T: Element> UpdateRule<T> for SgdConfig {
    const NAME: &'static str = "SGD";

    /// The momentum buffer, kept only when momentum is not 0.
    type State = Vec<T>;

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn validate(&self) -> Result<()> {
        let name = <Self as UpdateRule<T>>::NAME;
        check_min(name, "lr", self.lr, 0.0, "must be finite and >= 0")?;
        check_min(
            name,
            "momentum",
            self.momentum,
            0.0,
            "must be finite and >= 0",
        )?;
        check_min(
            name,
            "weight_decay",
            self.weight_decay,
            0.0,
            "must be finite and >= 0",
        )?;
        check_min(
            name,
            "dampening",
            self.dampening,
            f64::MIN,
            "must be finite",
        )?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::InvalidOption {
                owner: name,
                option: "nesterov",
                value: 1.0,
                expected: "Nesterov momentum needs momentum > 0 and dampening 0",
            });
        }
        Ok(())
    }

    /// PyTorch's `_single_tensor_sgd`, element by element:
    ///
    /// ```text
    /// g = grad (negated when maximizing) + weight_decay * p
    /// buf = g                                   on the first step
    /// buf = momentum * buf + (1 - dampening) * g  after
    /// g = g + momentum * buf (Nesterov) or buf
    /// p = p - lr * g
    /// ```
    fn update(&self, param: &mut [T], grad: &[T], state: &mut Option<Vec<T>>) {
        let decay = (self.weight_decay != 0.0).then(|| T::of(self.weight_decay));
        let momentum = T::of(self.momentum);
        let keep = T::of(1.0 - self.dampening);
        let neg_lr = T::of(-self.lr);
        let first = state.is_none();
        let mut buf = (self.momentum != 0.0)
            .then(|| state.get_or_insert_with(|| vec![T::zero(); param.len()]));
        for (i, (p, &g)) in param.iter_mut().zip(grad).enumerate() {
            let mut d = if self.maximize { -g } else { g };
            if let Some(wd) = decay {
                d = d + wd * *p;
            }
            if let Some(buf) = buf.as_deref_mut() {
                let b = if first {
                    d
                } else {
                    buf[i] * momentum + keep * d
                };
                buf[i] = b;
                d = if self.nesterov { d + momentum * b } else { b };
            }
            *p = *p + neg_lr * d;
        }
    }

    fn save_options(&self, w: &mut StateWriter) {
        w.num("lr", self.lr);
        w.num("momentum", self.momentum);
        w.num("dampening", self.dampening);
        w.num("weight_decay", self.weight_decay);
        w.flag("nesterov", self.nesterov);
        w.flag("maximize", self.maximize);
    }

    fn load_options(&mut self, r: &mut StateReader) -> Result<()> {
        self.lr = r.num("lr")?;
        self.momentum = r.num("momentum")?;
        self.dampening = r.num("dampening")?;
        self.weight_decay = r.num("weight_decay")?;
        self.nesterov = r.flag("nesterov")?;
        self.maximize = r.flag("maximize")?;
        Ok(())
    }

    fn save_state(&self, buf: &Vec<T>, shape: &[usize], w: &mut StateWriter) {
        w.buffer("momentum_buffer", buf, shape);
    }

    fn load_state(&self, shape: &[usize], r: &mut StateReader) -> Result<Option<Vec<T>>> {
        // No buffer: the parameter never stepped, or momentum is 0.
        if !r.has("momentum_buffer") {
            return Ok(None);
        }
        r.buffer("momentum_buffer", shape).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use deepgen_autograd::{Tensor, Var};

    use super::*;
    use crate::Optimizer;

    fn param_with_grad(value: &[f64], grad: &[f64]) -> Var<f64> {
        let p = Var::parameter(Tensor::from_vec(value.to_vec(), &[value.len()]).unwrap());
        p.set_grad(Some(
            Tensor::from_vec(grad.to_vec(), &[grad.len()]).unwrap(),
        ))
        .unwrap();
        p
    }

    #[test]
    fn plain_sgd_moves_against_the_gradient() {
        let p = param_with_grad(&[1.0, 2.0], &[0.5, -1.0]);
        let mut opt = Sgd::new(
            [p.clone()],
            SgdConfig {
                lr: 0.1,
                ..Default::default()
            },
        )
        .unwrap();
        opt.step().unwrap();
        assert_eq!(p.value().to_vec(), vec![1.0 - 0.05, 2.0 + 0.1]);
        assert!(opt.state(0).is_none(), "no momentum, no buffer");
    }

    #[test]
    fn momentum_buffer_starts_as_the_gradient_then_dampens() {
        let p = param_with_grad(&[0.0], &[1.0]);
        let config = SgdConfig {
            lr: 1.0,
            momentum: 0.5,
            dampening: 0.25,
            ..Default::default()
        };
        let mut opt = Sgd::new([p.clone()], config).unwrap();
        opt.step().unwrap();
        assert_eq!(opt.state(0).unwrap(), &vec![1.0], "no dampening at first");
        opt.step().unwrap();
        assert_eq!(opt.state(0).unwrap(), &vec![0.5 + 0.75]);
        assert_eq!(p.value().to_vec(), vec![-1.0 - 1.25]);
    }

    #[test]
    fn nesterov_needs_momentum_and_no_dampening() {
        let p = param_with_grad(&[0.0], &[1.0]);
        let bad = SgdConfig {
            nesterov: true,
            ..Default::default()
        };
        let err = Sgd::new([p.clone()], bad).err().unwrap();
        assert!(err.to_string().contains("Nesterov"), "{err}");
        let bad = SgdConfig {
            lr: -1.0,
            ..Default::default()
        };
        let err = Sgd::new([p], bad).err().unwrap();
        assert!(err.to_string().contains("SGD: invalid lr -1"), "{err}");
    }
}
