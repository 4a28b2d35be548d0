"""The summary panel's counts on real BCCD fields with the tiny model (its cells are mostly UNCERTAIN): the blast %
is the range the undecided cells allow, and the after-review column says which part the reviewer decided."""
from PySide6.QtCore import Qt

from leukviewer.core.analysis.results import percentage_text


def test_summary_panel_shows_the_blast_range_and_the_reviewed_cells_apart(qtbot, make_window, case_folder,
                                                                         reviewer_name):
    case = case_folder("counts", n=3)
    window = make_window()
    with qtbot.waitSignal(window.analysisFinished, timeout=120_000):
        window.open_folder(case)
    panel = window.summary_panel
    model = panel.case_counts["model"]
    undecided = [c for c in window.gallery.order() if window.cells[c].label == "UNCERTAIN"
                 and window.cells[c].cell_type != "non_wbc" and not window.cells[c].partial]   # counted cells
    assert undecided and model["blast_percentage_min"] < model["blast_percentage_max"]
    text = panel.table.text()
    lo, hi = model["blast_percentage_min"], model["blast_percentage_max"]
    assert percentage_text(model) in text and "–" in percentage_text(model)       # e.g. "0–100 %", never "0.0 %"
    assert f"case {model['uncertain']} of {model['white_cells']} white cells undecided" in text
    # the after-review column is named for what it holds; the reviewer's own counts stand apart
    assert "after<br>review¹" in text and ">reviewed<" not in text
    assert "¹ the reviewer's label where reviewed, else the model's" in text
    assert f"case: 0 of {model['cells']} (0 ALL, 0 unc., 0 HEM)" in text
    # the histogram's bars are stacked by label after review: every cell of the case, by the model's label yet
    labels = panel.histogram.labels
    assert sorted(labels) == sorted(c.label for c in window.cells.values())

    # the reviewer decides one undecided cell as normal (N): the maximum drops by one cell, the footnote counts it
    window.select_cell(undecided[0])
    qtbot.keyClick(window.view, Qt.Key.Key_N)
    assert window.wait_for_saves()
    after = panel.case_counts["reviewed"]
    assert after["blast_percentage_min"] == lo
    assert after["blast_percentage_max"] == round(100 * (model["blasts"] + model["uncertain"] - 1)
                                                  / model["white_cells"], 2) < hi
    assert percentage_text(after) in panel.table.text()
    assert panel.histogram.labels.count("UNCERTAIN") == labels.count("UNCERTAIN") - 1      # the bars follow
    assert panel.histogram.labels.count("HEM") == labels.count("HEM") + 1
    assert f"case: 1 of {model['cells']} (0 ALL, 0 unc., 1 HEM)" in panel.table.text()
    assert f"case {model['uncertain'] - 1} of {model['white_cells']} white cells undecided" in panel.table.text()
    assert (f"Case: reviewed 1 — 0 blasts, 0 uncertain, 1 normal; not reviewed {model['cells'] - 1} — the model "
            f"suggests {model['blasts']} blasts, {model['uncertain'] - 1} uncertain") in panel.table.toolTip()
    qtbot.wait(50)
    # the lines under the table are on screen, not cut off by the gallery above
    assert panel.table.height() >= panel.table.heightForWidth(panel.table.width())
    shot = window.grab()
    shot.save("/tmp/leukviewer_summary_counts.png")
