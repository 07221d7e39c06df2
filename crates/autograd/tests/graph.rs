//! The graph machinery: accumulation, grad modes, detach, higher order, errors.

use deepgen_autograd::{grad, no_grad, Error, NoGradGuard, Tensor, Var};

fn v(data: &[f64], shape: &[usize]) -> Tensor<f64> {
    Tensor::from_vec(data.to_vec(), shape).unwrap()
}

#[test]
fn backward_accumulates_into_leaves_until_zero_grad() {
    let x = Var::parameter(v(&[1.0, 2.0], &[2]));
    let loss = x.square().sum_all().unwrap();
    loss.backward().unwrap();
    loss.backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec(), vec![4.0, 8.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
}

#[test]
fn a_var_used_twice_gets_both_contributions() {
    let x = Var::parameter(v(&[3.0], &[1]));
    // y = x * x + x -> dy/dx = 2x + 1
    let y = x.mul(&x).unwrap().add(&x).unwrap().sum_all().unwrap();
    y.backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec(), vec![7.0]);
}

#[test]
fn no_grad_records_nothing_and_restores_the_mode() {
    let x = Var::parameter(v(&[1.0], &[1]));
    let y = no_grad(|| x.exp());
    assert!(!y.requires_grad() && y.is_leaf());
    {
        let _guard = NoGradGuard::new();
        assert!(!x.exp().requires_grad());
    }
    assert!(x.exp().requires_grad());
}

#[test]
fn detach_cuts_the_graph() {
    let x = Var::parameter(v(&[2.0], &[1]));
    let y = x.square().detach().mul(&x).unwrap().sum_all().unwrap();
    y.backward().unwrap();
    // d(c * x)/dx with c = x^2 held constant.
    assert_eq!(x.grad().unwrap().to_vec(), vec![4.0]);
}

#[test]
fn gradients_of_gradients_follow_create_graph() {
    let x = Var::parameter(v(&[0.5, -2.0], &[2]));
    let y = x.powf(3.0).sum_all().unwrap();
    let g = grad(&[y], std::slice::from_ref(&x), true)
        .unwrap()
        .remove(0);
    assert!(g.requires_grad());
    let h = grad(&[g.sum_all().unwrap()], std::slice::from_ref(&x), false)
        .unwrap()
        .remove(0);
    assert_eq!(h.value().to_vec(), vec![3.0, -12.0]);
    assert!(!h.requires_grad());
}

#[test]
fn unused_inputs_get_zero_gradients() {
    let (x, unused) = (
        Var::parameter(v(&[1.0], &[1])),
        Var::parameter(v(&[5.0, 6.0], &[2])),
    );
    let g = grad(&[x.exp().sum_all().unwrap()], &[x.clone(), unused], false).unwrap();
    assert_eq!(g[1].value().to_vec(), vec![0.0, 0.0]);
}

#[test]
fn misuse_returns_errors_not_panics() {
    let x = Var::parameter(v(&[1.0, 2.0], &[2]));
    assert!(matches!(
        x.exp().backward(),
        Err(Error::NonScalarOutput { .. })
    ));
    let c = Var::constant(v(&[1.0], &[1]));
    assert!(matches!(
        grad(&[x.sum_all().unwrap()], &[c], false),
        Err(Error::InputWithoutGrad { index: 0 })
    ));
    let err = x
        .add(&Var::constant(v(&[1.0, 2.0, 3.0], &[3])))
        .unwrap_err();
    assert_eq!(err.to_string(), "add: shapes [2] and [3] do not broadcast");
    assert!(x.matmul(&x).is_err());
    assert!(x.reshape(&[3]).is_err());
    assert!(x.set_value(v(&[1.0], &[1])).is_err());
}

#[test]
fn vars_cross_threads() {
    fn assert_send_sync<S: Send + Sync>() {}
    assert_send_sync::<Var<f32>>();
    let w = Var::parameter(Tensor::<f32>::ones(&[3]));
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| w.mul_scalar(2.0).sum_all().unwrap().backward().unwrap());
        }
    });
    assert_eq!(w.grad().unwrap().to_vec(), vec![4.0; 3]);
}

#[test]
fn optimizer_style_in_place_update_keeps_the_leaf() {
    let w = Var::parameter(v(&[1.0, 2.0], &[2]));
    w.square().sum_all().unwrap().backward().unwrap();
    let g = w.grad().unwrap();
    w.update_value(|t| {
        for (p, gi) in t.data_mut().iter_mut().zip(g.to_vec()) {
            *p -= 0.25 * gi;
        }
    });
    assert_eq!(w.value().to_vec(), vec![0.5, 1.0]);
    assert!(w.is_leaf() && w.requires_grad());
}
