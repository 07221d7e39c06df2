use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use deepgen_autograd::{Element, Var};
use deepgen_nn::module::visit_child;
use deepgen_nn::{Linear, Module, Slot};

use crate::Result;

/// Sizes of an MLP VAE (pytorch/examples' defaults: 784-400-20).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlpVaeConfig {
    /// Shape of one image, e.g. [1, 28, 28].
    pub image_shape: Vec<usize>,
    pub hidden: usize,
    pub latent: usize,
}

impl Default for MlpVaeConfig {
    fn default() -> Self {
        MlpVaeConfig {
            image_shape: vec![1, 28, 28],
            hidden: 400,
            latent: 20,
        }
    }
}

/// Encoder x -> ReLU(fc1) -> (fc21 = mu, fc22 = log variance);
/// decoder z -> ReLU(fc3) -> fc4 = Bernoulli logits of the pixels.
pub struct MlpVae<T: Element = f32> {
    pub fc1: Linear<T>,
    pub fc21: Linear<T>,
    pub fc22: Linear<T>,
    pub fc3: Linear<T>,
    pub fc4: Linear<T>,
    pub config: MlpVaeConfig,
}

impl<T: Element> MlpVae<T> {
    /// PyTorch-initialised from `seed`.
    pub fn new(config: MlpVaeConfig, seed: u64) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let pixels: usize = config.image_shape.iter().product();
        let (h, z) = (config.hidden, config.latent);
        Ok(MlpVae {
            fc1: Linear::new(pixels, h, true, &mut rng)?,
            fc21: Linear::new(h, z, true, &mut rng)?,
            fc22: Linear::new(h, z, true, &mut rng)?,
            fc3: Linear::new(z, h, true, &mut rng)?,
            fc4: Linear::new(h, pixels, true, &mut rng)?,
            config,
        })
    }

    pub fn latent_dim(&self) -> usize {
        self.config.latent
    }

    /// [n, image..] -> (mu, logvar), each [n, latent].
    pub fn encode(&self, x: &Var<T>) -> Result<(Var<T>, Var<T>)> {
        let n = x.shape()[0];
        let pixels: usize = self.config.image_shape.iter().product();
        let h = self.fc1.forward(&x.reshape(&[n, pixels])?)?.relu();
        Ok((self.fc21.forward(&h)?, self.fc22.forward(&h)?))
    }

    /// [n, latent] -> pixel logits [n, image..].
    pub fn decode(&self, z: &Var<T>) -> Result<Var<T>> {
        let n = z.shape()[0];
        let logits = self.fc4.forward(&self.fc3.forward(z)?.relu())?;
        let mut shape = vec![n];
        shape.extend(&self.config.image_shape);
        Ok(logits.reshape(&shape)?)
    }
}

impl<T: Element> Module<T> for MlpVae<T> {
    /// The reconstruction logits through the posterior mean.
    fn forward(&self, x: &Var<T>) -> deepgen_nn::Result<Var<T>> {
        let (mu, _) = self.encode(x).map_err(|e| deepgen_nn::Error::Invalid {
            op: "vae",
            msg: e.to_string(),
        })?;
        self.decode(&mu).map_err(|e| deepgen_nn::Error::Invalid {
            op: "vae",
            msg: e.to_string(),
        })
    }

    fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        for (name, layer) in [
            ("fc1", &self.fc1),
            ("fc21", &self.fc21),
            ("fc22", &self.fc22),
            ("fc3", &self.fc3),
            ("fc4", &self.fc4),
        ] {
            visit_child(name, layer, f);
        }
    }
}

impl MlpVae {
    /// A model shaped and filled from a state dict file (sizes read from
    /// `fc1.weight` [hidden, pixels] and `fc21.weight` [latent, hidden];
    /// 784 pixels are [1, 28, 28], 3072 are [3, 32, 32]).
    pub fn from_checkpoint(path: &std::path::Path) -> Result<Self> {
        let (tensors, _) = deepgen_nn::checkpoint::load_tensors(path)?;
        let shape = |name: &str| {
            tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.shape())
        };
        let bad = |msg: String| crate::Error::Invalid {
            op: "vae checkpoint",
            msg: format!("{}: {msg}", path.display()),
        };
        let fc1 = shape("fc1.weight").ok_or_else(|| bad("no fc1.weight".into()))?;
        let fc21 = shape("fc21.weight").ok_or_else(|| bad("no fc21.weight".into()))?;
        let (hidden, pixels, latent) = (fc1[0], fc1[1], fc21[0]);
        let image_shape = match pixels {
            784 => vec![1, 28, 28],
            3072 => vec![3, 32, 32],
            p => return Err(bad(format!("{p} pixels is not a known image shape"))),
        };
        let model = MlpVae::new(
            MlpVaeConfig {
                image_shape,
                hidden,
                latent,
            },
            0,
        )?;
        deepgen_nn::checkpoint::load_entries(&model, path, tensors, true)?;
        Ok(model)
    }
}
