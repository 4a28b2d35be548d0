"""The selected-cell panel, J/K order (within the image first, then the next image) and the auto-advance switch."""
import shutil

from PySide6.QtCore import Qt

from leukviewer.core.settings import Settings


def run_to_end(qtbot, window, folder, timeout=120_000):
    with qtbot.waitSignal(window.analysisFinished, timeout=timeout):
        window.open_folder(folder)


def key(qtbot, window, k):
    qtbot.keyClick(window.view, k)
    assert window.wait_for_saves()   # a review key's change is saved in the save worker


def test_selected_cell_panel_shows_the_cell_its_labels_reviewer_time_and_border(qtbot, make_window, case_folder,
                                                                                reviewer_name):
    window = make_window()
    run_to_end(qtbot, window, case_folder("panel", n=4))
    panel = window.cell_panel
    assert panel.isVisible() and "none" in panel.shown_fields()["Cell"]
    cell = window.cells[window.gallery.order()[0]]
    window.select_cell(cell.cell_id)
    shown = panel.shown_fields()
    assert shown["Cell"] == cell.cell_id and shown["Image"] == cell.image
    assert shown["P(blast)"] == f"{cell.blast_probability:.3f}"
    assert cell.label.split()[0] in shown["Model"].replace("Uncertain", "UNCERTAIN")
    assert shown["Reviewer's label"] == "not reviewed" and shown["Reviewed by"] == "–"
    assert shown["Cut by border"] == ("yes: part of the cell lies outside the image" if cell.partial else "no")
    assert cell.cell_type in shown["Cell type"]        # a blast/normal model's cells are blast or lymphoid
    assert panel.thumbnail.pixmap() is not None and not panel.thumbnail.pixmap().isNull()

    # A label changes the panel at once: reviewer, time, the reviewer's label beside the model's.
    window.auto_advance_action.trigger()                # Review → Advance after a label: off
    target = "HEM" if cell.label != "HEM" else "ALL"
    key(qtbot, window, Qt.Key.Key_N if target == "HEM" else Qt.Key.Key_A)
    assert window.current_cell == cell.cell_id
    shown = panel.shown_fields()
    assert shown["Reviewer's label"].startswith("■ " + ("HEM" if target == "HEM" else "ALL"))
    assert "(changed)" in shown["Reviewer's label"]
    assert shown["Reviewed by"] == "Dr. Test"
    assert shown["Reviewed at"][:4].isdigit()           # an ISO date and time
    assert shown["Model"] != shown["Reviewer's label"]

    # Cells cut by the image border say so in words.
    partial = [c for c in window.cells.values() if c.partial]
    whole = [c for c in window.cells.values() if not c.partial]
    assert partial and whole, "the BCCD fields hold cells cut by the border and whole cells"
    window.select_cell(partial[0].cell_id)
    assert panel.shown_fields()["Cut by border"].startswith("yes")
    window.select_cell(whole[0].cell_id)
    assert panel.shown_fields()["Cut by border"] == "no"

    # A cell type (from the white-cell model, when cells carry one) gets its row.
    whole[0].cell_type = "lymphocyte"
    window.select_cell(partial[0].cell_id)
    window.select_cell(whole[0].cell_id)
    assert panel.shown_fields()["Cell type"] == "lymphocyte"


def test_j_and_k_move_through_the_image_first_then_to_the_next_image(qtbot, make_window, bccd_images, tmp_path,
                                                                     reviewer_name):
    case = tmp_path / "order"
    case.mkdir()
    for image in (bccd_images[0], bccd_images[2], bccd_images[3]):     # fields with two white cells each
        shutil.copy2(image, case / image.name)
    window = make_window()
    run_to_end(qtbot, window, case)
    images = window.image_names
    per_image = {name: [c for c in window.cells.values() if c.image == name] for name in images}
    assert all(len(per_image[name]) >= 2 for name in images[:2])
    window.show_image(images[0])
    visited = []
    for _ in range(len(per_image[images[0]]) + 1):
        key(qtbot, window, Qt.Key.Key_J)
        visited.append(window.current_cell)
    first_image = [window.cells[c].image for c in visited[:-1]]
    assert first_image == [images[0]] * len(per_image[images[0]])       # every cell of this image first
    assert len(set(visited[:-1])) == len(per_image[images[0]])
    assert window.cells[visited[-1]].image == images[1] and window.current_image == images[1]   # then the next
    # Within the image, flagged cells come before normal ones (gallery order: ALL, uncertain, HEM).
    groups = ["ALL", "UNCERTAIN", "HEM"]
    ranks = [groups.index(window.gallery.group_of(c)) for c in visited[:-1]]
    assert ranks == sorted(ranks)
    key(qtbot, window, Qt.Key.Key_K)
    assert window.current_cell == visited[-2] and window.current_image == images[0]
    assert window.view.item_for(visited[-2]).selected


def test_auto_advance_is_in_the_help_and_can_be_switched_off_and_remembered(qtbot, make_window, case_folder,
                                                                           reviewer_name):
    window = make_window()
    run_to_end(qtbot, window, case_folder("advance", n=2))
    assert window.auto_advance_action.isChecked() and window.auto_advance_action in window.menuBar().actions()[
        [a.text() for a in window.menuBar().actions()].index("&Review")].menu().actions()
    key(qtbot, window, Qt.Key.Key_Question)
    assert "after A / N / U / Space" in window.help_overlay.label.text()
    assert "the next cell is selected (on)" in window.help_overlay.label.text()
    qtbot.keyClick(window.help_overlay, Qt.Key.Key_Question)

    first = window._navigation_order()[0]
    window.select_cell(first)
    key(qtbot, window, Qt.Key.Key_Space)
    assert window.current_cell != first                 # on: moved on

    window.auto_advance_action.trigger()                # off
    assert not window.settings.auto_advance
    assert window.wait_for_saves()                      # settings are saved in the save worker
    assert Settings.load(window.settings.path).auto_advance is False    # saved at once
    assert "advance is off" in window.help_overlay.label.text()
    here = window.current_cell
    key(qtbot, window, Qt.Key.Key_A)
    assert window.current_cell == here and window.session.reviewed_label(here) == "ALL"
    window.close()
    again = make_window()
    assert not again.auto_advance_action.isChecked() and "advance is off" in again.help_overlay.label.text()
