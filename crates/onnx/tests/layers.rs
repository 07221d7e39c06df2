//! Every exportable layer, in small networks, run by ONNX Runtime and
//! compared with deepgen's own outputs (1e-5 relative or 1e-6 absolute);
//! `onnx.checker`'s full check on each file. Skipped (printing `SKIPPED`)
//! without the Python packages, unless `DEEPGEN_REQUIRE_ONNXRUNTIME=1`.

use deepgen_nn::prelude::*;
use deepgen_nn::{AvgPool2d, BatchNorm, BatchNormConfig, Conv2dConfig, ConvTranspose2dConfig};
use deepgen_nn::{Dropout, Embedding, Flatten, LayerNorm, MaxPool2d, Sequential, Unflatten};
use deepgen_onnx::{check, module_bytes};

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(7)
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("deepgen-onnx-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_vec().into_iter().map(f64::from).collect()
}

/// Exports `net`, runs deepgen on a random batch of 3 `sample`s (in
/// inference mode) and writes the case.
fn case(dir: &std::path::Path, name: &str, net: &Sequential, sample: &[usize]) {
    net.set_training(false);
    let mut shape = vec![3];
    shape.extend(sample);
    let x = Tensor::randn(&shape, 0.0, 1.0, &mut rng());
    let y = net.forward(&Var::constant(x.clone())).unwrap().value();
    let bytes = module_bytes(net, sample).unwrap();
    let inputs = [("input", shape, f64s(&x), false)];
    let outputs = [("output", y.shape().to_vec(), f64s(&y), false)];
    check::write_case(dir, name, &bytes, &inputs, &outputs).unwrap();
}

/// Running statistics that are not the defaults, so that export must use them.
fn batch_norm(channels: usize, affine: bool, two_d: bool) -> BatchNorm {
    let config = BatchNormConfig {
        affine,
        ..Default::default()
    };
    let bn = match two_d {
        true => BatchNorm::new2d(channels, config),
        false => BatchNorm::new1d(channels, config),
    };
    let stats = |base: f32| {
        Tensor::from_vec(
            (0..channels).map(|c| base + 0.3 * c as f32).collect(),
            &[channels],
        )
        .unwrap()
    };
    bn.running_mean.set_value(stats(-0.2)).unwrap();
    bn.running_var.set_value(stats(0.5)).unwrap();
    if let Some(w) = &bn.weight {
        w.set_value(stats(0.8)).unwrap();
    }
    bn
}

fn nets() -> Vec<(&'static str, Sequential, Vec<usize>)> {
    let r = &mut rng();
    let mlp = Sequential::new()
        .add(Linear::new(6, 16, true, r).unwrap())
        .add(Relu)
        .add(Linear::new(16, 8, false, r).unwrap())
        .add(LeakyRelu::new(0.2))
        .add(Dropout::new(0.5, 1).unwrap())
        .add(Linear::new(8, 4, true, r).unwrap())
        .add(Tanh);
    let same = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    let up = ConvTranspose2dConfig {
        stride: 2,
        padding: 1,
        ..Default::default()
    };
    let strided = Conv2dConfig {
        stride: 2,
        dilation: 1,
        bias: false,
        ..Default::default()
    };
    let conv = Sequential::new()
        .add(Conv2d::new(2, 4, 3, same, r).unwrap())
        .add(batch_norm(4, true, true))
        .add(Relu)
        .add(MaxPool2d::new(2))
        .add(ConvTranspose2d::new(4, 3, 4, up, r).unwrap())
        .add(batch_norm(3, false, true))
        .add(LeakyRelu::new(0.1))
        .add(AvgPool2d::new(2))
        .add(Conv2d::new(3, 3, 2, strided, r).unwrap())
        .add(Flatten::default())
        .add(Linear::new(12, 8, true, r).unwrap())
        .add(Unflatten::new(1, &[2, 2, 2]))
        .add(Sigmoid);
    let norms = Sequential::new()
        .add(Linear::new(5, 6, true, r).unwrap())
        .add(batch_norm(6, true, false))
        .add(LayerNorm::new(&[6], 1e-5, true))
        .add(Relu)
        .add(Linear::new(6, 4, true, r).unwrap())
        .add(LayerNorm::new(&[4], 1e-3, false));
    vec![
        ("mlp", mlp, vec![6]),
        ("conv", conv, vec![2, 8, 8]),
        ("norms", norms, vec![5]),
    ]
}

#[test]
fn every_exported_layer_matches_onnx_runtime() {
    if !check::available() {
        return;
    }
    let dir = temp_dir("layers");
    for (name, net, sample) in nets() {
        case(&dir.0, name, &net, &sample);
    }
    let checked = check::run(&dir.0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(checked.len(), 3, "{checked:?}");
    for c in &checked {
        println!("{c:?}");
        assert!(c.ok, "{c:?}");
    }
}

#[test]
fn the_file_names_weights_as_the_state_dict_and_has_a_dynamic_batch() {
    let (_, net, sample) = nets().remove(1);
    let model = deepgen_onnx::decode(&module_bytes(&net, &sample).unwrap()).unwrap();
    let graph = model.graph.clone().unwrap();
    let names: Vec<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    assert!(
        names.starts_with(&["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean"]),
        "{names:?}"
    );
    let state: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    for n in &state {
        assert!(names.contains(&n.as_str()), "{n} missing from {names:?}");
    }
    assert_eq!(model.opset_import[0].version(), deepgen_onnx::OPSET);
    assert_eq!(model.producer_name(), "deepgen");
    let input = format!("{:?}", graph.input[0]);
    assert!(input.contains("DimParam(\"batch\")"), "{input}");
}

#[test]
fn a_layer_without_an_export_is_named() {
    let net = Sequential::<f32>::new().add(Embedding::new(4, 3, &mut rng()));
    let e = module_bytes(&net, &[1]).unwrap_err().to_string();
    assert!(
        e.contains("Embedding") && e.contains("no ONNX export"),
        "{e}"
    );
}
