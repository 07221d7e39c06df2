use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Element, Error, Forward, Module, Result, Tensor, Var};

/// Zeroes each element with probability `p` in training mode and scales the
/// rest by 1 / (1 - p); the identity in eval mode. Its masks come from its
/// own generator, seeded at construction, so runs repeat. That generator is
/// not part of the state dict (PyTorch's Dropout has none): a run resumed
/// from a checkpoint draws other masks than an uninterrupted one, so with
/// Dropout a resume is not bit-identical.
///
/// ```
/// use deepgen_nn::{Dropout, Forward, Module, Tensor, Var};
///
/// # fn main() -> deepgen_nn::Result<()> {
/// let drop = Dropout::new(0.5, 0)?;
/// let x = Var::<f32>::constant(Tensor::ones(&[1000]));
/// let y = drop.forward(&x)?.value().to_vec();
/// // Training: each element is 0 or 1 / (1 - p) = 2, about half of each.
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
/// let kept = y.iter().filter(|&&v| v == 2.0).count();
/// assert!((400..600).contains(&kept));
/// // Eval: the identity. (A layer without parameters is a module of every
/// // element type: name the one meant.)
/// Module::<f32>::eval(&drop);
/// assert_eq!(drop.forward(&x)?.value().to_vec(), x.value().to_vec());
/// # Ok(())
/// # }
/// ```
#[derive(Module)]
pub struct Dropout {
    pub p: f64,
    #[module(skip)]
    rng: Mutex<ChaCha8Rng>,
    #[module(training)]
    training: AtomicBool,
}

impl Dropout {
    pub fn new(p: f64, seed: u64) -> Result<Self> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::Invalid {
                op: "dropout",
                msg: format!("probability {p} is not in [0, 1]"),
            });
        }
        Ok(Dropout {
            p,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            training: AtomicBool::new(true),
        })
    }
}

impl<T: Element> Forward<T> for Dropout {
    fn forward(&self, x: &Var<T>) -> Result<Var<T>> {
        if !self.training.load(Ordering::Relaxed) || self.p == 0.0 {
            return Ok(x.clone());
        }
        let n = x.numel();
        let keep = 1.0 - self.p;
        let scale = if keep > 0.0 {
            T::of(1.0 / keep)
        } else {
            T::zero()
        };
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let mask: Vec<T> = (0..n)
            .map(|_| {
                if rng.random::<f64>() < keep {
                    scale
                } else {
                    T::zero()
                }
            })
            .collect();
        let mask = Var::constant(Tensor::from_vec(mask, &x.shape())?);
        Ok(x.mul(&mask)?)
    }

    /// Inference: dropout is the identity, no node at all.
    fn export(&self, _: &mut crate::export::Graph, x: &str) -> Result<String> {
        Ok(x.to_string())
    }
}
