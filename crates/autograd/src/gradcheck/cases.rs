//! The gradient checks of every differentiable op in this crate.
//!
//! Shapes are drawn at random per seed; many inputs are non-contiguous views
//! (narrowed and permuted) or broadcast. Inputs of ops with kinks (relu, abs,
//! max, pooling) keep away from the kinks, so finite differences are valid.
//! Linear ops are checked through a square (`op(x)²`), which makes the
//! second-order check exercise the backward of their backward.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::Case;
use crate::{Conv2dOptions, Pool2dOptions, Result, Tensor, Var};

type R = ChaCha8Rng;
type Gen = fn(&[usize], &mut R) -> Tensor<f64>;

fn dim(rng: &mut R, lo: usize, hi: usize) -> usize {
    rng.random_range(lo..=hi)
}

fn normal(shape: &[usize], rng: &mut R) -> Tensor<f64> {
    Tensor::randn(shape, 0.0, 1.0, rng)
}

fn positive(shape: &[usize], rng: &mut R) -> Tensor<f64> {
    Tensor::rand_uniform(shape, 0.5, 2.0, rng)
}

/// Values with |x| in [0.2, 1.5] and random sign: away from kinks at 0.
fn away(shape: &[usize], rng: &mut R) -> Tensor<f64> {
    let t = Tensor::rand_uniform(shape, 0.2, 1.5, rng);
    let signs = Tensor::rand_uniform(shape, -1.0, 1.0, rng);
    let data = t
        .to_vec()
        .iter()
        .zip(signs.to_vec())
        .map(|(v, s)| if s < 0.0 { -v } else { *v })
        .collect();
    Tensor::from_vec(data, shape).expect("same shape")
}

/// Distinct values, for max / min / pooling: a shuffled ramp plus noise.
fn distinct(shape: &[usize], rng: &mut R) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    let mut v: Vec<f64> = (0..n)
        .map(|i| i as f64 * 0.1 + rng.random_range(0.0..0.05))
        .collect();
    for i in (1..n).rev() {
        v.swap(i, rng.random_range(0..=i));
    }
    Tensor::from_vec(v, shape).expect("same shape")
}

/// The same values as `gen` would give for `shape`, held as a non-contiguous
/// view (innermost stride 2, axes permuted, non-zero offset).
fn view(shape: &[usize], rng: &mut R, gen: Gen) -> Tensor<f64> {
    let r = shape.len();
    let mut base: Vec<usize> = shape.iter().rev().copied().collect();
    base.push(2);
    let t = gen(&base, rng);
    let t = t
        .narrow(r, 1, 1)
        .and_then(|t| t.squeeze(r))
        .expect("valid view");
    let reversed: Vec<usize> = (0..r).rev().collect();
    t.permute(&reversed).expect("valid permutation")
}

fn sq(v: Var<f64>) -> Result<Var<f64>> {
    Ok(v.square())
}

fn unary(name: &str, gen: Gen, f: fn(&Var<f64>) -> Var<f64>) -> Case {
    Case::new(
        name,
        move |rng| {
            let shape = [dim(rng, 2, 4), dim(rng, 2, 5)];
            vec![view(&shape, rng, gen)]
        },
        move |x| Ok(f(&x[0])),
    )
}

fn binary(name: &str, gen_b: Gen, f: fn(&Var<f64>, &Var<f64>) -> Result<Var<f64>>) -> Case {
    Case::new(
        name,
        move |rng| {
            let (a, b, c) = (dim(rng, 2, 4), dim(rng, 2, 3), dim(rng, 2, 4));
            // [a, b, c] with [b, 1]: both sides broadcast; `a` is a view.
            vec![view(&[a, b, c], rng, normal), gen_b(&[b, 1], rng)]
        },
        move |x| f(&x[0], &x[1]),
    )
}

fn conv_opts(stride: usize, padding: usize, dilation: usize) -> Conv2dOptions {
    Conv2dOptions {
        stride: [stride; 2],
        padding: [padding; 2],
        dilation: [dilation; 2],
    }
}

/// Every op of deepgen-autograd, each checked at both orders.
pub fn all() -> Vec<Case> {
    vec![
        // Binary, with broadcasting and strided inputs.
        binary("add", normal, |a, b| sq(a.add(b)?)),
        binary("sub", normal, |a, b| sq(a.sub(b)?)),
        binary("mul", normal, |a, b| a.mul(b)),
        binary("div", positive, |a, b| a.div(b)),
        Case::new(
            "pow",
            |rng| {
                let s = [dim(rng, 2, 4), dim(rng, 2, 4)];
                vec![view(&s, rng, positive), normal(&[s[1]], rng)]
            },
            |x| x[0].pow(&x[1]),
        ),
        binary("maximum", away, |a, b| sq(a.maximum(&b.mul_scalar(3.0))?)),
        binary("minimum", away, |a, b| sq(a.minimum(&b.mul_scalar(3.0))?)),
        // Scalar and unary.
        unary("add_scalar", normal, |x| x.add_scalar(0.5).square()),
        unary("mul_scalar", normal, |x| x.mul_scalar(-1.5).square()),
        unary("powf", positive, |x| x.powf(2.5)),
        unary("neg", normal, |x| x.neg().square()),
        unary("abs", away, |x| x.abs().square()),
        unary("exp", normal, |x| x.exp()),
        unary("log", positive, |x| x.log()),
        unary("sqrt", positive, |x| x.sqrt()),
        unary("square", normal, |x| x.square()),
        unary("relu", away, |x| x.relu().square()),
        unary("leaky_relu", away, |x| x.leaky_relu(0.2).square()),
        unary("sigmoid", normal, |x| x.sigmoid()),
        unary("tanh", normal, |x| x.tanh()),
        unary("softplus", normal, |x| x.mul_scalar(3.0).softplus()),
        unary("log_sigmoid", normal, |x| x.mul_scalar(3.0).log_sigmoid()),
        // Reductions.
        Case::new(
            "sum",
            |rng| {
                vec![view(
                    &[dim(rng, 2, 3), dim(rng, 2, 4), dim(rng, 2, 3)],
                    rng,
                    normal,
                )]
            },
            |x| sq(x[0].sum(&[0, 2], false)?),
        ),
        Case::new(
            "mean",
            |rng| {
                vec![normal(
                    &[dim(rng, 2, 3), dim(rng, 2, 4), dim(rng, 2, 3)],
                    rng,
                )]
            },
            |x| sq(x[0].mean(&[1], true)?),
        ),
        Case::new(
            "var",
            |rng| vec![view(&[dim(rng, 2, 4), dim(rng, 3, 5)], rng, normal)],
            |x| x[0].var(&[1], false, 1),
        ),
        Case::new(
            "max",
            |rng| {
                vec![distinct(
                    &[dim(rng, 2, 4), dim(rng, 2, 4), dim(rng, 2, 3)],
                    rng,
                )]
            },
            |x| sq(x[0].max(&[1, 2], false)?),
        ),
        Case::new(
            "min",
            |rng| vec![view(&[dim(rng, 2, 4), dim(rng, 2, 4)], rng, distinct)],
            |x| sq(x[0].min(&[0], true)?),
        ),
        Case::new(
            "logsumexp",
            |rng| vec![view(&[dim(rng, 2, 4), dim(rng, 2, 5)], rng, normal)],
            |x| x[0].logsumexp(&[1], false),
        ),
        // Shapes and views.
        Case::new(
            "broadcast_to",
            |rng| vec![normal(&[dim(rng, 2, 4), 1], rng)],
            |x| {
                let s = x[0].shape();
                sq(x[0].broadcast_to(&[3, s[0], 4])?)
            },
        ),
        Case::new(
            "sum_to",
            |rng| vec![view(&[3, dim(rng, 2, 4), 4], rng, normal)],
            |x| sq(x[0].sum_to(&[x[0].shape()[1], 1])?),
        ),
        Case::new(
            "reshape",
            |rng| vec![view(&[dim(rng, 2, 3), 4, dim(rng, 1, 3)], rng, normal)],
            |x| {
                let s = x[0].shape();
                sq(x[0].reshape(&[s[0] * 2, 2 * s[2]])?)
            },
        ),
        Case::new(
            "permute",
            |rng| {
                vec![normal(
                    &[dim(rng, 2, 3), dim(rng, 2, 3), dim(rng, 2, 3)],
                    rng,
                )]
            },
            |x| sq(x[0].permute(&[2, 0, 1])?),
        ),
        Case::new(
            "transpose",
            |rng| vec![view(&[dim(rng, 2, 4), dim(rng, 2, 4)], rng, normal)],
            |x| sq(x[0].transpose(0, 1)?),
        ),
        Case::new(
            "narrow",
            |rng| vec![view(&[dim(rng, 2, 4), dim(rng, 4, 6)], rng, normal)],
            |x| sq(x[0].narrow(1, 1, 2)?),
        ),
        Case::new(
            "pad_axis",
            |rng| vec![normal(&[dim(rng, 2, 4), dim(rng, 2, 4)], rng)],
            |x| sq(x[0].pad_axis(0, 1, 2)?.exp()),
        ),
        Case::new(
            "squeeze_unsqueeze_flatten",
            |rng| vec![view(&[dim(rng, 2, 3), 1, dim(rng, 2, 3)], rng, normal)],
            |x| sq(x[0].squeeze(1)?.unsqueeze(0)?.flatten(1, 2)?),
        ),
        Case::new(
            "contiguous",
            |rng| vec![view(&[dim(rng, 2, 4), dim(rng, 2, 4)], rng, normal)],
            |x| sq(x[0].contiguous()),
        ),
        Case::new(
            "index_select",
            |rng| vec![view(&[dim(rng, 3, 4), dim(rng, 2, 3)], rng, normal)],
            |x| sq(x[0].index_select(0, &[2, 0, 2, 1])?),
        ),
        Case::new(
            "index_add",
            |rng| vec![normal(&[dim(rng, 2, 3), 4], rng)],
            |x| sq(x[0].index_add(1, &[1, 0, 1, 3], 5)?),
        ),
        Case::new(
            "concat",
            |rng| {
                let r = dim(rng, 2, 3);
                vec![
                    normal(&[r, 2], rng),
                    view(&[r, dim(rng, 1, 3)], rng, normal),
                ]
            },
            |x| sq(Var::concat(&[x[0].clone(), x[1].clone()], 1)?),
        ),
        Case::new(
            "stack",
            |rng| {
                let s = [dim(rng, 2, 3), dim(rng, 2, 3)];
                vec![normal(&s, rng), view(&s, rng, normal)]
            },
            |x| sq(Var::stack(&[x[0].clone(), x[1].clone()], 1)?),
        ),
        // Matrix products.
        Case::new(
            "matmul",
            |rng| {
                let (m, k, n) = (dim(rng, 2, 4), dim(rng, 2, 4), dim(rng, 2, 4));
                vec![normal(&[m, k], rng), view(&[k, n], rng, normal)]
            },
            |x| x[0].matmul(&x[1]),
        ),
        Case::new(
            "matmul_batched",
            |rng| {
                let (b, m, k, n) = (
                    dim(rng, 2, 3),
                    dim(rng, 2, 3),
                    dim(rng, 2, 3),
                    dim(rng, 2, 3),
                );
                vec![view(&[b, m, k], rng, normal), normal(&[k, n], rng)]
            },
            |x| x[0].matmul(&x[1]),
        ),
        // Convolutions and pooling.
        Case::new(
            "conv2d",
            |rng| vec![view(&[2, 2, 5, 6], rng, normal), normal(&[3, 2, 3, 3], rng)],
            |x| x[0].conv2d(&x[1], conv_opts(2, 1, 1)),
        ),
        Case::new(
            "conv2d_dilated",
            |rng| vec![normal(&[1, 2, 6, 6], rng), view(&[2, 2, 2, 2], rng, normal)],
            |x| x[0].conv2d(&x[1], conv_opts(1, 2, 2)),
        ),
        // From 8 channels up, images unfold channels-last.
        Case::new(
            "conv2d_channels_last",
            |rng| vec![view(&[2, 8, 4, 5], rng, normal), normal(&[2, 8, 3, 3], rng)],
            |x| x[0].conv2d(&x[1], conv_opts(2, 1, 1)),
        ),
        // A kernel that covers the whole input is one matmul over the batch.
        Case::new(
            "conv2d_dense",
            |rng| vec![view(&[2, 3, 3, 2], rng, normal), normal(&[4, 3, 3, 2], rng)],
            |x| x[0].conv2d(&x[1], conv_opts(1, 0, 1)),
        ),
        Case::new(
            "conv_transpose2d",
            |rng| vec![view(&[2, 3, 3, 3], rng, normal), normal(&[3, 2, 4, 4], rng)],
            |x| x[0].conv_transpose2d(&x[1], conv_opts(2, 1, 1), [1, 1]),
        ),
        Case::new(
            "conv2d_weight_grad",
            |rng| vec![normal(&[2, 2, 5, 5], rng), normal(&[2, 3, 3, 3], rng)],
            |x| x[0].conv2d_weight_grad(&x[1], conv_opts(2, 1, 1), [3, 3]),
        ),
        // Normalised values: their cube depends on x (a sum of squares would not).
        Case::new(
            "batch_norm",
            |rng| {
                let x = view(&[3, 2, 2, 3], rng, normal);
                vec![x, normal(&[2], rng), normal(&[2], rng)]
            },
            |x| {
                let y = x[0].batch_norm(Some(&x[1]), Some(&x[2]), 1e-5)?.y;
                y.mul(&y)?.mul(&y)
            },
        ),
        Case::new(
            "batch_norm_leaky",
            |rng| {
                let x = view(&[3, 2, 2, 3], rng, normal);
                vec![x, normal(&[2], rng), normal(&[2], rng)]
            },
            |x| {
                let y = x[0].batch_norm_rectified(Some(&x[1]), Some(&x[2]), 1e-5, Some(0.2))?;
                y.y.mul(&y.y)?.mul(&y.y)
            },
        ),
        Case::new(
            "batch_norm_plain",
            |rng| vec![view(&[5, 3], rng, normal)],
            |x| {
                let y = x[0].batch_norm(None, None, 1e-5)?.y;
                y.mul(&y)?.mul(&y)
            },
        ),
        Case::new(
            "max_pool2d",
            |rng| vec![distinct(&[2, 2, 5, 4], rng)],
            |x| {
                let o = Pool2dOptions {
                    kernel: [3, 2],
                    stride: [2, 2],
                    padding: [1, 0],
                };
                sq(x[0].max_pool2d(o)?)
            },
        ),
        Case::new(
            "gather_planes",
            |rng| vec![view(&[1, 2, 3, 3], rng, normal)],
            |x| sq(x[0].gather_planes(vec![4, 0, 8, 4, 1, 1].into(), &[1, 2, 3])?),
        ),
        Case::new(
            "avg_pool2d",
            |rng| vec![view(&[2, 2, 5, 5], rng, normal)],
            |x| {
                let o = Pool2dOptions {
                    kernel: [3, 3],
                    stride: [2, 2],
                    padding: [1, 1],
                };
                sq(x[0].avg_pool2d(o)?)
            },
        ),
    ]
}
