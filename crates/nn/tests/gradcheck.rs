//! Every layer's and loss's first and second derivatives against finite differences.

use deepgen_autograd::gradcheck::check;

#[test]
fn every_layer_and_loss_passes_gradcheck_at_both_orders() {
    let mut failures = vec![];
    for case in deepgen_nn::gradcheck::all() {
        for seed in 0..2 {
            for r in check(&case, seed) {
                if !r.passed {
                    failures.push(format!(
                        "{} order {} seed {seed}: {:e} {:?}",
                        r.name, r.order, r.max_error, r.failure
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
