//! BatchNorm (1-D and 2-D) and LayerNorm.

use crate::export::{Attr, Graph};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

static SYNC: AtomicBool = AtomicBool::new(false);

/// Synchronised BatchNorm for every BatchNorm layer of this process
/// (PyTorch's `SyncBatchNorm.convert_sync_batchnorm` on the whole model):
/// in a data-parallel run, training-mode statistics are taken over the
/// global batch — per-channel sums all-reduced across the ranks, forward
/// and backward — so N ranks normalise as one process would. Off by
/// default, as in PyTorch DDP, where each rank normalises its own share.
/// In one process it changes nothing.
pub fn set_sync_batch_norm(on: bool) {
    SYNC.store(on, Ordering::Relaxed);
}

/// Whether BatchNorm layers synchronise their statistics across ranks.
pub fn sync_batch_norm() -> bool {
    SYNC.load(Ordering::Relaxed)
}

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
            let (y, mean, var, count) = match sync_batch_norm() && deepgen_dist::distributed() {
                true => self.synchronised(x, &channel_shape, count, slope)?,
                false => {
                    let out = x.batch_norm_rectified(w, b, self.config.eps, slope)?;
                    (out.y, out.mean, out.var, count)
                }
            };
            let n = self.num_batches_tracked.fetch_add(1, Ordering::Relaxed) + 1;
            let m = self.config.momentum.unwrap_or(1.0 / n as f64);
            let unbiased = count as f64 / (count - 1) as f64;
            for (running, batch, k) in [
                (&self.running_mean, &mean, 1.0),
                (&self.running_var, &var, unbiased),
            ] {
                let new: Vec<T> = (running.value().to_vec().into_iter())
                    .zip(batch.to_vec())
                    .map(|(r, b)| T::of((1.0 - m) * r.as_f64() + m * k * b.as_f64()))
                    .collect();
                running.set_value(Tensor::from_vec(new, &[c])?)?;
            }
            return Ok(y);
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

/// Output, batch mean and biased variance, and the global count per channel.
type Synchronised<T> = (Var<T>, Tensor<T>, Tensor<T>, usize);

impl<T: Element> BatchNorm<T> {
    /// Training-mode BatchNorm over the global batch of a data-parallel
    /// step: the per-channel sum and then the sum of squared deviations are
    /// summed over the ranks ([`deepgen_dist::all_sum`], whose backward
    /// sums the ranks' gradients), the same two-pass statistics one process
    /// takes. Returns the output, the batch mean and biased variance, and
    /// the global count per channel.
    fn synchronised(
        &self,
        x: &Var<T>,
        channel_shape: &[usize],
        count: usize,
        slope: Option<T>,
    ) -> Result<Synchronised<T>> {
        let axes: Vec<usize> = (0..x.shape().len()).filter(|&a| a != 1).collect();
        let mut total = [count as f64];
        deepgen_dist::world().sum_f64(&mut total);
        let inv = T::of(1.0 / total[0]);
        let mean = deepgen_dist::all_sum(&x.sum(&axes, true)?)?.mul_scalar(inv);
        let centred = x.sub(&mean)?;
        let var = deepgen_dist::all_sum(&centred.square().sum(&axes, true)?)?.mul_scalar(inv);
        let mut y = centred.mul(&var.add_scalar(T::of(self.config.eps)).powf(T::of(-0.5)))?;
        if let Some(w) = &self.weight {
            y = y.mul(&w.reshape(channel_shape)?)?;
        }
        if let Some(b) = &self.bias {
            y = y.add(&b.reshape(channel_shape)?)?;
        }
        let c = channel_shape[1];
        let flat = |v: &Var<T>| v.value().reshape(&[c]);
        let (m, v) = (flat(&mean)?, flat(&var)?);
        let y = match slope {
            None => y,
            Some(s) => rectify(&y, s),
        };
        Ok((y, m, v, total[0] as usize))
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

#[cfg(test)]
mod tests {
    use super::*;
    use deepgen_autograd::grad;
    use rand::SeedableRng;

    /// The synchronised path (composed of ops, with the all-reduce that is
    /// the identity in one process) against the fused batch-statistics op:
    /// outputs, statistics and gradients, with and without a rectifier.
    #[test]
    fn synchronised_statistics_equal_the_fused_op_in_one_process() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for slope in [None, Some(0.0), Some(0.2)] {
            let bn = BatchNorm::<f64>::new2d(4, BatchNormConfig::default());
            let w = bn.weight.as_ref().unwrap();
            w.set_value(Tensor::randn(&[4], 1.0, 0.3, &mut rng))
                .unwrap();
            let b = bn.bias.as_ref().unwrap();
            b.set_value(Tensor::randn(&[4], 0.0, 0.3, &mut rng))
                .unwrap();
            let x = Var::parameter(Tensor::randn(&[6, 4, 3, 2], 0.5, 2.0, &mut rng));
            let probe = Var::constant(Tensor::randn(&[6, 4, 3, 2], 0.0, 1.0, &mut rng));
            let fused = x
                .batch_norm_rectified(Some(w), Some(b), 1e-5, slope)
                .unwrap();
            let (y, mean, var, count) = bn.synchronised(&x, &[1, 4, 1, 1], 36, slope).unwrap();
            assert_eq!(count, 36);
            let close = |a: Vec<f64>, b: Vec<f64>, what: &str| {
                for (p, q) in a.iter().zip(&b) {
                    assert!(
                        (p - q).abs() <= 1e-10 * (1.0 + q.abs()),
                        "{what} {slope:?}: {p} vs {q}"
                    );
                }
            };
            close(y.value().to_vec(), fused.y.value().to_vec(), "output");
            close(mean.to_vec(), fused.mean.to_vec(), "mean");
            close(var.to_vec(), fused.var.to_vec(), "variance");
            let inputs = [x.clone(), w.clone(), b.clone()];
            let loss = |y: &Var<f64>| y.mul(&probe).unwrap().sum_all().unwrap();
            let g1 = grad(&[loss(&y)], &inputs, false).unwrap();
            let g2 = grad(&[loss(&fused.y)], &inputs, false).unwrap();
            for (a, b) in g1.iter().zip(&g2) {
                close(a.value().to_vec(), b.value().to_vec(), "gradient");
            }
        }
    }
}
