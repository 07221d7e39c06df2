//! Layer behaviour beyond gradients: modes, running statistics, defaults, errors.

use deepgen_nn::Forward;
use deepgen_nn::{
    init, BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig,
    Dropout, Embedding, Flatten, LayerNorm, LeakyRelu, Linear, Module, Relu, Sequential, Tensor,
    Unflatten, Var,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(0)
}

fn input(shape: &[usize]) -> Var<f64> {
    Var::constant(Tensor::randn(
        shape,
        0.5,
        2.0,
        &mut ChaCha8Rng::seed_from_u64(1),
    ))
}

#[test]
fn batch_norm_updates_running_statistics_as_pytorch() {
    let bn = BatchNorm::<f64>::new1d(2, BatchNormConfig::default());
    let x =
        Var::constant(Tensor::from_vec(vec![1.0, 10.0, 3.0, 20.0, 5.0, 60.0], &[3, 2]).unwrap());
    let y = bn.forward(&x).unwrap().value().to_vec();
    // Channel 0: mean 3, biased var 8/3, unbiased var 4.
    assert!((y[0] - (1.0 - 3.0) / (8.0f64 / 3.0 + 1e-5).sqrt()).abs() < 1e-12);
    let rm = bn.running_mean.value().to_vec();
    let rv = bn.running_var.value().to_vec();
    assert!(
        (rm[0] - 0.3).abs() < 1e-12 && (rv[0] - (0.9 + 0.4)).abs() < 1e-12,
        "{rm:?} {rv:?}"
    );
    assert_eq!(
        bn.num_batches_tracked
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    bn.eval();
    let y = bn.forward(&x).unwrap().value().to_vec();
    assert!((y[0] - (1.0 - 0.3) / (1.3f64 + 1e-5).sqrt()).abs() < 1e-12);
    assert!(bn.forward(&input(&[3, 3])).is_err());
    bn.train();
    assert!(
        bn.forward(&input(&[1, 2])).is_err(),
        "one value per channel cannot train"
    );
}

#[test]
fn sequential_fuses_batch_norm_and_a_rectifier_without_changing_results() {
    // Sequential runs BatchNorm + ReLU / LeakyReLU as one op in training
    // mode: outputs, input and parameter gradients, and running statistics
    // match the two layers run one after the other.
    for slope in [0.0, 0.2] {
        let rect = |y: Var<f64>| match slope {
            0.0 => Relu.forward(&y),
            s => LeakyRelu::new(s).forward(&y),
        };
        let make = || BatchNorm::<f64>::new2d(3, BatchNormConfig::default());
        let (fused, alone) = (make(), make());
        for bn in [&fused, &alone] {
            bn.weight
                .as_ref()
                .unwrap()
                .set_value(Tensor::from_vec(vec![0.5, 1.5, -1.0], &[3]).unwrap())
                .unwrap();
            bn.bias
                .as_ref()
                .unwrap()
                .set_value(Tensor::from_vec(vec![0.1, -0.2, 0.3], &[3]).unwrap())
                .unwrap();
        }
        let running = [fused.running_mean.clone(), fused.running_var.clone()];
        let net = Sequential::new().add(fused);
        let net = match slope {
            0.0 => net.add(Relu),
            s => net.add(LeakyRelu::new(s)),
        };
        let x = Var::parameter(input(&[4, 3, 2, 5]).value());
        let x2 = Var::parameter(x.value());
        let (a, b) = (
            net.forward(&x).unwrap(),
            rect(alone.forward(&x2).unwrap()).unwrap(),
        );
        assert_eq!(a.op_name(), Some("batch_norm"), "fused into one op");
        let close = |p: &[f64], q: &[f64]| p.iter().zip(q).all(|(u, v)| (u - v).abs() < 1e-12);
        assert!(close(&a.value().to_vec(), &b.value().to_vec()));
        let w = Var::constant(input(&[4, 3, 2, 5]).value());
        a.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
        b.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(close(
            &x.grad().unwrap().to_vec(),
            &x2.grad().unwrap().to_vec()
        ));
        let params = |m: &dyn Module<f64>| {
            m.parameters()
                .iter()
                .map(|p| p.grad().unwrap().to_vec())
                .collect::<Vec<_>>()
        };
        for (p, q) in params(&net).iter().zip(params(&alone)) {
            assert!(close(p, &q));
        }
        for (p, q) in [
            (&running[0], &alone.running_mean),
            (&running[1], &alone.running_var),
        ] {
            assert!(close(&p.value().to_vec(), &q.value().to_vec()));
        }
    }
}

#[test]
fn dropout_scales_in_training_and_passes_through_in_eval() {
    let d = Dropout::new(0.5, 42).unwrap();
    let x = Var::constant(Tensor::<f64>::ones(&[1000]));
    let y = d.forward(&x).unwrap().value().to_vec();
    assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
    let kept = y.iter().filter(|&&v| v == 2.0).count();
    assert!((400..600).contains(&kept), "{kept}");
    Module::<f64>::set_training(&d, false);
    assert_eq!(d.forward(&x).unwrap().value().to_vec(), vec![1.0; 1000]);
    assert!(Dropout::new(1.5, 0).is_err());
}

#[test]
fn layers_produce_pytorch_shapes() {
    let mut r = rng();
    let conv = Conv2d::<f64>::new(
        3,
        8,
        4,
        Conv2dConfig {
            stride: 2,
            padding: 1,
            ..Default::default()
        },
        &mut r,
    )
    .unwrap();
    assert_eq!(
        conv.forward(&input(&[2, 3, 28, 28])).unwrap().shape(),
        vec![2, 8, 14, 14]
    );
    let cfg = ConvTranspose2dConfig {
        stride: 2,
        padding: 1,
        ..Default::default()
    };
    let up = ConvTranspose2d::<f64>::new(8, 3, 4, cfg, &mut r).unwrap();
    assert_eq!(up.weight.shape(), vec![8, 3, 4, 4]);
    assert_eq!(
        up.forward(&input(&[2, 8, 7, 7])).unwrap().shape(),
        vec![2, 3, 14, 14]
    );
    let lin = Linear::<f64>::new(10, 4, true, &mut r).unwrap();
    assert_eq!(lin.forward(&input(&[5, 10])).unwrap().shape(), vec![5, 4]);
    assert!(lin.forward(&input(&[5, 9])).is_err());
    let ln = LayerNorm::<f64>::new(&[4], 1e-5, true);
    assert!(ln.forward(&input(&[2, 3])).is_err());
    let e = Embedding::<f64>::new(5, 3, &mut r);
    let idx = Var::constant(Tensor::from_vec(vec![4.0, 0.0], &[2]).unwrap());
    assert_eq!(e.forward(&idx).unwrap().shape(), vec![2, 3]);
    let bad = Var::constant(Tensor::from_vec(vec![5.0], &[1]).unwrap());
    assert!(e.forward(&bad).is_err());
    let flat = Sequential::<f64>::new()
        .add(Flatten::default())
        .add(Unflatten::new(1, &[2, 6]));
    assert_eq!(
        flat.forward(&input(&[2, 3, 4])).unwrap().shape(),
        vec![2, 2, 6]
    );
}

#[test]
fn default_initialisation_follows_pytorch_bounds() {
    let mut r = rng();
    let lin = Linear::<f64>::new(100, 50, true, &mut r).unwrap();
    let bound = 1.0 / 100f64.sqrt();
    for p in lin.parameters() {
        let max = p
            .value()
            .to_vec()
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(max <= bound && max > 0.9 * bound, "{max} vs {bound}");
    }
    // ConvTranspose2d's fan_in is out * k * k (PyTorch's convention for [in, out, k, k]).
    let up =
        ConvTranspose2d::<f64>::new(16, 4, 3, ConvTranspose2dConfig::default(), &mut r).unwrap();
    let max = up
        .weight
        .value()
        .to_vec()
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(
        max <= 1.0 / 36f64.sqrt() && max > 0.9 / 36f64.sqrt(),
        "{max}"
    );
    let w: Tensor<f64> = init::normal(&[1000], 0.0, 0.02, &mut r);
    let std = (w.to_vec().iter().map(|v| v * v).sum::<f64>() / 1000.0).sqrt();
    assert!((std - 0.02).abs() < 0.002);
}

#[test]
fn train_and_eval_reach_nested_layers() {
    let net = Sequential::<f64>::new()
        .add(Sequential::new().add(BatchNorm::new1d(2, BatchNormConfig::default())))
        .add(Dropout::new(0.9, 1).unwrap());
    net.eval();
    let x = input(&[4, 2]);
    // In eval mode: BatchNorm uses running stats (0, 1) and dropout passes through.
    let y = net.forward(&x).unwrap().value().to_vec();
    let want: Vec<f64> = x
        .value()
        .to_vec()
        .iter()
        .map(|v| v / (1.0f64 + 1e-5).sqrt())
        .collect();
    for (a, b) in y.iter().zip(want) {
        assert!((a - b).abs() < 1e-12);
    }
    assert_eq!(
        net.named_parameters()
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["0.0.weight", "0.0.bias"]
    );
}
