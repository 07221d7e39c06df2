//! What the trainer needs of a generator and a discriminator, whatever their
//! architecture (MLP, DCGAN, class-conditional), and the state helpers that
//! act on any [`Module`]: buffer snapshots and the EMA update.

use std::sync::atomic::Ordering;

use deepgen_autograd::{Element, Tensor, Var};
use deepgen_nn::export::{Attr, Graph};
use deepgen_nn::{Embedding, Module, Slot};

use crate::{Error, Result};

/// A generator: noise [n, latent] (with one label per row when it is
/// class-conditional) -> samples [n, output_shape..].
pub trait Generator<T: Element = f32>: Module<T> {
    fn latent_dim(&self) -> usize;

    /// Shape of one sample: `[2]` for points, `[c, h, w]` for images.
    fn output_shape(&self) -> Vec<usize>;

    /// Number of classes of a conditional generator; None when unconditional.
    fn num_classes(&self) -> Option<usize> {
        None
    }

    /// [n, latent] -> [n, output_shape..]. A conditional generator needs `n`
    /// labels; an unconditional one ignores them.
    fn generate(&self, z: &Var<T>, labels: Option<&[usize]>) -> Result<Var<T>>;

    /// A new network of the same architecture holding a copy of this one's
    /// state (the exponential moving average of the weights starts so).
    fn duplicate(&self) -> Result<Box<dyn Generator<T>>>;

    /// This net as a plain module (for state dicts).
    fn as_module(&self) -> &dyn Module<T>;

    /// The architecture, for checkpoints.
    fn spec(&self) -> crate::NetSpec;

    /// ONNX export: adds `generate` on the graph values `z` (float `[n, latent]`)
    /// and, for a conditional net, `labels` (int64 `[n]`) to
    /// `graph`; returns the samples' value.
    fn export(&self, graph: &mut Graph, z: &str, labels: Option<&str>) -> Result<String>;
}

/// The ONNX form of `with_labels`: `h` joined by the label's embedding
/// (`embed.weight`) along axis 1, for a conditional net.
pub(crate) fn export_with_labels<T: Element>(
    g: &mut Graph,
    h: &str,
    embed: &Option<Embedding<T>>,
    labels: Option<&str>,
) -> Result<String> {
    match (embed, labels) {
        (None, _) => Ok(h.to_string()),
        (Some(e), Some(labels)) => {
            let rows = g.scoped("embed", |g| e.export_lookup(g, labels));
            Ok(g.node("Concat", &[h, &rows], vec![("axis", Attr::Int(1))]))
        }
        (Some(_), None) => Err(Error::Invalid {
            op: "export",
            msg: "a conditional generator needs a labels input".into(),
        }),
    }
}

/// A discriminator (or WGAN critic): samples [n, input_shape..] (with one
/// label per row when class-conditional) -> one logit per sample `[n]`.
pub trait Discriminator<T: Element = f32>: Module<T> {
    /// Shape of one input sample.
    fn input_shape(&self) -> Vec<usize>;

    fn num_classes(&self) -> Option<usize> {
        None
    }

    /// `[n, input_shape..] -> [n]`. A conditional discriminator needs `n`
    /// labels; an unconditional one ignores them.
    fn score(&self, x: &Var<T>, labels: Option<&[usize]>) -> Result<Var<T>>;

    /// This net as a plain module (for state dicts).
    fn as_module(&self) -> &dyn Module<T>;

    /// The architecture, for checkpoints.
    fn spec(&self) -> crate::NetSpec;
}

/// `Forward` for a GAN net (a `Sequential` named `net` plus an optional
/// label embedding `embed`, whose state `#[derive(Module)]` names `net.*`
/// then `embed.*`, as PyTorch would): `$call` without labels.
macro_rules! net_forward {
    ($ty:ident, $call:ident) => {
        impl<T: deepgen_autograd::Element> deepgen_nn::Forward<T> for $ty<T> {
            fn forward(
                &self,
                x: &deepgen_autograd::Var<T>,
            ) -> deepgen_nn::Result<deepgen_autograd::Var<T>> {
                self.$call(x, None).map_err(crate::mlp::into_nn)
            }
        }
    };
}
pub(crate) use net_forward;

/// The hidden nonlinearity of an MLP discriminator.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Relu,
    /// LeakyReLU with this negative slope (0.2 in most GAN papers).
    LeakyRelu(f64),
}

/// Checks that a conditional net got one valid label per row.
pub(crate) fn check_labels<'a>(
    op: &'static str,
    labels: Option<&'a [usize]>,
    rows: usize,
    classes: usize,
) -> Result<&'a [usize]> {
    let labels = labels.ok_or_else(|| Error::Invalid {
        op,
        msg: format!("a conditional net over {classes} classes needs labels"),
    })?;
    if labels.len() != rows {
        return Err(Error::Invalid {
            op,
            msg: format!("{} labels for a batch of {rows}", labels.len()),
        });
    }
    if let Some(&l) = labels.iter().find(|&&l| l >= classes) {
        return Err(Error::Invalid {
            op,
            msg: format!("label {l} is not a class of 0..{classes}"),
        });
    }
    Ok(labels)
}

/// Checks that `x` is [n, shape..]; returns n.
pub(crate) fn check_input<T: Element>(
    op: &'static str,
    x: &Var<T>,
    shape: &[usize],
) -> Result<usize> {
    let s = x.shape();
    if s.len() != shape.len() + 1 || s[1..] != *shape {
        return Err(Error::Invalid {
            op,
            msg: format!("expected [n, {shape:?}..], got {s:?}"),
        });
    }
    Ok(s[0])
}

/// The buffers (running statistics) and counters of a module, to put back
/// after a forward pass that must not change them.
pub struct BufferSnapshot<T: Element> {
    buffers: Vec<Tensor<T>>,
    counters: Vec<i64>,
}

/// Copies every buffer and counter of `m`.
pub fn snapshot_buffers<T: Element>(m: &dyn Module<T>) -> BufferSnapshot<T> {
    let mut s = BufferSnapshot {
        buffers: Vec::new(),
        counters: Vec::new(),
    };
    m.visit(&mut |_, slot| match slot {
        Slot::Buffer(v) => s.buffers.push(v.value()),
        Slot::Counter(c) => s.counters.push(c.load(Ordering::Relaxed)),
        Slot::Parameter(_) => {}
    });
    s
}

/// Puts back what [`snapshot_buffers`] took from the same module.
pub fn restore_buffers<T: Element>(m: &dyn Module<T>, s: BufferSnapshot<T>) -> Result<()> {
    let (mut b, mut c) = (s.buffers.into_iter(), s.counters.into_iter());
    let mut result = Ok(());
    m.visit(&mut |name, slot| match slot {
        Slot::Buffer(v) => match b.next() {
            Some(t) => {
                if let Err(e) = v.set_value(t) {
                    result = Err(e.into());
                }
            }
            None => {
                result = Err(Error::Invalid {
                    op: "restore_buffers",
                    msg: format!("no saved value for {name}"),
                })
            }
        },
        Slot::Counter(ctr) => {
            if let Some(v) = c.next() {
                ctr.store(v, Ordering::Relaxed);
            }
        }
        Slot::Parameter(_) => {}
    });
    result
}

/// ema = decay * ema + (1 - decay) * model for every parameter; buffers and
/// counters are copied, since running statistics are not weights to average.
/// The two modules must have the same architecture.
pub fn ema_update<T: Element>(
    ema: &dyn Module<T>,
    model: &dyn Module<T>,
    decay: f64,
) -> Result<()> {
    let mut values: Vec<(String, Option<Tensor<T>>, i64)> = Vec::new();
    model.visit(&mut |name, slot| {
        values.push(match slot {
            Slot::Parameter(v) | Slot::Buffer(v) => (name.to_string(), Some(v.value()), 0),
            Slot::Counter(c) => (name.to_string(), None, c.load(Ordering::Relaxed)),
        })
    });
    let mut it = values.into_iter();
    let mut result = Ok(());
    let (d, rest) = (T::of(decay), T::of(1.0 - decay));
    ema.visit(&mut |name, slot| {
        let Some((src_name, value, count)) = it.next().filter(|(n, ..)| n == name) else {
            result = Err(Error::Invalid {
                op: "ema_update",
                msg: format!("the EMA copy's {name} has no match in the model"),
            });
            return;
        };
        let outcome = match (slot, value) {
            // decay 0 is a plain copy (0 * NaN would keep a NaN).
            (Slot::Parameter(e), Some(v)) if decay == 0.0 => e.set_value(v).map_err(Error::from),
            (Slot::Parameter(e), Some(v)) => {
                use deepgen_kernels::{add, mul_scalar};
                add(&mul_scalar(&e.value(), d), &mul_scalar(&v, rest))
                    .map_err(Error::from)
                    .and_then(|t| e.set_value(t).map_err(Error::from))
            }
            (Slot::Buffer(e), Some(v)) => e.set_value(v).map_err(Error::from),
            (Slot::Counter(c), None) => {
                c.store(count, Ordering::Relaxed);
                Ok(())
            }
            _ => Err(Error::Invalid {
                op: "ema_update",
                msg: format!("{src_name} is of a different kind in the EMA copy"),
            }),
        };
        if let Err(e) = outcome {
            result = Err(e);
        }
    });
    result
}

/// Copies `src`'s whole state (parameters, buffers, counters) into `dst`.
pub fn copy_state<T: Element>(dst: &dyn Module<T>, src: &dyn Module<T>) -> Result<()> {
    ema_update(dst, src, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deepgen_nn::{BatchNorm, BatchNormConfig, Forward, Linear, Sequential};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn net(seed: u64) -> Sequential<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Sequential::new()
            .add(Linear::new(3, 2, true, &mut rng).unwrap())
            .add(BatchNorm::new1d(2, BatchNormConfig::default()))
    }

    #[test]
    fn ema_averages_parameters_and_copies_buffers() {
        let (ema, model) = (net(1), net(2));
        let x = Var::constant(Tensor::from_vec((0..12).map(f64::from).collect(), &[4, 3]).unwrap());
        model.forward(&x).unwrap();
        let before: Vec<Vec<f64>> = ema
            .parameters()
            .iter()
            .map(|p| p.value().to_vec())
            .collect();
        ema_update(&ema, &model, 0.75).unwrap();
        for ((e, m), b) in ema.parameters().iter().zip(model.parameters()).zip(before) {
            let want: Vec<f64> = b
                .iter()
                .zip(m.value().to_vec())
                .map(|(b, m)| 0.75 * b + 0.25 * m)
                .collect();
            assert_eq!(e.value().to_vec(), want);
        }
        let sd = |m: &dyn Module<f64>| deepgen_nn::checkpoint::state_dict(m);
        let (e, m) = (sd(&ema), sd(&model));
        assert_eq!(e[2..], m[2..], "running statistics and counter copied");
        copy_state(&ema, &model).unwrap();
        assert_eq!(sd(&ema), sd(&model));
    }

    #[test]
    fn restored_buffers_undo_a_training_forward() {
        let m = net(3);
        let before = deepgen_nn::checkpoint::state_dict(&m);
        let saved = snapshot_buffers(&m);
        let x = Var::constant(Tensor::from_vec((0..12).map(f64::from).collect(), &[4, 3]).unwrap());
        m.forward(&x).unwrap();
        assert_ne!(deepgen_nn::checkpoint::state_dict(&m), before);
        restore_buffers(&m, saved).unwrap();
        assert_eq!(deepgen_nn::checkpoint::state_dict(&m), before);
    }
}
