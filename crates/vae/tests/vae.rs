//! The VAE learns, its bounds are ordered, bad losses stop training cleanly,
//! and its state dict is named as pytorch/examples' VAE.

use std::sync::Arc;

use deepgen_autograd::Tensor;
use deepgen_data::{synthetic, Dataset, Subset};
use deepgen_nn::Module;
use deepgen_train::{Error as TrainError, RunConfig, Start};
use deepgen_vae::trainer::{evaluate, train, TrainConfig};
use deepgen_vae::{iwae_bound, Error, Vae, VaeConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn digits(n: usize) -> (Arc<dyn Dataset>, Arc<dyn Dataset>) {
    let all: Arc<dyn Dataset> = Arc::new(synthetic::digits(n, 0).unwrap());
    let cut = n * 5 / 6;
    (
        Arc::new(Subset::new(all.clone(), 0..cut).unwrap()),
        Arc::new(Subset::new(all, cut..n).unwrap()),
    )
}

fn config(dir: &str, epochs: usize) -> TrainConfig {
    let out_dir = std::env::temp_dir().join(format!("deepgen-vae-{}-{dir}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    TrainConfig {
        run: RunConfig {
            epochs,
            out_dir,
            progress: false,
            ..TrainConfig::default().run
        },
        batch_size: 64,
        ..Default::default()
    }
}

fn small() -> VaeConfig {
    VaeConfig {
        hidden: 200,
        latent: 10,
        ..Default::default()
    }
}

#[test]
fn training_on_synthetic_digits_brings_the_held_out_loss_down() {
    let (train_set, held) = digits(2400);
    let model = Vae::new(small(), 1).unwrap();
    let before = evaluate(&model, held.clone(), 200, 0).unwrap().0;
    let cfg = config("learn", 4); // 4 x 32 = 128 steps
    let history = train(&model, train_set, Some(held), &cfg, |_| {}).unwrap();
    let after = history.last().unwrap().held_out.unwrap().0;
    // Measured: 549.6 nats before, 123.6 after 128 steps (seed 1); the bound leaves room for noise.
    assert!(
        before > 400.0 && after < 160.0,
        "held-out loss {before} -> {after}"
    );
    for f in [
        "metrics.csv",
        "loss.png",
        "config.json",
        "samples.png",
        "reconstructions.png",
        "model.safetensors",
        "checkpoints/last",
        "checkpoints/epoch-0004/optimizer_model.safetensors",
        "checkpoints/epoch-0004/trainer.safetensors",
    ] {
        assert!(cfg.run.out_dir.join(f).exists(), "{f}");
    }
    let csv = std::fs::read_to_string(cfg.run.out_dir.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    let last: Vec<f64> = csv
        .lines()
        .last()
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert!((last[4] - after).abs() < 1e-9);
}

#[test]
fn the_iwae_bound_is_at_most_the_negative_elbo() {
    let (train_set, held) = digits(1200);
    let model = Vae::new(small(), 2).unwrap();
    train(&model, train_set, None, &config("iwae", 2), |_| {}).unwrap();
    let elbo = evaluate(&model, held.clone(), 200, 3).unwrap().0;
    let mut x = vec![0.0; held.len() * 784];
    held.gather(
        &(0..held.len()).collect::<Vec<_>>(),
        deepgen_data::Scale::ZeroOne,
        &mut x,
    )
    .unwrap();
    let x = Tensor::from_vec(x, &[held.len(), 1, 28, 28]).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let iwae: Vec<f64> = iwae_bound(&model, &x, 50, &mut rng).unwrap();
    let mean = iwae.iter().sum::<f64>() / iwae.len() as f64;
    assert!(
        mean < elbo,
        "IWAE {mean} should be below the negative ELBO {elbo}"
    );
    let k1: f64 = iwae_bound(&model, &x, 1, &mut rng)
        .unwrap()
        .iter()
        .sum::<f64>()
        / iwae.len() as f64;
    assert!(mean < k1, "k = 50 ({mean}) tighter than k = 1 ({k1})");
}

#[test]
fn a_discretized_logistic_decoder_bounds_8_bit_levels() {
    use deepgen_autograd::Var;
    use deepgen_vae::{Arch, Likelihood};
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let levels: Vec<f32> = (0..3 * 784)
        .map(|i| ((i * 37) % 256) as f32 / 255.0)
        .collect();
    let x = Tensor::from_vec(levels, &[3, 1, 28, 28]).unwrap();
    for arch in [Arch::Mlp, Arch::Conv] {
        let config = VaeConfig {
            arch,
            hidden: 32,
            latent: 4,
            likelihood: Likelihood::DiscretizedLogistic,
            ..VaeConfig::conv(&[1, 28, 28], 4)
        };
        let model = Vae::<f32>::new(config, 0).unwrap();
        let z = Var::constant(Tensor::zeros(&[3, 4]));
        let decoded = model.decode(&z).unwrap();
        // Means and log-scales: twice the channels; the mean image has one.
        assert_eq!(decoded.shape(), vec![3, 2, 28, 28], "{arch:?}");
        let mean = model.mean(&decoded).value().to_vec();
        assert!(mean.iter().all(|&m| (0.0..=1.0).contains(&m)));
        for b in iwae_bound(&model, &x, 20, &mut rng).unwrap() {
            // log 256 nats per pixel is the uniform code's rate: an
            // untrained model is near it, and never infinite.
            assert!(
                b.is_finite() && b > 0.0 && b < 784.0 * 256f64.ln() * 1.5,
                "{b}"
            );
        }
    }
}

#[test]
fn a_nan_loss_stops_training_and_keeps_the_last_checkpoint() {
    let (train_set, _) = digits(600);
    let model = Vae::new(small(), 3).unwrap();
    let cfg = config("nan", 2);
    let (_, w) = model
        .named_parameters()
        .into_iter()
        .find(|(n, _)| n == "fc4.weight")
        .unwrap();
    let mut saved = None;
    // After the first epoch's checkpoint, the weights go bad.
    let err = train(&model, train_set, None, &cfg, |_| {
        saved = Some(std::fs::read(cfg.run.out_dir.join("model.safetensors")).unwrap());
        w.set_value(deepgen_kernels::map(&w.value(), |_| f32::NAN))
            .unwrap();
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Train(TrainError::NonFinite {
                epoch: Some(1),
                batch: Some(0),
                kept: Some(_),
                ..
            })
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("at epoch 2, batch 1"), "{message}");
    assert!(
        message.contains("last good checkpoint is kept"),
        "{message}"
    );
    assert_eq!(
        std::fs::read(cfg.run.out_dir.join("model.safetensors")).unwrap(),
        saved.unwrap()
    );
    let last = std::fs::read_to_string(cfg.run.out_dir.join("checkpoints/last")).unwrap();
    assert_eq!(last.trim(), "epoch-0001");
}

#[test]
fn state_dict_names_are_those_of_pytorch_examples_vae() {
    let model: Vae = Vae::new(VaeConfig::default(), 0).unwrap();
    let names: Vec<(String, Vec<usize>)> = model
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.shape()))
        .collect();
    let want = [
        ("fc1.weight", vec![400, 784]),
        ("fc1.bias", vec![400]),
        ("fc21.weight", vec![20, 400]),
        ("fc21.bias", vec![20]),
        ("fc22.weight", vec![20, 400]),
        ("fc22.bias", vec![20]),
        ("fc3.weight", vec![400, 20]),
        ("fc3.bias", vec![400]),
        ("fc4.weight", vec![784, 400]),
        ("fc4.bias", vec![784]),
    ];
    assert_eq!(names, want.map(|(n, s)| (n.to_string(), s)));
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one() {
    let (train_set, held) = digits(600);
    let straight = Vae::new(small(), 5).unwrap();
    let full = train(
        &straight,
        train_set.clone(),
        Some(held.clone()),
        &config("straight", 3),
        |_| {},
    )
    .unwrap();

    let cfg = config("resumed", 1);
    let first = Vae::new(small(), 5).unwrap();
    train(&first, train_set.clone(), Some(held.clone()), &cfg, |_| {}).unwrap();
    // A fresh process would build a fresh model; resume fills it from disk.
    let resumed = Vae::new(small(), 99).unwrap();
    let rest = train(
        &resumed,
        train_set,
        Some(held),
        &TrainConfig {
            run: RunConfig {
                epochs: 3,
                start: Start::Resume,
                ..cfg.run.clone()
            },
            ..cfg
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(rest.len(), 2);
    for (a, b) in full[1..].iter().zip(&rest) {
        assert_eq!(
            (a.epoch, a.train_loss, a.held_out),
            (b.epoch, b.train_loss, b.held_out)
        );
    }
    let values = |m: &Vae| {
        m.parameters()
            .iter()
            .map(|p| p.value().to_vec())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        values(&straight),
        values(&resumed),
        "bit-identical parameters"
    );
}
