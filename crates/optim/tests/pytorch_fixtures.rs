//! Replays the PyTorch runs of `fixtures/make_fixtures.py` (read its
//! docstring for the problem and the tensor names) and compares every saved
//! tensor: ‖deepgen − torch‖ / ‖torch‖ ≤ 1e-5 in f32.

use std::collections::{BTreeMap, BTreeSet};

use deepgen_autograd::{Tensor, Var};
use deepgen_optim::prelude::*;
use deepgen_optim::{
    clip_grad_norm, clip_grad_value, AdamConfig, AdamWConfig, CosineAnnealingLR, ExponentialLR,
    GroupedOptimizer, LinearLR, RmsPropConfig, Sgd, SgdConfig, StepLR, UpdateRule,
};
use safetensors::{Dtype, SafeTensors};

const TOL: f64 = 1e-5;
const STEPS: usize = 5;

/// Every tensor of the fixture file, widened to f64, with its shape.
struct Fixture(BTreeMap<String, (Vec<usize>, Vec<f64>)>);

impl Fixture {
    fn load() -> Self {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/optim.safetensors"
        );
        let bytes = std::fs::read(path).expect("run tests/fixtures/make_fixtures.py");
        let st = SafeTensors::deserialize(&bytes).expect("a safetensors file");
        let mut all = BTreeMap::new();
        for (name, view) in st.tensors() {
            let data: Vec<f64> = match view.dtype() {
                Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                Dtype::F64 => view
                    .data()
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            all.insert(name, (view.shape().to_vec(), data));
        }
        Fixture(all)
    }

    fn get(&self, name: &str) -> &(Vec<usize>, Vec<f64>) {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("fixture has no {name}"))
    }

    fn tensor(&self, name: &str) -> Tensor<f32> {
        let (shape, data) = self.get(name);
        Tensor::from_vec(data.iter().map(|&v| v as f32).collect(), shape).unwrap()
    }

    /// The distinct `<name>` of the fixture's `<kind>.<name>.*` tensors.
    fn names(&self, kind: &str) -> BTreeSet<String> {
        self.0
            .keys()
            .filter_map(|k| k.strip_prefix(&format!("{kind}.")))
            .map(|rest| rest.split('.').next().unwrap().to_string())
            .collect()
    }

    /// ‖got − want‖ / ‖want‖, after checking the shape.
    fn rel_err(&self, name: &str, got: &Tensor<f32>) -> f64 {
        let (shape, want) = self.get(name);
        assert_eq!(got.shape(), shape.as_slice(), "{name}");
        rel_err(
            &got.to_vec().iter().map(|&v| v as f64).collect::<Vec<_>>(),
            want,
        )
    }
}

fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    let diff: f64 = got.iter().zip(want).map(|(a, b)| (a - b).powi(2)).sum();
    let norm: f64 = want.iter().map(|b| b * b).sum();
    (diff / norm).sqrt()
}

/// The loss of the fixture problem: ((x @ w + b - y)^2).mean().
fn loss(x: &Var<f32>, y: &Var<f32>, w: &Var<f32>, b: &Var<f32>) -> Var<f32> {
    x.matmul(w)
        .and_then(|z| z.add(b))
        .and_then(|z| z.sub(y))
        .and_then(|z| z.square().mean(&[], false))
        .unwrap()
}

/// An optimizer over `[w, b]`: one group with one config, else `w` and `b`
/// in groups of their own.
fn grouped<C: UpdateRule<f32>>(
    configs: Vec<C>,
    w: &Var<f32>,
    b: &Var<f32>,
) -> Box<dyn Optimizer<f32>> {
    let mut configs = configs.into_iter();
    let first = configs.next().unwrap();
    let opt = match configs.next() {
        None => GroupedOptimizer::new([w.clone(), b.clone()], first).unwrap(),
        Some(second) => {
            let mut opt = GroupedOptimizer::new([w.clone()], first).unwrap();
            opt.add_param_group([b.clone()], second).unwrap();
            opt
        }
    };
    Box::new(opt)
}

type Run = (Box<dyn Optimizer<f32>>, Option<Box<dyn LrScheduler>>);

/// The same table as RUNS in make_fixtures.py.
fn build(name: &str, w: &Var<f32>, b: &Var<f32>) -> Run {
    let sgd = |c: SgdConfig| grouped(vec![c], w, b);
    let adam = |c: Vec<AdamConfig>| grouped(c, w, b);
    let adamw = |c: AdamWConfig| grouped(vec![c], w, b);
    let rmsprop = |c: RmsPropConfig| grouped(vec![c], w, b);
    let opt = match name {
        "sgd" => sgd(SgdConfig {
            lr: 0.1,
            ..Default::default()
        }),
        "sgd_nesterov_wd" => sgd(SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.01,
            ..Default::default()
        }),
        "sgd_momentum_dampening" => sgd(SgdConfig {
            lr: 0.05,
            momentum: 0.8,
            dampening: 0.3,
            ..Default::default()
        }),
        "sgd_maximize" => sgd(SgdConfig {
            lr: 0.01,
            momentum: 0.5,
            maximize: true,
            ..Default::default()
        }),
        "adam" => adam(vec![AdamConfig {
            lr: 0.01,
            ..Default::default()
        }]),
        "adam_amsgrad_wd" => adam(vec![AdamConfig {
            lr: 0.01,
            betas: (0.8, 0.99),
            eps: 1e-6,
            weight_decay: 0.1,
            amsgrad: true,
            ..Default::default()
        }]),
        "adam_two_groups" => adam(vec![
            AdamConfig {
                lr: 0.02,
                ..Default::default()
            },
            AdamConfig {
                lr: 0.005,
                weight_decay: 0.1,
                ..Default::default()
            },
        ]),
        "adamw" => adamw(AdamWConfig {
            lr: 0.01,
            weight_decay: 0.1,
            ..Default::default()
        }),
        "adamw_amsgrad" => adamw(AdamWConfig {
            lr: 0.01,
            amsgrad: true,
            ..Default::default()
        }),
        "rmsprop" => rmsprop(RmsPropConfig {
            lr: 0.01,
            ..Default::default()
        }),
        "rmsprop_centered_momentum_wd" => rmsprop(RmsPropConfig {
            lr: 0.01,
            alpha: 0.9,
            momentum: 0.9,
            centered: true,
            weight_decay: 0.05,
            ..Default::default()
        }),
        "sgd_momentum_steplr" => sgd(SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        }),
        "adam_cosine" => adam(vec![AdamConfig {
            lr: 0.05,
            ..Default::default()
        }]),
        other => panic!("no Rust counterpart for fixture run {other}"),
    };
    let mut opt = opt;
    let sched: Option<Box<dyn LrScheduler>> = match name {
        "sgd_momentum_steplr" => Some(Box::new(StepLR::new(&mut opt, 2, 0.5).unwrap())),
        "adam_cosine" => Some(Box::new(
            CosineAnnealingLR::new(&mut opt, 3, 0.001).unwrap(),
        )),
        _ => None,
    };
    (opt, sched)
}

#[test]
fn optimizers_take_pytorchs_steps() {
    let fx = Fixture::load();
    let (x, y) = (Var::constant(fx.tensor("x")), Var::constant(fx.tensor("y")));
    let mut report = Vec::new();
    for name in fx.names("run") {
        let w = Var::parameter(fx.tensor("w0"));
        let b = Var::parameter(fx.tensor("b0"));
        let (mut opt, mut sched) = build(&name, &w, &b);
        let mut worst = 0.0f64;
        for k in 1..=STEPS {
            opt.zero_grad();
            loss(&x, &y, &w, &b).backward().unwrap();
            opt.step().unwrap();
            if let Some(s) = sched.as_mut() {
                s.step(&mut opt).unwrap();
            }
            for (p, pname) in [(&w, "w"), (&b, "b")] {
                let key = format!("run.{name}.{pname}.{k}");
                let err = fx.rel_err(&key, &p.value());
                assert!(err <= TOL, "{key}: relative error {err:.3e}");
                worst = worst.max(err);
            }
        }
        report.push(format!("{name:30} max rel err {worst:.2e}"));
    }
    assert_eq!(report.len(), 13, "{report:?}");
    println!("{}", report.join("\n"));
}

#[test]
fn schedulers_give_pytorchs_rates() {
    let fx = Fixture::load();
    let mut report = Vec::new();
    for name in fx.names("sched") {
        let p = Var::<f32>::parameter(Tensor::zeros(&[1]));
        let q = Var::<f32>::parameter(Tensor::zeros(&[1]));
        let lr = |lr| SgdConfig {
            lr,
            ..Default::default()
        };
        let mut opt = Sgd::new([p], lr(0.1)).unwrap();
        opt.add_param_group([q], lr(0.01)).unwrap();
        let mut sched: Box<dyn LrScheduler> = match name.as_str() {
            "step_lr" => Box::new(StepLR::new(&mut opt, 3, 0.5).unwrap()),
            "exponential_lr" => Box::new(ExponentialLR::new(&mut opt, 0.9).unwrap()),
            "cosine_lr" => Box::new(CosineAnnealingLR::new(&mut opt, 5, 0.001).unwrap()),
            "linear_lr" => Box::new(LinearLR::new(&mut opt, 0.25, 1.0, 4).unwrap()),
            other => panic!("no Rust counterpart for fixture scheduler {other}"),
        };
        let mut got = opt.lrs();
        assert_eq!(sched.last_lr(), opt.lrs().as_slice());
        let (shape, want) = fx.get(&format!("sched.{name}.lrs"));
        for _ in 1..shape[0] {
            opt.step().unwrap();
            sched.step(&mut opt).unwrap();
            assert_eq!(sched.last_lr(), opt.lrs().as_slice());
            got.extend(opt.lrs());
        }
        let err = rel_err(&got, want);
        let exact = got == *want;
        assert!(err <= 1e-14, "{name}: {got:?} vs {want:?}");
        report.push(format!("{name:30} rel err {err:.2e} (bit-exact: {exact})"));
    }
    assert_eq!(report.len(), 4, "{report:?}");
    println!("{}", report.join("\n"));
}

#[test]
fn clipping_matches_pytorch() {
    let fx = Fixture::load();
    let (x, y) = (Var::constant(fx.tensor("x")), Var::constant(fx.tensor("y")));
    let w = Var::parameter(fx.tensor("w0"));
    let b = Var::parameter(fx.tensor("b0"));
    loss(&x, &y, &w, &b).backward().unwrap();
    let mut report = Vec::new();
    for (p, pname) in [(&w, "w"), (&b, "b")] {
        let err = fx.rel_err(&format!("grad.{pname}"), &p.grad().unwrap());
        assert!(err <= TOL, "grad.{pname}: {err:.3e}");
        report.push(format!("grad.{pname:25} rel err {err:.2e}"));
    }
    let params = [w.clone(), b.clone()];
    for name in fx.names("clip") {
        // Start from PyTorch's gradients, so only the clipping is compared.
        w.set_grad(Some(fx.tensor("grad.w"))).unwrap();
        b.set_grad(Some(fx.tensor("grad.b"))).unwrap();
        let total = match name.as_str() {
            "norm2" => Some(clip_grad_norm(&params, 0.5, 2.0).unwrap()),
            "norm_inf" => Some(clip_grad_norm(&params, 0.1, f64::INFINITY).unwrap()),
            "value" => {
                clip_grad_value(&params, 0.05).unwrap();
                None
            }
            other => panic!("no Rust counterpart for fixture clip {other}"),
        };
        let mut worst = 0.0f64;
        if let Some(total) = total {
            let want = fx.get(&format!("clip.{name}.total")).1[0];
            worst = ((total - want) / want).abs();
        }
        for (p, pname) in [(&w, "w"), (&b, "b")] {
            let key = format!("clip.{name}.{pname}");
            worst = worst.max(fx.rel_err(&key, &p.grad().unwrap()));
        }
        assert!(worst <= TOL, "clip.{name}: {worst:.3e}");
        report.push(format!("clip.{name:25} max rel err {worst:.2e}"));
    }
    assert_eq!(report.len(), 5, "{report:?}");
    println!("{}", report.join("\n"));
}
