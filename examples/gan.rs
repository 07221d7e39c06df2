//! A small GAN (Goodfellow et al. 2014) written as a deepgen user writes
//! one: two MLPs, two optimizers and PyTorch's usual alternating loop, on
//! the built-in ring of 8 Gaussians. It prints how many of the 8 modes the
//! generator's samples reach and how many samples land near a mode.
//!
//!     cargo run --release -p deepgen-examples --example gan -- [STEPS]

use std::sync::Arc;

use deepgen_data::prelude::*;
use deepgen_nn::prelude::*;
use deepgen_optim::prelude::*;

const NOISE: usize = 8;
const HIDDEN: usize = 128;

fn mlp(
    inputs: usize,
    outputs: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Sequential, deepgen_nn::Error> {
    Ok(Sequential::new()
        .add(Linear::new(inputs, HIDDEN, true, rng)?)
        .add(Relu)
        .add(Linear::new(HIDDEN, HIDDEN, true, rng)?)
        .add(Relu)
        .add(Linear::new(HIDDEN, outputs, true, rng)?))
}

/// Binary cross entropy of the discriminator's logits against one label.
fn bce(logits: &Var, label: f32) -> Result<Var, deepgen_nn::Error> {
    let target = Var::constant(Tensor::full(&logits.shape(), label));
    loss::bce_with_logits(logits, &target, None, Reduction::Mean)
}

/// Modes reached (by at least 1% of the samples) and the share of samples
/// within 0.1 of a mode (four standard deviations of the data).
fn coverage(samples: &[f32]) -> (usize, f32) {
    let centres = synthetic::ring8_centres();
    let mut hits = vec![0usize; centres.len()];
    for p in samples.chunks_exact(2) {
        let d = |c: &(f32, f32)| (p[0] - c.0).hypot(p[1] - c.1);
        let (k, c) = centres
            .iter()
            .enumerate()
            .min_by(|a, b| d(a.1).total_cmp(&d(b.1)))
            .unwrap();
        if d(c) < 0.1 {
            hits[k] += 1;
        }
    }
    let n = samples.len() / 2;
    let modes = hits.iter().filter(|&&h| h * 100 >= n).count();
    (modes, hits.iter().sum::<usize>() as f32 / n as f32)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps: usize = std::env::args().nth(1).map_or(Ok(5000), |s| s.parse())?;
    let data = Arc::new(synthetic::ring8(20_000, 0)?);
    let loader = DataLoader::new(
        data,
        LoaderConfig {
            drop_last: true,
            ..Default::default()
        },
    )?;

    let rng = &mut ChaCha8Rng::seed_from_u64(0);
    let (g, d) = (mlp(NOISE, 2, rng)?, mlp(2, 1, rng)?);
    let config = AdamConfig {
        lr: 1e-3,
        betas: (0.5, 0.999),
        ..Default::default()
    };
    let (mut opt_g, mut opt_d) = (
        Adam::new(g.parameters(), config)?,
        Adam::new(d.parameters(), config)?,
    );
    let (mut step, mut epoch) = (0, 0);
    while step < steps {
        for batch in loader.epoch(epoch) {
            let real = Var::constant(batch?.images);
            let noise = Var::constant(Tensor::randn(&[real.shape()[0], NOISE], 0.0, 1.0, rng));
            let fake = g.forward(&noise)?;

            // The discriminator: real towards 1, (detached) fakes towards 0.
            let loss_d = bce(&d.forward(&real)?, 1.0)? + bce(&d.forward(&fake.detach())?, 0.0)?;
            opt_d.zero_grad();
            loss_d.backward()?;
            drop(loss_d);
            opt_d.step()?;

            // The generator: its fakes towards 1 (the non-saturating loss).
            let loss_g = bce(&d.forward(&fake)?, 1.0)?;
            opt_g.zero_grad();
            loss_g.backward()?;
            if step % 500 == 0 {
                println!("step {step}: generator loss {:.3}", loss_g.item()?);
            }
            drop((loss_g, fake));
            opt_g.step()?;
            step += 1;
            if step == steps {
                break;
            }
        }
        epoch += 1;
    }

    let _no_grad = NoGradGuard::new();
    let noise = Var::constant(Tensor::randn(&[2000, NOISE], 0.0, 1.0, rng));
    let (modes, near) = coverage(&g.forward(&noise)?.value().to_vec());
    println!(
        "after {steps} steps: {modes} of 8 modes reached, {:.0}% of samples near a mode",
        100.0 * near
    );
    Ok(())
}
