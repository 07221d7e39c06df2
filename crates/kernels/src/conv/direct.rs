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
