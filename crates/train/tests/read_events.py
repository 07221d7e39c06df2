"""Reads TensorBoard run directories with TensorBoard's own reader and prints
JSON, for crates/train/tests/tensorboard_python.rs.

Usage: python3 read_events.py RUN_DIR [RUN_DIR ...]

For each run directory (keyed by the path as given):
  scalars:    tag -> [[step, value, f32 bits of value], ...]   (EventAccumulator)
  images:     tag -> {count, steps, sizes: [[w, h]], png_sizes: [[w, h]]}
  histograms: tag -> {count, steps, num, min_bits, max_bits (f64 bits),
                          bucket_total, buckets}
  migrated:   plugin name -> values, after the compat layers TensorBoard's UI
              applies (EventFileLoader: data_compat + dataclass_compat), and
              histogram_rows: rows of each migrated histogram tensor.
"""

import glob
import json
import os
import struct
import sys

from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.util import tensor_util


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def f64_bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def png_size(data):
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return list(struct.unpack(">II", data[16:24]))


def read_run(run_dir):
    acc = ea.EventAccumulator(run_dir, size_guidance=ea.STORE_EVERYTHING_SIZE_GUIDANCE)
    acc.Reload()
    tags = acc.Tags()
    out = {"scalars": {}, "images": {}, "histograms": {}, "migrated": {}, "histogram_rows": []}
    for tag in tags["scalars"]:
        out["scalars"][tag] = [[e.step, e.value, f32_bits(e.value)] for e in acc.Scalars(tag)]
    for tag in tags["images"]:
        events = acc.Images(tag)
        out["images"][tag] = {
            "count": len(events),
            "steps": [e.step for e in events],
            "sizes": [[e.width, e.height] for e in events],
            "png_sizes": [png_size(e.encoded_image_string) for e in events],
        }
    for tag in tags["histograms"]:
        events = acc.Histograms(tag)
        values = [e.histogram_value for e in events]
        out["histograms"][tag] = {
            "count": len(events),
            "steps": [e.step for e in events],
            "num": [h.num for h in values],
            "min_bits": [f64_bits(h.min) for h in values],
            "max_bits": [f64_bits(h.max) for h in values],
            "bucket_total": [sum(h.bucket) for h in values],
            "buckets": [len(h.bucket) for h in values],
        }
    for path in sorted(glob.glob(os.path.join(run_dir, "*tfevents*"))):
        for event in event_file_loader.EventFileLoader(path).Load():
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                out["migrated"][plugin] = out["migrated"].get(plugin, 0) + 1
                if plugin == "histograms":
                    out["histogram_rows"].append(tensor_util.make_ndarray(value.tensor).shape[0])
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(json.dumps({d: read_run(d) for d in sys.argv[1:]}))


if __name__ == "__main__":
    main()
