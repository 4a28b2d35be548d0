"""The training loop on the real C-NMC fixtures with a tiny network (seconds, not hours)."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from training import TrainConfig, train
from training.augment import AugmentConfig
from training.datasets import DatasetError
from training.model import WeightsError
from training.modelfolder import ModelFolderError, load_model_folder, verify
from training.preprocess import preprocess_cell, read_rgb


def tiny_config(cnmc_root, tmp_path, **overrides):
    cfg = dict(data=str(cnmc_root), run_dir=str(tmp_path / "run"), output=str(tmp_path / "model"),
               name="tiny-test", backbone="tiny", input_size=32, epochs=2, batch_size=16, patience=0,
               augment=AugmentConfig().to_dict(), workers=2)
    cfg.update(overrides)
    return TrainConfig(**cfg)


@pytest.fixture(scope="module")
def trained(cnmc_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    events = []
    result = train(tiny_config(cnmc_root, tmp), on_progress=events.append)
    return result, events, tmp


def test_tiny_training_writes_a_self_describing_model_folder(trained):
    result, events, _ = trained
    assert not result.cancelled and result.model_folder.is_dir()
    meta = verify(result.model_folder)
    assert meta["class_names"] == ["HEM", "ALL"] and meta["positive_class"] == "ALL"
    assert meta["preprocessing"]["size"] == 32 and meta["input_size"] == [32, 32]
    assert 0 < meta["temperature"] and 0 <= meta["decision"]["threshold"] <= 1
    lo, hi = meta["decision"]["uncertainty_band"]
    assert lo <= meta["decision"]["threshold"] <= hi
    assert meta["training"]["data"]["per_class"] == {"HEM": 18, "ALL": 66}
    assert meta["metrics"]["test"]["n"] > 0 and "subject-disjoint" in meta["metrics"]["measured_on"]
    assert len(meta["weights"]["sha256"]) == 64
    # the network alone ships, not the optimizer's state (AdamW's would triple the file)
    import io
    import zipfile

    import h5py
    with zipfile.ZipFile(result.model_folder / meta["weights"]["file"]) as z:
        with h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as h5:
            assert "layers" in h5 and "optimizer" not in h5
    assert (result.model_folder / "figures" / "confusion_matrix.png").is_file()
    # progress: per batch with an ETA, per epoch, and a final event
    batch_events = [e for e in events if e.stage == "train" and e.batch and e.eta_s is not None]
    assert batch_events and {e.epoch for e in batch_events} == {1, 2}
    assert events[-1].stage == "done"


def test_reloaded_model_gives_bit_identical_predictions(trained, cnmc_root):
    result, _, _ = trained
    paths = sorted((cnmc_root / "training_data" / "fold_1").glob("*/*.png"))[:20]
    a = load_model_folder(result.model_folder)
    b = load_model_folder(result.model_folder)
    batch = np.stack([a.preprocess(read_rgb(p)) for p in paths])
    assert np.array_equal(batch, np.stack([preprocess_cell(read_rgb(p), b.preprocessing) for p in paths]))
    pa, pb = a.predict_proba(batch), b.predict_proba(batch)
    assert np.array_equal(pa, pb)
    # and equal to what the training run itself predicted for its test cells
    saved = np.load(result.run_dir / "test_predictions.npz")
    test_paths = list(saved["paths"])
    test_batch = np.stack([a.preprocess(read_rgb(p)) for p in test_paths])
    assert np.array_equal(a.logits(test_batch, batch_size=16), saved["logits"])  # same batching as training


def test_tampered_weight_file_is_refused(trained, tmp_path):
    result, _, _ = trained
    copy = tmp_path / "tampered"
    shutil.copytree(result.model_folder, copy)
    weights = copy / "model.keras"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFolderError, match="does not match its recorded SHA-256"):
        load_model_folder(copy)


def test_missing_or_foreign_model_folder_is_refused(tmp_path):
    with pytest.raises(ModelFolderError, match="not found"):
        load_model_folder(tmp_path / "none")
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match="cannot be read"):
        load_model_folder(tmp_path)


def test_cancel_keeps_last_checkpoint_and_resume_finishes(cnmc_root, tmp_path):
    cfg = tiny_config(cnmc_root, tmp_path, epochs=3)
    epochs_seen = []

    def progress(e):
        if e.stage == "train" and e.message.startswith("epoch"):
            epochs_seen.append(e.epoch)

    r1 = train(cfg, progress, should_stop=lambda: len(epochs_seen) >= 1)
    assert r1.cancelled and r1.model_folder is None
    assert not (tmp_path / "model").exists()          # no half-written model folder
    state = (tmp_path / "run" / "state.json").read_text()
    assert '"epochs_done": 1' in state
    with pytest.raises(FileExistsError, match="resume"):
        train(cfg)
    r2 = train(cfg, resume=True)
    assert not r2.cancelled and r2.model_folder.is_dir()
    assert len(r2.history["loss"]) == 3               # epoch 1 from the first session, 2-3 from the second


def test_fine_tune_from_a_model_folder_and_new_head(trained, cnmc_root, shared_data, tmp_path):
    result, _, _ = trained
    # same classes: fine-tune; 8 PBC classes: reuse only the backbone under a new head
    r = train(tiny_config(shared_data / "pbc", tmp_path, init="model", parent_model=str(result.model_folder),
                          epochs=1, head_epochs=1, split="image", leaky_image_split=True, val_fraction=0.2,
                          test_fraction=0.2))
    meta = verify(r.model_folder)
    assert len(meta["class_names"]) == 8 and meta["training"]["parent_model"] == str(result.model_folder)
    assert "warning" in meta["metrics"] and "IMAGE-LEVEL" in meta["metrics"]["warning"]
    assert meta["training"]["history"]["phase"] == ["head", "finetune"]


def test_imagenet_without_local_file_says_where_to_put_it(cnmc_root, tmp_path):
    cfg = tiny_config(cnmc_root, tmp_path, backbone="EfficientNetB3", init="imagenet")
    with pytest.raises(WeightsError, match="efficientnetb3_notop.h5.*never downloads|never downloads"):
        train(cfg)


def test_unreadable_training_image_is_named(cnmc_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(cnmc_root / "training_data" / "fold_1", data)
    (data / "all" / "UID_16_500_1_all.png").write_bytes(b"this is not a picture")
    with pytest.raises(DatasetError, match="UID_16_500_1_all.png"):
        train(tiny_config(data, tmp_path))


def test_cli_help_and_clear_errors(tmp_path):
    out = subprocess.run([sys.executable, "-m", "training", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "fit" in out.stdout and "evaluate" in out.stdout
    assert "For Research Use Only" in out.stdout
    out = subprocess.run([sys.executable, "-m", "training", "fit", "--data", str(tmp_path), "--backbone", "tiny",
                          "--run-dir", str(tmp_path / "r")], capture_output=True, text=True)
    assert out.returncode == 2
    assert "error: no images" in out.stderr and "Traceback" not in out.stderr


def test_cli_evaluate_warns_when_subjects_were_seen(trained, cnmc_root, tmp_path):
    result, _, _ = trained
    out = subprocess.run([sys.executable, "-m", "training", "evaluate", "--model", str(result.model_folder),
                          "--data", str(cnmc_root), "--out", str(tmp_path / "eval")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "weighted_f1" in out.stdout and "not an evaluation on unseen patients" in out.stdout
    assert (tmp_path / "eval" / "metrics.json").is_file()


def test_model_card_states_use_data_and_limits(trained):
    result, _, _ = trained
    card = (result.model_folder / "MODEL_CARD.md").read_text()
    assert "For Research Use Only. Not for use in diagnostic procedures." in card
    assert "CC BY 3.0" in card and "H10" in card and "subject" in card.lower()
    assert verify(result.model_folder)["weights"]["sha256"] in card
    assert "## Limitations" in card and "3 healthy subjects" in card


def test_card_command_adds_a_section_of_recipes_compared(trained, tmp_path):
    result, _, _ = trained
    folder = tmp_path / "model"
    shutil.copytree(result.model_folder, folder)
    table = tmp_path / "recipes.md"
    table.write_text("| recipe | weighted F1 |\n|---|---|\n| (a) from scratch | 0.700 |\n")
    run = subprocess.run([sys.executable, "-m", "training", "card", "--model", str(folder),
                          "--section", f"Recipes compared={table}"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    card = (folder / "MODEL_CARD.md").read_text()
    assert "## Recipes compared" in card and "| (a) from scratch | 0.700 |" in card
    verify(folder)                                  # the card is documentation: the hash still verifies


def test_card_command_flags_a_contrast_run_of_another_recipe(trained, tmp_path):
    """--paper-protocol takes a run's result (here the model's own model.json, same layout); a cross-validation of
    another recipe makes the card say the comparison is not like for like, and name what differs."""
    result, _, _ = trained
    folder = tmp_path / "model"
    shutil.copytree(result.model_folder, folder)
    meta = json.loads((folder / "model.json").read_text())
    cv = {"config": {**meta["training"]["config"], "epochs": meta["training"]["config"]["epochs"] + 7},
          "folds": [], "mean": {}, "sd": {}}
    (tmp_path / "cv.json").write_text(json.dumps(cv))
    run = subprocess.run([sys.executable, "-m", "training", "card", "--model", str(folder), "--cv-summary",
                          str(tmp_path / "cv.json"), "--paper-protocol", str(folder / "model.json")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    card = (folder / "MODEL_CARD.md").read_text()
    assert "Not like for like" in card and "epochs: " in card.split("Not like for like")[1]


def test_cross_validation_reports_each_fold_and_mean_sd(cnmc_root, tmp_path):
    from training.evaluate import cross_validate, format_cv_table

    cfg = tiny_config(cnmc_root, tmp_path, epochs=1, output=None)
    summary = cross_validate(cfg, k=3)
    assert len(summary["folds"]) == 3
    held_out = [set(f["test_subjects"]) for f in summary["folds"]]
    assert not (held_out[0] & held_out[1]) and set().union(*held_out) == {
        "16", "2", "23", "30", "32", "33", "34", "38", "44", "46", "51", "H10", "H14", "H22"}
    for f in summary["folds"]:
        assert len([s for s in f["test_subjects"] if s.startswith("H")]) == 1
        assert not set(f["test_subjects"]) & set(f["val_subjects"])
    assert set(summary["mean"]) >= {"weighted_f1", "roc_auc", "sensitivity", "specificity", "ece"}
    assert "mean" in format_cv_table(summary)
    # finished folds are reused, not retrained
    again = cross_validate(cfg, k=3)
    assert again["mean"] == summary["mean"]


def test_batchnorm_recalibration_updates_trainable_statistics_only(cnmc_root):
    import keras

    from training.epochs import recalibrate_batchnorm
    from training.model import build_classifier, set_trainable

    model = build_classifier("tiny", 32, 2)
    from training.preprocess import PreprocessConfig

    images = np.stack([preprocess_cell(read_rgb(p), PreprocessConfig(size=32))
                       for p in sorted((cnmc_root / "training_data" / "fold_1").glob("*/*.png"))[:32]])
    bn = [l for l in model.get_layer("backbone").layers if isinstance(l, keras.layers.BatchNormalization)][0]
    before = np.array(bn.moving_mean)
    assert recalibrate_batchnorm(model, images, 16) == 3
    after = np.array(bn.moving_mean)
    assert not np.allclose(before, after) and bn.momentum == 0.99   # momentum restored
    set_trainable(model, "head")
    assert recalibrate_batchnorm(model, images, 16) == 0               # frozen backbone untouched
    assert np.array_equal(np.array(bn.moving_mean), after)


def test_best_epoch_can_follow_validation_auc_of_unseen_subjects(cnmc_root, tmp_path):
    result = train(tiny_config(cnmc_root, tmp_path, output=None, epochs=3, monitor="val_auc", test_fraction=0.0))
    history = result.meta["training"]["history"]
    aucs = history["val_auc"]
    assert len(aucs) == 3 and all(0.0 <= a <= 1.0 for a in aucs)
    assert result.meta["training"]["best_epoch"] == int(np.argmax(aucs)) + 1
    last = train(tiny_config(cnmc_root, tmp_path / "last", output=None, epochs=3, monitor="last",
                             test_fraction=0.0))
    assert last.meta["training"]["best_epoch"] == 3 and len(last.meta["training"]["history"]["val_auc"]) == 3
    with pytest.raises(ValueError, match="monitor"):
        train(tiny_config(cnmc_root, tmp_path / "x", monitor="accuracy"))


def test_low_resolution_phase_hands_its_weights_to_the_full_size_network(cnmc_root, tmp_path):
    from training.runfolder import RunFolder
    from training.schedule import initial_model

    cfg = tiny_config(cnmc_root, tmp_path, lowres_size=16, lowres_epochs=2, epochs=1, max_steps_per_epoch=2)
    epochs_seen = []

    def stop_after_lowres():
        return len(epochs_seen) > 0 and epochs_seen[-1] >= 3

    # stop when the full-size phase is about to start: the checkpoint holds the low-resolution weights
    result = train(cfg, on_progress=lambda e: epochs_seen.append(e.epoch), should_stop=stop_after_lowres)
    assert result.cancelled and RunFolder(tmp_path / "run").load_state()["epochs_done"] == 2
    full = initial_model(cfg, 2)
    fresh = [w.copy() for w in full.get_weights()]
    full.load_weights(tmp_path / "run" / "last.weights.h5")     # 16-px weights load into the 32-px network
    assert any(not np.array_equal(a, b) for a, b in zip(fresh, full.get_weights()))

    result = train(cfg, resume=True)
    history = result.meta["training"]["history"]
    assert history["phase"] == ["lowres", "lowres", "finetune"]
    assert result.meta["training"]["best_epoch"] == 3          # only full-size epochs can be the best
    assert load_model_folder(result.model_folder).preprocessing.size == 32
    with pytest.raises(ValueError, match="lowres_size"):
        train(tiny_config(cnmc_root, tmp_path / "bad", lowres_epochs=1, lowres_size=64))


@pytest.mark.parametrize("train_batchnorm", [False, True])
def test_fine_tuning_keeps_or_relearns_batchnorm_statistics_as_asked(trained, cnmc_root, tmp_path, train_batchnorm):
    import keras

    result, _, _ = trained
    parent = load_model_folder(result.model_folder).network

    def bn_means(net):
        return [np.asarray(layer.moving_mean) for layer in net.get_layer("backbone").layers
                if isinstance(layer, keras.layers.BatchNormalization)]

    r = train(tiny_config(cnmc_root, tmp_path, init="model", parent_model=str(result.model_folder), epochs=1,
                          train_batchnorm=train_batchnorm, max_steps_per_epoch=2))
    child = load_model_folder(r.model_folder).network
    same = all(np.allclose(a, b) for a, b in zip(bn_means(parent), bn_means(child)))
    assert same is not train_batchnorm


def _weights_csv(data_root, path, weight_of):
    """A weights CSV for every image of a data folder: ``weight_of(relative path)``."""
    rows = ["path,weight"]
    for image in sorted(p for p in data_root.rglob("*") if p.suffix.lower() in (".png", ".bmp")):
        rel = image.relative_to(data_root).as_posix()
        rows.append(f"{rel},{weight_of(rel)}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_sample_weights_reach_the_loss(trained, cnmc_root, tmp_path):
    """``training fit --sample-weights``: a class whose images all weigh ~0 is not learnt (the network calls the
    training cells the other class), where the same run with every weight 1 learns both; the run records the file."""
    from training.modelfolder import load_model_folder, softmax

    x = np.stack([preprocess_cell(read_rgb(p), load_model_folder(trained[0].model_folder).preprocessing)
                  for p in sorted((cnmc_root / "training_data" / "fold_1").glob("*/*.png"))[::4]]).astype("float32")

    def mean_p_all(csv):
        result = train(tiny_config(cnmc_root, tmp_path / csv.stem, sample_weights=str(csv), epochs=4, monitor="last",
                                   lr=3e-3))
        model = load_model_folder(result.model_folder)
        return float(softmax(np.asarray(model.network.predict(x, verbose=0)))[:, 1].mean()), result

    even, _ = mean_p_all(_weights_csv(cnmc_root, tmp_path / "even.csv", lambda rel: 1))
    no_all, result = mean_p_all(_weights_csv(cnmc_root, tmp_path / "no_all.csv",
                                             lambda rel: 0.001 if rel.split("/")[-2] == "all" else 1))
    assert no_all < 0.6 * even and no_all < 0.2   # measured: 0.33 with every weight 1, 0.10 with ALL at 0.001
    meta = json.loads((result.model_folder / "model.json").read_text())
    assert meta["training"]["config"]["sample_weights"].endswith("no_all.csv")


def test_a_weights_file_missing_a_training_image_is_refused_with_its_name(cnmc_root, tmp_path):
    csv = _weights_csv(cnmc_root, tmp_path / "w.csv", lambda rel: 1)
    lines = csv.read_text().splitlines()
    dropped = lines.pop(5).split(",")[0]
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match="no weight for 1 training image") as refused:
        train(tiny_config(cnmc_root, tmp_path, sample_weights=str(csv)))
    assert dropped.split("/")[-1] in str(refused.value)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{dropped},-1\n")
    with pytest.raises(DatasetError, match="finite number >= 0"):
        train(tiny_config(cnmc_root, tmp_path / "b", sample_weights=str(bad)))
