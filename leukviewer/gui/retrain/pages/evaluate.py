"""Page 4 of the retraining wizard: the new and the active model on the new model's held-out test subjects
(``core.retrain.compare.compare_models`` in a worker), as a table and confusion matrices."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHeaderView, QProgressBar, QTableWidget, QTableWidgetItem, QVBoxLayout

from ....core.retrain.compare import METRIC_ROWS, compare_models, comparison_notes, format_value
from ...signals import emit
from ...worker import Worker
from ..common import RetrainPage, message_label, ruo_label, show_message, wrapping_label
from ..plots import ConfusionMatrices

if TYPE_CHECKING:
    from ..wizard import RetrainWizard


def compare_in_worker(candidate, active, run_dir, heldout, eval_dir, worker=None) -> dict:
    """``compare_models`` reporting the evaluation's events to the worker."""
    return compare_models(candidate, active, run_dir, heldout, eval_dir, on_progress=worker.report_progress)


class EvaluatePage(RetrainPage):
    def __init__(self, wizard: "RetrainWizard"):
        super().__init__(wizard, "4 · Evaluate",
                         "The new model and the active model on the same held-out subjects, which the new model "
                         "never saw in training.")
        layout = QVBoxLayout(self)
        self.status = wrapping_label(layout)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.hide()
        layout.addWidget(self.progress)
        self.table = QTableWidget(len(METRIC_ROWS), 2)
        self.table.setVerticalHeaderLabels([label for _, label in METRIC_ROWS])
        self.table.setHorizontalHeaderLabels(["New model", "Active model"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setFixedHeight(self.table.verticalHeader().length() + self.table.horizontalHeader().height() + 4)
        layout.addWidget(self.table)
        self.matrices = ConfusionMatrices(self)
        layout.addWidget(self.matrices, 1)
        self.notes = message_label("#8a5a00")
        self.error = message_label("#b00020")
        layout.addWidget(self.notes)
        layout.addWidget(self.error)
        layout.addWidget(ruo_label())
        self.comparison: dict | None = None
        self._worker: Worker | None = None

    def initializePage(self) -> None:
        self.comparison = None
        emit(self.completeChanged)
        show_message(self.notes, "")
        show_message(self.error, "")
        self.table.clearContents()
        active = self.w.active_model
        self.table.setHorizontalHeaderLabels(["New model", f"Active model ({active.display_name})" if active
                                              else "Active model"])
        self.status.setText("Evaluating both models on the held-out subjects…")
        self.progress.show()
        session = self.w.ensure_session()
        worker = Worker(compare_in_worker, session.candidate, active, session.run_dir, session.heldout_dir,
                        session.eval_dir, name="retrain-evaluate")
        worker.signals.progress.connect(lambda e: self.status.setText(
            f"Evaluating both models on the held-out subjects: {e.message}…" if e.message else self.status.text()))
        worker.signals.returned.connect(self._on_compared)
        worker.signals.errored.connect(self._on_error)
        worker.signals.finished.connect(self._on_finished)
        self._worker = self.w.track(worker).start()

    def is_busy(self) -> bool:
        return self._worker is not None

    def _on_compared(self, comparison: dict) -> None:
        self.comparison = comparison
        self.progress.hide()
        if comparison.get("error"):
            self.status.setText("No comparison.")
            show_message(self.notes, comparison["error"] + " You can still accept the model; its card says so.")
        else:
            new, active = comparison["new"], comparison.get("active")
            self.status.setText(f"Held-out test subjects: {', '.join(comparison['subjects'])} — {new['n']} cells "
                                "(" + ", ".join(f"{c} {v['support']}" for c, v in new["per_class"].items()) + ").")
            for row, (key, _) in enumerate(METRIC_ROWS):
                for col, metrics in enumerate((new, active)):
                    value = metrics.get(key) if metrics else None
                    item = QTableWidgetItem(format_value(value))
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                    self.table.setItem(row, col, item)
            self.matrices.show_matrices([("New model", new), ("Active model", active)])
            notes = comparison_notes(comparison)
            show_message(self.notes, "\n".join("⚠ " + n for n in notes))
        emit(self.w.evaluationFinished, comparison)
        emit(self.completeChanged)

    def _on_error(self, error: Exception) -> None:
        self.progress.hide()
        self.status.setText("The evaluation failed.")
        show_message(self.error, f"{type(error).__name__}: {error}")
        self.comparison = {"error": f"the evaluation failed ({error})"}
        emit(self.w.evaluationFinished, self.comparison)
        emit(self.completeChanged)

    def _on_finished(self) -> None:
        self._worker = None
        self.w.worker_done()

    def isComplete(self) -> bool:
        return self.comparison is not None

