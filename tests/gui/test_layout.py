"""Start-up and layout: the image appears before the model is ready, the histogram has a legend, and the window
fits a 1366x768 laptop screen with the research-use notice, the model bar and the counts in view."""
import threading

from PySide6.QtCore import QPoint, QRect

from leukviewer import RUO_NOTICE


def test_the_first_image_is_shown_before_the_model_is_loaded_and_outlines_follow(qtbot, make_window, case_folder,
                                                                                  tiny_model_dir, monkeypatch):
    from leukviewer.gui import jobs

    release = threading.Event()
    real_load = jobs.load_model

    def slow_load(model_dir):   # a model that takes as long as the reviewer lets it (B3 on a laptop: ~15 s)
        release.wait(60)
        return real_load(model_dir)

    monkeypatch.setattr(jobs, "load_model", slow_load)
    window = make_window(wait_model=False)
    try:
        case = case_folder("early", n=2)
        with qtbot.waitSignal(window.displayImageShown, timeout=30_000) as shown:
            window.open_folder(case)
        first = sorted(p.name for p in case.glob("*.jpg"))[0]
        assert shown.args == [first] and window.current_image == first
        assert window.loaded_model is None and not window.results          # the model is still loading
        assert window.view.has_pixmap() and window.view.overlay_items() == []
        rect = window.view.sceneRect()
        assert (rect.width(), rect.height()) == (640, 480)                 # the field's size, drawn to fit
        assert "(loading…)" in window.model_label.text()
    finally:
        release.set()
    with qtbot.waitSignal(window.analysisFinished, timeout=120_000):
        pass
    assert window.current_image == first
    assert len(window.view.overlay_items()) == len(window.results[first].cells) > 0     # the outlines came
    assert window.view.has_pixmap()


def test_histogram_legend_names_the_threshold_and_the_uncertain_band(qtbot, make_window):
    window = make_window()
    info = window.loaded_model.classifier.info
    legend = window.summary_panel.histogram.legend
    assert legend.isVisible()
    text = legend.text()
    assert f"threshold {info.threshold:.2f}" in text
    lo, hi = info.uncertainty_band
    if hi > lo:
        assert f"uncertain band {lo:.2f}–{hi:.2f}" in text
    assert "cells of this image" in text and "bars by label after review" in text
    assert all(word in text for word in ("blast (ALL)", "uncertain", "normal (HEM)"))


def _inside(window, widget) -> bool:
    top_left = widget.mapTo(window, QPoint(0, 0))
    return window.rect().contains(QRect(top_left, widget.size()))


def test_the_window_fits_1366x768_with_notice_model_bar_and_counts_in_view(qtbot, make_window, case_folder):
    window = make_window()
    with qtbot.waitSignal(window.analysisFinished, timeout=120_000):
        window.open_folder(case_folder("small-screen", n=2))
    window.select_cell(window._navigation_order()[0])
    window.resize(1366, 768)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == (1366, 768), timeout=5_000)
    assert window.minimumSizeHint().width() <= 1366 and window.minimumSizeHint().height() <= 768
    panel = window.summary_panel
    for name, widget in (("research-use notice", window.ruo_label), ("model bar", window.model_label),
                         ("device", window.device_label), ("progress", window.progress_label),
                         ("counts", panel.table), ("histogram", panel.histogram),
                         ("histogram legend", panel.histogram.legend), ("selected cell", window.cell_panel),
                         ("opacity slider", window.cell_panel.opacity_slider)):
        assert widget.isVisible(), f"the {name} is hidden"
        assert _inside(window, widget), f"the {name} is cut off at 1366x768: {widget.geometry()}"
        # Not squeezed either: at least as tall as its content needs.
        assert widget.height() >= widget.minimumSizeHint().height(), f"the {name} is squeezed"
    assert window.ruo_label.text() == RUO_NOTICE
    assert window.ruo_label.width() >= window.ruo_label.fontMetrics().horizontalAdvance(RUO_NOTICE)
    assert window.model_label.width() >= window.model_label.fontMetrics().horizontalAdvance(window.model_label.text())
    # Every row of the counts table is drawn inside the label (its text is not clipped at the bottom).
    assert panel.table.height() >= panel.table.heightForWidth(panel.table.width())
    # The selected-cell fields are all in view.
    for name, value in window.cell_panel.values.items():
        if value.isVisibleTo(window.cell_panel):
            assert _inside(window, value), f"the selected cell's {name} is cut off"


def test_the_window_starts_no_larger_than_the_screen():
    from PySide6.QtCore import QSize

    from leukviewer.gui.main_window import initial_window_size

    assert initial_window_size(QSize(1366, 768)) == QSize(1366, 768)
    assert initial_window_size(QSize(1366, 728)) == QSize(1366, 728)     # a panel takes 40 px
    assert initial_window_size(QSize(1920, 1080)) == QSize(1500, 900)
    assert initial_window_size(None) == QSize(1500, 900)
