use std::sync::Arc;

use crate::error::{Error, Result};
use crate::layout::{for_each_run, Layout};
use crate::storage::Buffer;
use crate::Element;

/// An n-dimensional array: shared storage plus a layout.
///
/// Cloning is cheap (the storage is shared); views share storage too. Writes
/// go through [`Tensor::data_mut`], which copies first when the storage is
/// shared or the layout is not contiguous.
///
/// ```
/// use deepgen_tensor::Tensor;
///
/// # fn main() -> deepgen_tensor::Result<()> {
/// let a = Tensor::<f32>::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
/// assert_eq!((a.shape(), a.numel()), (&[2, 3][..], 6));
/// assert_eq!(a.get(&[1, 2])?, 6.0);
///
/// // A transpose is a view: new strides over the same storage, no copy.
/// let t = a.transpose(0, 1)?;
/// assert_eq!(t.shape(), &[3, 2]);
/// assert!(!t.is_contiguous());
/// assert_eq!(t.to_vec(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
///
/// // A reshape keeps the element count (and copies only when it must).
/// assert_eq!(t.reshape(&[6])?.get(&[1])?, 4.0);
/// assert!(a.reshape(&[4]).is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Tensor<T: Element = f32> {
    storage: Arc<Buffer<T>>,
    layout: Layout,
}

impl<T: Element> Tensor<T> {
    /// A contiguous tensor over a buffer whose length is checked against the shape.
    pub fn from_buffer(buffer: Buffer<T>, shape: &[usize]) -> Result<Self> {
        let numel = crate::layout::checked_numel("from_vec", shape)?;
        if buffer.len() != numel {
            return Err(Error::ElementCount {
                op: "from_vec",
                len: buffer.len(),
                shape: shape.to_vec(),
            });
        }
        Ok(Tensor {
            storage: Arc::new(buffer),
            layout: Layout::contiguous(shape),
        })
    }

    /// A contiguous tensor from row-major data; `data.len()` must equal the shape's product.
    pub fn from_vec(data: Vec<T>, shape: &[usize]) -> Result<Self> {
        Self::from_buffer(Buffer::from_vec(data), shape)
    }

    /// A tensor viewing `storage` through `layout`; fails when the layout reaches past the end.
    pub fn from_parts(storage: Arc<Buffer<T>>, layout: Layout) -> Result<Self> {
        if layout.storage_extent() > storage.len() {
            return Err(Error::Invalid {
                op: "from_parts",
                shape: layout.shape().to_vec(),
                msg: format!(
                    "layout reaches element {} of a storage of {}",
                    layout.storage_extent(),
                    storage.len()
                ),
            });
        }
        Ok(Tensor { storage, layout })
    }

    /// A rank-0 tensor holding one value.
    pub fn scalar(value: T) -> Self {
        Self::full(&[], value)
    }

    pub fn full(shape: &[usize], value: T) -> Self {
        let numel = crate::budget::alloc_numel(shape);
        Tensor {
            storage: Arc::new(Buffer::filled(numel, value)),
            layout: Layout::contiguous(shape),
        }
    }

    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, T::zero())
    }

    pub fn ones(shape: &[usize]) -> Self {
        Self::full(shape, T::one())
    }

    /// Values `start, start + step, ..` below `end` (above it for a negative step).
    pub fn arange(start: T, end: T, step: T) -> Result<Self> {
        if step == T::zero() || !(step.is_finite() && start.is_finite() && end.is_finite()) {
            return Err(Error::Invalid {
                op: "arange",
                shape: vec![],
                msg: format!("start {start}, end {end}, step {step}"),
            });
        }
        let n = ((end - start) / step).ceil().max(T::zero());
        let n = n.to_usize().unwrap_or(0);
        let data = (0..n).map(|i| start + T::of(i as f64) * step).collect();
        Self::from_vec(data, &[n])
    }

    /// `n` evenly spaced values from `start` to `end`, both included.
    pub fn linspace(start: T, end: T, n: usize) -> Self {
        let data: Vec<T> = match n {
            0 => vec![],
            1 => vec![start],
            _ => {
                let step = (end - start) / T::of((n - 1) as f64);
                (0..n).map(|i| start + T::of(i as f64) * step).collect()
            }
        };
        Tensor::from_vec(data, &[n]).expect("linspace fills its own shape")
    }

    /// The `n x n` identity matrix.
    pub fn eye(n: usize) -> Self {
        let mut t = Self::zeros(&[n, n]);
        let data = t.data_mut();
        for i in 0..n {
            data[i * n + i] = T::one();
        }
        t
    }

    pub fn shape(&self) -> &[usize] {
        self.layout.shape()
    }

    pub fn strides(&self) -> &[usize] {
        self.layout.strides()
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn rank(&self) -> usize {
        self.layout.rank()
    }

    pub fn numel(&self) -> usize {
        self.layout.numel()
    }

    pub fn is_contiguous(&self) -> bool {
        self.layout.is_contiguous()
    }

    /// The whole shared storage (for kernels that walk layouts themselves).
    pub fn storage(&self) -> &[T] {
        &self.storage
    }

    pub fn storage_arc(&self) -> &Arc<Buffer<T>> {
        &self.storage
    }

    /// The elements in row-major order, when the layout is contiguous.
    pub fn as_slice(&self) -> Option<&[T]> {
        self.is_contiguous().then(|| {
            let start = self.layout.offset();
            &self.storage[start..start + self.numel()]
        })
    }

    /// This tensor if contiguous, else a contiguous copy.
    pub fn contiguous(&self) -> Tensor<T> {
        if self.is_contiguous() {
            return self.clone();
        }
        let mut out = Buffer::for_overwrite(self.numel());
        self.copy_into(&mut out);
        Tensor {
            storage: Arc::new(out),
            layout: Layout::contiguous(self.shape()),
        }
    }

    /// Writes the elements in row-major order into `dst` (of length `numel`).
    pub fn copy_into(&self, dst: &mut [T]) {
        assert_eq!(dst.len(), self.numel(), "copy_into: destination length");
        if let Some(src) = self.as_slice() {
            dst.copy_from_slice(src);
            return;
        }
        let out_strides = crate::layout::contiguous_strides(self.shape());
        let src = &self.storage[..];
        for_each_run(
            self.shape(),
            [self.strides(), &out_strides],
            [self.layout.offset(), 0],
            |[s, d], n, [ss, _]| {
                let dst = &mut dst[d..d + n];
                if ss == 1 {
                    dst.copy_from_slice(&src[s..s + n]);
                } else {
                    for (i, o) in dst.iter_mut().enumerate() {
                        *o = src[s + i * ss];
                    }
                }
            },
        );
    }

    /// The elements in row-major order.
    pub fn to_vec(&self) -> Vec<T> {
        match self.as_slice() {
            Some(s) => s.to_vec(),
            None => {
                let mut v = vec![T::zero(); self.numel()];
                self.copy_into(&mut v);
                v
            }
        }
    }

    /// The element at a multi-index.
    pub fn get(&self, index: &[usize]) -> Result<T> {
        Ok(self.storage[self.layout.position("get", index)?])
    }

    /// The single element of a tensor with one element.
    pub fn item(&self) -> Result<T> {
        if self.numel() != 1 {
            return Err(Error::Invalid {
                op: "item",
                shape: self.shape().to_vec(),
                msg: "tensor does not hold exactly one element".into(),
            });
        }
        Ok(self.storage[self.layout.offset()])
    }

    /// Sets the element at a multi-index (copying first if the storage is shared).
    pub fn set(&mut self, index: &[usize], value: T) -> Result<()> {
        self.layout.position("set", index)?;
        let flat = index
            .iter()
            .zip(crate::layout::contiguous_strides(self.shape()))
            .map(|(i, s)| i * s)
            .sum::<usize>();
        self.data_mut()[flat] = value;
        Ok(())
    }

    /// The elements, row-major and writable: copies first when the storage is
    /// shared with another tensor or the layout is not contiguous.
    pub fn data_mut(&mut self) -> &mut [T] {
        let whole = self.layout.offset() == 0 && self.numel() == self.storage.len();
        if !(self.is_contiguous() && whole && Arc::get_mut(&mut self.storage).is_some()) {
            let mut out = Buffer::for_overwrite(self.numel());
            self.copy_into(&mut out);
            self.storage = Arc::new(out);
            self.layout = Layout::contiguous(self.layout.shape());
        }
        Arc::get_mut(&mut self.storage).expect("storage was just made unique")
    }

    /// Same layout and values, as another element type.
    pub fn cast<U: Element>(&self) -> Tensor<U> {
        let data: Vec<U> = self
            .to_vec()
            .into_iter()
            .map(|v| U::of(v.as_f64()))
            .collect();
        Tensor::from_vec(data, self.shape()).expect("cast keeps the shape")
    }

    /// Checks that the shape equals `shape`.
    pub fn expect_shape(&self, op: &'static str, shape: &[usize]) -> Result<()> {
        if self.shape() != shape {
            return Err(Error::ShapeMismatch {
                op,
                lhs: self.shape().to_vec(),
                rhs: shape.to_vec(),
            });
        }
        Ok(())
    }

    /// Internal: a tensor with this storage and another layout (bounds already known).
    pub(crate) fn with_layout(&self, layout: Layout) -> Tensor<T> {
        debug_assert!(layout.storage_extent() <= self.storage.len());
        Tensor {
            storage: self.storage.clone(),
            layout,
        }
    }
}

impl<T: Element> PartialEq for Tensor<T> {
    fn eq(&self, other: &Self) -> bool {
        self.shape() == other.shape() && self.to_vec() == other.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_vec_checks_the_element_count() {
        let err = Tensor::<f32>::from_vec(vec![1.0; 5], &[2, 3]).unwrap_err();
        assert!(matches!(err, Error::ElementCount { len: 5, .. }), "{err}");
        assert!(err.to_string().contains("[2, 3]"));
        let huge = Tensor::<f32>::from_vec(vec![], &[usize::MAX, 2]).unwrap_err();
        assert!(huge.to_string().contains("overflows"), "{huge}");
        let empty = Tensor::<f32>::from_vec(vec![], &[0, 3]).unwrap();
        assert!(empty.reshape(&[1 << 63, 2]).is_err());
    }

    #[test]
    fn creation_helpers_fill_as_named() {
        assert_eq!(Tensor::<f64>::eye(2).to_vec(), vec![1.0, 0.0, 0.0, 1.0]);
        assert_eq!(
            Tensor::<f64>::arange(0.0, 1.0, 0.25).unwrap().to_vec(),
            vec![0.0, 0.25, 0.5, 0.75]
        );
        assert_eq!(
            Tensor::<f64>::linspace(0.0, 1.0, 3).to_vec(),
            vec![0.0, 0.5, 1.0]
        );
        assert!(Tensor::<f32>::arange(0.0, 1.0, 0.0).is_err());
    }

    #[test]
    fn get_checks_bounds_and_rank() {
        let t = Tensor::<f32>::from_vec(vec![1., 2., 3., 4., 5., 6.], &[2, 3]).unwrap();
        assert_eq!(t.get(&[1, 2]).unwrap(), 6.0);
        assert!(t.get(&[2, 0]).is_err());
        assert!(t.get(&[0]).is_err());
    }

    #[test]
    fn data_mut_copies_shared_storage() {
        let a = Tensor::<f32>::zeros(&[3]);
        let mut b = a.clone();
        b.data_mut()[0] = 1.0;
        assert_eq!(a.to_vec(), vec![0.0; 3]);
        assert_eq!(b.to_vec(), vec![1.0, 0.0, 0.0]);
    }
}
