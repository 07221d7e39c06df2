//! State dicts across the PyTorch border, both ways, for the network
//! Conv2d(1, 4, 3, padding 1), BatchNorm2d(4), ReLU, Flatten, Linear(100, 3)
//! (`build()` in tests/fixtures/torch_state_dict.py).
//!
//! PyTorch to deepgen: tests/fixtures/torch_seq.safetensors, written by
//! torch_state_dict.py, loads strictly and gives PyTorch's eval output.
//! deepgen to PyTorch: a checkpoint written here is handed to
//! tests/fixtures/check_deepgen_checkpoint.py when python3 has torch and
//! safetensors; without them the test says so and passes (CI may lack torch).

use std::path::{Path, PathBuf};
use std::process::Command;

use deepgen_nn::checkpoint::{self, TensorData};
use deepgen_nn::loss::{self, Reduction};
use deepgen_nn::Forward;
use deepgen_nn::{
    BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig, Flatten, Linear, Module, Relu, Sequential,
    Tensor, Var,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The largest accepted ‖deepgen − torch‖ / ‖torch‖.
const TOLERANCE: f64 = 1e-5;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// deepgen's twin of torch_state_dict.build().
fn build(seed: u64) -> Sequential {
    let rng = &mut ChaCha8Rng::seed_from_u64(seed);
    let same = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    Sequential::new()
        .add(Conv2d::new(1, 4, 3, same, rng).unwrap())
        .add(BatchNorm::new2d(4, BatchNormConfig::default()))
        .add(Relu)
        .add(Flatten::default())
        .add(Linear::new(4 * 5 * 5, 3, true, rng).unwrap())
}

fn float(entries: &[(String, TensorData)], name: &str) -> Tensor<f32> {
    let (_, t) = entries
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no tensor {name}"));
    t.to_float()
        .unwrap_or_else(|| panic!("{name} is not a float tensor"))
}

fn relative_error(got: &Tensor<f32>, want: &Tensor<f32>) -> f64 {
    assert_eq!(got.shape(), want.shape());
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (g, w) in got.to_vec().iter().zip(want.to_vec()) {
        diff += (*g as f64 - w as f64).powi(2);
        norm += (w as f64).powi(2);
    }
    (diff / norm).sqrt()
}

fn eval_output(model: &Sequential, x: &Tensor<f32>) -> Tensor<f32> {
    model.eval();
    model.forward(&Var::constant(x.clone())).unwrap().value()
}

#[test]
fn pytorch_state_dict_loads_strictly_and_matches_pytorch_eval_output() {
    let path = fixtures().join("torch_seq.safetensors");
    let model = build(0);
    let report = checkpoint::load(&model, &path, true).unwrap();
    assert!(
        report.missing.is_empty() && report.unexpected.is_empty(),
        "{report:?}"
    );

    // Every tensor arrived unchanged, the int64 counter included.
    let (file, _) = checkpoint::load_tensors(&path).unwrap();
    let mut loaded = checkpoint::state_dict(&model);
    loaded.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(loaded, file);
    assert!(file.contains(&(
        "1.num_batches_tracked".into(),
        TensorData::I64 {
            shape: vec![],
            data: vec![1]
        }
    )));

    let (io, _) = checkpoint::load_tensors(&fixtures().join("torch_seq_io.safetensors")).unwrap();
    let y = eval_output(&model, &float(&io, "x"));
    let r = relative_error(&y, &float(&io, "y"));
    println!("torch_seq.safetensors in deepgen: eval output ‖deepgen − torch‖ / ‖torch‖ = {r:.3e}");
    assert!(r <= TOLERANCE, "relative error {r:.3e} > {TOLERANCE:e}");
}

/// One SGD step (lr 0.1) on an MSE loss in training mode, so weights, the
/// BatchNorm running statistics and its counter all leave their defaults.
fn train_one_step(model: &Sequential, rng: &mut ChaCha8Rng) {
    model.train();
    let x = Var::constant(Tensor::randn(&[8, 1, 5, 5], 0.5, 2.0, rng));
    let target = Var::constant(Tensor::randn(&[8, 3], 0.0, 1.0, rng));
    let loss = loss::mse_loss(&model.forward(&x).unwrap(), &target, Reduction::Mean).unwrap();
    loss.backward().unwrap();
    for p in model.parameters() {
        let grad = p.grad().expect("every parameter gets a gradient").to_vec();
        let stepped: Vec<f32> = p
            .value()
            .to_vec()
            .iter()
            .zip(grad)
            .map(|(w, g)| w - 0.1 * g)
            .collect();
        p.set_value(Tensor::from_vec(stepped, &p.shape()).unwrap())
            .unwrap();
    }
    model.zero_grad();
}

/// A fresh folder under Cargo's scratch space for integration tests.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn python_has_torch() -> bool {
    Command::new("python3")
        .args(["-c", "import torch, safetensors"])
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn deepgen_checkpoint_loads_strictly_into_pytorch_with_the_same_eval_output() {
    let rng = &mut ChaCha8Rng::seed_from_u64(11);
    let model = build(3);
    train_one_step(&model, rng);
    let x = Tensor::randn(&[3, 1, 5, 5], 0.0, 1.0, rng);
    let y = eval_output(&model, &x);

    let dir = scratch("torch-checkpoint");
    let path = dir.join("seq.safetensors");
    checkpoint::save(&model, &path).unwrap();
    let io = [
        ("x".to_string(), TensorData::F32(x.clone())),
        ("y".to_string(), TensorData::F32(y.clone())),
    ];
    checkpoint::save_tensors(&dir.join("seq.io.safetensors"), &io, None).unwrap();

    // The file reloads in deepgen first: a fresh network gives the same output.
    let reloaded = build(4);
    checkpoint::load(&reloaded, &path, true).unwrap();
    assert_eq!(eval_output(&reloaded, &x).to_vec(), y.to_vec());

    if !python_has_torch() {
        std::fs::remove_dir_all(&dir).unwrap();
        eprintln!("note: python3 with torch and safetensors not found; PyTorch side of the round trip skipped");
        return;
    }
    let script = fixtures().join("check_deepgen_checkpoint.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{}", stdout.trim_end());
    assert!(
        out.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}",
        script.display(),
        out.status
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
