"""MODEL_CARD.md: a model folder's description for a hematologist, written from its model.json."""
from __future__ import annotations

import json
from pathlib import Path

from .modelfolder import atomic_write_text, read_meta, tta_views

RUO = "For Research Use Only. Not for use in diagnostic procedures."

CNMC_SOURCE = ("C-NMC 2019 (ALL challenge of ISBI 2019), training fold_1: single-cell crops of B-lymphoblast (ALL) "
               "and normal B-lymphoid precursors (HEM), segmented and stain-normalised by SBILab, IIIT-Delhi / AIIMS; "
               "licence CC BY 3.0")

DEFAULT_LIMITATIONS = [
    "Trained on one lab's stain-normalised single-cell crops (C-NMC 2019); not validated on other labs' smears, "
    "stains, microscopes or cameras.",
    "Only 3 healthy subjects are in the available data (C-NMC fold_1): specificity for normal cells rests on very "
    "few people and is the least certain figure.",
    "Cells found in smear fields are cropped and masked to look like C-NMC crops; that domain shift is not measured.",
    "A model that keeps cell size (pad_canvas) reads size in the source image's pixels: smear images whose pixel "
    "size differs from C-NMC's (100x oil objective) show cells larger or smaller than it learned, and its output "
    "shifts; the app does not rescale for the microscope yet.",
    "The model separates B-lymphoblasts from normal B-lymphoid precursors; it was never shown other white cells "
    "(neutrophils, monocytes, ...), so its output on them has no meaning.",
]


def _fmt(v, digits=3):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _metrics_rows(m: dict) -> list[str]:
    keys = [("weighted_f1", "weighted F1"), ("balanced_accuracy", "balanced accuracy"),
            ("sensitivity", "sensitivity (ALL)"), ("specificity", "specificity (HEM)"), ("roc_auc", "ROC-AUC"),
            ("accuracy", "accuracy"), ("ece", "ECE (calibrated)"), ("n", "cells")]
    return [f"| {label} | {_fmt(m.get(k))} |" for k, label in keys if k in m]


# The settings that make a recipe (what is trained how), as opposed to where it runs or how the data are split.
RECIPE_KEYS = ("backbone", "input_size", "canvas_px", "dropout", "init", "parent_model", "train_batchnorm",
               "head_epochs", "lowres_epochs", "lowres_size", "lr_lowres", "epochs", "lr", "unfreeze", "oversample",
               "class_weights", "sample_weights", "augment", "tta")


def recipe_differences(a: dict | None, b: dict | None) -> list[str]:
    """The recipe settings in which two training configs differ, as ``key: a vs b`` (split settings ignored)."""
    if not a or not b:
        return []
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in RECIPE_KEYS if a.get(k) != b.get(k)]


def render_card(meta: dict, cv_summary: dict | None = None, paper_protocol: dict | None = None,
                data_source: str | None = None, limitations: list[str] | None = None,
                extra_sections: dict[str, str] | None = None, paper_config: dict | None = None) -> str:
    tr = meta.get("training", {})
    data = tr.get("data", {})
    arch = meta.get("architecture", {})
    dec = meta.get("decision", {})
    cal = meta.get("calibration", {})
    lines = [f"# Model card: {meta.get('name')} {meta.get('version')}", "", f"**{RUO}**", "",
             "## Intended use",
             "Research on flagging leukemic B-lymphoblasts (ALL) among white cells for a hematologist's review. "
             "Every suggestion must be reviewed; the model is not a diagnostic device.", "",
             "## Model",
             f"- Architecture: {arch.get('backbone')} backbone, global average pooling, dropout {arch.get('dropout')}, "
             f"dense logits head; input {arch.get('input_size')} RGB",
             f"- Classes: {', '.join(meta.get('class_names', []))} (positive class {meta.get('positive_class')})",
             f"- Weights: `{meta.get('weights', {}).get('file')}`, SHA-256 `{meta.get('weights', {}).get('sha256')}`",
             f"- Created {meta.get('created')}; initial weights: {tr.get('config', {}).get('init')}"
             + (f" (parent model {tr.get('parent_model')})" if tr.get("parent_model") else ""), "",
             "## Training data",
             f"- Source: {data_source or data.get('root')}",
             f"- {data.get('images')} images after dropping {data.get('duplicates_dropped', 0)} byte-identical "
             f"duplicates; per class: " + ", ".join(f"{k} {v}" for k, v in data.get("per_class", {}).items()),
             f"- Subjects: {data.get('subjects')}" + (" — " + ", ".join(
                 f"{s} ({'/'.join(f'{k} {v}' for k, v in c.items())})" for s, c in data.get("per_subject", {}).items())
                 if data.get("per_subject") else ""), ""]
    split = tr.get("split", {})
    if split:
        lines += ["## Split used for this model",
                  f"- Kind: {split.get('kind')}" + (" — LEAKS SUBJECTS" if split.get("leaks_subjects") else
                                                    " (each subject on one side only)")]
        for part in ("train", "val", "test"):
            p = split.get(part) or {}
            if p.get("images"):
                lines.append(f"- {part}: {p.get('images')} images, subjects {', '.join(p.get('subjects') or [])}")
        lines.append("")
    pre = meta.get("preprocessing", {})
    lines += ["## Preprocessing (read by inference from model.json)",
              f"- Steps: {', '.join(pre.get('steps', []))}; crop to the non-black region (threshold "
              f"{pre.get('black_threshold')}, margin {pre.get('crop_margin')} px), "
              + (f"centre on a fixed {pre.get('canvas_px')} px square of source pixels (cell size kept; larger "
                 f"cells shrink to fit)" if "pad_canvas" in pre.get("steps", []) else
                 "pad to a square (every cell fills the frame: size is not seen)") + ", contrast "
              f"{pre.get('contrast')} ({pre.get('low_percentile')}–{pre.get('high_percentile')} percentiles of the "
              f"cell's pixels), resize to {pre.get('size')} px; {pre.get('backbone_scaling')}", "",
              "## Training recipe"]
    cfg = tr.get("config", {})
    lowres = (f", then {cfg.get('epochs')} at {arch.get('input_size')}; first {cfg.get('lowres_epochs')} unfrozen "
              f"epochs at {cfg.get('lowres_size')} px (progressive resizing)" if cfg.get("lowres_epochs") else "")
    lines += [f"- Epochs trained {tr.get('epochs_trained')} (best epoch {tr.get('best_epoch')}, chosen by "
              f"{cfg.get('monitor', 'val_loss')} on the validation subjects); head epochs "
              f"{cfg.get('head_epochs')}, unfrozen epochs {cfg.get('epochs')} ({cfg.get('unfreeze')}){lowres}, batch "
              f"{cfg.get('batch_size')}, AdamW lr {cfg.get('lr')} cosine decay, early stopping patience "
              f"{cfg.get('patience')}",
              f"- Minority class oversampled: {cfg.get('oversample')}; augmentation: flips, 90° turns, rotations "
              f"±{cfg.get('augment', {}).get('max_rotation_deg')}°, scaling {cfg.get('augment', {}).get('scale_range')}, "
              f"brightness/contrast, H&E stain jitter",
              f"- Training time {_fmt((tr.get('train_seconds') or 0) / 3600, 2)} h on {tr.get('hardware', {})}; "
              f"software {tr.get('software', {})}", ""]
    lines += ["## Decision threshold, uncertainty band and calibration",
              f"- P(ALL) = softmax(logits / T) with temperature T = {_fmt(meta.get('temperature'))}, fitted on "
              f"{cal.get('fitted_on')}; ECE on that part {_fmt(cal.get('ece_before'))} before, "
              f"{_fmt(cal.get('ece_after'))} after",
              f"- A cell is ALL when P(ALL) ≥ {_fmt(dec.get('threshold'))}; UNCERTAIN when P(ALL) is inside "
              f"{[round(b, 3) for b in dec.get('uncertainty_band', [])]}; chosen by: {dec.get('chosen_by')}"]
    views = tta_views(meta)
    lines += [f"- Test-time augmentation: the logits of {views} flips/rotations of each cell are averaged (the app does "
              f"the same; the temperature and threshold were fitted on those averages); it costs {views}x the "
              "network's time" if views > 1 else "- Test-time augmentation: none (one view of each cell)", ""]
    metrics = meta.get("metrics", {})
    test = metrics.get("test")
    lines += ["## Performance", ""]
    if cv_summary:
        lines += [f"### {cv_summary.get('protocol')}", "",
                  "| fold | test subjects | weighted F1 | balanced acc. | sensitivity | specificity | ROC-AUC | ECE |",
                  "|---|---|---|---|---|---|---|---|"]
        for f in cv_summary.get("folds", []):
            m = f["metrics"]
            lines.append(f"| {f['fold'] + 1} | {', '.join(f['test_subjects'] or [])} | {_fmt(m.get('weighted_f1'))} | "
                         f"{_fmt(m.get('balanced_accuracy'))} | {_fmt(m.get('sensitivity'))} | "
                         f"{_fmt(m.get('specificity'))} | {_fmt(m.get('roc_auc'))} | {_fmt(m.get('ece'))} |")
        mean, sd = cv_summary.get("mean", {}), cv_summary.get("sd", {})
        lines.append("| mean ± sd | | " + " | ".join(
            f"{_fmt(mean.get(k))} ± {_fmt(sd.get(k))}" for k in
            ("weighted_f1", "balanced_accuracy", "sensitivity", "specificity", "roc_auc", "ece")) + " |")
        lines.append("")
    if test:
        lines += [f"### This model on its held-out test part ({metrics.get('measured_on')})", "",
                  "| metric | value |", "|---|---|", *_metrics_rows(test), ""]
        if test.get("per_subject_accuracy"):
            lines.append("Per test subject accuracy: " + ", ".join(
                f"{s} {_fmt(a)} (n={test.get('per_subject_n', {}).get(s)})"
                for s, a in test["per_subject_accuracy"].items()))
            lines.append("")
    val = metrics.get("validation")
    if val and not test:
        lines += ["### On its validation subjects (they also chose the threshold and the temperature: optimistic)", "",
                  "| metric | value |", "|---|---|", *_metrics_rows(val), ""]
        if val.get("per_subject_accuracy"):
            lines.append("Per validation subject accuracy: " + ", ".join(
                f"{s} {_fmt(a)}" for s, a in val["per_subject_accuracy"].items()))
            lines.append("")
    if metrics.get("warning"):
        lines += [f"**{metrics['warning']}**", ""]
    if paper_protocol:
        lines += ["### For contrast: the paper's image-level split (leaks patients)", "",
                  "| metric | value |", "|---|---|", *_metrics_rows(paper_protocol), "",
                  "An image-level split puts cells of the same patient in training and test; the difference to the "
                  "subject-disjoint figures above is how much it flatters the model.", ""]
        differences = recipe_differences(paper_config, (cv_summary or {}).get("config"))
        if differences:
            lines += ["**Not like for like:** this image-level run used another recipe than the cross-validation "
                      "above (image-level run vs cross-validation): " + "; ".join(differences) + ". Part of the "
                      "difference may come from the recipe, not only from the split.", ""]
    for title, body in (extra_sections or {}).items():
        lines += [f"## {title}", body, ""]
    lines += ["## Limitations", *[f"- {x}" for x in (limitations or DEFAULT_LIMITATIONS)], "", f"*{RUO}*", ""]
    return "\n".join(lines)


def write_model_card(folder: str | Path, **kwargs) -> Path:
    """Write MODEL_CARD.md beside model.json (the card is documentation: it is not part of the weight hash)."""
    folder = Path(folder)
    meta = read_meta(folder)
    path = folder / "MODEL_CARD.md"
    atomic_write_text(path, render_card(meta, **kwargs))
    return path


def load_json(path: str | Path | None) -> dict | None:
    return json.loads(Path(path).read_text(encoding="utf-8")) if path else None
