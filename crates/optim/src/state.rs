//! State dicts: how optimizers and schedulers write and read their state.
//!
//! A state dict is a flat list of `(name, Tensor<f64>)`, PyTorch's nested
//! dict flattened with dots: `state.{i}.exp_avg` for the buffers of the
//! parameter with global index `i` (counted across groups, in order, as
//! PyTorch does), `group.{g}.lr` for the options of group `g`. The element
//! type is f64 whatever the parameters' type: step counters, learning rates
//! and f32 buffers all survive the trip exactly, so training resumes bit for
//! bit. Flags are stored as 0 or 1, pairs (Adam's `betas`) as shape `[2]`.
//!
//! Reading checks every name and shape and refuses leftovers, so a state dict
//! from another optimizer or another model fails with an error that names
//! the tensor, instead of loading half.

use std::collections::BTreeMap;

use deepgen_autograd::{Element, Tensor};

use crate::{Error, Result};

/// A state dict: named f64 tensors.
pub type StateDict = Vec<(String, Tensor<f64>)>;

/// Collects named tensors under a prefix (`state.3.`, `group.0.`).
#[derive(Debug, Default)]
pub struct StateWriter {
    prefix: String,
    out: StateDict,
}

impl StateWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Names written from now on start with `prefix`.
    pub fn set_prefix(&mut self, prefix: impl Into<String>) {
        self.prefix = prefix.into();
    }

    fn push(&mut self, name: &str, t: Tensor<f64>) {
        self.out.push((format!("{}{name}", self.prefix), t));
    }

    /// A number, as a rank-0 tensor.
    pub fn num(&mut self, name: &str, v: f64) {
        self.push(name, Tensor::scalar(v));
    }

    /// A flag, as a rank-0 tensor holding 0 or 1.
    pub fn flag(&mut self, name: &str, b: bool) {
        self.num(name, if b { 1.0 } else { 0.0 });
    }

    /// Several numbers, as a tensor of shape `[values.len()]`.
    pub fn nums(&mut self, name: &str, values: &[f64]) {
        let t = Tensor::from_vec(values.to_vec(), &[values.len()]).expect("length is the shape");
        self.push(name, t);
    }

    /// A buffer of the parameter's shape, widened to f64 (exactly).
    pub fn buffer<T: Element>(&mut self, name: &str, data: &[T], shape: &[usize]) {
        let wide = data.iter().map(|v| v.as_f64()).collect();
        let t = Tensor::from_vec(wide, shape).expect("a state buffer has its parameter's shape");
        self.push(name, t);
    }

    /// The state dict written so far.
    pub fn finish(self) -> StateDict {
        self.out
    }
}

/// Takes named tensors out of a state dict, checking names and shapes; what
/// is left at the end is an error.
#[derive(Debug)]
pub struct StateReader {
    prefix: String,
    entries: BTreeMap<String, Tensor<f64>>,
}

impl StateReader {
    /// Fails when a name appears twice.
    pub fn new(state: &[(String, Tensor<f64>)]) -> Result<Self> {
        let mut entries = BTreeMap::new();
        for (name, t) in state {
            if entries.insert(name.clone(), t.clone()).is_some() {
                return Err(Error::DuplicateTensor { name: name.clone() });
            }
        }
        Ok(StateReader {
            prefix: String::new(),
            entries,
        })
    }

    /// Names read from now on start with `prefix`.
    pub fn set_prefix(&mut self, prefix: impl Into<String>) {
        self.prefix = prefix.into();
    }

    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Whether `name` (under the prefix) is present and not yet taken.
    pub fn has(&self, name: &str) -> bool {
        self.entries.contains_key(&self.full(name))
    }

    /// Takes the tensor `name`, which must have shape `want`.
    pub fn take(&mut self, name: &str, want: &[usize]) -> Result<Tensor<f64>> {
        let name = self.full(name);
        let Some(t) = self.entries.remove(&name) else {
            return Err(Error::MissingTensor {
                name,
                want: want.to_vec(),
            });
        };
        if t.shape() != want {
            return Err(Error::TensorShape {
                name,
                got: t.shape().to_vec(),
                want: want.to_vec(),
            });
        }
        Ok(t)
    }

    /// A number written by [`StateWriter::num`].
    pub fn num(&mut self, name: &str) -> Result<f64> {
        Ok(self.take(name, &[])?.to_vec()[0])
    }

    /// A count (a step counter): a whole number, not negative.
    pub fn count(&mut self, name: &str) -> Result<f64> {
        let v = self.num(name)?;
        if !(v >= 0.0 && v.fract() == 0.0) {
            return Err(self.bad_value(name, v, "a whole number >= 0"));
        }
        Ok(v)
    }

    /// A flag written by [`StateWriter::flag`]: exactly 0 or 1.
    pub fn flag(&mut self, name: &str) -> Result<bool> {
        match self.num(name)? {
            0.0 => Ok(false),
            1.0 => Ok(true),
            v => Err(self.bad_value(name, v, "0 or 1")),
        }
    }

    /// `n` numbers written by [`StateWriter::nums`].
    pub fn nums(&mut self, name: &str, n: usize) -> Result<Vec<f64>> {
        Ok(self.take(name, &[n])?.to_vec())
    }

    /// A buffer of shape `shape`, narrowed to `T` (exact for buffers that
    /// were written from `T`).
    pub fn buffer<T: Element>(&mut self, name: &str, shape: &[usize]) -> Result<Vec<T>> {
        let t = self.take(name, shape)?;
        Ok(t.to_vec().into_iter().map(T::of).collect())
    }

    /// The error for a tensor `name` (under the prefix) holding a bad value.
    pub fn bad_value(&self, name: &str, value: f64, expected: impl Into<String>) -> Error {
        Error::TensorValue {
            name: self.full(name),
            value,
            expected: expected.into(),
        }
    }

    /// Succeeds when every tensor was taken; else names the first left over.
    pub fn finish(self) -> Result<()> {
        match self.entries.into_iter().next() {
            None => Ok(()),
            Some((name, t)) => Err(Error::UnexpectedTensor {
                name,
                shape: t.shape().to_vec(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_values_read_back_exactly() {
        let mut w = StateWriter::new();
        w.set_prefix("state.0.");
        w.num("step", 3.0);
        w.buffer("exp_avg", &[0.1f32, -2.5e-7], &[2]);
        w.set_prefix("group.0.");
        w.flag("nesterov", true);
        w.nums("betas", &[0.9, 0.999]);
        let dict = w.finish();
        let mut r = StateReader::new(&dict).unwrap();
        r.set_prefix("state.0.");
        assert_eq!(r.count("step").unwrap(), 3.0);
        assert_eq!(
            r.buffer::<f32>("exp_avg", &[2]).unwrap(),
            vec![0.1f32, -2.5e-7]
        );
        r.set_prefix("group.0.");
        assert!(r.flag("nesterov").unwrap());
        assert_eq!(r.nums("betas", 2).unwrap(), vec![0.9, 0.999]);
        r.finish().unwrap();
    }

    #[test]
    fn bad_entries_are_named() {
        let dict = vec![
            ("a".to_string(), Tensor::scalar(0.5)),
            ("b".to_string(), Tensor::zeros(&[3])),
            ("c".to_string(), Tensor::scalar(2.0)),
        ];
        let mut r = StateReader::new(&dict).unwrap();
        let err = r.count("a").unwrap_err();
        assert!(err.to_string().contains("tensor a holds 0.5"), "{err}");
        let err = r.take("b", &[2]).unwrap_err();
        assert!(
            err.to_string().contains("b has shape [3], expected [2]"),
            "{err}"
        );
        let err = r.flag("c").unwrap_err();
        assert!(err.to_string().contains("0 or 1"), "{err}");
        let err = r.take("d", &[]).unwrap_err();
        assert!(err.to_string().contains("missing tensor d"), "{err}");

        let dup = vec![
            ("x".to_string(), Tensor::scalar(1.0)),
            ("x".to_string(), Tensor::scalar(1.0)),
        ];
        assert!(matches!(
            StateReader::new(&dup),
            Err(Error::DuplicateTensor { .. })
        ));
        let left = StateReader::new(&dup[..1]).unwrap().finish().unwrap_err();
        assert!(left.to_string().contains("unexpected tensor x"), "{left}");
    }
}
