use rand::Rng;

use deepgen_autograd::{Element, Var};
use deepgen_nn::export::{Attr, Graph};
use deepgen_nn::{Forward, Linear, Module};

use crate::model::VaeNet;
use crate::Result;

/// Encoder x -> ReLU(fc1) -> (fc21 = mu, fc22 = log variance);
/// decoder z -> ReLU(fc3) -> fc4 = the pixels' Bernoulli logits or Gaussian
/// means (or a logistic's means and log-scales: `outputs_per_pixel` 2).
/// pytorch/examples' VAE, names and shapes included.
#[derive(Module)]
pub struct MlpVae<T: Element = f32> {
    pub fc1: Linear<T>,
    pub fc21: Linear<T>,
    pub fc22: Linear<T>,
    pub fc3: Linear<T>,
    pub fc4: Linear<T>,
    #[module(skip)]
    image_shape: Vec<usize>,
    /// Decoder outputs per pixel (channels are multiplied by it).
    #[module(skip)]
    outputs: usize,
}

impl<T: Element> MlpVae<T> {
    /// PyTorch-initialised from `rng`: images of `image_shape`, `hidden`
    /// units, `latent` dimensions.
    pub fn new<R: Rng + ?Sized>(
        image_shape: &[usize],
        hidden: usize,
        latent: usize,
        outputs_per_pixel: usize,
        rng: &mut R,
    ) -> Result<Self> {
        let pixels: usize = image_shape.iter().product();
        let outputs = outputs_per_pixel;
        let (h, z) = (hidden, latent);
        let rng = &mut *rng;
        Ok(MlpVae {
            fc1: Linear::new(pixels, h, true, rng)?,
            fc21: Linear::new(h, z, true, rng)?,
            fc22: Linear::new(h, z, true, rng)?,
            fc3: Linear::new(z, h, true, rng)?,
            fc4: Linear::new(h, pixels * outputs, true, rng)?,
            image_shape: image_shape.to_vec(),
            outputs,
        })
    }
}

impl<T: Element> VaeNet<T> for MlpVae<T> {
    fn encode(&self, x: &Var<T>) -> Result<(Var<T>, Var<T>)> {
        let n = x.shape()[0];
        let pixels: usize = self.image_shape.iter().product();
        let h = self.fc1.forward(&x.reshape(&[n, pixels])?)?.relu();
        Ok((self.fc21.forward(&h)?, self.fc22.forward(&h)?))
    }

    fn decode(&self, z: &Var<T>) -> Result<Var<T>> {
        let n = z.shape()[0];
        let out = self.fc4.forward(&self.fc3.forward(z)?.relu())?;
        let mut shape = vec![n];
        shape.extend(&self.image_shape);
        shape[1] *= self.outputs;
        Ok(out.reshape(&shape)?)
    }

    fn export_encode(&self, g: &mut Graph, x: &str) -> Result<(String, String)> {
        let flat = g.node("Flatten", &[x], vec![("axis", Attr::Int(1))]);
        let h = g.scoped("fc1", |g| self.fc1.export(g, &flat))?;
        let h = g.node("Relu", &[&h], vec![]);
        let mu = g.scoped("fc21", |g| self.fc21.export(g, &h))?;
        Ok((mu, g.scoped("fc22", |g| self.fc22.export(g, &h))?))
    }

    fn export_decode(&self, g: &mut Graph, z: &str) -> Result<String> {
        let h = g.scoped("fc3", |g| self.fc3.export(g, z))?;
        let h = g.node("Relu", &[&h], vec![]);
        let out = g.scoped("fc4", |g| self.fc4.export(g, &h))?;
        let mut shape: Vec<i64> = self.image_shape.iter().map(|&d| d as i64).collect();
        shape[0] *= self.outputs as i64;
        shape.insert(0, 0);
        let shape = g.ints("image_shape", &shape);
        Ok(g.node("Reshape", &[&out, &shape], vec![]))
    }
}

impl<T: Element> Forward<T> for MlpVae<T> {
    /// The decoder's output through the posterior mean.
    fn forward(&self, x: &Var<T>) -> deepgen_nn::Result<Var<T>> {
        crate::model::forward_through_mean(self, x)
    }
}
