//! The `deepgen` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use deepgen_cli::{classifier, datasets, Result};
use deepgen_nn::Module;

mod gan_cmd;

#[derive(Parser)]
#[command(
    name = "deepgen",
    version,
    about = "Train, sample and evaluate deep generative models on the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download a data set, verifying every file's SHA-256.
    Download {
        /// mnist, fashion-mnist, kmnist or cifar10
        dataset: String,
        /// Target folder (default: data/<dataset>)
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Train a model.
    #[command(subcommand)]
    Train(Train),
    /// Evaluate a model.
    #[command(subcommand)]
    Eval(Eval),
    /// Draw images from a trained VAE's prior or a GAN's generator: a PNG
    /// grid, or raw samples as .safetensors or .idx for other tools.
    Sample {
        /// A VAE's model.safetensors or a GAN's generator(_ema).safetensors
        #[arg(long)]
        checkpoint: PathBuf,
        /// Conditional GAN: the class to draw (default: cycling over classes)
        #[arg(long)]
        label: Option<usize>,
        #[arg(long, default_value_t = 64)]
        n: usize,
        /// For a 2-D latent: a SIDE x SIDE grid over the prior's quantiles
        /// instead of random samples (Kingma & Welling's figure 4)
        #[arg(long, value_name = "SIDE")]
        manifold: Option<usize>,
        /// .png, .safetensors or .idx
        #[arg(long, default_value = "samples.png")]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Held-out images beside their reconstructions (rows of 8 above 8).
    Reconstruct {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long, default_value_t = 32)]
        n: usize,
        #[arg(long, default_value = "reconstructions.png")]
        out: PathBuf,
    },
    /// Latent means and log-variances of a whole data set, as safetensors and
    /// CSV, with a scatter plot of the latent space coloured by label.
    Encode {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        /// Folder for latents.safetensors, latents.csv and latents.png
        #[arg(long, default_value = "runs/encode")]
        out: PathBuf,
    },
    /// Decodes a straight line in latent space between two held-out images.
    Interpolate {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        checkpoint: PathBuf,
        /// Index (within the held-out images) of the first image
        #[arg(long, default_value_t = 0)]
        from: usize,
        /// Index of the second image
        #[arg(long, default_value_t = 1)]
        to: usize,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[arg(long, default_value = "interpolation.png")]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum VaeArch {
    /// pytorch/examples' MLP VAE
    Mlp,
    /// strided convolutions down, transposed convolutions up
    Conv,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum VaeLikelihood {
    /// Bernoulli pixels (logits, binary cross entropy)
    Bernoulli,
    /// Gaussian pixels with a fixed --decoder-std
    Gaussian,
    /// Gaussian pixels with one learned variance
    GaussianLearned,
}

/// Which data to use (shared by train and eval).
#[derive(clap::Args, Clone)]
struct DataArgs {
    /// digits (built in), mnist, fashion-mnist or kmnist
    #[arg(long, default_value = "digits")]
    dataset: String,
    /// Folder with the data set's files
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Read the test split's files (when only they are at hand)
    #[arg(long)]
    test_split: bool,
    /// Images to train on, e.g. 0..9000 (default: all)
    #[arg(long, value_parser = datasets::parse_range)]
    train_range: Option<std::ops::Range<usize>>,
    /// Images held out for evaluation, e.g. 9000..10000
    #[arg(long, value_parser = datasets::parse_range)]
    held_out: Option<std::ops::Range<usize>>,
    /// Number of synthetic digits to generate
    #[arg(long, default_value_t = 12_000)]
    synthetic_size: usize,
}

#[derive(Subcommand)]
enum Train {
    /// A VAE: MLP (pytorch/examples' 784-400-20 by default) or
    /// convolutional, with a Bernoulli or Gaussian decoder.
    Vae {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, value_enum, default_value = "mlp")]
        arch: VaeArch,
        /// The decoder's distribution (gaussian: fixed --decoder-std)
        #[arg(long, value_enum, default_value = "bernoulli")]
        likelihood: VaeLikelihood,
        /// Standard deviation of the fixed Gaussian decoder
        #[arg(long, default_value_t = 0.1)]
        decoder_std: f64,
        /// Conv: channels of the stride-2 stages, e.g. 32,64
        #[arg(long, value_delimiter = ',', default_value = "32,64")]
        widths: Vec<usize>,
        #[arg(long, default_value_t = 10)]
        epochs: usize,
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Hidden units (MLP: 400; conv: the dense layer, 256)
        #[arg(long)]
        hidden: Option<usize>,
        #[arg(long, default_value_t = 20)]
        latent: usize,
        /// Weight of the KL term
        #[arg(long, default_value_t = 1.0)]
        beta: f64,
        /// Epochs of linear KL warm-up
        #[arg(long, default_value_t = 0)]
        kl_warmup: usize,
        /// Start from the weights of a compatible safetensors file
        #[arg(long)]
        init: Option<PathBuf>,
        /// Continue the run in --out from its last checkpoint, exactly
        #[arg(long)]
        resume: bool,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value = "runs/vae")]
        out: PathBuf,
    },
    /// A GAN: DCGAN (default) or MLP, with the loss of your choice.
    Gan(gan_cmd::TrainGan),
    /// The LeNet-style digit classifier (cross entropy, Adam).
    Classifier {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, default_value_t = 5)]
        epochs: usize,
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output folder for the checkpoint
        #[arg(long, default_value = "runs/classifier")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum Eval {
    /// Held-out negative ELBO and importance-weighted bound (nats per example).
    Vae {
        #[command(flatten)]
        data: DataArgs,
        /// A model.safetensors written by `train vae` (or a PyTorch VAE's state dict)
        #[arg(long)]
        checkpoint: PathBuf,
        /// Importance samples for the IWAE bound
        #[arg(long, default_value_t = 100)]
        k: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Image quality of generated digits, judged by a classifier from
    /// `train classifier`: Fréchet distance of its features between the
    /// samples and the held-out images, and the histogram of predicted
    /// classes with its entropy.
    Gan {
        #[command(flatten)]
        data: DataArgs,
        /// A classifier.safetensors written by `train classifier`
        #[arg(long)]
        classifier: PathBuf,
        /// Generated images: .idx (8-bit) or .safetensors (float "images")
        #[arg(long, required_unless_present = "checkpoint")]
        samples: Option<PathBuf>,
        /// Or a generator checkpoint to draw --n samples from
        #[arg(long, conflicts_with = "samples")]
        checkpoint: Option<PathBuf>,
        #[arg(long, default_value_t = 1000)]
        n: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// The 2-D mode-coverage benchmark (VEEGAN): trains the MLP GAN on
    /// ring8 or grid25 for each seed and reports modes covered and the
    /// share of high-quality samples.
    #[command(name = "gan-2d")]
    Gan2d(gan_cmd::EvalGan2d),
    /// Accuracy of a classifier checkpoint on the held-out images.
    Classifier {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        checkpoint: PathBuf,
    },
}

type Data = std::sync::Arc<dyn deepgen_data::Dataset>;

/// (train part, held-out part) of the chosen data. Synthetic digits hold out
/// their last sixth unless a range says otherwise.
fn split(d: &DataArgs) -> Result<(Data, Option<Data>)> {
    let all = datasets::load(
        &d.dataset,
        d.data_dir.as_deref(),
        !d.test_split,
        d.synthetic_size,
        0,
    )?;
    let n = all.len();
    let (train, held) = match (&d.train_range, &d.held_out, d.dataset.as_str()) {
        (None, None, "digits") => (Some(0..n - n / 6), Some(n - n / 6..n)),
        (t, h, _) => (t.clone(), h.clone()),
    };
    let held = held
        .map(|r| datasets::take(all.clone(), Some(r)))
        .transpose()?;
    Ok((datasets::take(all, train)?, held))
}

fn vae_err(e: deepgen_vae::Error) -> deepgen_cli::Error {
    deepgen_cli::Error::Vae(e)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Download { dataset, dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("data").join(&dataset));
            let files = deepgen_data::download::download(&dataset, &dir, &Default::default())?;
            for f in files {
                println!("{}", f.display());
            }
        }
        Command::Train(Train::Classifier {
            data,
            epochs,
            batch_size,
            lr,
            seed,
            out,
        }) => {
            let (train, held) = split(&data)?;
            println!(
                "training the classifier on {} images ({}), {epochs} epochs",
                train.len(),
                data.dataset
            );
            let cfg = classifier::TrainConfig {
                epochs,
                batch_size,
                lr,
                seed,
                out_dir: out.clone(),
                progress: true,
            };
            classifier::train(train, held, &cfg, |r| {
                let held = r
                    .held_out_accuracy
                    .map(|a| format!(", held-out accuracy {:.2}%", 100.0 * a))
                    .unwrap_or_default();
                println!(
                    "epoch {}: loss {:.4}, train accuracy {:.2}%{held}, {:.1} s",
                    r.epoch + 1,
                    r.loss,
                    100.0 * r.train_accuracy,
                    r.seconds
                );
            })?;
            println!(
                "checkpoint: {}",
                out.join("classifier.safetensors").display()
            );
        }
        Command::Train(Train::Vae {
            data,
            arch,
            likelihood,
            decoder_std,
            widths,
            epochs,
            batch_size,
            lr,
            hidden,
            latent,
            beta,
            kl_warmup,
            init,
            resume,
            seed,
            out,
        }) => {
            let (train, held) = split(&data)?;
            let arch = match arch {
                VaeArch::Mlp => deepgen_vae::Arch::Mlp,
                VaeArch::Conv => deepgen_vae::Arch::Conv,
            };
            let likelihood = match likelihood {
                VaeLikelihood::Bernoulli => deepgen_vae::Likelihood::Bernoulli,
                VaeLikelihood::Gaussian => deepgen_vae::Likelihood::Gaussian { std: decoder_std },
                VaeLikelihood::GaussianLearned => deepgen_vae::Likelihood::GaussianLearned,
            };
            let cfg = deepgen_vae::VaeConfig {
                arch,
                image_shape: train.item_shape(),
                hidden: hidden.unwrap_or(if arch == deepgen_vae::Arch::Mlp {
                    400
                } else {
                    256
                }),
                latent,
                widths,
                likelihood,
            };
            let model = deepgen_vae::Vae::new(cfg, seed).map_err(vae_err)?;
            if let Some(init) = &init {
                deepgen_nn::checkpoint::load(&model, init, true)?;
            }
            println!(
                "training a {} VAE ({}) on {} images ({}), {epochs} epochs",
                if arch == deepgen_vae::Arch::Mlp {
                    "MLP"
                } else {
                    "convolutional"
                },
                model.num_parameters(),
                train.len(),
                data.dataset
            );
            let tc = deepgen_vae::trainer::TrainConfig {
                epochs,
                batch_size,
                lr,
                beta,
                kl_warmup_epochs: kl_warmup,
                seed,
                out_dir: out.clone(),
                progress: true,
                images: true,
                resume,
            };
            deepgen_vae::trainer::train(&model, train, held, &tc, |m| {
                let held = m
                    .held_out
                    .map(|(l, r, k)| format!(", held-out {l:.2} ({r:.2} + {k:.2})"))
                    .unwrap_or_default();
                println!(
                    "epoch {}: train {:.2} ({:.2} + {:.2}){held} nats/example, {:.2} s, {:.0} img/s",
                    m.epoch + 1,
                    m.train_loss,
                    m.train_reconstruction,
                    m.train_kl,
                    m.seconds,
                    m.images_per_second
                );
            })
            .map_err(vae_err)?;
            println!("wrote {}", out.display());
        }
        Command::Eval(Eval::Vae {
            data,
            checkpoint,
            k,
            seed,
        }) => {
            let (train, held) = split(&data)?;
            let target = held.unwrap_or(train);
            let model = deepgen_vae::Vae::from_checkpoint(&checkpoint).map_err(vae_err)?;
            let (elbo, rec, kl) = deepgen_vae::trainer::evaluate(&model, target.clone(), 500, seed)
                .map_err(vae_err)?;
            let loader = deepgen_data::DataLoader::new(
                target.clone(),
                deepgen_data::LoaderConfig {
                    batch_size: 100,
                    shuffle: false,
                    ..Default::default()
                },
            )?;
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
            let (mut sum, mut n) = (0.0, 0usize);
            for batch in loader.epoch(0) {
                let b = deepgen_vae::iwae_bound(&model, &batch?.images, k, &mut rng)
                    .map_err(vae_err)?;
                n += b.len();
                sum += b.iter().sum::<f64>();
            }
            println!("{} images: negative ELBO {elbo:.2} ({rec:.2} + {kl:.2}), IWAE bound (k = {k}) {:.2} nats/example", target.len(), sum / n as f64);
        }
        Command::Sample {
            checkpoint,
            label,
            n,
            manifold,
            out,
            seed,
        } => {
            // One read of the file: a GAN generator's spec, else a VAE.
            let (images, nrow) = match gan_cmd::try_load_generator(&checkpoint)? {
                Some(g) => {
                    if manifold.is_some() {
                        return Err(deepgen_cli::Error::Usage(
                            "--manifold is for VAEs with a 2-D latent".into(),
                        ));
                    }
                    let images = gan_cmd::sample(g.as_ref(), n, label, seed)?;
                    if images.rank() != 4 {
                        return Err(deepgen_cli::Error::Usage(format!(
                            "{} generates points, not images; see `deepgen eval gan-2d`",
                            checkpoint.display()
                        )));
                    }
                    (images, 8)
                }
                None => {
                    if label.is_some() {
                        return Err(deepgen_cli::Error::Usage(
                            "--label is for class-conditional GANs".into(),
                        ));
                    }
                    let model = deepgen_vae::Vae::from_checkpoint(&checkpoint).map_err(vae_err)?;
                    match manifold {
                        Some(side) => (
                            deepgen_vae::generate::manifold(&model, side).map_err(vae_err)?,
                            side,
                        ),
                        None => {
                            let mut rng =
                                <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
                            let images = deepgen_vae::generate::sample(&model, n, &mut rng)
                                .map_err(vae_err)?;
                            (images, 8)
                        }
                    }
                }
            };
            deepgen_vae::generate::write_images(&out, &images, nrow).map_err(vae_err)?;
            println!("wrote {} images to {}", images.shape()[0], out.display());
        }
        Command::Reconstruct {
            data,
            checkpoint,
            n,
            out,
        } => {
            let (train, held) = split(&data)?;
            let target = held.unwrap_or(train);
            let model = deepgen_vae::Vae::from_checkpoint(&checkpoint).map_err(vae_err)?;
            let loader = deepgen_data::DataLoader::new(
                target.clone(),
                deepgen_data::LoaderConfig {
                    shuffle: false,
                    ..Default::default()
                },
            )?;
            let x = loader.batch((0..n.min(target.len())).collect())?.images;
            let grid = deepgen_vae::generate::reconstruction_grid(&model, &x).map_err(vae_err)?;
            deepgen_vae::generate::write_images(&out, &grid, 8).map_err(vae_err)?;
            println!("wrote {}", out.display());
        }
        Command::Encode {
            data,
            checkpoint,
            out,
        } => {
            let (train, held) = split(&data)?;
            let target = match (&data.train_range, &data.held_out) {
                (None, Some(_)) => held.unwrap_or(train),
                _ => train,
            };
            let model = deepgen_vae::Vae::from_checkpoint(&checkpoint).map_err(vae_err)?;
            let (mu, logvar) =
                deepgen_vae::generate::encode_all(&model, target.clone()).map_err(vae_err)?;
            let labels: Vec<usize> = (0..target.len())
                .map(|i| target.label(i).unwrap_or(0))
                .collect();
            deepgen_vae::generate::write_latents(&out, &mu, &logvar, &labels).map_err(vae_err)?;
            let l = model.latent_dim();
            let how = if l == 2 {
                "the 2-D latent"
            } else {
                "the first two principal components"
            };
            println!(
                "encoded {} images into {}; latents.png shows {how}",
                labels.len(),
                out.display()
            );
        }
        Command::Interpolate {
            data,
            checkpoint,
            from,
            to,
            steps,
            out,
        } => {
            let (train, held) = split(&data)?;
            let target = held.unwrap_or(train);
            let model = deepgen_vae::Vae::from_checkpoint(&checkpoint).map_err(vae_err)?;
            let (a, _) = target.get(from, deepgen_data::Scale::ZeroOne)?;
            let (b, _) = target.get(to, deepgen_data::Scale::ZeroOne)?;
            let images =
                deepgen_vae::generate::interpolate(&model, &a, &b, steps).map_err(vae_err)?;
            deepgen_vae::generate::write_images(&out, &images, steps).map_err(vae_err)?;
            println!("wrote {}", out.display());
        }
        Command::Train(Train::Gan(args)) => gan_cmd::train(args)?,
        Command::Eval(Eval::Gan2d(args)) => gan_cmd::eval_2d(args)?,
        Command::Eval(Eval::Gan {
            data,
            classifier,
            samples,
            checkpoint,
            n,
            seed,
        }) => {
            let (train, held) = split(&data)?;
            let Some(reference) = held else {
                return Err(deepgen_cli::Error::Usage(
                    "eval gan needs held-out images as the reference: give --held-out".into(),
                ));
            };
            let model = classifier::load(&classifier)?;
            let generated = match (&samples, &checkpoint) {
                (Some(path), _) => deepgen_cli::quality::read_samples(path)?,
                (None, Some(path)) => {
                    let g = gan_cmd::load_generator(path)?;
                    gan_cmd::sample(g.as_ref(), n, None, seed)?
                }
                (None, None) => unreachable!("clap requires one"),
            };
            let all = |d: &Data, count: usize| -> Result<deepgen_autograd::Tensor> {
                let loader = deepgen_data::DataLoader::new(
                    d.clone(),
                    deepgen_data::LoaderConfig {
                        shuffle: false,
                        ..Default::default()
                    },
                )?;
                Ok(loader.batch((0..count.min(d.len())).collect())?.images)
            };
            let real = all(&reference, reference.len())?;
            // Real images from the training part, as many as generated: the
            // score a perfect generator would get.
            let baseline = all(&train, generated.shape()[0])?;
            let q = deepgen_cli::quality::judge(&model, &generated, &real, &baseline)?;
            println!(
                "{} samples vs {} held-out images: Fréchet distance (classifier features) {:.3} ({} real training images: {:.3})",
                generated.shape()[0],
                reference.len(),
                q.frechet,
                baseline.shape()[0],
                q.real_baseline
            );
            println!(
                "predicted classes {:?}, entropy {:.3} nats (uniform: {:.3})",
                q.histogram,
                q.entropy,
                (q.histogram.len() as f64).ln()
            );
        }
        Command::Eval(Eval::Classifier { data, checkpoint }) => {
            let (train, held) = split(&data)?;
            let model = classifier::load(&checkpoint)?;
            let target = held.unwrap_or(train);
            let acc = classifier::accuracy(&model, target.clone())?;
            println!("accuracy {:.2}% on {} images", 100.0 * acc, target.len());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The error chain, no backtrace: these are user-facing errors.
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
