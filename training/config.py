"""What a training run is told and what it reports: ``TrainConfig``, ``ProgressEvent``, ``TrainResult``.

The CLI, the app's retraining wizard and a saved run (``state.json``) all describe a run with ``TrainConfig``.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .augment import AugmentConfig

RUO = "For Research Use Only. Not for use in diagnostic procedures."

#: Peak learning rate of the unfrozen phase from ImageNet weights or from scratch (``TrainConfig.lr``) ...
LR = 1e-3
#: ... and when fine-tuning a trained model (init "model"): ten times lower. At 1e-3 the whole network of a trained
#: B3 lost what it knew within five batches (training loss 0.93 -> 2.3, accuracy 0.59 -> 0.25); at 1e-4 it went on
#: learning (training/results/wbc-finetuned-b3-128px.json).
FINE_TUNE_LR = 1e-4


def default_lr(init: str) -> float:
    """The unfrozen phase's peak learning rate for a starting point (``TrainConfig.init``) when none is chosen."""
    return FINE_TUNE_LR if init == "model" else LR


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
    sample_weights: str | None = None    # CSV "path,weight" giving every training image its weight in the loss
                                         # (paths relative to data; e.g. ``wbc folders --balance-size``'s weights.csv)
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
    lr: float = LR                       # the CLI and the wizard choose default_lr(init)
    weight_decay: float = 1e-5
    patience: int = 4                    # early stopping on the monitored validation figure (0: off)
    monitor: str = "val_loss"            # val_loss (lower is better) | val_auc (higher; binary) | last (the last
                                         # full-size epoch is kept: a fixed schedule, validation only watched)
    max_steps_per_epoch: int | None = None
    bn_recalibration_batches: int = 20   # re-estimate BatchNorm statistics before each validation (0: off)
    seed: int = 0
    tta: bool | int = False              # views averaged (True = 8) to calibrate and evaluate; the model folder
                                         # records it (test_time_augmentation) and the app averages the same
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
