"""Reviewing cells with the keyboard and the gallery; review state saved, audited, restored and undone."""
import json
import os

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from leukviewer.gui.gallery import CELL_MIME


def run_to_end(qtbot, window, folder, timeout=120_000):
    with qtbot.waitSignal(window.analysisFinished, timeout=timeout):
        window.open_folder(folder)


def key(qtbot, window, k, modifier=Qt.KeyboardModifier.NoModifier):
    """Press a key; a review key's change is saved in the save worker: wait until it is saved and shown."""
    qtbot.keyClick(window.view, k, modifier)
    assert window.wait_for_saves()


def flagged_cell(window):
    """The first counted cell (not cut by the border) the model flagged (ALL or UNCERTAIN) in gallery order."""
    return next(c for c in window.gallery.order()
                if window.cells[c].label in ("ALL", "UNCERTAIN") and not window.cells[c].partial)


def test_label_with_keys_autosave_audit_undo_redo_and_restore(qtbot, make_window, case_folder, reviewer_name):
    case = case_folder("review", n=4)
    window = make_window()
    run_to_end(qtbot, window, case)
    assert window.status_area.analysed == 4
    cell_id = flagged_cell(window)
    window.select_cell(cell_id)
    before = dict(window.summary_panel.case_counts["reviewed"])

    key(qtbot, window, Qt.Key.Key_N)
    assert reviewer_name == [""]  # asked once, on the first review
    after = window.summary_panel.case_counts["reviewed"]
    assert after["normal"] == before["normal"] + 1 and after["reviewed"] == 1 and after["changed"] == 1
    assert window.current_cell != cell_id  # moved on to the next cell
    state = json.loads((case / ".leukviewer" / "review.json").read_text())
    assert state["reviews"][cell_id]["label"] == "HEM" and state["reviews"][cell_id]["reviewer"] == "Dr. Test"
    audit = [json.loads(line) for line in (case / ".leukviewer" / "audit.jsonl").read_text().splitlines()]
    assert (audit[-1]["cell_id"], audit[-1]["old"], audit[-1]["new"], audit[-1]["reviewer"]) == (
        cell_id, None, "HEM", "Dr. Test")
    assert window.gallery.group_of(cell_id) == "HEM"
    row = window.rows[window.cells[cell_id].image]
    assert row.text(5).startswith("1/")

    key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.session.reviewed_label(cell_id) is None and window.current_cell == cell_id
    assert window.summary_panel.case_counts["reviewed"]["normal"] == before["normal"]
    assert window.gallery.group_of(cell_id) == window.cells[cell_id].label
    key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert window.session.reviewed_label(cell_id) == "HEM"
    assert [e["action"] for e in window.session.audit_entries()] == ["change", "undo", "redo"]

    # Space confirms the suggestion of the selected cell.
    other = next(c for c in window.gallery.order() if c != cell_id and not window.cells[c].partial)
    window.select_cell(other)
    key(qtbot, window, Qt.Key.Key_Space)
    assert window.session.reviewed_label(other) == window.cells[other].label
    window.select_cell(other)
    item = window.view.item_for(other)
    assert item.reviewed and item.pen().style() == Qt.PenStyle.SolidLine
    window.close()

    # Reopen: no re-analysis (results store), the review and the position are back.
    again = make_window()
    run_to_end(qtbot, again, case)
    assert again.status_area.analysed == 0 and len(again.results) == 4
    assert again.session.reviewed_label(cell_id) == "HEM"
    assert again.current_cell == other and again.current_image == window.cells[other].image
    assert again.gallery.group_of(cell_id) == "HEM"
    assert again.summary_panel.case_counts["reviewed"]["reviewed"] == 2


def test_navigation_keys_follow_the_review_order(qtbot, make_window, case_folder, reviewer_name):
    window = make_window()
    run_to_end(qtbot, window, case_folder("nav", n=3))
    order = window._navigation_order()      # image by image, gallery order within each (test_cell_panel.py)
    assert sorted(order) == sorted(window.gallery.order())
    assert len(order) >= 2
    key(qtbot, window, Qt.Key.Key_J)
    first = window.current_cell
    assert first in order
    key(qtbot, window, Qt.Key.Key_Right)
    assert window.current_cell == order[(order.index(first) + 1) % len(order)]
    key(qtbot, window, Qt.Key.Key_K)
    assert window.current_cell == first
    assert window.view.item_for(first).selected
    assert window.gallery.groups[window.gallery.group_of(first)].current_cell_id() == first


def test_drag_a_cell_to_another_gallery_group_relabels_it(qtbot, make_window, case_folder, reviewer_name):
    window = make_window()
    run_to_end(qtbot, window, case_folder("drag", n=3))
    cell_id = flagged_cell(window)
    target = "ALL" if window.cells[cell_id].label != "ALL" else "HEM"
    source = window.gallery.groups[window.cells[cell_id].label]
    group = window.gallery.groups[target]
    data = QMimeData()
    data.setData(CELL_MIME, cell_id.encode())
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.MoveAction, data, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    event.source = lambda: source
    group.dropEvent(event)
    assert window.wait_for_saves()
    assert window.session.reviewed_label(cell_id) == target
    assert window.gallery.group_of(cell_id) == target


def test_gallery_click_centres_the_cell_in_its_image(qtbot, make_window, case_folder):
    window = make_window()
    run_to_end(qtbot, window, case_folder("click", n=5))
    last = window.gallery.order()[-1]
    group = window.gallery.groups[window.gallery.group_of(last)]
    group.clicked.emit(group.model().index(group.cell_ids().index(last)))
    assert window.current_cell == last and window.current_image == window.cells[last].image
    assert window.view.item_for(last).selected
    # And the reverse: clicking an outline selects the cell in the gallery.
    window.view.cellClicked.emit(window.gallery.order()[0])
    first = window.gallery.order()[0]
    assert window.gallery.groups[window.gallery.group_of(first)].current_cell_id() == first


def test_read_only_folder_keeps_the_review_in_the_user_data_dir(qtbot, make_window, case_folder, reviewer_name,
                                                                 monkeypatch):
    case = case_folder("readonly", n=2)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p).startswith(str(case)) and mode == os.W_OK
                        else real_access(p, mode, **kw))
    window = make_window()
    run_to_end(qtbot, window, case)
    assert any("read-only" in text for _, text in window.messages)
    cell_id = window.gallery.order()[0]
    window.select_cell(cell_id)
    key(qtbot, window, Qt.Key.Key_A)
    assert not (case / ".leukviewer").exists()
    assert str(window.session.directory).startswith(os.environ["LEUKVIEWER_DATA_DIR"])
    assert json.loads(window.session.state_path.read_text())["reviews"][cell_id]["label"] == "ALL"


def test_cancelling_the_reviewer_name_records_nothing(qtbot, make_window, case_folder, monkeypatch):
    from leukviewer.gui.dialogs import ReviewerDialog

    monkeypatch.setattr(ReviewerDialog, "ask", classmethod(lambda cls, parent=None, current="": None))
    window = make_window()
    run_to_end(qtbot, window, case_folder("noname", n=2))
    window.select_cell(window.gallery.order()[0])
    key(qtbot, window, Qt.Key.Key_A)
    assert window.session.reviews == {}
    if window.session.state_path.exists():  # the reviewer's position may have been saved: never a review
        assert json.loads(window.session.state_path.read_text())["reviews"] == {}


def test_drop_a_folder_on_the_window_opens_it(qtbot, make_window, case_folder):
    case = case_folder("dropped", n=2)
    window = make_window()
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(case / sorted(os.listdir(case))[0]))])
    event = QDropEvent(QPointF(QPoint(200, 200)), Qt.DropAction.CopyAction, data, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.analysisFinished, timeout=60_000):
        window.dropEvent(event)
    assert window.folder == case.resolve() and len(window.results) == 2
    assert window.settings.recent_folders[0] == str(case.resolve())
    assert [a.text() for a in window.recent_menu.actions()][0] == str(case.resolve())
