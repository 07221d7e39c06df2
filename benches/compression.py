#!/usr/bin/env python3
"""Compression of MNIST's held-out images: deepgen's lossless bits-back coder
beside the model's negative ELBO and the standard lossless codecs, and
deepgen's lossy codec beside JPEG and WebP, in one run, on the same images.

    python3 benches/compression.py --mnist ../shared/data/mnist [--epochs 60]
        [--out runs/compression] [--skip-train] [--only lossless|lossy]
        [--qualities 1,2,4,6,8] [--codec-epochs 25] [--warm-start 6,8]
        [--retrain Q,..] [--only recognisable] [--near 1,2,3,4,6,8,12]
        [--reuse-codecs results-lossy.json]

Takes MNIST's test split (t10k-images-idx3-ubyte.gz), trains two VAEs with
`deepgen train vae` on images 0..8999 — pytorch/examples' MLP VAE with a
Bernoulli decoder on the images binarised at 0.5, and the convolutional VAE
(32 latents) with a mixture of 5 discretised logistics on the 8-bit images,
its learning rate on a cosine schedule — and
holds out 9000..9999; each keeps its best checkpoint by held-out loss (9000
images overfit these models before 60 epochs). For both sets of the 1000 held-out images it
reports bits per dimension (bits per pixel) of:

- deepgen compress (whole set, header and initial bits counted), and the
  round trip checked byte for byte;
- the model's held-out negative ELBO (`deepgen eval vae`);
- gzip -9, bzip2 -9, xz -9e on the IDX file (whole set) and on each image
  alone (per file, 28x28 bytes each, headers counted);
- PNG (optimised; 1-bit for binary images) and lossless WebP (method 6),
  per image and as one grid of 40 x 25 images.

Lossy: one codec per --qualities (`deepgen train vae --arch codec
--quality Q`, the same split, batch 16, cosine learning rate), each
qualities 6 and 8 starting from the weights of the quality below them
(--warm-start: from scratch, quality 8 was far from converged at epoch 19
of 25), each compressing the 8-bit held-out images as one file and as one file per
image (1000 runs of `deepgen compress`, 54-byte header each); bits per
pixel against PSNR (from the mean squared error over all 784,000 pixels of
the decompressed images), beside JPEG (libjpeg via Pillow, 4:4:4 gray,
optimised Huffman tables) and lossy WebP (method 6) at several qualities,
each as one 40 x 25 grid of the images and as one file per image, headers
counted on every side. Writes rd.png (matplotlib). Whether the digits stay
recognisable: a classifier (`deepgen train classifier`, 5 epochs on the
original images 0..8999) labels every codec's decompressed held-out images
(results-recognisable.md; `--only recognisable` reruns just this).

Near-lossless (--near): the 8-bit lossless VAE codes each pixel's bin of
2K+1 levels (`deepgen compress --near K`, every pixel within K of the
original), one point per K on the same plot, whole set and per file.

Compression and decompression speed (images per second) is measured on 1
and 2 threads. Needs Pillow with WebP; writes results.json and results.md
(lossy: results-lossy.json, results-lossy.md) in --out.
"""

import argparse
import bz2
import gzip
import io
import json
import lzma
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DEEPGEN = ROOT / "target" / "release" / "deepgen"
N_TRAIN, N_ALL = 9000, 10000
PIXELS = 784


def read_idx_images(path):
    raw = gzip.open(path).read() if str(path).endswith(".gz") else open(path, "rb").read()
    n, rows, cols = (int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(3))
    assert raw[:4] == b"\x00\x00\x08\x03" and (rows, cols) == (28, 28), "not MNIST images"
    return [raw[16 + i * PIXELS : 16 + (i + 1) * PIXELS] for i in range(n)]


def idx_bytes(images):
    return b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in (len(images), 28, 28)) + b"".join(images)


def binarise(image):
    return bytes(255 if b >= 128 else 0 for b in image)


def grid(images, cols=40):
    """The images tiled cols wide (WebP allows at most 16383 pixels a side)."""
    rows = len(images) // cols
    out = bytearray()
    for r in range(rows):
        for y in range(28):
            for c in range(cols):
                out += images[r * cols + c][28 * y : 28 * (y + 1)]
    return bytes(out), 28 * cols


def png_size(image, binary, width=28):
    img = Image.frombytes("L", (width, len(image) // width), image)
    if binary:
        img = img.convert("1")
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return len(buf.getvalue())


def webp_size(image, width=28):
    img = Image.frombytes("L", (width, len(image) // width), image)
    buf = io.BytesIO()
    img.save(buf, "WEBP", lossless=True, quality=100, method=6)
    return len(buf.getvalue())


def standard_codecs(images, binary):
    """Bytes of each codec, whole set and summed over one file per image."""
    whole = idx_bytes(images)
    tiled, width = grid(images)  # 40 x 25 images
    codecs = {
        "gzip -9": lambda b: len(gzip.compress(b, 9, mtime=0)),
        "bzip2 -9": lambda b: len(bz2.compress(b, 9)),
        "xz -9e": lambda b: len(lzma.compress(b, preset=9 | lzma.PRESET_EXTREME)),
    }
    out = {}
    for name, size in codecs.items():
        out[name] = {"whole": size(whole), "per_file": sum(size(idx_bytes([i])) for i in images)}
    out["PNG"] = {"whole": png_size(tiled, binary, width), "per_file": sum(png_size(i, binary) for i in images)}
    out["WebP lossless"] = {"whole": webp_size(tiled, width), "per_file": sum(webp_size(i) for i in images)}
    return out


def run(args, threads=None, quiet=False):
    cmd = [str(DEEPGEN)] + ([f"--threads={threads}"] if threads else []) + [str(a) for a in args]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr}")
    if not quiet:
        print(p.stdout.strip())
    return p.stdout, time.perf_counter() - t0


def train(name, out, mnist, epochs, extra):
    args = ["train", "vae", "--dataset", "mnist", "--data-dir", mnist, "--test-split",
            "--train-range", f"0..{N_TRAIN}", "--held-out", f"{N_TRAIN}..{N_ALL}",
            "--epochs", epochs, "--out", out / name, "--force", "--quiet", "--no-tensorboard",
            "--keep", "best,last"] + extra
    run(args)


def neg_elbo_bits(checkpoint):
    text, _ = run(["eval", "vae", "--checkpoint", checkpoint, "--k", "1", "--quiet"], quiet=True)
    nats = float(re.search(r"negative ELBO ([0-9.]+)", text).group(1))
    return nats / PIXELS / math.log(2), text.strip()


def deepgen_codec(checkpoint, idx_path, out):
    packed, back = out / (idx_path.stem + ".dgnz"), out / (idx_path.stem + ".back.idx")
    speed = {}
    for threads in (1, 2):
        _, t_c = run(["compress", "--checkpoint", checkpoint, idx_path, packed], threads, quiet=threads == 2)
        _, t_d = run(["decompress", "--checkpoint", checkpoint, packed, back], threads, quiet=True)
        speed[threads] = (1000 / t_c, 1000 / t_d)
    assert back.read_bytes() == idx_path.read_bytes(), "the round trip changed the file"
    return packed.stat().st_size, speed


def per_file_sizes(checkpoint, images, out, flags=()):
    """Bytes of deepgen's files when each image is compressed alone (header
    and, for bits-back, the initial bits paid by every file), with every
    decompressed image returned for checking."""
    one, packed, back = out / "one.idx", out / "one.dgnz", out / "one.back.idx"
    size, decoded = 0, []
    for image in images:
        one.write_bytes(idx_bytes([image]))
        run(["compress", *flags, "--checkpoint", checkpoint, one, packed], 1, quiet=True)
        run(["decompress", "--checkpoint", checkpoint, packed, back], 1, quiet=True)
        size += packed.stat().st_size
        decoded.append(back.read_bytes()[16:])
    return size, decoded


def psnr(a, b):
    """PSNR in dB of 8-bit images b against a, from the MSE over all pixels."""
    se = sum((x - y) ** 2 for x, y in zip(a, b))
    return 10 * math.log10(255 ** 2 * len(a) / se) if se else float("inf")


def pillow_lossy(image, fmt, quality, width=28):
    """(size, decoded bytes) of an 8-bit gray image through JPEG or WebP."""
    img = Image.frombytes("L", (width, len(image) // width), image)
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=quality, optimize=True)
    else:
        img.save(buf, "WEBP", quality=quality, method=6)
    data = buf.getvalue()
    return len(data), Image.open(io.BytesIO(data)).convert("L").tobytes()


def standard_lossy(images):
    """JPEG and WebP at several qualities: bits per pixel and PSNR, as one
    grid and as one file per image."""
    tiled, width = grid(images)
    original = b"".join(images)
    dims = len(original)
    out = {}
    for fmt, qualities in (("JPEG", (5, 10, 20, 30, 50, 70, 90)), ("WebP", (0, 5, 10, 20, 30, 50, 70, 90))):
        for q in qualities:
            size, back = pillow_lossy(tiled, fmt, q, width)
            per = [pillow_lossy(i, fmt, q) for i in images]
            out[f"{fmt} {q}"] = {
                "grid": (8 * size / dims, psnr(tiled, back)),
                "per_file": (8 * sum(s for s, _ in per) / dims, psnr(original, b"".join(b for _, b in per))),
            }
    return out


# The lossless model of 8-bit images: a convolutional VAE with a mixture of
# discretised logistics (also the near-lossless coder).
EIGHT_BIT = ["--likelihood", "logistic-mixture", "--components", "5",
             "--arch", "conv", "--latent", "32", "--lr-schedule", "cosine"]


def eight_bit_model(args):
    """The 8-bit lossless VAE's best checkpoint, trained first unless it
    exists or --skip-train."""
    if not args.skip_train and not (args.out / "8-bit" / "checkpoints" / "best").exists():
        train("8-bit", args.out, args.mnist, args.epochs, EIGHT_BIT)
        args.trained.add("8-bit")
    return best_checkpoint(args.out / "8-bit")


def best_checkpoint(run_dir):
    checkpoints = run_dir / "checkpoints"
    return checkpoints / (checkpoints / "best").read_text().strip() / "model.safetensors"


def train_codec(q, out, mnist, epochs, init=None):
    """One codec at quality q; `init`: the weights it starts from."""
    train(f"codec-q{q}", out, mnist, epochs,
          ["--arch", "codec", "--quality", q, "--widths", "64,64", "--latent", "16",
           "--batch-size", "16", "--lr-schedule", "cosine"] + (["--init", init] if init else []))


def deepgen_lossy(checkpoint, images, out, flags=()):
    """Bits per pixel and PSNR of a codec (or of the bits-back VAE with
    `flags` ["--near", K]): the whole set as one file (and its speed), and
    each image as its own file."""
    original = b"".join(images)
    idx_path = out / "heldout-8-bit.idx"
    idx_path.write_bytes(idx_bytes(images))
    packed, back = out / "lossy.dgnz", out / "lossy.back.idx"
    speed = {}
    for threads in (1, 2):
        _, t_c = run(["compress", *flags, "--checkpoint", checkpoint, idx_path, packed], threads, quiet=True)
        _, t_d = run(["decompress", "--checkpoint", checkpoint, packed, back], threads, quiet=True)
        speed[threads] = (len(images) / t_c, len(images) / t_d)
    decoded = back.read_bytes()[16:]
    whole = (8 * packed.stat().st_size / len(original), psnr(original, decoded))
    size, parts = per_file_sizes(checkpoint, images, out, flags)
    per_file = (8 * size / len(original), psnr(original, b"".join(parts)))
    assert b"".join(parts) == decoded, "an image alone decodes as in the whole set"
    return {"grid": whole, "per_file": per_file}, speed


def codec_qualities(args):
    return [q for q in args.qualities.split(",") if q]


def lossy(args, images):
    results, speeds = {}, {}
    qualities = codec_qualities(args)
    retrain = qualities if args.retrain is None else args.retrain.split(",")
    warm = args.warm_start.split(",") if args.warm_start else []
    for i, q in enumerate(qualities):
        if not args.skip_train and q in retrain:
            # High qualities converge slowly from scratch: they start from
            # the weights of the quality below them.
            init = best_checkpoint(args.out / f"codec-q{qualities[i - 1]}") if q in warm and i else None
            train_codec(q, args.out, args.mnist, args.codec_epochs, init)
        checkpoint = best_checkpoint(args.out / f"codec-q{q}")
        results[f"deepgen {q}"], speeds[q] = deepgen_lossy(checkpoint, images, args.out)
        print(f"quality {q}: {results[f'deepgen {q}']}")
    if args.reuse_codecs:
        # Codec points measured by an earlier run of this script (its
        # results-lossy.json), on the same images.
        earlier = json.loads(Path(args.reuse_codecs).read_text())["codecs"]
        results.update({f"{n} (earlier run)": r for n, r in earlier.items()
                        if n.startswith("deepgen ") and n not in results})
    near = [k for k in args.near.split(",") if k]
    if near:
        vae = eight_bit_model(args)
    for k in near:
        name = f"near-lossless {k}"
        results[name], speeds[name] = deepgen_lossy(vae, images, args.out, ["--near", k])
        print(f"{name}: {results[name]}")
    results.update(standard_lossy(images))
    lines = ["### lossy, 8-bit MNIST, images 9000..9999: bits per pixel and PSNR (dB)", "",
             "| codec, quality | one grid / one file: bits per pixel | PSNR | one file per image: bits per pixel | PSNR |",
             "| --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        (gb, gp), (fb, fp) = r["grid"], r["per_file"]
        lines.append(f"| {name} | {gb:.4f} | {gp:.2f} | {fb:.4f} | {fp:.2f} |")
    lines += ["", "deepgen speed, images/s (compress / decompress): " + "; ".join(
        (f"quality {q}: " if q[0].isdigit() else f"{q}: ") + ", ".join(f"{t} thread{'s' if t > 1 else ''} {c:.0f} / {d:.0f}"
                                     for t, (c, d) in sp.items()) for q, sp in speeds.items()), ""]
    text = "\n".join(lines)
    print(text)
    (args.out / "results-lossy.md").write_text(text + "\n")
    (args.out / "results-lossy.json").write_text(json.dumps({"codecs": results, "speed": speeds}, indent=2) + "\n")
    rd_plot(results, args.out / "rd.png")


def rd_plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    styles = {"deepgen": ("C3", "o"), "near-lossless": ("C1", "D"), "JPEG": ("C0", "s"), "WebP": ("C2", "^")}
    labels = {"deepgen": "deepgen codec (factorised prior)",
              "near-lossless": "deepgen near-lossless (bits-back VAE, --near 1..)"}
    for ax, key, title in zip(axes, ("grid", "per_file"),
                              ("all 1000 images in one file (JPEG/WebP: one 40x25 grid)",
                               "one file per image (headers counted)")):
        for codec, (color, marker) in styles.items():
            pts = sorted(r[key] for n, r in results.items() if n.split()[0] == codec)
            label = labels.get(codec, codec)
            ax.plot([b for b, _ in pts], [p for _, p in pts], color=color, marker=marker, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("bits per pixel")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    axes[0].set_ylabel("PSNR (dB)")
    fig.suptitle("8-bit MNIST, held-out images 9000..9999: rate against distortion")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def recognisable(args, images):
    """How recognisable each lossy codec's digits are: the accuracy of a
    classifier (`deepgen train classifier`, trained on the original images
    0..8999) on the decompressed held-out images, beside its accuracy on the
    originals. Every deepgen codec is decoded from its whole-set file (an
    image decodes the same alone, as the lossy run checks); JPEG and WebP
    one file per image."""
    if not codec_qualities(args):
        return
    labels_gz = Path(args.mnist) / "t10k-labels-idx1-ubyte.gz"
    all_images = read_idx_images(Path(args.mnist) / "t10k-images-idx3-ubyte.gz")
    clf_dir = args.out / "classifier"
    if not args.skip_train:
        run(["train", "classifier", "--dataset", "mnist", "--data-dir", args.mnist, "--test-split",
             "--train-range", f"0..{N_TRAIN}", "--held-out", f"{N_TRAIN}..{N_ALL}", "--epochs", "5",
             "--out", clf_dir, "--force", "--quiet", "--no-tensorboard"])
    clf = clf_dir / "classifier.safetensors"

    def accuracy(held_out):
        data = args.out / "recognisable"
        data.mkdir(exist_ok=True)
        (data / "t10k-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(idx_bytes(all_images[:N_TRAIN] + held_out), 1, mtime=0))
        (data / "t10k-labels-idx1-ubyte.gz").write_bytes(labels_gz.read_bytes())
        text, _ = run(["eval", "classifier", "--checkpoint", clf, "--dataset", "mnist", "--data-dir", data,
                       "--test-split", "--held-out", f"{N_TRAIN}..{N_ALL}"], quiet=True)
        return float(re.search(r"accuracy ([0-9.]+)%", text).group(1))

    rows = [("originals", None, accuracy(images))]
    idx_path = args.out / "heldout-8-bit.idx"
    idx_path.write_bytes(idx_bytes(images))
    for q in codec_qualities(args):
        checkpoint = best_checkpoint(args.out / f"codec-q{q}")
        packed, back = args.out / "lossy.dgnz", args.out / "lossy.back.idx"
        run(["compress", "--checkpoint", checkpoint, idx_path, packed], quiet=True)
        run(["decompress", "--checkpoint", checkpoint, packed, back], quiet=True)
        decoded = back.read_bytes()[16:]
        parts = [decoded[i * PIXELS:(i + 1) * PIXELS] for i in range(len(images))]
        rows.append((f"deepgen {q}", 8 * packed.stat().st_size / len(decoded), accuracy(parts)))
    for fmt, qualities in (("JPEG", (5, 10, 20, 30, 50, 70, 90)), ("WebP", (0, 5, 10, 20, 30, 50, 70, 90))):
        for q in qualities:
            per = [pillow_lossy(i, fmt, q) for i in images]
            bits = 8 * sum(n for n, _ in per) / (len(images) * PIXELS)
            rows.append((f"{fmt} {q}", bits, accuracy([b for _, b in per])))
    lines = ["### lossy: are the digits recognisable? (classifier accuracy on the decompressed images)", "",
             "| codec, quality | bits per pixel (deepgen: one file; JPEG / WebP: one file per image) | accuracy (%) |",
             "| --- | --- | --- |"]
    lines += [f"| {n} | {'' if b is None else f'{b:.4f}'} | {a:.2f} |" for n, b, a in rows]
    text = "\n".join(lines)
    print(text)
    (args.out / "results-recognisable.md").write_text(text + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", required=True, help="folder with t10k-images-idx3-ubyte.gz")
    ap.add_argument("--epochs", default="60")
    ap.add_argument("--out", default="runs/compression", type=Path)
    ap.add_argument("--skip-train", action="store_true", help="reuse the models in --out")
    ap.add_argument("--only", choices=("lossless", "lossy", "recognisable"))
    ap.add_argument("--qualities", default="1,2,4,6,8")
    ap.add_argument("--codec-epochs", default="25")
    ap.add_argument("--reuse-codecs", help="results-lossy.json of an earlier run: its deepgen codec points "
                    "join the table and plot (with --qualities '' to train and run none now)")
    ap.add_argument("--near", default="1,2,3,4,6,8,12",
                    help="near-lossless points of the 8-bit VAE (largest pixel errors); '' for none")
    ap.add_argument("--warm-start", default="6,8",
                    help="qualities that start from the previous quality's weights")
    ap.add_argument("--retrain", help="train only these qualities, reuse the others [default: all]")
    args = ap.parse_args()
    args.trained = set()  # models this run has trained already
    args.out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cargo", "build", "--release", "-p", "deepgen-cli"], cwd=ROOT, check=True)

    images = read_idx_images(Path(args.mnist) / "t10k-images-idx3-ubyte.gz")[N_TRAIN:N_ALL]
    if args.only == "recognisable":
        return recognisable(args, images)
    if args.only != "lossless":
        lossy(args, images)
        recognisable(args, images)
    if args.only == "lossy":
        return
    sets = {
        "binarised": ([binarise(i) for i in images], True, ["--binarize", "--likelihood", "bernoulli"]),
        "8-bit": (images, False, EIGHT_BIT),
    }
    results = {}
    for name, (imgs, binary, extra) in sets.items():
        idx_path = args.out / f"heldout-{name}.idx"
        idx_path.write_bytes(idx_bytes(imgs))
        if not args.skip_train and name not in args.trained:
            train(name, args.out, args.mnist, args.epochs, extra)
        checkpoint = best_checkpoint(args.out / name)
        elbo_bpd, elbo_text = neg_elbo_bits(checkpoint)
        size, speed = deepgen_codec(checkpoint, idx_path, args.out)
        one_by_one, decoded = per_file_sizes(checkpoint, imgs, args.out)
        assert decoded == list(imgs), "an image alone did not round trip"
        results[name] = {
            "deepgen (bits-back)": {"whole": size, "per_file": one_by_one},
            "negative ELBO (bpd)": elbo_bpd,
            "eval": elbo_text,
            "speed (images/s: compress, decompress) by threads": speed,
            **standard_codecs(imgs, binary),
        }
    dims = len(images) * PIXELS
    lines = []
    for name, r in results.items():
        lines += [f"### {name} MNIST, images 9000..9999 ({dims} pixels)", "",
                  "| codec | whole set (bits/dim) | one file per image (bits/dim) |",
                  "| --- | --- | --- |",
                  f"| model's negative ELBO | {r['negative ELBO (bpd)']:.4f} | |"]
        for codec, v in r.items():
            if isinstance(v, dict) and "whole" in v:
                per = f"{8 * v['per_file'] / dims:.4f}" if "per_file" in v else ""
                lines.append(f"| {codec} | {8 * v['whole'] / dims:.4f} | {per} |")
        sp = r["speed (images/s: compress, decompress) by threads"]
        lines += ["", "speed, images/s (compress / decompress): " +
                  ", ".join(f"{t} thread{'s' if t > 1 else ''} {c:.0f} / {d:.0f}" for t, (c, d) in sp.items()), ""]
    text = "\n".join(lines)
    print(text)
    (args.out / "results.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
