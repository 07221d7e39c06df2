//! Trains a small MLP to separate two interleaved spirals, with nothing but
//! Vars and a hand-written SGD-with-momentum step: the foundation's
//! end-to-end proof that forward, backward and in-place parameter updates
//! fit together. (Layers, optimizers and the VAE / GAN trainers arrive in
//! deepgen-nn, deepgen-optim and the `deepgen` binary.)
//!
//!     cargo run --release -p deepgen-autograd --example spirals

use std::time::Instant;

use deepgen_autograd::{no_grad, Result, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// `n` points per class on two spirals, with a little noise; labels 0 / 1.
fn spirals(n: usize, rng: &mut ChaCha8Rng) -> (Tensor, Tensor) {
    let noise = Tensor::<f32>::randn(&[2 * n, 2], 0.0, 0.05, rng).to_vec();
    let mut xy = Vec::with_capacity(4 * n);
    let mut labels = Vec::with_capacity(2 * n);
    for class in 0..2 {
        for i in 0..n {
            let t = 0.25 + 2.75 * std::f32::consts::PI * i as f32 / n as f32;
            let phase = class as f32 * std::f32::consts::PI;
            let k = 2 * (class * n + i);
            xy.push(t * (t + phase).cos() / 8.0 + noise[k]);
            xy.push(t * (t + phase).sin() / 8.0 + noise[k + 1]);
            labels.push(class as f32);
        }
    }
    (
        Tensor::from_vec(xy, &[2 * n, 2]).expect("2n x 2 points"),
        Tensor::from_vec(labels, &[2 * n, 1]).expect("2n labels"),
    )
}

/// A Linear layer's parameters, initialised as PyTorch does (U(-1/sqrt(in), 1/sqrt(in))).
fn linear(inp: usize, out: usize, rng: &mut ChaCha8Rng) -> [Var; 2] {
    let bound = 1.0 / (inp as f32).sqrt();
    [
        Var::parameter(Tensor::rand_uniform(&[inp, out], -bound, bound, rng)),
        Var::parameter(Tensor::rand_uniform(&[out], -bound, bound, rng)),
    ]
}

struct Report {
    first_loss: f32,
    last_loss: f32,
    accuracy: f32,
    seconds: f32,
}

fn train(steps: usize, verbose: bool) -> Result<Report> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (x, y) = spirals(200, &mut rng);
    let (x, y) = (Var::constant(x), Var::constant(y));
    let params: Vec<Var> = [
        linear(2, 64, &mut rng),
        linear(64, 64, &mut rng),
        linear(64, 1, &mut rng),
    ]
    .into_iter()
    .flatten()
    .collect();
    let forward = |x: &Var| -> Result<Var> {
        let h = x.matmul(&params[0])?.add(&params[1])?.tanh();
        let h = h.matmul(&params[2])?.add(&params[3])?.tanh();
        h.matmul(&params[4])?.add(&params[5])
    };
    let mut velocity: Vec<Tensor> = params.iter().map(|p| Tensor::zeros(&p.shape())).collect();
    let (lr, momentum) = (0.5f32, 0.9f32);
    let (mut first_loss, mut last_loss) = (f32::NAN, f32::NAN);
    let start = Instant::now();
    for step in 0..steps {
        let logits = forward(&x)?;
        // Binary cross entropy on logits: softplus(z) - y z, averaged.
        let loss = logits.softplus().sub(&logits.mul(&y)?)?.mean(&[], false)?;
        loss.backward()?;
        last_loss = loss.item()?;
        if step == 0 {
            first_loss = last_loss;
        }
        for (p, v) in params.iter().zip(&mut velocity) {
            let g = p.grad().expect("every parameter is used");
            for (vi, gi) in v.data_mut().iter_mut().zip(g.to_vec()) {
                *vi = momentum * *vi + gi;
            }
            let update = v.clone();
            p.update_value(|w| {
                for (wi, ui) in w.data_mut().iter_mut().zip(update.to_vec()) {
                    *wi -= lr * ui;
                }
            });
            p.zero_grad();
        }
        if verbose && (step % 200 == 0 || step + 1 == steps) {
            println!("step {step:5}  loss {last_loss:.4}");
        }
    }
    let logits = no_grad(|| forward(&x))?.value().to_vec();
    let labels = y.value().to_vec();
    let correct = logits
        .iter()
        .zip(&labels)
        .filter(|(z, l)| (**z > 0.0) == (**l > 0.5))
        .count();
    Ok(Report {
        first_loss,
        last_loss,
        accuracy: correct as f32 / labels.len() as f32,
        seconds: start.elapsed().as_secs_f32(),
    })
}

fn main() -> Result<()> {
    let steps = 2000;
    let r = train(steps, true)?;
    println!(
        "{steps} steps in {:.2} s: loss {:.4} -> {:.4}, training accuracy {:.1}%",
        r.seconds,
        r.first_loss,
        r.last_loss,
        100.0 * r.accuracy
    );
    Ok(())
}

#[test]
fn a_short_run_learns_the_spirals() {
    let r = train(600, false).unwrap();
    assert!(
        r.last_loss < 0.5 * r.first_loss,
        "loss {} -> {}",
        r.first_loss,
        r.last_loss
    );
    assert!(r.accuracy > 0.8, "accuracy {}", r.accuracy);
}
