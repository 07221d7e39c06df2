//! The convolutional VAE, the Gaussian decoders, configs inside checkpoints,
//! the manifold grid, and a VAE trained in PyTorch loading here.

use deepgen_nn::Forward;
use std::path::PathBuf;
use std::sync::Arc;

use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_data::{synthetic, Dataset, Subset};
use deepgen_nn::checkpoint::load_tensors;
use deepgen_nn::Module;
use deepgen_train::RunConfig;
use deepgen_vae::trainer::{evaluate, train, TrainConfig};
use deepgen_vae::{elbo, generate, Arch, Likelihood, Vae, VaeConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn out_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("deepgen-vae-models-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn digits(n: usize) -> (Arc<dyn Dataset>, Arc<dyn Dataset>) {
    let all: Arc<dyn Dataset> = Arc::new(synthetic::digits(n, 0).unwrap());
    let cut = n * 5 / 6;
    (
        Arc::new(Subset::new(all.clone(), 0..cut).unwrap()),
        Arc::new(Subset::new(all, cut..n).unwrap()),
    )
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_vec(), b.to_vec());
    assert_eq!(a.len(), b.len());
    let num: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

#[test]
fn a_vae_trained_in_pytorch_loads_and_agrees() {
    // tests/fixtures/make_pytorch_vae.py wrote both files.
    let model = Vae::from_checkpoint(&fixture("pytorch_vae.safetensors")).unwrap();
    assert_eq!((model.config.hidden, model.latent_dim()), (64, 8));
    let (expected, _) = load_tensors(&fixture("pytorch_vae_expected.safetensors")).unwrap();
    let get = |name: &str| {
        expected
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .to_float::<f32>()
            .unwrap()
    };
    let x = Var::constant(get("x"));
    let (mu, logvar) = no_grad(|| model.encode(&x)).unwrap();
    assert!(max_rel(&mu.value(), &get("mu")) < 1e-5);
    assert!(max_rel(&logvar.value(), &get("logvar")) < 1e-5);
    let recon = no_grad(|| model.forward(&x)).unwrap().value();
    assert!(max_rel(&recon, &get("recon")) < 1e-5);
    let e = no_grad(|| elbo(&model, &x, &Var::constant(get("eps")), 1.0)).unwrap();
    let torch_loss = get("loss").to_vec()[0] as f64;
    let ours = e.loss.item().unwrap() as f64;
    assert!(
        (ours - torch_loss).abs() < 1e-3 * torch_loss,
        "{ours} vs PyTorch's {torch_loss}"
    );
}

#[test]
fn the_conv_vae_has_the_documented_shapes_for_gray_and_rgb() {
    for (shape, names) in [
        (
            vec![1, 28, 28],
            [
                ("encoder.0.weight", vec![32, 1, 4, 4]),
                ("encoder.5.weight", vec![256, 64 * 7 * 7]),
            ],
        ),
        (
            vec![3, 32, 32],
            [
                ("encoder.0.weight", vec![32, 3, 4, 4]),
                ("encoder.5.weight", vec![256, 64 * 8 * 8]),
            ],
        ),
    ] {
        let model: Vae = Vae::new(VaeConfig::conv(&shape, 16), 0).unwrap();
        let params: Vec<(String, Vec<usize>)> = model
            .named_parameters()
            .into_iter()
            .map(|(n, p)| (n, p.shape()))
            .collect();
        for (name, want) in names {
            assert!(
                params.contains(&(name.to_string(), want.clone())),
                "{name} {want:?} in {params:?}"
            );
        }
        assert!(params.iter().any(|(n, _)| n == "fc_mu.weight"));
        let mut batch = vec![5];
        batch.extend(&shape);
        let x = Var::constant(Tensor::full(&batch, 0.5));
        let (mu, logvar) = model.encode(&x).unwrap();
        assert_eq!((mu.shape(), logvar.shape()), (vec![5, 16], vec![5, 16]));
        assert_eq!(model.decode(&mu).unwrap().shape(), batch);
    }
    let err = Vae::<f32>::new(VaeConfig::conv(&[1, 30, 30], 8), 0)
        .err()
        .unwrap();
    assert!(err.to_string().contains("divisible"), "{err}");
}

#[test]
fn the_conv_vae_learns_synthetic_digits() {
    let (train_set, held) = digits(1200);
    let model = Vae::new(VaeConfig::conv(&[1, 28, 28], 10), 1).unwrap();
    let before = evaluate(&model, held.clone(), 200, 0).unwrap().0;
    let cfg = TrainConfig {
        run: RunConfig {
            epochs: 2,
            out_dir: out_dir("conv"),
            progress: false,
            images: false,
            ..TrainConfig::default().run
        },
        batch_size: 64,
        ..Default::default()
    };
    let history = train(&model, train_set, Some(held), &cfg, |_| {}).unwrap();
    let after = history.last().unwrap().held_out.unwrap().0;
    // Measured: 549 nats before, 175 after 32 steps (seed 1).
    assert!(
        before > 400.0 && after < 250.0,
        "held-out loss {before} -> {after}"
    );
}

#[test]
fn gaussian_decoders_give_the_gaussian_log_likelihood() {
    let x = Var::constant(Tensor::from_vec(vec![0.0f64, 0.5, 1.0, 0.25], &[1, 1, 2, 2]).unwrap());
    let mean = Var::constant(Tensor::from_vec(vec![0.1f64, 0.5, 0.7, 0.0], &[1, 1, 2, 2]).unwrap());
    let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    let config = |likelihood| VaeConfig {
        image_shape: vec![1, 2, 2],
        hidden: 3,
        latent: 2,
        likelihood,
        ..Default::default()
    };
    let fixed: Vae<f64> = Vae::new(config(Likelihood::Gaussian { std: 0.5 }), 0).unwrap();
    let nll = fixed.pixel_nll(&mean, &x).unwrap().value().to_vec();
    for (i, v) in nll.iter().enumerate() {
        let d = [0.1, 0.0, -0.3, -0.25][i];
        let want = d * d / (2.0 * 0.25) + 0.5f64.ln() + half_log_2pi;
        assert!((v - want).abs() < 1e-12, "{v} vs {want}");
    }
    let learned: Vae<f64> = Vae::new(config(Likelihood::GaussianLearned), 0).unwrap();
    let log_var = learned.decoder_log_var.clone().unwrap();
    log_var
        .set_value(Tensor::from_vec(vec![-1.0], &[1]).unwrap())
        .unwrap();
    let nll = learned.pixel_nll(&mean, &x).unwrap();
    let want: f64 = [0.1f64, 0.0, -0.3, -0.25]
        .iter()
        .map(|d| 0.5 * (d * d * 1f64.exp() - 1.0) + half_log_2pi)
        .sum();
    assert!((nll.value().to_vec().iter().sum::<f64>() - want).abs() < 1e-12);
    // d/d log_var of 0.5 (d^2 exp(-v) + v) = 0.5 (1 - d^2 exp(-v)) per pixel.
    let g = deepgen_autograd::grad(
        &[nll.sum_all().unwrap()],
        std::slice::from_ref(&log_var),
        false,
    )
    .unwrap()
    .remove(0)
    .value()
    .to_vec()[0];
    let want_g: f64 = [0.1f64, 0.0, -0.3, -0.25]
        .iter()
        .map(|d| 0.5 * (1.0 - d * d * 1f64.exp()))
        .sum();
    assert!((g - want_g).abs() < 1e-12, "{g} vs {want_g}");
    assert!(Vae::<f32>::new(config(Likelihood::Gaussian { std: 0.0 }), 0).is_err());
}

#[test]
fn a_learned_variance_shrinks_as_the_decoder_learns() {
    let (train_set, held) = digits(600);
    let model = Vae::new(
        VaeConfig {
            hidden: 128,
            latent: 8,
            likelihood: Likelihood::GaussianLearned,
            ..Default::default()
        },
        2,
    )
    .unwrap();
    let cfg = TrainConfig {
        run: RunConfig {
            epochs: 3,
            out_dir: out_dir("learned"),
            progress: false,
            images: false,
            ..TrainConfig::default().run
        },
        batch_size: 32,
        ..Default::default()
    };
    let history = train(&model, train_set, Some(held), &cfg, |_| {}).unwrap();
    let log_var = model.decoder_log_var.as_ref().unwrap().value().to_vec()[0];
    // Pixels are in [0, 1], so the fitted variance lies far below the
    // initial 1; Adam moves it about lr per step, so after 48 steps it has
    // only begun to fall (measured: -0.048).
    assert!(log_var < -0.03, "log variance {log_var}");
    let (first, last) = (history[0].train_loss, history[2].train_loss);
    assert!(last < first, "{first} -> {last}");
}

#[test]
fn checkpoints_carry_the_config_so_any_model_reloads() {
    let dir = out_dir("config");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    let config = VaeConfig {
        arch: Arch::Conv,
        image_shape: vec![3, 32, 32],
        hidden: 32,
        latent: 4,
        widths: vec![8, 16, 16],
        likelihood: Likelihood::GaussianLearned,
    };
    let model: Vae = Vae::new(config.clone(), 7).unwrap();
    model
        .decoder_log_var
        .as_ref()
        .unwrap()
        .set_value(Tensor::full(&[1], -2.0))
        .unwrap();
    model.save(&path).unwrap();
    let back = Vae::from_checkpoint(&path).unwrap();
    assert_eq!(back.config, config);
    let x = Var::constant(Tensor::randn(
        &[2, 3, 32, 32],
        0.5,
        0.2,
        &mut ChaCha8Rng::seed_from_u64(0),
    ));
    let (a, b) = no_grad(|| (model.forward(&x).unwrap(), back.forward(&x).unwrap()));
    assert_eq!(a.value().to_vec(), b.value().to_vec());
    assert_eq!(back.decoder_log_var.unwrap().value().to_vec(), vec![-2.0]);
}

#[test]
fn the_manifold_covers_a_two_dimensional_latent() {
    let model: Vae = Vae::new(
        VaeConfig {
            hidden: 16,
            latent: 2,
            ..Default::default()
        },
        0,
    )
    .unwrap();
    let grid = generate::manifold(&model, 5).unwrap();
    assert_eq!(grid.shape(), &[25, 1, 28, 28]);
    assert!(grid.to_vec().iter().all(|v| (0.0..=1.0).contains(v)));
    let wide: Vae = Vae::new(VaeConfig::default(), 0).unwrap();
    assert!(generate::manifold(&wide, 5).is_err());
}

/// The first `n` images of `data` in [0, 1], [n, 1, 28, 28].
fn first_images(data: &dyn Dataset, n: usize) -> Tensor {
    let mut values = vec![0.0; n * 784];
    let all: Vec<usize> = (0..n).collect();
    data.gather(&all, deepgen_data::Scale::ZeroOne, &mut values)
        .unwrap();
    Tensor::from_vec(values, &[n, 1, 28, 28]).unwrap()
}

fn codec(quality: u8) -> Vae {
    let config = VaeConfig {
        arch: Arch::Codec,
        image_shape: vec![1, 28, 28],
        latent: 4,
        widths: vec![16, 16],
        likelihood: Likelihood::Gaussian {
            std: deepgen_vae::codec::quality_std(quality).unwrap(),
        },
        ..Default::default()
    };
    Vae::new(config, 2).unwrap()
}

#[test]
fn a_codecs_latent_is_a_grid_rounded_to_integers() {
    let model = codec(4);
    // 4 channels of 7x7 for 28x28 images.
    assert_eq!(model.latent_dim(), 4 * 7 * 7);
    let names: Vec<String> = model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.contains(&"prior_loc".to_string()) && names.contains(&"prior_log_scale".to_string())
    );
    let (train_set, _) = digits(12);
    let x = first_images(train_set.as_ref(), 6);
    let z = no_grad(|| model.latent_point(&Var::constant(x.clone()))).unwrap();
    assert_eq!(z.shape(), [6, 196]);
    assert!(z.value().to_vec().iter().all(|v| v.fract() == 0.0));
    // Reconstructing decodes the rounded latent: the same as decoding it.
    let recon = generate::reconstruct(&model, &x).unwrap();
    let decoded = no_grad(|| model.mean(&model.decode(&z).unwrap())).value();
    assert_eq!(recon.to_vec(), decoded.to_vec());
    // Samples come from the learned prior, quantised.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let s = model.prior_sample(5, &mut rng);
    assert!(s
        .to_vec()
        .iter()
        .all(|v| v.fract() == 0.0 && v.abs() < 30.0));
    assert_eq!(
        generate::sample(&model, 5, &mut rng).unwrap().shape(),
        [5, 1, 28, 28]
    );
}

#[test]
fn a_codecs_kl_term_is_the_rate_and_trains_the_prior() {
    let model = codec(4);
    let (train_set, _) = digits(12);
    let x = first_images(train_set.as_ref(), 8);
    let x = Var::constant(x);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let noise = model.noise(8, &mut rng);
    let v = noise.to_vec();
    assert!(
        v.iter().all(|e| (-0.5..0.5).contains(e)),
        "uniform noise in [-1/2, 1/2)"
    );
    let out = elbo(&model, &x, &Var::constant(noise.clone()), 1.0).unwrap();
    // The KL term is -log p(y + u) under the prior, per image.
    let (y, _) = model.encode(&x).unwrap();
    let rate = model.rate(&y.add(&Var::constant(noise)).unwrap()).unwrap();
    let per_image = rate.item().unwrap() as f64 / 8.0;
    assert!(
        (out.kl - per_image).abs() < 1e-3 * per_image,
        "{} vs {per_image}",
        out.kl
    );
    assert!(out.kl > 0.0);
    out.loss.backward().unwrap();
    for p in [&model.prior_loc, &model.prior_log_scale] {
        let g = p
            .as_ref()
            .unwrap()
            .grad()
            .expect("the prior gets a gradient");
        assert!(g.to_vec().iter().any(|&v| v != 0.0));
    }
    // A codec has no likelihood bound; a plain VAE has no learned prior.
    assert!(deepgen_vae::iwae_bound(&model, &x.value(), 2, &mut rng).is_err());
    let vae: Vae = Vae::new(VaeConfig::default(), 0).unwrap();
    assert!(vae.rate(&Var::constant(Tensor::zeros(&[1, 20]))).is_err());
}

#[test]
fn the_quality_trades_rate_for_distortion() {
    // CompressAI's lambdas as decoder stds: std^2 = 1 / (2 lambda 255^2 ln 2).
    let std = |q| deepgen_vae::codec::quality_std(q).unwrap();
    assert!((std(4) - 0.029_21).abs() < 1e-4, "{}", std(4));
    assert!((1..8).all(|q| std(q + 1) < std(q)));
    assert!(
        deepgen_vae::codec::quality_std(0).is_err() && deepgen_vae::codec::quality_std(9).is_err()
    );
    // Trained briefly at two qualities, the better one spends more bits
    // and reconstructs better.
    let (train_set, held) = digits(600);
    let held_x = first_images(held.as_ref(), held.len());
    let mut points = Vec::new();
    for q in [1, 8] {
        let model = codec(q);
        let cfg = TrainConfig {
            run: RunConfig {
                epochs: 3,
                out_dir: out_dir(&format!("codec-{q}")),
                progress: false,
                images: false,
                ..TrainConfig::default().run
            },
            batch_size: 32,
            ..Default::default()
        };
        train(&model, train_set.clone(), None, &cfg, |_| {}).unwrap();
        points.push(deepgen_vae::codec_rate_distortion(&model, &held_x).unwrap());
    }
    let (low, high) = (points[0], points[1]);
    assert!(
        high.bits_per_image > low.bits_per_image && high.psnr > low.psnr,
        "quality 1: {low:?}; quality 8: {high:?}"
    );
}
