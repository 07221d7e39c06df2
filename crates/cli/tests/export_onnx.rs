//! `deepgen export`: every model kind deepgen trains, exported to ONNX and
//! run by ONNX Runtime on random inputs, against deepgen's own outputs
//! (1e-5 relative or 1e-6 absolute), with `onnx.checker`'s full check.
//! Skipped (printing `SKIPPED`) without the Python packages onnx and
//! onnxruntime, unless `DEEPGEN_REQUIRE_ONNXRUNTIME=1` (CI).

use std::path::{Path, PathBuf};
use std::process::Command;

use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_gan::{DcganConfig, MlpGanConfig, NetSpec};
use deepgen_nn::Module;
use deepgen_onnx::check;
use deepgen_vae::{Arch, Likelihood, Vae, VaeConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    let dir = std::env::temp_dir().join(format!("deepgen-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

fn export(checkpoint: &Path, out: &Path, extra: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_deepgen"))
        .args(["export", "--checkpoint"])
        .arg(checkpoint)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "export {}: {text}",
        checkpoint.display()
    );
    text
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_vec().into_iter().map(f64::from).collect()
}

const N: usize = 3;

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, &mut ChaCha8Rng::seed_from_u64(seed))
}

/// Writes the case `name`: the exported file with deepgen's outputs.
fn case(dir: &Path, name: &str, inputs: &check::Tensors, outputs: &check::Tensors) {
    let onnx = dir.join(format!("{name}.onnx"));
    let bytes = std::fs::read(&onnx).unwrap();
    check::write_case(dir, name, &bytes, inputs, outputs).unwrap();
}

fn gan_case(dir: &Path, name: &str, spec: NetSpec) {
    let g = spec.generator(3).unwrap();
    let latent = g.latent_dim();
    // A few training-mode passes give BatchNorm running statistics that
    // are not the defaults.
    let labels: Option<Vec<usize>> = g
        .num_classes()
        .map(|k| (0..N).map(|i| (i * 7 + 1) % k).collect());
    for seed in 0..3 {
        let z = Var::constant(randn(&[8, latent], 100 + seed));
        let l8: Option<Vec<usize>> = g.num_classes().map(|k| (0..8).map(|i| i % k).collect());
        g.generate(&z, l8.as_deref()).unwrap();
    }
    let path = dir.join(format!("{name}.safetensors"));
    deepgen_gan::spec::save_net(g.as_module(), &spec, &path).unwrap();
    let text = export(&path, &dir.join(format!("{name}.onnx")), &[]);
    assert!(text.contains("gan-generator"), "{text}");
    let g = deepgen_gan::spec::try_load_generator(&path)
        .unwrap()
        .unwrap();
    g.as_module().set_training(false);
    let z = randn(&[N, latent], 9);
    let y = no_grad(|| g.generate(&Var::constant(z.clone()), labels.as_deref()))
        .unwrap()
        .value();
    let mut inputs = vec![("z", vec![N, latent], f64s(&z), false)];
    if let Some(l) = &labels {
        inputs.push((
            "label",
            vec![N],
            l.iter().map(|&v| v as f64).collect(),
            true,
        ));
    }
    let outputs = [("samples", y.shape().to_vec(), f64s(&y), false)];
    case(dir, name, &inputs, &outputs);
}

fn vae_cases(dir: &Path, name: &str, config: VaeConfig) {
    let model = Vae::<f32>::new(config, 5).unwrap();
    let path = dir.join(format!("{name}.safetensors"));
    model.save(&path).unwrap();
    let model = Vae::from_checkpoint(&path).unwrap();
    model.set_training(false);
    let latent = model.latent_dim();
    let z = randn(&[N, latent], 11);
    export(&path, &dir.join(format!("{name}-decoder.onnx")), &[]);
    let image = no_grad(|| {
        Ok::<_, deepgen_vae::Error>(model.mean(&model.decode(&Var::constant(z.clone()))?))
    })
    .unwrap()
    .value();
    let inputs = [("z", vec![N, latent], f64s(&z), false)];
    let outputs = [("image", image.shape().to_vec(), f64s(&image), false)];
    case(dir, &format!("{name}-decoder"), &inputs, &outputs);

    let mut shape = vec![N];
    shape.extend(model.image_shape());
    let x = Tensor::rand_uniform(&shape, 0.0, 1.0, &mut ChaCha8Rng::seed_from_u64(12));
    export(
        &path,
        &dir.join(format!("{name}-encoder.onnx")),
        &["--part", "encoder"],
    );
    let (mu, logvar) = no_grad(|| model.encode(&Var::constant(x.clone()))).unwrap();
    let (mu, logvar) = (mu.value(), logvar.value());
    let inputs = [("image", shape.clone(), f64s(&x), false)];
    let outputs = [
        ("mu", mu.shape().to_vec(), f64s(&mu), false),
        ("logvar", logvar.shape().to_vec(), f64s(&logvar), false),
    ];
    case(dir, &format!("{name}-encoder"), &inputs, &outputs);
}

fn classifier_case(dir: &Path) {
    let model = deepgen_cli::classifier::lenet(2).unwrap();
    let path = dir.join("classifier.safetensors");
    deepgen_nn::checkpoint::save(&model, &path).unwrap();
    export(&path, &dir.join("classifier.onnx"), &[]);
    model.set_training(false);
    let x = Tensor::rand_uniform(
        &[N, 1, 28, 28],
        0.0,
        1.0,
        &mut ChaCha8Rng::seed_from_u64(13),
    );
    let y = no_grad(|| deepgen_nn::Forward::forward(&model, &Var::constant(x.clone())))
        .unwrap()
        .value();
    let inputs = [("image", vec![N, 1, 28, 28], f64s(&x), false)];
    let outputs = [("logits", y.shape().to_vec(), f64s(&y), false)];
    case(dir, "classifier", &inputs, &outputs);
}

#[test]
fn every_model_kind_exports_and_matches_onnx_runtime() {
    if !check::available() {
        return;
    }
    let dir = temp_dir();
    let d = &dir.0;
    let mlp = |data_shape: Vec<usize>, num_classes| MlpGanConfig {
        data_shape,
        latent: 8,
        g_hidden: vec![32, 32],
        num_classes,
        embed_dim: 4,
        ..Default::default()
    };
    gan_case(d, "gan-mlp-points", NetSpec::Mlp(mlp(vec![2], None)));
    gan_case(
        d,
        "gan-mlp-digits-conditional",
        NetSpec::Mlp(mlp(vec![1, 28, 28], Some(10))),
    );
    for (size, channels, classes) in [
        (28, 1, None),
        (28, 1, Some(10)),
        (32, 3, None),
        (64, 3, None),
    ] {
        let config = DcganConfig {
            image_size: size,
            channels,
            latent: 16,
            width: 8,
            num_classes: classes,
            embed_dim: 5,
            ..Default::default()
        };
        let cond = if classes.is_some() {
            "-conditional"
        } else {
            ""
        };
        gan_case(d, &format!("gan-dcgan{size}{cond}"), NetSpec::Dcgan(config));
    }
    let base = VaeConfig {
        image_shape: vec![1, 28, 28],
        hidden: 32,
        latent: 4,
        ..Default::default()
    };
    vae_cases(
        d,
        "vae-mlp-bernoulli",
        VaeConfig {
            arch: Arch::Mlp,
            likelihood: Likelihood::Bernoulli,
            ..base.clone()
        },
    );
    vae_cases(
        d,
        "vae-mlp-logistic",
        VaeConfig {
            arch: Arch::Mlp,
            likelihood: Likelihood::DiscretizedLogistic,
            ..base.clone()
        },
    );
    vae_cases(
        d,
        "vae-conv-mixture",
        VaeConfig {
            arch: Arch::Conv,
            widths: vec![4, 8],
            likelihood: Likelihood::LogisticMixture { components: 3 },
            ..base.clone()
        },
    );
    vae_cases(
        d,
        "vae-conv-gaussian",
        VaeConfig {
            arch: Arch::Conv,
            widths: vec![4, 8],
            likelihood: Likelihood::Gaussian { std: 0.1 },
            ..base
        },
    );
    classifier_case(d);
    let checked = check::run(d).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(checked.len(), 15, "{checked:?}");
    for c in &checked {
        println!(
            "{:<30} max |diff| {:.2e}, max rel {:.2e}, ONNX Runtime {:.1} us/sample",
            c.case, c.max_abs, c.max_rel, c.ort_us_per_sample
        );
        assert!(c.ok, "{c:?}");
    }
}

#[test]
fn a_codec_is_refused_with_a_reason() {
    let dir = temp_dir();
    let config = VaeConfig {
        arch: Arch::Codec,
        image_shape: vec![1, 28, 28],
        latent: 4,
        widths: vec![4, 4],
        likelihood: Likelihood::Gaussian { std: 0.03 },
        ..Default::default()
    };
    let path = dir.0.join("codec.safetensors");
    Vae::<f32>::new(config, 0).unwrap().save(&path).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_deepgen"))
        .args(["export", "--checkpoint"])
        .arg(&path)
        .args(["--out"])
        .arg(dir.0.join("codec.onnx"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no ONNX export"),
        "{err}"
    );
    assert!(!dir.0.join("codec.onnx").exists(), "no file is written");
}
