use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use deepgen_kernels as k;

use crate::grad_mode::is_grad_enabled;
use crate::{Element, Error, Result, Tensor};

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// The gradients a backward rule returns, one per input (None where not needed).
pub type Grads<T> = Vec<Option<Var<T>>>;

type BackwardFn<T> = Box<dyn Fn(&Ctx<T>) -> Result<Grads<T>> + Send + Sync>;

/// What a backward rule sees: the op's inputs, its output, and the gradient
/// flowing into the output.
pub struct Ctx<'a, T: Element> {
    pub inputs: &'a [Var<T>],
    pub out: &'a Var<T>,
    pub grad: &'a Var<T>,
    pub(crate) needs: &'a [bool],
}

impl<T: Element> Ctx<'_, T> {
    /// Whether the gradient of input `i` is wanted.
    pub fn needs(&self, i: usize) -> bool {
        self.needs[i]
    }

    /// Computes input `i`'s gradient only when it is wanted.
    pub fn grad_for(&self, i: usize, f: impl FnOnce() -> Result<Var<T>>) -> Result<Option<Var<T>>> {
        if self.needs[i] {
            f().map(Some)
        } else {
            Ok(None)
        }
    }
}

pub(crate) struct GradFn<T: Element> {
    pub name: &'static str,
    pub inputs: Vec<Var<T>>,
    pub backward: BackwardFn<T>,
}

pub(crate) struct Node<T: Element> {
    pub id: usize,
    value: RwLock<Tensor<T>>,
    pub requires_grad: bool,
    grad: Mutex<Option<Tensor<T>>>,
    pub grad_fn: Option<GradFn<T>>,
}

/// A tensor in the autograd graph: a cheap, clonable, Send + Sync handle.
///
/// Leaves are [`Var::parameter`] (wants a gradient) or [`Var::constant`]
/// (data); ops on Vars record the graph, and [`Var::backward`] accumulates
/// d output / d leaf into every parameter's [`Var::grad`].
///
/// ```
/// use deepgen_autograd::{Tensor, Var};
///
/// # fn main() -> deepgen_autograd::Result<()> {
/// let w = Var::<f64>::parameter(Tensor::from_vec(vec![1.0, -2.0], &[2])?);
/// let x = Var::constant(Tensor::from_vec(vec![3.0, 4.0], &[2])?);
/// // loss = sum(w * x) + sum(w^2): d loss / d w = x + 2 w
/// let loss = w.mul(&x)?.sum_all()?.add(&w.square().sum_all()?)?;
/// assert_eq!(loss.item()?, 3.0 - 8.0 + 1.0 + 4.0);
/// loss.backward()?;
/// assert_eq!(w.grad().unwrap().to_vec(), vec![5.0, 0.0]);
/// assert!(x.grad().is_none()); // constants get no gradient
/// # Ok(())
/// # }
/// ```
pub struct Var<T: Element = f32>(pub(crate) Arc<Node<T>>);

impl<T: Element> Clone for Var<T> {
    fn clone(&self) -> Self {
        Var(self.0.clone())
    }
}

impl<T: Element> Var<T> {
    fn make(value: Tensor<T>, requires_grad: bool, grad_fn: Option<GradFn<T>>) -> Self {
        Var(Arc::new(Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            value: RwLock::new(value),
            requires_grad,
            grad: Mutex::new(None),
            grad_fn,
        }))
    }

    /// A leaf that needs no gradient (data, targets, constants).
    pub fn constant(value: Tensor<T>) -> Self {
        Self::make(value, false, None)
    }

    /// A leaf whose gradient `backward` accumulates (a parameter).
    pub fn parameter(value: Tensor<T>) -> Self {
        Self::make(value, true, None)
    }

    /// A rank-0 constant.
    pub fn scalar(value: T) -> Self {
        Self::constant(Tensor::scalar(value))
    }

    /// The result of an op. While recording, and when some input requires a
    /// gradient, `backward` is kept to propagate gradients to `inputs`.
    pub fn from_op(
        name: &'static str,
        value: Tensor<T>,
        inputs: Vec<Var<T>>,
        backward: impl Fn(&Ctx<T>) -> Result<Grads<T>> + Send + Sync + 'static,
    ) -> Self {
        if is_grad_enabled() && inputs.iter().any(|v| v.requires_grad()) {
            let grad_fn = GradFn {
                name,
                inputs,
                backward: Box::new(backward),
            };
            Self::make(value, true, Some(grad_fn))
        } else {
            Self::constant(value)
        }
    }

    /// A unique id of the node (stable while it lives).
    pub fn id(&self) -> usize {
        self.0.id
    }

    /// The value (a cheap clone sharing storage).
    pub fn value(&self) -> Tensor<T> {
        self.0.value.read().expect("value lock").clone()
    }

    /// Replaces the value of a leaf in place (optimizer steps, loading
    /// weights); the shape must stay the same.
    pub fn set_value(&self, value: Tensor<T>) -> Result<()> {
        let mut v = self.0.value.write().expect("value lock");
        value.expect_shape("set_value", v.shape())?;
        *v = value;
        Ok(())
    }

    /// Runs `f` on the value with write access, for in-place updates.
    pub fn update_value<R>(&self, f: impl FnOnce(&mut Tensor<T>) -> R) -> R {
        f(&mut self.0.value.write().expect("value lock"))
    }

    pub fn shape(&self) -> Vec<usize> {
        self.0.value.read().expect("value lock").shape().to_vec()
    }

    pub fn rank(&self) -> usize {
        self.0.value.read().expect("value lock").rank()
    }

    pub fn numel(&self) -> usize {
        self.0.value.read().expect("value lock").numel()
    }

    /// The single element of a one-element Var.
    pub fn item(&self) -> Result<T> {
        Ok(self.value().item()?)
    }

    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// True for nodes made by [`Var::constant`] / [`Var::parameter`].
    pub fn is_leaf(&self) -> bool {
        self.0.grad_fn.is_none()
    }

    /// The op that made this node, if recorded.
    pub fn op_name(&self) -> Option<&'static str> {
        self.0.grad_fn.as_ref().map(|g| g.name)
    }

    /// The gradient accumulated by `backward`, if any.
    pub fn grad(&self) -> Option<Tensor<T>> {
        self.0.grad.lock().expect("grad lock").clone()
    }

    /// Clears the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.0.grad.lock().expect("grad lock") = None;
    }

    /// Replaces the accumulated gradient (`None` clears it), so code between
    /// `backward` and an optimizer step can edit gradients: clipping,
    /// scaling, restoring. The gradient must have the value's shape, as one
    /// from `backward` does; otherwise nothing changes and the error names
    /// both shapes.
    pub fn set_grad(&self, grad: Option<Tensor<T>>) -> Result<()> {
        if let Some(g) = &grad {
            let want = self.shape();
            if g.shape() != want.as_slice() {
                return Err(Error::GradShape {
                    what: "set_grad".into(),
                    got: g.shape().to_vec(),
                    want,
                });
            }
        }
        *self.0.grad.lock().expect("grad lock") = grad;
        Ok(())
    }

    pub(crate) fn accumulate_grad(&self, g: Tensor<T>) -> Result<()> {
        let mut slot = self.0.grad.lock().expect("grad lock");
        *slot = Some(match slot.take() {
            Some(old) => k::add(&old, &g)?,
            None => g,
        });
        Ok(())
    }

    /// The same value, cut from the graph.
    pub fn detach(&self) -> Var<T> {
        Var::constant(self.value())
    }

    /// A constant of this Var's shape filled with `v`.
    pub fn full_like(&self, v: T) -> Var<T> {
        Var::constant(Tensor::full(&self.shape(), v))
    }
}

impl<T: Element> fmt::Debug for Var<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Var(")?;
        if let Some(name) = self.op_name() {
            write!(f, "{name}, ")?;
        } else if self.requires_grad() {
            write!(f, "parameter, ")?;
        }
        write!(f, "{})", self.value())
    }
}

impl<T: Element> fmt::Display for Var<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
