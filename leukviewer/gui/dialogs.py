"""Dialogs return values; overlays and banners show things without blocking the reviewer."""
from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFrame, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit,
                               QSplitter, QTabWidget, QTextBrowser, QToolButton, QTreeWidget, QTreeWidgetItem,
                               QVBoxLayout, QWidget)

from .. import RUO_NOTICE, __version__
from .signals import emit

AUTO_ADVANCE_KEYS = "after A / N / U / Space"
SHORTCUTS = [
    ("→ / ↓ / J", "next cell: the next one of this image, then the first of the next image"),
    ("← / ↑ / K", "previous cell"),
    ("A", "label the cell ALL (blast)"),
    ("N", "label the cell HEM (normal)"),
    ("U", "label the cell UNCERTAIN"),
    ("Space", "confirm the model's suggestion"),
    (AUTO_ADVANCE_KEYS, "the next cell is selected (on); switch off: Review → Advance after a label"),
    ("Ctrl+Z / Ctrl+Shift+Z", "undo / redo"),
    ("drag a thumbnail", "move a cell to another group"),
    ("right-click a thumbnail", "set the cell's white-cell type (also Review ▸ Cell type)"),
    ("O", "show or hide the outlines"),
    ("G", "Grad-CAM heat map of the selected cell"),
    ("+ / − / wheel", "zoom in / out"),
    ("F", "fit the image to the window"),
    ("drag the image", "pan"),
    ("Ctrl+O", "open a folder (or drop one on the window)"),
    ("?", "show or hide this help"),
]


class ReviewerDialog(QDialog):
    """Asks for the reviewer's name, recorded with every review."""

    def __init__(self, parent=None, current: str = ""):
        super().__init__(parent)
        self.setWindowTitle("Reviewer")
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Your name is recorded with every label you confirm or change\n"
                                "(review file and audit log)."))
        self.name = QLineEdit(current)
        self.name.setPlaceholderText("e.g. Dr. A. Lovelace")
        layout.addWidget(self.name)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        ruo = QLabel(RUO_NOTICE)
        ruo.setStyleSheet("color:#7a5b00; font-size:10px")
        layout.addWidget(ruo)

    @classmethod
    def ask(cls, parent=None, current: str = "") -> str | None:
        """The name entered, or None when cancelled or left empty."""
        dialog = cls(parent, current)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return None
        return dialog.name.text().strip() or None


def model_card_markdown(model_dir: Path | None) -> str:
    """MODEL_CARD.md of the model folder, else a card written from its model.json."""
    if model_dir is None:
        return "*No model folder is set.*"
    card = Path(model_dir) / "MODEL_CARD.md"
    if card.is_file():
        try:
            return card.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            return f"*The model card {card} cannot be read: {e}*"
    try:
        from ..core.model.classifier import describe_model

        meta = describe_model(model_dir)
    except Exception as e:
        return f"*No usable model in `{model_dir}`: {e}*"
    decision = meta.get("decision", {})
    lines = [f"# {meta.get('name', Path(model_dir).name)} {meta.get('version', '')}", "",
             f"- Folder: `{model_dir}`",
             f"- Classes: {', '.join(meta.get('class_names', []))}",
             f"- Input: {meta.get('preprocessing', {}).get('size', '?')} px",
             f"- Decision threshold: {decision.get('threshold', '?')}; uncertainty band: "
             f"{decision.get('uncertainty_band', '–')}",
             f"- Temperature: {meta.get('temperature', 1.0)}",
             f"- Weights SHA-256: `{meta.get('weights', {}).get('sha256', '?')}`"]
    metrics = meta.get("metrics")
    if metrics:
        lines += ["", "## Metrics", "", "```", json.dumps(metrics, indent=1)[:4000], "```"]
    data = meta.get("data")
    if data:
        lines += ["", "## Training data", "", "```", json.dumps(data, indent=1)[:3000], "```"]
    return "\n".join(lines)


def licences_folder() -> Path:
    from ..core.model.classifier import assets_dir

    return assets_dir() / "licenses"


def bundled_licences(folder: Path | None = None) -> list[dict]:
    """The third-party components leukviewer ships, with their licences (``assets/licenses/index.json``, written by
    packaging/collect_licenses.py), and the build machine's system libraries in an installed bundle
    (``system/index.json``, written by the build). Each entry: name, version, licence, url, files."""
    folder = folder or licences_folder()
    entries = []
    for index in (folder / "index.json", folder / "system" / "index.json"):
        try:
            entries += json.loads(index.read_text(encoding="utf-8"))["components"]
        except (OSError, ValueError, KeyError):
            continue
    return entries


def licence_text(entry: dict, folder: Path | None = None) -> str:
    """The licence files of one component, one after the other."""
    folder = folder or licences_folder()
    parts = [f"{entry.get('name', '')} {entry.get('version', '')}".strip(), f"Licence: {entry.get('licence', '')}"]
    if entry.get("url"):
        parts.append(entry["url"])
    for name in entry.get("files", []):
        try:
            text = (folder / name).read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            text = f"(cannot be read: {e})"
        parts.append(f"\n=== {name} ===\n\n{text}")
    return "\n".join(parts)


class LicencesPanel(QWidget):
    """Every bundled component and its licence; selecting one shows its licence texts."""

    def __init__(self, parent=None, folder: Path | None = None):
        super().__init__(parent)
        self.folder = folder or licences_folder()
        self.entries = bundled_licences(self.folder)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        intro = QLabel("leukviewer includes the software and data below, each under its own licence. Qt is used "
                       "under the LGPL-3.0; its libraries are separate files in the installation folder and can be "
                       "replaced.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.table = QTreeWidget()
        self.table.setHeaderLabels(["Component", "Version", "Licence"])
        self.table.setRootIsDecorated(False)
        for entry in self.entries:
            self.table.addTopLevelItem(QTreeWidgetItem([entry.get("name", ""), entry.get("version", ""),
                                                        entry.get("licence", "")]))
        self.table.resizeColumnToContents(0)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        if not self.entries:
            self.text.setPlainText(f"The licence index is missing from {self.folder}.")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.text)
        splitter.setSizes([220, 260])
        layout.addWidget(splitter, 1)
        self.table.currentItemChanged.connect(self._show_selected)
        if self.entries:
            self.table.setCurrentItem(self.table.topLevelItem(0))

    def _show_selected(self, item, _previous=None) -> None:
        if item is not None:
            self.text.setPlainText(licence_text(self.entries[self.table.indexOfTopLevelItem(item)], self.folder))

    def select(self, name: str) -> None:
        """Show the licence of the first component whose name contains ``name``."""
        for i, entry in enumerate(self.entries):
            if name.lower() in entry.get("name", "").lower():
                self.table.setCurrentItem(self.table.topLevelItem(i))
                return
        raise KeyError(name)


class AboutDialog(QDialog):
    def __init__(self, parent=None, model_dir: Path | None = None):
        super().__init__(parent)
        self.setWindowTitle("About leukviewer")
        self.resize(680, 600)
        layout = QVBoxLayout(self)
        notice = QLabel(RUO_NOTICE)
        notice.setObjectName("ruo")
        notice.setStyleSheet("background:#fff3c4; color:#5c4300; font-weight:bold; padding:6px; border:1px solid"
                             " #e0c060")
        layout.addWidget(notice)
        layout.addWidget(QLabel(f"<b>leukviewer {__version__}</b> — review of peripheral blood smears for "
                                "leukemic blasts (ALL)."))
        self.card = QTextBrowser()
        self.card.setOpenExternalLinks(False)
        self.card_markdown = model_card_markdown(model_dir)
        self.card.setMarkdown(self.card_markdown)
        self.licences = LicencesPanel(self)
        self.licence_table = self.licences.table
        self.tabs = QTabWidget()
        self.tabs.addTab(self.card, "Model card")
        self.tabs.addTab(self.licences, "Licences")
        layout.addWidget(self.tabs, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


class MessageBanner(QFrame):
    """A non-blocking message strip above the image (errors and notices); closes with its ✕."""
    dismissed = Signal()

    STYLES = {"error": ("#fde2e1", "#8a1c1c", "#e5a3a0"), "warning": ("#fff3c4", "#5c4300", "#e0c060"),
              "info": ("#e3f0fb", "#153e63", "#a9c9e8")}

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.clicked.connect(self.dismiss)
        layout.addWidget(self.text, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.level = "info"
        self.hide()

    def show_message(self, text: str, level: str = "error") -> None:
        background, colour, border = self.STYLES.get(level, self.STYLES["info"])
        self.level = level
        self.setStyleSheet(f"MessageBanner{{background:{background}; border:1px solid {border};}}"
                           f"QLabel{{color:{colour};}}")
        self.text.setText(text)
        self.show()

    def dismiss(self) -> None:
        self.hide()
        emit(self.dismissed)


class HelpOverlay(QWidget):
    """The keyboard shortcuts over the window's content; any key or click closes it."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, False)
        layout = QVBoxLayout(self)
        layout.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label = QLabel()
        self.label.setStyleSheet("color:white; background:rgba(20,20,20,225); padding:18px; border-radius:8px")
        layout.addWidget(self.label)
        self.set_auto_advance(True)
        self.hide()

    def set_auto_advance(self, on: bool) -> None:
        """Say whether a label moves on to the next cell (Review → Advance after a label)."""
        state = ("the next cell is selected (on); switch off: Review → Advance after a label" if on else
                 "the cell stays selected (advance is off); switch on: Review → Advance after a label")
        rows = "".join(f"<tr><td align='right' style='padding:2px 14px'><b>{k}</b></td><td>"
                       f"{state if k == AUTO_ADVANCE_KEYS else v}</td></tr>" for k, v in SHORTCUTS)
        self.label.setText(f"<h3 style='margin:0'>Keyboard shortcuts</h3><table>{rows}</table>"
                           f"<p style='color:#bbb'>Press any key or click to close. {RUO_NOTICE}</p>")

    def toggle(self) -> None:
        if self.isVisible():
            self.hide()
            return
        self.setGeometry(self.parentWidget().rect())
        self.raise_()
        self.show()
        self.setFocus()

    def paintEvent(self, event):
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(0, 0, 0, 90))

    def keyPressEvent(self, event):
        self.hide()

    def mousePressEvent(self, event):
        self.hide()
