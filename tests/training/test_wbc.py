"""The white-cell-type model path: every source cut by the app's localiser at one physical scale, features, a
head, a model folder the app runs (here on the fixtures and the tiny network; the shipped model's figures are in
its card)."""
import json

import numpy as np
import pytest

from leukviewer.cli.training import AppCellFinder
from training.heads import WBC_CLASSES
from training.preprocess import PreprocessConfig
from training.sources import build_cell_table, list_source_images


@pytest.fixture(scope="module")
def cell_table(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("wbc") / "cells.npz"
    items = list_source_images(shared_data, sources=("cnmc", "pbc", "bccd"), pbc_per_class=3, bccd_fields=8)
    summary = build_cell_table(items, PreprocessConfig.physical_scale(32, 23.0), out, workers=1,
                               finder=AppCellFinder())
    return out, summary


def test_every_source_gives_typed_cells_at_one_physical_scale(cell_table):
    path, summary = cell_table
    assert summary["errors"] == []
    per = summary["per_source"]
    # 84 C-NMC crops of fold_1: 11 ALL subjects x 6 cells are blasts, 3 healthy x 6 are normal lymphoid
    assert per["cnmc"] == {"blast": 66, "lymphoid": 18}
    # PBC: its lymphocytes are lymphoid, its platelets are not white cells; each class gives its central cell
    assert per["pbc"]["lymphoid"] == 3 and per["pbc"]["neutrophil"] == 3 and "non_wbc" in per["pbc"]
    # BCCD: detections on annotated WBC boxes are white cells of unknown type; red cells are non-WBC examples
    assert per["bccd"]["wbc"] >= 6 and per["bccd"]["non_wbc"] >= 12
    d = np.load(path)
    assert d["x"].shape[1:] == (32, 32, 3)
    scale = dict(zip(d["source"], d["scale_source"]))
    assert scale["cnmc"] == "cnmc_calibration" and scale["pbc"] == "red_cells"
    # one physical scale: PBC neutrophils (12-15 µm) measure larger than PBC lymphocytes and than red cells
    dia = d["diameter_um"]
    pbc = d["source"] == "pbc"
    assert np.median(dia[pbc & (d["cell_type"] == "monocyte")]) > np.median(dia[pbc & (d["cell_type"] == "lymphoid")])
    assert 9 < np.median(dia[(d["source"] == "cnmc") & (d["cell_type"] == "lymphoid")]) < 14


def test_head_on_a_backbone_gives_a_model_folder_the_app_runs(cell_table, tiny_model_dir, shared_data, tmp_path):
    from leukviewer.core.model.classifier import CellClassifier
    from PIL import Image

    from leukviewer.core.analysis.imageio import read_image
    from leukviewer.core.analysis.pipeline import analyze_folder
    from training.heads import backbone_features, export_wbc_model
    from training.modelfolder import load_model_folder
    from training.wbc import CellTable, evaluate, fit_final
    from training.wbc_card import write_card

    path, summary = cell_table
    parent = load_model_folder(tiny_model_dir)
    features = backbone_features(parent.network, np.load(path)["x"], views=2)
    np.save(tmp_path / "f.npy", features)
    table = CellTable.load(path, tmp_path / "f.npy")
    report = evaluate(table, epochs=3, k=2, progress=lambda m: None)
    # the held-out figures exist for the sources present (the fixtures hold no Aria-style fields)
    assert {"calibration", "cnmc_cv", "pbc_held_out", "bccd_held_out", "pbc_types_cv"} <= set(report)
    assert "aria_held_out" not in report
    cal = report["calibration"]
    folder = export_wbc_model(tiny_model_dir, fit_final(table, epochs=3), tmp_path / "wbc", name="wbc-test",
                              version="0.0.1", temperature=cal["temperature"], threshold=cal["threshold"],
                              band=tuple(cal["uncertainty_band"]), preprocessing=summary["preprocessing"],
                              training={}, metrics=report)
    card = write_card(folder).read_text(encoding="utf-8")
    assert "For Research Use Only. Not for use in diagnostic procedures." in card and "PBC" in card
    meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    assert meta["class_names"] == list(WBC_CLASSES) and meta["positive_class"] == "blast"
    classifier = CellClassifier(folder)
    # five fields of one microscope; the last, a 240-px corner of a field, holds too few red cells to measure them:
    # it takes the folder's scale instead, and says so
    fields = tmp_path / "fields"
    fields.mkdir()
    for name in ("00010", "00020", "00031", "00034"):
        (fields / f"BloodImage_{name}.jpg").symlink_to(shared_data / "bccd" / "JPEGImages" / f"BloodImage_{name}.jpg")
    corner = read_image(shared_data / "bccd" / "JPEGImages" / "BloodImage_00043.jpg")[240:480, 400:640]
    Image.fromarray(corner).save(fields / "BloodImage_00043_corner.png")
    results = list(analyze_folder(fields, classifier))
    assert all(0.07 < r.um_per_px < 0.12 for r in results)
    assert [r.scale_source for r in results] == ["red_cells"] * 4 + ["folder_red_cells"]
    cells = [c for r in results for c in r.cells]
    assert cells and all(c.cell_type in WBC_CLASSES for c in cells)


def test_fine_tune_folders_leave_out_every_cell_the_evaluation_measures(cell_table, tmp_path):
    """A supervised fine-tune learns from C-NMC fold_1 (not 32/H10) and half of PBC, one folder per type; the C-NMC
    subjects the evaluation tests, BCCD and the other half of PBC (where the types are measured) are not in them."""
    from training.datasets import load_dataset
    from training.wbc import export_finetune_folders

    path, _ = cell_table
    split = export_finetune_folders(path, tmp_path / "ft", pbc_share=0.5)
    d = np.load(path)
    train, held = set(split["train"]), set(split["pbc_held_out"])
    assert train and held and not train & held
    subjects = {g.split(":", 1)[1] for g in d["group"][sorted(train)] if g.startswith("cnmc")}
    assert subjects and not subjects & {"32", "H10"}
    assert set(d["source"][sorted(train)]) == {"cnmc", "pbc"}
    assert sum(1 for i in range(len(d["source"])) if d["source"][i] == "pbc" and i in train) <= len(held) + 8
    data = load_dataset(tmp_path / "ft")
    assert data.layout == "folder_per_class" and len(data.samples) == len(train)
    assert {"blast", "lymphoid", "neutrophil"} <= set(data.class_names)
    assert json.loads((tmp_path / "ft" / "split.json").read_text())["train"] == split["train"]


def test_fine_tune_folders_carry_size_balancing_weights_that_training_fit_reads(cell_table, tmp_path):
    """``wbc folders --balance-size``: weights.csv gives every exported cell its ``size_balanced_weights`` (so a
    fine-tuned network, like the balanced heads, cannot call a C-NMC cell a blast for its size), and
    ``training fit --sample-weights`` reads it for exactly the exported images."""
    from training.datasets import load_dataset
    from training.traindata import read_sample_weights
    from training.wbc import CellTable, export_finetune_folders, size_balanced_weights

    path, _ = cell_table
    split = export_finetune_folders(path, tmp_path / "ft", pbc_share=0.5, balance_size=2)
    d = np.load(path)
    table = CellTable(np.zeros((1, len(d["source"]), 0), np.float32), d["source"], d["group"], d["field"],
                      d["cell_type"], {}, diameter_um=d["diameter_um"], partial=d["partial"])
    expected = size_balanced_weights(table, split["train"], 2)
    assert not np.allclose(expected, 1)    # the fixture's blasts and lymphoid cells differ in size
    data = load_dataset(tmp_path / "ft")
    weights = read_sample_weights(str(tmp_path / "ft" / "weights.csv"), data, list(range(len(data.samples))))
    index_of = {int(s.path.stem.split("_")[1]): k for k, s in enumerate(data.samples)}
    assert np.allclose([weights[index_of[i]] for i in split["train"]], expected, rtol=1e-5)
    assert json.loads((tmp_path / "ft" / "split.json").read_text())["balance_size"]["bins"] == 2


def test_after_a_fine_tune_pbc_is_measured_only_on_the_half_the_backbone_never_learned(cell_table, tmp_path):
    """``wbc fit --split split.json``: the types and PBC's held-out figures count only the PBC cells kept out of the
    fine-tune; the C-NMC CV is the same as without it."""
    from training.wbc import CellTable, evaluate, finetune_split

    path, _ = cell_table
    d = np.load(path)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "f.npy", rng.normal(size=(2, len(d["source"]), 8)).astype(np.float32))
    table = CellTable.load(path, tmp_path / "f.npy")
    held = finetune_split(path)["pbc_held_out"]
    everything = evaluate(table, epochs=2, k=2, progress=lambda m: None)
    split = evaluate(table, epochs=2, k=2, progress=lambda m: None, pbc_measured=held)
    n_pbc = int((d["source"] == "pbc").sum())
    assert everything["pbc_held_out"]["cells"] == n_pbc and split["pbc_held_out"]["cells"] == len(held) < n_pbc
    assert sum(map(sum, split["pbc_types_cv"]["confusion_matrix"])) == len(held)
    assert split["cnmc_cv"]["pooled"] == everything["cnmc_cv"]["pooled"]


def test_weakly_labelled_cells_a_head_cannot_vouch_for_are_left_out_of_training():
    """The Aria-style fields give their one label to every whole cell found in them. With --weak-labels filtered a
    head keeps, of a B-ALL field, only the cells a head on the other sources types blast or lymphoid and that are the
    more blast-like half of their field; of a Benign field, those typed blast or lymphoid. Here the features are
    three clear clusters (blast, lymphoid, neutrophil) learnt from C-NMC and PBC cells."""
    from training.wbc import CellTable, weak_label_cells

    rng = np.random.default_rng(0)
    centre = {"blast": np.r_[8.0, 0, 0, 0], "lymphoid": np.r_[0, 8.0, 0, 0], "neutrophil": np.r_[0, 0, 8.0, 0]}
    rows = []   # (source, field, label, looks like)
    rows += [("cnmc", f"c{i}", "blast", "blast") for i in range(30)]
    rows += [("cnmc", f"h{i}", "lymphoid", "lymphoid") for i in range(30)]
    rows += [("pbc", f"p{i}", "neutrophil", "neutrophil") for i in range(30)]
    ball = ["blast"] * 4 + ["lymphoid"] * 2 + ["neutrophil"] * 2     # one B-ALL field: 8 cells, one label
    rows += [("aria", "Pre/f1.jpg", "blast", look) for look in ball]
    rows += [("aria", "Benign/f2.jpg", "lymphoid", look) for look in ["lymphoid"] * 3 + ["neutrophil"]]
    features = np.stack([centre[look] + rng.normal(0, 0.3, 4) for _, _, _, look in rows]).astype(np.float32)
    col = lambda i: np.array([r[i] for r in rows])
    table = CellTable(features[None], col(0), col(1), col(1), col(2), {})
    train = np.arange(len(rows))
    kept = set(weak_label_cells(table, train, hidden=0, epochs=200).tolist())   # one step an epoch
    aria = [i for i, r in enumerate(rows) if r[0] == "aria"]
    kept_aria = {i for i in aria if i in kept}
    # every strongly labelled cell stays; of the B-ALL field the four blast-like cells, of the Benign field the
    # three lymphoid-like ones; the neutrophils of either field and the B-ALL field's normal lymphocytes go
    assert kept >= set(range(90))
    assert kept_aria == {i for i in aria if rows[i][3] == "blast"} | {i for i in aria if rows[i][1] == "Benign/f2.jpg"
                                                                    and rows[i][3] == "lymphoid"}
    # and it is what 'wbc fit' does unless told --weak-labels all (README: "the default")
    import argparse

    from training.wbc import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["wbc", "fit", "--cells", "c.npz", "--features", "f.npy"]).weak_labels == "filtered"
    assert table.weak_labels == "filtered"


def _weighted_auc(is_positive, score, weight) -> float:
    """P(score of a positive > score of a negative), pairs weighted by the product of their weights."""
    pos, neg = score[is_positive], score[~is_positive]
    wp, wn = weight[is_positive], weight[~is_positive]
    greater = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return float((wp[:, None] * wn[None, :] * greater).sum() / (wp.sum() * wn.sum()))


def _weighted_logistic_regression(x, y, weight, steps=3000, lr=0.5):
    """Coefficients of a linear blast score on standardised x, fitted to convergence by gradient descent."""
    x = (x - x.mean(0)) / x.std(0)
    x = np.c_[x, np.ones(len(x))]
    beta = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x @ beta))
        beta -= lr * x.T @ (weight * (p - y)) / weight.sum()
    return beta[:-1]


def test_size_balancing_makes_a_linear_head_read_the_cell_not_its_size():
    """--balance-size: C-NMC's blasts are larger than its normal cells, another lab's are not (issue 15). Weighted
    within each source, size no longer separates blast from lymphoid, and a linear blast score fitted with those
    weights ranks the other lab's blasts (the same size as their normal cells) by what else they look like better
    than one that learned size. 'wbc fit' passes the weights to every head and records the setting."""
    from training.wbc import CellTable, size_balanced_weights

    rng = np.random.default_rng(0)
    n = 400
    is_blast = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    # C-NMC: blasts 14 µm, normal cells 11 µm; a weaker morphology feature tells them apart too
    cnmc_d = np.where(is_blast, rng.normal(14, 1.5, 2 * n), rng.normal(11, 1.5, 2 * n))
    # the other lab: both about 10.5 µm, the same morphology difference
    other_d = rng.normal(10.5, 1.5, 2 * n)
    morph = lambda: np.where(is_blast, 1.0, -1.0) + rng.normal(0, 2, 2 * n)
    features = np.stack([np.r_[cnmc_d, other_d], np.r_[morph(), morph()]], 1).astype(np.float32)
    labels = np.where(np.r_[is_blast, is_blast], "blast", "lymphoid")
    source = np.array(["cnmc"] * 2 * n + ["other"] * 2 * n)
    field = np.array([f"f{i}" for i in range(4 * n)])
    partial = np.zeros(4 * n, bool)
    partial[:5] = True                                  # a cut cell's size is not its size: it keeps weight 1
    table = CellTable(features[None], source, field, field, labels, {}, diameter_um=features[:, 0].copy(),
                      partial=partial)
    train = np.arange(2 * n)

    w = size_balanced_weights(table, train, bins=10)
    assert np.all(w[:5] == 1) and 0.1 <= w.min() and w.max() <= 10
    whole = ~partial[train]
    assert _auc(is_blast[whole], cnmc_d[whole]) > 0.85                     # size alone separates C-NMC's cells
    assert _weighted_auc(is_blast[whole], cnmc_d[whole], w[whole]) < 0.65  # hardly, once weighted
    # another source's cells are balanced on their own sizes, never on C-NMC's
    both = np.arange(4 * n)
    assert np.allclose(size_balanced_weights(table, both, 10)[:2 * n], w)

    other = slice(2 * n, 4 * n)

    def auc_on_other_lab(weight):
        beta = _weighted_logistic_regression(features[train], is_blast.astype(float), weight)
        return _auc(is_blast, features[other] @ beta)

    plain, balanced = auc_on_other_lab(np.ones(2 * n)), auc_on_other_lab(w)
    assert balanced > plain + 0.05, (plain, balanced)

    # 'wbc fit --balance-size 10' (default off) reaches every head and the evaluation says so
    import argparse

    from training.wbc import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["wbc", "fit", "--cells", "c.npz", "--features", "f.npy"]).balance_size == 0
    assert parser.parse_args(["wbc", "fit", "--cells", "c", "--features", "f", "--balance-size", "10"]).balance_size == 10
    seen = []
    import training.wbc as wbc

    real_fit_head = wbc.fit_head

    def recording_fit_head(x, y, *args, sample_weight=None, **kwargs):
        seen.append(sample_weight)
        return real_fit_head(x, y, *args, sample_weight=sample_weight, **kwargs)

    table.balance_size = 10
    wbc.fit_head = recording_fit_head
    try:
        for strength in (1.0, 0.5):   # --balance-size-strength: the weights raised to it, half way in log weight
            table.balance_size_strength = strength
            wbc._logits(table, train, np.arange(2 * n, 4 * n), hidden=0, epochs=1)
    finally:
        wbc.fit_head = real_fit_head
    assert len(seen) == 2 and seen[0] is not None and not np.allclose(seen[0], seen[0][0])
    assert np.allclose(seen[1] / seen[0], w ** -0.5)
    assert parser.parse_args(["wbc", "fit", "--cells", "c", "--features", "f"]).balance_size_strength == 1.0


def _auc(is_positive, score):
    from training.metrics import roc_auc_score

    return roc_auc_score(np.asarray(is_positive, bool), np.asarray(score, float))


def test_balancing_size_on_a_table_without_cell_sizes_says_so(tmp_path):
    """A cell table written before sizes were recorded cannot be size-balanced: 'wbc fit' stops with a message that
    says how to rebuild it, instead of silently fitting unweighted heads."""
    import argparse

    from training.wbc import CELLS_COMMAND, add_parser, run

    n = 12
    np.savez(tmp_path / "cells.npz", x=np.zeros((n, 8, 8, 3), np.uint8), source=np.array(["cnmc"] * n),
             group=np.array(["cnmc:1"] * 6 + ["cnmc:H1"] * 6), field=np.array([f"f{i}" for i in range(n)]),
             cell_type=np.array(["blast"] * 6 + ["lymphoid"] * 6), summary=json.dumps({}))
    np.save(tmp_path / "f.npy", np.zeros((1, n, 4), np.float32))
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["wbc", "fit", "--cells", str(tmp_path / "cells.npz"), "--features",
                              str(tmp_path / "f.npy"), "--balance-size", "10"])
    with pytest.raises(SystemExit, match="diameter") as stop:
        run(args)
    assert CELLS_COMMAND in str(stop.value)
