#!/usr/bin/env python3
"""Writes the seed corpora of the checkpoint fuzz targets into seeds/.

model_file: small real model files of each kind deepgen trains (made with
the `deepgen` binary given as the first argument) and crafted variants of
them: metadata that claims huge sizes (hidden 3e6, latent 1e12, an image of
1e5 x 1e5, conv widths of 1e8), a tensor named twice, NaN weights.
resume_files: a Linear(3, 2) module file, its Adam state and a progress
file in the target's layout (2-byte length, file, 2-byte length, file,
file), plus crafted counters and shapes.
"""
import json, os, struct, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


def write_bytes(header_text, body):
    h = header_text.encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + body


def tensors(entries, meta=None):
    """entries: list of (name, dtype, shape, bytes) -> safetensors bytes."""
    header, body, off = {}, b"", 0
    if meta is not None:
        header["__metadata__"] = meta
    for name, dtype, shape, data in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        body += data
        off += len(data)
    return write_bytes(json.dumps(header), body)


def f32(*v):
    return struct.pack(f"<{len(v)}f", *v)


def f64(*v):
    return struct.pack(f"<{len(v)}d", *v)


def i64(*v):
    return struct.pack(f"<{len(v)}q", *v)


def model_seeds(deepgen, out):
    runs = {
        "vae-mlp": ["train", "vae", "--hidden", "4", "--latent", "2"],
        "vae-conv": ["train", "vae", "--arch", "conv", "--widths", "2,2", "--hidden", "4", "--latent", "2"],
        "vae-codec": ["train", "vae", "--arch", "codec", "--widths", "2", "--latent", "2"],
        "gan-mlp": ["train", "gan", "--arch", "mlp", "--width", "4", "--latent", "2"],
        "gan-dcgan": ["train", "gan", "--arch", "dcgan", "--width", "2", "--latent", "2", "--conditional"],
    }
    tmp = tempfile.mkdtemp()
    files = {}
    for name, args in runs.items():
        run = os.path.join(tmp, name)
        subprocess.run([deepgen, *args, "--synthetic-size", "120", "--epochs", "1", "--quiet",
                        "--no-tensorboard", "--out", run], check=True, stdout=subprocess.DEVNULL)
        for f in sorted(os.listdir(run)):
            if f.endswith(".safetensors"):
                files[f"{name}-{f}"] = open(os.path.join(run, f), "rb").read()
    for name, data in files.items():
        open(os.path.join(out, name), "wb").write(data)
    # Crafted variants of the MLP VAE's file.
    path = os.path.join(out, "vae-mlp-model.safetensors")
    header, body = read(path)
    config = json.loads(header["__metadata__"]["deepgen.vae"])
    for key, value in [("hidden", 3_000_000), ("latent", 10**12), ("image_shape", [1, 100000, 100000]),
                       ("widths", [100_000_000, 2]), ("hidden", 2**62)]:
        c = dict(config, **{key: value})
        if key == "widths":
            c["arch"] = "conv"
        h = json.loads(json.dumps(header))
        h["__metadata__"]["deepgen.vae"] = json.dumps(c)
        open(os.path.join(out, f"crafted-{key}.safetensors"), "wb").write(write_bytes(json.dumps(h), body))
    text = open(path, "rb").read()
    n = struct.unpack("<Q", text[:8])[0]
    raw = text[8:8 + n].decode().rstrip()
    first = next(k for k in header if k != "__metadata__")
    twice = raw[:-1] + "," + json.dumps(first) + ":" + json.dumps(header[first]) + "}"
    open(os.path.join(out, "crafted-twice.safetensors"), "wb").write(write_bytes(twice, body))
    nan = bytearray(body)
    nan[0:4] = f32(float("nan"))
    open(os.path.join(out, "crafted-nan.safetensors"), "wb").write(write_bytes(raw, bytes(nan)))


def resume_seeds(out):
    model = tensors([("weight", "F32", [2, 3], f32(*range(6))), ("bias", "F32", [2], f32(1, 2))], {"format": "pt"})
    opt = [("optimizer.group.0.amsgrad", "F64", [], f64(0)), ("optimizer.group.0.betas", "F64", [2], f64(0.9, 0.999)),
           ("optimizer.group.0.decoupled_weight_decay", "F64", [], f64(0)), ("optimizer.group.0.eps", "F64", [], f64(1e-8)),
           ("optimizer.group.0.lr", "F64", [], f64(1e-3)), ("optimizer.group.0.maximize", "F64", [], f64(0)),
           ("optimizer.group.0.params", "F64", [2], f64(0, 1)), ("optimizer.group.0.weight_decay", "F64", [], f64(0))]
    for i, shape in enumerate([[2, 3], [2]]):
        n = 6 if i == 0 else 2
        opt += [(f"optimizer.state.{i}.exp_avg", "F64", shape, f64(*[0.1] * n)),
                (f"optimizer.state.{i}.exp_avg_sq", "F64", shape, f64(*[0.01] * n)),
                (f"optimizer.state.{i}.step", "F64", [], f64(3))]
    opt += [("updater.pending", "F64", [1], f64(0)), ("updater.total", "F64", [1], f64(20)),
            ("updater.updates", "F64", [1], f64(3))]
    trainer = [("batches_done", "I64", [1], i64(0)), ("epochs_done", "I64", [1], i64(1)),
               ("global_step", "I64", [1], i64(10)), ("number.best", "F64", [1], f64(0.5)),
               ("rng.noise.seed", "I64", [4], i64(1, 2, 3, 4)), ("rng.noise.stream", "I64", [1], i64(0)),
               ("rng.noise.word_pos", "I64", [2], i64(0, 40))]

    def seed(name, m, o, t):
        parts = b""
        for p in (m, o):
            parts += struct.pack("<H", len(p)) + p
        open(os.path.join(out, name), "wb").write(parts + t)

    seed("real", model, tensors(opt), tensors(trainer))
    crafted = [(n, d, s, v) for n, d, s, v in opt]
    crafted = [(n, d, [1 << 20] if n.endswith("exp_avg") else s, v) for n, d, s, v in crafted]
    seed("crafted-shapes", model, tensors(opt[:-3] + [("updater.pending", "F64", [1], f64(1e300))]), tensors(trainer))
    seed("crafted-counters", model, tensors(opt),
         tensors([(n, d, s, i64(-1) * s[0] if d == "I64" else v) for n, d, s, v in trainer]))
    seed("crafted-params", model, tensors(opt[:6] + [("optimizer.group.0.params", "F64", [2], f64(1e18, -5))] + opt[7:]),
         tensors(trainer))


if __name__ == "__main__":
    deepgen = sys.argv[1]
    for target in ("model_file", "resume_files"):
        os.makedirs(os.path.join(HERE, "seeds", target), exist_ok=True)
    model_seeds(deepgen, os.path.join(HERE, "seeds", "model_file"))
    resume_seeds(os.path.join(HERE, "seeds", "resume_files"))
