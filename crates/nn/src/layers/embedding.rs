use rand::Rng;

use crate::{init, Element, Error, Forward, Module, Result, Var};

/// A lookup table: index i -> row i of `weight` `[num, dim]` (N(0, 1) init, as PyTorch).
///
/// ```
/// use deepgen_autograd::rand::SeedableRng;
/// use deepgen_autograd::rand_chacha::ChaCha8Rng;
/// use deepgen_nn::{Embedding, Forward, Tensor, Var};
///
/// # fn main() -> deepgen_nn::Result<()> {
/// let embed = Embedding::<f32>::new(10, 4, &mut ChaCha8Rng::seed_from_u64(0));
/// let rows = embed.lookup(&[3, 3, 7])?;
/// assert_eq!(rows.shape(), [3, 4]);
/// let (w, r) = (embed.weight.value().to_vec(), rows.value().to_vec());
/// assert_eq!(r[..4], w[12..16]); // row 3
/// // As a layer, the input holds the indices as numbers: [2] -> [2, 4].
/// let x = Var::constant(Tensor::from_vec(vec![7.0, 0.0], &[2])?);
/// assert_eq!(embed.forward(&x)?.value().to_vec()[..4], w[28..32]);
/// assert!(embed.lookup(&[10]).is_err());
/// # Ok(())
/// # }
/// ```
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

impl<T: Element> Embedding<T> {
    /// ONNX: the rows of the weight at the int64 `indices` (Gather), under
    /// the graph's current scope.
    pub fn export_lookup(&self, g: &mut crate::export::Graph, indices: &str) -> String {
        let w = g.weight("weight", &self.weight);
        g.node(
            "Gather",
            &[&w, indices],
            vec![("axis", crate::export::Attr::Int(0))],
        )
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
