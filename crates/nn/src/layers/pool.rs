//! Pooling layers.

use crate::export::{Attr, Graph};
use crate::{Element, Forward, Module, Result, Var};
use deepgen_autograd::Pool2dOptions;

/// Max over `kernel` x `kernel` windows, stride `kernel` by default (PyTorch's MaxPool2d).
#[derive(Debug, Clone, Copy, Module)]
pub struct MaxPool2d {
    #[module(skip)]
    pub options: Pool2dOptions,
}

impl MaxPool2d {
    pub fn new(kernel: usize) -> Self {
        MaxPool2d {
            options: Pool2dOptions::new(kernel),
        }
    }
}

impl<T: Element> Forward<T> for MaxPool2d {
    fn forward(&self, x: &Var<T>) -> Result<Var<T>> {
        Ok(x.max_pool2d(self.options)?)
    }

    fn export(&self, g: &mut Graph, x: &str) -> Result<String> {
        Ok(g.node("MaxPool", &[x], pool_attrs(self.options)))
    }
}

/// ONNX's attributes for a pooling window.
fn pool_attrs(o: Pool2dOptions) -> Vec<(&'static str, Attr)> {
    let ints = |v: &[usize]| Attr::Ints(v.iter().map(|&i| i as i64).collect());
    let [ph, pw] = o.padding;
    vec![
        ("kernel_shape", ints(&o.kernel)),
        ("strides", ints(&o.stride)),
        ("pads", ints(&[ph, pw, ph, pw])),
    ]
}

/// Mean over `kernel` x `kernel` windows, stride `kernel` by default (PyTorch's AvgPool2d).
#[derive(Debug, Clone, Copy, Module)]
pub struct AvgPool2d {
    #[module(skip)]
    pub options: Pool2dOptions,
}

impl AvgPool2d {
    pub fn new(kernel: usize) -> Self {
        AvgPool2d {
            options: Pool2dOptions::new(kernel),
        }
    }
}

impl<T: Element> Forward<T> for AvgPool2d {
    fn forward(&self, x: &Var<T>) -> Result<Var<T>> {
        Ok(x.avg_pool2d(self.options)?)
    }

    fn export(&self, g: &mut Graph, x: &str) -> Result<String> {
        // Padded windows: PyTorch's default counts the zeros (its
        // count_include_pad), which ONNX's AveragePool must be told.
        let mut attrs = pool_attrs(self.options);
        attrs.push(("count_include_pad", Attr::Int(1)));
        Ok(g.node("AveragePool", &[x], attrs))
    }
}
