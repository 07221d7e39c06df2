//! Convolutions and pooling. The conv family is closed under
//! differentiation: each of conv2d, its input-adjoint and its weight-adjoint
//! has the other two as its backward.

use std::sync::Arc;

use deepgen_kernels::{self as k, Conv2dOptions, Pool2dOptions};

use crate::{Element, Result, Var};

fn hw(shape: &[usize]) -> [usize; 2] {
    [shape[2], shape[3]]
}

impl<T: Element> Var<T> {
    /// 2-D convolution: self [n, c, h, w], weight [o, c, kh, kw] -> [n, o, oh, ow].
    pub fn conv2d(&self, weight: &Var<T>, opts: Conv2dOptions) -> Result<Var<T>> {
        let value = k::conv2d(&self.value(), &weight.value(), opts)?;
        let (xs, ws) = (self.shape(), weight.shape());
        Ok(Var::from_op(
            "conv2d",
            value,
            vec![self.clone(), weight.clone()],
            move |c| {
                let [x, w] = [&c.inputs[0], &c.inputs[1]];
                Ok(vec![
                    c.grad_for(0, || c.grad.conv2d_input_grad(w, opts, hw(&xs)))?,
                    c.grad_for(1, || x.conv2d_weight_grad(c.grad, opts, hw(&ws)))?,
                ])
            },
        ))
    }

    /// The adjoint of conv2d in its input: self (an output gradient)
    /// [n, o, oh, ow], weight [o, c, kh, kw] -> [n, c, input_hw].
    pub fn conv2d_input_grad(
        &self,
        weight: &Var<T>,
        opts: Conv2dOptions,
        input_hw: [usize; 2],
    ) -> Result<Var<T>> {
        let value = k::conv2d_input_grad(&self.value(), &weight.value(), opts, input_hw)?;
        let ws = weight.shape();
        Ok(Var::from_op(
            "conv2d_input_grad",
            value,
            vec![self.clone(), weight.clone()],
            move |c| {
                let [g, w] = [&c.inputs[0], &c.inputs[1]];
                Ok(vec![
                    c.grad_for(0, || c.grad.conv2d(w, opts))?,
                    c.grad_for(1, || c.grad.conv2d_weight_grad(g, opts, hw(&ws)))?,
                ])
            },
        ))
    }

    /// The adjoint of conv2d in its weight: self (the input) [n, c, h, w],
    /// gy [n, o, oh, ow] -> [o, c, kernel_hw].
    pub fn conv2d_weight_grad(
        &self,
        gy: &Var<T>,
        opts: Conv2dOptions,
        kernel_hw: [usize; 2],
    ) -> Result<Var<T>> {
        let value = k::conv2d_weight_grad(&self.value(), &gy.value(), opts, kernel_hw)?;
        let xs = self.shape();
        Ok(Var::from_op(
            "conv2d_weight_grad",
            value,
            vec![self.clone(), gy.clone()],
            move |c| {
                let [x, g] = [&c.inputs[0], &c.inputs[1]];
                Ok(vec![
                    c.grad_for(0, || g.conv2d_input_grad(c.grad, opts, hw(&xs)))?,
                    c.grad_for(1, || x.conv2d(c.grad, opts))?,
                ])
            },
        ))
    }

    /// Transposed convolution (PyTorch's conv_transpose2d): self [n, c_in, h, w],
    /// weight [c_in, c_out, kh, kw] -> [n, c_out, h', w'].
    pub fn conv_transpose2d(
        &self,
        weight: &Var<T>,
        opts: Conv2dOptions,
        output_padding: [usize; 2],
    ) -> Result<Var<T>> {
        let out_hw =
            k::conv_transpose2d_out_hw(&self.shape(), &weight.shape(), opts, output_padding)?;
        self.conv2d_input_grad(weight, opts, out_hw)
    }

    /// Max over windows: self [n, c, h, w] -> [n, c, oh, ow].
    pub fn max_pool2d(&self, opts: Pool2dOptions) -> Result<Var<T>> {
        let (value, indices) = k::max_pool2d(&self.value(), opts)?;
        let in_hw = hw(&self.shape());
        let indices: Arc<[usize]> = indices.into();
        Ok(Var::from_op(
            "max_pool2d",
            value,
            vec![self.clone()],
            move |c| {
                Ok(vec![Some(
                    c.grad.scatter_add_planes(indices.clone(), in_hw)?,
                )])
            },
        ))
    }

    /// Adds self [n, c, ..] into planes [n, c, plane_hw] at `indices` (max_pool2d's backward).
    pub fn scatter_add_planes(
        &self,
        indices: Arc<[usize]>,
        plane_hw: [usize; 2],
    ) -> Result<Var<T>> {
        let value = k::scatter_add_planes(&self.value(), &indices, plane_hw)?;
        let shape = self.shape();
        Ok(Var::from_op(
            "scatter_add_planes",
            value,
            vec![self.clone()],
            move |c| Ok(vec![Some(c.grad.gather_planes(indices.clone(), &shape)?)]),
        ))
    }

    /// Reads self [n, c, h, w] at plane positions `indices`, shaped `out_shape`.
    pub fn gather_planes(&self, indices: Arc<[usize]>, out_shape: &[usize]) -> Result<Var<T>> {
        let value = k::gather_planes(&self.value(), &indices, out_shape)?;
        let in_hw = hw(&self.shape());
        Ok(Var::from_op(
            "gather_planes",
            value,
            vec![self.clone()],
            move |c| {
                Ok(vec![Some(
                    c.grad.scatter_add_planes(indices.clone(), in_hw)?,
                )])
            },
        ))
    }

    /// Mean over windows (padding counted as zeros): self [n, c, h, w] -> [n, c, oh, ow].
    pub fn avg_pool2d(&self, opts: Pool2dOptions) -> Result<Var<T>> {
        let value = k::avg_pool2d(&self.value(), opts)?;
        let shape = self.shape();
        Ok(Var::from_op(
            "avg_pool2d",
            value,
            vec![self.clone()],
            move |c| Ok(vec![Some(c.grad.avg_pool2d_backward(opts, &shape)?)]),
        ))
    }

    /// The adjoint of avg_pool2d: spreads self over windows of `input_shape`.
    pub fn avg_pool2d_backward(
        &self,
        opts: Pool2dOptions,
        input_shape: &[usize],
    ) -> Result<Var<T>> {
        let value = k::avg_pool2d_backward(&self.value(), opts, input_shape)?;
        Ok(Var::from_op(
            "avg_pool2d_backward",
            value,
            vec![self.clone()],
            move |c| Ok(vec![Some(c.grad.avg_pool2d(opts)?)]),
        ))
    }
}
