"""The window's model: the folder ``core.model.active.resolve_model`` chose (or the one chosen since), loaded in a
worker (only the latest load counts), shown in the status bar, converted to LiteRT in the background when it has
no conversion yet."""
from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QFileDialog

from . import jobs
from .signals import emit
from .worker import LatestJob, freeze_long_lived_objects

log = logging.getLogger(__name__)

GRADCAM_WARM_UP_DELAY_MS = 1500   # after the model loads, unless an analysis is running (then after it)


class ModelControl:
    def __init__(self, window):
        self.w = window
        self._loads = LatestJob("load-model", track=window.track)

    def folder(self) -> Path:
        return jobs.resolve_model_dir(self.w.model_dir)

    def load(self) -> None:
        w = self.w
        described = jobs.describe(w.model_dir)
        w.status_area.show_model(f"Model: {described.name if described else self.folder().name} "
                                 f"{described.version if described else ''} (loading…)")
        self._loads.start(jobs.load_model, w.model_dir, on_returned=self._loaded, on_errored=self._failed)

    def _loaded(self, model: jobs.LoadedModel) -> None:
        w = self.w
        if w.is_closed() or model.folder != self.folder():
            return
        w.loaded_model = model
        info = model.descriptor
        w.status_area.show_model(
            f"Model: {info.name} {info.version} ({info.short_hash})",
            f"{model.folder}\nthreshold {info.threshold:.3f}, uncertain between {info.uncertainty_band[0]:.3f} and "
            f"{info.uncertainty_band[1]:.3f}\nmanifest SHA-256 "
            f"{info.manifest_sha256 or 'none (model.json not verified)'}", model.device)
        if info.integrity_warning:
            w.show_message(f"Warning: {info.integrity_warning}.", "warning")
        w.summary_panel.histogram.set_decision(info.threshold, info.uncertainty_band)
        w.gallery.set_cell_types(info.cell_types)
        w.gradcam.ready = False
        # A moment later, so a case opened at once analyses first; during an analysis it waits for its end.
        QTimer.singleShot(GRADCAM_WARM_UP_DELAY_MS, w, w.gradcam.warm_up)
        if jobs.wants_engine_conversion(model):   # LiteRT converted in the background, used once ready
            w.start_job(jobs.convert_engine, model, name="engine-conversion",
                        on_returned=lambda switched: switched and self._converted(model),
                        on_errored=lambda error: log.warning("background LiteRT conversion failed: %s", error))
        freeze_long_lived_objects()
        emit(w.modelLoaded)

    def _converted(self, model: jobs.LoadedModel) -> None:
        if not self.w.is_closed() and model is self.w.loaded_model:
            self.w.device_label.setText(f"Device: {model.device}")
        emit(self.w.engineConverted)

    def _failed(self, error: Exception) -> None:
        w = self.w
        if w.is_closed():
            return
        w.loaded_model = None
        w.status_area.show_model("Model: none", device="–")
        w.show_message(f"The model could not be loaded: {error}\n"
                       "Choose a model folder with File → Choose model folder….", "error")
        emit(w.modelFailed, str(error))

    def choose(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.w, "Choose a model folder (with model.json)",
                                                  str(self.folder().parent))
        if folder:
            self.w.set_model_folder(folder)
