"""File → Export report…: the export dialog says where and what; the report (``core.reports.export_case``) is
written in a worker from a snapshot of the case, its progress in the status bar, the outcome in the banner."""
from __future__ import annotations

from pathlib import Path

from . import jobs
from .signals import emit


class ExportControl:
    def __init__(self, window):
        self.w = window
        self.worker = None

    def export(self) -> None:
        from ..core.reports.export import export_case, review_status
        from .export_dialog import ExportDialog

        w = self.w
        if not w.folder or not w.results:
            w.show_message("Open and analyse a folder before exporting a report.", "info")
            return
        if w.is_analysing():
            w.show_message("The analysis is still running: export when it has finished.", "info")
            return
        w.wait_for_saves_on_disk()   # every label given so far is in the report
        results = w.case.results
        choice = ExportDialog.ask(w, image_folder=w.folder,
                                  review=review_status([c for r in results for c in r.cells], w.session))
        if choice is None:
            return
        model = w.loaded_model
        info = model.descriptor if model else jobs.describe(w.model_dir)
        session, folder, model_dir, reviewer = w.session, w.folder, w.model_folder(), w.settings.reviewer

        def run(worker=None):
            return export_case(results, session, info, choice.out_dir, formats=choice.formats,
                               reviewer=reviewer or None, overwrite=choice.overwrite, folder=folder,
                               model_dir=model_dir, should_stop=worker.is_cancelled,
                               on_progress=(lambda done, total, message: worker.report_progress(message)))

        w.statusBar().showMessage("Exporting the report…")
        self.worker = w.start_job(run, name="export-report", on_returned=self._exported, on_errored=self._failed,
                                  on_progress=lambda message: w.statusBar().showMessage(str(message)))

    def _exported(self, paths) -> None:
        names = ", ".join(Path(p).name for p in paths)
        folder = Path(paths[0]).parent if paths else ""
        self.w.statusBar().showMessage(f"Report written: {names}", 10000)
        emit(self.w.reportExported, [str(p) for p in paths])
        self.w.show_message(f"Report written to {folder}: {names}", "info")

    def _failed(self, error: Exception) -> None:
        self.w.statusBar().clearMessage()
        self.w.show_message(f"The report was not written: {error}")
