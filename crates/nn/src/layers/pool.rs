//! Pooling layers.

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
}
