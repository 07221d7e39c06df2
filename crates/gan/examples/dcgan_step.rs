//! Times DCGAN training iterations for benches/gan_compare.py: the 28x28
//! nets of the GAN issue, batch 64, pytorch/examples' dcgan step (D on real
//! and on the detached fake batch, then G through D on the same fake batch;
//! Adam 2e-4, betas (0.5, 0.999)). Prints "ms <float>" per timed iteration
//! after 5 warm-up iterations.
//!
//!     RAYON_NUM_THREADS=2 cargo run --release -p deepgen-gan --example dcgan_step -- --iters 60

use std::time::Instant;

use deepgen_autograd::{Tensor, Var};
use deepgen_gan::trainer::{discriminator_step, generator_step, TrainConfig};
use deepgen_gan::{DcganConfig, DcganDiscriminator, DcganGenerator, Generator};
use deepgen_nn::Module;
use deepgen_optim::{Adam, AdamConfig};
use deepgen_train::Updater;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn main() -> deepgen_gan::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let iters = args
        .iter()
        .position(|a| a == "--iters")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(60usize);
    let config = DcganConfig::default();
    let g: DcganGenerator = DcganGenerator::new(&config, 0)?;
    let d: DcganDiscriminator = DcganDiscriminator::new(&config, 1)?;
    let train = TrainConfig::default();
    let adam = |name: &str, params| -> deepgen_gan::Result<Updater> {
        let cfg = AdamConfig {
            lr: 2e-4,
            betas: (0.5, 0.999),
            ..Default::default()
        };
        Ok(Updater::new(
            name,
            Box::new(Adam::new(params, cfg)?),
            &train.step,
            1,
            1,
        )?)
    };
    let mut opt_g = adam("generator", g.parameters())?;
    let mut opt_d = adam("discriminator", d.parameters())?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let real = Tensor::rand_uniform(&[64, 1, 28, 28], -1.0, 1.0, &mut rng);
    for i in 0..iters + 5 {
        let start = Instant::now();
        let z = Var::constant(Tensor::randn(&[64, g.latent_dim()], 0.0, 1.0, &mut rng));
        let fake = g.generate(&z, None)?;
        let share = deepgen_data::Share::whole(64);
        discriminator_step(
            &d,
            &mut opt_d,
            &real,
            &fake.value(),
            None,
            &train,
            &mut rng,
            share,
        )?;
        generator_step(&d, &mut opt_g, fake, None, train.loss)?;
        if i >= 5 {
            println!("ms {:.3}", start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(())
}
