//! DCGAN (Radford et al., arXiv 1511.06434) as pytorch/examples builds it:
//! a generator of transposed convolutions with BatchNorm and ReLU ending in
//! Tanh, a discriminator of strided convolutions with LeakyReLU(0.2) and
//! BatchNorm on the inner layers ending in one logit, no convolution bias,
//! weights N(0, 0.02) and BatchNorm weights N(1, 0.02).
//!
//! Image sizes 28 (MNIST), 32 (CIFAR-10) and 64 (pytorch/examples' DCGAN);
//! with width w (ngf = ndf = w, default 64) the generator's channels are
//! 28: 4w 2w; 32: 4w 2w w; 64: 8w 4w 2w w, and the discriminator mirrors
//! them (28: w 2w). For 28x28, latent 100 and w = 64:
//!
//! ```text
//! G: ConvT(100,256,k7,s1,p0) BN ReLU  ConvT(256,128,k4,s2,p1) BN ReLU  ConvT(128,c,k4,s2,p1) Tanh
//! D: Conv(c,64,k4,s2,p1) LReLU  Conv(64,128,k4,s2,p1) BN LReLU  Conv(128,1,k7,s1,p0)
//! ```
//!
//! Each net is an `nn.Sequential` named `net` (`net.0.weight`,
//! `net.1.running_mean`, ...). Conditional nets add `embed`: the generator
//! concatenates an `embed_dim` embedding of the label to the noise; the
//! discriminator embeds the label into an h*w plane and adds it as one extra
//! input channel (cheaper than one-hot planes, and learnt).

use deepgen_nn::Forward;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use deepgen_autograd::{Element, Var};
use deepgen_nn::{
    init, BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig,
    Embedding, LeakyRelu, Module, Relu, Sequential, Tanh,
};

use crate::net::{
    check_input, check_labels, copy_state, export_with_labels, Discriminator, Generator,
};
use crate::{Error, Result};
use deepgen_nn::export::Graph;

/// Sizes of a DCGAN pair (pytorch/examples' defaults, for MNIST-sized images).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DcganConfig {
    /// Side of the square images: 28, 32 or 64.
    pub image_size: usize,
    pub channels: usize,
    pub latent: usize,
    /// Base width (ngf = ndf).
    pub width: usize,
    /// BatchNorm on the discriminator's inner layers (turn off for WGAN-GP,
    /// whose penalty is per sample).
    pub d_batch_norm: bool,
    /// Some(k): class-conditional nets over k classes.
    pub num_classes: Option<usize>,
    /// Width of the generator's label embedding.
    pub embed_dim: usize,
}

impl Default for DcganConfig {
    fn default() -> Self {
        DcganConfig {
            image_size: 28,
            channels: 1,
            latent: 100,
            width: 64,
            d_batch_norm: true,
            num_classes: None,
            embed_dim: 50,
        }
    }
}

impl DcganConfig {
    /// (kernel of the 1x1 <-> first feature map layer, channel multiples of
    /// the generator's feature maps in order, the discriminator's in order).
    /// 28x28 follows the MNIST DCGAN of the issue: G 4w 2w, D w 2w.
    fn plan(&self) -> Result<(usize, Vec<usize>, Vec<usize>)> {
        let bad = |msg: String| Err(Error::Invalid { op: "dcgan", msg });
        if self.channels == 0 || self.latent == 0 || self.width == 0 {
            return bad(format!(
                "channels, latent and width must be positive: {self:?}"
            ));
        }
        if self.num_classes == Some(0) || (self.num_classes.is_some() && self.embed_dim == 0) {
            return bad("a conditional net needs classes and an embedding width".into());
        }
        match self.image_size {
            28 => Ok((7, vec![4, 2], vec![1, 2])),
            32 => Ok((4, vec![4, 2, 1], vec![1, 2, 4])),
            64 => Ok((4, vec![8, 4, 2, 1], vec![1, 2, 4, 8])),
            s => bad(format!("image size {s} is not one of 28, 32, 64")),
        }
    }

    fn image_shape(&self) -> Vec<usize> {
        vec![self.channels, self.image_size, self.image_size]
    }
}

fn conv<T: Element>(
    i: usize,
    o: usize,
    k: usize,
    stride: usize,
    padding: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Conv2d<T>> {
    let cfg = Conv2dConfig {
        stride,
        padding,
        bias: false,
        ..Default::default()
    };
    let c = Conv2d::new(i, o, k, cfg, rng)?;
    c.weight
        .set_value(init::normal(&c.weight.shape(), 0.0, 0.02, rng))?;
    Ok(c)
}

fn conv_t<T: Element>(
    i: usize,
    o: usize,
    k: usize,
    stride: usize,
    padding: usize,
    rng: &mut ChaCha8Rng,
) -> Result<ConvTranspose2d<T>> {
    let cfg = ConvTranspose2dConfig {
        stride,
        padding,
        bias: false,
        ..Default::default()
    };
    let c = ConvTranspose2d::new(i, o, k, cfg, rng)?;
    c.weight
        .set_value(init::normal(&c.weight.shape(), 0.0, 0.02, rng))?;
    Ok(c)
}

fn batch_norm<T: Element>(c: usize, rng: &mut ChaCha8Rng) -> Result<BatchNorm<T>> {
    let bn = BatchNorm::new2d(c, BatchNormConfig::default());
    if let Some(w) = &bn.weight {
        w.set_value(init::normal(&[c], 1.0, 0.02, rng))?;
    }
    Ok(bn)
}

/// Transposed convolutions: [n, latent] -> [n, channels, size, size] in [-1, 1].
#[derive(deepgen_nn::Module)]
pub struct DcganGenerator<T: Element = f32> {
    pub net: Sequential<T>,
    pub embed: Option<Embedding<T>>,
    #[module(skip)]
    pub config: DcganConfig,
}

impl<T: Element> DcganGenerator<T> {
    /// DCGAN-initialised from `seed`.
    pub fn new(config: &DcganConfig, seed: u64) -> Result<Self> {
        let (k0, mults, _) = config.plan()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w = config.width;
        let input = config.latent + config.num_classes.map_or(0, |_| config.embed_dim);
        let mut net = Sequential::new()
            .add(conv_t(input, mults[0] * w, k0, 1, 0, &mut rng)?)
            .add(batch_norm(mults[0] * w, &mut rng)?)
            .add(Relu);
        for pair in mults.windows(2) {
            net = net
                .add(conv_t(pair[0] * w, pair[1] * w, 4, 2, 1, &mut rng)?)
                .add(batch_norm(pair[1] * w, &mut rng)?)
                .add(Relu);
        }
        let last = mults[mults.len() - 1] * w;
        net = net
            .add(conv_t(last, config.channels, 4, 2, 1, &mut rng)?)
            .add(Tanh);
        let embed = config
            .num_classes
            .map(|k| Embedding::new(k, config.embed_dim, &mut rng));
        Ok(DcganGenerator {
            net,
            embed,
            config: config.clone(),
        })
    }
}

crate::net::net_forward!(DcganGenerator, generate);

impl<T: Element> Generator<T> for DcganGenerator<T> {
    fn latent_dim(&self) -> usize {
        self.config.latent
    }

    fn output_shape(&self) -> Vec<usize> {
        self.config.image_shape()
    }

    fn num_classes(&self) -> Option<usize> {
        self.config.num_classes
    }

    fn generate(&self, z: &Var<T>, labels: Option<&[usize]>) -> Result<Var<T>> {
        let n = check_input("dcgan_generator", z, &[self.config.latent])?;
        let h = match &self.embed {
            None => z.clone(),
            Some(e) => {
                let labels = check_labels("dcgan_generator", labels, n, e.weight.shape()[0])?;
                Var::concat(&[z.clone(), e.lookup(labels)?], 1)?
            }
        };
        let c = h.shape()[1];
        Ok(self.net.forward(&h.reshape(&[n, c, 1, 1])?)?)
    }

    fn duplicate(&self) -> Result<Box<dyn Generator<T>>> {
        let copy = DcganGenerator::new(&self.config, 0)?;
        copy_state(&copy, self)?;
        Ok(Box::new(copy))
    }

    fn as_module(&self) -> &dyn Module<T> {
        self
    }

    fn spec(&self) -> crate::NetSpec {
        crate::NetSpec::Dcgan(self.config.clone())
    }

    fn export(&self, g: &mut Graph, z: &str, labels: Option<&str>) -> Result<String> {
        let h = export_with_labels(g, z, &self.embed, labels)?;
        // [n, c] -> [n, c, 1, 1]: the first transposed convolution's input.
        let shape = g.ints("z_shape", &[0, -1, 1, 1]);
        let h = g.node("Reshape", &[&h, &shape], vec![]);
        Ok(g.scoped("net", |g| self.net.export(g, &h))?)
    }
}

/// Strided convolutions: `[n, channels, size, size] -> [n]` logits.
#[derive(deepgen_nn::Module)]
pub struct DcganDiscriminator<T: Element = f32> {
    pub net: Sequential<T>,
    pub embed: Option<Embedding<T>>,
    #[module(skip)]
    pub config: DcganConfig,
}

impl<T: Element> DcganDiscriminator<T> {
    /// DCGAN-initialised from `seed`.
    pub fn new(config: &DcganConfig, seed: u64) -> Result<Self> {
        let (k0, _, mults) = config.plan()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w = config.width;
        let input = config.channels + usize::from(config.num_classes.is_some());
        let mut net = Sequential::new()
            .add(conv(input, mults[0] * w, 4, 2, 1, &mut rng)?)
            .add(LeakyRelu::new(0.2));
        for pair in mults.windows(2) {
            net = net.add(conv(pair[0] * w, pair[1] * w, 4, 2, 1, &mut rng)?);
            if config.d_batch_norm {
                net = net.add(batch_norm(pair[1] * w, &mut rng)?);
            }
            net = net.add(LeakyRelu::new(0.2));
        }
        let last = mults[mults.len() - 1] * w;
        net = net.add(conv(last, 1, k0, 1, 0, &mut rng)?);
        let plane = config.image_size * config.image_size;
        let embed = config
            .num_classes
            .map(|k| Embedding::new(k, plane, &mut rng));
        Ok(DcganDiscriminator {
            net,
            embed,
            config: config.clone(),
        })
    }
}

crate::net::net_forward!(DcganDiscriminator, score);

impl<T: Element> Discriminator<T> for DcganDiscriminator<T> {
    fn input_shape(&self) -> Vec<usize> {
        self.config.image_shape()
    }

    fn num_classes(&self) -> Option<usize> {
        self.config.num_classes
    }

    fn score(&self, x: &Var<T>, labels: Option<&[usize]>) -> Result<Var<T>> {
        let n = check_input("dcgan_discriminator", x, &self.config.image_shape())?;
        let h = match &self.embed {
            None => x.clone(),
            Some(e) => {
                let labels = check_labels("dcgan_discriminator", labels, n, e.weight.shape()[0])?;
                let s = self.config.image_size;
                let plane = e.lookup(labels)?.reshape(&[n, 1, s, s])?;
                Var::concat(&[x.clone(), plane], 1)?
            }
        };
        Ok(self.net.forward(&h)?.reshape(&[n])?)
    }

    fn as_module(&self) -> &dyn Module<T> {
        self
    }

    fn spec(&self) -> crate::NetSpec {
        crate::NetSpec::Dcgan(self.config.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deepgen_autograd::Tensor;

    fn state<T: Element>(m: &dyn Module<T>) -> Vec<(String, Vec<usize>)> {
        deepgen_nn::checkpoint::state_dict(m)
            .into_iter()
            .map(|(n, t)| (n, t.shape()))
            .collect()
    }

    fn bn(i: usize, c: usize) -> Vec<(String, Vec<usize>)> {
        ["weight", "bias", "running_mean", "running_var"]
            .iter()
            .map(|s| (format!("net.{i}.{s}"), vec![c]))
            .chain([(format!("net.{i}.num_batches_tracked"), vec![])])
            .collect()
    }

    #[test]
    fn mnist_dcgan_state_dicts_are_named_and_shaped_as_pytorch_sequentials() {
        let cfg = DcganConfig::default();
        let g = DcganGenerator::<f32>::new(&cfg, 0).unwrap();
        let d = DcganDiscriminator::<f32>::new(&cfg, 1).unwrap();
        let w = |i: usize, s: &[usize]| (format!("net.{i}.weight"), s.to_vec());
        let mut want = vec![w(0, &[100, 256, 7, 7])];
        want.extend(bn(1, 256));
        want.push(w(3, &[256, 128, 4, 4]));
        want.extend(bn(4, 128));
        want.push(w(6, &[128, 1, 4, 4]));
        assert_eq!(state(&g), want);
        let mut want = vec![w(0, &[64, 1, 4, 4]), w(2, &[128, 64, 4, 4])];
        want.extend(bn(3, 128));
        want.push(w(5, &[1, 128, 7, 7]));
        assert_eq!(state(&d), want);
    }

    #[test]
    fn every_image_size_round_trips_noise_to_logits() {
        for (size, channels) in [(28, 1), (32, 3), (64, 3)] {
            let cfg = DcganConfig {
                image_size: size,
                channels,
                latent: 8,
                width: 4,
                ..Default::default()
            };
            let g = DcganGenerator::<f32>::new(&cfg, 0).unwrap();
            let d = DcganDiscriminator::<f32>::new(&cfg, 1).unwrap();
            let z = Var::constant(Tensor::randn(
                &[3, 8],
                0.0,
                1.0,
                &mut ChaCha8Rng::seed_from_u64(2),
            ));
            let x = g.generate(&z, None).unwrap();
            assert_eq!(x.shape(), [3, channels, size, size]);
            assert_eq!(d.score(&x, None).unwrap().shape(), [3]);
        }
        let bad = DcganConfig {
            image_size: 48,
            ..Default::default()
        };
        assert!(DcganGenerator::<f32>::new(&bad, 0).is_err());
    }

    #[test]
    fn initialisation_follows_dcgan() {
        let cfg = DcganConfig {
            width: 32,
            ..Default::default()
        };
        let g = DcganGenerator::<f64>::new(&cfg, 3).unwrap();
        let w = g.net.layers()[0].named_parameters()[0].1.value().to_vec();
        let n = w.len() as f64;
        let mean = w.iter().sum::<f64>() / n;
        let std = (w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(
            mean.abs() < 1e-3 && (std - 0.02).abs() < 1e-3,
            "{mean} {std}"
        );
        let bn = g.net.layers()[1].named_parameters();
        assert!(bn[0]
            .1
            .value()
            .to_vec()
            .iter()
            .all(|v| (v - 1.0).abs() < 0.1));
        assert!(bn[1].1.value().to_vec().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn conditional_dcgan_adds_a_label_channel_and_an_embedding() {
        let cfg = DcganConfig {
            image_size: 32,
            channels: 3,
            latent: 8,
            width: 4,
            num_classes: Some(10),
            embed_dim: 6,
            ..Default::default()
        };
        let g = DcganGenerator::<f32>::new(&cfg, 0).unwrap();
        let d = DcganDiscriminator::<f32>::new(&cfg, 1).unwrap();
        let z = Var::constant(Tensor::<f32>::ones(&[2, 8]));
        let x = g.generate(&z, Some(&[3, 9])).unwrap();
        assert_eq!(d.score(&x, Some(&[3, 9])).unwrap().shape(), [2]);
        assert!(d.score(&x, None).is_err());
        let gs = state(&g);
        assert_eq!(gs[0], ("net.0.weight".to_string(), vec![14, 16, 4, 4]));
        assert_eq!(
            gs.last().unwrap(),
            &("embed.weight".to_string(), vec![10, 6])
        );
        let ds = state(&d);
        assert_eq!(ds[0], ("net.0.weight".to_string(), vec![4, 4, 4, 4]));
        assert_eq!(
            ds.last().unwrap(),
            &("embed.weight".to_string(), vec![10, 1024])
        );
    }
}
