//! Measures what the buffer pool saves on a training step of the MLP VAE
//! (784-400-20, batch 128): time per step and minor page faults per step,
//! with the pool on and off. Run with one thread for stable numbers:
//!
//!     RAYON_NUM_THREADS=1 cargo run --release -p deepgen-benches --example alloc_churn

use std::time::Instant;

use deepgen_autograd::{Result, Tensor, Var};
use deepgen_benches::randn;
use deepgen_tensor::storage::set_pool_limit_bytes;

/// Minor page faults of this process so far (Linux; 0 elsewhere).
fn minor_faults() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; minflt is the 10th field overall.
            let rest = s.rsplit_once(')')?.1;
            rest.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}

struct Vae {
    params: Vec<Var>,
}

impl Vae {
    fn new() -> Self {
        let shapes: [&[usize]; 10] = [
            &[784, 400],
            &[400],
            &[400, 20],
            &[20],
            &[400, 20],
            &[20],
            &[20, 400],
            &[400],
            &[400, 784],
            &[784],
        ];
        let params = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| Var::parameter(randn::<f32>(s, i as u64).mul_scalar_t(0.05)))
            .collect();
        Vae { params }
    }

    fn step(&self, x: &Var, eps: &Var) -> Result<f32> {
        let p = &self.params;
        let h = x.matmul(&p[0])?.add(&p[1])?.relu();
        let mu = h.matmul(&p[2])?.add(&p[3])?;
        let logvar = h.matmul(&p[4])?.add(&p[5])?;
        let z = mu.add(&logvar.mul_scalar(0.5).exp().mul(eps)?)?;
        let h3 = z.matmul(&p[6])?.add(&p[7])?.relu();
        let logits = h3.matmul(&p[8])?.add(&p[9])?;
        let bce = logits.softplus().sub(&logits.mul(x)?)?.sum_all()?;
        let kl = logvar
            .add_scalar(1.0)
            .sub(&mu.square())?
            .sub(&logvar.exp())?
            .sum_all()?
            .mul_scalar(-0.5);
        let loss = bce.add(&kl)?;
        loss.backward()?;
        for w in p {
            let g = w.grad().expect("used");
            w.update_value(|v| {
                for (vi, gi) in v
                    .data_mut()
                    .iter_mut()
                    .zip(g.as_slice().expect("contiguous"))
                {
                    *vi -= 1e-4 * gi;
                }
            });
            w.zero_grad();
        }
        loss.item()
    }
}

trait MulScalar {
    fn mul_scalar_t(&self, s: f32) -> Tensor;
}

impl MulScalar for Tensor {
    fn mul_scalar_t(&self, s: f32) -> Tensor {
        deepgen_kernels::mul_scalar(self, s)
    }
}

fn run(label: &str, pool_bytes: usize) -> Result<()> {
    set_pool_limit_bytes(pool_bytes);
    let vae = Vae::new();
    let x = Var::constant(deepgen_kernels::sigmoid(&randn::<f32>(&[128, 784], 100)));
    let eps = Var::constant(randn::<f32>(&[128, 20], 101));
    for _ in 0..20 {
        vae.step(&x, &eps)?;
    }
    let steps = 300;
    let faults = minor_faults();
    let start = Instant::now();
    for _ in 0..steps {
        vae.step(&x, &eps)?;
    }
    let per_step = start.elapsed().as_secs_f64() / steps as f64;
    let faults = (minor_faults() - faults) as f64 / steps as f64;
    println!(
        "{label:>9}: {:.3} ms per step, {faults:.1} minor page faults per step",
        per_step * 1e3
    );
    Ok(())
}

fn main() -> Result<()> {
    run("pool off", 0)?;
    run("pool on", 1 << 30)?;
    Ok(())
}
