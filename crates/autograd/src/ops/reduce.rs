//! Reductions, and the broadcast pair (broadcast_to / sum_to).

use deepgen_kernels as k;

use crate::{Element, Result, Var};

impl<T: Element> Var<T> {
    /// Gradient of a reduction over `axes` (sorted) spread back to `shape`.
    fn unreduce(g: &Var<T>, shape: &[usize], axes: &[usize], keepdim: bool) -> Result<Var<T>> {
        let g = if keepdim {
            g.clone()
        } else {
            g.reshape(&k::reduced_shape(shape, axes, true))?
        };
        g.broadcast_to(shape)
    }

    /// Sum over `axes` (every axis when empty).
    pub fn sum(&self, axes: &[usize], keepdim: bool) -> Result<Var<T>> {
        let shape = self.shape();
        let axes = k::normalize_axes("sum", &shape, axes)?;
        let value = k::sum(&self.value(), &axes, keepdim)?;
        Ok(Var::from_op("sum", value, vec![self.clone()], move |c| {
            Ok(vec![Some(Self::unreduce(c.grad, &shape, &axes, keepdim)?)])
        }))
    }

    /// Sum of every element, as a rank-0 Var.
    pub fn sum_all(&self) -> Result<Var<T>> {
        self.sum(&[], false)
    }

    /// Mean over `axes` (every axis when empty).
    pub fn mean(&self, axes: &[usize], keepdim: bool) -> Result<Var<T>> {
        let shape = self.shape();
        let axes = k::normalize_axes("mean", &shape, axes)?;
        let n = k::reduced_count(&shape, &axes);
        Ok(self
            .sum(&axes, keepdim)?
            .mul_scalar(T::one() / T::of(n as f64)))
    }

    /// Variance over `axes` with `correction` (1 = unbiased, PyTorch's default).
    pub fn var(&self, axes: &[usize], keepdim: bool, correction: usize) -> Result<Var<T>> {
        let shape = self.shape();
        let axes = k::normalize_axes("var", &shape, axes)?;
        let n = k::reduced_count(&shape, &axes);
        let centred = self.sub(&self.mean(&axes, true)?)?;
        let dof = n.saturating_sub(correction) as f64;
        Ok(centred
            .square()
            .sum(&axes, keepdim)?
            .mul_scalar(T::one() / T::of(dof)))
    }

    fn extreme(
        &self,
        name: &'static str,
        axes: &[usize],
        keepdim: bool,
        is_max: bool,
    ) -> Result<Var<T>> {
        let shape = self.shape();
        let axes = k::normalize_axes(name, &shape, axes)?;
        let x = self.value();
        let value = if is_max {
            k::max(&x, &axes, keepdim)?
        } else {
            k::min(&x, &axes, keepdim)?
        };
        Ok(Var::from_op(name, value, vec![self.clone()], move |c| {
            // The gradient goes to the extreme elements, split evenly on ties.
            let x = c.inputs[0].value();
            let out = c.out.value();
            let out = if keepdim {
                out
            } else {
                out.reshape(&k::reduced_shape(&shape, &axes, true))?
            };
            let mask = k::eq_mask(&x, &out)?;
            let count = k::sum(&mask, &axes, true)?;
            let share = Var::constant(k::div(&mask, &count)?);
            Ok(vec![Some(
                Self::unreduce(c.grad, &shape, &axes, keepdim)?.mul(&share)?,
            )])
        }))
    }

    /// Maximum over `axes` (every axis when empty).
    pub fn max(&self, axes: &[usize], keepdim: bool) -> Result<Var<T>> {
        self.extreme("max", axes, keepdim, true)
    }

    /// Minimum over `axes` (every axis when empty).
    pub fn min(&self, axes: &[usize], keepdim: bool) -> Result<Var<T>> {
        self.extreme("min", axes, keepdim, false)
    }

    /// ln Σ e^x over `axes`, stable (the max is subtracted first).
    pub fn logsumexp(&self, axes: &[usize], keepdim: bool) -> Result<Var<T>> {
        let shape = self.shape();
        let axes = k::normalize_axes("logsumexp", &shape, axes)?;
        let m = k::max(&self.value(), &axes, true)?;
        let m = Var::constant(k::map(&m, |v| if v.is_finite() { v } else { T::zero() }));
        let r = self.sub(&m)?.exp().sum(&axes, true)?.log().add(&m)?;
        if keepdim {
            Ok(r)
        } else {
            r.reshape(&k::reduced_shape(&shape, &axes, false))
        }
    }

    /// Index of the largest element along `axis` (not differentiable).
    pub fn argmax(&self, axis: usize) -> Result<Vec<usize>> {
        Ok(k::argmax(&self.value(), axis)?)
    }

    /// Repeats along broadcast axes to `shape` (a view of the value).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Var<T>> {
        let own = self.shape();
        if own == shape {
            return Ok(self.clone());
        }
        let value = self.value().broadcast_to(shape)?;
        Ok(Var::from_op(
            "broadcast_to",
            value,
            vec![self.clone()],
            move |c| Ok(vec![Some(c.grad.sum_to(&own)?)]),
        ))
    }

    /// Sums down to `shape`, which must broadcast to this Var's shape.
    pub fn sum_to(&self, shape: &[usize]) -> Result<Var<T>> {
        let own = self.shape();
        if own == shape {
            return Ok(self.clone());
        }
        let value = k::sum_to(&self.value(), shape)?;
        Ok(Var::from_op(
            "sum_to",
            value,
            vec![self.clone()],
            move |c| Ok(vec![Some(c.grad.broadcast_to(&own)?)]),
        ))
    }
}
