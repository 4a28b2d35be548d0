"""The review window: wiring only. The case (``core.case.Case``: images, results, cells, summary, review order)
lives outside it; the views (``views/``) hold layout; the controllers hold behaviour: the analysis run
(``analysis_control``), the model (``model_control``), the review keys (``review_control``), Grad-CAM
(``gradcam_control``) and the report (``export_control``). Every slow step runs in the one worker pattern
(``worker.py``: ``LatestJob`` where only the latest run counts, ``SerialJobs`` for the saves). The window builds
them, connects them and keeps the selection (image, cell) they share.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QFileDialog, QMainWindow

from .. import RUO_NOTICE, __version__
from ..core.analysis.case import Case
from ..core.model.active import resolve_model
from ..core.model.classifier import assets_dir
from ..core.paths import review_dir
from ..core.review.session import ReviewError, ReviewSession, final_label, final_type
from ..core.settings import Settings
from . import jobs
from .analysis_control import AnalysisControl
from .cell_panel import SelectedCell
from .dialogs import AboutDialog
from .export_control import ExportControl
from .gallery import GalleryCell
from .gradcam_control import GradcamControl
from .model_control import ModelControl
from .review_control import ReviewControl
from .signals import emit
from .views.case_views import CaseViews
from .views.image_list import distinguishable_names, row_status  # noqa: F401 (distinguishable_names re-exported)
from .views.menus import build_actions
from .views.status_area import StatusArea
from .worker import LatestJob, SerialJobs, Worker, start_worker, wait_for_workers

log = logging.getLogger(__name__)

REFRESH_MS = 300          # counts refresh while results stream in (the gallery changes tile by tile)
HISTOGRAM_MS = 1000       # during a run the histogram's bars are recounted at most this often
POSITION_SAVE_MS = 800    # the reviewer's position is saved after they stop moving
PREFERRED_SIZE = QSize(1500, 900)


def initial_window_size(available: QSize | None) -> QSize:
    """The window's size at start: 1500x900, or the screen's free area when that is smaller (a 1366x768
    laptop), so the research-use notice, the status bar and the counts are never below the screen's edge."""
    return PREFERRED_SIZE if available is None else PREFERRED_SIZE.boundedTo(available)


class MainWindow(QMainWindow):
    analysisFinished = Signal()       # the current run ended (done, cancelled or failed)
    imageAnalysed = Signal(str)       # an image's result was applied (image name)
    modelLoaded = Signal()
    engineConverted = Signal()        # the background LiteRT conversion finished and the engine switched to it
    modelFailed = Signal(str)
    gradcamShown = Signal(str)        # cell_id
    reportExported = Signal(object)   # list of written file paths
    displayImageShown = Signal(str)   # image name: its pixels are on screen
    row_status = staticmethod(row_status)

    def __init__(self, model_dir: str | Path | None = None, settings: Settings | None = None):
        super().__init__()
        jobs.import_tensorflow_here()   # on the GUI thread, before the model-loading worker (see its docstring)
        self.settings = settings or Settings.load()
        resolved = resolve_model(model_dir, remembered=self.settings.last_model_folder)
        registry_note = resolved.note
        self.model_dir: Path | None = None if resolved.bundled else resolved.folder   # None: the bundled model
        self.loaded_model: jobs.LoadedModel | None = None
        self.folder: Path | None = None
        self.case = Case()
        self.current_image: str | None = None
        self.current_cell: str | None = None
        self.messages: list[tuple[str, str]] = []   # (level, text), newest last
        self.pending_position: dict | None = None
        self._workers: set[Worker] = set()
        self._closed = False
        # The jobs of which only the latest counts; the review changes, position and settings are saved one after
        # another (two fsyncs each) in one worker, in order.
        self._display = LatestJob("display-image", track=self.track)
        self._saves = SerialJobs("save-review", track=self.track)

        self.setWindowTitle(f"leukviewer {__version__} — {RUO_NOTICE}")
        icon = assets_dir() / "icons" / "leukviewer.png"
        if icon.is_file():  # the taskbar / window-switcher icon (the installer bundles the same file)
            self.setWindowIcon(QIcon(str(icon)))
        self.resize(self._initial_size())
        self.setAcceptDrops(True)
        self.views = CaseViews(self.settings.overlays.gradcam_opacity)
        self.setCentralWidget(self.views)
        for name in ("image_list", "cell_panel", "view", "banner", "legend", "gallery", "summary_panel",
                     "ruo_label", "help_overlay"):
            setattr(self, name, getattr(self.views, name))
        self.image_details = self.image_list.details
        self.gradcam = GradcamControl(self)
        self.model = ModelControl(self)
        self.exporter = ExportControl(self)
        self.choose_model_folder, self.export_report = self.model.choose, self.exporter.export
        self.analysis = AnalysisControl(self)
        self.cancel_analysis, self.is_analysing = self.analysis.cancel, self.analysis.is_running
        self.review = ReviewControl(self, self._saves)
        for name in ("label_current", "type_current", "confirm_current", "undo", "redo", "reviewer",
                     "change_reviewer"):
            setattr(self, name, getattr(self.review, name))
        build_actions(self)
        self.status_area = StatusArea(self.statusBar(), self.cancel_action)
        for name in ("model_label", "device_label", "progress_bar", "progress_label", "cancel_button"):
            setattr(self, name, getattr(self.status_area, name))
        self._connect_views()
        self._refresh_timer = QTimer(self, singleShot=True, interval=REFRESH_MS, timeout=self.refresh_views)
        self._histogram_timer = QTimer(self, singleShot=True, interval=HISTOGRAM_MS, timeout=self._update_histogram)
        self._position_timer = QTimer(self, singleShot=True, interval=POSITION_SAVE_MS, timeout=self._save_position)
        self.refresh_views()
        if registry_note:
            self.show_message(registry_note, "warning")
        self.model.load()

    def _connect_views(self) -> None:
        self.image_list.imageChosen.connect(self.show_image)
        self.cell_panel.opacityChanged.connect(self.gradcam.opacity_changed)
        self.view.cellClicked.connect(lambda cell_id: self.select_cell(cell_id, centre=False))
        self.gallery.cellActivated.connect(lambda cell_id: self.select_cell(cell_id))
        self.gallery.cellDropped.connect(self.review.cell_dropped)
        self.gallery.cellTypeChosen.connect(self.review.cell_type_chosen)
        self.gallery.thumbnailsWanted.connect(self._cut_thumbnails)

    # ---------------------------------------------------------------- the case as the views read it

    results = property(lambda self: self.case.by_image)       # image name -> ImageResult, as they arrived
    cells = property(lambda self: self.case.cells_by_id)      # cell id -> Cell
    image_names = property(lambda self: self.case.image_names)
    summary = property(lambda self: self.case.summary)
    session = property(lambda self: self.case.session)
    rows = property(lambda self: self.image_list.rows)

    def is_closed(self) -> bool:
        return self._closed

    def navigation_order(self) -> list[str]:
        """J / K order: the cells of one image (in gallery order: ALL, uncertain, HEM, each by probability),
        then those of the next image in the list."""
        return self.case.navigation_order(self.gallery.order())

    _navigation_order = navigation_order

    def show_message(self, text: str, level: str = "error") -> None:
        """A non-blocking message: the banner above the image and the status bar. Never a modal dialog."""
        self.messages.append((level, text))
        self.banner.show_message(text, level)
        self.statusBar().showMessage(text.split("\n")[0], 15000)

    # ---------------------------------------------------------------- the model

    def model_folder(self) -> Path:
        return self.model.folder()

    def set_model_folder(self, folder: str | Path | None) -> None:
        """Use another model (None: the bundled one); an open case is analysed again with it."""
        self.model_dir = Path(folder) if folder else None
        self.settings.last_model_folder = str(self.model_dir) if self.model_dir else ""
        self.save_settings()
        self.banner.hide()
        self.gradcam.model_changed()
        self.model.load()
        if self.folder is not None:
            self.open_folder(self.folder)

    # ---------------------------------------------------------------- opening a case

    def on_subfolders_toggled(self, checked: bool) -> None:
        """File → Include sub-folders: remembered, and an open case is listed again with (or without) them."""
        self.settings.include_subfolders = bool(checked)
        self.save_settings()
        if self.folder is not None:
            self.open_folder(self.folder)

    def choose_folder(self) -> None:
        start = self.settings.recent_folders[0] if self.settings.recent_folders else str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of smear images", start)
        if folder:
            self.open_folder(folder)

    def fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for folder in self.settings.recent_folders:
            action = self.recent_menu.addAction(folder)
            action.triggered.connect(lambda checked=False, f=folder: self.open_folder(f))
        self.recent_menu.setEnabled(bool(self.settings.recent_folders))

    def open_folder(self, folder: str | Path) -> None:
        """Open a case: restore its review, show cached results at once and analyse the rest in a worker."""
        folder = Path(folder)
        if not folder.is_dir():
            self.show_message(f"{folder} is not a folder.", "error")
            return
        self.cancel_analysis(quiet=True)
        self._saves.drain()   # the previous case's last labels are on disk before any case is read again
        self._reset_case()
        self.folder = folder.resolve()
        self.setWindowTitle(f"{self.folder.name} — leukviewer {__version__} — {RUO_NOTICE}")
        self.settings.add_recent_folder(self.folder)
        self.save_settings()
        self.fill_recent_menu()
        described = jobs.describe(self.model_dir)
        identity = described.identity() if described else {}
        try:
            session = ReviewSession.open(self.folder, identity)
        except ReviewError as error:
            session = None
            self.show_message(f"{error}. Reviews of this folder cannot be saved until it is fixed or moved away.",
                              "error")
        self.case = Case(self.folder, session)
        if session is not None:
            if session.model_changed():
                self.show_message("This folder was reviewed with another model version "
                                  f"({session.saved_model.get('name')} {session.saved_model.get('version')}"
                                  "); reviewed labels are kept by cell number, please check them.", "warning")
            if session.location_note():
                self.show_message(session.location_note(), "info")
            if session.position.get("image"):
                self.pending_position = dict(session.position)
            session.audit_entries()
            if session.audit_damage:
                self.show_message(session.audit_damage, "warning")
        self.analysis.start(session.directory if session else review_dir(self.folder))

    def _reset_case(self) -> None:
        self.case = Case()
        self.views.clear()
        self.current_image = self.current_cell = None
        self.pending_position = None
        self.gradcam.clear()
        self.refresh_views()

    # ---------------------------------------------------------------- showing images and cells

    def states_for(self, cells) -> dict:
        return {c.cell_id: (final_label(c, self.session), bool(self.case.reviewed_label(c.cell_id)),
                            final_type(c, self.session)) for c in cells}

    def show_image(self, image: str | None) -> None:
        """Show an image: its outlines at once, its pixels when a worker has decoded them."""
        if image is None or image not in self.rows:
            return
        if image != self.current_image:
            self.current_image = image
            self.current_cell = None
            if self.pending_position and self.pending_position.get("image") != image:
                self.pending_position = None
            result = self.case.result(image)
            cells = result.cells if result else []
            self.view.show_image(image, result.width if result else 0, result.height if result else 0, cells,
                                 self.states_for(cells))
            self._display.start(jobs.load_display_image, self.folder / image, image,
                                on_returned=self._on_display_image, on_errored=self._on_display_error)
            self._position_timer.start()
        self.image_list.select(image)
        self._update_summary()
        self._update_histogram()

    def _on_display_image(self, display: jobs.DisplayImage) -> None:
        if self._closed or display.image != self.current_image:
            return
        self.view.set_size(display.width, display.height)
        self.view.set_pixmap(display.image, QPixmap.fromImage(display.qimage), display.scale)
        emit(self.displayImageShown, display.image)
        if self.gradcam_action.isChecked():
            self.gradcam.request()

    def _on_display_error(self, error: Exception) -> None:
        if not self._closed:
            self.statusBar().showMessage(f"The image cannot be shown: {error}", 10000)

    def select_cell(self, cell_id: str | None, centre: bool = True) -> None:
        cell = self.case.cell(cell_id)
        if cell is None:
            return
        self.pending_position = None
        if cell.image != self.current_image:
            self.show_image(cell.image)
        self.current_cell = cell_id
        self.view.select_cell(cell_id, centre=centre)
        self.gallery.set_current(cell_id)
        self.view.set_heatmap(None)
        self.update_cell_panel()
        if self.gradcam_action.isChecked():
            self.gradcam.request()
        self._update_summary()
        self._position_timer.start()

    def update_cell_panel(self, thumbnail=None) -> None:
        """The selected-cell panel: the cell, its image, P(blast), the model's and the reviewer's label."""
        cell = self.case.cell(self.current_cell)
        if cell is None:
            self.cell_panel.set_cell(None)
            return
        review = self.case.review_of(cell)
        self.cell_panel.set_cell(SelectedCell(
            cell.cell_id, cell.image, cell.blast_probability, cell.label, review.label if review else None,
            review.reviewer if review else "", review.time if review else "", bool(cell.partial),
            getattr(cell, "cell_type", None),
            thumbnail if thumbnail is not None else self.gallery.thumbnail(cell.cell_id)))

    def _step(self, delta: int) -> None:
        target = self.case.next_cell(self.current_cell, self.current_image, delta, self.gallery.order())
        if target is not None:
            self.select_cell(target)

    def next_cell(self) -> None:
        self._step(+1)

    def previous_cell(self) -> None:
        self._step(-1)

    # ---------------------------------------------------------------- review settings and overlays

    def wait_for_saves(self, timeout_ms: int = 30_000) -> bool:
        """Block (running the event loop) until every queued review change is saved and shown."""
        return self._saves.wait(timeout_ms)

    def on_auto_advance_toggled(self, checked: bool) -> None:
        """Review → Advance after a label: remembered, and said in the ? help."""
        self.settings.auto_advance = bool(checked)
        self.help_overlay.set_auto_advance(self.settings.auto_advance)
        self.save_settings()

    def on_overlays_toggled(self, checked: bool) -> None:
        self.view.set_overlays_visible(checked)
        self.settings.overlays.outlines = checked

    def on_gradcam_toggled(self, checked: bool) -> None:
        self.gradcam.toggled(checked)

    # ---------------------------------------------------------------- refreshing the views

    def update_row(self, image: str) -> None:
        result = self.case.result(image)
        if result is None:
            return
        self.image_list.show_result(image, result.status, result.ok, self.case.reviewed_counts(image))
        if image == self.current_image:
            self.image_list.show_details(image)

    def schedule_refresh(self) -> None:
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def gallery_cell(self, c) -> GalleryCell:
        """What the cell's gallery tile shows: its label and type after review."""
        return GalleryCell(c.cell_id, c.image, c.blast_probability, c.label, final_label(c, self.session),
                           bool(self.case.reviewed_label(c.cell_id)), final_type(c, self.session), c.cell_type)

    def _cut_thumbnails(self, cell_ids: list) -> None:
        """Thumbnails the gallery dropped from its cache and shows again: cut them again in a worker."""
        if self.folder is None or self._closed:
            return
        by_path: dict[Path, list] = {}
        for cell in filter(None, map(self.case.cell, cell_ids)):
            by_path.setdefault(self.folder / cell.image, []).append(cell)
        if by_path:
            folder = self.folder
            self.start_job(jobs.cut_thumbnails, by_path, name="thumbnails",
                           on_returned=lambda thumbnails: self._on_thumbnails(folder, thumbnails))

    def _on_thumbnails(self, folder: Path, thumbnails: dict) -> None:
        if self._closed or folder != self.folder:
            return
        self.gallery.add_thumbnails(thumbnails)
        if self.current_cell in thumbnails:
            self.update_cell_panel(thumbnails[self.current_cell])

    def refresh_views(self) -> None:
        """The counts and the histogram (the gallery changes tile by tile: the analysis run, the reviews)."""
        if self._closed:
            return
        self._update_summary()
        if self.is_analysing():
            if not self._histogram_timer.isActive():
                self._histogram_timer.start()
        else:
            self._update_histogram()

    def _update_summary(self) -> None:
        result = self.case.result(self.current_image)
        image_reviewed = self.case.reviewed_counts(self.current_image) if result else {}
        self.summary_panel.set_counts(self.current_image, result.counts() if result else {}, image_reviewed,
                                      self.summary.to_dict() if self.folder else {},
                                      self.case.reviewed_counts() if self.folder else {})

    def views_settled(self) -> bool:
        """No deferred refresh of the counts or the histogram: what is on screen now is final (for screenshots)."""
        return not (self._refresh_timer.isActive() or self._histogram_timer.isActive())

    def _update_histogram(self) -> None:
        self._histogram_timer.stop()
        result = self.case.result(self.current_image)
        cells = list(self.cells.values())
        self.summary_panel.histogram.set_probabilities([c.blast_probability for c in cells],
                                                       [c.blast_probability for c in result.cells] if result else [],
                                                       [final_label(c, self.session) for c in cells])

    def _save_position(self) -> None:
        if self.session is None or self._closed:
            return
        position = {"image": self.current_image, "cell_id": self.current_cell}
        if position != self.session.position:
            def failed(error: Exception) -> None:
                if not self._closed:
                    self.statusBar().showMessage(f"The position could not be saved: {error}", 8000)
            self._saves.submit(self.session.set_position, position["image"], position["cell_id"], on_errored=failed)

    # ---------------------------------------------------------------- dialogs

    def show_about(self) -> AboutDialog:
        dialog = AboutDialog(self, self.model_folder())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()  # not modal: the review goes on behind it
        return dialog

    def wait_for_saves_on_disk(self) -> None:
        """Block until every queued review change is on disk (their outcomes reach the views later)."""
        self._saves.drain()

    # ---------------------------------------------------------------- workers and window life

    def start_job(self, fn, *args, name: str = "", **slots) -> Worker:
        """Start a worker of this window (``worker.start_worker``): closing the window cancels and waits for it."""
        return self.track(start_worker(fn, *args, name=name, **slots))

    _start = start_job

    def track(self, worker: Worker) -> Worker:
        """Remember a worker of this window (or of a dialog it opened), so closing it cancels and waits for it."""
        self._workers.add(worker)
        worker.signals.finished.connect(lambda w=worker: self._workers.discard(w))
        if worker.is_finished():  # it may have finished before the connection above existed
            self._workers.discard(worker)
        return worker

    _track = track

    def save_settings(self) -> None:
        """Save a copy of the settings as they are now, in the save worker (a synced write; after the changes
        queued before it; closing the window waits for it)."""
        snapshot = copy.deepcopy(self.settings)

        def failed(error: Exception) -> None:
            if not self._closed:
                self.statusBar().showMessage(f"Settings could not be saved: {error}", 8000)
        self._saves.submit(snapshot.save, on_errored=failed)

    _save_settings = save_settings

    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event):
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        self.open_folder(paths[0] if paths[0].is_dir() else paths[0].parent)

    def resizeEvent(self, event):
        super().resizeEvent(event)
        if self.help_overlay.isVisible():
            self.help_overlay.setGeometry(self.help_overlay.parentWidget().rect())

    def closeEvent(self, event):
        """Stop every worker cleanly and save the position and settings before the window goes."""
        if self._position_timer.isActive():
            self._position_timer.stop()
            self._save_position()
        self.save_settings()
        if not self._saves.drain(120):   # every label given reaches the disk before the window goes
            log.warning("review saves still running at close")
        self._closed = True
        self.summary_panel.histogram.stop()
        for worker in list(self._workers):
            worker.cancel()
        if not wait_for_workers(120_000):
            log.warning("workers still running at close: %s", list(self._workers))
        self._refresh_timer.stop()
        self._histogram_timer.stop()
        super().closeEvent(event)

    def sizeHint(self):
        return QSize(PREFERRED_SIZE)

    def _initial_size(self) -> QSize:
        from PySide6.QtGui import QGuiApplication

        screen = QGuiApplication.primaryScreen()
        # The offscreen platform's 800x800 "screen" is a placeholder, not a display a window must fit.
        if screen is None or QGuiApplication.platformName() == "offscreen":
            return initial_window_size(None)
        return initial_window_size(screen.availableGeometry().size())
