"""What the wizard's pages share: their ids and the labels every page shows."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWizardPage

from ... import RUO_NOTICE

if TYPE_CHECKING:
    from .wizard import RetrainWizard

PAGE_DATA, PAGE_SETTINGS, PAGE_TRAIN, PAGE_EVALUATE, PAGE_ACCEPT = range(5)


class RetrainPage(QWizardPage):
    """A page of the retraining wizard: its title and subtitle, and the wizard (``self.w``) whose session, data and
    workers it uses."""

    def __init__(self, wizard: "RetrainWizard", title: str, subtitle: str):
        super().__init__()
        self.w = wizard
        self.setTitle(title)
        self.setSubTitle(subtitle)


def ruo_label() -> QLabel:
    label = QLabel(RUO_NOTICE)
    label.setStyleSheet("color:#7a5b00; font-size:10px")
    return label


def wrapping_label(layout) -> QLabel:
    """An empty label that wraps its text, added to ``layout``."""
    label = QLabel()
    label.setWordWrap(True)
    layout.addWidget(label)
    return label


def message_label(colour: str) -> QLabel:
    """A hidden, selectable, wrapping label for errors or warnings (shown by ``show_message``)."""
    label = QLabel()
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setStyleSheet(f"color:{colour}")
    label.hide()
    return label


def show_message(label: QLabel, text: str) -> None:
    """Show ``text`` in the label, or hide the label when there is none."""
    label.setText(text)
    label.setVisible(bool(text))


def sentence(message: str) -> str:
    """A progress message as a status line: "reading x" -> "Reading x…"."""
    return message[:1].upper() + message[1:] + "…"
