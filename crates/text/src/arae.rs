//! A GAN that writes text: the adversarially regularised autoencoder
//! (Zhao, Kim, Zhang, Rush & LeCun, "Adversarially Regularized
//! Autoencoders", 2018).
//!
//! Text is discrete, so a generator cannot pass gradients through the
//! tokens it writes. ARAE moves the game into a continuous space: a
//! recurrent autoencoder maps sentences to codes on the unit sphere (and
//! back, from codes made noisy, so that nearby codes decode alike); an MLP
//! generator maps Gaussian noise to codes; a WGAN-GP critic tells the
//! generator's codes from the encoder's. The encoder also gets the
//! critic's gradient (weighted by `lambda_enc`), pulling real codes
//! towards what the generator can reach. Text is sampled by decoding a
//! generated code.
//!
//! The generator and critic are deepgen-gan's MLP nets, trained by its
//! [`discriminator_step`] and [`generator_step`] (WGAN-GP's losses).

use std::collections::HashMap;
use std::path::Path;

use deepgen_autograd::{no_grad, Element, Tensor, Var};
use deepgen_data::text::{batch, TextBatch, TextSet, Vocab, PAD};
use deepgen_data::{Batch, Share};
use deepgen_gan::trainer::{discriminator_step, generator_step, TrainConfig as GanConfig};
use deepgen_gan::{Activation, GanLoss, MlpDiscriminator, MlpGanConfig, MlpGenerator};
use deepgen_nn::loss::{cross_entropy_ignore, Reduction};
use deepgen_nn::{checkpoint, Embedding, Forward, Gru, Linear, Module, RnnConfig};
use deepgen_train::{
    At, Chart, Checkpoint, EpochRecord, OptimizerConfig, Restored, RunConfig, StepConfig,
    StepValues, Task, Updater,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::trainer::{fit, load_model, loader, metadata_of, nn, updater};
use crate::{encode_states, word_dropout, Decoding, Result};

/// Metadata key of an ARAE's config.
pub const ARAE_KEY: &str = "deepgen.text.arae";

/// The sizes of an ARAE.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AraeConfig {
    /// Tokens, specials included.
    pub vocab: usize,
    pub embed: usize,
    /// GRU hidden units (encoder and decoder).
    pub hidden: usize,
    /// Dimensions of the code space.
    pub code: usize,
    pub bidirectional: bool,
    /// Dimensions of the generator's noise.
    pub noise: usize,
    pub g_hidden: Vec<usize>,
    pub d_hidden: Vec<usize>,
}

impl Default for AraeConfig {
    fn default() -> Self {
        AraeConfig {
            vocab: 0,
            embed: 64,
            hidden: 256,
            code: 64,
            bidirectional: true,
            noise: 32,
            g_hidden: vec![256, 256],
            d_hidden: vec![256, 256],
        }
    }
}

impl AraeConfig {
    /// The generator's and critic's sizes, as deepgen-gan's MLP config.
    fn gan(&self) -> MlpGanConfig {
        MlpGanConfig {
            data_shape: vec![self.code],
            latent: self.noise,
            g_hidden: self.g_hidden.clone(),
            d_hidden: self.d_hidden.clone(),
            d_activation: Activation::LeakyRelu(0.2),
            num_classes: None,
            embed_dim: 1,
        }
    }
}

/// The recurrent autoencoder: state-dict names `embed`, `encoder`,
/// `fc_code`, `fc_init`, `decoder`, `out`.
#[derive(Module)]
pub struct TextAutoencoder<T: Element = f32> {
    pub embed: Embedding<T>,
    pub encoder: Gru<T>,
    /// Encoder states -> the code.
    pub fc_code: Linear<T>,
    /// A code -> the decoder's initial state.
    pub fc_init: Linear<T>,
    pub decoder: Gru<T>,
    pub out: Linear<T>,
    #[module(skip)]
    hidden: usize,
}

impl<T: Element> TextAutoencoder<T> {
    fn new<R: Rng + ?Sized>(c: &AraeConfig, rng: &mut R) -> Result<Self> {
        let rnn = |bidirectional| RnnConfig {
            bidirectional,
            batch_first: true,
            ..Default::default()
        };
        let directions = 1 + usize::from(c.bidirectional);
        Ok(TextAutoencoder {
            embed: Embedding::new(c.vocab, c.embed, rng),
            encoder: Gru::new(c.embed, c.hidden, rnn(c.bidirectional), rng)?,
            fc_code: Linear::new(directions * c.hidden, c.code, true, rng)?,
            fc_init: Linear::new(c.code, c.hidden, true, rng)?,
            decoder: Gru::new(c.embed, c.hidden, rnn(false), rng)?,
            out: Linear::new(c.hidden, c.vocab, true, rng)?,
            hidden: c.hidden,
        })
    }

    fn decoding(&self) -> Decoding<'_, T> {
        Decoding {
            embed: &self.embed,
            fc_init: Some(&self.fc_init),
            decoder: &self.decoder,
            out: &self.out,
            hidden: self.hidden,
        }
    }

    /// The codes of the sentences of `b`, each on the unit sphere:
    /// [batch, code].
    pub fn code(&self, b: &TextBatch) -> Result<Var<T>> {
        let c = self
            .fc_code
            .forward(&encode_states(&self.embed, &self.encoder, b)?)?;
        let norm = c.square().sum(&[1], true)?.add_scalar(T::of(1e-12)).sqrt();
        Ok(c.div(&norm)?)
    }

    /// -log p(x | code) of the batch's targets from decoder inputs
    /// `inputs` (the batch's, perhaps word-dropped), summed over tokens,
    /// batch mean.
    pub fn reconstruction(&self, b: &TextBatch, code: &Var<T>, inputs: &[usize]) -> Result<Var<T>> {
        let n = b.lengths.len();
        let (logits, _) = self
            .decoding()
            .decode(Some(code), inputs, &b.lengths, b.time)?;
        Ok(
            cross_entropy_ignore(&logits, &b.targets, PAD, Reduction::Sum)?
                .mul_scalar(T::of(1.0 / n as f64)),
        )
    }

    /// Sentences decoded from `code` [n, code] (greedy at `temperature` 0).
    pub fn generate<R: Rng + ?Sized>(
        &self,
        code: &Var<T>,
        max_len: usize,
        temperature: f64,
        rng: &mut R,
    ) -> Result<Vec<Vec<usize>>> {
        let n = code.shape()[0];
        self.decoding()
            .generate(Some(code), n, max_len, temperature, rng)
    }
}

/// Autoencoder, generator and critic: state-dict names `autoencoder.*`,
/// `generator.net.*`, `critic.net.*`.
#[derive(Module)]
pub struct Arae {
    pub autoencoder: TextAutoencoder<f32>,
    pub generator: MlpGenerator<f32>,
    pub critic: MlpDiscriminator<f32>,
    #[module(skip)]
    pub config: AraeConfig,
}

impl Arae {
    /// PyTorch-initialised from `seed`.
    pub fn new(config: AraeConfig, seed: u64) -> Result<Self> {
        let rng = &mut ChaCha8Rng::seed_from_u64(seed);
        let gan = config.gan();
        let gan_err = |e: deepgen_gan::Error| deepgen_nn::Error::Invalid {
            op: "arae",
            msg: e.to_string(),
        };
        Ok(Arae {
            autoencoder: TextAutoencoder::new(&config, rng)?,
            generator: MlpGenerator::new(&gan, seed.wrapping_add(1)).map_err(gan_err)?,
            critic: MlpDiscriminator::new(&gan, seed.wrapping_add(2)).map_err(gan_err)?,
            config,
        })
    }

    /// `n` generated codes from noise drawn from `rng`.
    pub fn generated_codes<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Result<Var<f32>> {
        self.generated_codes_for(Share::whole(n), rng)
    }

    /// `share`'s rows of a global batch of generated codes: the noise is
    /// drawn for the whole global batch (a data-parallel step's), so each
    /// row gets what one process would give it.
    pub fn generated_codes_for<R: Rng + ?Sized>(
        &self,
        share: Share,
        rng: &mut R,
    ) -> Result<Var<f32>> {
        let z = Tensor::randn(&[share.global, self.config.noise], 0.0, 1.0, rng);
        let z = share.rows(z).map_err(|e| deepgen_nn::Error::Invalid {
            op: "generated_codes",
            msg: e.to_string(),
        })?;
        self.generator.forward(&Var::constant(z))
    }

    /// `n` sentences: generated codes, decoded (greedy at `temperature` 0).
    pub fn generate<R: Rng + ?Sized>(
        &self,
        n: usize,
        max_len: usize,
        temperature: f64,
        rng: &mut R,
    ) -> Result<Vec<Vec<usize>>> {
        no_grad(|| {
            let code = self.generated_codes(n, rng)?;
            self.autoencoder.generate(&code, max_len, temperature, rng)
        })
    }
}

/// An ARAE and its vocabulary from a checkpoint file already read.
pub fn from_loaded(
    path: &Path,
    tensors: Vec<(String, checkpoint::TensorData)>,
    meta: &HashMap<String, String>,
) -> Result<(Arae, Vocab)> {
    load_model(path, tensors, meta, ARAE_KEY, "an ARAE", |c| {
        let c: AraeConfig = c;
        Ok((c.vocab, Arae::new(c, 0)?))
    })
}

/// Training settings (ARAE's, with Adam for the autoencoder and WGAN-GP
/// for the critic).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AraeTrainConfig {
    pub run: RunConfig,
    pub step: StepConfig,
    pub batch_size: usize,
    /// The autoencoder's learning rate (Adam).
    pub lr_ae: f64,
    /// The generator's and critic's learning rate (Adam, betas (0.5, 0.9)).
    pub lr_gan: f64,
    /// Critic steps per generator step.
    pub n_critic: usize,
    pub gp_lambda: f64,
    /// Weight of the critic's gradient into the encoder.
    pub lambda_enc: f64,
    /// Standard deviation of the Gaussian noise on codes while the
    /// autoencoder trains; multiplied by `noise_anneal` every 100 steps.
    pub noise_std: f64,
    pub noise_anneal: f64,
    /// Decoder inputs dropped to `<unk>` while the autoencoder trains.
    pub word_dropout: f64,
    pub seed: u64,
}

impl Default for AraeTrainConfig {
    fn default() -> Self {
        AraeTrainConfig {
            run: RunConfig {
                out_dir: "runs/text-gan".into(),
                epochs: 10,
                ..Default::default()
            },
            step: StepConfig::default(),
            batch_size: 32,
            lr_ae: 1e-3,
            lr_gan: 1e-4,
            n_critic: 5,
            gp_lambda: 10.0,
            lambda_enc: 0.01,
            noise_std: 0.1,
            noise_anneal: 0.995,
            word_dropout: 0.0,
            seed: 0,
        }
    }
}

/// Held-out figures of an ARAE.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AraeEvaluation {
    /// -log p(x | code) per token from the noiseless code.
    pub nats_per_token: f64,
    /// Tokens reconstructed exactly by greedy decoding, as a fraction.
    pub token_accuracy: f64,
    /// mean critic(real codes) - mean critic(generated codes): the
    /// critic's estimate of the Wasserstein distance.
    pub critic_gap: f64,
}

/// The held-out figures on `lines`, with generated codes from `seed`.
pub fn evaluate(
    model: &Arae,
    lines: &[Vec<usize>],
    batch_size: usize,
    seed: u64,
) -> Result<AraeEvaluation> {
    let rng = &mut ChaCha8Rng::seed_from_u64(seed);
    let (mut nats, mut tokens, mut right, mut gap) = (0.0, 0usize, 0usize, 0.0);
    let ae = &model.autoencoder;
    for chunk in lines.chunks(batch_size.max(1)) {
        let refs: Vec<&[usize]> = chunk.iter().map(Vec::as_slice).collect();
        let b = batch(&refs);
        let n = chunk.len();
        no_grad(|| -> Result<()> {
            let code = ae.code(&b)?;
            nats += f64::from(ae.reconstruction(&b, &code, &b.inputs)?.item()?) * n as f64;
            tokens += b.lengths.iter().sum::<usize>();
            let decoded = ae.generate(&code, b.time, 0.0, rng)?;
            for (line, d) in chunk.iter().zip(&decoded) {
                right += line.iter().zip(d).filter(|(a, b)| a == b).count();
                right += usize::from(d.len() == line.len()); // the <eos>
            }
            let real = mean(&model.critic.forward(&code)?);
            let fake = mean(&model.critic.forward(&model.generated_codes(n, rng)?)?);
            gap += (real - fake) * n as f64;
            Ok(())
        })?;
    }
    let t = tokens.max(1) as f64;
    Ok(AraeEvaluation {
        nats_per_token: nats / t,
        token_accuracy: right as f64 / t,
        critic_gap: gap / lines.len().max(1) as f64,
    })
}

fn mean(v: &Var<f32>) -> f64 {
    let v = v.value().to_vec();
    v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64
}

struct AraeTask<'a> {
    model: &'a Arae,
    set: &'a TextSet,
    opt_ae: Updater,
    opt_g: Updater,
    opt_d: Updater,
    gan: GanConfig,
    rng: ChaCha8Rng,
    config: &'a AraeTrainConfig,
    batches: usize,
}

impl AraeTask<'_> {
    /// The code noise at a step: annealed every 100 steps.
    fn noise_std(&self, step: usize) -> f64 {
        self.config.noise_std * self.config.noise_anneal.powi((step / 100) as i32)
    }
}

impl Task for AraeTask<'_> {
    fn step_columns(&self) -> Vec<String> {
        [
            "train_reconstruction",
            "d_loss",
            "g_loss",
            "penalty",
            "enc_adv",
        ]
        .map(String::from)
        .to_vec()
    }

    fn epoch_columns(&self) -> Vec<String> {
        [
            "held_out_nats_per_token",
            "held_out_token_accuracy",
            "critic_gap",
        ]
        .map(String::from)
        .to_vec()
    }

    fn step(&mut self, b: Batch, at: At) -> deepgen_train::Result<StepValues> {
        let (m, c) = (self.model, self.config);
        let batch_share = b.share;
        let ae = &m.autoencoder;
        let lines: Vec<&[usize]> = b
            .indices
            .iter()
            .map(|&i| self.set.train[i].as_slice())
            .collect();
        let n = lines.len();
        let share = batch_share;
        let mut b = batch(&lines);
        (b.first_row, b.global_rows) = (share.offset, share.global);
        let step = at.epoch * self.batches + at.batch;
        // 1. The autoencoder, from noisy codes.
        let code = ae.code(&b).map_err(nn)?;
        let real = code.value();
        // Noise and draws for the global batch; this rank takes its rows.
        let eps = Tensor::randn(
            &[share.global, m.config.code],
            0.0,
            self.noise_std(step) as f32,
            &mut self.rng,
        );
        let noisy = code.add(&Var::constant(share.rows(eps)?))?;
        let inputs = word_dropout(&b, c.word_dropout, &mut self.rng);
        let rec = ae.reconstruction(&b, &noisy, &inputs).map_err(nn)?;
        drop((code, noisy));
        let (rec, _) = self.opt_ae.backward_step(rec)?;
        // 2. The critic: the encoder's codes against the generator's.
        let fake = no_grad(|| m.generated_codes_for(share, &mut self.rng))
            .map_err(nn)?
            .value();
        let d = discriminator_step(
            &m.critic,
            &mut self.opt_d,
            &real,
            &fake,
            None,
            &self.gan,
            &mut self.rng,
            share,
        )?;
        // 3. Every n_critic steps, the generator, and the encoder towards
        //    the generator's codes (it lowers the critic's score of them).
        let (mut g_loss, mut enc) = (None, None);
        if (at.batch + 1).is_multiple_of(c.n_critic) {
            let fake = m.generated_codes_for(share, &mut self.rng).map_err(nn)?;
            g_loss = Some(generator_step(
                &m.critic,
                &mut self.opt_g,
                fake,
                None,
                GanLoss::Wasserstein,
            )?);
            let score = m.critic.forward(&ae.code(&b).map_err(nn)?).map_err(nn)?;
            let adv = score.mean(&[0], false)?.mul_scalar(c.lambda_enc as f32);
            let (value, _) = self.opt_ae.backward_step(adv)?;
            enc = Some(value);
            // The critic's weights got no gradient: backward_step reaches
            // only the autoencoder's parameters.
        }
        Ok(StepValues::new(
            n,
            vec![Some(rec), Some(d.loss), g_loss, Some(d.penalty), enc],
        ))
    }

    fn end_epoch(&mut self, _epoch: usize) -> deepgen_train::Result<Vec<Option<f64>>> {
        self.model.eval();
        let e = evaluate(
            self.model,
            &self.set.held_out,
            256,
            self.config.seed ^ 0xe7a1,
        )
        .map_err(nn);
        self.model.train();
        let e = e?;
        Ok(vec![
            Some(e.nats_per_token),
            Some(e.token_accuracy),
            Some(e.critic_gap),
        ])
    }

    fn charts(&self) -> Vec<Chart> {
        vec![
            Chart::of(
                "reconstruction.png",
                "autoencoder",
                "nats per sentence",
                &[("train_reconstruction", "train")],
            ),
            Chart::of(
                "gan.png",
                "critic and generator",
                "loss",
                &[("d_loss", "critic"), ("g_loss", "generator")],
            ),
        ]
    }

    fn updaters(&mut self) -> Vec<&mut Updater> {
        vec![&mut self.opt_ae, &mut self.opt_g, &mut self.opt_d]
    }

    fn modules(&self) -> Vec<(String, &dyn Module<f32>)> {
        vec![("model".into(), self.model as &dyn Module<f32>)]
    }

    fn save(&mut self, c: &mut Checkpoint) -> deepgen_train::Result<()> {
        c.module(
            "model",
            self.model,
            metadata_of(ARAE_KEY, &self.model.config, &self.set.vocab),
        )?;
        for u in [&self.opt_ae, &self.opt_g, &self.opt_d] {
            c.updater(u)?;
        }
        c.rng("noise", &self.rng);
        Ok(())
    }

    fn restore(&mut self, r: &Restored) -> deepgen_train::Result<()> {
        r.module("model", self.model)?;
        for u in [&mut self.opt_ae, &mut self.opt_g, &mut self.opt_d] {
            r.updater(u)?;
        }
        r.rng("noise", &mut self.rng)
    }
}

/// Trains `model` on `set`'s training lines, in place, calling `on_epoch`
/// after each epoch; `record` is what `config.json` holds.
pub fn train(
    model: &Arae,
    set: &TextSet,
    config: &AraeTrainConfig,
    record: &serde_json::Value,
    on_epoch: impl FnMut(&EpochRecord),
) -> deepgen_train::Result<Vec<EpochRecord>> {
    if config.n_critic == 0 {
        return Err(nn(deepgen_nn::Error::Invalid {
            op: "train text-gan",
            msg: "n_critic must be at least 1".into(),
        }));
    }
    let loader = loader(&set.train, config.batch_size, config.seed)?;
    let (batches, epochs) = (loader.num_batches(), config.run.epochs);
    let updater = |name: &str, params, lr, betas| {
        let adam = OptimizerConfig::adam(betas);
        updater(name, &adam, params, lr, &config.step, batches, epochs)
    };
    let ae = model.autoencoder.parameters();
    let mut task = AraeTask {
        model,
        set,
        opt_ae: updater("autoencoder", ae, config.lr_ae, (0.9, 0.999))?,
        opt_g: updater(
            "generator",
            model.generator.parameters(),
            config.lr_gan,
            (0.5, 0.9),
        )?,
        opt_d: updater(
            "critic",
            model.critic.parameters(),
            config.lr_gan,
            (0.5, 0.9),
        )?,
        gan: GanConfig {
            loss: GanLoss::Wasserstein,
            gp_lambda: config.gp_lambda,
            n_critic: config.n_critic,
            ..GanConfig::wgan_gp()
        },
        rng: ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(1)),
        config,
        batches,
    };
    fit(model, &mut task, &loader, &config.run, record, on_epoch)
}
