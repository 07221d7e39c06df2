//! A model of your own on deepgen's runtime: a small VAE on the built-in
//! synthetic digits, `#[derive(Module)]` for its state, a `Task` for its
//! step, and `fit` for everything else (run directory, checkpoints and
//! exact resume, metrics, TensorBoard, the non-finite-loss stop).
//!
//!     cargo run --release -p deepgen-train --example own_model -- [EPOCHS] [OUT]

use std::sync::Arc;

use deepgen_data::{synthetic, Batch, DataLoader, LoaderConfig, Scale};
use deepgen_nn::prelude::*;
use deepgen_nn::{loss, Linear, Tensor, Var};
use deepgen_optim::{Adam, AdamConfig};
use deepgen_train::{fit, At, Checkpoint, Restored, RunConfig, Start, StepValues, Task, Updater};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[derive(Module)]
struct TinyVae {
    enc: Linear,
    mu: Linear,
    logvar: Linear,
    dec: Linear,
    out: Linear,
}

struct VaeTask {
    model: TinyVae,
    updater: Updater,
    noise: ChaCha8Rng,
}

impl Task for VaeTask {
    fn step_columns(&self) -> Vec<String> {
        vec!["loss".into()]
    }

    fn step(&mut self, batch: Batch, _at: At) -> deepgen_train::Result<StepValues> {
        let (m, n) = (&self.model, batch.indices.len());
        let x = Var::constant(batch.images.reshape(&[n, 784])?);
        let h = m.enc.forward(&x)?.relu();
        let (mu, logvar) = (m.mu.forward(&h)?, m.logvar.forward(&h)?);
        let eps = Var::constant(Tensor::randn(&[n, 8], 0.0, 1.0, &mut self.noise));
        let z = mu.add(&logvar.mul_scalar(0.5).exp().mul(&eps)?)?;
        let logits = m.out.forward(&m.dec.forward(&z)?.relu())?;
        let rec = loss::bce_with_logits(&logits, &x, None, loss::Reduction::Sum)?;
        // KL(q || N(0, I)) = -0.5 sum(1 + logvar - mu^2 - e^logvar)
        let kl = logvar
            .add_scalar(1.0)
            .sub(&mu.square())?
            .sub(&logvar.exp())?;
        let total = rec
            .sub(&kl.sum_all()?.mul_scalar(0.5))?
            .mul_scalar(1.0 / n as f32);
        let (value, _) = self.updater.backward_step(total)?;
        Ok(StepValues {
            items: n,
            values: vec![Some(value)],
        })
    }

    fn updaters(&mut self) -> Vec<&mut Updater> {
        vec![&mut self.updater]
    }

    fn save(&self, c: &mut Checkpoint) -> deepgen_train::Result<()> {
        c.module("model", &self.model, Default::default())?;
        c.updater(&self.updater)?;
        c.rng("noise", &self.noise);
        Ok(())
    }

    fn restore(&mut self, r: &Restored) -> deepgen_train::Result<()> {
        r.module("model", &self.model)?;
        r.updater(&mut self.updater)?;
        r.rng("noise", &mut self.noise)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let epochs: usize = args.next().map_or(Ok(3), |e| e.parse())?;
    let out = args.next().unwrap_or_else(|| "runs/own_model".into());
    let rng = &mut ChaCha8Rng::seed_from_u64(0);
    let model = TinyVae {
        enc: Linear::new(784, 128, true, rng)?,
        mu: Linear::new(128, 8, true, rng)?,
        logvar: Linear::new(128, 8, true, rng)?,
        dec: Linear::new(8, 128, true, rng)?,
        out: Linear::new(128, 784, true, rng)?,
    };
    let adam = Adam::new(model.parameters(), AdamConfig::default())?;
    let data = Arc::new(synthetic::digits(2000, 0)?);
    let loader = DataLoader::new(
        data,
        LoaderConfig {
            scale: Scale::ZeroOne,
            ..Default::default()
        },
    )?;
    let updater = Updater::new(
        "model",
        Box::new(adam),
        &Default::default(),
        loader.num_batches(),
        epochs,
    )?;
    let mut task = VaeTask {
        model,
        updater,
        noise: ChaCha8Rng::seed_from_u64(1),
    };
    let config = RunConfig {
        out_dir: out.into(),
        epochs,
        start: Start::Force,
        ..Default::default()
    };
    let fitted = fit(
        &mut task,
        &loader,
        &config,
        &serde_json::json!({ "epochs": epochs }),
        &mut [],
    )?;
    for e in &fitted.history {
        println!(
            "epoch {}: loss {:.2} nats/image",
            e.epoch + 1,
            e.get("loss").unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
