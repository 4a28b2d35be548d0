"""Feature distillation: a student learns a teacher's cached features of real cells (no labels), stops and
resumes from its checkpoint, and its folder feeds the white-cell-type head like any backbone."""
import json

import numpy as np
import pytest

from leukviewer.cli.training import AppCellFinder
from training.preprocess import PreprocessConfig
from training.sources import build_cell_table, list_source_images


@pytest.fixture(scope="module")
def cells(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("distill") / "cells.npz"
    items = list_source_images(shared_data, sources=("cnmc", "pbc"), pbc_per_class=2)
    build_cell_table(items, PreprocessConfig.physical_scale(32, 23.0), out, workers=1, finder=AppCellFinder())
    return out


def test_the_teachers_augmented_view_is_reproduced_exactly(cells, tiny_model_dir):
    from training.distill import teacher_views
    from training.heads import backbone_features, feature_extractor
    from training.modelfolder import load_model_folder

    x = np.load(cells)["x"]
    network = load_model_folder(tiny_model_dir).network
    cached = backbone_features(network, x, views=2)             # what `wbc features` wrote for the teacher
    views = teacher_views(x, 2)
    again = np.asarray(feature_extractor(network).predict(views[1].astype("float32"), verbose=0))
    np.testing.assert_allclose(again, cached[1], atol=1e-4)
    assert not np.allclose(cached[0], cached[1])                 # the second view is really augmented


def test_a_student_is_trained_resumed_and_its_folder_feeds_the_head(cells, tiny_model_dir, tmp_path, capsys):
    from training.cli import main
    from training.heads import backbone_features
    from training.modelfolder import load_model_folder, verify

    x = np.load(cells)["x"]
    teacher = backbone_features(load_model_folder(tiny_model_dir).network, x, views=2)
    np.save(tmp_path / "teacher.npy", teacher.astype(np.float16))
    work = tmp_path / "work"
    common = ["distill", "--cells", str(cells), "--teacher-features", str(tmp_path / "teacher.npy"),
              "--parent", str(tiny_model_dir), "--size", "16", "--epochs", "2", "--batch-size", "8",
              "--workdir", str(work)]
    assert main(common + ["--out", str(tmp_path / "student")]) == 0
    state = json.loads((work / "distill_state.json").read_text())
    assert state["step"] == state["total_steps"] > 0
    meta = verify(tmp_path / "student")
    assert meta["preprocessing"]["size"] == 16 and meta["input_size"] == [16, 16]
    assert np.isfinite(meta["distillation"]["held_out_r2"])
    # a rerun with --resume starts from the checkpoint: nothing left to train, the same weights come out
    capsys.readouterr()
    assert main(common + ["--resume", "--out", str(tmp_path / "student2")]) == 0
    assert f"resumed at step {state['step']}" in capsys.readouterr().out
    a = load_model_folder(tmp_path / "student").network.get_weights()
    b = load_model_folder(tmp_path / "student2").network.get_weights()
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    # the student's features (cells resampled to its 16 px) feed `wbc features`
    assert main(["wbc", "features", "--cells", str(cells), "--parent", str(tmp_path / "student"), "--views", "1",
                 "--out", str(tmp_path / "f.npy")]) == 0
    f = np.load(tmp_path / "f.npy")
    assert f.shape[:2] == (1, len(x)) and np.isfinite(f).all()


def test_whitened_targets_give_every_principal_direction_the_same_weight():
    """With --whiten N the student learns N outputs that, on the training cells, each have unit variance and do not
    correlate, the largest directions first; a direction with a thousandth of the variance weighs as much as the
    largest (with standardised features it would be invisible to the loss)."""
    from training.distill import whitened

    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(6, 6))
    scales = np.array([30.0, 10.0, 3.0, 1.0, 0.1, 0.03])
    target = (rng.normal(size=(2, 500, 6)) * scales) @ mixing
    train = np.arange(450)
    out = whitened(target.astype(np.float32), train, 4)
    assert out.shape == (2, 500, 4)
    flat = out[:, train].reshape(-1, 4)
    assert np.allclose(np.cov(flat, rowvar=False), np.eye(4), atol=1e-3)
