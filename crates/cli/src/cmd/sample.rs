//! `deepgen sample`: new images from a VAE's prior or a GAN's generator.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_cli::{Error, Result};
use deepgen_data::text::Vocab;
use deepgen_gan::Generator;
use deepgen_nn::checkpoint::{self, TensorData};
use deepgen_nn::Module;
use deepgen_text::model::TextModel;
use deepgen_vae::{generate, Vae};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Most images one command draws: a grid or file of this many is already
/// hundreds of megabytes; more is a typo, not a wish.
pub const MAX_IMAGES: usize = 100_000;

/// Draw images from a trained VAE's prior or a GAN's generator: a PNG
/// grid, or raw samples as .safetensors or .idx for other tools.
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Args {
    /// A VAE's model.safetensors or a GAN's generator(_ema).safetensors
    #[arg(long)]
    checkpoint: PathBuf,
    /// Conditional GAN: the class to draw [default: cycling over the classes]
    #[arg(long)]
    label: Option<usize>,
    /// Images to draw
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=MAX_IMAGES as u64))]
    n: u64,
    /// For a 2-D latent: a SIDE x SIDE grid over the prior's quantiles
    /// instead of random samples (Kingma & Welling's figure 4) [default: random samples]
    #[arg(long, value_name = "SIDE", value_parser = clap::value_parser!(u64).range(2..=300))]
    manifold: Option<u64>,
    /// The output: .png, .safetensors or .idx (its folder is created)
    #[arg(long, default_value = "samples.png")]
    out: PathBuf,
    /// Seed of the noise
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A text model: the softmax temperature of each token (0: the most
    /// likely token, greedy)
    #[arg(long, default_value_t = 1.0, value_parser = super::args::non_negative)]
    temperature: f64,
    /// A text model: the most tokens a sentence may take
    #[arg(long, default_value_t = 64, value_parser = super::args::at_least_one)]
    max_len: usize,
}

/// Refuses a model whose weights are NaN or infinite (it would draw noise
/// and exit as if all were well).
pub fn check_finite(module: &dyn Module<f32>, path: &Path) -> Result<()> {
    match deepgen_nn::checkpoint::first_non_finite(module) {
        None => Ok(()),
        Some((name, value)) => Err(deepgen_nn::Error::Invalid {
            op: "model",
            msg: format!(
                "{}: `{name}` holds {value}; the model diverged and cannot be used",
                path.display()
            ),
        }
        .into()),
    }
}

/// What a checkpoint holds, from one read of the file, by its metadata.
pub enum Loaded {
    Generator(Box<dyn Generator>),
    Vae(Vae),
    /// A sentence VAE, an ARAE or a language model, and its vocabulary.
    Text(TextModel, Vocab),
    /// No model description: the file's tensors (a classifier's, say).
    Other(Vec<(String, TensorData)>),
}

impl Loaded {
    /// The model in `path`, its weights checked finite, and the file's
    /// metadata.
    pub fn read(path: &Path) -> Result<(Self, HashMap<String, String>)> {
        let (tensors, meta) = checkpoint::load_tensors(path)?;
        let loaded = if meta.contains_key(deepgen_gan::spec::SPEC_KEY) {
            let g = deepgen_gan::spec::generator_from_loaded(path, tensors, &meta)?;
            Loaded::Generator(g.expect("a file with a GAN spec"))
        } else if meta.contains_key(deepgen_vae::CONFIG_KEY) {
            Loaded::Vae(Vae::from_loaded(path, tensors, meta.clone())?)
        } else if deepgen_text::trainer::is_text_checkpoint(&meta) {
            let (model, vocab) = TextModel::from_loaded(path, tensors, &meta)?
                .expect("a file with a text model's metadata");
            Loaded::Text(model, vocab)
        } else {
            return Ok((Loaded::Other(tensors), meta));
        };
        let module: &dyn Module<f32> = match &loaded {
            Loaded::Generator(g) => g.as_module(),
            Loaded::Vae(m) => m,
            Loaded::Text(m, _) => m.as_module(),
            Loaded::Other(..) => unreachable!("returned above"),
        };
        check_finite(module, path)?;
        Ok((loaded, meta))
    }
}

pub fn run(a: Args) -> Result<()> {
    let n = a.n as usize;
    let (images, nrow) = match Loaded::read(&a.checkpoint)?.0 {
        Loaded::Text(model, vocab) => return sample_text(&a, &model, &vocab),
        Loaded::Generator(g) => {
            check_finite(g.as_module(), &a.checkpoint)?;
            if a.manifold.is_some() {
                return Err(Error::Usage(
                    "--manifold is for VAEs with a 2-D latent".into(),
                ));
            }
            let images = gan_samples(g.as_ref(), n, a.label, a.seed)?;
            if images.rank() != 4 {
                return Err(Error::Usage(format!(
                    "{} generates points, not images; see `deepgen eval gan-2d`",
                    a.checkpoint.display()
                )));
            }
            (images, 8)
        }
        loaded => {
            if a.label.is_some() {
                return Err(Error::Usage("--label is for class-conditional GANs".into()));
            }
            let model = match loaded {
                Loaded::Vae(m) => m,
                // Not a model deepgen describes: the VAE loader says why.
                _ => Vae::from_checkpoint(&a.checkpoint)?,
            };
            match a.manifold {
                Some(side) => (generate::manifold(&model, side as usize)?, side as usize),
                None => {
                    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
                    (generate::sample(&model, n, &mut rng)?, 8)
                }
            }
        }
    };
    generate::write_images(&a.out, &images, nrow)?;
    println!("wrote {} images to {}", images.shape()[0], a.out.display());
    Ok(())
}

/// `n` samples of a generator, in [0, 1]: images [n, c, h, w] (Tanh
/// outputs mapped from [-1, 1]) or points [n, 2] as they are. A
/// conditional generator gets `label`, or labels cycling over its classes.
pub fn gan_samples(g: &dyn Generator, n: usize, label: Option<usize>, seed: u64) -> Result<Tensor> {
    let labels: Option<Vec<usize>> = match (g.num_classes(), label) {
        (Some(k), Some(l)) if l < k => Some(vec![l; n]),
        (Some(k), Some(l)) => {
            return Err(Error::Usage(format!(
                "--label {l} is not below the generator's {k} classes"
            )))
        }
        (Some(k), None) => Some((0..n).map(|i| i % k).collect()),
        (None, Some(_)) => {
            return Err(Error::Usage(
                "--label needs a class-conditional generator".into(),
            ))
        }
        (None, None) => None,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let z = Tensor::randn(&[n, g.latent_dim()], 0.0, 1.0, &mut rng);
    // Train-mode BatchNorm, as the training loop samples, with the running
    // statistics put back afterwards.
    let saved = deepgen_gan::net::snapshot_buffers(g.as_module());
    g.as_module().train();
    let out = no_grad(|| g.generate(&Var::constant(z), labels.as_deref()));
    deepgen_gan::net::restore_buffers(g.as_module(), saved)?;
    let x = out?.value();
    if g.output_shape().len() == 3 {
        let v: Vec<f32> = x.to_vec().iter().map(|v| (v + 1.0) * 0.5).collect();
        Ok(Tensor::from_vec(v, x.shape())?)
    } else {
        Ok(x)
    }
}

/// Sentences of a text model (a VAE's prior, an ARAE's generator, a
/// language model), one per line on stdout.
fn sample_text(a: &Args, model: &TextModel, vocab: &Vocab) -> Result<()> {
    if a.label.is_some() || a.manifold.is_some() {
        return Err(Error::Usage(
            "--label and --manifold are for image models".into(),
        ));
    }
    let n = a.n as usize;
    for s in model.sample(n, a.max_len, a.temperature, a.seed)? {
        println!("{}", vocab.decode(&s));
    }
    Ok(())
}
