"""Does "blast" cross from one lab to the other? Each lab's blasts against its own normal lymphoid cells, measured
with a head that learned blasts only from the OTHER lab (issue 15: the two sources with blasts are C-NMC and the
Aria-style fields).

Run by hand on a cell table and its cached features (``python -m leukviewer cells``; ``python -m training wbc
features --imagenet-b4 ... --views 1``):
    .venv/bin/python benchmarks/wbc_cross_lab.py --cells cells.npz --features feats.npy [--out result.json]

Three heads, the same linear head and weak-label filtering as ``training.wbc.evaluate`` (PBC's normal types and
BCCD's non-white objects always in training):
  * C-NMC -> Aria: C-NMC (every subject) in training, the Aria-style fields held out: field ROC-AUC of the mean
    P(blast) and of the share called blast, Benign vs B-ALL (``evaluate``'s aria_held_out);
  * Aria -> C-NMC: the Aria-style fields (weak labels) in training, C-NMC held out: per-cell ROC-AUC, blast vs
    normal, over all 42 subjects, and per-subject mean P(blast), ALL vs healthy subjects;
  * neither: PBC and BCCD only (no blast example at all): the same two figures, the floor a head reaches from
    "lymphoid-looking" alone;
and, with no head at all, each lab's cells ranked by their diameter in µm (the cell table's ``diameter_um``, whole
cells only): how much of each lab's "blast" is size. ROC-AUC needs no threshold, so no calibration is fitted here.
``--align-sources`` first moves each source's features by that source's own statistics (all its cells, no label).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.heads import WBC_CLASSES  # noqa: E402
from training.modelfolder import softmax  # noqa: E402
from training.wbc import CellTable, _auc, _logits  # noqa: E402


def aria_fields(table: CellTable, test: np.ndarray, p_blast: np.ndarray) -> dict:
    fields: dict[str, list[float]] = {}
    for i, p in zip(test, p_blast):
        fields.setdefault(str(table.field[i]), []).append(float(p))
    is_ball = np.array([not f.startswith("Benign") for f in fields])
    mean_p = np.array([np.mean(v) for v in fields.values()])
    return {"cells": int(len(test)), "fields": len(fields), "field_roc_auc_mean_p_blast": _auc(is_ball, mean_p),
            "cell_roc_auc_field_label": _auc(table.y[test] == WBC_CLASSES.index("blast"), p_blast)}


def cnmc_cells(table: CellTable, test: np.ndarray, p_blast: np.ndarray) -> dict:
    blast = table.y[test] == WBC_CLASSES.index("blast")
    subjects = table.subject[test]
    names = sorted(set(subjects))
    mean_p = np.array([p_blast[subjects == s].mean() for s in names])
    ill = np.array([not s.upper().startswith("H") for s in names])
    return {"cells": int(len(test)), "subjects": len(names), "cell_roc_auc": _auc(blast, p_blast),
            "subject_roc_auc_mean_p_blast": _auc(ill, mean_p)}


ALIGNMENTS = ("none", "center", "standardise")


def align_sources(table: CellTable, how: str) -> None:
    """Each source's features (every view) moved so that its own cells have mean 0 (``center``) and, with
    ``standardise``, spread 1 per feature: the statistics of all its cells, no label. A lab could give such
    statistics of its own unlabelled cells; if the lab's look were a shift of the features, this would take it out."""
    if how == "none":
        return
    for name in np.unique(table.source):
        member = table.source == name
        cells = table.features[:, member]
        cells = cells - cells.mean(axis=(0, 1))
        if how == "standardise":
            cells = cells / (cells.std(axis=(0, 1)) + 1e-3)
        table.features[:, member] = cells


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", required=True)
    ap.add_argument("--features", required=True)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--balance-size", type=int, default=0, metavar="BINS", help="weigh each head's blast and "
                    "lymphoid cells so that size within a source tells them apart no more (training.wbc."
                    "size_balanced_weights; 0: off)")
    ap.add_argument("--align-sources", choices=ALIGNMENTS, default="none", help="before any head: each source's "
                    "features shifted by its own mean (center) or also scaled by its own spread (standardise), "
                    "statistics of all its cells and no label: can a lab's look be taken out of the features?")
    ap.add_argument("--out", help="JSON to write")
    args = ap.parse_args()
    table = CellTable.load(args.cells, args.features)
    table.balance_size = args.balance_size
    align_sources(table, args.align_sources)
    source, trainable, blast = table.source, table.y >= 0, WBC_CLASSES.index("blast")
    aria, cnmc = np.where(source == "aria")[0], np.where(source == "cnmc")[0]
    out = {"cells": {s: int((source == s).sum()) for s in sorted(set(map(str, source)))}, "heads": {},
           "balance_size_bins": args.balance_size, "align_sources": args.align_sources}
    d = np.load(args.cells)
    diameter, whole = d["diameter_um"], ~d["partial"]
    out["diameter_um"] = {}
    for name in ("cnmc", "aria"):
        m = (source == name) & np.isin(table.y, [blast, WBC_CLASSES.index("lymphoid")]) & whole
        is_blast = table.y[m] == blast
        out["diameter_um"][name] = {
            "cells": int(m.sum()), "cell_roc_auc_blast_vs_normal": _auc(is_blast, diameter[m]),
            "median_blast": float(np.median(diameter[m][is_blast])),
            "median_normal": float(np.median(diameter[m][~is_blast]))}
    print("diameter", json.dumps(out["diameter_um"]), flush=True)

    def p_blast(train, test):
        return softmax(_logits(table, train, test, 0, args.epochs))[:, blast]

    for name, train_sources in (("cnmc_to_aria", ("cnmc", "pbc", "bccd")), ("aria_to_cnmc", ("aria", "pbc", "bccd")),
                                ("neither", ("pbc", "bccd"))):
        train = np.where(trainable & np.isin(source, train_sources))[0]
        row = {"trained_on": list(train_sources)}
        if "aria" not in train_sources:
            row["aria"] = aria_fields(table, aria, p_blast(train, aria))
        if "cnmc" not in train_sources:
            row["cnmc"] = cnmc_cells(table, cnmc, p_blast(train, cnmc))
        out["heads"][name] = row
        print(name, json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
