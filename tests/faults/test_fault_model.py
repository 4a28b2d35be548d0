"""A model folder altered after it was saved: an edited model.json, tampered weights, an added file, a folder
without a manifest, a tampered LiteRT cache; Grad-CAM sharing the engine with the analysis."""
import hashlib
import json
import shutil
import threading
import time

from pathlib import Path

import numpy as np
import pytest

from training.modelfolder import (MANIFEST_FILE, ModelFolderError, load_model_folder, manifest_sha256,
                                  verify_folder)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    """A copy of the tiny model folder (written by the training library, so it has its manifest)."""
    return shutil.copytree(tiny_model_dir, tmp_path / "model")


def edit_threshold(folder, threshold=0.01):
    meta_path = folder / "model.json"
    meta = json.loads(meta_path.read_text())
    meta.setdefault("decision", {})["threshold"] = threshold
    meta_path.write_text(json.dumps(meta, indent=2))


def test_a_saved_model_folder_has_a_manifest_covering_model_json_and_the_weights(model_copy):
    listed = [line.split("  ", 1)[1] for line in (model_copy / MANIFEST_FILE).read_text().splitlines()]
    assert "model.json" in listed and "model.keras" in listed and "MODEL_CARD.md" not in listed
    meta, digest = verify_folder(model_copy)
    assert digest == hashlib.sha256((model_copy / MANIFEST_FILE).read_bytes()).hexdigest()


def test_the_bundled_model_carries_a_manifest_that_verifies():
    folder = REPO / "assets" / "models" / "leukviewer-b3"
    if not (folder / "model.json").is_file():
        pytest.skip("the bundled model is not in this checkout")
    assert verify_folder(folder)[1] == manifest_sha256(folder)


def test_an_edited_threshold_in_model_json_is_refused_naming_the_file(model_copy):
    edit_threshold(model_copy)
    with pytest.raises(ModelFolderError, match=r"model\.json in .* was changed after the model was saved.*"
                                               r"refusing to load it"):
        load_model_folder(model_copy)


def test_the_batch_command_refuses_an_edited_model_json_before_any_analysis(model_copy, tmp_path, shared_data,
                                                                             run_cli):
    edit_threshold(model_copy)
    run = run_cli("leukviewer", "batch", shared_data / "bccd" / "JPEGImages", "--out", tmp_path / "out",
                  "--model", model_copy, "--quiet")
    assert run.returncode == 2
    assert "model.json" in run.stderr and "was changed after the model was saved" in run.stderr
    assert not list((tmp_path / "out").glob("*.json"))


def test_tampered_weights_and_an_added_file_are_refused(model_copy):
    original = (model_copy / "model.keras").read_bytes()
    with open(model_copy / "model.keras", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelFolderError, match=r"weight file model\.keras in .* does not match its recorded SHA"):
        load_model_folder(model_copy)
    (model_copy / "model.keras").write_bytes(original)
    (model_copy / "calibration.json").write_text("{}")
    with pytest.raises(ModelFolderError, match=r"holds calibration\.json, which its manifest\.sha256 does not list"):
        load_model_folder(model_copy)
    (model_copy / "calibration.json").unlink()
    (model_copy / "MODEL_CARD.md").write_text("# edited card\n")      # documentation only: still loads
    (model_copy / ".DS_Store").write_bytes(b"\0\1")
    assert load_model_folder(model_copy).manifest_sha256 == manifest_sha256(model_copy)


def test_a_folder_without_manifest_loads_with_a_visible_warning_until_sealed(model_copy, run_cli):
    (model_copy / MANIFEST_FILE).unlink()
    legacy = load_model_folder(model_copy)
    assert legacy.manifest_sha256 is None
    assert "has no manifest.sha256" in legacy.integrity_warning and "python -m training manifest" in \
        legacy.integrity_warning
    run = run_cli("training", "manifest", model_copy)
    assert run.returncode == 0, run.stderr
    sealed = load_model_folder(model_copy)
    assert sealed.integrity_warning is None and sealed.manifest_sha256 in run.stdout
    edit_threshold(model_copy)                     # sealing refuses to bless a later edit silently
    check = run_cli("training", "manifest", "--check", model_copy)
    assert check.returncode == 2 and "model.json" in check.stderr


def test_a_tampered_litert_cache_is_converted_again_never_run(tiny_model_dir, cnmc_root, caplog):
    from leukviewer.core.model.engine import InferenceEngine
    from training.preprocess import read_rgb

    model = load_model_folder(tiny_model_dir)
    cells = np.stack([model.preprocess(read_rgb(p))
                      for p in sorted((cnmc_root / "training_data" / "fold_1").glob("*/*.png"))[:8]])
    first = InferenceEngine(model, "tflite", batch_size=8)
    path = first.tflite_path()
    assert model.manifest_sha256[:32] in path.name          # keyed by the whole folder, not the weights alone
    reference = first.probabilities(cells)
    good = path.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2:len(damaged) // 2 + 64] = b"\xff" * 64
    path.write_bytes(bytes(damaged))
    assert InferenceEngine(model, "auto", batch_size=8).backend == "tf"   # auto does not trust it
    again = InferenceEngine(model, "tflite", batch_size=8)
    assert path.read_bytes() == good or hashlib.sha256(path.read_bytes()).hexdigest() == \
        (path.parent / (path.name + ".sha256")).read_text().strip()
    assert "does not match its recorded SHA-256" in caplog.text
    assert np.max(np.abs(again.probabilities(cells) - reference)) < 1e-6


def test_grad_cam_waits_for_the_engine_lock(tiny_model_dir, cnmc_root):
    from leukviewer.core.model.classifier import CellClassifier
    from leukviewer.core.model.gradcam import GradCam, cell_heatmap
    from training.preprocess import read_rgb

    classifier = CellClassifier(tiny_model_dir, backend="tf")
    crop = read_rgb(sorted((cnmc_root / "training_data" / "fold_1").glob("all/*.png"))[0])
    try:
        cam = GradCam(classifier.model.network)
    except Exception as e:   # the tiny network may have no backbone layer Grad-CAM can use
        pytest.skip(f"no Grad-CAM for the tiny network: {e}")
    done = threading.Event()
    with classifier.engine.lock:          # the analysis worker is running the network
        worker = threading.Thread(target=lambda: (cell_heatmap(classifier, crop, cam=cam), done.set()))
        worker.start()
        time.sleep(0.5)
        assert not done.is_set(), "Grad-CAM ran the network while the engine held it"
    worker.join(60)
    assert done.is_set()


def test_a_model_json_without_a_decision_threshold_is_refused_never_read_as_0_5(model_copy):
    from leukviewer.core.model.descriptor import ModelDescriptor
    from training.modelfolder import read_meta

    meta_path = model_copy / "model.json"
    meta = json.loads(meta_path.read_text())
    del meta["decision"]
    meta_path.write_text(json.dumps(meta, indent=2))
    with pytest.raises(ModelFolderError, match="no usable decision threshold"):
        read_meta(model_copy)
    with pytest.raises(ModelFolderError, match="no usable decision threshold"):
        ModelDescriptor.from_folder(model_copy)
