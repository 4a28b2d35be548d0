"""The cell gallery: every cell of the case as a thumbnail, grouped ALL / UNCERTAIN / HEM by its current label
(the reviewer's where there is one) and sorted by blast probability, each with its white-cell type. Dragging a
cell onto another group relabels it; right-clicking it sets its type.

Virtualised (Qt's model/view): each group is a ``QListView`` over a list model of plain ``GalleryCell`` records,
and a delegate paints only the tiles on screen. Thumbnails live in a bounded cache (least recently used first
out); a tile whose thumbnail was dropped asks for it again (``thumbnailsWanted``), and the window cuts it in a
worker. So a case of any size holds a fixed number of images, and one label changes one tile, not the gallery.
"""
from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from dataclasses import dataclass

from PySide6.QtCore import QAbstractListModel, QByteArray, QMimeData, QModelIndex, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import (QAbstractItemView, QLabel, QListView, QMenu, QStyle, QStyledItemDelegate,
                               QVBoxLayout, QWidget)

from training.celltypes import CELL_TYPES, SHORT_NAMES

from .jobs import THUMBNAIL_SIZE
from .signals import emit
from .style import GALLERY_ORDER, LABEL_NAMES, SELECTION_COLOUR, hex_colour, label_colour

CELL_MIME = "application/x-leukviewer-cell"
ICON = THUMBNAIL_SIZE + 8
GRID = QSize(ICON + 10, ICON + 22)
THUMBNAIL_CACHE_SIZE = 512      # thumbnails held at most (~16 KB each): several screens of tiles
CELL_ROLE = Qt.ItemDataRole.UserRole + 1
RECUT_PAUSE_S = 2.0


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


def type_text(cell: GalleryCell) -> str:
    """The tooltip's type line: the type as it stands, and the model's where the reviewer changed it."""
    text = CELL_TYPES.get(cell.cell_type, cell.cell_type)
    if cell.suggested_type and cell.suggested_type != cell.cell_type:
        text += f" (model: {CELL_TYPES.get(cell.suggested_type, cell.suggested_type)})"
    return text


def caption(cell: GalleryCell) -> str:
    """Below the tile: probability and type (the check mark and solid frame say "reviewed")."""
    return f"{cell.blast_probability:.2f} {SHORT_NAMES.get(cell.cell_type, cell.cell_type)}".rstrip()


def tooltip(cell: GalleryCell) -> str:
    return (f"{cell.cell_id}\nType: {type_text(cell)}\nP(blast) = {cell.blast_probability:.3f}\n"
            f"model: {cell.suggested}" + (f"\nreviewed: {cell.label}" if cell.reviewed else "")
            + "\nright-click: change the cell type")


def _sort_key(cell: GalleryCell) -> tuple:
    return -cell.blast_probability, cell.cell_id


class ThumbnailCache:
    """At most ``capacity`` thumbnails by cell id; the least recently used goes first."""

    def __init__(self, capacity: int = THUMBNAIL_CACHE_SIZE):
        self.capacity = capacity
        self._images: OrderedDict[str, QImage] = OrderedDict()

    def __len__(self) -> int:
        return len(self._images)

    def __contains__(self, cell_id: str) -> bool:
        return cell_id in self._images

    def get(self, cell_id: str) -> QImage | None:
        image = self._images.get(cell_id)
        if image is not None:
            self._images.move_to_end(cell_id)
        return image

    def put(self, cell_id: str, image: QImage) -> None:
        self._images[cell_id] = image
        self._images.move_to_end(cell_id)
        while len(self._images) > self.capacity:
            self._images.popitem(last=False)

    def clear(self) -> None:
        self._images.clear()


class GroupModel(QAbstractListModel):
    """The cells of one group, by probability (highest first); rows change one at a time."""

    def __init__(self, label: str, parent=None):
        super().__init__(parent)
        self.label = label
        self.cells: list[GalleryCell] = []
        self._keys: list[tuple] = []

    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.cells)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self.cells):
            return None
        cell = self.cells[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return caption(cell)
        if role == Qt.ItemDataRole.ToolTipRole:
            return tooltip(cell)
        if role == Qt.ItemDataRole.UserRole:
            return cell.cell_id
        if role == CELL_ROLE:
            return cell
        return None

    def flags(self, index):
        base = Qt.ItemFlag.ItemIsDropEnabled
        if not index.isValid():
            return base
        return base | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDragEnabled

    def mimeTypes(self):
        return [CELL_MIME]

    def mimeData(self, indexes):
        data = QMimeData()
        if indexes:
            data.setData(CELL_MIME, QByteArray(self.cells[indexes[0].row()].cell_id.encode("utf-8")))
        return data

    def supportedDragActions(self):
        return Qt.DropAction.MoveAction

    def supportedDropActions(self):
        return Qt.DropAction.MoveAction | Qt.DropAction.CopyAction

    # ------------------------------------------------------------ changes

    def row_of(self, cell: GalleryCell) -> int:
        """The row of ``cell`` (as it was inserted), or -1."""
        key = _sort_key(cell)
        row = bisect.bisect_left(self._keys, key)
        return row if row < len(self._keys) and self._keys[row] == key else -1

    def reset(self, cells: list[GalleryCell]) -> None:
        self.beginResetModel()
        self.cells = sorted(cells, key=_sort_key)
        self._keys = [_sort_key(c) for c in self.cells]
        self.endResetModel()

    def insert(self, cell: GalleryCell) -> int:
        key = _sort_key(cell)
        row = bisect.bisect_left(self._keys, key)
        self.beginInsertRows(QModelIndex(), row, row)
        self.cells.insert(row, cell)
        self._keys.insert(row, key)
        self.endInsertRows()
        return row

    def remove(self, row: int) -> None:
        self.beginRemoveRows(QModelIndex(), row, row)
        del self.cells[row]
        del self._keys[row]
        self.endRemoveRows()

    def replace(self, row: int, cell: GalleryCell) -> None:
        """Same place (same probability and id), new look."""
        self.cells[row] = cell
        index = self.index(row)
        self.dataChanged.emit(index, index)


class TileDelegate(QStyledItemDelegate):
    """Paints one tile: the thumbnail (a grey square while it is being cut), a frame in the label's colour
    (solid and thick: reviewed; dashed: the model's suggestion), a check mark when reviewed, the caption."""

    def __init__(self, gallery: "CellGallery", parent=None):
        super().__init__(parent)
        self.gallery = gallery

    def sizeHint(self, option, index):
        return QSize(GRID)

    def paint(self, painter: QPainter, option, index):
        cell: GalleryCell = index.data(CELL_ROLE)
        if cell is None:
            return
        painter.save()
        rect = option.rect
        tile = QRect(rect.left() + (rect.width() - ICON) // 2, rect.top() + 2, ICON, ICON)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(rect.adjusted(1, 0, -1, 0), QColor(SELECTION_COLOUR).lighter(170))
        painter.fillRect(tile, QColor("#e9e6e3"))
        thumbnail = self.gallery.thumbnail_for_tile(cell.cell_id)
        if thumbnail is not None and not thumbnail.isNull():
            painter.drawImage(tile.left() + 4, tile.top() + 4, thumbnail)
        pen = QPen(label_colour(cell.label), 5 if cell.reviewed else 2)
        if not cell.reviewed:
            pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.drawRect(tile.adjusted(2, 2, -3, -3))
        if cell.reviewed:  # a check mark: this label is a person's, not the model's
            painter.setPen(QPen(QColor("white"), 3))
            x, y = tile.left(), tile.top()
            painter.drawLine(x + ICON - 20, y + ICON - 12, x + ICON - 15, y + ICON - 7)
            painter.drawLine(x + ICON - 15, y + ICON - 7, x + ICON - 7, y + ICON - 17)
        text_rect = QRect(rect.left(), tile.bottom() + 2, rect.width(), rect.bottom() - tile.bottom() - 2)
        painter.setPen(option.palette.color(option.palette.ColorRole.Text))
        text = option.fontMetrics.elidedText(caption(cell), Qt.TextElideMode.ElideRight, rect.width() - 2)
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, text)
        painter.restore()


class GalleryGroup(QListView):
    """The thumbnails of one label; accepts cells dragged from the other groups; right-click sets a cell's type."""
    cellActivated = Signal(str)
    cellDropped = Signal(str, str)      # cell_id, this group's label
    cellTypeChosen = Signal(str, str)   # cell_id, white-cell type

    def __init__(self, label: str, delegate: TileDelegate, parent=None):
        super().__init__(parent)
        self.label = label
        self.cell_model = GroupModel(label, self)
        self.setModel(self.cell_model)
        self.setItemDelegate(delegate)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setGridSize(QSize(GRID))
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setWrapping(True)
        self.setUniformItemSizes(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setDragEnabled(True)
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # review keys belong to the window
        self.clicked.connect(lambda index: emit(self.cellActivated, index.data(Qt.ItemDataRole.UserRole)))
        self.cell_types: tuple[str, ...] = tuple(CELL_TYPES)   # the types offered in the context menu
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._show_type_menu)

    def count(self) -> int:
        """Cells in this group."""
        return self.cell_model.rowCount()

    def cell_ids(self) -> list[str]:
        return [c.cell_id for c in self.cell_model.cells]

    def current_cell_id(self) -> str | None:
        index = self.currentIndex()
        return index.data(Qt.ItemDataRole.UserRole) if index.isValid() else None

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
        index = self.indexAt(pos)
        if not index.isValid():
            return
        cell_id = index.data(Qt.ItemDataRole.UserRole)
        emit(self.cellActivated, cell_id)
        self.type_menu(cell_id).exec(self.viewport().mapToGlobal(pos))

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
        # The window relabels and moves the tile; Qt must not move (remove) the source row itself.
        event.setDropAction(Qt.DropAction.CopyAction)
        event.accept()
        emit(self.cellDropped, cell_id, self.label)


class CellGallery(QWidget):
    cellActivated = Signal(str)
    cellDropped = Signal(str, str)
    cellTypeChosen = Signal(str, str)
    thumbnailsWanted = Signal(list)     # cell ids whose tiles are on screen without their thumbnail

    def __init__(self, parent=None, cache_size: int = THUMBNAIL_CACHE_SIZE):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self._delegate = TileDelegate(self, self)
        self.groups: dict[str, GalleryGroup] = {}
        self.headers: dict[str, QLabel] = {}
        for label in GALLERY_ORDER:
            header = QLabel()
            header.setTextFormat(Qt.TextFormat.RichText)
            group = GalleryGroup(label, self._delegate)
            group.cellActivated.connect(self.cellActivated)
            group.cellDropped.connect(self.cellDropped)
            group.cellTypeChosen.connect(self.cellTypeChosen)
            layout.addWidget(header)
            layout.addWidget(group, 1)
            self.headers[label], self.groups[label] = header, group
        self.thumbnails = ThumbnailCache(cache_size)
        self._cells: dict[str, GalleryCell] = {}        # what each tile shows, by cell id
        self._wanted: set[str] = set()                  # asked for, not yet arrived
        self._new_wants: list[str] = []
        self._cut_at: dict[str, float] = {}            # when each thumbnail last arrived
        self._current: str | None = None
        self._want_timer = QTimer(self, singleShot=True, interval=0, timeout=self._ask_for_thumbnails)
        self._layout_timer = QTimer(self, singleShot=True, interval=200, timeout=self._update_layout)
        self._update_layout()

    def set_cell_types(self, cell_types) -> None:
        """The types the context menu offers: the model's, in the vocabulary's order, then any other known type."""
        offered = [t for t in CELL_TYPES if t in set(cell_types)] + [t for t in CELL_TYPES if t not in set(cell_types)]
        for group in self.groups.values():
            group.cell_types = tuple(offered)

    # ------------------------------------------------------------ thumbnails

    def add_thumbnails(self, thumbnails: dict[str, QImage]) -> None:
        """Thumbnails cut by a worker; their tiles are repainted."""
        now = time.monotonic()
        for cell_id, image in thumbnails.items():
            self.thumbnails.put(cell_id, image)
            if cell_id in self._wanted:   # cut again on request (not a first cut by the analysis)
                self._wanted.discard(cell_id)
                self._cut_at[cell_id] = now
        for group in self.groups.values():
            group.viewport().update()

    def thumbnail(self, cell_id: str) -> QImage | None:
        """The cell's thumbnail while it is in the cache, or None (it is then asked for at once)."""
        image = self.thumbnails.get(cell_id)
        if image is None and cell_id in self._cells:
            self._want(cell_id, urgent=True)
        return image

    def thumbnail_for_tile(self, cell_id: str) -> QImage | None:
        image = self.thumbnails.get(cell_id)
        if image is None and cell_id in self._cells:
            self._want(cell_id)
        return image

    def _want(self, cell_id: str, urgent: bool = False) -> None:
        # A tile's thumbnail cut again a moment ago and already dropped: more tiles on screen than the cache holds.
        # Ask again only after a pause, so the tiles never chase each other out in a loop of workers.
        recent = time.monotonic() - self._cut_at.get(cell_id, -1e9) <= RECUT_PAUSE_S
        if cell_id not in self._wanted and (urgent or not recent):
            self._wanted.add(cell_id)   # asked once per case: a thumbnail that cannot be cut is not asked again
            self._new_wants.append(cell_id)
            self._want_timer.start()

    def _ask_for_thumbnails(self) -> None:
        wants, self._new_wants = self._new_wants, []
        if wants:
            emit(self.thumbnailsWanted, wants)

    # ------------------------------------------------------------ cells

    def clear(self) -> None:
        self.thumbnails.clear()
        self._wanted.clear()
        self._cut_at.clear()
        self._new_wants = []
        self.set_cells([])

    def order(self) -> list[str]:
        """Cell ids in gallery order (groups top to bottom, each by probability, highest first)."""
        return [cell_id for group in self.groups.values() for cell_id in group.cell_ids()]

    def cell(self, cell_id: str) -> GalleryCell | None:
        """What the cell's tile shows now."""
        return self._cells.get(cell_id)

    def caption(self, cell_id: str) -> str:
        return caption(self._cells[cell_id])

    def tooltip(self, cell_id: str) -> str:
        return tooltip(self._cells[cell_id])

    def set_cells(self, cells: list[GalleryCell], current: str | None = None) -> None:
        """Show exactly these cells (a case opened or closed); afterwards change them with ``update_cells``."""
        self._cells = {c.cell_id: c for c in cells}
        by_label: dict[str, list[GalleryCell]] = {label: [] for label in GALLERY_ORDER}
        for cell in cells:
            by_label.setdefault(cell.label, []).append(cell)
        for label, group in self.groups.items():
            group.cell_model.reset(by_label.get(label, []))
        self._update_layout()
        self.set_current(current)

    def update_cells(self, cells: list[GalleryCell]) -> None:
        """Add new cells and change the look or group of known ones, one tile each (the rest stay as they are)."""
        moved_current = False
        for cell in cells:
            old = self._cells.get(cell.cell_id)
            if old is not None:
                group = self.groups.get(old.label)
                row = group.cell_model.row_of(old) if group is not None else -1
                if old.label == cell.label and _sort_key(old) == _sort_key(cell) and row >= 0:
                    group.cell_model.replace(row, cell)
                    self._cells[cell.cell_id] = cell
                    continue
                if row >= 0:
                    group.cell_model.remove(row)
                    moved_current = moved_current or cell.cell_id == self._current
            target = self.groups.get(cell.label)
            self._cells[cell.cell_id] = cell
            if target is not None:
                target.cell_model.insert(cell)
        self._set_headers()
        if moved_current:
            self.set_current(self._current)
        if not self._layout_timer.isActive():
            self._layout_timer.start()

    def _set_headers(self) -> None:
        for label, header in self.headers.items():
            cells = self.groups[label].cell_model.cells
            reviewed = sum(c.reviewed for c in cells)
            header.setText(f"<b style='color:{hex_colour(label)}'>■ {LABEL_NAMES[label]}</b> · {len(cells)} cells"
                           + (f" · {reviewed} reviewed" if reviewed else ""))

    def _update_layout(self) -> None:
        """Headers, and space to the groups that have cells; an empty group keeps a slim drop target."""
        self._set_headers()
        layout = self.layout()
        for label, group in self.groups.items():
            n = group.count()
            # one full row of thumbnails with their probability labels, inside the list's frame
            full_row = group.gridSize().height() + 2 * group.frameWidth() + 2 * group.spacing() + 4
            group.setMinimumHeight(full_row if n else 30)
            group.setMaximumHeight(16_777_215 if n else 30)
            layout.setStretchFactor(group, min(n, 40) + 1 if n else 0)

    def set_current(self, cell_id: str | None) -> None:
        self._current = cell_id
        cell = self._cells.get(cell_id) if cell_id else None
        for label, group in self.groups.items():
            row = group.cell_model.row_of(cell) if cell is not None and cell.label == label else -1
            if row >= 0:
                index = group.cell_model.index(row)
                group.setCurrentIndex(index)
                group.scrollTo(index)
            else:
                group.clearSelection()
                group.setCurrentIndex(QModelIndex())

    def group_of(self, cell_id: str) -> str | None:
        cell = self._cells.get(cell_id)
        if cell is None or cell.label not in self.groups:
            return None
        return cell.label if self.groups[cell.label].cell_model.row_of(cell) >= 0 else None

    def activate(self, cell_id: str) -> None:
        """As a click on the cell's tile."""
        emit(self.cellActivated, cell_id)
