//! Matrix products.

use deepgen_kernels as k;

use crate::{Element, Result, Var};

impl<T: Element> Var<T> {
    /// `[.., m, k] @ [.., k, n] -> [.., m, n]`, batch axes broadcast.
    pub fn matmul(&self, other: &Var<T>) -> Result<Var<T>> {
        let value = k::matmul(&self.value(), &other.value())?;
        let (sa, sb) = (self.shape(), other.shape());
        Ok(Var::from_op(
            "matmul",
            value,
            vec![self.clone(), other.clone()],
            move |c| {
                let [a, b] = [&c.inputs[0], &c.inputs[1]];
                Ok(vec![
                    c.grad_for(0, || c.grad.matmul(&b.t()?)?.sum_to(&sa))?,
                    c.grad_for(1, || a.t()?.matmul(c.grad)?.sum_to(&sb))?,
                ])
            },
        ))
    }
}
