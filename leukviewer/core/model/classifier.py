"""The classifier as the app sees it: a verified model folder that turns cell crops into calibrated blast
probabilities, suggested labels and white-cell types. Everything about the model (classes, preprocessing,
temperature, threshold, the uncertainty band) is read from the folder.

Two kinds of folder: a legacy binary one (classes HEM, ALL) and a multi-class one whose classes are white-cell
types (``training.celltypes``) with ``positive_class: "blast"``. Either way the blast flag is the calibrated
P(blast) and ALL / UNCERTAIN / HEM come from the folder's threshold and band. A cell's type agrees with its
label: ALL is a blast; any other cell is its most probable non-blast type (``cell_type_for``), so the blasts of a
differential count are exactly the cells flagged ALL.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from training.celltypes import BLAST, CELL_TYPES, LEGACY_BINARY
from training.modelfolder import ModelFolderError, load_model_folder, read_meta

from .descriptor import ModelDescriptor, read_card
from ..labels import LABEL_BLAST, LABEL_NORMAL, LABEL_UNCERTAIN, LABELS, label_for  # noqa: F401 (re-exported)

BUNDLED_MODEL_NAME = "leukviewer-b3"


def assets_dir() -> Path:
    """The assets folder: beside the package in a checkout, inside the bundle when frozen (PyInstaller)."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "assets"
    return Path(__file__).resolve().parents[3] / "assets"


def bundled_model_dir() -> Path:
    """The model shipped with the app. Which model is used is decided by ``active.resolve_model``
    ($LEUKVIEWER_MODEL, the registry, ... come before this one)."""
    return assets_dir() / "models" / BUNDLED_MODEL_NAME


def blast_class_of(class_names, positive_class: str | None = None) -> str:
    """The model class whose probability is the blast flag; ``ModelFolderError`` saying why when there is none.

    A legacy folder is exactly HEM + ALL; a multi-class folder names white-cell types only, blast among them, and
    (when it says) blast as its positive class.
    """
    names = list(class_names)
    if sorted(names) == sorted(LEGACY_BINARY) and positive_class in (None, LABEL_BLAST):
        return LABEL_BLAST
    unknown = [c for c in names if c not in CELL_TYPES]
    if LABEL_BLAST in names or LABEL_NORMAL in names or unknown or BLAST not in names or len(names) < 2:
        raise ModelFolderError(
            f"not a blast classifier (its classes are {', '.join(names)}): leukviewer needs the classes HEM and "
            f"ALL, or white-cell types ({', '.join(CELL_TYPES)}) with blast among them")
    if positive_class not in (None, BLAST):
        raise ModelFolderError(f"not a blast classifier: its positive class is {positive_class!r}, not {BLAST!r}")
    return BLAST


def cell_type_for(type_probabilities: dict[str, float], label: str) -> str:
    """A cell's white-cell type, consistent with its label: ALL is a blast; any other label is the most probable
    type other than blast (ties: the first in model order)."""
    if label == LABEL_BLAST:
        return BLAST
    others = [(p, -i, t) for i, (t, p) in enumerate(type_probabilities.items()) if t != BLAST]
    return max(others)[2] if others else LEGACY_BINARY[LABEL_NORMAL]


class CellClassifier:
    """Classifies cell crops (RGB uint8, cell on black) in batches through a model folder."""

    def __init__(self, model_dir: str | Path | None = None, batch_size: int | None = None, backend: str = "auto",
                 warm_up: bool = False):
        from .active import resolve_model

        resolved = resolve_model(model_dir, registry=False)   # no folder given: $LEUKVIEWER_MODEL, else the bundled
        folder = resolved.folder
        if not (folder / "model.json").is_file() and not folder.is_dir():
            raise ModelFolderError(f"model folder not found: {folder}"
                                   + (" (the bundled model is not installed; pass a model folder with --model)"
                                      if resolved.bundled else ""))
        # The Keras network is loaded when first needed: not at all when LiteRT runs the cells (seconds saved at
        # start: no TensorFlow import), on demand for Grad-CAM; the TensorFlow engine loads it at once.
        self.model = load_model_folder(folder, network="lazy")
        names = self.model.class_names
        meta = self.model.meta
        try:
            blast_class = blast_class_of(names, meta.get("positive_class"))
        except ModelFolderError as e:
            raise ModelFolderError(f"{folder} is {e}") from None
        self.info = ModelDescriptor.from_meta(folder, meta, self.model.manifest_sha256, read_card(folder))
        self._blast_index = names.index(blast_class)
        from .engine import InferenceEngine

        self.engine = InferenceEngine(self.model, backend=backend, batch_size=batch_size)
        self.batch_size = self.engine.batch_size   # given, or the engine's own (LiteRT 8, TensorFlow 32)
        if warm_up:
            self.engine.warm_up()

    @property
    def integrity_warning(self) -> str | None:
        """Set when the folder has no manifest (its model.json is not verified): to be shown to the user."""
        return self.info.integrity_warning

    @property
    def device(self) -> str:
        """Where inference runs, in words (for the status bar and reports)."""
        return self.engine.device

    @property
    def input_size(self) -> int:
        return self.model.preprocessing.size

    @property
    def needs_scale(self) -> bool:
        """Whether this model keeps physical cell size (each image's micrometres per pixel is used)."""
        return self.model.preprocessing.needs_scale

    def prepare(self, crop: np.ndarray, um_per_px: float | None = None) -> np.ndarray:
        """A cell crop -> the network's input, exactly as in training (model folder preprocessing);
        ``um_per_px`` is the image's scale, used by models that keep physical cell size."""
        return self.model.preprocess(crop, um_per_px)

    def class_probabilities(self, prepared: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of every model class (N, n_classes), for prepared cells (N, size, size, 3)."""
        if len(prepared) == 0:
            return np.zeros((0, len(self.info.class_names)))
        return self.engine.probabilities(np.asarray(prepared))

    def blast_probabilities(self, prepared: np.ndarray) -> np.ndarray:
        """Calibrated P(blast) (P(ALL) of a legacy folder) for a batch of prepared cells (N, size, size, 3)."""
        return self.class_probabilities(prepared)[:, self._blast_index] if len(prepared) else np.zeros(0)

    def blast_probability_of(self, class_probabilities: np.ndarray) -> float:
        """P(blast) from one row of ``class_probabilities``."""
        return float(class_probabilities[self._blast_index])

    def type_probabilities(self, class_probabilities: np.ndarray) -> dict[str, float]:
        """One row of ``class_probabilities`` as {white-cell type: probability}, in model class order."""
        return {t: float(p) for t, p in zip(self.info.cell_types, class_probabilities)}

    def decided_class(self, p_blast: float) -> str:
        """The class the decision rests on: ALL at or above the threshold, else HEM (an UNCERTAIN cell too)."""
        return LABEL_BLAST if p_blast >= self.info.threshold else LABEL_NORMAL

    def label_for(self, p_blast: float) -> str:
        """ALL / HEM by the model's threshold; UNCERTAIN strictly inside its uncertainty band."""
        return label_for(p_blast, self.info.threshold, self.info.uncertainty_band)


def describe_model(model_dir: str | Path) -> dict:
    """model.json of a folder without loading TensorFlow (for About dialogs and reports)."""
    return read_meta(model_dir)
