//! Times every convolution kernel call of one 28x28 DCGAN training iteration
//! (benches/dcgan_convs.py times the same calls in PyTorch), so the gap to
//! PyTorch can be read per call. Prints "name count median_ms min_ms" per
//! call (15 calls after a warm-up; on a shared machine the minimum is the
//! steadier figure for comparing two versions of a kernel).
//!
//!     RAYON_NUM_THREADS=1 cargo run --release -p deepgen-benches --example dcgan_convs

use deepgen_benches::randn;
use deepgen_kernels::{self as k, Conv2dOptions, Tensor};
use std::time::Instant;

/// Median and minimum milliseconds of 15 calls.
fn times_ms<R>(mut f: impl FnMut() -> R) -> (f64, f64) {
    f();
    let mut v: Vec<f64> = (0..15)
        .map(|_| {
            let s = Instant::now();
            std::hint::black_box(f());
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

/// One conv layer: input [64, c, h, h], weight [o, c, k, k] (conv) or
/// [c, o, k, k] (transposed), and how often each kernel runs per iteration.
struct Layer {
    name: &'static str,
    transposed: bool,
    x: [usize; 4],
    w: [usize; 4],
    opts: Conv2dOptions,
    counts: [usize; 3], // forward, input grad, weight grad
}

fn main() {
    let s2 = Conv2dOptions::new(2, 1);
    let s1 = Conv2dOptions::new(1, 0);
    let layers = [
        Layer {
            name: "g1",
            transposed: true,
            x: [64, 100, 1, 1],
            w: [100, 256, 7, 7],
            opts: s1,
            counts: [1, 0, 1],
        },
        Layer {
            name: "g2",
            transposed: true,
            x: [64, 256, 7, 7],
            w: [256, 128, 4, 4],
            opts: s2,
            counts: [1, 1, 1],
        },
        Layer {
            name: "g3",
            transposed: true,
            x: [64, 128, 14, 14],
            w: [128, 1, 4, 4],
            opts: s2,
            counts: [1, 1, 1],
        },
        Layer {
            name: "d1",
            transposed: false,
            x: [64, 1, 28, 28],
            w: [64, 1, 4, 4],
            opts: s2,
            counts: [3, 1, 2],
        },
        Layer {
            name: "d2",
            transposed: false,
            x: [64, 64, 14, 14],
            w: [128, 64, 4, 4],
            opts: s2,
            counts: [3, 3, 2],
        },
        Layer {
            name: "d3",
            transposed: false,
            x: [64, 128, 7, 7],
            w: [1, 128, 7, 7],
            opts: s1,
            counts: [3, 3, 2],
        },
    ];
    let (mut total, mut total_min) = (0.0, 0.0);
    for l in &layers {
        let x = randn::<f32>(&l.x, 1);
        let w = randn::<f32>(&l.w, 2);
        let xhw = [l.x[2], l.x[3]];
        let khw = [l.w[2], l.w[3]];
        // The transposed layer is conv2d's input adjoint: its output y is the
        // conv2d "input" and x the conv2d "output".
        let y: Tensor<f32> = if l.transposed {
            let hw = k::conv_transpose2d_out_hw(&l.x, &l.w, l.opts, [0, 0]).unwrap();
            randn(&[64, l.w[1], hw[0], hw[1]], 3)
        } else {
            k::conv2d(&x, &w, l.opts).unwrap()
        };
        let times = if l.transposed {
            [
                times_ms(|| {
                    k::conv2d_input_grad(&x, &w, l.opts, [y.shape()[2], y.shape()[3]]).unwrap()
                }),
                times_ms(|| k::conv2d(&y, &w, l.opts).unwrap()),
                times_ms(|| k::conv2d_weight_grad(&y, &x, l.opts, khw).unwrap()),
            ]
        } else {
            [
                times_ms(|| k::conv2d(&x, &w, l.opts).unwrap()),
                times_ms(|| k::conv2d_input_grad(&y, &w, l.opts, xhw).unwrap()),
                times_ms(|| k::conv2d_weight_grad(&x, &y, l.opts, khw).unwrap()),
            ]
        };
        for ((kind, t), n) in ["fwd", "xgrad", "wgrad"].iter().zip(times).zip(l.counts) {
            if n > 0 {
                println!("{}_{kind} {n} {:.3} {:.3}", l.name, t.0, t.1);
                total += t.0 * n as f64;
                total_min += t.1 * n as f64;
            }
        }
    }
    println!("total_per_iteration 1 {total:.3} {total_min:.3}");
}
