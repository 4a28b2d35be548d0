"""The images of a run, read and preprocessed once, split by subject, and served one epoch at a time."""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .augment import AugmentConfig, augment
from .config import ProgressEvent, TrainConfig
from .datasets import Dataset, DatasetError, load_dataset
from .preprocess import PreprocessConfig, preprocess_cell, read_rgb
from .splits import Split, cross_validation_splits, image_split, subject_split


@dataclass
class PreparedData:
    dataset: Dataset
    split: Split
    images: np.ndarray          # (N, size, size, 3) uint8, preprocessed
    labels: np.ndarray          # (N,) int
    preprocess: PreprocessConfig
    weights: np.ndarray | None = None   # (N,) float: each image's weight in the loss (``sample_weights``), or None


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
    weights = read_sample_weights(config.sample_weights, dataset, split.train) if config.sample_weights else None
    return PreparedData(dataset, split, images, labels, pre, weights)


def read_sample_weights(csv_path: str, dataset: Dataset, train: list[int]) -> np.ndarray:
    """Each image's weight from a CSV of ``path,weight`` rows (a header row allowed; paths relative to the data
    folder or absolute). Every training image needs a weight >= 0; images outside the training part may lack one
    (they get 1 and are never weighed)."""
    import csv
    from pathlib import Path

    root = Path(dataset.root)
    given: dict[Path, float] = {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            if not row or (n == 1 and row[0].strip().lower() in ("path", "file", "image")):
                continue
            try:
                weight = float(row[1])
            except (IndexError, ValueError):
                raise DatasetError(f"{csv_path}, line {n}: expected 'path,weight', got {','.join(row)!r}") from None
            if not (weight >= 0 and math.isfinite(weight)):
                raise DatasetError(f"{csv_path}, line {n}: a weight must be a finite number >= 0, got {row[1]!r}")
            path = Path(row[0].strip())
            given[(path if path.is_absolute() else root / path).resolve()] = weight
    weights = np.ones(len(dataset.samples))
    training = set(train)
    missing = []
    for i, sample in enumerate(dataset.samples):
        w = given.get(Path(sample.path).resolve())
        if w is not None:
            weights[i] = w
        elif i in training:
            missing.append(i)
    if missing:
        names = ", ".join(str(dataset.samples[i].path) for i in missing[:3])
        raise DatasetError(f"{csv_path} gives no weight for {len(missing)} training image(s), e.g. {names}")
    if not weights[train].sum() > 0:
        raise DatasetError(f"{csv_path} weighs every training image 0: nothing would be learnt")
    return weights


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


def make_sequence(data: PreparedData, config: TrainConfig, start_epoch: int, images: np.ndarray | None = None):
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
            if data.weights is not None:
                return x, data.labels[sel], data.weights[sel].astype("float32")
            return x, data.labels[sel]

        def on_epoch_end(self):
            self.epoch += 1

    return CellSequence()


def recalibration_images(data: PreparedData, config: TrainConfig) -> np.ndarray | None:
    """Un-augmented training cells, classes balanced, for re-estimating BatchNorm statistics."""
    n = config.bn_recalibration_batches * config.batch_size
    if n <= 0:
        return None
    rng = np.random.default_rng([config.seed, 99])
    order = _epoch_order(data.labels, data.split.train, True, rng)[:n]
    return data.images[order]
