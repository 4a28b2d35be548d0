"""The status bar's permanent part: the run's progress (bar, "done / total · ETA", a Cancel button), the model and
the device. The bar and its label are redrawn at most every PROGRESS_MS: each change re-lays out the status bar on
the GUI thread."""
from __future__ import annotations

import time

from PySide6.QtCore import QObject, QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QToolButton

PROGRESS_MS = 250


def format_eta(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


class StatusArea(QObject):
    def __init__(self, bar: QStatusBar, cancel_action: QAction):
        super().__init__(bar)
        self.model_label = QLabel("Model: –")
        self.device_label = QLabel("Device: –")
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.hide()
        self.progress_label = QLabel("")
        self.cancel_action = cancel_action
        self.cancel_button = QToolButton()
        self.cancel_button.setDefaultAction(cancel_action)
        self.cancel_button.setText("Cancel")
        self.cancel_button.hide()
        for widget in (self.progress_label, self.progress_bar, self.cancel_button, self.model_label,
                       self.device_label):
            bar.addPermanentWidget(widget)
        self.analysed = 0            # images analysed in this run (not read back from the store): for the ETA
        self._analysis_clock = 0.0
        self._progress = (0, 0)
        self._timer = QTimer(self, singleShot=True, interval=PROGRESS_MS, timeout=self._show_progress)

    def begin(self, text: str) -> None:
        """A run starts: a busy bar, its Cancel button."""
        self.analysed = 0
        self.progress_bar.setRange(0, 0)
        self.progress_bar.show()
        self.progress_label.setText(text)
        self.cancel_action.setEnabled(True)
        self.cancel_button.show()

    def set_total(self, total: int) -> None:
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(0)
        self.progress_label.setText(f"0 / {total} images")

    def image_done(self, done: int, total: int, cached: bool) -> None:
        """An image finished (``cached``: read back from the store, which says nothing about the speed)."""
        if not cached:
            self.analysed += 1
            if self.analysed == 1:
                self._analysis_clock = time.perf_counter()
        self._progress = (done, total)
        if done >= total:
            self._show_progress()
        elif not self._timer.isActive():
            self._timer.start()

    def _show_progress(self) -> None:
        self._timer.stop()
        done, total = self._progress
        # Only what changed: each change re-lays out the status bar on the GUI thread.
        if self.progress_bar.maximum() != max(1, total) or self.progress_bar.minimum() != 0:
            self.progress_bar.setRange(0, max(1, total))
        if self.progress_bar.value() != done:
            self.progress_bar.setValue(done)
        text = f"{done} / {total} images"
        if self.analysed >= 2 and done < total:
            per_image = (time.perf_counter() - self._analysis_clock) / (self.analysed - 1)
            text += f" · ETA {format_eta(per_image * (total - done))}"
        if text != self.progress_label.text():
            self.progress_label.setText(text)

    def end(self, text: str) -> None:
        """The run ended: the bar and the Cancel button go, ``text`` stays."""
        self._timer.stop()
        self.progress_bar.hide()
        self.cancel_button.hide()
        self.cancel_action.setEnabled(False)
        self.progress_label.setText(text)

    def show_model(self, text: str, tooltip: str = "", device: str | None = None) -> None:
        self.model_label.setText(text)
        self.model_label.setToolTip(tooltip)
        if device is not None:
            self.device_label.setText(f"Device: {device}")
