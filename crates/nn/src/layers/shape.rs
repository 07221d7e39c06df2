//! Layers that only reshape.

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
}
