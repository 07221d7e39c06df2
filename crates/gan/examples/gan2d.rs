//! The 2-D mode-coverage benchmark over several seeds, for tuning defaults:
//!
//! ```text
//! cargo run --release -p deepgen-gan --example gan2d -- ring8 seeds=5 steps=5000 lr=1e-3 ...
//! ```
//!
//! Options (key=value): seeds, steps, epochs, batch, lr, lr_d, beta1, n_critic,
//! decay (true: linear lr decay), r1, ema, hidden (G and D width), layers, latent, loss,
//! dump (write each seed's samples to DUMP-SEED.csv).

use std::time::Instant;

use deepgen_gan::eval2d::{run, Bench2dConfig, Mixture2d};
use deepgen_gan::GanLoss;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mixture: Mixture2d = args.next().unwrap_or_else(|| "ring8".into()).parse()?;
    let mut cfg = Bench2dConfig::for_mixture(mixture);
    let mut seeds = 5u64;
    let mut dump: Option<String> = None;
    for a in args {
        let (k, v) = a.split_once('=').ok_or("options are key=value")?;
        match k {
            "seeds" => seeds = v.parse()?,
            "dump" => dump = Some(v.into()),
            "steps" => cfg.steps = v.parse()?,
            "epochs" => cfg.train.run.epochs = v.parse()?,
            "batch" => cfg.train.batch_size = v.parse()?,
            "lr" => cfg.train.lr = v.parse()?,
            "lr_d" => cfg.train.lr_d = Some(v.parse()?),
            "decay" => {
                cfg.train.step.schedule = match v.parse::<bool>()? {
                    true => deepgen_train::Schedule::Linear,
                    false => deepgen_train::Schedule::Constant,
                }
            }
            "beta1" => cfg.train.optimizer.betas.0 = v.parse()?,
            "n_critic" => cfg.train.n_critic = v.parse()?,
            "r1" => cfg.train.r1_gamma = Some(v.parse()?),
            "ema" => cfg.train.ema_decay = Some(v.parse()?),
            "loss" => cfg.train.loss = v.parse::<GanLoss>()?,
            "latent" => cfg.model.latent = v.parse()?,
            "hidden" | "layers" => {
                let layers = if k == "layers" {
                    v.parse()?
                } else {
                    cfg.model.g_hidden.len()
                };
                let width = if k == "hidden" {
                    v.parse()?
                } else {
                    cfg.model.g_hidden[0]
                };
                cfg.model.g_hidden = vec![width; layers];
                cfg.model.d_hidden = vec![width; layers];
            }
            _ => return Err(format!("unknown option {k}").into()),
        }
    }
    let dir = std::env::temp_dir().join(format!("deepgen-gan2d-{}", std::process::id()));
    cfg.train.run.out_dir = dir.clone();
    println!("{} {cfg:?}", mixture.name());
    let (mut modes, mut hq) = (0.0, 0.0);
    for seed in 0..seeds {
        let start = Instant::now();
        let r = run(&cfg, seed)?;
        println!(
            "seed {seed}: {}/{} modes, {:.1}% high quality, {:.1} s",
            r.coverage.modes,
            r.coverage.total_modes,
            100.0 * r.coverage.high_quality,
            start.elapsed().as_secs_f64()
        );
        if let Some(prefix) = &dump {
            let text: String = r
                .samples
                .contiguous()
                .to_vec()
                .chunks_exact(2)
                .map(|p| format!("{},{}\n", p[0], p[1]))
                .collect();
            std::fs::write(format!("{prefix}-{seed}.csv"), text)?;
        }
        modes += r.coverage.modes as f64;
        hq += r.coverage.high_quality;
    }
    println!(
        "mean over {seeds} seeds: {:.2} modes, {:.1}% high quality",
        modes / seeds as f64,
        100.0 * hq / seeds as f64
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
