//! The DataLoader: seeded shuffling, batching, scaling, and a background
//! thread that prepares the next batch while the current one trains.

use std::sync::mpsc;
use std::sync::Arc;

use deepgen_tensor::storage::Buffer;
use deepgen_tensor::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{Dataset, Error, Result, Scale};

/// Loader settings, with PyTorch-like defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub shuffle: bool,
    /// Epoch `e` shuffles with a generator seeded by (seed, e): the same seed
    /// gives the same order, and a resumed run continues it exactly.
    pub seed: u64,
    pub drop_last: bool,
    pub scale: Scale,
    /// Prepare the next batch on a background thread.
    pub prefetch: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 128,
            shuffle: true,
            seed: 0,
            drop_last: false,
            scale: Scale::ZeroOne,
            prefetch: true,
        }
    }
}

/// One batch: items stacked as [batch, item shape..], their labels, and their indices.
#[derive(Debug, Clone)]
pub struct Batch {
    pub images: Tensor<f32>,
    pub labels: Option<Vec<usize>>,
    pub indices: Vec<usize>,
}

/// Batches of a data set, epoch after epoch.
///
/// ```
/// use std::sync::Arc;
/// use deepgen_data::{synthetic, DataLoader, Dataset, LoaderConfig};
///
/// # fn main() -> deepgen_data::Result<()> {
/// // 10 points of the ring of 8 Gaussians: items [2], labelled by mode.
/// let data: Arc<dyn Dataset> = Arc::new(synthetic::ring8(10, 0)?);
/// let config = LoaderConfig { batch_size: 4, seed: 7, ..Default::default() };
/// let loader = DataLoader::new(data, config)?;
/// assert_eq!(loader.num_batches(), 3); // 4 + 4 + 2
/// let mut seen = Vec::new();
/// for batch in loader.epoch(0) {
///     let batch = batch?;
///     let rows = batch.images.shape()[0];
///     assert_eq!(batch.images.shape(), [rows, 2]);
///     assert_eq!(batch.labels.as_ref().map(|l| l.len()), Some(rows));
///     seen.extend(batch.indices);
/// }
/// // Every item once, shuffled from the seed: the same order every time.
/// assert_eq!(seen, loader.order(0));
/// seen.sort();
/// assert_eq!(seen, (0..10).collect::<Vec<_>>());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DataLoader {
    dataset: Arc<dyn Dataset>,
    config: LoaderConfig,
}

impl DataLoader {
    pub fn new(dataset: Arc<dyn Dataset>, config: LoaderConfig) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(Error::Invalid {
                op: "data_loader",
                msg: "batch size must be positive".into(),
            });
        }
        Ok(DataLoader { dataset, config })
    }

    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Number of batches per epoch.
    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.dataset.len(), self.config.batch_size);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The item order of epoch `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.config.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(
                self.config.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            order.shuffle(&mut rng);
        }
        order
    }

    /// The batches of epoch `epoch`, in order.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        self.epoch_from(epoch, 0)
    }

    /// The batches of epoch `epoch` after the first `skip` (which are not
    /// gathered): where an interrupted run resumes inside an epoch.
    pub fn epoch_from(&self, epoch: u64, skip: usize) -> EpochIter {
        let order = self.order(epoch);
        let mut chunks: Vec<Vec<usize>> = order
            .chunks(self.config.batch_size)
            .map(|c| c.to_vec())
            .collect();
        if self.config.drop_last
            && chunks
                .last()
                .is_some_and(|c| c.len() < self.config.batch_size)
        {
            chunks.pop();
        }
        chunks.drain(..skip.min(chunks.len()));
        if !self.config.prefetch {
            return EpochIter {
                inner: Inner::Direct {
                    loader: self.clone(),
                    chunks: chunks.into_iter(),
                },
            };
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let loader = self.clone();
        std::thread::spawn(move || {
            for c in chunks {
                // A closed channel means the consumer stopped early.
                if tx.send(loader.batch(c)).is_err() {
                    break;
                }
            }
        });
        EpochIter {
            inner: Inner::Prefetch(rx),
        }
    }

    /// Gathers and scales the items `indices` into one batch.
    pub fn batch(&self, indices: Vec<usize>) -> Result<Batch> {
        let mut shape = vec![indices.len()];
        shape.extend(self.dataset.item_shape());
        let mut buf = Buffer::for_overwrite(shape.iter().product());
        self.dataset.gather(&indices, self.config.scale, &mut buf)?;
        let labels = self.dataset.num_classes().map(|_| {
            indices
                .iter()
                .map(|&i| self.dataset.label(i).unwrap_or(0))
                .collect()
        });
        Ok(Batch {
            images: Tensor::from_buffer(buf, &shape)?,
            labels,
            indices,
        })
    }
}

enum Inner {
    Direct {
        loader: DataLoader,
        chunks: std::vec::IntoIter<Vec<usize>>,
    },
    Prefetch(mpsc::Receiver<Result<Batch>>),
}

/// The batches of one epoch.
pub struct EpochIter {
    inner: Inner,
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Direct { loader, chunks } => chunks.next().map(|c| loader.batch(c)),
            Inner::Prefetch(rx) => rx.recv().ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InMemory, Pixels};

    fn data(n: usize) -> Arc<dyn Dataset> {
        let px: Vec<u8> = (0..n * 2).map(|i| (i % 256) as u8).collect();
        Arc::new(
            InMemory::new(
                Pixels::U8(px),
                &[2],
                Some(((0..n).map(|i| (i % 3) as u16).collect(), 3)),
            )
            .unwrap(),
        )
    }

    #[test]
    fn an_epoch_visits_every_item_once_in_a_seeded_order() {
        let cfg = LoaderConfig {
            batch_size: 4,
            seed: 9,
            ..Default::default()
        };
        let l = DataLoader::new(data(10), cfg).unwrap();
        let batches: Vec<Batch> = l.epoch(0).collect::<Result<_>>().unwrap();
        assert_eq!(
            batches.iter().map(|b| b.indices.len()).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        assert_ne!(seen, (0..10).collect::<Vec<_>>(), "shuffled");
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        let rest: Vec<Batch> = l.epoch_from(0, 2).collect::<Result<_>>().unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].indices, batches[2].indices);
        assert_eq!(l.epoch_from(0, 9).count(), 0);
        assert_eq!(l.order(0), l.order(0));
        assert_ne!(l.order(0), l.order(1));
        let b = &batches[0];
        let i = b.indices[0];
        assert_eq!(b.images.shape(), &[4, 2]);
        assert_eq!(b.images.to_vec()[0], (2 * i % 256) as f32 / 255.0);
        assert_eq!(b.labels.as_ref().unwrap()[0], i % 3);
    }

    #[test]
    fn drop_last_and_direct_mode() {
        let cfg = LoaderConfig {
            batch_size: 4,
            drop_last: true,
            prefetch: false,
            shuffle: false,
            ..Default::default()
        };
        let l = DataLoader::new(data(10), cfg).unwrap();
        assert_eq!(l.num_batches(), 2);
        assert_eq!(l.epoch(0).count(), 2);
        assert!(DataLoader::new(
            data(1),
            LoaderConfig {
                batch_size: 0,
                ..cfg
            }
        )
        .is_err());
    }
}
