"""The window's central area: the image list and the selected cell (left), the image with its outlines (centre),
the cell gallery and the counts (right), and the research-use notice under them, always visible."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget

from ... import RUO_NOTICE
from ...core.model.classifier import LABEL_BLAST, LABEL_NORMAL, LABEL_UNCERTAIN
from ..cell_panel import CellPanel
from ..dialogs import HelpOverlay, MessageBanner
from ..gallery import CellGallery
from ..image_view import ImageView
from ..style import hex_colour
from ..summary import SummaryPanel
from .image_list import ImageList

LEGEND = ("Outlines: " + " ".join(f"<b style='color:{hex_colour(label)}'>■ {name}</b>" for label, name in (
    (LABEL_BLAST, "ALL"), (LABEL_UNCERTAIN, "uncertain"), (LABEL_NORMAL, "HEM")))
    + " &nbsp;·&nbsp; dashed: the model's suggestion &nbsp;·&nbsp; solid: reviewed"
    " &nbsp;·&nbsp; hover a cell for its type and probability &nbsp;·&nbsp; <b>?</b> shortcuts")


def _column(*widgets, stretch: int = 0) -> QWidget:
    """Widgets one above the other, ``widgets[stretch]`` taking the spare height."""
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(2)
    for i, widget in enumerate(widgets):
        layout.addWidget(widget, 1 if i == stretch else 0)
    return box


def _split(orientation, widgets, stretch, minimum_width: int = 0) -> QSplitter:
    splitter = QSplitter(orientation)
    for widget, factor in zip(widgets, stretch):
        splitter.addWidget(widget)
        splitter.setStretchFactor(splitter.indexOf(widget), factor)
    splitter.setChildrenCollapsible(False)
    if minimum_width:
        splitter.setMinimumWidth(minimum_width)
    return splitter


class CaseViews(QWidget):
    """Every view of the open case, laid out; the window connects their signals."""

    def __init__(self, gradcam_opacity: float, parent=None):
        super().__init__(parent)
        self.image_list = ImageList()
        self.cell_panel = CellPanel(opacity=gradcam_opacity)
        self.view = ImageView()
        self.view.set_heatmap_opacity(gradcam_opacity)
        self.banner = MessageBanner()
        self.legend = QLabel(LEGEND)
        self.legend.setStyleSheet("color:#444; padding:2px 4px")
        self.legend.setWordWrap(True)
        self.gallery = CellGallery()
        self.summary_panel = SummaryPanel()

        left = _split(Qt.Orientation.Vertical, (_column(self.image_list, self.image_list.details), self.cell_panel),
                      (1, 0))
        centre = _column(self.banner, self.view, self.legend, stretch=1)
        right = _split(Qt.Orientation.Vertical, (self.gallery, self.summary_panel), (3, 0), minimum_width=400)
        splitter = _split(Qt.Orientation.Horizontal, (left, centre, right), (0, 1, 0))
        splitter.setSizes([330, 730, 440])

        # Always visible, whatever the reviewer does with splitters or dialogs.
        self.ruo_label = QLabel(RUO_NOTICE)
        self.ruo_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.ruo_label.setStyleSheet("background:#fff3c4; color:#5c4300; font-weight:bold; padding:3px;"
                                     " border-top:1px solid #e0c060")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.ruo_label)
        self.help_overlay = HelpOverlay(self)

    def clear(self) -> None:
        """An empty case: no rows, tiles, image or selected cell."""
        self.image_list.clear_case()
        self.gallery.clear()
        self.view.clear()
        self.cell_panel.set_cell(None)
        self.banner.hide()
