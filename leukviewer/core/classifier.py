"""The classifier as the app sees it: a verified model folder that turns cell crops into calibrated blast
probabilities and suggested labels. Everything about the model (preprocessing, temperature, threshold, the
uncertainty band) is read from the folder."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.modelfolder import ModelFolderError, load_model_folder, read_meta

LABEL_BLAST = "ALL"
LABEL_NORMAL = "HEM"
LABEL_UNCERTAIN = "UNCERTAIN"
LABELS = (LABEL_BLAST, LABEL_UNCERTAIN, LABEL_NORMAL)

BUNDLED_MODEL_NAME = "leukviewer-b3"


def assets_dir() -> Path:
    """The assets folder: beside the package in a checkout, inside the bundle when frozen (PyInstaller)."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "assets"
    return Path(__file__).resolve().parents[2] / "assets"


def bundled_model_dir() -> Path:
    """The model shipped with the app (LEUKVIEWER_MODEL overrides it)."""
    env = os.environ.get("LEUKVIEWER_MODEL")
    return Path(env) if env else assets_dir() / "models" / BUNDLED_MODEL_NAME


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    sha256: str
    threshold: float
    uncertainty_band: tuple[float, float]
    class_names: tuple[str, ...]

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]


class CellClassifier:
    """Classifies cell crops (RGB uint8, cell on black) in batches through a model folder."""

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 32, backend: str = "auto",
                 warm_up: bool = False):
        folder = Path(model_dir) if model_dir else bundled_model_dir()
        if not (folder / "model.json").is_file() and not folder.is_dir():
            raise ModelFolderError(f"model folder not found: {folder}"
                                   + ("" if model_dir else " (the bundled model is not installed; pass a model "
                                                           "folder with --model)"))
        self.model = load_model_folder(folder)
        names = self.model.class_names
        if LABEL_BLAST not in names or LABEL_NORMAL not in names or len(names) != 2:
            raise ModelFolderError(f"{folder} is not a blast/normal classifier (its classes are {', '.join(names)})")
        self.batch_size = batch_size
        meta = self.model.meta
        self.info = ModelInfo(meta.get("name", folder.name), str(meta.get("version", "")), self.model.sha256,
                              self.model.threshold, self.model.uncertainty_band, tuple(names))
        self._blast_index = names.index(LABEL_BLAST)
        from .engine import InferenceEngine

        self.engine = InferenceEngine(self.model, backend=backend, batch_size=batch_size)
        if warm_up:
            self.engine.warm_up()

    @property
    def device(self) -> str:
        """Where inference runs, in words (for the status bar and reports)."""
        return self.engine.device

    @property
    def input_size(self) -> int:
        return self.model.preprocessing.size

    def prepare(self, crop: np.ndarray) -> np.ndarray:
        """A cell crop -> the network's input, exactly as in training (model folder preprocessing)."""
        return self.model.preprocess(crop)

    def blast_probabilities(self, prepared: np.ndarray) -> np.ndarray:
        """Calibrated P(ALL) for a batch of prepared cells (N, size, size, 3)."""
        if len(prepared) == 0:
            return np.zeros(0)
        return self.engine.probabilities(np.asarray(prepared))[:, self._blast_index]

    def decided_class(self, p_blast: float) -> str:
        """The class the decision rests on: ALL at or above the threshold, else HEM (an UNCERTAIN cell too)."""
        return LABEL_BLAST if p_blast >= self.info.threshold else LABEL_NORMAL

    def label_for(self, p_blast: float) -> str:
        """ALL / HEM by the model's threshold; UNCERTAIN strictly inside its uncertainty band."""
        lo, hi = self.info.uncertainty_band
        if lo < p_blast < hi:
            return LABEL_UNCERTAIN
        return LABEL_BLAST if p_blast >= self.info.threshold else LABEL_NORMAL


def describe_model(model_dir: str | Path) -> dict:
    """model.json of a folder without loading TensorFlow (for About dialogs and reports)."""
    return read_meta(model_dir)
