//! A network as a graph of ONNX operators, for export (`deepgen-onnx`
//! writes it as an ONNX model).
//!
//! Each layer adds its inference-time computation to a [`Graph`] through
//! [`Forward::export`](crate::Forward::export): the operator, its
//! attributes and its weights, named as in the state dict (`net.0.weight`),
//! so an exported file reads like the checkpoint it came from. The graph
//! holds no protobuf: this crate does not depend on one.

use crate::{Element, Error, Var};

/// An attribute value of an operator.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
}

/// One operator: `op` (an ONNX operator type of the default domain) from
/// named inputs to named outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub op: &'static str,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: Vec<(&'static str, Attr)>,
}

/// A constant of the graph: float weights or int64 shapes and indices.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A named constant tensor (an ONNX initializer).
#[derive(Debug, Clone, PartialEq)]
pub struct Initializer {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Values,
}

/// Operators and constants, built layer by layer.
#[derive(Debug, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub initializers: Vec<Initializer>,
    /// The state-dict path of the layer being exported (`net`, `0`).
    scope: Vec<String>,
    next_value: usize,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// `f` with names under `name` (a field or a position), as the state
    /// dict nests them.
    pub fn scoped<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.scope.push(name.to_string());
        let r = f(self);
        self.scope.pop();
        r
    }

    /// `name` under the current scope: `net.0.weight`.
    fn path(&self, name: &str) -> String {
        let mut parts = self.scope.clone();
        parts.push(name.to_string());
        parts.join(".")
    }

    /// Adds `op` on `inputs`; returns its (one) output's name.
    pub fn node(
        &mut self,
        op: &'static str,
        inputs: &[&str],
        attrs: Vec<(&'static str, Attr)>,
    ) -> String {
        self.next_value += 1;
        let output = format!("{}_{}", self.path(op), self.next_value);
        self.nodes.push(Node {
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.clone()],
            attrs,
        });
        output
    }

    /// A parameter or buffer `name` of the current layer as a float
    /// initializer; returns its name.
    pub fn weight<T: Element>(&mut self, name: &str, v: &Var<T>) -> String {
        let t = v.value();
        let values = t.to_vec().iter().map(|x| x.as_f64() as f32).collect();
        self.constant(name, t.shape().to_vec(), Values::F32(values))
    }

    /// An int64 vector constant (a shape, axes) of the current layer.
    pub fn ints(&mut self, name: &str, values: &[i64]) -> String {
        self.constant(name, vec![values.len()], Values::I64(values.to_vec()))
    }

    /// A float vector constant of the current layer.
    pub fn floats(&mut self, name: &str, values: Vec<f32>) -> String {
        self.constant(name, vec![values.len()], Values::F32(values))
    }

    fn constant(&mut self, name: &str, shape: Vec<usize>, values: Values) -> String {
        let mut name = self.path(name);
        // Weights have unique paths; helper constants (a shape, an axis)
        // may repeat within a scope: those get a number.
        if self.initializers.iter().any(|i| i.name == name) {
            self.next_value += 1;
            name = format!("{name}_{}", self.next_value);
        }
        self.initializers.push(Initializer {
            name: name.clone(),
            shape,
            values,
        });
        name
    }
}

/// The error of a layer that has no export.
pub fn unsupported(layer: &str) -> Error {
    Error::Invalid {
        op: "export",
        msg: format!(
            "{layer} has no ONNX export (supported: Linear, Conv2d, ConvTranspose2d, \
         BatchNorm, LayerNorm, the activations, Dropout, Flatten, Unflatten, \
         MaxPool2d, AvgPool2d, Sequential)"
        ),
    }
}
