"""Field-level baselines on the Aria-style ALL smear fields: does anything simple tell B-ALL fields from Benign ones?

    .venv/bin/leukviewer batch $LEUKVIEWER_DATA/aria --recursive --out /tmp/aria-out [--model DIR]
    .venv/bin/python benchmarks/aria_field_baselines.py /tmp/aria-out [--json OUT.json]

Reads the batch output (``images.csv``, ``cells.csv``; the class is the first folder of each image's name:
Benign = hematogones, Early/Pre/Pro = B-ALL) and prints, over the fields with at least one whole white cell (cells
cut by the border left out, as every count does), the ROC-AUC of B-ALL vs Benign fields for:
  * the field's median white-cell diameter (equivalent circle) in µm, at the scale the field was analysed with;
  * the same in pixels (no scale);
  * the field's mean P(blast) and the share of its cells the model flags ALL;
  * the field's µm per pixel itself (one lab's microscope: it should tell nothing);
and, per class, the median cell diameter and µm per pixel with their scale sources. The speed issue's figures are
not here; this is the white-cell model issue's "what did not help" for the field bar (ROC-AUC >= 0.90).
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.metrics import roc_auc_score  # noqa: E402

CLASSES = ("Benign", "Early", "Pre", "Pro")


def field_rows(out: Path) -> list[dict]:
    with open(out / "images.csv", newline="", encoding="utf-8") as f:
        images = {r["image"]: r for r in csv.DictReader(f)}
    cells = collections.defaultdict(list)
    with open(out / "cells.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["partial"].strip().lower() != "true":
                cells[r["image"]].append(r)
    rows = []
    for name, image in images.items():
        cls = name.split("/")[0]
        whole = cells.get(name, [])
        if cls not in CLASSES or not whole or not image["um_per_px"]:
            continue
        um = float(image["um_per_px"])
        diameter_px = 2.0 * np.sqrt(np.array([float(c["area"]) for c in whole]) / np.pi)
        p = np.array([float(c["p_blast"]) for c in whole])
        rows.append({"class": cls, "b_all": cls != "Benign", "cells": len(whole), "um_per_px": um,
                     "scale_source": image["scale_source"], "diameter_um": float(np.median(diameter_px) * um),
                     "diameter_px": float(np.median(diameter_px)), "mean_p_blast": float(p.mean()),
                     "share_flagged": float(np.mean([c["label"] == "ALL" for c in whole]))})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("batch_out", type=Path, help="output folder of leukviewer batch over the Aria fields")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    rows = field_rows(args.batch_out)
    if not rows:
        raise SystemExit(f"no Aria fields with whole white cells in {args.batch_out}")
    is_b_all = np.array([r["b_all"] for r in rows])
    result = {"fields": len(rows), "b_all_fields": int(is_b_all.sum()), "benign_fields": int((~is_b_all).sum()),
              "field_roc_auc_b_all_vs_benign": {}, "per_class": {}}
    print(f"{len(rows)} fields with whole white cells ({is_b_all.sum()} B-ALL, {(~is_b_all).sum()} Benign)")
    for key, what in (("diameter_um", "median white-cell diameter, µm"), ("diameter_px", "median white-cell "
                      "diameter, pixels"), ("mean_p_blast", "mean P(blast)"), ("share_flagged", "share flagged ALL"),
                      ("um_per_px", "µm per pixel of the field")):
        auc = roc_auc_score(is_b_all, np.array([r[key] for r in rows]))
        result["field_roc_auc_b_all_vs_benign"][key] = round(float(auc), 3)
        print(f"  {what:<40} field ROC-AUC {auc:.3f}")
    for cls in CLASSES:
        part = [r for r in rows if r["class"] == cls]
        if not part:
            continue
        sources = collections.Counter(r["scale_source"] for r in part)
        result["per_class"][cls] = {"fields": len(part),
                                    "median_diameter_um": round(float(np.median([r["diameter_um"] for r in part])), 2),
                                    "median_um_per_px": round(float(np.median([r["um_per_px"] for r in part])), 3),
                                    "scale_sources": dict(sources)}
        print(f"  {cls:<7} {len(part):5d} fields: median cell {result['per_class'][cls]['median_diameter_um']:.2f} µm, "
              f"{result['per_class'][cls]['median_um_per_px']:.3f} µm/px, scale from {dict(sources)}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
