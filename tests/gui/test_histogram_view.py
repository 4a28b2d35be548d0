"""The window's histogram: the report's bins, stacking and palette, painted by Qt on the GUI thread (a draw no
analysis can hold up: the worker-drawn matplotlib picture stalled the window for up to 0.18 s in a long run)."""
import numpy as np
from PySide6.QtGui import QColor, QImage

from leukviewer.core.labels import LABEL_HEX
from leukviewer.core.reports.histogram import THRESHOLD_HEX, counts_by_label
from leukviewer.gui.histogram_view import ProbabilityHistogram, y_ticks

WHITE = (255, 255, 255)


def shown(qtbot, width: int, threshold: float, band: tuple[float, float]) -> ProbabilityHistogram:
    histogram = ProbabilityHistogram()
    qtbot.addWidget(histogram)
    histogram.resize(width, histogram.height())
    histogram.show()
    histogram.set_decision(threshold, band)
    return histogram


def pixels(widget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    w, h = image.width(), image.height()
    return np.frombuffer(image.constBits(), np.uint8).reshape(h, image.bytesPerLine())[:, :3 * w].reshape(h, w, 3)


def column_has(px: np.ndarray, x: float, colour: str, tolerance: int = 8) -> bool:
    c = QColor(colour)
    col = px[:, int(round(x))].astype(int)
    return bool((np.abs(col - np.array([c.red(), c.green(), c.blue()])).max(axis=1) <= tolerance).any())


def test_bars_are_stacked_by_label_after_review_where_the_cells_are(qtbot):
    histogram = shown(qtbot, 420, 0.5, (0.4, 0.6))
    case, image, labels = [0.12, 0.12, 0.13, 0.9], [0.9], ["HEM", "ALL", "HEM", "ALL"]
    histogram.set_probabilities(case, image, labels)
    px = pixels(histogram)
    assert {k: v.tolist() for k, v in histogram.stacked.items()} == \
        {k: v.tolist() for k, v in counts_by_label(case, labels).items()}      # the report's stacking
    normal, blast = LABEL_HEX["HEM"], LABEL_HEX["ALL"]
    assert column_has(px, histogram.x_of(0.125), normal)        # the bin of 0.10-0.15: 2 HEM and, on top, 1 ALL
    assert column_has(px, histogram.x_of(0.125), blast)
    assert column_has(px, histogram.x_of(0.925), blast)
    assert not column_has(px, histogram.x_of(0.325), blast) and not column_has(px, histogram.x_of(0.325), normal)
    assert column_has(px, histogram.x_of(0.5), THRESHOLD_HEX, tolerance=30)   # the dashed threshold
    # a reviewer relabels the ALL of 0.12 as HEM: the bars follow
    histogram.set_probabilities(case, image, ["HEM", "HEM", "HEM", "ALL"])
    assert not column_has(pixels(histogram), histogram.x_of(0.125), blast)


def test_the_models_rule_labels_the_cells_when_none_are_reviewed_and_the_band_is_shaded(qtbot):
    histogram = shown(qtbot, 400, 0.55, (0.3, 0.8))
    histogram.set_probabilities([0.1, 0.5, 0.95], [], None)
    assert [int(histogram.stacked[k].sum()) for k in ("HEM", "UNCERTAIN", "ALL")] == [1, 1, 1]
    px = pixels(histogram)
    above_bars = int(histogram.plot_rect().top()) + 5
    assert tuple(px[above_bars, int(histogram.x_of(0.7))]) != WHITE      # inside the band: shaded
    assert tuple(px[above_bars, int(histogram.x_of(0.2))]) == WHITE      # outside it: not


def test_y_ticks_are_whole_cells_and_few():
    assert y_ticks(0) == [0, 1]
    assert y_ticks(3) == [0, 1, 2, 3]
    assert y_ticks(7) == [0, 2, 4, 6]
    assert y_ticks(1234)[-1] >= 1000 and len(y_ticks(1234)) <= 5
