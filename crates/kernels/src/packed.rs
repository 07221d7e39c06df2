//! Products with one operand packed once and used many times: a recurrent
//! layer multiplies its state by the same weight at every step, and a
//! general gemm (matrixmultiply) would pack that weight anew each time.
//!
//! [`PackedB`] holds B [k, n] in column panels of [`NR`] (k rows of NR
//! contiguous floats, the last panel zero-padded); [`PackedB::gemm_acc`]
//! adds A B to C, reading A where it lies, with an AVX-512 micro-kernel
//! (8 rows by two panels) or an AVX2 + FMA one (4 rows by one panel), as
//! `DEEPGEN_SIMD` and the CPU allow. f64, and CPUs without AVX2 + FMA (or
//! `DEEPGEN_SIMD=portable`), keep B row-major and call [`gemm_par`]. The
//! same kernels serve tall, narrow products of any caller
//! ([`narrow_product`]), where packing the small B is cheap and
//! matrixmultiply would copy all of A.

use crate::gemm::{gemm, gemm_par, MatRef};
use crate::Element;
use deepgen_tensor::Buffer;

/// Columns per panel: two AVX2 vectors of f32.
const NR: usize = 16;
/// Rows of A per micro-kernel call.
const MR: usize = 4;

/// How a product runs and meets C.
struct Mode<'a, T> {
    /// Over rayon's threads (by panels) when large.
    split: bool,
    /// The micro-kernels' SIMD level (at most the CPU's; at least 1 when
    /// packed in panels).
    level: u8,
    /// C = bias + A B instead of C += A B.
    bias: Option<&'a [T]>,
}

impl<'a, T> Mode<'a, T> {
    fn new(split: bool, bias: Option<&'a [T]>) -> Self {
        Mode {
            split,
            level: crate::math::simd_level(),
            bias,
        }
    }
}

/// B [k, n], packed for repeated products A B.
pub struct PackedB<T: Element> {
    k: usize,
    n: usize,
    /// Panels (f32 with the micro-kernel) or B row-major (otherwise), in
    /// a pooled buffer: a weight's copy is large enough that a fresh
    /// allocation per sequence would page in anew.
    data: Buffer<T>,
    panels: bool,
}

impl<T: Element> PackedB<T> {
    /// Packs `b` (any strides) as a [k, n] operand.
    pub fn new(b: MatRef<T>, k: usize, n: usize) -> Self {
        let at = |i: usize, j: usize| b.data[b.offset + i * b.rs + j * b.cs];
        let panels = T::DTYPE == deepgen_tensor::DType::F32 && crate::math::simd_level() >= 1;
        let data = if panels {
            // Only a last, partial panel has padding to zero.
            let mut d = match n % NR {
                0 => Buffer::for_overwrite(n / NR * NR * k),
                _ => Buffer::filled(n.div_ceil(NR) * NR * k, T::zero()),
            };
            for (p, panel) in d.chunks_exact_mut(NR * k).enumerate() {
                let cols = NR.min(n - p * NR);
                if b.cs == 1 {
                    // Row-major B: each panel row is a run of B's row.
                    for (i, dst) in panel.chunks_exact_mut(NR).enumerate() {
                        let src = b.offset + i * b.rs + p * NR;
                        dst[..cols].copy_from_slice(&b.data[src..src + cols]);
                    }
                } else {
                    // Column by column, reading along B's columns (a
                    // transpose's rows).
                    for c in 0..cols {
                        for i in 0..k {
                            panel[i * NR + c] = at(i, p * NR + c);
                        }
                    }
                }
            }
            d
        } else {
            let mut d = Buffer::for_overwrite(k * n);
            for (i, row) in d.chunks_exact_mut(n.max(1)).enumerate().take(k) {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = at(i, j);
                }
            }
            d
        };
        PackedB { k, n, data, panels }
    }

    /// C [m, n] (row stride `ldc`) += A [m, k] (row-major, row stride
    /// `lda`) B, split over rayon's threads by panels when large.
    pub fn gemm_acc(&self, m: usize, a: &[T], lda: usize, c: &mut [T], ldc: usize) {
        self.acc(m, a, lda, c, ldc, Mode::new(true, None));
    }

    /// [`PackedB::gemm_acc`] on the calling thread only: for callers that
    /// already split their work over the threads.
    pub fn gemm_acc_serial(&self, m: usize, a: &[T], lda: usize, c: &mut [T], ldc: usize) {
        self.acc(m, a, lda, c, ldc, Mode::new(false, None));
    }

    /// C = `bias` (one row of n, added to every row) + A B, on the calling
    /// thread: C's old values are not read, and the bias costs no pass of
    /// its own (the accumulators start from it).
    pub fn gemm_bias_serial(
        &self,
        m: usize,
        a: &[T],
        lda: usize,
        bias: &[T],
        c: &mut [T],
        ldc: usize,
    ) {
        assert_eq!(bias.len(), self.n, "bias length");
        self.acc(m, a, lda, c, ldc, Mode::new(false, Some(bias)));
    }

    /// The product in `mode`.
    fn acc(&self, m: usize, a: &[T], lda: usize, c: &mut [T], ldc: usize, mode: Mode<T>) {
        let (k, n) = (self.k, self.n);
        if m == 0 || n == 0 {
            return;
        }
        assert!(lda >= k && (m - 1) * lda + k <= a.len(), "A too small");
        assert!(ldc >= n && (m - 1) * ldc + n <= c.len(), "C too small");
        let Mode { split, level, bias } = mode;
        if !self.panels {
            if let Some(bias) = bias {
                for r in 0..m {
                    c[r * ldc..r * ldc + n].copy_from_slice(bias);
                }
            }
            let (am, bm) = (
                MatRef {
                    data: a,
                    offset: 0,
                    rs: lda,
                    cs: 1,
                },
                MatRef::row_major(&self.data, 0, n),
            );
            return match split {
                true => gemm_par(m, k, n, T::one(), am, bm, T::one(), c, ldc),
                false => gemm(m, k, n, T::one(), am, bm, T::one(), c, ldc),
            };
        }
        let panels = n.div_ceil(NR);
        let threads = if split && m * k * n >= crate::par::PAR_WORK {
            crate::par::threads().min(panels)
        } else {
            1
        };
        let per = panels.div_ceil(threads.max(1));
        let mut starts: Vec<usize> = (0..panels).step_by(per).collect();
        // As an address, so the closure may cross to the pool's threads.
        let out = c.as_mut_ptr() as usize;
        crate::par::for_each_chunk(&mut starts, 1, |_, s| {
            let (p0, p1) = (s[0], (s[0] + per).min(panels));
            let (a, c) = (a.as_ptr().cast(), (out as *mut f32).cast());
            let init: *const f32 = bias.map_or(std::ptr::null(), |b| b.as_ptr().cast());
            // SAFETY: the assertions keep rows < m and columns < n of C
            // inside `c`, borrowed exclusively by this call; threads own
            // disjoint panel (column) ranges, so no element has two
            // writers. T is f32 here (`panels`), whose kernels need AVX2
            // and FMA (`simd_level` >= 1).
            unsafe { self.panels(p0..p1, m, (a, lda), (c, ldc), init, level) }
        });
    }

    /// Columns of `panels` of C += A times those panels (C = init + A
    /// times them, where `init` is not null): with AVX-512, two panels at
    /// a time by 8 rows (16 accumulators of 16 floats); else one panel by
    /// 4 rows (8 accumulators of 8).
    ///
    /// # Safety
    /// `a` holds m rows of k floats at stride `lda`; `c` m rows at stride
    /// `ldc` whose columns of these panels no one else writes; `init` is
    /// null or holds n floats; the CPU has `level` (AVX2 and FMA at least).
    unsafe fn panels(
        &self,
        panels: std::ops::Range<usize>,
        m: usize,
        (a, lda): (*const f32, usize),
        (c, ldc): (*mut f32, usize),
        init: *const f32,
        level: u8,
    ) {
        let k = self.k;
        let at = |p: usize| self.data.as_ptr().cast::<f32>().add(p * NR * k);
        let cols = |p: usize| NR.min(self.n - p * NR);
        let init_at = |p: usize| match init.is_null() {
            true => init,
            false => init.add(p * NR),
        };
        // Which operand stays in cache while the other streams past it:
        // when A is the larger, a block of its rows against every panel
        // (A read once); else a panel against every row block.
        let rows_outer = m > self.n;
        #[cfg(target_arch = "x86_64")]
        if level >= 2 {
            // Panels two at a time (a lone last one alone).
            let mut pairs = Vec::new();
            let mut p = panels.start;
            while p < panels.end {
                let two = p + 1 < panels.end;
                pairs.push((p, two));
                p += 1 + usize::from(two);
            }
            let block = |r: usize, (p, two): (usize, bool)| {
                let last = if two { cols(p + 1) } else { cols(p) };
                let a = (a.add(r * lda), lda, MR_512.min(m - r));
                let out = (c.add(r * ldc + p * NR), ldc, last, init_at(p));
                match two {
                    true => kernel_avx512::<2>(k, a, at(p), NR * k, out),
                    false => kernel_avx512::<1>(k, a, at(p), NR * k, out),
                }
            };
            each_block(m, MR_512, &pairs, rows_outer, block);
            return;
        }
        let panels: Vec<usize> = panels.collect();
        let block = |r: usize, p: usize| {
            let a = (a.add(r * lda), lda, MR.min(m - r));
            let out = (c.add(r * ldc + p * NR), ldc, cols(p), init_at(p));
            #[cfg(target_arch = "x86_64")]
            kernel_avx2(k, a, at(p), out);
        };
        each_block(m, MR, &panels, rows_outer, block);
    }
}

/// Calls `f(first_row, panel)` for every block of `mr` rows and every
/// panel (or pair), rows in the outer loop or panels.
fn each_block<P: Copy>(m: usize, mr: usize, panels: &[P], rows_outer: bool, f: impl Fn(usize, P)) {
    if rows_outer {
        for r in (0..m).step_by(mr) {
            panels.iter().for_each(|&p| f(r, p));
        }
    } else {
        for &p in panels {
            (0..m).step_by(mr).for_each(|r| f(r, p));
        }
    }
}

/// A tall, narrow product C = A B (+ C, with beta = 1) with A's rows
/// contiguous and B [k, n] narrow (n <= 128, m >= 4n), as a linear
/// layer's input gradient or a recurrent layer's input projection's:
/// packing B is cheap, and the micro-kernels read A where it lies, where
/// matrixmultiply would copy all of A into its own panels first. Returns
/// false (and does nothing) where that does not apply: f64, no AVX2,
/// alpha other than 1, beta other than 0 or 1, strided A rows.
#[allow(clippy::too_many_arguments)]
pub(crate) fn narrow_product<T: Element>(
    (m, k, n): (usize, usize, usize),
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c: &mut [T],
    ldc: usize,
    split: bool,
) -> bool {
    let (zero, one) = (T::zero(), T::one());
    let applies = T::DTYPE == deepgen_tensor::DType::F32
        && crate::math::simd_level() >= 1
        && a.cs == 1
        && a.rs >= k
        && n <= 128
        && m >= 4 * n
        && k >= 16
        && alpha == one
        && (beta == zero || beta == one);
    if !applies || m == 0 || n == 0 {
        return false;
    }
    if beta == zero {
        // beta = 0 ignores C's old values, NaN included.
        for row in c.chunks_mut(ldc).take(m) {
            row[..n].fill(zero);
        }
    }
    let packed = PackedB::new(b, k, n);
    packed.acc(m, &a.data[a.offset..], a.rs, c, ldc, Mode::new(split, None));
    true
}

/// Rows of A per AVX-512 micro-kernel call.
const MR_512: usize = 8;

/// C[i, q * NR + j] += sum over kk of A[i, kk] panel_q[kk][j] (or, when
/// `init` is not null, C[i, q * NR + j] = init[q * NR + j] + the sum),
/// for i < rows, the P panels at `panel + q * stride`, j < NR (the last
/// panel: j < `cols`). `a` is (A, its row stride, rows); `out` is (C, its
/// row stride, cols, init).
///
/// # Safety
/// As [`PackedB::panels`], for `rows` rows of A and of C; AVX-512F is
/// available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel_avx512<const P: usize>(
    k: usize,
    (a, lda, rows): (*const f32, usize, usize),
    panel: *const f32,
    stride: usize,
    (out, ldc, cols, init): (*mut f32, usize, usize, *const f32),
) {
    use std::arch::x86_64::*;
    let mask = |q: usize| -> __mmask16 {
        let n = if q + 1 == P { cols } else { NR };
        if n == NR {
            !0
        } else {
            (1u16 << n) - 1
        }
    };
    let start: [__m512; P] = std::array::from_fn(|q| match init.is_null() {
        true => _mm512_setzero_ps(),
        false => _mm512_maskz_loadu_ps(mask(q), init.add(q * NR)),
    });
    let mut c = [start; MR_512];
    // Rows past `rows` read row 0 again (valid memory) and are dropped.
    let r: [*const f32; MR_512] =
        std::array::from_fn(|i| a.add(if i < rows { i } else { 0 } * lda));
    for kk in 0..k {
        let b: [__m512; P] =
            std::array::from_fn(|q| _mm512_loadu_ps(panel.add(q * stride + kk * NR)));
        for (ci, ri) in c.iter_mut().zip(&r) {
            let av = _mm512_set1_ps(*ri.add(kk));
            for (cq, bq) in ci.iter_mut().zip(&b) {
                *cq = _mm512_fmadd_ps(av, *bq, *cq);
            }
        }
    }
    for (i, ci) in c.iter().enumerate().take(rows) {
        for (q, cq) in ci.iter().enumerate() {
            let (dst, m) = (out.add(i * ldc + q * NR), mask(q));
            let sum = match init.is_null() {
                true => _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst), *cq),
                false => *cq,
            };
            _mm512_mask_storeu_ps(dst, m, sum);
        }
    }
}

/// [`kernel_avx512`] with AVX2 and FMA: one panel, 4 rows, each row's 16
/// columns in two 8-float vectors.
///
/// # Safety
/// As [`PackedB::panels`], for `rows` rows of A and of C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(
    k: usize,
    (a, lda, rows): (*const f32, usize, usize),
    panel: *const f32,
    (out, ldc, cols, init): (*mut f32, usize, usize, *const f32),
) {
    use std::arch::x86_64::*;
    // The start: zeros, or the bias (its panel's columns; a partial last
    // panel's bias read through a zero-padded copy).
    let mut first = [0f32; NR];
    if !init.is_null() {
        std::ptr::copy_nonoverlapping(init, first.as_mut_ptr(), cols);
    }
    let s = [
        _mm256_loadu_ps(first.as_ptr()),
        _mm256_loadu_ps(first.as_ptr().add(8)),
    ];
    let mut c = [s; MR];
    // Rows past `rows` read row 0 again (valid memory) and are dropped.
    let row = |i: usize| a.add(if i < rows { i } else { 0 } * lda);
    let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
    for kk in 0..k {
        let b0 = _mm256_loadu_ps(panel.add(kk * NR));
        let b1 = _mm256_loadu_ps(panel.add(kk * NR + 8));
        for (i, r) in [r0, r1, r2, r3].into_iter().enumerate() {
            let av = _mm256_set1_ps(*r.add(kk));
            c[i][0] = _mm256_fmadd_ps(av, b0, c[i][0]);
            c[i][1] = _mm256_fmadd_ps(av, b1, c[i][1]);
        }
    }
    let add = init.is_null();
    if cols == NR {
        // A whole panel: C in place.
        for (i, ci) in c.iter().enumerate().take(rows) {
            let dst = out.add(i * ldc);
            for (h, v) in ci.iter().enumerate() {
                let d = dst.add(8 * h);
                let v = if add {
                    _mm256_add_ps(_mm256_loadu_ps(d), *v)
                } else {
                    *v
                };
                _mm256_storeu_ps(d, v);
            }
        }
        return;
    }
    let mut acc = [[0f32; NR]; MR];
    for (row, ci) in acc.iter_mut().zip(&c) {
        _mm256_storeu_ps(row.as_mut_ptr(), ci[0]);
        _mm256_storeu_ps(row.as_mut_ptr().add(8), ci[1]);
    }
    for (i, row) in acc.iter().enumerate().take(rows) {
        for (j, v) in row.iter().enumerate().take(cols) {
            let d = out.add(i * ldc + j);
            *d = if add { *d + v } else { *v };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a plain triple loop, for shapes with and without partial
    /// panels and row blocks, strided B (a transpose), f32 and f64.
    #[test]
    fn packed_products_match_the_definition() {
        for (m, k, n) in [
            (1, 1, 1),
            (4, 16, 16),
            (5, 7, 33),
            (32, 64, 48),
            (3, 300, 17),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                .collect();
            let bt: Vec<f32> = (0..n * k)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
                .collect();
            // B = bt^T: [k, n] with strides (1, k).
            let b = MatRef {
                data: &bt,
                offset: 0,
                rs: 1,
                cs: k,
            };
            let mut c: Vec<f32> = (0..m * n).map(|i| i as f32 * 0.01).collect();
            let mut want = c.clone();
            for i in 0..m {
                for j in 0..n {
                    want[i * n + j] += (0..k).map(|kk| a[i * k + kk] * bt[j * k + kk]).sum::<f32>();
                }
            }
            // The same B row-major (the packing's other path).
            let rm: Vec<f32> = (0..k * n).map(|i| bt[(i % n) * k + i / n]).collect();
            let (mut c_rm, mut c_one) = (c.clone(), c.clone());
            let c0 = c.clone();
            PackedB::new(b, k, n).gemm_acc(m, &a, k, &mut c, n);
            PackedB::new(b, k, n).gemm_acc_serial(m, &a, k, &mut c_one, n);
            PackedB::new(MatRef::row_major(&rm, 0, n), k, n).gemm_acc(m, &a, k, &mut c_rm, n);
            let mut got: Vec<f32> = [c, c_rm, c_one].concat();
            // Every micro-kernel this CPU has, not only the one it picks.
            for level in 1..=crate::math::simd_level() {
                let mut c_level = c0.clone();
                let mode = Mode {
                    split: true,
                    level,
                    bias: None,
                };
                PackedB::new(b, k, n).acc(m, &a, k, &mut c_level, n, mode);
                got.extend(c_level);
                // C = bias + A B, from a C of garbage.
                let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.5 - 3.0).collect();
                let mut c_bias = vec![f32::NAN; m * n];
                let mode = Mode {
                    split: false,
                    level,
                    bias: Some(&bias),
                };
                PackedB::new(b, k, n).acc(m, &a, k, &mut c_bias, n, mode);
                for i in 0..m {
                    for j in 0..n {
                        let y = want[i * n + j] - c0[i * n + j] + bias[j];
                        let x = c_bias[i * n + j];
                        assert!(
                            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                            "bias {level}: {x} vs {y}"
                        );
                    }
                }
            }
            for (x, y) in got.iter().zip(want.iter().cycle()) {
                assert!(
                    (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                    "{m}x{k}x{n}: {x} vs {y}"
                );
            }
            let a64: Vec<f64> = a.iter().map(|&v| v.into()).collect();
            let b64: Vec<f64> = bt.iter().map(|&v| v.into()).collect();
            let mut c64 = vec![0.0; m * n];
            let b = MatRef {
                data: &b64,
                offset: 0,
                rs: 1,
                cs: k,
            };
            PackedB::new(b, k, n).gemm_acc(m, &a64, k, &mut c64, n);
            let c0: Vec<f32> = (0..m * n).map(|i| i as f32 * 0.01).collect();
            for ((x, y), z) in c64.iter().zip(&want).zip(&c0) {
                assert!((x - f64::from(y - z)).abs() <= 1e-4 * (1.0 + y.abs() as f64));
            }
        }
    }
}
