//! The 2-D mode-coverage benchmark of VEEGAN (Srivastava et al., arXiv
//! 1705.07761) and PacGAN: train an MLP GAN on a mixture of Gaussians (a
//! ring of 8 or a 5x5 grid), draw 2,500 samples, and count
//!
//! - high-quality samples: within 3 standard deviations of their nearest
//!   mode centre;
//! - covered modes: modes that are the nearest centre of at least 20
//!   high-quality samples (of 2,500; the count scales with the sample size).

use std::sync::Arc;

use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_data::synthetic;
use deepgen_train::{OptimizerConfig, RunConfig, Schedule, Start, StepConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::trainer::{train, EpochMetrics, TrainConfig};
use crate::{Error, Generator, MlpDiscriminator, MlpGanConfig, MlpGenerator, Result};

/// What [`mode_coverage`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coverage {
    /// Modes with enough high-quality samples.
    pub modes: usize,
    pub total_modes: usize,
    /// Share of samples within 3 std of their nearest centre, in [0, 1].
    pub high_quality: f64,
}

/// Mode coverage of `samples` [n, 2] for a mixture with `centres` and
/// per-axis standard deviation `std`.
pub fn mode_coverage(samples: &Tensor<f32>, centres: &[(f32, f32)], std: f32) -> Result<Coverage> {
    let &[n, 2] = samples.shape() else {
        return Err(Error::Invalid {
            op: "mode_coverage",
            msg: format!("expected samples [n, 2], got {:?}", samples.shape()),
        });
    };
    if centres.is_empty() || n == 0 || std.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Err(Error::Invalid {
            op: "mode_coverage",
            msg: format!(
                "need samples, centres and a positive std; got {n} samples, {} centres, std {std}",
                centres.len()
            ),
        });
    }
    let min_count = (20 * n).div_ceil(2500);
    let mut counts = vec![0usize; centres.len()];
    let mut good = 0usize;
    for p in samples.contiguous().to_vec().chunks_exact(2) {
        let (mut best, mut dist) = (0, f64::INFINITY);
        for (k, c) in centres.iter().enumerate() {
            let dd = (p[0] as f64 - c.0 as f64).hypot(p[1] as f64 - c.1 as f64);
            if dd < dist {
                (best, dist) = (k, dd);
            }
        }
        // A NaN sample is never high quality.
        if dist <= 3.0 * std as f64 {
            good += 1;
            counts[best] += 1;
        }
    }
    Ok(Coverage {
        modes: counts.iter().filter(|&&c| c >= min_count).count(),
        total_modes: centres.len(),
        high_quality: good as f64 / n as f64,
    })
}

/// The benchmark's mixtures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mixture2d {
    /// 8 modes at angles k pi / 4 on radius 2, std 0.02.
    Ring8,
    /// 25 modes at {-4, -2, 0, 2, 4}^2, std 0.05.
    Grid25,
}

impl Mixture2d {
    pub fn centres(self) -> Vec<(f32, f32)> {
        match self {
            Mixture2d::Ring8 => synthetic::ring8_centres(),
            Mixture2d::Grid25 => synthetic::grid25_centres(),
        }
    }

    pub fn std(self) -> f32 {
        match self {
            Mixture2d::Ring8 => 0.02,
            Mixture2d::Grid25 => 0.05,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mixture2d::Ring8 => "ring8",
            Mixture2d::Grid25 => "grid25",
        }
    }

    /// `n` labelled points.
    pub fn dataset(self, n: usize, seed: u64) -> Result<deepgen_data::InMemory> {
        Ok(match self {
            Mixture2d::Ring8 => synthetic::ring8(n, seed)?,
            Mixture2d::Grid25 => synthetic::grid25(n, seed)?,
        })
    }
}

impl std::str::FromStr for Mixture2d {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ring8" | "ring" => Ok(Mixture2d::Ring8),
            "grid25" | "grid" => Ok(Mixture2d::Grid25),
            other => Err(Error::Invalid {
                op: "mixture_2d",
                msg: format!("unknown 2-D data set {other:?}; use ring8 or grid25"),
            }),
        }
    }
}

/// One benchmark run: the mixture, the nets, the training and the sample count.
#[derive(Debug, Clone)]
pub struct Bench2dConfig {
    pub mixture: Mixture2d,
    pub model: MlpGanConfig,
    /// `epochs`, `batch_size`, optimiser and loss settings; `seed` is set per run.
    pub train: TrainConfig,
    /// Generator steps in all, spread evenly over `train.epochs`.
    pub steps: usize,
    /// Samples drawn for the metric (2,500 in VEEGAN).
    pub samples: usize,
}

impl Bench2dConfig {
    /// The settings `deepgen eval gan-2d` uses for `mixture`. Both train
    /// with batch 256, Adam with betas (0.5, 0.999) decaying linearly to
    /// zero, R1 gamma 0.1 and the non-saturating loss for 12,000 steps.
    ///
    /// - ring8: latent 16, two hidden layers of 64, learning rate 2e-3.
    ///   Measured (release, seeds 0-4): 8/8 modes on every seed, 93.0% high
    ///   quality (90.6-94.1%), about 20 s a seed on 2 cores.
    /// - grid25: latent 2, two hidden layers of 128, learning rate 3e-3.
    ///   A small latent is what matters here (ring8's settings: about 7/25
    ///   modes, 20% high quality; 128-wide nets with lr 3e-3 but latent 16:
    ///   22/25 and 80% on seed 0). Measured (release, seeds 0-4, one
    ///   thread): 25/25 modes on every seed, 94.3% high quality
    ///   (93.4-95.6%), about 29 s a seed.
    pub fn for_mixture(mixture: Mixture2d) -> Self {
        let (latent, width, lr) = match mixture {
            Mixture2d::Ring8 => (16, 64, 2e-3),
            Mixture2d::Grid25 => (2, 128, 3e-3),
        };
        Bench2dConfig {
            mixture,
            model: MlpGanConfig {
                latent,
                g_hidden: vec![width, width],
                d_hidden: vec![width, width],
                ..Default::default()
            },
            train: TrainConfig {
                run: RunConfig {
                    epochs: 10,
                    progress: false,
                    images: false,
                    tensorboard: false,
                    // One run directory serves every seed in turn.
                    start: Start::Force,
                    ..TrainConfig::default().run
                },
                step: StepConfig {
                    schedule: Schedule::Linear,
                    ..Default::default()
                },
                batch_size: 256,
                lr,
                r1_gamma: Some(0.1),
                optimizer: OptimizerConfig::adam((0.5, 0.999)),
                ..Default::default()
            },
            steps: 12000,
            samples: 2500,
        }
    }
}

/// What a benchmark run gives: the metric, the samples [n, 2] it was
/// computed on, and the training metrics.
#[derive(Debug, Clone)]
pub struct Bench2dResult {
    pub coverage: Coverage,
    pub samples: Tensor<f32>,
    pub history: Vec<EpochMetrics>,
}

/// Trains an MLP GAN on `config.mixture` from `seed` (nets, data, noise and
/// shuffling all derive from it) and evaluates `config.samples` samples
/// from the generator (its EMA when `train.ema_decay` is set).
pub fn run(config: &Bench2dConfig, seed: u64) -> Result<Bench2dResult> {
    let tc = &config.train;
    if config.steps == 0 || tc.run.epochs == 0 || config.samples == 0 {
        return Err(Error::Invalid {
            op: "gan_2d",
            msg: "steps, epochs and samples must be positive".into(),
        });
    }
    let per_epoch = config.steps.div_ceil(tc.run.epochs);
    let n = per_epoch * tc.batch_size * tc.n_critic.max(1);
    let data = Arc::new(
        config
            .mixture
            .dataset(n, seed.wrapping_mul(31).wrapping_add(7))?,
    );
    let model = MlpGanConfig {
        data_shape: vec![2],
        num_classes: None,
        ..config.model.clone()
    };
    let g = MlpGenerator::<f32>::new(&model, seed.wrapping_mul(2))?;
    let d = MlpDiscriminator::<f32>::new(&model, seed.wrapping_mul(2).wrapping_add(1))?;
    let train_config = TrainConfig {
        seed,
        scale: Some(deepgen_data::Scale::Raw),
        ..tc.clone()
    };
    let trained = train(&g, &d, data, &train_config, |_| {})?;
    let sampler: &dyn Generator = match &trained.ema {
        Some(e) => e.as_ref(),
        None => &g,
    };
    let z = Tensor::randn(
        &[config.samples, model.latent],
        0.0,
        1.0,
        &mut ChaCha8Rng::seed_from_u64(seed ^ 0xe7a1),
    );
    let samples = no_grad(|| sampler.generate(&Var::constant(z), None))?.value();
    let coverage = mode_coverage(&samples, &config.mixture.centres(), config.mixture.std())?;
    Ok(Bench2dResult {
        coverage,
        samples,
        history: trained.history,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(p: &[(f32, f32)]) -> Tensor<f32> {
        Tensor::from_vec(p.iter().flat_map(|&(x, y)| [x, y]).collect(), &[p.len(), 2]).unwrap()
    }

    #[test]
    fn coverage_counts_near_samples_per_mode() {
        let centres = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)];
        let mut p = Vec::new();
        // Mode 0: 30 samples within 3 std (std 1); mode 1: 19 samples only;
        // mode 2: 25 samples, but all 3.5 std away.
        p.extend(std::iter::repeat_n((2.9, 0.0), 30));
        p.extend(std::iter::repeat_n((10.0, 1.0), 19));
        p.extend(std::iter::repeat_n((0.0, 13.5), 25));
        p.extend(std::iter::repeat_n((5.0, 5.0), 2426));
        let c = mode_coverage(&points(&p[..2500]), &centres, 1.0).unwrap();
        assert_eq!(c.modes, 1);
        assert_eq!(c.total_modes, 3);
        assert!((c.high_quality - 49.0 / 2500.0).abs() < 1e-12, "{c:?}");
    }

    #[test]
    fn the_data_itself_covers_every_mode_with_high_quality() {
        for m in [Mixture2d::Ring8, Mixture2d::Grid25] {
            let data = m.dataset(2500, 1).unwrap();
            let mut x = vec![0.0; 5000];
            use deepgen_data::Dataset;
            data.gather(
                &(0..2500).collect::<Vec<_>>(),
                deepgen_data::Scale::Raw,
                &mut x,
            )
            .unwrap();
            let c = mode_coverage(
                &Tensor::from_vec(x, &[2500, 2]).unwrap(),
                &m.centres(),
                m.std(),
            )
            .unwrap();
            assert_eq!(c.modes, c.total_modes, "{m:?}");
            assert!(c.high_quality > 0.98, "{m:?} {c:?}");
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let p = points(&[(0.0, 0.0)]);
        assert!(mode_coverage(&p, &[], 1.0).is_err());
        assert!(mode_coverage(&p, &[(0.0, 0.0)], 0.0).is_err());
        assert!(mode_coverage(&Tensor::zeros(&[3, 3]), &[(0.0, 0.0)], 1.0).is_err());
        let nan = points(&[(f32::NAN, 0.0)]);
        assert_eq!(
            mode_coverage(&nan, &[(0.0, 0.0)], 1.0)
                .unwrap()
                .high_quality,
            0.0
        );
        assert_eq!("grid25".parse::<Mixture2d>().unwrap(), Mixture2d::Grid25);
        assert!("moons".parse::<Mixture2d>().is_err());
    }
}
