//! `deepgen train gan`, `eval gan-2d`, and GAN sampling: flags to the
//! deepgen-gan library's configs.

use std::path::{Path, PathBuf};

use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_cli::{Error, Result};
use deepgen_gan::eval2d::{self, Bench2dConfig, Mixture2d};
use deepgen_gan::trainer::{self, TrainConfig};
use deepgen_gan::{Activation, DcganConfig, GanLoss, Generator, MlpGanConfig, NetSpec};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{split, DataArgs};

fn gan_err(e: deepgen_gan::Error) -> Error {
    Error::Usage(e.to_string())
}

/// `deepgen train gan`.
#[derive(clap::Args)]
pub struct TrainGan {
    #[command(flatten)]
    data: DataArgs,
    #[arg(long, value_enum, default_value = "dcgan")]
    arch: GanArch,
    /// wgan-gp brings 5 critic steps, Adam 1e-4 (0, 0.9) and no BatchNorm
    /// in the critic, unless flags say otherwise
    #[arg(long, value_enum, default_value = "ns")]
    loss: LossArg,
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Generator learning rate (default 2e-4; wgan-gp 1e-4)
    #[arg(long)]
    lr: Option<f64>,
    /// Discriminator learning rate (default: --lr)
    #[arg(long)]
    lr_d: Option<f64>,
    /// Adam betas as B1,B2 (default 0.5,0.999; wgan-gp 0,0.9)
    #[arg(long, value_parser = parse_betas)]
    betas: Option<(f64, f64)>,
    /// Discriminator steps per generator step (default 1; wgan-gp 5)
    #[arg(long)]
    n_critic: Option<usize>,
    /// Weight of WGAN-GP's gradient penalty
    #[arg(long, default_value_t = 10.0)]
    gp_lambda: f64,
    /// R1 penalty gamma on real data (any loss)
    #[arg(long)]
    r1_gamma: Option<f64>,
    /// Keep an EMA of the generator's weights with this decay (e.g. 0.999)
    #[arg(long)]
    ema: Option<f64>,
    #[arg(long, default_value_t = 100)]
    latent: usize,
    /// DCGAN base width (ngf = ndf); MLP hidden width
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// Class-conditional nets (labels into both)
    #[arg(long)]
    conditional: bool,
    /// Start from weights: GENERATOR.safetensors,DISCRIMINATOR.safetensors
    /// (e.g. saved from the same nets in PyTorch)
    #[arg(long, value_parser = parse_init)]
    init: Option<(PathBuf, PathBuf)>,
    /// Continue the run in --out from its last checkpoint, exactly
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "runs/gan")]
    out: PathBuf,
}

/// Which nets.
#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum GanArch {
    /// DCGAN for 28x28, 32x32 or 64x64 images
    Dcgan,
    /// fully connected nets, for images or 2-D points
    Mlp,
}

/// The adversarial loss.
#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum LossArg {
    /// non-saturating
    #[value(alias = "non-saturating")]
    Ns,
    Minimax,
    /// least squares
    #[value(alias = "least-squares")]
    Lsgan,
    Hinge,
    /// Wasserstein with gradient penalty
    #[value(alias = "wasserstein")]
    WganGp,
}

impl From<LossArg> for GanLoss {
    fn from(l: LossArg) -> Self {
        match l {
            LossArg::Ns => GanLoss::NonSaturating,
            LossArg::Minimax => GanLoss::Minimax,
            LossArg::Lsgan => GanLoss::LeastSquares,
            LossArg::Hinge => GanLoss::Hinge,
            LossArg::WganGp => GanLoss::Wasserstein,
        }
    }
}

fn parse_pair(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once(',') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(',') => {
            Ok((a.to_string(), b.to_string()))
        }
        _ => Err(format!(
            "expected two values separated by a comma, got {s:?}"
        )),
    }
}

fn parse_betas(s: &str) -> std::result::Result<(f64, f64), String> {
    let (a, b) = parse_pair(s)?;
    let num = |v: &str| v.parse::<f64>().map_err(|e| format!("{v:?}: {e}"));
    Ok((num(&a)?, num(&b)?))
}

fn parse_init(s: &str) -> std::result::Result<(PathBuf, PathBuf), String> {
    let (g, d) = parse_pair(s)?;
    Ok((PathBuf::from(g), PathBuf::from(d)))
}

fn nets(a: &TrainGan, shape: &[usize], classes: Option<usize>) -> Result<NetSpec> {
    let wgan = a.loss == LossArg::WganGp;
    let num_classes = if a.conditional {
        Some(
            classes
                .ok_or_else(|| Error::Usage("--conditional needs a labelled data set".into()))?,
        )
    } else {
        None
    };
    match a.arch {
        GanArch::Dcgan => {
            let &[channels, h, w] = shape else {
                return Err(Error::Usage(format!(
                    "dcgan needs images, the data has items of shape {shape:?}; use --arch mlp"
                )));
            };
            if h != w {
                return Err(Error::Usage(format!(
                    "dcgan needs square images, got {h}x{w}"
                )));
            }
            Ok(NetSpec::Dcgan(DcganConfig {
                image_size: h,
                channels,
                latent: a.latent,
                width: a.width,
                d_batch_norm: !wgan,
                num_classes,
                ..Default::default()
            }))
        }
        GanArch::Mlp => Ok(NetSpec::Mlp(MlpGanConfig {
            data_shape: shape.to_vec(),
            latent: a.latent,
            g_hidden: vec![a.width; 2],
            d_hidden: vec![a.width; 2],
            d_activation: Activation::LeakyRelu(0.2),
            num_classes,
            ..Default::default()
        })),
    }
}

fn train_config(a: &TrainGan) -> TrainConfig {
    let loss = GanLoss::from(a.loss);
    let base = match loss {
        GanLoss::Wasserstein => TrainConfig::wgan_gp(),
        _ => TrainConfig::default(),
    };
    TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr.unwrap_or(base.lr),
        lr_d: a.lr_d,
        betas: a.betas.unwrap_or(base.betas),
        loss,
        n_critic: a.n_critic.unwrap_or(base.n_critic),
        gp_lambda: a.gp_lambda,
        r1_gamma: a.r1_gamma,
        ema_decay: a.ema,
        seed: a.seed,
        out_dir: a.out.clone(),
        resume: a.resume,
        ..base
    }
}

pub fn train(a: TrainGan) -> Result<()> {
    let (data, _) = split(&a.data)?;
    let spec = nets(&a, &data.item_shape(), data.num_classes())?;
    let g = spec.generator(a.seed.wrapping_mul(2)).map_err(gan_err)?;
    let d = spec
        .discriminator(a.seed.wrapping_mul(2).wrapping_add(1))
        .map_err(gan_err)?;
    let config = train_config(&a);
    if let Some(init) = &a.init {
        deepgen_nn::checkpoint::load(g.as_module(), &init.0, true)?;
        deepgen_nn::checkpoint::load(d.as_module(), &init.1, true)?;
    }
    println!(
        "training a {} GAN ({} loss; G {} and D {} parameters) on {} items ({}), {} epochs",
        if a.arch == GanArch::Dcgan {
            "DCGAN"
        } else {
            "MLP"
        },
        config.loss.name(),
        g.num_parameters(),
        d.num_parameters(),
        data.len(),
        a.data.dataset,
        a.epochs
    );
    trainer::train(g.as_ref(), d.as_ref(), data, &config, |m| {
        println!(
            "epoch {}: D {:.4}, G {:.4}, D(x) {:.3}, D(G(z)) {:.3}, {} G steps, {:.1} s",
            m.epoch + 1,
            m.d_loss,
            m.g_loss,
            m.d_real,
            m.d_fake,
            m.generator_steps,
            m.seconds
        );
    })
    .map_err(|e| match e {
        deepgen_gan::Error::NonFinite { .. } => {
            Error::Usage(format!("{e} (in {})", a.out.display()))
        }
        other => gan_err(other),
    })?;
    println!("wrote {}", a.out.display());
    Ok(())
}

/// `n` samples of a generator, in [0, 1]: images [n, c, h, w] (Tanh
/// outputs mapped from [-1, 1]) or points [n, 2] as they are. A
/// conditional generator gets `label`, or labels cycling over its classes.
pub fn sample(g: &dyn Generator, n: usize, label: Option<usize>, seed: u64) -> Result<Tensor> {
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
    deepgen_gan::net::restore_buffers(g.as_module(), saved).map_err(gan_err)?;
    let x = out.map_err(gan_err)?.value();
    if g.output_shape().len() == 3 {
        let v: Vec<f32> = x.to_vec().iter().map(|v| (v + 1.0) * 0.5).collect();
        Ok(Tensor::from_vec(v, x.shape())?)
    } else {
        Ok(x)
    }
}

/// The generator in a checkpoint, or None when it is not a GAN's (a VAE's).
pub fn try_load_generator(path: &Path) -> Result<Option<Box<dyn Generator>>> {
    deepgen_gan::spec::try_load_generator(path).map_err(gan_err)
}

pub fn load_generator(path: &Path) -> Result<Box<dyn Generator>> {
    deepgen_gan::load_generator(path).map_err(gan_err)
}

/// `deepgen eval gan-2d`.
#[derive(clap::Args)]
pub struct EvalGan2d {
    #[arg(long, value_enum, default_value = "ring8")]
    dataset: MixtureArg,
    /// Runs with seeds 0..N
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// Generator steps (default: the mixture's tuned setting)
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long, value_enum)]
    loss: Option<LossArg>,
    /// R1 penalty gamma (0: none)
    #[arg(long)]
    r1_gamma: Option<f64>,
    #[arg(long)]
    latent: Option<usize>,
    /// Hidden widths of both nets, e.g. 128,128
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// Discriminator steps per generator step
    #[arg(long)]
    n_critic: Option<usize>,
    /// Folder for the scatter plots (real vs generated, one per seed)
    #[arg(long, default_value = "runs/gan-2d")]
    out: PathBuf,
}

/// The 2-D mixtures.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum MixtureArg {
    /// 8 Gaussians on a ring of radius 2, std 0.02
    Ring8,
    /// 5x5 Gaussians at {-4, -2, 0, 2, 4}^2, std 0.05
    Grid25,
}

pub fn eval_2d(a: EvalGan2d) -> Result<()> {
    let mixture = match a.dataset {
        MixtureArg::Ring8 => Mixture2d::Ring8,
        MixtureArg::Grid25 => Mixture2d::Grid25,
    };
    let mut config = Bench2dConfig::for_mixture(mixture);
    if let Some(s) = a.steps {
        config.steps = s;
    }
    if let Some(b) = a.batch_size {
        config.train.batch_size = b;
    }
    if let Some(lr) = a.lr {
        config.train.lr = lr;
    }
    if let Some(l) = a.loss {
        config.train.loss = l.into();
    }
    if let Some(r1) = a.r1_gamma {
        config.train.r1_gamma = (r1 > 0.0).then_some(r1);
    }
    if let Some(l) = a.latent {
        config.model.latent = l;
    }
    if let Some(h) = &a.hidden {
        config.model.g_hidden = h.clone();
        config.model.d_hidden = h.clone();
    }
    if let Some(k) = a.n_critic {
        config.train.n_critic = k;
    }
    config.train.out_dir = a.out.join("run");
    std::fs::create_dir_all(&a.out).map_err(|source| deepgen_data::Error::Io {
        path: a.out.clone(),
        source,
    })?;
    println!(
        "{}: {} seeds, {} steps, batch {}, lr {}, {} loss, R1 {:?}, latent {}, hidden {:?}",
        mixture.name(),
        a.seeds,
        config.steps,
        config.train.batch_size,
        config.train.lr,
        config.train.loss.name(),
        config.train.r1_gamma,
        config.model.latent,
        config.model.g_hidden
    );
    println!("| seed | modes | high quality | seconds |");
    println!("| --- | --- | --- | --- |");
    let real = mixture.dataset(2500, 12345).map_err(gan_err)?;
    let real_points: Vec<(f64, f64)> = (0..2500)
        .filter_map(|i| deepgen_data::Dataset::get(&real, i, deepgen_data::Scale::Raw).ok())
        .map(|(t, _)| {
            let v = t.to_vec();
            (v[0] as f64, v[1] as f64)
        })
        .collect();
    let (mut modes, mut quality) = (Vec::new(), Vec::new());
    for seed in 0..a.seeds {
        let start = std::time::Instant::now();
        let r = eval2d::run(&config, seed).map_err(gan_err)?;
        let c = r.coverage;
        println!(
            "| {seed} | {}/{} | {:.1}% | {:.1} |",
            c.modes,
            c.total_modes,
            100.0 * c.high_quality,
            start.elapsed().as_secs_f64()
        );
        modes.push(c.modes as f64);
        quality.push(c.high_quality);
        let generated: Vec<(f64, f64)> = r
            .samples
            .to_vec()
            .chunks_exact(2)
            .map(|p| (p[0] as f64, p[1] as f64))
            .collect();
        use deepgen_data::plot::{scatter_chart, Series};
        scatter_chart(
            &a.out.join(format!("{}-seed{seed}.png", mixture.name())),
            &format!(
                "{} seed {seed}: {}/{} modes, {:.1}% high quality",
                mixture.name(),
                c.modes,
                c.total_modes,
                100.0 * c.high_quality
            ),
            &[
                Series {
                    name: "real",
                    points: real_points.clone(),
                },
                Series {
                    name: "generated",
                    points: generated,
                },
            ],
        )?;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "mean over {} seeds: {:.2} modes, {:.1}% high quality; scatter plots in {}",
        a.seeds,
        mean(&modes),
        100.0 * mean(&quality),
        a.out.display()
    );
    Ok(())
}
