"""Metrics, calibration and the decision threshold (numpy/scikit-learn only, no TensorFlow)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn import metrics as skm

from .modelfolder import softmax


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-class confidence with equal-width bins."""
    y_true = np.asarray(y_true)
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """Temperature T minimising the negative log-likelihood of softmax(logits / T) (Guo et al. 2017)."""
    y_true = np.asarray(y_true, dtype=int)
    if len(y_true) == 0:
        return 1.0

    def nll(log_t):
        p = softmax(logits, np.exp(log_t))
        return -np.mean(np.log(np.clip(p[np.arange(len(y_true)), y_true], 1e-12, None)))

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def choose_threshold(y_true: np.ndarray, p_positive: np.ndarray, positive: int = 1) -> float:
    """The threshold on p(positive) that maximises balanced accuracy on held-out data.

    Balanced accuracy (rather than weighted F1) keeps the rarer healthy class from being sacrificed; ties go
    to the threshold closest to 0.5.
    """
    y = (np.asarray(y_true) == positive).astype(int)
    if y.min() == y.max():
        return 0.5
    candidates = np.unique(np.concatenate([[0.5], np.clip(p_positive, 0.01, 0.99)]))
    best, best_score = 0.5, -1.0
    for t in candidates:
        score = skm.balanced_accuracy_score(y, (p_positive >= t).astype(int))
        if score > best_score + 1e-9 or (abs(score - best_score) <= 1e-9 and abs(t - 0.5) < abs(best - 0.5)):
            best, best_score = float(t), score
    return best


def choose_uncertainty_band(y_true: np.ndarray, p_positive: np.ndarray, threshold: float, positive: int = 1,
                            target_accuracy: float = 0.95, max_half_width: float = 0.25) -> tuple[float, float]:
    """Smallest band [t-w, t+w] outside of which held-out accuracy reaches ``target_accuracy``.

    Cells inside the band are labelled UNCERTAIN for the reviewer. The half-width is capped so most cells
    still get a suggestion.
    """
    y = (np.asarray(y_true) == positive).astype(int)
    pred = (p_positive >= threshold).astype(int)
    dist = np.abs(p_positive - threshold)
    for w in np.arange(0.0, max_half_width + 1e-9, 0.01):
        outside = dist > w
        if outside.sum() == 0 or (pred[outside] == y[outside]).mean() >= target_accuracy:
            return float(max(0.0, threshold - w)), float(min(1.0, threshold + w))
    return float(max(0.0, threshold - max_half_width)), float(min(1.0, threshold + max_half_width))


def classification_metrics(y_true, proba, class_names, subjects=None, positive: int | None = None,
                           threshold: float | None = None) -> dict:
    """Everything the card and the comparison tables report, for one set of predictions."""
    y_true = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=np.float64)
    n_classes = len(class_names)
    binary = n_classes == 2
    if binary:
        positive = 1 if positive is None else positive
        t = 0.5 if threshold is None else threshold
        pred = np.where(proba[:, positive] >= t, positive, 1 - positive)
    else:
        pred = proba.argmax(axis=1)
    labels = list(range(n_classes))
    p, r, f, support = skm.precision_recall_fscore_support(y_true, pred, labels=labels, zero_division=0)
    out = {
        "n": int(len(y_true)),
        "accuracy": float(skm.accuracy_score(y_true, pred)),
        "weighted_f1": float(skm.f1_score(y_true, pred, labels=labels, average="weighted", zero_division=0)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, pred)) if len(set(y_true)) > 1 else None,
        "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                          "support": int(support[i])} for i, c in enumerate(class_names)},
        "confusion_matrix": skm.confusion_matrix(y_true, pred, labels=labels).tolist(),
        "ece": expected_calibration_error(y_true, proba),
    }
    if binary:
        out["threshold"] = float(t)
        out["positive_class"] = class_names[positive]
        out["sensitivity"] = float(r[positive])
        out["specificity"] = float(r[1 - positive])
        out["roc_auc"] = (float(skm.roc_auc_score((y_true == positive).astype(int), proba[:, positive]))
                          if len(set(y_true)) > 1 else None)
    else:
        try:
            out["roc_auc"] = float(skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=labels))
        except ValueError:
            out["roc_auc"] = None
    if subjects is not None:
        per = defaultdict(list)
        for s, yt, yp in zip(subjects, y_true, pred):
            per[s].append(yt == yp)
        out["per_subject_accuracy"] = {s: float(np.mean(v)) for s, v in sorted(per.items())}
        out["per_subject_n"] = {s: len(v) for s, v in sorted(per.items())}
    return out


def save_figures(folder: Path, y_true, proba, class_names, positive: int | None = None,
                 threshold: float | None = None, history: dict | None = None, title: str = "") -> list[str]:
    """Confusion matrix, ROC, reliability diagram and learning curves as PNGs; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    y_true = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba)
    m = classification_metrics(y_true, proba, class_names, positive=positive, threshold=threshold)
    written = []

    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=110)
    cm = np.asarray(m["confusion_matrix"])
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix {title}".strip(), fontsize=9)
    fig.tight_layout()
    fig.savefig(folder / "confusion_matrix.png")
    plt.close(fig)
    written.append("confusion_matrix.png")

    if len(class_names) == 2 and len(set(y_true)) > 1:
        pos = 1 if positive is None else positive
        fpr, tpr, _ = skm.roc_curve((y_true == pos).astype(int), proba[:, pos])
        fig, ax = plt.subplots(figsize=(4, 3.6), dpi=110)
        ax.plot(fpr, tpr, label=f"AUC {m['roc_auc']:.3f}")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel(f"sensitivity ({class_names[pos]})")
        ax.legend(loc="lower right")
        ax.set_title(f"ROC {title}".strip(), fontsize=9)
        fig.tight_layout()
        fig.savefig(folder / "roc.png")
        plt.close(fig)
        written.append("roc.png")

    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, 11)
    centres, accs = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            centres.append(conf[sel].mean())
            accs.append(correct[sel].mean())
    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=110)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.plot(centres, accs, "o-")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability (ECE {m['ece']:.3f}) {title}".strip(), fontsize=9)
    fig.tight_layout()
    fig.savefig(folder / "reliability.png")
    plt.close(fig)
    written.append("reliability.png")

    if history:
        fig, axes = plt.subplots(1, 2, figsize=(7, 3), dpi=110)
        for key, ax in (("loss", axes[0]), ("accuracy", axes[1])):
            for prefix in ("", "val_"):
                if history.get(prefix + key):
                    ax.plot(range(1, len(history[prefix + key]) + 1), history[prefix + key],
                            label=("validation " if prefix else "training ") + key)
            ax.set_xlabel("epoch")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(folder / "learning_curves.png")
        plt.close(fig)
        written.append("learning_curves.png")
    return written
