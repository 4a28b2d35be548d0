"""The network a run starts from and its phases: head (backbone frozen), low resolution, full size; each with a
cosine learning-rate decay."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .modelfolder import load_model_folder


def initial_model(config: TrainConfig, n_classes: int):
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


def load_weights(model, path: Path) -> None:
    """Load network weights; the optimizer state travels separately (RunFolder.restore_optimizer)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(path)


def compile_model(model, lr: float, weight_decay: float):
    import keras

    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


def phases_of(config: TrainConfig) -> list[tuple[str, int, int, float, int]]:
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


def resized(images: np.ndarray | None, size: int) -> np.ndarray | None:
    """Cells shrunk to ``size`` px (area interpolation) for the low-resolution phase."""
    import cv2

    if images is None or images.shape[1] == size:
        return images
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images]) \
        if len(images) else np.zeros((0, size, size, 3), np.uint8)


def cosine_lr(base: float, epoch: int, first: int, end: int) -> float:
    span = max(1, end - first)
    return base * 0.5 * (1 + math.cos(math.pi * (epoch - first) / span))
