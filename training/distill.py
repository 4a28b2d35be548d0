"""Feature distillation: a B3 student learns a teacher's pooled features from cells alone (no labels).

The white-cell-type head works best on the features of a large ImageNet backbone (EfficientNet-B4,
``training/results/wbc-frozen-b4-imagenet.json``), but the design ships B3 and the project commits no third-party
weights. Here a B3 (initialised from a parent model folder, e.g. the bundled 1.1.0) is trained to reproduce the
teacher's cached features (``python -m training wbc features --imagenet-b4 ...``) of every cell of a cell table,
for the original view and the same augmented view the teacher saw. No label is used, so ``wbc fit`` on the
student's features measures held-out sources as honestly as it does for the teacher's.

The student may run at a lower input size than the cell table (e.g. 64 px for 128-px cells: ~4x cheaper to train
and to run); the cells are resampled once (area) and the student folder's preprocessing says so.

``python -m training distill --cells cells.npz --teacher-features feats_b4.npy --columns 272:2512
--parent assets/models/leukviewer-b3 --size 64 --workdir DIR --out STUDENT`` ; ``--resume`` continues a
stopped run from its last checkpoint in ``--workdir`` (weights, step; the optimizer's moments restart).
The student folder then feeds ``wbc features --parent STUDENT`` and ``wbc fit --parent STUDENT --out MODEL``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .augment import augment
from .heads import FEATURE_AUGMENT

STATE_FILE = "distill_state.json"
WEIGHTS_FILE = "student.weights.h5"


@dataclass
class DistillConfig:
    cells: str
    teacher_features: str
    parent: str
    workdir: str
    columns: str | None = None       # START:STOP of the teacher's feature columns
    size: int = 64                   # the student's input size
    epochs: float = 3.0              # passes over (cells x teacher views)
    batch_size: int = 32
    lr: float = 3e-4
    holdout: float = 0.03            # share of cells kept out to report how well the features are matched
    seed: int = 0
    checkpoint_every: int = 200      # steps
    whiten: int = 0                  # > 0: learn the teacher's top-N principal components, each scaled to unit
    #                                  variance (no direction outweighs another), instead of its standardised features


def teacher_views(cells: np.ndarray, views: int, seed: int = 0) -> list[np.ndarray]:
    """The cells as the teacher saw them: view 0 as is, views 1.. augmented in the order and with the random
    stream of ``training.heads.backbone_features`` (one generator, cell after cell, view after view)."""
    rng = np.random.default_rng(seed)
    out = [cells]
    for _ in range(1, views):
        out.append(np.stack([augment(c, rng, FEATURE_AUGMENT) for c in cells]))
    return out


def resample(x: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if x.shape[1] == size:
        return x
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in x])


def whitened(target: np.ndarray, train: np.ndarray, components: int) -> np.ndarray:
    """``target`` (views, cells, features) projected on the top ``components`` principal axes of its training
    cells, each divided by its standard deviation: on the training cells every output has unit variance and none
    correlates with another. With standardised features the student matches the few directions that carry most of
    the variance (cell size, colour) and little else; whitened, a direction that tells a monocyte from a neutrophil
    counts as much as one that tells a large cell from a small one. No label is used."""
    flat = target[:, train].reshape(-1, target.shape[2]).astype(np.float64)
    flat -= flat.mean(0)
    values, vectors = np.linalg.eigh(flat.T @ flat / max(1, len(flat) - 1))
    top = np.argsort(values)[::-1][:components]
    projection = vectors[:, top] / np.sqrt(np.maximum(values[top], 1e-8))
    return (target.astype(np.float64) @ projection).astype(np.float32)


def build_student(parent_folder: str, size: int, target_dim: int):
    """parent's B3 backbone rebuilt at ``size`` px (same weights) -> pool -> linear map to the teacher's features."""
    import keras

    from .model import build_backbone
    from .modelfolder import load_model_folder

    parent = load_model_folder(parent_folder)
    source = parent.network.get_layer("backbone")
    backbone = build_backbone(parent.meta["architecture"]["backbone"], size)
    backbone.set_weights(source.get_weights())
    for layer in backbone.layers:   # batch statistics of 32 cells are noisy: keep the parent's
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    inp = keras.Input((size, size, 3), name="cell")
    x = backbone(inp)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    out = keras.layers.Dense(target_dim, name="distill")(x)
    return keras.Model(inp, out, name="leukviewer_b3_student"), parent.meta


def _state(workdir: Path) -> dict | None:
    p = workdir / STATE_FILE
    return json.loads(p.read_text()) if p.is_file() else None


def distill(cfg: DistillConfig, resume: bool = False, log=print):
    """Train the student; returns (student network, report dict). Checkpoints in ``cfg.workdir``."""
    import keras
    import tensorflow as tf

    from .modelfolder import atomic_write_text

    workdir = Path(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state = _state(workdir) if resume else None
    if resume and state is None:
        log(f"no checkpoint in {workdir}: starting afresh")
    cells = np.load(cfg.cells)["x"]
    teacher = np.load(cfg.teacher_features, mmap_mode="r")
    if teacher.shape[1] != len(cells):
        raise ValueError(f"{cfg.teacher_features} has {teacher.shape[1]} cells, {cfg.cells} has {len(cells)}")
    if cfg.columns:
        start, stop = (int(v) for v in cfg.columns.split(":"))
        teacher = teacher[:, :, start:stop]
    teacher = np.asarray(teacher, np.float32)
    views = teacher.shape[0]

    cache = workdir / f"views_{cfg.size}px.npy"
    if cache.is_file():
        x = np.load(cache)
    else:
        t0 = time.time()
        x = np.stack([resample(v, cfg.size) for v in teacher_views(cells, views, cfg.seed)])
        np.save(cache, x)
        log(f"{views} view(s) of {len(cells)} cells at {cfg.size} px in {time.time() - t0:.0f} s")
    del cells

    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(x.shape[1])
    n_hold = int(round(cfg.holdout * len(order)))
    held, train = np.sort(order[:n_hold]), order[n_hold:]
    mean = teacher[:, train].reshape(-1, teacher.shape[2]).mean(0)
    std = teacher[:, train].reshape(-1, teacher.shape[2]).std(0) + 1e-3
    target = (teacher - mean) / std
    if cfg.whiten:
        target = whitened(target, train, cfg.whiten)

    student, parent_meta = build_student(cfg.parent, cfg.size, target.shape[2])
    step = 0
    if state:
        student.load_weights(workdir / WEIGHTS_FILE)
        step = int(state["step"])
        log(f"resumed at step {step}")
    pairs = np.array([(v, i) for v in range(views) for i in train])
    steps_per_epoch = len(pairs) // cfg.batch_size
    total = max(1, int(cfg.epochs * steps_per_epoch))
    schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, total, alpha=0.05)
    optimizer = keras.optimizers.Adam(learning_rate=lambda: schedule(optimizer.iterations + step))
    variables = student.trainable_variables

    @tf.function
    def train_step(batch, goal):
        batch = tf.image.random_flip_left_right(tf.image.random_flip_up_down(batch))
        batch = tf.image.rot90(batch, tf.random.uniform((), 0, 4, tf.int32))
        with tf.GradientTape() as tape:
            pred = student(batch, training=True)
            loss = tf.reduce_mean(tf.square(pred - goal))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def held_out_r2() -> float:
        pred = student.predict(x[0, held].astype("float32"), batch_size=128, verbose=0)
        goal = target[0, held]
        return float(1.0 - np.mean((pred - goal) ** 2) / np.mean((goal - goal.mean(0)) ** 2))

    def save(step_now: int, r2=None) -> None:
        student.save_weights(workdir / (WEIGHTS_FILE + ".tmp.weights.h5"))
        (workdir / (WEIGHTS_FILE + ".tmp.weights.h5")).replace(workdir / WEIGHTS_FILE)
        atomic_write_text(workdir / STATE_FILE, json.dumps(
            {"step": step_now, "total_steps": total, "config": asdict(cfg), "held_out_r2": r2}, indent=1))

    if step == 0:
        log(f"held-out R² of the parent's start: {held_out_r2():.3f}")
    stream = np.random.default_rng(cfg.seed + 1 + step)
    t0, losses = time.time(), []
    while step < total:
        pick = pairs[stream.integers(0, len(pairs), cfg.batch_size)]
        batch = tf.constant(x[pick[:, 0], pick[:, 1]].astype("float32"))
        goal = tf.constant(target[pick[:, 0], pick[:, 1]])
        losses.append(float(train_step(batch, goal)))
        step += 1
        if step % cfg.checkpoint_every == 0 or step == total:
            r2 = held_out_r2() if step % (cfg.checkpoint_every * 5) == 0 or step == total else None
            save(step, r2)
            rate = len(losses) * cfg.batch_size / (time.time() - t0)
            log(f"step {step}/{total} loss {np.mean(losses[-cfg.checkpoint_every:]):.3f} {rate:.1f} cells/s"
                + (f" held-out R² {r2:.3f}" if r2 is not None else ""))
    report = {"held_out_r2": held_out_r2(), "steps": total, "held_out_cells": int(n_hold),
              "teacher_columns": cfg.columns, "config": asdict(cfg)}
    return student, parent_meta, report


def save_student(student, parent_meta: dict, report: dict, out: str, size: int, canvas_um: float | None) -> Path:
    """The student as a model folder that ``wbc features/fit --parent`` take (its output is the teacher's feature
    space, not a cell class: it is never an app model)."""
    from .modelfolder import save_model_folder

    prep = dict(parent_meta["preprocessing"])
    prep["size"] = size
    if canvas_um:
        prep["canvas_um"] = canvas_um
    arch = dict(parent_meta.get("architecture", {}), input_size=[size, size],
                head="linear map of pooled features to the teacher's features (distillation only)")
    meta = {"name": "leukviewer-b3-student", "version": "0.0.0",
            "intended_use": "a distilled backbone for `python -m training wbc features/fit --parent`; not a "
                            "cell classifier. For Research Use Only.",
            "class_names": ["teacher_features"], "positive_class": None, "architecture": arch,
            "preprocessing": prep, "decision": {"threshold": 0.5}, "distillation": report}
    return save_model_folder(student, out, meta)


def add_parser(sub) -> None:
    p = sub.add_parser("distill", help="train a B3 student to reproduce a teacher's cached cell features (no labels)")
    p.add_argument("--cells", required=True, help="cell table (.npz, python -m leukviewer cells)")
    p.add_argument("--teacher-features", required=True, help="the teacher's features (python -m training wbc "
                   "features --imagenet-b4 ...)")
    p.add_argument("--columns", help="teacher feature columns START:STOP")
    p.add_argument("--parent", required=True, help="model folder whose B3 backbone starts the student")
    p.add_argument("--size", type=int, default=64, help="student input size in px")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--whiten", type=int, default=0, help="learn the teacher's top N principal components, whitened "
                   "(0: its standardised features)")
    p.add_argument("--workdir", required=True, help="checkpoints and the resampled cells (outside the repository)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--out", required=True, help="student model folder to write")


def run(args) -> int:
    cfg = DistillConfig(cells=args.cells, teacher_features=args.teacher_features, parent=args.parent,
                        workdir=args.workdir, columns=args.columns, size=args.size, epochs=args.epochs,
                        batch_size=args.batch_size, lr=args.lr, whiten=args.whiten)
    student, parent_meta, report = distill(cfg, resume=args.resume, log=lambda m: print(m, flush=True))
    summary = json.loads(str(np.load(args.cells)["summary"]))
    canvas = summary.get("preprocessing", {}).get("canvas_um")
    folder = save_student(student, parent_meta, report, args.out, args.size, canvas)
    print(json.dumps({k: v for k, v in report.items() if k != "config"}))
    print(f"student folder: {folder}")
    return 0 if math.isfinite(report["held_out_r2"]) else 1
