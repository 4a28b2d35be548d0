"""Speed of ``leukviewer batch`` on smear fields, as a user runs it, measured in one run.

Run by hand (several minutes; keep the machine otherwise idle, or run it under ``nice`` and say so):
    LEUKVIEWER_DATA=/root/leukviewer-data .venv/bin/python benchmarks/field_speed.py [--model DIR]

Two kinds of field, each measured the same way:
  * BCCD: the 640x480 fields of ``$LEUKVIEWER_DATA/bccd/JPEGImages`` (364 in the full set; ``../shared`` has 30,
    repeated to ``--fields``);
  * large: 2592x1944 camera fields at a lower magnification, made as ``tests/core/test_localize.py`` makes them:
    BCCD fields shrunk 0.7x (~60 px red cells) and tiled, ~37 white cells each, saved as JPEG (quality 95).

Prints, for each:
  1. the batch CLI with default settings, marginal: two runs in child processes (all fields and half of them,
     alternated ``--repeat`` times, the fastest of each), (n_large - n_small) / (t_large - t_small): fields/s and
     s/field, so model loading and start-up cancel out; white cells/s alongside;
  2. stage by stage, each stage run alone, one field after another, in this process: decode, kind, red-cell
     measure, localise, crop + prepare, classify (the engine ``auto`` picks), in ms per field; their sum is the
     CPU time one field costs on one thread (the batch CLI spreads the first five over every core).
The bars (speed issue): >= 40 BCCD fields/s end to end; <= 0.4 s a 2592x1944 field.
``LEUKVIEWER_CODE=/path/to/checkout`` measures another checkout's code with this script (before/after tables).
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the crops' benchmark: the same checkout choice (LEUKVIEWER_CODE), data root and batch CLI child process
from batch_speed import CODE, data_root, run_batch as run_batch_cli  # noqa: E402

LARGE_SHAPE = (1944, 2592)
LARGE_SHRINK = 0.7


def bccd_paths() -> list[Path]:
    paths = sorted((data_root() / "bccd" / "JPEGImages").glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no BCCD fields under {data_root()} (set LEUKVIEWER_DATA)")
    return paths


def bccd_folder(n: int, root: Path) -> Path:
    """``n`` BCCD fields as symbolic links (the set repeated when it has fewer)."""
    paths = bccd_paths()
    root.mkdir(parents=True)
    for i in range(n):
        p = paths[i % len(paths)]
        os.symlink(p, root / f"{i:05d}_{p.name}")
    return root


def large_folder(n: int, root: Path) -> Path:
    """``n`` 2592x1944 fields tiled from BCCD fields shrunk 0.7x, each starting at another field."""
    import cv2
    import numpy as np
    from PIL import Image

    from leukviewer.core.analysis.imageio import read_image

    small = [cv2.resize(read_image(p), None, fx=LARGE_SHRINK, fy=LARGE_SHRINK, interpolation=cv2.INTER_AREA)
             for p in bccd_paths()]
    th, tw = small[0].shape[:2]
    h, w = LARGE_SHAPE
    root.mkdir(parents=True)
    for i in range(n):
        canvas, k = np.zeros((h, w, 3), np.uint8), 7 * i
        for y in range(0, h, th):
            for x in range(0, w, tw):
                tile = small[k % len(small)][:h - y, :w - x]
                canvas[y:y + tile.shape[0], x:x + tile.shape[1]] = tile
                k += 1
        Image.fromarray(canvas).save(root / f"large_{i:03d}.jpg", quality=95)
    return root


def run_batch(folder: Path, out: Path, model_dir: Path, env: dict) -> tuple[float, int]:
    """Seconds of one ``leukviewer batch`` child process, and the white cells it wrote to ``cells.csv``."""
    seconds, _ = run_batch_cli(folder, out, model_dir, env)
    with open(out / "cells.csv", newline="", encoding="utf-8") as f:
        return seconds, sum(1 for _ in csv.DictReader(f))


def marginal(name: str, make, n: int, repeat: int, work: Path, model_dir: Path, env: dict) -> None:
    small, large = make(n // 2, work / f"{name}-small"), make(n, work / f"{name}-large")
    run_batch(small, work / f"{name}-warm", model_dir, env)    # page cache and the model file warm for both
    t_small = t_large = float("inf")
    cells_small = cells_large = 0
    for _ in range(repeat):     # alternated, the fastest of each: a shared machine's load comes and goes
        seconds, cells_small = run_batch(small, work / f"{name}-out-small", model_dir, env)
        t_small = min(t_small, seconds)
        seconds, cells_large = run_batch(large, work / f"{name}-out-large", model_dir, env)
        t_large = min(t_large, seconds)
    fields = n - n // 2
    rate = fields / (t_large - t_small)
    print(f"1. {name}: batch CLI, default settings: {n // 2} fields {t_small:.1f} s, {n} fields {t_large:.1f} s -> "
          f"{rate:.1f} fields/s marginal ({1 / rate:.3f} s a field), {(cells_large - cells_small) / (t_large - t_small):.1f}"
          f" white cells/s; {cells_large} white cells in {n} fields")


def stages(name: str, folder: Path, clf) -> None:
    from leukviewer.core.analysis.imageio import greyscale_reason, read_image
    from leukviewer.core.analysis.localize import classify_image_kind, crop_cell, estimate_rbc_diameter, find_white_cells
    from leukviewer.core.analysis.scale import image_scale

    import numpy as np

    paths = sorted(folder.iterdir())
    n = len(paths)
    t: dict[str, float] = {}

    def timed(stage, fn, items):
        t0 = time.perf_counter()
        out = [fn(x) for x in items]
        t[stage] = time.perf_counter() - t0
        return out

    images = timed("decode", read_image, paths)
    kinds = timed("kind (greyscale check + kind)", lambda rgb: (greyscale_reason(rgb), classify_image_kind(rgb)), images)
    rbcs = timed("red-cell measure", estimate_rbc_diameter, images)
    regions = timed("localise", lambda a: find_white_cells(a[0], rbc_diameter=a[1]), list(zip(images, rbcs)))

    def prepare(a):
        rgb, rbc, regs = a
        scale = image_scale(rgb, "smear_field", None, None, rbc)
        return [clf.prepare(crop_cell(rgb, r, mask_background=True), scale.um_per_px) for r in regs]

    prepared = [c for cells in timed("crop + prepare", prepare, list(zip(images, rbcs, regions))) for c in cells]
    assert all(k == "smear_field" for _, k in kinds), kinds
    batch = np.stack(prepared)
    clf.blast_probabilities(batch[:32])
    t0 = time.perf_counter()
    clf.blast_probabilities(batch)
    t[f"classify ({clf.device})"] = time.perf_counter() - t0
    print(f"2. {name}: stages alone, one field after another ({n} fields, {len(prepared)} white cells):")
    for stage, seconds in t.items():
        print(f"   {stage:<42} {1000 * seconds / n:8.1f} ms/field")
    print(f"   {'sum (CPU of one field on one thread)':<42} {1000 * sum(t.values()) / n:8.1f} ms/field")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (default: the bundled model)")
    ap.add_argument("--fields", type=int, default=364, help="BCCD fields in the larger batch run (the smaller: half)")
    ap.add_argument("--large-fields", type=int, default=48, help="2592x1944 fields in the larger batch run")
    ap.add_argument("--repeat", type=int, default=3, help="batch runs of each size (the fastest counts)")
    ap.add_argument("--stage-fields", type=int, default=100, help="BCCD fields for the stage timings (large: a "
                    "tenth; 0: no stage timings)")
    args = ap.parse_args()

    from leukviewer.core.model.active import resolve_model
    from leukviewer.core.model.classifier import CellClassifier

    model_dir = resolve_model(args.model, registry=False).folder
    env = {**os.environ, "PYTHONPATH": str(CODE)}
    print(f"code {CODE}; data {data_root()}; model {model_dir}; {os.cpu_count()} cores; niceness {os.nice(0)}; "
          f"load average {os.getloadavg()[0]:.1f} (a shared machine: compare ratios within this run)")
    work = Path(tempfile.mkdtemp(prefix="lv-field-speed-"))
    try:
        marginal("BCCD", bccd_folder, args.fields, args.repeat, work, model_dir, env)
        marginal("2592x1944", large_folder, args.large_fields, args.repeat, work, model_dir, env)
        if args.stage_fields > 0:
            clf = CellClassifier(model_dir, warm_up=True)
            stages("BCCD", bccd_folder(args.stage_fields, work / "stage-bccd"), clf)
            stages("2592x1944", large_folder(max(2, args.stage_fields // 10), work / "stage-large"), clf)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
