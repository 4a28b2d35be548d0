"""LiteRT is what users get: a conversion shipped beside the model folder (the installer's) is used as is, a stale
or damaged one never runs, the batch CLI says in one line when it falls back to TensorFlow, and the window converts
a model without one in the background and switches to it."""
import shutil

import numpy as np
import pytest

from leukviewer.core.model.engine import SHIPPED_SUFFIX, InferenceEngine, find_conversion
from training.modelfolder import load_model_folder, write_manifest
from training.preprocess import read_rgb


@pytest.fixture(scope="module")
def crops(cnmc_root):
    return sorted((cnmc_root / "training_data" / "fold_1").glob("*/*.png"))[::6]


def move_into_shipped(conversion, folder):
    shipped = folder.parent / (folder.name + SHIPPED_SUFFIX)
    shipped.mkdir()
    for path in (conversion, conversion.with_name(conversion.name + ".sha256")):
        shutil.move(path, shipped / path.name)
    return shipped / conversion.name


def test_the_conversion_shipped_beside_the_model_is_used_and_a_stale_or_damaged_one_never_runs(
        tiny_model_dir, tmp_path, monkeypatch, crops):
    folder = shutil.copytree(tiny_model_dir, tmp_path / "models" / "tiny")
    model = load_model_folder(folder)
    cells = np.stack([model.preprocess(read_rgb(p)) for p in crops])
    monkeypatch.setenv("LEUKVIEWER_CACHE_DIR", str(tmp_path / "build-machine-cache"))
    shipped = move_into_shipped(InferenceEngine(model, "tflite", batch_size=8).tflite_path(), folder)

    monkeypatch.setenv("LEUKVIEWER_CACHE_DIR", str(tmp_path / "user-cache"))   # a user's first start
    auto = InferenceEngine(model, "auto", batch_size=8)
    assert auto.backend == "tflite" and auto.tflite_path() == shipped and find_conversion(folder) == shipped
    assert not (tmp_path / "user-cache").exists()                               # nothing converted
    tf_engine = InferenceEngine(model, "tf", batch_size=8)
    assert np.max(np.abs(auto.probabilities(cells)[:, 1] - tf_engine.probabilities(cells)[:, 1])) <= 1e-3

    good = shipped.read_bytes()
    shipped.write_bytes(good[:-64] + b"\0" * 64)                                # damaged: never run
    assert find_conversion(folder) is None and InferenceEngine(model, "auto", batch_size=8).backend == "tf"
    shipped.write_bytes(good)

    meta = (folder / "model.json").read_text()                                  # another model (re-sealed)
    (folder / "model.json").write_text(meta.replace('"threshold"', '"threshold_note": "edited", "threshold"', 1))
    write_manifest(folder)
    changed = load_model_folder(folder)
    assert find_conversion(folder) is None                                      # keyed by the manifest: stale
    assert InferenceEngine(changed, "auto", batch_size=8).backend == "tf"


def test_batch_cli_says_in_one_line_when_auto_runs_on_tensorflow(tiny_model_dir, crops, tmp_path, capsys):
    from leukviewer.__main__ import main

    case = tmp_path / "case"
    case.mkdir()
    for p in crops[:3]:
        shutil.copy2(p, case / p.name)
    args = ["batch", str(case), "--model", str(tiny_model_dir), "--quiet"]
    assert main([*args, "--out", str(tmp_path / "tf")]) == 0
    assert "no LiteRT conversion yet, so this run uses TensorFlow" in capsys.readouterr().err
    InferenceEngine(load_model_folder(tiny_model_dir), "tflite", batch_size=4)   # what --prepare-engine does
    assert main([*args, "--out", str(tmp_path / "litert")]) == 0
    assert "LiteRT" not in capsys.readouterr().err
    tf_rows = (tmp_path / "tf" / "cells.csv").read_text().splitlines()
    lite_rows = (tmp_path / "litert" / "cells.csv").read_text().splitlines()
    assert len(tf_rows) == len(lite_rows) == 4


def test_a_model_with_its_conversion_is_ready_without_tensorflow(tiny_model_dir, tmp_path, crops, monkeypatch):
    """The window and the batch CLI start on LiteRT in about a second: neither TensorFlow nor the Keras network is
    loaded until something needs them (Grad-CAM, the TensorFlow engine)."""
    import json
    import os
    import subprocess
    import sys

    folder = shutil.copytree(tiny_model_dir, tmp_path / "models" / "tiny")
    monkeypatch.setenv("LEUKVIEWER_CACHE_DIR", str(tmp_path / "cache"))
    env = dict(os.environ)
    InferenceEngine(load_model_folder(folder), "tflite", batch_size=8)   # (converted here, as at install)
    probe = ("import json, sys; from leukviewer.core.model.classifier import CellClassifier; "
             "from training.preprocess import read_rgb; "
             f"c = CellClassifier({str(folder)!r}); "
             f"p = c.blast_probabilities(__import__('numpy').stack([c.model.preprocess(read_rgb({str(crops[0])!r}))])); "
             "print(json.dumps([c.device, 'tensorflow' in sys.modules, 'keras' in sys.modules, "
             "c.model.network_loaded, float(p[0])]))")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    device, tf_imported, keras_imported, network_loaded, p = json.loads(out.stdout.strip().splitlines()[-1])
    assert "LiteRT" in device and not tf_imported and not keras_imported and not network_loaded
    assert 0.0 <= p <= 1.0


def test_every_litert_batch_shape_is_prepared_at_load_never_during_an_analysis(tiny_model_dir, tmp_path,
                                                                                 monkeypatch):
    """Making a LiteRT interpreter holds the GIL for 50-160 ms (B3): made on a batch's first use, it froze the
    window mid-analysis. Warmed up at load, batches of any size find theirs ready."""
    folder = shutil.copytree(tiny_model_dir, tmp_path / "models" / "tiny")
    monkeypatch.setenv("LEUKVIEWER_CACHE_DIR", str(tmp_path / "cache"))
    engine = InferenceEngine(load_model_folder(folder), "tflite")   # its own batch: 8 on LiteRT (README)
    assert engine.batch_size == 8
    assert InferenceEngine(load_model_folder(folder), "tflite", batch_size=16).batch_size == 16   # asked for: kept
    engine.warm_up()
    prepared = set(engine._interpreters)
    assert prepared == set(engine.buckets()) == {1, 2, 4, 8}
    made = []
    monkeypatch.setattr(engine, "_Interpreter", lambda *a, **k: made.append(a) or pytest.fail("made mid-analysis"))
    for n in (1, 3, 5, 8, 13):
        assert engine.logits(np.zeros((n, engine.size, engine.size, 3), np.uint8)).shape[0] == n
    assert not made
