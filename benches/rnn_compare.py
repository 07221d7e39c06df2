#!/usr/bin/env python3
"""A GRU or LSTM layer's forward + backward, deepgen against PyTorch.

deepgen's side is `cargo run --release -p deepgen-benches --example
rnn_speed`; PyTorch's is `torch.nn.GRU` / `torch.nn.LSTM` as its users call
them (batch_first, zero_grad, sum of outputs, backward). Rounds alternate
the two sides; each round reports its median of --reps calls; the table
gives the median of the rounds' medians and their range, per cell and
thread count.

    python3 benches/rnn_compare.py --cells gru lstm --threads 1 2 --rounds 5
"""

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "target" / "release" / "examples" / "rnn_speed"


def torch_round(cell, threads, a):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cls = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell]
    layer = cls(a.input, a.hidden, batch_first=True, bidirectional=a.bidirectional)
    x = torch.randn(a.batch, a.time, a.input, requires_grad=True)

    def step():
        layer.zero_grad()
        x.grad = None
        out, _ = layer(x)
        out.sum().backward()

    step()
    step()
    times = []
    for _ in range(a.reps):
        s = time.perf_counter()
        step()
        times.append((time.perf_counter() - s) * 1e3)
    return statistics.median(times)


def deepgen_round(cell, threads, a):
    args = [str(EXAMPLE), cell, "--batch", str(a.batch), "--time", str(a.time),
            "--input", str(a.input), "--hidden", str(a.hidden), "--reps", str(a.reps)]
    if a.bidirectional:
        args.append("--bidirectional")
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout
    return float(out.split()[0])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", nargs="+", default=["gru", "lstm"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--time", type=int, default=40)
    p.add_argument("--input", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--bidirectional", action="store_true")
    a = p.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "deepgen-benches",
                    "--example", "rnn_speed"], cwd=ROOT, check=True)
    print(f"torch {torch.__version__}; batch {a.batch}, {a.time} steps, input {a.input}, "
          f"hidden {a.hidden}{', bidirectional' if a.bidirectional else ''}; "
          f"{a.rounds} alternating rounds of {a.reps} calls")
    print("| layer | threads | deepgen ms (range) | PyTorch ms (range) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for cell in a.cells:
        for threads in a.threads:
            ours, theirs = [], []
            for _ in range(a.rounds):
                ours.append(deepgen_round(cell, threads, a))
                theirs.append(torch_round(cell, threads, a))
            mo, mt = statistics.median(ours), statistics.median(theirs)
            print(f"| {cell.upper()} fwd+bwd | {threads} | {mo:.2f} ({min(ours):.2f}–{max(ours):.2f}) | "
                  f"{mt:.2f} ({min(theirs):.2f}–{max(theirs):.2f}) | {mo / mt:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
