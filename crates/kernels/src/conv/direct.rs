//! Direct f32 convolution on AVX-512: no im2col matrix. The micro-kernel
//! reads each patch straight from a channels-last copy of the images (a
//! pointer per output position and kernel tap) and multiplies it into 32
//! output channels held in registers, so the patch matrix is neither written
//! nor packed again (im2col + matrixmultiply do both).

use std::arch::x86_64::*;

use super::Geom;

/// Output positions per micro-kernel call.
const MR: usize = 8;
/// Output channels per micro-kernel call (two AVX-512 vectors).
const NR: usize = 32;

/// Whether the direct kernel serves this geometry on this CPU: enough
/// channels for the channel loop to pay, output channels in whole blocks.
pub(super) fn usable(g: &Geom) -> bool {
    g.c >= 8 && g.o > 0 && g.o.is_multiple_of(NR) && is_x86_feature_detected!("avx512f")
}

/// The weight [o, c, kh, kw] as [o / NR][kh * kw][c][NR].
pub(super) fn pack_weight(g: &Geom, w: &[f32]) -> Vec<f32> {
    let (taps, c) = (g.taps(), g.c);
    let mut packed = vec![0.0; w.len()];
    for (oc, filter) in w.chunks_exact(c * taps).enumerate() {
        let (block, lane) = (oc / NR, oc % NR);
        for (ci, channel) in filter.chunks_exact(taps).enumerate() {
            for (t, &v) in channel.iter().enumerate() {
                packed[((block * taps + t) * c + ci) * NR + lane] = v;
            }
        }
    }
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
                        g.o,
                        MR.min(c1 - p0),
                    );
                }
            }
        }
    }
}

/// acc[i] = Σ_t Σ_ci x[offsets[t][i] + ci] * w[t][ci][..NR] for MR output
/// positions; stores the first `rows` of them, `ld` apart.
#[target_feature(enable = "avx512f")]
unsafe fn kernel(
    offsets: &[[usize; MR]],
    x: *const f32,
    w: *const f32,
    c: usize,
    out: *mut f32,
    ld: usize,
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
    for (i, acc) in acc.iter().enumerate().take(rows) {
        _mm512_storeu_ps(out.add(i * ld), acc[0]);
        _mm512_storeu_ps(out.add(i * ld + 16), acc[1]);
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
pub(super) fn weight_grad_hwc(
    g: &Geom,
    table: &[Option<usize>],
    hwc: &[f32],
    gy: &[f32],
    count: usize,
    acc: &mut [f32],
) {
    let (hw, taps, c, ohw, o) = (g.h * g.w, g.taps(), g.c, g.ohw(), g.o);
    let zero_row = count * hw * c;
    assert!(hwc.len() >= zero_row + c && hwc[zero_row..zero_row + c].iter().all(|&v| v == 0.0));
    assert!(gy.len() == count * o * ohw && acc.len() == o * taps * c);
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
            for o0 in (0..o).step_by(MR) {
                let rows = MR.min(o - o0);
                // Rows past o repeat the last one; their sums are not stored.
                let arows: [*const f32; MR] =
                    std::array::from_fn(|i| gy[(o0 + i).min(o - 1) * ohw..].as_ptr());
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
                            acc.as_mut_ptr().add((o0 * taps + t) * c + cb),
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
    for (&ao, &bo) in a_off.iter().zip(b_off) {
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
