"""The cell gallery: every cell of the case as a thumbnail, grouped ALL / UNCERTAIN / HEM by its current label
(the reviewer's where there is one) and sorted by blast probability, each with its white-cell type. Dragging a
cell onto another group relabels it; right-clicking it sets its type."""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QByteArray, QMimeData, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QLabel, QListWidget, QListWidgetItem, QMenu, QVBoxLayout,
                               QWidget)

from training.celltypes import CELL_TYPES, SHORT_NAMES

from .jobs import THUMBNAIL_SIZE
from .signals import emit
from .style import GALLERY_ORDER, LABEL_NAMES, hex_colour, label_colour

CELL_MIME = "application/x-leukviewer-cell"
ICON = THUMBNAIL_SIZE + 8


@dataclass
class GalleryCell:
    cell_id: str
    image: str
    blast_probability: float
    suggested: str
    label: str          # current: reviewed or suggested
    reviewed: bool
    cell_type: str = ""         # current white-cell type: the reviewer's or the model's
    suggested_type: str = ""    # the model's white-cell type


def _icon(thumbnail: QImage | None, label: str, reviewed: bool) -> QIcon:
    pixmap = QPixmap(ICON, ICON)
    pixmap.fill(QColor("#e9e6e3"))
    painter = QPainter(pixmap)
    if thumbnail is not None and not thumbnail.isNull():
        painter.drawImage(4, 4, thumbnail)
    pen = QPen(label_colour(label), 5 if reviewed else 2)
    if not reviewed:
        pen.setStyle(Qt.PenStyle.DashLine)
    painter.setPen(pen)
    painter.drawRect(pixmap.rect().adjusted(2, 2, -3, -3))
    if reviewed:  # a check mark: this label is a person's, not the model's
        painter.setPen(QPen(QColor("white"), 3))
        painter.drawLine(ICON - 20, ICON - 12, ICON - 15, ICON - 7)
        painter.drawLine(ICON - 15, ICON - 7, ICON - 7, ICON - 17)
    painter.end()
    return QIcon(pixmap)


def type_text(cell: GalleryCell) -> str:
    """The tooltip's type line: the type as it stands, and the model's where the reviewer changed it."""
    text = CELL_TYPES.get(cell.cell_type, cell.cell_type)
    if cell.suggested_type and cell.suggested_type != cell.cell_type:
        text += f" (model: {CELL_TYPES.get(cell.suggested_type, cell.suggested_type)})"
    return text


class GalleryGroup(QListWidget):
    """The thumbnails of one label; accepts cells dragged from the other groups; right-click sets a cell's type."""
    cellActivated = Signal(str)
    cellDropped = Signal(str, str)      # cell_id, this group's label
    cellTypeChosen = Signal(str, str)   # cell_id, white-cell type

    def __init__(self, label: str, parent=None):
        super().__init__(parent)
        self.label = label
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setIconSize(QSize(ICON, ICON))
        self.setGridSize(QSize(ICON + 10, ICON + 22))
        self.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.setMovement(QListWidget.Movement.Static)
        self.setWrapping(True)
        self.setUniformItemSizes(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setDragEnabled(True)
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # review keys belong to the window
        self.itemClicked.connect(lambda item: emit(self.cellActivated, item.data(Qt.ItemDataRole.UserRole)))
        self.cell_types: tuple[str, ...] = tuple(CELL_TYPES)   # the types offered in the context menu
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._show_type_menu)

    def type_menu(self, cell_id: str) -> QMenu:
        """"Cell type" choices for one cell; choosing one emits ``cellTypeChosen``."""
        menu = QMenu(self)
        menu.addSection("Cell type")
        for cell_type in self.cell_types:
            action = menu.addAction(CELL_TYPES.get(cell_type, cell_type))
            action.setData(cell_type)
            action.triggered.connect(lambda _=False, t=cell_type: emit(self.cellTypeChosen, cell_id, t))
        return menu

    def _show_type_menu(self, pos) -> None:
        item = self.itemAt(pos)
        if item is None:
            return
        cell_id = item.data(Qt.ItemDataRole.UserRole)
        emit(self.cellActivated, cell_id)
        self.type_menu(cell_id).exec(self.viewport().mapToGlobal(pos))

    def mimeTypes(self):
        return [CELL_MIME]

    def mimeData(self, items):
        data = QMimeData()
        if items:
            data.setData(CELL_MIME, QByteArray(items[0].data(Qt.ItemDataRole.UserRole).encode("utf-8")))
        return data

    def supportedDropActions(self):
        return Qt.DropAction.MoveAction

    def _accepts(self, event) -> bool:
        return event.mimeData().hasFormat(CELL_MIME) and event.source() is not self

    def dragEnterEvent(self, event):
        if self._accepts(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event):
        if self._accepts(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event):
        if not self._accepts(event):
            event.ignore()
            return
        cell_id = bytes(event.mimeData().data(CELL_MIME).data()).decode("utf-8")
        # The window relabels and rebuilds the groups; Qt must not move the item itself.
        event.setDropAction(Qt.DropAction.CopyAction)
        event.accept()
        emit(self.cellDropped, cell_id, self.label)


class CellGallery(QWidget):
    cellActivated = Signal(str)
    cellDropped = Signal(str, str)
    cellTypeChosen = Signal(str, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.groups: dict[str, GalleryGroup] = {}
        self.headers: dict[str, QLabel] = {}
        for label in GALLERY_ORDER:
            header = QLabel()
            header.setTextFormat(Qt.TextFormat.RichText)
            group = GalleryGroup(label)
            group.cellActivated.connect(self.cellActivated)
            group.cellDropped.connect(self.cellDropped)
            group.cellTypeChosen.connect(self.cellTypeChosen)
            layout.addWidget(header)
            layout.addWidget(group, 1)
            self.headers[label], self.groups[label] = header, group
        self._thumbnails: dict[str, QImage] = {}
        self._items: dict[str, QListWidgetItem] = {}
        self._order: list[str] = []
        self._set_headers({label: [] for label in GALLERY_ORDER})

    def set_cell_types(self, cell_types) -> None:
        """The types the context menu offers: the model's, in the vocabulary's order, then any other known type."""
        offered = [t for t in CELL_TYPES if t in set(cell_types)] + [t for t in CELL_TYPES if t not in set(cell_types)]
        for group in self.groups.values():
            group.cell_types = tuple(offered)

    def add_thumbnails(self, thumbnails: dict[str, QImage]) -> None:
        self._thumbnails.update(thumbnails)

    def thumbnail(self, cell_id: str) -> QImage | None:
        """The cell's thumbnail (cut when its image was analysed), or None."""
        return self._thumbnails.get(cell_id)

    def clear(self) -> None:
        self._thumbnails.clear()
        self.set_cells([])

    def order(self) -> list[str]:
        """Cell ids in gallery order (groups top to bottom, each by probability, highest first)."""
        return list(self._order)

    def set_cells(self, cells: list[GalleryCell], current: str | None = None) -> None:
        """Rebuild the groups (cheap: icons are small and painted once per rebuild)."""
        by_label: dict[str, list[GalleryCell]] = {label: [] for label in GALLERY_ORDER}
        for cell in cells:
            by_label.setdefault(cell.label, []).append(cell)
        self._items, self._order = {}, []
        for label, group in self.groups.items():
            members = sorted(by_label.get(label, []), key=lambda c: (-c.blast_probability, c.cell_id))
            group.setUpdatesEnabled(False)
            group.clear()
            for cell in members:
                short = SHORT_NAMES.get(cell.cell_type, cell.cell_type)
                # caption: probability and type (the icon's check mark and solid frame say "reviewed")
                item = QListWidgetItem(_icon(self._thumbnails.get(cell.cell_id), cell.label, cell.reviewed),
                                       f"{cell.blast_probability:.2f} {short}".rstrip())
                item.setData(Qt.ItemDataRole.UserRole, cell.cell_id)
                item.setToolTip(f"{cell.cell_id}\nType: {type_text(cell)}\nP(blast) = {cell.blast_probability:.3f}\n"
                                f"model: {cell.suggested}" + (f"\nreviewed: {cell.label}" if cell.reviewed else "")
                                + "\nright-click: change the cell type")
                item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
                group.addItem(item)
                self._items[cell.cell_id] = item
                self._order.append(cell.cell_id)
            group.setUpdatesEnabled(True)
        self._set_headers(by_label)
        # Space goes to the groups that have cells; an empty group keeps a slim drop target.
        layout = self.layout()
        for label, group in self.groups.items():
            n = len(by_label.get(label, []))
            # one full row of thumbnails with their probability labels, inside the list's frame
            full_row = group.gridSize().height() + 2 * group.frameWidth() + 2 * group.spacing() + 4
            group.setMinimumHeight(full_row if n else 30)
            group.setMaximumHeight(16_777_215 if n else 30)
            layout.setStretchFactor(group, min(n, 40) + 1 if n else 0)
        self.set_current(current)

    def _set_headers(self, by_label) -> None:
        for label, header in self.headers.items():
            members = by_label.get(label, [])
            reviewed = sum(c.reviewed for c in members)
            header.setText(f"<b style='color:{hex_colour(label)}'>■ {LABEL_NAMES[label]}</b> · {len(members)} cells"
                           + (f" · {reviewed} reviewed" if reviewed else ""))

    def set_current(self, cell_id: str | None) -> None:
        for label, group in self.groups.items():
            item = self._items.get(cell_id) if cell_id else None
            if item is not None and item.listWidget() is group:
                group.setCurrentItem(item)
                group.scrollToItem(item)
            else:
                group.clearSelection()

    def group_of(self, cell_id: str) -> str | None:
        item = self._items.get(cell_id)
        return item.listWidget().label if item is not None else None
