"""The training loop: ``train(config, on_progress, should_stop) -> TrainResult``.

The CLI and the app's retraining wizard both call this one function. It checkpoints after every epoch into
``config.run_dir`` (outside the repository by default) so that ``resume=True`` continues an interrupted run,
reports through a plain callback, and stops cooperatively when ``should_stop()`` returns True.
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__
from .augment import AugmentConfig, augment
from .celltypes import BLAST
from .datasets import POSITIVE_CLASS, Dataset, DatasetError, load_dataset
from .metrics import (choose_threshold, choose_uncertainty_band, classification_metrics,
                      expected_calibration_error, fit_temperature, save_figures)
from .modelfolder import atomic_write_text, load_model_folder, save_model_folder, softmax
from .preprocess import PreprocessConfig, preprocess_cell, read_rgb
from .splits import LEAK_WARNING, Split, cross_validation_splits, image_split, subject_split

log = logging.getLogger(__name__)

RUO = "For Research Use Only. Not for use in diagnostic procedures."


def default_runs_dir() -> Path:
    """Where checkpoints go unless told otherwise: the user's cache, never the repository."""
    env = os.environ.get("LEUKVIEWER_RUNS")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("leukviewer")) / "runs"


@dataclass
class TrainConfig:
    data: str
    run_dir: str = ""
    output: str | None = None            # model folder written at the end (None: only the run folder)
    name: str = "leukviewer-classifier"
    version: str = "0.1.0"
    folds: list[int] | None = None       # C-NMC fold_N folders to read (None: all present)
    # model
    backbone: str = "EfficientNetB3"
    input_size: int = 128
    canvas_px: int = 0                   # > 0: keep cell size, each cell centred on this many source pixels
    dropout: float = 0.3
    init: str = "scratch"                # scratch | imagenet | model
    imagenet_weights: str | None = None  # local efficientnetb3_notop.h5 (never downloaded)
    parent_model: str | None = None      # model folder to start from (fine-tuning / pre-trained backbone)
    # split
    split: str = "subject"               # subject | image (leaks subjects) | cv
    leaky_image_split: bool = False      # required for split="image"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    cv_folds: int = 3
    cv_fold: int = 0                     # 0-based, with split="cv"
    # data handling
    oversample: bool = True
    class_weights: bool = False
    augment: dict = field(default_factory=lambda: AugmentConfig().to_dict())
    skip_unreadable: bool = False
    # schedule
    batch_size: int = 32
    head_epochs: int = 0                 # phase 1: backbone frozen (useful with pre-trained weights)
    lowres_epochs: int = 0               # phase 2: unfrozen, at lowres_size px (progressive resizing, ~4x cheaper)
    lowres_size: int | None = None
    lr_lowres: float | None = None       # peak learning rate of the low-resolution phase (None: lr)
    epochs: int = 12                     # phase 3: unfrozen, at input_size
    unfreeze: str = "all"                # all | top:N
    train_batchnorm: bool = False        # with pre-trained weights: let BatchNorm layers learn (default: frozen)
    lr_head: float = 1e-3
    lr: float = 1e-3
    weight_decay: float = 1e-5
    patience: int = 4                    # early stopping on the monitored validation figure (0: off)
    monitor: str = "val_loss"            # val_loss (lower is better) | val_auc (higher; binary) | last (the last
                                         # full-size epoch is kept: a fixed schedule, validation only watched)
    max_steps_per_epoch: int | None = None
    bn_recalibration_batches: int = 20   # re-estimate BatchNorm statistics before each validation (0: off)
    seed: int = 0
    tta: bool = False                    # evaluate with 8 flips/rotations averaged
    uncertainty_target_accuracy: float = 0.95
    workers: int = 0                     # threads for image decoding (0: all cores)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else default_runs_dir() / self.name


@dataclass
class ProgressEvent:
    stage: str                  # prepare | train | evaluate | export | done
    message: str = ""
    phase: str = ""
    epoch: int = 0              # 1-based, counted over both phases
    epochs: int = 0
    batch: int = 0
    batches: int = 0
    logs: dict = field(default_factory=dict)
    eta_s: float | None = None
    fraction: float | None = None


@dataclass
class TrainResult:
    run_dir: Path
    cancelled: bool = False
    model_folder: Path | None = None
    history: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    stopped_early: bool = False


class Cancelled(Exception):
    """Raised inside the loop when the caller asked to stop; the last checkpoint stays."""


# ----------------------------------------------------------------------------------------- data


@dataclass
class PreparedData:
    dataset: Dataset
    split: Split
    images: np.ndarray          # (N, size, size, 3) uint8, preprocessed
    labels: np.ndarray          # (N,) int
    preprocess: PreprocessConfig


def _load_images(dataset: Dataset, pre: PreprocessConfig, workers: int, skip_unreadable: bool,
                 report: Callable[[ProgressEvent], None]) -> tuple[np.ndarray, list[int]]:
    n = len(dataset.samples)
    out = np.zeros((n, pre.size, pre.size, 3), dtype=np.uint8)
    bad: list[tuple[int, str]] = []

    def one(i):
        try:
            out[i] = preprocess_cell(read_rgb(dataset.samples[i].path), pre)
            return None
        except Exception as e:  # any decoding failure is reported per file below
            return i, f"{type(e).__name__}: {e}"

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for k, err in enumerate(pool.map(one, range(n))):
            if err:
                bad.append(err)
            if k % 200 == 0 or k == n - 1:
                report(ProgressEvent("prepare", f"preprocessing images {k + 1}/{n}", fraction=(k + 1) / n))
    if bad and not skip_unreadable:
        names = "; ".join(f"{dataset.samples[i].path.name} ({why})" for i, why in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise DatasetError(f"{len(bad)} image(s) could not be read: {names}{more}. Remove or replace them "
                           "(or allow skipping unreadable images).")
    keep = sorted(set(range(n)) - {i for i, _ in bad})
    return out, keep


def prepare_data(config: TrainConfig, report=lambda e: None) -> PreparedData:
    dataset = load_dataset(config.data, folds=config.folds)
    pre = (PreprocessConfig.fixed_scale(config.input_size, config.canvas_px) if config.canvas_px
           else PreprocessConfig(size=config.input_size))
    images, keep = _load_images(dataset, pre, config.workers, config.skip_unreadable, report)
    if len(keep) < len(dataset.samples):
        dropped = len(dataset.samples) - len(keep)
        dataset = Dataset([dataset.samples[i] for i in keep], dataset.class_names, dataset.layout, dataset.root,
                          dataset.duplicates_dropped, dataset.subjects_known,
                          dataset.notes + [f"{dropped} unreadable image(s) skipped"])
        images = images[keep]
    if config.split == "subject":
        split = subject_split(dataset, config.val_fraction, config.test_fraction, config.seed)
    elif config.split == "image":
        split = image_split(dataset, 0.10 if config.val_fraction is None else config.val_fraction,
                            config.test_fraction, config.seed, allow_subject_leak=config.leaky_image_split)
    elif config.split == "cv":
        splits = cross_validation_splits(dataset, config.cv_folds, config.seed, config.val_fraction)
        if not 0 <= config.cv_fold < len(splits):
            raise DatasetError(f"cv_fold must be between 0 and {len(splits) - 1}")
        split = splits[config.cv_fold]
    else:
        raise DatasetError(f"unknown split {config.split!r} (subject, image or cv)")
    if not split.train:
        raise DatasetError("the training part of the split is empty")
    labels = np.array(dataset.labels(), dtype=np.int64)
    missing = set(range(len(dataset.class_names))) - set(labels[split.train].tolist())
    if missing:
        raise DatasetError("the training part lacks class(es) "
                           + ", ".join(dataset.class_names[i] for i in sorted(missing)))
    return PreparedData(dataset, split, images, labels, pre)


def _epoch_order(labels: np.ndarray, indices: list[int], oversample: bool, rng: np.random.Generator) -> np.ndarray:
    """Training order for one epoch; with ``oversample`` every class is resampled to the largest class's count."""
    idx = np.asarray(indices)
    if not oversample:
        return rng.permutation(idx)
    classes = np.unique(labels[idx])
    per_class = [idx[labels[idx] == c] for c in classes]
    target = max(len(p) for p in per_class)
    parts = []
    for p in per_class:
        reps = np.concatenate([rng.permutation(p) for _ in range(target // len(p))]) if target // len(p) else p[:0]
        extra = rng.choice(p, size=target - len(reps), replace=False) if target > len(reps) else p[:0]
        parts.append(np.concatenate([reps, extra]))
    return rng.permutation(np.concatenate(parts))


def _make_sequence(data: PreparedData, config: TrainConfig, start_epoch: int, images: np.ndarray | None = None):
    import keras

    images = data.images if images is None else images

    aug = AugmentConfig.from_dict(config.augment)

    class CellSequence(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = start_epoch
            self._order = None
            self._order_epoch = None
            n = len(_epoch_order(data.labels, data.split.train, config.oversample, np.random.default_rng(0)))
            self.n_batches = math.ceil(n / config.batch_size)
            if config.max_steps_per_epoch:
                self.n_batches = min(self.n_batches, config.max_steps_per_epoch)

        def _current_order(self):
            if self._order_epoch != self.epoch:
                rng = np.random.default_rng([config.seed, self.epoch])
                self._order = _epoch_order(data.labels, data.split.train, config.oversample, rng)
                self._order_epoch = self.epoch
            return self._order

        def __len__(self):
            return self.n_batches

        def __getitem__(self, i):
            order = self._current_order()
            sel = order[i * config.batch_size:(i + 1) * config.batch_size]
            rng = np.random.default_rng([config.seed, self.epoch, i, 7])
            x = np.stack([augment(images[j], rng, aug) for j in sel]).astype("float32")
            return x, data.labels[sel]

        def on_epoch_end(self):
            self.epoch += 1

    return CellSequence()


# ------------------------------------------------------------------------------------ checkpoints


class RunFolder:
    """The checkpoint folder of one run: state.json, last/best weights and the optimizer state."""

    def __init__(self, path: Path):
        self.path = Path(path)

    state_file = property(lambda self: self.path / "state.json")
    last_weights = property(lambda self: self.path / "last.weights.h5")
    last_optimizer = property(lambda self: self.path / "last.optimizer.npz")
    best_weights = property(lambda self: self.path / "best.weights.h5")

    def exists(self) -> bool:
        return self.state_file.is_file()

    def load_state(self) -> dict:
        return json.loads(self.state_file.read_text(encoding="utf-8"))

    def save_state(self, state: dict) -> None:
        atomic_write_text(self.state_file, json.dumps(state, indent=2, default=_jsonable))

    def save_weights(self, model, target: Path) -> None:
        tmp = target.with_name(target.name.replace(".weights.h5", ".tmp.weights.h5"))
        model.save_weights(tmp)
        os.replace(tmp, target)

    def save_optimizer(self, optimizer) -> None:
        tmp = self.path / "last.optimizer.tmp.npz"
        np.savez(tmp, *[np.asarray(v) for v in optimizer.variables])
        os.replace(tmp, self.last_optimizer)

    def restore_optimizer(self, optimizer, trainable_variables) -> bool:
        if not self.last_optimizer.is_file():
            return False
        optimizer.build(trainable_variables)
        with np.load(self.last_optimizer) as saved:
            values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        if len(values) != len(optimizer.variables) or any(
                tuple(v.shape) != tuple(s.shape) for v, s in zip(optimizer.variables, values)):
            log.warning("saved optimizer state does not match; continuing with a fresh optimizer")
            return False
        for v, s in zip(optimizer.variables, values):
            v.assign(s)
        return True


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


# ----------------------------------------------------------------------------------------- model


def _initial_model(config: TrainConfig, n_classes: int):
    from .model import WeightsError, build_classifier, find_imagenet_weights, transfer_backbone

    imagenet_file = None
    if config.init == "imagenet":
        imagenet_file = find_imagenet_weights(config.backbone, config.imagenet_weights)
    elif config.init not in ("scratch", "model"):
        raise WeightsError(f"unknown init {config.init!r}: use scratch, imagenet or model")
    model = build_classifier(config.backbone, config.input_size, n_classes, config.dropout, imagenet_file,
                             config.seed)
    if config.monitor not in ("val_loss", "val_auc", "last"):
        raise ValueError(f"unknown monitor {config.monitor!r}: use val_loss, val_auc or last")
    if config.init == "model":
        if not config.parent_model:
            raise WeightsError("init=model needs parent_model (a model folder)")
        parent = load_model_folder(config.parent_model)
        if parent.meta.get("architecture", {}).get("backbone") not in (None, config.backbone):
            raise WeightsError(f"the parent model is a {parent.meta['architecture']['backbone']}, "
                               f"not a {config.backbone}")
        if list(parent.class_names) == [] or len(parent.class_names) == n_classes:
            model.set_weights(parent.network.get_weights())  # same head: plain fine-tuning
        else:
            transfer_backbone(parent.network, model)         # new head on a pre-trained backbone
    return model


def _load_weights(model, path: Path) -> None:
    """Load network weights; the optimizer state travels separately (RunFolder.restore_optimizer)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(path)


def _compile(model, lr: float, weight_decay: float):
    import keras

    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


def _phases(config: TrainConfig) -> list[tuple[str, int, int, float, int]]:
    """(name, first_epoch, end_epoch, lr, input side) for each phase, epochs counted over the whole run."""
    phases = []
    end = 0
    if config.head_epochs > 0:
        phases.append(("head", end, end + config.head_epochs, config.lr_head, config.input_size))
        end += config.head_epochs
    if config.lowres_epochs > 0:
        if not config.lowres_size or not 16 <= config.lowres_size < config.input_size:
            raise ValueError("lowres_epochs needs a lowres_size between 16 and input_size - 1")
        phases.append(("lowres", end, end + config.lowres_epochs, config.lr_lowres or config.lr,
                       config.lowres_size))
        end += config.lowres_epochs
    if config.epochs > 0:
        phases.append(("finetune", end, end + config.epochs, config.lr, config.input_size))
    if not phases or phases[-1][4] != config.input_size:
        raise ValueError("nothing to train at the model's input size: head_epochs and epochs are both 0")
    return phases


def _resized(images: np.ndarray | None, size: int) -> np.ndarray | None:
    """Cells shrunk to ``size`` px (area interpolation) for the low-resolution phase."""
    import cv2

    if images is None or images.shape[1] == size:
        return images
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images]) \
        if len(images) else np.zeros((0, size, size, 3), np.uint8)


def _cosine_lr(base: float, epoch: int, first: int, end: int) -> float:
    span = max(1, end - first)
    return base * 0.5 * (1 + math.cos(math.pi * (epoch - first) / span))


# ----------------------------------------------------------------------------------------- train


def train(config: TrainConfig | dict, on_progress: Callable[[ProgressEvent], None] | None = None,
          should_stop: Callable[[], bool] | None = None, resume: bool = False,
          strategy: str | None = None) -> TrainResult:
    """Train a classifier as ``config`` says; see the module docstring for checkpoints and cancellation.

    ``strategy`` (mirrored | multiworker): the same training under tf.distribute, scaled and checkpointed as
    ``training/distribute.py`` says; the model folder is the same."""
    from .distribute import make_distribution

    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    dist = make_distribution(strategy)   # first: MultiWorkerMirroredStrategy configures TensorFlow's runtime
    if dist is not None and dist.workers > 1 and config.patience:
        # each worker would decide from its own validation pass; a split decision would leave the others waiting
        log.warning("early stopping is off with several workers (patience %d ignored); the best epoch is kept",
                    config.patience)
        config = replace(config, patience=0)
    scratch = None
    if dist is not None and not dist.chief:   # every worker trains; only the chief writes the run and the model
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="leukviewer-worker-"))
        if resume and config.resolved_run_dir().is_dir():
            shutil.copytree(config.resolved_run_dir(), scratch / "run")
        config = replace(config, run_dir=str(scratch / "run"),
                         output=str(scratch / "model") if config.output else None)
    try:
        return _train(config, on_progress, should_stop, resume, dist)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _train(config: TrainConfig, on_progress, should_stop, resume: bool, dist) -> TrainResult:
    import contextlib

    from .distribute import scaled
    from .model import set_trainable

    report = on_progress or (lambda e: None)
    stop = should_stop or (lambda: False)
    run = RunFolder(config.resolved_run_dir())
    if run.exists() and not resume:
        state = run.load_state()
        if state.get("finished"):
            raise FileExistsError(f"{run.path} holds a finished run; choose another run folder")
        raise FileExistsError(f"{run.path} holds an unfinished run; resume it (--resume) or choose another "
                              "run folder")
    if resume and run.exists():
        state = run.load_state()
        saved = TrainConfig.from_dict(state["config"])
        for key in ("data", "backbone", "input_size", "canvas_px", "split", "seed", "cv_fold", "init"):
            if getattr(saved, key) != getattr(config, key):
                raise ValueError(f"cannot resume {run.path}: its {key} was {getattr(saved, key)!r}, "
                                 f"now {getattr(config, key)!r}")
        # a worker other than the chief resumes from a copy of the chief's run and keeps writing to its scratch
        config = saved if dist is None or dist.chief else replace(saved, run_dir=config.run_dir, output=config.output)
    else:
        state = {"config": config.to_dict(), "epochs_done": 0, "history": {}, "best_val_loss": None,
                 "best_epoch": None, "wait": 0, "finished": False, "train_seconds": 0.0}
    run.path.mkdir(parents=True, exist_ok=True)
    if dist is not None:
        state["distribution"] = dist.describe(config.batch_size)

    t_start = time.time()
    report(ProgressEvent("prepare", "reading and preprocessing images"))
    data = prepare_data(config, report)
    log.info("split: %s", json.dumps(data.split.describe(data.dataset)))
    if data.split.leaks_subjects:
        log.warning(LEAK_WARNING)
    n_classes = len(data.dataset.class_names)

    run_config = scaled(config, dist.replicas) if dist else config   # global batch and learning rates
    phases = _phases(run_config)
    total_epochs = phases[-1][2]
    x_val = data.images[data.split.val] if data.split.val else None
    y_val = data.labels[data.split.val] if data.split.val else None
    class_weight = None
    if config.class_weights:
        counts = np.bincount(data.labels[data.split.train], minlength=n_classes)
        class_weight = {i: float(len(data.split.train) / (n_classes * max(1, c))) for i, c in enumerate(counts)}

    scope = dist.strategy.scope() if dist else contextlib.nullcontext()
    with scope:   # the network, its optimizer and every step built and run under the strategy
        model = full_model = _initial_model(config, n_classes)
        # Pre-trained BatchNorm statistics are kept by default (ImageNet's are better than a small data set's); a
        # backbone pre-trained on another lab's images (PBC) may need them re-learnt: train_batchnorm=True.
        pretrained = config.init in ("imagenet", "model") and not config.train_batchnorm
        stopped_early = False
        recal_images = _recalibration_images(data, config)

        for phase_name, first, end, base_lr, size in phases:
            if state["epochs_done"] >= end or state.get("early_stopped"):
                continue
            if size != config.input_size:
                # The same network built for smaller inputs shares every weight; it hands them on through the
                # phase's last checkpoint, which the full-size network loads when the next phase starts.
                model = _initial_model(replace(config, input_size=size), n_classes)
                if first == 0 or not run.last_weights.is_file():
                    model.set_weights(full_model.get_weights())
            else:
                model = full_model
            set_trainable(model, "head" if phase_name == "head" else config.unfreeze, freeze_batchnorm=pretrained)
            _compile(model, base_lr, config.weight_decay)
            if dist is not None and dist.workers > 1:
                from .distribute import build_from_local_batch

                build_from_local_batch(model)
            start = max(first, state["epochs_done"])
            if start > 0 and run.last_weights.is_file():
                _load_weights(model, run.last_weights)
                if start > first:
                    run.restore_optimizer(model.optimizer, model.trainable_variables)
            sequence = _make_sequence(data, run_config, start, _resized(data.images, size))
            callback = _RunCallback(run, state, config, phase_name, first, end, base_lr, total_epochs,
                                    sequence.n_batches, report, stop,
                                    validation=(_resized(x_val, size), y_val) if x_val is not None else None,
                                    calibration_images=_resized(recal_images, size),
                                    positive=_positive_index(data.dataset.class_names),
                                    track_best=size == config.input_size)
            try:
                model.fit(sequence, epochs=end, initial_epoch=start, verbose=0, callbacks=[callback],
                          class_weight=class_weight)
            except Cancelled:
                report(ProgressEvent("done", f"cancelled; the last checkpoint (epoch {state['epochs_done']}) is kept "
                                     f"in {run.path}", epoch=state["epochs_done"], epochs=total_epochs))
                return TrainResult(run.path, cancelled=True, history=state["history"])
            if callback.early_stopped:
                stopped_early = True
                state["early_stopped"] = True
                run.save_state(state)
                break

        state["train_seconds"] = state.get("train_seconds", 0.0)
        report(ProgressEvent("evaluate", "calibrating and evaluating"))
        model = full_model
        if run.best_weights.is_file():
            _load_weights(model, run.best_weights)
    result = _finalize(model, data, config, state, run, report)
    result.stopped_early = stopped_early
    state["finished"] = True
    state["wall_seconds_last_session"] = time.time() - t_start
    run.save_state(state)
    report(ProgressEvent("done", "finished" + (f"; model folder {result.model_folder}" if result.model_folder else ""),
                         epoch=state["epochs_done"], epochs=total_epochs))
    return result


def _positive_index(class_names) -> int | None:
    """The blast class: ALL (binary C-NMC names) or blast (a multi-class cell-type folder)."""
    names = list(class_names)
    for positive in (POSITIVE_CLASS, BLAST):
        if positive in names:
            return names.index(positive)
    return 1 if len(names) == 2 else None


def validation_logs(model, x_val: np.ndarray, y_val: np.ndarray, batch_size: int, positive: int | None) -> dict:
    """Loss, accuracy and (binary) ROC-AUC of the network in inference mode on the validation part."""
    logits = predict_logits(model, x_val, batch_size)
    logp = logits - logits.max(axis=1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
    logs = {"val_loss": float(-logp[np.arange(len(y_val)), y_val].mean()),
            "val_accuracy": float((logits.argmax(axis=1) == y_val).mean())}
    if positive is not None and logits.shape[1] == 2 and len(np.unique(y_val)) == 2:
        from .metrics import roc_auc_score

        logs["val_auc"] = float(roc_auc_score(y_val == positive, logp[:, positive]))
    return logs


def _recalibration_images(data: PreparedData, config: TrainConfig) -> np.ndarray | None:
    """Un-augmented training cells, classes balanced, for re-estimating BatchNorm statistics."""
    n = config.bn_recalibration_batches * config.batch_size
    if n <= 0:
        return None
    rng = np.random.default_rng([config.seed, 99])
    order = _epoch_order(data.labels, data.split.train, True, rng)[:n]
    return data.images[order]


def recalibrate_batchnorm(model, images: np.ndarray, batch_size: int, momentum: float = 0.9) -> int:
    """Re-estimate the moving statistics of every trainable BatchNormalization layer on ``images``.

    While the weights change quickly (from scratch, high learning rate) the moving averages lag far behind them,
    and the network in inference mode can predict one class for everything although it trains well: measured
    here on EfficientNet-B3 from scratch after 3 epochs (every cell called ALL; after re-estimation training
    subjects separated again). Forward passes in training mode with a short memory fix that. Frozen layers
    (fine-tuning pre-trained weights) are left alone. Returns the number of layers updated.
    """
    import keras

    def sublayers(layer):
        for child in getattr(layer, "layers", []):
            yield child
            yield from sublayers(child)

    layers = [layer for layer in sublayers(model) if isinstance(layer, keras.layers.BatchNormalization)
              and layer.trainable]
    if not layers or len(images) == 0:
        return 0
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = momentum
    try:
        for i in range(0, len(images), batch_size):
            model(images[i:i + batch_size].astype("float32"), training=True)
    finally:
        for layer, m in zip(layers, saved):
            layer.momentum = m
    return len(layers)


class _RunCallback:
    """Progress, cancellation, per-epoch checkpoint, early stopping and the LR schedule, resumably."""

    def __new__(cls, *args, **kwargs):
        import keras

        class Impl(keras.callbacks.Callback):
            def __init__(self, run, state, config, phase, first, end, base_lr, total_epochs, n_batches, report,
                         stop, validation=None, calibration_images=None, positive=None, track_best=True):
                super().__init__()
                self.track_best = track_best
                self.validation, self.positive = validation, positive
                has_val = validation is not None
                self.calibration_images = calibration_images
                self.calibrated_epoch = None
                self.run, self.state, self.config = run, state, config
                self.phase, self.first, self.end, self.base_lr = phase, first, end, base_lr
                self.total_epochs, self.n_batches = total_epochs, n_batches
                self.report, self.stop, self.has_val = report, stop, has_val
                self.early_stopped = False
                self.batch_times: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                if self.stop():
                    raise Cancelled()
                self.model.optimizer.learning_rate.assign(_cosine_lr(self.base_lr, epoch, self.first, self.end))
                self.epoch = epoch
                self.t_epoch = self.t_batch = time.time()

            def _recalibrate(self):
                if self.calibration_images is not None and self.calibrated_epoch != self.epoch:
                    self.calibrated_epoch = self.epoch
                    self.report(ProgressEvent("train", "re-estimating BatchNorm statistics", phase=self.phase,
                                              epoch=self.epoch + 1, epochs=self.total_epochs))
                    recalibrate_batchnorm(self.model, self.calibration_images, self.config.batch_size)

            def on_train_batch_end(self, batch, logs=None):
                now = time.time()
                self.batch_times.append(now - self.t_batch)
                self.t_batch = now
                recent = self.batch_times[-20:] if len(self.batch_times) > 1 else self.batch_times
                per_batch = float(np.median(recent[1:] if len(recent) > 1 else recent))
                remaining = (self.n_batches - batch - 1) + (self.total_epochs - self.epoch - 1) * self.n_batches
                self.report(ProgressEvent(
                    "train", phase=self.phase, epoch=self.epoch + 1, epochs=self.total_epochs, batch=batch + 1,
                    batches=self.n_batches, logs={k: float(v) for k, v in (logs or {}).items()},
                    eta_s=remaining * per_batch * 1.15,
                    fraction=(self.epoch + (batch + 1) / self.n_batches) / self.total_epochs))
                if self.stop():
                    raise Cancelled()

            def on_epoch_end(self, epoch, logs=None):
                self._recalibrate()   # measure (and save) the network as it will be used: inference mode
                logs = {k: float(v) for k, v in (logs or {}).items()}
                if self.validation is not None:
                    logs.update(validation_logs(self.model, *self.validation, self.config.batch_size, self.positive))
                st = self.state
                for k, v in logs.items():
                    st["history"].setdefault(k, []).append(v)
                st["history"].setdefault("phase", []).append(self.phase)
                st["history"].setdefault("lr", []).append(float(np.asarray(self.model.optimizer.learning_rate)))
                st["epochs_done"] = epoch + 1
                st["train_seconds"] = st.get("train_seconds", 0.0) + (time.time() - self.t_epoch)
                # best_val_loss keeps its name in state.json; it holds the monitored figure, lower is better
                if self.config.monitor == "last":
                    monitor = -float(epoch)          # every epoch beats the one before
                elif self.config.monitor == "val_auc" and "val_auc" in logs:
                    monitor = -logs["val_auc"]
                else:
                    monitor = logs.get("val_loss", logs.get("loss"))
                if not self.track_best:
                    pass   # a low-resolution epoch is not a candidate for the model that will be used
                elif st["best_val_loss"] is None or monitor < st["best_val_loss"] - 1e-4:
                    st["best_val_loss"], st["best_epoch"], st["wait"] = monitor, epoch + 1, 0
                    self.run.save_weights(self.model, self.run.best_weights)
                else:
                    st["wait"] += 1
                self.run.save_weights(self.model, self.run.last_weights)
                self.run.save_optimizer(self.model.optimizer)
                self.run.save_state(st)
                self.report(ProgressEvent("train", f"epoch {epoch + 1}/{self.total_epochs} done", phase=self.phase,
                                          epoch=epoch + 1, epochs=self.total_epochs, batch=self.n_batches,
                                          batches=self.n_batches, logs=logs,
                                          fraction=(epoch + 1) / self.total_epochs))
                if (self.config.patience and self.has_val and self.track_best and self.phase != "head"
                        and st["wait"] >= self.config.patience):
                    self.early_stopped = True
                    self.model.stop_training = True

        return Impl(*args, **kwargs)


# ------------------------------------------------------------------------------------ evaluation


def predict_logits(model, images: np.ndarray, batch_size: int = 32, tta: bool = False) -> np.ndarray:
    from .augment import dihedral_views

    def run(x):
        outs = [np.asarray(model(x[i:i + batch_size].astype("float32"), training=False))
                for i in range(0, len(x), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, model.output_shape[-1]), np.float32)

    if tta:
        return np.mean([run(v) for v in dihedral_views(images)], axis=0)
    return run(images)


def _finalize(model, data: PreparedData, config: TrainConfig, state: dict, run: RunFolder, report) -> TrainResult:
    """Calibrate on validation subjects, evaluate on test subjects, write figures and the model folder."""
    ds, split = data.dataset, data.split
    class_names = list(ds.class_names)
    binary = len(class_names) == 2
    positive = _positive_index(class_names)
    subjects = [s.subject for s in ds.samples]

    temperature, threshold, band = 1.0, 0.5, (0.5, 0.5)
    calibration = {"temperature": 1.0, "fitted_on": "nothing (no validation part)"}
    decision_note = "default 0.5 (no validation part to choose on)"
    val_metrics = None
    if split.val:
        val_logits = predict_logits(model, data.images[split.val], config.batch_size, config.tta)
        y_val = data.labels[split.val]
        temperature = fit_temperature(val_logits, y_val)
        p_raw, p_cal = softmax(val_logits), softmax(val_logits, temperature)
        calibration = {"temperature": temperature, "fitted_on": f"validation part ({split.kind} split, "
                       f"{len(split.val)} images)", "ece_before": expected_calibration_error(y_val, p_raw),
                       "ece_after": expected_calibration_error(y_val, p_cal)}
        if binary and len(set(y_val.tolist())) > 1:
            threshold = choose_threshold(y_val, p_cal[:, positive], positive)
            band = choose_uncertainty_band(y_val, p_cal[:, positive], threshold, positive,
                                           config.uncertainty_target_accuracy)
            decision_note = (f"threshold maximises balanced accuracy on the validation part; the uncertainty band "
                             f"is the narrowest around it outside which validation accuracy is >= "
                             f"{config.uncertainty_target_accuracy:.2f}")
        val_metrics = classification_metrics(y_val, p_cal, class_names, [subjects[i] for i in split.val],
                                             positive, threshold if binary else None)

    test_metrics = None
    report_dir = run.path / "report"
    if split.test:
        test_logits = predict_logits(model, data.images[split.test], config.batch_size, config.tta)
        y_test = data.labels[split.test]
        p_test = softmax(test_logits, temperature)
        test_metrics = classification_metrics(y_test, p_test, class_names, [subjects[i] for i in split.test],
                                              positive, threshold if binary else None)
        test_metrics["ece_uncalibrated"] = expected_calibration_error(y_test, softmax(test_logits))
        save_figures(report_dir, y_test, p_test, class_names, positive, threshold if binary else None,
                     state["history"], title=f"({split.kind} test)")
        np.savez(run.path / "test_predictions.npz", logits=test_logits, labels=y_test,
                 subjects=np.array([subjects[i] for i in split.test]),
                 paths=np.array([str(ds.samples[i].path) for i in split.test]))

    split_desc = split.describe(ds)
    metrics = {"test": test_metrics, "validation": val_metrics,
               "measured_on": ("held-out test part of a " + ("LEAKY IMAGE-LEVEL" if split.leaks_subjects else
                                                               "subject-disjoint") + f" {split.kind} split")}
    if split.leaks_subjects:
        metrics["warning"] = LEAK_WARNING
    meta = {
        "name": config.name,
        "version": config.version,
        "intended_use": RUO,
        "class_names": class_names,
        "positive_class": class_names[positive] if positive is not None else None,
        "architecture": {"backbone": config.backbone, "input_size": [config.input_size] * 2,
                         "dropout": config.dropout, "head": "dense logits; p = softmax(logits / temperature)"},
        "preprocessing": data.preprocess.to_dict(),
        "temperature": temperature,
        "calibration": calibration,
        "decision": {"threshold": threshold, "uncertainty_band": list(band), "chosen_by": decision_note},
        "training": {
            "data": ds.summary(),
            "split": split_desc,
            "config": config.to_dict(),
            "epochs_trained": state["epochs_done"],
            "best_epoch": state["best_epoch"],
            "history": state["history"],
            "train_seconds": state.get("train_seconds"),
            "hardware": _hardware(),
            "software": _software(),
            "parent_model": config.parent_model,
        },
        "metrics": metrics,
    }
    if state.get("distribution"):   # trained under tf.distribute (training/distribute.py)
        meta["training"]["distribution"] = state["distribution"]
    atomic_write_text(run.path / "result.json", json.dumps(meta, indent=2, default=_jsonable))
    folder = None
    if config.output:
        report(ProgressEvent("export", f"writing the model folder {config.output}"))
        folder = save_model_folder(model, config.output, meta, overwrite=False)
        from .card import CNMC_SOURCE, write_model_card

        write_model_card(folder, data_source=CNMC_SOURCE if ds.layout == "cnmc" else None)
        if report_dir.is_dir():
            shutil.copytree(report_dir, Path(folder) / "figures", dirs_exist_ok=True)
    return TrainResult(run.path, False, Path(folder) if folder else None, state["history"], metrics, meta)


def _hardware() -> dict:
    import tensorflow as tf

    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


def _software() -> dict:
    import keras
    import tensorflow as tf

    return {"training_library": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "keras_backend": keras.backend.backend(), "python": platform.python_version()}


def export_run(run_dir: str | Path, output: str | Path, report=lambda e: None) -> TrainResult:
    """Write a model folder from a run's best checkpoint (e.g. a run that was stopped before its end)."""
    run = RunFolder(Path(run_dir))
    if not run.exists():
        raise FileNotFoundError(f"{run_dir} is not a training run folder (no state.json)")
    state = run.load_state()
    config = TrainConfig.from_dict(state["config"])
    config.output = str(output)
    data = prepare_data(config, report)
    model = _initial_model(TrainConfig.from_dict({**config.to_dict(), "init": "scratch"}),
                           len(data.dataset.class_names))
    weights = run.best_weights if run.best_weights.is_file() else run.last_weights
    if not weights.is_file():
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet")
    _load_weights(model, weights)
    return _finalize(model, data, config, state, run, report)
