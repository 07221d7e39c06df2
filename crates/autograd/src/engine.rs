//! The backward pass: reverse topological order over the recorded graph.

use std::collections::{HashMap, HashSet};

use crate::grad_mode::NoGradGuard;
use crate::{Element, Error, Result, Tensor, Var};

/// Each reached target, by node id: the node and its gradient.
type Reached<T> = HashMap<usize, (Var<T>, Var<T>)>;

enum Targets<'a> {
    /// Every leaf that requires a gradient (`backward`).
    Leaves,
    /// These node ids (`grad`).
    These(&'a HashSet<usize>),
}

impl Targets<'_> {
    fn contains<T: Element>(&self, v: &Var<T>) -> bool {
        match self {
            Targets::Leaves => v.is_leaf(),
            Targets::These(ids) => ids.contains(&v.id()),
        }
    }
}

/// Nodes reachable from `outputs` through inputs that require a gradient,
/// inputs before the nodes that use them.
fn topo_order<T: Element>(outputs: &[Var<T>]) -> Vec<Var<T>> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    let mut stack: Vec<(Var<T>, bool)> = outputs.iter().rev().map(|v| (v.clone(), false)).collect();
    while let Some((v, expanded)) = stack.pop() {
        if expanded {
            order.push(v);
            continue;
        }
        if !v.requires_grad() || !visited.insert(v.id()) {
            continue;
        }
        stack.push((v.clone(), true));
        if let Some(gf) = &v.0.grad_fn {
            for input in gf.inputs.iter().rev() {
                if input.requires_grad() && !visited.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}

/// Propagates `seeds` (one per output) back to the targets; returns each
/// reached target's gradient by node id.
fn run<T: Element>(
    outputs: &[Var<T>],
    seeds: Vec<Var<T>>,
    targets: Targets,
    create_graph: bool,
) -> Result<Reached<T>> {
    let _mode = NoGradGuard::set(create_graph);
    let order = topo_order(outputs);
    // Which nodes lead to a target: only their rules need to run.
    let mut reaches: HashSet<usize> = HashSet::new();
    for v in &order {
        let via_inputs =
            v.0.grad_fn
                .as_ref()
                .is_some_and(|gf| gf.inputs.iter().any(|i| reaches.contains(&i.id())));
        if targets.contains(v) || via_inputs {
            reaches.insert(v.id());
        }
    }
    let mut grads: HashMap<usize, Var<T>> = HashMap::new();
    for (out, seed) in outputs.iter().zip(seeds) {
        accumulate(&mut grads, out, seed)?;
    }
    let mut found = HashMap::new();
    for v in order.iter().rev() {
        let Some(g) = grads.remove(&v.id()) else {
            continue;
        };
        if targets.contains(v) {
            found.insert(v.id(), (v.clone(), g.clone()));
        }
        let Some(gf) = &v.0.grad_fn else { continue };
        let needs: Vec<bool> = gf
            .inputs
            .iter()
            .map(|i| i.requires_grad() && reaches.contains(&i.id()))
            .collect();
        if !needs.contains(&true) {
            continue;
        }
        let ctx = crate::Ctx {
            inputs: &gf.inputs,
            out: v,
            grad: &g,
            needs: &needs,
        };
        let input_grads = (gf.backward)(&ctx)?;
        for ((input, gi), &need) in gf.inputs.iter().zip(input_grads).zip(&needs) {
            let Some(gi) = gi.filter(|_| need) else {
                continue;
            };
            if gi.shape() != input.shape() {
                return Err(Error::GradShape {
                    what: format!("backward of {} (input gradient)", gf.name),
                    got: gi.shape(),
                    want: input.shape(),
                });
            }
            accumulate(&mut grads, input, gi)?;
        }
    }
    Ok(found)
}

fn accumulate<T: Element>(
    grads: &mut HashMap<usize, Var<T>>,
    node: &Var<T>,
    g: Var<T>,
) -> Result<()> {
    let sum = match grads.remove(&node.id()) {
        Some(old) => old.add(&g)?,
        None => g,
    };
    grads.insert(node.id(), sum);
    Ok(())
}

fn ones_seed<T: Element>(out: &Var<T>) -> Result<Var<T>> {
    if out.numel() != 1 {
        return Err(Error::NonScalarOutput { shape: out.shape() });
    }
    Ok(Var::constant(Tensor::ones(&out.shape())))
}

/// Gradients of the sum of `outputs` (each with one element) with respect to
/// `inputs`. With `create_graph` the gradients are recorded Vars that can be
/// differentiated again. Inputs the outputs do not depend on get zeros.
///
/// Unlike [`Var::backward`] it returns the gradients instead of
/// accumulating them into the leaves. A second derivative of x^3:
///
/// ```
/// use deepgen_autograd::{grad, Tensor, Var};
///
/// # fn main() -> deepgen_autograd::Result<()> {
/// let x = Var::<f64>::parameter(Tensor::scalar(2.0));
/// let y = x.powf(3.0);
/// let dy = grad(&[y], &[x.clone()], true)?.remove(0);
/// assert_eq!(dy.item()?, 12.0); // 3 x^2
/// let d2y = grad(&[dy], &[x.clone()], false)?.remove(0);
/// assert_eq!(d2y.item()?, 12.0); // 6 x
/// assert!(x.grad().is_none()); // nothing was accumulated
/// # Ok(())
/// # }
/// ```
pub fn grad<T: Element>(
    outputs: &[Var<T>],
    inputs: &[Var<T>],
    create_graph: bool,
) -> Result<Vec<Var<T>>> {
    let seeds = outputs.iter().map(ones_seed).collect::<Result<Vec<_>>>()?;
    grad_with(outputs, seeds, inputs, create_graph)
}

/// [`grad`] with explicit output gradients (vector-Jacobian products).
pub fn grad_with<T: Element>(
    outputs: &[Var<T>],
    grad_outputs: Vec<Var<T>>,
    inputs: &[Var<T>],
    create_graph: bool,
) -> Result<Vec<Var<T>>> {
    for (i, (o, g)) in outputs.iter().zip(&grad_outputs).enumerate() {
        if o.shape() != g.shape() {
            return Err(Error::GradShape {
                what: format!("grad_outputs[{i}]"),
                got: g.shape(),
                want: o.shape(),
            });
        }
    }
    if let Some(index) = inputs.iter().position(|v| !v.requires_grad()) {
        return Err(Error::InputWithoutGrad { index });
    }
    let ids: HashSet<usize> = inputs.iter().map(|v| v.id()).collect();
    let found = run(outputs, grad_outputs, Targets::These(&ids), create_graph)?;
    Ok(inputs
        .iter()
        .map(|v| match found.get(&v.id()) {
            Some((_, g)) => g.clone(),
            None => Var::constant(Tensor::zeros(&v.shape())),
        })
        .collect())
}

impl<T: Element> Var<T> {
    /// Accumulates d self / d leaf into every leaf that requires a gradient;
    /// `self` must hold one element.
    pub fn backward(&self) -> Result<()> {
        let seed = ones_seed(self)?;
        self.backward_with(seed)
    }

    /// [`Var::backward`] with an explicit gradient of `self`.
    pub fn backward_with(&self, grad: Var<T>) -> Result<()> {
        if grad.shape() != self.shape() {
            return Err(Error::GradShape {
                what: "backward gradient".into(),
                got: grad.shape(),
                want: self.shape(),
            });
        }
        let found = run(
            std::slice::from_ref(self),
            vec![grad],
            Targets::Leaves,
            false,
        )?;
        for (leaf, g) in found.into_values() {
            leaf.accumulate_grad(g.value())?;
        }
        Ok(())
    }

    /// [`Var::backward`] into `inputs` only (PyTorch's `backward(inputs=...)`):
    /// accumulates d self / d input into each input's gradient and leaves
    /// every other leaf alone; rules on paths to no input are not run (a
    /// generator's step skips the discriminator's weight gradients). Inputs
    /// that `self` does not depend on keep their gradient as it was (`None`
    /// stays `None`, so an optimizer skips them, as in PyTorch).
    pub fn backward_inputs(&self, inputs: &[Var<T>]) -> Result<()> {
        let seed = ones_seed(self)?;
        if let Some(index) = inputs.iter().position(|v| !v.requires_grad()) {
            return Err(Error::InputWithoutGrad { index });
        }
        let ids: HashSet<usize> = inputs.iter().map(|v| v.id()).collect();
        let found = run(
            std::slice::from_ref(self),
            vec![seed],
            Targets::These(&ids),
            false,
        )?;
        for input in inputs {
            if let Some((_, g)) = found.get(&input.id()) {
                input.accumulate_grad(g.value())?;
            }
        }
        Ok(())
    }
}
