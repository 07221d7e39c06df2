//! A conditional VAE (Sohn et al. 2015) written as a deepgen user writes
//! one: its own model struct, its own loop, no training runtime. Trains on
//! the built-in synthetic digits, or on MNIST's IDX files when given their
//! folder (images 0..8999 train, 9000..9999 are held out), then draws each
//! digit class from the prior as text.
//!
//!     cargo run --release -p deepgen-examples --example cvae -- [EPOCHS] [MNIST_DIR]

use std::sync::Arc;

use deepgen_data::prelude::*;
use deepgen_nn::prelude::*;
use deepgen_optim::prelude::*;

const CLASSES: usize = 10;
const LATENT: usize = 16;

#[derive(Module)]
struct Cvae {
    enc: Linear,
    mu: Linear,
    logvar: Linear,
    dec: Linear,
    out: Linear,
}

impl Cvae {
    fn new(rng: &mut ChaCha8Rng) -> Result<Self, deepgen_nn::Error> {
        Ok(Cvae {
            enc: Linear::new(784 + CLASSES, 400, true, rng)?,
            mu: Linear::new(400, LATENT, true, rng)?,
            logvar: Linear::new(400, LATENT, true, rng)?,
            dec: Linear::new(LATENT + CLASSES, 400, true, rng)?,
            out: Linear::new(400, 784, true, rng)?,
        })
    }

    /// Pixel logits of z [n, LATENT] given the one-hot labels y [n, 10].
    fn decode(&self, z: &Var, y: &Var) -> Result<Var, deepgen_nn::Error> {
        let h = self
            .dec
            .forward(&Var::concat(&[z.clone(), y.clone()], 1)?)?;
        self.out.forward(&h.relu())
    }

    /// The negative ELBO per image of x [n, 784] with labels y, noise eps.
    fn loss(&self, x: &Var, y: &Var, eps: &Var) -> Result<Var, deepgen_nn::Error> {
        let h = self
            .enc
            .forward(&Var::concat(&[x.clone(), y.clone()], 1)?)?
            .relu();
        let (mu, logvar) = (self.mu.forward(&h)?, self.logvar.forward(&h)?);
        let z = &mu + (&logvar * 0.5).exp() * eps;
        let rec = loss::bce_with_logits(&self.decode(&z, y)?, x, None, Reduction::Sum)?;
        // KL(q(z|x,y) || N(0, I)) = -1/2 sum(1 + logvar - mu^2 - e^logvar)
        let kl = (1.0 + &logvar - mu.square() - logvar.exp()).sum_all()? * -0.5;
        Ok((rec + kl) / x.shape()[0] as f32)
    }
}

/// A batch as the model takes it: flat images, one-hot labels, fresh noise.
fn inputs(batch: &Batch, rng: &mut ChaCha8Rng) -> Result<[Var; 3], Box<dyn std::error::Error>> {
    let n = batch.indices.len();
    let labels = batch
        .labels
        .as_deref()
        .ok_or("the data set has no labels")?;
    Ok([
        Var::constant(batch.images.reshape(&[n, 784])?),
        one_hot(labels, CLASSES)?,
        Var::constant(Tensor::randn(&[n, LATENT], 0.0, 1.0, rng)),
    ])
}

type Split = (Arc<dyn Dataset>, Arc<dyn Dataset>);

/// The training and held-out parts.
fn data(dir: Option<String>) -> Result<Split, deepgen_data::Error> {
    let all: Arc<dyn Dataset> = match dir {
        // MNIST's test split (10k images): the usual 9000 / 1000 protocol.
        Some(dir) => Arc::new(idx::load_split(dir.as_ref(), false)?),
        None => Arc::new(synthetic::digits(6000, 0)?),
    };
    let cut = all.len() * 9 / 10;
    Ok((
        Arc::new(Subset::new(all.clone(), 0..cut)?),
        Arc::new(Subset::new(all.clone(), cut..all.len())?),
    ))
}

/// The mean negative ELBO over a held-out set, without recording a graph.
fn held_out(model: &Cvae, data: &DataLoader) -> Result<f32, Box<dyn std::error::Error>> {
    let _no_grad = NoGradGuard::new();
    let rng = &mut ChaCha8Rng::seed_from_u64(7); // the same noise every epoch
    let (mut sum, mut n) = (0.0, 0);
    for batch in data.epoch(0) {
        let batch = batch?;
        let [x, y, eps] = inputs(&batch, rng)?;
        sum += model.loss(&x, &y, &eps)?.item()? * batch.indices.len() as f32;
        n += batch.indices.len();
    }
    Ok(sum / n as f32)
}

/// Each digit class decoded from the prior's mean, drawn as text at half
/// resolution, five classes a row.
fn draw_classes(model: &Cvae) -> Result<(), Box<dyn std::error::Error>> {
    let _no_grad = NoGradGuard::new();
    let z = Var::constant(Tensor::zeros(&[CLASSES, LATENT]));
    let labels: Vec<usize> = (0..CLASSES).collect();
    let logits = model.decode(&z, &one_hot(&labels, CLASSES)?)?;
    let pixels = logits.sigmoid().value().to_vec();
    for classes in [0..5, 5..10] {
        for row in (0..28).step_by(2) {
            let line: Vec<String> = classes
                .clone()
                .map(|c| {
                    // A cell has ink when any of its 2x2 pixels has.
                    let at = |r: usize, col: usize| pixels[c * 784 + r * 28 + col];
                    let ink = |col: usize| {
                        [
                            (row, col),
                            (row, col + 1),
                            (row + 1, col),
                            (row + 1, col + 1),
                        ]
                        .iter()
                        .any(|&(r, c)| at(r, c) > 0.5)
                    };
                    (0..28)
                        .step_by(2)
                        .map(|col| if ink(col) { '#' } else { '.' })
                        .collect()
                })
                .collect();
            println!("{}", line.join("  "));
        }
        println!();
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let epochs: usize = args.next().map_or(Ok(10), |e| e.parse())?;
    let (train, test) = data(args.next())?;
    let train = DataLoader::new(train, LoaderConfig::default())?;
    let test_config = LoaderConfig {
        shuffle: false,
        ..LoaderConfig::default()
    };
    let test = DataLoader::new(test, test_config)?;

    let rng = &mut ChaCha8Rng::seed_from_u64(0);
    let model = Cvae::new(rng)?;
    let mut adam = Adam::new(
        model.parameters(),
        AdamConfig {
            lr: 1e-3,
            ..Default::default()
        },
    )?;
    for epoch in 0..epochs as u64 {
        let (mut sum, mut n) = (0.0, 0);
        for batch in train.epoch(epoch) {
            let batch = batch?;
            let [x, y, eps] = inputs(&batch, rng)?;
            let loss = model.loss(&x, &y, &eps)?;
            adam.zero_grad();
            loss.backward()?;
            sum += loss.item()? * batch.indices.len() as f32;
            n += batch.indices.len();
            // The graph holds views of the weights: drop it before the
            // in-place update, or the step copies every weight first.
            drop(loss);
            adam.step()?;
        }
        let held = held_out(&model, &test)?;
        println!(
            "epoch {}: train {:.2}, held out {held:.2} nats per image",
            epoch + 1,
            sum / n as f32
        );
    }
    draw_classes(&model)
}
