"""core/retrain without Qt: the plan (choices -> TrainConfig), the time estimate, the comparison notes, the card."""
import argparse
import json
import shutil

import pytest

import training
from leukviewer.core.model.registry import ModelRegistry, RegisteredModel
from leukviewer.core.retrain.card import write_retrain_card
from leukviewer.core.retrain.compare import comparison_notes, format_value, refine_overlap_warning
from leukviewer.core.retrain.data import too_few_cells
from leukviewer.core.retrain.estimate import SpeedEstimate, estimate_from_batch_times, format_duration
from leukviewer.core.retrain.plan import (PlanError, RetrainChoices, parent_model_of, schedule, train_config)


def test_fine_tuning_choices_become_the_train_config_the_library_runs(tiny_model_dir):
    choices = RetrainChoices(init="model", backbone="tiny", input_size=32, batch_size=16, epochs=8,
                             freeze="frozen_then_unfrozen", parent_model=str(tiny_model_dir),
                             imagenet_weights="/not/used.h5", name="  ", version="2026.12.01",
                             extra={"patience": 0, "workers": 2, "epochs": 99, "data": "/elsewhere"})
    config = train_config(choices, "/data", "/runs/1", "/models/new")
    assert isinstance(config, training.TrainConfig)
    assert (config.data, config.run_dir, config.output) == ("/data", "/runs/1", "/models/new")
    assert (config.init, config.parent_model, config.imagenet_weights) == ("model", str(tiny_model_dir), None)
    assert (config.head_epochs, config.epochs) == (2, 6)           # a quarter frozen, then the whole network
    assert (config.split, config.leaky_image_split) == ("subject", False)
    assert (config.patience, config.workers) == (0, 2)              # other fields pass through ...
    assert config.name == "leukviewer-retrained"                    # ... chosen ones are never overridden
    assert training.TrainConfig.from_dict(config.to_dict()) == config  # what a session saves, it can resume


def test_fine_tuning_a_trained_model_learns_ten_times_more_gently_than_from_imagenet(tiny_model_dir):
    """At the from-ImageNet rate (1e-3) a trained B3 lost what it knew within five batches of a fine-tune (loss
    0.93 -> 2.3); the wizard and ``python -m training fit --init model`` start at 1e-4 unless told otherwise."""
    from training.cli import _add_recipe, _config_from

    def lr(init, extra=None):
        choices = RetrainChoices(init=init, backbone="tiny", input_size=32, parent_model=str(tiny_model_dir),
                                 imagenet_weights="/w.h5", freeze="unfrozen", extra=extra or {})
        return train_config(choices, "/data", "/runs/1", None).lr

    assert lr("model") == 1e-4
    assert lr("imagenet") == lr("scratch") == 1e-3
    assert lr("model", {"lr": 5e-4}) == 5e-4            # a rate the caller sets is kept
    parser = argparse.ArgumentParser()
    _add_recipe(parser)
    for argv, expected in ((["--init", "model"], 1e-4), ([], 1e-3), (["--init", "model", "--lr", "3e-4"], 3e-4)):
        args = parser.parse_args(["--data", "/d", "--run-dir", "/r", "--name", "n", "--version", "1"] + argv)
        assert _config_from(args).lr == expected, argv


def test_an_image_split_is_declared_leaky_and_augmentation_can_be_off():
    config = train_config(RetrainChoices(init="scratch", freeze="unfrozen", by_subject=False, augment=False,
                                         epochs=3), "/d", "/r", None)
    assert (config.split, config.leaky_image_split, config.output) == ("image", True, None)
    assert (config.head_epochs, config.epochs, config.parent_model) == (0, 3, None)
    assert config.augment != training.TrainConfig(data="x").augment


@pytest.mark.parametrize("epochs, freeze, expected", [(8, "frozen_then_unfrozen", (2, 6)), (1, "frozen_then_unfrozen",
                                                      (0, 1)), (5, "frozen", (5, 0)), (5, "unfrozen", (0, 5))])
def test_schedule_splits_the_epochs_between_frozen_and_unfrozen(epochs, freeze, expected):
    assert schedule(epochs, freeze) == expected


@pytest.mark.parametrize("choices, words", [
    (RetrainChoices(init="scratch", freeze="frozen"), "cannot be kept frozen"),
    (RetrainChoices(init="model", parent_model=None), "needs the model to start from"),
    (RetrainChoices(init="pretrained"), "unknown starting point")])
def test_impossible_choices_are_refused_in_words(choices, words):
    with pytest.raises(PlanError, match=words):
        train_config(choices, "/d", "/r", None)


def test_the_model_to_fine_tune_must_be_a_readable_blast_classifier(tiny_model_dir, multiclass_model_dir, tmp_path):
    assert parent_model_of(str(tiny_model_dir), None).folder == tiny_model_dir
    registry = ModelRegistry(bundled=tiny_model_dir)
    assert parent_model_of(None, registry.active()).sha256 == registry.active().sha256
    with pytest.raises(PlanError, match="not an ALL/HEM classifier"):
        parent_model_of(str(multiclass_model_dir), None)
    with pytest.raises(PlanError, match="cannot be read"):
        parent_model_of(str(tmp_path), None)
    with pytest.raises(PlanError, match="active model cannot be fine-tuned"):
        parent_model_of(None, RegisteredModel("x", tmp_path, False, None, "its weights are missing"))


def test_the_estimate_adds_overhead_epochs_and_prediction_and_says_so():
    # batches ended at 10 s (compiling), then every 2 s: 2 s a batch, 8 s overhead
    estimate = estimate_from_batch_times([10.0, 12.0, 14.0, 16.0], 0.0, batches_per_epoch=50, images=1000,
                                         batch_size=20)
    assert (estimate.per_batch_s, estimate.overhead_s) == (2.0, 8.0)
    # predict 15 batches at 2/3 s: per epoch 100 s + half of 10 s; once more 10 s at the end
    assert estimate.total_seconds(3) == pytest.approx(8 + 3 * 105 + 10)
    assert estimate.describe(3).startswith("About 5 min 33 s for 3 epoch(s) (measured 2.00 s per batch of 20, 50 ")
    assert SpeedEstimate(1.0, 10, 0.0, 0, 8).total_seconds(2) == 20.0
    assert [format_duration(s) for s in (None, 42, 185, 7620)] == ["–", "42 s", "3 min 05 s", "2 h 07 min"]


def test_too_few_cells_names_the_small_class():
    assert too_few_cells({"per_class": {"ALL": 40, "HEM": 12}}) == ""
    message = too_few_cells({"per_class": {"HEM": 1, "ALL": 1}})
    assert message.startswith("too few labelled cells to train: HEM 1, ALL 1") and "at least 10" in message


def test_comparison_notes_and_the_overlap_warning_name_what_flatters_a_model():
    active = {"n": 30, "warning": "library warning"}
    meta = {"training": {"split": {"train": {"subjects": ["3", "7"]}, "val": {"subjects": ["9"]}}}}
    refine_overlap_warning(active, meta, ["7", "9", "12"])
    assert active["warning"].startswith("2 of these subjects (7, 9) were in its training or validation part")
    clean = {"n": 30, "warning": "library warning"}
    refine_overlap_warning(clean, meta, ["12"])
    assert "warning" not in clean
    notes = comparison_notes({"new": {"n": 30}, "active": active, "active_error": ""})
    assert notes[0].startswith("Active model: 2 of these subjects") and "Only 30 held-out cells" in notes[1]
    assert [format_value(v) for v in (None, 0.91234, 7)] == ["–", "0.912", "7"]


def test_the_card_of_a_retrained_model_names_its_cases_parent_and_comparison(tiny_model_dir, tmp_path):
    folder = tmp_path / "candidate"
    shutil.copytree(tiny_model_dir, folder)
    parent = ModelRegistry(bundled=tiny_model_dir).active()
    config = training.TrainConfig(data="/d", init="model", parent_model=str(tiny_model_dir))
    sources = {"folder": None, "reviewed": {"images": 5, "uncertain_excluded": 2,
                                            "cases": [{"folder": "/lab/case-7", "subject": "9001"}]}}
    figures = {"n": 12, "weighted_f1": 0.75, "per_class": {}}
    comparison = {"subjects": ["9001", "H3"], "new": figures, "active": dict(figures, weighted_f1=0.5)}
    card = write_retrain_card(folder, config, sources, None, parent, comparison).read_text(encoding="utf-8")
    assert "5 cells reviewed in leukviewer in 1 case(s) (case-7 = subject 9001); 2 cells reviewed as UNCERTAIN" in card
    assert f"parent model {parent.display_name}, SHA-256 {parent.sha256}" in card
    assert "| weighted F1 | 0.750 | 0.500 |" in card and "(9001, H3)" in card
    assert "not confirmed by flow cytometry" in card
    assert json.loads((folder / "model.json").read_text()) == json.loads((tiny_model_dir / "model.json").read_text())
