use crate::export::Graph;
use crate::{Element, Forward, Module, Result, Var};

/// Layers applied in order; their state is named `0.weight`, `1.bias`, ...
/// as in PyTorch's nn.Sequential.
///
/// ```
/// use deepgen_autograd::rand::SeedableRng;
/// use deepgen_autograd::rand_chacha::ChaCha8Rng;
/// use deepgen_nn::{Forward, Linear, Module, Relu, Sequential, Tensor, Var};
///
/// # fn main() -> deepgen_nn::Result<()> {
/// let mut rng = ChaCha8Rng::seed_from_u64(0);
/// let net = Sequential::<f32>::new()
///     .add(Linear::new(2, 16, true, &mut rng)?)
///     .add(Relu)
///     .add(Linear::new(16, 1, true, &mut rng)?);
/// assert_eq!(net.len(), 3);
/// let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
/// let y = net.forward(&Var::constant(Tensor::ones(&[5, 2])))?;
/// assert_eq!(y.shape(), [5, 1]);
/// # Ok(())
/// # }
/// ```
#[derive(Module)]
pub struct Sequential<T: Element = f32> {
    #[module(flatten)]
    layers: Vec<Box<dyn Forward<T>>>,
}

impl<T: Element> Default for Sequential<T> {
    fn default() -> Self {
        Sequential { layers: Vec::new() }
    }
}

impl<T: Element> Sequential<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer (builder style, as `nn.Sequential(a, b, ...)`).
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Forward<T> + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends a boxed layer.
    pub fn push(&mut self, layer: Box<dyn Forward<T>>) {
        self.layers.push(layer);
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    pub fn layers(&self) -> &[Box<dyn Forward<T>>] {
        &self.layers
    }
}

impl<T: Element> Forward<T> for Sequential<T> {
    /// Runs the layers in order; a layer followed by a rectifier (ReLU,
    /// LeakyReLU) runs the pair through [`Forward::forward_rectified`], which
    /// BatchNorm fuses.
    fn forward(&self, x: &Var<T>) -> Result<Var<T>> {
        let mut h = x.clone();
        let mut layers = self.layers.iter().peekable();
        while let Some(layer) = layers.next() {
            h = match layers.peek().and_then(|next| next.rectifier_slope()) {
                Some(slope) => {
                    layers.next();
                    layer.forward_rectified(&h, slope)?
                }
                None => layer.forward(&h)?,
            };
        }
        Ok(h)
    }

    /// The layers in order, each under its position (`0.weight`).
    fn export(&self, g: &mut Graph, x: &str) -> Result<String> {
        let mut h = x.to_string();
        for (i, layer) in self.layers.iter().enumerate() {
            h = g.scoped(&i.to_string(), |g| layer.export(g, &h))?;
        }
        Ok(h)
    }
}
