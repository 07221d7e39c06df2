//! Gradient checks (f64, first and second order) of every layer and loss,
//! with respect to inputs and parameters; `cargo xtask gradcheck` runs them
//! beside autograd's op checks. Each case builds its layer from a fixed seed
//! and then installs the checked leaves as the layer's parameters (the
//! fields are public), so finite differences move the parameters too.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use deepgen_autograd::gradcheck::Case;

use crate::loss::{self, Reduction};
use crate::{
    BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig,
    Dropout, Embedding, Forward, LayerNorm, Linear, Module, Sequential, Tanh, Tensor, Var,
};

type R = ChaCha8Rng;

fn normal(shape: &[usize], rng: &mut R) -> Tensor<f64> {
    Tensor::randn(shape, 0.0, 1.0, rng)
}

fn uniform(shape: &[usize], lo: f64, hi: f64, rng: &mut R) -> Tensor<f64> {
    Tensor::rand_uniform(shape, lo, hi, rng)
}

/// nn's errors as autograd's, which is what a gradient-check case returns.
fn ag<V>(r: crate::Result<V>) -> deepgen_autograd::Result<V> {
    r.map_err(|e| match e {
        crate::Error::Autograd(e) => e,
        other => deepgen_autograd::TensorError::Invalid {
            op: "nn",
            shape: vec![],
            msg: other.to_string(),
        }
        .into(),
    })
}

fn seeded() -> R {
    R::seed_from_u64(7)
}

/// BatchNorm alone, or fused with a rectifier of `slope` (as Sequential
/// runs a BatchNorm followed by ReLU or LeakyReLU).
fn batch_norm_case(
    name: &str,
    x_shape: &'static [usize],
    training: bool,
    slope: Option<f64>,
) -> Case {
    Case::new(
        name,
        move |rng| {
            vec![
                normal(x_shape, rng),
                uniform(&[x_shape[1]], 0.5, 1.5, rng),
                normal(&[x_shape[1]], rng),
            ]
        },
        move |x| {
            let c = x_shape[1];
            let mut bn = if x_shape.len() == 4 {
                BatchNorm::new2d(c, BatchNormConfig::default())
            } else {
                BatchNorm::new1d(c, BatchNormConfig::default())
            };
            bn.weight = Some(x[1].clone());
            bn.bias = Some(x[2].clone());
            if !training {
                let mut rng = seeded();
                bn.running_mean.set_value(normal(&[c], &mut rng))?;
                bn.running_var
                    .set_value(uniform(&[c], 0.5, 2.0, &mut rng))?;
            }
            bn.set_training(training);
            let y = match slope {
                Some(s) => bn.forward_rectified(&x[0], s),
                None => bn.forward(&x[0]),
            };
            Ok(ag(y)?.square())
        },
    )
}

/// Every layer and loss of deepgen-nn.
/// A bidirectional recurrent layer (GRU or LSTM) over a padded batch of
/// lengths 3 and 2: its outputs, then its final states, as one vector.
fn recurrent_case(name: &str, lstm: bool) -> Case {
    let gates = if lstm { 4 } else { 3 };
    let (input, hidden) = (3, 2);
    Case::new(
        name,
        move |rng| {
            let mut v = vec![normal(&[2, 3, input], rng)];
            for _ in 0..2 {
                v.push(normal(&[gates * hidden, input], rng));
                v.push(normal(&[gates * hidden, hidden], rng));
                v.push(normal(&[gates * hidden], rng));
                v.push(normal(&[gates * hidden], rng));
            }
            v
        },
        move |x| {
            let config = crate::RnnConfig {
                bidirectional: true,
                batch_first: true,
                ..Default::default()
            };
            let lengths = Some(&[3usize, 2][..]);
            let params = x[1..].iter().cloned();
            let flat = |v: &Var<f64>| v.reshape(&[v.numel()]);
            let (out, state) = if lstm {
                let mut m = ag(crate::Lstm::new(input, hidden, config, &mut seeded()))?;
                m.0.replace_parameters(params);
                ag(m.forward_with(&x[0], None, lengths))?
            } else {
                let mut m = ag(crate::Gru::new(input, hidden, config, &mut seeded()))?;
                m.0.replace_parameters(params);
                ag(m.forward_with(&x[0], None, lengths))?
            };
            let mut parts = vec![flat(&out)?, flat(&state.h)?];
            if let Some(c) = &state.c {
                parts.push(flat(c)?);
            }
            Var::concat(&parts, 0)
        },
    )
}

pub fn all() -> Vec<Case> {
    vec![
        recurrent_case("nn.GRU (bidirectional, lengths 3 and 2)", false),
        recurrent_case("nn.LSTM (bidirectional, lengths 3 and 2)", true),
        Case::new(
            "nn.Linear",
            |rng| {
                vec![
                    normal(&[3, 4], rng),
                    normal(&[5, 4], rng),
                    normal(&[5], rng),
                ]
            },
            |x| {
                let mut m = ag(Linear::new(4, 5, true, &mut seeded()))?;
                m.weight = x[1].clone();
                m.bias = Some(x[2].clone());
                Ok(ag(m.forward(&x[0]))?.square())
            },
        ),
        Case::new(
            "nn.Conv2d",
            |rng| {
                vec![
                    normal(&[2, 2, 5, 5], rng),
                    normal(&[3, 2, 3, 3], rng),
                    normal(&[3], rng),
                ]
            },
            |x| {
                let cfg = Conv2dConfig {
                    stride: 2,
                    padding: 1,
                    ..Default::default()
                };
                let mut m = ag(Conv2d::new(2, 3, 3, cfg, &mut seeded()))?;
                m.weight = x[1].clone();
                m.bias = Some(x[2].clone());
                Ok(ag(m.forward(&x[0]))?.square())
            },
        ),
        Case::new(
            "nn.ConvTranspose2d",
            |rng| {
                vec![
                    normal(&[2, 3, 3, 3], rng),
                    normal(&[3, 2, 4, 4], rng),
                    normal(&[2], rng),
                ]
            },
            |x| {
                let cfg = ConvTranspose2dConfig {
                    stride: 2,
                    padding: 1,
                    output_padding: 1,
                    ..Default::default()
                };
                let mut m = ag(ConvTranspose2d::new(3, 2, 4, cfg, &mut seeded()))?;
                m.weight = x[1].clone();
                m.bias = Some(x[2].clone());
                Ok(ag(m.forward(&x[0]))?.square())
            },
        ),
        batch_norm_case("nn.BatchNorm1d (train)", &[5, 3], true, None),
        batch_norm_case("nn.BatchNorm2d (train)", &[3, 2, 2, 3], true, None),
        batch_norm_case("nn.BatchNorm2d (eval)", &[3, 2, 2, 3], false, None),
        batch_norm_case(
            "nn.BatchNorm2d+ReLU (train)",
            &[3, 2, 2, 3],
            true,
            Some(0.0),
        ),
        batch_norm_case(
            "nn.BatchNorm2d+LeakyReLU (train)",
            &[3, 2, 2, 3],
            true,
            Some(0.2),
        ),
        Case::new(
            "nn.LayerNorm",
            |rng| {
                vec![
                    normal(&[3, 4], rng),
                    uniform(&[4], 0.5, 1.5, rng),
                    normal(&[4], rng),
                ]
            },
            |x| {
                let mut m = LayerNorm::new(&[4], 1e-5, true);
                m.weight = Some(x[1].clone());
                m.bias = Some(x[2].clone());
                Ok(ag(m.forward(&x[0]))?.square())
            },
        ),
        Case::new(
            "nn.Embedding",
            |rng| vec![normal(&[5, 3], rng)],
            |x| {
                let mut m = Embedding::new(5, 3, &mut seeded());
                m.weight = x[0].clone();
                let idx = Var::constant(Tensor::from_vec(vec![1.0, 4.0, 1.0, 0.0], &[2, 2])?);
                Ok(ag(m.forward(&idx))?.square())
            },
        ),
        Case::new(
            "nn.Dropout (train)",
            |rng| vec![normal(&[4, 5], rng)],
            |x| {
                // A fresh layer with the same seed draws the same mask every evaluation.
                let m = ag(Dropout::new(0.4, 3))?;
                Ok(ag(m.forward(&x[0]))?.square())
            },
        ),
        Case::new(
            "nn.Sequential (Linear-Tanh-Linear)",
            |rng| {
                vec![
                    normal(&[3, 4], rng),
                    normal(&[6, 4], rng),
                    normal(&[6], rng),
                    normal(&[2, 6], rng),
                    normal(&[2], rng),
                ]
            },
            |x| {
                let mut l1 = ag(Linear::new(4, 6, true, &mut seeded()))?;
                let mut l2 = ag(Linear::new(6, 2, true, &mut seeded()))?;
                (l1.weight, l1.bias, l2.weight, l2.bias) = (
                    x[1].clone(),
                    Some(x[2].clone()),
                    x[3].clone(),
                    Some(x[4].clone()),
                );
                let net = Sequential::new().add(l1).add(Tanh).add(l2);
                ag(net.forward(&x[0]))
            },
        ),
        Case::new(
            "loss.mse (mean)",
            |rng| vec![normal(&[3, 4], rng), normal(&[3, 4], rng)],
            |x| ag(loss::mse_loss(&x[0], &x[1], Reduction::Mean)),
        ),
        Case::new(
            "loss.l1 (sum)",
            |rng| {
                let t = normal(&[3, 4], rng);
                // Keep |input - target| away from 0, the kink.
                let d: Vec<f64> = (0..12)
                    .map(|_| if rng.random::<bool>() { 0.5 } else { -0.5 })
                    .collect();
                let i = deepgen_kernels::add(&t, &Tensor::from_vec(d, &[3, 4]).expect("12 values"))
                    .expect("same shape");
                vec![i, t]
            },
            |x| Ok(ag(loss::l1_loss(&x[0], &x[1], Reduction::Sum))?.square()),
        ),
        Case::new(
            "loss.bce (mean)",
            |rng| {
                vec![
                    uniform(&[3, 4], 0.05, 0.95, rng),
                    uniform(&[3, 4], 0.0, 1.0, rng),
                ]
            },
            |x| ag(loss::bce_loss(&x[0], &x[1], Reduction::Mean)),
        ),
        Case::new(
            "loss.bce_with_logits (pos_weight)",
            |rng| {
                vec![
                    normal(&[3, 4], rng),
                    uniform(&[3, 4], 0.0, 1.0, rng),
                    uniform(&[4], 0.5, 2.0, rng),
                ]
            },
            |x| {
                ag(loss::bce_with_logits(
                    &x[0],
                    &x[1],
                    Some(&x[2]),
                    Reduction::Sum,
                ))
            },
        ),
        Case::new(
            "loss.discretized_logistic_nll",
            |rng| {
                // Pixel levels k / 255 with both end bins among them.
                let levels = [0.0, 255.0, 17.0, 128.0, 254.0, 1.0, 60.0, 200.0];
                let x = Tensor::from_vec(levels.iter().map(|k| k / 255.0).collect(), &[2, 4]);
                vec![
                    uniform(&[2, 4], 0.0, 1.0, rng),
                    uniform(&[2, 4], -4.0, -1.0, rng),
                    x.expect("8 values"),
                ]
            },
            |x| {
                ag(loss::discretized_logistic_nll(
                    &x[0],
                    &x[1],
                    &x[2],
                    Reduction::Sum,
                ))
            },
        ),
        Case::new(
            "loss.discretized_logistic_mixture_nll",
            |rng| {
                let levels = [0.0, 255.0, 17.0, 128.0];
                let x = Tensor::from_vec(levels.iter().map(|k| k / 255.0).collect(), &[2, 2]);
                vec![
                    normal(&[2, 3, 2], rng),
                    uniform(&[2, 3, 2], 0.0, 1.0, rng),
                    uniform(&[2, 3, 2], -4.0, -1.0, rng),
                    x.expect("4 values"),
                ]
            },
            |x| {
                ag(loss::discretized_logistic_mixture_nll(
                    &x[0],
                    &x[1],
                    &x[2],
                    &x[3],
                    Reduction::Sum,
                ))
            },
        ),
        Case::new(
            "loss.logistic_bin_nll",
            |rng| {
                vec![
                    uniform(&[3, 4], -3.0, 3.0, rng),
                    normal(&[4], rng),
                    uniform(&[4], -1.5, 1.0, rng),
                ]
            },
            |x| ag(loss::logistic_bin_nll(&x[0], &x[1], &x[2], Reduction::Sum)),
        ),
        Case::new(
            "loss.cross_entropy (mean)",
            |rng| vec![normal(&[4, 5], rng)],
            |x| ag(loss::cross_entropy(&x[0], &[1, 4, 0, 1], Reduction::Mean)),
        ),
        Case::new(
            "loss.cross_entropy_ignore (mean, padding 0)",
            |rng| vec![normal(&[5, 4], rng)],
            |x| {
                Ok(ag(loss::cross_entropy_ignore(
                    &x[0],
                    &[0, 3, 1, 0, 2],
                    0,
                    Reduction::Mean,
                ))?
                .square())
            },
        ),
        Case::new(
            "loss.nll (sum)",
            |rng| vec![normal(&[4, 3], rng)],
            |x| Ok(ag(loss::nll_loss(&x[0], &[2, 0, 0, 1], Reduction::Sum))?.square()),
        ),
        Case::new(
            "loss.gaussian_nll (full)",
            |rng| {
                vec![
                    normal(&[3, 4], rng),
                    normal(&[3, 4], rng),
                    uniform(&[3, 4], 0.3, 2.0, rng),
                ]
            },
            |x| {
                ag(loss::gaussian_nll_loss(
                    &x[0],
                    &x[1],
                    &x[2],
                    true,
                    1e-6,
                    Reduction::Mean,
                ))
            },
        ),
        Case::new(
            "loss.kl_normal_std (sum)",
            |rng| vec![normal(&[3, 4], rng), normal(&[3, 4], rng)],
            |x| ag(loss::kl_normal_std(&x[0], &x[1], Reduction::Sum)),
        ),
    ]
}
