"""MODEL_CARD.md of a white-cell-type model folder (``training.wbc``), written from its model.json alone, so that
``python -m training wbc card --model DIR`` can rewrite it."""
from __future__ import annotations

from pathlib import Path

from .wbc import SOURCES


def _pct(x) -> str:
    return "n/a" if x is None else f"{100.0 * float(x):.1f}%"


def _f(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{float(x):.{digits}f}"


def write_card(folder: str | Path, extra_sections: dict[str, str] | None = None) -> Path:
    """MODEL_CARD.md of a white-cell-type model folder, from its model.json (metrics written by ``evaluate``)."""
    from .modelfolder import read_meta

    folder = Path(folder)
    meta = read_meta(folder)
    m = meta.get("metrics", {})
    cv, aria, pbc, bccd = (m.get(k, {}) for k in ("cnmc_cv", "aria_held_out", "pbc_held_out", "bccd_held_out"))
    types = m.get("pbc_types_cv", {})
    pooled = cv.get("pooled", {})
    dec = meta["decision"]
    data = meta.get("training", {}).get("data", {})
    lines = [
        f"# {meta['name']} {meta['version']} — white-cell types with a blast flag",
        "",
        "**For Research Use Only. Not for use in diagnostic procedures.**",
        "",
        "## What it is",
        f"- Classes: {', '.join(meta['class_names'])}. The blast flag is the calibrated P(blast): ALL at or above "
        f"the threshold {dec['threshold']:.3f}, UNCERTAIN strictly inside the band "
        f"[{dec['uncertainty_band'][0]:.3f}, {dec['uncertainty_band'][1]:.3f}], HEM (normal) below. `non_wbc` "
        "(red cells, platelets, debris, false detections) is not counted among the white cells.",
        f"- Network: {meta['architecture'].get('backbone')} backbone from "
        f"{meta['architecture'].get('backbone_from')}, kept frozen; a new head: {meta['architecture'].get('head')}.",
        f"- Temperature {meta['temperature']:.3f} ({meta['calibration']['fitted_on']}).",
        f"- Physical scale: every cell is resampled so that the {meta['preprocessing'].get('canvas_um')} µm canvas "
        f"fills {meta['preprocessing'].get('size')} px ({meta['preprocessing'].get('canvas_um', 0) / meta['preprocessing'].get('size', 1):.3f} "
        "µm per input pixel). Each image's µm per pixel comes from the user (`--um-per-px`), TIFF/OME metadata, "
        "its red cells (7.5 µm), or, for crops on black, the C-NMC calibration (0.0655 µm/px, `training/scale.py`).",
        f"- Weights SHA-256 `{meta['weights']['sha256']}`.",
        "",
        "## Data (provenance and licence)",
    ]
    for key, text in SOURCES.items():
        counts = data.get("per_source", {}).get(key, {})
        lines.append(f"- **{key}**: {text}. Cells: " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
    lines += [
        "- Cells of the field sources were found and cut by the app's own localiser (`python -m leukviewer cells`, "
        "rules in `training/sources.py`); the "
        "Aria-style fields carry one label per field, given to every whole white cell of the field (weak labels: a "
        "B-ALL field may hold a normal cell; no patient IDs, so its held-out figures are per field). BCCD white "
        "cells have no type here and are used only to measure false blast flags on another lab's healthy smears.",
        "",
        "## How it was measured (every head measured never saw the cells it is measured on)",
        "Commands (data staged by `../shared/tools/stage-data`):",
        "```",
        "python -m leukviewer cells --data ~/leukviewer-data --out cells.npz",
        "python -m training wbc features --cells cells.npz --parent <leukviewer-b3 1.1.0> --views 2 --out feats.npy",
        "python -m training wbc fit --cells cells.npz --features feats.npy --parent <leukviewer-b3 1.1.0> "
        "--evaluation evaluation.json --out <model folder>",
        "```",
        "",
        "| measure | figure |",
        "|---|---|",
        f"| C-NMC subject CV ({len(cv.get('folds', []))} folds, subjects the backbone never saw), ROC-AUC per fold "
        f"mean ± sd | {_f(cv.get('roc_auc_mean'))} ± {_f(cv.get('roc_auc_sd'))} |",
        f"| same, weighted F1 per fold mean ± sd | {_f(cv.get('weighted_f1_mean'))} ± {_f(cv.get('weighted_f1_sd'))} |",
        f"| same, pooled: ROC-AUC / balanced acc. / sensitivity / specificity / UNCERTAIN | {_f(pooled.get('roc_auc'))}"
        f" / {_f(pooled.get('balanced_accuracy'))} / {_f(pooled.get('sensitivity'))} / {_f(pooled.get('specificity'))}"
        f" / {_pct(pooled.get('uncertain_share'))} |",
        f"| Aria-style fields held out ({aria.get('fields')} fields): ROC-AUC Benign vs B-ALL of the share of cells "
        f"called blast / of the mean P(blast) | {_f(aria.get('field_roc_auc_share_called_blast'))} / "
        f"{_f(aria.get('field_roc_auc_mean_p_blast'))} |",
        f"| same: B-ALL fields with a blast flag / Benign fields with a blast flag / cells UNCERTAIN | "
        f"{_pct(aria.get('b_all_fields_flagged'))} / {_pct(aria.get('benign_fields_flagged'))} / "
        f"{_pct(aria.get('cells_uncertain'))} |",
        f"| PBC held out: its normal cells called blast / UNCERTAIN | {_pct(pbc.get('called_blast'))} / "
        f"{_pct(pbc.get('cells_uncertain'))} |",
        f"| BCCD white cells (another lab, healthy, never trained on): called blast / UNCERTAIN | "
        f"{_pct(bccd.get('white_cells_called_blast'))} / {_pct(bccd.get('white_cells_uncertain'))} |",
        f"| PBC types, 5-fold over images: accuracy | {_f(types.get('accuracy'))} |",
        "",
    ]
    if types.get("confusion_matrix"):
        names = types["classes"]
        lines += ["Confusion matrix over types (PBC 5-fold; rows true, columns predicted):", "",
                  "| true \\ predicted | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for name, row in zip(names, types["confusion_matrix"]):
            if sum(row):
                lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
        lines.append("")
    if pbc.get("called_blast_per_type"):
        lines += ["PBC held out, share called blast per type: " + ", ".join(
            f"{t} {_pct(v)}" for t, v in pbc["called_blast_per_type"].items()), ""]
    if cv.get("per_subject_called_blast"):
        lines += ["C-NMC CV, share of each unseen subject's cells called blast: " + ", ".join(
            f"{s} {_pct(v)}" for s, v in cv["per_subject_called_blast"].items()), ""]
    for title, text in (extra_sections or {}).items():
        lines += [f"## {title}", "", text.strip(), ""]
    lines += [
        "## Limitations",
        "- The backbone is the 1.1.0 B3, trained on C-NMC fold_1 (all subjects but 32 and H10) after PBC "
        "pre-training: figures on those subjects and on PBC are not independent of the backbone, so the C-NMC CV "
        "tests only fold_0 subjects and 32/H10, and the PBC held-out figure is optimistic.",
        "- Only the head was trained on the new sources; the backbone was not fine-tuned on them (CPU budget).",
        "- Aria-style labels are per field (weak); its stain differs by class, so within-set figures would flatter: "
        "only held-out figures are reported.",
        "- The scale of crops on black is the C-NMC calibration; crops from another lab on black need `--um-per-px`.",
        "- For Research Use Only. Not for use in diagnostic procedures.",
    ]
    path = folder / "MODEL_CARD.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
