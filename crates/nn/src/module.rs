//! The Module trait (named state, train / eval), Forward (one input to one
//! output), and what `#[derive(Module)]` builds on.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

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

/// A layer or a network's named state, as PyTorch names it, and its
/// training switch: what optimizers, checkpoints and trainers need of a
/// model. Usually derived (`#[derive(Module)]`) from the struct's fields, so
/// that every child is visited and switched; both methods are required when
/// written by hand, so none is forgotten. The computation lives apart, in
/// [`Forward`] for one-input layers or in a model's own methods (a
/// two-input model needs no dummy `forward`).
///
/// `use deepgen_nn::Module` brings both the trait and the derive macro:
///
/// ```
/// use deepgen_autograd::rand::SeedableRng;
/// use deepgen_autograd::rand_chacha::ChaCha8Rng;
/// use deepgen_nn::{BatchNorm, BatchNormConfig, Forward, Linear, Module, Tensor, Var};
///
/// #[derive(Module)]
/// struct Mlp {
///     fc1: Linear,
///     norm: BatchNorm,
///     #[module(rename = "head")]
///     fc2: Linear,
///     #[module(skip)]
///     label: &'static str,
/// }
///
/// impl Forward for Mlp {
///     fn forward(&self, x: &Var) -> deepgen_nn::Result<Var> {
///         self.fc2.forward(&self.norm.forward(&self.fc1.forward(x)?)?.relu())
///     }
/// }
///
/// # fn main() -> deepgen_nn::Result<()> {
/// let mut rng = ChaCha8Rng::seed_from_u64(0);
/// let net = Mlp {
///     fc1: Linear::new(4, 8, true, &mut rng)?,
///     norm: BatchNorm::new1d(8, BatchNormConfig::default()),
///     fc2: Linear::new(8, 2, true, &mut rng)?,
///     label: "mlp",
/// };
/// let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["fc1.weight", "fc1.bias", "norm.weight", "norm.bias", "head.weight", "head.bias"]);
/// assert_eq!(net.num_parameters(), (4 * 8 + 8) + (8 + 8) + (8 * 2 + 2));
/// net.eval(); // reaches the BatchNorm through the derived impl
/// let y = net.forward(&Var::constant(Tensor::zeros(&[3, 4])))?;
/// assert_eq!(y.shape(), [3, 2]);
/// # Ok(())
/// # }
/// ```
pub trait Module<T: Element = f32>: Send + Sync {
    /// Calls `f(name, slot)` for every parameter, buffer and counter, with
    /// names relative to this module (`weight`, `0.bias`, ...), in PyTorch's
    /// registration order.
    fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>));

    /// Switches training-dependent behaviour (BatchNorm, Dropout) on or off,
    /// in this module and every child.
    fn set_training(&self, training: bool);

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

/// A module with one input and one output: every layer, and models that
/// are one map (a `Sequential`, a classifier). PyTorch's `forward`.
///
/// ```
/// use deepgen_nn::{Forward, Module, Relu, Tensor, Var};
///
/// /// x -> 2 x: a layer without state.
/// #[derive(Module)]
/// struct Double;
///
/// impl Forward for Double {
///     fn forward(&self, x: &Var) -> deepgen_nn::Result<Var> {
///         Ok(x.mul_scalar(2.0))
///     }
/// }
///
/// # fn main() -> deepgen_nn::Result<()> {
/// let layers: Vec<Box<dyn Forward>> = vec![Box::new(Double), Box::new(Relu)];
/// let mut x = Var::constant(Tensor::from_vec(vec![-1.0, 3.0], &[2])?);
/// for layer in &layers {
///     x = layer.forward(&x)?;
/// }
/// assert_eq!(x.value().to_vec(), [0.0, 6.0]);
/// # Ok(())
/// # }
/// ```
pub trait Forward<T: Element = f32>: Module<T> {
    fn forward(&self, x: &Var<T>) -> Result<Var<T>>;

    /// For a leaky rectifier layer (ReLU: 0, LeakyReLU: its slope), the
    /// slope below zero, so that a container can fuse it into the layer
    /// before it with [`Forward::forward_rectified`].
    fn rectifier_slope(&self) -> Option<f64> {
        None
    }

    /// `forward` followed by a leaky rectifier of `slope`, which a layer may
    /// fuse (BatchNorm does); the same values and gradients as the two in
    /// turn.
    fn forward_rectified(&self, x: &Var<T>, slope: f64) -> Result<Var<T>> {
        Ok(rectify(&self.forward(x)?, T::of(slope)))
    }

    /// Adds this layer's inference-time computation on the value named `x`
    /// to `graph` (weights named under the graph's scope, as in the state
    /// dict) and returns its output's name: what ONNX export writes. A
    /// layer without one says so.
    fn export(&self, graph: &mut crate::export::Graph, x: &str) -> Result<String> {
        let _ = (graph, x);
        Err(crate::export::unsupported(std::any::type_name::<Self>()))
    }
}

/// How a field of a `#[derive(Module)]` struct takes part in its state:
/// implemented for `Var` (a parameter), child modules (visited under the
/// field's name), `Option`, `Vec` (numbered like `nn.ModuleList`), boxes,
/// `AtomicI64` (a counter) and, doing nothing, plain numbers, flags and
/// strings. `name` is the field's name, or empty for a flattened field.
pub trait ModuleField<T: Element> {
    fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, Slot<'_, T>));

    fn set_training_field(&self, training: bool);
}

/// `prefix.name`, or `name` alone under an empty prefix (a flattened field).
fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

impl<T: Element> ModuleField<T> for Var<T> {
    fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        f(name, Slot::Parameter(self));
    }

    fn set_training_field(&self, _training: bool) {}
}

impl<T: Element> ModuleField<T> for AtomicI64 {
    fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        f(name, Slot::Counter(self));
    }

    fn set_training_field(&self, _training: bool) {}
}

impl<T: Element, F: ModuleField<T>> ModuleField<T> for Option<F> {
    fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        if let Some(x) = self {
            x.visit_field(name, f);
        }
    }

    fn set_training_field(&self, training: bool) {
        if let Some(x) = self {
            x.set_training_field(training);
        }
    }
}

impl<T: Element, F: ModuleField<T>> ModuleField<T> for Vec<F> {
    fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        for (i, x) in self.iter().enumerate() {
            x.visit_field(&join(name, &i.to_string()), f);
        }
    }

    fn set_training_field(&self, training: bool) {
        self.iter().for_each(|x| x.set_training_field(training));
    }
}

impl<T: Element, F: ModuleField<T> + ?Sized> ModuleField<T> for Box<F> {
    fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        (**self).visit_field(name, f);
    }

    fn set_training_field(&self, training: bool) {
        (**self).set_training_field(training);
    }
}

impl<T: Element, F: ModuleField<T> + ?Sized> ModuleField<T> for std::sync::Arc<F> {
    fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        (**self).visit_field(name, f);
    }

    fn set_training_field(&self, training: bool) {
        (**self).set_training_field(training);
    }
}

macro_rules! module_trait_object {
    ($($tr:ident),*) => {$(
        impl<T: Element> ModuleField<T> for dyn $tr<T> {
            fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
                visit_child(name, self, f);
            }

            fn set_training_field(&self, training: bool) {
                self.set_training(training);
            }
        }
    )*};
}
module_trait_object!(Module, Forward);

macro_rules! plain_fields {
    ($($ty:ty),*) => {$(
        impl<T: Element> ModuleField<T> for $ty {
            fn visit_field(&self, _name: &str, _f: &mut dyn FnMut(&str, Slot<'_, T>)) {}

            fn set_training_field(&self, _training: bool) {}
        }
    )*};
}
plain_fields!(
    bool,
    u8,
    u16,
    u32,
    u64,
    usize,
    i8,
    i16,
    i32,
    i64,
    isize,
    f32,
    f64,
    String,
    ()
);

impl<T: Element, X: ?Sized> ModuleField<T> for std::marker::PhantomData<X> {
    fn visit_field(&self, _name: &str, _f: &mut dyn FnMut(&str, Slot<'_, T>)) {}

    fn set_training_field(&self, _training: bool) {}
}

/// A `#[module(buffer)]` field: state that is not learnable.
pub trait BufferField<T: Element> {
    fn visit_buffer(&self, name: &str, f: &mut dyn FnMut(&str, Slot<'_, T>));
}

impl<T: Element> BufferField<T> for Var<T> {
    fn visit_buffer(&self, name: &str, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        f(name, Slot::Buffer(self));
    }
}

impl<T: Element> BufferField<T> for Option<Var<T>> {
    fn visit_buffer(&self, name: &str, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        if let Some(v) = self {
            f(name, Slot::Buffer(v));
        }
    }
}

/// A `#[module(training)]` field: the flag `set_training` sets.
pub trait TrainingFlag {
    fn set_flag(&self, training: bool);
}

impl TrainingFlag for AtomicBool {
    fn set_flag(&self, training: bool) {
        self.store(training, Ordering::Relaxed);
    }
}

/// Visits a child module's state under `prefix.`.
pub fn visit_child<T: Element>(
    prefix: &str,
    child: &(impl Module<T> + ?Sized),
    f: &mut dyn FnMut(&str, Slot<'_, T>),
) {
    child.visit(&mut |name, slot| f(&join(prefix, name), slot));
}
