//! Fully connected GANs, for 2-D point sets (the mode-coverage benchmark)
//! and small images.
//!
//! The generator's defaults are the 2-D networks of the unrolled-GAN and
//! VEEGAN papers: z ~ N(0, I) of 256 dimensions -> 128 -> 128 (ReLU) -> 2.
//! For image data the last layer is followed by Tanh and an Unflatten to
//! [c, h, w]; for points the output stays linear. Each net is one
//! `nn.Sequential` named `net`, so the PyTorch module
//! `nn.Sequential(nn.Linear(256, 128), nn.ReLU(), ...)` stored as `net`
//! loads the state dict unchanged. A conditional net also has an `embed`
//! (nn.Embedding(classes, embed_dim)) whose row is concatenated to the
//! noise (generator) or to the flattened input (discriminator).

use deepgen_nn::Forward;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use deepgen_autograd::{Element, Var};
use deepgen_nn::{
    Embedding, Flatten, LeakyRelu, Linear, Module, Relu, Sequential, Tanh, Unflatten,
};

use crate::net::{
    check_input, check_labels, copy_state, export_with_labels, Activation, Discriminator, Generator,
};
use crate::{Error, Result};
use deepgen_nn::export::Graph;

/// Sizes of an MLP generator and discriminator.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MlpGanConfig {
    /// Shape of one data item: `[2]` for points, `[c, h, w]` for images.
    pub data_shape: Vec<usize>,
    pub latent: usize,
    /// Hidden widths of the generator (ReLU after each).
    pub g_hidden: Vec<usize>,
    /// Hidden widths of the discriminator.
    pub d_hidden: Vec<usize>,
    pub d_activation: Activation,
    /// Some(k): class-conditional nets over k classes.
    pub num_classes: Option<usize>,
    /// Width of the label embedding of conditional nets.
    pub embed_dim: usize,
}

impl Default for MlpGanConfig {
    fn default() -> Self {
        MlpGanConfig {
            data_shape: vec![2],
            latent: 256,
            g_hidden: vec![128, 128],
            d_hidden: vec![128, 128],
            d_activation: Activation::LeakyRelu(0.2),
            num_classes: None,
            embed_dim: 16,
        }
    }
}

impl MlpGanConfig {
    fn check(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Invalid { op: "mlp_gan", msg });
        if self.data_shape.is_empty() || self.data_shape.contains(&0) || self.latent == 0 {
            return bad(format!(
                "data shape {:?} and latent {} must be non-empty and positive",
                self.data_shape, self.latent
            ));
        }
        if self.g_hidden.contains(&0) || self.d_hidden.contains(&0) {
            return bad("hidden widths must be positive".into());
        }
        if self.num_classes == Some(0) || (self.num_classes.is_some() && self.embed_dim == 0) {
            return bad("a conditional net needs classes and an embedding width".into());
        }
        Ok(())
    }

    fn data_len(&self) -> usize {
        self.data_shape.iter().product()
    }

    fn embed_width(&self) -> usize {
        self.num_classes.map_or(0, |_| self.embed_dim)
    }
}

fn embedding<T: Element>(config: &MlpGanConfig, rng: &mut ChaCha8Rng) -> Option<Embedding<T>> {
    config
        .num_classes
        .map(|k| Embedding::new(k, config.embed_dim, rng))
}

/// Appends `[in] -> [c] (act)` for every hidden width `c`; returns the last width.
fn hidden_layers<T: Element>(
    mut net: Sequential<T>,
    mut width: usize,
    hidden: &[usize],
    act: Activation,
    rng: &mut ChaCha8Rng,
) -> Result<(Sequential<T>, usize)> {
    for &h in hidden {
        net = net.add(Linear::new(width, h, true, rng)?);
        net = match act {
            Activation::Relu => net.add(Relu),
            Activation::LeakyRelu(s) => net.add(LeakyRelu::new(s)),
        };
        width = h;
    }
    Ok((net, width))
}

/// Concatenates each row's label embedding to `h` [n, f] -> [n, f + embed].
fn with_labels<T: Element>(
    op: &'static str,
    h: &Var<T>,
    embed: &Option<Embedding<T>>,
    labels: Option<&[usize]>,
) -> Result<Var<T>> {
    let Some(e) = embed else {
        return Ok(h.clone());
    };
    let classes = e.weight.shape()[0];
    let labels = check_labels(op, labels, h.shape()[0], classes)?;
    Ok(Var::concat(&[h.clone(), e.lookup(labels)?], 1)?)
}

/// Noise -> hidden ReLU layers -> data: `[n, latent] -> [n, data_shape..]`.
///
/// One adversarial round by hand on ring8 points (the trainer does the same,
/// with optimizers; see [`crate::trainer::train`]):
///
/// ```
/// use std::sync::Arc;
/// use deepgen_autograd::rand::SeedableRng;
/// use deepgen_autograd::rand_chacha::ChaCha8Rng;
/// use deepgen_autograd::{Tensor, Var};
/// use deepgen_data::{synthetic, DataLoader, LoaderConfig};
/// use deepgen_gan::{discriminator_loss, generator_loss, Discriminator, GanLoss, Generator};
/// use deepgen_gan::{MlpDiscriminator, MlpGanConfig, MlpGenerator};
/// use deepgen_nn::Module;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = MlpGanConfig { latent: 4, g_hidden: vec![16], d_hidden: vec![16], ..Default::default() };
/// let (g, d) = (MlpGenerator::<f32>::new(&config, 0)?, MlpDiscriminator::<f32>::new(&config, 1)?);
/// let loader = DataLoader::new(Arc::new(synthetic::ring8(8, 0)?), LoaderConfig::default())?;
/// let real = Var::constant(loader.batch((0..8).collect())?.images);
/// let z = Var::constant(Tensor::randn(&[8, 4], 0.0, 1.0, &mut ChaCha8Rng::seed_from_u64(2)));
/// let fake = g.generate(&z, None)?;
/// assert_eq!(fake.shape(), [8, 2]);
/// assert_eq!(d.score(&real, None)?.shape(), [8]);
///
/// // The discriminator's loss on detached samples reaches only D ...
/// let kind = GanLoss::NonSaturating;
/// discriminator_loss(kind, &d.score(&real, None)?, &d.score(&fake.detach(), None)?)?.backward()?;
/// assert!(d.parameters().iter().all(|p| p.grad().is_some()));
/// assert!(g.parameters().iter().all(|p| p.grad().is_none()));
/// // ... and the generator's, taken into G's parameters only, reaches G.
/// generator_loss(kind, &d.score(&fake, None)?)?.backward_inputs(&g.parameters())?;
/// assert!(g.parameters().iter().all(|p| p.grad().is_some()));
/// # Ok(())
/// # }
/// ```
#[derive(deepgen_nn::Module)]
pub struct MlpGenerator<T: Element = f32> {
    pub net: Sequential<T>,
    pub embed: Option<Embedding<T>>,
    #[module(skip)]
    pub config: MlpGanConfig,
}

impl<T: Element> MlpGenerator<T> {
    /// PyTorch-initialised from `seed`.
    pub fn new(config: &MlpGanConfig, seed: u64) -> Result<Self> {
        config.check()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (net, width) = hidden_layers(
            Sequential::new(),
            config.latent + config.embed_width(),
            &config.g_hidden,
            Activation::Relu,
            &mut rng,
        )?;
        let mut net = net.add(Linear::new(width, config.data_len(), true, &mut rng)?);
        if config.data_shape.len() > 1 {
            net = net.add(Tanh).add(Unflatten::new(1, &config.data_shape));
        }
        Ok(MlpGenerator {
            net,
            embed: embedding(config, &mut rng),
            config: config.clone(),
        })
    }
}

crate::net::net_forward!(MlpGenerator, generate);

impl<T: Element> Generator<T> for MlpGenerator<T> {
    fn latent_dim(&self) -> usize {
        self.config.latent
    }

    fn output_shape(&self) -> Vec<usize> {
        self.config.data_shape.clone()
    }

    fn num_classes(&self) -> Option<usize> {
        self.config.num_classes
    }

    fn generate(&self, z: &Var<T>, labels: Option<&[usize]>) -> Result<Var<T>> {
        check_input("mlp_generator", z, &[self.config.latent])?;
        let h = with_labels("mlp_generator", z, &self.embed, labels)?;
        Ok(self.net.forward(&h)?)
    }

    fn duplicate(&self) -> Result<Box<dyn Generator<T>>> {
        let copy = MlpGenerator::new(&self.config, 0)?;
        copy_state(&copy, self)?;
        Ok(Box::new(copy))
    }

    fn as_module(&self) -> &dyn Module<T> {
        self
    }

    fn spec(&self) -> crate::NetSpec {
        crate::NetSpec::Mlp(self.config.clone())
    }

    fn export(&self, g: &mut Graph, z: &str, labels: Option<&str>) -> Result<String> {
        let h = export_with_labels(g, z, &self.embed, labels)?;
        Ok(g.scoped("net", |g| self.net.export(g, &h))?)
    }
}

/// Data -> hidden layers -> one logit: `[n, data_shape..] -> [n]`. Image
/// inputs pass through a Flatten first (`net.0`); points do not.
#[derive(deepgen_nn::Module)]
pub struct MlpDiscriminator<T: Element = f32> {
    pub net: Sequential<T>,
    pub embed: Option<Embedding<T>>,
    #[module(skip)]
    pub config: MlpGanConfig,
}

impl<T: Element> MlpDiscriminator<T> {
    /// PyTorch-initialised from `seed`.
    pub fn new(config: &MlpGanConfig, seed: u64) -> Result<Self> {
        config.check()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut net = Sequential::new();
        if config.data_shape.len() > 1 {
            net = net.add(Flatten::default());
        }
        let (net, width) = hidden_layers(
            net,
            config.data_len() + config.embed_width(),
            &config.d_hidden,
            config.d_activation,
            &mut rng,
        )?;
        let net = net.add(Linear::new(width, 1, true, &mut rng)?);
        Ok(MlpDiscriminator {
            net,
            embed: embedding(config, &mut rng),
            config: config.clone(),
        })
    }
}

crate::net::net_forward!(MlpDiscriminator, score);

impl<T: Element> Discriminator<T> for MlpDiscriminator<T> {
    fn input_shape(&self) -> Vec<usize> {
        self.config.data_shape.clone()
    }

    fn num_classes(&self) -> Option<usize> {
        self.config.num_classes
    }

    fn score(&self, x: &Var<T>, labels: Option<&[usize]>) -> Result<Var<T>> {
        let n = check_input("mlp_discriminator", x, &self.config.data_shape)?;
        match &self.embed {
            None => Ok(self.net.forward(x)?.reshape(&[n])?),
            Some(_) => {
                // The label joins after the Flatten, so run the layers by hand.
                let layers = self.net.layers();
                let skip = usize::from(self.config.data_shape.len() > 1);
                let h = x.reshape(&[n, self.config.data_len()])?;
                let mut h = with_labels("mlp_discriminator", &h, &self.embed, labels)?;
                for layer in &layers[skip..] {
                    h = layer.forward(&h)?;
                }
                Ok(h.reshape(&[n])?)
            }
        }
    }

    fn as_module(&self) -> &dyn Module<T> {
        self
    }

    fn spec(&self) -> crate::NetSpec {
        crate::NetSpec::Mlp(self.config.clone())
    }
}

/// A GAN error as the nn error `Module::forward` returns.
pub(crate) fn into_nn(e: Error) -> deepgen_nn::Error {
    match e {
        Error::Nn(e) => e,
        Error::Autograd(e) => deepgen_nn::Error::Autograd(e),
        other => deepgen_nn::Error::Invalid {
            op: "gan",
            msg: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deepgen_autograd::Tensor;

    fn names<T: Element>(m: &dyn Module<T>) -> Vec<(String, Vec<usize>)> {
        deepgen_nn::checkpoint::state_dict(m)
            .into_iter()
            .map(|(n, t)| (n, t.shape()))
            .collect()
    }

    #[test]
    fn default_nets_map_noise_to_points_and_points_to_logits() {
        let cfg = MlpGanConfig::default();
        let g = MlpGenerator::<f32>::new(&cfg, 0).unwrap();
        let d = MlpDiscriminator::<f32>::new(&cfg, 1).unwrap();
        let z = Var::constant(Tensor::<f32>::zeros(&[5, 256]));
        let x = g.generate(&z, None).unwrap();
        assert_eq!(x.shape(), [5, 2]);
        assert_eq!(d.score(&x, None).unwrap().shape(), [5]);
        assert_eq!(
            names(&g),
            [
                ("net.0.weight".to_string(), vec![128, 256]),
                ("net.0.bias".into(), vec![128]),
                ("net.2.weight".into(), vec![128, 128]),
                ("net.2.bias".into(), vec![128]),
                ("net.4.weight".into(), vec![2, 128]),
                ("net.4.bias".into(), vec![2]),
            ]
        );
        assert!(g
            .generate(&Var::constant(Tensor::zeros(&[5, 3])), None)
            .is_err());
    }

    #[test]
    fn conditional_image_nets_take_labels_and_name_the_embedding() {
        let cfg = MlpGanConfig {
            data_shape: vec![1, 4, 4],
            latent: 8,
            g_hidden: vec![16],
            d_hidden: vec![16],
            num_classes: Some(3),
            embed_dim: 5,
            ..Default::default()
        };
        let g = MlpGenerator::<f32>::new(&cfg, 0).unwrap();
        let d = MlpDiscriminator::<f32>::new(&cfg, 1).unwrap();
        let z = Var::constant(Tensor::<f32>::ones(&[2, 8]));
        let x = g.generate(&z, Some(&[0, 2])).unwrap();
        assert_eq!(x.shape(), [2, 1, 4, 4]);
        assert!(
            x.value().to_vec().iter().all(|v| v.abs() <= 1.0),
            "tanh output"
        );
        assert_eq!(d.score(&x, Some(&[1, 1])).unwrap().shape(), [2]);
        assert!(g.generate(&z, None).is_err(), "labels are required");
        assert!(g.generate(&z, Some(&[0, 3])).is_err(), "label out of range");
        let dn = names(&d);
        assert_eq!(dn[0], ("net.1.weight".to_string(), vec![16, 16 + 5]));
        assert_eq!(
            dn.last().unwrap(),
            &("embed.weight".to_string(), vec![3, 5])
        );
        assert_eq!(names(&g)[0], ("net.0.weight".to_string(), vec![16, 8 + 5]));
    }
}
