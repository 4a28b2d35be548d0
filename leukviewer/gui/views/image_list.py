"""The image list: one row per image of the case, its status as an icon (the message in the tooltip and, for the
selected image, in the details pane below) and its counts."""
from __future__ import annotations

import html
import os
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QTreeWidget, QTreeWidgetItem

from ...core.model.classifier import LABEL_BLAST
from ...core.analysis.results import STATUS_NO_CELLS, STATUS_OK
from ..style import hex_colour

COLUMNS = ("Image", "Status", "Cells", "ALL", "Unc.", "Reviewed")
STATUS_WAITING = "waiting"
STATUS_CANCELLED = "not analysed (cancelled)"
STATUS_NO_MODEL = "not analysed (no model)"

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


def row_status(row: QTreeWidgetItem) -> str:
    """The status message of an image-list row (its tooltip)."""
    return row.data(1, Qt.ItemDataRole.UserRole) or ""


class ImageList(QTreeWidget):
    """The case's images; ``imageChosen(name)`` when the reviewer clicks one. ``rows``: name -> row."""
    imageChosen = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: dict[str, QTreeWidgetItem] = {}
        self.setHeaderLabels(COLUMNS)
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        # The shared prefix is cut off (distinguishable_names): what is left differs at its start.
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        header = self.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        # Sized from the rows on screen only: by default Qt measures up to 1,000 rows after every row's change,
        # ~30 ms of the GUI thread per analysed image in a 300-image case, ~100 ms at 1,000.
        header.setResizeContentsPrecision(0)
        header.setStretchLastSection(False)
        self.itemClicked.connect(lambda item: self.imageChosen.emit(item.data(0, Qt.ItemDataRole.UserRole)))
        self.setMinimumWidth(300)
        self.setMinimumHeight(120)
        # The selected image's status in full (the list shows an icon): why it is unreadable or has no cell.
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setStyleSheet("padding:3px; background:#fbf3e6")
        self.details.hide()

    def clear_case(self) -> None:
        self.rows.clear()
        self.clear()
        self.details.hide()

    def set_images(self, names: list[str], folder: Path | None) -> None:
        """One waiting row per image, in order. Rows are clones of one prepared row, added in one call: a case of
        1,000 images is listed in ~30 ms of the GUI thread instead of ~110 ms (a visible freeze)."""
        self.setUpdatesEnabled(False)
        shown = distinguishable_names(names)
        template = QTreeWidgetItem([""] * len(COLUMNS))
        self.set_status(template, STATUS_WAITING)
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        for column in range(2, len(COLUMNS)):
            template.setTextAlignment(column, right)
        prefix = f"{folder}{os.sep}" if folder else ""
        name_role = Qt.ItemDataRole.UserRole
        rows = []
        for name in names:
            row = template.clone()
            row.setText(0, shown[name])
            row.setData(0, name_role, name)
            row.setToolTip(0, prefix + name)
            rows.append(row)
        self.addTopLevelItems(rows)
        self.rows.update(zip(names, rows))
        self.setUpdatesEnabled(True)

    @staticmethod
    def set_status(row: QTreeWidgetItem, status: str) -> None:
        """The Status column: an icon; the message (however long) in its tooltip, so the counts stay in view."""
        row.setIcon(1, status_icon(status_kind(status)))
        row.setText(1, "")
        row.setToolTip(1, status)
        row.setData(1, Qt.ItemDataRole.UserRole, status)
        row.setData(1, Qt.ItemDataRole.AccessibleTextRole, status)

    def mark_waiting_rows(self, done, status: str) -> None:
        """Every image not in ``done`` gets ``status`` (a cancelled or failed run)."""
        for name, row in self.rows.items():
            if name not in done:
                self.set_status(row, status)

    def show_result(self, image: str, status: str, ok: bool, counts: dict) -> None:
        """An image's status and its counts after review (``reviewed_counts``)."""
        row = self.rows.get(image)
        if row is None:
            return
        self.set_status(row, status)
        if ok:
            row.setText(2, str(counts["white_cells"]))
            row.setText(3, str(counts["blasts"]))
            row.setText(4, str(counts["uncertain"]))
            row.setText(5, f"{counts['reviewed']}/{counts['cells']}" if counts["cells"] else "")
            row.setForeground(3, QBrush(QColor(hex_colour(LABEL_BLAST) if counts["blasts"] else "#444444")))

    def select(self, image: str) -> None:
        """Make the image's row the current one, scrolled into view, and show its status in full."""
        row = self.rows[image]
        if self.currentItem() is not row:
            self.setCurrentItem(row)
        self.scrollToItem(row)
        self.show_details(image)

    def show_details(self, image: str | None) -> None:
        """The details pane: the selected image's status message in full when it is not a plain "ok"."""
        row = self.rows.get(image) if image else None
        status = row_status(row) if row is not None else ""
        if not status or status == STATUS_OK:
            self.details.hide()
            return
        self.details.setText(f"<b>{html.escape(image)}</b>: {html.escape(status)}")
        self.details.show()
