#!/usr/bin/env python3
"""deepgen's DCGAN against the same DCGAN in PyTorch, side by side.

The 28x28 nets of the GAN issue (pytorch/examples' dcgan scaled to MNIST,
convolutions without bias), each an nn.Sequential named `net` so state
dicts move between the two unchanged:

    G: z [100] -> ConvT(100, 256, k7) BN ReLU -> ConvT(256, 128, k4 s2 p1) BN ReLU
       -> ConvT(128, 1, k4 s2 p1) Tanh
    D: Conv(1, 64, k4 s2 p1) LeakyReLU(0.2) -> Conv(64, 128, k4 s2 p1) BN
       LeakyReLU(0.2) -> Conv(128, 1, k7) (a logit)

One iteration is pytorch/examples' dcgan step with BCE on logits: D on a
real batch (target 1) and on G's fake batch detached (target 0), D's Adam
step; then G through D on the same fake batch (target 1), G's Adam step
(lr 2e-4, betas (0.5, 0.999)); batch 64.

    cargo build --release -p deepgen-gan --example dcgan_step
    python3 benches/gan_compare.py speed --threads 1 2 [--iters 60] [--repeats 3]
    python3 benches/gan_compare.py train --steps 2000 [--data-dir ../shared/data/mnist]
        [--out /tmp/gan_compare] [--threads 2] [--seed 0]

`speed` times iterations (after 5 warm-up iterations) in PyTorch
(torch.set_num_threads(t)) and deepgen (target/release/examples/dcgan_step,
RAYON_NUM_THREADS=t), alternating the two R times, and prints the median
ms per iteration of each and their ratio.

`train` trains the PyTorch DCGAN on images 0..8999 of the MNIST test split
(scaled to [-1, 1], shuffled each epoch, --seed, default 0) for --steps iterations and
writes under --out: torch_samples.idx (1000 samples, 8-bit, as MNIST, for
`deepgen eval gan --samples`), torch_G.safetensors and torch_D.safetensors
(the nets' state dicts, for `deepgen train gan --init`), torch_grid.png
(64 samples) and torch_seconds.txt.
"""

import argparse
import gzip
import os
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
STEP_BIN = ROOT / "target" / "release" / "examples" / "dcgan_step"


def generator(latent=100):
    return nn.Sequential(
        nn.ConvTranspose2d(latent, 256, 7, 1, 0, bias=False),
        nn.BatchNorm2d(256),
        nn.ReLU(True),
        nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False),
        nn.BatchNorm2d(128),
        nn.ReLU(True),
        nn.ConvTranspose2d(128, 1, 4, 2, 1, bias=False),
        nn.Tanh(),
    )


def discriminator():
    return nn.Sequential(
        nn.Conv2d(1, 64, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(64, 128, 4, 2, 1, bias=False),
        nn.BatchNorm2d(128),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(128, 1, 7, 1, 0, bias=False),
    )


class Wrapped(nn.Module):
    """Puts the Sequential under the name `net` (net.0.weight, ...)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def dcgan_init(m):
    name = type(m).__name__
    if "Conv" in name:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def make_nets(seed=0):
    torch.manual_seed(seed)
    g, d = Wrapped(generator()), Wrapped(discriminator())
    g.apply(dcgan_init)
    d.apply(dcgan_init)
    return g, d


def iteration(g, d, opt_g, opt_d, real, latent=100):
    n = real.shape[0]
    ones, zeros = torch.ones(n), torch.zeros(n)
    d.zero_grad()
    loss_real = F.binary_cross_entropy_with_logits(d(real).view(-1), ones)
    loss_real.backward()
    fake = g(torch.randn(n, latent, 1, 1))
    loss_fake = F.binary_cross_entropy_with_logits(d(fake.detach()).view(-1), zeros)
    loss_fake.backward()
    opt_d.step()
    g.zero_grad()
    loss_g = F.binary_cross_entropy_with_logits(d(fake).view(-1), ones)
    loss_g.backward()
    opt_g.step()
    return (loss_real + loss_fake).item(), loss_g.item()


def adam(params):
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


def torch_speed(threads, iters, batch=64):
    torch.set_num_threads(threads)
    g, d = make_nets()
    opt_g, opt_d = adam(g.parameters()), adam(d.parameters())
    real = torch.rand(batch, 1, 28, 28) * 2 - 1
    times = []
    for i in range(iters + 5):
        t = time.perf_counter()
        iteration(g, d, opt_g, opt_d, real)
        if i >= 5:
            times.append((time.perf_counter() - t) * 1e3)
    return times


def deepgen_speed(threads, iters):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    p = subprocess.run([str(STEP_BIN), "--iters", str(iters)], env=env,
                       capture_output=True, text=True, check=True)
    # One line per timed iteration: "ms <float>".
    return [float(l.split()[1]) for l in p.stdout.splitlines() if l.startswith("ms ")]


def speed(args):
    if not STEP_BIN.exists():
        sys.exit(f"{STEP_BIN} missing: cargo build --release -p deepgen-gan --example dcgan_step")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs; batch 64, 28x28 DCGAN iteration")
    print("| threads | PyTorch ms (median) | deepgen ms (median) | ratio deepgen/PyTorch |")
    print("| --- | --- | --- | --- |")
    for t in args.threads:
        tt, dt = [], []
        for _ in range(args.repeats):
            tt += torch_speed(t, args.iters)
            dt += deepgen_speed(t, args.iters)
        a, b = statistics.median(tt), statistics.median(dt)
        print(f"| {t} | {a:.1f} | {b:.1f} | {b / a:.2f} |", flush=True)


def read_idx(path):
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(raw[3])]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def write_idx(path, images):
    """images: uint8 [n, 28, 28]."""
    n, h, w = images.shape
    header = bytes([0, 0, 8, 3]) + b"".join(v.to_bytes(4, "big") for v in (n, h, w))
    Path(path).write_bytes(header + images.tobytes())


def save_grid_png(path, images, nrow=8, pad=2):
    """images: uint8 [n, 28, 28] -> a grayscale PNG grid (zlib, no PIL needed)."""
    import struct
    import zlib

    n, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    gw, gh = nrow * (w + pad) + pad, rows * (h + pad) + pad
    grid = np.zeros((gh, gw), np.uint8)
    for i, img in enumerate(images):
        y, x = pad + (i // nrow) * (h + pad), pad + (i % nrow) * (w + pad)
        grid[y:y + h, x:x + w] = img
    raw = b"".join(b"\x00" + grid[r].tobytes() for r in range(gh))

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", gw, gh, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def to_bytes(x):
    return ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).squeeze(1).numpy()


def train(args):
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = read_idx(Path(args.data_dir) / "t10k-images-idx3-ubyte.gz")[:9000]
    data = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)
    g, d = make_nets(args.seed)
    opt_g, opt_d = adam(g.parameters()), adam(d.parameters())
    gen = torch.Generator().manual_seed(args.seed)
    step, start = 0, time.perf_counter()
    while step < args.steps:
        order = torch.randperm(len(data), generator=gen)
        for b in range(len(data) // 64):
            if step == args.steps:
                break
            ld, lg = iteration(g, d, opt_g, opt_d, data[order[b * 64:(b + 1) * 64]])
            step += 1
            if step % 200 == 0:
                print(f"step {step}: D {ld:.3f}, G {lg:.3f}, "
                      f"{(time.perf_counter() - start) / step * 1e3:.0f} ms/step", flush=True)
    seconds = time.perf_counter() - start
    g.train()  # samples as the training loop draws them (BatchNorm in train mode)
    with torch.no_grad():
        samples = torch.cat([g(torch.randn(100, 100, 1, 1)) for _ in range(10)])
    write_idx(out / "torch_samples.idx", to_bytes(samples))
    save_grid_png(out / "torch_grid.png", to_bytes(samples[:64]))
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, out / "torch_G.safetensors")
    save_file({k: v.contiguous() for k, v in d.state_dict().items()}, out / "torch_D.safetensors")
    (out / "torch_seconds.txt").write_text(f"{seconds:.1f}\n")
    print(f"{args.steps} steps in {seconds:.1f} s; wrote {out}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    s.add_argument("--iters", type=int, default=60)
    s.add_argument("--repeats", type=int, default=3)
    t = sub.add_parser("train")
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    t.add_argument("--out", default="/tmp/gan_compare")
    t.add_argument("--seed", type=int, default=0, help="nets' initialisation and data order")
    args = p.parse_args()
    speed(args) if args.cmd == "speed" else train(args)


if __name__ == "__main__":
    main()
