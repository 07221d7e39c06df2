//! The trainer: a generator step leaves the discriminator untouched, resumed
//! runs equal uninterrupted ones bit for bit, bad losses stop training and
//! keep the last checkpoint, and a short run on ring8 finds most modes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deepgen_autograd::{Tensor, Var};
use deepgen_data::{synthetic, Dataset, InMemory, Pixels};
use deepgen_gan::eval2d::{run, Bench2dConfig, Mixture2d};
use deepgen_gan::trainer::{generator_step, train, TrainConfig};
use deepgen_gan::{
    DcganConfig, DcganDiscriminator, DcganGenerator, Discriminator, Error, GanLoss, Generator,
    MlpDiscriminator, MlpGanConfig, MlpGenerator,
};
use deepgen_nn::checkpoint::{state_dict, TensorData};
use deepgen_nn::Module;
use deepgen_optim::{Adam, AdamConfig};
use deepgen_train::{Error as TrainError, RunConfig, Start, StepConfig, Updater};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("deepgen-gan-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn tiny_dcgan(classes: Option<usize>) -> DcganConfig {
    DcganConfig {
        latent: 8,
        width: 4,
        num_classes: classes,
        embed_dim: 4,
        ..Default::default()
    }
}

fn run_config(dir: PathBuf, epochs: usize) -> RunConfig {
    RunConfig {
        epochs,
        out_dir: dir,
        progress: false,
        ..TrainConfig::default().run
    }
}

fn quiet(dir: PathBuf, epochs: usize, batch_size: usize) -> TrainConfig {
    TrainConfig {
        run: run_config(dir, epochs),
        batch_size,
        ..Default::default()
    }
}

/// The files of the checkpoint `checkpoints/last` names, and the top-level ones.
fn last_checkpoint(dir: &Path) -> PathBuf {
    let name = std::fs::read_to_string(dir.join("checkpoints/last")).unwrap();
    dir.join("checkpoints").join(name.trim())
}

fn bits(m: &dyn Module<f32>) -> Vec<(String, TensorData)> {
    state_dict(m)
}

#[test]
fn a_generator_step_leaves_the_discriminator_bit_identical() {
    let cfg = tiny_dcgan(None);
    let g = DcganGenerator::<f32>::new(&cfg, 1).unwrap();
    let d = DcganDiscriminator::<f32>::new(&cfg, 2).unwrap();
    g.train();
    d.train();
    let before_d = bits(&d);
    let before_g = bits(&g);
    let adam = Adam::new(g.parameters(), AdamConfig::default()).unwrap();
    let mut opt = Updater::new("generator", Box::new(adam), &StepConfig::default(), 1, 1).unwrap();
    let z = Tensor::randn(&[6, 8], 0.0, 1.0, &mut ChaCha8Rng::seed_from_u64(0));
    let fake = g.generate(&Var::constant(z), None).unwrap();
    generator_step(&d, &mut opt, fake, None, GanLoss::NonSaturating).unwrap();
    // Parameters, BatchNorm running statistics and num_batches_tracked.
    assert_eq!(bits(&d), before_d);
    assert!(
        d.parameters().iter().all(|p| p.grad().is_none()),
        "no gradient reaches D"
    );
    assert_ne!(bits(&g), before_g, "the generator moved");
}

fn files(dir: &Path, names: &[&str]) -> Vec<Vec<u8>> {
    names
        .iter()
        .map(|n| std::fs::read(dir.join(n)).unwrap_or_else(|e| panic!("{n}: {e}")))
        .collect()
}

/// The columns of metrics.csv but the timing (the last two).
fn metrics(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.rsplitn(3, ',').last().unwrap().to_string())
        .collect()
}

fn resume_equals_uninterrupted(
    name: &str,
    make: &dyn Fn() -> (Box<dyn Generator>, Box<dyn Discriminator>),
    data: Arc<dyn Dataset>,
    config: &dyn Fn(PathBuf, usize) -> TrainConfig,
    checkpoint: &[&str],
) {
    let (a, b) = (out_dir(&format!("{name}-a")), out_dir(&format!("{name}-b")));
    let (g, d) = make();
    train(
        g.as_ref(),
        d.as_ref(),
        data.clone(),
        &config(a.clone(), 2),
        |_| {},
    )
    .unwrap();
    // A fresh process would build fresh nets: resume must not rely on memory.
    let (g, d) = make();
    let mut resumed = config(a.clone(), 3);
    resumed.run.start = Start::Resume;
    let h = train(g.as_ref(), d.as_ref(), data.clone(), &resumed, |_| {}).unwrap();
    assert_eq!(h.history.len(), 1);
    let (g, d) = make();
    train(g.as_ref(), d.as_ref(), data, &config(b.clone(), 3), |_| {}).unwrap();
    let (ca, cb) = (last_checkpoint(&a), last_checkpoint(&b));
    for name in checkpoint {
        assert!(
            files(&ca, &[name]) == files(&cb, &[name]),
            "{name} differs between the resumed and the uninterrupted run"
        );
    }
    let top = ["generator.safetensors", "discriminator.safetensors"];
    assert_eq!(files(&a, &top), files(&b, &top));
    assert_eq!(metrics(&a), metrics(&b));
    assert_eq!(metrics(&a).len(), 4);
}

#[test]
fn a_resumed_conditional_dcgan_with_ema_equals_an_uninterrupted_run() {
    let data: Arc<dyn Dataset> = Arc::new(synthetic::digits(64, 0).unwrap());
    let cfg = tiny_dcgan(Some(10));
    let make = || -> (Box<dyn Generator>, Box<dyn Discriminator>) {
        (
            Box::new(DcganGenerator::new(&cfg, 1).unwrap()),
            Box::new(DcganDiscriminator::new(&cfg, 2).unwrap()),
        )
    };
    let config = |dir, epochs| TrainConfig {
        ema_decay: Some(0.9),
        ..quiet(dir, epochs, 16)
    };
    let names = [
        "generator.safetensors",
        "discriminator.safetensors",
        "generator_ema.safetensors",
        "optimizer_generator.safetensors",
        "optimizer_discriminator.safetensors",
        "trainer.safetensors",
    ];
    resume_equals_uninterrupted("dcgan", &make, data, &config, &names);
}

#[test]
fn a_resumed_wgan_gp_with_r1_on_points_equals_an_uninterrupted_run() {
    let data: Arc<dyn Dataset> = Arc::new(synthetic::ring8(96, 0).unwrap());
    let cfg = MlpGanConfig {
        latent: 4,
        g_hidden: vec![8],
        d_hidden: vec![8],
        ..Default::default()
    };
    let make = || -> (Box<dyn Generator>, Box<dyn Discriminator>) {
        (
            Box::new(MlpGenerator::new(&cfg, 1).unwrap()),
            Box::new(MlpDiscriminator::new(&cfg, 2).unwrap()),
        )
    };
    let config = |dir, epochs| TrainConfig {
        run: run_config(dir, epochs),
        n_critic: 2,
        r1_gamma: Some(1.0),
        batch_size: 16,
        ..TrainConfig::wgan_gp()
    };
    let names = [
        "generator.safetensors",
        "discriminator.safetensors",
        "optimizer_generator.safetensors",
        "optimizer_discriminator.safetensors",
    ];
    resume_equals_uninterrupted("wgan", &make, data, &config, &names);
}

#[test]
fn a_nan_loss_stops_training_and_keeps_the_last_checkpoint() {
    let data: Arc<dyn Dataset> = Arc::new(synthetic::ring8(64, 0).unwrap());
    let cfg = MlpGanConfig {
        latent: 4,
        g_hidden: vec![8],
        d_hidden: vec![8],
        ..Default::default()
    };
    let (g, d) = (
        MlpGenerator::new(&cfg, 1).unwrap(),
        MlpDiscriminator::new(&cfg, 2).unwrap(),
    );
    let dir = out_dir("nan");
    train(&g, &d, data, &quiet(dir.clone(), 1, 16), |_| {}).unwrap();
    let names = [
        "generator.safetensors",
        "discriminator.safetensors",
        "checkpoints/last",
        "checkpoints/epoch-0001/optimizer_discriminator.safetensors",
        "metrics.csv",
    ];
    let saved = files(&dir, &names);
    // Continue the run for a second epoch on bad data.
    let mut config = quiet(dir.clone(), 2, 16);
    config.run.start = Start::Resume;

    // Poisoned data: one point is NaN.
    let mut pts = vec![0.5f32; 64 * 2];
    pts[37] = f32::NAN;
    let poisoned: Arc<dyn Dataset> = Arc::new(InMemory::new(Pixels::F32(pts), &[2], None).unwrap());
    let err = train(&g, &d, poisoned, &config, |_| {})
        .err()
        .expect("a NaN loss is an error");
    assert!(
        matches!(
            &err,
            Error::Train(TrainError::NonFinite {
                what,
                epoch: Some(1),
                kept: Some(_),
                ..
            }) if what == "discriminator loss"
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("at epoch 2, batch"), "{message}");
    assert!(
        message.contains("last good checkpoint is kept"),
        "{message}"
    );
    assert_eq!(files(&dir, &names), saved);

    // A generator whose weights overflowed.
    let w = &g.net.layers()[0].named_parameters()[0].1;
    w.set_value(Tensor::full(&w.shape(), f32::INFINITY))
        .unwrap();
    let data: Arc<dyn Dataset> = Arc::new(synthetic::ring8(64, 0).unwrap());
    let fresh = out_dir("inf");
    let err = train(&g, &d, data, &quiet(fresh.clone(), 1, 16), |_| {})
        .err()
        .expect("an infinite loss is an error");
    assert!(
        matches!(err, Error::Train(TrainError::NonFinite { .. })),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("no checkpoint had been written yet"),
        "{err}"
    );
    assert!(!fresh.join("checkpoints").exists());
}

#[test]
fn mismatched_nets_and_data_are_errors() {
    let data: Arc<dyn Dataset> = Arc::new(synthetic::ring8(64, 0).unwrap());
    let cfg = tiny_dcgan(None);
    let (g, d) = (
        DcganGenerator::new(&cfg, 1).unwrap(),
        DcganDiscriminator::new(&cfg, 2).unwrap(),
    );
    let config = quiet(out_dir("mismatch"), 1, 16);
    assert!(matches!(
        train(&g, &d, data.clone(), &config, |_| {}),
        Err(Error::Invalid { .. })
    ));
    let mlp = MlpGanConfig::default();
    let (g, d) = (
        MlpGenerator::new(&mlp, 1).unwrap(),
        MlpDiscriminator::new(&mlp, 2).unwrap(),
    );
    let few = TrainConfig {
        batch_size: 128,
        ..config.clone()
    };
    let mut resume = config;
    resume.run.start = Start::Resume;
    resume.run.out_dir = out_dir("no-checkpoint");
    assert!(
        train(&g, &d, data.clone(), &few, |_| {}).is_err(),
        "not one full batch"
    );
    assert!(
        train(&g, &d, data, &resume, |_| {}).is_err(),
        "nothing to resume"
    );
}

#[test]
fn a_short_ring8_run_covers_most_modes() {
    let mut cfg = Bench2dConfig::for_mixture(Mixture2d::Ring8);
    cfg.train.run.out_dir = out_dir("ring8");
    // Small nets and batches with a high learning rate, to stay fast in the
    // dev profile (release: 8/8 modes, 68% high quality on seeds 0-3).
    cfg.model.latent = 16;
    cfg.model.g_hidden = vec![64, 64];
    cfg.model.d_hidden = vec![64, 64];
    cfg.train.batch_size = 128;
    cfg.train.lr = 2e-3;
    cfg.steps = 2500;
    let r = run(&cfg, 0).unwrap();
    assert!(r.coverage.modes >= 6, "{:?}", r.coverage);
    assert_eq!(r.samples.shape(), [2500, 2]);
}
