use crate::error::{Error, Result};

/// Where the elements of a tensor sit in its storage: element `[i0, i1, ..]`
/// is at `offset + i0 * strides[0] + i1 * strides[1] + ..`. A stride of 0
/// repeats an element (broadcasting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

impl Layout {
    /// Row-major layout of `shape` starting at offset 0.
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }

    /// A layout from its parts; the caller checks it stays inside the storage.
    pub fn new(shape: Vec<usize>, strides: Vec<usize>, offset: usize) -> Self {
        debug_assert_eq!(shape.len(), strides.len());
        Layout {
            shape,
            strides,
            offset,
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the elements are row-major and dense from `offset`.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&n, &s) in self.shape.iter().zip(&self.strides).rev() {
            if n != 1 && s != expected {
                return false;
            }
            expected *= n;
        }
        true
    }

    /// One past the largest storage index this layout touches (0 when empty).
    pub fn storage_extent(&self) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        self.offset
            + self
                .shape
                .iter()
                .zip(&self.strides)
                .map(|(&n, &s)| (n - 1) * s)
                .sum::<usize>()
            + 1
    }

    /// Storage position of a multi-index, checked against the shape.
    pub fn position(&self, op: &'static str, index: &[usize]) -> Result<usize> {
        if index.len() != self.rank() {
            return Err(Error::ShapeMismatch {
                op,
                lhs: self.shape.clone(),
                rhs: index.to_vec(),
            });
        }
        let mut pos = self.offset;
        for (&i, (&n, &s)) in index.iter().zip(self.shape.iter().zip(&self.strides)) {
            if i >= n {
                return Err(Error::Index {
                    op,
                    index: i,
                    len: n,
                    shape: self.shape.clone(),
                });
            }
            pos += i * s;
        }
        Ok(pos)
    }

    /// Storage position of the `flat`-th element in row-major order.
    pub fn position_of_flat(&self, mut flat: usize) -> usize {
        let mut pos = self.offset;
        for (&n, &s) in self.shape.iter().zip(&self.strides).rev() {
            pos += (flat % n) * s;
            flat /= n;
        }
        pos
    }
}

/// The number of elements of `shape`, or an error naming `op` when the
/// product overflows.
pub fn checked_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .ok_or_else(|| Error::Invalid {
            op,
            shape: shape.to_vec(),
            msg: "the number of elements overflows".into(),
        })
}

/// Row-major strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for (s, &n) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= n;
    }
    strides
}

/// NumPy broadcasting: align trailing axes; sizes must match or be 1.
pub fn broadcast_shapes(op: &'static str, lhs: &[usize], rhs: &[usize]) -> Result<Vec<usize>> {
    let rank = lhs.len().max(rhs.len());
    let mut out = vec![0; rank];
    for (i, o) in out.iter_mut().enumerate() {
        let l = dim_from_right(lhs, rank - 1 - i);
        let r = dim_from_right(rhs, rank - 1 - i);
        *o = match (l, r) {
            (a, b) if a == b => a,
            (1, b) => b,
            (a, 1) => a,
            _ => {
                return Err(Error::Broadcast {
                    op,
                    lhs: lhs.to_vec(),
                    rhs: rhs.to_vec(),
                })
            }
        };
    }
    Ok(out)
}

fn dim_from_right(shape: &[usize], k: usize) -> usize {
    if k < shape.len() {
        shape[shape.len() - 1 - k]
    } else {
        1
    }
}

/// Visits a shape walked by `N` layouts at once (all of the same shape), one
/// innermost run at a time: `f(offsets, run_len, run_strides)` gets the
/// storage offset of each operand at the start of the run. Axes that are
/// dense across all operands are merged first, so contiguous operands give
/// one long run and broadcast operands give runs with stride 0.
pub fn for_each_run<const N: usize>(
    shape: &[usize],
    strides: [&[usize]; N],
    offsets: [usize; N],
    mut f: impl FnMut([usize; N], usize, [usize; N]),
) {
    if shape.contains(&0) {
        return;
    }
    let (dims, dstrides) = coalesce(shape, strides);
    let Some((&run, outer)) = dims.split_last() else {
        f(offsets, 1, [0; N]);
        return;
    };
    let run_strides: [usize; N] = std::array::from_fn(|k| *dstrides[k].last().unwrap());
    let mut index = vec![0usize; outer.len()];
    let mut pos = offsets;
    loop {
        f(pos, run, run_strides);
        // Odometer over the outer axes, updating every operand's offset.
        let mut axis = outer.len();
        loop {
            if axis == 0 {
                return;
            }
            axis -= 1;
            index[axis] += 1;
            for k in 0..N {
                pos[k] += dstrides[k][axis];
            }
            if index[axis] < outer[axis] {
                break;
            }
            for k in 0..N {
                pos[k] -= dstrides[k][axis] * outer[axis];
            }
            index[axis] = 0;
        }
    }
}

/// Drops axes of size 1 and merges neighbours that are dense for every operand.
fn coalesce<const N: usize>(
    shape: &[usize],
    strides: [&[usize]; N],
) -> (Vec<usize>, [Vec<usize>; N]) {
    let mut dims: Vec<usize> = Vec::with_capacity(shape.len());
    let mut out: [Vec<usize>; N] = std::array::from_fn(|_| Vec::with_capacity(shape.len()));
    for (axis, &n) in shape.iter().enumerate() {
        if n == 1 {
            continue;
        }
        if let Some(last) = dims.last_mut() {
            let mergeable = (0..N).all(|k| *out[k].last().unwrap() == strides[k][axis] * n);
            if mergeable {
                *last *= n;
                for k in 0..N {
                    *out[k].last_mut().unwrap() = strides[k][axis];
                }
                continue;
            }
        }
        dims.push(n);
        for k in 0..N {
            out[k].push(strides[k][axis]);
        }
    }
    (dims, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_aligns_trailing_axes() {
        assert_eq!(
            broadcast_shapes("t", &[3, 1, 5], &[4, 1]).unwrap(),
            vec![3, 4, 5]
        );
        assert!(broadcast_shapes("t", &[3, 2], &[3]).is_err());
    }

    #[test]
    fn runs_of_a_contiguous_layout_merge_into_one() {
        let mut runs = vec![];
        for_each_run(&[2, 3, 4], [&[12, 4, 1]], [0], |o, n, s| {
            runs.push((o[0], n, s[0]))
        });
        assert_eq!(runs, vec![(0, 24, 1)]);
    }

    #[test]
    fn runs_of_a_transposed_layout_follow_strides() {
        let mut runs = vec![];
        for_each_run(&[3, 2], [&[1, 3]], [1], |o, n, s| {
            runs.push((o[0], n, s[0]))
        });
        assert_eq!(runs, vec![(1, 2, 3), (2, 2, 3), (3, 2, 3)]);
    }
}
