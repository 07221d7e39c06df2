//! Batch normalisation with batch statistics, as one op, optionally with a
//! leaky rectifier after it (ReLU, LeakyReLU) that costs no pass of its own.
//! Its first-order
//! backward runs the fused per-channel kernels; when the backward itself is
//! recorded (`create_graph`, as a gradient penalty through a critic with
//! BatchNorm needs), it is written in Var ops like every other backward, so
//! it can be differentiated again.

use deepgen_kernels as k;

use crate::grad_mode::is_grad_enabled;
use crate::{Element, Result, Tensor, TensorError, Var};

/// Batch normalisation's output and the batch statistics it used.
pub struct BatchNormOutput<T: Element> {
    pub y: Var<T>,
    /// Per-channel mean, `[c]`.
    pub mean: Tensor<T>,
    /// Per-channel biased variance, `[c]`.
    pub var: Tensor<T>,
}

impl<T: Element> Var<T> {
    /// Normalises self [n, c, ...] per channel (axis 1) with the mean and
    /// biased variance over every other axis, then scales by `weight` and
    /// shifts by `bias` (`[c]` each, when given): PyTorch's
    /// `F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)`.
    pub fn batch_norm(
        &self,
        weight: Option<&Var<T>>,
        bias: Option<&Var<T>>,
        eps: f64,
    ) -> Result<BatchNormOutput<T>> {
        self.batch_norm_rectified(weight, bias, eps, None)
    }

    /// [`Var::batch_norm`] followed by a leaky rectifier of slope `slope`
    /// (`Some(0)`: `.relu()`, `Some(s)`: `.leaky_relu(s)`), fused: the same
    /// values and gradients as the two ops in turn.
    pub fn batch_norm_rectified(
        &self,
        weight: Option<&Var<T>>,
        bias: Option<&Var<T>>,
        eps: f64,
        slope: Option<T>,
    ) -> Result<BatchNormOutput<T>> {
        let shape = self.shape();
        // Contiguous once here: each kernel below would copy a strided view.
        let x = self.value().contiguous();
        let (mean, var) = k::channel_moments(&x)?;
        let c = mean.len();
        for p in [weight, bias].into_iter().flatten() {
            if p.shape() != [c] {
                return Err(TensorError::Invalid {
                    op: "batch_norm",
                    shape: p.shape(),
                    msg: format!("weight and bias need shape [{c}] for input {shape:?}"),
                }
                .into());
            }
        }
        let invstd: Vec<T> = var
            .iter()
            .map(|&v| T::one() / (v + T::of(eps)).sqrt())
            .collect();
        let w = weight.map(|w| w.value().to_vec());
        let scale: Vec<T> = match &w {
            Some(w) => invstd.iter().zip(w).map(|(&s, &w)| s * w).collect(),
            None => invstd.clone(),
        };
        let shift = bias.map_or_else(|| vec![T::zero(); c], |b| b.value().to_vec());
        let f = k::ChannelAffine {
            mean: &mean,
            scale: &scale,
            shift: &shift,
            slope,
        };
        let y = k::channel_affine(&x, f)?;
        let mut inputs = vec![self.clone()];
        inputs.extend(weight.cloned());
        inputs.extend(bias.cloned());
        let (has_weight, saved_mean) = (weight.is_some(), mean.clone());
        let y = Var::from_op("batch_norm", y, inputs, move |ctx| {
            if is_grad_enabled() {
                let rectified = slope.map(|s| (s, shift.as_slice()));
                return recorded_backward(ctx, has_weight, eps, rectified);
            }
            let (x, g) = (
                ctx.inputs[0].value().contiguous(),
                ctx.grad.value().contiguous(),
            );
            let f = k::ChannelAffine {
                mean: &saved_mean,
                scale: &scale,
                shift: &shift,
                slope,
            };
            let (sum_g, sum_gx) = k::channel_grad_sums(&g, &x, f)?;
            let count = T::of(x.numel() as f64 / c.max(1) as f64);
            let mut grads = Vec::with_capacity(ctx.inputs.len());
            grads.push(if ctx.needs(0) {
                // dx = s (g - mean(g) - x̂ mean(g x̂)) with s = w / std,
                // x̂ = (x - mean) / std: per channel g a + (x - mean) b + d.
                let s: &[T] = &scale;
                let b: Vec<T> = (0..c)
                    .map(|i| -s[i] * invstd[i] * invstd[i] * sum_gx[i] / count)
                    .collect();
                let d: Vec<T> = (0..c).map(|i| -s[i] * sum_g[i] / count).collect();
                let dx = k::channel_grad_affine(&g, &x, f, [s, &b, &d])?;
                Some(Var::constant(dx))
            } else {
                None
            });
            let per_channel = |v: Vec<T>| Tensor::from_vec(v, &[c]).map(Var::constant);
            if has_weight {
                let gw: Vec<T> = sum_gx.iter().zip(&invstd).map(|(&a, &s)| a * s).collect();
                grads.push(ctx.needs(1).then(|| per_channel(gw)).transpose()?);
            }
            if grads.len() < ctx.inputs.len() {
                let i = grads.len();
                grads.push(ctx.needs(i).then(|| per_channel(sum_g)).transpose()?);
            }
            Ok(grads)
        });
        Ok(BatchNormOutput {
            y,
            mean: Tensor::from_vec(mean, &[c])?,
            var: Tensor::from_vec(var, &[c])?,
        })
    }
}

/// The backward of [`Var::batch_norm_rectified`] in Var ops, recomputing
/// the statistics from x so that their dependence on x is recorded too.
/// `rectified`: the slope and the per-channel shift (bias) of the forward.
fn recorded_backward<T: Element>(
    ctx: &crate::Ctx<'_, T>,
    has_weight: bool,
    eps: f64,
    rectified: Option<(T, &[T])>,
) -> Result<Vec<Option<Var<T>>>> {
    let (inputs, needs) = (ctx.inputs, |i| ctx.needs(i));
    let x = &inputs[0];
    let shape = x.shape();
    let mut channel_shape = vec![1; shape.len()];
    channel_shape[1] = shape[1];
    let axes: Vec<usize> = (0..shape.len()).filter(|&a| a != 1).collect();
    let centred = x.sub(&x.mean(&axes, true)?)?;
    let invstd = centred
        .square()
        .mean(&axes, true)?
        .add_scalar(T::of(eps))
        .powf(T::of(-0.5));
    let xhat = centred.mul(&invstd)?;
    let weight = has_weight
        .then(|| inputs[1].reshape(&channel_shape))
        .transpose()?;
    // Through the rectifier first: its mask depends on the sign of the
    // normalised value, which the recorded graph sees as a constant.
    let g = match rectified {
        None => ctx.grad.clone(),
        Some((slope, shift)) => {
            let mut y = match &weight {
                Some(w) => xhat.mul(w)?,
                None => xhat.clone(),
            };
            let shift = Tensor::from_vec(shift.to_vec(), &channel_shape)?;
            y = y.add(&Var::constant(shift))?;
            ctx.grad.masked_by_sign(&y, slope)?
        }
    };
    let mut grads = Vec::with_capacity(inputs.len());
    grads.push(if needs(0) {
        let gw = match &weight {
            Some(w) => g.mul(w)?,
            None => g.clone(),
        };
        let mean_gw = gw.mean(&axes, true)?;
        let mean_gwx = gw.mul(&xhat)?.mean(&axes, true)?;
        Some(gw.sub(&mean_gw)?.sub(&xhat.mul(&mean_gwx)?)?.mul(&invstd)?)
    } else {
        None
    });
    let c = [shape[1]];
    if has_weight {
        grads.push(match needs(1) {
            true => Some(g.mul(&xhat)?.sum(&axes, false)?.reshape(&c)?),
            false => None,
        });
    }
    if grads.len() < inputs.len() {
        grads.push(match needs(grads.len()) {
            true => Some(g.sum(&axes, false)?.reshape(&c)?),
            false => None,
        });
    }
    Ok(grads)
}
