//! The foundation's benchmarks: sgemm, conv2d and conv_transpose2d forward +
//! backward, and elementwise exp / sigmoid. Ids carry the thread count
//! (`t1`, `t2`, from RAYON_NUM_THREADS); `compare.py` runs them beside
//! PyTorch and prints the ratios.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use deepgen_autograd::{Conv2dOptions, Tensor, Var};
use deepgen_benches::{randn, threads_label};

fn sgemm(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("sgemm/{}", threads_label()));
    for n in [64usize, 128, 256, 512, 1024] {
        let a = randn::<f32>(&[n, n], 1);
        let b = randn::<f32>(&[n, n], 2);
        g.throughput(Throughput::Elements((2 * n * n * n) as u64));
        if n >= 512 {
            g.sample_size(20);
        }
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter(|| black_box(deepgen_kernels::matmul(&a, &b).unwrap()))
        });
    }
    g.finish();
}

/// Forward and backward (input and weight gradients) of one convolution
/// through autograd, as a training step runs it.
fn conv_step(x: &Var, w: &Var, gy: &Var, transpose: bool) {
    let opts = Conv2dOptions::new(2, 1);
    let y = if transpose {
        x.conv_transpose2d(w, opts, [0, 0]).unwrap()
    } else {
        x.conv2d(w, opts).unwrap()
    };
    y.backward_with(gy.clone()).unwrap();
    black_box((x.grad(), w.grad()));
    x.zero_grad();
    w.zero_grad();
}

fn conv(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("conv/{}", threads_label()));
    g.sample_size(20).measurement_time(Duration::from_secs(6));
    // conv2d 64 -> 128, k4 s2 p1, batch 64, 14x14 -> 7x7.
    let x = Var::parameter(randn(&[64, 64, 14, 14], 3));
    let w = Var::parameter(randn(&[128, 64, 4, 4], 4));
    let gy = Var::constant(randn(&[64, 128, 7, 7], 5));
    g.bench_function("conv2d_fwd_bwd", |b| {
        b.iter(|| conv_step(&x, &w, &gy, false))
    });
    // conv_transpose2d 256 -> 128, k4 s2 p1, batch 64, 7x7 -> 14x14.
    let x = Var::parameter(randn(&[64, 256, 7, 7], 6));
    let w = Var::parameter(randn(&[256, 128, 4, 4], 7));
    let gy = Var::constant(randn(&[64, 128, 14, 14], 8));
    g.bench_function("conv_transpose2d_fwd_bwd", |b| {
        b.iter(|| conv_step(&x, &w, &gy, true))
    });
    g.finish();
}

fn elementwise(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("elementwise/{}", threads_label()));
    let x: Tensor<f32> = randn(&[1 << 20], 9);
    g.throughput(Throughput::Elements(1 << 20));
    g.bench_function("exp_1M", |b| b.iter(|| black_box(deepgen_kernels::exp(&x))));
    g.bench_function("sigmoid_1M", |b| {
        b.iter(|| black_box(deepgen_kernels::sigmoid(&x)))
    });
    // A scalar captured by reference once kept this loop scalar and
    // branchy (17x slower than a copy); it should run at copy speed.
    g.bench_function("leaky_relu_1M", |b| {
        b.iter(|| black_box(deepgen_kernels::leaky_relu(&x, 0.2)))
    });
    g.bench_function("mul_scalar_1M", |b| {
        b.iter(|| black_box(deepgen_kernels::mul_scalar(&x, 0.5)))
    });
    g.finish();
}

criterion_group!(benches, sgemm, conv, elementwise);
criterion_main!(benches);
