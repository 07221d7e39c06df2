//! Recurrent layers: GRU and LSTM as PyTorch's `nn.GRU` and `nn.LSTM`
//! (gate order, parameter names and shapes, initialisation), multi-layer,
//! bidirectional, batch-first, with dropout between layers and
//! variable-length batches.
//!
//! Each layer and direction projects the inputs of all time steps in one
//! matrix product; the recurrence over the steps is one fused op
//! ([`sequence`]).

mod sequence;

use std::sync::Arc;

use rand::Rng;
use sequence::{Inputs, Spec};

use crate::{
    init, visit_child, Dropout, Element, Error, Forward, Module, ModuleField, Result, Slot, Tensor,
    Var,
};

/// The shape of a recurrent layer beyond its sizes (PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RnnConfig {
    /// Stacked layers, each taking the one below's outputs.
    pub num_layers: usize,
    /// Biases `bias_ih` and `bias_hh`.
    pub bias: bool,
    /// Input and output as [batch, time, features] instead of [time, batch, features].
    pub batch_first: bool,
    /// Dropout on each layer's outputs but the last, in training.
    pub dropout: f64,
    /// A second direction over the reversed sequence; outputs concatenated.
    pub bidirectional: bool,
}

impl Default for RnnConfig {
    fn default() -> Self {
        RnnConfig {
            num_layers: 1,
            bias: true,
            batch_first: false,
            dropout: 0.0,
            bidirectional: false,
        }
    }
}

/// The hidden state: `h` [layers x directions, batch, hidden], and an
/// LSTM's cell state `c` of the same shape.
#[derive(Clone)]
pub struct RnnState<T: Element = f32> {
    pub h: Var<T>,
    pub c: Option<Var<T>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    Gru,
    Lstm,
}

impl Cell {
    fn gates(self) -> usize {
        match self {
            Cell::Gru => 3,
            Cell::Lstm => 4,
        }
    }
}

/// One layer's weights in one direction.
struct Weights<T: Element> {
    ih: Var<T>,
    hh: Var<T>,
    bias: Option<(Var<T>, Var<T>)>,
}

/// What GRU and LSTM share: sizes, weights per layer and direction, the
/// dropout between layers.
pub(crate) struct Recurrent<T: Element> {
    cell: Cell,
    input_size: usize,
    hidden: usize,
    config: RnnConfig,
    /// `layers[l][d]`: layer l, direction d (1 reversed).
    layers: Vec<Vec<Weights<T>>>,
    dropout: Dropout,
}

impl<T: Element> Recurrent<T> {
    fn new<R: Rng + ?Sized>(
        cell: Cell,
        input_size: usize,
        hidden: usize,
        config: RnnConfig,
        rng: &mut R,
    ) -> Result<Self> {
        let invalid = |msg: String| Error::Invalid { op: "rnn", msg };
        if input_size == 0 || hidden == 0 || config.num_layers == 0 {
            return Err(invalid(format!(
                "sizes must be positive: input {input_size}, hidden {hidden}, layers {}",
                config.num_layers
            )));
        }
        let dirs = 1 + usize::from(config.bidirectional);
        let rows = cell.gates().saturating_mul(hidden);
        // PyTorch: every weight and bias U(-1/sqrt(hidden), 1/sqrt(hidden)).
        let k = 1.0 / (hidden as f64).sqrt();
        let mut param = |shape: &[usize]| -> Result<Var<T>> {
            init::reserve::<T>("a recurrent weight", shape)?;
            Ok(Var::parameter(init::uniform(shape, -k, k, rng)))
        };
        let mut layers = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            let inputs = if l == 0 { input_size } else { dirs * hidden };
            let mut directions = Vec::with_capacity(dirs);
            for _ in 0..dirs {
                let ih = param(&[rows, inputs])?;
                let hh = param(&[rows, hidden])?;
                let bias = match config.bias {
                    true => Some((param(&[rows])?, param(&[rows])?)),
                    false => None,
                };
                directions.push(Weights { ih, hh, bias });
            }
            layers.push(directions);
        }
        Ok(Recurrent {
            cell,
            input_size,
            hidden,
            config,
            layers,
            dropout: Dropout::new(config.dropout, 0)?,
        })
    }

    /// Replaces every parameter, in state-dict order (the gradient checks
    /// install their leaves so).
    pub(crate) fn replace_parameters(&mut self, mut params: impl Iterator<Item = Var<T>>) {
        for w in self.layers.iter_mut().flatten() {
            let mut next = || params.next().expect("a value for every parameter");
            w.ih = next();
            w.hh = next();
            if let Some((bi, bh)) = &mut w.bias {
                *bi = next();
                *bh = next();
            }
        }
    }

    fn directions(&self) -> usize {
        1 + usize::from(self.config.bidirectional)
    }

    /// PyTorch's names: `weight_ih_l0`, ..., `bias_hh_l1_reverse`.
    fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        for (l, directions) in self.layers.iter().enumerate() {
            for (d, w) in directions.iter().enumerate() {
                let suffix = if d == 1 { "_reverse" } else { "" };
                f(&format!("weight_ih_l{l}{suffix}"), Slot::Parameter(&w.ih));
                f(&format!("weight_hh_l{l}{suffix}"), Slot::Parameter(&w.hh));
                if let Some((bi, bh)) = &w.bias {
                    f(&format!("bias_ih_l{l}{suffix}"), Slot::Parameter(bi));
                    f(&format!("bias_hh_l{l}{suffix}"), Slot::Parameter(bh));
                }
            }
        }
    }

    /// Checks `x` and the optional state and lengths; returns (time, batch).
    fn check(
        &self,
        x: &Var<T>,
        state: Option<&RnnState<T>>,
        lengths: Option<&[usize]>,
    ) -> Result<(usize, usize)> {
        let invalid = |msg: String| Error::Invalid { op: "rnn", msg };
        let s = x.shape();
        if s.len() != 3 || s[2] != self.input_size {
            return Err(invalid(format!(
                "expected a [{}, {}, {}] input, got {s:?}",
                if self.config.batch_first {
                    "batch"
                } else {
                    "time"
                },
                if self.config.batch_first {
                    "time"
                } else {
                    "batch"
                },
                self.input_size
            )));
        }
        let (t, b) = if self.config.batch_first {
            (s[1], s[0])
        } else {
            (s[0], s[1])
        };
        let want = [self.layers.len() * self.directions(), b, self.hidden];
        if let Some(st) = state {
            let lstm = self.cell == Cell::Lstm;
            if st.h.shape() != want
                || st.c.as_ref().is_some_and(|c| c.shape() != want)
                || st.c.is_some() != lstm
            {
                return Err(invalid(format!(
                    "the initial state must be h{} of shape {want:?}",
                    if lstm { " and c" } else { "" }
                )));
            }
        }
        if let Some(lens) = lengths {
            if lens.len() != b || lens.iter().any(|&n| n == 0 || n > t) {
                return Err(invalid(format!(
                    "lengths {lens:?}: one per sequence of the batch of {b}, each in 1..={t}"
                )));
            }
        }
        Ok((t, b))
    }

    fn forward(
        &self,
        x: &Var<T>,
        state: Option<&RnnState<T>>,
        lengths: Option<&[usize]>,
    ) -> Result<(Var<T>, RnnState<T>)> {
        let (_, b) = self.check(x, state, lengths)?;
        // Time-major inside: [time, batch, features].
        let mut input = if self.config.batch_first {
            x.transpose(0, 1)?
        } else {
            x.clone()
        };
        let lengths: Option<Arc<[usize]>> = lengths.map(Into::into);
        let zeros = || Var::constant(Tensor::zeros(&[b, self.hidden]));
        let (mut hs, mut cs) = (Vec::new(), Vec::new());
        let last = self.layers.len() - 1;
        for (l, directions) in self.layers.iter().enumerate() {
            let mut outputs = Vec::with_capacity(directions.len());
            for (d, w) in directions.iter().enumerate() {
                let k = l * directions.len() + d;
                let initial = |s: Option<&Var<T>>| -> Result<Var<T>> {
                    match s {
                        Some(s) => Ok(s.narrow(0, k, 1)?.reshape(&[b, self.hidden])?),
                        None => Ok(zeros()),
                    }
                };
                let h0 = initial(state.map(|st| &st.h))?;
                let c0 = initial(state.and_then(|st| st.c.as_ref()))?;
                let spec = Spec {
                    cell: self.cell,
                    hidden: self.hidden,
                    reverse: d == 1,
                    lengths: lengths.clone(),
                };
                let (out, last) = self.direction(&spec, w, &input, h0, c0)?;
                outputs.push(out);
                hs.push(last.h);
                cs.extend(last.c);
            }
            input = match outputs.len() {
                1 => outputs.remove(0),
                _ => Var::concat(&outputs, 2)?,
            };
            if l < last {
                input = self.dropout.forward(&input)?;
            }
        }
        let output = if self.config.batch_first {
            input.transpose(0, 1)?
        } else {
            input
        };
        let h = Var::stack(&hs, 0)?;
        let c = match cs.is_empty() {
            true => None,
            false => Some(Var::stack(&cs, 0)?),
        };
        Ok((output, RnnState { h, c }))
    }

    /// One layer in one direction over time-major `x` [time, batch, in]:
    /// the outputs [time, batch, hidden] and the last state ([batch, hidden]).
    fn direction(
        &self,
        spec: &Spec,
        w: &Weights<T>,
        x: &Var<T>,
        h0: Var<T>,
        c0: Var<T>,
    ) -> Result<(Var<T>, RnnState<T>)> {
        let s = x.shape();
        let (t, b, n) = (s[0], s[1], s[2]);
        let (rows, hid) = (w.ih.shape()[0], self.hidden);
        // All steps' input projections in one product: [time x batch, gates x hidden].
        let mut gx = x.reshape(&[t * b, n])?.matmul(&w.ih.t()?)?;
        if let Some((bi, _)) = &w.bias {
            gx = gx.add(bi)?;
        }
        let b_hh = match &w.bias {
            Some((_, bh)) => bh.clone(),
            None => Var::constant(Tensor::zeros(&[rows])),
        };
        let seq = spec.run(Inputs {
            gx: gx.reshape(&[t, b, rows])?,
            w_hh: w.hh.clone(),
            b_hh,
            h0,
            c0,
        })?;
        // The final state: each sequence's last step (the first, reversed).
        let index: Vec<usize> = (0..b)
            .map(|i| {
                let len = spec.lengths.as_ref().map_or(t, |l| l[i]);
                let step = if spec.reverse { 0 } else { len - 1 };
                step * b + i
            })
            .collect();
        let width = seq.shape()[2];
        let last = seq.reshape(&[t * b, width])?.index_select(0, &index)?;
        Ok(match self.cell {
            Cell::Gru => (seq, RnnState { h: last, c: None }),
            Cell::Lstm => (
                seq.narrow(2, 0, hid)?,
                RnnState {
                    h: last.narrow(1, 0, hid)?,
                    c: Some(last.narrow(1, hid, hid)?),
                },
            ),
        })
    }
}

macro_rules! recurrent_layer {
    ($(#[$doc:meta])* $name:ident, $cell:expr) => {
        $(#[$doc])*
        pub struct $name<T: Element = f32>(pub(crate) Recurrent<T>);

        impl<T: Element> $name<T> {
            /// PyTorch-initialised: every weight and bias U(-1/sqrt(hidden), 1/sqrt(hidden)).
            pub fn new<R: Rng + ?Sized>(input_size: usize, hidden_size: usize, config: RnnConfig, rng: &mut R) -> Result<Self> {
                Ok($name(Recurrent::new($cell, input_size, hidden_size, config, rng)?))
            }

            pub fn hidden_size(&self) -> usize {
                self.0.hidden
            }

            pub fn config(&self) -> RnnConfig {
                self.0.config
            }

            /// The outputs of the last layer for every step ([time, batch,
            /// directions x hidden], or batch first) and the final state,
            /// from `state` (zeros when None). With `lengths` (one per
            /// sequence, padded batch) each sequence stops at its length:
            /// its outputs past it are zero and its final state is the one
            /// at its last token, in both directions, as PyTorch's packed
            /// sequences give.
            pub fn forward_with(&self, x: &Var<T>, state: Option<&RnnState<T>>, lengths: Option<&[usize]>) -> Result<(Var<T>, RnnState<T>)> {
                self.0.forward(x, state, lengths)
            }
        }

        impl<T: Element> Module<T> for $name<T> {
            fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
                self.0.visit(f)
            }

            fn set_training(&self, training: bool) {
                Module::<T>::set_training(&self.0.dropout, training)
            }
        }

        /// A field of a `#[derive(Module)]` model, like any layer.
        impl<T: Element> ModuleField<T> for $name<T> {
            fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
                visit_child(name, self, f);
            }

            fn set_training_field(&self, training: bool) {
                Module::<T>::set_training(self, training);
            }
        }

        impl<T: Element> Forward<T> for $name<T> {
            /// The outputs of every step, from a zero state.
            fn forward(&self, x: &Var<T>) -> Result<Var<T>> {
                Ok(self.0.forward(x, None, None)?.0)
            }
        }
    };
}

recurrent_layer!(
    /// PyTorch's `nn.GRU`: r = σ(W_ir x + b_ir + W_hr h + b_hr), z likewise,
    /// n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = (1 − z) ⊙ n + z ⊙ h.
    /// `weight_ih_l{k}` is [3 hidden, input] with the gates r, z, n in turn.
    Gru,
    Cell::Gru
);

recurrent_layer!(
    /// PyTorch's `nn.LSTM`: gates i, f, g, o (σ, σ, tanh, σ) of W_i x + b_i +
    /// W_h h + b_h, c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c').
    /// `weight_ih_l{k}` is [4 hidden, input] with the gates in that order.
    Lstm,
    Cell::Lstm
);
