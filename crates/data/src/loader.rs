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
    /// This process's part of each batch in a data-parallel run.
    pub shard: Shard,
}

/// Which part of every batch this process takes in a data-parallel run of
/// `ranks` processes: `batch_size` stays the global batch, and rank `r`
/// takes the contiguous rows `[r n / ranks, (r + 1) n / ranks)` of each
/// batch of `n` items (shares differ by at most one item). Every rank
/// shuffles with the same seed, so the shares are disjoint and cover the
/// epoch; a global batch of fewer items than ranks (only ever the last)
/// is dropped on every rank, as no rank may sit out a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub ranks: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { rank: 0, ranks: 1 }
    }
}

impl Shard {
    /// This rank's rows of a global batch of `n` items.
    pub fn range(&self, n: usize) -> std::ops::Range<usize> {
        let ranks = self.ranks.max(1);
        self.rank * n / ranks..(self.rank + 1) * n / ranks
    }
}

/// Where a batch's rows sit in the global batch of a data-parallel step
/// (all of it, in a one-process run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// The first global row this batch holds.
    pub offset: usize,
    /// Rows in this batch.
    pub len: usize,
    /// Rows in the global batch.
    pub global: usize,
}

impl Share {
    /// The share of a one-process batch of `n` rows: all of it.
    pub fn whole(n: usize) -> Self {
        Share {
            offset: 0,
            len: n,
            global: n,
        }
    }

    /// This batch's rows of `t`, a tensor whose first axis runs over the
    /// global batch: what a step draws for the whole batch (noise, say) so
    /// that every rank's items get what one process would have given them.
    pub fn rows<T: deepgen_tensor::Element>(&self, t: Tensor<T>) -> Result<Tensor<T>> {
        if self.len == self.global {
            return Ok(t);
        }
        Ok(t.narrow(0, self.offset, self.len)?.contiguous())
    }

    /// The fraction of the global batch this batch holds (the weight of
    /// its mean loss in the global mean).
    pub fn weight(&self) -> f64 {
        self.len as f64 / self.global.max(1) as f64
    }
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
            shard: Shard::default(),
        }
    }
}

/// One batch: items stacked as [batch, item shape..], their labels, and their indices.
#[derive(Debug, Clone)]
pub struct Batch {
    pub images: Tensor<f32>,
    pub labels: Option<Vec<usize>>,
    pub indices: Vec<usize>,
    /// Where these rows sit in the global batch (data-parallel runs).
    pub share: Share,
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

    /// The same loader taking `shard`'s part of every batch.
    pub fn sharded(&self, shard: Shard) -> DataLoader {
        let mut l = self.clone();
        l.config.shard = shard;
        l
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
        let ranks = self.config.shard.ranks.max(1);
        if self.config.drop_last || (n % b > 0 && n % b < ranks) {
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
        let shard = self.config.shard;
        let mut chunks: Vec<(Vec<usize>, Share)> = order
            .chunks(self.config.batch_size)
            .map(|c| {
                let rows = shard.range(c.len());
                let share = Share {
                    offset: rows.start,
                    len: rows.len(),
                    global: c.len(),
                };
                (c[rows].to_vec(), share)
            })
            .collect();
        chunks.truncate(self.num_batches());
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
                if tx.send(loader.shared_batch(c.0, c.1)).is_err() {
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
        let share = Share::whole(indices.len());
        self.shared_batch(indices, share)
    }

    /// A batch that is `share` of a global batch.
    fn shared_batch(&self, indices: Vec<usize>, share: Share) -> Result<Batch> {
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
            share,
        })
    }
}

enum Inner {
    Direct {
        loader: DataLoader,
        chunks: std::vec::IntoIter<(Vec<usize>, Share)>,
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
            Inner::Direct { loader, chunks } => chunks
                .next()
                .map(|(c, share)| loader.shared_batch(c, share)),
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
    fn rank_shares_are_disjoint_cover_each_batch_and_keep_its_order() {
        for (n, b, ranks) in [(10, 4, 2), (10, 4, 3), (23, 8, 3), (9, 3, 2), (7, 7, 3)] {
            let cfg = |rank| LoaderConfig {
                batch_size: b,
                seed: 5,
                prefetch: rank % 2 == 0,
                shard: Shard { rank, ranks },
                ..Default::default()
            };
            let whole = DataLoader::new(data(n), cfg(0)).unwrap();
            let single = DataLoader::new(
                data(n),
                LoaderConfig {
                    shard: Shard::default(),
                    ..cfg(0)
                },
            )
            .unwrap();
            let per_rank: Vec<Vec<Batch>> = (0..ranks)
                .map(|r| {
                    let l = DataLoader::new(data(n), cfg(r)).unwrap();
                    assert_eq!(l.num_batches(), whole.num_batches());
                    l.epoch(1).collect::<Result<_>>().unwrap()
                })
                .collect();
            let globals: Vec<Batch> = single.epoch(1).collect::<Result<_>>().unwrap();
            for (i, g) in globals.iter().enumerate().take(whole.num_batches()) {
                // Rank by rank, the shares spell out the one-process batch.
                let joined: Vec<usize> =
                    per_rank.iter().flat_map(|r| r[i].indices.clone()).collect();
                assert_eq!(joined, g.indices, "n {n} b {b} ranks {ranks} batch {i}");
                for r in &per_rank {
                    let s = r[i].share;
                    assert_eq!(s.global, g.indices.len());
                    assert_eq!(&g.indices[s.offset..s.offset + s.len], &r[i].indices[..]);
                    assert!(s.len > 0);
                }
            }
            // Only a last batch smaller than the number of ranks is dropped.
            let dropped = globals.len() - whole.num_batches();
            assert_eq!(dropped, usize::from(n % b > 0 && n % b < ranks));
        }
    }

    #[test]
    fn share_rows_pick_this_ranks_rows_of_a_global_draw() {
        let t = Tensor::from_vec((0..12).map(|v| v as f32).collect(), &[6, 2]).unwrap();
        let s = Share {
            offset: 2,
            len: 3,
            global: 6,
        };
        assert_eq!(
            s.rows(t.clone()).unwrap().to_vec(),
            [4., 5., 6., 7., 8., 9.]
        );
        assert_eq!(
            Share::whole(6).rows(t.clone()).unwrap().to_vec(),
            t.to_vec()
        );
        assert!((s.weight() - 0.5).abs() < 1e-12);
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
