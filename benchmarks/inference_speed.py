"""Inference speed of leukviewer's engine, measured in one run, printed as figures and ratios.

Run by hand (takes a few minutes; keep the machine otherwise idle):
    LEUKVIEWER_DATA=~/leukviewer-data .venv/bin/python benchmarks/inference_speed.py [--model DIR]

Without --model (and without a bundled model) it builds an untrained EfficientNet-B3 model folder: speed does
not depend on the weights. Parts:
  1. cells/s: naive per-image model.predict (the paper notebook's style) vs the engine (TF, fixed batch) vs
     LiteRT/XNNPACK, all on the same prepared cells in this process;
  2. end to end on the BCCD fields: fields/s, cells/s, time to the first result after the model is loaded;
  3. model load time;
  4. peak memory (max RSS of a child process) analysing 100 vs 1,000 fields;
  5. a profile of one BCCD pass, stage by stage (decode, localise, preprocess, classify), run one after another;
  6. with --quantization: LiteRT with dynamic-range int8 and with float16 weights vs float32, speed and max |dp|.
Exits non-zero only on error.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def data_root() -> Path:
    return Path(os.environ.get("LEUKVIEWER_DATA", REPO.parent / "shared" / "data")).expanduser()


def untrained_b3_folder(size: int) -> Path:
    from training.model import build_classifier
    from training.modelfolder import save_model_folder
    from training.preprocess import PreprocessConfig

    folder = Path(tempfile.mkdtemp(prefix="lv-bench-")) / "untrained-b3"
    net = build_classifier("EfficientNetB3", size, 2)
    save_model_folder(net, folder, {"name": "untrained-b3-benchmark", "class_names": ["HEM", "ALL"],
                                    "positive_class": "ALL", "preprocessing": PreprocessConfig(size=size).to_dict(),
                                    "architecture": {"backbone": "EfficientNetB3"},
                                    "decision": {"threshold": 0.5, "uncertainty_band": [0.4, 0.6]}})
    return folder


def rate(fn, n_items: int, repeat: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return n_items * repeat / (time.perf_counter() - t0)


def child_peak_rss(model: Path, folder: Path) -> float:
    # VmHWM of the child's own address space (ru_maxrss would carry the parent's peak across fork/exec).
    code = ("from leukviewer.core.model.classifier import CellClassifier; "
            "from leukviewer.core.analysis.pipeline import analyze_folder; "
            f"c = CellClassifier({str(model)!r}); n = sum(1 for _ in analyze_folder({str(folder)!r}, c)); "
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; print(n, hwm)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    n, kb = out.stdout.split()[-2:]
    return int(kb) / 1024.0


def report_memory(model_dir: Path) -> None:
    fields = sorted((data_root() / "bccd" / "JPEGImages").glob("*.jpg"))
    peaks = {}
    for n in (100, 1000):
        folder = Path(tempfile.mkdtemp(prefix=f"lv-mem-{n}-"))
        for i in range(n):
            os.symlink(fields[i % len(fields)], folder / f"f{i:05d}.jpg")
        peaks[n] = child_peak_rss(model_dir, folder)
    print(f"\n4. peak memory (VmHWM of the analysing process): 100 fields {peaks[100]:.0f} MB, 1,000 fields "
          f"{peaks[1000]:.0f} MB ({peaks[1000] / peaks[100]:.2f}x)")


def profile_stages(bccd: Path, clf) -> None:
    """Seconds per stage over the BCCD fields, each stage run alone (the pipeline overlaps decode/localise with
    classification in a reader thread; this shows which one bounds it)."""
    from leukviewer.core.analysis.imageio import read_image
    from leukviewer.core.analysis.pipeline import locate

    paths = sorted(bccd.glob("*.jpg"))
    t = {"decode": 0.0, "localise": 0.0, "preprocess": 0.0, "classify": 0.0}
    prepared = []
    for p in paths:
        t0 = time.perf_counter()
        rgb = read_image(p)
        t1 = time.perf_counter()
        _, _, crops = locate(rgb)
        t2 = time.perf_counter()
        prepared += [clf.prepare(c) for c in crops]
        t3 = time.perf_counter()
        t["decode"] += t1 - t0
        t["localise"] += t2 - t1
        t["preprocess"] += t3 - t2
    import numpy as np

    t0 = time.perf_counter()
    clf.engine.logits(np.stack(prepared))
    t["classify"] = time.perf_counter() - t0
    total = sum(t.values())
    print(f"\n5. profile of one pass over {len(paths)} BCCD fields, {len(prepared)} cells, stages run alone "
          f"({clf.engine.device}):")
    for k, v in t.items():
        print(f"   {k:<11} {v:6.2f} s  {100 * v / total:5.1f}%  ({len(prepared) / v if v else float('inf'):.1f} "
              "cells/s alone)")


def report_quantization(model, cells) -> None:
    """LiteRT variants of the same network: float32, dynamic-range int8 weights, float16 weights."""
    import shutil

    import numpy as np
    import tensorflow as tf

    from training.modelfolder import softmax

    work = Path(tempfile.mkdtemp(prefix="lv-quant-"))
    try:
        model.network.export(str(work / "sm"), format="tf_saved_model", verbose=False)
        variants = {}
        for name in ("float32", "dynamic-range int8", "float16"):
            conv = tf.lite.TFLiteConverter.from_saved_model(str(work / "sm"))
            if name != "float32":
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
            if name == "float16":
                conv.target_spec.supported_types = [tf.float16]
            variants[name] = conv.convert()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    x = cells[:32].astype(np.float32)
    probe = cells[:84].astype(np.float32)
    print("\n6. LiteRT weight quantisation, batch 32:")
    ref, ref_rate = None, None
    for name, flat in variants.items():
        interp = tf.lite.Interpreter(model_content=flat, num_threads=os.cpu_count())
        inp = interp.get_input_details()[0]["index"]
        out = interp.get_output_details()[0]["index"]

        def run(batch):
            interp.resize_tensor_input(inp, list(batch.shape), strict=False)
            interp.allocate_tensors()
            interp.set_tensor(inp, batch)
            interp.invoke()
            return interp.get_tensor(out).copy()

        probs = softmax(np.concatenate([run(probe[i:i + 1]) for i in range(len(probe))]), model.temperature)
        run(x)
        cps = rate(lambda: (interp.set_tensor(inp, x), interp.invoke()), len(x), repeat=3)
        if ref is None:
            ref, ref_rate = probs, cps
        print(f"   {name:<20} {len(flat) / 1e6:5.1f} MB  {cps:6.1f} cells/s ({cps / ref_rate:.2f}x)  "
              f"max |dp| vs float32 {float(np.abs(probs - ref).max()):.2e}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (default: bundled, else an untrained B3)")
    ap.add_argument("--cells", type=int, default=256)
    ap.add_argument("--naive-cells", type=int, default=32)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--only-memory", action="store_true")
    ap.add_argument("--quantization", action="store_true", help="also measure int8/float16 LiteRT variants")
    args = ap.parse_args()

    import numpy as np
    import tensorflow as tf

    from leukviewer.core.model.active import resolve_model
    from leukviewer.core.model.classifier import CellClassifier
    from leukviewer.core.model.engine import InferenceEngine
    from leukviewer.core.analysis.pipeline import analyze_folder
    from training.modelfolder import load_model_folder
    from training.preprocess import read_rgb

    model_dir = resolve_model(args.model, registry=False).folder   # --model, $LEUKVIEWER_MODEL or the bundled
    if not (model_dir / "model.json").is_file():
        model_dir = untrained_b3_folder(128)
    if args.only_memory:
        report_memory(model_dir)
        return 0
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, TensorFlow {tf.__version__}, "
          f"model {model_dir}")

    t0 = time.perf_counter()
    model = load_model_folder(model_dir)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine = InferenceEngine(model, "tf", batch_size=32)
    engine.warm_up()
    t_warm = time.perf_counter() - t0
    print(f"model load (verify hash + Keras load): {t_load:.1f} s; engine trace/warm-up: {t_warm:.1f} s")

    paths = sorted((data_root() / "cnmc").rglob("*.png")) + sorted((data_root() / "cnmc").rglob("*.bmp"))
    base = np.stack([model.preprocess(read_rgb(p)) for p in paths[:84]])
    cells = np.concatenate([base] * (args.cells // len(base) + 1))[:args.cells]
    size = cells.shape[1]

    # TensorFlow's worker threads keep spinning for a moment after each call and slow a LiteRT call made right
    # after it (measured: 84 instead of 120 cells/s), while the app only ever uses one engine: LiteRT is measured
    # first, and each measurement after a pause.
    settle = 3.0
    lite = InferenceEngine(model, "tflite", batch_size=32)
    lite.warm_up()
    lite_rate = rate(lambda: lite.logits(cells), len(cells), repeat=2)
    lite1 = InferenceEngine(model, "tflite", batch_size=1)
    lite1.warm_up()
    lite1_rate = rate(lambda: [lite1.logits(cells[i:i + 1]) for i in range(32)], 32)
    naive = cells[:args.naive_cells].astype("float32")
    model.network.predict(naive[:1], verbose=0)  # its own warm-up
    time.sleep(settle)
    naive_rate = rate(lambda: [model.network.predict(naive[i:i + 1], verbose=0) for i in range(len(naive))],
                      len(naive))
    time.sleep(settle)
    tf_rate = rate(lambda: engine.logits(cells), len(cells), repeat=2)
    time.sleep(settle)
    tf1_rate = rate(lambda: [engine.logits(cells[i:i + 1]) for i in range(32)], 32)
    delta = float(np.max(np.abs(lite.probabilities(cells[:84]) - engine.probabilities(cells[:84]))))
    print(f"\n1. classification at {size} px ({len(cells)} cells)")
    print(f"   naive per-image model.predict      {naive_rate:7.1f} cells/s")
    print(f"   engine TF, batch 32                 {tf_rate:7.1f} cells/s  ({tf_rate / naive_rate:.1f}x naive)")
    print(f"   engine LiteRT/XNNPACK, batch 32     {lite_rate:7.1f} cells/s  ({lite_rate / naive_rate:.1f}x naive, "
          f"{lite_rate / tf_rate:.2f}x TF)")
    print(f"   batch 1: TF {tf1_rate:.1f} cells/s, LiteRT {lite1_rate:.1f} cells/s ({lite1_rate / tf1_rate:.2f}x)")
    print(f"   max |dp| LiteRT vs TF: {delta:.2e}")

    bccd = data_root() / "bccd" / "JPEGImages"
    for backend in ("tf", "tflite"):
        time.sleep(settle)
        clf = CellClassifier(model_dir, backend=backend, warm_up=True)
        for b in clf.engine.buckets():  # every batch shape prepared: this part measures steady state
            clf.engine.logits(cells[:b])
        first = {}
        t0 = time.perf_counter()
        for _ in analyze_folder(bccd, clf, on_progress=lambda *a: first.setdefault("t", time.perf_counter() - t0),
                                max_pending_images=1):
            break
        t_first = first.get("t", 0.0)
        t0 = time.perf_counter()
        n_fields = n_cells = 0
        for r in analyze_folder(bccd, clf):
            n_fields += 1
            n_cells += len(r.cells)
        dt = time.perf_counter() - t0
        print(f"\n2. end to end on {bccd} with {backend}: {n_fields} fields, {n_cells} cells in {dt:.1f} s = "
              f"{n_fields / dt:.1f} fields/s, {n_cells / dt:.1f} cells/s; first result {t_first:.2f} s after "
              "the folder was opened (model loaded)")

    profile_stages(bccd, CellClassifier(model_dir, backend="tflite", warm_up=True))
    if args.quantization:
        report_quantization(model, cells)
    if not args.skip_memory:
        report_memory(model_dir)
    print(f"\nthis process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
