//! Matrix products.

use deepgen_kernels as k;

use crate::{Element, Result, Var};

impl<T: Element> Var<T> {
    /// `[.., m, k] @ [.., k, n] -> [.., m, n]`, batch axes broadcast.
    pub fn matmul(&self, other: &Var<T>) -> Result<Var<T>> {
        let value = k::matmul(&self.value(), &other.value())?;
        let (sa, sb) = (self.shape(), other.shape());
        // A 2-D `other` stored column-major is a transposed view (Linear's
        // W^T): its gradient is computed as (g^T a)^T, a view of a
        // row-major product, so the gradient reaching the weight is
        // contiguous and the optimizer need not copy it.
        let b_transposed = {
            let v = other.value();
            v.rank() == 2 && sb[0] > 1 && sb[1] > 1 && v.strides() == [1, sb[0]]
        };
        Ok(Var::from_op(
            "matmul",
            value,
            vec![self.clone(), other.clone()],
            move |c| {
                let [a, b] = [&c.inputs[0], &c.inputs[1]];
                Ok(vec![
                    c.grad_for(0, || c.grad.matmul(&b.t()?)?.sum_to(&sa))?,
                    c.grad_for(1, || {
                        if b_transposed && a.rank() == 2 {
                            c.grad.t()?.matmul(a)?.t()
                        } else {
                            a.t()?.matmul(c.grad)?.sum_to(&sb)
                        }
                    })?,
                ])
            },
        ))
    }
}
