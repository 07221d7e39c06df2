//! 2-D convolution as im2col + gemm, parallel over the batch.
//!
//! Three kernels make the whole family, each the adjoint of the others in one
//! argument, so autograd can differentiate them again:
//! - [`conv2d`]`(x, w)`: the forward convolution;
//! - [`conv2d_input_grad`]`(g, w)`: the adjoint in `x`, which is also
//!   [`conv_transpose2d`]'s forward;
//! - [`conv2d_weight_grad`]`(x, g)`: the adjoint in `w`.

use std::borrow::Cow;
use std::ops::Range;

use deepgen_tensor::storage::Buffer;
use deepgen_tensor::DType;

use crate::gemm::{gemm, gemm_par, MatRef};

#[cfg(target_arch = "x86_64")]
mod direct;
use crate::{Element, Error, Result, Tensor};

/// Stride, zero padding and dilation of a convolution, per spatial axis (y, x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dOptions {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
        }
    }
}

impl Conv2dOptions {
    pub fn new(stride: usize, padding: usize) -> Self {
        Conv2dOptions {
            stride: [stride; 2],
            padding: [padding; 2],
            dilation: [1, 1],
        }
    }

    /// Output size along one axis for input size `n` and kernel size `k`.
    pub fn out_size(&self, axis: usize, n: usize, k: usize) -> Option<usize> {
        let span = self.dilation[axis] * (k - 1) + 1;
        let padded = n + 2 * self.padding[axis];
        (self.stride[axis] > 0 && k > 0 && padded >= span)
            .then(|| (padded - span) / self.stride[axis] + 1)
    }
}

/// Sizes of one convolution: input [n, c, h, w], weight [o, c, kh, kw], output [n, o, oh, ow].
#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    opts: Conv2dOptions,
}

impl Geom {
    fn new(op: &'static str, x: [usize; 4], wt: [usize; 4], opts: Conv2dOptions) -> Result<Geom> {
        let [n, c, h, w] = x;
        let [o, c2, kh, kw] = wt;
        let bad = |msg: String| Error::Invalid {
            op,
            shape: x.to_vec(),
            msg,
        };
        if c != c2 {
            return Err(bad(format!(
                "input has {c} channels, weight {wt:?} expects {c2}"
            )));
        }
        if opts.stride.contains(&0) || opts.dilation.contains(&0) {
            return Err(bad(format!(
                "stride and dilation must be positive: {opts:?}"
            )));
        }
        let (Some(oh), Some(ow)) = (opts.out_size(0, h, kh), opts.out_size(1, w, kw)) else {
            return Err(bad(format!(
                "kernel {kh}x{kw} does not fit the padded input ({opts:?})"
            )));
        };
        Ok(Geom {
            n,
            c,
            h,
            w,
            o,
            kh,
            kw,
            oh,
            ow,
            opts,
        })
    }

    fn ckk(&self) -> usize {
        self.c * self.kh * self.kw
    }
    fn ohw(&self) -> usize {
        self.oh * self.ow
    }
    fn chw(&self) -> usize {
        self.c * self.h * self.w
    }

    fn taps(&self) -> usize {
        self.kh * self.kw
    }

    /// Whether the kernel covers the whole unpadded input, so that each
    /// image [c, h, w] is its own single im2col column and the convolution
    /// is one matrix product over the batch (DCGAN's first and last layers).
    fn is_dense(&self) -> bool {
        self.oh == 1
            && self.ow == 1
            && self.h == self.kh
            && self.w == self.kw
            && self.opts.padding == [0, 0]
            && self.opts.dilation == [1, 1]
    }

    /// For every output position q and kernel tap t, the input pixel
    /// (iy * w + ix) it reads, or None in the zero padding:
    /// `table[q * kh * kw + t]`.
    fn tap_table(&self) -> Vec<Option<usize>> {
        let ([sh, sw], [dh, dw], [ph, pw]) =
            (self.opts.stride, self.opts.dilation, self.opts.padding);
        let mut table = Vec::with_capacity(self.ohw() * self.taps());
        for oy in 0..self.oh {
            for ox in 0..self.ow {
                for ki in 0..self.kh {
                    for kj in 0..self.kw {
                        let iy = (oy * sh + ki * dh).checked_sub(ph).filter(|&y| y < self.h);
                        let ix = (ox * sw + kj * dw).checked_sub(pw).filter(|&x| x < self.w);
                        table.push(iy.zip(ix).map(|(y, x)| y * self.w + x));
                    }
                }
            }
        }
        table
    }

    /// Height and width of the zero-padded input plane.
    fn padded_hw(&self) -> (usize, usize) {
        (
            self.h + 2 * self.opts.padding[0],
            self.w + 2 * self.opts.padding[1],
        )
    }

    /// For every kernel tap and output position, in the order of the rows
    /// and columns of im2col's matrix, the position it reads in the padded
    /// plane: `table[(ki * kw + kj) * ohw + oy * ow + ox]`. The same for every
    /// channel and image, so it is built once per call.
    fn unfold_table(&self) -> Vec<usize> {
        let (_, pw) = self.padded_hw();
        let [sh, sw] = self.opts.stride;
        let [dh, dw] = self.opts.dilation;
        let mut table = Vec::with_capacity(self.kh * self.kw * self.ohw());
        for ki in 0..self.kh {
            for kj in 0..self.kw {
                for oy in 0..self.oh {
                    for ox in 0..self.ow {
                        table.push((oy * sh + ki * dh) * pw + ox * sw + kj * dw);
                    }
                }
            }
        }
        table
    }
}

fn shape4(op: &'static str, t: &Tensor<impl Element>) -> Result<[usize; 4]> {
    t.shape().try_into().map_err(|_| Error::Invalid {
        op,
        shape: t.shape().to_vec(),
        msg: "expected a 4-D tensor".into(),
    })
}

/// Unfolds images into im2col's matrix through a zero-padded copy of each
/// plane and the gather table of [`Geom::unfold_table`]: every element is one
/// table read, with no bounds or padding tests in the inner loop.
struct Unfolder<'a, T: Element> {
    g: &'a Geom,
    table: &'a [usize],
    /// One padded plane; its border stays zero.
    padded: Buffer<T>,
}

impl<'a, T: Element> Unfolder<'a, T> {
    fn new(g: &'a Geom, table: &'a [usize]) -> Self {
        let (ph, pw) = g.padded_hw();
        // The unchecked reads and writes below rely on this.
        assert!(
            table.iter().all(|&i| i < ph * pw),
            "unfold table leaves the padded plane"
        );
        Unfolder {
            g,
            table,
            padded: Buffer::filled(ph * pw, T::zero()),
        }
    }

    /// Copies plane [h, w] into the interior of the padded plane.
    fn load(&mut self, plane: &[T]) {
        let g = self.g;
        let (_, pw) = g.padded_hw();
        let [p0, p1] = g.opts.padding;
        for (y, src) in plane.chunks_exact(g.w).enumerate() {
            self.padded[(y + p0) * pw + p1..][..g.w].copy_from_slice(src);
        }
    }

    /// Unfolds one image [c, h, w] into columns [c * kh * kw, oh * ow] whose
    /// rows lie `ld` apart in `col` (several images side by side share a row).
    fn im2col(&mut self, x: &[T], col: &mut [T], ld: usize) {
        let (g, ohw) = (self.g, self.g.ohw());
        let taps = g.kh * g.kw;
        for c in 0..g.c {
            self.load(&x[c * g.h * g.w..][..g.h * g.w]);
            let padded = &self.padded[..];
            for t in 0..taps {
                let row = &mut col[(c * taps + t) * ld..][..ohw];
                for (r, &i) in row.iter_mut().zip(&self.table[t * ohw..][..ohw]) {
                    // SAFETY: `new` checked every table entry against the padded plane.
                    *r = unsafe { *padded.get_unchecked(i) };
                }
            }
        }
    }

    /// Folds columns [c * kh * kw, oh * ow] (rows `ld` apart) back into one
    /// image [c, h, w], adding overlapping contributions; overwrites `x`.
    fn col2im(&mut self, col: &[T], ld: usize, x: &mut [T]) {
        let (g, ohw) = (self.g, self.g.ohw());
        let (_, pw) = g.padded_hw();
        let [p0, p1] = g.opts.padding;
        let taps = g.kh * g.kw;
        for c in 0..g.c {
            self.padded.fill(T::zero());
            for t in 0..taps {
                let row = &col[(c * taps + t) * ld..][..ohw];
                // One tap never maps two outputs to the same input, so the
                // adds within a row do not collide.
                let padded = &mut self.padded[..];
                for (&v, &i) in row.iter().zip(&self.table[t * ohw..][..ohw]) {
                    // SAFETY: `new` checked every table entry against the padded plane.
                    unsafe {
                        let p = padded.get_unchecked_mut(i);
                        *p = *p + v;
                    }
                }
            }
            let plane = &mut x[c * g.h * g.w..][..g.h * g.w];
            for (y, dst) in plane.chunks_exact_mut(g.w).enumerate() {
                dst.copy_from_slice(&self.padded[(y + p0) * pw + p1..][..g.w]);
            }
        }
    }
}

/// Images per rayon task. Each task multiplies its images' columns side by
/// side in one gemm: a wide product runs about twice as fast as one narrow
/// product per image. Two tasks per thread keep the threads balanced on a
/// noisy machine; the column buffer stays under ~32 MiB of f32.
fn images_per_task(g: &Geom) -> usize {
    let by_threads = g.n.div_ceil(crate::par::threads() * 2);
    let by_memory = (8 << 20) / (g.ckk() * g.ohw()).max(1);
    by_threads.min(by_memory).max(1)
}

/// Images per rayon task for the direct kernels, which gain nothing from
/// wide tasks: eight tasks per thread, so that a thread slowed by other
/// load on the machine leaves little for the others to wait on.
#[cfg(target_arch = "x86_64")]
fn direct_images_per_task(g: &Geom) -> usize {
    g.n.div_ceil(crate::par::threads() * 8).max(1)
}

/// From this many input channels up, images unfold channels-last: a patch
/// row is a few copies of whole channel runs instead of one table read per
/// element (about 4x faster for DCGAN's 64- and 128-channel layers).
const CHANNELS_LAST_MIN: usize = 8;

/// `dst [cols, rows]` = `src [rows, cols]` transposed.
fn transpose<T: Element>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    let (src, dst) = (&src[..rows * cols], &mut dst[..rows * cols]);
    #[cfg(target_arch = "x86_64")]
    if T::DTYPE == DType::F32 {
        return transpose_f32(as_f32(src), rows, cols, as_f32_mut(dst));
    }
    transpose_rect(src, rows, cols, dst, 0..rows, 0..cols);
}

/// Transposes the elements in rows `rs` and columns `cs` of `src`, in
/// 16x16 tiles so that the strided side touches few cache lines at a time
/// (the whole of f64 transposes, the odd edges of f32 ones).
fn transpose_rect<T: Copy>(
    src: &[T],
    rows: usize,
    cols: usize,
    dst: &mut [T],
    rs: Range<usize>,
    cs: Range<usize>,
) {
    const TILE: usize = 16;
    for r0 in rs.clone().step_by(TILE) {
        for c0 in cs.clone().step_by(TILE) {
            for r in r0..(r0 + TILE).min(rs.end) {
                for c in c0..(c0 + TILE).min(cs.end) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}

/// f32 transpose in 8x8 AVX blocks where the CPU has AVX, the rest in 4x4
/// SSE blocks (SSE is part of x86_64), the last odd rows and columns one
/// element at a time. The destination is usually a fresh output tensor not
/// in cache: whole 32-byte runs per row, written column block by column
/// block, halve the cost of the 4x4 blocks there.
#[cfg(target_arch = "x86_64")]
fn transpose_f32(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols);
    let (r8, c8) = if is_x86_feature_detected!("avx") {
        // SAFETY: AVX was detected; the sizes are asserted above.
        unsafe { transpose_f32_avx(src, rows, cols, dst) };
        (rows / 8 * 8, cols / 8 * 8)
    } else {
        (0, 0)
    };
    transpose_f32_sse(src, rows, cols, dst, 0..r8, c8..cols);
    transpose_f32_sse(src, rows, cols, dst, r8..rows, 0..cols);
}

/// The 8x8 blocks of [`transpose_f32`]: rows and columns below multiples
/// of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_f32_avx(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    for c in (0..cols / 8 * 8).step_by(8) {
        for r in (0..rows / 8 * 8).step_by(8) {
            // SAFETY (for the caller's promise of AVX and sizes): rows r..r
            // + 8 and columns c..c + 8 lie inside [rows, cols] src and
            // [cols, rows] dst.
            let s = src.as_ptr().add(r * cols + c);
            let v: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(s.add(i * cols)));
            // t: rows 2k and 2k + 1 interleaved; u[i], u[i + 4]: column i
            // (low half) and i + 4 (high half) of rows 0-3 and 4-7; the
            // halves then swap into place.
            let t: [__m256; 8] = std::array::from_fn(|i| {
                let (a, b) = (v[i / 2 * 2], v[i / 2 * 2 + 1]);
                if i % 2 == 0 {
                    _mm256_unpacklo_ps(a, b)
                } else {
                    _mm256_unpackhi_ps(a, b)
                }
            });
            let u: [__m256; 8] = std::array::from_fn(|i| {
                let (base, k) = (i / 4 * 4, i % 4);
                let (a, b) = (t[base + k / 2], t[base + k / 2 + 2]);
                if k % 2 == 0 {
                    _mm256_shuffle_ps::<0x44>(a, b)
                } else {
                    _mm256_shuffle_ps::<0xEE>(a, b)
                }
            });
            let d = dst.as_mut_ptr().add(c * rows + r);
            for i in 0..4 {
                let (a, b) = (u[i], u[i + 4]);
                _mm256_storeu_ps(d.add(i * rows), _mm256_permute2f128_ps::<0x20>(a, b));
                _mm256_storeu_ps(d.add((i + 4) * rows), _mm256_permute2f128_ps::<0x31>(a, b));
            }
        }
    }
}

/// Transposes rows `rs` and columns `cs` of `src` in 4x4 SSE blocks, the
/// rest element by element.
#[cfg(target_arch = "x86_64")]
fn transpose_f32_sse(
    src: &[f32],
    rows: usize,
    cols: usize,
    dst: &mut [f32],
    rs: Range<usize>,
    cs: Range<usize>,
) {
    use std::arch::x86_64::*;
    assert!(rs.end <= rows && cs.end <= cols);
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols);
    let r4 = rs.start + rs.len() / 4 * 4;
    let c4 = cs.start + cs.len() / 4 * 4;
    for r in (rs.start..r4).step_by(4) {
        for c in (cs.start..c4).step_by(4) {
            // SAFETY: rows r..r + 4 and columns c..c + 4 lie inside both
            // [rows, cols] src and [cols, rows] dst (asserted above).
            unsafe {
                let s = src.as_ptr().add(r * cols + c);
                let mut a = _mm_loadu_ps(s);
                let mut b = _mm_loadu_ps(s.add(cols));
                let mut e = _mm_loadu_ps(s.add(2 * cols));
                let mut f = _mm_loadu_ps(s.add(3 * cols));
                _MM_TRANSPOSE4_PS(&mut a, &mut b, &mut e, &mut f);
                let d = dst.as_mut_ptr().add(c * rows + r);
                _mm_storeu_ps(d, a);
                _mm_storeu_ps(d.add(rows), b);
                _mm_storeu_ps(d.add(2 * rows), e);
                _mm_storeu_ps(d.add(3 * rows), f);
            }
        }
    }
    transpose_rect(src, rows, cols, dst, rs.start..r4, c4..cs.end);
    transpose_rect(src, rows, cols, dst, r4..rs.end, cs);
}

/// Im2col's matrix [K, P] for a block of `count` images (K = c * kh * kw
/// patch elements, P = count * oh * ow output positions), its adjoint fold,
/// and the weight as the matching [o, K] matrix, in one of two layouts.
enum Im2col<'a> {
    /// Row-major [K, P], K in (channel, tap) order: one element at a time
    /// through a zero-padded plane and the gather table of
    /// [`Geom::unfold_table`]. The weight is used as it is.
    Planar { g: &'a Geom, table: Vec<usize> },
    /// Patch rows [P, K], K in (tap, channel) order, copied as whole
    /// channel runs from a channels-last copy of each image; the table of
    /// [`Geom::tap_table`] gives each row's sources. The weight is permuted
    /// to [o, kh, kw, c].
    ChannelsLast {
        g: &'a Geom,
        table: Vec<Option<usize>>,
    },
}

impl<'a> Im2col<'a> {
    fn new(g: &'a Geom) -> Self {
        if g.c >= CHANNELS_LAST_MIN {
            Im2col::ChannelsLast {
                g,
                table: g.tap_table(),
            }
        } else {
            Im2col::Planar {
                g,
                table: g.unfold_table(),
            }
        }
    }

    fn geom(&self) -> &'a Geom {
        match self {
            Im2col::Planar { g, .. } | Im2col::ChannelsLast { g, .. } => g,
        }
    }

    /// The weight [o, c, kh, kw] as an [o, K] matrix in this layout's K order.
    fn weight_matrix<'w, T: Element>(&self, w: &'w [T]) -> Cow<'w, [T]> {
        match self {
            Im2col::Planar { .. } => Cow::Borrowed(w),
            Im2col::ChannelsLast { g, .. } => {
                let mut m = w.to_vec();
                for (src, dst) in w.chunks_exact(g.ckk()).zip(m.chunks_exact_mut(g.ckk())) {
                    transpose(src, g.c, g.taps(), dst);
                }
                Cow::Owned(m)
            }
        }
    }

    /// The inverse of [`Self::weight_matrix`]: [o, K] back to [o, c, kh, kw].
    fn weight_from_matrix<T: Element>(&self, m: Buffer<T>) -> Buffer<T> {
        match self {
            Im2col::Planar { .. } => m,
            Im2col::ChannelsLast { g, .. } => {
                let mut w = Buffer::for_overwrite(m.len());
                for (src, dst) in m.chunks_exact(g.ckk()).zip(w.chunks_exact_mut(g.ckk())) {
                    transpose(src, g.taps(), g.c, dst);
                }
                w
            }
        }
    }

    /// The [K, P] view of a matrix this layout made for `count` images.
    fn view<'b, T>(&self, col: &'b [T], count: usize) -> MatRef<'b, T> {
        match self {
            Im2col::Planar { g, .. } => MatRef::row_major(col, 0, count * g.ohw()),
            Im2col::ChannelsLast { g, .. } => MatRef::row_major(col, 0, g.ckk()).t(),
        }
    }

    /// Unfolds images `first..first + count` of `x` [n, c, h, w].
    fn unfold<T: Element>(&self, x: &[T], first: usize, count: usize) -> Buffer<T> {
        let g = self.geom();
        let (ohw, k) = (g.ohw(), g.ckk());
        let mut col = Buffer::for_overwrite(k * count * ohw);
        let images = x[first * g.chw()..][..count * g.chw()].chunks_exact(g.chw().max(1));
        match self {
            Im2col::Planar { table, .. } => {
                let mut unfolder = Unfolder::new(g, table);
                for (i, img) in images.enumerate() {
                    unfolder.im2col(img, &mut col[i * ohw..], count * ohw);
                }
            }
            Im2col::ChannelsLast { table, .. } => {
                let mut hwc = Buffer::for_overwrite(g.chw());
                for (img, rows) in images.zip(col.chunks_exact_mut(ohw * k)) {
                    transpose(img, g.c, g.h * g.w, &mut hwc);
                    for (row, taps) in rows.chunks_exact_mut(k).zip(table.chunks_exact(g.taps())) {
                        for (dst, src) in row.chunks_exact_mut(g.c).zip(taps) {
                            match src {
                                Some(i) => dst.copy_from_slice(&hwc[i * g.c..][..g.c]),
                                None => dst.fill(T::zero()),
                            }
                        }
                    }
                }
            }
        }
        col
    }

    /// The unfolded matrix Wᵀ gy for weight matrix `wm` [o, K] and output
    /// gradients `gw` [o, P], in this layout.
    fn adjoint_product<T: Element>(&self, wm: &[T], gw: &[T], count: usize) -> Buffer<T> {
        let g = self.geom();
        let (k, p) = (g.ckk(), count * g.ohw());
        let mut col = Buffer::for_overwrite(k * p);
        let (wm, gw) = (MatRef::row_major(wm, 0, k), MatRef::row_major(gw, 0, p));
        let (one, zero) = (T::one(), T::zero());
        match self {
            // [K, P] = Wᵀ [K, o] @ gy [o, P]
            Im2col::Planar { .. } => gemm(k, g.o, p, one, wm.t(), gw, zero, &mut col, p),
            // [P, K] = gyᵀ [P, o] @ W [o, K]
            Im2col::ChannelsLast { .. } => gemm(p, g.o, k, one, gw.t(), wm, zero, &mut col, k),
        }
        col
    }

    /// Folds the matrix of `count` images back into them (adding where
    /// patches overlap), overwriting `xs` [count, c, h, w].
    fn fold<T: Element>(&self, col: &[T], count: usize, xs: &mut [T]) {
        let g = self.geom();
        let (ohw, k, chw) = (g.ohw(), g.ckk(), g.chw().max(1));
        match self {
            Im2col::Planar { table, .. } => {
                let mut unfolder = Unfolder::new(g, table);
                for (i, x) in xs.chunks_exact_mut(chw).enumerate() {
                    unfolder.col2im(&col[i * ohw..], count * ohw, x);
                }
            }
            Im2col::ChannelsLast { table, .. } => {
                let mut hwc = Buffer::for_overwrite(g.chw());
                for (rows, x) in col.chunks_exact(ohw * k).zip(xs.chunks_exact_mut(chw)) {
                    hwc.fill(T::zero());
                    for (row, taps) in rows.chunks_exact(k).zip(table.chunks_exact(g.taps())) {
                        for (src, dst) in row.chunks_exact(g.c).zip(taps) {
                            if let Some(i) = dst {
                                for (o, &v) in hwc[i * g.c..][..g.c].iter_mut().zip(src) {
                                    *o = *o + v;
                                }
                            }
                        }
                    }
                    transpose(&hwc, g.h * g.w, g.c, x);
                }
            }
        }
    }
}

/// Copies gy for images `first..first + count` from [n, o, ohw] into
/// [o, count * ohw], the layout of one wide gemm operand.
fn gather_outputs<T: Element>(g: &Geom, gy: &[T], first: usize, count: usize) -> Buffer<T> {
    let (ohw, ld) = (g.ohw(), count * g.ohw());
    let mut wide = Buffer::for_overwrite(g.o * ld);
    for i in 0..count {
        let img = &gy[(first + i) * g.o * ohw..][..g.o * ohw];
        for (oc, src) in img.chunks_exact(ohw).enumerate() {
            wide[oc * ld + i * ohw..][..ohw].copy_from_slice(src);
        }
    }
    wide
}

/// Convolution (cross-correlation, as PyTorch): x [n, c, h, w], w [o, c, kh, kw] -> [n, o, oh, ow].
pub fn conv2d<T: Element>(x: &Tensor<T>, w: &Tensor<T>, opts: Conv2dOptions) -> Result<Tensor<T>> {
    let g = Geom::new("conv2d", shape4("conv2d", x)?, shape4("conv2d", w)?, opts)?;
    let (x, w) = (x.contiguous(), w.contiguous());
    let (xs, ws) = (
        x.as_slice().expect("contiguous"),
        w.as_slice().expect("contiguous"),
    );
    let (ohw, per_out, k) = (g.ohw(), g.o * g.ohw(), g.ckk());
    let mut out = Buffer::for_overwrite(g.n * per_out);
    if g.is_dense() {
        // y [n, o] = x [n, K] @ wᵀ [K, o]
        let (xm, wm) = (MatRef::row_major(xs, 0, k), MatRef::row_major(ws, 0, k));
        gemm_par(g.n, k, g.o, T::one(), xm, wm.t(), T::zero(), &mut out, g.o);
        return Tensor::from_buffer(out, &[g.n, g.o, 1, 1]);
    }
    #[cfg(target_arch = "x86_64")]
    if T::DTYPE == DType::F32 && direct::usable(&g) {
        conv2d_direct(&g, as_f32(xs), as_f32(ws), as_f32_mut(&mut out));
        return Tensor::from_buffer(out, &[g.n, g.o, g.oh, g.ow]);
    }
    let step = images_per_task(&g);
    let im = Im2col::new(&g);
    let wm = im.weight_matrix(ws);
    if per_out > 0 {
        crate::par::for_each_chunk(&mut out, step * per_out, |t, ys| {
            let count = ys.len() / per_out;
            let ld = count * ohw;
            let col = im.unfold(xs, t * step, count);
            // wide [o, count * ohw] = w [o, K] @ col [K, count * ohw]
            let mut wide = Buffer::for_overwrite(g.o * ld);
            let w = MatRef::row_major(&wm, 0, k);
            gemm(
                g.o,
                k,
                ld,
                T::one(),
                w,
                im.view(&col, count),
                T::zero(),
                &mut wide,
                ld,
            );
            for (i, y) in ys.chunks_exact_mut(per_out).enumerate() {
                for (oc, dst) in y.chunks_exact_mut(ohw).enumerate() {
                    dst.copy_from_slice(&wide[oc * ld + i * ohw..][..ohw]);
                }
            }
        });
    }
    Tensor::from_buffer(out, &[g.n, g.o, g.oh, g.ow])
}

/// Images `first..first + count` of `xs` [n, channels, plane] channels-last,
/// [count, plane, channels], followed by one row of zeros that padding taps
/// read: the operands of the direct kernels.
#[cfg(target_arch = "x86_64")]
fn channels_last(
    xs: &[f32],
    channels: usize,
    plane: usize,
    first: usize,
    count: usize,
) -> Buffer<f32> {
    let size = channels * plane;
    let mut hwc = Buffer::for_overwrite(count * size + channels);
    hwc[count * size..].fill(0.0);
    to_channels_last(xs, channels, plane, first, &mut hwc[..count * size]);
    hwc
}

/// Writes images `first..` of `xs` [n, channels, plane] channels-last into
/// `dst`, as many as it holds.
#[cfg(target_arch = "x86_64")]
fn to_channels_last(xs: &[f32], channels: usize, plane: usize, first: usize, dst: &mut [f32]) {
    let size = (channels * plane).max(1);
    let images = xs[first * size..].chunks_exact(size);
    for (img, dst) in images.zip(dst.chunks_exact_mut(size)) {
        transpose(img, channels, plane, dst);
    }
}

/// Reinterprets f32 data typed as `T`.
#[cfg(target_arch = "x86_64")]
fn as_f32<T: Element>(s: &[T]) -> &[f32] {
    assert_eq!(T::DTYPE, DType::F32);
    // SAFETY: T is f32 (Element is sealed and DTYPE says so).
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast(), s.len()) }
}

/// [`as_f32`] for a mutable slice.
#[cfg(target_arch = "x86_64")]
fn as_f32_mut<T: Element>(s: &mut [T]) -> &mut [f32] {
    assert_eq!(T::DTYPE, DType::F32);
    // SAFETY: T is f32 (Element is sealed and DTYPE says so).
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast(), s.len()) }
}

/// [`conv2d`] through the direct kernel: each task takes its images
/// channels-last, convolves, and transposes the output back.
#[cfg(target_arch = "x86_64")]
fn conv2d_direct(g: &Geom, xs: &[f32], ws: &[f32], out: &mut [f32]) {
    let packed = direct::pack_weight(g, ws);
    let table = g.tap_table();
    let (step, per_out) = (direct_images_per_task(g), g.o * g.ohw());
    crate::par::for_each_chunk(out, step * per_out, |t, ys| {
        let count = ys.len() / per_out;
        let hwc = channels_last(xs, g.c, g.h * g.w, t * step, count);
        let mut out_hwc = Buffer::for_overwrite(count * per_out);
        direct::conv2d_hwc(g, &table, &hwc, &packed, count, &mut out_hwc);
        for (src, y) in out_hwc
            .chunks_exact(per_out)
            .zip(ys.chunks_exact_mut(per_out))
        {
            transpose(src, g.ohw(), g.o, y);
        }
    });
}

/// [`conv2d_weight_grad`] through the direct kernel into `w` [o, c, kh, kw]:
/// each task sums a range of output channels over the whole batch as
/// [rows, kh * kw, c], then permutes its rows into place.
#[cfg(target_arch = "x86_64")]
fn conv2d_weight_grad_direct(g: &Geom, xs: &[f32], gs: &[f32], w: &mut [f32]) {
    let table = g.tap_table();
    let (hw, c, taps, ckk) = (g.h * g.w, g.c, g.taps(), g.ckk());
    // The whole batch channels-last (with the zero row), in parallel over images.
    let mut hwc = Buffer::for_overwrite(g.n * hw * c + c);
    hwc[g.n * hw * c..].fill(0.0);
    let step = direct_images_per_task(g);
    crate::par::for_each_chunk(&mut hwc[..g.n * hw * c], step * hw * c, |t, dst| {
        to_channels_last(xs, c, hw, t * step, dst);
    });
    // Threads split the output channels, each summing over the whole batch
    // into its own rows [rows, taps, c]; then each row is permuted to
    // [c, taps] in place of w. One task per thread: every task streams the
    // whole channels-last batch (3-6 MB for DCGAN, beyond L2) through its
    // cache, so four per thread read it four times (d2 on 2 threads: 3.9
    // -> 3.5 ms).
    let rows = 8 * g.o.div_ceil(8 * crate::par::threads()).max(1);
    crate::par::for_each_chunk(w, rows * ckk, |t, block| {
        let mut acc = vec![0.0; block.len()];
        direct::weight_grad_hwc(g, &table, &hwc, gs, g.n, t * rows, &mut acc);
        for (src, dst) in acc.chunks_exact(ckk).zip(block.chunks_exact_mut(ckk)) {
            transpose(src, taps, c, dst);
        }
    });
}

/// [`conv2d_input_grad`] through the direct kernel: each task takes its
/// output gradients channels-last, gathers every input pixel's sum, and
/// transposes the result back.
#[cfg(target_arch = "x86_64")]
fn conv2d_input_grad_direct(g: &Geom, gs: &[f32], ws: &[f32], out: &mut [f32]) {
    let classes = direct::pixel_classes(g, ws);
    let (step, per_in, hw, ohw) = (direct_images_per_task(g), g.chw(), g.h * g.w, g.ohw());
    crate::par::for_each_chunk(out, step * per_in, |t, xs| {
        let count = xs.len() / per_in;
        let gy = channels_last(gs, g.o, ohw, t * step, count);
        let mut dx = Buffer::for_overwrite(count * per_in);
        direct::input_grad_hwc(g, &classes, &gy, count, &mut dx);
        for (src, x) in dx.chunks_exact(per_in).zip(xs.chunks_exact_mut(per_in)) {
            transpose(src, hw, g.c, x);
        }
    });
}

/// The adjoint of [`conv2d`] in its input: gy [n, o, oh, ow], w [o, c, kh, kw]
/// -> [n, c, h, w] for the input size `input_hw` (which fixes the ambiguity
/// of strided convolutions).
pub fn conv2d_input_grad<T: Element>(
    gy: &Tensor<T>,
    w: &Tensor<T>,
    opts: Conv2dOptions,
    input_hw: [usize; 2],
) -> Result<Tensor<T>> {
    let [n, o, oh, ow] = shape4("conv2d_input_grad", gy)?;
    let [o2, c, kh, kw] = shape4("conv2d_input_grad", w)?;
    let g = Geom::new(
        "conv2d_input_grad",
        [n, c, input_hw[0], input_hw[1]],
        [o2, c, kh, kw],
        opts,
    )?;
    if o != o2 || g.oh != oh || g.ow != ow {
        return Err(Error::ShapeMismatch {
            op: "conv2d_input_grad",
            lhs: gy.shape().to_vec(),
            rhs: vec![n, o2, g.oh, g.ow],
        });
    }
    let (gy, w) = (gy.contiguous(), w.contiguous());
    let (gs, ws) = (
        gy.as_slice().expect("contiguous"),
        w.as_slice().expect("contiguous"),
    );
    let (per_in, k) = (g.chw(), g.ckk());
    let mut out = Buffer::for_overwrite(n * per_in);
    let shape = [n, c, input_hw[0], input_hw[1]];
    if g.is_dense() {
        // x [n, K] = gy [n, o] @ w [o, K]
        let (gm, wm) = (MatRef::row_major(gs, 0, o), MatRef::row_major(ws, 0, k));
        gemm_par(n, o, k, T::one(), gm, wm, T::zero(), &mut out, k);
        return Tensor::from_buffer(out, &shape);
    }
    #[cfg(target_arch = "x86_64")]
    if T::DTYPE == DType::F32 && direct::usable_for_input_grad(&g) {
        conv2d_input_grad_direct(&g, as_f32(gs), as_f32(ws), as_f32_mut(&mut out));
        return Tensor::from_buffer(out, &shape);
    }
    let step = images_per_task(&g);
    let im = Im2col::new(&g);
    let wm = im.weight_matrix(ws);
    if per_in > 0 {
        crate::par::for_each_chunk(&mut out, step * per_in, |t, xs| {
            let count = xs.len() / per_in;
            let gw = gather_outputs(&g, gs, t * step, count);
            let col = im.adjoint_product(&wm, &gw, count);
            im.fold(&col, count, xs);
        });
    }
    Tensor::from_buffer(out, &shape)
}

/// The adjoint of [`conv2d`] in its weight: x [n, c, h, w], gy [n, o, oh, ow]
/// -> [o, c, kh, kw] for the kernel size `kernel_hw`.
pub fn conv2d_weight_grad<T: Element>(
    x: &Tensor<T>,
    gy: &Tensor<T>,
    opts: Conv2dOptions,
    kernel_hw: [usize; 2],
) -> Result<Tensor<T>> {
    let xs4 = shape4("conv2d_weight_grad", x)?;
    let [n, o, oh, ow] = shape4("conv2d_weight_grad", gy)?;
    let g = Geom::new(
        "conv2d_weight_grad",
        xs4,
        [o, xs4[1], kernel_hw[0], kernel_hw[1]],
        opts,
    )?;
    if n != g.n || g.oh != oh || g.ow != ow {
        return Err(Error::ShapeMismatch {
            op: "conv2d_weight_grad",
            lhs: gy.shape().to_vec(),
            rhs: vec![g.n, o, g.oh, g.ow],
        });
    }
    let (x, gy) = (x.contiguous(), gy.contiguous());
    let (xs, gs) = (
        x.as_slice().expect("contiguous"),
        gy.as_slice().expect("contiguous"),
    );
    let (size, k) = (g.o * g.ckk(), g.ckk());
    let shape = [g.o, g.c, g.kh, g.kw];
    if g.is_dense() {
        // w [o, K] = gyᵀ [o, n] @ x [n, K]
        let mut out = Buffer::for_overwrite(size);
        let (gm, xm) = (MatRef::row_major(gs, 0, o), MatRef::row_major(xs, 0, k));
        gemm_par(o, n, k, T::one(), gm.t(), xm, T::zero(), &mut out, k);
        return Tensor::from_buffer(out, &shape);
    }
    #[cfg(target_arch = "x86_64")]
    if T::DTYPE == DType::F32 && direct::usable_for_weight_grad(&g) {
        let mut w = Buffer::<T>::for_overwrite(size);
        conv2d_weight_grad_direct(&g, as_f32(xs), as_f32(gs), as_f32_mut(&mut w));
        return Tensor::from_buffer(w, &shape);
    }
    let step = images_per_task(&g);
    let im = Im2col::new(&g);
    // One partial sum per task, added up at the end.
    let mut partials: Vec<Option<Buffer<T>>> = (0..n.div_ceil(step)).map(|_| None).collect();
    crate::par::for_each_chunk(&mut partials, 1, |t, slot| {
        slot[0] = Some({
            let count = step.min(n - t * step);
            let ld = count * g.ohw();
            let col = im.unfold(xs, t * step, count);
            let gw = gather_outputs(&g, gs, t * step, count);
            // acc [o, K] = gy [o, count * ohw] @ colᵀ [count * ohw, K]
            let mut acc = Buffer::for_overwrite(size);
            let gm = MatRef::row_major(&gw, 0, ld);
            gemm(
                g.o,
                ld,
                k,
                T::one(),
                gm,
                im.view(&col, count).t(),
                T::zero(),
                &mut acc,
                k,
            );
            acc
        });
    });
    let mut parts = partials.into_iter().flatten();
    let mut out = parts
        .next()
        .unwrap_or_else(|| Buffer::filled(size, T::zero()));
    for p in parts {
        for (o, &v) in out.iter_mut().zip(p.iter()) {
            *o = *o + v;
        }
    }
    Tensor::from_buffer(im.weight_from_matrix(out), &shape)
}

/// Transposed convolution, PyTorch's conv_transpose2d: x [n, c_in, h, w],
/// w [c_in, c_out, kh, kw] -> [n, c_out, h', w'] with
/// h' = (h - 1) * stride - 2 * padding + dilation * (kh - 1) + output_padding + 1.
pub fn conv_transpose2d<T: Element>(
    x: &Tensor<T>,
    w: &Tensor<T>,
    opts: Conv2dOptions,
    output_padding: [usize; 2],
) -> Result<Tensor<T>> {
    let out_hw = conv_transpose2d_out_hw(x.shape(), w.shape(), opts, output_padding)?;
    conv2d_input_grad(x, w, opts, out_hw)
}

/// Output size of [`conv_transpose2d`], checked.
pub fn conv_transpose2d_out_hw(
    x: &[usize],
    w: &[usize],
    opts: Conv2dOptions,
    output_padding: [usize; 2],
) -> Result<[usize; 2]> {
    let bad = |msg: String| Error::Invalid {
        op: "conv_transpose2d",
        shape: x.to_vec(),
        msg,
    };
    let (&[_, _, h, wd], &[_, _, kh, kw]) = (x, w) else {
        return Err(bad(format!(
            "expected 4-D input and weight, got weight {w:?}"
        )));
    };
    let mut out = [0; 2];
    for (axis, (n, k)) in [(h, kh), (wd, kw)].into_iter().enumerate() {
        let (s, p, d, op) = (
            opts.stride[axis],
            opts.padding[axis],
            opts.dilation[axis],
            output_padding[axis],
        );
        // PyTorch also allows s <= op < d, but then the matching conv2d has
        // more outputs than x has positions, which conv2d_input_grad rejects.
        if op >= s {
            return Err(bad(format!(
                "output_padding {op} must be smaller than stride {s}"
            )));
        }
        let full = (n.max(1) - 1) * s + d * (k.max(1) - 1) + op + 1;
        if n == 0 || k == 0 || full <= 2 * p {
            return Err(bad(format!(
                "output would be empty ({opts:?}, kernel {kh}x{kw})"
            )));
        }
        out[axis] = full - 2 * p;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv2d_sums_a_window() {
        let x =
            Tensor::<f64>::from_vec((0..16).map(|i| i as f64).collect(), &[1, 1, 4, 4]).unwrap();
        let w = Tensor::<f64>::ones(&[1, 1, 2, 2]);
        let y = conv2d(&x, &w, Conv2dOptions::new(2, 0)).unwrap();
        assert_eq!(y.to_vec(), vec![10., 18., 42., 50.]);
        let y = conv2d(&x, &w, Conv2dOptions::new(1, 1)).unwrap();
        assert_eq!(y.shape(), &[1, 1, 5, 5]);
        assert_eq!(y.get(&[0, 0, 0, 0]).unwrap(), 0.0);
        assert_eq!(y.get(&[0, 0, 4, 4]).unwrap(), 15.0);
    }

    #[test]
    fn transpose_matches_the_definition_at_any_size() {
        // Every mix of the 8x8, 4x4 and element-wise parts.
        let sizes = [1, 3, 4, 7, 8, 9, 12, 13, 16, 21, 49];
        for (rows, cols) in sizes.iter().flat_map(|&r| sizes.map(|c| (r, c))) {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let mut dst = vec![0.0; rows * cols];
            transpose(&src, rows, cols, &mut dst);
            let src64: Vec<f64> = src.iter().map(|&v| v as f64).collect();
            let mut dst64 = vec![0.0; rows * cols];
            transpose(&src64, rows, cols, &mut dst64);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(dst[c * rows + r], src[r * cols + c], "{rows}x{cols}");
                    assert_eq!(dst64[c * rows + r], src64[r * cols + c], "{rows}x{cols}");
                }
            }
        }
    }

    #[test]
    fn bad_geometry_is_an_error() {
        let x = Tensor::<f32>::zeros(&[1, 2, 3, 3]);
        assert!(conv2d(&x, &Tensor::zeros(&[4, 3, 3, 3]), Conv2dOptions::default()).is_err());
        assert!(conv2d(&x, &Tensor::zeros(&[4, 2, 5, 5]), Conv2dOptions::default()).is_err());
        assert!(conv2d(
            &Tensor::<f32>::zeros(&[2, 3]),
            &Tensor::zeros(&[4, 2, 5, 5]),
            Conv2dOptions::default()
        )
        .is_err());
        let o = Conv2dOptions::new(2, 1);
        assert!(conv_transpose2d(&x, &Tensor::zeros(&[2, 3, 4, 4]), o, [2, 0]).is_err());
        let y = conv_transpose2d(&x, &Tensor::zeros(&[2, 3, 4, 4]), o, [1, 0]).unwrap();
        assert_eq!(y.shape(), &[1, 3, 7, 6]);
    }
}
