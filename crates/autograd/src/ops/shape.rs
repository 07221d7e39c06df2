//! Shape ops: views and the copies that undo them.

use std::sync::Arc;

use deepgen_kernels as k;

use crate::{Element, Error, Result, Tensor, Var};

impl<T: Element> Var<T> {
    pub fn reshape(&self, shape: &[usize]) -> Result<Var<T>> {
        let own = self.shape();
        if own == shape {
            return Ok(self.clone());
        }
        let value = self.value().reshape(shape)?;
        Ok(Var::from_op(
            "reshape",
            value,
            vec![self.clone()],
            move |c| Ok(vec![Some(c.grad.reshape(&own)?)]),
        ))
    }

    /// Axis `i` of the result is axis `axes[i]` of self.
    pub fn permute(&self, axes: &[usize]) -> Result<Var<T>> {
        let value = self.value().permute(axes)?;
        let mut inverse = vec![0; axes.len()];
        for (i, &a) in axes.iter().enumerate() {
            inverse[a] = i;
        }
        Ok(Var::from_op(
            "permute",
            value,
            vec![self.clone()],
            move |c| Ok(vec![Some(c.grad.permute(&inverse)?)]),
        ))
    }

    pub fn transpose(&self, a: usize, b: usize) -> Result<Var<T>> {
        let rank = self.rank();
        if a >= rank || b >= rank {
            return Err(Error::Tensor(deepgen_tensor::Error::Axis {
                op: "transpose",
                axis: a.max(b),
                shape: self.shape(),
            }));
        }
        let mut axes: Vec<usize> = (0..rank).collect();
        axes.swap(a, b);
        self.permute(&axes)
    }

    /// Transpose of the last two axes (a view).
    pub fn t(&self) -> Result<Var<T>> {
        let r = self.rank();
        if r < 2 {
            return Err(Error::Tensor(deepgen_tensor::Error::Axis {
                op: "t",
                axis: 1,
                shape: self.shape(),
            }));
        }
        self.transpose(r - 2, r - 1)
    }

    /// The slice `start..start + len` along `axis`.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Var<T>> {
        let value = self.value().narrow(axis, start, len)?;
        let n = self.shape()[axis];
        Ok(Var::from_op(
            "narrow",
            value,
            vec![self.clone()],
            move |c| Ok(vec![Some(c.grad.pad_axis(axis, start, n - start - len)?)]),
        ))
    }

    /// Zero padding along `axis`.
    pub fn pad_axis(&self, axis: usize, before: usize, after: usize) -> Result<Var<T>> {
        let value = k::pad_axis(&self.value(), axis, before, after)?;
        let n = self.shape()[axis];
        Ok(Var::from_op(
            "pad_axis",
            value,
            vec![self.clone()],
            move |c| Ok(vec![Some(c.grad.narrow(axis, before, n)?)]),
        ))
    }

    pub fn unsqueeze(&self, axis: usize) -> Result<Var<T>> {
        let shape = self.value().unsqueeze(axis)?.shape().to_vec();
        self.reshape(&shape)
    }

    pub fn squeeze(&self, axis: usize) -> Result<Var<T>> {
        let shape = self.value().squeeze(axis)?.shape().to_vec();
        self.reshape(&shape)
    }

    /// Collapses axes `start..=end` into one.
    pub fn flatten(&self, start: usize, end: usize) -> Result<Var<T>> {
        let shape = self.value().flatten(start, end)?.shape().to_vec();
        self.reshape(&shape)
    }

    /// A contiguous copy (the gradient passes through unchanged).
    pub fn contiguous(&self) -> Var<T> {
        let value = self.value();
        if value.is_contiguous() {
            return self.clone();
        }
        Var::from_op("contiguous", value.contiguous(), vec![self.clone()], |c| {
            Ok(vec![Some(c.grad.clone())])
        })
    }

    /// Picks `indices` along `axis` (PyTorch's index_select).
    pub fn index_select(&self, axis: usize, indices: &[usize]) -> Result<Var<T>> {
        let value = self.value().index_select(axis, indices)?;
        let n = self.shape()[axis];
        let indices: Arc<[usize]> = indices.into();
        Ok(Var::from_op(
            "index_select",
            value,
            vec![self.clone()],
            move |c| Ok(vec![Some(c.grad.index_add(axis, &indices, n)?)]),
        ))
    }

    /// Zeros with `len` along `axis`, then adds slice j of self at `indices[j]`.
    pub fn index_add(&self, axis: usize, indices: &[usize], len: usize) -> Result<Var<T>> {
        let value = k::index_add(&self.value(), axis, indices, len)?;
        let indices: Arc<[usize]> = indices.into();
        Ok(Var::from_op(
            "index_add",
            value,
            vec![self.clone()],
            move |c| Ok(vec![Some(c.grad.index_select(axis, &indices)?)]),
        ))
    }

    /// Joins Vars along an existing axis.
    pub fn concat(vars: &[Var<T>], axis: usize) -> Result<Var<T>> {
        let values: Vec<Tensor<T>> = vars.iter().map(|v| v.value()).collect();
        let refs: Vec<&Tensor<T>> = values.iter().collect();
        let value = Tensor::concat(&refs, axis)?;
        let sizes: Vec<usize> = values.iter().map(|v| v.shape()[axis]).collect();
        Ok(Var::from_op("concat", value, vars.to_vec(), move |c| {
            let mut start = 0;
            let mut grads = Vec::with_capacity(sizes.len());
            for (i, &n) in sizes.iter().enumerate() {
                grads.push(c.grad_for(i, || c.grad.narrow(axis, start, n))?);
                start += n;
            }
            Ok(grads)
        }))
    }

    /// Joins equally shaped Vars along a new axis.
    pub fn stack(vars: &[Var<T>], axis: usize) -> Result<Var<T>> {
        // Validate as the tensor op does, so errors name `stack`.
        let values: Vec<Tensor<T>> = vars.iter().map(|v| v.value()).collect();
        Tensor::stack(&values.iter().collect::<Vec<_>>(), axis)?;
        let expanded = vars
            .iter()
            .map(|v| v.unsqueeze(axis))
            .collect::<Result<Vec<_>>>()?;
        Self::concat(&expanded, axis)
    }
}
