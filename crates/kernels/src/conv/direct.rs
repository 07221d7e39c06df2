//! Direct f32 convolution on AVX-512: no im2col matrix. The micro-kernel
//! reads each patch straight from a channels-last copy of the images (a
//! pointer per output position and kernel tap) and multiplies it into 32
//! output channels held in registers, so the patch matrix is neither written
//! nor packed again (im2col + matrixmultiply do both).

use std::arch::x86_64::*;

use super::{transpose, Geom};

/// Output positions per micro-kernel call.
const MR: usize = 8;
/// Output channels per micro-kernel call (two AVX-512 vectors).
const NR: usize = 32;

/// Whether the direct kernel serves this geometry on this CPU: enough
/// channels for the channel loop to pay, output channels in whole blocks.
pub(super) fn usable(g: &Geom) -> bool {
    g.c >= 8 && g.o > 0 && g.o.is_multiple_of(NR) && is_x86_feature_detected!("avx512f")
}

/// The weight [o, c, kh, kw] as [o, kh * kw, c]: each filter transposed,
/// in parallel over filters. Both packings below start from it.
fn by_tap(g: &Geom, w: &[f32]) -> Vec<f32> {
    let (taps, c) = (g.taps(), g.c);
    let mut out = vec![0.0; w.len()];
    crate::par::for_each_chunk(&mut out, c * taps, |oc, dst| {
        transpose(&w[oc * c * taps..][..c * taps], c, taps, dst);
    });
    out
}

/// The weight [o, c, kh, kw] as [o / NR][kh * kw][c][NR]: each block of NR
/// filters of [`by_tap`] transposed, the blocks in parallel.
pub(super) fn pack_weight(g: &Geom, w: &[f32]) -> Vec<f32> {
    let k = g.taps() * g.c;
    let filters = by_tap(g, w);
    let mut packed = vec![0.0; w.len()];
    crate::par::for_each_chunk(&mut packed, k * NR, |block, dst| {
        transpose(&filters[block * NR * k..][..NR * k], NR, k, dst);
    });
    packed
}

/// Convolves `count` images given channels-last in `hwc` ([count, h * w, c]
/// followed by one row of c zeros, which padding taps read) with the packed
/// weight, writing channels-last output `out` [count * oh * ow, o].
pub(super) fn conv2d_hwc(
    g: &Geom,
    table: &[Option<usize>],
    hwc: &[f32],
    packed: &[f32],
    count: usize,
    out: &mut [f32],
) {
    let (hw, taps, c, ohw) = (g.h * g.w, g.taps(), g.c, g.ohw());
    let zero_row = count * hw * c;
    assert!(hwc.len() >= zero_row + c && hwc[zero_row..zero_row + c].iter().all(|&v| v == 0.0));
    assert!(packed.len() == g.o * taps * c && out.len() == count * ohw * g.o);
    let positions = count * ohw;
    let blocks = g.o / NR;
    // Output rows of a tile: consecutive positions, o floats apart.
    let tile_rows: [usize; MR] = std::array::from_fn(|i| i * g.o);
    // Positions in chunks whose patches stay in L2 while every output block
    // runs over them; each output block's weight (taps * c * NR floats,
    // 256 KiB for 128 channels) is read once per chunk.
    const CHUNK: usize = 32 * MR;
    let mut offsets = Vec::with_capacity(CHUNK / MR * taps);
    for c0 in (0..positions).step_by(CHUNK) {
        let c1 = (c0 + CHUNK).min(positions);
        offsets.clear();
        for p0 in (c0..c1).step_by(MR) {
            let start = offsets.len();
            offsets.resize(start + taps, [zero_row; MR]);
            for (i, p) in (p0..(p0 + MR).min(c1)).enumerate() {
                let (img, q) = (p / ohw, p % ohw);
                for (t, src) in table[q * taps..][..taps].iter().enumerate() {
                    offsets[start + t][i] = src.map_or(zero_row, |pix| (img * hw + pix) * c);
                }
            }
        }
        for block in 0..blocks {
            for (b, p0) in (c0..c1).step_by(MR).enumerate() {
                // SAFETY: avx512f was detected (`usable`). Every offset is
                // a pixel row or the zero row, each c floats inside `hwc`
                // (asserted); the block's packed weight is taps * c * NR
                // floats inside `packed`; rows p0.. of `out` up to
                // `positions`, columns block * NR.. + NR, lie inside it
                // (asserted sizes).
                unsafe {
                    kernel(
                        &offsets[b * taps..][..taps],
                        hwc.as_ptr(),
                        packed.as_ptr().add(block * taps * c * NR),
                        c,
                        out.as_mut_ptr().add(p0 * g.o + block * NR),
                        &tile_rows,
                        MR.min(c1 - p0),
                    );
                }
            }
        }
    }
}

/// acc[i] = Σ_t Σ_ci x[offsets[t][i] + ci] * w[t][ci][..NR] for MR output
/// rows; stores the first `rows` of them at `out + out_rows[i]`.
#[target_feature(enable = "avx512f")]
unsafe fn kernel(
    offsets: &[[usize; MR]],
    x: *const f32,
    w: *const f32,
    c: usize,
    out: *mut f32,
    out_rows: &[usize; MR],
    rows: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let mut w = w;
    for off in offsets {
        let base: [*const f32; MR] = std::array::from_fn(|i| x.add(off[i]));
        for ci in 0..c {
            let b0 = _mm512_loadu_ps(w);
            let b1 = _mm512_loadu_ps(w.add(16));
            w = w.add(NR);
            for i in 0..MR {
                let a = _mm512_set1_ps(*base[i].add(ci));
                acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
            }
        }
    }
    for (acc, &row) in acc.iter().zip(out_rows).take(rows) {
        _mm512_storeu_ps(out.add(row), acc[0]);
        _mm512_storeu_ps(out.add(row + 16), acc[1]);
    }
}

/// Whether the direct weight-gradient kernel serves this geometry on this
/// CPU: input channels in whole blocks of 32.
pub(super) fn usable_for_weight_grad(g: &Geom) -> bool {
    g.c.is_multiple_of(NR) && g.o > 0 && is_x86_feature_detected!("avx512f")
}

/// Adds the weight gradient of `count` images to `acc` [o, kh * kw, c] (the
/// channels-last weight order): acc[oc, t, ci] += Σ_p gy[oc, p] x[p's tap t
/// pixel, ci]. `hwc` holds the images channels-last with the zero row after
/// them, as for [`conv2d_hwc`]; `gy` is their output gradient [count, o,
/// oh * ow].
///
/// Only output channels `first..first + acc.len() / (kh * kw * c)` are
/// summed, into `acc`'s rows for them, so that threads can split the
/// output channels without partial sums.
pub(super) fn weight_grad_hwc(
    g: &Geom,
    table: &[Option<usize>],
    hwc: &[f32],
    gy: &[f32],
    count: usize,
    first: usize,
    acc: &mut [f32],
) {
    let (hw, taps, c, ohw, o) = (g.h * g.w, g.taps(), g.c, g.ohw(), g.o);
    let zero_row = count * hw * c;
    let end = first + acc.len() / (taps * c).max(1);
    assert!(hwc.len() >= zero_row + c && hwc[zero_row..zero_row + c].iter().all(|&v| v == 0.0));
    assert!(gy.len() == count * o * ohw && end <= o && acc.len() == (end - first) * taps * c);
    let positions = count * ohw;
    // Positions in chunks whose patches and gradients stay in L2 while every
    // (tap, output block, channel block) tile sums over them.
    const CHUNK: usize = 256;
    let (mut a_off, mut b_off) = (Vec::with_capacity(CHUNK), Vec::with_capacity(CHUNK * taps));
    for c0 in (0..positions).step_by(CHUNK) {
        let c1 = (c0 + CHUNK).min(positions);
        a_off.clear();
        b_off.clear();
        b_off.resize((c1 - c0) * taps, zero_row);
        for (j, p) in (c0..c1).enumerate() {
            let (img, q) = (p / ohw, p % ohw);
            a_off.push(img * o * ohw + q);
            for (t, src) in table[q * taps..][..taps].iter().enumerate() {
                b_off[t * (c1 - c0) + j] = src.map_or(zero_row, |pix| (img * hw + pix) * c);
            }
        }
        for t in 0..taps {
            let b_off = &b_off[t * (c1 - c0)..][..c1 - c0];
            for o0 in (first..end).step_by(MR) {
                let rows = MR.min(end - o0);
                // Rows past the range repeat its last; their sums are not stored.
                let arows: [*const f32; MR] =
                    std::array::from_fn(|i| gy[(o0 + i).min(end - 1) * ohw..].as_ptr());
                for cb in (0..c).step_by(NR) {
                    // SAFETY: avx512f was detected. a_off + row * ohw stays
                    // inside `gy` (position p of image img, row < o); every
                    // b_off + cb + NR stays inside `hwc` (a pixel row or the
                    // zero row); the tile's rows o0.. o0 + rows at
                    // (row * taps + t) * c + cb.. + NR lie inside `acc`
                    // (asserted sizes).
                    unsafe {
                        weight_kernel(
                            &arows,
                            &a_off,
                            b_off,
                            hwc.as_ptr().add(cb),
                            acc.as_mut_ptr().add(((o0 - first) * taps + t) * c + cb),
                            taps * c,
                            rows,
                        );
                    }
                }
            }
        }
    }
}

/// acc[i][..NR] += Σ_j a[i][a_off[j]] * x[b_off[j]..][..NR] for the first
/// `rows` of MR output channels, rows `ld` apart in `acc`.
#[target_feature(enable = "avx512f")]
unsafe fn weight_kernel(
    a: &[*const f32; MR],
    a_off: &[usize],
    b_off: &[usize],
    x: *const f32,
    acc: *mut f32,
    ld: usize,
    rows: usize,
) {
    let mut sum = [[_mm512_setzero_ps(); 2]; MR];
    // The patch rows jump around the image, which the hardware prefetcher
    // does not follow: fetch a few positions ahead.
    const AHEAD: usize = 6;
    for (j, (&ao, &bo)) in a_off.iter().zip(b_off).enumerate() {
        if let Some(&next) = b_off.get(j + AHEAD) {
            _mm_prefetch::<_MM_HINT_T0>(x.add(next).cast());
            _mm_prefetch::<_MM_HINT_T0>(x.add(next + 16).cast());
        }
        let b0 = _mm512_loadu_ps(x.add(bo));
        let b1 = _mm512_loadu_ps(x.add(bo + 16));
        for i in 0..MR {
            let v = _mm512_set1_ps(*a[i].add(ao));
            sum[i][0] = _mm512_fmadd_ps(v, b0, sum[i][0]);
            sum[i][1] = _mm512_fmadd_ps(v, b1, sum[i][1]);
        }
    }
    for (i, s) in sum.iter().enumerate().take(rows) {
        let p = acc.add(i * ld);
        _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), s[0]));
        _mm512_storeu_ps(p.add(16), _mm512_add_ps(_mm512_loadu_ps(p.add(16)), s[1]));
    }
}

/// Whether the direct input-gradient kernel serves this geometry on this
/// CPU: input channels in whole blocks of 32.
pub(super) fn usable_for_input_grad(g: &Geom) -> bool {
    g.c.is_multiple_of(NR) && g.o > 0 && is_x86_feature_detected!("avx512f")
}

/// The input pixels whose coordinates have residues (ry, rx) modulo the
/// stride, which read the same kernel taps: `taps` as (ki, kj), and the
/// weight for them packed as [c / NR][taps][o][NR].
pub(super) struct PixelClass {
    residue: [usize; 2],
    taps: Vec<[usize; 2]>,
    packed: Vec<f32>,
}

/// The stride's residue classes of input pixels, for [`input_grad_hwc`].
pub(super) fn pixel_classes(g: &Geom, w: &[f32]) -> Vec<PixelClass> {
    let ([sh, sw], [ph, pw], [dh, dw]) = (g.opts.stride, g.opts.padding, g.opts.dilation);
    // Tap k reaches pixels with (pixel + padding - k * dilation) ≡ 0 (mod stride).
    let reaches = |r: usize, pad: usize, k: usize, d: usize, s: usize| {
        (r as isize + pad as isize - (k * d) as isize).rem_euclid(s as isize) == 0
    };
    let (c, o) = (g.c, g.o);
    let mut classes = Vec::with_capacity(sh * sw);
    for ry in 0..sh {
        for rx in 0..sw {
            let taps: Vec<[usize; 2]> = (0..g.kh)
                .filter(|&ki| reaches(ry, ph, ki, dh, sh))
                .flat_map(|ki| {
                    (0..g.kw)
                        .filter(move |&kj| reaches(rx, pw, kj, dw, sw))
                        .map(move |kj| [ki, kj])
                })
                .collect();
            classes.push(PixelClass {
                residue: [ry, rx],
                taps,
                packed: Vec::new(),
            });
        }
    }
    // From the weight as [o][taps][c], a class's packed rows are copies of
    // NR-long channel runs; the classes in parallel.
    let all = g.taps();
    let by_tap = by_tap(g, w);
    crate::par::for_each_chunk(&mut classes, 1, |_, class| {
        let class = &mut class[0];
        let nt = class.taps.len();
        class.packed = vec![0.0; c * nt * o];
        for (ti, &[ki, kj]) in class.taps.iter().enumerate() {
            for oc in 0..o {
                let row = &by_tap[(oc * all + ki * g.kw + kj) * c..][..c];
                for (block, run) in row.chunks_exact(NR).enumerate() {
                    class.packed[((block * nt + ti) * o + oc) * NR..][..NR].copy_from_slice(run);
                }
            }
        }
    });
    classes
}

/// The input gradient of `count` images, channels-last: dx [count, h * w, c]
/// from the output gradient `gy` [count, oh * ow, o] (channels-last, with a
/// row of o zeros after it) and the pixel classes' packed weights. Every
/// pixel of `dx` is written.
pub(super) fn input_grad_hwc(
    g: &Geom,
    classes: &[PixelClass],
    gy: &[f32],
    count: usize,
    dx: &mut [f32],
) {
    let (hw, ohw, c, o) = (g.h * g.w, g.ohw(), g.c, g.o);
    let ([sh, sw], [ph, pw], [dh, dw]) = (g.opts.stride, g.opts.padding, g.opts.dilation);
    let zero_row = count * ohw * o;
    assert!(gy.len() >= zero_row + o && gy[zero_row..zero_row + o].iter().all(|&v| v == 0.0));
    assert!(dx.len() == count * hw * c);
    // The output position tap k of pixel i reads, along one axis.
    let source = |i: usize, k: usize, pad: usize, d: usize, s: usize, n: usize| {
        (i + pad)
            .checked_sub(k * d)
            .map(|v| v / s)
            .filter(|&v| v < n)
    };
    for class in classes {
        let [ry, rx] = class.residue;
        let pixels: Vec<(usize, usize, usize)> = (0..count)
            .flat_map(|img| {
                (ry..g.h)
                    .step_by(sh)
                    .flat_map(move |iy| (rx..g.w).step_by(sw).map(move |ix| (img, iy, ix)))
            })
            .collect();
        let nt = class.taps.len();
        let mut offsets = vec![[zero_row; MR]; nt];
        for block in pixels.chunks(MR) {
            let mut out_rows = [0; MR];
            for (i, &(img, iy, ix)) in block.iter().enumerate() {
                out_rows[i] = (img * hw + iy * g.w + ix) * c;
                for (off, &[ki, kj]) in offsets.iter_mut().zip(&class.taps) {
                    let q = source(iy, ki, ph, dh, sh, g.oh).zip(source(ix, kj, pw, dw, sw, g.ow));
                    off[i] = q.map_or(zero_row, |(oy, ox)| (img * ohw + oy * g.ow + ox) * o);
                }
            }
            for off in offsets.iter_mut() {
                off[block.len()..].fill(zero_row);
            }
            for cb in 0..c / NR {
                // SAFETY: avx512f was detected (`usable_for_input_grad`).
                // Every offset is a row of `gy` or its zero row, o floats
                // inside it (asserted); the class's packed weight for block
                // cb is nt * o * NR floats inside `packed`; each stored row
                // out_rows[i] + cb * NR.. + NR is a pixel row inside `dx`
                // (asserted size).
                unsafe {
                    kernel(
                        &offsets,
                        gy.as_ptr(),
                        class.packed.as_ptr().add(cb * nt * o * NR),
                        o,
                        dx.as_mut_ptr().add(cb * NR),
                        &out_rows,
                        block.len(),
                    );
                }
            }
        }
    }
}
