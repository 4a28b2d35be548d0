"""Metrics, calibration and the decision threshold (numpy only: no TensorFlow, SciPy or scikit-learn, so the
installer need not bundle them). Each metric gives the same value as scikit-learn's function of the same name."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from .modelfolder import softmax


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts [true class, predicted class] for the classes 0..n_classes-1 (others are ignored)."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    known = (y_true >= 0) & (y_true < n_classes) & (y_pred >= 0) & (y_pred < n_classes)
    cells = y_true[known] * n_classes + y_pred[known]
    return np.bincount(cells, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's ``zero_division=0``)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)


def precision_recall_f1_support(y_true, y_pred, n_classes: int):
    """Per-class precision, recall, F1 and support (arrays of length n_classes; 0 where undefined)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    hits, predicted, support = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)
    return _ratio(hits, predicted), _ratio(hits, support), _ratio(2 * hits, predicted + support), support


def weighted_f1(y_true, y_pred, n_classes: int) -> float:
    """F1 per class averaged with the classes' support as weights (0 for no cells)."""
    _, _, f1, support = precision_recall_f1_support(y_true, y_pred, n_classes)
    return float(_ratio(np.sum(f1 * support), np.sum(support)))


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean recall over the classes present in y_true."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return float(np.mean(recalls)) if recalls else 0.0


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    return (last - (counts - 1) / 2.0)[inverse.ravel()]


def roc_auc_score(is_positive, score) -> float:
    """Area under the ROC curve of ``score`` for the binary truth ``is_positive``: the probability that a positive
    cell scores higher than a negative one, ties counting one half (the Mann-Whitney U statistic).

    Raises ValueError when one class is missing or a score is not finite.
    """
    is_positive = np.asarray(is_positive).ravel().astype(bool)
    score = np.asarray(score, dtype=np.float64).ravel()
    if len(is_positive) != len(score):
        raise ValueError(f"{len(is_positive)} labels but {len(score)} scores")
    if not np.all(np.isfinite(score)):
        raise ValueError("the scores contain NaN or infinity")
    n_pos = int(is_positive.sum())
    n_neg = len(is_positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC-AUC needs both classes in the truth")
    u = _average_ranks(score)[is_positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_auc_one_vs_rest(y_true, proba) -> float | None:
    """Mean over classes of the ROC-AUC of each class's probability against all other classes; None when a class
    has no cells (or every cell) in y_true, or the rows of ``proba`` are not probabilities."""
    y_true = np.asarray(y_true).ravel()
    proba = np.asarray(proba, dtype=np.float64)
    if not np.allclose(1.0, proba.sum(axis=1)):
        return None
    try:
        return float(np.mean([roc_auc_score(y_true == c, proba[:, c]) for c in range(proba.shape[1])]))
    except ValueError:
        return None


def roc_curve(is_positive, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate, threshold) at every distinct score, from (0, 0) to (1, 1)."""
    is_positive = np.asarray(is_positive).ravel().astype(bool)
    score = np.asarray(score, dtype=np.float64).ravel()
    order = np.argsort(-score, kind="mergesort")
    score, is_positive = score[order], is_positive[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    tp = np.cumsum(is_positive)[last_of_each]
    fp = (last_of_each + 1) - tp
    tpr = np.r_[0.0, _ratio(tp, np.full(tp.shape, tp[-1]))]
    fpr = np.r_[0.0, _ratio(fp, np.full(fp.shape, fp[-1]))]
    return fpr, tpr, np.r_[np.inf, score[last_of_each]]


GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


def minimise_unimodal(f, low: float, high: float, tolerance: float = 1e-6) -> float:
    """The x in [low, high] minimising a unimodal f, by golden-section search (to ``tolerance`` in x)."""
    a, b = float(low), float(high)
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tolerance:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = f(d)
    # A minimum on a bound is approached but never evaluated inside: compare with the bounds themselves.
    candidates = [(fc, c), (fd, d), (f(float(low)), float(low)), (f(float(high)), float(high))]
    return min(candidates, key=lambda value_x: value_x[0])[1]


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

    # The NLL is convex in 1/T, hence unimodal in log T: golden-section search finds its minimum.
    return float(np.exp(minimise_unimodal(nll, np.log(0.05), np.log(20.0))))


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
        score = balanced_accuracy(y, (p_positive >= t).astype(int))
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
    p, r, f, support = precision_recall_f1_support(y_true, pred, n_classes)
    out = {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_true == pred)) if len(y_true) else 0.0,
        "weighted_f1": weighted_f1(y_true, pred, n_classes),
        "balanced_accuracy": balanced_accuracy(y_true, pred) if len(set(y_true)) > 1 else None,
        "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                          "support": int(support[i])} for i, c in enumerate(class_names)},
        "confusion_matrix": confusion_matrix(y_true, pred, n_classes).tolist(),
        "ece": expected_calibration_error(y_true, proba),
    }
    if binary:
        out["threshold"] = float(t)
        out["positive_class"] = class_names[positive]
        out["sensitivity"] = float(r[positive])
        out["specificity"] = float(r[1 - positive])
        out["roc_auc"] = roc_auc_score(y_true == positive, proba[:, positive]) if len(set(y_true)) > 1 else None
    else:
        out["roc_auc"] = roc_auc_one_vs_rest(y_true, proba)
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
        fpr, tpr, _ = roc_curve(y_true == pos, proba[:, pos])
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
