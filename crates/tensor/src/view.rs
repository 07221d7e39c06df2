//! Views (layout rewrites that share storage) and the copying shape ops
//! (index_select, concat, stack).

use crate::error::{Error, Result};
use crate::layout::{contiguous_strides, Layout};
use crate::storage::Buffer;
use crate::{Element, Tensor};

impl<T: Element> Tensor<T> {
    fn check_axis(&self, op: &'static str, axis: usize, rank: usize) -> Result<()> {
        if axis >= rank {
            return Err(Error::Axis {
                op,
                axis,
                shape: self.shape().to_vec(),
            });
        }
        Ok(())
    }

    /// Same elements in another shape: a view when the strides allow it
    /// (always for contiguous tensors), a copy otherwise.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor<T>> {
        let numel = crate::layout::checked_numel("reshape", shape)?;
        if numel != self.numel() {
            return Err(Error::ShapeMismatch {
                op: "reshape",
                lhs: self.shape().to_vec(),
                rhs: shape.to_vec(),
            });
        }
        if self.is_contiguous() {
            let l = Layout::new(
                shape.to_vec(),
                contiguous_strides(shape),
                self.layout().offset(),
            );
            return Ok(self.with_layout(l));
        }
        match view_strides(self.shape(), self.strides(), shape) {
            Some(strides) => {
                let l = Layout::new(shape.to_vec(), strides, self.layout().offset());
                Ok(self.with_layout(l))
            }
            None => self.contiguous().reshape(shape),
        }
    }

    /// Reorders the axes: axis `i` of the result is axis `axes[i]` of `self`.
    pub fn permute(&self, axes: &[usize]) -> Result<Tensor<T>> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        let valid = axes.len() == rank
            && axes
                .iter()
                .all(|&a| a < rank && !std::mem::replace(&mut seen[a], true));
        if !valid {
            return Err(Error::Invalid {
                op: "permute",
                shape: self.shape().to_vec(),
                msg: format!("{axes:?} is not a permutation of the axes"),
            });
        }
        let shape = axes.iter().map(|&a| self.shape()[a]).collect();
        let strides = axes.iter().map(|&a| self.strides()[a]).collect();
        Ok(self.with_layout(Layout::new(shape, strides, self.layout().offset())))
    }

    /// Swaps two axes.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Tensor<T>> {
        self.check_axis("transpose", a.max(b), self.rank())?;
        let mut axes: Vec<usize> = (0..self.rank()).collect();
        axes.swap(a, b);
        self.permute(&axes)
    }

    /// The slice `start..start + len` along `axis`.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Tensor<T>> {
        self.check_axis("narrow", axis, self.rank())?;
        if start.saturating_add(len) > self.shape()[axis] {
            return Err(Error::Index {
                op: "narrow",
                index: start.saturating_add(len),
                len: self.shape()[axis],
                shape: self.shape().to_vec(),
            });
        }
        let mut shape = self.shape().to_vec();
        shape[axis] = len;
        let offset = if len == 0 {
            self.layout().offset()
        } else {
            self.layout().offset() + start * self.strides()[axis]
        };
        Ok(self.with_layout(Layout::new(shape, self.strides().to_vec(), offset)))
    }

    /// A view repeating this tensor to `shape` by NumPy broadcasting (stride 0).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor<T>> {
        let err = || Error::Broadcast {
            op: "broadcast_to",
            lhs: self.shape().to_vec(),
            rhs: shape.to_vec(),
        };
        if shape.len() < self.rank() {
            return Err(err());
        }
        let lead = shape.len() - self.rank();
        let mut strides = vec![0; shape.len()];
        for (i, (&n, &s)) in self.shape().iter().zip(self.strides()).enumerate() {
            strides[lead + i] = match (n, shape[lead + i]) {
                (a, b) if a == b => s,
                (1, _) => 0,
                _ => return Err(err()),
            };
        }
        Ok(self.with_layout(Layout::new(shape.to_vec(), strides, self.layout().offset())))
    }

    /// Inserts an axis of size 1 at `axis` (0..=rank).
    pub fn unsqueeze(&self, axis: usize) -> Result<Tensor<T>> {
        self.check_axis("unsqueeze", axis, self.rank() + 1)?;
        let mut shape = self.shape().to_vec();
        let mut strides = self.strides().to_vec();
        let stride = if axis < self.rank() {
            shape[axis] * strides[axis]
        } else {
            1
        };
        shape.insert(axis, 1);
        strides.insert(axis, stride);
        Ok(self.with_layout(Layout::new(shape, strides, self.layout().offset())))
    }

    /// Removes `axis`, which must have size 1.
    pub fn squeeze(&self, axis: usize) -> Result<Tensor<T>> {
        self.check_axis("squeeze", axis, self.rank())?;
        if self.shape()[axis] != 1 {
            return Err(Error::Invalid {
                op: "squeeze",
                shape: self.shape().to_vec(),
                msg: format!("axis {axis} has size {}, not 1", self.shape()[axis]),
            });
        }
        let mut shape = self.shape().to_vec();
        let mut strides = self.strides().to_vec();
        shape.remove(axis);
        strides.remove(axis);
        Ok(self.with_layout(Layout::new(shape, strides, self.layout().offset())))
    }

    /// Collapses axes `start..=end` into one.
    pub fn flatten(&self, start: usize, end: usize) -> Result<Tensor<T>> {
        self.check_axis("flatten", end, self.rank())?;
        if start > end {
            return Err(Error::Axis {
                op: "flatten",
                axis: start,
                shape: self.shape().to_vec(),
            });
        }
        let s = self.shape();
        let mut shape = s[..start].to_vec();
        shape.push(s[start..=end].iter().product());
        shape.extend_from_slice(&s[end + 1..]);
        self.reshape(&shape)
    }

    /// Picks `indices` along `axis` (PyTorch's index_select); always copies.
    pub fn index_select(&self, axis: usize, indices: &[usize]) -> Result<Tensor<T>> {
        self.check_axis("index_select", axis, self.rank())?;
        let n = self.shape()[axis];
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::Index {
                op: "index_select",
                index: bad,
                len: n,
                shape: self.shape().to_vec(),
            });
        }
        let src = self.contiguous();
        let src = src.as_slice().expect("contiguous");
        let outer: usize = self.shape()[..axis].iter().product();
        let inner: usize = self.shape()[axis + 1..].iter().product();
        let mut shape = self.shape().to_vec();
        shape[axis] = indices.len();
        let mut out = Buffer::for_overwrite(outer * indices.len() * inner);
        let mut dst = out.chunks_exact_mut(inner.max(1));
        for o in 0..outer {
            for &i in indices {
                let start = (o * n + i) * inner;
                if let Some(d) = dst.next() {
                    d.copy_from_slice(&src[start..start + inner]);
                }
            }
        }
        Tensor::from_buffer(out, &shape)
    }

    /// Joins tensors along an existing axis; all other sizes must agree.
    pub fn concat(tensors: &[&Tensor<T>], axis: usize) -> Result<Tensor<T>> {
        let Some(first) = tensors.first() else {
            return Err(Error::Invalid {
                op: "concat",
                shape: vec![],
                msg: "no tensors to join".into(),
            });
        };
        first.check_axis("concat", axis, first.rank())?;
        for t in tensors {
            let same = t.rank() == first.rank()
                && t.shape()
                    .iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !same {
                return Err(Error::ShapeMismatch {
                    op: "concat",
                    lhs: first.shape().to_vec(),
                    rhs: t.shape().to_vec(),
                });
            }
        }
        let mut shape = first.shape().to_vec();
        shape[axis] = tensors.iter().map(|t| t.shape()[axis]).sum();
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let parts: Vec<Tensor<T>> = tensors.iter().map(|t| t.contiguous()).collect();
        let mut out = Buffer::for_overwrite(shape.iter().product());
        let mut pos = 0;
        for o in 0..outer {
            for p in &parts {
                let chunk = p.shape()[axis] * inner;
                let src = p.as_slice().expect("contiguous");
                out[pos..pos + chunk].copy_from_slice(&src[o * chunk..(o + 1) * chunk]);
                pos += chunk;
            }
        }
        Tensor::from_buffer(out, &shape)
    }

    /// Joins equally shaped tensors along a new axis.
    pub fn stack(tensors: &[&Tensor<T>], axis: usize) -> Result<Tensor<T>> {
        let Some(first) = tensors.first() else {
            return Err(Error::Invalid {
                op: "stack",
                shape: vec![],
                msg: "no tensors to join".into(),
            });
        };
        if let Some(t) = tensors.iter().find(|t| t.shape() != first.shape()) {
            return Err(Error::ShapeMismatch {
                op: "stack",
                lhs: first.shape().to_vec(),
                rhs: t.shape().to_vec(),
            });
        }
        first.check_axis("stack", axis, first.rank() + 1)?;
        let expanded = tensors
            .iter()
            .map(|t| t.unsqueeze(axis))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Tensor<T>> = expanded.iter().collect();
        Self::concat(&refs, axis)
    }
}

/// Strides that view `(shape, strides)` as `new_shape` without a copy, if any
/// exist (PyTorch's rule: each run of old axes that is dense within itself
/// may be re-split freely).
fn view_strides(shape: &[usize], strides: &[usize], new_shape: &[usize]) -> Option<Vec<usize>> {
    if shape.is_empty() || shape.contains(&0) {
        return Some(contiguous_strides(new_shape));
    }
    let mut new_strides = vec![0; new_shape.len()];
    let mut view_d = new_shape.len() as isize - 1;
    let mut chunk_base = *strides.last()?;
    let mut tensor_numel = 1;
    let mut view_numel = 1;
    for d in (0..shape.len()).rev() {
        tensor_numel *= shape[d];
        let chunk_ends =
            d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base);
        if chunk_ends {
            while view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d as usize] == 1) {
                new_strides[view_d as usize] = view_numel * chunk_base;
                view_numel *= new_shape[view_d as usize];
                view_d -= 1;
            }
            if view_numel != tensor_numel {
                return None;
            }
            if d > 0 {
                chunk_base = strides[d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    (view_d == -1).then_some(new_strides)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize]) -> Tensor<f64> {
        let n = shape.iter().product::<usize>();
        Tensor::from_vec((0..n).map(|i| i as f64).collect(), shape).unwrap()
    }

    #[test]
    fn transpose_is_a_view_and_reads_transposed() {
        let a = t(&[2, 3]);
        let b = a.transpose(0, 1).unwrap();
        assert_eq!(b.shape(), &[3, 2]);
        assert!(std::sync::Arc::ptr_eq(a.storage_arc(), b.storage_arc()));
        assert_eq!(b.to_vec(), vec![0., 3., 1., 4., 2., 5.]);
    }

    #[test]
    fn reshape_of_a_permuted_tensor_views_when_strides_allow() {
        let a = t(&[4, 2, 3]).permute(&[1, 0, 2]).unwrap(); // [2, 4, 3], last axis dense
        let b = a.reshape(&[2, 4, 3, 1]).unwrap();
        assert!(std::sync::Arc::ptr_eq(a.storage_arc(), b.storage_arc()));
        let c = a.reshape(&[8, 3]).unwrap(); // must copy
        assert_eq!(c.to_vec(), a.to_vec());
        assert!(a.reshape(&[5]).is_err());
    }

    #[test]
    fn narrow_broadcast_and_squeeze() {
        let a = t(&[3, 4]);
        assert_eq!(
            a.narrow(1, 1, 2).unwrap().to_vec(),
            vec![1., 2., 5., 6., 9., 10.]
        );
        assert!(a.narrow(1, 3, 2).is_err());
        let r = t(&[1, 2]).broadcast_to(&[2, 2, 2]).unwrap();
        assert_eq!(r.to_vec(), vec![0., 1., 0., 1., 0., 1., 0., 1.]);
        assert!(t(&[3]).broadcast_to(&[4]).is_err());
        assert_eq!(t(&[3]).unsqueeze(0).unwrap().shape(), &[1, 3]);
        assert!(t(&[3]).squeeze(0).is_err());
    }

    #[test]
    fn index_select_concat_and_stack() {
        let a = t(&[3, 2]);
        assert_eq!(
            a.index_select(0, &[2, 0]).unwrap().to_vec(),
            vec![4., 5., 0., 1.]
        );
        assert!(a.index_select(0, &[3]).is_err());
        let c = Tensor::concat(&[&a, &t(&[1, 2])], 0).unwrap();
        assert_eq!(c.shape(), &[4, 2]);
        assert!(Tensor::concat(&[&a, &t(&[1, 3])], 0).is_err());
        let s = Tensor::stack(&[&t(&[2]), &t(&[2])], 1).unwrap();
        assert_eq!(s.to_vec(), vec![0., 0., 1., 1.]);
    }
}
