//! The differentiable sum over ranks.

use deepgen_autograd::{Element, Result, Tensor, Var};

use crate::world;

/// The element-wise sum of `x` over the ranks of [`world`], on every rank.
/// Its gradient is the same sum of the ranks' gradients: the ranks' losses
/// add up to the run's loss, and each rank's output feeds every rank's
/// loss. Every rank must call it at the same point of its forward pass (and
/// so of its backward pass). In one process it is the identity.
pub fn all_sum<T: Element>(x: &Var<T>) -> Result<Var<T>> {
    let value = sum_tensor(&x.value())?;
    Ok(Var::from_op("all_sum", value, vec![x.clone()], |c| {
        Ok(vec![Some(all_sum(c.grad)?)])
    }))
}

/// A tensor summed over the ranks, in f64 (exact enough for statistics,
/// and the same bits on every rank).
fn sum_tensor<T: Element>(t: &Tensor<T>) -> Result<Tensor<T>> {
    if world().size() == 1 {
        return Ok(t.clone());
    }
    let mut wide: Vec<f64> = t.to_vec().into_iter().map(|v| v.as_f64()).collect();
    world().sum_f64(&mut wide);
    let back: Vec<T> = wide.into_iter().map(T::of).collect();
    Ok(Tensor::from_vec(back, t.shape())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deepgen_autograd::grad;

    #[test]
    fn in_one_process_all_sum_is_the_identity_at_both_orders() {
        let x = Var::<f64>::parameter(Tensor::from_vec(vec![1.0, -2.0], &[2]).unwrap());
        let y = all_sum(&x).unwrap().square().sum_all().unwrap();
        assert_eq!(y.item().unwrap(), 5.0);
        let g = grad(&[y], std::slice::from_ref(&x), true)
            .unwrap()
            .remove(0);
        assert_eq!(g.value().to_vec(), vec![2.0, -4.0]);
        let gg = grad(&[g.sum_all().unwrap()], std::slice::from_ref(&x), false)
            .unwrap()
            .remove(0);
        assert_eq!(gg.value().to_vec(), vec![2.0, 2.0]);
    }
}
