//! How the optimizers behave as a training loop uses them: convergence,
//! skipped parameters, groups, errors for misuse.

mod common;

use common::Problem;
use deepgen_autograd::{Tensor, Var};
use deepgen_optim::prelude::*;
use deepgen_optim::{
    clip_grad_norm, Adam, AdamConfig, AdamW, AdamWConfig, Error, RmsProp, RmsPropConfig, Sgd,
    SgdConfig, StepLR,
};

fn converges(opt: &mut dyn Optimizer<f64>, p: &Problem<f64>, steps: usize) -> (f64, f64) {
    let first = p.backward();
    for _ in 0..steps {
        p.backward();
        opt.step().unwrap();
    }
    (first, p.backward())
}

fn make(name: &str, q: &Problem<f64>) -> Box<dyn Optimizer<f64>> {
    match name {
        "sgd" => {
            let c = SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                ..Default::default()
            };
            Box::new(Sgd::new(q.params(), c).unwrap())
        }
        "adam" => {
            let c = AdamConfig {
                lr: 0.05,
                ..Default::default()
            };
            Box::new(Adam::new(q.params(), c).unwrap())
        }
        "adamw" => {
            let c = AdamWConfig {
                lr: 0.05,
                ..Default::default()
            };
            Box::new(AdamW::new(q.params(), c).unwrap())
        }
        _ => {
            let c = RmsPropConfig {
                lr: 0.01,
                ..Default::default()
            };
            Box::new(RmsProp::new(q.params(), c).unwrap())
        }
    }
}

#[test]
fn every_optimizer_lowers_the_loss() {
    let p = Problem::<f64>::new();
    for name in ["sgd", "adam", "adamw", "rmsprop"] {
        let q = p.with_params(p.w.value(), p.b.value());
        let mut opt = make(name, &q);
        let (first, last) = converges(opt.as_mut(), &q, 100);
        assert!(last < 0.5 * first, "{name}: loss {first} -> {last}");
    }
}

#[test]
fn parameters_without_a_gradient_are_skipped() {
    let p = Problem::<f32>::new();
    let unused = Var::<f32>::parameter(Tensor::ones(&[2]));
    let params = [p.w.clone(), unused.clone(), p.b.clone()];
    let mut opt = Adam::new(params, AdamConfig::default()).unwrap();
    p.backward();
    let w_before = p.w.value();
    opt.step().unwrap();
    assert_ne!(p.w.value(), w_before);
    assert_eq!(unused.value().to_vec(), vec![1.0, 1.0]);
    assert!(opt.state(0).is_some() && opt.state(1).is_none() && opt.state(2).is_some());
    let dict = opt.state_dict();
    assert!(!dict.iter().any(|(n, _)| n.starts_with("state.1.")));
    // zero_grad clears every gradient: the next step moves nothing.
    opt.zero_grad();
    let w_before = p.w.value();
    opt.step().unwrap();
    assert_eq!(p.w.value(), w_before);
    assert_eq!(opt.state(0).unwrap().step, 1.0);
}

#[test]
fn groups_have_their_own_rates() {
    let p = Problem::<f64>::new();
    let (w0, b0) = (p.w.value(), p.b.value());
    let mut opt = Sgd::new(
        [p.w.clone()],
        SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
    )
    .unwrap();
    opt.add_param_group([p.b.clone()], SgdConfig::default())
        .unwrap();
    opt.set_lr(1, 0.0).unwrap();
    p.backward();
    let gw = p.w.grad().unwrap().to_vec();
    opt.step().unwrap();
    assert_eq!(p.b.value(), b0, "lr 0 leaves b alone");
    let want: Vec<f64> = w0
        .to_vec()
        .iter()
        .zip(&gw)
        .map(|(w, g)| w - 0.1 * g)
        .collect();
    assert_eq!(p.w.value().to_vec(), want);
    assert_eq!(opt.lrs(), vec![0.1, 0.0]);
    assert_eq!(opt.num_groups(), 2);
    assert_eq!(opt.params().len(), 2);
    assert_eq!(opt.group_params(1).unwrap()[0].id(), p.b.id());
}

#[test]
fn misuse_is_an_error() {
    let p = Problem::<f32>::new();
    let err = Sgd::<f32>::new([], SgdConfig::default()).err().unwrap();
    assert!(
        matches!(err, Error::EmptyParams { optimizer: "SGD" }),
        "{err}"
    );

    let err = Adam::new([p.w.clone(), p.w.clone()], AdamConfig::default())
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("parameter 1 appears more than once"),
        "{err}"
    );
    let mut opt = Adam::new([p.w.clone()], AdamConfig::default()).unwrap();
    let err = opt
        .add_param_group([p.b.clone(), p.w.clone()], AdamConfig::default())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("parameter 2 appears more than once (in group 0)"),
        "{err}"
    );
    assert_eq!(opt.num_groups(), 1, "a refused group is not added");

    let made = p.w.mul_scalar(2.0);
    let err = Adam::new([made], AdamConfig::default()).err().unwrap();
    assert!(err.to_string().contains("not a leaf"), "{err}");

    let err = opt.lr(3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "lr: parameter group 3 does not exist (1 groups)"
    );
    assert!(opt.set_lr(0, f64::NAN).is_err());
    assert!(opt.set_lr(1, 0.1).is_err());
    assert!(opt.group_params(1).is_err());
}

#[test]
fn an_invalid_option_set_between_steps_stops_the_next_step() {
    let p = Problem::<f32>::new();
    let mut opt = Sgd::new(p.params(), SgdConfig::default()).unwrap();
    opt.config_mut(0).unwrap().momentum = -1.0;
    p.backward();
    let before = p.w.value();
    let err = opt.step().unwrap_err();
    assert!(
        err.to_string().contains("SGD: invalid momentum -1"),
        "{err}"
    );
    assert_eq!(p.w.value(), before);
    assert!(opt.config_mut(1).is_err());
}

#[test]
fn a_boxed_optimizer_works_with_schedulers_and_clipping() {
    let p = Problem::<f32>::new();
    let mut opt: Box<dyn Optimizer<f32>> = Box::new(
        Sgd::new(
            p.params(),
            SgdConfig {
                lr: 0.1,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let mut sched = StepLR::new(&mut opt, 1, 0.5).unwrap();
    for _ in 0..3 {
        p.backward();
        let norm = clip_grad_norm(&opt.params(), 1.0, 2.0).unwrap();
        assert!(norm.is_finite());
        opt.step().unwrap();
        sched.step(&mut opt).unwrap();
    }
    assert_eq!(opt.lrs(), vec![0.1 * 0.125]);
    assert_eq!(sched.last_lr(), &[0.1 * 0.125]);
}

#[test]
fn set_grad_checks_the_shape() {
    let v = Var::<f32>::parameter(Tensor::zeros(&[2, 3]));
    let err = v.set_grad(Some(Tensor::zeros(&[3, 2]))).unwrap_err();
    assert!(
        err.to_string().contains("[3, 2]") && err.to_string().contains("[2, 3]"),
        "{err}"
    );
    assert!(v.grad().is_none());
    v.set_grad(Some(Tensor::ones(&[2, 3]))).unwrap();
    assert_eq!(v.grad().unwrap().to_vec(), vec![1.0; 6]);
    v.set_grad(None).unwrap();
    assert!(v.grad().is_none());
}

#[test]
fn a_step_updates_parameters_in_place() {
    let p = Problem::<f32>::new();
    let mut opt = Adam::new(p.params(), AdamConfig::default()).unwrap();
    p.backward();
    let ptr = p.w.value().as_slice().unwrap().as_ptr();
    opt.step().unwrap();
    p.backward();
    opt.step().unwrap();
    assert_eq!(p.w.value().as_slice().unwrap().as_ptr(), ptr);
}
