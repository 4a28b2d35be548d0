"""The review window: a case folder's images, their cells, the gallery, the counts, and the review keys.

Views (``image_view``, ``gallery``, ``summary``, ``dialogs``) hold layout; this window holds behaviour: it
starts workers (``worker.py``) for everything slow, applies what they report on the GUI thread, and records every
review through ``leukviewer.core.review.ReviewSession`` (saved after each change).
"""
from __future__ import annotations

import copy
import html
import logging
import time
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QBrush, QColor, QIcon, QKeySequence, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QHeaderView, QLabel, QMainWindow, QProgressBar,
                               QSplitter, QToolButton, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from training.celltypes import CELL_TYPES

from .. import RUO_NOTICE, __version__
from ..core.classifier import LABEL_BLAST, LABEL_NORMAL, LABEL_UNCERTAIN, assets_dir
from ..core.results import STATUS_NO_CELLS, STATUS_OK, CaseSummary, ImageResult
from ..core.paths import review_dir
from ..core.review import ReviewError, ReviewSession, final_label, final_type, reviewed_counts
from ..core.settings import Settings
from . import jobs
from .dialogs import AboutDialog, HelpOverlay, MessageBanner, ReviewerDialog
from .cell_panel import CellPanel, SelectedCell
from .gallery import CellGallery, GalleryCell
from .image_view import ImageView
from .signals import emit
from .style import hex_colour
from .summary import SummaryPanel
from .worker import SerialJobs, Worker, start_worker, wait_for_workers

log = logging.getLogger(__name__)

COLUMNS = ("Image", "Status", "Cells", "ALL", "Unc.", "Reviewed")
STATUS_WAITING = "waiting"
STATUS_CANCELLED = "not analysed (cancelled)"
STATUS_NO_MODEL = "not analysed (no model)"
REFRESH_MS = 300          # counts refresh while results stream in (the gallery changes tile by tile)
HISTOGRAM_MS = 1000       # the histogram is redrawn (in a worker) at most this often during a run
POSITION_SAVE_MS = 800    # the reviewer's position is saved after they stop moving
PROGRESS_MS = 250         # the progress bar and ETA are redrawn at most this often
GRADCAM_WARM_UP_DELAY_MS = 1500   # after the model loads, unless an analysis is running (then after it)


def _format_eta(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _registry_model() -> tuple[Path | None, str | None]:
    """The active model of the model manager (None: the bundled one) and, when the bundled one stands in for a
    damaged or dangling registry, why (shown in the window)."""
    from ..core.models import ModelRegistry, app_model_folder

    try:
        registry = ModelRegistry()
        return app_model_folder(registry.active()), registry.fallback_reason()
    except (OSError, ValueError) as e:   # RegistryError and ModelFolderError are ValueErrors
        return None, f"The model registry cannot be read ({e}). The bundled model is used."


_NAME_SEPARATORS = "_-. /"


def distinguishable_names(names: list[str]) -> dict[str, str]:
    """What the image list shows for each name: without the prefix all names share (cut back to a separator, so
    "BloodImage_00010.jpg" shows as "…00010.jpg"), so that a narrow list never shows two files alike; the full
    path goes in the tooltip. A single name, or a shared prefix under 4 characters, is shown whole."""
    if len(names) < 2:
        return {n: n for n in names}
    first, last = min(names), max(names)
    common = 0
    while common < min(len(first), len(last)) and first[common] == last[common]:
        common += 1
    cut = max((i + 1 for i in range(common) if first[i] in _NAME_SEPARATORS), default=0)
    if cut < 4:
        return {n: n for n in names}
    return {n: "…" + n[cut:] for n in names}


def status_kind(status: str) -> str:
    """The icon of an image's status: ok, none (no cells), waiting, skipped (not analysed) or error."""
    if status == STATUS_OK:
        return "ok"
    if status.startswith(STATUS_NO_CELLS):   # "no cells found: <why it may be so>"
        return "none"
    if status == STATUS_WAITING:
        return "waiting"
    if status.startswith("not analysed"):
        return "skipped"
    return "error"


_STATUS_ICONS: dict[str, QIcon] = {}
_STATUS_LOOK = {"ok": ("#1b7f3b", "✓"), "none": ("#8a8a8a", "○"), "waiting": ("#c8c8c8", "…"),
                "skipped": ("#c77700", "–"), "error": ("#b00020", "!")}


def status_icon(kind: str) -> QIcon:
    """A coloured disc with a glyph (so the states differ by shape as well as by colour)."""
    if kind not in _STATUS_ICONS:
        from PySide6.QtGui import QFont, QPainter

        colour, glyph = _STATUS_LOOK[kind]
        pixmap = QPixmap(32, 32)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(colour))
        painter.drawEllipse(2, 2, 28, 28)
        font = QFont()
        font.setPixelSize(20)
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(QColor("white"))
        painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, glyph)
        painter.end()
        _STATUS_ICONS[kind] = QIcon(pixmap)
    return _STATUS_ICONS[kind]


def no_images_message(folder: Path, subfolders_included: bool, in_subfolders: int) -> str:
    """What the window says of a folder without images, pointing at File → Include sub-folders when that helps."""
    kinds = "BMP, PNG, JPEG or TIFF"
    if subfolders_included:
        return f"No images in {folder} or its sub-folders ({kinds})."
    if in_subfolders:
        return (f"No images directly in {folder}, but its sub-folders hold {in_subfolders}: turn on "
                "File → Include sub-folders to analyse them.")
    return (f"No images in {folder} ({kinds}). Sub-folders are not included: File → Include sub-folders "
            "adds their images.")


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

    def __init__(self, model_dir: str | Path | None = None, settings: Settings | None = None):
        super().__init__()
        jobs.import_tensorflow_here()   # on the GUI thread, before the model-loading worker (see its docstring)
        self.settings = settings or Settings.load()
        registry_folder, registry_note = (None, None) if model_dir or self.settings.last_model_folder \
            else _registry_model()
        chosen = model_dir or self.settings.last_model_folder or registry_folder or None
        self.model_dir: Path | None = Path(chosen) if chosen else None
        self.loaded_model: jobs.LoadedModel | None = None
        self.folder: Path | None = None
        self.session: ReviewSession | None = None
        self.summary = CaseSummary(folder="")
        self.results: dict[str, ImageResult] = {}
        self.cells: dict = {}
        self.image_names: list[str] = []
        self.rows: dict[str, QTreeWidgetItem] = {}
        self.current_image: str | None = None
        self.current_cell: str | None = None
        self.messages: list[tuple[str, str]] = []   # (level, text), newest last
        self.failures: list[str] = []
        self._pending_position: dict | None = None
        self._heatmaps: dict[str, jobs.CellHeatmap] = {}
        self._analysis: Worker | None = None
        self._display: Worker | None = None
        self._gradcam: Worker | None = None
        self._model_worker: Worker | None = None
        self._gradcam_warm_up: Worker | None = None
        self._gradcam_ready = False     # Grad-CAM of the loaded model is built and traced
        self._workers: set[Worker] = set()
        # Review changes and the position are saved (two fsyncs each) one after another in a worker, in order.
        self._saves = SerialJobs("save-review", track=self.track)
        self._run_started = 0.0
        self._analysed = 0
        self._analysis_clock = 0.0
        self._closed = False

        self.setWindowTitle(f"leukviewer {__version__} — {RUO_NOTICE}")
        icon = assets_dir() / "icons" / "leukviewer.png"
        if icon.is_file():  # the taskbar / window-switcher icon (the installer bundles the same file)
            self.setWindowIcon(QIcon(str(icon)))
        self.resize(self._initial_size())
        self.setAcceptDrops(True)
        self._build_views()
        self._build_actions()
        self._build_status_bar()
        self._refresh_timer = QTimer(self, singleShot=True, interval=REFRESH_MS, timeout=self._refresh_views)
        self._histogram_timer = QTimer(self, singleShot=True, interval=HISTOGRAM_MS, timeout=self._update_histogram)
        self._position_timer = QTimer(self, singleShot=True, interval=POSITION_SAVE_MS, timeout=self._save_position)
        self._progress = (0, 0)
        self._progress_timer = QTimer(self, singleShot=True, interval=PROGRESS_MS, timeout=self._show_progress)
        self._refresh_views()
        if registry_note:
            self.show_message(registry_note, "warning")
        self.load_model()

    # ================================================================ layout

    def _build_views(self) -> None:
        self.image_list = QTreeWidget()
        self.image_list.setHeaderLabels(COLUMNS)
        self.image_list.setRootIsDecorated(False)
        self.image_list.setUniformRowHeights(True)
        self.image_list.setAlternatingRowColors(True)
        # The shared prefix is cut off (distinguishable_names): what is left differs at its start.
        self.image_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.image_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.image_list.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        header = self.image_list.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        # Sized from the rows on screen only: by default Qt measures up to 1,000 rows after every row's change,
        # ~30 ms of the GUI thread per analysed image in a 300-image case, ~100 ms at 1,000.
        header.setResizeContentsPrecision(0)
        header.setStretchLastSection(False)
        self.image_list.itemClicked.connect(lambda item: self.show_image(item.data(0, Qt.ItemDataRole.UserRole)))
        self.image_list.setMinimumWidth(300)
        self.image_list.setMinimumHeight(120)
        self.cell_panel = CellPanel(opacity=self.settings.overlays.gradcam_opacity)
        self.cell_panel.opacityChanged.connect(self._on_gradcam_opacity)
        # The selected image's status in full (the list shows an icon): why it is unreadable or has no cell.
        self.image_details = QLabel()
        self.image_details.setWordWrap(True)
        self.image_details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.image_details.setStyleSheet("padding:3px; background:#fbf3e6")
        self.image_details.hide()
        image_box = QWidget()
        image_box_layout = QVBoxLayout(image_box)
        image_box_layout.setContentsMargins(0, 0, 0, 0)
        image_box_layout.setSpacing(2)
        image_box_layout.addWidget(self.image_list, 1)
        image_box_layout.addWidget(self.image_details)
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(image_box)
        left.addWidget(self.cell_panel)
        left.setStretchFactor(0, 1)
        left.setStretchFactor(1, 0)
        left.setChildrenCollapsible(False)

        self.view = ImageView()
        self.view.set_heatmap_opacity(self.settings.overlays.gradcam_opacity)
        self.view.cellClicked.connect(lambda cell_id: self.select_cell(cell_id, centre=False))
        self.banner = MessageBanner()
        centre = QWidget()
        centre_layout = QVBoxLayout(centre)
        centre_layout.setContentsMargins(0, 0, 0, 0)
        centre_layout.setSpacing(2)
        centre_layout.addWidget(self.banner)
        centre_layout.addWidget(self.view, 1)
        self.legend = QLabel(
            "Outlines: " + " ".join(f"<b style='color:{hex_colour(label)}'>■ {name}</b>" for label, name in (
                (LABEL_BLAST, "ALL"), (LABEL_UNCERTAIN, "uncertain"), (LABEL_NORMAL, "HEM")))
            + " &nbsp;·&nbsp; dashed: the model's suggestion &nbsp;·&nbsp; solid: reviewed"
            " &nbsp;·&nbsp; hover a cell for its type and probability &nbsp;·&nbsp; <b>?</b> shortcuts")
        self.legend.setStyleSheet("color:#444; padding:2px 4px")
        self.legend.setWordWrap(True)
        centre_layout.addWidget(self.legend)

        self.gallery = CellGallery()
        self.gallery.cellActivated.connect(lambda cell_id: self.select_cell(cell_id))
        self.gallery.cellDropped.connect(self._on_cell_dropped)
        self.gallery.cellTypeChosen.connect(self._on_cell_type_chosen)
        self.gallery.thumbnailsWanted.connect(self._cut_thumbnails)
        self.summary_panel = SummaryPanel(start=self._start)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.gallery)
        right.addWidget(self.summary_panel)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 0)
        right.setMinimumWidth(400)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(centre)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setStretchFactor(2, 0)
        splitter.setSizes([330, 730, 440])
        splitter.setChildrenCollapsible(False)

        # Always visible, whatever the reviewer does with splitters or dialogs.
        self.ruo_label = QLabel(RUO_NOTICE)
        self.ruo_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.ruo_label.setStyleSheet("background:#fff3c4; color:#5c4300; font-weight:bold; padding:3px;"
                                     " border-top:1px solid #e0c060")
        root = QWidget()
        layout = QVBoxLayout(root)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.ruo_label)
        self.setCentralWidget(root)
        self.help_overlay = HelpOverlay(root)

    def _action(self, text: str, slot, shortcuts=(), checkable: bool = False, tip: str = "") -> QAction:
        action = QAction(text, self)
        keys = []
        for shortcut in shortcuts:  # a platform's standard key may repeat another: Qt calls that ambiguous
            for sequence in (QKeySequence.keyBindings(shortcut) if isinstance(shortcut, QKeySequence.StandardKey)
                             else [QKeySequence(shortcut)]):
                if sequence not in keys:
                    keys.append(sequence)
        if keys:
            action.setShortcuts(keys)
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setCheckable(checkable)
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work whether or not the action is in a visible menu
        return action

    def _build_actions(self) -> None:
        a = self._action
        self.open_action = a("&Open folder…", self.choose_folder, [QKeySequence.StandardKey.Open],
                             tip="Open a folder of smear images (or drop one on the window)")
        self.cancel_action = a("&Cancel analysis", self.cancel_analysis, ["Esc"], tip="Stop the running analysis")
        self.cancel_action.setEnabled(False)
        self.model_action = a("Choose &model folder…", self.choose_model_folder)
        self.bundled_model_action = a("Use the &bundled model", lambda: self.set_model_folder(None))
        self.subfolders_action = a("Include &sub-folders", self._on_subfolders_toggled, checkable=True,
                                   tip="Open folders with the images of their sub-folders too (remembered)")
        self.subfolders_action.setChecked(self.settings.include_subfolders)
        self.export_action = a("&Export report…", self.export_report, ["Ctrl+E"],
                               tip="Write the case's PDF report, CSV tables and QuPath outlines")
        self.quit_action = a("&Quit", self.close, [QKeySequence.StandardKey.Quit])

        self.overlay_action = a("Show &outlines", self._on_overlays_toggled, ["O"], checkable=True,
                                tip="Show or hide the cell outlines (O)")
        self.overlay_action.setChecked(self.settings.overlays.outlines)
        self.gradcam_action = a("&Grad-CAM", self._on_gradcam_toggled, ["G"], checkable=True,
                                tip="Grad-CAM heat map of the selected cell: where the model looked (G)")
        self.gradcam_action.setChecked(self.settings.overlays.gradcam)
        self.zoom_in_action = a("Zoom &in", self.view.zoom_in, ["+", "=", QKeySequence.StandardKey.ZoomIn])
        self.zoom_out_action = a("Zoom &out", self.view.zoom_out, ["-", QKeySequence.StandardKey.ZoomOut])
        self.fit_action = a("&Fit", self.view.fit, ["F"], tip="Fit the image to the window (F)")

        self.next_action = a("&Next cell", self.next_cell, ["Right", "Down", "J"])
        self.previous_action = a("&Previous cell", self.previous_cell, ["Left", "Up", "K"])
        self.blast_action = a("Label &ALL (blast)", lambda: self.label_current(LABEL_BLAST), ["A"])
        self.normal_action = a("Label &HEM (normal)", lambda: self.label_current(LABEL_NORMAL), ["N"])
        self.uncertain_action = a("Label &UNCERTAIN", lambda: self.label_current(LABEL_UNCERTAIN), ["U"])
        self.confirm_action = a("&Confirm suggestion", self.confirm_current, ["Space"])
        self.undo_action = a("&Undo", self.undo, [QKeySequence.StandardKey.Undo, "Ctrl+Z"])
        self.redo_action = a("&Redo", self.redo, ["Ctrl+Shift+Z", QKeySequence.StandardKey.Redo])
        self.reviewer_action = a("Reviewer &name…", self.change_reviewer)
        self.auto_advance_action = a("&Advance after a label", self._on_auto_advance_toggled, checkable=True,
                                     tip="After A, N, U or Space select the next cell (remembered)")
        self.auto_advance_action.setChecked(self.settings.auto_advance)
        self.help_overlay.set_auto_advance(self.settings.auto_advance)
        self.help_action = a("&Keyboard shortcuts", self.help_overlay.toggle, ["?", "Shift+?", "F1"])
        self.about_action = a("&About leukviewer", self.show_about)

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.open_action)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._fill_recent_menu()
        file_menu.addAction(self.subfolders_action)
        file_menu.addAction(self.export_action)
        file_menu.addSeparator()
        file_menu.addAction(self.model_action)
        file_menu.addAction(self.bundled_model_action)
        file_menu.addSeparator()
        file_menu.addAction(self.cancel_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        view_menu = menu.addMenu("&View")
        for action in (self.overlay_action, self.gradcam_action, None, self.zoom_in_action, self.zoom_out_action,
                       self.fit_action):
            view_menu.addSeparator() if action is None else view_menu.addAction(action)
        review_menu = menu.addMenu("&Review")
        for action in (self.next_action, self.previous_action, None, self.blast_action, self.normal_action,
                       self.uncertain_action, self.confirm_action, self.auto_advance_action, None, self.undo_action,
                       self.redo_action, None, self.reviewer_action):
            review_menu.addSeparator() if action is None else review_menu.addAction(action)
        # the selected cell's white-cell type (also: right-click a cell in the gallery)
        self.type_menu = review_menu.addMenu("Cell &type of the selected cell")
        self.type_actions: dict[str, QAction] = {}
        for cell_type, words in CELL_TYPES.items():
            action = self.type_menu.addAction(words)
            action.triggered.connect(lambda _=False, t=cell_type: self.type_current(t))
            self.type_actions[cell_type] = action
        from .retrain.wizard import install_menus

        install_menus(self)
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self.help_action)
        help_menu.addAction(self.about_action)

        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main-toolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for action in (self.open_action, self.cancel_action, None, self.fit_action, self.zoom_in_action,
                       self.zoom_out_action, self.overlay_action, self.gradcam_action, None, self.undo_action,
                       self.redo_action, None, self.help_action, self.about_action):
            toolbar.addSeparator() if action is None else toolbar.addAction(action)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.model_label = QLabel("Model: –")
        self.device_label = QLabel("Device: –")
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.hide()
        self.progress_label = QLabel("")
        self.cancel_button = QToolButton()
        self.cancel_button.setDefaultAction(self.cancel_action)
        self.cancel_button.setText("Cancel")
        self.cancel_button.hide()
        for widget in (self.progress_label, self.progress_bar, self.cancel_button, self.model_label,
                       self.device_label):
            bar.addPermanentWidget(widget)

    # ================================================================ messages

    def show_message(self, text: str, level: str = "error") -> None:
        """A non-blocking message: the banner above the image and the status bar. Never a modal dialog."""
        self.messages.append((level, text))
        self.banner.show_message(text, level)
        self.statusBar().showMessage(text.split("\n")[0], 15000)

    # ================================================================ the model

    def model_folder(self) -> Path:
        return jobs.resolve_model_dir(self.model_dir)

    def load_model(self) -> None:
        identity = jobs.model_identity(self.model_dir)
        self.model_label.setText(f"Model: {identity.get('name', self.model_folder().name)} "
                                 f"{identity.get('version', '')} (loading…)")
        self._model_worker = self._start(jobs.load_model, self.model_dir, on_returned=self._on_model_loaded,
                                         on_errored=self._on_model_failed, name="load-model")

    def _on_model_loaded(self, model: jobs.LoadedModel) -> None:
        if self._closed or model.folder != self.model_folder():
            return
        self.loaded_model = model
        info = model.classifier.info
        self.model_label.setText(f"Model: {info.name} {info.version} ({info.short_hash})")
        self.model_label.setToolTip(f"{model.folder}\nthreshold {info.threshold:.3f}, uncertain between "
                                    f"{info.uncertainty_band[0]:.3f} and {info.uncertainty_band[1]:.3f}\n"
                                    f"manifest SHA-256 {info.manifest_sha256 or 'none (model.json not verified)'}")
        if model.classifier.integrity_warning:
            self.show_message(f"Warning: {model.classifier.integrity_warning}.", "warning")
        self.device_label.setText(f"Device: {model.device}")
        self.summary_panel.histogram.set_decision(info.threshold, info.uncertainty_band)
        self.gallery.set_cell_types(info.cell_types)
        self._gradcam_ready = False
        # A moment later, so a case opened at once analyses first; during an analysis it waits for its end.
        QTimer.singleShot(GRADCAM_WARM_UP_DELAY_MS, self, self._warm_up_gradcam)
        if jobs.wants_engine_conversion(model):   # LiteRT converted in the background, used once ready
            self._start(jobs.convert_engine, model, name="engine-conversion",
                        on_returned=lambda switched: switched and self._on_engine_converted(model),
                        on_errored=lambda error: log.warning("background LiteRT conversion failed: %s", error))
        emit(self.modelLoaded)

    def _on_engine_converted(self, model: jobs.LoadedModel) -> None:
        if not self._closed and model is self.loaded_model:
            self.device_label.setText(f"Device: {model.device}")
        emit(self.engineConverted)

    def _warm_up_gradcam(self) -> None:
        """Build and trace the loaded model's Grad-CAM in a worker, so the reviewer's first map comes quickly."""
        model = self.loaded_model
        if model is None or self._gradcam_ready or self._closed or self.is_analysing() or (
                self._gradcam_warm_up is not None and not self._gradcam_warm_up.is_finished()):
            return
        folder = model.folder
        self._gradcam_warm_up = self._start(jobs.warm_up_gradcam, folder, name="gradcam-warm-up",
                                            on_returned=lambda seconds: self._on_gradcam_warm(folder, seconds),
                                            on_errored=lambda error: log.info("Grad-CAM warm-up failed: %s", error))

    def _on_gradcam_warm(self, folder: Path, seconds: float) -> None:
        if self._closed or self.loaded_model is None or folder != self.loaded_model.folder:
            return
        self._gradcam_ready = True
        log.info("Grad-CAM warmed up in %.1f s", seconds)

    def _on_model_failed(self, error: Exception) -> None:
        if self._closed:
            return
        self.loaded_model = None
        self.model_label.setText("Model: none")
        self.device_label.setText("Device: –")
        text = (f"The model could not be loaded: {error}\n"
                "Choose a model folder with File → Choose model folder….")
        self.show_message(text, "error")
        emit(self.modelFailed, str(error))

    def choose_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder (with model.json)",
                                                  str(self.model_folder().parent))
        if folder:
            self.set_model_folder(folder)

    def set_model_folder(self, folder: str | Path | None) -> None:
        """Use another model (None: the bundled one); an open case is analysed again with it."""
        self.model_dir = Path(folder) if folder else None
        self.settings.last_model_folder = str(self.model_dir) if self.model_dir else ""
        self._save_settings()
        self.banner.hide()
        if self._gradcam_warm_up is not None:
            self._gradcam_warm_up.cancel()
        self._gradcam_ready = False
        self.load_model()
        if self.folder is not None:
            self.open_folder(self.folder)

    # ================================================================ opening a case

    def _on_subfolders_toggled(self, checked: bool) -> None:
        """File → Include sub-folders: remembered, and an open case is listed again with (or without) them."""
        self.settings.include_subfolders = bool(checked)
        self._save_settings()
        if self.folder is not None:
            self.open_folder(self.folder)

    def choose_folder(self) -> None:
        start = self.settings.recent_folders[0] if self.settings.recent_folders else str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of smear images", start)
        if folder:
            self.open_folder(folder)

    def _fill_recent_menu(self) -> None:
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
        self._save_settings()
        self._fill_recent_menu()
        self.summary = CaseSummary(folder=str(self.folder))
        identity = jobs.model_identity(self.model_dir)
        try:
            self.session = ReviewSession.open(self.folder, identity)
        except ReviewError as error:
            self.session = None
            self.show_message(f"{error}. Reviews of this folder cannot be saved until it is fixed or moved away.",
                              "error")
        store_dir = self.session.directory if self.session else review_dir(self.folder)
        if self.session is not None:
            if self.session.model_changed():
                self.show_message("This folder was reviewed with another model version "
                                  f"({self.session.saved_model.get('name')} {self.session.saved_model.get('version')}"
                                  "); reviewed labels are kept by cell number, please check them.", "warning")
            if self.session.location_note():
                self.show_message(self.session.location_note(), "info")
            if self.session.position.get("image"):
                self._pending_position = dict(self.session.position)
            self.session.audit_entries()
            if self.session.audit_damage:
                self.show_message(self.session.audit_damage, "warning")
        self._run_started = time.perf_counter()
        self._analysed = 0
        self.progress_bar.setRange(0, 0)
        self.progress_bar.show()
        self.progress_label.setText("Listing images…")
        self.cancel_action.setEnabled(True)
        self.cancel_button.show()
        worker = Worker(jobs.analyse_case, self.folder, self.model_dir, store_dir,
                        recursive=self.settings.include_subfolders, name="analyse-case")
        # Each slot learns which run spoke: events of a cancelled or replaced run are dropped.
        worker.signals.yielded.connect(lambda event, w=worker: self._on_analysis_event(w, event))
        worker.signals.errored.connect(lambda error, w=worker: self._on_analysis_error(w, error))
        worker.signals.finished.connect(lambda w=worker: self._on_analysis_finished(w))
        self._analysis = self._track(worker).start()

    def _reset_case(self) -> None:
        self.results.clear()
        self.cells.clear()
        self.image_names = []
        self.rows.clear()
        self.failures = []
        self.image_list.clear()
        self.gallery.clear()
        self.view.clear()
        self.current_image = self.current_cell = None
        self.cell_panel.set_cell(None)
        self._pending_position = None
        self._heatmaps.clear()
        self.session = None
        self.banner.hide()
        self._refresh_views()

    def cancel_analysis(self, quiet: bool = False) -> None:
        worker, self._analysis = self._analysis, None
        if worker is None or worker.is_finished():
            return
        worker.cancel()
        self.summary.cancelled = True
        for name, row in self.rows.items():
            if name not in self.results:
                self._set_row_status(row, STATUS_CANCELLED)
        self._end_progress(f"Analysis cancelled: {len(self.results)} of {len(self.image_names)} images done.")
        if not quiet:
            self.statusBar().showMessage("Analysis cancelled.", 8000)
            emit(self.analysisFinished)

    def is_analysing(self) -> bool:
        return self._analysis is not None and not self._analysis.is_finished()

    def _end_progress(self, text: str) -> None:
        self._progress_timer.stop()
        self.progress_bar.hide()
        self.cancel_button.hide()
        self.cancel_action.setEnabled(False)
        self.progress_label.setText(text)

    # ---------------------------------------------------------------- analysis events (GUI thread)

    def _is_current(self, worker: Worker) -> bool:
        return not self._closed and worker is self._analysis and not worker.is_cancelled()

    def _on_analysis_event(self, worker: Worker, event) -> None:
        if not self._is_current(worker):
            return
        if isinstance(event, jobs.CaseListing):
            self._on_listing(event)
        elif isinstance(event, jobs.ImageDone):
            self._on_image_done(event)

    def _on_listing(self, listing: jobs.CaseListing) -> None:
        self.image_names = listing.images
        self.summary.images_total = len(listing.images)
        self.summary.skipped_files = listing.skipped
        self.image_list.setUpdatesEnabled(False)
        shown = distinguishable_names(listing.images)
        for name in listing.images:
            row = QTreeWidgetItem([shown[name], "", "", "", "", ""])
            row.setData(0, Qt.ItemDataRole.UserRole, name)
            row.setToolTip(0, str(self.folder / name) if self.folder else name)
            self._set_row_status(row, STATUS_WAITING)
            for column in range(2, len(COLUMNS)):
                row.setTextAlignment(column, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.image_list.addTopLevelItem(row)
            self.rows[name] = row
        self.image_list.setUpdatesEnabled(True)
        if self._pending_position and self._pending_position.get("image") not in self.rows:
            self._pending_position = None
        if listing.images and self.current_image is None:
            # The pixels at once (a worker decodes them); the outlines follow when the analysis reaches it.
            self.show_image(self._pending_position["image"] if self._pending_position else listing.images[0])
        self.progress_bar.setRange(0, max(1, len(listing.images)))
        self.progress_bar.setValue(0)
        self.progress_label.setText(f"0 / {len(listing.images)} images")
        if not listing.images:
            self.show_message(no_images_message(self.folder, self.settings.include_subfolders,
                                                listing.in_subfolders), "warning")

    def _on_image_done(self, event: jobs.ImageDone) -> None:
        result = event.result
        self.results[result.image] = result
        self.summary.add(result)
        for cell in result.cells:
            self.cells[cell.cell_id] = cell
        self.gallery.add_thumbnails(event.thumbnails)
        self.gallery.update_cells([self._gallery_cell(c) for c in result.cells])
        self._update_row(result.image)
        if not result.ok:
            self.failures.append(f"{result.image}: {result.status}")   # unreadable, or an analysis fault
            n = len(self.failures)
            self.show_message(f"{n} image{'s' if n > 1 else ''} could not be analysed (marked in the list):\n"
                              + "\n".join(self.failures[-5:]), "warning")
        if not event.cached:
            self._analysed += 1
            if self._analysed == 1:
                self._analysis_clock = time.perf_counter()
        self._update_progress(event.done, event.total)
        if result.image == self.current_image:  # shown before its analysis: its outlines arrive now
            if result.width and result.height:
                self.view.set_size(result.width, result.height)
            self.view.set_cells(result.cells, self._states_for(result.cells))
            self.view.select_cell(self.current_cell, centre=False)
        pending = self._pending_position
        if pending is not None and pending.get("image") == result.image:
            self._pending_position = None
            self.show_image(result.image)
            if pending.get("cell_id") in self.cells:
                self.select_cell(pending["cell_id"])
        elif self.current_image is None and pending is None:
            self.show_image(result.image)
        self._schedule_refresh()
        emit(self.imageAnalysed, result.image)

    def _update_progress(self, done: int, total: int) -> None:
        """The progress bar and its label, at most every PROGRESS_MS (QProgressBar repaints at once on a change)."""
        self._progress = (done, total)
        if done >= total:
            self._show_progress()
        elif not self._progress_timer.isActive():
            self._progress_timer.start()

    def _show_progress(self) -> None:
        self._progress_timer.stop()
        done, total = self._progress
        # Only what changed: each change re-lays out the status bar on the GUI thread.
        if self.progress_bar.maximum() != max(1, total) or self.progress_bar.minimum() != 0:
            self.progress_bar.setRange(0, max(1, total))
        if self.progress_bar.value() != done:
            self.progress_bar.setValue(done)
        text = f"{done} / {total} images"
        if self._analysed >= 2 and done < total:
            per_image = (time.perf_counter() - self._analysis_clock) / (self._analysed - 1)
            text += f" · ETA {_format_eta(per_image * (total - done))}"
        if text != self.progress_label.text():
            self.progress_label.setText(text)

    def _on_analysis_error(self, worker: Worker, error: Exception) -> None:
        if not self._is_current(worker):
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
        for name, row in self.rows.items():
            if name not in self.results:
                self._set_row_status(row, status)
        self.show_message(text, "error")

    def _on_analysis_finished(self, worker: Worker) -> None:
        if not self._is_current(worker):
            return  # a cancelled or replaced run: already reported
        self._analysis = None
        n_cells = sum(len(r.cells) for r in self.results.values())
        seconds = time.perf_counter() - self._run_started
        if self.summary.images_processed + self.summary.images_failed < self.summary.images_total:
            self.summary.cancelled = True
        self._end_progress(f"{len(self.results)} of {len(self.image_names)} images · {n_cells} white cells · "
                           f"{seconds:.1f} s")
        self._pending_position = None
        self._refresh_views()
        self._warm_up_gradcam()
        emit(self.analysisFinished)

    # ================================================================ showing images and cells

    def _states_for(self, cells) -> dict:
        return {c.cell_id: (final_label(c, self.session), bool(self._reviewed(c.cell_id)), final_type(c, self.session))
                for c in cells}

    def _reviewed(self, cell_id: str) -> str | None:
        return self.session.reviewed_label(cell_id) if self.session else None

    def show_image(self, image: str | None) -> None:
        """Show an image: its outlines at once, its pixels when a worker has decoded them."""
        if image is None or image not in self.rows:
            return
        if image != self.current_image:
            self.current_image = image
            self.current_cell = None
            self._pending_position = None if self._pending_position and self._pending_position.get(
                "image") != image else self._pending_position
            result = self.results.get(image)
            cells = result.cells if result else []
            self.view.show_image(image, result.width if result else 0, result.height if result else 0, cells,
                                 self._states_for(cells))
            self._load_display_image(image)
            self._schedule_position_save()
        row = self.rows[image]
        if self.image_list.currentItem() is not row:
            self.image_list.setCurrentItem(row)
        self.image_list.scrollToItem(row)
        self._update_image_details()
        self._update_summary()
        self._update_histogram()

    def _load_display_image(self, image: str) -> None:
        if self._display is not None:
            self._display.cancel()
        self._display = self._start(jobs.load_display_image, self.folder / image, image,
                                    on_returned=self._on_display_image, on_errored=self._on_display_error,
                                    name="display-image")

    def _on_display_image(self, display: jobs.DisplayImage) -> None:
        if self._closed or display.image != self.current_image:
            return
        self.view.set_size(display.width, display.height)
        self.view.set_pixmap(display.image, QPixmap.fromImage(display.qimage), display.scale)
        emit(self.displayImageShown, display.image)
        if self.gradcam_action.isChecked():
            self._request_gradcam()

    def _on_display_error(self, error: Exception) -> None:
        if not self._closed:
            self.statusBar().showMessage(f"The image cannot be shown: {error}", 10000)

    def select_cell(self, cell_id: str | None, centre: bool = True) -> None:
        cell = self.cells.get(cell_id) if cell_id else None
        if cell is None:
            return
        self._pending_position = None
        if cell.image != self.current_image:
            self.show_image(cell.image)
        self.current_cell = cell_id
        self.view.select_cell(cell_id, centre=centre)
        self.gallery.set_current(cell_id)
        self.view.set_heatmap(None)
        self._update_cell_panel()
        if self.gradcam_action.isChecked():
            self._request_gradcam()
        self._update_summary()
        self._schedule_position_save()

    def _update_cell_panel(self, thumbnail=None) -> None:
        """The selected-cell panel: the cell, its image, P(blast), the model's and the reviewer's label."""
        cell = self.cells.get(self.current_cell) if self.current_cell else None
        if cell is None:
            self.cell_panel.set_cell(None)
            return
        review = self.session.reviews.get(cell.cell_id) if self.session else None
        self.cell_panel.set_cell(SelectedCell(
            cell.cell_id, cell.image, cell.blast_probability, cell.label, review.label if review else None,
            review.reviewer if review else "", review.time if review else "", bool(cell.partial),
            getattr(cell, "cell_type", None),
            thumbnail if thumbnail is not None else self.gallery.thumbnail(cell.cell_id)))

    def _navigation_order(self) -> list[str]:
        """J / K order: the cells of one image (in gallery order: ALL, uncertain, HEM, each by probability),
        then those of the next image in the list."""
        order = self.gallery.order() if self.gallery.order() else sorted(self.cells)
        rank = {name: i for i, name in enumerate(self.image_names)}
        position = {cell_id: i for i, cell_id in enumerate(order)}
        return sorted(order, key=lambda c: (rank.get(self.cells[c].image, len(rank)), position[c]))

    def _step(self, delta: int) -> None:
        order = self._navigation_order()
        if not order:
            return
        if self.current_cell in order:
            index = (order.index(self.current_cell) + delta) % len(order)
        else:
            in_image = [c for c in order if self.cells[c].image == self.current_image]
            target = (in_image or order)[0 if delta > 0 else -1]
            index = order.index(target)
        self.select_cell(order[index])

    def next_cell(self) -> None:
        self._step(+1)

    def previous_cell(self) -> None:
        self._step(-1)

    # ================================================================ review

    def reviewer(self) -> str | None:
        """The reviewer's name; asked once (first review) and kept in the settings."""
        if not self.settings.reviewer:
            name = ReviewerDialog.ask(self, "")
            if not name:
                self.statusBar().showMessage("A review needs the reviewer's name; nothing was recorded.", 8000)
                return None
            self.settings.reviewer = name
            self._save_settings()
        return self.settings.reviewer

    def change_reviewer(self) -> None:
        name = ReviewerDialog.ask(self, self.settings.reviewer)
        if name:
            self.settings.reviewer = name
            self._save_settings()

    def _review_target(self):
        """(selected cell, reviewer's name) when a review can be recorded now; None (the user is told why)."""
        cell = self.cells.get(self.current_cell) if self.current_cell else None
        if cell is None:
            self.statusBar().showMessage("Select a cell first (click it, or press → / J).", 5000)
            return None
        if self.session is None:
            self.show_message("This folder's review cannot be saved, so labels are not recorded.", "error")
            return None
        reviewer = self.reviewer()
        return (cell, reviewer) if reviewer else None

    def _save_review(self, change, on_saved=None, on_failed=None) -> None:
        """Queue one review change of the open session: it runs (and saves itself: an audit line and review.json,
        each synced) in the save worker, after the changes queued before it, so the window never waits for the
        disk and the last change wins. When it is saved the views show it (and any label another window saved
        meanwhile); ``on_saved(value)`` follows. If it could not be saved the reviewer is told and
        ``on_failed()`` follows; nothing changes on screen or on disk."""
        session = self.session

        def run():   # in the save worker
            known = dict(session.reviews)
            return known, change(session)

        def saved(outcome) -> None:
            known, value = outcome
            if self._closed or session is not self.session:
                return
            cell_id = value if isinstance(value, str) else None
            if cell_id is not None:
                self._after_review_changes(known, cell_id)
            if on_saved is not None:
                on_saved(value)

        def failed(error: Exception) -> None:
            if self._closed or session is not self.session:
                return
            if not isinstance(error, (ReviewError, OSError)):
                log.error("review change failed", exc_info=error)
            self.show_message(f"The review could not be saved: {error}", "error")
            if on_failed is not None:
                on_failed()

        self._saves.submit(run, on_returned=saved, on_errored=failed)

    def wait_for_saves(self, timeout_ms: int = 30_000) -> bool:
        """Block (running the event loop) until every queued review change is saved and shown."""
        return self._saves.wait(timeout_ms)

    def label_current(self, label: str, advance: bool = True) -> None:
        """Record ``label`` for the selected cell (saved at once) and move to the next cell."""
        if self.help_overlay.isVisible():
            self.help_overlay.hide()
            return
        target = self._review_target()
        if target is None:
            return
        cell, reviewer = target
        order = self._navigation_order()
        following = None
        if advance and self.settings.auto_advance and cell.cell_id in order and len(order) > 1:
            following = order[(order.index(cell.cell_id) + 1) % len(order)]
        def set_label(session):
            session.set_label(cell.cell_id, label, cell.label, reviewer)
            return cell.cell_id

        def back_to_the_cell():   # the label was not saved: the reviewer stays on (returns to) the cell
            if following and self.current_cell == following:
                self.select_cell(cell.cell_id)

        self._save_review(set_label, on_failed=back_to_the_cell, on_saved=lambda _: self.statusBar().showMessage(
            f"{cell.cell_id}: {label}" + (" (confirmed)" if label == cell.label else f" (model: {cell.label})"),
            4000))
        if following:
            self.select_cell(following)

    def type_current(self, cell_type: str) -> None:
        """Record the reviewer's white-cell type for the selected cell (saved at once; the label follows: a blast
        is ALL, any other type HEM). The selection stays on the cell."""
        target = self._review_target()
        if target is None:
            return
        cell, reviewer = target

        def set_type(session):
            session.set_type(cell.cell_id, cell_type, cell.label, reviewer)
            return cell.cell_id

        words = CELL_TYPES.get(cell_type, cell_type)
        if cell_type != cell.cell_type:
            words += f" (model: {CELL_TYPES.get(cell.cell_type, cell.cell_type)})"
        self._save_review(set_type, on_saved=lambda _: self.statusBar().showMessage(f"{cell.cell_id}: {words}", 4000))

    def _on_cell_type_chosen(self, cell_id: str, cell_type: str) -> None:
        if cell_id in self.cells:
            self.select_cell(cell_id)
            self.type_current(cell_type)

    def confirm_current(self) -> None:
        cell = self.cells.get(self.current_cell) if self.current_cell else None
        if cell is None:
            self.statusBar().showMessage("Select a cell first (click it, or press → / J).", 5000)
            return
        self.label_current(cell.label)

    def _on_cell_dropped(self, cell_id: str, label: str) -> None:
        if cell_id in self.cells:
            self.select_cell(cell_id)
            self.label_current(label, advance=False)

    def undo(self) -> None:
        self._undo_redo(redo=False)

    def redo(self) -> None:
        self._undo_redo(redo=True)

    def _undo_redo(self, redo: bool) -> None:
        nothing = f"Nothing to {'redo' if redo else 'undo'}."
        # a change still being saved can be undone: the undo is queued after it
        if self.session is None or not (self._saves.pending() or (
                self.session.can_redo() if redo else self.session.can_undo())):
            self.statusBar().showMessage(nothing, 3000)
            return
        reviewer = self.reviewer()
        if not reviewer:
            return

        def undone(cell_id) -> None:
            if cell_id:
                self.select_cell(cell_id)
                self.statusBar().showMessage(f"{'Redone' if redo else 'Undone'}: {cell_id}", 4000)
            else:
                self.statusBar().showMessage(nothing, 3000)

        self._save_review(lambda session: session.redo(reviewer) if redo else session.undo(reviewer),
                          on_saved=undone)

    def _after_review_changes(self, known: dict, cell_id: str) -> None:
        """Show a saved change, and any label another window saved meanwhile (merged in by the save)."""
        now = self.session.reviews if self.session else {}
        changed = {k for k in set(known) | set(now) if known.get(k) != now.get(k)} | {cell_id}
        for other in sorted(changed - {cell_id}):
            self._after_review_change(other, refresh=False)
        self._after_review_change(cell_id)

    def _after_review_change(self, cell_id: str, refresh: bool = True) -> None:
        cell = self.cells.get(cell_id)
        if cell is None:
            return
        reviewed = self._reviewed(cell_id)
        self.view.set_cell_state(cell_id, reviewed or cell.label, bool(reviewed), final_type(cell, self.session))
        self.gallery.update_cells([self._gallery_cell(cell)])
        self._update_row(cell.image)
        if refresh:
            self._refresh_views()
        if cell_id == self.current_cell:
            self._update_cell_panel()

    def _on_auto_advance_toggled(self, checked: bool) -> None:
        """Review → Advance after a label: remembered, and said in the ? help."""
        self.settings.auto_advance = bool(checked)
        self.help_overlay.set_auto_advance(self.settings.auto_advance)
        self._save_settings()

    # ================================================================ refreshing the views

    def _update_row(self, image: str) -> None:
        row = self.rows.get(image)
        result = self.results.get(image)
        if row is None or result is None:
            return
        counts = reviewed_counts(result.cells, self.session)
        self._set_row_status(row, result.status)
        if image == self.current_image:
            self._update_image_details()
        if result.ok:
            row.setText(2, str(counts["white_cells"]))
            row.setText(3, str(counts["blasts"]))
            row.setText(4, str(counts["uncertain"]))
            row.setText(5, f"{counts['reviewed']}/{counts['cells']}" if counts["cells"] else "")
            row.setForeground(3, QBrush(QColor(hex_colour(LABEL_BLAST) if counts["blasts"] else "#444444")))

    def _update_image_details(self) -> None:
        """The details pane: the selected image's status message in full when it is not a plain "ok"."""
        row = self.rows.get(self.current_image) if self.current_image else None
        status = self.row_status(row) if row is not None else ""
        if not status or status == STATUS_OK:
            self.image_details.hide()
            return
        self.image_details.setText(f"<b>{html.escape(self.current_image)}</b>: {html.escape(status)}")
        self.image_details.show()

    @staticmethod
    def _set_row_status(row: QTreeWidgetItem, status: str) -> None:
        """The Status column: an icon; the message (however long) in its tooltip, so the counts stay in view."""
        row.setIcon(1, status_icon(status_kind(status)))
        row.setText(1, "")
        row.setToolTip(1, status)
        row.setData(1, Qt.ItemDataRole.UserRole, status)
        row.setData(1, Qt.ItemDataRole.AccessibleTextRole, status)

    @staticmethod
    def row_status(row: QTreeWidgetItem) -> str:
        """The status message of an image-list row (its tooltip)."""
        return row.data(1, Qt.ItemDataRole.UserRole) or ""

    def _schedule_refresh(self) -> None:
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def _gallery_cell(self, c) -> GalleryCell:
        """What the cell's gallery tile shows: its label and type after review."""
        return GalleryCell(c.cell_id, c.image, c.blast_probability, c.label, final_label(c, self.session),
                           bool(self._reviewed(c.cell_id)), final_type(c, self.session), c.cell_type)

    def _cut_thumbnails(self, cell_ids: list) -> None:
        """Thumbnails the gallery dropped from its cache and shows again: cut them again in a worker."""
        if self.folder is None or self._closed:
            return
        by_path: dict[Path, list] = {}
        for cell_id in cell_ids:
            cell = self.cells.get(cell_id)
            if cell is not None:
                by_path.setdefault(self.folder / cell.image, []).append(cell)
        if by_path:
            folder = self.folder
            self._start(jobs.cut_thumbnails, by_path, name="thumbnails",
                        on_returned=lambda thumbnails: self._on_thumbnails(folder, thumbnails))

    def _on_thumbnails(self, folder: Path, thumbnails: dict) -> None:
        if self._closed or folder != self.folder:
            return
        self.gallery.add_thumbnails(thumbnails)
        if self.current_cell in thumbnails:
            self._update_cell_panel(thumbnails[self.current_cell])

    def _refresh_views(self) -> None:
        """The counts and the histogram (the gallery changes tile by tile: ``_on_image_done``, reviews)."""
        if self._closed:
            return
        self._update_summary()
        if self.is_analysing():
            if not self._histogram_timer.isActive():
                self._histogram_timer.start()
        else:
            self._update_histogram()

    def _update_summary(self) -> None:
        result = self.results.get(self.current_image) if self.current_image else None
        case_model = self.summary.to_dict() if self.folder else {}
        all_cells = list(self.cells.values())
        self.summary_panel.set_counts(
            self.current_image,
            result.counts() if result else {}, reviewed_counts(result.cells, self.session) if result else {},
            case_model, reviewed_counts(all_cells, self.session) if self.folder else {})

    def views_settled(self) -> bool:
        """No deferred refresh and no histogram draw pending: what is on screen now is final (for screenshots)."""
        return not (self._refresh_timer.isActive() or self._histogram_timer.isActive()
                    or self.summary_panel.histogram.is_rendering())

    def _update_histogram(self) -> None:
        self._histogram_timer.stop()
        result = self.results.get(self.current_image) if self.current_image else None
        self.summary_panel.histogram.set_probabilities([c.blast_probability for c in self.cells.values()],
                                                       [c.blast_probability for c in result.cells] if result else [])

    def _schedule_position_save(self) -> None:
        self._position_timer.start()

    def _save_position(self) -> None:
        if self.session is None or self._closed:
            return
        position = {"image": self.current_image, "cell_id": self.current_cell}
        if position != self.session.position:
            session = self.session

            def failed(error: Exception) -> None:
                if not self._closed:
                    self.statusBar().showMessage(f"The position could not be saved: {error}", 8000)
            self._saves.submit(session.set_position, position["image"], position["cell_id"], on_errored=failed)

    # ================================================================ overlays and Grad-CAM

    def _on_overlays_toggled(self, checked: bool) -> None:
        self.view.set_overlays_visible(checked)
        self.settings.overlays.outlines = checked

    def _on_gradcam_toggled(self, checked: bool) -> None:
        self.settings.overlays.gradcam = checked
        if checked:
            self._request_gradcam()
        else:
            self.view.set_heatmap(None)
            self.cell_panel.set_gradcam_status("Grad-CAM (G): off")

    def _on_gradcam_opacity(self, opacity: float) -> None:
        self.settings.overlays.gradcam_opacity = opacity
        self.view.set_heatmap_opacity(opacity)

    def _request_gradcam(self) -> None:
        cell = self.cells.get(self.current_cell) if self.current_cell else None
        if cell is None or self.folder is None:
            self.cell_panel.set_gradcam_status("Grad-CAM (G): select a cell to see where the model looked")
            return
        cached = self._heatmaps.get(cell.cell_id)
        if cached is not None:
            self._show_heatmap(cached)
            return
        if self._gradcam is not None:
            self._gradcam.cancel()
        self.statusBar().showMessage(f"Grad-CAM of {cell.cell_id}…", 3000)
        self.cell_panel.set_gradcam_status(
            f"Grad-CAM (G): computing the map of {cell.cell_id}…"
            + ("" if self._gradcam_ready else " (the first map also prepares Grad-CAM)"))
        self._gradcam = self._start(jobs.cell_gradcam, self.model_dir, self.folder / cell.image, cell,
                                    on_returned=self._on_gradcam, on_errored=self._on_gradcam_error, name="gradcam")

    def _on_gradcam(self, heatmap: jobs.CellHeatmap) -> None:
        if self._closed:
            return
        self._heatmaps[heatmap.cell_id] = heatmap
        if heatmap.cell_id == self.current_cell and self.gradcam_action.isChecked():
            self._show_heatmap(heatmap)

    def _show_heatmap(self, heatmap: jobs.CellHeatmap) -> None:
        explained = (f"<b style='color:{hex_colour(heatmap.class_name)}'>{heatmap.class_name}</b>, "
                     f"the class the model decided on")
        if heatmap.empty:
            self.view.set_heatmap(None)
            self.cell_panel.set_gradcam_status(
                f"Grad-CAM (G) of {explained}: <b>the map is empty</b> — no region of this cell raised the score "
                f"of {heatmap.class_name}, so there is nothing to show.")
        else:
            self.view.set_heatmap(QPixmap.fromImage(heatmap.qimage), heatmap.left, heatmap.top)
            self.cell_panel.set_gradcam_status(f"Grad-CAM (G) of {explained}: where it looked (scale below).")
        emit(self.gradcamShown, heatmap.cell_id)

    def _on_gradcam_error(self, error: Exception) -> None:
        if not self._closed:
            self.cell_panel.set_gradcam_status(f"Grad-CAM (G): not available ({error})")
            self.show_message(f"Grad-CAM is not available: {error}", "warning")

    # ================================================================ dialogs

    def show_about(self) -> AboutDialog:
        dialog = AboutDialog(self, self.model_folder())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()  # not modal: the review goes on behind it
        return dialog

    # ================================================================ workers and window life

    # ---------------------------------------------------------------- export

    def export_report(self) -> None:
        """File → Export report…: choose where and what, then write it in the worker."""
        from .export_dialog import ExportDialog

        if not self.folder or not self.results:
            self.show_message("Open and analyse a folder before exporting a report.", "info")
            return
        if self.is_analysing():
            self.show_message("The analysis is still running: export when it has finished.", "info")
            return
        self._saves.drain()   # every label given so far is in the report
        from ..core.reports import export_case, review_status

        results = [self.results[name] for name in self.image_names if name in self.results]
        review = review_status([c for r in results for c in r.cells], self.session)
        choice = ExportDialog.ask(self, image_folder=self.folder, review=review)
        if choice is None:
            return
        model = self.loaded_model
        info = model.classifier.info if model else jobs.model_identity(self.model_dir)

        def run(worker=None):
            return export_case(results, self.session, info, choice.out_dir, formats=choice.formats,
                               reviewer=self.settings.reviewer or None, overwrite=choice.overwrite,
                               folder=self.folder, model_dir=self.model_folder(),
                               on_progress=(lambda done, total, message: worker.report_progress(message)),
                               should_stop=worker.is_cancelled)

        self.statusBar().showMessage("Exporting the report…")
        self.export_worker = self._start(run, name="export-report", on_returned=self._on_exported,
                                         on_errored=self._on_export_failed,
                                         on_progress=lambda message: self.statusBar().showMessage(str(message)))

    def _on_exported(self, paths) -> None:
        names = ", ".join(Path(p).name for p in paths)
        folder = Path(paths[0]).parent if paths else ""
        self.statusBar().showMessage(f"Report written: {names}", 10000)
        emit(self.reportExported, [str(p) for p in paths])
        self.show_message(f"Report written to {folder}: {names}", "info")

    def _on_export_failed(self, error: Exception) -> None:
        self.statusBar().clearMessage()
        self.show_message(f"The report was not written: {error}")

    def _start(self, fn, *args, name: str = "", **slots) -> Worker:
        worker = start_worker(fn, *args, name=name, **slots)
        return self._track(worker)

    def track(self, worker: Worker) -> Worker:
        """Remember a worker of this window (or of a dialog it opened), so closing it cancels and waits for it."""
        self._workers.add(worker)
        worker.signals.finished.connect(lambda w=worker: self._workers.discard(w))
        if worker.is_finished():  # it may have finished before the connection above existed
            self._workers.discard(worker)
        return worker

    _track = track

    def _save_settings(self) -> None:
        """Save a copy of the settings as they are now, in the save worker (a synced write; after the changes
        queued before it; closing the window waits for it)."""
        snapshot = copy.deepcopy(self.settings)

        def failed(error: Exception) -> None:
            if not self._closed:
                self.statusBar().showMessage(f"Settings could not be saved: {error}", 8000)
        self._saves.submit(snapshot.save, on_errored=failed)

    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event):
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        folder = paths[0] if paths[0].is_dir() else paths[0].parent
        event.acceptProposedAction()
        self.open_folder(folder)

    def resizeEvent(self, event):
        super().resizeEvent(event)
        if self.help_overlay.isVisible():
            self.help_overlay.setGeometry(self.help_overlay.parentWidget().rect())

    def closeEvent(self, event):
        """Stop every worker cleanly and save the position and settings before the window goes."""
        if self._position_timer.isActive():
            self._position_timer.stop()
            self._save_position()
        self._save_settings()
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
