"""The white-cell-type model: every source's cells -> cached backbone features -> a head -> a model folder.

``python -m leukviewer cells``, then ``python -m training wbc features|fit`` (see ``--help``). The three steps are
separate because each one is expensive in a different way: cutting cells reads ~12,000 images with the app's
localiser (minutes; so the app runs that step, handing its localiser to ``training.sources``), features run
the backbone once per view (tens of minutes on a CPU), and a head fit takes seconds, so the evaluation below fits
one head per fold and per held-out source.

What ``evaluate`` measures (each figure from heads that never saw the cells they are measured on):
- ``cnmc_cv``: C-NMC blast vs normal on subjects the backbone never saw (fold_0, and fold_1's validation subjects
  32 and H10), K subject-disjoint folds, each with about two healthy donors unseen; the other sources and the
  backbone's training subjects are always in training.
- ``aria_held_out``: the Aria-style fields left out of training: per field, the share of cells called blast,
  Benign vs B-ALL (ROC-AUC), and the share of cells left UNCERTAIN.
- ``pbc_held_out``: PBC left out: the share of its normal cells called blast.
- ``bccd_held_out``: BCCD's white cells (healthy donors, another lab, never used for training): the share called
  blast and the types given.
- ``pbc_types_cv``: 5-fold over PBC images: the confusion matrix over types.

After a supervised fine-tune of the backbone on ``wbc folders``' cells (C-NMC fold_1 but 32/H10, half of PBC),
``--split split.json`` measures both PBC figures on the other half only; the C-NMC CV and the held-out sources
already leave out every cell the fine-tune learned.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .heads import IMAGENET_B4_LAYERS, WBC_CLASSES, class_weights, fit_head, head_logits
from .metrics import (balanced_accuracy, choose_threshold, choose_uncertainty_band, confusion_matrix,
                      fit_temperature, roc_auc_score, weighted_f1)
from .modelfolder import softmax


def _auc(is_positive, score) -> float | None:
    """ROC-AUC, or None when the truth holds one class only (a fold of one kind of subject)."""
    is_positive = np.asarray(is_positive, bool)
    return roc_auc_score(is_positive, score) if 0 < is_positive.sum() < len(is_positive) else None

CNMC_BACKBONE_UNSEEN = ("32", "H10")  # fold_1 subjects kept out of the 1.1.0 backbone's training (validation)


@dataclass
class CellTable:
    """A cell table (``training.sources.build_cell_table``) with its cached features (views, N, D)."""
    features: np.ndarray
    source: np.ndarray
    group: np.ndarray
    field: np.ndarray
    cell_type: np.ndarray
    summary: dict
    #: "filtered": each head first checks the cells of a weakly labelled source (the Aria-style fields: one label per
    #: field) and learns only those it can vouch for (``weak_label_cells``); "all": every such cell keeps its field's
    #: label. Filtered is the default: with the Aria-style cells cut as cells, "all" had BCCD's white cells called
    #: blast 21% (filtered 3.3%) and UNCERTAIN 53% (12%); training/results/wbc-localiser-blue-grey-crowded.json
    weak_labels: str = "filtered"
    #: each cell's diameter in µm and whether the image border cut it (the cell table's ``diameter_um``, ``partial``)
    diameter_um: np.ndarray | None = None
    partial: np.ndarray | None = None
    #: 0: off; B: every head weighs its blast and normal lymphoid cells so that, within each source, cell size
    #: (B quantile bins of diameter) no longer tells them apart (``size_balanced_weights``)
    balance_size: int = 0
    #: how far: the weights are raised to this power (1: size tells nothing; 0.5: half way, in log weight)
    balance_size_strength: float = 1.0

    @classmethod
    def load(cls, cells: str | Path, features: str | Path) -> "CellTable":
        d = np.load(cells)
        f = np.load(features).astype(np.float32)
        if f.shape[1] != len(d["source"]):
            raise ValueError(f"{features} has {f.shape[1]} cells, {cells} has {len(d['source'])}")
        return cls(f, d["source"], d["group"], d["field"], d["cell_type"], json.loads(str(d["summary"])),
                   diameter_um=d["diameter_um"] if "diameter_um" in d else None,
                   partial=d["partial"] if "partial" in d else None)

    @property
    def y(self) -> np.ndarray:
        """Class index per cell; -1 for cells without a trainable type (BCCD white cells of unknown type)."""
        index = {c: i for i, c in enumerate(WBC_CLASSES)}
        return np.array([index.get(str(t), -1) for t in self.cell_type])

    @property
    def subject(self) -> np.ndarray:
        return np.array([g.split(":", 1)[1] if s == "cnmc" else "" for s, g in zip(self.source, self.group)])


#: sources whose label is one per field, given to every cell found in it
WEAK_SOURCES = ("aria",)


def weak_label_cells(table: CellTable, train_idx, hidden: int, epochs: int, seed: int = 0) -> np.ndarray:
    """``train_idx`` with the weakly labelled cells a head cannot vouch for left out (multiple-instance filtering).

    A B-ALL field is mostly blasts but may hold normal cells, red cells, platelets and fragments, and its label is
    given to every whole cell found in it; a Benign field's cells are hematogones or other normal cells. A head fitted
    on the other (strongly labelled) training cells only types the weak cells: a cell of a B-ALL field stays a blast
    only if that head types it blast or lymphoid AND its P(blast) is at least the median of its field's cells (the
    more blast-like half); a cell of a Benign field stays lymphoid if typed blast or lymphoid. The rest are left out
    of this head's training. Only ``train_idx`` is used, so a held-out source or test fold never steers the choice."""
    train_idx = np.asarray(train_idx)
    weak = np.isin(table.source[train_idx], WEAK_SOURCES)
    if not weak.any() or weak.all():
        return train_idx
    strong, idx = train_idx[~weak], train_idx[weak]
    proba = softmax(head_logits(_fit_cells(table, strong, hidden, epochs, seed), table.features[0, idx]))
    blast = WBC_CLASSES.index("blast")
    keep = np.isin(proba.argmax(1), [blast, WBC_CLASSES.index("lymphoid")])
    p_blast = proba[:, blast]
    labelled_blast = table.y[idx] == blast
    fields = table.field[idx]
    for f in np.unique(fields[labelled_blast]):
        cells = labelled_blast & (fields == f)
        keep[cells] &= p_blast[cells] >= np.median(p_blast[cells])
    return np.concatenate([strong, idx[keep]])


def _fit(table: CellTable, train_idx, hidden: int, epochs: int, seed: int = 0):
    if table.weak_labels == "filtered":
        train_idx = weak_label_cells(table, train_idx, hidden, epochs, seed)
    return _fit_cells(table, train_idx, hidden, epochs, seed)


def size_balanced_weights(table: CellTable, idx, bins: int) -> np.ndarray:
    """A weight per cell of ``idx`` (1 for most) under which cell size no longer tells a blast from a normal lymphoid
    cell within any one source (inverse-propensity weighting, issue 15).

    C-NMC's blasts are larger than its normal cells (diameter alone ranks them with ROC-AUC 0.85) and a head learns
    that first; another lab's B-ALL and Benign cells hardly differ in size (0.56), so a head that learned size fails
    there. Per source, the whole blast and lymphoid cells of ``idx`` are cut into ``bins`` quantile bins of diameter;
    in a bin where a share p are blasts, a blast weighs 0.5 / p and a lymphoid cell 0.5 / (1 - p) (clipped to
    0.1-10), so each bin keeps its total weight and holds as much blast as lymphoid. Other types, partial cells,
    cells without a measured size and bins of one class keep 1. The weights come from ``idx`` alone."""
    idx = np.asarray(idx)
    weights = np.ones(len(idx))
    if table.diameter_um is None or bins < 1:
        return weights
    y = table.y[idx]
    blast, lymphoid = WBC_CLASSES.index("blast"), WBC_CLASSES.index("lymphoid")
    diameter = np.asarray(table.diameter_um, float)[idx]
    whole = np.ones(len(idx), bool) if table.partial is None else ~np.asarray(table.partial, bool)[idx]
    candidates = np.isin(y, [blast, lymphoid]) & whole & np.isfinite(diameter) & (diameter > 0)
    for source in np.unique(table.source[idx][candidates]):
        member = np.flatnonzero(candidates & (table.source[idx] == source))
        edges = np.quantile(diameter[member], np.linspace(0, 1, bins + 1)[1:-1])
        which = np.searchsorted(edges, diameter[member], side="right")
        for b in np.unique(which):
            cells = member[which == b]
            p = float((y[cells] == blast).mean())
            if 0 < p < 1:
                weights[cells] = np.where(y[cells] == blast, 0.5 / p, 0.5 / (1 - p))
    return np.clip(weights, 0.1, 10.0)


def _fit_cells(table: CellTable, train_idx, hidden: int, epochs: int, seed: int = 0):
    views = table.features.shape[0]
    x = np.concatenate([table.features[v, train_idx] for v in range(views)])
    y = np.tile(table.y[train_idx], views)
    weights = None
    if table.balance_size:
        weights = class_weights(y, len(WBC_CLASSES)) * np.tile(
            size_balanced_weights(table, train_idx, table.balance_size) ** table.balance_size_strength, views)
    return fit_head(x, y, len(WBC_CLASSES), hidden=hidden, epochs=epochs, seed=seed, sample_weight=weights)


def _logits(table: CellTable, train_idx, test_idx, hidden: int, epochs: int) -> np.ndarray:
    return head_logits(_fit(table, train_idx, hidden, epochs), table.features[0, test_idx])


def cnmc_folds(table: CellTable, k: int = 5, seed: int = 0, backbone_saw_cnmc: bool = True) -> list[list[str]]:
    """Subject-disjoint test folds over the C-NMC subjects the backbone never saw, healthy donors spread evenly.

    ``backbone_saw_cnmc``: the backbone is the bundled 1.1.0 (trained on fold_1 but 32 and H10), so only fold_0 and
    those two are tested; False (an ImageNet backbone) tests every C-NMC subject of fold_0 + fold_1.
    """
    fold0 = np.array([str(f).startswith("fold_0") for f in table.field])
    subject = table.subject
    unseen = (table.source == "cnmc") & (fold0 | np.isin(subject, CNMC_BACKBONE_UNSEEN) | (not backbone_saw_cnmc))
    subjects = sorted(set(subject[unseen]))
    healthy = [s for s in subjects if s.upper().startswith("H")]
    ill = [s for s in subjects if s not in healthy]
    rng = np.random.default_rng(seed)
    rng.shuffle(healthy)
    rng.shuffle(ill)
    folds = [sorted(healthy[i::k] + ill[i::k]) for i in range(k)]
    return [f for f in folds if f]


def _binary_figures(is_blast: np.ndarray, p_blast: np.ndarray, threshold: float, band) -> dict:
    pred = (p_blast >= threshold).astype(int)
    y = is_blast.astype(int)
    return {"n": int(len(y)), "roc_auc": _auc(y == 1, p_blast), "weighted_f1": weighted_f1(y, pred, 2),
            "balanced_accuracy": balanced_accuracy(y, pred), "sensitivity": float(pred[y == 1].mean()),
            "specificity": float(1 - pred[y == 0].mean()),
            "uncertain_share": float(((p_blast > band[0]) & (p_blast < band[1])).mean())}


def evaluate(table: CellTable, hidden: int = 0, epochs: int = 30, k: int = 5, progress=print,
             backbone_saw_cnmc: bool = True, pbc_measured=None) -> dict:
    """Every figure of the module docstring, plus the temperature, threshold and band they choose.

    ``pbc_measured``: indices of the only PBC cells to measure on (a backbone fine-tuned on the other PBC cells:
    ``wbc folders``' ``split.json``); heads may still learn from every PBC cell but those measured."""
    y, source, trainable = table.y, table.source, table.y >= 0
    blast = WBC_CLASSES.index("blast")
    subject = table.subject
    out: dict = {"settings": {"hidden": hidden, "epochs": epochs, "k": k, "views": int(table.features.shape[0]),
                              "weak_labels": table.weak_labels, "balance_size_bins": table.balance_size,
                              "balance_size_strength": table.balance_size_strength,
                              "cnmc_subjects_tested": "fold_0 + 32 + H10 (unseen by the backbone)"
                              if backbone_saw_cnmc else "every subject of fold_0 + fold_1",
                              "pbc_measured_on": "every PBC cell" if pbc_measured is None
                              else f"{len(pbc_measured)} PBC cells the backbone never learned (split.json)"}}
    pbc_cells = np.where(source == "pbc")[0] if pbc_measured is None else np.asarray(sorted(pbc_measured), int)

    folds = cnmc_folds(table, k, backbone_saw_cnmc=backbone_saw_cnmc)
    oof_idx, oof_logits, per_fold = [], [], []
    for i, fold in enumerate(folds):
        test = np.where((source == "cnmc") & np.isin(subject, fold))[0]
        train = np.where(trainable & ~np.isin(subject, fold))[0]
        logits = _logits(table, train, test, hidden, epochs)
        oof_idx.append(test)
        oof_logits.append(logits)
        p = softmax(logits)[:, blast]
        per_fold.append({"subjects": fold, "n": int(len(test)), "roc_auc": _auc(y[test] == blast, p)})
        progress(f"C-NMC fold {i + 1}/{len(folds)}: ROC-AUC {per_fold[-1]['roc_auc']} on {len(test)} cells")
    test = np.concatenate(oof_idx)
    logits = np.concatenate(oof_logits)
    temperature = fit_temperature(logits, y[test])
    p_blast = softmax(logits, temperature)[:, blast]
    is_blast = y[test] == blast
    threshold = choose_threshold(is_blast.astype(int), p_blast)
    band = choose_uncertainty_band(is_blast.astype(int), p_blast, threshold)
    out["calibration"] = {"temperature": temperature, "threshold": threshold, "uncertainty_band": list(band)}
    fold_auc = [f["roc_auc"] for f in per_fold if f["roc_auc"] is not None] or [np.nan]
    out["cnmc_cv"] = {"folds": per_fold, "roc_auc_mean": float(np.mean(fold_auc)),
                      "roc_auc_sd": float(np.std(fold_auc)), "pooled": _binary_figures(is_blast, p_blast, threshold, band),
                      "per_subject_called_blast": {s: float((p_blast[subject[test] == s] >= threshold).mean())
                                                   for s in sorted(set(subject[test]))}}
    fold_f1 = []
    for test_f, logits_f in zip(oof_idx, oof_logits):
        pb = softmax(logits_f, temperature)[:, blast]
        fold_f1.append(_binary_figures(y[test_f] == blast, pb, threshold, band)["weighted_f1"])
    out["cnmc_cv"]["weighted_f1_mean"], out["cnmc_cv"]["weighted_f1_sd"] = float(np.mean(fold_f1)), float(np.std(fold_f1))
    progress(f"C-NMC CV: {json.dumps(out['cnmc_cv']['pooled'])}")

    present = set(map(str, source))

    def held_out(name):
        test = pbc_cells if name == "pbc" else np.where(source == name)[0]
        train = np.where(trainable & (source != name))[0]
        return test, softmax(_logits(table, train, test, hidden, epochs), temperature)

    if "aria" in present:
        out["aria_held_out"] = _aria_figures(table, *held_out("aria"), threshold, band)
        progress(f"Aria held out: {json.dumps(out['aria_held_out'])}")
    if "pbc" in present:
        out["pbc_held_out"] = _pbc_figures(table, *held_out("pbc"), threshold, band)
        progress(f"PBC held out: {json.dumps(out['pbc_held_out'])}")
    if "bccd" in present:
        out["bccd_held_out"] = _bccd_figures(table, *held_out("bccd"), threshold, band)
        progress(f"BCCD held out: {json.dumps(out['bccd_held_out'])}")
    if "pbc" in present:
        out["pbc_types_cv"] = _pbc_types(table, hidden, epochs, pbc_cells)
        progress(f"PBC types, 5-fold: accuracy {out['pbc_types_cv']['accuracy']:.3f}")
    return out


def _aria_figures(table, test, proba, threshold, band) -> dict:
    y, blast = table.y, WBC_CLASSES.index("blast")
    p = proba[:, blast]
    fields: dict[str, list[float]] = {}
    for i, pi in zip(test, p):
        fields.setdefault(str(table.field[i]), []).append(float(pi))
    field_is_ball = np.array([not f.startswith("Benign") for f in fields])
    share = np.array([np.mean(np.array(v) >= threshold) for v in fields.values()])
    return {
        "cells": int(len(test)), "fields": len(fields),
        "field_roc_auc_share_called_blast": _auc(field_is_ball, share),
        "field_roc_auc_mean_p_blast": _auc(field_is_ball, np.array([np.mean(v) for v in fields.values()])),
        "b_all_fields_flagged": float((share[field_is_ball] > 0).mean()),
        "benign_fields_flagged": float((share[~field_is_ball] > 0).mean()),
        "cells_uncertain": float(((p > band[0]) & (p < band[1])).mean()),
        "cells_called_blast_benign": float((p[y[test] != blast] >= threshold).mean()),
        "cells_called_blast_b_all": float((p[y[test] == blast] >= threshold).mean()),
        "types_given": {c: int((proba.argmax(1) == i).sum()) for i, c in enumerate(WBC_CLASSES)}}


def _pbc_figures(table, test, proba, threshold, band) -> dict:
    p = proba[:, WBC_CLASSES.index("blast")]
    types = table.cell_type[test]
    return {
        "cells": int(len(test)), "called_blast": float((p >= threshold).mean()),
        "cells_uncertain": float(((p > band[0]) & (p < band[1])).mean()),
        "called_blast_per_type": {str(c): float((p[types == c] >= threshold).mean()) for c in sorted(set(types))}}


def _bccd_figures(table, test, proba, threshold, band) -> dict:
    p = proba[:, WBC_CLASSES.index("blast")]
    wbc = table.cell_type[test] == "wbc"
    return {
        "white_cells": int(wbc.sum()), "white_cells_called_blast": float((p[wbc] >= threshold).mean()),
        "white_cells_uncertain": float(((p[wbc] > band[0]) & (p[wbc] < band[1])).mean()),
        "white_cell_types_given": {c: int((proba[wbc].argmax(1) == i).sum()) for i, c in enumerate(WBC_CLASSES)},
        "non_wbc_called_non_wbc": float((proba[~wbc].argmax(1) == WBC_CLASSES.index("non_wbc")).mean())}


def _pbc_types(table, hidden, epochs, pbc=None) -> dict:
    y, trainable = table.y, table.y >= 0
    pbc = np.where(table.source == "pbc")[0] if pbc is None else np.asarray(pbc, int)
    order = np.random.default_rng(1).permutation(pbc)
    pred = np.zeros(len(y), int)
    for i in range(5):
        test = order[i::5]
        train = np.setdiff1d(np.where(trainable)[0], test)
        pred[test] = _logits(table, train, test, hidden, epochs).argmax(1)
    cm = confusion_matrix(y[pbc], pred[pbc], len(WBC_CLASSES))
    return {"accuracy": float((y[pbc] == pred[pbc]).mean()), "classes": list(WBC_CLASSES),
            "confusion_matrix": cm.tolist()}


def fit_final(table: CellTable, hidden: int = 0, epochs: int = 30):
    """The head of the shipped model: every trainable cell of every source."""
    return _fit(table, np.where(table.y >= 0)[0], hidden, epochs)


def training_summary(table: CellTable, parent_meta: dict, settings: dict) -> dict:
    per_source: dict = {}
    for s, t in zip(table.source, table.cell_type):
        per_source.setdefault(str(s), {}).setdefault(str(t), 0)
        per_source[str(s)][str(t)] += 1
    return {"data": {"layout": "multi-source cell table (training.sources)", "per_source": per_source,
                     "cells": int(len(table.source)), "trainable_cells": int((table.y >= 0).sum()),
                     "sources": SOURCES},
            "head": settings,
            "backbone": {"from": f"{parent_meta.get('name')} {parent_meta.get('version')}",
                         "trained_on": parent_meta.get("training", {}).get("split", {}).get("train", {})
                         .get("subjects")},
            "preprocessing_note": table.summary.get("preprocessing")}


SOURCES = {
    "cnmc": "C-NMC 2019 (SBILab, IIIT-Delhi / AIIMS) training fold_0 + fold_1, CC BY 3.0",
    "pbc": "PBC (Acevedo et al. 2020, Hospital Clinic Barcelona), CC BY 4.0",
    "aria": "Blood cells cancer (ALL) (Aria et al., Taleqani Hospital, Tehran), public Kaggle release; weak labels",
    "bccd": "BCCD (Shenggan/BCCD_Dataset), MIT: red cells and false detections as non-WBC; white cells for "
            "evaluation only",
}


def finetune_split(cells: str | Path, pbc_share: float = 0.5, seed: int = 0) -> dict:
    """Which cells of a cell table a supervised fine-tune of the backbone may learn from, so that the head
    evaluation afterwards (``evaluate``) still measures cells whose labels the backbone never saw.

    Trained on: C-NMC fold_1 subjects but 32 and H10 (those the 1.1.0 backbone already learned) and ``pbc_share``
    of PBC's cells of each type (seeded). Kept out: C-NMC fold_0 + 32 + H10 (the subject CV's test subjects), the
    Aria-style fields and BCCD (held-out sources), and the rest of PBC, on which the types are to be measured.
    Returns {"train": [cell index...], "pbc_held_out": [...], "classes": {type: count}}."""
    d = np.load(cells)
    source, field, group, cell_type = d["source"], d["field"], d["group"], d["cell_type"]
    subject = np.array([g.split(":", 1)[1] if s == "cnmc" else "" for s, g in zip(source, group)])
    fold0 = np.array([str(f).startswith("fold_0") for f in field])
    typed = np.isin(cell_type, WBC_CLASSES)
    train = (source == "cnmc") & ~fold0 & ~np.isin(subject, CNMC_BACKBONE_UNSEEN) & typed
    rng = np.random.default_rng(seed)
    held = np.zeros(len(source), bool)
    for t in sorted(set(cell_type[source == "pbc"])):
        idx = np.flatnonzero((source == "pbc") & (cell_type == t))
        rng.shuffle(idx)
        n_train = int(round(pbc_share * len(idx)))
        train[idx[:n_train]] = typed[idx[:n_train]]
        held[idx[n_train:]] = True
    classes = {str(t): int(((cell_type == t) & train).sum()) for t in WBC_CLASSES if ((cell_type == t) & train).any()}
    return {"train": np.flatnonzero(train).tolist(), "pbc_held_out": np.flatnonzero(held).tolist(),
            "classes": classes, "pbc_share": pbc_share, "seed": seed}


def export_finetune_folders(cells: str | Path, out: str | Path, pbc_share: float = 0.5, seed: int = 0,
                            balance_size: int = 0, balance_size_strength: float = 1.0) -> dict:
    """Write the cells ``finetune_split`` allows into ``out/<type>/cell_<index>.png`` (one folder per class, the
    layout ``python -m training fit --data`` reads) and ``out/split.json`` (the split, to keep the evaluation
    honest). The cells are already at the model's physical scale and size.

    ``balance_size`` > 0 also writes ``out/weights.csv`` for ``python -m training fit --sample-weights``: the
    exported cells' ``size_balanced_weights`` (** ``balance_size_strength``), so that a fine-tuned network, like the
    heads of ``wbc fit --balance-size``, cannot tell a blast from a normal lymphoid cell of the same source by size."""
    import cv2

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    d = np.load(cells)
    if balance_size and "diameter_um" not in d:
        raise SystemExit(f"{cells} has no cell sizes to balance; rebuild it with {CELLS_COMMAND}")
    split = finetune_split(cells, pbc_share, seed)
    x, cell_type = d["x"], d["cell_type"]
    names = {}
    for i in split["train"]:
        folder = out / str(cell_type[i])
        folder.mkdir(parents=True, exist_ok=True)
        names[i] = f"{cell_type[i]}/cell_{i:05d}.png"
        if not cv2.imwrite(str(out / names[i]), cv2.cvtColor(x[i], cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {folder}")
    if balance_size:
        table = CellTable(np.zeros((1, len(d["source"]), 0), np.float32), d["source"], d["group"], d["field"],
                          d["cell_type"], {}, diameter_um=d["diameter_um"], partial=d["partial"])
        weights = size_balanced_weights(table, split["train"], balance_size) ** balance_size_strength
        (out / "weights.csv").write_text("path,weight\n" + "".join(
            f"{names[i]},{w:.6g}\n" for i, w in zip(split["train"], weights)), encoding="utf-8")
        split["balance_size"] = {"bins": balance_size, "strength": balance_size_strength,
                                 "weights": str(out / "weights.csv")}
    (out / "split.json").write_text(json.dumps(split), encoding="utf-8")
    return split


def add_parser(sub) -> None:
    p = sub.add_parser("wbc", help="the white-cell-type model: cut cells of every source, features, head, folder")
    wsub = p.add_subparsers(dest="wbc_command", required=True)
    c = wsub.add_parser("cells", help="cut, scale and preprocess the cells of every staged source (needs the app's "
                                      "localiser: run it as 'python -m leukviewer cells')")
    c.add_argument("--data", required=True, help="data root written by stage-data (cnmc/, pbc/, aria/, bccd/)")
    c.add_argument("--out", required=True, help="cell table to write (.npz)")
    c.add_argument("--pbc-per-class", type=int, default=500)
    c.add_argument("--aria-per-class", type=int, default=250, help="fields per Aria class")
    c.add_argument("--canvas-um", type=float, default=23.0, help="side of the model's canvas in µm")
    c.add_argument("--input-size", type=int, default=128)
    c.add_argument("--workers", type=int, default=2)
    f = wsub.add_parser("features", help="pooled backbone features of a cell table (original + augmented views)")
    f.add_argument("--cells", required=True)
    f.add_argument("--parent", help="model folder whose backbone is kept")
    f.add_argument("--imagenet-b4", metavar="WEIGHTS", help="instead of --parent: ImageNet EfficientNet-B4 weights "
                   "(../shared/tools/imagenet-b4); features of several blocks, pooled and concatenated")
    f.add_argument("--layers", default=",".join(IMAGENET_B4_LAYERS), help="B4 layers to pool (with --imagenet-b4)")
    f.add_argument("--views", type=int, default=2)
    f.add_argument("--out", required=True, help=".npy to write")
    t = wsub.add_parser("fit", help="evaluate the head (CV, held-out sources) and write the model folder")
    t.add_argument("--cells", required=True)
    t.add_argument("--features", required=True)
    t.add_argument("--parent", help="model folder whose backbone made the features (needed with --out)")
    t.add_argument("--out", help="model folder to write (omit to evaluate only)")
    t.add_argument("--evaluation", help="evaluation JSON to write (and read back by the card)")
    t.add_argument("--hidden", type=int, default=0, help="hidden units of the head (0: linear)")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--name", default="leukviewer-b3")
    t.add_argument("--version", default="2.0.0")
    t.add_argument("--folds", type=int, default=5, help="C-NMC subject folds")
    t.add_argument("--columns", help="feature columns to use, START:STOP (e.g. one layer of --imagenet-b4 features)")
    t.add_argument("--split", help="split.json of 'wbc folders': the backbone was fine-tuned on those cells, so PBC's "
                   "figures are measured on its held-out half only")
    t.add_argument("--all-cnmc-subjects", action="store_true", help="the features' backbone never saw C-NMC (an "
                   "ImageNet backbone): cross-validate over every fold_0 + fold_1 subject")
    t.add_argument("--weak-labels", choices=("all", "filtered"), default="filtered", help="the Aria-style fields' "
                   "cells (one label per field): 'filtered' (default): each head keeps only those a head on the other "
                   "cells types blast/lymphoid, and of a B-ALL field the more blast-like half; 'all': every one keeps "
                   "its field's label")
    t.add_argument("--balance-size", type=int, default=0, metavar="BINS", help="weigh the blast and normal "
                   "lymphoid cells of each head so that, within each source, cell size (BINS quantile bins of "
                   "diameter) no longer tells them apart (0: off)")
    t.add_argument("--balance-size-strength", type=float, default=1.0, metavar="A", help="with --balance-size: "
                   "the weights raised to A (1: full; 0.5: half way; trades C-NMC's own CV against other labs)")
    e = wsub.add_parser("folders", help="the cells a supervised fine-tune may learn from, one folder per type (for "
                                        "python -m training fit --data), the evaluation's held-out cells left out")
    e.add_argument("--cells", required=True)
    e.add_argument("--out", required=True, help="empty folder to write")
    e.add_argument("--pbc-share", type=float, default=0.5, help="share of PBC's cells of each type to train on")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--balance-size", type=int, default=0, metavar="BINS", help="also write weights.csv (for "
                   "'python -m training fit --sample-weights'): blast and normal lymphoid cells weighed so that, "
                   "within each source, size (BINS quantile bins of diameter) no longer tells them apart (0: off)")
    e.add_argument("--balance-size-strength", type=float, default=1.0, metavar="A",
                   help="with --balance-size: the weights raised to A")
    k = wsub.add_parser("card", help="(re)write MODEL_CARD.md of a white-cell-type model folder")
    k.add_argument("--model", required=True)


#: the app's command that builds the cell table with its own localiser
CELLS_COMMAND = "python -m leukviewer cells"


def run(args, cell_finder=None) -> int:
    """One ``wbc`` command. ``cell_finder`` (``training.sources.CellFinder``): the app's localiser, which the
    ``cells`` command needs and only the app can pass (``python -m leukviewer cells``)."""
    if args.wbc_command == "cells":
        from .preprocess import PreprocessConfig
        from .sources import build_cell_table, list_source_images

        if cell_finder is None:
            print(f"error: the cells of smear fields are found by the app's localiser: run '{CELLS_COMMAND}' "
                  "with the same options", file=sys.stderr)
            return 2
        items = list_source_images(args.data, pbc_per_class=args.pbc_per_class, aria_per_class=args.aria_per_class)
        summary = build_cell_table(items, PreprocessConfig.physical_scale(args.input_size, args.canvas_um), args.out,
                                   workers=args.workers, progress=lambda i, n: print(f"{i}/{n} images", flush=True),
                                   finder=cell_finder)
        print(json.dumps({k: v for k, v in summary.items() if k != "errors"}, indent=1))
        print(f"{len(summary['errors'])} unreadable image(s)")
    elif args.wbc_command == "features":
        from .heads import backbone_features, imagenet_b4_extractor
        from .modelfolder import load_model_folder

        if bool(args.parent) == bool(args.imagenet_b4):
            raise SystemExit("give either --parent or --imagenet-b4")
        cells = np.load(args.cells)["x"]
        network = load_model_folder(args.parent).network if args.parent else None
        if network is not None and network.input.shape[1] != cells.shape[1]:   # a student at a lower size
            from .distill import resample

            cells = resample(cells, int(network.input.shape[1]))
        extractor = (imagenet_b4_extractor(args.imagenet_b4, cells.shape[1], args.layers.split(","))
                     if args.imagenet_b4 else None)
        features = backbone_features(network, cells, views=args.views, extractor=extractor,
                                     progress=lambda v, i, n: print(f"view {v}: {i}/{n}", flush=True)
                                     if i % 2048 < 64 else None)
        np.save(args.out, features.astype(np.float16))
    elif args.wbc_command == "fit":
        from .heads import export_wbc_model
        from .modelfolder import read_meta
        from .wbc_card import write_card

        if args.out and (not args.parent or args.columns):
            raise SystemExit("--out joins the head to the backbone of --parent: give --parent, and no --columns")
        table = CellTable.load(args.cells, args.features)
        table.weak_labels = args.weak_labels
        table.balance_size, table.balance_size_strength = args.balance_size, args.balance_size_strength
        if args.balance_size and table.diameter_um is None:
            raise SystemExit(f"--balance-size needs each cell's diameter, and {args.cells} has none (a table from "
                             f"before sizes were recorded): build it again with '{CELLS_COMMAND}'")
        if args.columns:
            start, stop = (int(v) for v in args.columns.split(":"))
            table.features = table.features[:, :, start:stop]
        measured = json.loads(Path(args.split).read_text(encoding="utf-8"))["pbc_held_out"] if args.split else None
        report = evaluate(table, args.hidden, args.epochs, k=args.folds, progress=lambda m: print(m, flush=True),
                          backbone_saw_cnmc=not args.all_cnmc_subjects, pbc_measured=measured)
        if args.evaluation:
            Path(args.evaluation).write_text(json.dumps(report, indent=1), encoding="utf-8")
        if args.out:
            parent_meta = read_meta(args.parent)
            cal = report["calibration"]
            head = fit_final(table, args.hidden, args.epochs)
            folder = export_wbc_model(
                args.parent, head, args.out, name=args.name, version=args.version,
                temperature=cal["temperature"], threshold=cal["threshold"], band=tuple(cal["uncertainty_band"]),
                preprocessing={**table.summary["preprocessing"],
                               "size": int(parent_meta.get("input_size", [table.summary["preprocessing"]["size"]])[0])},
                training=training_summary(table, parent_meta, report["settings"]),
                metrics={"measured_on": "heads that never saw the cells measured (training.wbc.evaluate)",
                         **{k: v for k, v in report.items() if k != "settings"}})
            print(f"model folder: {folder}")
            print(f"model card: {write_card(folder)}")
    elif args.wbc_command == "folders":
        split = export_finetune_folders(args.cells, args.out, args.pbc_share, args.seed, args.balance_size,
                                        args.balance_size_strength)
        print(f"{len(split['train'])} cells in {args.out} ({', '.join(f'{k} {v}' for k, v in split['classes'].items())});"
              f" {len(split['pbc_held_out'])} PBC cells kept out for the types; split: {Path(args.out) / 'split.json'}")
        if args.balance_size:
            print(f"weights: {split['balance_size']['weights']} (python -m training fit --sample-weights)")
    elif args.wbc_command == "card":
        from .wbc_card import write_card

        print(f"model card: {write_card(args.model)}")
    return 0
