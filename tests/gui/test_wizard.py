"""The retraining wizard and the model manager, driven offscreen on the real C-NMC fixtures with a tiny network."""
import shutil
import threading

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMainWindow, QWizard

import training
from leukviewer.core.model.registry import BUNDLED, ModelRegistry
from leukviewer.core.retrain.data import FIRST_CASE_SUBJECT
from leukviewer.core.retrain.session import RetrainSession
from leukviewer.gui import worker as worker_module
from leukviewer.gui.model_manager import ModelManagerDialog
from leukviewer.gui.retrain.wizard import (PAGE_ACCEPT, PAGE_EVALUATE, PAGE_SETTINGS, PAGE_TRAIN, RetrainWizard,
                                           install_menus, open_retrain_wizard)
from training.modelfolder import load_model_folder, verify

TINY = {"epochs": 1, "batch_size": 16, "patience": 0, "workers": 2}
LONG = 180_000


class FakeMainWindow(QMainWindow):
    """Stands in for the review window: records the model folders it is told to use."""

    def __init__(self):
        super().__init__()
        self.model_folders = []

    def set_model_folder(self, folder):
        self.model_folders.append(folder)


@pytest.fixture
def registry(tiny_model_dir):
    return ModelRegistry(bundled=tiny_model_dir)   # the tiny model plays the bundled one (never modified)


@pytest.fixture
def train_spy(monkeypatch):
    """Wraps the library's train: every call is recorded, then the real function runs."""
    calls = []
    real = training.train

    def spy(config, *args, **kwargs):
        calls.append((config, kwargs))
        return real(config, *args, **kwargs)

    monkeypatch.setattr(training, "train", spy)
    return calls


@pytest.fixture
def close_all(qtbot):
    """Closes the given wizards/dialogs at the end and waits until every worker has ended."""
    widgets = []
    yield widgets.append
    for widget in widgets:
        try:
            if isinstance(widget, RetrainWizard) and widget.isVisible():
                widget.reject()
                qtbot.waitUntil(lambda: not widget.busy(), timeout=LONG)
        except RuntimeError:  # already deleted (WA_DeleteOnClose)
            pass
    qtbot.waitUntil(lambda: not worker_module.active_workers(), timeout=LONG)


def next_button(wizard):
    return wizard.button(QWizard.WizardButton.NextButton)


def click_next(qtbot, wizard):
    assert next_button(wizard).isEnabled()
    qtbot.mouseClick(next_button(wizard), Qt.MouseButton.LeftButton)


def wait_data(qtbot, wizard):
    qtbot.waitUntil(lambda: wizard.data_page.prepared is not None and not wizard.data_page.is_checking(),
                    timeout=LONG)


def test_wizard_trains_through_the_library_and_accept_activates_the_new_model(folder_digest,
        qtbot, registry, cnmc_root, tiny_model_dir, train_spy, close_all):
    bundled_before = folder_digest(tiny_model_dir)
    window = FakeMainWindow()
    qtbot.addWidget(window)
    wizard = open_retrain_wizard(window, registry, case_folders=[], defaults={**TINY, "data": str(cnmc_root)})
    close_all(wizard)

    # 1 Data: counts per class and subject, warnings.
    wait_data(qtbot, wizard)
    page = wizard.data_page
    assert "84 images" in page.status.text() and "14 subjects" in page.status.text()
    assert page.counts.topLevelItemCount() == 15   # a total row + one per subject
    assert "HEM has only 18" in page.warnings.text()
    wizard.grab().save("/tmp/leukviewer_wizard_1_data.png")

    # 2 Settings: fine-tune the active model by default; ImageNet off with the reason; a measured estimate.
    with qtbot.waitSignal(wizard.estimateReady, timeout=LONG) as estimate:
        click_next(qtbot, wizard)
    settings = wizard.settings_page
    assert settings.from_model.isChecked() and not settings.from_imagenet.isEnabled()
    assert "Not available" in settings.imagenet_reason.text()
    assert estimate.args[0] is not None and settings.estimate_label.text().startswith("About ")
    wizard.grab().save("/tmp/leukviewer_wizard_2_settings.png")

    # 3 Train: the library's train runs in a worker, curves fill, a model folder appears.
    with qtbot.waitSignal(wizard.trainingFinished, timeout=LONG) as finished:
        click_next(qtbot, wizard)
    assert wizard.currentId() == PAGE_TRAIN
    result = finished.args[0]
    assert not isinstance(result, Exception) and not result.cancelled, getattr(wizard.train_page.message, "text")()
    candidate = wizard.session.candidate
    assert result.model_folder == candidate and verify(candidate)["training"]["parent_model"] == str(tiny_model_dir)
    assert all(isinstance(config, training.TrainConfig) for config, _ in train_spy)
    warmup, main = train_spy[0][0], train_spy[-1][0]
    assert warmup.output is None and main.output == str(candidate) and len(train_spy) == 2
    assert (main.init, main.backbone, main.input_size, main.epochs, main.batch_size) == ("model", "tiny", 32, 1, 16)
    assert wizard.train_page.curves.points["loss"][0] and wizard.train_page.curves.points["val_loss"][0]
    assert "Finished" in wizard.train_page.status.text()
    wizard.grab().save("/tmp/leukviewer_wizard_3_train.png")

    # 4 Evaluate: both models on exactly the held-out test subjects of the new model's split.
    with qtbot.waitSignal(wizard.evaluationFinished, timeout=LONG) as evaluated:
        click_next(qtbot, wizard)
    comparison = evaluated.args[0]
    test_subjects = result.meta["training"]["split"]["test"]["subjects"]
    assert comparison["subjects"] == sorted(test_subjects)
    assert comparison["new"]["n"] == comparison["active"]["n"] == result.meta["training"]["split"]["test"]["images"]
    assert comparison["new"]["weighted_f1"] == pytest.approx(result.metrics["test"]["weighted_f1"])
    for key in ("weighted_f1", "sensitivity", "specificity", "roc_auc", "ece", "confusion_matrix"):
        assert key in comparison["new"] and key in comparison["active"]
    table = wizard.evaluate_page.table
    assert table.item(1, 0).text() != "–" and table.item(1, 1).text() != "–"
    wizard.grab().save("/tmp/leukviewer_wizard_4_evaluate.png")

    # 5 Accept: into the registry with its card; active only now; the window is told.
    click_next(qtbot, wizard)
    assert wizard.currentId() == PAGE_ACCEPT and registry.active_name() == BUNDLED
    assert "Comparison with the previously active model" in wizard.accept_page.card.toMarkdown()
    wizard.grab().save("/tmp/leukviewer_wizard_5_accept.png")
    with qtbot.waitSignal(wizard.modelAccepted, timeout=30_000) as accepted:
        qtbot.mouseClick(wizard.button(QWizard.WizardButton.FinishButton), Qt.MouseButton.LeftButton)
    new = accepted.args[0]
    assert registry.active_name() == new.name and registry.names() == [BUNDLED, new.name]
    assert window.model_folders == [new.folder]
    loaded = load_model_folder(new.folder)
    assert loaded.sha256 == new.sha256 and loaded.meta["training"]["parent_model"] == str(tiny_model_dir)
    card = (new.folder / "MODEL_CARD.md").read_text()
    assert "Retraining in leukviewer" in card and "parent model" in card and ", ".join(sorted(test_subjects)) in card
    assert not candidate.exists() and RetrainSession.pending() is None   # the session is done
    assert not [p for p in registry.directory.iterdir() if p.name.startswith(".")]
    wizard.deleteLater()   # deleting a closed wizard is safe
    qtbot.wait(50)

    # Rollback in the model manager restores the bundled model, and the window follows.
    dialog = ModelManagerDialog(registry)
    qtbot.addWidget(dialog)
    dialog.activeModelChanged.connect(window.set_model_folder)
    assert dialog.table.topLevelItemCount() == 2 and dialog.table.topLevelItem(1).text(0) == "●"
    assert dialog.table.topLevelItem(0).text(9).startswith("bundled")
    dialog.show()
    dialog.grab().save("/tmp/leukviewer_model_manager.png")
    with qtbot.waitSignal(dialog.activeModelChanged, timeout=30_000):   # in a worker
        qtbot.mouseClick(dialog.rollback_button, Qt.MouseButton.LeftButton)
    assert registry.active_name() == BUNDLED and window.model_folders[-1] is None
    assert dialog.table.topLevelItem(0).text(0) == "●"
    assert folder_digest(tiny_model_dir) == bundled_before


def gated_train(monkeypatch, gate):
    """The library's train, pausing after the first epoch until the test has pressed Stop."""
    calls = []
    real = training.train

    def train(config, on_progress=None, should_stop=None, resume=False):
        calls.append((config, resume))

        def progress(event):
            on_progress(event)
            if event.stage == "train" and event.message.startswith("epoch 1/"):
                gate.wait(60)
        return real(config, on_progress=progress, should_stop=should_stop, resume=resume)

    monkeypatch.setattr(training, "train", train)
    return calls


def test_stopping_keeps_the_checkpoint_writes_no_model_and_resume_continues_after_a_restart(
        qtbot, registry, cnmc_root, monkeypatch, close_all):
    gate = threading.Event()
    calls = gated_train(monkeypatch, gate)
    defaults = {**TINY, "epochs": 3, "freeze": "unfrozen", "data": str(cnmc_root)}
    wizard = RetrainWizard(registry=registry, case_folders=[], defaults=defaults, auto_estimate=False)
    qtbot.addWidget(wizard)
    close_all(wizard)
    wizard.show()
    wait_data(qtbot, wizard)
    click_next(qtbot, wizard)
    click_next(qtbot, wizard)
    page = wizard.train_page
    qtbot.waitUntil(lambda: "epoch 1/3" in page.log.toPlainText(), timeout=LONG)
    with qtbot.waitSignal(wizard.trainingFinished, timeout=LONG) as finished:
        qtbot.mouseClick(page.stop_button, Qt.MouseButton.LeftButton)
        gate.set()
    assert finished.args[0].cancelled
    session = wizard.session
    assert "stopped after epoch 1 of 3" in page.status.text() and "No model folder was written" in page.status.text()
    assert str(session.run_dir) in page.status.text()
    assert not session.candidate.exists() and not list(session.root.glob(".model*"))  # nothing half-written
    assert (session.run_dir / "last.weights.h5").is_file() and session.run_state()["epochs_done"] == 1
    assert not next_button(wizard).isEnabled() and page.resume_button.isVisible()
    wizard.grab().save("/tmp/leukviewer_wizard_3_train_stopped.png")
    wizard.reject()
    qtbot.waitUntil(lambda: not wizard.busy(), timeout=LONG)

    # The app restarts: a new wizard offers to resume; it continues from the checkpoint to the end.
    again = RetrainWizard(registry=registry, case_folders=[], auto_estimate=False)
    qtbot.addWidget(again)
    close_all(again)
    again.show()
    assert again.data_page.resume_box.isVisible() and "epoch 1 of 3" in again.data_page.resume_label.text()
    with qtbot.waitSignal(again.trainingFinished, timeout=LONG) as resumed:
        qtbot.mouseClick(again.data_page.resume_button, Qt.MouseButton.LeftButton)
    assert again.currentId() == PAGE_TRAIN and again.session.root == session.root
    result = resumed.args[0]
    assert not result.cancelled and result.meta["training"]["epochs_trained"] == 3
    assert calls[-1][1] is True and calls[-1][0].run_dir == str(session.run_dir)
    assert len(result.history["loss"]) == 3 and verify(session.candidate)
    assert next_button(again).isEnabled()
    again.reject()
    qtbot.waitUntil(lambda: not again.busy(), timeout=LONG)

    # Not accepted: offered again next time, and can be discarded.
    third = RetrainWizard(registry=registry, case_folders=[], auto_estimate=False)
    qtbot.addWidget(third)
    close_all(third)
    assert "not accepted yet" in third.data_page.resume_label.text()
    qtbot.mouseClick(third.data_page.discard_button, Qt.MouseButton.LeftButton)
    assert RetrainSession.pending() is None and not session.root.exists()
    assert registry.names() == [BUNDLED]


def one_class(root, cnmc_root):
    shutil.copytree(cnmc_root / "training_data" / "fold_1" / "all", root / "all")


def no_images(root, cnmc_root):
    (root / "all").mkdir(parents=True)
    (root / "hem").mkdir()
    (root / "all" / "notes.txt").write_text("no images here")


def unreadable(root, cnmc_root):
    shutil.copytree(cnmc_root, root)
    for victim in sorted(root.rglob("*.png"))[:2]:
        victim.write_bytes(b"\x89PNG\r\n\x1a\n truncated " + victim.name.encode())  # distinct: not deduplicated


@pytest.mark.parametrize("make, expected", [(one_class, "only one class (ALL)"), (no_images, "no images"),
                                            (unreadable, "2 image(s) cannot be read")])
def test_bad_data_keeps_next_disabled_with_a_clear_message(qtbot, registry, cnmc_root, tmp_path, make, expected,
                                                           close_all):
    folder = tmp_path / "data"
    make(folder, cnmc_root)
    wizard = RetrainWizard(registry=registry, case_folders=[], defaults={**TINY, "data": str(folder)},
                           auto_estimate=False)
    qtbot.addWidget(wizard)
    close_all(wizard)
    wizard.show()
    wait_data(qtbot, wizard)
    page = wizard.data_page
    assert page.errors.isVisible() and expected in page.errors.text()
    assert not next_button(wizard).isEnabled() and not page.isComplete()
    if make is unreadable:
        assert page.skip_unreadable.isVisible()
        page.skip_unreadable.setChecked(True)   # the user may leave them out explicitly
        assert next_button(wizard).isEnabled()
        assert wizard.settings_page.train_config().skip_unreadable
    else:
        assert not page.skip_unreadable.isVisible()
    wizard.grab().save(f"/tmp/leukviewer_wizard_bad_{make.__name__}.png")


def test_reviewed_cells_of_a_case_join_a_folder_with_the_case_as_subject(qtbot, registry, cnmc_root, shared_data,
                                                                          make_reviewed_case, tmp_path, close_all):
    fields = sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[:2]
    session, _ = make_reviewed_case(tmp_path / "case-7", fields, ("ALL", "HEM", "UNCERTAIN"))
    case = session.folder
    unreviewed = tmp_path / "unreviewed"
    unreviewed.mkdir()

    wizard = RetrainWizard(registry=registry, case_folders=[str(unreviewed), str(case)], auto_estimate=False,
                           defaults=TINY)
    qtbot.addWidget(wizard)
    close_all(wizard)
    wizard.show()
    page = wizard.data_page
    assert page.case_list.count() == 1 and "3 reviewed cells" in page.case_list.item(0).text()
    wait_data(qtbot, wizard)   # the reviewed cells alone: usable, with what is wrong with so few said plainly
    assert "2 images in 2 classes (HEM 1, ALL 1) from 1 subjects; 1 reviewed case(s)" in page.status.text()
    warnings = page.warnings.text()
    assert "Too few subjects" in warnings and "only 1 image" in warnings and "UNCERTAIN" in warnings
    # the first page's subject count agrees with its table (the one case has an ALL cell: ALL 1, not 0)
    assert "subjects with images of each class HEM 1, ALL 1" in warnings
    assert [page.counts.topLevelItem(0).text(i) for i in range(1, 3)] == ["1", "1"]

    page.folder_box.setChecked(True)
    page.folder_edit.setText(str(cnmc_root))
    wait_data(qtbot, wizard)
    assert page.isComplete(), page.errors.text()
    assert "86 images" in page.status.text() and "15 subjects" in page.status.text()
    rows = [page.counts.topLevelItem(i).text(0) for i in range(page.counts.topLevelItemCount())]
    assert f"{FIRST_CASE_SUBJECT}  (case-7)" in rows
    assert "UNCERTAIN are not used" in page.warnings.text()
    config = wizard.settings_page.train_config()
    assert config.data == str(wizard.session.data_dir) and config.split == "subject"


def test_models_menu_opens_the_wizard_and_the_manager(qtbot, registry, close_all):
    window = FakeMainWindow()
    qtbot.addWidget(window)
    menu = install_menus(window, registry)
    assert [a.text() for a in window.menuBar().actions()][-1] == "&Models"
    assert [a.text() for a in menu.actions()] == ["&Retrain model…", "Model &manager…"]
    menu.retrain_action.trigger()
    wizard = window._retrain_wizard
    close_all(wizard)
    assert wizard.isVisible() and wizard.currentId() == 0
    menu.retrain_action.trigger()
    assert window._retrain_wizard is wizard   # one wizard at a time
    wizard.reject()
    qtbot.waitUntil(lambda: not wizard.isVisible())
    menu.retrain_action.trigger()
    assert window._retrain_wizard is not wizard and window._retrain_wizard.isVisible()
    close_all(window._retrain_wizard)
    menu.manager_action.trigger()
    manager = window._model_manager
    assert manager.isVisible() and manager.table.topLevelItemCount() == 1
    assert "Model card" in manager.card.toPlainText()
    manager.close()


def test_model_manager_switches_removes_and_never_touches_the_bundled_model(qtbot, registry, tiny_model_dir,
                                                                             tmp_path, monkeypatch):
    import json

    from training.modelfolder import write_manifest

    for version in ("1.0", "2.0"):
        folder = tmp_path / version
        shutil.copytree(tiny_model_dir, folder)
        meta = json.loads((folder / "model.json").read_text())
        meta.update(name="lab", version=version)
        (folder / "model.json").write_text(json.dumps(meta))
        write_manifest(folder)   # a model.json edited on purpose: sealed again, as `python -m training manifest`
        registry.add(folder)
    dialog = ModelManagerDialog(registry)
    qtbot.addWidget(dialog)
    switched = []
    dialog.activeModelChanged.connect(switched.append)
    assert [dialog.table.topLevelItem(i).text(1) for i in range(3)][1:] == ["lab 1.0", "lab 2.0"]
    dialog.select(BUNDLED)
    assert not dialog.activate_button.isEnabled() and not dialog.remove_button.isEnabled()
    dialog.select("lab-2.0")
    assert dialog.remove_button.isEnabled()
    with qtbot.waitSignal(dialog.activeModelChanged, timeout=30_000):   # the files are verified in a worker
        qtbot.mouseClick(dialog.activate_button, Qt.MouseButton.LeftButton)
        assert "Checking the files of" in dialog.message.text()           # said at once, the dialog answers
    assert registry.active_name() == "lab-2.0" and switched == [registry.get("lab-2.0").folder]
    assert not dialog.remove_button.isEnabled()   # the active model cannot be removed
    monkeypatch.setattr(dialog, "confirm", lambda text: True)
    dialog.select("lab-1.0")
    qtbot.mouseClick(dialog.remove_button, Qt.MouseButton.LeftButton)
    assert registry.names() == [BUNDLED, "lab-2.0"] and dialog.table.topLevelItemCount() == 2
    assert "Roll back to the bundled model" == dialog.rollback_button.text()


def test_a_crafted_pending_session_outside_the_runs_folder_is_never_resumed_or_deleted(tmp_path):
    """pending.json names the session folder; a damaged or crafted one pointing elsewhere must not make Discard
    (or starting over) delete that folder."""
    import json

    from leukviewer.core.paths import OutsideFolderError
    from leukviewer.core.retrain.session import PENDING_FILE, SESSION_FILE, wizard_runs_dir

    victim = tmp_path / "patient-archive"
    (victim / "run").mkdir(parents=True)
    (victim / SESSION_FILE).write_text(json.dumps({"config": {"name": "x"}}))
    (victim / "run" / "keep.txt").write_text("precious")
    wizard_runs_dir().mkdir(parents=True, exist_ok=True)
    (wizard_runs_dir() / PENDING_FILE).write_text(json.dumps({"session": str(victim)}))
    assert RetrainSession.pending() is None                      # not offered for resuming (or discarding)
    with pytest.raises(OutsideFolderError):
        RetrainSession(victim).discard()
    escape = wizard_runs_dir() / "escape"
    escape.symlink_to(victim)                                    # inside by name, outside in fact
    with pytest.raises(OutsideFolderError):
        RetrainSession(escape).discard()
    assert (victim / "run" / "keep.txt").read_text() == "precious"
    own = RetrainSession.create()                                # the wizard's own session is still deleted
    own.discard()
    assert not own.root.exists()
