"""A case's analysis in the window: one run at a time in a worker (``jobs.analyse_case``; starting one, or
cancelling, drops the run before), its events applied as they come: the listing, then each image's result into
the case and the views, the progress and the end."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from . import jobs
from .signals import emit
from .views.image_list import STATUS_CANCELLED, STATUS_NO_MODEL, no_images_message
from .worker import LatestJob

log = logging.getLogger(__name__)


class AnalysisControl:
    def __init__(self, window):
        self.w = window
        self._runs = LatestJob("analyse-case", track=window.track)
        self._started = 0.0

    def start(self, store_dir: Path) -> None:
        """Analyse the window's open folder with its model (results stored in ``store_dir``)."""
        w = self.w
        self._started = time.perf_counter()
        w.status_area.begin("Listing images…")
        # Only the latest run reaches these slots: events of a cancelled or replaced run are dropped.
        self._runs.start(jobs.analyse_case, w.folder, w.model_dir, store_dir,
                         recursive=w.settings.include_subfolders, on_yielded=self._event, on_errored=self._error,
                         on_finished=self._finished)

    def cancel(self, quiet: bool = False) -> None:
        w = self.w
        if not self.is_running():
            return
        self._runs.cancel()
        w.summary.cancelled = True
        w.image_list.mark_waiting_rows(w.results, STATUS_CANCELLED)
        w.status_area.end(f"Analysis cancelled: {len(w.results)} of {len(w.image_names)} images done.")
        if not quiet:
            w.statusBar().showMessage("Analysis cancelled.", 8000)
            emit(w.analysisFinished)

    def is_running(self) -> bool:
        return self._runs.is_running()

    def _event(self, event) -> None:
        if self.w.is_closed():
            return
        if isinstance(event, jobs.CaseListing):
            self._listing(event)
        elif isinstance(event, jobs.ImageDone):
            self._image_done(event)

    def _listing(self, listing: jobs.CaseListing) -> None:
        w = self.w
        w.case.set_listing(listing.images, listing.skipped)
        w.image_list.set_images(listing.images, w.folder)
        if w.pending_position and w.pending_position.get("image") not in w.rows:
            w.pending_position = None
        if listing.images and w.current_image is None:
            # The pixels at once (a worker decodes them); the outlines follow when the analysis reaches it.
            w.show_image(w.pending_position["image"] if w.pending_position else listing.images[0])
        w.status_area.set_total(len(listing.images))
        if not listing.images:
            w.show_message(no_images_message(w.folder, w.settings.include_subfolders, listing.in_subfolders),
                           "warning")

    def _image_done(self, event: jobs.ImageDone) -> None:
        w = self.w
        result = event.result
        w.case.add(result)
        w.gallery.add_thumbnails(event.thumbnails)
        w.gallery.update_cells([w.gallery_cell(c) for c in result.cells])
        w.update_row(result.image)
        if not result.ok:   # unreadable, or an analysis fault
            failures = w.case.failures()
            n = len(failures)
            w.show_message(f"{n} image{'s' if n > 1 else ''} could not be analysed (marked in the list):\n"
                           + "\n".join(failures[-5:]), "warning")
        w.status_area.image_done(event.done, event.total, event.cached)
        if result.image == w.current_image:  # shown before its analysis: its outlines arrive now
            if result.width and result.height:
                w.view.set_size(result.width, result.height)
            w.view.set_cells(result.cells, w.states_for(result.cells))
            w.view.select_cell(w.current_cell, centre=False)
        pending = w.pending_position
        if pending is not None and pending.get("image") == result.image:
            w.pending_position = None
            w.show_image(result.image)
            if pending.get("cell_id") in w.cells:
                w.select_cell(pending["cell_id"])
        elif w.current_image is None and pending is None:
            w.show_image(result.image)
        w.schedule_refresh()
        emit(w.imageAnalysed, result.image)

    def _error(self, error: Exception) -> None:
        w = self.w
        if w.is_closed():
            return
        from training.modelfolder import ModelFolderError

        if isinstance(error, ModelFolderError):
            status = STATUS_NO_MODEL
            text = (f"The images cannot be analysed: {error}\n"
                    "Choose a model folder with File → Choose model folder….")
        else:
            log.error("analysis failed", exc_info=error)
            status = f"not analysed ({type(error).__name__})"
            text = f"The analysis stopped: {error}"
        w.image_list.mark_waiting_rows(w.results, status)
        w.show_message(text, "error")

    def _finished(self) -> None:
        w = self.w
        if w.is_closed():
            return
        self._runs.forget()
        summary = w.summary
        if summary.images_processed + summary.images_failed < summary.images_total:
            summary.cancelled = True
        n_cells = sum(len(r.cells) for r in w.results.values())
        w.status_area.end(f"{len(w.results)} of {len(w.image_names)} images · {n_cells} white cells · "
                          f"{time.perf_counter() - self._started:.1f} s")
        w.pending_position = None
        w.refresh_views()
        w.gradcam.warm_up()
        emit(w.analysisFinished)

