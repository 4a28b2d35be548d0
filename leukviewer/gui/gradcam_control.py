"""Grad-CAM in the window: the selected cell's map, computed in a worker (one at a time: a new request replaces
the one before), cached per cell, and the model's Grad-CAM warmed up once it has loaded so the first map is quick."""
from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtGui import QPixmap

from . import jobs
from .signals import emit
from .style import hex_colour
from .worker import LatestJob, Worker, freeze_long_lived_objects

log = logging.getLogger(__name__)


class GradcamControl:
    def __init__(self, window):
        self.w = window
        self.heatmaps: dict[str, jobs.CellHeatmap] = {}
        self.ready = False                      # Grad-CAM of the loaded model is built and traced
        self.warm_up_worker: Worker | None = None
        self._maps = LatestJob("gradcam", track=window.track)

    def toggled(self, checked: bool) -> None:
        self.w.settings.overlays.gradcam = checked
        if checked:
            self.request()
        else:
            self.w.view.set_heatmap(None)
            self.w.cell_panel.set_gradcam_status("Grad-CAM (G): off")

    def opacity_changed(self, opacity: float) -> None:
        self.w.settings.overlays.gradcam_opacity = opacity
        self.w.view.set_heatmap_opacity(opacity)

    def request(self) -> None:
        """The selected cell's map: from the cache, or computed in a worker."""
        w = self.w
        cell = w.case.cell(w.current_cell)
        if cell is None or w.folder is None:
            w.cell_panel.set_gradcam_status("Grad-CAM (G): select a cell to see where the model looked")
            return
        cached = self.heatmaps.get(cell.cell_id)
        if cached is not None:
            self._show(cached)
            return
        w.statusBar().showMessage(f"Grad-CAM of {cell.cell_id}…", 3000)
        w.cell_panel.set_gradcam_status(f"Grad-CAM (G): computing the map of {cell.cell_id}…"
                                        + ("" if self.ready else " (the first map also prepares Grad-CAM)"))
        self._maps.start(jobs.cell_gradcam, w.model_dir, w.folder / cell.image, cell, on_returned=self._arrived,
                         on_errored=self._failed)

    def _arrived(self, heatmap: jobs.CellHeatmap) -> None:
        if self.w.is_closed():
            return
        self.heatmaps[heatmap.cell_id] = heatmap
        if heatmap.cell_id == self.w.current_cell and self.w.gradcam_action.isChecked():
            self._show(heatmap)

    def _show(self, heatmap: jobs.CellHeatmap) -> None:
        w = self.w
        explained = (f"<b style='color:{hex_colour(heatmap.class_name)}'>{heatmap.class_name}</b>, "
                     f"the class the model decided on")
        if heatmap.empty:
            w.view.set_heatmap(None)
            w.cell_panel.set_gradcam_status(
                f"Grad-CAM (G) of {explained}: <b>the map is empty</b> — no region of this cell raised the score "
                f"of {heatmap.class_name}, so there is nothing to show.")
        else:
            w.view.set_heatmap(QPixmap.fromImage(heatmap.qimage), heatmap.left, heatmap.top)
            w.cell_panel.set_gradcam_status(f"Grad-CAM (G) of {explained}: where it looked (scale below).")
        emit(w.gradcamShown, heatmap.cell_id)

    def _failed(self, error: Exception) -> None:
        if not self.w.is_closed():
            self.w.cell_panel.set_gradcam_status(f"Grad-CAM (G): not available ({error})")
            self.w.show_message(f"Grad-CAM is not available: {error}", "warning")

    def clear(self) -> None:
        """Another case: no map of its cells is known."""
        self.heatmaps.clear()

    def model_changed(self) -> None:
        """Another model is loading: its Grad-CAM is not ready; a warm-up of the old one stops."""
        if self.warm_up_worker is not None:
            self.warm_up_worker.cancel()
        self.ready = False

    def warm_up(self) -> None:
        """Build and trace the loaded model's Grad-CAM in a worker, so the reviewer's first map comes quickly
        (not while an analysis runs: it has the cores first)."""
        w = self.w
        model = w.loaded_model
        if model is None or self.ready or w.is_closed() or w.is_analysing() or (
                self.warm_up_worker is not None and not self.warm_up_worker.is_finished()):
            return
        folder = model.folder
        self.warm_up_worker = w.start_job(jobs.warm_up_gradcam, folder, name="gradcam-warm-up",
                                          on_returned=lambda seconds: self._warm(folder, seconds),
                                          on_errored=lambda error: log.info("Grad-CAM warm-up failed: %s", error))

    def _warm(self, folder: Path, seconds: float) -> None:
        if self.w.is_closed() or self.w.loaded_model is None or folder != self.w.loaded_model.folder:
            return
        self.ready = True
        freeze_long_lived_objects()   # TensorFlow and the traced graph, loaded for good
        log.info("Grad-CAM warmed up in %.1f s", seconds)
