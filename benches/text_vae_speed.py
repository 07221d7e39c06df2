#!/usr/bin/env python3
"""The sentence VAE's epoch, deepgen against its PyTorch twin, alternating.

Each round runs one epoch of `deepgen train text-vae` and one of
`benches/text_vae_twin.py` on the same lines (the first --limit-lines usable
lines of --text), at each thread count, alternating which side goes first;
both report the time of the epoch's steps only (deepgen's metrics.csv
`seconds`, the twin's `train_seconds`). The table gives the median of the
rounds and their range, and the held-out nats per character of the last
round on each side.

    cargo build --release -p deepgen-cli
    python3 benches/text_vae_speed.py --text ../shared/data/tinyshakespeare/input.txt \\
        --limit-lines 2000 --threads 1 2 --rounds 5
"""

import argparse
import csv
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEEPGEN = ROOT / "target" / "release" / "deepgen"
TWIN = ROOT / "benches" / "text_vae_twin.py"


def twin(a, threads, tmp):
    out = tmp / f"twin-{threads}.json"
    r = subprocess.run(
        [sys.executable, str(TWIN), "--text", str(a.text), "--level", "char", "--epochs", "1",
         "--limit-lines", str(a.limit_lines), "--threads", str(threads), "--samples", "0",
         "--out", str(out)],
        check=True, capture_output=True, text=True)
    raw = int(re.search(r"head -n (\d+)", r.stdout).group(1))
    e = json.loads(out.read_text())["epochs"][-1]
    return e["train_seconds"], e["nats_per_token"], raw


def deepgen(a, threads, head, tmp):
    run = tmp / f"deepgen-{threads}"
    subprocess.run(
        [str(DEEPGEN), "--threads", str(threads), "train", "text-vae", "--text", str(head),
         "--level", "char", "--epochs", "1", "--out", str(run), "--force", "--quiet",
         "--no-tensorboard"],
        check=True, capture_output=True, text=True)
    row = list(csv.DictReader(open(run / "metrics.csv")))[-1]
    return float(row["seconds"]), float(row["held_out_nats_per_token"])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", type=Path, required=True)
    p.add_argument("--limit-lines", type=int, default=2000)
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    if not DEEPGEN.exists():
        sys.exit(f"{DEEPGEN} is missing: cargo build --release -p deepgen-cli")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        # The twin says which `head -n K` gives deepgen the same lines.
        _, _, raw = twin(a, 1, tmp)
        head = tmp / "lines.txt"
        with open(a.text, encoding="utf-8") as f:
            head.write_text("".join(f.readlines()[:raw]), encoding="utf-8")
        print(f"torch {__import__('torch').__version__}; one epoch on the first {a.limit_lines} "
              f"usable lines of {a.text} (head -n {raw}); {a.rounds} alternating rounds")
        print("| threads | deepgen s (range) | PyTorch s (range) | ratio | held-out nats/char deepgen / PyTorch |")
        print("| --- | --- | --- | --- | --- |")
        for threads in a.threads:
            ours, theirs = [], []
            for r in range(a.rounds):
                sides = [("d", lambda: deepgen(a, threads, head, tmp)),
                         ("t", lambda: twin(a, threads, tmp))]
                for name, f in sides if r % 2 == 0 else sides[::-1]:
                    res = f()
                    (ours if name == "d" else theirs).append(res)
            d = [s for s, _ in ours]
            t_ = [s for s, _, _ in theirs]
            md, mt = statistics.median(d), statistics.median(t_)
            print(f"| {threads} | {md:.2f} ({min(d):.2f}–{max(d):.2f}) | {mt:.2f} ({min(t_):.2f}–{max(t_):.2f}) "
                  f"| {md / mt:.2f}x | {ours[-1][1]:.3f} / {theirs[-1][1]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
