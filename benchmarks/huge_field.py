"""A huge smear field: white cells found in overlapping tiles, in bounded memory.

    python benchmarks/huge_field.py [--megapixels 179] [--field-scale 0.5] [--work /tmp/huge-field]

Builds a mosaic of the BCCD fields (``$LEUKVIEWER_DATA``, default ``../shared/data``) repeated to about
``--megapixels`` (each field first resized by ``--field-scale``: 0.5 gives ~44 px red cells, a lower
magnification than BCCD's ~88 px), saves it as one JPEG, then in a fresh process reads it (``read_image``) and localises its white
cells (``pipeline.locate``, as the app and ``batch`` do), and prints the time, the peak memory of that process
and the cells found against the cells the same fields give one by one (times their repetitions).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build(megapixels: float, path: Path, field_scale: float = 1.0) -> tuple[int, int, int]:
    import cv2
    from PIL import Image

    from leukviewer.core.analysis.imageio import read_image
    from leukviewer.core.analysis.localize import find_white_cells

    data = Path(os.environ.get("LEUKVIEWER_DATA", REPO.parent / "shared" / "data"))
    fields = [read_image(p) for p in sorted((data / "bccd" / "JPEGImages").glob("*.jpg"))]
    if field_scale != 1.0:
        fields = [cv2.resize(f, None, fx=field_scale, fy=field_scale, interpolation=cv2.INTER_AREA) for f in fields]
    per_field = [len(find_white_cells(f)) for f in fields]
    h, w = fields[0].shape[:2]
    side = int(np.sqrt(megapixels * 1e6 / (h * w)))   # at most --megapixels
    rows, expected = [], 0
    for i in range(side):
        row = []
        for j in range(side):
            k = (i * side + j) % len(fields)
            row.append(fields[k])
            expected += per_field[k]
        rows.append(np.concatenate(row, axis=1))
    mosaic = np.concatenate(rows, axis=0)
    Image.fromarray(mosaic).save(path, quality=92)
    return mosaic.shape[1], mosaic.shape[0], expected


def measure(path: str) -> None:
    from leukviewer.core.analysis.imageio import read_image
    from leukviewer.core.analysis.pipeline import locate

    t0 = time.perf_counter()
    rgb = read_image(path)
    t1 = time.perf_counter()
    kind, regions, crops = locate(rgb, "smear_field")
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    print(json.dumps({"read_s": round(t1 - t0, 1), "locate_s": round(t2 - t1, 1), "cells": len(regions),
                      "peak_bytes": peak}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--megapixels", type=float, default=179.0)
    p.add_argument("--field-scale", type=float, default=1.0, help="resize each BCCD field first (0.5: smaller cells)")
    p.add_argument("--work", default="/tmp/leukviewer-huge-field")
    p.add_argument("--measure", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        measure(args.measure)
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    path = work / "huge.jpg"
    width, height, expected = build(args.megapixels, path, args.field_scale)
    print(f"field: {width} x {height} ({width * height / 1e6:.0f} MP), {path.stat().st_size / 1e6:.0f} MB JPEG; "
          f"the same fields one by one give {expected} white cells")
    run = subprocess.run([sys.executable, __file__, "--measure", str(path)], capture_output=True, text=True)
    if run.returncode:
        print(run.stderr, file=sys.stderr)
        return 1
    r = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"read {r['read_s']} s, localise {r['locate_s']} s, {r['cells']} white cells "
          f"({r['cells'] / max(expected, 1):.2f}x the fields one by one), peak memory {r['peak_bytes'] / 2**30:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
