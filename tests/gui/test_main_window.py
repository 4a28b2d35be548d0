"""The review window on real smear fields (BCCD fixtures) with the tiny model."""
import json
import shutil
import subprocess
import sys

from leukviewer import RUO_NOTICE

CASE_KEYS = ("images_total", "images_processed", "images_failed", "images_without_cells", "white_cells", "blasts",
             "uncertain", "normal", "blast_percentage")


def run_to_end(qtbot, window, folder, timeout=180_000):
    with qtbot.waitSignal(window.analysisFinished, timeout=timeout):
        window.open_folder(folder)


def test_bccd_case_overlays_summary_and_screenshot(qtbot, make_window, tiny_model_dir, bccd_images, tmp_path,
                                                   case_folder, stall_meter):
    case = case_folder("bccd")
    batch_out = tmp_path / "batch"
    batch = subprocess.run([sys.executable, "-m", "leukviewer", "batch", str(case), "--out", str(batch_out),
                            "--model", str(tiny_model_dir), "--quiet"], capture_output=True, text=True)
    assert batch.returncode == 0, batch.stderr
    shutil.rmtree(case / ".leukviewer", ignore_errors=True)
    expected = json.loads((batch_out / "summary.json").read_text())

    window = make_window()
    assert not window.windowIcon().isNull()  # the app's icon in the title bar and task switcher
    with stall_meter() as meter:
        run_to_end(qtbot, window, case)
    print(f"\nlongest event-loop stall during the BCCD run: {meter.longest * 1000:.1f} ms ({meter.ticks} ticks; "
          f"worst: {meter.worst()})")

    # Every image listed with its status and counts, the summary as the batch CLI's.
    assert window.image_list.topLevelItemCount() == len(bccd_images)
    got = window.summary.to_dict()
    assert {k: got[k] for k in CASE_KEYS} == {k: expected["case"][k] for k in CASE_KEYS}
    assert window.summary_panel.case_counts["model"]["white_cells"] == expected["case"]["white_cells"]
    assert window.summary_panel.case_counts["model"]["border_cells_excluded"] == expected["case"][
        "border_cells_excluded"] > 0
    assert "Cut by border (not counted)" in window.summary_panel.table.text()
    per_image = {d["image"]: d for d in expected["images"]}
    for name, row in window.rows.items():
        assert row.text(2) == str(per_image[name]["white_cells"])
        assert row.text(3) == str(per_image[name]["blasts"])
    # Cells cut by the border are drawn (and in the histogram) but left out of the counts.
    all_cells = expected["case"]["white_cells"] + expected["case"]["border_cells_excluded"]
    assert sum(window.summary_panel.histogram.counts) == all_cells

    # One outline per cell the pipeline found, image by image.
    overlays = 0
    for name in window.image_names:
        window.show_image(name)
        assert len(window.view.overlay_items()) == (per_image[name]["white_cells"]
                                                    + per_image[name]["border_cells_excluded"])
        overlays += len(window.view.overlay_items())
        for item in window.view.overlay_items():  # a cell cut by the border says it is not counted
            assert ("cut by the image border: not counted" in item.toolTip()) == item.cell.partial
    assert overlays == all_cells > expected["case"]["white_cells"] > 0
    assert sum(window.gallery.groups[label].count() for label in ("ALL", "UNCERTAIN", "HEM")) == overlays

    # Probability on hover, the RUO notice always there, model and device in the status bar.
    item = window.view.overlay_items()[0] if window.view.overlay_items() else None
    if item is None:
        window.show_image(next(n for n in window.image_names if per_image[n]["white_cells"]))
        item = window.view.overlay_items()[0]
    assert "P(blast)" in item.toolTip()
    assert window.ruo_label.isVisible() and window.ruo_label.text() == RUO_NOTICE
    assert "tiny-test-model" in window.model_label.text()
    assert window.device_label.text().startswith(("Device: CPU", "Device: GPU"))

    # A screenshot of the window with a selected cell and its pixels on screen.
    busiest = max(window.image_names, key=lambda n: per_image[n]["white_cells"])
    with qtbot.waitSignal(window.displayImageShown, timeout=30_000):
        window.show_image(busiest)
    window.select_cell(window.view.overlay_items()[0].cell_id)
    qtbot.wait(50)  # let the histogram's idle draw run
    shot = window.grab()
    shot.save(str(tmp_path / "main_window.png"))
    shot.save("/tmp/leukviewer_main_window.png")
    assert shot.width() > 800
