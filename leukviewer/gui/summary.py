"""The summary panel: counts for the shown image and the whole case, as the model gave them and after review,
and a histogram of the case's blast probabilities with the model's threshold and uncertainty band."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from training.celltypes import CELL_TYPES, is_white_cell

from ..core.analysis.results import WHITE_CELLS_NOTE, percentage_text, undecided_text
from .histogram_view import ProbabilityHistogram, histogram_legend  # noqa: F401 - the panel's histogram
from .style import hex_colour


def _pct(value) -> str:
    return "–" if value is None else f"{value:.1f} %"


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
    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.table = QLabel()
        self.table.setTextFormat(Qt.TextFormat.RichText)
        self.table.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table.setWordWrap(True)
        self.histogram = ProbabilityHistogram(self)
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
