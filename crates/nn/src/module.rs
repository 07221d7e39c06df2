//! The Module trait: forward, named state, train / eval.

use std::sync::atomic::AtomicI64;

use crate::{Element, Result, Var};

/// One entry of a module's state, as a visitor sees it.
pub enum Slot<'a, T: Element> {
    /// A learnable parameter (in `parameters()` and the state dict).
    Parameter(&'a Var<T>),
    /// A non-learnable tensor kept in the state dict (BatchNorm's running statistics).
    Buffer(&'a Var<T>),
    /// An integer counter kept in the state dict (BatchNorm's num_batches_tracked, int64 in PyTorch).
    Counter(&'a AtomicI64),
}

/// A leaky rectifier of `slope`: `relu` for 0, `leaky_relu` otherwise (the
/// ops the ReLU and LeakyReLU layers run).
pub(crate) fn rectify<T: Element>(y: &Var<T>, slope: T) -> Var<T> {
    if slope == T::zero() {
        y.relu()
    } else {
        y.leaky_relu(slope)
    }
}

/// A layer or a network: maps a Var to a Var and names its state as PyTorch does.
pub trait Module<T: Element = f32>: Send + Sync {
    fn forward(&self, x: &Var<T>) -> Result<Var<T>>;

    /// Calls `f(name, slot)` for every parameter, buffer and counter, with
    /// names relative to this module (`weight`, `0.bias`, ...), in PyTorch's
    /// registration order.
    fn visit(&self, _f: &mut dyn FnMut(&str, Slot<'_, T>)) {}

    /// Switches training-dependent behaviour (BatchNorm, Dropout) on or off.
    fn set_training(&self, _training: bool) {}

    /// For a leaky rectifier layer (ReLU: 0, LeakyReLU: its slope), the
    /// slope below zero, so that a container can fuse it into the layer
    /// before it with [`Module::forward_rectified`].
    fn rectifier_slope(&self) -> Option<f64> {
        None
    }

    /// `forward` followed by a leaky rectifier of `slope`, which a layer may
    /// fuse (BatchNorm does); the same values and gradients as the two in
    /// turn.
    fn forward_rectified(&self, x: &Var<T>, slope: f64) -> Result<Var<T>> {
        Ok(rectify(&self.forward(x)?, T::of(slope)))
    }

    /// Parameters with their dotted names.
    fn named_parameters(&self) -> Vec<(String, Var<T>)> {
        let mut out = Vec::new();
        self.visit(&mut |name, slot| {
            if let Slot::Parameter(p) = slot {
                out.push((name.to_string(), p.clone()));
            }
        });
        out
    }

    /// The learnable parameters, for an optimizer.
    fn parameters(&self) -> Vec<Var<T>> {
        self.named_parameters()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    /// Number of learnable scalars.
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(|p| p.numel()).sum()
    }

    /// Clears every parameter's accumulated gradient.
    fn zero_grad(&self) {
        self.parameters().iter().for_each(|p| p.zero_grad());
    }

    /// Training mode (PyTorch's `train()`).
    fn train(&self) {
        self.set_training(true);
    }

    /// Evaluation mode (PyTorch's `eval()`).
    fn eval(&self) {
        self.set_training(false);
    }
}

/// Visits a child module's state under `prefix.`.
pub fn visit_child<T: Element>(
    prefix: &str,
    child: &dyn Module<T>,
    f: &mut dyn FnMut(&str, Slot<'_, T>),
) {
    child.visit(&mut |name, slot| f(&format!("{prefix}.{name}"), slot));
}
