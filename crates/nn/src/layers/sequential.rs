use crate::module::{visit_child, Slot};
use crate::{Element, Module, Result, Var};

/// Layers applied in order; their state is named `0.weight`, `1.bias`, ...
/// as in PyTorch's nn.Sequential.
pub struct Sequential<T: Element = f32> {
    layers: Vec<Box<dyn Module<T>>>,
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
    pub fn add(mut self, layer: impl Module<T> + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends a boxed layer.
    pub fn push(&mut self, layer: Box<dyn Module<T>>) {
        self.layers.push(layer);
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    pub fn layers(&self) -> &[Box<dyn Module<T>>] {
        &self.layers
    }
}

impl<T: Element> Module<T> for Sequential<T> {
    /// Runs the layers in order; a layer followed by a rectifier (ReLU,
    /// LeakyReLU) runs the pair through [`Module::forward_rectified`], which
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

    fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        for (i, layer) in self.layers.iter().enumerate() {
            visit_child(&i.to_string(), layer.as_ref(), f);
        }
    }

    fn set_training(&self, training: bool) {
        self.layers.iter().for_each(|l| l.set_training(training));
    }
}
