//! `deepgen train gan`: flags to the deepgen-gan library's configs.

use std::path::PathBuf;

use deepgen_cli::{Error, Result};
use deepgen_gan::trainer::{self, TrainConfig};
use deepgen_gan::{Activation, DcganConfig, GanLoss, MlpGanConfig, NetSpec};
use serde::Serialize;

use super::args::{at_least_one, count, non_negative, positive, record, TrainArgs};

/// A GAN: DCGAN (default) or MLP, with the loss of your choice.
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    common: TrainArgs,
    /// The nets
    #[arg(long, value_enum, default_value = "dcgan")]
    arch: GanArch,
    /// The adversarial loss; wgan-gp brings 5 critic steps, Adam 1e-4 (0,
    /// 0.9) and no BatchNorm in the critic, unless flags say otherwise
    #[arg(long, value_enum, default_value = "ns")]
    loss: LossArg,
    /// Epochs to train (on --resume: the total, counting those done)
    #[arg(long, default_value_t = 5, value_parser = at_least_one)]
    epochs: usize,
    /// Images (or points) per batch
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    batch_size: usize,
    /// Generator learning rate [default: 2e-4; wgan-gp 1e-4]
    #[arg(long, value_parser = positive)]
    lr: Option<f64>,
    /// Discriminator learning rate [default: --lr]
    #[arg(long, value_parser = positive)]
    lr_d: Option<f64>,
    /// Adam / AdamW betas as B1,B2 [default: 0.5,0.999; wgan-gp 0,0.9]
    #[arg(long, value_parser = parse_betas)]
    betas: Option<(f64, f64)>,
    /// Discriminator steps per generator step [default: 1; wgan-gp 5]
    #[arg(long, value_parser = at_least_one)]
    n_critic: Option<usize>,
    /// Weight of WGAN-GP's gradient penalty
    #[arg(long, default_value_t = 10.0, value_parser = non_negative)]
    gp_lambda: f64,
    /// R1 penalty gamma on real data, with any loss [default: none]
    #[arg(long, value_parser = non_negative)]
    r1_gamma: Option<f64>,
    /// Keep an EMA of the generator's weights with this decay, e.g. 0.999 [default: none]
    #[arg(long, value_parser = unit)]
    ema: Option<f64>,
    /// Latent dimensions
    #[arg(long, default_value_t = 100, value_parser = at_least_one)]
    latent: usize,
    /// DCGAN base width (ngf = ndf); MLP hidden width
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    width: usize,
    /// Class-conditional nets (labels into both)
    #[arg(long)]
    conditional: bool,
    /// Start from weights: GENERATOR.safetensors,DISCRIMINATOR.safetensors
    /// (e.g. saved from the same nets in PyTorch) [default: none]
    #[arg(long, value_parser = parse_init)]
    #[serde(serialize_with = "init_text")]
    init: Option<(PathBuf, PathBuf)>,
    /// Seed of the weights, the shuffling and the noise
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The run directory
    #[arg(long, default_value = "runs/gan")]
    out: PathBuf,
}

fn init_text<S: serde::Serializer>(
    v: &Option<(PathBuf, PathBuf)>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some((g, d)) => s.serialize_str(&format!("{},{}", g.display(), d.display())),
        None => s.serialize_none(),
    }
}

/// Which nets.
#[derive(Clone, Copy, PartialEq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GanArch {
    /// DCGAN for 28x28, 32x32 or 64x64 images
    Dcgan,
    /// fully connected nets, for images or 2-D points
    Mlp,
}

/// The adversarial loss.
#[derive(Clone, Copy, PartialEq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossArg {
    /// non-saturating
    #[value(alias = "non-saturating")]
    Ns,
    /// the original minimax
    Minimax,
    /// least squares
    #[value(alias = "least-squares")]
    Lsgan,
    /// hinge
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
    Ok((unit(&a)?, unit(&b)?))
}

/// A number in [0, 1).
fn unit(v: &str) -> std::result::Result<f64, String> {
    match v.parse::<f64>() {
        Ok(x) if (0.0..1.0).contains(&x) => Ok(x),
        Ok(x) => Err(format!("{x} is not in [0, 1)")),
        Err(e) => Err(format!("{v:?}: {e}")),
    }
}

fn parse_init(s: &str) -> std::result::Result<(PathBuf, PathBuf), String> {
    let (g, d) = parse_pair(s)?;
    Ok((PathBuf::from(g), PathBuf::from(d)))
}

fn nets(a: &Args, shape: &[usize], classes: Option<usize>) -> Result<NetSpec> {
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

fn train_config(a: &Args) -> TrainConfig {
    let loss = GanLoss::from(a.loss);
    let base = match loss {
        GanLoss::Wasserstein => TrainConfig::wgan_gp(),
        _ => TrainConfig::default(),
    };
    let run = a.common.run_config(&a.out, a.epochs, base.run.clone());
    TrainConfig {
        run,
        step: a.common.step.config(),
        batch_size: a.batch_size,
        lr: a.lr.unwrap_or(base.lr),
        lr_d: a.lr_d,
        optimizer: a
            .common
            .optim
            .config(a.betas.unwrap_or(base.optimizer.betas)),
        loss,
        n_critic: a.n_critic.unwrap_or(base.n_critic),
        gp_lambda: a.gp_lambda,
        r1_gamma: a.r1_gamma,
        ema_decay: a.ema,
        seed: a.seed,
        ..base
    }
}

pub fn run(a: Args) -> Result<()> {
    let (data, _) = a.common.data.split()?;
    let spec = nets(&a, &data.item_shape(), data.num_classes())?;
    let (g, d) = super::args::for_training(|| {
        Ok::<_, Error>((
            spec.generator(a.seed.wrapping_mul(2))?,
            spec.discriminator(a.seed.wrapping_mul(2).wrapping_add(1))?,
        ))
    })?;
    let config = train_config(&a);
    // On --resume the checkpoint's weights win; --init is for a new run.
    if let (Some(init), false) = (&a.init, a.common.run.resume) {
        deepgen_nn::checkpoint::load(g.as_module(), &init.0, true)?;
        deepgen_nn::checkpoint::load(d.as_module(), &init.1, true)?;
        super::sample::check_finite(g.as_module(), &init.0)?;
        super::sample::check_finite(d.as_module(), &init.1)?;
    }
    println!(
        "training {} ({} loss; G {} and D {} parameters) on {} items ({}), {}",
        match a.arch {
            GanArch::Dcgan => "a DCGAN",
            GanArch::Mlp => "an MLP GAN",
        },
        config.loss.name(),
        g.num_parameters(),
        d.num_parameters(),
        data.len(),
        a.common.data.record().dataset,
        count(a.epochs, "epoch")
    );
    let record = record(
        "train gan",
        &a,
        serde_json::json!({ "generator": g.spec(), "discriminator": d.spec(), "data": a.common.data.record() }),
    );
    trainer::train_with_record(g.as_ref(), d.as_ref(), data, &config, &record, |m| {
        println!(
            "epoch {}: D {:.4}, G {:.4}, D(x) {:.3}, D(G(z)) {:.3}, {}, {:.1} s",
            m.epoch + 1,
            m.d_loss,
            m.g_loss,
            m.d_real,
            m.d_fake,
            count(m.generator_steps, "G step"),
            m.seconds
        );
    })?;
    println!("wrote {}", a.out.display());
    Ok(())
}
