//! `deepgen eval gan-2d`: the 2-D mode-coverage benchmark.

use std::path::PathBuf;

use deepgen_cli::Result;
use deepgen_gan::eval2d::{self, Bench2dConfig, Mixture2d};
use serde::Serialize;

use super::args::{at_least_one, count, non_negative, positive};
use super::train_gan::LossArg;

/// The 2-D mode-coverage benchmark (VEEGAN): trains the MLP GAN on ring8
/// or grid25 for each seed and reports modes covered and the share of
/// high-quality samples.
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Args {
    /// The mixture
    #[arg(long, value_enum, default_value = "ring8")]
    dataset: MixtureArg,
    /// Runs with seeds 0..N
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// Generator steps [default: the mixture's tuned setting, 12000]
    #[arg(long, value_parser = at_least_one)]
    steps: Option<usize>,
    /// Points per batch [default: 256]
    #[arg(long, value_parser = at_least_one)]
    batch_size: Option<usize>,
    /// Learning rate of both nets [default: ring8 2e-3, grid25 3e-3]
    #[arg(long, value_parser = positive)]
    lr: Option<f64>,
    /// The adversarial loss [default: ns]
    #[arg(long, value_enum)]
    loss: Option<LossArg>,
    /// R1 penalty gamma (0: none) [default: 0.1]
    #[arg(long, value_parser = non_negative)]
    r1_gamma: Option<f64>,
    /// Latent dimensions [default: ring8 16, grid25 2]
    #[arg(long, value_parser = at_least_one)]
    latent: Option<usize>,
    /// Hidden widths of both nets, e.g. 128,128 [default: ring8 64,64; grid25 128,128]
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// Discriminator steps per generator step [default: 1]
    #[arg(long, value_parser = at_least_one)]
    n_critic: Option<usize>,
    /// Folder for the scatter plots (real vs generated, one per seed)
    #[arg(long, default_value = "runs/gan-2d")]
    out: PathBuf,
}

/// The 2-D mixtures.
#[derive(Clone, Copy, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MixtureArg {
    /// 8 Gaussians on a ring of radius 2, std 0.02
    Ring8,
    /// 5x5 Gaussians at {-4, -2, 0, 2, 4}^2, std 0.05
    Grid25,
}

pub fn run(a: Args) -> Result<()> {
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
    config.train.run.out_dir = a.out.join("run");
    config.train.run.progress = true;
    std::fs::create_dir_all(&a.out).map_err(|source| deepgen_data::Error::Io {
        path: a.out.clone(),
        source,
    })?;
    let hidden: Vec<String> = config
        .model
        .g_hidden
        .iter()
        .map(|h| h.to_string())
        .collect();
    println!(
        "{}: {}, {} steps, batch {}, lr {}, {} loss, R1 {}, latent {}, hidden {}",
        mixture.name(),
        count(a.seeds as usize, "seed"),
        config.steps,
        config.train.batch_size,
        config.train.lr,
        config.train.loss.name(),
        config
            .train
            .r1_gamma
            .map_or("off".to_string(), |g| g.to_string()),
        config.model.latent,
        hidden.join("x")
    );
    println!("| seed | modes | high quality | seconds |");
    println!("| --- | --- | --- | --- |");
    let real = mixture.dataset(2500, 12345)?;
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
        eprintln!("seed {seed}:");
        let r = eval2d::run(&config, seed)?;
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
        use deepgen_train::plot::{scatter_chart, Series};
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
        "mean over {}: {:.2} modes, {:.1}% high quality; scatter plots in {}",
        count(a.seeds as usize, "seed"),
        mean(&modes),
        100.0 * mean(&quality),
        a.out.display()
    );
    Ok(())
}
