"""The summary panel: counts for the shown image and the whole case, as the model gave them and after review,
and a histogram of the case's blast probabilities with the model's threshold and uncertainty band."""
from __future__ import annotations

import gc

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

from training.celltypes import CELL_TYPES, is_white_cell

from ..core.analysis.results import WHITE_CELLS_NOTE, percentage_text, undecided_text
from ..core.labels import LABEL_WORDS, LABELS, SELECTION_HEX
from ..core.reports.histogram import BINS, THRESHOLD_HEX, bin_counts, render_histogram
from .signals import emit
from .style import hex_colour

WINDOW_DPI = 90


def _pct(value) -> str:
    return "–" if value is None else f"{value:.1f} %"


def histogram_legend(threshold: float, band: tuple[float, float]) -> str:
    """What the histogram's marks mean, with the model's own numbers (rich text, shown under the picture)."""
    lo, hi = band
    parts = [f"<span style='color:{THRESHOLD_HEX}'><b>┆</b></span> threshold {threshold:.2f}"]
    if hi > lo:
        parts.append(f"<span style='color:{hex_colour('UNCERTAIN')}; opacity:0.5'>█</span> uncertain band "
                     f"{lo:.2f}–{hi:.2f}")
    parts.append("bars by label after review: " + ", ".join(
        f"<span style='color:{hex_colour(label)}'>█</span> {LABEL_WORDS[label]}" for label in LABELS))
    parts.append(f"<span style='color:{SELECTION_HEX}'><b>|</b></span> cells of this image")
    return " &nbsp;·&nbsp; ".join(parts)


def histogram_image(case: list[float], image: list[float], labels: list[str] | None, threshold: float,
                    band: tuple[float, float], width: int, height: int) -> QImage:
    """The one histogram (``core.reports.histogram``, the PDF's too) wrapped into a QImage. Runs in a worker: a
    draw costs tens of milliseconds of Python, which on the GUI thread would freeze the window while an analysis
    competes for it.

    A matplotlib figure is ~6,000 objects in reference cycles. Drawn with the collector running, most of them were
    promoted to its oldest generation before the figure died, so only full passes freed them: passes of 0.1-0.2 s
    holding the GIL, which stalled the window during long analyses. With the collector paused for the draw, a
    young-generation pass right after frees all of it in a few milliseconds."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        rgba = render_histogram(case, threshold, band, labels, image=image, width_px=width, height_px=height,
                                dpi=WINDOW_DPI)
    finally:
        gc.collect(0)
        if was_enabled:
            gc.enable()
    h, w = rgba.shape[:2]
    return QImage(rgba.tobytes(), w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()


class ProbabilityHistogram(QLabel):
    """Blast probabilities of the case (bars, by label after review) and of the shown image (ticks), drawn by the
    report's renderer (``core.reports.histogram``) in a worker.

    Updates coalesce: while one picture is being drawn, further changes wait and only the latest is drawn, at
    least ``REDRAW_GAP_MS`` after the previous picture: matplotlib is pure Python, and drawing back to back during
    an analysis kept the GIL from the GUI thread (stalls of 0.2-0.5 s measured while 150 fields were analysed).
    """
    REDRAW_GAP_MS = 500

    rendered = Signal()

    def __init__(self, parent=None, start=None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(160)
        self.setMinimumWidth(300)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setStyleSheet("background:white")
        self._start = start
        self._worker = None
        self._dirty = False
        self._gap = QTimer(self)
        self._gap.setSingleShot(True)
        self._gap.timeout.connect(self._after_gap)
        self.threshold, self.band = 0.5, (0.5, 0.5)
        self.case: list[float] = []
        self.image: list[float] = []
        self.labels: list[str] | None = None
        self.counts = np.zeros(len(BINS) - 1, int)
        self.legend = QLabel("The model's threshold and uncertain band are marked when it has loaded.")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.legend.setStyleSheet("color:#444; font-size:11px")

    def set_decision(self, threshold: float, band: tuple[float, float]) -> None:
        self.threshold, self.band = float(threshold), (float(band[0]), float(band[1]))
        self.legend.setText(histogram_legend(self.threshold, self.band))
        self._request()

    def set_probabilities(self, case: list[float], image: list[float], labels: list[str] | None = None) -> None:
        """The case's probabilities with their labels after review (None: the model's rule), the shown image's."""
        self.case, self.image = list(case), list(image)
        self.labels = None if labels is None else list(labels)
        self.counts = bin_counts(self.case)
        self._request()

    def is_rendering(self) -> bool:
        """A picture is being drawn or waits for its turn."""
        return self._worker is not None or (self._dirty and self._gap.isActive())

    def stop(self) -> None:
        """No more drawing (the window is closing)."""
        self._start = None
        self._dirty = False
        self._gap.stop()

    def _request(self) -> None:
        if self._start is None:
            return
        if self._worker is not None or self._gap.isActive():
            self._dirty = True
            return
        self._dirty = False
        width = max(300, self.width())
        self._worker = self._start(histogram_image, self.case, self.image, self.labels, self.threshold, self.band,
                                   width, self.height(), on_returned=self._on_rendered, on_finished=self._on_finished,
                                   name="histogram")

    def _on_rendered(self, image: QImage) -> None:
        self.setPixmap(QPixmap.fromImage(image))
        emit(self.rendered)

    def _on_finished(self) -> None:
        self._worker = None
        if self._start is not None:
            self._gap.start(self.REDRAW_GAP_MS)

    def _after_gap(self) -> None:
        if self._dirty:
            self._request()


def _percentage(counts: dict) -> str:
    """Blasts per 100 WBC, a range ("0–100 %") while undecided cells could change it (``results.percentage_text``)."""
    return percentage_text(counts)


def _undecided_note(image_model: dict, image_reviewed: dict, case_model: dict, case_reviewed: dict) -> str:
    """Under the table, when a blast percentage is a range: how many white cells are undecided."""
    notes = [f"{scope} {text.replace(' white cells undecided', '')}"
             for scope, d in (("image", image_reviewed or image_model), ("case", case_reviewed or case_model))
             if (text := undecided_text(d))]
    return (f"<div style='color:{hex_colour('UNCERTAIN')}'>Blast % range (undecided as normal … as blasts): "
            f"{', '.join(notes)} white cells undecided</div>") if notes else ""


def _by_reviewer(reviewed: dict) -> str:
    """The reviewed cells only, by the reviewer's label ("0 ALL, 0 unc., 1 HEM")."""
    mine = reviewed.get("by_reviewer")
    return f"{mine['blasts']} ALL, {mine['uncertain']} unc., {mine['normal']} HEM" if mine else "–"


class SummaryPanel(QWidget):
    def __init__(self, parent=None, start=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.table = QLabel()
        self.table.setTextFormat(Qt.TextFormat.RichText)
        self.table.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table.setWordWrap(True)
        self.histogram = ProbabilityHistogram(self, start)
        # The counts keep their whole text (``_fit_text``); on a small screen they scroll, so the histogram, its
        # legend and the window's bottom edge (model bar, research-use notice) stay in view.
        self.table_scroll = QScrollArea()
        self.table_scroll.setWidgetResizable(True)
        self.table_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.table_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table_scroll.setWidget(self.table)
        layout.addWidget(self.table_scroll, 1)
        layout.addWidget(self.histogram)
        layout.addWidget(self.histogram.legend)
        self.image_counts: dict = {}
        self.case_counts: dict = {}
        self.set_counts(None, {}, {}, {}, {})

    def set_counts(self, image: str | None, image_model: dict, image_reviewed: dict, case_model: dict,
                   case_reviewed: dict) -> None:
        """Counts as ``ImageResult.counts()`` / ``CaseSummary`` (model) and ``reviewed_counts`` (after review)."""
        self.image_counts = {"model": image_model, "reviewed": image_reviewed}
        self.case_counts = {"model": case_model, "reviewed": case_reviewed}

        columns = (image_model, image_reviewed, case_model, case_reviewed)

        def row(name, key, fmt=str, colour=None, get=None):
            values = [(get(d) if get and d else d.get(key)) for d in columns]
            cells = "".join(f"<td align='right'>{'–' if v is None else fmt(v)}</td>" for v in values)
            swatch = f"<span style='color:{colour}'>■</span> " if colour else ""
            return f"<tr><td>{swatch}{name}</td>{cells}</tr>"

        # the differential: every type any column counts, in the vocabulary's order; non_wbc last, not a WBC
        present = {t for d in columns for t in d.get("cell_types", {})}
        types = [t for t in CELL_TYPES if t in present and is_white_cell(t)]
        differential = "".join(row(f"&nbsp;&nbsp;{CELL_TYPES[t]}", t, get=lambda d, t=t: d.get("cell_types", {}).get(t, 0))
                               for t in types)

        reviewed_img = image_reviewed.get("reviewed")
        reviewed_case = case_reviewed.get("reviewed")
        title = image or "no image"
        self._set_text(
            "<style>td{padding:1px 5px;} th{padding:1px 5px; color:#555;}</style>"
            "<table cellspacing='0'>"
            f"<tr><th></th><th colspan='2'>Image</th><th colspan='2'>Case</th></tr>"
            "<tr><th></th><th>model</th><th>after<br>review¹</th><th>model</th><th>after<br>review¹</th></tr>"
            + row("White cells", "white_cells")
            + row("Blasts (ALL)", "blasts", colour=hex_colour("ALL"))
            + row("Uncertain (undecided)", "uncertain", colour=hex_colour("UNCERTAIN"))
            + row("Normal (HEM)", "normal", colour=hex_colour("HEM"))
            + row("Blasts per 100 WBC", "blast_percentage", fmt=str, get=_percentage)
            + (("<tr><th align='left' colspan='5'>White cells by type</th></tr>" + differential) if differential
               else "")
            + row("Not white cells (not counted)", "non_white_cells")
            + row("Cut by border (not counted)", "border_cells_excluded")
            + "</table>"
            f"<div style='color:#555'>{title}: {reviewed_img if reviewed_img is not None else 0} of "
            f"{image_model.get('cells') or 0} cells reviewed · case: "
            f"{reviewed_case if reviewed_case is not None else 0} of {case_model.get('cells') or 0} "
            f"({_by_reviewer(case_reviewed)})</div>"
            + _undecided_note(image_model, image_reviewed, case_model, case_reviewed)
            + "<div style='color:#555'>¹ the reviewer's label where reviewed, else the model's</div>")
        parts = [(scope, d["by_reviewer"], d["not_reviewed"]) for scope, d in (("Image", image_reviewed),
                                                                                ("Case", case_reviewed))
                 if d.get("by_reviewer") and d.get("not_reviewed")]
        self._set_tooltip(
            "<p>After review¹: the reviewer's label for reviewed cells, the model's suggestion for the others:</p>"
            + "".join(f"<p>{scope}: reviewed {m['cells']} — {m['blasts']} blasts, {m['uncertain']} uncertain, "
                      f"{m['normal']} normal; not reviewed {o['cells']} — the model suggests {o['blasts']} blasts, "
                      f"{o['uncertain']} uncertain, {o['normal']} normal</p>" for scope, m, o in parts)
            + "<p>Blasts per 100 WBC is a range while uncertain white cells are undecided: the minimum counts them "
            "as normal, the maximum as blasts. A cell the reviewer labels is decided (unless labelled "
            f"uncertain).</p><p>{WHITE_CELLS_NOTE}</p>")

    def _set_text(self, html: str) -> None:
        if html == self.table.text():   # laying out the table costs the GUI thread ~10 ms: only when it changed
            return
        self.table.setText(html)
        self._fit_text()

    def _set_tooltip(self, html: str) -> None:
        if html != self.table.toolTip():
            self.table.setToolTip(html)

    def _fit_text(self) -> None:
        """The counts and the lines under them stay whole: the panel asks its splitter for their height."""
        self.table.setMinimumHeight(self.table.heightForWidth(max(self.table.width(), 300)))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_text()
