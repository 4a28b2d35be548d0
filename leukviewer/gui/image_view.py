"""The smear field with its cells: zoom (wheel, +/-), pan (drag), fit; an outline per cell coloured by label,
dashed while it is the model's suggestion and solid once a reviewer set it; the probability on hover."""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import (QGraphicsPixmapItem, QGraphicsPolygonItem, QGraphicsScene, QGraphicsView)

from training.celltypes import CELL_TYPES

from ..core.analysis.results import Cell
from .signals import emit
from .style import LABEL_NAMES, SELECTION_COLOUR, label_colour

ZOOM_STEP = 1.25
MIN_ZOOM, MAX_ZOOM = 0.02, 40.0


class CellOutlineItem(QGraphicsPolygonItem):
    """One cell's outline; knows its cell and draws itself by label and review state."""

    def __init__(self, cell: Cell):
        super().__init__(QPolygonF([QPointF(x, y) for x, y in cell.outline]))
        self.cell = cell
        self.cell_id = cell.cell_id
        self.label = cell.label
        self.cell_type = cell.cell_type
        self.reviewed = False
        self.selected = False
        self.setZValue(2)
        self.setAcceptHoverEvents(True)
        self.set_state(cell.label, False)

    def set_state(self, label: str, reviewed: bool, selected: bool | None = None, cell_type: str | None = None) -> None:
        """Label and white-cell type as they stand (the reviewer's or the model's), review state, selection."""
        self.label, self.reviewed = label, reviewed
        if cell_type:
            self.cell_type = cell_type
        if selected is not None:
            self.selected = selected
        colour = label_colour(label)
        pen = QPen(colour, 3.5 if reviewed else 2.0)
        pen.setCosmetic(True)  # same width on screen at every zoom
        pen.setStyle(Qt.PenStyle.SolidLine if reviewed else Qt.PenStyle.DashLine)
        if self.selected:
            pen.setWidthF(pen.widthF() + 1.5)
        self.setPen(pen)
        fill = QColor(colour)
        fill.setAlpha(35 if self.selected else (28 if reviewed else 0))
        self.setBrush(QBrush(fill))
        self.setZValue(3 if self.selected else 2)
        cell = self.cell
        state = f"reviewed: {LABEL_NAMES.get(label, label)}" if reviewed else "not reviewed"
        kind = CELL_TYPES.get(self.cell_type, self.cell_type)
        if self.cell_type != cell.cell_type:
            kind += f" (model: {CELL_TYPES.get(cell.cell_type, cell.cell_type)})"
        self.setToolTip(f"<b>{cell.cell_id}</b><br>Type: {kind}<br>P(blast) = {cell.blast_probability:.3f}<br>"
                        f"model: {LABEL_NAMES.get(cell.label, cell.label)}<br>{state}"
                        + ("<br>cut by the image border: not counted" if cell.partial else ""))

    def paint(self, painter, option, widget=None):
        if self.selected:  # a halo that stands out on any stain
            halo = QPen(SELECTION_COLOUR, 9.0)
            halo.setCosmetic(True)
            painter.setPen(halo)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawPolygon(self.polygon())
        super().paint(painter, option, widget)


class ImageView(QGraphicsView):
    cellClicked = Signal(str)       # cell_id

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setBackgroundBrush(QColor("#2b2b2b"))
        self.setMouseTracking(True)
        self.image: str | None = None
        self._pixmap_item: QGraphicsPixmapItem | None = None
        self._heatmap_item: QGraphicsPixmapItem | None = None
        self._backdrop = None
        self._items: dict[str, CellOutlineItem] = {}
        self._overlays_visible = True
        self._heatmap_opacity = 0.6
        self._press_pos = None
        self._fitted = True

    # ---------------------------------------------------------------- content

    def show_image(self, image: str, width: int, height: int, cells: list[Cell], states: dict[str, tuple]) -> None:
        """Show an image's outlines at once; the pixels follow with ``set_pixmap`` when decoded. An image not yet
        analysed is shown with width 0 and no cells: its pixels set the size, its outlines come with ``set_cells``."""
        self.scene().clear()
        self._pixmap_item = self._heatmap_item = self._backdrop = None
        self._items = {}
        self.image = image
        if width and height:
            self.set_size(width, height)
        self.set_cells(cells, states)
        self.fit()

    def set_size(self, width: int, height: int) -> None:
        """The field's size in file pixels (a light backdrop under where the pixels will be)."""
        rect = QRectF(0, 0, max(width, 1), max(height, 1))
        if self._backdrop is not None:
            if self._backdrop.rect() == rect:
                return
            self.scene().removeItem(self._backdrop)
        self.scene().setSceneRect(rect)
        self._backdrop = self.scene().addRect(rect, QPen(Qt.PenStyle.NoPen), QBrush(QColor("#f4f1ee")))
        self._backdrop.setZValue(-1)
        if self._fitted:
            self.fit()

    def set_cells(self, cells: list[Cell], states: dict[str, tuple]) -> None:
        """The outlines of the shown image (replacing any), e.g. when its analysis arrives after its pixels."""
        for item in self._items.values():
            self.scene().removeItem(item)
        self._items = {}
        for cell in cells:
            item = CellOutlineItem(cell)
            label, reviewed, *cell_type = states.get(cell.cell_id, (cell.label, False))
            item.set_state(label, reviewed, cell_type=cell_type[0] if cell_type else None)
            item.setVisible(self._overlays_visible)
            self.scene().addItem(item)
            self._items[cell.cell_id] = item

    def set_pixmap(self, image: str, pixmap: QPixmap, scale: float) -> None:
        """The decoded field (``scale`` displayed pixels per file pixel); ignored if another image is shown."""
        if image != self.image:
            return
        if self._pixmap_item is not None:
            self.scene().removeItem(self._pixmap_item)
        self._pixmap_item = self.scene().addPixmap(pixmap)
        self._pixmap_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._pixmap_item.setScale(1.0 / scale if scale > 0 else 1.0)
        self._pixmap_item.setZValue(0)

    def clear(self) -> None:
        self.scene().clear()
        self._pixmap_item = self._heatmap_item = self._backdrop = None
        self._items = {}
        self.image = None

    def has_pixmap(self) -> bool:
        return self._pixmap_item is not None

    def overlay_items(self) -> list[CellOutlineItem]:
        return list(self._items.values())

    def item_for(self, cell_id: str) -> CellOutlineItem | None:
        return self._items.get(cell_id)

    def set_cell_state(self, cell_id: str, label: str, reviewed: bool, cell_type: str | None = None) -> None:
        item = self._items.get(cell_id)
        if item is not None:
            item.set_state(label, reviewed, cell_type=cell_type)

    def select_cell(self, cell_id: str | None, centre: bool = True) -> None:
        for cid, item in self._items.items():
            if item.selected != (cid == cell_id):
                item.set_state(item.label, item.reviewed, selected=cid == cell_id)
        item = self._items.get(cell_id) if cell_id else None
        if item is not None and centre:
            self.centerOn(item.boundingRect().center())

    def set_overlays_visible(self, visible: bool) -> None:
        self._overlays_visible = visible
        for item in self._items.values():
            item.setVisible(visible)

    def set_heatmap(self, pixmap: QPixmap | None, left: int = 0, top: int = 0) -> None:
        if self._heatmap_item is not None:
            self.scene().removeItem(self._heatmap_item)
            self._heatmap_item = None
        if pixmap is not None:
            self._heatmap_item = self.scene().addPixmap(pixmap)
            self._heatmap_item.setPos(left, top)
            self._heatmap_item.setZValue(1)
            self._heatmap_item.setOpacity(self._heatmap_opacity)

    def has_heatmap(self) -> bool:
        return self._heatmap_item is not None

    def heatmap_item(self) -> QGraphicsPixmapItem | None:
        return self._heatmap_item

    def set_heatmap_opacity(self, opacity: float) -> None:
        """How strongly the heat map covers the cell (0: not at all, 1: its colours at full strength)."""
        self._heatmap_opacity = min(1.0, max(0.0, float(opacity)))
        if self._heatmap_item is not None:
            self._heatmap_item.setOpacity(self._heatmap_opacity)

    # ---------------------------------------------------------------- zoom and pan

    def zoom_factor(self) -> float:
        return self.transform().m11()

    def zoom(self, factor: float) -> None:
        new = self.zoom_factor() * factor
        if MIN_ZOOM <= new <= MAX_ZOOM:
            self.scale(factor, factor)
            self._fitted = False

    def zoom_in(self) -> None:
        self.zoom(ZOOM_STEP)

    def zoom_out(self) -> None:
        self.zoom(1 / ZOOM_STEP)

    def fit(self) -> None:
        rect = self.scene().sceneRect()
        if rect.width() > 0 and rect.height() > 0:
            self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        self._fitted = True

    def resizeEvent(self, event):
        super().resizeEvent(event)
        if self._fitted:
            self.fit()

    def wheelEvent(self, event):
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom(ZOOM_STEP ** steps)
        event.accept()

    def mousePressEvent(self, event):
        self._press_pos = event.position()
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event):
        super().mouseReleaseEvent(event)
        press, self._press_pos = self._press_pos, None
        if press is None or (event.position() - press).manhattanLength() > 4:
            return  # a pan, not a click
        for item in self.items(event.position().toPoint()):
            if isinstance(item, CellOutlineItem) and item.isVisible():
                emit(self.cellClicked, item.cell_id)
                return
