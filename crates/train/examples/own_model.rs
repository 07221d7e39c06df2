//! A model of your own on deepgen's runtime: a small VAE on the built-in
//! synthetic digits. `#[derive(Module)]` names its state, a `Task` is its
//! step, and `fit` does the rest: run directory, checkpoints with exact
//! resume, metrics, TensorBoard, the non-finite-loss stop.
//!
//!     cargo run --release -p deepgen-train --example own_model -- [EPOCHS] [OUT]

use std::sync::Arc;

use deepgen_train::prelude::*;
use deepgen_train::Result;

#[derive(Module)]
struct TinyVae {
    enc: Linear,
    mu: Linear,
    logvar: Linear,
    dec: Linear,
}

impl TinyVae {
    /// Negative ELBO per image of a batch x [n, 784], with noise eps [n, 8].
    fn loss(&self, x: &Var, eps: &Var) -> Result<Var> {
        let h = self.enc.forward(x)?.relu();
        let (mu, logvar) = (self.mu.forward(&h)?, self.logvar.forward(&h)?);
        let z = mu.add(&logvar.mul_scalar(0.5).exp().mul(eps)?)?;
        let rec = loss::bce_with_logits(&self.dec.forward(&z)?, x, None, loss::Reduction::Sum)?;
        // KL(q || N(0, I)) = -1/2 sum(1 + logvar - mu^2 - e^logvar)
        let kl = logvar
            .add_scalar(1.0)
            .sub(&mu.square())?
            .sub(&logvar.exp())?;
        let n = x.shape()[0] as f32;
        Ok(rec.sub(&kl.sum_all()?.mul_scalar(0.5))?.mul_scalar(1.0 / n))
    }
}

/// The model, its optimizer and the noise generator.
struct VaeTask(TinyVae, Updater, ChaCha8Rng);

impl Task for VaeTask {
    fn step_columns(&self) -> Vec<String> {
        vec!["loss".into()]
    }

    fn step(&mut self, batch: Batch, _at: At) -> Result<StepValues> {
        let n = batch.indices.len();
        let x = Var::constant(batch.images.reshape(&[n, 784])?);
        let eps = Var::constant(Tensor::randn(&[n, 8], 0.0, 1.0, &mut self.2));
        let (loss, _) = self.1.backward_step(self.0.loss(&x, &eps)?)?;
        Ok(StepValues::new(n, vec![Some(loss)]))
    }

    // What the checkpoint holds: modules, updaters and noise generators.
    fn modules(&self) -> Vec<(String, &dyn Module)> {
        vec![("model".into(), &self.0 as &dyn Module)]
    }

    fn updaters(&mut self) -> Vec<&mut Updater> {
        vec![&mut self.1]
    }

    fn rngs(&mut self) -> Vec<(String, &mut ChaCha8Rng)> {
        vec![("noise".into(), &mut self.2)]
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let epochs: usize = args.next().map_or(Ok(3), |e| e.parse())?;
    let mut config = RunConfig::new(args.next().unwrap_or("runs/own_model".into()), epochs);
    config.start = Start::Force; // start over when run again
    let rng = &mut ChaCha8Rng::seed_from_u64(0);
    let model = TinyVae {
        enc: Linear::new(784, 128, true, rng)?,
        mu: Linear::new(128, 8, true, rng)?,
        logvar: Linear::new(128, 8, true, rng)?,
        dec: Linear::new(8, 784, true, rng)?,
    };
    let adam = Box::new(Adam::new(model.parameters(), AdamConfig::default())?);
    let data = Arc::new(synthetic::digits(2000, 0)?);
    let loader = DataLoader::new(data, LoaderConfig::default())?; // batches of 128 in [0, 1]
    let batches = loader.num_batches();
    let updater = Updater::new("model", adam, &StepConfig::default(), batches, epochs)?;
    let noise = ChaCha8Rng::seed_from_u64(1);
    let mut task = VaeTask(model, updater, noise);
    let record = serde_json::json!({ "epochs": epochs }); // config.json
    for e in fit(&mut task, &loader, &config, &record, &mut [])?.history {
        println!(
            "epoch {}: {:.2} nats per image",
            e.epoch + 1,
            e.get("loss").unwrap()
        );
    }
    Ok(())
}
