"""Colours and words shared by the views (one place, so the image, gallery and histogram agree)."""
from __future__ import annotations

from PySide6.QtGui import QColor

from ..core.labels import LABEL_HEX, LABEL_NAMES, LABELS, SELECTION_HEX, label_hex  # noqa: F401 (re-exported)

LABEL_COLOURS = {label: QColor(colour) for label, colour in LABEL_HEX.items()}   # core.labels' palette
GALLERY_ORDER = LABELS
SELECTION_COLOUR = QColor(SELECTION_HEX)


def label_colour(label: str) -> QColor:
    return QColor(label_hex(label))


def hex_colour(label: str) -> str:
    return label_hex(label)
