//! The sentence VAE learns the built-in grammar, keeps its latent in use
//! (KL well above zero with word dropout, annealing and free bits), and
//! writes sentences of the grammar's words.

use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_data::text::{batch, synthetic_sentences, Level, TextSet};
use deepgen_nn::Module;
use deepgen_optim::{Adam, AdamConfig, Optimizer};
use deepgen_text::{active_units, Objective, SentenceVae, SentenceVaeConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn held_out_nats_per_token(model: &SentenceVae, set: &TextSet) -> (f64, f64) {
    let lines: Vec<&[usize]> = set.held_out.iter().map(Vec::as_slice).collect();
    let b = batch(&lines);
    let eps = Tensor::zeros(&[lines.len(), model.config.latent]);
    let rng = &mut ChaCha8Rng::seed_from_u64(0);
    let t = no_grad(|| model.terms(&b, &eps, Objective::default(), rng)).unwrap();
    ((t.reconstruction + t.kl) / t.tokens, t.kl)
}

#[test]
fn learns_the_grammar_and_uses_its_latent() {
    let sentences = synthetic_sentences(600, 5);
    let set = TextSet::split_fraction(&sentences, Level::Word, 0.9).unwrap();
    let config = SentenceVaeConfig {
        vocab: set.vocab.len(),
        embed: 16,
        hidden: 32,
        latent: 8,
        bidirectional: true,
    };
    let model = SentenceVae::<f32>::new(config, 1).unwrap();
    let mut opt = Adam::new(
        model.parameters(),
        AdamConfig {
            lr: 5e-3,
            ..Default::default()
        },
    )
    .unwrap();
    let rng = &mut ChaCha8Rng::seed_from_u64(2);
    let (before, _) = held_out_nats_per_token(&model, &set);
    let steps = 240;
    for step in 0..steps {
        let lines: Vec<&[usize]> = (0..32)
            .map(|i| set.train[(step * 32 + i) % set.train.len()].as_slice())
            .collect();
        let b = batch(&lines);
        let eps = Tensor::randn(&[lines.len(), 8], 0.0, 1.0, rng);
        let objective = Objective {
            beta: (step as f64 / 120.0).min(1.0),
            word_dropout: 0.3,
            free_bits: 0.25,
        };
        let t = model.terms(&b, &eps, objective, rng).unwrap();
        opt.zero_grad();
        t.loss.backward().unwrap();
        opt.step().unwrap();
    }
    let (after, kl) = held_out_nats_per_token(&model, &set);
    println!("held-out nats per token: {before:.3} -> {after:.3}; KL {kl:.2} nats per sentence");
    // A uniform guess over the vocabulary is ln(vocab) nats per token.
    assert!(before > 0.9 * (set.vocab.len() as f64).ln(), "{before}");
    assert!(after < 0.5 * before, "{before} -> {after}");
    assert!(kl > 1.0, "the latent collapsed: KL {kl}");
    let lines: Vec<&[usize]> = set.held_out.iter().map(Vec::as_slice).collect();
    let (mu, _) = no_grad(|| model.encode(&batch(&lines))).unwrap();
    let mus: Vec<f64> = mu.value().to_vec().iter().map(|&v| f64::from(v)).collect();
    assert!(active_units(&mus, 8, 0.01) >= 1);
    let z = Var::constant(Tensor::randn(&[5, 8], 0.0, 1.0, rng));
    let written = no_grad(|| model.generate(&z, 20, 0.0, rng)).unwrap();
    for ids in &written {
        let text = set.vocab.decode(ids);
        println!("  {text}");
        assert!(!ids.is_empty() && ids.len() <= 20, "{text}");
    }
}
