"""Evaluating a model folder on a data set, and leave-subjects-out cross-validation of a recipe."""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from .augment import tta_view_count
from .datasets import POSITIVE_CLASS, DatasetError, load_dataset
from .loop import ProgressEvent, TrainConfig, train
from .metrics import classification_metrics, save_figures
from .modelfolder import atomic_write_text, jsonable, load_model_folder
from .preprocess import preprocess_cell, read_rgb

log = logging.getLogger(__name__)

# The figures a cross-validation summary reports as mean +- sd over folds.
CV_KEYS = ("weighted_f1", "balanced_accuracy", "sensitivity", "specificity", "roc_auc", "ece", "accuracy")

# The app's command that evaluates with each image's scale measured as the app measures it.
APP_COMMAND = "python -m leukviewer evaluate"


def prepared_images(model, samples, layout: str, um_per_px_of=None, report=lambda e: None) -> np.ndarray:
    """The network's inputs for ``samples`` of a data set, preprocessed by the model folder's own steps; a model that
    keeps physical cell size gets each image's scale from ``um_per_px_of`` (C-NMC crops: the C-NMC calibration)."""
    from .scale import CNMC_UM_PER_PX

    if layout == "cnmc":
        um_per_px_of = lambda rgb, path: CNMC_UM_PER_PX   # noqa: E731 (C-NMC crops: the C-NMC calibration)
    if model.preprocessing.needs_scale and um_per_px_of is None:
        raise DatasetError("this model keeps physical cell size, so each image's scale must be measured as the app "
                           f"measures it (metadata, red cells): evaluate with '{APP_COMMAND}' (the same options)")
    images = np.zeros((len(samples), *model.meta["input_size"], 3), np.uint8)
    for i, s in enumerate(samples):
        rgb = read_rgb(s.path)
        images[i] = preprocess_cell(rgb, model.preprocessing,
                                    um_per_px_of(rgb, s.path) if model.preprocessing.needs_scale else None)
        if i % 100 == 0:
            report(ProgressEvent("evaluate", f"preprocessing {i + 1}/{len(images)}", fraction=i / len(images)))
    return images


def evaluate_folder(model_dir: str | Path, data: str | Path, out_dir: str | Path | None = None,
                    tta: bool | int | None = None, batch_size: int = 32, on_progress=None,
                    um_per_px_of=None) -> dict:
    """Metrics of a model folder on every image of a labelled data set (preprocessing from the folder).

    ``um_per_px_of(rgb, path) -> float`` gives an image's micrometres per pixel. Only a model that keeps physical
    cell size needs it, and only on data other than C-NMC crops (those carry the C-NMC calibration); the app passes
    its own measure (``leukviewer.core.model.evaluation``, ``python -m leukviewer evaluate``), so that images are scaled
    as the app scales them. Without it such an evaluation stops with a DatasetError that says so.
    """
    report = on_progress or (lambda e: None)
    model = load_model_folder(model_dir)
    dataset = load_dataset(data)
    names = model.class_names
    unknown = set(dataset.class_names) - set(names)
    if unknown:
        raise DatasetError(f"the data has class(es) {', '.join(sorted(unknown))} that the model does not know "
                           f"(it knows {', '.join(names)})")
    images = prepared_images(model, dataset.samples, dataset.layout, um_per_px_of, report)
    y = np.array([names.index(s.label) for s in dataset.samples])
    proba = model.predict_proba(images, batch_size, tta=tta)
    positive = names.index(POSITIVE_CLASS) if POSITIVE_CLASS in names else None
    m = classification_metrics(y, proba, names, [s.subject for s in dataset.samples], positive,
                               model.threshold if len(names) == 2 else None)
    m["model"] = {"name": model.meta.get("name"), "version": model.meta.get("version"), "sha256": model.sha256}
    m["test_time_augmentation_views"] = model.tta_views if tta is None else tta_view_count(tta)
    m["data"] = dataset.summary()
    training_subjects = set(model.meta.get("training", {}).get("data", {}).get("per_subject", {}))
    overlap = sorted(training_subjects & set(dataset.subjects()))
    if overlap:
        m["warning"] = (f"{len(overlap)} subject(s) of this data were in the model's training data "
                        f"({', '.join(overlap[:10])}{'…' if len(overlap) > 10 else ''}): these figures are not an "
                        "evaluation on unseen patients")
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "metrics.json", json.dumps(m, indent=2, default=jsonable))
        save_figures(out, y, proba, names, positive, model.threshold if len(names) == 2 else None)
    return m


def cross_validate(config: TrainConfig, k: int = 3, on_progress=None, should_stop=None, resume: bool = True) -> dict:
    """Leave-subjects-out cross-validation: one training run per fold (each resumable), then mean +- sd.

    Every fold's run lives in ``<run_dir>/fold_<i>``; a finished fold is not trained again.
    """
    report = on_progress or (lambda e: None)
    base = config.resolved_run_dir()
    base.mkdir(parents=True, exist_ok=True)
    folds = []
    for i in range(k):
        fold_cfg = replace(config, split="cv", cv_folds=k, cv_fold=i, run_dir=str(base / f"fold_{i}"),
                           output=None, test_fraction=0.0)
        result_file = Path(fold_cfg.run_dir) / "result.json"
        if result_file.is_file():
            result = json.loads(result_file.read_text(encoding="utf-8"))
            log.info("fold %d already finished; reusing %s", i, result_file)
        else:
            def fold_progress(e, i=i):
                e.message = f"fold {i + 1}/{k}: {e.message}".rstrip(": ")
                report(e)
            r = train(fold_cfg, fold_progress, should_stop, resume=resume)
            if r.cancelled:
                return {"cancelled": True, "folds_done": i}
            result = r.meta
        test = result["metrics"]["test"]
        folds.append({"fold": i, "test_subjects": result["training"]["split"]["test"]["subjects"],
                      "val_subjects": result["training"]["split"]["val"]["subjects"],
                      "metrics": test, "temperature": result["temperature"],
                      "threshold": result["decision"]["threshold"], "epochs": result["training"]["epochs_trained"],
                      "train_seconds": result["training"]["train_seconds"]})
    summary = {"protocol": f"leave-subjects-out cross-validation, {k} folds (subject-disjoint train/val/test)",
               "config": config.to_dict(), "folds": folds, "mean": {}, "sd": {}}
    for key in CV_KEYS:
        values = [f["metrics"].get(key) for f in folds if f["metrics"].get(key) is not None]
        if values:
            summary["mean"][key] = float(np.mean(values))
            summary["sd"][key] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    atomic_write_text(base / "cv_summary.json", json.dumps(summary, indent=2, default=jsonable))
    return summary


def format_cv_table(summary: dict) -> str:
    """A plain-text table of per-fold figures and mean +- sd."""
    keys = [k for k in CV_KEYS if k in summary.get("mean", {})]
    lines = ["fold  test subjects                " + "  ".join(f"{k[:11]:>11}" for k in keys)]
    for f in summary["folds"]:
        subj = ",".join(f["test_subjects"] or [])[:28]
        lines.append(f"{f['fold'] + 1:>4}  {subj:<28} " + "  ".join(
            f"{f['metrics'].get(k, float('nan')) if f['metrics'].get(k) is not None else float('nan'):>11.3f}"
            for k in keys))
    lines.append("mean  " + " " * 29 + "  ".join(
        f"{summary['mean'][k]:>5.3f}±{summary['sd'][k]:<5.3f}" for k in keys))
    return "\n".join(lines)
