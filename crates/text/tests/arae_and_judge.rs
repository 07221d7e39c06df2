//! The ARAE learns to reconstruct the built-in grammar's sentences and to
//! generate text that a language model trained on the real sentences finds
//! far likelier than noise; both train on the run runtime and reload from
//! their checkpoints.

use std::path::PathBuf;

use deepgen_data::text::{synthetic_sentences, Level, TextSet, EOS};
use deepgen_nn::checkpoint;
use deepgen_text::arae::{self, Arae, AraeConfig, AraeTrainConfig};
use deepgen_text::lm::{self, perplexity, LanguageModel, LmConfig, LmTrainConfig};
use deepgen_train::RunConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("deepgen-text-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run(name: &str, epochs: usize) -> RunConfig {
    RunConfig {
        epochs,
        out_dir: out_dir(name),
        progress: false,
        images: false,
        ..Default::default()
    }
}

#[test]
fn arae_writes_text_the_judge_finds_likely() {
    let sentences = synthetic_sentences(800, 3);
    let set = TextSet::split_fraction(&sentences, Level::Word, 0.9).unwrap();
    let vocab = set.vocab.len();

    // The judge: a language model of the real training sentences.
    let judge = LanguageModel::new(
        LmConfig {
            vocab,
            embed: 16,
            hidden: 48,
        },
        1,
    )
    .unwrap();
    let lm_config = LmTrainConfig {
        run: run("lm", 3),
        lr: 5e-3,
        ..Default::default()
    };
    let history = lm::train(&judge, &set, &lm_config, &serde_json::json!({}), |_| {}).unwrap();
    let real = perplexity(&judge, &set.held_out, 64).unwrap();
    println!(
        "judge: held-out perplexity {:.2} ({} rows)",
        real.perplexity,
        history.len()
    );
    assert!(
        real.perplexity < 0.5 * vocab as f64,
        "{real:?} over {vocab} tokens"
    );

    // The ARAE.
    let config = AraeConfig {
        vocab,
        embed: 16,
        hidden: 48,
        code: 16,
        noise: 8,
        g_hidden: vec![64],
        d_hidden: vec![64],
        ..Default::default()
    };
    let model = Arae::new(config, 2).unwrap();
    let train = AraeTrainConfig {
        run: run("arae", 10),
        lr_ae: 5e-3,
        lr_gan: 5e-4,
        ..Default::default()
    };
    let before = arae::evaluate(&model, &set.held_out, 64, 0).unwrap();
    let history = arae::train(&model, &set, &train, &serde_json::json!({}), |_| {}).unwrap();
    let after = arae::evaluate(&model, &set.held_out, 64, 0).unwrap();
    println!(
        "ARAE held-out: {before:?} -> {after:?} ({} epochs)",
        history.len()
    );
    assert!(after.nats_per_token < 0.5 * before.nats_per_token);
    assert!(after.token_accuracy > 0.5, "{after:?}");

    // Its samples against noise, under the judge.
    let rng = &mut ChaCha8Rng::seed_from_u64(4);
    let samples = model.generate(64, 20, 0.0, rng).unwrap();
    for s in samples.iter().take(5) {
        println!("  {}", set.vocab.decode(s));
    }
    let noise: Vec<Vec<usize>> = samples
        .iter()
        .map(|s| s.iter().map(|_| rng.random_range(EOS + 2..vocab)).collect())
        .collect();
    let (ours, random) = (
        perplexity(&judge, &samples, 64).unwrap(),
        perplexity(&judge, &noise, 64).unwrap(),
    );
    println!(
        "forward perplexity: ARAE samples {:.2}, random tokens {:.2}, real held-out {:.2}",
        ours.perplexity, random.perplexity, real.perplexity
    );
    assert!(
        ours.perplexity < 0.25 * random.perplexity,
        "{ours:?} vs {random:?}"
    );

    // Both reload from their last checkpoints, with the vocabulary.
    for (dir, is_lm) in [(&lm_config.run.out_dir, true), (&train.run.out_dir, false)] {
        let path = dir.join("model.safetensors");
        let (tensors, meta) = checkpoint::load_tensors(&path).unwrap();
        let vocab_back = if is_lm {
            lm::from_loaded(&path, tensors, &meta).unwrap().1
        } else {
            let (back, v) = arae::from_loaded(&path, tensors, &meta).unwrap();
            let again = arae::evaluate(&back, &set.held_out, 64, 0).unwrap();
            assert_eq!(again, after);
            v
        };
        assert_eq!(vocab_back.to_text(), set.vocab.to_text());
        let _ = std::fs::remove_dir_all(dir);
    }
}
