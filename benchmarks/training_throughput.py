"""Training throughput (images/s) of an EfficientNet backbone with the backbone frozen and unfrozen.

Run by hand:  .venv/bin/python benchmarks/training_throughput.py [--backbone EfficientNetB3] [--size 128]
It measures both modes in one process on the same random-free real-sized batches (zeros are as costly as
images for a CNN), after a warm-up that absorbs graph tracing, and prints img/s and their ratio.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def measure(model, x, y, steps: int, warmup: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    for _ in range(warmup):
        model.train_on_batch(x, y)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * len(x) / (time.perf_counter() - t0), first


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="EfficientNetB3")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from training.schedule import compile_model
    from training.model import build_classifier, set_trainable

    x = np.zeros((args.batch, args.size, args.size, 3), np.float32)
    y = np.zeros((args.batch,), np.int64)
    results = {}
    for mode in ("head", "all"):
        model = build_classifier(args.backbone, args.size, 2)
        set_trainable(model, mode)
        compile_model(model, 1e-3, 1e-5)
        ips, first = measure(model, x, y, args.steps, args.warmup)
        results[mode] = ips
        print(f"{args.backbone} {args.size}px batch {args.batch}, backbone {'frozen' if mode == 'head' else 'unfrozen'}: "
              f"{ips:.1f} img/s (warm-up incl. tracing {first:.0f} s)")
        keras.backend.clear_session()
    print(f"frozen / unfrozen: {results['head'] / results['all']:.2f}x")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, TensorFlow {tf.__version__}, Keras {keras.__version__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
