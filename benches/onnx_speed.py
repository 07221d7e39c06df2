#!/usr/bin/env python3
"""Inference time per sample of every model `deepgen export` writes, at
their usual sizes: deepgen beside ONNX Runtime running the exported file,
same batch, same threads, alternating runs.

    python3 benches/onnx_speed.py [--out runs/onnx-speed] [--batch 64]
        [--rounds 5] [--reps 20] [--threads 1,2]

Builds the release binary and `deepgen-benches`' onnx_speed example, which
writes the models (default sizes, seed 0) and exports them with `deepgen
export`; then, for each thread count, `--rounds` rounds of: deepgen's
median over --reps batches (RAYON_NUM_THREADS), then ONNX Runtime's
(CPUExecutionProvider, intra_op_num_threads, all graph optimisations).
Prints a markdown table of medians over rounds with their spread
(min-max) and writes results.json in --out.
"""
import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "target" / "release" / "examples" / "onnx_speed"


def deepgen_times(out, batch, reps, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    p = subprocess.run([str(EXAMPLE), "time", str(out), str(batch), str(reps)], cwd=ROOT, env=env,
                       capture_output=True, text=True, check=True)
    return {r["model"]: r["us_per_sample"] for r in map(json.loads, p.stdout.splitlines())}


def feeds(session, batch):
    rng = np.random.default_rng(0)
    out = {}
    for i in session.get_inputs():
        shape = [batch] + [d for d in i.shape[1:]]
        if i.type == "tensor(int64)":
            out[i.name] = (np.arange(batch) % 10).astype(np.int64)
        else:
            out[i.name] = rng.standard_normal(shape).astype(np.float32)
    return out


def ort_times(out, batch, reps, threads):
    times = {}
    for path in sorted(out.glob("*.onnx")):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        f = feeds(s, batch)
        for _ in range(3):
            s.run(None, f)
        t = []
        for _ in range(reps):
            start = time.perf_counter()
            s.run(None, f)
            t.append(time.perf_counter() - start)
        times[path.stem] = statistics.median(t) / batch * 1e6
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "onnx-speed")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    # Two builds: naming the example alone would skip the deepgen binary.
    subprocess.run(["cargo", "build", "--release", "-p", "deepgen-cli"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-p", "deepgen-benches", "--example", "onnx_speed"],
                   cwd=ROOT, check=True)
    subprocess.run([str(EXAMPLE), "prepare", str(args.out)], cwd=ROOT, check=True)
    results = {}
    for threads in map(int, args.threads.split(",")):
        rounds = {"deepgen": [], "onnxruntime": []}
        for _ in range(args.rounds):
            rounds["deepgen"].append(deepgen_times(args.out, args.batch, args.reps, threads))
            rounds["onnxruntime"].append(ort_times(args.out, args.batch, args.reps, threads))
        results[threads] = rounds
    lines = [f"batch {args.batch}; microseconds per sample, median of {args.rounds} rounds (min-max); "
             f"ONNX Runtime {ort.__version__}", "",
             "| model | threads | deepgen | ONNX Runtime | deepgen / ONNX Runtime |", "| --- | --- | --- | --- | --- |"]
    for threads, rounds in results.items():
        for model in sorted(rounds["deepgen"][0]):
            d = [r[model] for r in rounds["deepgen"]]
            o = [r[model] for r in rounds["onnxruntime"]]
            lines.append(f"| {model} | {threads} | {statistics.median(d):.1f} ({min(d):.1f}-{max(d):.1f}) | "
                         f"{statistics.median(o):.1f} ({min(o):.1f}-{max(o):.1f}) | "
                         f"{statistics.median(d) / statistics.median(o):.2f} |")
    text = "\n".join(lines)
    print(text)
    (args.out / "results.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
