#!/usr/bin/env python3
"""Checks exported ONNX models with the real tools: onnx.checker (full
check, with shape inference) and ONNX Runtime against deepgen's outputs.

    python3 check_onnx.py DIR

DIR holds, per case NAME, NAME.onnx and NAME.json: {"inputs": {name:
{"shape", "data", "int"}}, "outputs": {name: {"shape", "data"}}} with
deepgen's outputs for those inputs. Prints one JSON line per case (largest
absolute and relative deviation, ONNX Runtime's time per sample) and exits
non-zero when a check fails or an output deviates by more than 1e-5
relative and 1e-6 absolute.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def check(path):
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    case = json.loads(path.with_suffix(".json").read_text())
    feeds = {
        name: np.array(v["data"], dtype=np.int64 if v.get("int") else np.float32).reshape(v["shape"])
        for name, v in case["inputs"].items()
    }
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = list(case["outputs"])
    got = session.run(names, feeds)
    runs, start = 20, time.perf_counter()
    for _ in range(runs):
        session.run(names, feeds)
    batch = next(iter(feeds.values())).shape[0]
    per_sample = (time.perf_counter() - start) / runs / batch
    worst_abs, worst_rel, ok = 0.0, 0.0, True
    for name, out in zip(names, got):
        want = np.array(case["outputs"][name]["data"], dtype=np.float64).reshape(case["outputs"][name]["shape"])
        if list(out.shape) != list(want.shape):
            print(f"{path.name}: output {name} has shape {list(out.shape)}, deepgen's {list(want.shape)}")
            return False
        diff = np.abs(out.astype(np.float64) - want)
        worst_abs = max(worst_abs, float(diff.max(initial=0)))
        worst_rel = max(worst_rel, float((diff / np.maximum(np.abs(want), 1e-30)).max(initial=0)))
        # Within 1e-5 relative OR 1e-6 absolute, element by element.
        ok &= bool(np.all((diff <= 1e-6) | (diff <= 1e-5 * np.abs(want))))
    print(json.dumps({"case": path.stem, "max_abs": worst_abs, "max_rel": worst_rel,
                      "ort_us_per_sample": per_sample * 1e6, "ok": ok}))
    return ok


def main():
    paths = sorted(Path(sys.argv[1]).glob("*.onnx"))
    if not paths:
        sys.exit("no .onnx files")
    results = [check(p) for p in paths]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
