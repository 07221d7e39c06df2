//! deepgen-text: a sentence VAE (Bowman, Vilnis, Vinyals, Dai, Jozefowicz
//! & Bengio, "Generating Sentences from a Continuous Space", 2016).
//!
//! A GRU encoder reads a sentence into a Gaussian posterior q(z|x); a GRU
//! decoder, its initial state a map of z, predicts each token from the
//! ones before. Three things keep the decoder from ignoring z (posterior
//! collapse): word dropout (decoder inputs replaced by `<unk>`), KL
//! annealing (the KL term's weight `beta` rising from 0) and free bits (no
//! pressure on a latent dimension below `free_bits` nats).
//!
//! Token ids and batches are `deepgen_data::text`'s.

use deepgen_autograd::{Element, Tensor, Var};
use deepgen_data::text::{TextBatch, BOS, EOS, PAD, UNK};
use deepgen_nn::loss::{cross_entropy_ignore, Reduction};
use deepgen_nn::{Embedding, Forward, Gru, Linear, Module, RnnConfig, RnnState};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub mod arae;
pub mod lm;
pub mod model;
pub mod trainer;

/// Results of this crate: nn's errors.
pub type Result<T> = deepgen_nn::Result<T>;

/// The sizes of a sentence VAE.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SentenceVaeConfig {
    /// Tokens, specials included.
    pub vocab: usize,
    pub embed: usize,
    pub hidden: usize,
    pub latent: usize,
    /// A bidirectional encoder (its two final states concatenated).
    pub bidirectional: bool,
}

impl Default for SentenceVaeConfig {
    fn default() -> Self {
        SentenceVaeConfig {
            vocab: 0,
            embed: 64,
            hidden: 256,
            latent: 32,
            bidirectional: true,
        }
    }
}

/// How one step's loss is formed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    /// Weight of the KL term (annealed from 0 to 1 by the trainer).
    pub beta: f64,
    /// Probability that a decoder input token becomes `<unk>` (training).
    pub word_dropout: f64,
    /// Nats per latent dimension (batch mean) below which KL is not
    /// penalised (Kingma et al. 2016); 0 for none.
    pub free_bits: f64,
}

impl Default for Objective {
    fn default() -> Self {
        Objective {
            beta: 1.0,
            word_dropout: 0.0,
            free_bits: 0.0,
        }
    }
}

/// One batch's terms, each per sentence (batch mean), in nats.
pub struct Terms<T: Element> {
    /// What the optimizer minimises: reconstruction + beta x (free-bits) KL.
    pub loss: Var<T>,
    /// -log p(x|z): the decoder's cross entropy summed over the tokens.
    pub reconstruction: f64,
    /// KL(q(z|x) || N(0, I)), without free bits or beta.
    pub kl: f64,
    /// KL per latent dimension (batch mean), for the active-unit count.
    pub kl_per_dim: Vec<f64>,
    /// Tokens predicted per sentence (`<eos>` included).
    pub tokens: f64,
    /// The posterior means [batch, latent] (for the active units).
    pub mu: Tensor<T>,
}

/// The sentence VAE: state-dict names `embed`, `encoder`, `fc_mu`,
/// `fc_logvar`, `fc_init`, `decoder`, `out`.
#[derive(Module)]
pub struct SentenceVae<T: Element = f32> {
    pub embed: Embedding<T>,
    pub encoder: Gru<T>,
    pub fc_mu: Linear<T>,
    pub fc_logvar: Linear<T>,
    /// z -> the decoder's initial state.
    pub fc_init: Linear<T>,
    pub decoder: Gru<T>,
    /// Decoder state -> token logits.
    pub out: Linear<T>,
    #[module(skip)]
    pub config: SentenceVaeConfig,
}

impl<T: Element> SentenceVae<T> {
    /// PyTorch-initialised from `seed`.
    pub fn new(config: SentenceVaeConfig, seed: u64) -> Result<Self> {
        let rng = &mut ChaCha8Rng::seed_from_u64(seed);
        let c = &config;
        let enc = RnnConfig {
            bidirectional: c.bidirectional,
            batch_first: true,
            ..Default::default()
        };
        let dec = RnnConfig {
            batch_first: true,
            ..Default::default()
        };
        let directions = 1 + usize::from(c.bidirectional);
        Ok(SentenceVae {
            embed: Embedding::new(c.vocab, c.embed, rng),
            encoder: Gru::new(c.embed, c.hidden, enc, rng)?,
            fc_mu: Linear::new(directions * c.hidden, c.latent, true, rng)?,
            fc_logvar: Linear::new(directions * c.hidden, c.latent, true, rng)?,
            fc_init: Linear::new(c.latent, c.hidden, true, rng)?,
            decoder: Gru::new(c.embed, c.hidden, dec, rng)?,
            out: Linear::new(c.hidden, c.vocab, true, rng)?,
            config,
        })
    }

    /// The decoder's parts.
    fn decoding(&self) -> Decoding<'_, T> {
        Decoding {
            embed: &self.embed,
            fc_init: Some(&self.fc_init),
            decoder: &self.decoder,
            out: &self.out,
            hidden: self.config.hidden,
        }
    }

    /// q(z|x) of the sentences of `b` (their targets: tokens then
    /// `<eos>`): (mu, logvar), each [batch, latent].
    pub fn encode(&self, b: &TextBatch) -> Result<(Var<T>, Var<T>)> {
        let h = encode_states(&self.embed, &self.encoder, b)?;
        Ok((self.fc_mu.forward(&h)?, self.fc_logvar.forward(&h)?))
    }

    /// Token logits [batch x time, vocab] for decoder inputs `inputs`
    /// ([batch x time] ids) from z, and the decoder's final state.
    pub fn decode(
        &self,
        z: &Var<T>,
        inputs: &[usize],
        lengths: &[usize],
        time: usize,
    ) -> Result<(Var<T>, RnnState<T>)> {
        self.decoding().decode(Some(z), inputs, lengths, time)
    }

    /// The batch's terms with z = mu + sigma * `eps` (eps [batch, latent]
    /// ~ N(0, I); zeros for the posterior mean), the decoder's inputs
    /// dropped to `<unk>` at `objective.word_dropout` from `rng`.
    pub fn terms<R: Rng + ?Sized>(
        &self,
        b: &TextBatch,
        eps: &Tensor<T>,
        objective: Objective,
        rng: &mut R,
    ) -> Result<Terms<T>> {
        let n = b.lengths.len();
        let (mu, logvar) = self.encode(b)?;
        let z = mu.add(
            &logvar
                .mul_scalar(T::of(0.5))
                .exp()
                .mul(&Var::constant(eps.clone()))?,
        )?;
        let inputs = word_dropout(b, objective.word_dropout, rng);
        let (logits, _) = self.decode(&z, &inputs, &b.lengths, b.time)?;
        let rec = cross_entropy_ignore(&logits, &b.targets, PAD, Reduction::Sum)?
            .mul_scalar(T::of(1.0 / n as f64));
        // KL per dimension, mean over the (global) batch: -1/2 (1 + logvar
        // - mu^2 - e^logvar). Free bits clamp that mean, so in a
        // data-parallel step it is summed over the ranks first (the sum's
        // gradient is the ranks' gradients summed).
        let mut kl_sums = logvar
            .add_scalar(T::one())
            .sub(&mu.square())?
            .sub(&logvar.exp())?
            .sum(&[0], false)?;
        if b.global_rows > n {
            kl_sums = deepgen_dist::all_sum(&kl_sums)?;
        }
        let kl_dims = kl_sums.mul_scalar(T::of(-0.5 / b.global_rows.max(n) as f64));
        let kl = kl_dims.sum_all()?;
        // Free bits: max(kl_d, lambda) = lambda + relu(kl_d - lambda).
        let penalised = match objective.free_bits {
            0.0 => kl.clone(),
            fb => kl_dims
                .add_scalar(T::of(-fb))
                .relu()
                .add_scalar(T::of(fb))
                .sum_all()?,
        };
        let loss = rec.add(&penalised.mul_scalar(T::of(objective.beta)))?;
        let scalar = |v: &Var<T>| v.value().to_vec()[0].as_f64();
        Ok(Terms {
            reconstruction: scalar(&rec),
            kl: scalar(&kl),
            kl_per_dim: kl_dims
                .value()
                .to_vec()
                .iter()
                .map(|v| v.as_f64())
                .collect(),
            tokens: b.lengths.iter().sum::<usize>() as f64 / n as f64,
            mu: mu.value(),
            loss,
        })
    }

    /// Per sentence of `b`: the ELBO and the importance-weighted bound
    /// (Burda et al. 2016) on log p(x) from `k` posterior samples, in nats
    /// (the IWAE bound tightens towards log p(x) as `k` grows; with k = 1
    /// it is the ELBO). No gradients are recorded.
    pub fn bounds<R: Rng + ?Sized>(
        &self,
        b: &TextBatch,
        k: usize,
        rng: &mut R,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let n = b.lengths.len();
        let latent = self.config.latent;
        deepgen_autograd::no_grad(|| {
            let (mu, logvar) = self.encode(b)?;
            let (mu_v, lv) = (to_f64(&mu.value()), to_f64(&logvar.value()));
            let mut log_w = vec![Vec::with_capacity(k); n];
            let half_ln_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
            for _ in 0..k.max(1) {
                let eps = Tensor::<T>::randn(&[n, latent], T::zero(), T::one(), rng);
                let ev = to_f64(&eps);
                let z: Vec<T> = (0..n * latent)
                    .map(|i| T::of(mu_v[i] + (0.5 * lv[i]).exp() * ev[i]))
                    .collect();
                let z = Var::constant(Tensor::from_vec(z, &[n, latent])?);
                let zv = to_f64(&z.value());
                let (logits, _) = self.decode(&z, &b.inputs, &b.lengths, b.time)?;
                let rec = to_f64(
                    &cross_entropy_ignore(&logits, &b.targets, PAD, Reduction::None)?.value(),
                );
                for (i, w) in log_w.iter_mut().enumerate() {
                    let r: f64 = rec[i * b.time..(i + 1) * b.time].iter().sum();
                    let (mut lq, mut lp) = (0.0, 0.0);
                    for d in i * latent..(i + 1) * latent {
                        lq += -0.5 * (ev[d] * ev[d] + lv[d]) - half_ln_2pi;
                        lp += -0.5 * zv[d] * zv[d] - half_ln_2pi;
                    }
                    w.push(-r + lp - lq);
                }
            }
            let elbo = log_w
                .iter()
                .map(|w| w.iter().sum::<f64>() / w.len() as f64)
                .collect();
            let iwae = log_w
                .iter()
                .map(|w| {
                    let m = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    m + (w.iter().map(|v| (v - m).exp()).sum::<f64>() / w.len() as f64).ln()
                })
                .collect();
            Ok((elbo, iwae))
        })
    }

    /// Sentences decoded from latent points z [n, latent], at most
    /// `max_len` tokens each: greedy (`temperature` 0) or sampled from the
    /// softmax at `temperature`. Token ids without specials.
    pub fn generate<R: Rng + ?Sized>(
        &self,
        z: &Var<T>,
        max_len: usize,
        temperature: f64,
        rng: &mut R,
    ) -> Result<Vec<Vec<usize>>> {
        let n = z.shape()[0];
        self.decoding()
            .generate(Some(z), n, max_len, temperature, rng)
    }
}

/// Embeddings of `ids` [batch x time] as [batch, time, embed].
fn embedded<T: Element>(
    embed: &Embedding<T>,
    ids: &[usize],
    batch: usize,
    time: usize,
) -> Result<Var<T>> {
    let width = embed.weight.shape()[1];
    Ok(embed.lookup(ids)?.reshape(&[batch, time, width])?)
}

/// An encoder's final states over the sentences of `b` (their targets:
/// tokens then `<eos>`), [batch, directions x hidden].
pub(crate) fn encode_states<T: Element>(
    embed: &Embedding<T>,
    encoder: &Gru<T>,
    b: &TextBatch,
) -> Result<Var<T>> {
    let n = b.lengths.len();
    let x = embedded(embed, &b.targets, n, b.time)?;
    let (_, state) = encoder.forward_with(&x, None, Some(&b.lengths))?;
    // [directions, batch, hidden] -> [batch, directions x hidden].
    let s = state.h.shape();
    Ok(state.h.transpose(0, 1)?.reshape(&[n, s[0] * s[2]])?)
}

/// A recurrent decoder, shared by the sentence VAE, the ARAE's
/// autoencoder and the language model (which has no `fc_init`: its
/// decoder starts from zeros).
pub(crate) struct Decoding<'a, T: Element> {
    pub embed: &'a Embedding<T>,
    pub fc_init: Option<&'a Linear<T>>,
    pub decoder: &'a Gru<T>,
    pub out: &'a Linear<T>,
    pub hidden: usize,
}

impl<T: Element> Decoding<'_, T> {
    /// The decoder's initial state from a code [batch, code] (zeros
    /// without `fc_init`).
    fn initial_state(&self, code: Option<&Var<T>>, n: usize) -> Result<Option<RnnState<T>>> {
        let (Some(fc), Some(z)) = (self.fc_init, code) else {
            return Ok(None);
        };
        let h = fc.forward(z)?.tanh().reshape(&[1, n, self.hidden])?;
        Ok(Some(RnnState { h, c: None }))
    }

    /// Token logits [batch x time, vocab] for decoder inputs `inputs`
    /// ([batch x time] ids) from `code`, and the decoder's final state.
    pub fn decode(
        &self,
        code: Option<&Var<T>>,
        inputs: &[usize],
        lengths: &[usize],
        time: usize,
    ) -> Result<(Var<T>, RnnState<T>)> {
        let n = lengths.len();
        let x = embedded(self.embed, inputs, n, time)?;
        let state = self.initial_state(code, n)?;
        let (h, last) = self
            .decoder
            .forward_with(&x, state.as_ref(), Some(lengths))?;
        let logits = self.out.forward(&h.reshape(&[n * time, self.hidden])?)?;
        Ok((logits, last))
    }

    /// `n` sentences decoded from `code` [n, code], at most `max_len`
    /// tokens each: greedy (`temperature` 0) or sampled from the softmax
    /// at `temperature`. Token ids without specials.
    pub fn generate<R: Rng + ?Sized>(
        &self,
        code: Option<&Var<T>>,
        n: usize,
        max_len: usize,
        temperature: f64,
        rng: &mut R,
    ) -> Result<Vec<Vec<usize>>> {
        let mut state = self.initial_state(code, n)?;
        let mut current = vec![BOS; n];
        let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut done = vec![false; n];
        for _ in 0..max_len {
            let x = embedded(self.embed, &current, n, 1)?;
            let (h, next) = self.decoder.forward_with(&x, state.as_ref(), None)?;
            state = Some(next);
            let logits = self
                .out
                .forward(&h.reshape(&[n, self.hidden])?)?
                .value()
                .to_vec();
            let vocab = logits.len() / n;
            for i in 0..n {
                let row: Vec<f64> = logits[i * vocab..(i + 1) * vocab]
                    .iter()
                    .map(|v| v.as_f64())
                    .collect();
                let token = pick(&row, temperature, rng);
                current[i] = token;
                if !done[i] {
                    match token {
                        EOS => done[i] = true,
                        t => out[i].push(t),
                    }
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
        }
        Ok(out)
    }
}

fn to_f64<T: Element>(t: &Tensor<T>) -> Vec<f64> {
    t.to_vec().iter().map(|v| v.as_f64()).collect()
}

/// The decoder inputs with each token but `<bos>` and `<pad>` replaced by
/// `<unk>` with probability `p` (Bowman's word dropout).
pub fn word_dropout<R: Rng + ?Sized>(b: &TextBatch, p: f64, rng: &mut R) -> Vec<usize> {
    if p <= 0.0 {
        return b.inputs.to_vec();
    }
    // One draw from the step's generator seeds every row's own stream,
    // numbered by the row's global index (TextBatch::first_row).
    let seed: u64 = rng.random();
    let mut out = Vec::with_capacity(b.inputs.len());
    for (r, row) in b.inputs.chunks(b.time.max(1)).enumerate() {
        let mut row_rng = ChaCha8Rng::seed_from_u64(seed);
        row_rng.set_stream((b.first_row + r) as u64);
        out.extend(row.iter().map(|&t| match t {
            BOS | PAD => t,
            _ if row_rng.random::<f64>() < p => UNK,
            _ => t,
        }));
    }
    out
}

/// A token from logits: the largest (temperature 0) or a sample of
/// softmax(logits / temperature). `<pad>`, `<bos>` and `<unk>` are never
/// picked.
fn pick<R: Rng + ?Sized>(logits: &[f64], temperature: f64, rng: &mut R) -> usize {
    let allowed = |i: usize| !matches!(i, PAD | BOS | UNK);
    if temperature <= 0.0 {
        return (0..logits.len())
            .filter(|&i| allowed(i))
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap_or(EOS);
    }
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = (0..logits.len())
        .map(|i| {
            if allowed(i) {
                ((logits[i] - max) / temperature).exp()
            } else {
                0.0
            }
        })
        .collect();
    let mut u = rng.random::<f64>() * weights.iter().sum::<f64>();
    for (i, w) in weights.iter().enumerate() {
        u -= w;
        if u <= 0.0 && *w > 0.0 {
            return i;
        }
    }
    EOS
}

/// Active latent units (Burda, Grosse & Salakhutdinov 2016): dimensions
/// whose posterior mean varies across sentences, Var_x(mu_d(x)) above
/// `threshold` (0.01 in the paper); `mus` is [sentences, latent] row-major.
pub fn active_units(mus: &[f64], latent: usize, threshold: f64) -> usize {
    let n = (mus.len() / latent.max(1)) as f64;
    (0..latent)
        .filter(|&d| {
            let col = mus.iter().skip(d).step_by(latent);
            let mean = col.clone().sum::<f64>() / n;
            col.map(|m| (m - mean).powi(2)).sum::<f64>() / n > threshold
        })
        .count()
}
