"""``python -m training calibrate``: a model folder's temperature, threshold and band fitted again on other cells,
optionally on the mean of N flips/rotations, which the app then averages too. The weights never change."""
import json

import numpy as np

from training.cli import main as training_main
from training.modelfolder import load_model_folder
from training.preprocess import read_rgb


def test_calibrating_again_keeps_the_weights_records_the_views_and_the_app_averages_them(
        tiny_model_dir, cnmc_root, tmp_path, capsys):
    from leukviewer.core.model.classifier import CellClassifier

    out = tmp_path / "recalibrated"
    code = training_main(["calibrate", "--model", str(tiny_model_dir), "--data", str(cnmc_root), "--unseen",
                          "--tta", "2", "--version", "0.0.2", "--out", str(out)])
    assert code in (0, None), capsys.readouterr().err
    assert "views 2" in capsys.readouterr().out
    old, new = load_model_folder(tiny_model_dir), load_model_folder(out)      # verified whole: a new manifest
    assert new.sha256 == old.sha256                                           # the same network
    assert new.meta["version"] == "0.0.2" and new.tta_views == 2 and old.tta_views == 1
    assert new.meta["calibration"]["fitted_on"] != old.meta["calibration"]["fitted_on"]
    cal = new.meta["calibration"]
    trained_on = old.meta["training"]["split"]["train"]["subjects"]
    unseen = sorted({p.name.split("_")[1] for p in (cnmc_root / "training_data").rglob("*.png")} - set(trained_on))
    assert f"{6 * len(unseen)} images" in cal["fitted_on"] and ", ".join(unseen) in cal["fitted_on"]
    assert cal["recalibrated_from"]["version"] == "0.0.1"
    card = (out / "MODEL_CARD.md").read_text()
    assert "tiny-test-model 0.0.2" in card and "logits of 2 flips/rotations" in card
    assert f"T = {new.temperature:.3f}" in card
    # the app runs what the calibration was fitted on: a cell and its mirror image get one P(ALL)
    classifier = CellClassifier(out, backend="tf", batch_size=8)
    cells = np.stack([new.preprocess(read_rgb(p))
                      for p in sorted((cnmc_root / "training_data" / "fold_1" / "all").glob("*.png"))[:6]])
    p = classifier.blast_probabilities(cells)
    assert np.allclose(p, classifier.blast_probabilities(cells[:, :, ::-1].copy()), atol=1e-5)
    assert np.allclose(p, new.predict_proba(cells)[:, new.positive_index], atol=1e-5)


def test_calibration_on_subjects_that_are_not_there_or_were_trained_on_or_over_a_folder_is_refused(
        tiny_model_dir, cnmc_root, tmp_path, capsys):
    code = training_main(["calibrate", "--model", str(tiny_model_dir), "--data", str(cnmc_root),
                          "--subjects", "32,H99", "--out", str(tmp_path / "new")])
    assert code == 2 and "H99 not found" in capsys.readouterr().err and not (tmp_path / "new").exists()
    trained_on = json.loads((tiny_model_dir / "model.json").read_text())["training"]["split"]["train"]["subjects"]
    code = training_main(["calibrate", "--model", str(tiny_model_dir), "--data", str(cnmc_root),
                          "--subjects", trained_on[0], "--out", str(tmp_path / "new")])
    assert code == 2 and "in the network's training data" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    code = training_main(["calibrate", "--model", str(tiny_model_dir), "--data", str(cnmc_root),
                          "--out", str(tmp_path / "taken")])
    assert code == 2 and "already exists" in capsys.readouterr().err
    assert json.loads((tiny_model_dir / "model.json").read_text())["version"] == "0.0.1"   # the source untouched


def test_a_model_trained_to_calibrate_on_flips_says_so_and_the_app_reproduces_its_test_figures(cnmc_root, tmp_path):
    from leukviewer.core.model.engine import InferenceEngine
    from training import TrainConfig, train
    from training.modelfolder import softmax

    result = train(TrainConfig(data=str(cnmc_root), run_dir=str(tmp_path / "run"), output=str(tmp_path / "model"),
                               name="tiny-tta", backbone="tiny", input_size=32, epochs=1, batch_size=16, patience=0,
                               workers=2, tta=2))
    model = load_model_folder(result.model_folder)
    assert model.meta["test_time_augmentation"]["views"] == 2 and model.tta_views == 2
    assert "logits of 2 flips/rotations" in (result.model_folder / "MODEL_CARD.md").read_text()
    saved = np.load(result.run_dir / "test_predictions.npz")   # what the run measured its test figures on
    cells = np.stack([model.preprocess(read_rgb(p)) for p in saved["paths"]])
    engine = InferenceEngine(model, "tf", batch_size=16)
    assert np.allclose(engine.probabilities(cells), softmax(saved["logits"], model.temperature), atol=1e-5)
