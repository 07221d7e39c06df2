#!/usr/bin/env python3
"""Side-by-side timings of deepgen and PyTorch on this machine.

For each thread count, runs the criterion benchmarks (`cargo bench -p
deepgen-benches --bench kernels`, RAYON_NUM_THREADS=t) and times the same
operations in PyTorch (torch.set_num_threads(t)), in one invocation, then
prints medians and time ratios deepgen / PyTorch as a Markdown table.

    pip install torch
    python3 benches/compare.py --threads 1 2 [--only GROUP] [--skip-cargo] [--out FILE]

--only sgemm|conv|elementwise runs one group; --skip-cargo reuses the last
criterion results in target/criterion.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent

# (criterion group, criterion id, label, target ratio)
CASES = [
    ("sgemm", "64", "sgemm n=64", None),
    ("sgemm", "128", "sgemm n=128", None),
    ("sgemm", "256", "sgemm n=256", 1.25),
    ("sgemm", "512", "sgemm n=512", 1.25),
    ("sgemm", "1024", "sgemm n=1024", 1.25),
    ("conv", "conv2d_fwd_bwd", "conv2d 64->128 k4s2p1 b64 14x14 fwd+bwd", 1.5),
    ("conv", "conv_transpose2d_fwd_bwd", "conv_transpose2d 256->128 k4s2p1 b64 7x7 fwd+bwd", 1.5),
    ("elementwise", "exp_1M", "exp 1M f32", 1.0),
    ("elementwise", "sigmoid_1M", "sigmoid 1M f32", 1.0),
]


def median_time(fn, min_runs=10, min_seconds=2.0):
    fn()  # warm up
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 2000:
            break
    return statistics.median(times)


def torch_times(only):
    g = torch.Generator().manual_seed(0)
    out = {}
    if only not in (None, "sgemm"):
        return elementwise_and_conv(g, out, only)
    for n in (64, 128, 256, 512, 1024):
        a = torch.randn(n, n, generator=g)
        b = torch.randn(n, n, generator=g)
        out[("sgemm", str(n))] = median_time(lambda: torch.mm(a, b))
    return out if only == "sgemm" else elementwise_and_conv(g, out, only)


def elementwise_and_conv(g, out, only):
    def conv_step(x, w, gy, transpose):
        y = F.conv_transpose2d(x, w, stride=2, padding=1) if transpose else F.conv2d(x, w, stride=2, padding=1)
        y.backward(gy)
        x.grad = None
        w.grad = None

    if only == "elementwise":
        return elementwise(g, out)
    x = torch.randn(64, 64, 14, 14, generator=g, requires_grad=True)
    w = torch.randn(128, 64, 4, 4, generator=g, requires_grad=True)
    gy = torch.randn(64, 128, 7, 7, generator=g)
    out[("conv", "conv2d_fwd_bwd")] = median_time(lambda: conv_step(x, w, gy, False), min_runs=20)
    x = torch.randn(64, 256, 7, 7, generator=g, requires_grad=True)
    w = torch.randn(256, 128, 4, 4, generator=g, requires_grad=True)
    gy = torch.randn(64, 128, 14, 14, generator=g)
    out[("conv", "conv_transpose2d_fwd_bwd")] = median_time(lambda: conv_step(x, w, gy, True), min_runs=20)
    return out if only == "conv" else elementwise(g, out)


def elementwise(g, out):
    v = torch.randn(1 << 20, generator=g)
    out[("elementwise", "exp_1M")] = median_time(lambda: torch.exp(v))
    out[("elementwise", "sigmoid_1M")] = median_time(lambda: torch.sigmoid(v))
    return out


def deepgen_times(threads, run_cargo, cases):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    if run_cargo:
        groups = "|".join(sorted({c[0] for c in cases}))
        subprocess.run(
            ["cargo", "bench", "-q", "-p", "deepgen-benches", "--bench", "kernels", "--", f"^({groups})/", "--noplot"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    out = {}
    for group, ident, _, _ in cases:
        path = ROOT / "target" / "criterion" / f"{group}_t{threads}" / ident / "new" / "estimates.json"
        with open(path) as f:
            out[(group, ident)] = json.load(f)["median"]["point_estimate"] / 1e9
    return out


def fmt(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    return f"{seconds * 1e3:.2f} ms"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--only", choices=["sgemm", "conv", "elementwise"])
    p.add_argument("--skip-cargo", action="store_true")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    lines = [
        f"PyTorch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}",
        "",
        "| operation | threads | deepgen | PyTorch | ratio (deepgen / PyTorch) | target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    cases = [c for c in CASES if args.only in (None, c[0])]
    for t in args.threads:
        torch.set_num_threads(t)
        ours = deepgen_times(t, not args.skip_cargo, cases)
        theirs = torch_times(args.only)
        for group, ident, label, target in cases:
            a, b = ours[(group, ident)], theirs[(group, ident)]
            extra = ""
            if group == "sgemm":
                n = int(ident)
                extra = f" ({2 * n**3 / a / 1e9:.0f} vs {2 * n**3 / b / 1e9:.0f} GFLOP/s)"
            ok = "" if target is None else (f"<= {target}" + (" ok" if a / b <= target else " MISSED"))
            lines.append(f"| {label}{extra} | {t} | {fmt(a)} | {fmt(b)} | {a / b:.2f} | {ok} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
