"""``leukviewer retrain CASE... --out MODEL_DIR``: the wizard's retraining, headless, on a real reviewed case."""

import pytest

import training
from leukviewer import RUO_NOTICE
from leukviewer.__main__ import main
from leukviewer.core.model.registry import ModelRegistry
from leukviewer.core.retrain.data import FIRST_CASE_SUBJECT
from leukviewer.core.retrain.session import wizard_runs_dir
from training.modelfolder import verify

TINY = ["--epochs", "1", "--batch-size", "16", "--patience", "0", "--workers", "2", "--quiet"]


@pytest.fixture
def reviewed_case(shared_data, make_reviewed_case, tmp_path):
    """Two real BCCD fields analysed as the window does, three cells reviewed: ALL, HEM, UNCERTAIN."""
    fields = sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[:2]
    return make_reviewed_case(tmp_path / "case-7", fields, ("ALL", "HEM", "UNCERTAIN"))[0].folder


@pytest.fixture
def train_spy(monkeypatch):
    calls = []
    real = training.train

    def spy(config, *args, **kwargs):
        calls.append(config)
        return real(config, *args, **kwargs)

    monkeypatch.setattr(training, "train", spy)
    return calls


def test_retrain_fine_tunes_on_the_reviewed_case_and_a_folder_with_the_wizards_plan(
        reviewed_case, cnmc_root, tiny_model_dir, tmp_path, train_spy, capsys, folder_digest):
    bundled_before = folder_digest(tiny_model_dir)
    out = tmp_path / "new-model"
    code = main(["retrain", str(reviewed_case), "--data", str(cnmc_root), "--out", str(out),
                 "--parent", str(tiny_model_dir), "--name", "lab-model", "--activate", *TINY])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    meta = verify(out)   # a complete model folder, weights matching their hash
    assert meta["name"] == "lab-model" and meta["training"]["parent_model"] == str(tiny_model_dir)
    [config] = train_spy   # one call of the library's train, with the config the wizard's plan builds
    assert (config.init, config.backbone, config.input_size, config.split, config.output) == (
        "model", "tiny", 32, "subject", str(out))
    assert (config.head_epochs + config.epochs, config.batch_size) == (1, 16)
    assert str(FIRST_CASE_SUBJECT) in meta["training"]["data"]["per_subject"]   # the case is one subject
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "2 cells reviewed in leukviewer in 1 case(s) (case-7 = subject 9001)" in card
    assert "the labelled folder" in card and "1 cells reviewed as UNCERTAIN were left out" in card
    assert "UNCERTAIN" in printed.out and f"model folder written: {out}" in printed.out and RUO_NOTICE in printed.out
    registry = ModelRegistry()
    assert registry.active().sha256 == meta["weights"]["sha256"]          # --activate: the wizard's Accept
    assert not [p for p in wizard_runs_dir().iterdir() if not p.name.startswith(".")]   # work files removed
    assert folder_digest(tiny_model_dir) == bundled_before


def test_retrain_refuses_a_folder_without_a_review(tmp_path, train_spy, capsys):
    unreviewed = tmp_path / "unreviewed"
    unreviewed.mkdir()
    assert main(["retrain", str(unreviewed), "--out", str(tmp_path / "m"), *TINY]) == 2
    assert "no reviewed case" in capsys.readouterr().err
    assert not train_spy and not (tmp_path / "m").exists()


def test_retrain_refuses_too_few_labelled_cells(reviewed_case, tiny_model_dir, tmp_path, train_spy, capsys):
    out = tmp_path / "m"
    assert main(["retrain", str(reviewed_case), "--out", str(out), "--parent", str(tiny_model_dir), *TINY]) == 1
    err = capsys.readouterr().err
    assert "too few labelled cells to train: HEM 1, ALL 1 (each class needs at least 10)" in err
    assert not train_spy and not out.exists()


def test_retrain_refuses_an_existing_model_folder_and_an_unusable_parent(reviewed_case, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "model.json").write_text("{}")
    assert main(["retrain", str(reviewed_case), "--out", str(taken), *TINY]) == 2
    assert "must be a new (or empty) folder" in capsys.readouterr().err
    assert main(["retrain", str(reviewed_case), "--out", str(tmp_path / "m"), "--parent", str(tmp_path), *TINY]) == 2
    assert "the model to fine-tune cannot be read" in capsys.readouterr().err


def test_ctrl_c_stops_training_after_the_current_batch_and_writes_no_model(reviewed_case, cnmc_root, tiny_model_dir,
                                                                            tmp_path, monkeypatch, capsys):
    import os
    import signal

    real = training.train

    def interrupted(config, on_progress=None, **kwargs):
        def progress(event):
            if event.stage == "train" and event.batch == 1 and not event.message:
                os.kill(os.getpid(), signal.SIGINT)   # the user presses Ctrl+C during the first batch
            on_progress(event)
        return real(config, on_progress=progress, **kwargs)

    monkeypatch.setattr(training, "train", interrupted)
    out = tmp_path / "m"
    code = main(["retrain", str(reviewed_case), "--data", str(cnmc_root), "--out", str(out),
                 "--parent", str(tiny_model_dir), *TINY, "--epochs", "3"])
    assert code == 130 and f"stopped; no model folder was written to {out}" in capsys.readouterr().err
    assert not out.exists() and not [p for p in wizard_runs_dir().iterdir() if not p.name.startswith(".")]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # the handler is put back
