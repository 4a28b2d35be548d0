"""The retraining wizard: the lab turns its reviewed cells (and/or a labelled folder) into a new model.

Five pages — Data, Settings, Train, Evaluate, Accept. The wizard only builds a ``training.TrainConfig`` and calls
``training.train`` (the function behind ``python -m training fit``) through ``leukviewer.core.retrain`` (the same
plan ``leukviewer retrain`` uses); every long step (data check, warm-up measurement, training, evaluation) runs in
the app's worker (``gui/worker.py``). A wizard session keeps its files in
``<runs dir>/wizard/<id>/`` (data, checkpoints, the candidate model folder); ``pending.json`` beside the sessions
names the one not yet accepted, so the wizard offers to resume it after the app restarts. The new model becomes
active only when accepted on the last page.

For Research Use Only. Not for use in diagnostic procedures.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QMenu, QWidget, QWizard

import training

from ... import RUO_NOTICE
from ...core.model.registry import ModelRegistry, RegisteredModel, app_model_folder
from ...core.paths import remove_tree_inside
from ...core.retrain.accept import accept_candidate
from ...core.retrain.card import write_retrain_card
from ...core.retrain.data import PreparedData
from ...core.retrain.session import RetrainSession, wizard_runs_dir
from ...core.settings import Settings
from ..signals import emit
from ..worker import Worker
from .common import PAGE_ACCEPT, PAGE_DATA, PAGE_EVALUATE, PAGE_SETTINGS, PAGE_TRAIN
from .pages import AcceptPage, DataPage, EvaluatePage, SettingsPage, TrainPage

__all__ = ["RetrainWizard", "open_retrain_wizard", "open_model_manager", "install_menus", "PAGE_DATA",
           "PAGE_SETTINGS", "PAGE_TRAIN", "PAGE_EVALUATE", "PAGE_ACCEPT"]


class RetrainWizard(QWizard):
    """See the module docstring. ``defaults`` pre-set TrainConfig fields (tests use a tiny configuration)."""

    activeModelChanged = Signal(object)     # the new active model's folder (None: the bundled model)
    dataChecked = Signal(object)            # PreparedData (or None when a check was replaced)
    estimateReady = Signal(object)          # SpeedEstimate or None
    trainingFinished = Signal(object)       # TrainResult (cancelled or not) or the exception
    evaluationFinished = Signal(object)     # the comparison dict
    modelAccepted = Signal(object)          # RegisteredModel

    def __init__(self, parent=None, registry: ModelRegistry | None = None, case_folders: list | None = None,
                 settings: Settings | None = None, defaults: dict | None = None, auto_estimate: bool = True):
        super().__init__(parent)
        self.auto_estimate = auto_estimate
        self.setWindowTitle(f"Retrain the model — {RUO_NOTICE}")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.resize(900, 780)
        self.registry = registry or ModelRegistry()
        self.active_model = self.registry.active()
        self.defaults = dict(defaults or {})
        self.session: RetrainSession | None = None
        self.resuming = False
        self.config = None
        self._workers: set[Worker] = set()
        self._closing = False
        self.data_page = DataPage(self)
        self.settings_page = SettingsPage(self)
        self.train_page = TrainPage(self)
        self.evaluate_page = EvaluatePage(self)
        self.accept_page = AcceptPage(self)
        for page_id, page in ((PAGE_DATA, self.data_page), (PAGE_SETTINGS, self.settings_page),
                              (PAGE_TRAIN, self.train_page), (PAGE_EVALUATE, self.evaluate_page),
                              (PAGE_ACCEPT, self.accept_page)):
            self.setPage(page_id, page)
        if case_folders is None:
            settings = settings or Settings.load()
            case_folders = list(settings.recent_folders)
        self.data_page.set_cases([str(f) for f in case_folders])
        if self.defaults.get("data"):
            self.data_page.folder_box.setChecked(True)
            self.data_page.folder_edit.setText(str(self.defaults["data"]))
        self.currentIdChanged.connect(self._on_page_changed)
        self.refresh_pending_banner()

    # ---------------------------------------------------------------- session and data

    def ensure_session(self) -> RetrainSession:
        if self.session is None:
            self.session = RetrainSession.create()
        return self.session

    def data_root(self) -> Path | None:
        prepared = self.data_page.prepared
        if prepared is not None and prepared.root is not None:
            return prepared.root
        if self.config is not None:
            return Path(self.config.data)
        return None

    def data_summary(self) -> dict | None:
        prepared = self.data_page.prepared
        if prepared is not None and prepared.check is not None:
            return prepared.check.summary
        return (self.session.info.get("data_summary") if self.session else None)

    def data_sources(self) -> dict:
        prepared = self.data_page.prepared
        if prepared is not None:
            return prepared.sources
        return (self.session.info.get("sources") if self.session else None) or {}

    def skip_unreadable(self) -> bool:
        return self.data_page.skip_unreadable.isChecked()

    def build_config(self):
        return self.settings_page.train_config()

    # ---------------------------------------------------------------- resume after a restart

    def refresh_pending_banner(self) -> None:
        pending = RetrainSession.pending()
        box = self.data_page.resume_box
        if pending is None or (self.session is not None and pending.root == self.session.root):
            box.hide()
            return
        self.data_page.resume_label.setText(pending.describe())
        finished = (pending.run_state() or {}).get("finished") and pending.candidate_ready()
        self.data_page.resume_button.setText("Continue with it" if finished else "Resume training")
        box.show()

    def resume_pending(self) -> bool:
        """Continue the pending session: straight to the Train page (which resumes or shows the result)."""
        pending = RetrainSession.pending()
        if pending is None:
            self.refresh_pending_banner()
            return False
        if self.session is not None and self.session.root != pending.root and not self.session.run_state():
            remove_tree_inside(self.session.root, wizard_runs_dir())  # this wizard's own, unused session
        self.session = pending
        self.config = training.TrainConfig.from_dict(pending.config())
        self.resuming = True
        self.data_page.resume_box.hide()
        self.data_page._timer.stop()
        self.data_page.scan.cancel()
        self.data_page.prepared = PreparedData(Path(self.config.data), None, None,
                                               pending.info.get("sources") or {})
        self.data_page.status.setText(f"Resuming the training of {pending.info.get('created', '')[:16]} on "
                                      f"{self.config.data}.")
        if self.currentId() == PAGE_DATA:
            self.next()
        return True

    def discard_pending(self) -> None:
        pending = RetrainSession.pending()
        if pending is not None:
            pending.discard()
        self.refresh_pending_banner()

    # ---------------------------------------------------------------- accepting

    def write_card(self, folder: Path) -> Path:
        """MODEL_CARD.md of the candidate with the retraining's data sources, parent and comparison."""
        return write_retrain_card(folder, self.config, self.data_sources(), self.data_summary(), self.active_model,
                                  self.evaluate_page.comparison)

    def accept_candidate(self, activate: bool) -> RegisteredModel:
        """Accept the candidate here and now (the Accept page does it in a worker: ``accept_candidate_files``)."""
        model = self.accept_candidate_files(activate)
        self.after_accept(model, activate)
        return model

    def accept_candidate_files(self, activate: bool) -> RegisteredModel:
        """The slow part of accepting, safe off the GUI thread: move the candidate into the registry (verifying
        its files), make it active, remove the session's checkpoints."""
        return accept_candidate(self.registry, self.ensure_session(), activate)

    def after_accept(self, model: RegisteredModel, activate: bool) -> None:
        """On the GUI thread: tell the window (the active model) and whoever waits for the accepted model."""
        if activate:
            emit(self.activeModelChanged, app_model_folder(model))
        emit(self.modelAccepted, model)

    # ---------------------------------------------------------------- workers and closing

    def track(self, worker: Worker) -> Worker:
        self._workers.add(worker)
        worker.signals.finished.connect(lambda w=worker: self._workers.discard(w))
        worker.signals.finished.connect(self.worker_done)
        return worker

    def busy(self) -> bool:
        return any(not w.is_finished() for w in self._workers)

    def worker_done(self) -> None:
        if self._closing and not self.busy():
            self._finish_reject()

    def _on_page_changed(self, page_id: int) -> None:
        if page_id != PAGE_SETTINGS:
            self.settings_page.stop_measuring()

    def reject(self) -> None:
        """Cancel: stop every worker (training keeps its last checkpoint) and close once they have ended."""
        self.settings_page.stop_measuring()
        self.train_page.stop()
        for worker in list(self._workers):
            worker.cancel()
        if self.busy():
            self._closing = True
            self.setEnabled(False)
            return
        self._finish_reject()

    def _finish_reject(self) -> None:
        self._closing = False
        if self.session is not None and not self.session.info.get("config"):
            remove_tree_inside(self.session.root, wizard_runs_dir())  # never trained: nothing worth resuming
            self.session = None
        super().reject()

    def closeEvent(self, event):
        if self.busy():
            event.ignore()
            self.reject()
            return
        super().closeEvent(event)


# ================================================================ menus in the main window


def open_retrain_wizard(main_window, registry: ModelRegistry | None = None, **kwargs) -> RetrainWizard:
    """Show the wizard (one at a time) beside the main window; the active model follows an accepted one."""
    wizard = getattr(main_window, "_retrain_wizard", None)
    if wizard is not None and wizard.isVisible():
        wizard.raise_()
        wizard.activateWindow()
        return wizard
    if wizard is not None:
        # Deleted here, long after it closed: deleting it while its own Finish click is being handled (as
        # WA_DeleteOnClose does) crashes PySide with a pure virtual call.
        wizard.deleteLater()
    settings = getattr(main_window, "settings", None)
    if "case_folders" not in kwargs:
        kwargs["case_folders"] = list(settings.recent_folders) if settings is not None else None
    wizard = RetrainWizard(main_window if isinstance(main_window, QWidget) else None,
                           registry or ModelRegistry(), **kwargs)
    wizard.activeModelChanged.connect(lambda folder: _apply_active_model(main_window, folder))
    main_window._retrain_wizard = wizard
    wizard.show()
    return wizard


def open_model_manager(main_window, registry: ModelRegistry | None = None):
    from ..model_manager import ModelManagerDialog

    dialog = getattr(main_window, "_model_manager", None)
    if dialog is not None and dialog.isVisible():
        dialog.refresh()
        dialog.raise_()
        dialog.activateWindow()
        return dialog
    if dialog is not None:
        dialog.deleteLater()   # a closed one, deleted long after it closed (see open_retrain_wizard)
    dialog = ModelManagerDialog(registry or ModelRegistry(), main_window if isinstance(main_window, QWidget)
                                else None)
    dialog.activeModelChanged.connect(lambda folder: _apply_active_model(main_window, folder))
    main_window._model_manager = dialog
    dialog.show()
    return dialog


def _apply_active_model(main_window, folder: Path | None) -> None:
    setter = getattr(main_window, "set_model_folder", None)
    if callable(setter):
        setter(folder)


def install_menus(main_window, registry: ModelRegistry | None = None) -> QMenu:
    """Add a "Models" menu (Retrain model…, Model manager…) to a QMainWindow's menu bar.

    When the active model changes there, ``main_window.set_model_folder(folder)`` is called (None for the
    bundled model) if the window has that method.
    """
    registry = registry or ModelRegistry()
    menu = main_window.menuBar().addMenu("&Models")
    menu.retrain_action = menu.addAction("&Retrain model…")
    menu.retrain_action.setToolTip("Train a new model on reviewed cells and/or a labelled folder")
    menu.manager_action = menu.addAction("Model &manager…")
    menu.manager_action.setToolTip("List the models, read their cards, switch the active one, roll back")
    menu.retrain_action.triggered.connect(lambda: open_retrain_wizard(main_window, registry))
    menu.manager_action.triggered.connect(lambda: open_model_manager(main_window, registry))
    main_window.models_menu = menu
    return menu
