//! deepgen-onnx: networks exported as ONNX models, for ONNX Runtime (C,
//! C++, C#, Java, Python, JavaScript and the browser), TensorRT, OpenVINO.
//!
//! A layer adds its inference-time operators to a
//! [`Graph`] (`Forward::export`); this crate
//! writes the graph as an ONNX `ModelProto`: opset [`OPSET`], a dynamic
//! batch dimension on every input and output, weights as initializers
//! under their state-dict names, and metadata (producer, version, the
//! model's own description). The messages are prost's, compiled once from
//! `onnx.proto` ([`proto`]); prost writes the wire format.
//!
//! ```
//! use deepgen_nn::{Linear, Relu, Sequential};
//! use deepgen_nn::prelude::{ChaCha8Rng, SeedableRng};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut rng = ChaCha8Rng::seed_from_u64(0);
//! let net = Sequential::<f32>::new()
//!     .add(Linear::new(4, 8, true, &mut rng)?)
//!     .add(Relu)
//!     .add(Linear::new(8, 2, true, &mut rng)?);
//! let bytes = deepgen_onnx::module_bytes(&net, &[4])?;
//! let model = deepgen_onnx::decode(&bytes)?;
//! let graph = model.graph.unwrap();
//! let ops: Vec<_> = graph.node.iter().map(|n| n.op_type()).collect();
//! // The last node names the output `output`.
//! assert_eq!(ops, ["Gemm", "Relu", "Gemm", "Identity"]);
//! assert_eq!(graph.initializer[0].name(), "0.weight");
//! # Ok(())
//! # }
//! ```

pub mod check;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
#[rustfmt::skip]
pub mod proto;

use std::path::{Path, PathBuf};

use deepgen_nn::export::{Attr, Graph, Initializer, Values};
use deepgen_nn::{Forward, Tensor, Var};
use prost::Message;

use proto::tensor_shape_proto::{dimension::Value as DimValue, Dimension};
use proto::type_proto::{Tensor as TensorType, Value as TypeValue};
use proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};

/// The operator set written: 17 has every operator deepgen exports
/// (LayerNormalization is new in 17) and every current runtime reads it.
pub const OPSET: i64 = 17;
/// The IR version that goes with opset 17.
pub const IR_VERSION: i64 = 8;
/// The symbolic name of the batch dimension.
pub const BATCH: &str = "batch";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Nn(#[from] deepgen_nn::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not an ONNX model: {0}")]
    Decode(#[from] prost::DecodeError),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A graph input's or output's element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    Float,
    /// Labels and other indices.
    Int64,
}

/// A graph input or output: a name, an element type and the shape of one
/// sample (the batch dimension, first, is dynamic); no shape for an output
/// left to the runtime's shape inference.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub name: String,
    pub elem: Elem,
    pub sample: Option<Vec<usize>>,
}

impl Value {
    /// A float tensor [batch, sample..].
    pub fn float(name: &str, sample: &[usize]) -> Self {
        Value {
            name: name.to_string(),
            elem: Elem::Float,
            sample: Some(sample.to_vec()),
        }
    }

    /// An int64 tensor [batch, sample..].
    pub fn int64(name: &str, sample: &[usize]) -> Self {
        Value {
            elem: Elem::Int64,
            ..Value::float(name, sample)
        }
    }

    /// The graph value `name` holds this one's data under this one's name.
    fn info(&self) -> ValueInfoProto {
        let elem_type = match self.elem {
            Elem::Float => DataType::Float,
            Elem::Int64 => DataType::Int64,
        };
        let shape = self.sample.as_ref().map(|sample| {
            let batch = DimValue::DimParam(BATCH.to_string());
            let dims = std::iter::once(batch)
                .chain(sample.iter().map(|&d| DimValue::DimValue(d as i64)))
                .map(|v| Dimension {
                    value: Some(v),
                    denotation: None,
                });
            TensorShapeProto {
                dim: dims.collect(),
            }
        });
        ValueInfoProto {
            name: Some(self.name.clone()),
            r#type: Some(TypeProto {
                denotation: None,
                value: Some(TypeValue::TensorType(TensorType {
                    elem_type: Some(elem_type as i32),
                    shape,
                })),
            }),
            ..Default::default()
        }
    }
}

/// A graph and its interface: what [`model`] writes.
pub struct Export<'g> {
    /// The model's name in the file (`graph.name`).
    pub name: &'g str,
    pub graph: &'g Graph,
    pub inputs: &'g [Value],
    /// The graph's values that are outputs, named as in `outputs`.
    pub results: &'g [String],
    pub outputs: &'g [Value],
    /// Extra metadata (`metadata_props`): the model's description.
    pub metadata: &'g [(String, String)],
}

/// The ONNX model of an export.
pub fn model(e: &Export) -> ModelProto {
    let mut nodes: Vec<NodeProto> = e.graph.nodes.iter().map(node).collect();
    // The results are renamed to the outputs' names by Identity nodes, so
    // that a user sees `image`, not `net.3.ConvTranspose_12`.
    for (value, out) in e.results.iter().zip(e.outputs) {
        nodes.push(NodeProto {
            input: vec![value.clone()],
            output: vec![out.name.clone()],
            name: Some(format!("output {}", out.name)),
            op_type: Some("Identity".to_string()),
            ..Default::default()
        });
    }
    let mut metadata = vec![("version".to_string(), env!("CARGO_PKG_VERSION").to_string())];
    metadata.extend(e.metadata.iter().cloned());
    ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("deepgen".to_string()),
        producer_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        model_version: Some(1),
        graph: Some(GraphProto {
            node: nodes,
            name: Some(e.name.to_string()),
            initializer: e.graph.initializers.iter().map(tensor).collect(),
            input: e.inputs.iter().map(Value::info).collect(),
            output: e.outputs.iter().map(Value::info).collect(),
            ..Default::default()
        }),
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| StringStringEntryProto {
                key: Some(key),
                value: Some(value),
            })
            .collect(),
        ..Default::default()
    }
}

fn node(n: &deepgen_nn::export::Node) -> NodeProto {
    NodeProto {
        input: n.inputs.clone(),
        output: n.outputs.clone(),
        name: n.outputs.first().cloned(),
        op_type: Some(n.op.to_string()),
        attribute: n.attrs.iter().map(|(k, a)| attribute(k, a)).collect(),
        ..Default::default()
    }
}

fn attribute(name: &str, a: &Attr) -> AttributeProto {
    let mut p = AttributeProto {
        name: Some(name.to_string()),
        ..Default::default()
    };
    match a {
        Attr::Int(i) => {
            p.set_type(AttributeType::Int);
            p.i = Some(*i);
        }
        Attr::Float(f) => {
            p.set_type(AttributeType::Float);
            p.f = Some(*f);
        }
        Attr::Ints(v) => {
            p.set_type(AttributeType::Ints);
            p.ints = v.clone();
        }
    }
    p
}

fn tensor(i: &Initializer) -> TensorProto {
    let (data_type, raw) = match &i.values {
        Values::F32(v) => (
            DataType::Float,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        Values::I64(v) => (
            DataType::Int64,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
    };
    TensorProto {
        dims: i.shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(data_type as i32),
        name: Some(i.name.clone()),
        raw_data: Some(raw),
        ..Default::default()
    }
}

/// The bytes of an ONNX model.
pub fn to_bytes(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// An ONNX model read back from its bytes.
pub fn decode(bytes: &[u8]) -> Result<ModelProto> {
    Ok(ModelProto::decode(bytes)?)
}

/// Writes an ONNX model whole or not at all.
pub fn write(model: &ModelProto, path: &Path) -> Result<()> {
    deepgen_tensor::io::write_atomic(path, &to_bytes(model)).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The ONNX model of a module built from deepgen's layers, as bytes: input
/// `input` of shape [batch, `sample`..], output `output`. The module is put
/// in inference mode (as it will run there) and run once on a sample of
/// zeros, for the output's shape.
pub fn module_bytes<M: Forward<f32> + ?Sized>(module: &M, sample: &[usize]) -> Result<Vec<u8>> {
    Ok(to_bytes(&module_model(module, sample)?))
}

fn module_model<M: Forward<f32> + ?Sized>(module: &M, sample: &[usize]) -> Result<ModelProto> {
    let mut graph = Graph::new();
    let out = module.export(&mut graph, "input")?;
    module.set_training(false);
    let mut shape = vec![1];
    shape.extend(sample);
    let zeros = Var::constant(Tensor::zeros(&shape));
    let y = deepgen_nn::prelude::no_grad(|| module.forward(&zeros))?;
    Ok(model(&Export {
        name: "module",
        graph: &graph,
        inputs: &[Value::float("input", sample)],
        results: &[out],
        outputs: &[Value::float("output", &y.shape()[1..])],
        metadata: &[],
    }))
}

/// Exports a module built from deepgen's layers (a `Sequential`, or your
/// own module whose `Forward::export` composes its layers' exports) to an
/// ONNX file at `path`: one float input `input` [batch, `sample`..], one
/// output `output` (see [`module_bytes`]). A layer without an export is an
/// error naming it.
pub fn export_onnx<M: Forward<f32> + ?Sized>(
    module: &M,
    sample: &[usize],
    path: &Path,
) -> Result<()> {
    write(&module_model(module, sample)?, path)
}
