//! Layers and losses against PyTorch.
//!
//! `tests/fixtures/make_fixtures.py` wrote, with PyTorch in float32, each
//! case's input, upstream gradient, output and gradients (the file names are
//! described there). Here each case is rebuilt in deepgen (f32) with the same
//! weights, run forward and backward, and every tensor must agree to a
//! relative error ‖deepgen − torch‖ / ‖torch‖ of at most 1e-5. Each case's
//! worst ratio is printed (`cargo test -p deepgen-nn --test torch_fixtures --
//! --nocapture`).

use deepgen_nn::Forward;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use deepgen_nn::checkpoint::{load_tensors, state_dict, TensorData};
use deepgen_nn::loss::{self, Reduction};
use deepgen_nn::{
    BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig,
    Embedding, Flatten, LayerNorm, LeakyRelu, Linear, Module, Relu, Sequential, Sigmoid, Slot,
    Tanh, Tensor, Unflatten, Var,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The largest accepted ‖deepgen − torch‖ / ‖torch‖.
const TOLERANCE: f64 = 1e-5;

struct Fixtures {
    file: &'static str,
    tensors: BTreeMap<String, TensorData>,
}

impl Fixtures {
    fn load(file: &'static str) -> Fixtures {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(file);
        let (entries, _) =
            load_tensors(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Fixtures {
            file,
            tensors: entries.into_iter().collect(),
        }
    }

    fn get(&self, name: &str) -> Option<Tensor<f32>> {
        self.tensors.get(name).map(|t| {
            t.to_float()
                .unwrap_or_else(|| panic!("{}: {name} is not a float tensor", self.file))
        })
    }

    fn tensor(&self, name: &str) -> Tensor<f32> {
        self.get(name)
            .unwrap_or_else(|| panic!("{}: no tensor {name}", self.file))
    }

    /// Class indices stored as floats.
    fn indices(&self, name: &str) -> Vec<usize> {
        self.tensor(name)
            .to_vec()
            .iter()
            .map(|&v| v as usize)
            .collect()
    }

    /// Names under `prefix`, with the prefix cut off.
    fn names_under(&self, prefix: &str) -> Vec<String> {
        self.tensors
            .keys()
            .filter_map(|k| k.strip_prefix(prefix))
            .map(str::to_string)
            .collect()
    }

    /// The case names: every name's text before its first dot.
    fn cases(&self) -> BTreeSet<String> {
        self.tensors
            .keys()
            .map(|k| k.split('.').next().unwrap_or(k).to_string())
            .collect()
    }
}

fn norm(t: &Tensor<f32>) -> f64 {
    t.to_vec()
        .iter()
        .map(|&v| (v as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// ‖got − want‖ / `scale` in f64 (the absolute error when `scale` is zero).
fn relative_error(got: &Tensor<f32>, want: &Tensor<f32>, scale: f64) -> f64 {
    let diff: f64 = got
        .to_vec()
        .iter()
        .zip(want.to_vec())
        .map(|(&g, w)| (g as f64 - w as f64).powi(2))
        .sum();
    if scale == 0.0 {
        diff.sqrt()
    } else {
        diff.sqrt() / scale
    }
}

/// Gradients that are zero in exact arithmetic, so that both PyTorch and
/// deepgen return float32 rounding noise (~1e-7) whose ratio means nothing:
/// (case, tensor, the tensor whose norm sets the scale instead of ‖torch‖).
/// A bias feeding a training-mode BatchNorm has zero gradient: the batch
/// mean cancels any per-channel shift.
const ANALYTIC_ZEROS: &[(&str, &str, &str)] = &[("sequential", "grad.0.bias", "grad.0.weight")];

/// One case's comparisons: the worst ratio and every failure.
struct Check {
    case: String,
    worst: f64,
    worst_name: String,
    compared: usize,
    failures: Vec<String>,
}

impl Check {
    fn new(case: &str) -> Check {
        Check {
            case: case.to_string(),
            worst: 0.0,
            worst_name: String::new(),
            compared: 0,
            failures: Vec::new(),
        }
    }

    fn fail(&mut self, msg: String) {
        self.failures.push(format!("{}: {msg}", self.case));
    }

    fn compare(&mut self, what: &str, got: Option<Tensor<f32>>, want: &Tensor<f32>) {
        self.compare_scaled(what, got, want, norm(want));
    }

    /// ‖got − want‖ / `scale` must be at most the tolerance.
    fn compare_scaled(
        &mut self,
        what: &str,
        got: Option<Tensor<f32>>,
        want: &Tensor<f32>,
        scale: f64,
    ) {
        let Some(got) = got else {
            return self.fail(format!(
                "{what}: deepgen has no value (torch has {:?})",
                want.shape()
            ));
        };
        if got.shape() != want.shape() {
            return self.fail(format!(
                "{what}: shape {:?}, torch {:?}",
                got.shape(),
                want.shape()
            ));
        }
        let r = relative_error(&got, want, scale);
        self.compared += 1;
        if r.is_nan() || r > self.worst {
            self.worst = r;
            self.worst_name = what.to_string();
        }
        if r.is_nan() || r > TOLERANCE {
            self.fail(format!("{what}: relative error {r:.3e} > {TOLERANCE:e}"));
        }
    }
}

/// Prints the table and fails with every failure at once.
fn report(title: &str, checks: &[Check], fixtures: &Fixtures) {
    println!("{title}: worst ‖deepgen − torch‖ / ‖torch‖ per case");
    for c in checks {
        println!(
            "  {:<34} {:>10.3e}  ({} tensors; worst: {})",
            c.case, c.worst, c.compared, c.worst_name
        );
    }
    let run: BTreeSet<String> = checks.iter().map(|c| c.case.clone()).collect();
    let unrun: Vec<String> = fixtures.cases().difference(&run).cloned().collect();
    let failures: Vec<&String> = checks.iter().flat_map(|c| &c.failures).collect();
    assert!(
        unrun.is_empty(),
        "{}: cases with no Rust counterpart: {unrun:?}",
        fixtures.file
    );
    assert!(
        checks.iter().all(|c| c.compared > 0),
        "a case compared nothing"
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|f| format!("  {f}\n"))
            .collect::<String>()
    );
}

/// The module's parameters, buffers and counters by state-dict name.
fn slots(module: &dyn Module<f32>) -> (BTreeMap<String, Var<f32>>, BTreeMap<String, Var<f32>>) {
    let (mut params, mut buffers) = (BTreeMap::new(), BTreeMap::new());
    module.visit(&mut |name, slot| match slot {
        Slot::Parameter(v) => {
            params.insert(name.to_string(), v.clone());
        }
        Slot::Buffer(v) => {
            buffers.insert(name.to_string(), v.clone());
        }
        Slot::Counter(_) => {}
    });
    (params, buffers)
}

/// Installs `{case}.param.*` into `module`, runs it on `{case}.x` with the
/// upstream gradient `{case}.g` and compares output, input gradient,
/// parameter gradients and BatchNorm's buffers after the step.
fn layer_case(fx: &Fixtures, case: &str, module: &dyn Forward<f32>, training: bool) -> Check {
    let mut check = Check::new(case);
    module.set_training(training);
    let (params, buffers) = slots(module);
    let file_names: BTreeSet<String> = fx
        .names_under(&format!("{case}.param."))
        .into_iter()
        .collect();
    let module_names: BTreeSet<String> = params.keys().chain(buffers.keys()).cloned().collect();
    if file_names != module_names {
        check.fail(format!(
            "state names differ: deepgen {module_names:?}, torch {file_names:?}"
        ));
    }
    for (name, var) in params.iter().chain(&buffers) {
        if let Some(t) = fx.get(&format!("{case}.param.{name}")) {
            if let Err(e) = var.set_value(t) {
                check.fail(format!("installing {name}: {e}"));
            }
        }
    }

    // Embedding's input holds indices: no gradient for it.
    let x_value = fx.tensor(&format!("{case}.x"));
    let x = match fx.get(&format!("{case}.dx")) {
        Some(_) => Var::parameter(x_value),
        None => Var::constant(x_value),
    };
    let y = match module.forward(&x) {
        Ok(y) => y,
        Err(e) => {
            check.fail(format!("forward: {e}"));
            return check;
        }
    };
    check.compare("y", Some(y.value()), &fx.tensor(&format!("{case}.y")));
    if let Err(e) = y.backward_with(Var::constant(fx.tensor(&format!("{case}.g")))) {
        check.fail(format!("backward: {e}"));
        return check;
    }
    if let Some(dx) = fx.get(&format!("{case}.dx")) {
        check.compare("dx", x.grad(), &dx);
    }
    for name in fx.names_under(&format!("{case}.grad.")) {
        let got = params.get(&name).and_then(Var::grad);
        let want = fx.tensor(&format!("{case}.grad.{name}"));
        let what = format!("grad.{name}");
        match ANALYTIC_ZEROS
            .iter()
            .find(|(c, t, _)| *c == case && *t == what)
        {
            Some((_, _, by)) => {
                let scale = norm(&fx.tensor(&format!("{case}.{by}")));
                // Torch's own value must be noise at that scale.
                assert!(
                    norm(&want) <= TOLERANCE * scale,
                    "{case}.{what} is not ~0 in torch"
                );
                check.compare_scaled(&format!("{what} / ‖{by}‖"), got, &want, scale);
            }
            None => check.compare(&what, got, &want),
        }
    }
    let after: BTreeMap<String, TensorData> = state_dict(module).into_iter().collect();
    for name in fx.names_under(&format!("{case}.after.")) {
        let want = &fx.tensors[&format!("{case}.after.{name}")];
        match (after.get(&name), want) {
            (Some(TensorData::I64 { data, .. }), TensorData::I64 { data: w, .. }) => {
                if data != w {
                    check.fail(format!("after.{name}: {data:?}, torch {w:?}"));
                }
            }
            (got, _) => {
                let want = want.to_float().expect("a float buffer");
                check.compare(
                    &format!("after.{name}"),
                    got.and_then(TensorData::to_float),
                    &want,
                );
            }
        }
    }
    check
}

fn layer<L>(made: deepgen_nn::Result<L>) -> L {
    made.expect("a layer of valid geometry")
}

#[test]
fn layers_match_pytorch_forward_and_backward() {
    let fx = Fixtures::load("layers.safetensors");
    let rng = &mut ChaCha8Rng::seed_from_u64(0);
    let conv = |stride, padding, dilation| Conv2dConfig {
        stride,
        padding,
        dilation,
        bias: true,
    };
    let bn = BatchNormConfig::default();
    let cumulative = BatchNormConfig {
        momentum: None,
        ..bn
    };

    let cases: Vec<(&str, Box<dyn Forward<f32>>, bool)> = vec![
        (
            "linear",
            Box::new(layer(Linear::new(5, 3, true, rng))),
            true,
        ),
        (
            "linear_nobias",
            Box::new(layer(Linear::new(5, 3, false, rng))),
            true,
        ),
        (
            "conv2d",
            Box::new(layer(Conv2d::new(3, 4, 3, conv(2, 1, 1), rng))),
            true,
        ),
        (
            "conv2d_dilated",
            Box::new(layer(Conv2d::new(3, 4, 3, conv(1, 2, 2), rng))),
            true,
        ),
        (
            "conv_transpose2d",
            Box::new(layer(ConvTranspose2d::new(
                4,
                3,
                4,
                ConvTranspose2dConfig {
                    stride: 2,
                    padding: 1,
                    output_padding: 1,
                    ..Default::default()
                },
                rng,
            ))),
            true,
        ),
        ("batchnorm1d_train", Box::new(BatchNorm::new1d(3, bn)), true),
        (
            "batchnorm1d_train_3d",
            Box::new(BatchNorm::new1d(3, bn)),
            true,
        ),
        ("batchnorm1d_eval", Box::new(BatchNorm::new1d(3, bn)), false),
        ("batchnorm2d_train", Box::new(BatchNorm::new2d(3, bn)), true),
        (
            "batchnorm2d_train_cumulative",
            Box::new(BatchNorm::new2d(3, cumulative)),
            true,
        ),
        ("batchnorm2d_eval", Box::new(BatchNorm::new2d(3, bn)), false),
        (
            "layernorm",
            Box::new(LayerNorm::new(&[4, 5], 1e-5, true)),
            true,
        ),
        ("embedding", Box::new(Embedding::new(7, 3, rng)), true),
        ("relu", Box::new(Relu), true),
        ("leaky_relu", Box::new(LeakyRelu::new(0.2)), true),
        ("sigmoid", Box::new(Sigmoid), true),
        ("tanh", Box::new(Tanh), true),
        ("flatten", Box::new(Flatten::default()), true),
        ("unflatten", Box::new(Unflatten::new(1, &[3, 4])), true),
        (
            "sequential",
            Box::new(
                Sequential::new()
                    .add(layer(Conv2d::new(2, 3, 3, conv(1, 1, 1), rng)))
                    .add(BatchNorm::new2d(3, bn))
                    .add(LeakyRelu::new(0.2))
                    .add(Flatten::default())
                    .add(layer(Linear::new(3 * 4 * 4, 5, true, rng))),
            ),
            true,
        ),
    ];
    let checks: Vec<Check> = cases
        .iter()
        .map(|(case, m, training)| layer_case(&fx, case, m.as_ref(), *training))
        .collect();
    // Embedding's indices also sit apart under their own name.
    assert_eq!(
        fx.tensor("embedding.indices").to_vec(),
        fx.tensor("embedding.x").to_vec()
    );
    report("layers", &checks, &fx);
}

type LossFn =
    dyn Fn(&Fixtures, &BTreeMap<String, Var<f32>>, Reduction) -> deepgen_nn::Result<Var<f32>>;

/// Runs the loss on `{case}.in.*` for each reduction the file has, with
/// upstream gradient `{case}.{red}.w`, and compares value and gradients.
fn loss_case(fx: &Fixtures, case: &str, f: &LossFn) -> Check {
    let mut check = Check::new(case);
    for (red, reduction) in [
        ("mean", Reduction::Mean),
        ("sum", Reduction::Sum),
        ("none", Reduction::None),
    ] {
        let Some(want) = fx.get(&format!("{case}.{red}.value")) else {
            continue;
        };
        let inputs: BTreeMap<String, Var<f32>> = fx
            .names_under(&format!("{case}.in."))
            .into_iter()
            .map(|name| {
                let v = Var::parameter(fx.tensor(&format!("{case}.in.{name}")));
                (name, v)
            })
            .collect();
        let value = match f(fx, &inputs, reduction) {
            Ok(v) => v,
            Err(e) => {
                check.fail(format!("{red}: {e}"));
                continue;
            }
        };
        check.compare(&format!("{red}.value"), Some(value.value()), &want);
        if let Err(e) = value.backward_with(Var::constant(fx.tensor(&format!("{case}.{red}.w")))) {
            check.fail(format!("{red}: backward: {e}"));
            continue;
        }
        for name in fx.names_under(&format!("{case}.{red}.grad.")) {
            let got = inputs.get(&name).and_then(Var::grad);
            check.compare(
                &format!("{red}.grad.{name}"),
                got,
                &fx.tensor(&format!("{case}.{red}.grad.{name}")),
            );
        }
    }
    check
}

/// The loss input `name`.
fn i(inputs: &BTreeMap<String, Var<f32>>, name: &str) -> Var<f32> {
    inputs[name].clone()
}

#[test]
fn losses_match_pytorch_values_and_gradients() {
    let fx = Fixtures::load("losses.safetensors");
    let gaussian = |full: bool, eps: f64| {
        move |_: &Fixtures, m: &BTreeMap<String, Var<f32>>, r| {
            loss::gaussian_nll_loss(&i(m, "input"), &i(m, "target"), &i(m, "var"), full, eps, r)
        }
    };
    let cases: Vec<(&str, Box<LossFn>)> = vec![
        (
            "mse",
            Box::new(|_, m, r| loss::mse_loss(&i(m, "input"), &i(m, "target"), r)),
        ),
        (
            "l1",
            Box::new(|_, m, r| loss::l1_loss(&i(m, "input"), &i(m, "target"), r)),
        ),
        (
            "bce",
            Box::new(|_, m, r| loss::bce_loss(&i(m, "input"), &i(m, "target"), r)),
        ),
        (
            "bce_with_logits",
            Box::new(|_, m, r| loss::bce_with_logits(&i(m, "input"), &i(m, "target"), None, r)),
        ),
        (
            "bce_with_logits_pos_weight",
            Box::new(|_, m, r| {
                loss::bce_with_logits(
                    &i(m, "input"),
                    &i(m, "target"),
                    Some(&i(m, "pos_weight")),
                    r,
                )
            }),
        ),
        (
            "cross_entropy",
            Box::new(|fx, m, r| {
                loss::cross_entropy(&i(m, "input"), &fx.indices("cross_entropy.in.target"), r)
            }),
        ),
        (
            "cross_entropy_ignore",
            Box::new(|fx, m, r| {
                let targets = fx.indices("cross_entropy_ignore.in.target");
                loss::cross_entropy_ignore(&i(m, "input"), &targets, 0, r)
            }),
        ),
        (
            "nll",
            Box::new(|fx, m, r| loss::nll_loss(&i(m, "input"), &fx.indices("nll.in.target"), r)),
        ),
        ("gaussian_nll", Box::new(gaussian(false, 0.05))),
        ("gaussian_nll_full", Box::new(gaussian(true, 0.05))),
        (
            "gaussian_nll_homoscedastic",
            Box::new(gaussian(false, 1e-6)),
        ),
        (
            "kl_normal_std",
            Box::new(|_, m, r| loss::kl_normal_std(&i(m, "mu"), &i(m, "logvar"), r)),
        ),
        (
            "discretized_logistic",
            Box::new(|_, m, r| {
                loss::discretized_logistic_nll(&i(m, "mean"), &i(m, "log_scale"), &i(m, "x"), r)
            }),
        ),
        (
            "logistic_bin",
            Box::new(|_, m, r| {
                loss::logistic_bin_nll(&i(m, "y"), &i(m, "loc"), &i(m, "log_scale"), r)
            }),
        ),
        (
            "logistic_mixture",
            Box::new(|_, m, r| {
                loss::discretized_logistic_mixture_nll(
                    &i(m, "logits"),
                    &i(m, "means"),
                    &i(m, "log_scales"),
                    &i(m, "x"),
                    r,
                )
            }),
        ),
    ];
    let checks: Vec<Check> = cases
        .iter()
        .map(|(case, f)| loss_case(&fx, case, f.as_ref()))
        .collect();
    report("losses", &checks, &fx);
}

/// A recurrent case: `{case}.param.*` installed, run on `{case}.x` (with
/// `{case}.lengths` when given), backward of y.g + h_n.gh (+ c_n.gc), and
/// output, final states and every gradient compared.
fn recurrent_case<M: Module<f32>>(
    fx: &Fixtures,
    case: &str,
    module: &M,
    run: impl Fn(
        &M,
        &Var<f32>,
        Option<&[usize]>,
    ) -> deepgen_nn::Result<(Var<f32>, deepgen_nn::RnnState<f32>)>,
) -> Check {
    let mut check = Check::new(case);
    let (params, _) = slots(module);
    let file_names: BTreeSet<String> = fx
        .names_under(&format!("{case}.param."))
        .into_iter()
        .collect();
    if file_names != params.keys().cloned().collect() {
        check.fail(format!(
            "state names differ: deepgen {:?}, torch {file_names:?}",
            params.keys()
        ));
    }
    for (name, var) in &params {
        var.set_value(fx.tensor(&format!("{case}.param.{name}")))
            .unwrap();
    }
    let x = Var::parameter(fx.tensor(&format!("{case}.x")));
    let lengths = fx
        .get(&format!("{case}.lengths"))
        .map(|_| fx.indices(&format!("{case}.lengths")));
    let (y, state) = match run(module, &x, lengths.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            check.fail(format!("forward: {e}"));
            return check;
        }
    };
    check.compare("y", Some(y.value()), &fx.tensor(&format!("{case}.y")));
    check.compare(
        "h_n",
        Some(state.h.value()),
        &fx.tensor(&format!("{case}.h_n")),
    );
    let weighted = |v: &Var<f32>, g: &str| {
        v.mul(&Var::constant(fx.tensor(&format!("{case}.{g}"))))
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let mut loss = weighted(&y, "g").add(&weighted(&state.h, "gh")).unwrap();
    if let Some(c) = &state.c {
        check.compare("c_n", Some(c.value()), &fx.tensor(&format!("{case}.c_n")));
        loss = loss.add(&weighted(c, "gc")).unwrap();
    }
    loss.backward().unwrap();
    check.compare("dx", x.grad(), &fx.tensor(&format!("{case}.dx")));
    for name in fx.names_under(&format!("{case}.grad.")) {
        let got = params.get(&name).and_then(Var::grad);
        check.compare(
            &format!("grad.{name}"),
            got,
            &fx.tensor(&format!("{case}.grad.{name}")),
        );
    }
    check
}

#[test]
fn recurrent_layers_match_pytorch_outputs_states_and_gradients() {
    use deepgen_nn::{Gru, Lstm, RnnConfig};
    let fx = Fixtures::load("recurrent.safetensors");
    let rng = &mut ChaCha8Rng::seed_from_u64(0);
    let deep = RnnConfig {
        num_layers: 2,
        bidirectional: true,
        batch_first: true,
        ..Default::default()
    };
    let no_bias = RnnConfig {
        bias: false,
        ..Default::default()
    };
    let gru = |m: &Gru, x: &Var<f32>, l: Option<&[usize]>| m.forward_with(x, None, l);
    let lstm = |m: &Lstm, x: &Var<f32>, l: Option<&[usize]>| m.forward_with(x, None, l);
    let checks = vec![
        recurrent_case(
            &fx,
            "gru",
            &Gru::new(4, 3, RnnConfig::default(), rng).unwrap(),
            gru,
        ),
        recurrent_case(
            &fx,
            "lstm",
            &Lstm::new(4, 3, RnnConfig::default(), rng).unwrap(),
            lstm,
        ),
        recurrent_case(
            &fx,
            "gru_2layer_bidir_batch_first_lengths",
            &Gru::new(4, 3, deep, rng).unwrap(),
            gru,
        ),
        recurrent_case(
            &fx,
            "lstm_2layer_bidir_batch_first_lengths",
            &Lstm::new(4, 3, deep, rng).unwrap(),
            lstm,
        ),
        recurrent_case(
            &fx,
            "lstm_nobias",
            &Lstm::new(3, 2, no_bias, rng).unwrap(),
            lstm,
        ),
    ];
    report("recurrent layers", &checks, &fx);
}
