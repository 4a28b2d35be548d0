"""The case histogram is drawn by matplotlib (pure Python) in a worker: while an analysis streams results it is
redrawn at most once per gap, so the drawing thread does not keep the GIL from the GUI thread, and the last
picture always shows the latest data."""
import time

import numpy as np

from PySide6.QtCore import QTimer
from PySide6.QtGui import QImage

from leukviewer.core.reports.histogram import render_histogram
from leukviewer.gui.summary import WINDOW_DPI, ProbabilityHistogram


def test_streaming_results_redraw_the_histogram_at_most_once_per_gap_and_end_on_the_latest(qtbot):
    draws = []

    def start(fn, *args, on_returned, on_finished, name):   # the window's worker starter, run on the next tick
        draws.append((time.perf_counter(), list(args[0])))
        QTimer.singleShot(0, lambda: (on_returned(fn(*args)), on_finished()))
        return object()

    histogram = ProbabilityHistogram(start=start)
    qtbot.addWidget(histogram)
    streamed = 0.0
    t0 = time.perf_counter()
    for i in range(40):                                   # a result every 25 ms for 1 s
        histogram.set_probabilities([0.1 * (j % 10) for j in range(i + 1)], [])
        qtbot.wait(25)
    streamed = time.perf_counter() - t0
    qtbot.waitUntil(lambda: not histogram.is_rendering(), timeout=5000)
    gap = ProbabilityHistogram.REDRAW_GAP_MS / 1000
    assert len(draws) <= streamed / gap + 2, f"{len(draws)} draws in {streamed:.1f} s"
    starts = [t for t, _ in draws]
    assert all(b - a >= gap * 0.9 for a, b in zip(starts, starts[1:]))
    assert len(draws[-1][1]) == 40                         # the last picture has every cell


def test_the_window_shows_the_reports_picture_with_the_labels_after_review_and_the_images_ticks(qtbot):
    def start(fn, *args, on_returned, on_finished, name):
        QTimer.singleShot(0, lambda: (on_returned(fn(*args)), on_finished()))
        return object()

    histogram = ProbabilityHistogram(start=start)
    qtbot.addWidget(histogram)
    histogram.resize(420, histogram.height())
    histogram.set_decision(0.5, (0.4, 0.6))
    case, image, labels = [0.1, 0.12, 0.45, 0.9], [0.12, 0.9], ["HEM", "ALL", "UNCERTAIN", "ALL"]
    with qtbot.waitSignal(histogram.rendered, timeout=5000):
        histogram.set_probabilities(case, image, labels)
    qtbot.waitUntil(lambda: not histogram.is_rendering(), timeout=5000)
    shown = histogram.pixmap().toImage().convertToFormat(QImage.Format.Format_RGBA8888)
    w, h = shown.width(), shown.height()
    pixels = np.frombuffer(shown.constBits(), np.uint8).reshape(h, shown.bytesPerLine())[:, :4 * w].reshape(h, w, 4)
    assert (w, h) == (420, histogram.height())
    assert np.array_equal(pixels, render_histogram(case, 0.5, (0.4, 0.6), labels, image=image, width_px=w,
                                                   height_px=h, dpi=WINDOW_DPI))


def test_a_window_histogram_draw_leaves_no_garbage_for_the_collectors_full_passes():
    """The figure's ~6,000 cyclic objects are freed right after the draw, never left for a full collector pass
    (which holds the GIL for 0.1-0.2 s in a long analysis and stalls the window)."""
    import gc

    from leukviewer.gui.summary import histogram_image

    args = ([0.1 * (i % 10) for i in range(500)], [0.5], None, 0.55, (0.3, 0.8), 400, 160)
    histogram_image(*args)
    gc.collect()
    image = histogram_image(*args)
    assert not image.isNull()
    assert gc.collect() < 100
