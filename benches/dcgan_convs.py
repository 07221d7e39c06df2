#!/usr/bin/env python3
"""Per-call convolution timings of one 28x28 DCGAN iteration, deepgen beside
PyTorch, in one run on the same threads.

    python3 benches/dcgan_convs.py --threads 1 2 [--repeats 3]

Builds and runs `cargo run --release -p deepgen-benches --example
dcgan_convs` (RAYON_NUM_THREADS=t), times the same calls in PyTorch
(torch.set_num_threads(t)), alternating the two R times, and prints a
Markdown table per call of the lowest of the R medians (of 15 calls) on
each side, and the weighted total per iteration. On a shared machine one
run of either side can land in a noisy minute; the lowest median of a few
alternating runs compares the two at their steadiest.
"""

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent

# name, transposed, x, w, stride, padding, counts (fwd, xgrad, wgrad) per iteration
LAYERS = [
    ("g1", True, (64, 100, 1, 1), (100, 256, 7, 7), 1, 0, (1, 0, 1)),
    ("g2", True, (64, 256, 7, 7), (256, 128, 4, 4), 2, 1, (1, 1, 1)),
    ("g3", True, (64, 128, 14, 14), (128, 1, 4, 4), 2, 1, (1, 1, 1)),
    ("d1", False, (64, 1, 28, 28), (64, 1, 4, 4), 2, 1, (3, 1, 2)),
    ("d2", False, (64, 64, 14, 14), (128, 64, 4, 4), 2, 1, (3, 3, 2)),
    ("d3", False, (64, 128, 7, 7), (1, 128, 7, 7), 1, 0, (3, 3, 2)),
]


def median_ms(fn, runs=15):
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def torch_times():
    out = {}
    g = torch.Generator().manual_seed(0)
    for name, transposed, xs, ws, s, p, counts in LAYERS:
        x = torch.randn(xs, generator=g)
        w = torch.randn(ws, generator=g)
        if transposed:
            y = F.conv_transpose2d(x, w, stride=s, padding=p)
            fwd = lambda: F.conv_transpose2d(x, w, stride=s, padding=p)
        else:
            y = F.conv2d(x, w, stride=s, padding=p)
            fwd = lambda: F.conv2d(x, w, stride=s, padding=p)
        gy = torch.randn(y.shape, generator=g)

        def backward(mask):
            return torch.ops.aten.convolution_backward(
                gy, x, w, None, [s, s], [p, p], [1, 1], transposed, [0, 0], 1, mask
            )

        times = [median_ms(fwd), median_ms(lambda: backward([True, False, False])),
                 median_ms(lambda: backward([False, True, False]))]
        for kind, t, n in zip(["fwd", "xgrad", "wgrad"], times, counts):
            if n > 0:
                out[f"{name}_{kind}"] = (n, t)
    return out


def deepgen_times(threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    run = subprocess.run(
        ["cargo", "run", "-q", "--release", "-p", "deepgen-benches", "--example", "dcgan_convs"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )
    out = {}
    for line in run.stdout.splitlines()[:-1]:
        name, n, median, _fastest = line.split()
        out[name] = (int(n), float(median))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    for t in args.threads:
        torch.set_num_threads(t)
        ours, theirs = {}, {}
        for _ in range(args.repeats):
            for best, run in ((ours, deepgen_times(t)), (theirs, torch_times())):
                for name, (n, ms) in run.items():
                    best[name] = (n, min(ms, best.get(name, (n, ms))[1]))
        print(f"\n{t} thread(s)\n\n| call | per iter | PyTorch ms | deepgen ms | ratio |\n| --- | --- | --- | --- | --- |")
        tot_t = tot_d = 0.0
        for name, (n, tt) in theirs.items():
            td = ours[name][1]
            tot_t += n * tt
            tot_d += n * td
            print(f"| {name} | {n} | {tt:.2f} | {td:.2f} | {td / tt:.2f} |")
        print(f"| all convs, weighted | | {tot_t:.1f} | {tot_d:.1f} | {tot_d / tot_t:.2f} |")


if __name__ == "__main__":
    main()
