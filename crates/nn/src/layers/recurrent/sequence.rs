//! One layer's recurrence in one direction as a single autograd op.
//!
//! Written step by step in `Var` ops, a sequence of T steps records about
//! a dozen nodes per step, and each step's slice of the input projection
//! sends back a gradient the size of the whole sequence. Here the forward
//! runs the steps on plain buffers (one gemm and one fused cell pass per
//! step) and saves the gates; the backward runs backpropagation through
//! time the same way and forms the recurrent weight's gradient in one
//! product over all steps, as cuDNN and PyTorch's CPU kernels do.
//!
//! Second-order gradients (a backward with `create_graph`) come from the
//! same recurrence written in `Var` ops ([`composed`]), differentiated by
//! the engine: the fused path is checked against it, and both against
//! finite differences in the gradient-check table.

use std::sync::Arc;

use deepgen_autograd::{grad_with, is_grad_enabled, Ctx, Grads, Result as AgResult};
use deepgen_kernels::rnn::{self, GRU_SAVED, LSTM_SAVED};
use deepgen_kernels::{gemm_par, MatRef, PackedB};
use deepgen_tensor::Buffer;

use super::Cell;
use crate::{Element, Result, Tensor, Var};

/// What a sequence op needs besides its tensors.
#[derive(Clone)]
pub(super) struct Spec {
    pub cell: Cell,
    pub hidden: usize,
    /// Steps run from the last to the first.
    pub reverse: bool,
    /// Each sequence's length (None: all run the whole time).
    pub lengths: Option<Arc<[usize]>>,
}

/// The inputs of a sequence op: `gx` [time, batch, gates x hidden] (the
/// input projection, its bias included), `w_hh` [gates x hidden, hidden],
/// `b_hh` [gates x hidden] (zeros if the layer has none), `h0` and `c0`
/// [batch, hidden] (`c0` zeros for a GRU).
pub(super) struct Inputs<T: Element> {
    pub gx: Var<T>,
    pub w_hh: Var<T>,
    pub b_hh: Var<T>,
    pub h0: Var<T>,
    pub c0: Var<T>,
}

impl Spec {
    /// Floats per step and row of the output: h, and c for an LSTM.
    fn width(&self) -> usize {
        match self.cell {
            Cell::Gru => self.hidden,
            Cell::Lstm => 2 * self.hidden,
        }
    }

    /// The steps in the order they run.
    fn order(&self, t: usize) -> Box<dyn Iterator<Item = usize>> {
        match self.reverse {
            true => Box::new((0..t).rev()),
            false => Box::new(0..t),
        }
    }

    /// Which sequences take part in `step`.
    fn active(&self, step: usize, batch: usize) -> Vec<bool> {
        match &self.lengths {
            None => vec![true; batch],
            Some(lens) => lens.iter().map(|&n| step < n).collect(),
        }
    }

    /// The outputs [time, batch, width]: each step's h (then c), zero past
    /// a sequence's end.
    pub fn run<T: Element>(&self, x: Inputs<T>) -> Result<Var<T>> {
        let gx = x.gx.value().contiguous();
        let (t, b) = (gx.shape()[0], gx.shape()[1]);
        let (out, saved) = Forward::run(self, &x, gx.as_slice().expect("contiguous"), t, b);
        let out = Tensor::from_buffer(out, &[t, b, self.width()])?;
        let spec = self.clone();
        let saved = Arc::new(saved);
        let inputs = vec![x.gx, x.w_hh, x.b_hh, x.h0, x.c0];
        Ok(Var::from_op(
            "rnn_sequence",
            out,
            inputs,
            move |c| match is_grad_enabled() {
                // A create_graph backward: the Var-op recurrence, recorded.
                true => spec.composed_grads(c),
                false => spec.backward(c, &saved),
            },
        ))
    }

    /// The recurrence in `Var` ops (the reference; differentiable to any
    /// order): the same outputs as [`Spec::run`].
    pub fn composed<T: Element>(&self, x: &Inputs<T>) -> AgResult<Var<T>> {
        let s = x.gx.shape();
        let (t, b) = (s[0], s[1]);
        let rows = s[2];
        let masks = self.lengths.as_ref().map(|lens| {
            (0..t)
                .map(|step| {
                    let m = lens.iter().map(|&n| T::of(f64::from(u8::from(step < n))));
                    Tensor::from_vec(m.collect(), &[b, 1]).map(Var::constant)
                })
                .collect::<std::result::Result<Vec<_>, _>>()
        });
        let masks = masks.transpose()?;
        let hh_t = x.w_hh.t()?;
        let (mut h, mut c) = (x.h0.clone(), x.c0.clone());
        let mut outputs: Vec<Option<Var<T>>> = vec![None; t];
        for step in self.order(t) {
            let gxt = x.gx.narrow(0, step, 1)?.reshape(&[b, rows])?;
            let gh = h.matmul(&hh_t)?.add(&x.b_hh)?;
            let (h_new, c_new) = cell_step(self.cell, self.hidden, &gxt, &gh, &h, &c)?;
            let (oh, oc) = match &masks {
                None => (h_new.clone(), c_new.clone()),
                Some(m) => (h_new.mul(&m[step])?, c_new.mul(&m[step])?),
            };
            (h, c) = match &masks {
                None => (h_new, c_new),
                // Past a sequence's end its state holds.
                Some(m) => {
                    let m = &m[step];
                    (
                        h.add(&m.mul(&h_new.sub(&h)?)?)?,
                        c.add(&m.mul(&c_new.sub(&c)?)?)?,
                    )
                }
            };
            outputs[step] = Some(match self.cell {
                Cell::Gru => oh,
                Cell::Lstm => Var::concat(&[oh, oc], 1)?,
            });
        }
        let outputs: Vec<Var<T>> = outputs.into_iter().flatten().collect();
        Var::stack(&outputs, 0)
    }

    /// A create_graph backward: the gradients of the recorded Var-op
    /// recurrence, themselves recorded.
    fn composed_grads<T: Element>(&self, c: &Ctx<T>) -> AgResult<Grads<T>> {
        let i = c.inputs;
        let x = Inputs {
            gx: i[0].clone(),
            w_hh: i[1].clone(),
            b_hh: i[2].clone(),
            h0: i[3].clone(),
            c0: i[4].clone(),
        };
        let out = self.composed(&x)?;
        let wanted: Vec<usize> = (0..5).filter(|&k| c.needs(k)).collect();
        let targets: Vec<Var<T>> = wanted.iter().map(|&k| i[k].clone()).collect();
        let mut found = grad_with(&[out], vec![c.grad.clone()], &targets, true)?.into_iter();
        Ok((0..5)
            .map(|k| match wanted.contains(&k) {
                true => found.next(),
                false => None,
            })
            .collect())
    }

    /// Backpropagation through time on buffers, each part of the batch on
    /// its own thread ([`each_part`]).
    fn backward<T: Element>(&self, c: &Ctx<T>, fw: &Forward<T>) -> AgResult<Grads<T>> {
        let (t, b, hid) = (fw.t, fw.b, self.hidden);
        let (g, width, sw) = (self.cell.gates() * hid, self.width(), fw.saved_width);
        let lstm = self.cell == Cell::Lstm;
        let dout = c.grad.value().contiguous();
        let dout = dout.as_slice().expect("contiguous");
        let w = c.inputs[1].value().contiguous();
        let w = w.as_slice().expect("contiguous");
        let zero = T::zero();
        // Every step's cell backward writes all its rows (zeros where a
        // sequence has ended), so the gate adjoints need no clearing.
        let mut dgx = Buffer::for_overwrite(t * b * g);
        // A GRU's state and input gate adjoints differ (r scales n's); an
        // LSTM's are the same, so it keeps one buffer.
        let mut dgh = Buffer::for_overwrite(if lstm { 0 } else { t * b * g });
        let (mut dh0, mut dc0) = (vec![zero; b * hid], vec![zero; b * hid]);
        // W_hh [gates x hidden, hidden], packed once for every step's product.
        let w_packed = PackedB::new(MatRef::row_major(w, 0, hid), g, hid);
        let steps: Vec<usize> = self.order(t).collect();
        let (dx, dhh) = (Rows::of(&mut dgx), Rows::of(&mut dgh));
        let (dh_out, dc_out) = (Rows::of(&mut dh0), Rows::of(&mut dc0));
        each_part(b, t * b * g * hid, |r0, n| {
            let (mut dh, mut dc) = (vec![zero; n * hid], vec![zero; n * hid]);
            let (mut dh_prev, mut dc_prev) = (vec![zero; n * hid], vec![zero; n * hid]);
            for &step in steps.iter().rev() {
                let active = &self.active(step, b)[r0..r0 + n];
                let at = step * b + r0;
                // The output's adjoint reaches the state only where the step ran.
                let row = &dout[at * width..][..n * width];
                for (r, _) in active.iter().enumerate().filter(|(_, &on)| on) {
                    for j in 0..hid {
                        dh[r * hid + j] = dh[r * hid + j] + row[r * width + j];
                    }
                    if lstm {
                        for j in 0..hid {
                            dc[r * hid + j] = dc[r * hid + j] + row[r * width + hid + j];
                        }
                    }
                }
                let saved = &fw.saved[at * sw..][..n * sw];
                // SAFETY: parts own disjoint rows of every step.
                let gates = unsafe { dx.slice(at * g, n * g) };
                // d gates_h, which dh_prev gets through W_hh.
                let gh: &[T] = match self.cell {
                    Cell::Gru => {
                        // SAFETY: as above.
                        let gh = unsafe { dhh.slice(at * g, n * g) };
                        let h = &fw.h_prev[at * hid..][..n * hid];
                        rnn::gru_step_backward(&dh, h, saved, hid, active, gates, gh, &mut dh_prev);
                        gh
                    }
                    Cell::Lstm => {
                        let cp = &fw.c_prev[at * hid..][..n * hid];
                        let (dhp, dcp) = (&mut dh_prev, &mut dc_prev);
                        rnn::lstm_step_backward(&dh, &dc, cp, saved, hid, active, gates, dhp, dcp);
                        std::mem::swap(&mut dc, &mut dc_prev);
                        gates
                    }
                };
                if active.iter().any(|&a| a) {
                    w_packed.gemm_acc_serial(n, gh, g, &mut dh_prev, hid);
                }
                std::mem::swap(&mut dh, &mut dh_prev);
            }
            // SAFETY: parts own disjoint rows.
            unsafe { dh_out.slice(r0 * hid, n * hid) }.copy_from_slice(&dh);
            unsafe { dc_out.slice(r0 * hid, n * hid) }.copy_from_slice(&dc);
        });
        let dgh: &[T] = if lstm { &dgx } else { &dgh };
        let tensor = |v: Buffer<T>, shape: &[usize]| -> AgResult<Option<Var<T>>> {
            Ok(Some(Var::constant(Tensor::from_buffer(v, shape)?)))
        };
        let mut grads: Grads<T> = vec![None; 5];
        if c.needs(1) {
            // d W_hh = sum over steps of d gates_h^T h_prev: one product.
            let mut dw = Buffer::for_overwrite(g * hid);
            let a = MatRef::row_major(dgh, 0, g).t();
            let hp = MatRef::row_major(&fw.h_prev, 0, hid);
            gemm_par(g, t * b, hid, T::one(), a, hp, zero, &mut dw, hid);
            grads[1] = tensor(dw, &[g, hid])?;
        }
        if c.needs(2) {
            let mut db = Buffer::filled(g, zero);
            for r in dgh.chunks_exact(g) {
                for (d, &v) in db.iter_mut().zip(r) {
                    *d = *d + v;
                }
            }
            grads[2] = tensor(db, &[g])?;
        }
        if c.needs(0) {
            grads[0] = tensor(dgx, &[t, b, g])?;
        }
        if c.needs(3) {
            grads[3] = tensor(Buffer::from_vec(dh0), &[b, hid])?;
        }
        if c.needs(4) && lstm {
            grads[4] = tensor(Buffer::from_vec(dc0), &[b, hid])?;
        }
        Ok(grads)
    }
}

/// Calls `f(first_row, rows)` for parts of the batch's `b` rows, on as
/// many threads as pay for `work` multiply-adds. The rows of a recurrence
/// never meet, so each part runs the whole sequence on its own: one split
/// per sequence instead of one per step (a step's product is tens of
/// microseconds), and the cells' elementwise math is split too. Parts are
/// multiples of 4 rows, the product's micro-kernel height.
fn each_part(b: usize, work: usize, f: impl Fn(usize, usize) + Sync) {
    let threads = deepgen_kernels::par::threads();
    let parts = match work >= deepgen_kernels::par::PAR_WORK {
        true => threads.min(b / 4).max(1),
        false => 1,
    };
    if parts == 1 {
        return f(0, b);
    }
    let rows = b.div_ceil(parts).div_ceil(4) * 4;
    let mut starts: Vec<usize> = (0..b).step_by(rows).collect();
    deepgen_kernels::par::for_each_chunk(&mut starts, 1, |_, s| f(s[0], rows.min(b - s[0])));
}

/// A buffer that the parts of [`each_part`] write at disjoint ranges.
struct Rows<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: a `Rows` is only sliced at ranges no other thread touches
// (the callers' contract), so sharing it is sharing disjoint `&mut`s.
unsafe impl<T: Send> Send for Rows<T> {}
unsafe impl<T: Send> Sync for Rows<T> {}

impl<T> Rows<T> {
    fn of(v: &mut [T]) -> Self {
        Rows {
            ptr: v.as_mut_ptr(),
            len: v.len(),
        }
    }

    /// `len` elements from `start`.
    ///
    /// # Safety
    /// No other slice of this `Rows` that overlaps the range may be alive,
    /// and the buffer it was made from is not otherwise used meanwhile.
    #[allow(clippy::mut_from_ref)] // disjoint ranges, per the contract
    unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.len, "rows out of range");
        std::slice::from_raw_parts_mut(self.ptr.add(start), len)
    }
}

/// What the forward keeps for the backward (pooled buffers: a sequence's
/// are megabytes, which fresh allocations would page in anew each step).
struct Forward<T: Element> {
    t: usize,
    b: usize,
    /// Per step, the state before it: [time, batch, hidden].
    h_prev: Buffer<T>,
    c_prev: Buffer<T>,
    saved_width: usize,
    /// Per step the cell's saved activations.
    saved: Buffer<T>,
}

impl<T: Element> Forward<T> {
    /// The outputs [time, batch, width] and what the backward needs, each
    /// part of the batch on its own thread ([`each_part`]).
    fn run(spec: &Spec, x: &Inputs<T>, gx: &[T], t: usize, b: usize) -> (Buffer<T>, Self) {
        let hid = spec.hidden;
        let (g, width) = (spec.cell.gates() * hid, spec.width());
        let lstm = spec.cell == Cell::Lstm;
        let sw = hid * if lstm { LSTM_SAVED } else { GRU_SAVED };
        let w = x.w_hh.value().contiguous();
        let bias = x.b_hh.value().to_vec();
        let (h0, c0) = (x.h0.value().to_vec(), x.c0.value().to_vec());
        let zero = T::zero();
        let mut out = Buffer::filled(t * b * width, zero);
        let mut fw = Forward {
            t,
            b,
            h_prev: Buffer::for_overwrite(t * b * hid),
            c_prev: Buffer::for_overwrite(if lstm { t * b * hid } else { 0 }),
            saved_width: sw,
            saved: Buffer::for_overwrite(t * b * sw),
        };
        // W_hh^T [hidden, gates x hidden], packed once for every step.
        let wt = PackedB::new(
            MatRef::row_major(w.as_slice().expect("contiguous"), 0, hid).t(),
            hid,
            g,
        );
        let (outs, hps) = (Rows::of(&mut out), Rows::of(&mut fw.h_prev));
        let (cps, saves) = (Rows::of(&mut fw.c_prev), Rows::of(&mut fw.saved));
        each_part(b, t * b * g * hid, |r0, n| {
            let mut h = h0[r0 * hid..][..n * hid].to_vec();
            let mut c = c0[r0 * hid..][..n * hid].to_vec();
            let (mut h_new, mut c_new) = (vec![zero; n * hid], vec![zero; n * hid]);
            let mut gh = vec![zero; n * g];
            for step in spec.order(t) {
                let active = &spec.active(step, b)[r0..r0 + n];
                let at = step * b + r0;
                // SAFETY (each slice below): parts own disjoint rows of
                // every step.
                unsafe { hps.slice(at * hid, n * hid) }.copy_from_slice(&h);
                if lstm {
                    unsafe { cps.slice(at * hid, n * hid) }.copy_from_slice(&c);
                }
                if !active.iter().any(|&a| a) {
                    continue; // the state holds, the outputs stay zero
                }
                wt.gemm_bias_serial(n, &h, hid, &bias, &mut gh, g);
                let gxs = &gx[at * g..][..n * g];
                let saved = unsafe { saves.slice(at * sw, n * sw) };
                match spec.cell {
                    Cell::Gru => rnn::gru_step(gxs, &gh, &h, hid, active, &mut h_new, saved),
                    Cell::Lstm => {
                        rnn::lstm_step(gxs, &gh, &h, &c, hid, active, &mut h_new, &mut c_new, saved)
                    }
                }
                let out = unsafe { outs.slice(at * width, n * width) };
                for (r, _) in active.iter().enumerate().filter(|(_, &on)| on) {
                    let o = &mut out[r * width..][..width];
                    o[..hid].copy_from_slice(&h_new[r * hid..][..hid]);
                    if lstm {
                        o[hid..].copy_from_slice(&c_new[r * hid..][..hid]);
                    }
                }
                std::mem::swap(&mut h, &mut h_new);
                std::mem::swap(&mut c, &mut c_new);
            }
        });
        (out, fw)
    }
}

/// One step of the cell in `Var` ops from the gate pre-activations of the
/// input `gx` and of the state `gh` ([batch, gates x hidden], PyTorch's
/// order); `c` is ignored by a GRU (its returned c is a copy of it).
pub(super) fn cell_step<T: Element>(
    cell: Cell,
    hid: usize,
    gx: &Var<T>,
    gh: &Var<T>,
    h: &Var<T>,
    c: &Var<T>,
) -> AgResult<(Var<T>, Var<T>)> {
    let gate = |v: &Var<T>, i: usize| v.narrow(1, i * hid, hid);
    match cell {
        Cell::Gru => {
            let r = gate(gx, 0)?.add(&gate(gh, 0)?)?.sigmoid();
            let z = gate(gx, 1)?.add(&gate(gh, 1)?)?.sigmoid();
            let n = gate(gx, 2)?.add(&r.mul(&gate(gh, 2)?)?)?.tanh();
            // (1 - z) n + z h = n + z (h - n)
            Ok((n.add(&z.mul(&h.sub(&n)?)?)?, c.clone()))
        }
        Cell::Lstm => {
            let g = gx.add(gh)?;
            let (i, f) = (gate(&g, 0)?.sigmoid(), gate(&g, 1)?.sigmoid());
            let (cand, o) = (gate(&g, 2)?.tanh(), gate(&g, 3)?.sigmoid());
            let c = f.mul(c)?.add(&i.mul(&cand)?)?;
            Ok((o.mul(&c.tanh())?, c))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init;
    use deepgen_autograd::grad;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// The fused op and the Var-op recurrence: same outputs and same first
    /// gradients of every input, for both cells, both directions, with and
    /// without lengths; and the create_graph backward goes through the
    /// recurrence (a second derivative exists and matches).
    #[test]
    fn fused_equals_composed() {
        let rng = &mut ChaCha8Rng::seed_from_u64(7);
        let (t, b, hid) = (4, 3, 5);
        for cell in [Cell::Gru, Cell::Lstm] {
            for reverse in [false, true] {
                for lengths in [None, Some(vec![4, 1, 3])] {
                    let g = cell.gates() * hid;
                    let mut p =
                        |shape: &[usize]| Var::parameter(init::uniform(shape, -1.0, 1.0, rng));
                    let x = Inputs::<f64> {
                        gx: p(&[t, b, g]),
                        w_hh: p(&[g, hid]),
                        b_hh: p(&[g]),
                        h0: p(&[b, hid]),
                        c0: p(&[b, hid]),
                    };
                    let spec = Spec {
                        cell,
                        hidden: hid,
                        reverse,
                        lengths: lengths.clone().map(Into::into),
                    };
                    let weights = p(&[t, b, spec.width()]);
                    let leaves = [&x.gx, &x.w_hh, &x.b_hh, &x.h0, &x.c0].map(|v| v.clone());
                    let fresh = || Inputs {
                        gx: x.gx.clone(),
                        w_hh: x.w_hh.clone(),
                        b_hh: x.b_hh.clone(),
                        h0: x.h0.clone(),
                        c0: x.c0.clone(),
                    };
                    let loss =
                        |out: Var<f64>| out.mul(&weights).unwrap().square().sum_all().unwrap();
                    let fused = spec.run(fresh()).unwrap();
                    let composed = spec.composed(&x).unwrap();
                    let close = |a: &[f64], b: &[f64], what: &str| {
                        for (u, v) in a.iter().zip(b) {
                            assert!(
                                (u - v).abs() <= 1e-12 * (1.0 + v.abs()),
                                "{cell:?} reverse {reverse} {lengths:?} {what}: {u} vs {v}"
                            );
                        }
                    };
                    close(
                        &fused.value().to_vec(),
                        &composed.value().to_vec(),
                        "output",
                    );
                    let gf = grad(&[loss(fused)], &leaves, false).unwrap();
                    let gc = grad(&[loss(composed.clone())], &leaves, false).unwrap();
                    for (k, (a, c)) in gf.iter().zip(&gc).enumerate() {
                        if cell == Cell::Gru && k == 4 {
                            continue; // a GRU has no cell state
                        }
                        close(
                            &a.value().to_vec(),
                            &c.value().to_vec(),
                            &format!("grad {k}"),
                        );
                    }
                    // Second order: d/dw_hh of sum(d loss / d gx) both ways.
                    let fused = spec.run(fresh()).unwrap();
                    let second = |out: Var<f64>| {
                        let d = grad(&[loss(out)], std::slice::from_ref(&x.gx), true)
                            .unwrap()
                            .remove(0);
                        grad(
                            &[d.sum_all().unwrap()],
                            std::slice::from_ref(&x.w_hh),
                            false,
                        )
                        .unwrap()
                        .remove(0)
                    };
                    close(
                        &second(fused).value().to_vec(),
                        &second(composed).value().to_vec(),
                        "second order",
                    );
                }
            }
        }
    }

    /// The batch split into parts on their own threads gives the same bits
    /// as one thread (each row's arithmetic is the same either way), for
    /// both cells and directions, with sequences ending early in both
    /// parts and a last part that is not a multiple of 4 rows.
    #[test]
    fn batch_parts_equal_one_thread() {
        let (t, b, hid) = (8, 13, 96);
        let lengths: Vec<usize> = (0..b).map(|i| 1 + (i * 5) % t).collect();
        for cell in [Cell::Gru, Cell::Lstm] {
            // Enough work to split (see `each_part`).
            assert!(t * b * cell.gates() * hid * hid >= deepgen_kernels::par::PAR_WORK);
            for reverse in [false, true] {
                let spec = Spec {
                    cell,
                    hidden: hid,
                    reverse,
                    lengths: Some(lengths.clone().into()),
                };
                let run = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    pool.install(|| {
                        let rng = &mut ChaCha8Rng::seed_from_u64(3);
                        let g = cell.gates() * hid;
                        let mut p = |shape: &[usize]| {
                            Var::parameter(init::uniform::<f32, _>(shape, -0.5, 0.5, rng))
                        };
                        let leaves = [
                            p(&[t, b, g]),
                            p(&[g, hid]),
                            p(&[g]),
                            p(&[b, hid]),
                            p(&[b, hid]),
                        ];
                        let weights = p(&[t, b, spec.width()]);
                        let [gx, w_hh, b_hh, h0, c0] = leaves.clone();
                        let out = spec
                            .run(Inputs {
                                gx,
                                w_hh,
                                b_hh,
                                h0,
                                c0,
                            })
                            .unwrap();
                        let loss = out.mul(&weights).unwrap().sum_all().unwrap();
                        let grads = grad(&[loss], &leaves, false).unwrap();
                        let mut all = vec![out.value().to_vec()];
                        all.extend(grads.iter().map(|g| g.value().to_vec()));
                        all
                    })
                };
                assert_eq!(run(1), run(3), "{cell:?} reverse {reverse}");
            }
        }
    }
}
