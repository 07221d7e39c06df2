#!/usr/bin/env python3
"""Data-parallel scaling of deepgen on this machine (docs/distributed.md).

For the MLP VAE epoch (9000 synthetic digits, batch 128) and the DCGAN
iteration (batch 64), times deepgen as 1 process x 1 thread, 1 process x 2
threads and 2 ranks x 1 thread under mpirun, in alternating rounds, and
prints medians with their spread and the speed-up over 1 x 1. The times
are the runs' own: metrics.csv's `seconds` (the epoch's steps, without
its held-out evaluation, pictures and checkpoint).

With --torch, PyTorch's side runs in the same rounds, alternating with
deepgen's: pytorch/examples' models, 2 ranks as DistributedDataParallel
over Gloo (benches/ddp_torch.py), on the same data sizes and batches.

Needs deepgen built with the mpi feature:
    cargo build --release -p deepgen-cli --features mpi
    python3 benches/ddp_scaling.py --rounds 5 [--torch]
"""

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOADS = {
    # name: (deepgen's flags, the items that make one unit of the table
    # (None: an epoch), ddp_torch.py's workload)
    "MLP VAE epoch (9000 images, batch 128)": (
        "train vae --arch mlp --synthetic-size 10800 --batch-size 128",
        None,
        "vae",
    ),
    "DCGAN iteration (batch 64)": (
        "train gan --arch dcgan --synthetic-size 2400 --batch-size 64",
        64,
        "dcgan",
    ),
}
SETUPS = ["1 process x 1 thread", "1 process x 2 threads", "2 ranks x 1 thread"]
# (ranks, threads) of each setup, for PyTorch's side.
SHAPES = {SETUPS[0]: (1, 1), SETUPS[1]: (1, 2), SETUPS[2]: (2, 1)}


def torch_seconds(workload, setup):
    ranks, threads = SHAPES[setup]
    script = os.path.join(ROOT, "benches", "ddp_torch.py")
    out = subprocess.run([sys.executable, script, workload, str(ranks), str(threads)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def command(binary, setup, flags, out):
    base = [binary]
    if setup == "1 process x 1 thread":
        base += ["--threads", "1"]
    elif setup == "1 process x 2 threads":
        base += ["--threads", "2"]
    run = base + flags.split() + ["--epochs", "1", "--quiet", "--no-tensorboard", "--out", out]
    if setup.startswith("2 ranks"):
        # Open MPI binds each of 2 ranks to its own core.
        return ["mpirun", "-np", "2"] + run
    return run


def epoch_seconds(out):
    with open(os.path.join(out, "metrics.csv")) as f:
        row = list(csv.DictReader(f))[-1]
    return float(row["seconds"]), float(row["items_per_second"])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--binary", default=os.path.join(ROOT, "target/release/deepgen"))
    p.add_argument("--torch", action="store_true", help="PyTorch DDP (Gloo) alongside")
    a = p.parse_args()
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    version = subprocess.run([a.binary, "--version"], capture_output=True, text=True).stdout.strip()
    if "MPI" not in version:
        raise SystemExit(f"{a.binary}: {version}; build it with --features mpi")
    cpu = next(
        (l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
        "unknown CPU",
    )
    print(f"{version}; {cpu}, {os.cpu_count()} CPUs; {a.rounds} alternating rounds")
    scratch = tempfile.mkdtemp(prefix="deepgen-ddp-")
    sides = ["deepgen"] + (["PyTorch"] if a.torch else [])
    times = {(side, w, s): [] for side in sides for w in WORKLOADS for s in SETUPS}
    try:
        for r in range(a.rounds):
            for w, (flags, per, workload) in WORKLOADS.items():
                for s in SETUPS:
                    out = os.path.join(scratch, "run")
                    shutil.rmtree(out, ignore_errors=True)
                    subprocess.run(command(a.binary, s, flags, out), check=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    secs, ips = epoch_seconds(out)
                    times[("deepgen", w, s)].append(per / ips if per else secs)
                    if a.torch:
                        times[("PyTorch", w, s)].append(torch_seconds(workload, s))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print("| workload | setup | side | median s | min–max | speed-up over its 1 x 1 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for w in WORKLOADS:
        for s in SETUPS:
            for side in sides:
                base = statistics.median(times[(side, w, SETUPS[0])])
                t = times[(side, w, s)]
                m = statistics.median(t)
                print(f"| {w} | {s} | {side} | {m:.4f} | {min(t):.4f}–{max(t):.4f} | {base / m:.2f}x |")


if __name__ == "__main__":
    main()
