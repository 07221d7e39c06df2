//! The DataLoader's own cost: one epoch of 9000 MNIST-sized 8-bit images at
//! batch 128 (shuffle, gather, scale to [0, 1]), with and without the
//! background thread. Target: under 5 ms per epoch.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use deepgen_data::{DataLoader, Dataset, InMemory, LoaderConfig, Pixels};

fn epoch(c: &mut Criterion) {
    let pixels: Vec<u8> = (0..9000 * 784).map(|i| (i * 7 % 256) as u8).collect();
    let labels = (0..9000).map(|i| (i % 10) as u16).collect();
    let data: Arc<dyn Dataset> =
        Arc::new(InMemory::new(Pixels::U8(pixels), &[1, 28, 28], Some((labels, 10))).unwrap());
    let mut g = c.benchmark_group("loader");
    for prefetch in [false, true] {
        let loader = DataLoader::new(
            data.clone(),
            LoaderConfig {
                batch_size: 128,
                prefetch,
                ..Default::default()
            },
        )
        .unwrap();
        let name = if prefetch {
            "mnist_9000_b128_epoch_prefetch"
        } else {
            "mnist_9000_b128_epoch"
        };
        let mut e = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                e += 1;
                for batch in loader.epoch(e) {
                    black_box(batch.unwrap());
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, epoch);
criterion_main!(benches);
