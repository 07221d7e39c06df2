//! Any text model a checkpoint holds, for the commands that take one.

use std::collections::HashMap;
use std::path::Path;

use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_data::text::{batch, Vocab};
use deepgen_nn::{checkpoint, Module};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::arae::{self, Arae};
use crate::lm::{self, LanguageModel};
use crate::{trainer, Result, SentenceVae};

/// A sentence VAE, an ARAE or a language model.
pub enum TextModel {
    Vae(Box<SentenceVae>),
    Arae(Box<Arae>),
    Lm(Box<LanguageModel>),
}

impl TextModel {
    /// The model of a checkpoint file already read, with its vocabulary,
    /// or None when the metadata names no text model.
    pub fn from_loaded(
        path: &Path,
        tensors: Vec<(String, checkpoint::TensorData)>,
        meta: &HashMap<String, String>,
    ) -> Result<Option<(TextModel, Vocab)>> {
        Ok(Some(if meta.contains_key(trainer::CONFIG_KEY) {
            let (m, v) = trainer::from_loaded(path, tensors, meta)?;
            (TextModel::Vae(Box::new(m)), v)
        } else if meta.contains_key(arae::ARAE_KEY) {
            let (m, v) = arae::from_loaded(path, tensors, meta)?;
            (TextModel::Arae(Box::new(m)), v)
        } else if meta.contains_key(lm::LM_KEY) {
            let (m, v) = lm::from_loaded(path, tensors, meta)?;
            (TextModel::Lm(Box::new(m)), v)
        } else {
            return Ok(None);
        }))
    }

    /// What the model is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            TextModel::Vae(_) => "a sentence VAE",
            TextModel::Arae(_) => "an ARAE",
            TextModel::Lm(_) => "a language model",
        }
    }

    pub fn as_module(&self) -> &dyn Module<f32> {
        match self {
            TextModel::Vae(m) => m.as_ref(),
            TextModel::Arae(m) => m.as_ref(),
            TextModel::Lm(m) => m.as_ref(),
        }
    }

    /// `n` new sentences (token ids): from the VAE's prior, the ARAE's
    /// generator, the language model; greedy at `temperature` 0.
    pub fn sample(
        &self,
        n: usize,
        max_len: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<Vec<usize>>> {
        let rng = &mut ChaCha8Rng::seed_from_u64(seed);
        no_grad(|| match self {
            TextModel::Vae(m) => {
                let z = Var::constant(Tensor::randn(&[n, m.config.latent], 0.0, 1.0, rng));
                m.generate(&z, max_len, temperature, rng)
            }
            TextModel::Arae(m) => m.generate(n, max_len, temperature, rng),
            TextModel::Lm(m) => m.generate(n, max_len, temperature, rng),
        })
    }

    /// The latent point of each line (token ids): the VAE's posterior
    /// mean, the ARAE's code; None for a language model.
    pub fn encode(&self, lines: &[Vec<usize>]) -> Result<Option<Tensor<f32>>> {
        let refs: Vec<&[usize]> = lines.iter().map(Vec::as_slice).collect();
        let b = batch(&refs);
        no_grad(|| match self {
            TextModel::Vae(m) => Ok(Some(m.encode(&b)?.0.value())),
            TextModel::Arae(m) => Ok(Some(m.autoencoder.code(&b)?.value())),
            TextModel::Lm(_) => Ok(None),
        })
    }

    /// Sentences decoded from latent points [n, latent] (greedy at
    /// `temperature` 0); None for a language model.
    pub fn decode(
        &self,
        points: &Tensor<f32>,
        max_len: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Option<Vec<Vec<usize>>>> {
        let rng = &mut ChaCha8Rng::seed_from_u64(seed);
        let z = Var::constant(points.clone());
        no_grad(|| match self {
            TextModel::Vae(m) => m.generate(&z, max_len, temperature, rng).map(Some),
            TextModel::Arae(m) => m
                .autoencoder
                .generate(&z, max_len, temperature, rng)
                .map(Some),
            TextModel::Lm(_) => Ok(None),
        })
    }
}
