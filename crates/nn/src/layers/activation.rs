//! Activation layers (no state).

use crate::export::{Attr, Graph};
use crate::{Element, Forward, Module, Result, Var};

macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, |$x:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, Module)]
        pub struct $name;

        impl<T: Element> Forward<T> for $name {
            fn forward(&self, $x: &Var<T>) -> Result<Var<T>> {
                Ok($body)
            }

            fn export(&self, g: &mut Graph, x: &str) -> Result<String> {
                // The ONNX operator has the layer's name.
                Ok(g.node(stringify!($name), &[x], vec![]))
            }
        }
    };
}

/// max(x, 0)
///
/// The activation layers ([`Relu`], [`LeakyRelu`], [`Tanh`], [`Sigmoid`])
/// hold no state; they are layers so that a [`crate::Sequential`] can hold
/// them.
///
/// ```
/// use deepgen_nn::{Forward, LeakyRelu, Relu, Sigmoid, Tanh, Tensor, Var};
///
/// # fn main() -> deepgen_nn::Result<()> {
/// let x = Var::<f64>::constant(Tensor::from_vec(vec![-2.0, 0.0, 3.0], &[3])?);
/// assert_eq!(Relu.forward(&x)?.value().to_vec(), [0.0, 0.0, 3.0]);
/// assert_eq!(LeakyRelu::new(0.5).forward(&x)?.value().to_vec(), [-1.0, 0.0, 3.0]);
/// assert_eq!(Sigmoid.forward(&x)?.value().to_vec()[1], 0.5);
/// assert_eq!(Tanh.forward(&x)?.value().to_vec()[2], 3f64.tanh());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, Module)]
pub struct Relu;

impl<T: Element> Forward<T> for Relu {
    fn forward(&self, x: &Var<T>) -> Result<Var<T>> {
        Ok(x.relu())
    }

    fn rectifier_slope(&self) -> Option<f64> {
        Some(0.0)
    }

    fn export(&self, g: &mut Graph, x: &str) -> Result<String> {
        Ok(g.node("Relu", &[x], vec![]))
    }
}

activation!(
    /// 1 / (1 + e^-x)
    Sigmoid, |x| x.sigmoid()
);
activation!(
    /// tanh x
    Tanh, |x| x.tanh()
);

/// x for x > 0, slope * x otherwise (PyTorch's default slope 0.01).
#[derive(Debug, Clone, Copy, Module)]
pub struct LeakyRelu {
    pub slope: f64,
}

impl Default for LeakyRelu {
    fn default() -> Self {
        LeakyRelu { slope: 0.01 }
    }
}

impl LeakyRelu {
    pub fn new(slope: f64) -> Self {
        LeakyRelu { slope }
    }
}

impl<T: Element> Forward<T> for LeakyRelu {
    fn forward(&self, x: &Var<T>) -> Result<Var<T>> {
        Ok(x.leaky_relu(T::of(self.slope)))
    }

    fn rectifier_slope(&self) -> Option<f64> {
        Some(self.slope)
    }

    fn export(&self, g: &mut Graph, x: &str) -> Result<String> {
        let alpha = Attr::Float(self.slope as f32);
        Ok(g.node("LeakyRelu", &[x], vec![("alpha", alpha)]))
    }
}
