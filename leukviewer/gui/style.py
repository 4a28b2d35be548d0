"""Colours and words shared by the views (one place, so the image, gallery and histogram agree)."""
from __future__ import annotations

from PySide6.QtGui import QColor

from ..core.classifier import LABEL_BLAST, LABEL_NORMAL, LABEL_UNCERTAIN

LABEL_COLOURS = {
    LABEL_BLAST: QColor("#d7263d"),       # red: leukemic blast
    LABEL_UNCERTAIN: QColor("#f29e02"),   # amber: needs a look
    LABEL_NORMAL: QColor("#1b998b"),      # teal: normal
}
LABEL_NAMES = {LABEL_BLAST: "ALL (blast)", LABEL_UNCERTAIN: "Uncertain", LABEL_NORMAL: "HEM (normal)"}
GALLERY_ORDER = (LABEL_BLAST, LABEL_UNCERTAIN, LABEL_NORMAL)
SELECTION_COLOUR = QColor("#00b4ff")


def label_colour(label: str) -> QColor:
    return QColor(LABEL_COLOURS.get(label, QColor("#888888")))


def hex_colour(label: str) -> str:
    return label_colour(label).name()
