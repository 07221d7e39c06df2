//! deepgen's side of `benches/onnx_speed.py`: the models `deepgen export`
//! writes, at their usual sizes, and deepgen's inference time per sample.
//!
//!     onnx_speed prepare DIR      # checkpoints and `deepgen export` files
//!     onnx_speed time DIR BATCH REPS
//!
//! `time` prints one JSON line per model: the median microseconds per
//! sample over REPS runs of a BATCH-sized batch (after 3 warm-up runs), in
//! inference mode without a graph, on the threads rayon is given
//! (RAYON_NUM_THREADS).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_gan::{DcganConfig, Generator, MlpGanConfig, NetSpec};
use deepgen_nn::{Forward, Module};
use deepgen_vae::{Arch, Likelihood, Vae, VaeConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

type Run = Box<dyn Fn(usize) -> f64>;

fn gans() -> Vec<(&'static str, NetSpec)> {
    let dcgan = DcganConfig::default();
    let mlp = MlpGanConfig {
        data_shape: vec![1, 28, 28],
        latent: 100,
        g_hidden: vec![256, 512],
        ..Default::default()
    };
    vec![
        ("gan-dcgan28", NetSpec::Dcgan(dcgan.clone())),
        (
            "gan-dcgan28-conditional",
            NetSpec::Dcgan(DcganConfig {
                num_classes: Some(10),
                ..dcgan
            }),
        ),
        ("gan-mlp-digits", NetSpec::Mlp(mlp)),
    ]
}

fn vaes() -> Vec<(&'static str, VaeConfig)> {
    let mlp = VaeConfig::default();
    let conv = VaeConfig {
        arch: Arch::Conv,
        latent: 32,
        likelihood: Likelihood::LogisticMixture { components: 5 },
        ..VaeConfig::default()
    };
    vec![("vae-mlp", mlp), ("vae-conv-mixture", conv)]
}

fn deepgen_binary() -> PathBuf {
    std::env::var_os("DEEPGEN")
        .map_or_else(|| PathBuf::from("target/release/deepgen"), PathBuf::from)
}

fn export(checkpoint: &Path, out: &Path, extra: &[&str]) {
    let status = Command::new(deepgen_binary())
        .args(["export", "--checkpoint"])
        .arg(checkpoint)
        .arg("--out")
        .arg(out)
        .args(extra)
        .status()
        .expect("deepgen export");
    assert!(status.success(), "export {}", checkpoint.display());
}

fn prepare(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, spec) in gans() {
        let g = spec.generator(0).unwrap();
        let path = dir.join(format!("{name}.safetensors"));
        deepgen_gan::spec::save_net(g.as_module(), &spec, &path).unwrap();
        export(&path, &dir.join(format!("{name}-generator.onnx")), &[]);
    }
    for (name, config) in vaes() {
        let path = dir.join(format!("{name}.safetensors"));
        Vae::<f32>::new(config, 0).unwrap().save(&path).unwrap();
        export(&path, &dir.join(format!("{name}-decoder.onnx")), &[]);
        export(
            &path,
            &dir.join(format!("{name}-encoder.onnx")),
            &["--part", "encoder"],
        );
    }
    let path = dir.join("classifier.safetensors");
    deepgen_nn::checkpoint::save(&deepgen_cli::classifier::lenet(0).unwrap(), &path).unwrap();
    export(&path, &dir.join("classifier.onnx"), &[]);
}

fn randn(shape: &[usize]) -> Var {
    Var::constant(Tensor::randn(
        shape,
        0.0,
        1.0,
        &mut ChaCha8Rng::seed_from_u64(0),
    ))
}

/// Each model as (name, a function that runs it on a batch).
fn models(dir: &Path) -> Vec<(String, Run)> {
    let mut out: Vec<(String, Run)> = Vec::new();
    for (name, _) in gans() {
        let g: Box<dyn Generator> =
            deepgen_gan::spec::load_generator(&dir.join(format!("{name}.safetensors"))).unwrap();
        g.as_module().set_training(false);
        let run = move |n: usize| {
            let z = randn(&[n, g.latent_dim()]);
            let labels: Option<Vec<usize>> =
                g.num_classes().map(|k| (0..n).map(|i| i % k).collect());
            time(|| drop(g.generate(&z, labels.as_deref()).unwrap()))
        };
        out.push((format!("{name}-generator"), Box::new(run)));
    }
    for (name, _) in vaes() {
        let path = dir.join(format!("{name}.safetensors"));
        let model = std::rc::Rc::new(Vae::from_checkpoint(&path).unwrap());
        model.set_training(false);
        let m = model.clone();
        let decode = move |n: usize| {
            let z = randn(&[n, m.latent_dim()]);
            time(|| drop(m.mean(&m.decode(&z).unwrap())))
        };
        out.push((format!("{name}-decoder"), Box::new(decode)));
        let encode = move |n: usize| {
            let mut shape = vec![n];
            shape.extend(model.image_shape());
            let x = randn(&shape);
            time(|| drop(model.encode(&x).unwrap()))
        };
        out.push((format!("{name}-encoder"), Box::new(encode)));
    }
    let clf = deepgen_cli::classifier::load(&dir.join("classifier.safetensors")).unwrap();
    clf.set_training(false);
    let run = move |n: usize| {
        let x = randn(&[n, 1, 28, 28]);
        time(|| drop(clf.forward(&x).unwrap()))
    };
    out.push(("classifier".to_string(), Box::new(run)));
    out
}

/// Seconds one call of `f` takes, without recording a graph.
fn time(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    no_grad(f);
    start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("prepare") => prepare(Path::new(&args[2])),
        Some("time") => {
            let (dir, batch, reps): (&Path, usize, usize) = (
                Path::new(&args[2]),
                args[3].parse().unwrap(),
                args[4].parse().unwrap(),
            );
            for (name, run) in models(dir) {
                (0..3).for_each(|_| {
                    run(batch);
                });
                let mut t: Vec<f64> = (0..reps).map(|_| run(batch)).collect();
                t.sort_by(f64::total_cmp);
                let us = t[reps / 2] / batch as f64 * 1e6;
                println!("{{\"model\": \"{name}\", \"us_per_sample\": {us}}}");
            }
        }
        _ => eprintln!("usage: onnx_speed prepare DIR | time DIR BATCH REPS"),
    }
}
