"""The inference engine: fixed shapes, the LiteRT path agreeing with TensorFlow, conversion cached by hash."""
import numpy as np
import pytest

from leukviewer.core.model.engine import InferenceEngine
from training.modelfolder import load_model_folder
from training.preprocess import read_rgb


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model_folder(tiny_model_dir)


@pytest.fixture(scope="module")
def cells(model, cnmc_root):
    paths = sorted((cnmc_root / "training_data" / "fold_1").glob("*/*.png"))
    return np.stack([model.preprocess(read_rgb(p)) for p in paths])


def test_tf_engine_matches_the_model_folder(model, cells):
    engine = InferenceEngine(model, "tf", batch_size=16)
    ref = model.predict_proba(cells, batch_size=16)
    assert np.max(np.abs(engine.probabilities(cells) - ref)) < 1e-5
    assert "CPU" in engine.device or "GPU" in engine.device


def test_a_cells_result_does_not_depend_on_its_batch(model, cells):
    engine = InferenceEngine(model, "tf", batch_size=16)
    alone = np.concatenate([engine.logits(cells[i:i + 1]) for i in range(5)])
    together = engine.logits(cells[:5])
    shifted = engine.logits(cells[3:40])[:2]
    assert np.max(np.abs(alone - together)) < 1e-5
    assert np.max(np.abs(shifted - together[3:5])) < 1e-5


def test_litert_path_agrees_with_tensorflow_and_is_cached_by_hash(model, cells):
    tf_engine = InferenceEngine(model, "tf", batch_size=16)
    lite = InferenceEngine(model, "tflite", batch_size=16)
    path = lite.tflite_path()
    assert path.is_file() and (model.manifest_sha256 or model.sha256)[:32] in path.name
    delta = np.max(np.abs(lite.probabilities(cells) - tf_engine.probabilities(cells)))
    assert delta <= 1e-3, delta
    stamp = path.stat().st_mtime_ns
    InferenceEngine(model, "tflite", batch_size=16)     # second load: no new conversion
    assert path.stat().st_mtime_ns == stamp
    assert "LiteRT" in lite.device


def test_wrong_cell_size_is_refused(model):
    engine = InferenceEngine(model, "tf", batch_size=4)
    with pytest.raises(ValueError, match="expected cells of 32x32x3"):
        engine.logits(np.zeros((2, 64, 64, 3), np.uint8))
    assert engine.logits(np.zeros((0, 32, 32, 3), np.uint8)).shape == (0, 2)


def test_auto_engine_uses_litert_only_once_converted(model, cells, tmp_path, monkeypatch):
    monkeypatch.setenv("LEUKVIEWER_CACHE_DIR", str(tmp_path / "cache"))
    before = InferenceEngine(model, "auto", batch_size=8)
    assert before.backend == "tf"                       # nothing converted yet: no wait for a conversion
    InferenceEngine(model, "tflite", batch_size=16)     # converts; one file serves every batch size
    after = InferenceEngine(model, "auto", batch_size=8)
    assert after.backend == "tflite" and "LiteRT" in after.device
    assert np.max(np.abs(after.probabilities(cells) - before.probabilities(cells))) <= 1e-3


def test_prepare_engine_command_is_instant_once_converted_and_explains_a_bad_folder(model, tiny_model_dir, tmp_path,
                                                                                     monkeypatch):
    """The conversion itself in a child process is covered by the window's background conversion
    (tests/gui/test_engine_conversion.py), which runs this same command."""
    import os
    import subprocess
    import sys

    monkeypatch.setenv("LEUKVIEWER_CACHE_DIR", str(tmp_path / "cache"))
    converted = InferenceEngine(model, "tflite", batch_size=4).tflite_path()
    stamp = converted.stat().st_mtime_ns
    run = subprocess.run([sys.executable, "-m", "leukviewer", "--prepare-engine", "--model", str(tiny_model_dir)],
                         capture_output=True, text=True, env=dict(os.environ))
    assert run.returncode == 0, run.stderr
    assert "LiteRT engine ready" in run.stdout and str(converted) in run.stdout
    assert converted.stat().st_mtime_ns == stamp and "tensorflow" not in run.stderr.lower()
    bad = subprocess.run([sys.executable, "-m", "leukviewer", "--prepare-engine", "--model", str(tmp_path / "no")],
                         capture_output=True, text=True, env=dict(os.environ))
    assert bad.returncode == 1 and "not found" in bad.stderr and "Traceback" not in bad.stderr


def test_leukviewer_threads_sets_the_threads_of_the_engine_and_the_readers(model, monkeypatch):
    """A cluster worker that owns one CPU slot (or a user sharing a machine) limits leukviewer to that many threads."""
    from leukviewer.cli.batch import reader_threads
    from leukviewer.core.model.engine import THREADS_ENV

    monkeypatch.setenv(THREADS_ENV, "1")
    engine = InferenceEngine(model, backend="tf")
    assert engine.threads == 1 and reader_threads() == 1
    monkeypatch.setenv(THREADS_ENV, "not a number")
    assert reader_threads() >= 1


def _with_tta(tiny_model_dir, dest, views):
    """A copy of the tiny model folder whose model.json says it averages ``views`` flips/rotations, sealed again."""
    import json
    import shutil

    from training.modelfolder import write_manifest

    shutil.copytree(tiny_model_dir, dest)
    meta = json.loads((dest / "model.json").read_text())
    meta["test_time_augmentation"] = {"views": views}
    (dest / "model.json").write_text(json.dumps(meta))
    if views in (1, 2, 4, 8):
        write_manifest(dest)
    return dest


def test_a_model_that_averages_flips_gives_a_cell_its_mirror_image_and_its_turns_one_call(
        tiny_model_dir, model, cells, tmp_path):
    # the tiny model's outputs are all near 0.5, so its logits are compared: equal to 1e-5, or apart by far more
    mirrored, turned = cells[:, :, ::-1].copy(), np.rot90(cells, 1, axes=(1, 2)).copy()
    plain = InferenceEngine(model, "tf", batch_size=16)
    assert np.max(np.abs(plain.logits(cells) - plain.logits(mirrored))) > 1e-3   # no TTA: a mirror image differs

    two = InferenceEngine(load_model_folder(_with_tta(tiny_model_dir, tmp_path / "two", 2)), "tf", batch_size=16)
    assert two.views == 2
    assert np.max(np.abs(two.logits(cells) - two.logits(mirrored))) < 1e-5
    assert np.max(np.abs(two.logits(cells) - two.logits(turned))) > 1e-3

    eight_model = load_model_folder(_with_tta(tiny_model_dir, tmp_path / "eight", 8))
    eight = InferenceEngine(eight_model, "tf", batch_size=4)     # more views than a batch holds: still every view
    logits = eight.logits(cells)
    assert np.max(np.abs(logits - eight.logits(turned))) < 1e-5
    assert np.max(np.abs(logits - eight.logits(mirrored))) < 1e-5
    # the same figures as the training library's evaluation of that folder (its calibration was fitted that way)
    assert np.max(np.abs(eight.probabilities(cells) - eight_model.predict_proba(cells))) < 1e-5
    assert np.max(np.abs(model.predict_proba(cells) - eight_model.predict_proba(cells, tta=False))) < 1e-5


def test_a_test_time_augmentation_the_app_cannot_honour_is_refused(tiny_model_dir, tmp_path):
    from training.modelfolder import ModelFolderError, read_meta

    with pytest.raises(ModelFolderError, match="test_time_augmentation.*1, 2, 4, 8"):
        read_meta(_with_tta(tiny_model_dir, tmp_path / "three", 3))
