"""The model manager: every model the app can use, its card, which one is active, and rolling back.

A thin view over ``leukviewer.core.model.registry.ModelRegistry``; the bundled model is listed first and can be made
active but never removed. ``activeModelChanged`` carries the folder the review window should load (None for
the bundled model). Making a model active verifies its files (hashing the weights, tens of megabytes): that runs
in a worker, so the dialog and the review window behind it stay responsive.

For Research Use Only. Not for use in diagnostic procedures.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QHBoxLayout, QHeaderView, QLabel, QMessageBox, QPushButton,
                               QSplitter, QTextBrowser, QTreeWidget, QTreeWidgetItem, QVBoxLayout)

from .. import RUO_NOTICE
from ..core.model.registry import BUNDLED, ModelRegistry, RegisteredModel, RegistryError, app_model_folder
from .signals import emit
from .worker import Worker, start_worker

COLUMNS = ("", "Model", "Version", "Created", "SHA-256", "Weighted F1", "Sens. (ALL)", "Spec. (HEM)", "ROC-AUC",
           "Source")


def _metric(model: RegisteredModel, key: str) -> str:
    value = model.test_metrics.get(key)
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"


class ModelManagerDialog(QDialog):
    activeModelChanged = Signal(object)   # folder for MainWindow.set_model_folder (None: the bundled model)
    changeFailed = Signal(str)            # activating or rolling back was refused (the reason)

    def __init__(self, registry: ModelRegistry | None = None, parent=None):
        super().__init__(parent)
        self.registry = registry or ModelRegistry()
        self._worker: Worker | None = None     # activating or rolling back, off the GUI thread
        self.setWindowTitle(f"Models — {RUO_NOTICE}")
        self.resize(1050, 680)
        layout = QVBoxLayout(self)
        self.table = QTreeWidget()
        self.table.setHeaderLabels(COLUMNS)
        self.table.setRootIsDecorated(False)
        self.table.setUniformRowHeights(True)
        self.table.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.header().setStretchLastSection(True)
        self.table.currentItemChanged.connect(self._show_card)
        self.card = QTextBrowser()
        self.card.setOpenExternalLinks(False)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.card)
        splitter.setSizes([220, 420])
        layout.addWidget(splitter, 1)
        self.history = QLabel()
        self.history.setWordWrap(True)
        self.history.setStyleSheet("color:#555")
        layout.addWidget(self.history)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.hide()
        layout.addWidget(self.message)
        buttons = QHBoxLayout()
        self.activate_button = QPushButton("Make active")
        self.rollback_button = QPushButton("Roll back")
        self.remove_button = QPushButton("Remove…")
        self.activate_button.clicked.connect(self.activate_selected)
        self.rollback_button.clicked.connect(self.rollback)
        self.remove_button.clicked.connect(self.remove_selected)
        for b in (self.activate_button, self.rollback_button, self.remove_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        buttons.addWidget(close)
        layout.addLayout(buttons)
        ruo = QLabel(RUO_NOTICE)
        ruo.setStyleSheet("color:#7a5b00; font-size:10px")
        layout.addWidget(ruo)
        self.refresh()

    # ---------------------------------------------------------------- view

    def refresh(self, select: str | None = None) -> None:
        current = select or self.selected_name() or self.registry.active_name()
        active = self.registry.active_name()
        self.table.blockSignals(True)
        self.table.clear()
        bold = QFont()
        bold.setBold(True)
        for model in self.registry.models():
            source = "bundled (read-only)" if model.bundled else "added"
            if model.parent_model:
                source += " · fine-tuned"
            row = QTreeWidgetItem([
                "●" if model.name == active else "", model.display_name if model.meta else model.name, model.version,
                model.created[:16].replace("T", " "), model.sha256[:12], _metric(model, "weighted_f1"),
                _metric(model, "sensitivity"), _metric(model, "specificity"), _metric(model, "roc_auc"),
                source if model.usable else f"cannot be used: {model.error}"])
            row.setData(0, Qt.ItemDataRole.UserRole, model.name)
            row.setToolTip(1, str(model.folder))
            row.setToolTip(4, model.sha256)
            if model.name == active:
                for col in range(len(COLUMNS)):
                    row.setFont(col, bold)
                row.setToolTip(0, "the active model")
            if not model.usable:
                row.setForeground(9, Qt.GlobalColor.darkRed)
            self.table.addTopLevelItem(row)
            if model.name == current:
                self.table.setCurrentItem(row)
        self.table.blockSignals(False)
        self._show_card()
        previous = self.registry.previous()
        self.rollback_button.setEnabled(bool(previous))
        self.rollback_button.setText(f"Roll back to {self._display(previous[0])}" if previous else "Roll back")
        events = self.registry.history()[-5:]
        self.history.setText("Recent changes: " + "; ".join(
            f"{e.get('time', '')[:16].replace('T', ' ')} {e.get('action')} {self._display(e.get('name', ''))}"
            for e in reversed(events)) if events else "No changes yet: the bundled model is active.")

    def _display(self, name: str) -> str:
        if name == BUNDLED:
            return "the bundled model"
        try:
            return self.registry.get(name).display_name
        except RegistryError:
            return name

    def selected_name(self) -> str | None:
        item = self.table.currentItem()
        return item.data(0, Qt.ItemDataRole.UserRole) if item else None

    def select(self, name: str) -> None:
        for i in range(self.table.topLevelItemCount()):
            item = self.table.topLevelItem(i)
            if item.data(0, Qt.ItemDataRole.UserRole) == name:
                self.table.setCurrentItem(item)
                return

    def _show_card(self, *args) -> None:
        name = self.selected_name()
        if name is None:
            self.card.clear()
            self._update_buttons(None)
            return
        try:
            model = self.registry.get(name)
        except RegistryError as e:
            self.card.setPlainText(str(e))
            self._update_buttons(None)
            return
        self.card.setMarkdown(model.card_text())
        self._update_buttons(model)

    def _update_buttons(self, model: RegisteredModel | None) -> None:
        active = self.registry.active_name()
        self.activate_button.setEnabled(bool(model and model.usable and model.name != active
                                             and model.is_blast_classifier))
        self.remove_button.setEnabled(bool(model and not model.bundled and model.name != active))

    def _say(self, text: str, error: bool = False) -> None:
        self.message.setStyleSheet("color:#b00020" if error else "color:#1b6e3a")
        self.message.setText(text)
        self.message.setVisible(bool(text))

    # ---------------------------------------------------------------- actions

    def busy(self) -> bool:
        return self._worker is not None and not self._worker.is_finished()

    def activate_selected(self) -> None:
        name = self.selected_name()
        if name is None or self.busy():
            return
        self._run(self.registry.activate, name, f"Checking the files of {self._display(name)}…",
                  lambda model: f"{model.display_name} is now the active model.")

    def rollback(self) -> None:
        if self.busy():
            return
        self._run(self.registry.rollback, None, "Rolling back…",
                  lambda model: f"Rolled back: {self._display(model.name)} is the active model again.")

    def _run(self, change, name, doing: str, done) -> None:
        """Run a registry change in a worker; the buttons wait, the outcome is said when it comes."""
        self._say(doing)
        for button in (self.activate_button, self.rollback_button, self.remove_button):
            button.setEnabled(False)
        args = (name,) if name is not None else ()
        self._worker = start_worker(change, *args, name="model-manager",
                                    on_returned=lambda model: self._changed(model, done(model)),
                                    on_errored=self._failed)

    def _failed(self, error: Exception) -> None:
        self.refresh()
        self._say(str(error), error=True)
        emit(self.changeFailed, str(error))

    def _changed(self, model: RegisteredModel, text: str) -> None:
        self.refresh(select=model.name)
        self._say(text)
        emit(self.activeModelChanged, app_model_folder(model))

    def done(self, result: int) -> None:
        if self._worker is not None:   # a registry change in progress finishes before the dialog goes
            self._worker.wait(60)
        super().done(result)

    def confirm(self, text: str) -> bool:
        """Asks the user (replaced in tests)."""
        answer = QMessageBox.question(self, "Remove the model", text)
        return answer == QMessageBox.StandardButton.Yes

    def remove_selected(self) -> None:
        name = self.selected_name()
        if name is None:
            return
        if not self.confirm(f"Delete {self._display(name)} and its folder from your models? This cannot be undone."):
            return
        try:
            self.registry.remove(name)
        except RegistryError as e:
            self._say(str(e), error=True)
            return
        self.refresh(select=self.registry.active_name())
        self._say(f"{name} was removed.")
