//! Layers that only reshape.

use crate::export::{Attr, Graph};
use crate::{Element, Error, Forward, Module, Result, Var};

/// Collapses axes `start..=end` (PyTorch's defaults: 1 to the last).
#[derive(Debug, Clone, Copy, Module)]
pub struct Flatten {
    pub start: usize,
    /// None: the last axis.
    pub end: Option<usize>,
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten {
            start: 1,
            end: None,
        }
    }
}

impl<T: Element> Forward<T> for Flatten {
    fn forward(&self, x: &Var<T>) -> Result<Var<T>> {
        let end = self.end.unwrap_or(x.rank().saturating_sub(1));
        Ok(x.flatten(self.start, end)?)
    }

    /// ONNX's Flatten folds everything from an axis on into one: the
    /// default Flatten (axis 1 to the end) only.
    fn export(&self, g: &mut Graph, x: &str) -> Result<String> {
        if self.end.is_some() || self.start != 1 {
            return Err(crate::export::unsupported(
                "Flatten other than from axis 1 to the end",
            ));
        }
        Ok(g.node(
            "Flatten",
            &[x],
            vec![("axis", Attr::Int(self.start as i64))],
        ))
    }
}

/// Splits axis `axis` into `sizes`.
#[derive(Debug, Clone, Module)]
pub struct Unflatten {
    pub axis: usize,
    pub sizes: Vec<usize>,
}

impl Unflatten {
    pub fn new(axis: usize, sizes: &[usize]) -> Self {
        Unflatten {
            axis,
            sizes: sizes.to_vec(),
        }
    }
}

impl<T: Element> Forward<T> for Unflatten {
    fn forward(&self, x: &Var<T>) -> Result<Var<T>> {
        let shape = x.shape();
        let n = shape.get(self.axis).copied();
        if n != Some(self.sizes.iter().product()) {
            return Err(Error::Invalid {
                op: "unflatten",
                msg: format!(
                    "axis {} of shape {shape:?} cannot split into {:?}",
                    self.axis, self.sizes
                ),
            });
        }
        let mut new = shape[..self.axis].to_vec();
        new.extend_from_slice(&self.sizes);
        new.extend_from_slice(&shape[self.axis + 1..]);
        Ok(x.reshape(&new)?)
    }

    /// Reshape keeping the axes before `axis` (ONNX's 0): an input whose
    /// last axis is `axis`, as after a Linear layer.
    fn export(&self, g: &mut Graph, x: &str) -> Result<String> {
        let mut shape = vec![0i64; self.axis];
        shape.extend(self.sizes.iter().map(|&s| s as i64));
        let shape = g.ints("shape", &shape);
        Ok(g.node("Reshape", &[x, &shape], vec![]))
    }
}
