//! State dicts as safetensors files, named and laid out as PyTorch's.
//!
//! A module's parameters and buffers are written in its element type (F32 or
//! F64), counters as I64, under the module's dotted names; the file loads
//! into the same PyTorch module with
//! `module.load_state_dict(safetensors.torch.load_file(path))`, and a file
//! saved that way from PyTorch loads here. Writes go to a temporary file in
//! the same folder that is renamed over the target only once complete, so a
//! crash never leaves a half-written checkpoint. Loading checks every name,
//! shape and dtype before it changes anything.
//!
//! A round trip through a file ([`save`], [`load`]) and through bytes
//! ([`state_dict`], [`to_bytes`], [`from_bytes`], [`load_entries`]):
//!
//! ```
//! use deepgen_autograd::rand::SeedableRng;
//! use deepgen_autograd::rand_chacha::ChaCha8Rng;
//! use deepgen_nn::{checkpoint, Linear};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let a = Linear::<f32>::new(3, 2, true, &mut ChaCha8Rng::seed_from_u64(0))?;
//! let b = Linear::<f32>::new(3, 2, true, &mut ChaCha8Rng::seed_from_u64(1))?;
//! assert_ne!(a.weight.value(), b.weight.value());
//!
//! let path = std::env::temp_dir().join(format!("deepgen-doc-{}.safetensors", std::process::id()));
//! checkpoint::save(&a, &path)?;
//! let report = checkpoint::load(&b, &path, true)?;
//! std::fs::remove_file(&path)?;
//! assert!(report.missing.is_empty() && report.unexpected.is_empty());
//! assert_eq!(a.weight.value(), b.weight.value());
//!
//! let c = Linear::<f32>::new(3, 2, true, &mut ChaCha8Rng::seed_from_u64(2))?;
//! let bytes = checkpoint::to_bytes(&checkpoint::state_dict(&a), None)?;
//! let (entries, _metadata) = checkpoint::from_bytes("in memory".as_ref(), &bytes)?;
//! checkpoint::load_entries(&c, "in memory".as_ref(), entries, true)?;
//! assert_eq!(a.bias.unwrap().value(), c.bias.unwrap().value());
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::Ordering;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::module::Slot;
use crate::{Element, Error, Module, Result, Tensor};

/// Named tensors with a file's string metadata, as read from disk.
pub type Loaded = (Vec<(String, TensorData)>, HashMap<String, String>);

/// One tensor of a state dict, in the dtypes deepgen reads and writes.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Tensor<f32>),
    F64(Tensor<f64>),
    I64 { shape: Vec<usize>, data: Vec<i64> },
}

impl TensorData {
    pub fn shape(&self) -> Vec<usize> {
        match self {
            TensorData::F32(t) => t.shape().to_vec(),
            TensorData::F64(t) => t.shape().to_vec(),
            TensorData::I64 { shape, .. } => shape.clone(),
        }
    }

    fn dtype(&self) -> Dtype {
        match self {
            TensorData::F32(_) => Dtype::F32,
            TensorData::F64(_) => Dtype::F64,
            TensorData::I64 { .. } => Dtype::I64,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            TensorData::F32(t) => t.to_vec().iter().flat_map(|v| v.to_le_bytes()).collect(),
            TensorData::F64(t) => t.to_vec().iter().flat_map(|v| v.to_le_bytes()).collect(),
            TensorData::I64 { data, .. } => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// The values as a float tensor of type `T` (F32 and F64 convert to each other).
    pub fn to_float<T: Element>(&self) -> Option<Tensor<T>> {
        match self {
            TensorData::F32(t) => Some(t.cast()),
            TensorData::F64(t) => Some(t.cast()),
            TensorData::I64 { .. } => None,
        }
    }

    /// A float tensor of type `T` as stored data.
    pub fn from_float<T: Element>(t: &Tensor<T>) -> TensorData {
        match T::DTYPE {
            deepgen_autograd::DType::F32 => TensorData::F32(t.cast()),
            deepgen_autograd::DType::F64 => TensorData::F64(t.cast()),
        }
    }
}

/// Serialises named tensors (and string metadata) as safetensors bytes.
pub fn to_bytes(
    entries: &[(String, TensorData)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = entries
        .iter()
        .map(|(n, t)| (n.clone(), t.dtype(), t.shape(), t.bytes()))
        .collect();
    let views = raw
        .iter()
        .map(|(n, d, s, b)| TensorView::new(*d, s.clone(), b).map(|v| (n.as_str(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Invalid {
            op: "save",
            msg: e.to_string(),
        })?;
    let bytes = safetensors::tensor::serialize(views, metadata).map_err(|e| Error::Invalid {
        op: "save",
        msg: e.to_string(),
    })?;
    Ok(sorted_header(bytes))
}

/// The same file with its JSON header's keys in sorted order. safetensors
/// writes the metadata map in hash order, which differs from run to run;
/// sorted, the same state always gives the same bytes (so checkpoints of
/// a resumed and an uninterrupted run compare byte for byte). The tensors'
/// offsets are relative to the data section, so only the header changes.
fn sorted_header(bytes: Vec<u8>) -> Vec<u8> {
    let Some(n) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    else {
        return bytes;
    };
    let Some(Ok(header)) = bytes
        .get(8..8 + n)
        .map(serde_json::from_slice::<serde_json::Value>)
    else {
        return bytes;
    };
    // serde_json's maps are ordered by key.
    let mut text = serde_json::to_string(&header).expect("a parsed header serialises");
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(bytes.len() - n + text.len());
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

/// Writes named tensors to a safetensors file, atomically.
pub fn save_tensors(
    path: &Path,
    entries: &[(String, TensorData)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    deepgen_tensor::io::write_atomic(path, &to_bytes(entries, metadata)?).map_err(|source| {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Reads every tensor of a safetensors file (F32, F64 and I64), with the
/// file's string metadata. A truncated or corrupt file is an error.
pub fn load_tensors(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_bytes(path, &bytes)
}

/// Parses safetensors bytes; `path` names the source in errors.
pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Loaded> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
    // The header parsed: its length prefix and JSON are sound. The crate
    // keeps the last of two entries with one name; a file that names a
    // tensor twice is ambiguous, so it is refused.
    let header =
        &bytes[8..][..u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize];
    if let Some(name) = first_duplicate_key(header) {
        return Err(corrupt(format!("the header names tensor {name:?} twice")));
    }
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let data = view.data();
        let t = match view.dtype() {
            Dtype::F32 => TensorData::F32(Tensor::from_vec(
                le_values(data, f32::from_le_bytes),
                &shape,
            )?),
            Dtype::F64 => TensorData::F64(Tensor::from_vec(
                le_values(data, f64::from_le_bytes),
                &shape,
            )?),
            Dtype::I64 => TensorData::I64 {
                shape,
                data: le_values(data, i64::from_le_bytes),
            },
            other => {
                return Err(Error::TensorDtype {
                    path: path.to_path_buf(),
                    name,
                    expected: "F32, F64 or I64".into(),
                    found: format!("{other:?}"),
                })
            }
        };
        out.push((name, t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

/// The first key that occurs twice at the top of a JSON object, if any.
fn first_duplicate_key(json: &[u8]) -> Option<String> {
    struct Dup(Option<String>);
    impl<'de> serde::Deserialize<'de> for Dup {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct Keys;
            impl<'de> serde::de::Visitor<'de> for Keys {
                type Value = Dup;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> std::result::Result<Dup, A::Error> {
                    let mut seen = std::collections::HashSet::new();
                    let mut dup = None;
                    while let Some(key) = map.next_key::<String>()? {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        if !seen.insert(key.clone()) && dup.is_none() {
                            dup = Some(key);
                        }
                    }
                    Ok(Dup(dup))
                }
            }
            d.deserialize_map(Keys)
        }
    }
    serde_json::from_slice::<Dup>(json).ok().and_then(|d| d.0)
}

/// Runs `build` (a model sized by the metadata of `path`, whose tensors are
/// `entries`) with no more room for parameters than the file's values take
/// as f32: crafted metadata that describes a larger model fails with a
/// message before the model's memory is taken, instead of allocating
/// whatever it claims.
pub fn within_file<R>(
    path: &Path,
    entries: &[(String, TensorData)],
    build: impl FnOnce() -> R,
) -> R {
    let values: u128 = entries
        .iter()
        .map(|(_, t)| t.shape().iter().map(|&d| d as u128).product::<u128>())
        .sum();
    let context = format!(
        "{}: its metadata describes a model larger than the {values} values the file holds",
        path.display()
    );
    deepgen_tensor::budget::within(values * 4, context, build)
}

fn le_values<V, const N: usize>(bytes: &[u8], f: fn([u8; N]) -> V) -> Vec<V> {
    bytes
        .chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunks of N bytes")))
        .collect()
}

/// The module's state dict: parameters and buffers in its element type,
/// counters as I64, under their dotted names.
pub fn state_dict<T: Element>(module: &dyn Module<T>) -> Vec<(String, TensorData)> {
    let mut out = Vec::new();
    module.visit(&mut |name, slot| {
        let t = match slot {
            Slot::Parameter(v) | Slot::Buffer(v) => TensorData::from_float(&v.value()),
            Slot::Counter(c) => TensorData::I64 {
                shape: vec![],
                data: vec![c.load(Ordering::Relaxed)],
            },
        };
        out.push((name.to_string(), t));
    });
    out
}

/// The first parameter or buffer holding a NaN or an infinity, with that
/// value: a diverged model, which should be neither saved as good nor used.
pub fn first_non_finite<T: Element>(module: &dyn Module<T>) -> Option<(String, f64)> {
    let mut found = None;
    module.visit(&mut |name, slot| {
        if found.is_some() {
            return;
        }
        if let Slot::Parameter(v) | Slot::Buffer(v) = slot {
            // Parameters are contiguous: a view of the values, no copy.
            let t = v.value().contiguous();
            let values = t.as_slice().expect("a contiguous tensor has a slice");
            if let Some(x) = values.iter().find(|x| !x.is_finite()) {
                found = Some((name.to_string(), x.as_f64()));
            }
        }
    });
    found
}

/// Saves the module's state dict to `path` (atomically).
pub fn save<T: Element>(module: &dyn Module<T>, path: &Path) -> Result<()> {
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    save_tensors(path, &state_dict(module), Some(meta))
}

/// What a non-strict load left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Module state the file does not have (left unchanged).
    pub missing: Vec<String>,
    /// File tensors the module does not have (ignored).
    pub unexpected: Vec<String>,
}

/// Loads a state dict file into `module`. Strict: every name must match both
/// ways. Non-strict: matching names load, the rest is reported. A shape or
/// dtype mismatch is always an error. Nothing changes unless the whole load
/// can succeed.
pub fn load<T: Element>(module: &dyn Module<T>, path: &Path, strict: bool) -> Result<LoadReport> {
    let (entries, _) = load_tensors(path)?;
    load_entries(module, path, entries, strict)
}

/// [`load`] from tensors already read; `source` names them in errors.
pub fn load_entries<T: Element>(
    module: &dyn Module<T>,
    source: &Path,
    entries: Vec<(String, TensorData)>,
    strict: bool,
) -> Result<LoadReport> {
    let mut file: BTreeMap<String, TensorData> = entries.into_iter().collect();
    let path = || source.to_path_buf();
    let mut report = LoadReport::default();
    let mut first_error = None;
    let mut plan: Vec<(String, TensorData)> = Vec::new();
    module.visit(&mut |name, slot| {
        if first_error.is_some() {
            return;
        }
        let Some(t) = file.remove(name) else {
            report.missing.push(name.to_string());
            return;
        };
        let expected = match &slot {
            Slot::Parameter(v) | Slot::Buffer(v) => v.shape(),
            Slot::Counter(_) => vec![],
        };
        let is_counter = matches!(slot, Slot::Counter(_));
        if t.shape() != expected {
            first_error = Some(Error::TensorShape {
                path: path(),
                name: name.into(),
                expected,
                found: t.shape(),
            });
        } else if is_counter != matches!(t, TensorData::I64 { .. }) {
            let expected = if is_counter { "I64" } else { "F32 or F64" };
            first_error = Some(Error::TensorDtype {
                path: path(),
                name: name.into(),
                expected: expected.into(),
                found: format!("{:?}", t.dtype()),
            });
        } else {
            plan.push((name.to_string(), t));
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    report.unexpected = file.into_keys().collect();
    if strict {
        if let Some(name) = report.missing.first() {
            return Err(Error::MissingTensor {
                path: path(),
                name: name.clone(),
            });
        }
        if let Some(name) = report.unexpected.first() {
            return Err(Error::UnexpectedTensor {
                path: path(),
                name: name.clone(),
            });
        }
    }
    // Everything checked: now assign.
    let plan: BTreeMap<String, TensorData> = plan.into_iter().collect();
    let mut result = Ok(());
    module.visit(&mut |name, slot| {
        let Some(t) = plan.get(name) else { return };
        match slot {
            Slot::Parameter(v) | Slot::Buffer(v) => {
                if let Some(value) = t.to_float::<T>() {
                    if let Err(e) = v.set_value(value) {
                        result = Err(e.into());
                    }
                }
            }
            Slot::Counter(c) => {
                if let TensorData::I64 { data, .. } = t {
                    c.store(data[0], Ordering::Relaxed);
                }
            }
        }
    });
    result.map(|()| report)
}
