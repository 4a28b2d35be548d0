"""Grad-CAM as the reviewer sees it: the map of the class the model decided on, named; translucent over the cell
with a colour scale and an opacity slider; an empty map said in words; warmed up in the background."""
import cv2
import numpy as np
from PySide6.QtCore import Qt

from leukviewer.core.settings import Settings


def run_to_end(qtbot, window, folder, timeout=120_000):
    with qtbot.waitSignal(window.analysisFinished, timeout=timeout):
        window.open_folder(folder)


def show_gradcam(qtbot, window, cell_id):
    window.select_cell(cell_id)
    with qtbot.waitSignal(window.gradcamShown, timeout=60_000):
        if window.gradcam_action.isChecked():
            window.gradcam.request()
        else:
            qtbot.keyClick(window.view, Qt.Key.Key_G)
    return window.gradcam.heatmaps[cell_id]


def test_gradcam_explains_the_decided_class_translucent_with_a_scale_and_an_opacity_slider(
        qtbot, make_window, case_folder):
    window = make_window()
    run_to_end(qtbot, window, case_folder("cam-class", n=4))
    classifier = window.loaded_model.classifier
    threshold = classifier.info.threshold
    cells = sorted(window.cells.values(), key=lambda c: c.blast_probability)
    for cell in (cells[0], cells[-1]):      # the least and the most blast-like cell of the case
        heat = show_gradcam(qtbot, window, cell.cell_id)
        decided = "ALL" if cell.blast_probability >= threshold else "HEM"
        assert heat.class_name == decided
        status = window.cell_panel.gradcam_label.text()
        assert f">{decided}</b>, the class the model decided on" in status
        if heat.empty:
            assert "the map is empty" in status and not window.view.has_heatmap()
        else:
            assert window.view.has_heatmap()
    # The low-P(blast) cell is explained by HEM, whose map is not blank (the ALL map used to be all zeros).
    if cells[0].blast_probability < threshold:
        assert window.gradcam.heatmaps[cells[0].cell_id].class_name == "HEM"

    shown = next((h for h in window.gradcam.heatmaps.values() if not h.empty), None)
    assert shown is not None, "no cell of the case has a non-empty Grad-CAM map"
    window.select_cell(shown.cell_id)
    qtbot.waitUntil(lambda: window.view.has_heatmap(), timeout=10_000)
    # Translucent: where the model did not look the layer is fully transparent, so the morphology shows.
    alpha = np.array([[shown.qimage.pixelColor(x, y).alpha() for x in range(0, shown.qimage.width(), 4)]
                      for y in range(0, shown.qimage.height(), 4)])
    assert alpha.min() == 0 and alpha.max() > 0 and (alpha == 0).mean() > 0.2
    # Only over the cell: outside its outline (masked black for the network) nothing is drawn, so no square.
    from leukviewer.core.analysis.imageio import read_image

    cell = window.cells[shown.cell_id]
    rgb = read_image(window.folder / cell.image)
    from leukviewer.core.analysis.localize import CellRegion, crop_cell

    crop = crop_cell(rgb, CellRegion(bbox=tuple(cell.bbox), outline=np.asarray(cell.outline, np.int32),
                                     centroid=cell.centroid, area=cell.area, nucleus_area=0, partial=cell.partial))
    far = cv2.dilate((crop.max(axis=2) > 12).astype(np.uint8), np.ones((15, 15), np.uint8)) == 0
    full = np.array([[shown.qimage.pixelColor(x, y).alpha() for x in range(shown.qimage.width())]
                     for y in range(shown.qimage.height())])
    assert far.any() and full[far].max() == 0
    item = window.view.heatmap_item()
    panel = window.cell_panel
    assert abs(item.opacity() - panel.opacity()) < 1e-6 and 0 < item.opacity() < 1
    # The colour scale is visible beside the slider, low to high.
    assert panel.scale_bar.isVisible() and not panel.scale_bar.pixmap().isNull()
    bar = panel.scale_bar.pixmap().toImage()
    low, high = bar.pixelColor(1, 5), bar.pixelColor(bar.width() - 2, 5)
    assert low.blue() > low.red() and high.red() > high.blue()       # blue (low) to red (high)
    assert panel.scale_low.text() == "low" and "high" in panel.scale_high.text()
    # The slider sets the opacity, remembered.
    panel.opacity_slider.setValue(80)
    assert abs(item.opacity() - 0.8) < 1e-6 and panel.opacity_text.text() == "80 %"
    window.close()
    assert abs(Settings.load(window.settings.path).overlays.gradcam_opacity - 0.8) < 1e-6


def test_an_empty_map_is_said_in_words(qtbot, make_window, case_folder, monkeypatch):
    import leukviewer.core.model.gradcam as gradcam

    window = make_window()
    run_to_end(qtbot, window, case_folder("cam-empty", n=1))
    # A map with no positive evidence anywhere (what Grad-CAM gives when nothing raised the class's score).
    monkeypatch.setattr(gradcam, "cell_heatmap", lambda classifier, crop, label="ALL", cam=None, um_per_px=None:
                        np.zeros(crop.shape[:2], np.float32))
    cell_id = window._navigation_order()[0]
    heat = show_gradcam(qtbot, window, cell_id)
    assert heat.empty and not window.view.has_heatmap()
    text = window.cell_panel.gradcam_label.text()
    assert "the map is empty" in text and f"score of {heat.class_name}" in text
    qtbot.keyClick(window.view, Qt.Key.Key_G)
    assert "off" in window.cell_panel.gradcam_label.text()


def test_gradcam_is_warmed_up_in_a_worker_after_the_model_loads(qtbot, make_window):
    window = make_window()
    qtbot.waitUntil(lambda: window.gradcam.warm_up_worker is not None, timeout=10_000)   # started in a worker
    qtbot.waitUntil(lambda: window.gradcam.ready, timeout=60_000)
    assert window.loaded_model._gradcam is not None      # built (and traced) before anyone pressed G


def test_gradcam_warm_up_waits_for_the_analysis_and_closing_cancels_it(qtbot, make_window, case_folder):
    window = make_window()
    with qtbot.waitSignal(window.imageAnalysed, timeout=60_000):
        window.open_folder(case_folder("warm-later", n=4))
    qtbot.wait(1_600)                                     # past the warm-up's delay, during the analysis
    if window.is_analysing():
        assert window.gradcam.warm_up_worker is None            # the analysis has the cores first
    qtbot.waitUntil(lambda: not window.is_analysing(), timeout=120_000)
    qtbot.waitUntil(lambda: window.gradcam.warm_up_worker is not None, timeout=10_000)
    worker = window.gradcam.warm_up_worker
    assert worker is not None                             # started when the analysis ended
    window.close()                                        # cancels it and waits: nothing left running
    assert worker.is_finished()
