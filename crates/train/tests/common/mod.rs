//! The task the runtime's tests train: a line fitted by SGD, small enough
//! to reason about (shared by `fit.rs` and `interrupt.rs`, which needs a
//! process of its own).

use std::sync::Arc;

use deepgen_train::prelude::*;
use deepgen_train::Result;

/// y = w x fitted to y = 2 x; `held_out` scripts the metric per epoch.
pub struct Line {
    pub w: Linear,
    pub updater: Updater,
    held_out: Vec<f64>,
}

impl Task for Line {
    fn step_columns(&self) -> Vec<String> {
        vec!["loss".into()]
    }

    fn epoch_columns(&self) -> Vec<String> {
        vec!["held_out".into()]
    }

    fn step(&mut self, batch: Batch, _at: At) -> Result<StepValues> {
        let n = batch.indices.len();
        let x = Var::constant(batch.images.reshape(&[n, 1])?);
        let y = x.mul_scalar(2.0);
        let loss = self
            .w
            .forward(&x)?
            .sub(&y)?
            .square()
            .sum_all()?
            .mul_scalar(1.0 / n as f32);
        let (v, _) = self.updater.backward_step(loss)?;
        Ok(StepValues::new(n, vec![Some(v)]))
    }

    fn end_epoch(&mut self, epoch: usize) -> Result<Vec<Option<f64>>> {
        Ok(vec![self.held_out.get(epoch).copied()])
    }

    fn modules(&self) -> Vec<(String, &dyn Module)> {
        vec![("line".into(), &self.w as &dyn Module)]
    }

    fn updaters(&mut self) -> Vec<&mut Updater> {
        vec![&mut self.updater]
    }
}

pub fn line(held_out: &[f64], step: &StepConfig, epochs: usize) -> Line {
    let w = Linear::new(1, 1, false, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    let sgd = Sgd::new(
        w.parameters(),
        SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
    )
    .unwrap();
    let updater = Updater::new("line", Box::new(sgd), step, 4, epochs).unwrap();
    Line {
        w,
        updater,
        held_out: held_out.to_vec(),
    }
}

/// `items` values i / items in batches of 4.
pub fn loader_of(items: usize) -> DataLoader {
    let xs: Vec<f32> = (0..items).map(|i| i as f32 / items as f32).collect();
    let data = deepgen_data::InMemory::new(deepgen_data::Pixels::F32(xs), &[1], None).unwrap();
    let config = LoaderConfig {
        batch_size: 4,
        scale: Scale::Raw,
        ..Default::default()
    };
    DataLoader::new(Arc::new(data), config).unwrap()
}
