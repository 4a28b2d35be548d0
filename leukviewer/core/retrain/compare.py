"""The new model and the active one on exactly the new model's held-out test subjects. No Qt."""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from training.datasets import DatasetError

from ..model.registry import RegisteredModel
from .data import CLASS_FOLDERS
from .run import on_own_thread

# (metric key in training.evaluate's figures, what the wizard's table and the model card call it)
METRIC_ROWS = (("n", "cells"), ("weighted_f1", "weighted F1"), ("sensitivity", "sensitivity (ALL)"),
               ("specificity", "specificity (HEM)"), ("roc_auc", "ROC-AUC"), ("balanced_accuracy", "balanced accuracy"),
               ("accuracy", "accuracy"), ("ece", "calibration error (ECE)"))


def format_value(value, digits: int = 3) -> str:
    """A figure as the table and the card show it: 3 decimals, "–" when missing."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def heldout_folder(run_dir: Path, class_names: list[str], dest: Path) -> tuple[Path, list[str]] | None:
    """The new model's held-out test images (from its run) linked into one folder; None without a test part."""
    predictions = Path(run_dir) / "test_predictions.npz"
    if not predictions.is_file():
        return None
    with np.load(predictions) as saved:
        paths, labels, subjects = saved["paths"].tolist(), saved["labels"].tolist(), saved["subjects"].tolist()
    if not paths:
        return None
    if dest.exists():
        shutil.rmtree(dest)
    taken = set()
    for path, label in zip(paths, labels):
        name = class_names[int(label)]
        folder = CLASS_FOLDERS.get(name, name)
        target = dest / folder / Path(path).name
        if str(target) in taken:
            target = target.with_name(f"{len(taken)}__{target.name}")
        taken.add(str(target))
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(Path(path).resolve(), target)
        except OSError:
            shutil.copy2(path, target)
    return dest, sorted(set(str(s) for s in subjects))


def compare_models(candidate: Path, active: RegisteredModel | None, run_dir: Path, heldout: Path,
                   eval_dir: Path, on_progress: Callable | None = None) -> dict:
    """Both models on exactly the new model's held-out test images (``training.evaluate.evaluate_folder``).

    Returns {"subjects", "new", "active"} (figures per model), with "active_error" when the active model could not
    be evaluated, or {"error"} when the split left no held-out test subjects.
    """
    from ..model.evaluation import evaluate_folder
    from training.modelfolder import read_meta

    meta = read_meta(candidate)
    found = heldout_folder(run_dir, meta["class_names"], heldout)
    if found is None:
        return {"error": "The split left no held-out test subjects (too few subjects), so the models cannot be "
                         "compared on unseen patients."}
    folder, subjects = found
    out = {"subjects": subjects,
           "new": on_own_thread(evaluate_folder, candidate, folder, eval_dir / "new", on_progress=on_progress)}
    # These are the new model's own test subjects: the library's check against its whole data summary (which
    # lists every subject of the data set, test subjects included) does not apply.
    out["new"].pop("warning", None)
    if active is None or not active.usable:
        out["active_error"] = "no usable active model" + (f" ({active.error})" if active and active.error else "")
    else:
        try:
            out["active"] = on_own_thread(evaluate_folder, active.folder, folder, eval_dir / "active",
                                          on_progress=on_progress)
            refine_overlap_warning(out["active"], active.meta, subjects)
        except (DatasetError, ValueError) as e:
            out["active_error"] = str(e)
    return out


def refine_overlap_warning(metrics: dict, meta: dict, subjects: list[str]) -> None:
    """Warn only about held-out subjects the active model learned from (its training or validation part)."""
    split = meta.get("training", {}).get("split") or {}
    if not split.get("train"):
        return  # no split recorded: keep the library's warning based on the whole data summary
    seen = set()
    for part in ("train", "val"):
        seen.update((split.get(part) or {}).get("subjects") or [])
    overlap = sorted(seen & set(subjects))
    metrics.pop("warning", None)
    if overlap:
        metrics["warning"] = (f"{len(overlap)} of these subjects ({', '.join(overlap[:10])}"
                              f"{'…' if len(overlap) > 10 else ''}) were in its training or validation part, so its "
                              "figures here flatter it")


def comparison_notes(comparison: dict) -> list[str]:
    """What a reader of the comparison should know (evaluation failures, overlap warnings, too few cells)."""
    new, active = comparison.get("new"), comparison.get("active")
    notes = []
    if comparison.get("active_error"):
        notes.append(f"The active model could not be evaluated: {comparison['active_error']}")
    for who, metrics in (("New model", new), ("Active model", active)):
        if metrics and metrics.get("warning"):
            notes.append(f"{who}: {metrics['warning']}")
    if new and new["n"] < 50:
        notes.append(f"Only {new['n']} held-out cells: these figures are rough (each cell moves accuracy "
                     f"by {100 / max(1, new['n']):.1f} points).")
    return notes
