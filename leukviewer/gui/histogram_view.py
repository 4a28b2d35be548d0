"""The window's histogram of the case's blast probabilities, painted by Qt on the GUI thread.

What it shows comes from the report's histogram module (``core.reports.histogram``): the same bins, the same
bars stacked by label after review in the one palette, the uncertain band shaded with the same opacity, the
threshold as the same dark dashed line, and the shown image's cells as ticks. Only the drawing differs: the PDF
keeps matplotlib, the window paints a few dozen rectangles with QPainter (well under a millisecond, in C++).

Why not the report's matplotlib picture: drawing it costs tens of milliseconds of pure Python. In a worker it
held the GIL against the GUI thread while an analysis ran: with 1,000 fields the window froze for up to 0.18 s
(``benchmarks/soak.py``), over the 100 ms bar, even with redraws spaced 0.5 s apart and its ~6,000 cyclic
objects freed by hand.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

from ..core.labels import LABEL_HEX, LABEL_UNCERTAIN, LABEL_WORDS, LABELS, SELECTION_HEX, label_for
from ..core.reports.histogram import (BAND_ALPHA, BINS, STACK_ORDER, THRESHOLD_HEX, X_LABEL, bin_counts,
                                      counts_by_label)
from .style import hex_colour

X_TICKS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
HEADROOM = 1.18          # as the report: room above the tallest bar for the threshold's value


def y_ticks(top: int, most: int = 4) -> list[int]:
    """Whole-cell tick values from 0 to at least ``top``, at most ``most`` + 1 of them, on a 1-2-5 step."""
    top = max(1, int(top))
    for step in (m * 10 ** e for e in range(0, 9) for m in (1, 2, 5)):
        if top / step <= most:
            return list(range(0, top + 1, step))
    return [0, top]


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


class ProbabilityHistogram(QWidget):
    """Blast probabilities of the case (bars, by label after review) and of the shown image (ticks).

    Painting is cheap, so every change repaints at once (Qt merges repaints of one event-loop turn)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(160)
        self.setMinimumWidth(300)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.threshold, self.band = 0.5, (0.5, 0.5)
        self.case: list[float] = []
        self.image: list[float] = []
        self.labels: list[str] | None = None
        self.counts = np.zeros(len(BINS) - 1, int)
        self.stacked = counts_by_label([], [])
        self.legend = QLabel("The model's threshold and uncertain band are marked when it has loaded.")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.legend.setStyleSheet("color:#444; font-size:11px")
        self._stopped = False

    def set_decision(self, threshold: float, band: tuple[float, float]) -> None:
        self.threshold, self.band = float(threshold), (float(band[0]), float(band[1]))
        self.legend.setText(histogram_legend(self.threshold, self.band))
        self._restack()

    def set_probabilities(self, case: list[float], image: list[float], labels: list[str] | None = None) -> None:
        """The case's probabilities with their labels after review (None: the model's rule), the shown image's."""
        self.case, self.image = list(case), list(image)
        self.labels = None if labels is None else list(labels)
        self.counts = bin_counts(self.case)
        self._restack()

    def _restack(self) -> None:
        labels = self.labels if self.labels is not None else [label_for(p, self.threshold, self.band)
                                                              for p in self.case]
        self.stacked = counts_by_label(self.case, labels)
        if not self._stopped:
            self.update()

    def stop(self) -> None:
        """No more repaints (the window is closing)."""
        self._stopped = True

    # -- painting ----------------------------------------------------------------------------------------------

    def plot_rect(self) -> QRectF:
        """Where the bars are (0..1 across, 0..top up): left room for the cell counts, below for P(blast)."""
        return QRectF(34, 16, max(10, self.width() - 34 - 10), max(10, self.height() - 16 - 36))

    def x_of(self, p: float) -> float:
        r = self.plot_rect()
        return r.left() + float(p) * r.width()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self)
        try:
            self._paint(painter)
        finally:
            painter.end()

    def _paint(self, painter: QPainter) -> None:
        painter.fillRect(self.rect(), QColor("white"))
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        painter.setFont(font)
        r = self.plot_rect()
        totals = sum(self.stacked.values())
        ticks = y_ticks(int(totals.max(initial=0)))
        top = max(1, ticks[-1], int(np.ceil(max(1, int(totals.max(initial=0))) * HEADROOM)))

        def y_of(count: float) -> float:
            return r.bottom() - count / top * r.height()

        lo, hi = self.band
        if hi > lo:
            band = QColor(LABEL_HEX[LABEL_UNCERTAIN])
            band.setAlphaF(BAND_ALPHA)
            painter.fillRect(QRectF(QPointF(self.x_of(lo), r.top()), QPointF(self.x_of(hi), r.bottom())), band)
        grid = QPen(QColor("#555555"))
        painter.setPen(grid)
        for value in ticks:
            y = y_of(value)
            painter.drawLine(QPointF(r.left() - 3, y), QPointF(r.left(), y))
            painter.drawText(QRectF(0, y - 8, r.left() - 5, 16), Qt.AlignmentFlag.AlignRight
                             | Qt.AlignmentFlag.AlignVCenter, str(value))
        bottom = np.zeros(len(BINS) - 1)
        edge = QPen(QColor("white"))
        edge.setWidthF(0.5)
        painter.setPen(edge)
        for label in STACK_ORDER:
            colour = QColor(LABEL_HEX[label])
            for i, n in enumerate(self.stacked[label]):
                if n:
                    x0, x1 = self.x_of(BINS[i]), self.x_of(BINS[i + 1])
                    painter.setBrush(colour)
                    painter.drawRect(QRectF(QPointF(x0, y_of(bottom[i] + n)), QPointF(x1, y_of(bottom[i]))))
            bottom += self.stacked[label]
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(grid)
        painter.drawLine(QPointF(r.left(), r.bottom()), QPointF(r.right(), r.bottom()))
        painter.drawLine(QPointF(r.left(), r.top()), QPointF(r.left(), r.bottom()))
        for p in X_TICKS:
            x = self.x_of(p)
            painter.drawLine(QPointF(x, r.bottom()), QPointF(x, r.bottom() + 3))
            painter.drawText(QRectF(x - 20, r.bottom() + 3, 40, 14), Qt.AlignmentFlag.AlignCenter, f"{p:.1f}")
        painter.drawText(QRectF(r.left(), r.bottom() + 17, r.width(), 16), Qt.AlignmentFlag.AlignCenter, X_LABEL)
        painter.drawText(QRectF(0, 0, r.left() + 40, 14), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         "cells")
        if not self.case:
            painter.drawText(r, Qt.AlignmentFlag.AlignCenter, "no cells")
        dashed = QPen(QColor(THRESHOLD_HEX))
        dashed.setStyle(Qt.PenStyle.DashLine)
        dashed.setWidthF(1.0)
        painter.setPen(dashed)
        x = self.x_of(self.threshold)
        painter.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
        painter.setPen(QColor(THRESHOLD_HEX))
        flip = self.threshold > 0.75        # keep the value inside the picture
        text_rect = QRectF(x - 130, r.top() - 15, 127, 14) if flip else QRectF(x + 3, r.top() - 15, 130, 14)
        painter.drawText(text_rect, (Qt.AlignmentFlag.AlignRight if flip else Qt.AlignmentFlag.AlignLeft)
                         | Qt.AlignmentFlag.AlignVCenter, f"threshold {self.threshold:.2f}")
        if self.image:
            tick = QPen(QColor(SELECTION_HEX))
            tick.setWidthF(2.0)
            painter.setPen(tick)
            for p in self.image:
                x = self.x_of(min(1.0, max(0.0, p)))
                painter.drawLine(QPointF(x, r.bottom() - 5), QPointF(x, r.bottom() + 5))
