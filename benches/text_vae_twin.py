#!/usr/bin/env python3
"""deepgen's sentence VAE (Bowman et al. 2016) in PyTorch, to train side by side.

The twin of `deepgen train text-vae` (crates/text, crates/cli/src/cmd/
train_text.rs): the same lines, split and vocabulary, the same model
(embedding -> bidirectional GRU encoder over packed sequences -> mu, logvar
-> tanh(W z) as the decoder GRU's initial state -> token logits), PyTorch's
default initialisation, Adam with deepgen's defaults, the same KL annealing,
free bits and word dropout, the same number of steps, and the same held-out
figures after each epoch (negative ELBO per line and per token, its KL part,
active units). Each epoch prints a line in the format deepgen prints, and
--out gets a JSON file of the setup and the epochs.

Side by side on Tiny Shakespeare, one thread each (deepgen's --threads is a
global flag; without it deepgen uses RAYON_NUM_THREADS, else one thread per
core, the default --threads here too):

    cargo build --release -p deepgen-cli
    target/release/deepgen --threads 1 train text-vae \\
        --text ../shared/data/tinyshakespeare/input.txt --level char --epochs 2 \\
        --out runs/text-shakespeare --force --quiet --no-tensorboard
    python3 benches/text_vae_twin.py \\
        --text ../shared/data/tinyshakespeare/input.txt --level char --epochs 2 \\
        --threads 1 --out runs/text-shakespeare-torch.json

Both take --max-len (64), --train-fraction (0.9), --batch-size (32), --lr
(1e-3), --embed (64), --hidden (256), --latent (32), --unidirectional,
--word-dropout (0.3), --kl-anneal-steps (2000), --free-bits (0.1) and --seed
(0), with the same defaults; pass the same values to both. deepgen's run
prints "training a sentence VAE (P parameters) on N lines (H held out) of
FILE, V tokens of characters", and so does this script: P, N, H and V must
agree. deepgen's seconds per epoch (crates/train/src/fit.rs) and train_seconds here both time
the epoch's steps only, not the held-out evaluation.

Only here (deepgen has no such flags): --limit-lines N keeps the first N
usable lines (non-empty, at most --max-len tokens) before the split; the
script prints the `head -n K FILE` that gives deepgen the same lines.
--max-steps S stops each epoch after S updates (KL annealing then counts
the updates taken, which is deepgen's step index whenever no epoch is cut).

What cannot be the same: the random numbers. deepgen draws its weights, its
shuffling, the noise eps and the word-dropout masks from ChaCha8 generators;
here they come from PyTorch's generator (torch.manual_seed(--seed) for the
weights, eps and word dropout; a torch.Generator seeded by --seed for the
shuffling; a fresh torch.Generator seeded by seed ^ 0xE7A1 for the held-out
noise at each evaluation, as deepgen re-seeds its evaluation noise with
seed ^ 0xe7a1 every epoch). The two runs see the same distributions, not the
same draws, so their losses agree in expectation, not digit for digit.

    python3 benches/text_vae_twin.py --text input.txt --limit-lines 2000 --epochs 1 --threads 1
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

# crates/data/src/text.rs:28-36: the special tokens' ids and names.
PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]

# Rust's char::is_whitespace (the Unicode White_Space property), which
# str::trim and str::split_whitespace use (text.rs:54, 223). Python's
# str.isspace differs: it also counts U+001C..U+001F.
WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)
WHITESPACE_SET = frozenset(WHITESPACE)


# ---------------------------------------------------------------- text data


def rust_lines(text):
    """str::lines (Rust 1.77 and later): split at "\\n", drop one "\\r"
    before it, no empty last line after a final newline (a lone "\\r" at the
    very end stays)."""
    parts = text.split("\n")
    last = parts.pop()
    lines = [p[:-1] if p.endswith("\r") else p for p in parts]
    if last:
        lines.append(last)
    return lines


def split_whitespace(line):
    """str::split_whitespace."""
    words, word = [], []
    for c in line:
        if c in WHITESPACE_SET:
            if word:
                words.append("".join(word))
                word = []
        else:
            word.append(c)
    if word:
        words.append("".join(word))
    return words


def tokens(line, level):
    """Level::tokens (text.rs:48-56): every Unicode scalar value, or words."""
    return list(line) if level == "char" else split_whitespace(line)


def read_lines(path, level, max_len, limit):
    """text::lines (text.rs:204-238): the UTF-8 file's lines, skipping (and
    counting) the empty or whitespace-only ones and those of more than
    max_len tokens. With `limit`, only the first `limit` usable lines, and
    the count of raw lines they come from (deepgen reads the same from
    `head -n raw FILE`)."""
    text = Path(path).read_bytes().decode("utf-8")  # strict, as from_utf8
    kept, empty, too_long, raw = [], 0, 0, 0
    for line in rust_lines(text):
        if limit is not None and len(kept) >= limit:
            break
        raw += 1
        if not line.strip(WHITESPACE):
            empty += 1
        elif len(tokens(line, level)) > max_len:
            too_long += 1
        else:
            kept.append(line)
    if not kept:
        sys.exit(f"{path}: no usable lines ({empty} empty, {too_long} longer than {max_len} tokens)")
    return kept, empty, too_long, raw


class Vocab:
    """Vocab::build (text.rs:85-106): the specials, then every token of the
    training lines in order of first appearance; unknown tokens are <unk>."""

    def __init__(self, lines, level):
        self.level = level
        self.tokens = list(SPECIALS)
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        for line in lines:
            for t in tokens(line, level):
                if t not in self.ids:
                    self.ids[t] = len(self.tokens)
                    self.tokens.append(t)
        if len(self.tokens) == len(SPECIALS):
            sys.exit("vocabulary: the training lines have no tokens")

    def __len__(self):
        return len(self.tokens)

    def encode(self, line):
        return [self.ids.get(t, UNK) for t in tokens(line, self.level)]

    def decode(self, ids):
        words = [self.tokens[i] for i in ids]
        return "".join(words) if self.level == "char" else " ".join(words)


def split_fraction(lines, level, fraction):
    """TextSet::split_fraction (text.rs:292-296): the first
    floor(len x fraction) lines (clamped to 1..len-1) train, the rest are
    held out; the vocabulary is the training lines'."""
    cut = min(max(int(len(lines) * fraction), 1), len(lines) - 1)
    vocab = Vocab(lines[:cut], level)
    encode = lambda part: [torch.tensor(vocab.encode(l), dtype=torch.long) for l in part]
    return vocab, encode(lines[:cut]), encode(lines[cut:])


_BOS = torch.tensor([BOS])
_EOS = torch.tensor([EOS])


def collate(lines):
    """text::batch (text.rs:348-364): inputs <bos> x, targets x <eos>, both
    padded with <pad> to the longest line + 1, and lengths len(x) + 1."""
    inputs = pad_sequence([torch.cat((_BOS, l)) for l in lines], batch_first=True, padding_value=PAD)
    targets = pad_sequence([torch.cat((l, _EOS)) for l in lines], batch_first=True, padding_value=PAD)
    lengths = torch.tensor([len(l) + 1 for l in lines])
    return inputs, targets, lengths


# -------------------------------------------------------------------- model


def word_dropout(inputs, p):
    """deepgen_text::word_dropout (crates/text/src/lib.rs): each decoder
    input but <bos> and <pad> becomes <unk> with probability p."""
    if p <= 0:
        return inputs
    drop = (torch.rand(inputs.shape) < p) & (inputs != BOS) & (inputs != PAD)
    return inputs.masked_fill(drop, UNK)


class SentenceVAE(nn.Module):
    """SentenceVae (crates/text/src/lib.rs), with the parameter names of
    deepgen's state dict (embed, encoder, fc_mu, fc_logvar, fc_init,
    decoder, out). nn.Embedding without padding_idx, as deepgen's Embedding
    (N(0, 1) rows for every id)."""

    def __init__(self, vocab, embed=64, hidden=256, latent=32, bidirectional=True):
        super().__init__()
        directions = 2 if bidirectional else 1
        self.embed = nn.Embedding(vocab, embed)
        self.encoder = nn.GRU(embed, hidden, batch_first=True, bidirectional=bidirectional)
        self.fc_mu = nn.Linear(directions * hidden, latent)
        self.fc_logvar = nn.Linear(directions * hidden, latent)
        self.fc_init = nn.Linear(latent, hidden)
        self.decoder = nn.GRU(embed, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def encode(self, targets, lengths):
        """SentenceVae::encode / encode_states: the encoder reads the *targets* (x <eos>, length
        len(x) + 1); its final states [directions, batch, hidden] become
        [batch, directions x hidden], forward direction first."""
        x = pack_padded_sequence(self.embed(targets), lengths, batch_first=True, enforce_sorted=False)
        _, h = self.encoder(x)
        h = h.transpose(0, 1).reshape(targets.size(0), -1)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z, inputs, lengths):
        """SentenceVae::decode (Decoding::decode): h0 = tanh(fc_init(z)); the decoder GRU over the
        packed embedded inputs; logits [batch, time, vocab] (zero states,
        so bias logits, past each line's end; the loss ignores them)."""
        h0 = torch.tanh(self.fc_init(z)).unsqueeze(0)
        x = pack_padded_sequence(self.embed(inputs), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.decoder(x, h0)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=inputs.size(1))
        return self.out(out)

    def forward(self, inputs, targets, lengths, eps, beta=1.0, word_dropout_p=0.0, free_bits=0.0):
        """SentenceVae::terms: (loss, reconstruction, KL,
        mu), each term per sentence (batch mean)."""
        n = targets.size(0)
        mu, logvar = self.encode(targets, lengths)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = self.decode(z, word_dropout(inputs, word_dropout_p), lengths)
        rec = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD, reduction="sum") / n
        kl_dims = -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(0) / n
        kl = kl_dims.sum()
        # Free bits as deepgen codes them (SentenceVae::terms): max(kl_d, fb)
        # written fb + relu(kl_d - fb), whose gradient at kl_d == fb is 0
        # (torch.clamp's would be 1).
        penalised = kl if free_bits == 0 else (F.relu(kl_dims - free_bits) + free_bits).sum()
        return rec + beta * penalised, rec, kl, mu


@torch.no_grad()
def generate(model, z, max_len):
    """SentenceVae::generate (Decoding::generate), greedy: never <pad>, <bos>
    or <unk>; a line ends at <eos> or after max_len tokens."""
    h = torch.tanh(model.fc_init(z)).unsqueeze(0)
    current = torch.full((z.size(0), 1), BOS)
    out, done = [[] for _ in range(z.size(0))], [False] * z.size(0)
    for _ in range(max_len):
        o, h = model.decoder(model.embed(current), h)
        logits = model.out(o[:, 0])
        logits[:, [PAD, BOS, UNK]] = float("-inf")
        current = logits.argmax(1, keepdim=True)
        for i, t in enumerate(current[:, 0].tolist()):
            if not done[i]:
                if t == EOS:
                    done[i] = True
                else:
                    out[i].append(t)
        if all(done):
            break
    return out


# --------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model, lines, latent, seed, batch_size=256):
    """trainer::evaluate as TextTask::end_epoch calls it (crates/text/src/
    trainer.rs): the held-out lines in file order, 256 at a time, one
    posterior sample each from noise of a generator seeded afresh by
    seed ^ 0xe7a1 (the same eps every epoch), beta 1, no free bits, no word
    dropout."""
    model.eval()
    g = torch.Generator().manual_seed(seed ^ 0xE7A1)
    rec = torch.zeros((), dtype=torch.float64)
    kl = torch.zeros((), dtype=torch.float64)
    tokens, mus = 0, []
    for i in range(0, len(lines), batch_size):
        inputs, targets, lengths = collate(lines[i : i + batch_size])
        n = targets.size(0)
        eps = torch.randn(n, latent, generator=g)
        _, r, k, mu = model(inputs, targets, lengths, eps)
        rec += r.double() * n
        kl += k.double() * n
        tokens += int(lengths.sum())
        mus.append(mu)
    model.train()
    rec, kl = rec.item(), kl.item()
    n = max(len(lines), 1)
    # Active units (Burda et al.; deepgen_text::active_units): dimensions whose
    # posterior mean's population variance over the held-out lines > 0.01.
    var = torch.cat(mus).double().var(0, unbiased=False)
    return {
        "held_out_loss": (rec + kl) / n,
        "reconstruction": rec / n,
        "kl": kl / n,
        # deepgen's held_out_nats_per_token (trainer::evaluate): (rec + KL)
        # over the *predicted tokens*, i.e. each line's characters (or
        # words) plus its <eos>: sum of (len + 1). docs/text.md calls it
        # "nats/char"; it is per character counting one <eos> per line.
        "nats_per_token": (rec + kl) / max(tokens, 1),
        "active_units": int((var > 0.01).sum()),
    }


# --------------------------------------------------------------------- main


def parse_args():
    rayon = os.environ.get("RAYON_NUM_THREADS")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", required=True, help="a UTF-8 text file, one example per line")
    p.add_argument("--level", choices=["char", "word"], default="char")
    p.add_argument("--max-len", type=int, default=64, help="lines of more tokens are skipped")
    p.add_argument("--train-fraction", type=float, default=0.9)
    p.add_argument("--limit-lines", type=int, default=None,
                   help="only the first N usable lines, before the split (smoke tests)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=None, help="at most this many updates per epoch")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--unidirectional", action="store_true")
    p.add_argument("--word-dropout", type=float, default=0.3)
    p.add_argument("--kl-anneal-steps", type=int, default=2000)
    p.add_argument("--free-bits", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=int(rayon) if rayon else os.cpu_count(),
                   help="torch.set_num_threads [default: RAYON_NUM_THREADS, else one per core, as deepgen]")
    p.add_argument("--samples", type=int, default=5, help="greedy samples from the prior at the end")
    p.add_argument("--out", default="runs/text-vae-twin.json")
    a = p.parse_args()
    if not 0 <= a.train_fraction < 1:
        p.error(f"--train-fraction {a.train_fraction} is not in [0, 1)")
    if not 0 <= a.word_dropout < 1:
        p.error(f"--word-dropout {a.word_dropout} is not in [0, 1)")
    for name in ("max_len", "epochs", "batch_size", "embed", "hidden", "latent", "threads"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return a


def main():
    a = parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    lines, empty, too_long, raw = read_lines(a.text, a.level, a.max_len, a.limit_lines)
    if empty or too_long:
        print(f"{a.text}: skipped {empty} empty lines and {too_long} longer than {a.max_len} tokens")
    if a.limit_lines is not None:
        print(f"--limit-lines {a.limit_lines}: {len(lines)} lines, deepgen's on `head -n {raw} {a.text}`")
    if len(lines) < 2:
        sys.exit("a text of at least 2 lines is needed (training and held out)")
    vocab, train, held_out = split_fraction(lines, a.level, a.train_fraction)

    model = SentenceVAE(len(vocab), a.embed, a.hidden, a.latent, not a.unidirectional)
    parameters = sum(p.numel() for p in model.parameters())
    # OptimizerConfig::default (crates/train/src/optimizer.rs:39-49) and
    # AdamConfig (crates/optim/src/adam.rs:62-75): PyTorch's Adam, betas
    # (0.9, 0.999), eps 1e-8, no weight decay; StepConfig::default
    # (crates/train/src/step.rs:82-91): constant rate, no warm-up, no
    # clipping, one batch per update.
    optimizer = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    # LoaderConfig (crates/data/src/loader.rs:29-40): shuffled every epoch,
    # the last batch kept even when short.
    loader = torch.utils.data.DataLoader(
        train, batch_size=a.batch_size, shuffle=True, drop_last=False,
        generator=torch.Generator().manual_seed(a.seed), collate_fn=collate,
    )
    steps_per_epoch = len(loader) if a.max_steps is None else min(len(loader), a.max_steps)

    level = "characters" if a.level == "char" else "words"
    epochs = f"{a.epochs} epoch{'s' if a.epochs != 1 else ''}"
    print(f"training a sentence VAE ({parameters} parameters) on {len(train)} lines "
          f"({len(held_out)} held out) of {a.text}, {len(vocab)} tokens of {level}, {epochs}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{steps_per_epoch} steps per epoch of {a.batch_size} lines")

    record = {
        "setup": {
            "text": a.text, "level": a.level, "max_len": a.max_len,
            "train_fraction": a.train_fraction, "limit_lines": a.limit_lines,
            "raw_lines_read": raw, "skipped_empty": empty, "skipped_too_long": too_long,
            "train_lines": len(train), "held_out_lines": len(held_out), "vocab": len(vocab),
            "parameters": parameters,
            "model": {"embed": a.embed, "hidden": a.hidden, "latent": a.latent,
                      "bidirectional": not a.unidirectional},
            "optimizer": {"kind": "adam", "lr": a.lr, "betas": [0.9, 0.999], "eps": 1e-8},
            "batch_size": a.batch_size, "word_dropout": a.word_dropout,
            "kl_anneal_steps": a.kl_anneal_steps, "free_bits": a.free_bits, "seed": a.seed,
            "epochs": a.epochs, "max_steps": a.max_steps, "steps_per_epoch": steps_per_epoch,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "machine": platform.processor() or platform.machine(),
        },
        "epochs": [],
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    step = 0
    model.train()
    for epoch in range(a.epochs):
        # Logged per epoch without a sync per step: item-weighted sums of the
        # training reconstruction and KL (fit.rs Meter: sums of value x items).
        sums = torch.zeros(2, dtype=torch.float64)
        items = 0
        start = time.perf_counter()
        for b, (inputs, targets, lengths) in enumerate(loader):
            if b == steps_per_epoch:
                break
            n = targets.size(0)
            # TextTask::step (trainer.rs): beta = min(step / kl_anneal_steps, 1) at
            # global step epoch x batches + batch (0 first), 1 without annealing.
            beta = 1.0 if a.kl_anneal_steps == 0 else min(step / a.kl_anneal_steps, 1.0)
            eps = torch.randn(n, a.latent)
            loss, rec, kl, _ = model(inputs, targets, lengths, eps, beta, a.word_dropout, a.free_bits)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # TextTask::step: the logged training loss is rec + KL
            # (without beta or free bits).
            sums += torch.stack((rec.detach(), kl.detach())).double() * n
            items += n
            step += 1
        train_seconds = time.perf_counter() - start
        train_rec, train_kl = (sums / max(items, 1)).tolist()
        e = evaluate(model, held_out, a.latent, a.seed)
        row = {"epoch": epoch + 1, "train_seconds": train_seconds,
               "train_loss": train_rec + train_kl, "train_reconstruction": train_rec,
               "train_kl": train_kl, **e, "steps": step}
        record["epochs"].append(row)
        out.write_text(json.dumps(record, indent=2) + "\n")
        # The line train_text.rs's run prints per epoch.
        print(f"epoch {epoch + 1}: train {train_rec + train_kl:.2f} ({train_rec:.2f} + {train_kl:.2f}) "
              f"nats/sentence; held-out {e['held_out_loss']:.2f} ({e['reconstruction']:.2f} + KL "
              f"{e['kl']:.2f}), {e['nats_per_token']:.3f} nats/token, {e['active_units']} active "
              f"units; {train_seconds:.1f} s", flush=True)

    if a.samples > 0:
        model.eval()
        z = torch.randn(a.samples, a.latent, generator=torch.Generator().manual_seed(a.seed))
        samples = [vocab.decode(s) for s in generate(model, z, a.max_len)]
        print("samples (greedy):")
        for s in samples:
            print(f"  {s}")
        record["samples"] = samples
        out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
