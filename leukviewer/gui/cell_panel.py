"""The selected-cell panel: everything about the cell under review in plain view (not only in a hover tooltip),
and the Grad-CAM controls: which class the map explains, its colour scale and its opacity."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QFormLayout, QFrame, QHBoxLayout, QLabel, QSlider, QVBoxLayout

from ..core.model.gradcam import colour_scale
from .signals import emit
from .style import LABEL_NAMES, hex_colour

THUMBNAIL_SIDE = 76
_BREAK = "\u200b"     # a zero-width space: lets a long file name wrap after _ / # . instead of being cut off
FIELDS = ("Cell", "Image", "P(blast)", "Cell type", "Model", "Reviewer's label", "Reviewed by", "Reviewed at",
          "Cut by border")


@dataclass
class SelectedCell:
    """What the panel shows of a cell (the window builds it from the Cell and the review)."""
    cell_id: str
    image: str
    blast_probability: float
    model_label: str
    reviewed_label: str | None
    reviewer: str
    reviewed_at: str
    partial: bool
    cell_type: str | None = None
    thumbnail: QImage | None = None


def _breakable(text: str) -> str:
    for separator in "_/#.-":
        text = text.replace(separator, separator + _BREAK)
    return text


def _label_html(label: str | None) -> str:
    if not label:
        return "<span style='color:#777'>not reviewed</span>"
    return f"<b style='color:{hex_colour(label)}'>■ {LABEL_NAMES.get(label, label)}</b>"


def colour_bar(width: int = 160, height: int = 10) -> QImage:
    """The heat maps' colour scale, low (left) to high (right), from the same function that colours them."""
    row = colour_scale(np.linspace(0.0, 1.0, width, dtype=np.float32))
    rgb = np.ascontiguousarray(np.repeat(row[None], height, axis=0))
    return QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


class CellPanel(QFrame):
    opacityChanged = Signal(float)      # 0..1, the heat map's opacity

    def __init__(self, parent=None, opacity: float = 0.6):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(3)
        self.title = QLabel("<b>Selected cell</b>")
        layout.addWidget(self.title)

        # Beside the thumbnail the short captions (the cell id and file name need the width); below, the rest.
        top = QHBoxLayout()
        self.thumbnail = QLabel()
        self.thumbnail.setFixedSize(THUMBNAIL_SIDE, THUMBNAIL_SIDE)
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumbnail.setStyleSheet("background:#e9e6e3")
        top.addWidget(self.thumbnail, 0, Qt.AlignmentFlag.AlignTop)
        beside, below = QFormLayout(), QFormLayout()
        self.values: dict[str, QLabel] = {}
        self._names: dict[str, QLabel] = {}
        for form, names in ((beside, FIELDS[:3]), (below, FIELDS[3:])):
            form.setContentsMargins(0, 0, 0, 0)
            form.setVerticalSpacing(1)
            form.setHorizontalSpacing(6)
            form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
            form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
            for name in names:
                value = QLabel("–")
                value.setTextFormat(Qt.TextFormat.RichText)
                value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                value.setWordWrap(True)
                caption = QLabel(f"<span style='color:#555'>{name}</span>")
                form.addRow(caption, value)
                self.values[name], self._names[name] = value, caption
        top.addLayout(beside, 1)
        layout.addLayout(top)
        layout.addLayout(below)

        # Grad-CAM: which class the map explains, what its colours mean, how strongly it covers the cell.
        self.gradcam_label = QLabel("Grad-CAM (G): off")
        self.gradcam_label.setWordWrap(True)
        self.gradcam_label.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.gradcam_label)
        scale = QHBoxLayout()
        scale.setSpacing(4)
        self.scale_low = QLabel("low")
        self.scale_bar = QLabel()
        self.scale_bar.setPixmap(QPixmap.fromImage(colour_bar()))
        self.scale_high = QLabel("high attention")
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(opacity * 100))
        self.opacity_slider.setToolTip("Opacity of the Grad-CAM heat map over the cell")
        self.opacity_slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the review keys belong to the window
        self.opacity_text = QLabel()
        for widget in (self.scale_low, self.scale_bar, self.scale_high):
            scale.addWidget(widget)
        scale.addStretch(1)
        layout.addLayout(scale)
        opacity_row = QHBoxLayout()
        opacity_row.addWidget(QLabel("Opacity"))
        opacity_row.addWidget(self.opacity_slider, 1)
        opacity_row.addWidget(self.opacity_text)
        layout.addLayout(opacity_row)
        self.opacity_slider.valueChanged.connect(self._on_opacity)
        self._on_opacity(self.opacity_slider.value(), quiet=True)
        self.cell: SelectedCell | None = None
        self.set_cell(None)

    def opacity(self) -> float:
        return self.opacity_slider.value() / 100.0

    def _on_opacity(self, value: int, quiet: bool = False) -> None:
        self.opacity_text.setText(f"{value} %")
        if not quiet:
            emit(self.opacityChanged, value / 100.0)

    def set_cell(self, cell: SelectedCell | None) -> None:
        self.cell = cell
        if cell is None:
            for value in self.values.values():
                value.setText("–")
            self.values["Cell"].setText("<span style='color:#777'>none (click one, or J)</span>")
            self.thumbnail.clear()
            self._show_cell_type(False)
            return
        v = self.values
        v["Cell"].setText(f"<b>{_breakable(cell.cell_id)}</b>")
        v["Cell"].setToolTip(cell.cell_id)
        v["Image"].setText(_breakable(cell.image))
        v["Image"].setToolTip(cell.image)
        v["P(blast)"].setText(f"{cell.blast_probability:.3f}")
        v["Model"].setText(_label_html(cell.model_label))
        v["Reviewer's label"].setText(_label_html(cell.reviewed_label)
                                      + ("" if not cell.reviewed_label or cell.reviewed_label == cell.model_label
                                         else " <span style='color:#777'>(changed)</span>"))
        v["Reviewed by"].setText(cell.reviewer or "–")
        v["Reviewed at"].setText(cell.reviewed_at.replace("T", " ") if cell.reviewed_at else "–")
        v["Cut by border"].setText("<b>yes</b>: part of the cell lies outside the image" if cell.partial else "no")
        self._show_cell_type(cell.cell_type is not None)
        v["Cell type"].setText(str(cell.cell_type) if cell.cell_type is not None else "–")
        if cell.thumbnail is not None and not cell.thumbnail.isNull():
            self.thumbnail.setPixmap(QPixmap.fromImage(cell.thumbnail).scaled(
                THUMBNAIL_SIDE, THUMBNAIL_SIDE, Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation))
        else:
            self.thumbnail.clear()

    def _show_cell_type(self, shown: bool) -> None:
        self.values["Cell type"].setVisible(shown)
        self._names["Cell type"].setVisible(shown)

    def shown_fields(self) -> dict[str, str]:
        """Caption -> the plain text shown beside it (the rows a reviewer can see)."""
        from PySide6.QtGui import QTextDocument

        out = {}
        for name, value in self.values.items():
            if value.isVisibleTo(self):
                document = QTextDocument()
                document.setHtml(value.text())
                out[name] = document.toPlainText().replace(_BREAK, "")
        return out

    def set_gradcam_status(self, text: str) -> None:
        """What the Grad-CAM layer shows now, in words (off, computing, the class explained, or why it is empty)."""
        self.gradcam_label.setText(text)
