//! Every op's first and second derivatives against finite differences.

use deepgen_autograd::gradcheck::{cases, check};

#[test]
fn every_op_passes_gradcheck_at_both_orders_for_several_seeds() {
    let mut failures = vec![];
    for case in cases::all() {
        for seed in 0..3 {
            for r in check(&case, seed) {
                if !r.passed {
                    failures.push(format!(
                        "{} order {} seed {seed}: error {:e} {:?} ({})",
                        r.name, r.order, r.max_error, r.failure, r.shapes
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_wrong_backward_rule_fails_the_check() {
    // exp with the derivative of sin(x) = cos(x) would be wrong; build one
    // from a correct op and a mismatching forward: y = 2x recorded as
    // mul_scalar(1), so the backward is off by a factor of two.
    use deepgen_autograd::gradcheck::Case;
    use deepgen_autograd::{Tensor, Var};
    let wrong = Case::new(
        "wrong",
        |_| vec![Tensor::from_vec(vec![0.3, -0.7], &[2]).unwrap()],
        |x| {
            let value = deepgen_kernels::mul_scalar(&x[0].value(), 2.0);
            Ok(Var::from_op("wrong", value, vec![x[0].clone()], |c| {
                Ok(vec![Some(c.grad.clone())])
            }))
        },
    );
    let [first, _] = check(&wrong, 0);
    assert!(!first.passed && first.max_error > 0.1, "{first:?}");
}
