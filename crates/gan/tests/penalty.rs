//! The gradient penalties are differentiated exactly: their gradients with
//! respect to the critic's parameters (a gradient of a gradient) match
//! central differences in f64.

use deepgen_autograd::{Tensor, Var};
use deepgen_gan::{
    gradient_penalty, r1_penalty, Activation, DcganConfig, DcganDiscriminator, Discriminator,
    MlpDiscriminator, MlpGanConfig,
};
use deepgen_nn::Module;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Largest |autograd - central difference| / max(|central difference|, 1)
/// over every parameter element of `d`, for the scalar `f`.
fn max_error(d: &dyn Discriminator<f64>, f: &dyn Fn() -> f64, analytic: &[Tensor<f64>]) -> f64 {
    const H: f64 = 1e-6;
    let mut worst: f64 = 0.0;
    for (p, a) in d.parameters().iter().zip(analytic) {
        let base = p.value().contiguous();
        let a = a.to_vec();
        for i in 0..base.numel() {
            let at = |delta: f64| {
                let mut v = base.to_vec();
                v[i] += delta;
                p.set_value(Tensor::from_vec(v, base.shape()).unwrap())
                    .unwrap();
                f()
            };
            let numeric = (at(H) - at(-H)) / (2.0 * H);
            worst = worst.max((a[i] - numeric).abs() / numeric.abs().max(1.0));
        }
        p.set_value(base).unwrap();
    }
    worst
}

fn analytic(d: &dyn Discriminator<f64>, penalty: Var<f64>) -> Vec<Tensor<f64>> {
    d.zero_grad();
    penalty.backward().unwrap();
    d.parameters()
        .iter()
        // The last bias does not move grad_x D: no gradient, i.e. zero.
        .map(|p| p.grad().unwrap_or_else(|| Tensor::zeros(&p.shape())))
        .collect()
}

fn randn(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor<f64> {
    Tensor::randn(shape, 0.0, 1.0, rng)
}

#[test]
fn gradient_penalty_of_an_mlp_critic_matches_finite_differences() {
    let cfg = MlpGanConfig {
        data_shape: vec![3],
        d_hidden: vec![5, 4],
        d_activation: Activation::LeakyRelu(0.2),
        ..Default::default()
    };
    let d = MlpDiscriminator::<f64>::new(&cfg, 3).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (real, fake) = (randn(&[4, 3], &mut rng), randn(&[4, 3], &mut rng));
    let eps = [0.1, 0.5, 0.7, 0.95];
    let gp = || gradient_penalty(&d, &real, &fake, &eps, None).unwrap();
    let value = gp().item().unwrap();
    assert!(value > 0.0);
    let a = analytic(&d, gp());
    let err = max_error(&d, &|| gp().item().unwrap(), &a);
    assert!(err < 1e-6, "max error {err}");
}

#[test]
fn gradient_penalty_through_convolutions_and_batch_norm_matches_finite_differences() {
    let cfg = DcganConfig {
        width: 1,
        latent: 2,
        ..Default::default()
    };
    let d = DcganDiscriminator::<f64>::new(&cfg, 5).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (real, fake) = (
        randn(&[3, 1, 28, 28], &mut rng),
        randn(&[3, 1, 28, 28], &mut rng),
    );
    let eps = [0.2, 0.6, 0.9];
    let gp = || gradient_penalty(&d, &real, &fake, &eps, None).unwrap();
    let a = analytic(&d, gp());
    let err = max_error(&d, &|| gp().item().unwrap(), &a);
    assert!(err < 1e-6, "max error {err}");
}

#[test]
fn r1_penalty_matches_finite_differences() {
    let cfg = MlpGanConfig {
        data_shape: vec![2],
        d_hidden: vec![6],
        ..Default::default()
    };
    let d = MlpDiscriminator::<f64>::new(&cfg, 4).unwrap();
    let real = randn(&[5, 2], &mut ChaCha8Rng::seed_from_u64(3));
    let r1 = || {
        let x = Var::parameter(real.clone());
        let out = d.score(&x, None).unwrap();
        r1_penalty(&x, &out).unwrap()
    };
    // By hand for one sample: D(x) = w2 . lrelu(W1 x + b1) + b2, so
    // grad_x D = W1^T (w2 * lrelu'(W1 x + b1)).
    let w1 = d.parameters()[0].value().to_vec();
    let b1 = d.parameters()[1].value().to_vec();
    let w2 = d.parameters()[2].value().to_vec();
    let x = real.to_vec();
    let mut want = 0.0;
    for s in 0..5 {
        let mut g = [0.0; 2];
        for h in 0..6 {
            let pre = w1[2 * h] * x[2 * s] + w1[2 * h + 1] * x[2 * s + 1] + b1[h];
            let slope = if pre > 0.0 { 1.0 } else { 0.2 };
            g[0] += w2[h] * slope * w1[2 * h];
            g[1] += w2[h] * slope * w1[2 * h + 1];
        }
        want += (g[0] * g[0] + g[1] * g[1]) / 5.0;
    }
    assert!((r1().item().unwrap() - want).abs() < 1e-12);
    let a = analytic(&d, r1());
    let err = max_error(&d, &|| r1().item().unwrap(), &a);
    assert!(err < 1e-6, "max error {err}");
}

#[test]
fn a_penalty_with_mismatched_inputs_is_an_error() {
    let d = MlpDiscriminator::<f64>::new(&MlpGanConfig::default(), 0).unwrap();
    let real = Tensor::<f64>::zeros(&[4, 2]);
    assert!(gradient_penalty(&d, &real, &Tensor::zeros(&[3, 2]), &[0.5; 4], None).is_err());
    assert!(gradient_penalty(&d, &real, &real, &[0.5; 3], None).is_err());
}
