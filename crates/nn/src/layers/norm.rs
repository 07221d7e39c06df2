//! BatchNorm (1-D and 2-D) and LayerNorm.

use crate::export::{Attr, Graph};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::module::rectify;
use crate::{Element, Error, Forward, Module, Result, Tensor, Var};

/// BatchNorm settings, with PyTorch's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormConfig {
    pub eps: f64,
    /// Weight of the new batch statistic in the running average; None for a
    /// cumulative average (PyTorch's `momentum=None`).
    pub momentum: Option<f64>,
    pub affine: bool,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig {
            eps: 1e-5,
            momentum: Some(0.1),
            affine: true,
        }
    }
}

/// Batch normalisation over every axis but the channel axis 1:
/// BatchNorm1d for `[n, c]` or `[n, c, l]`, BatchNorm2d for `[n, c, h, w]`.
/// Training mode normalises with the batch statistics (biased variance) and
/// updates the running ones (unbiased variance); eval mode uses the running ones.
///
/// ```
/// use deepgen_nn::{BatchNorm, BatchNormConfig, Forward, Module, Tensor, Var};
///
/// # fn main() -> deepgen_nn::Result<()> {
/// let bn = BatchNorm::<f64>::new1d(2, BatchNormConfig::default());
/// let x = Var::constant(Tensor::from_vec(vec![1.0, 10.0, 3.0, 30.0], &[2, 2])?);
/// // Training: each channel normalised over the batch.
/// let y = bn.forward(&x)?.value().to_vec();
/// assert!((y[0] + 1.0).abs() < 1e-4 && (y[3] - 1.0).abs() < 1e-4);
/// // The running mean moved 10% (momentum 0.1) towards the batch mean [2, 20].
/// let running = bn.running_mean.value().to_vec();
/// assert!((running[0] - 0.2).abs() < 1e-12 && (running[1] - 2.0).abs() < 1e-12);
/// // Eval: the running statistics, and nothing is updated.
/// bn.eval();
/// bn.forward(&x)?;
/// assert_eq!(bn.running_mean.value().to_vec(), running);
/// # Ok(())
/// # }
/// ```
#[derive(Module)]
pub struct BatchNorm<T: Element = f32> {
    pub weight: Option<Var<T>>,
    pub bias: Option<Var<T>>,
    #[module(buffer)]
    pub running_mean: Var<T>,
    #[module(buffer)]
    pub running_var: Var<T>,
    pub num_batches_tracked: AtomicI64,
    #[module(skip)]
    pub config: BatchNormConfig,
    #[module(skip)]
    ranks: &'static [usize],
    #[module(training)]
    training: AtomicBool,
}

impl<T: Element> BatchNorm<T> {
    fn with_ranks(channels: usize, config: BatchNormConfig, ranks: &'static [usize]) -> Self {
        let affine = |v: f64| {
            config
                .affine
                .then(|| Var::parameter(Tensor::full(&[channels], T::of(v))))
        };
        BatchNorm {
            weight: affine(1.0),
            bias: affine(0.0),
            running_mean: Var::constant(Tensor::zeros(&[channels])),
            running_var: Var::constant(Tensor::ones(&[channels])),
            num_batches_tracked: AtomicI64::new(0),
            config,
            ranks,
            training: AtomicBool::new(true),
        }
    }

    /// PyTorch's BatchNorm1d: input [n, c] or [n, c, l].
    pub fn new1d(channels: usize, config: BatchNormConfig) -> Self {
        Self::with_ranks(channels, config, &[2, 3])
    }

    /// PyTorch's BatchNorm2d: input [n, c, h, w].
    pub fn new2d(channels: usize, config: BatchNormConfig) -> Self {
        Self::with_ranks(channels, config, &[4])
    }

    fn is_training(&self) -> bool {
        self.training.load(Ordering::Relaxed)
    }
}

impl<T: Element> BatchNorm<T> {
    /// The forward pass, then a leaky rectifier of `slope` when given (fused
    /// into the batch-statistics op in training mode).
    fn normalise(&self, x: &Var<T>, slope: Option<T>) -> Result<Var<T>> {
        let shape = x.shape();
        let c = self.running_mean.numel();
        if !self.ranks.contains(&shape.len()) || shape[1] != c {
            return Err(Error::Invalid {
                op: "batch_norm",
                msg: format!(
                    "input {shape:?} does not fit {c} channels (rank {:?})",
                    self.ranks
                ),
            });
        }
        let mut channel_shape = vec![1; shape.len()];
        channel_shape[1] = c;
        if self.is_training() {
            let count = shape.iter().product::<usize>() / c.max(1);
            if count < 2 {
                return Err(Error::Invalid {
                    op: "batch_norm",
                    msg: format!(
                        "expected more than 1 value per channel when training, got input {shape:?}"
                    ),
                });
            }
            let (w, b) = (self.weight.as_ref(), self.bias.as_ref());
            let out = x.batch_norm_rectified(w, b, self.config.eps, slope)?;
            let n = self.num_batches_tracked.fetch_add(1, Ordering::Relaxed) + 1;
            let m = self.config.momentum.unwrap_or(1.0 / n as f64);
            let unbiased = count as f64 / (count - 1) as f64;
            for (running, batch, k) in [
                (&self.running_mean, &out.mean, 1.0),
                (&self.running_var, &out.var, unbiased),
            ] {
                let new: Vec<T> = (running.value().to_vec().into_iter())
                    .zip(batch.to_vec())
                    .map(|(r, b)| T::of((1.0 - m) * r.as_f64() + m * k * b.as_f64()))
                    .collect();
                running.set_value(Tensor::from_vec(new, &[c])?)?;
            }
            return Ok(out.y);
        }
        // Eval mode: y = (x - running_mean) * scale + bias with
        // scale = weight / sqrt(running_var + eps) per channel.
        let centred = x.sub(&self.running_mean.reshape(&channel_shape)?)?;
        let var = self.running_var.reshape(&channel_shape)?;
        let mut scale = var.add_scalar(T::of(self.config.eps)).powf(T::of(-0.5));
        if let Some(w) = &self.weight {
            scale = scale.mul(&w.reshape(&channel_shape)?)?;
        }
        let mut y = centred.mul(&scale)?;
        if let Some(b) = &self.bias {
            y = y.add(&b.reshape(&channel_shape)?)?;
        }
        Ok(match slope {
            None => y,
            Some(s) => rectify(&y, s),
        })
    }
}

impl<T: Element> Forward<T> for BatchNorm<T> {
    fn forward(&self, x: &Var<T>) -> Result<Var<T>> {
        self.normalise(x, None)
    }

    fn forward_rectified(&self, x: &Var<T>, slope: f64) -> Result<Var<T>> {
        self.normalise(x, Some(T::of(slope)))
    }

    /// BatchNormalization in inference form: the running statistics.
    fn export(&self, g: &mut Graph, x: &str) -> Result<String> {
        let c = self.running_mean.numel();
        let mut affine = |name: &str, p: &Option<Var<T>>, default: f32| match p {
            Some(p) => g.weight(name, p),
            None => g.floats(name, vec![default; c]),
        };
        let (scale, bias) = (
            affine("weight", &self.weight, 1.0),
            affine("bias", &self.bias, 0.0),
        );
        let mean = g.weight("running_mean", &self.running_mean);
        let var = g.weight("running_var", &self.running_var);
        let eps = Attr::Float(self.config.eps as f32);
        let inputs = [
            x,
            scale.as_str(),
            bias.as_str(),
            mean.as_str(),
            var.as_str(),
        ];
        Ok(g.node("BatchNormalization", &inputs, vec![("epsilon", eps)]))
    }
}

/// Layer normalisation over the trailing axes `normalized_shape`.
///
/// ```
/// use deepgen_nn::{Forward, LayerNorm, Tensor, Var};
///
/// # fn main() -> deepgen_nn::Result<()> {
/// let ln = LayerNorm::<f64>::new(&[3], 1e-5, true);
/// let x = Var::constant(Tensor::from_vec(vec![1.0, 2.0, 3.0, 10.0, 10.0, 40.0], &[2, 3])?);
/// let y = ln.forward(&x)?.value().to_vec();
/// for row in y.chunks(3) {
///     // Each row: mean 0, (biased) variance 1.
///     let mean = row.iter().sum::<f64>() / 3.0;
///     let var = row.iter().map(|v| v * v).sum::<f64>() / 3.0;
///     assert!(mean.abs() < 1e-9 && (var - 1.0).abs() < 1e-4);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Module)]
pub struct LayerNorm<T: Element = f32> {
    pub weight: Option<Var<T>>,
    pub bias: Option<Var<T>>,
    pub normalized_shape: Vec<usize>,
    pub eps: f64,
}

impl<T: Element> LayerNorm<T> {
    /// PyTorch's defaults: eps 1e-5, elementwise affine (weight 1, bias 0).
    pub fn new(normalized_shape: &[usize], eps: f64, elementwise_affine: bool) -> Self {
        let affine = |v: f64| {
            elementwise_affine.then(|| Var::parameter(Tensor::full(normalized_shape, T::of(v))))
        };
        LayerNorm {
            weight: affine(1.0),
            bias: affine(0.0),
            normalized_shape: normalized_shape.to_vec(),
            eps,
        }
    }
}

impl<T: Element> Forward<T> for LayerNorm<T> {
    fn forward(&self, x: &Var<T>) -> Result<Var<T>> {
        let shape = x.shape();
        let k = self.normalized_shape.len();
        if shape.len() < k || shape[shape.len() - k..] != self.normalized_shape[..] {
            return Err(Error::Invalid {
                op: "layer_norm",
                msg: format!(
                    "input {shape:?} does not end in {:?}",
                    self.normalized_shape
                ),
            });
        }
        let axes: Vec<usize> = (shape.len() - k..shape.len()).collect();
        let mean = x.mean(&axes, true)?;
        let var = x.var(&axes, true, 0)?;
        let mut y = x.sub(&mean)?.div(&var.add_scalar(T::of(self.eps)).sqrt())?;
        if let (Some(w), Some(b)) = (&self.weight, &self.bias) {
            y = y.mul(w)?.add(b)?;
        }
        Ok(y)
    }

    /// LayerNormalization over the last `normalized_shape.len()` axes.
    fn export(&self, g: &mut Graph, x: &str) -> Result<String> {
        let count = self.normalized_shape.iter().product::<usize>();
        let (scale, bias) = match (&self.weight, &self.bias) {
            (Some(w), Some(b)) => (g.weight("weight", w), g.weight("bias", b)),
            _ => (
                g.floats("weight", vec![1.0; count]),
                g.floats("bias", vec![0.0; count]),
            ),
        };
        let attrs = vec![
            ("axis", Attr::Int(-(self.normalized_shape.len() as i64))),
            ("epsilon", Attr::Float(self.eps as f32)),
        ];
        // A multi-axis scale must have the normalised shape, not be flat.
        let shape: Vec<i64> = self.normalized_shape.iter().map(|&d| d as i64).collect();
        let (scale_shape, bias_shape) =
            (g.ints("scale_shape", &shape), g.ints("bias_shape", &shape));
        let scale = g.node("Reshape", &[&scale, &scale_shape], vec![]);
        let bias = g.node("Reshape", &[&bias, &bias_shape], vec![]);
        Ok(g.node("LayerNormalization", &[x, &scale, &bias], attrs))
    }
}
