"""Speed of ``leukviewer batch`` on a folder of C-NMC single-cell crops, as a user runs it, measured in one run.

Run by hand (several minutes; on a shared machine run it under ``nice`` and say so next to the figures):
    LEUKVIEWER_DATA=/root/leukviewer-data nice -n 10 .venv/bin/python benchmarks/batch_speed.py [--model DIR]

Prints:
  1. the engine ``auto`` chose (LiteRT when a verified conversion of the model exists: the installer ships one,
     ``scripts/bootstrap.sh`` and ``--prepare-engine`` make one; the conversion time is printed when this run had
     to make it, as an install-time cost, never counted in the rates);
  2. cells/s of the batch CLI with default settings, marginal: two runs in child processes (``--cells`` crops
     and half as many, alternated ``--repeat`` times, the fastest of each), (n_large - n_small) / (t_large -
     t_small), so model loading and start-up cancel out;
  3. naive per-image ``model.predict`` (decode, preprocess, predict one image at a time, in this process);
  4. the ratio batch / naive (the bar: >= 100 cells/s and >= 8x naive on 2 cores);
  5. stage by stage, each stage run alone over the same crops, in this process: decode, kind, localise,
     preprocess, classify (LiteRT and TensorFlow), in ms per cell and cells/s alone;
  6. max |P(ALL) LiteRT - P(ALL) TF| over the crops.
``LEUKVIEWER_CODE=/path/to/checkout`` measures another checkout's code with this script (before/after tables).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
CODE = Path(os.environ.get("LEUKVIEWER_CODE", REPO)).resolve()
sys.path.insert(0, str(CODE))


def data_root() -> Path:
    return Path(os.environ.get("LEUKVIEWER_DATA", REPO.parent / "shared" / "data")).expanduser().resolve()


def crop_paths(n: int) -> list[Path]:
    root = data_root() / "cnmc" / "training_data"
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".bmp", ".png"))
    if not paths:
        raise SystemExit(f"no C-NMC crops under {root} (set LEUKVIEWER_DATA)")
    step = max(1, len(paths) // n)
    picked = paths[::step][:n]
    while len(picked) < n:                      # the small fixture set: repeat it
        picked += paths[:n - len(picked)]
    return picked


def case_folder(paths: list[Path], root: Path) -> Path:
    root.mkdir(parents=True)
    for i, p in enumerate(paths):
        os.symlink(p, root / f"{i:05d}_{p.name}")
    return root


def run_batch(folder: Path, out: Path, model_dir: Path, env: dict) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "leukviewer", "batch", str(folder), "--out", str(out), "--model", str(model_dir),
           "--quiet", "--overwrite"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=CODE)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"batch failed: {done.stderr[-2000:]}")
    return seconds, done.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (default: the bundled model)")
    ap.add_argument("--cells", type=int, default=504, help="crops in the larger batch run (the smaller: half)")
    ap.add_argument("--naive-cells", type=int, default=48)
    ap.add_argument("--repeat", type=int, default=3, help="batch runs of each size (the fastest counts)")
    ap.add_argument("--stage-cells", type=int, default=252)
    ap.add_argument("--batch-cache", metavar="DIR", help="LEUKVIEWER_CACHE_DIR of the batch runs only (an empty "
                    "folder: the batch CLI as a user ran it before the installer shipped a conversion); the stage "
                    "timings use the usual cache")
    args = ap.parse_args()

    import numpy as np

    from leukviewer.core.model.active import resolve_model
    from leukviewer.core.model.classifier import CellClassifier
    from leukviewer.core.analysis.imageio import greyscale_reason, read_image
    from leukviewer.core.analysis.localize import classify_image_kind, find_single_cell

    model_dir = resolve_model(args.model, registry=False).folder   # --model, $LEUKVIEWER_MODEL or the bundled
    env = {**os.environ, "PYTHONPATH": str(CODE)}
    batch_env = {**env, "LEUKVIEWER_CACHE_DIR": args.batch_cache} if args.batch_cache else env
    print(f"code {CODE}; data {data_root()}; model {model_dir}; {os.cpu_count()} cores; niceness "
          f"{os.nice(0)}; load average {os.getloadavg()[0]:.1f} (a shared machine: compare ratios within this run)")

    # 1. the engine a user gets
    from leukviewer.core.model import engine as engine_module
    find = getattr(engine_module, "find_conversion", None)
    converted = find(model_dir) if find else None
    if find is not None and converted is None:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "leukviewer", "--prepare-engine", "--model", str(model_dir)],
                       check=True, env=env, cwd=CODE, capture_output=True)
        print(f"1. no LiteRT conversion yet: made it as the installer does, in {time.perf_counter() - t0:.0f} s "
              "(install time, not counted below)")
        converted = find(model_dir)
    print(f"1. LiteRT conversion: {converted or 'none (this code converts only on request)'}"
          + (f"; the batch runs use the cache {args.batch_cache}" if args.batch_cache else ""))

    # 2. the batch CLI, default settings, marginal rate
    work = Path(tempfile.mkdtemp(prefix="lv-batch-speed-"))
    try:
        paths = crop_paths(args.cells)
        small, large = paths[:args.cells // 2], paths
        f_small, f_large = case_folder(small, work / "small"), case_folder(large, work / "large")
        run_batch(f_small, work / "warm", model_dir, batch_env)   # page cache and the model file warm for both
        t_small = t_large = float("inf")
        for _ in range(args.repeat):    # alternated, the fastest of each: a shared machine's load comes and goes
            t_small = min(t_small, run_batch(f_small, work / "out-small", model_dir, batch_env)[0])
            seconds, said = run_batch(f_large, work / "out-large", model_dir, batch_env)
            t_large = min(t_large, seconds)
        marginal = (len(large) - len(small)) / (t_large - t_small)
        engine_line = next((line for line in said.splitlines() if "LiteRT" in line), "")
        print(f"2. batch CLI, default settings: {len(small)} crops {t_small:.1f} s, {len(large)} crops {t_large:.1f} s"
              f" -> {marginal:.1f} cells/s marginal, {len(large) / t_large:.1f} cells/s overall"
              + (f"\n   it said: {engine_line}" if engine_line else ""))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # 3. naive per-image predict, the paper notebook's style
    clf = CellClassifier(model_dir, backend="tf", warm_up=True)
    net = clf.model.network
    naive_paths = crop_paths(args.naive_cells)
    net.predict(clf.prepare(read_image(naive_paths[0]))[None].astype("float32"), verbose=0)
    t0 = time.perf_counter()
    for p in naive_paths:
        net.predict(clf.prepare(read_image(p))[None].astype("float32"), verbose=0)
    naive = len(naive_paths) / (time.perf_counter() - t0)
    print(f"3. naive per-image model.predict: {naive:.1f} cells/s")
    print(f"4. batch CLI / naive: {marginal / naive:.1f}x   (bars: >= 100 cells/s and >= 8x)")

    # 5. stages alone
    stage_paths = crop_paths(args.stage_cells)
    n = len(stage_paths)
    t = {}
    t0 = time.perf_counter()
    images = [read_image(p) for p in stage_paths]
    t["decode"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    kinds = [(greyscale_reason(rgb), classify_image_kind(rgb)) for rgb in images]
    t["kind (greyscale check + kind)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    regions = [find_single_cell(rgb) for rgb in images]
    t["localise"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prepared = np.stack([clf.prepare(rgb, 0.5) for rgb in images])
    t["preprocess"] = time.perf_counter() - t0
    lite = CellClassifier(model_dir, backend="tflite", batch_size=32, warm_up=True)
    lite.engine.logits(prepared[:32])
    t0 = time.perf_counter()
    p_lite = lite.blast_probabilities(prepared)
    t["classify LiteRT (batch 32)"] = time.perf_counter() - t0
    time.sleep(3)   # TensorFlow's threads spin a moment after LiteRT: measured apart
    t0 = time.perf_counter()
    p_tf = clf.blast_probabilities(prepared)
    t["classify TF (batch 32)"] = time.perf_counter() - t0
    assert all(k == "single_cell" for _, k in kinds) and all(r is not None for r in regions)
    print(f"5. stages alone over {n} crops ({lite.device}):")
    for name, seconds in t.items():
        print(f"   {name:<30} {1000 * seconds / n:7.2f} ms/cell  {n / seconds:8.1f} cells/s alone")
    print(f"6. max |P(ALL) LiteRT - TF| over {n} crops: {float(np.max(np.abs(p_lite - p_tf))):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
