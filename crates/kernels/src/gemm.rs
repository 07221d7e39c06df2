//! Matrix products through matrixmultiply, on any strides.

use deepgen_tensor::storage::Buffer;
use deepgen_tensor::{broadcast_shapes, DType, Layout};

use crate::{Element, Error, Result, Tensor};

/// A read-only strided matrix inside a slice: element (i, j) is
/// `data[offset + i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub offset: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major matrix with `cols` columns starting at `offset`.
    pub fn row_major(data: &'a [T], offset: usize, cols: usize) -> Self {
        MatRef {
            data,
            offset,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose, as a view.
    pub fn t(self) -> Self {
        MatRef {
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    fn check(&self, rows: usize, cols: usize) {
        if rows > 0 && cols > 0 {
            let last = self.offset + (rows - 1) * self.rs + (cols - 1) * self.cs;
            assert!(
                last < self.data.len(),
                "gemm operand reaches {last} of {}",
                self.data.len()
            );
        }
    }

    fn row_block(self, start: usize) -> Self {
        MatRef {
            offset: self.offset + start * self.rs,
            ..self
        }
    }

    fn col_block(self, start: usize) -> Self {
        MatRef {
            offset: self.offset + start * self.cs,
            ..self
        }
    }
}

/// C = alpha * A B + beta * C on one thread, with A [m, k], B [k, n] strided
/// and C row-major with row stride `ldc`. With beta = 0, C's old values are
/// ignored (NaN included).
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Element>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        ldc >= n && (m - 1) * ldc + n <= c.len(),
        "gemm output too small"
    );
    if crate::packed::narrow_product((m, k, n), alpha, a, b, beta, c, ldc, false) {
        return;
    }
    // SAFETY: the assertion keeps every element of C that gemm_raw writes
    // inside `c`, which this call borrows exclusively.
    unsafe { gemm_raw(m, k, n, alpha, a, b, beta, c.as_mut_ptr(), ldc) }
}

/// [`gemm`] writing through a pointer, so threads can fill disjoint
/// column blocks of one output (interleaved in memory, so no slice split
/// can hand them out).
///
/// # Safety
/// Elements `c[i * ldc + j]` for i < m, j < n must be valid for writes and
/// written by no one else during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw<T: Element>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c: *mut T,
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    a.check(m, k);
    b.check(k, n);
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: inside the block the caller vouches for.
                let v = unsafe { &mut *c.add(i * ldc + j) };
                *v = if beta == T::zero() {
                    T::zero()
                } else {
                    *v * beta
                };
            }
        }
        return;
    }
    let (ap, bp) = (a.data[a.offset..].as_ptr(), b.data[b.offset..].as_ptr());
    let (rsa, csa, rsb, csb) = (a.rs as isize, a.cs as isize, b.rs as isize, b.cs as isize);
    // SAFETY: the checks above keep every element of A and B inside their
    // slices, the caller vouches for C; T is f32 or f64 as DTYPE says
    // (Element is sealed), so the pointer casts are identities.
    unsafe {
        match T::DTYPE {
            DType::F32 => matrixmultiply::sgemm(
                m,
                k,
                n,
                alpha.as_f64() as f32,
                ap.cast(),
                rsa,
                csa,
                bp.cast(),
                rsb,
                csb,
                beta.as_f64() as f32,
                c.cast(),
                ldc as isize,
                1,
            ),
            DType::F64 => matrixmultiply::dgemm(
                m,
                k,
                n,
                alpha.as_f64(),
                ap.cast(),
                rsa,
                csa,
                bp.cast(),
                rsb,
                csb,
                beta.as_f64(),
                c.cast(),
                ldc as isize,
                1,
            ),
        }
    }
}

/// [`gemm`], split into row or column blocks over rayon when the product is large.
#[allow(clippy::too_many_arguments)]
pub fn gemm_par<T: Element>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    let threads = crate::par::threads();
    if m > 0 && n > 0 && crate::packed::narrow_product((m, k, n), alpha, a, b, beta, c, ldc, true) {
        return;
    }
    if threads < 2 || m * k * n < crate::par::PAR_WORK || m < 16 {
        return gemm(m, k, n, alpha, a, b, beta, c, ldc);
    }
    // Each block packs all of the operand it does not split: split C's
    // rows when A is the larger operand (each thread then packs all of
    // B), its columns when B is (each packs all of A). A linear layer's
    // [128, 784] x [784, 400] splits columns and packs the small A twice.
    if m >= n {
        // Row blocks that are multiples of the 8-row micro-kernel height.
        let rows = m.div_ceil(threads).div_ceil(8) * 8;
        crate::par::for_each_chunk(&mut c[..m * ldc], rows * ldc, |i, block| {
            let r = block.len().div_ceil(ldc);
            gemm(r, k, n, alpha, a.row_block(i * rows), b, beta, block, ldc);
        });
        return;
    }
    assert!(
        ldc >= n && (m - 1) * ldc + n <= c.len(),
        "gemm output too small"
    );
    // Column blocks that are multiples of the 16-column micro-kernel width.
    let cols = n.div_ceil(threads).div_ceil(16) * 16;
    let mut starts: Vec<usize> = (0..n).step_by(cols).collect();
    // As an address, so the closure may cross to the pool's threads.
    let out = c.as_mut_ptr() as usize;
    crate::par::for_each_chunk(&mut starts, 1, |_, start| {
        let j0 = start[0];
        let width = cols.min(n - j0);
        // SAFETY: the assertion above keeps rows < m, columns < n inside
        // `c`, borrowed exclusively here; the blocks' column ranges
        // [j0, j0 + width) are disjoint, so no element has two writers.
        unsafe {
            gemm_raw(
                m,
                k,
                width,
                alpha,
                a,
                b.col_block(j0),
                beta,
                (out as *mut T).add(j0),
                ldc,
            )
        }
    });
}

/// Matrix product of the last two axes, `[.., m, k] @ [.., k, n] -> [.., m, n]`,
/// with the leading (batch) axes broadcast. Operands may be any views:
/// a transposed operand costs no copy.
pub fn matmul<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    let mismatch = || Error::ShapeMismatch {
        op: "matmul",
        lhs: a.shape().to_vec(),
        rhs: b.shape().to_vec(),
    };
    if a.rank() < 2 || b.rank() < 2 {
        return Err(mismatch());
    }
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k, k2, n) = (
        a.shape()[ra - 2],
        a.shape()[ra - 1],
        b.shape()[rb - 2],
        b.shape()[rb - 1],
    );
    if k != k2 {
        return Err(mismatch());
    }
    let batch = broadcast_shapes("matmul", &a.shape()[..ra - 2], &b.shape()[..rb - 2])?;
    let a = a.broadcast_to(&[batch.as_slice(), &[m, k]].concat())?;
    let b = b.broadcast_to(&[batch.as_slice(), &[k, n]].concat())?;
    let nb: usize = batch.iter().product();
    let out_shape = [batch.as_slice(), &[m, n]].concat();
    let mut out = Buffer::for_overwrite(nb * m * n);
    let r = batch.len();
    let a_batch = Layout::new(
        batch.clone(),
        a.strides()[..r].to_vec(),
        a.layout().offset(),
    );
    let b_batch = Layout::new(
        batch.clone(),
        b.strides()[..r].to_vec(),
        b.layout().offset(),
    );
    fn mat<T: Element>(t: &Tensor<T>, offset: usize, r: usize) -> MatRef<'_, T> {
        MatRef {
            data: t.storage(),
            offset,
            rs: t.strides()[r],
            cs: t.strides()[r + 1],
        }
    }
    let one = |i: usize, c: &mut [T], par: bool| {
        let (am, bm) = (
            mat(&a, a_batch.position_of_flat(i), r),
            mat(&b, b_batch.position_of_flat(i), r),
        );
        if par {
            gemm_par(m, k, n, T::one(), am, bm, T::zero(), c, n);
        } else {
            gemm(m, k, n, T::one(), am, bm, T::zero(), c, n);
        }
    };
    if m * n == 0 {
        return Tensor::from_buffer(out, &out_shape);
    }
    if nb > 1 && nb * m * k * n >= crate::par::PAR_WORK && crate::par::threads() > 1 {
        // A few batch items per task; each product single-threaded.
        let per_task = nb.div_ceil(crate::par::threads() * 2);
        crate::par::for_each_chunk(&mut out, per_task * m * n, |t, block| {
            for (i, c) in block.chunks_mut(m * n).enumerate() {
                one(t * per_task + i, c, false);
            }
        });
    } else {
        for (i, c) in out.chunks_mut(m * n).enumerate() {
            one(i, c, true);
        }
    }
    Tensor::from_buffer(out, &out_shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_of_transposed_views_matches_the_definition() {
        let a = Tensor::<f64>::from_vec((0..6).map(|i| i as f64).collect(), &[3, 2]).unwrap();
        let at = a.transpose(0, 1).unwrap(); // [2, 3]
        let c = matmul(&at, &a).unwrap(); // [2, 2]
        assert_eq!(c.to_vec(), vec![20., 26., 26., 35.]);
        assert!(matmul(&a, &a).is_err());
    }

    #[test]
    fn batched_matmul_broadcasts_the_batch() {
        let a = Tensor::<f32>::ones(&[4, 2, 3]);
        let b = Tensor::<f32>::ones(&[3, 5]);
        let c = matmul(&a, &b).unwrap();
        assert_eq!(c.shape(), &[4, 2, 5]);
        assert!(c.to_vec().iter().all(|&v| v == 3.0));
    }

    /// Tall, narrow products (the packed path) and their neighbours (the
    /// matrixmultiply path) against the definition: beta 0 over a C of
    /// NaN, beta 1, alpha other than 1, A rows at a stride wider than k,
    /// B transposed, one thread and split.
    #[test]
    fn narrow_products_match_the_definition() {
        let shapes = [
            (100, 37, 20),
            (64, 16, 16),
            (512, 64, 128),
            (40, 20, 17),
            (8, 40, 33),
        ];
        for (m, k, n) in shapes {
            let lda = k + 3;
            let a: Vec<f32> = (0..m * lda)
                .map(|i| ((i * 7 % 19) as f32 - 9.0) / 7.0)
                .collect();
            let bt: Vec<f32> = (0..n * k)
                .map(|i| ((i * 5 % 13) as f32 - 6.0) / 5.0)
                .collect();
            let am = MatRef {
                data: &a,
                offset: 0,
                rs: lda,
                cs: 1,
            };
            let bm = MatRef {
                data: &bt,
                offset: 0,
                rs: 1,
                cs: k,
            };
            let c0: Vec<f32> = (0..m * n).map(|i| (i % 11) as f32 * 0.25).collect();
            for (alpha, beta) in [(1.0f32, 0.0f32), (1.0, 1.0), (0.5, 1.0)] {
                let want: Vec<f32> = (0..m * n)
                    .map(|ij| {
                        let (i, j) = (ij / n, ij % n);
                        let dot: f32 = (0..k).map(|kk| a[i * lda + kk] * bt[j * k + kk]).sum();
                        alpha * dot + beta * c0[ij]
                    })
                    .collect();
                for split in [false, true] {
                    let mut c = match beta == 0.0 {
                        true => vec![f32::NAN; m * n],
                        false => c0.clone(),
                    };
                    match split {
                        true => gemm_par(m, k, n, alpha, am, bm, beta, &mut c, n),
                        false => gemm(m, k, n, alpha, am, bm, beta, &mut c, n),
                    }
                    for (x, y) in c.iter().zip(&want) {
                        assert!(
                            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                            "{m}x{k}x{n} alpha {alpha} beta {beta} split {split}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }
}
