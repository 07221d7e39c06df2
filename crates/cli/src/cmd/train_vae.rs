//! `deepgen train vae`.

use std::path::PathBuf;

use clap::ValueEnum;
use deepgen_cli::{Error, Result};
use deepgen_nn::Module;
use deepgen_train::OptimizerConfig;
use deepgen_vae::trainer::{self, TrainConfig};
use deepgen_vae::{Arch, Likelihood, Vae, VaeConfig};
use serde::Serialize;

use super::args::{at_least_one, count, positive, record, TrainArgs};

/// A VAE: MLP (pytorch/examples' 784-400-20 by default) or convolutional,
/// with a Bernoulli or Gaussian decoder; or a lossy codec (`--arch codec
/// --quality Q`) for `deepgen compress`.
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    common: TrainArgs,
    /// The network
    #[arg(long, value_enum, default_value = "mlp")]
    arch: VaeArch,
    /// The decoder's distribution (gaussian: fixed --decoder-std) [default:
    /// bernoulli; a codec's is gaussian]
    #[arg(long, value_enum)]
    likelihood: Option<VaeLikelihood>,
    /// A codec's point on the rate-distortion curve, 1 (smallest files) to 8
    /// (best images): CompressAI's lambdas, as the Gaussian decoder's std [default: 4]
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=8))]
    quality: Option<u8>,
    /// Components of the logistic-mixture decoder
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=32))]
    components: u64,
    /// Standard deviation of the fixed Gaussian decoder [default: 0.1]
    #[arg(long, value_parser = positive)]
    decoder_std: Option<f64>,
    /// Conv and codec: channels of the stride-2 stages
    #[arg(long, value_delimiter = ',', default_value = "32,64")]
    widths: Vec<usize>,
    /// Epochs to train (on --resume: the total, counting those done)
    #[arg(long, default_value_t = 10, value_parser = at_least_one)]
    epochs: usize,
    /// Images per batch
    #[arg(long, default_value_t = 128, value_parser = at_least_one)]
    batch_size: usize,
    /// Adam's learning rate
    #[arg(long, default_value_t = 1e-3, value_parser = positive)]
    lr: f64,
    /// Hidden units [default: MLP 400; conv: the dense layer, 256]
    #[arg(long)]
    hidden: Option<usize>,
    /// Latent dimensions (a codec: channels of its latent grid)
    #[arg(long, default_value_t = 20)]
    latent: usize,
    /// Weight of the KL term
    #[arg(long, default_value_t = 1.0, value_parser = super::args::non_negative)]
    beta: f64,
    /// Epochs of linear KL warm-up
    #[arg(long, default_value_t = 0)]
    kl_warmup: usize,
    /// Start from the weights of a compatible safetensors file [default: none]
    #[arg(long)]
    init: Option<PathBuf>,
    /// Seed of the weights, the shuffling and the noise
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The run directory
    #[arg(long, default_value = "runs/vae")]
    out: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum VaeArch {
    /// pytorch/examples' MLP VAE
    Mlp,
    /// strided convolutions down, transposed convolutions up
    Conv,
    /// a lossy codec: a rounded convolutional latent under a learned prior
    Codec,
}

#[derive(Clone, Copy, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum VaeLikelihood {
    /// Bernoulli pixels (logits, binary cross entropy)
    Bernoulli,
    /// Gaussian pixels with a fixed --decoder-std
    Gaussian,
    /// Gaussian pixels with one learned variance
    GaussianLearned,
    /// 8-bit pixels under a discretised logistic per pixel (a probability
    /// for each of the 256 levels: what `deepgen compress` codes with)
    DiscretizedLogistic,
    /// 8-bit pixels under a mixture of --components discretised logistics
    LogisticMixture,
}

/// The decoder's likelihood from the flags: a codec's is Gaussian with the
/// std of its quality, and the flags that would say otherwise are refused.
fn likelihood(a: &Args) -> Result<Likelihood> {
    let codec = matches!(a.arch, VaeArch::Codec);
    if codec {
        if let Some(l) = a
            .likelihood
            .filter(|l| !matches!(l, VaeLikelihood::Gaussian))
        {
            return Err(Error::Usage(format!(
                "--arch codec measures distortion as squared error: its likelihood is \
                 gaussian, not {}",
                l.to_possible_value().expect("no skipped values").get_name()
            )));
        }
        if a.decoder_std.is_some() {
            return Err(Error::Usage(
                "--arch codec takes --quality, which sets the decoder's std; drop --decoder-std"
                    .into(),
            ));
        }
        let std = deepgen_vae::codec::quality_std(a.quality.unwrap_or(4))?;
        return Ok(Likelihood::Gaussian { std });
    }
    if a.quality.is_some() {
        return Err(Error::Usage(
            "--quality picks a codec's rate-distortion point: use it with --arch codec".into(),
        ));
    }
    Ok(match a.likelihood.unwrap_or(VaeLikelihood::Bernoulli) {
        VaeLikelihood::Bernoulli => Likelihood::Bernoulli,
        VaeLikelihood::Gaussian => Likelihood::Gaussian {
            std: a.decoder_std.unwrap_or(0.1),
        },
        VaeLikelihood::GaussianLearned => Likelihood::GaussianLearned,
        VaeLikelihood::DiscretizedLogistic => Likelihood::DiscretizedLogistic,
        VaeLikelihood::LogisticMixture => Likelihood::LogisticMixture {
            components: a.components as usize,
        },
    })
}

pub fn run(a: Args) -> Result<()> {
    let likelihood = likelihood(&a)?;
    let (train, held) = a.common.data.split()?;
    let arch = match a.arch {
        VaeArch::Mlp => Arch::Mlp,
        VaeArch::Conv => Arch::Conv,
        VaeArch::Codec => Arch::Codec,
    };
    let config = VaeConfig {
        arch,
        image_shape: train.item_shape(),
        hidden: a
            .hidden
            .unwrap_or(if arch == Arch::Mlp { 400 } else { 256 }),
        latent: a.latent,
        widths: a.widths.clone(),
        likelihood,
    };
    let model = super::args::for_training(|| Vae::new(config, a.seed))?;
    // On --resume the checkpoint's weights win; --init is for a new run.
    if let (Some(init), false) = (&a.init, a.common.run.resume) {
        deepgen_nn::checkpoint::load(&model, init, true)?;
        super::sample::check_finite(&model, init)?;
    }
    let run = a
        .common
        .run_config(&a.out, a.epochs, TrainConfig::default().run);
    let tc = TrainConfig {
        run,
        step: a.common.step.config(),
        optimizer: a.common.optim.config(OptimizerConfig::default().betas),
        batch_size: a.batch_size,
        lr: a.lr,
        beta: a.beta,
        kl_warmup_epochs: a.kl_warmup,
        seed: a.seed,
    };
    println!(
        "training {} ({} parameters) on {} images ({}), {}",
        match arch {
            Arch::Mlp => "an MLP VAE",
            Arch::Conv => "a convolutional VAE",
            Arch::Codec => "a codec",
        },
        model.num_parameters(),
        train.len(),
        a.common.data.record().dataset,
        count(a.epochs, "epoch")
    );
    let record = record(
        "train vae",
        &a,
        serde_json::json!({ "model": model.config, "data": a.common.data.record() }),
    );
    trainer::train_with_record(&model, train, held, &tc, &record, |m| {
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
    })?;
    println!("wrote {}", a.out.display());
    Ok(())
}
