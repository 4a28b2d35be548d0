"""A model folder's metrics on a labelled data set, each image scaled as the app scales it.

``training.evaluate.evaluate_folder`` with the app's scale measure (``scale.measured_um_per_px``) passed in: the
training library never imports the app, so the app hands it what only the app knows. Used by the retraining
wizard's comparison and by ``python -m leukviewer evaluate``.
"""
from __future__ import annotations

from pathlib import Path

from ..analysis.scale import measured_um_per_px


def evaluate_folder(model_dir: str | Path, data: str | Path, out_dir: str | Path | None = None,
                    tta: bool | int | None = None, batch_size: int = 32, on_progress=None) -> dict:
    """Metrics of ``model_dir`` on every image of ``data`` (see ``training.evaluate.evaluate_folder``)."""
    from training.evaluate import evaluate_folder as evaluate

    return evaluate(model_dir, data, out_dir, tta=tta, batch_size=batch_size, on_progress=on_progress,
                    um_per_px_of=measured_um_per_px)
