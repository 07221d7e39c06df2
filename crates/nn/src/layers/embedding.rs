use rand::Rng;

use crate::{init, Element, Error, Forward, Module, Result, Var};

/// A lookup table: index i -> row i of `weight` [num, dim] (N(0, 1) init, as PyTorch).
#[derive(Module)]
pub struct Embedding<T: Element = f32> {
    pub weight: Var<T>,
}

impl<T: Element> Embedding<T> {
    pub fn new<R: Rng + ?Sized>(num: usize, dim: usize, rng: &mut R) -> Self {
        Embedding {
            weight: Var::parameter(init::normal(&[num, dim], 0.0, 1.0, rng)),
        }
    }

    /// Rows for `indices`: [len, dim].
    pub fn lookup(&self, indices: &[usize]) -> Result<Var<T>> {
        Ok(self.weight.index_select(0, indices)?)
    }
}

impl<T: Element> Forward<T> for Embedding<T> {
    /// `x` holds indices (whole numbers); [..] -> [.., dim].
    fn forward(&self, x: &Var<T>) -> Result<Var<T>> {
        let num = self.weight.shape()[0];
        let indices = x
            .value()
            .to_vec()
            .into_iter()
            .map(|v| {
                let i = v.to_usize().filter(|&i| T::of(i as f64) == v && i < num);
                i.ok_or_else(|| Error::Invalid {
                    op: "embedding",
                    msg: format!("index {v} is not in 0..{num}"),
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        let mut shape = x.shape();
        shape.push(self.weight.shape()[1]);
        Ok(self.lookup(&indices)?.reshape(&shape)?)
    }
}
