"""The user's choices for a retraining -> the ``training.TrainConfig`` that ``training.train`` runs.

The wizard's Settings page and ``leukviewer retrain`` fill the same :class:`RetrainChoices` and call
:func:`train_config`; neither builds a TrainConfig of its own. No Qt.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import training
from training.config import default_lr

if TYPE_CHECKING:
    from ..model.registry import RegisteredModel

BACKBONE_CHOICES = ("EfficientNetB3", "EfficientNetB2", "EfficientNetB1", "EfficientNetB0")
FREEZE_CHOICES = (("frozen_then_unfrozen", "Frozen first (head only), then unfrozen"),
                  ("unfrozen", "Unfrozen: train the whole network"),
                  ("frozen", "Frozen: train the classification head only"))
INIT_CHOICES = ("model", "imagenet", "scratch")
DEFAULT_NAME = "leukviewer-retrained"
DEFAULT_VERSION = "0.1.0"
# TrainConfig fields the choices set; any other field may come from the caller's defaults (patience, workers, lr…)
CHOSEN_FIELDS = ("data", "run_dir", "output", "epochs", "head_epochs", "init", "parent_model", "backbone",
                 "input_size", "batch_size", "augment", "split", "leaky_image_split", "name", "version",
                 "imagenet_weights", "skip_unreadable")


class PlanError(ValueError):
    """The choices cannot make a training (said in the user's words)."""


@dataclass
class RetrainChoices:
    """What the user chose: where to start from, the schedule, the split, the new model's name."""
    init: str = "model"                  # model (fine-tune parent_model) | imagenet | scratch
    backbone: str = "EfficientNetB3"
    input_size: int = 128
    batch_size: int = 32
    epochs: int = 8                      # both phases together (see schedule)
    freeze: str = "frozen_then_unfrozen"  # one of FREEZE_CHOICES
    augment: bool = True
    by_subject: bool = True              # each patient / case only in training, validation or test
    name: str = DEFAULT_NAME
    version: str = DEFAULT_VERSION
    parent_model: str | None = None      # the model folder to fine-tune (init "model")
    imagenet_weights: str | None = None  # the local ImageNet weight file (init "imagenet")
    skip_unreadable: bool = False
    extra: dict = field(default_factory=dict)   # other TrainConfig fields (see extra_settings)


def default_epochs(init: str) -> int:
    """Fine-tuning a trained model needs fewer epochs than learning from ImageNet or from scratch."""
    return 8 if init == "model" else 20


def schedule(epochs: int, freeze: str) -> tuple[int, int]:
    """(epochs with the backbone frozen, epochs with it unfrozen) for the chosen epochs and mode."""
    if freeze == "frozen":
        return epochs, 0
    if freeze == "frozen_then_unfrozen":
        head = epochs // 4 if epochs >= 2 else 0
        return head, epochs - head
    return 0, epochs


def default_patience(defaults: dict | None = None) -> int:
    """Epochs without a better validation loss before training stops early."""
    return int((defaults or {}).get("patience", training.TrainConfig.__dataclass_fields__["patience"].default))


def extra_settings(defaults: dict) -> dict:
    """The TrainConfig fields in ``defaults`` that the choices do not set (they pass through unchanged)."""
    return {k: v for k, v in defaults.items()
            if k in training.TrainConfig.__dataclass_fields__ and k not in CHOSEN_FIELDS}


def fine_tune_basis(meta: dict) -> tuple[str | None, int]:
    """(backbone, input size) of a model folder's model.json: fine-tuning keeps both."""
    backbone = meta.get("architecture", {}).get("backbone")
    return backbone, int(meta.get("preprocessing", {}).get("size", 128))


def parent_model_of(folder: str | None, active: "RegisteredModel | None") -> "RegisteredModel":
    """The model to fine-tune: the model folder given, else the active model. PlanError when it cannot be used."""
    from training.modelfolder import ModelFolderError

    from ..model.descriptor import ModelDescriptor
    from ..model.registry import RegisteredModel

    if folder:
        try:
            model = RegisteredModel(Path(folder).name, Path(folder), False, ModelDescriptor.from_folder(folder))
        except ModelFolderError as e:
            raise PlanError(f"the model to fine-tune cannot be read: {e}") from None
    elif active is None or not active.usable:
        reason = active.error if active is not None and active.error else "there is none"
        raise PlanError(f"the active model cannot be fine-tuned ({reason})")
    else:
        model = active
    if not model.is_blast_classifier:
        raise PlanError(f"{model.display_name} is not an ALL/HEM classifier, so it cannot be fine-tuned on "
                        "reviewed cells")
    return model


def train_config(choices: RetrainChoices, data: str, run_dir: str, output: str | None) -> "training.TrainConfig":
    """The TrainConfig these choices describe, reading ``data``, checkpointing in ``run_dir``, writing ``output``."""
    from training.augment import AugmentConfig

    if choices.init not in INIT_CHOICES:
        raise PlanError(f"unknown starting point {choices.init!r} (one of {', '.join(INIT_CHOICES)})")
    if choices.freeze not in dict(FREEZE_CHOICES):
        raise PlanError(f"unknown backbone mode {choices.freeze!r} (one of {', '.join(dict(FREEZE_CHOICES))})")
    if choices.init == "scratch" and choices.freeze != "unfrozen":
        raise PlanError("a random backbone cannot be kept frozen: from scratch the whole network learns "
                        "(choose unfrozen)")
    if choices.init == "model" and not choices.parent_model:
        raise PlanError("fine-tuning needs the model to start from")
    head_epochs, unfrozen = schedule(choices.epochs, choices.freeze)
    settings = {"lr": default_lr(choices.init), **extra_settings(choices.extra)}   # fine-tuning: a gentle rate
    return training.TrainConfig(
        data=str(data), run_dir=str(run_dir), output=str(output) if output else None,
        name=choices.name.strip() or DEFAULT_NAME, version=choices.version.strip() or DEFAULT_VERSION,
        backbone=choices.backbone, input_size=choices.input_size, init=choices.init,
        imagenet_weights=choices.imagenet_weights if choices.init == "imagenet" else None,
        parent_model=str(choices.parent_model) if choices.init == "model" else None,
        split="subject" if choices.by_subject else "image", leaky_image_split=not choices.by_subject,
        augment=(AugmentConfig() if choices.augment else AugmentConfig.off()).to_dict(),
        batch_size=choices.batch_size, head_epochs=head_epochs, epochs=unfrozen,
        unfreeze="all", skip_unreadable=choices.skip_unreadable, **settings)
