"""How much of the Aria-style fields' label (Benign vs B-ALL, one per field) the colour of the field alone tells.

Run by hand:  LEUKVIEWER_DATA=/root/leukviewer-data .venv/bin/python benchmarks/aria_colour_confound.py

Per field, nine numbers: the mean and standard deviation of R, G, B over the field and the mean R, G, B of its
brightest quarter (the background); a logistic regression, 5 stratified folds over fields (random: the set has no
patient IDs, so a patient's fields may fall on both sides). A high ROC-AUC means the label can be read from the
acquisition (stain batch, camera, white balance) rather than the cells: a model learning from these labels learns
that too, and a figure measured within this set flatters it (issue 15).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

REPO = Path(__file__).resolve().parents[1]


def colour_statistics(path: Path) -> np.ndarray:
    pixels = np.asarray(Image.open(path).convert("RGB"), np.float32).reshape(-1, 3)
    brightness = pixels.mean(1)
    background = pixels[brightness >= np.percentile(brightness, 75)]
    return np.concatenate([pixels.mean(0), pixels.std(0), background.mean(0)])


def cv_auc(x: np.ndarray, y: np.ndarray) -> float:
    x = (x - x.mean(0)) / x.std(0)
    p = cross_val_predict(LogisticRegression(max_iter=2000), x, y, method="predict_proba",
                          cv=StratifiedKFold(5, shuffle=True, random_state=0))[:, 1]
    return float(roc_auc_score(y, p))


def main() -> int:
    root = Path(os.environ.get("LEUKVIEWER_DATA", REPO.parent / "shared" / "data")).expanduser() / "aria"
    paths = sorted(root.rglob("*.jpg"))
    if not paths:
        raise SystemExit(f"no Aria-style fields under {root} (set LEUKVIEWER_DATA)")
    x = np.stack([colour_statistics(p) for p in paths])
    y = np.array(["Benign" not in p.parts[-2] for p in paths])
    print(f"{len(paths)} fields ({int(y.sum())} B-ALL, {int((~y).sum())} Benign)")
    print(f"field ROC-AUC B-ALL vs Benign, 9 colour statistics: {cv_auc(x, y):.3f}")
    print(f"field ROC-AUC B-ALL vs Benign, background colour only: {cv_auc(x[:, 6:], y):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
