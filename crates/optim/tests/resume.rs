//! State dicts: a run saved after 3 steps and resumed for 2 more ends
//! bit for bit where 5 uninterrupted steps end; bad state dicts are refused
//! with errors that name the tensor, and change nothing.

mod common;

use common::Problem;
use deepgen_autograd::{Element, Tensor};
use deepgen_optim::prelude::*;
use deepgen_optim::{
    Adam, AdamConfig, AdamW, AdamWConfig, CosineAnnealingLR, Error, ExponentialLR, LinearLR,
    RmsProp, RmsPropConfig, Sgd, SgdConfig, StateDict, StepLR,
};

type Run<T> = (Box<dyn Optimizer<T>>, Box<dyn LrScheduler>);

/// Each optimizer with two groups (w, then b, with different options) and a
/// scheduler.
fn build<T: Element>(kind: &str, p: &Problem<T>) -> Run<T> {
    let (w, b) = (p.w.clone(), p.b.clone());
    let mut opt: Box<dyn Optimizer<T>> = match kind {
        "sgd" => {
            let c = |lr| SgdConfig {
                lr,
                momentum: 0.9,
                nesterov: true,
                weight_decay: 1e-2,
                ..Default::default()
            };
            let mut o = Sgd::new([w], c(0.05)).unwrap();
            o.add_param_group([b], c(0.1)).unwrap();
            Box::new(o)
        }
        "adam" => {
            let c = |lr| AdamConfig {
                lr,
                amsgrad: true,
                weight_decay: 0.1,
                ..Default::default()
            };
            let mut o = Adam::new([w], c(0.01)).unwrap();
            o.add_param_group([b], c(0.03)).unwrap();
            Box::new(o)
        }
        "adamw" => {
            let mut o = AdamW::new([w], AdamWConfig::default()).unwrap();
            let c = AdamWConfig {
                lr: 0.02,
                weight_decay: 0.0,
                ..Default::default()
            };
            o.add_param_group([b], c).unwrap();
            Box::new(o)
        }
        "rmsprop" => {
            let c = |lr| RmsPropConfig {
                lr,
                momentum: 0.5,
                centered: true,
                ..Default::default()
            };
            let mut o = RmsProp::new([w], c(0.01)).unwrap();
            o.add_param_group([b], c(0.005)).unwrap();
            Box::new(o)
        }
        other => panic!("unknown kind {other}"),
    };
    let sched: Box<dyn LrScheduler> = match kind {
        "sgd" => Box::new(StepLR::new(&mut opt, 2, 0.5).unwrap()),
        "adam" => Box::new(CosineAnnealingLR::new(&mut opt, 4, 1e-3).unwrap()),
        "adamw" => Box::new(LinearLR::new(&mut opt, 0.25, 1.0, 3).unwrap()),
        _ => Box::new(ExponentialLR::new(&mut opt, 0.9).unwrap()),
    };
    (opt, sched)
}

fn train<T: Element>(p: &Problem<T>, (opt, sched): &mut Run<T>, steps: usize) {
    for _ in 0..steps {
        p.backward();
        opt.step().unwrap();
        sched.step(opt).unwrap();
    }
}

fn bits<T: Element>(t: &Tensor<T>) -> Vec<u64> {
    t.to_vec().iter().map(|v| v.as_f64().to_bits()).collect()
}

fn resumes_exactly<T: Element>() {
    for kind in ["sgd", "adam", "adamw", "rmsprop"] {
        let straight = Problem::<T>::new();
        let mut run = build(kind, &straight);
        train(&straight, &mut run, 5);

        let first = Problem::<T>::new();
        let mut run1 = build(kind, &first);
        train(&first, &mut run1, 3);
        let (opt_state, sched_state) = (run1.0.state_dict(), run1.1.state_dict());
        drop(run1);

        // A new process, as it were: fresh parameters with the saved values,
        // a fresh optimizer and scheduler (the scheduler first: building it
        // moves the rates, which the optimizer's state then restores).
        let second = first.with_params(first.w.value(), first.b.value());
        let mut run2 = build(kind, &second);
        run2.0.load_state_dict(&opt_state).unwrap();
        run2.1.load_state_dict(&sched_state).unwrap();
        train(&second, &mut run2, 2);

        assert_eq!(
            bits(&second.w.value()),
            bits(&straight.w.value()),
            "{kind}: w"
        );
        assert_eq!(
            bits(&second.b.value()),
            bits(&straight.b.value()),
            "{kind}: b"
        );
        assert_eq!(
            run2.0.state_dict(),
            run.0.state_dict(),
            "{kind}: optimizer state"
        );
        assert_eq!(run2.1.state(), run.1.state(), "{kind}: scheduler state");
        assert_eq!(run2.0.lrs(), run.0.lrs(), "{kind}: rates");
    }
}

#[test]
fn resuming_from_state_dicts_continues_bit_for_bit_in_f32() {
    resumes_exactly::<f32>();
}

#[test]
fn resuming_from_state_dicts_continues_bit_for_bit_in_f64() {
    resumes_exactly::<f64>();
}

#[test]
fn state_dict_uses_pytorchs_names() {
    let p = Problem::<f32>::new();
    let (mut opt, _) = build("adam", &p);
    p.backward();
    opt.step().unwrap();
    let dict = opt.state_dict();
    let names: Vec<&str> = dict.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "state.0.step",
        "state.0.exp_avg",
        "state.0.exp_avg_sq",
        "state.0.max_exp_avg_sq",
        "state.1.exp_avg",
        "group.0.lr",
        "group.0.betas",
        "group.1.lr",
        "group.1.params",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    let get = |name: &str| dict.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(get("state.0.exp_avg").shape(), &[3, 4]);
    assert_eq!(get("state.1.step").to_vec(), vec![1.0]);
    assert_eq!(get("group.1.params").to_vec(), vec![1.0]);
    assert_eq!(get("group.0.betas").to_vec(), vec![0.9, 0.999]);
}

/// An Adam over the problem after one step, and its state dict.
fn stepped_adam() -> (Problem<f32>, Run<f32>, StateDict) {
    let p = Problem::<f32>::new();
    let mut run = build("adam", &p);
    train(&p, &mut run, 1);
    let dict = run.0.state_dict();
    (p, run, dict)
}

fn without(dict: &StateDict, name: &str) -> StateDict {
    let out: StateDict = dict.iter().filter(|(n, _)| n != name).cloned().collect();
    assert_eq!(out.len() + 1, dict.len(), "{name} was in the dict");
    out
}

fn replaced(dict: &StateDict, name: &str, t: Tensor<f64>) -> StateDict {
    let mut out = without(dict, name);
    out.push((name.to_string(), t));
    out
}

fn refused(run: &mut Run<f32>, dict: &StateDict) -> Error {
    let before = run.0.state_dict();
    let err = run.0.load_state_dict(dict).unwrap_err();
    assert_eq!(
        run.0.state_dict(),
        before,
        "a refused load changed the state ({err})"
    );
    err
}

#[test]
fn a_missing_tensor_is_named_with_its_shape() {
    let (_p, mut run, dict) = stepped_adam();
    let err = refused(&mut run, &without(&dict, "state.0.exp_avg"));
    assert!(matches!(&err, Error::MissingTensor { name, .. } if name == "state.0.exp_avg"));
    assert_eq!(
        err.to_string(),
        "load_state_dict: missing tensor state.0.exp_avg (expected shape [3, 4])"
    );
    let err = refused(&mut run, &without(&dict, "state.1.max_exp_avg_sq"));
    assert!(err.to_string().contains("state.1.max_exp_avg_sq"), "{err}");
}

#[test]
fn a_mis_shaped_tensor_is_named_with_both_shapes() {
    let (_p, mut run, dict) = stepped_adam();
    let err = refused(
        &mut run,
        &replaced(&dict, "state.1.exp_avg_sq", Tensor::zeros(&[5])),
    );
    assert_eq!(
        err.to_string(),
        "load_state_dict: tensor state.1.exp_avg_sq has shape [5], expected [4]"
    );
    let err = refused(
        &mut run,
        &replaced(&dict, "group.0.lr", Tensor::zeros(&[1])),
    );
    assert!(
        err.to_string()
            .contains("group.0.lr has shape [1], expected []"),
        "{err}"
    );
}

#[test]
fn an_extra_tensor_is_named() {
    let (_p, mut run, dict) = stepped_adam();
    let mut extra = dict.clone();
    extra.push(("state.7.exp_avg".into(), Tensor::zeros(&[4])));
    let err = refused(&mut run, &extra);
    assert_eq!(
        err.to_string(),
        "load_state_dict: unexpected tensor state.7.exp_avg (shape [4])"
    );
}

#[test]
fn another_optimizers_or_models_state_is_refused() {
    let (p, mut run, _) = stepped_adam();
    // SGD's state: Adam's options are missing.
    let (mut sgd, _) = build("sgd", &p);
    p.backward();
    sgd.step().unwrap();
    let err = refused(&mut run, &sgd.state_dict());
    assert!(
        err.to_string().contains("missing tensor group.0.betas"),
        "{err}"
    );
    // One group where there are two.
    let one = Adam::new(p.params(), AdamConfig::default()).unwrap();
    let err = refused(&mut run, &one.state_dict());
    assert!(
        err.to_string()
            .contains("group.0.params has shape [2], expected [1]"),
        "{err}"
    );
}

#[test]
fn bad_values_are_refused() {
    let (_p, mut run, dict) = stepped_adam();
    let cases = [
        (
            "group.0.amsgrad",
            Tensor::scalar(0.5),
            "tensor group.0.amsgrad holds 0.5",
        ),
        (
            "group.1.params",
            Tensor::from_vec(vec![0.0], &[1]).unwrap(),
            "group.1.params holds 0",
        ),
        (
            "state.0.step",
            Tensor::scalar(-1.0),
            "state.0.step holds -1",
        ),
        ("group.0.lr", Tensor::scalar(-1.0), "Adam: invalid lr -1"),
        (
            "group.1.betas",
            Tensor::from_vec(vec![0.9, 1.5], &[2]).unwrap(),
            "invalid betas.1 1.5",
        ),
    ];
    for (name, value, message) in cases {
        let err = refused(&mut run, &replaced(&dict, name, value));
        assert!(err.to_string().contains(message), "{name}: {err}");
    }
    let mut twice = dict.clone();
    twice.push(dict[0].clone());
    let err = refused(&mut run, &twice);
    assert!(matches!(err, Error::DuplicateTensor { .. }), "{err}");
}

#[test]
fn a_state_dict_restores_group_options() {
    let p = Problem::<f64>::new();
    let mut a = Sgd::new(
        p.params(),
        SgdConfig {
            lr: 0.5,
            momentum: 0.3,
            ..Default::default()
        },
    )
    .unwrap();
    let mut b = Sgd::new(p.params(), SgdConfig::default()).unwrap();
    b.load_state_dict(&a.state_dict()).unwrap();
    assert_eq!(b.param_groups()[0].config(), a.param_groups()[0].config());
    a.set_lr(0, 0.25).unwrap();
    b.load_state_dict(&a.state_dict()).unwrap();
    assert_eq!(b.lr(0).unwrap(), 0.25);
}
