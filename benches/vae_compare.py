#!/usr/bin/env python3
"""deepgen's MLP VAE against pytorch/examples' VAE, side by side.

For each thread count, trains pytorch/examples' VAE (784-400-20, ReLU,
sigmoid output, BCE(sum) + KL, Adam lr 1e-3, batch 128, shuffled each epoch)
in PyTorch (torch.set_num_threads(t), torch.manual_seed(0)) and the same
model with `deepgen train vae` (RAYON_NUM_THREADS=t), on images 0..8999 of
the MNIST test split with 9000..9999 held out, then computes the held-out
IWAE bound (k = 100 and k = 5000) for both, and prints a Markdown table:
median seconds per epoch (epochs 2.., training loop only), final held-out
loss and the IWAE bounds.

    cargo build --release -p deepgen-cli
    python3 benches/vae_compare.py --threads 1 2 [--epochs 10] [--k-large 5000]
        [--repeats 3] [--data-dir ../shared/data/mnist] [--work /tmp/vae_compare] [--json FILE]

--repeats R trains each model R times, alternating PyTorch and deepgen, and
takes the median epoch time over all runs (IWAE and losses from the first).
The table's notes give the share of the CPUs other processes used while
training and warn when it is over 5%: on a shared 2-core machine, another
job's compile easily doubles an epoch. The binary is not rebuilt: its build
time and HEAD are printed so the figures can be tied to a tree.

As a check of the two IWAE implementations, `deepgen eval vae` is also run
(k = 100) on the PyTorch-trained weights (saved as safetensors under --work).
Writes only under --work (default /tmp/vae_compare) and, with --json, FILE.
"""

import argparse
import gzip
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "deepgen"

EPOCH_RE = re.compile(
    r"epoch (\d+): train ([\d.]+) \(([\d.]+) \+ ([\d.]+)\), "
    r"held-out ([\d.]+) \(([\d.]+) \+ ([\d.]+)\) nats/example, ([\d.]+) s"
)
EVAL_RE = re.compile(
    r"negative ELBO ([\d.]+) \(([\d.]+) \+ ([\d.]+)\), IWAE bound \(k = (\d+)\) ([\d.]+)"
)


# ---------------------------------------------------------------- machine load


def cpu_snapshot():
    """(wall, machine busy CPU seconds, this process's and its waited-for
    children's CPU seconds), or None where /proc/stat is missing."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    t = os.times()
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system


def other_load(before, after):
    """Share of the machine's CPUs busy with other work (or stolen by the
    hypervisor) between two snapshots: 0 on a quiet machine."""
    if before is None or after is None:
        return None
    wall = after[0] - before[0]
    other = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, other / (wall * (os.cpu_count() or 1)))


# ---------------------------------------------------------------- data


def read_idx_images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n, rows, cols = np.frombuffer(raw[:16], dtype=">u4")
    assert magic == 2051, f"{path}: not an IDX image file (magic {magic})"
    pixels = np.frombuffer(raw[16:], dtype=np.uint8)
    assert pixels.size == n * rows * cols, f"{path}: truncated"
    return pixels.reshape(n, rows * cols)


def load_mnist_test(data_dir):
    x = read_idx_images(Path(data_dir) / "t10k-images-idx3-ubyte.gz")
    x = torch.from_numpy(x.astype(np.float32) / 255.0)
    return x[:9000].contiguous(), x[9000:10000].contiguous()


# ---------------------------------------------------------------- pytorch/examples VAE


class VAE(nn.Module):
    """pytorch/examples vae/main.py, verbatim apart from `logits`."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def logits(self, z):
        return self.fc4(F.relu(self.fc3(z)))

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_parts(recon_x, x, mu, logvar):
    """pytorch/examples' loss_function, returned as (BCE, KLD), both summed."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce, kld


@torch.no_grad()
def held_out_loss(model, x, batch=500):
    model.eval()
    rec = kl = 0.0
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        recon, mu, logvar = model(xb)
        b, k = loss_parts(recon, xb, mu, logvar)
        rec += b.item()
        kl += k.item()
    n = len(x)
    return rec / n, kl / n


@torch.no_grad()
def iwae_bound(model, x, k, chunk_elems=1 << 25):
    """-log p(x) estimate per example (nats, mean over x): the IWAE bound

        log p(x) >= E[ log (1/k) sum_j p(x|z_j) p(z_j) / q(z_j|x) ],  z_j ~ q(z|x)

    All images at once, samples in chunks of c so that c*n*784 floats stay
    under chunk_elems; log weights kept in float64 as [k, n] and reduced with
    one logsumexp over the k samples. log p(x|z) uses the decoder's logits
    (exact Bernoulli log likelihood, no clamping of log(0) as BCE does)."""
    model.eval()
    n = x.shape[0]
    mu, logvar = model.encode(x)
    std = torch.exp(0.5 * logvar)
    c = max(1, min(k, chunk_elems // (n * 784)))
    log_w = torch.empty(k, n, dtype=torch.float64)
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    done = 0
    while done < k:
        m = min(c, k - done)
        eps = torch.randn(m, n, mu.shape[1])
        z = mu + std * eps  # [m, n, 20]
        logits = model.logits(z.reshape(m * n, -1)).reshape(m, n, 784)
        log_px_z = -F.binary_cross_entropy_with_logits(
            logits, x.expand(m, n, 784), reduction="none"
        ).sum(-1, dtype=torch.float64)
        z64, eps64, lv64 = z.double(), eps.double(), logvar.double()
        log_pz = (-0.5 * z64.pow(2) - half_log_2pi).sum(-1)
        log_qz = (-0.5 * eps64.pow(2) - 0.5 * lv64 - half_log_2pi).sum(-1)
        log_w[done : done + m] = log_px_z + log_pz - log_qz
        done += m
    bound = torch.logsumexp(log_w, dim=0) - math.log(k)  # [n], lower bound on log p(x)
    return -bound.mean().item()


def torch_run(threads, epochs, train_x, held_x, ks, work):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n, bs = len(train_x), 128
    history = []
    snap = cpu_snapshot()
    for epoch in range(1, epochs + 1):
        model.train()
        rec_sum = kl_sum = 0.0
        start = time.perf_counter()
        perm = torch.randperm(n)  # shuffle=True
        for i in range(0, n, bs):
            data = train_x[perm[i : i + bs]]
            opt.zero_grad()
            recon, mu, logvar = model(data)
            bce, kld = loss_parts(recon, data, mu, logvar)
            loss = bce + kld
            loss.backward()
            rec_sum += bce.item()
            kl_sum += kld.item()
            opt.step()
        seconds = time.perf_counter() - start
        h_rec, h_kl = held_out_loss(model, held_x)
        e = dict(
            epoch=epoch,
            train=(rec_sum + kl_sum) / n,
            train_rec=rec_sum / n,
            train_kl=kl_sum / n,
            held=h_rec + h_kl,
            held_rec=h_rec,
            held_kl=h_kl,
            seconds=seconds,
        )
        history.append(e)
        print(fmt_epoch("pytorch", threads, e), flush=True)
    load = other_load(snap, cpu_snapshot())
    iwae, iwae_s = {}, {}
    for k in ks:
        torch.manual_seed(0)
        t = time.perf_counter()
        iwae[k] = iwae_bound(model, held_x, k)
        iwae_s[k] = time.perf_counter() - t
        print(f"  pytorch t={threads}: IWAE k={k} {iwae[k]:.2f} ({iwae_s[k]:.1f} s)", flush=True)
    ckpt = Path(work) / f"pytorch_t{threads}.safetensors"
    if not ks:  # a timing-only repeat
        return dict(epochs=history, checkpoint=None, other_load=load)
    try:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    except ImportError:
        ckpt = None
    return dict(epochs=history, iwae=iwae, iwae_seconds=iwae_s, checkpoint=ckpt, other_load=load)


# ---------------------------------------------------------------- deepgen


def binary_identity():
    """The binary's build time and the tree it most likely came from, for the record
    (the binary is not rebuilt here: rebuild it after changing the Rust code)."""
    built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(BIN.stat().st_mtime))
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %cd",
                               "--date=format:%Y-%m-%d %H:%M:%S"],
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "crates"],
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        head, dirty = "?", ""
    return (f"{BIN} built {built}; HEAD {head}"
            + (", crates/ has uncommitted changes" if dirty else ""))


def data_args(data_dir):
    return ["--dataset", "mnist", "--data-dir", str(data_dir), "--test-split"]


def deepgen_eval(threads, data_dir, ckpt, k, timeout=None):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    cmd = [str(BIN), "eval", "vae", *data_args(data_dir), "--held-out", "9000..10000",
           "--checkpoint", str(ckpt), "--k", str(k)]
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout}{p.stderr}")
    m = EVAL_RE.search(p.stdout)
    if not m:
        sys.exit(f"cannot parse eval output:\n{p.stdout}")
    return dict(neg_elbo=float(m[1]), rec=float(m[2]), kl=float(m[3]), k=int(m[4]),
                iwae=float(m[5]), seconds=seconds)


def deepgen_run(threads, epochs, data_dir, ks, eval_timeout, work):
    out = Path(work) / f"deepgen_t{threads}"
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    cmd = [str(BIN), "train", "vae", *data_args(data_dir), "--train-range", "0..9000",
           "--held-out", "9000..10000", "--epochs", str(epochs), "--out", str(out), "--force"]
    snap = cpu_snapshot()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    history = []
    for line in p.stdout:
        m = EPOCH_RE.search(line)
        if m:
            v = [float(g) for g in m.groups()]
            history.append(dict(epoch=int(v[0]), train=v[1], train_rec=v[2], train_kl=v[3],
                                held=v[4], held_rec=v[5], held_kl=v[6], seconds=v[7]))
            print(fmt_epoch("deepgen", threads, history[-1]), flush=True)
    if p.wait() != 0 or len(history) != epochs:
        sys.exit(f"{' '.join(cmd)} failed (exit {p.returncode}, {len(history)} epochs parsed)")
    load = other_load(snap, cpu_snapshot())
    # The printed seconds have two decimals; metrics.csv has them in full (the table uses these).
    try:
        lines = (out / "metrics.csv").read_text().splitlines()
        head = lines[0].split(",")
        for e, row in zip(history, lines[1:]):
            e["seconds"] = float(row.split(",")[head.index("seconds")])
    except (OSError, ValueError, IndexError):
        pass
    ckpt = out / "model.safetensors"
    evals = {}
    for k in ks:
        try:
            r = deepgen_eval(threads, data_dir, ckpt, k, timeout=eval_timeout)
        except subprocess.TimeoutExpired:
            print(f"  deepgen t={threads}: eval k={k} exceeded {eval_timeout:.0f} s, skipped",
                  flush=True)
            evals[k] = None
            continue
        evals[k] = r
        print(f"  deepgen t={threads}: eval k={k}: negative ELBO {r['neg_elbo']:.2f}, "
              f"IWAE {r['iwae']:.2f} ({r['seconds']:.1f} s)", flush=True)
    return dict(epochs=history, evals=evals, other_load=load)


# ---------------------------------------------------------------- report


def fmt_epoch(name, t, e):
    return (f"{name:7} t={t} epoch {e['epoch']:2}: train {e['train']:.2f} "
            f"({e['train_rec']:.2f} + {e['train_kl']:.2f}), held-out {e['held']:.2f} "
            f"({e['held_rec']:.2f} + {e['held_kl']:.2f}), "
            f"{e['seconds']:.{3 if name == 'pytorch' else 2}f} s")


def median_epoch(histories):
    """Median epoch time over epochs 2.. of every run in histories."""
    xs = [e["seconds"] for h in histories for e in (h[1:] or h)]
    return statistics.median(xs)


def f2(x):
    return "–" if x is None else f"{x:.2f}"


def table(results, ks, epochs):
    k_small, k_large = ks[0], ks[-1]
    rows = [
        "| threads | s/epoch PyTorch | s/epoch deepgen | deepgen/PyTorch | held-out PyTorch "
        "(rec + KL) | held-out deepgen (rec + KL) "
        + "".join(f"| IWAE k={k} PyTorch | IWAE k={k} deepgen " for k in ks)
        + "| deepgen eval k=100 of PyTorch weights |",
        "|---:|---:|---:|---:|---:|---:|" + "---:|---:|" * len(ks) + "---:|",
    ]
    for t, r in results.items():
        pt, dg = r["pytorch"], r["deepgen"]
        sp, sd = median_epoch(pt["repeats"]), median_epoch(dg["repeats"])
        lp, ld = pt["epochs"][-1], dg["epochs"][-1]
        cells = [str(t), f"{sp:.3f}", f"{sd:.3f}", f"{sd / sp:.2f}",
                 f"{lp['held']:.2f} ({lp['held_rec']:.2f} + {lp['held_kl']:.2f})",
                 f"{ld['held']:.2f} ({ld['held_rec']:.2f} + {ld['held_kl']:.2f})"]
        for k in ks:
            ev = dg["evals"].get(k)
            cells += [f2(pt["iwae"].get(k)), f2(ev["iwae"] if ev else None)]
        cells.append(f2(r.get("cross", {}).get("iwae")))
        rows.append("| " + " | ".join(cells) + " |")
    runs = len(next(iter(results.values()))["pytorch"]["repeats"])
    notes = [
        "",
        f"s/epoch: median over epochs 2..{epochs}"
        + (f" of {runs} runs each (alternating)" if runs > 1 else "")
        + " of the training loop's wall time "
        "(evaluation excluded); held-out: after the last epoch, one posterior sample, "
        "nats/example on MNIST test 9000..9999; IWAE: -log p(x) bound, nats/example.",
    ]
    times = []
    for t, r in results.items():
        for k in ks:
            ev = r["deepgen"]["evals"].get(k)
            times.append(f"t={t} k={k}: PyTorch {r['pytorch']['iwae_seconds'][k]:.1f} s, "
                         f"deepgen {'–' if ev is None else format(ev['seconds'], '.1f')} s")
    notes.append("IWAE wall time: " + "; ".join(times) + ".")
    if runs > 1:
        notes.append("Per-run medians (s/epoch): " + "; ".join(
            f"t={t} {n} " + ", ".join(f"{median_epoch([h]):.3f}" for h in r[n]["repeats"])
            for t, r in results.items() for n in ("pytorch", "deepgen")) + ".")
    loads = [(t, n, max(r[n]["other_loads"], key=lambda l: -1 if l is None else l))
             for t, r in results.items() for n in ("pytorch", "deepgen")]
    if all(l is not None for _, _, l in loads):
        notes.append("Other load on the CPUs while training, worst run (0 = quiet machine): " + "; ".join(
            f"t={t} {n} {l:.0%}" for t, n, l in loads) + ".")
        busy = [f"t={t} {n}" for t, n, l in loads if l > 0.05]
        if busy:
            notes.append(f"WARNING: other work shared the CPUs during {', '.join(busy)}: "
                         "those timings are not clean; rerun on a quiet machine.")
    return "\n".join(rows + notes)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    p.add_argument("--k-large", type=int, default=5000, help="0 to skip")
    p.add_argument("--eval-timeout", type=float, default=600.0,
                   help="seconds allowed for one `deepgen eval vae`")
    p.add_argument("--work", type=Path, default=Path("/tmp/vae_compare"))
    p.add_argument("--repeats", type=int, default=1,
                   help="train each model this many times (alternating) and take the median "
                        "epoch time over all of them; bounds and losses come from the first")
    p.add_argument("--json", type=Path, help="also write the raw results here")
    args = p.parse_args()
    if not BIN.exists():
        sys.exit(f"{BIN} missing: cargo build --release -p deepgen-cli")
    args.work.mkdir(parents=True, exist_ok=True)
    ks = [100] + ([args.k_large] if args.k_large and args.k_large != 100 else [])
    train_x, held_x = load_mnist_test(args.data_dir)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs; train {len(train_x)}, "
          f"held-out {len(held_x)} images", flush=True)
    print(f"deepgen: {binary_identity()}", flush=True)
    results = {}
    for t in args.threads:
        pt = torch_run(t, args.epochs, train_x, held_x, ks, args.work)
        dg = deepgen_run(t, args.epochs, args.data_dir, ks, args.eval_timeout, args.work)
        for run in (pt, dg):
            run["repeats"] = [run["epochs"]]
            run["other_loads"] = [run["other_load"]]
        for i in range(1, args.repeats):
            # Timing only, alternating, so slow spells of the machine hit both.
            print(f"repeat {i + 1}/{args.repeats} (timing only)", flush=True)
            x = torch_run(t, args.epochs, train_x, held_x, [], args.work)
            y = deepgen_run(t, args.epochs, args.data_dir, [], args.eval_timeout,
                            args.work / "repeat")
            for run, new in ((pt, x), (dg, y)):
                run["repeats"].append(new["epochs"])
                run["other_loads"].append(new["other_load"])
        r = dict(pytorch=pt, deepgen=dg)
        if pt["checkpoint"] is not None:
            r["cross"] = deepgen_eval(t, args.data_dir, pt["checkpoint"], 100)
            print(f"  deepgen eval of PyTorch t={t} weights, k=100: "
                  f"negative ELBO {r['cross']['neg_elbo']:.2f}, IWAE {r['cross']['iwae']:.2f}",
                  flush=True)
        results[t] = r
    print()
    print(table(results, ks, args.epochs))
    if args.json:
        def clean(o):
            if isinstance(o, dict):
                return {str(k): clean(v) for k, v in o.items()}
            if isinstance(o, list):
                return [clean(v) for v in o]
            return str(o) if isinstance(o, Path) else o

        args.json.write_text(json.dumps(clean(results), indent=1))


if __name__ == "__main__":
    main()
