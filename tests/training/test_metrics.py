"""The metrics on the model card, the temperature and the threshold come from numpy alone (the installer bundles
neither SciPy nor scikit-learn): known values, and the same numbers as scikit-learn/SciPy where they are installed."""
import subprocess
import sys

import numpy as np
import pytest

from training.metrics import (balanced_accuracy, choose_threshold, classification_metrics, confusion_matrix,
                              fit_temperature, minimise_unimodal, roc_auc_one_vs_rest, roc_auc_score, roc_curve,
                              weighted_f1)
from training.modelfolder import softmax


def test_roc_auc_known_values_with_ties():
    assert roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # a blast and a normal cell with the same score count one half
    assert roc_auc_score([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(3.5 / 4)
    assert roc_auc_score([True, False, True], [3.0, 3.0, 3.0]) == pytest.approx(0.5)
    assert roc_auc_score([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert roc_auc_score([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0


def test_roc_auc_refuses_what_it_cannot_measure():
    with pytest.raises(ValueError, match="both classes"):
        roc_auc_score([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc_score([0, 1], [0.1, np.nan])


def test_roc_curve_runs_from_the_origin_to_the_corner_through_each_distinct_score():
    fpr, tpr, thresholds = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert thresholds[1:].tolist() == [0.8, 0.4, 0.35, 0.1]
    assert np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2) == pytest.approx(0.75)  # area under it


def test_f1_balanced_accuracy_and_confusion_known_values():
    # scikit-learn's documented examples
    y_true, y_pred = [0, 1, 2, 0, 1, 2], [0, 2, 1, 0, 0, 1]
    assert weighted_f1(y_true, y_pred, 3) == pytest.approx(0.26666666666666666)
    assert confusion_matrix(y_true, y_pred, 3).tolist() == [[2, 0, 0], [1, 0, 1], [0, 2, 0]]
    assert balanced_accuracy([0, 1, 0, 0, 1, 0], [0, 1, 0, 0, 0, 1]) == pytest.approx(0.625)
    # a class never predicted has precision 0, not a division by zero
    m = classification_metrics([0, 0, 1, 1], np.array([[0.9, 0.1]] * 4), ["HEM", "ALL"])
    assert m["per_class"]["ALL"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert m["sensitivity"] == 0.0 and m["specificity"] == 1.0 and m["balanced_accuracy"] == 0.5
    assert m["roc_auc"] == pytest.approx(0.5)


def test_one_vs_rest_auc_is_none_when_a_class_has_no_cells():
    proba = softmax(np.random.default_rng(0).normal(size=(6, 3)))
    assert roc_auc_one_vs_rest([0, 1, 0, 1, 0, 1], proba) is None
    assert roc_auc_one_vs_rest([0, 1, 2, 0, 1, 2], proba) is not None
    assert classification_metrics([0, 1, 0, 1, 0, 1], proba, ["a", "b", "c"])["roc_auc"] is None


def test_golden_section_finds_interior_and_boundary_minima():
    assert minimise_unimodal(lambda x: (x - 0.3) ** 2, -2, 2) == pytest.approx(0.3, abs=1e-5)
    assert minimise_unimodal(lambda x: x, -2, 2) == -2.0
    assert minimise_unimodal(lambda x: -x, -2, 2) == 2.0


def overconfident_logits(n=600, temperature=2.5, seed=0):
    """Logits whose labels were drawn from softmax(logits / temperature): the fitted T should come near it."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(n, 2))
    p = softmax(logits, temperature)
    labels = (rng.random(n) < p[:, 1]).astype(int)
    return logits, labels


def test_fitted_temperature_minimises_the_log_likelihood():
    logits, labels = overconfident_logits()
    t = fit_temperature(logits, labels)

    def nll(temperature):
        p = softmax(logits, temperature)
        return -np.mean(np.log(p[np.arange(len(labels)), labels]))

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 20001))
    best = grid[np.argmin([nll(g) for g in grid])]
    assert t == pytest.approx(best, rel=1e-3)
    assert 1.8 < t < 3.5  # near the temperature the labels were drawn with
    assert fit_temperature(np.zeros((0, 2)), np.zeros(0)) == 1.0
    # perfectly separated, confident logits: the lower bound
    assert fit_temperature(np.array([[5.0, -5.0], [-5.0, 5.0]]), np.array([0, 1])) == pytest.approx(0.05)


def random_predictions(seed, n=400, classes=2, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes)) + 1.2 * np.eye(classes)[y]
    if ties:
        logits = np.round(logits, 1)
    return y, softmax(logits)


@pytest.mark.parametrize("seed", range(4))
def test_same_numbers_as_scikit_learn(seed):
    skm = pytest.importorskip("sklearn.metrics")
    for classes, ties in ((2, False), (2, True), (4, False), (4, True)):
        y, proba = random_predictions(seed, classes=classes, ties=ties)
        ours = classification_metrics(y, proba, [f"c{i}" for i in range(classes)], threshold=0.4 if classes == 2
                                      else None)
        pred = (np.where(proba[:, 1] >= 0.4, 1, 0) if classes == 2 else proba.argmax(axis=1))
        labels = list(range(classes))
        p, r, f, support = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
        assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
        assert ours["weighted_f1"] == pytest.approx(skm.f1_score(y, pred, labels=labels, average="weighted",
                                                                 zero_division=0), abs=1e-12)
        assert ours["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-12)
        assert ours["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=labels).tolist()
        for i in labels:
            got = ours["per_class"][f"c{i}"]
            assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx(
                (p[i], r[i], f[i], support[i]), abs=1e-12)
        expected_auc = (skm.roc_auc_score(y, proba[:, 1]) if classes == 2
                        else skm.roc_auc_score(y, proba, multi_class="ovr", labels=labels))
        assert ours["roc_auc"] == pytest.approx(expected_auc, abs=1e-12)
        assert choose_threshold(y == 1, proba[:, 1]) == pytest.approx(
            _sklearn_threshold(skm, (y == 1).astype(int), proba[:, 1]))
    fpr, tpr, _ = roc_curve(y == 1, proba[:, 1])
    sk_fpr, sk_tpr, _ = skm.roc_curve(y == 1, proba[:, 1], drop_intermediate=False)
    assert np.allclose(fpr, sk_fpr) and np.allclose(tpr, sk_tpr)


def _sklearn_threshold(skm, y, p_positive):
    """choose_threshold as it was written with scikit-learn."""
    candidates = np.unique(np.concatenate([[0.5], np.clip(p_positive, 0.01, 0.99)]))
    best, best_score = 0.5, -1.0
    for t in candidates:
        score = skm.balanced_accuracy_score(y, (p_positive >= t).astype(int))
        if score > best_score + 1e-9 or (abs(score - best_score) <= 1e-9 and abs(t - 0.5) < abs(best - 0.5)):
            best, best_score = float(t), score
    return best


@pytest.mark.parametrize("seed", range(3))
def test_same_temperature_as_scipy(seed):
    optimize = pytest.importorskip("scipy.optimize")
    logits, labels = overconfident_logits(seed=seed, temperature=[0.7, 1.5, 4.0][seed])

    def nll(log_t):
        p = softmax(logits, np.exp(log_t))
        return -np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None)))

    reference = optimize.minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    assert fit_temperature(logits, labels) == pytest.approx(np.exp(reference.x), rel=1e-4)


def test_the_training_library_imports_neither_scipy_nor_scikit_learn():
    code = ("import sys; import training.metrics, training.loop, training.evaluate; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'sklearn')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
