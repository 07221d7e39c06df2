//! The elementwise part of one GRU or LSTM step over a batch, fused: the
//! gate nonlinearities and the state update in one pass over each row, and
//! their adjoints. The matrix products stay with the caller (gemm), which
//! batches them over time where it can.
//!
//! Every buffer is row-major [batch, ..]; gate blocks follow PyTorch's
//! order (GRU: r, z, n; LSTM: i, f, g, o). `active[b]` is false for a
//! sequence already past its end: its state passes through unchanged and
//! its gate adjoints are zero (packed-sequence semantics).

use crate::{math, Element};

/// Floats a GRU step saves per row for its backward: r, z, n and the
/// state's n pre-activation.
pub const GRU_SAVED: usize = 4;
/// Floats an LSTM step saves per row: i, f, g, o and tanh(c').
pub const LSTM_SAVED: usize = 5;

/// One GRU step. `gx`, `gh` [batch, 3 hid]: the gate pre-activations of the
/// input and of the state, biases included; `h` [batch, hid]. Writes `h_new`
/// and `saved` [batch, 4 hid].
pub fn gru_step<T: Element>(
    gx: &[T],
    gh: &[T],
    h: &[T],
    hid: usize,
    active: &[bool],
    h_new: &mut [T],
    saved: &mut [T],
) {
    let mut pre = vec![T::zero(); 3 * hid];
    for (b, &on) in active.iter().enumerate() {
        let (hr, out) = (&h[b * hid..][..hid], &mut h_new[b * hid..][..hid]);
        if !on {
            out.copy_from_slice(hr);
            continue;
        }
        let (gxr, ghr) = (&gx[b * 3 * hid..][..3 * hid], &gh[b * 3 * hid..][..3 * hid]);
        let s = &mut saved[b * GRU_SAVED * hid..][..GRU_SAVED * hid];
        for j in 0..2 * hid {
            pre[j] = gxr[j] + ghr[j];
        }
        math::sigmoid(&pre[..2 * hid], &mut s[..2 * hid]);
        let (rz, rest) = s.split_at_mut(2 * hid);
        let (n, ghn) = rest.split_at_mut(hid);
        ghn.copy_from_slice(&ghr[2 * hid..]);
        for j in 0..hid {
            pre[j] = gxr[2 * hid + j] + rz[j] * ghn[j];
        }
        math::tanh(&pre[..hid], n);
        let z = &rz[hid..];
        for j in 0..hid {
            // (1 - z) n + z h
            out[j] = n[j] + z[j] * (hr[j] - n[j]);
        }
    }
}

/// The adjoint of [`gru_step`]: from `dh` (d loss / d h_new) writes the
/// gate adjoints `dgx`, `dgh` [batch, 3 hid] and `dh_prev`, the part of
/// d loss / d h that does not pass through the state's matrix product.
#[allow(clippy::too_many_arguments)]
pub fn gru_step_backward<T: Element>(
    dh: &[T],
    h: &[T],
    saved: &[T],
    hid: usize,
    active: &[bool],
    dgx: &mut [T],
    dgh: &mut [T],
    dh_prev: &mut [T],
) {
    let one = T::one();
    for (b, &on) in active.iter().enumerate() {
        let (dhr, prev) = (&dh[b * hid..][..hid], &mut dh_prev[b * hid..][..hid]);
        let (gxr, ghr) = (
            &mut dgx[b * 3 * hid..][..3 * hid],
            &mut dgh[b * 3 * hid..][..3 * hid],
        );
        if !on {
            prev.copy_from_slice(dhr);
            gxr.fill(T::zero());
            ghr.fill(T::zero());
            continue;
        }
        let hr = &h[b * hid..][..hid];
        let s = &saved[b * GRU_SAVED * hid..][..GRU_SAVED * hid];
        let (r, z, n, ghn) = (
            &s[..hid],
            &s[hid..2 * hid],
            &s[2 * hid..3 * hid],
            &s[3 * hid..],
        );
        for j in 0..hid {
            let d = dhr[j];
            let dn = d * (one - z[j]) * (one - n[j] * n[j]);
            let dz = d * (hr[j] - n[j]) * z[j] * (one - z[j]);
            let dr = dn * ghn[j] * r[j] * (one - r[j]);
            gxr[j] = dr;
            gxr[hid + j] = dz;
            gxr[2 * hid + j] = dn;
            ghr[j] = dr;
            ghr[hid + j] = dz;
            ghr[2 * hid + j] = dn * r[j];
            prev[j] = d * z[j];
        }
    }
}

/// One LSTM step. `gx`, `gh` [batch, 4 hid] as for [`gru_step`]; `c`
/// [batch, hid]. Writes `h_new`, `c_new` and `saved` [batch, 5 hid].
#[allow(clippy::too_many_arguments)]
pub fn lstm_step<T: Element>(
    gx: &[T],
    gh: &[T],
    h: &[T],
    c: &[T],
    hid: usize,
    active: &[bool],
    h_new: &mut [T],
    c_new: &mut [T],
    saved: &mut [T],
) {
    let mut pre = vec![T::zero(); 4 * hid];
    for (b, &on) in active.iter().enumerate() {
        let (hr, cr) = (&h[b * hid..][..hid], &c[b * hid..][..hid]);
        let (ho, co) = (&mut h_new[b * hid..][..hid], &mut c_new[b * hid..][..hid]);
        if !on {
            ho.copy_from_slice(hr);
            co.copy_from_slice(cr);
            continue;
        }
        let (gxr, ghr) = (&gx[b * 4 * hid..][..4 * hid], &gh[b * 4 * hid..][..4 * hid]);
        let s = &mut saved[b * LSTM_SAVED * hid..][..LSTM_SAVED * hid];
        for j in 0..4 * hid {
            pre[j] = gxr[j] + ghr[j];
        }
        math::sigmoid(&pre[..2 * hid], &mut s[..2 * hid]);
        math::tanh(&pre[2 * hid..3 * hid], &mut s[2 * hid..3 * hid]);
        math::sigmoid(&pre[3 * hid..], &mut s[3 * hid..4 * hid]);
        for j in 0..hid {
            co[j] = s[hid + j] * cr[j] + s[j] * s[2 * hid + j];
        }
        let (gates, tc) = s.split_at_mut(4 * hid);
        math::tanh(co, tc);
        for j in 0..hid {
            ho[j] = gates[3 * hid + j] * tc[j];
        }
    }
}

/// The adjoint of [`lstm_step`]: from `dh`, `dc` (d loss / d h_new, c_new)
/// writes the gate adjoints `dgates` [batch, 4 hid] (the same for the
/// input's and the state's pre-activations), `dc_prev`, and `dh_prev`
/// for the inactive rows (active rows' h reaches the step only through
/// the state's matrix product: zero here).
#[allow(clippy::too_many_arguments)]
pub fn lstm_step_backward<T: Element>(
    dh: &[T],
    dc: &[T],
    c: &[T],
    saved: &[T],
    hid: usize,
    active: &[bool],
    dgates: &mut [T],
    dh_prev: &mut [T],
    dc_prev: &mut [T],
) {
    let one = T::one();
    for (b, &on) in active.iter().enumerate() {
        let (dhr, dcr) = (&dh[b * hid..][..hid], &dc[b * hid..][..hid]);
        let (hp, cp) = (
            &mut dh_prev[b * hid..][..hid],
            &mut dc_prev[b * hid..][..hid],
        );
        let dg = &mut dgates[b * 4 * hid..][..4 * hid];
        if !on {
            hp.copy_from_slice(dhr);
            cp.copy_from_slice(dcr);
            dg.fill(T::zero());
            continue;
        }
        hp.fill(T::zero());
        let cr = &c[b * hid..][..hid];
        let s = &saved[b * LSTM_SAVED * hid..][..LSTM_SAVED * hid];
        let (i, f, g, o, tc) = (
            &s[..hid],
            &s[hid..2 * hid],
            &s[2 * hid..3 * hid],
            &s[3 * hid..4 * hid],
            &s[4 * hid..],
        );
        for j in 0..hid {
            let dct = dcr[j] + dhr[j] * o[j] * (one - tc[j] * tc[j]);
            dg[j] = dct * g[j] * i[j] * (one - i[j]);
            dg[hid + j] = dct * cr[j] * f[j] * (one - f[j]);
            dg[2 * hid + j] = dct * i[j] * (one - g[j] * g[j]);
            dg[3 * hid + j] = dhr[j] * tc[j] * o[j] * (one - o[j]);
            cp[j] = dct * f[j];
        }
    }
}
