//! Finite-difference checks of first and second derivatives, in f64.
//!
//! For a function `f` of some input tensors, both orders reduce `f` to a
//! scalar with fixed random weights so that every output element counts:
//! - first order: `L = Σ R ⊙ f(x)`; autograd's dL/dx is compared with
//!   central differences of L;
//! - second order: `L2 = Σ_i S_i ⊙ dL/dx_i`, the gradient taken with
//!   `create_graph`; autograd's dL2/dx (a gradient of a gradient) is compared
//!   with central differences of L2.
//!
//! The error of one element is `|analytic - numeric| / max(|numeric|, 1)`;
//! a check passes when the largest is below [`TOLERANCE`].

use std::sync::Arc;

use deepgen_tensor::storage::Buffer;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{grad, Result, Tensor, Var};

/// Largest accepted error (see the module docs).
pub const TOLERANCE: f64 = 1e-6;

/// Step of the central differences.
pub const EPS: f64 = 1e-6;

type InputFn = Box<dyn Fn(&mut ChaCha8Rng) -> Vec<Tensor<f64>> + Send + Sync>;
type OpFn = Box<dyn Fn(&[Var<f64>]) -> Result<Var<f64>> + Send + Sync>;

/// One function to check: how to draw its inputs, and the function.
pub struct Case {
    pub name: String,
    pub inputs: InputFn,
    pub f: OpFn,
}

impl Case {
    pub fn new(
        name: impl Into<String>,
        inputs: impl Fn(&mut ChaCha8Rng) -> Vec<Tensor<f64>> + Send + Sync + 'static,
        f: impl Fn(&[Var<f64>]) -> Result<Var<f64>> + Send + Sync + 'static,
    ) -> Self {
        Case {
            name: name.into(),
            inputs: Box::new(inputs),
            f: Box::new(f),
        }
    }
}

/// The outcome of one case at one order.
#[derive(Debug, Clone)]
pub struct Report {
    pub name: String,
    pub order: u8,
    /// Input shapes, with `*` marking non-contiguous views.
    pub shapes: String,
    pub elements: usize,
    pub max_error: f64,
    pub passed: bool,
    /// Set when the check could not run (an op returned an error).
    pub failure: Option<String>,
}

/// Checks `case` at both orders with inputs drawn from `seed`.
pub fn check(case: &Case, seed: u64) -> [Report; 2] {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let inputs = (case.inputs)(&mut rng);
    let shapes = inputs
        .iter()
        .map(|t| {
            format!(
                "{:?}{}",
                t.shape(),
                if t.is_contiguous() { "" } else { "*" }
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    let elements = inputs.iter().map(|t| t.numel()).sum();
    let report = |order: u8, r: Result<f64>| {
        let (max_error, failure) = match r {
            Ok(e) => (e, None),
            Err(e) => (f64::NAN, Some(e.to_string())),
        };
        Report {
            name: case.name.clone(),
            order,
            shapes: shapes.clone(),
            elements,
            max_error,
            passed: failure.is_none() && max_error < TOLERANCE,
            failure,
        }
    };
    [
        report(1, first_order(case, &inputs, &mut rng)),
        report(2, second_order(case, &inputs, &mut rng)),
    ]
}

fn leaves(inputs: &[Tensor<f64>]) -> Vec<Var<f64>> {
    inputs.iter().map(|t| Var::parameter(t.clone())).collect()
}

fn weights_like(shapes: &[Vec<usize>], rng: &mut ChaCha8Rng) -> Vec<Var<f64>> {
    shapes
        .iter()
        .map(|s| Var::constant(Tensor::randn(s, 0.0, 1.0, rng)))
        .collect()
}

/// Σ_i Σ w_i ⊙ v_i as a rank-0 Var.
fn weighted_sum(vs: &[Var<f64>], ws: &[Var<f64>]) -> Result<Var<f64>> {
    let mut total = Var::scalar(0.0);
    for (v, w) in vs.iter().zip(ws) {
        total = total.add(&v.mul(w)?.sum_all()?)?;
    }
    Ok(total)
}

fn first_order(case: &Case, inputs: &[Tensor<f64>], rng: &mut ChaCha8Rng) -> Result<f64> {
    let x = leaves(inputs);
    let out = (case.f)(&x)?;
    let r = weights_like(&[out.shape()], rng);
    let loss = |x: &[Var<f64>]| -> Result<f64> { weighted_sum(&[(case.f)(x)?], &r)?.item() };
    let analytic = grad(&[weighted_sum(&[out], &r)?], &x, false)?;
    compare(inputs, &analytic, loss)
}

fn second_order(case: &Case, inputs: &[Tensor<f64>], rng: &mut ChaCha8Rng) -> Result<f64> {
    let x = leaves(inputs);
    let out = (case.f)(&x)?;
    let r = weights_like(&[out.shape()], rng);
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
    let s = weights_like(&shapes, rng);
    let g = grad(&[weighted_sum(&[out], &r)?], &x, true)?;
    let analytic = grad(&[weighted_sum(&g, &s)?], &x, false)?;
    let loss = |x: &[Var<f64>]| -> Result<f64> {
        let g = grad(&[weighted_sum(&[(case.f)(x)?], &r)?], x, false)?;
        weighted_sum(&g, &s)?.item()
    };
    compare(inputs, &analytic, loss)
}

/// Largest error between `analytic` and central differences of `loss`.
fn compare(
    inputs: &[Tensor<f64>],
    analytic: &[Var<f64>],
    loss: impl Fn(&[Var<f64>]) -> Result<f64>,
) -> Result<f64> {
    let mut worst = 0.0f64;
    for (i, t) in inputs.iter().enumerate() {
        let a = analytic[i].value().to_vec();
        for (j, &aj) in a.iter().enumerate() {
            let at = |delta: f64| -> Result<f64> {
                let mut x = leaves(inputs);
                x[i] = Var::parameter(perturbed(t, j, delta)?);
                loss(&x)
            };
            let numeric = (at(EPS)? - at(-EPS)?) / (2.0 * EPS);
            let err = (aj - numeric).abs() / numeric.abs().max(1.0);
            worst = worst.max(if err.is_nan() { f64::INFINITY } else { err });
        }
    }
    Ok(worst)
}

/// A copy of `t` (same layout, so views stay views) with its `j`-th element
/// in row-major order moved by `delta`.
fn perturbed(t: &Tensor<f64>, j: usize, delta: f64) -> Result<Tensor<f64>> {
    let mut storage = Buffer::copy_of(t.storage());
    storage[t.layout().position_of_flat(j)] += delta;
    Ok(Tensor::from_parts(Arc::new(storage), t.layout().clone())?)
}

/// Prints the reports as a table and returns how many failed.
pub fn print_table(reports: &[Report]) -> usize {
    println!(
        "{:<36} {:>5} {:>10} {:>12}  {:<6} inputs",
        "op", "order", "elements", "max error", "result"
    );
    let mut failed = 0;
    for r in reports {
        let verdict = if r.passed { "pass" } else { "FAIL" };
        failed += usize::from(!r.passed);
        println!(
            "{:<36} {:>5} {:>10} {:>12.3e}  {:<6} {}",
            r.name, r.order, r.elements, r.max_error, verdict, r.shapes
        );
        if let Some(f) = &r.failure {
            println!("    error: {f}");
        }
    }
    println!(
        "{} checks: {} passed, {} failed (tolerance {:e}, step {:e})",
        reports.len(),
        reports.len() - failed,
        failed,
        TOLERANCE,
        EPS
    );
    failed
}

pub mod cases;
