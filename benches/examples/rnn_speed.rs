//! Times one GRU or LSTM layer's forward + backward (the sentence VAE's
//! sizes by default: batch 32, 40 steps, 64 inputs, 256 hidden, batch
//! first), as `benches/rnn_compare.py` times `torch.nn.GRU` / `LSTM`.
//! Prints "median_ms min_ms max_ms" of `--reps` calls after two warm-ups.
//!
//!     RAYON_NUM_THREADS=1 cargo run --release -p deepgen-benches --example rnn_speed -- gru

use deepgen_autograd::Var;
use deepgen_nn::{Forward, Gru, Lstm, RnnConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cell = args.get(1).map_or("gru", String::as_str).to_string();
    let (batch, time) = (arg(&args, "--batch", 32), arg(&args, "--time", 40));
    let (input, hidden) = (arg(&args, "--input", 64), arg(&args, "--hidden", 256));
    let reps = arg(&args, "--reps", 20);
    let bidirectional = args.iter().any(|a| a == "--bidirectional");
    let rng = &mut ChaCha8Rng::seed_from_u64(0);
    let config = RnnConfig {
        batch_first: true,
        bidirectional,
        ..Default::default()
    };
    let layer: Box<dyn Forward<f32>> = match cell.as_str() {
        "gru" => Box::new(Gru::new(input, hidden, config, rng).unwrap()),
        "lstm" => Box::new(Lstm::new(input, hidden, config, rng).unwrap()),
        other => panic!("unknown cell {other}: gru or lstm"),
    };
    let x = Var::parameter(deepgen_benches::randn(&[batch, time, input], 1));
    let step = || {
        let y = layer.forward(&x).unwrap();
        y.sum_all().unwrap().backward().unwrap();
        x.zero_grad();
        layer.zero_grad();
    };
    step();
    step();
    let mut ms: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            step();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "{:.3} {:.3} {:.3}",
        ms[ms.len() / 2],
        ms[0],
        ms[ms.len() - 1]
    );
}
