use crate::export::{Attr, Graph};
use rand::Rng;

use crate::{init, Element, Forward, Module, Result, Var};

/// y = x W^T + b: `[.., in] -> [.., out]`. `weight` is `[out, in]` as in PyTorch.
///
/// ```
/// use deepgen_autograd::rand::SeedableRng;
/// use deepgen_autograd::rand_chacha::ChaCha8Rng;
/// use deepgen_nn::{Forward, Linear, Module, Tensor, Var};
///
/// # fn main() -> deepgen_nn::Result<()> {
/// let fc = Linear::<f32>::new(3, 2, true, &mut ChaCha8Rng::seed_from_u64(0))?;
/// assert_eq!(fc.weight.shape(), [2, 3]);
/// assert_eq!(fc.num_parameters(), 3 * 2 + 2);
/// let y = fc.forward(&Var::constant(Tensor::zeros(&[4, 3])))?;
/// assert_eq!(y.shape(), [4, 2]);
/// // A zero input gives the bias in every row.
/// let bias = fc.bias.as_ref().unwrap().value().to_vec();
/// assert_eq!(y.value().to_vec()[2..4], bias[..]);
/// # Ok(())
/// # }
/// ```
#[derive(Module)]
pub struct Linear<T: Element = f32> {
    pub weight: Var<T>,
    pub bias: Option<Var<T>>,
}

impl<T: Element> Linear<T> {
    /// PyTorch's default initialisation (U(-1/sqrt(in), 1/sqrt(in)) for both).
    pub fn new<R: Rng + ?Sized>(
        inputs: usize,
        outputs: usize,
        bias: bool,
        rng: &mut R,
    ) -> Result<Self> {
        let shape = [outputs, inputs];
        init::reserve::<T>(
            "a Linear weight",
            &[outputs, inputs.saturating_add(bias as usize)],
        )?;
        let weight = Var::parameter(init::default_weight(&shape, rng)?);
        let bias = if bias {
            Some(Var::parameter(init::default_bias(&shape, outputs, rng)?))
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }
}

impl<T: Element> Forward<T> for Linear<T> {
    fn forward(&self, x: &Var<T>) -> Result<Var<T>> {
        // W^T is a strided view: no copy before the gemm.
        let y = x.matmul(&self.weight.t()?)?;
        match &self.bias {
            Some(b) => Ok(y.add(b)?),
            None => Ok(y),
        }
    }

    /// Gemm (x W^T + b) on a [n, in] input.
    fn export(&self, g: &mut Graph, x: &str) -> Result<String> {
        let w = g.weight("weight", &self.weight);
        let mut inputs = vec![x, w.as_str()];
        let b = self.bias.as_ref().map(|b| g.weight("bias", b));
        inputs.extend(b.as_deref());
        Ok(g.node("Gemm", &inputs, vec![("transB", Attr::Int(1))]))
    }
}
